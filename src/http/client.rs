//! The client side of HTTP/1.1, without sockets: requests out, responses in.
//!
//! The reactor will call upstream servers itself, on non-blocking sockets, so that a handler can
//! wait on another service without holding a worker. This module is the part of such a call that
//! needs no socket: [`encode_request`] writes the request's bytes, and [`ResponseDecoder`] reads
//! the response back from whatever the socket delivers, in whatever pieces. In asyncio terms it
//! is what sits under `await client.get(url)`: the library writes a request, then parses each
//! read until a whole response is there, while the event loop runs other tasks in between.
//!
//! # Theory of operation
//!
//! The caller keeps the bytes read from the upstream in a buffer and calls
//! [`ResponseDecoder::decode`] after every read. The decoder answers with how many bytes at the
//! front of the buffer it is done with (the caller drops them) and either
//! [`Progress::Incomplete`] or [`Progress::Complete`] with the [`UpstreamResponse`]. After a
//! complete response the decoder is ready for the next one on the same connection, so
//! pipelined responses in one buffer come out one per call. When the upstream closes, the
//! caller calls [`ResponseDecoder::on_eof`]: that completes a body delimited by the close, and
//! is an error for anything else left half-read.
//!
//! Like the request decoder ([`super::decoder`]), it scans only the new bytes for the end of the
//! head, so an upstream that trickles its head byte by byte costs linear time, and it calls
//! httparse once per head.
//!
//! # Framing (RFC 9112 §6.3)
//!
//! Where a response's body ends is decided by the request and the head, in this order:
//!
//! 1. a response to `HEAD`, and every `1xx`, `204` and `304`, has no body, whatever its
//!    `Content-Length` or `Transfer-Encoding` say (rule 1). Interim `1xx` responses
//!    (RFC 9110 §15.2) are read and skipped; the final response follows them. `101 Switching
//!    Protocols` is an error: evloop never asks for an upgrade;
//! 2. `Transfer-Encoding: chunked`: the chunked body, through its trailer section (rule 4,
//!    RFC 9112 §7.1), decoded by [`ChunkedDecoder`];
//! 3. `Content-Length: n`: exactly `n` bytes (rule 6);
//! 4. neither: every byte until the upstream closes the connection (rule 8), which then cannot
//!    be kept alive.
//!
//! # Why strict
//!
//! A client is tempted to be lenient ("be liberal in what you accept"), but this one sits
//! between an upstream and evloop's own clients. If it guessed where a malformed response ends,
//! the next response on the connection would start at the guess, and one client could be sent
//! another's answer. So every shape RFC 9112 calls a framing error is an error here, after which
//! the connection must be closed: `Content-Length` together with `Transfer-Encoding` (§6.1),
//! differing or malformed lengths (§6.3 rule 5), a transfer coding other than a single `chunked`
//! (§6.3 rule 4 would read such a body until close; we refuse it), `Transfer-Encoding` in an
//! HTTP/1.0 response (§6.1), bare CR or LF, obs-fold, and a head that does not start `HTTP/`.
//! The head, the number of fields and the body are bounded by [`ResponseLimits`], enforced
//! while decoding, so an upstream cannot make evloop buffer without end.
//!
//! Not implemented: `CONNECT` tunnels (§6.3 rule 2), protocol upgrades, transfer codings other
//! than `chunked`, and trailer fields, which are checked and dropped.

use std::fmt;

use httparse::Header;

use super::chunked::ChunkedDecoder;
use super::decoder::{parse_content_length, split_tokens};
use super::error::ParseError;
use super::request::Version;

mod encode;

pub use encode::{encode_request, EncodeError};

/// How much of an upstream's response evloop is willing to hold.
#[derive(Debug, Clone, Copy)]
pub struct ResponseLimits {
    /// Status line plus header block, of the final response and of each interim one. Over it:
    /// [`ResponseError::HeadTooLarge`].
    pub max_head_bytes: usize,
    /// Header fields in one head. Over it: [`ResponseError::TooManyHeaders`].
    pub max_headers: usize,
    /// Decoded body bytes. Over it: [`ResponseError::BodyTooLarge`], from `Content-Length`
    /// before reading a byte of the body, or as chunks or a close-delimited body arrive.
    pub max_body: usize,
}

impl Default for ResponseLimits {
    fn default() -> Self {
        // Upstream heads are bigger than requests' (cookies, tracing headers), and a response
        // body is usually bigger than a request's.
        ResponseLimits {
            max_head_bytes: 64 * 1024,
            max_headers: 100,
            max_body: 16 * 1024 * 1024,
        }
    }
}

/// A complete response from an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamResponse {
    /// The status code, 200 to 599 (interim `1xx` responses are skipped, never returned).
    pub status: u16,
    /// The version of the status line.
    pub version: Version,
    /// The header fields, in the order received, names as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The decoded body (chunked framing removed); empty when the response has none.
    pub body: Vec<u8>,
    /// Whether the connection may carry another request: HTTP/1.1 unless the upstream sent
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`, and never after a body
    /// that ended with the connection.
    pub keep_alive: bool,
}

/// The result of one [`ResponseDecoder::decode`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// More bytes are needed. `consumed` bytes at the front of the input are done with (interim
    /// responses, body bytes copied into the decoder); a head still being read is not consumed.
    Incomplete { consumed: usize },
    /// A complete response; `consumed` bytes of the input belong to it (and to any interim
    /// responses before it). Bytes after them are the next response's.
    Complete {
        consumed: usize,
        response: UpstreamResponse,
    },
}

/// A response evloop refuses. Every one means the connection can no longer be trusted (where
/// the next response starts is unknown) and must be closed; each is answered `502 Bad Gateway`
/// (RFC 9110 §15.6.3) with [`ResponseError::to_string`] naming the cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// The first line is not `HTTP/x.y SP 3DIGIT SP reason`, or the status is outside 100–599.
    MalformedStatusLine,
    /// A well-formed version other than HTTP/1.0 and HTTP/1.1.
    UnsupportedVersion,
    /// A header line that is not `token ":" OWS value OWS`, obs-fold included.
    MalformedHeader,
    /// A CR not followed by LF, or a LF without CR, in the head.
    BareLineEnd,
    /// The head is longer than [`ResponseLimits::max_head_bytes`] (or the chunked trailer
    /// section is).
    HeadTooLarge { limit: usize },
    /// More header fields than [`ResponseLimits::max_headers`].
    TooManyHeaders { limit: usize },
    /// `101 Switching Protocols`, which evloop never asks for.
    SwitchingProtocols,
    /// A `Content-Length` that is not `1*DIGIT` or does not fit in 18 digits.
    InvalidContentLength,
    /// Several `Content-Length` values that differ.
    ConflictingContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`: the classic smuggling shape.
    LengthAndTransferEncoding,
    /// A transfer coding other than a single `chunked`, or any in an HTTP/1.0 response.
    UnsupportedTransferEncoding,
    /// The chunked body breaks RFC 9112 §7.1; the text says which rule.
    MalformedChunkedBody(&'static str),
    /// The body is larger than [`ResponseLimits::max_body`].
    BodyTooLarge { limit: usize },
    /// The connection closed before a byte of the response arrived.
    ClosedBeforeResponse,
    /// The connection closed with a response half-read.
    ClosedMidResponse,
    /// `decode` after an error or after [`ResponseDecoder::on_eof`]: nothing more can be read.
    Finished,
}

impl ResponseError {
    /// The status code evloop answers its own client with: always 502, the upstream's fault.
    pub fn status(&self) -> u16 {
        502
    }
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::MalformedStatusLine => {
                f.write_str("upstream sent a malformed status line")
            }
            ResponseError::UnsupportedVersion => {
                f.write_str("upstream answered in an HTTP version other than 1.0 or 1.1")
            }
            ResponseError::MalformedHeader => f.write_str("upstream sent a malformed header field"),
            ResponseError::BareLineEnd => f.write_str("upstream sent a bare CR or LF in its head"),
            ResponseError::HeadTooLarge { limit } => {
                write!(f, "upstream response head over {limit} bytes")
            }
            ResponseError::TooManyHeaders { limit } => {
                write!(f, "upstream response has over {limit} header fields")
            }
            ResponseError::SwitchingProtocols => f.write_str("upstream tried to switch protocols"),
            ResponseError::InvalidContentLength => {
                f.write_str("upstream sent an invalid Content-Length")
            }
            ResponseError::ConflictingContentLength => {
                f.write_str("upstream sent conflicting Content-Length values")
            }
            ResponseError::LengthAndTransferEncoding => {
                f.write_str("upstream sent both Content-Length and Transfer-Encoding")
            }
            ResponseError::UnsupportedTransferEncoding => {
                f.write_str("upstream used a transfer coding other than chunked")
            }
            ResponseError::MalformedChunkedBody(why) => {
                write!(f, "upstream sent a malformed chunked body: {why}")
            }
            ResponseError::BodyTooLarge { limit } => write!(f, "upstream body over {limit} bytes"),
            ResponseError::ClosedBeforeResponse => {
                f.write_str("upstream closed the connection before responding")
            }
            ResponseError::ClosedMidResponse => {
                f.write_str("upstream closed the connection mid-response")
            }
            ResponseError::Finished => f.write_str("upstream connection already failed or closed"),
        }
    }
}

impl std::error::Error for ResponseError {}

/// A final response's head, kept while its body arrives.
#[derive(Debug)]
struct Head {
    status: u16,
    version: Version,
    headers: Vec<(String, Vec<u8>)>,
    /// What the head says about reuse; a close-delimited body overrides it.
    keep_alive: bool,
}

/// How the body being read ends (RFC 9112 §6.3).
#[derive(Debug)]
enum Body {
    /// `Content-Length`: this many bytes still to come.
    Length { remaining: u64 },
    /// `Transfer-Encoding: chunked`.
    Chunked(ChunkedDecoder),
    /// Neither: the body ends when the connection does.
    UntilClose,
}

/// Where the decoder is in the response stream.
#[derive(Debug)]
enum State {
    /// Reading a head, interim or final. `scanned` bytes of the input are known to hold no end
    /// of head; `started` is true once any byte of this response arrived (an interim response
    /// included), which is what tells a close mid-response from a close between responses.
    Head { scanned: usize, started: bool },
    /// Reading the body of `head` into `data`.
    Body {
        head: Head,
        body: Body,
        data: Vec<u8>,
    },
    /// An error was returned or the connection closed: nothing more is decoded.
    Finished,
}

/// The decoder for one upstream connection's response stream.
#[derive(Debug)]
pub struct ResponseDecoder {
    state: State,
    /// The request being answered was `HEAD`, so its response has no body (RFC 9112 §6.3 rule
    /// 1). Set for each request with [`ResponseDecoder::expect_response`].
    method_was_head: bool,
    limits: ResponseLimits,
}

impl ResponseDecoder {
    /// A decoder awaiting the response to a request, `HEAD` or not.
    pub fn new(method_was_head: bool, limits: ResponseLimits) -> ResponseDecoder {
        ResponseDecoder {
            state: State::Head {
                scanned: 0,
                started: false,
            },
            method_was_head,
            limits,
        }
    }

    /// Say whether the *next* response answers a `HEAD`, before feeding it: a pipelined or
    /// reused connection carries responses to different methods, and only the request tells
    /// whether a `Content-Length` on the response is followed by a body.
    pub fn expect_response(&mut self, method_was_head: bool) {
        self.method_was_head = method_was_head;
    }

    /// Decode the next response from `input`, the connection's unconsumed bytes.
    ///
    /// The caller drops `consumed` bytes from the front of its buffer after each call, and calls
    /// again after each read (and, for pipelined responses, after each complete one). After an
    /// `Err` the decoder refuses everything.
    pub fn decode(&mut self, input: &[u8]) -> Result<Progress, ResponseError> {
        let result = self.decode_inner(input);
        if result.is_err() {
            self.state = State::Finished;
        }
        result
    }

    /// The upstream closed its side. Completes a body delimited by the close; anything else
    /// half-read is [`ResponseError::ClosedMidResponse`]. With nothing of a response read it is
    /// [`ResponseError::ClosedBeforeResponse`], which only matters if a request was waiting for
    /// one (an idle kept-alive connection closing is normal).
    ///
    /// Call it after feeding every byte read to [`ResponseDecoder::decode`].
    pub fn on_eof(&mut self) -> Result<UpstreamResponse, ResponseError> {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Body {
                head,
                body: Body::UntilClose,
                data,
            } => Ok(finish(head, data, false)),
            State::Head { started: false, .. } => Err(ResponseError::ClosedBeforeResponse),
            State::Head { .. } | State::Body { .. } => Err(ResponseError::ClosedMidResponse),
            State::Finished => Err(ResponseError::Finished),
        }
    }

    fn decode_inner(&mut self, input: &[u8]) -> Result<Progress, ResponseError> {
        let mut consumed = 0;
        // One pass per head: interim 1xx responses loop back for the next head.
        loop {
            let (scanned, started) = match &mut self.state {
                State::Finished => return Err(ResponseError::Finished),
                State::Body { .. } => return self.decode_body(input, consumed),
                State::Head { scanned, started } => (scanned, started),
            };
            let rest = &input[consumed..];
            // Every response starts with its version (RFC 9112 §4). Checking the first five
            // bytes at once refuses an HTTP/2 frame or an HTML page without waiting for a CRLF
            // that may never come.
            let prefix = &rest[..rest.len().min(5)];
            if prefix != &b"HTTP/"[..prefix.len()] {
                return Err(ResponseError::MalformedStatusLine);
            }
            *started |= !rest.is_empty();
            let Some(head_len) = find_head_end(rest, scanned)? else {
                if rest.len() > self.limits.max_head_bytes {
                    return Err(ResponseError::HeadTooLarge {
                        limit: self.limits.max_head_bytes,
                    });
                }
                return Ok(Progress::Incomplete { consumed });
            };
            if head_len > self.limits.max_head_bytes {
                return Err(ResponseError::HeadTooLarge {
                    limit: self.limits.max_head_bytes,
                });
            }
            let (head, body) = parse_head(&rest[..head_len], self.method_was_head, &self.limits)?;
            consumed += head_len;
            let Some(body) = body else {
                // RFC 9110 §15.2: a client MUST be able to parse any number of interim
                // responses before the final one, expected or not. They carry nothing we use.
                log::trace!("upstream interim response {}", head.status);
                self.state = State::Head {
                    scanned: 0,
                    started: true,
                };
                continue;
            };
            let capacity = match body {
                // Trust Content-Length for the allocation only up to what is already here, plus
                // a little: an upstream that announces 16 MiB and sends 10 bytes costs 10 bytes.
                Body::Length { remaining } => {
                    (remaining as usize).min(input.len() - consumed + 64 * 1024)
                }
                Body::Chunked(_) | Body::UntilClose => 0,
            };
            self.state = State::Body {
                head,
                body,
                data: Vec::with_capacity(capacity),
            };
            return self.decode_body(input, consumed);
        }
    }

    /// Feed `input[from..]` to the body being read.
    fn decode_body(&mut self, input: &[u8], from: usize) -> Result<Progress, ResponseError> {
        let limits = self.limits;
        let State::Body { body, data, .. } = &mut self.state else {
            unreachable!("decode_body is only called in the Body state");
        };
        let rest = &input[from..];
        let (used, done) = match body {
            Body::Length { remaining } => {
                let take = (*remaining).min(rest.len() as u64) as usize;
                data.extend_from_slice(&rest[..take]);
                *remaining -= take as u64;
                (take, *remaining == 0)
            }
            Body::Chunked(chunked) => {
                let used = chunked
                    .decode(rest, data, limits.max_body, limits.max_head_bytes)
                    .map_err(|err| chunked_error(err, &limits))?;
                (used, chunked.is_done())
            }
            Body::UntilClose => {
                if data.len() + rest.len() > limits.max_body {
                    return Err(ResponseError::BodyTooLarge {
                        limit: limits.max_body,
                    });
                }
                data.extend_from_slice(rest);
                // Only the close ends it: see on_eof.
                (rest.len(), false)
            }
        };
        let consumed = from + used;
        if !done {
            return Ok(Progress::Incomplete { consumed });
        }
        let finished = std::mem::replace(
            &mut self.state,
            State::Head {
                scanned: 0,
                started: false,
            },
        );
        let State::Body { head, data, .. } = finished else {
            unreachable!("state was Body above");
        };
        let keep_alive = head.keep_alive;
        Ok(Progress::Complete {
            consumed,
            response: finish(head, data, keep_alive),
        })
    }
}

/// The response for a head and its body.
fn finish(head: Head, body: Vec<u8>, keep_alive: bool) -> UpstreamResponse {
    log::trace!(
        "upstream response {} complete, {} body bytes, keep-alive {keep_alive}",
        head.status,
        body.len()
    );
    UpstreamResponse {
        status: head.status,
        version: head.version,
        headers: head.headers,
        body,
        keep_alive,
    }
}

/// The chunked decoder speaks in request terms ([`ParseError`]); say it in upstream terms.
fn chunked_error(err: ParseError, limits: &ResponseLimits) -> ResponseError {
    match err {
        ParseError::BadRequest(why) => ResponseError::MalformedChunkedBody(why),
        ParseError::HeadersTooLarge => ResponseError::HeadTooLarge {
            limit: limits.max_head_bytes,
        },
        ParseError::BodyTooLarge => ResponseError::BodyTooLarge {
            limit: limits.max_body,
        },
        _ => ResponseError::MalformedChunkedBody("invalid chunked body"),
    }
}

/// Look for the blank line that ends the head, scanning only bytes not scanned before.
///
/// Returns the head's length including the final CRLF. RFC 9112 §2.2 lets a recipient accept a
/// bare LF as a line end; we refuse it and a bare CR alike, at the byte that proves it bare. A
/// CR that is the last byte so far is left unscanned: its LF may come with the next read.
fn find_head_end(buf: &[u8], scanned: &mut usize) -> Result<Option<usize>, ResponseError> {
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
fn parse_head(
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
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            ResponseError::UnsupportedVersion
        }
        [b'H', b'T', b'T', b'P', b'/', major] if major.is_ascii_digit() => {
            ResponseError::UnsupportedVersion
        }
        _ => ResponseError::MalformedStatusLine,
    }
}

#[cfg(test)]
mod tests;
