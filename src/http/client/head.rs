//! A response head: finding its end in the stream, parsing it, and deciding from it how the
//! body is framed (RFC 9112 §6.3, in the order the parent module lists).

use httparse::Header;

use super::{ResponseError, ResponseLimits};
use crate::http::chunked::ChunkedDecoder;
use crate::http::decoder::{parse_content_length, split_tokens};
use crate::http::request::Version;
use crate::http::syntax::is_http_version_shape;

/// A final response's head, kept while its body arrives.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) status: u16,
    pub(super) version: Version,
    pub(super) headers: Vec<(String, Vec<u8>)>,
    /// What the head says about reuse; a close-delimited body overrides it.
    pub(super) keep_alive: bool,
}

/// How the body being read ends (RFC 9112 §6.3).
#[derive(Debug)]
pub(super) enum Body {
    /// `Content-Length`: this many bytes still to come.
    Length { remaining: u64 },
    /// `Transfer-Encoding: chunked`.
    Chunked(ChunkedDecoder),
    /// Neither: the body ends when the connection does.
    UntilClose,
}

/// Look for the blank line that ends the head, scanning only bytes not scanned before.
///
/// Returns the head's length including the final CRLF. RFC 9112 §2.2 lets a recipient accept a
/// bare LF as a line end; we refuse it and a bare CR alike, at the byte that proves it bare. A
/// CR that is the last byte so far is left unscanned: its LF may come with the next read.
pub(super) fn find_head_end(
    buf: &[u8],
    scanned: &mut usize,
) -> Result<Option<usize>, ResponseError> {
    let mut i = *scanned;
    while let Some(offset) = buf[i..].iter().position(|&b| b == b'\r' || b == b'\n') {
        let cr = i + offset;
        if buf[cr] == b'\n' {
            // Every CRLF is stepped over below, so this LF has no CR before it.
            return Err(ResponseError::BareLineEnd);
        }
        match buf.get(cr + 1) {
            Some(b'\n') => {}
            Some(_) => return Err(ResponseError::BareLineEnd),
            None => {
                *scanned = cr;
                return Ok(None);
            }
        }
        // A CRLF right after another one is the empty line that ends the head.
        if cr >= 2 && &buf[cr - 2..cr] == b"\r\n" {
            return Ok(Some(cr + 2));
        }
        i = cr + 2;
    }
    *scanned = buf.len();
    Ok(None)
}

/// Parse a complete head and decide its framing. The body is `None` for an interim response.
pub(super) fn parse_head(
    bytes: &[u8],
    method_was_head: bool,
    limits: &ResponseLimits,
) -> Result<(Head, Option<Body>), ResponseError> {
    // httparse has no uninitialised-storage entry point for responses; one small allocation per
    // response is nothing next to the copy of its headers below.
    let mut storage = vec![httparse::EMPTY_HEADER; limits.max_headers.max(1)];
    let mut parsed = httparse::Response::new(&mut storage);
    match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(n)) if n == bytes.len() => {}
        Ok(_) => return Err(ResponseError::MalformedStatusLine),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ResponseError::TooManyHeaders {
                limit: limits.max_headers,
            })
        }
        Err(httparse::Error::Version) => return Err(version_error(bytes)),
        // A header line starting with SP or HTAB is obs-fold (RFC 9112 §5.2): refused.
        Err(httparse::Error::HeaderName | httparse::Error::HeaderValue) => {
            return Err(ResponseError::MalformedHeader)
        }
        Err(_) => return Err(ResponseError::MalformedStatusLine),
    }
    let version = match parsed.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(ResponseError::UnsupportedVersion),
    };
    // RFC 9110 §15: status codes are three digits, 100 to 599.
    let status = match parsed.code {
        Some(code @ 100..=599) => code,
        _ => return Err(ResponseError::MalformedStatusLine),
    };
    if status == 101 {
        return Err(ResponseError::SwitchingProtocols);
    }
    let headers: &[Header<'_>] = parsed.headers;

    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut codings = 0;
    let mut only_chunked = true;
    let mut close = false;
    let mut keep_alive = false;
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            // RFC 9112 §6.3 rule 5: an invalid value, or several that differ, is an
            // unrecoverable framing error. Repeats of the same value are tolerated.
            let value = parse_content_length(header.value)
                .map_err(|_| ResponseError::InvalidContentLength)?;
            if content_length.is_some_and(|seen| seen != value) {
                return Err(ResponseError::ConflictingContentLength);
            }
            content_length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            for coding in split_tokens(header.value) {
                codings += 1;
                only_chunked &= coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for option in split_tokens(header.value) {
                if option.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    // RFC 9112 §6.1: a message with both "ought to be handled as an error". Whatever the
    // status, it says the upstream (or something before it) frames messages unlike we do.
    if transfer_encoding && content_length.is_some() {
        return Err(ResponseError::LengthAndTransferEncoding);
    }
    // Exactly one coding, `chunked`, over all Transfer-Encoding lines: see the framing below.
    let chunked = transfer_encoding && codings == 1 && only_chunked;

    let keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => keep_alive && !close,
    };
    let head = Head {
        status,
        version,
        headers: headers
            .iter()
            .map(|h| (h.name.to_string(), h.value.to_vec()))
            .collect(),
        keep_alive,
    };
    let body = match status {
        // Rule 1: interim responses end at their empty line.
        100..=199 => return Ok((head, None)),
        // Rule 1: no body, whatever the framing headers say (they describe the body a GET
        // would have had).
        204 | 304 => Body::Length { remaining: 0 },
        _ if method_was_head => Body::Length { remaining: 0 },
        // Rule 4, strictly: a coding list that does not end in `chunked` would be read until
        // close; one other than exactly `chunked` is refused instead. RFC 9112 §6.1: an HTTP/1.0
        // message with Transfer-Encoding has faulty framing.
        _ if transfer_encoding && (!chunked || version == Version::Http10) => {
            return Err(ResponseError::UnsupportedTransferEncoding)
        }
        _ if chunked => Body::Chunked(ChunkedDecoder::new()),
        // Rule 6. Refused before the body is read when it cannot fit.
        _ => match content_length {
            Some(n) if n > limits.max_body as u64 => {
                return Err(ResponseError::BodyTooLarge {
                    limit: limits.max_body,
                })
            }
            Some(n) => Body::Length { remaining: n },
            // Rule 8: the body is whatever comes until the close.
            None => Body::UntilClose,
        },
    };
    Ok((head, Some(body)))
}

/// httparse reports `HTTP/2` and `HTTP/1.x garbage` alike as a version error: tell a version we
/// do not speak from a line that is no status line.
fn version_error(head: &[u8]) -> ResponseError {
    let version = head.split(|&b| b == b' ').next().unwrap_or(&[]);
    if is_http_version_shape(version) {
        ResponseError::UnsupportedVersion
    } else {
        ResponseError::MalformedStatusLine
    }
}
