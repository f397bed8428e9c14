//! The incremental request decoder: bytes in, requests out.
//!
//! # Theory of operation
//!
//! A connection's byte stream is a sequence of requests, each a *head* (request line and header
//! fields, ending in an empty line) optionally followed by a *body*. [`RequestDecoder::decode`]
//! is called with whatever bytes the connection has buffered and answers one of:
//!
//! - [`Decoded::Incomplete`]: not a whole request yet; the first `consumed` bytes are taken (body
//!   bytes are copied into the decoder, so the caller can drop them);
//! - [`Decoded::Request`]: a bodiless request, borrowed from the buffer — the hot path, with no
//!   allocation and no copy;
//! - [`Decoded::Owned`]: a request whose body has been fully read; its head was copied out of the
//!   buffer when the body started, because the body may arrive over many reads.
//!
//! Two properties matter more than speed:
//!
//! 1. **Linear time under slow clients.** httparse is stateless: it would re-parse the head from
//!    byte 0 on every read. So the decoder first scans only the *new* bytes for the blank line
//!    that ends the head (hyper's `is_complete_fast`), and calls httparse once per request.
//! 2. **One reading of the framing.** Every rule of RFC 9112 §6 that request smuggling exploits
//!    is checked here, and any violation is an error after which the connection is closed:
//!    `Content-Length` together with `Transfer-Encoding`, differing or malformed lengths, a
//!    transfer coding other than `chunked`, bare CR or LF, obs-fold, invalid bytes, a missing,
//!    repeated or malformed `Host`, a malformed target ([`super::target`]), and in chunked bodies
//!    malformed size lines, extensions and trailer lines ([`super::chunked`]). The body is
//!    decoded before the request is handed on, so its framing is checked even when the route
//!    will answer 404 or 405.

use std::mem::MaybeUninit;

use httparse::Header;

use super::chunked::ChunkedDecoder;
use super::error::ParseError;
use super::request::{Method, Request, Version};
use super::syntax::is_http_version_shape;
use super::target::{is_valid_host, Target};

/// Size limits, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `--max-header-bytes`: request line plus header block. Over it: 414 if the request line
    /// alone does not fit, otherwise 431.
    pub max_head_bytes: usize,
    /// `--max-headers`: header fields. Over it: 431.
    pub max_headers: usize,
    /// `--max-body`: decoded body bytes. Over it: 413, from `Content-Length` before reading a
    /// byte of the body, or while decoding chunks.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_body: 16 * 1024 * 1024,
        }
    }
}

/// The most header fields a head may have, whatever `--max-headers` says: the size of the
/// uninitialised array the caller keeps on its stack for httparse.
pub const HEADER_ARRAY: usize = 256;

/// Stack storage for one head's header fields (uninitialised: creating it costs nothing).
pub type HeaderStorage<'b> = [MaybeUninit<Header<'b>>; HEADER_ARRAY];

/// Fresh header storage.
pub fn header_storage<'b>() -> HeaderStorage<'b> {
    [const { MaybeUninit::uninit() }; HEADER_ARRAY]
}

/// How the body of a request is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What the head says about the connection and the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadInfo {
    /// The method.
    pub method: Method,
    /// The version.
    pub version: Version,
    /// Whether the client wants the connection kept open after this request: HTTP/1.1 unless it
    /// sent `Connection: close`; HTTP/1.0 only if it sent `Connection: keep-alive`.
    pub keep_alive: bool,
    /// How the body is framed.
    pub framing: Framing,
    /// The client sent `Expect: 100-continue` and waits for our go-ahead before the body.
    pub expect_continue: bool,
}

/// A head copied out of the read buffer, for requests whose body arrives over several reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedHead {
    /// What the head says.
    pub info: HeadInfo,
    /// The request target.
    pub target: String,
    /// The header fields.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl OwnedHead {
    /// Build a [`Request`] view. `scratch` receives the header references and must outlive it.
    pub fn request<'a>(&'a self, body: Vec<u8>, scratch: &'a mut Vec<Header<'a>>) -> Request<'a> {
        scratch.clear();
        scratch.extend(self.headers.iter().map(|(name, value)| Header {
            name: name.as_str(),
            value: value.as_slice(),
        }));
        // The decoder checked the target before building this head; the fallback is for heads
        // built by hand.
        let (path, query) = match Target::parse(&self.target) {
            Ok(target) => (target.path, target.query),
            Err(_) => (self.target.as_str(), ""),
        };
        Request {
            method: self.info.method,
            path,
            query,
            version: self.info.version,
            headers: scratch.as_slice(),
            body,
        }
    }
}

/// The result of one [`RequestDecoder::decode`] call.
#[derive(Debug)]
pub enum Decoded<'a> {
    /// More bytes are needed. `consumed` bytes at the front of the input are done with.
    /// `send_continue` is true exactly once per request: when its head asked for
    /// `Expect: 100-continue` and the body has not fully arrived with the head.
    Incomplete {
        consumed: usize,
        send_continue: bool,
    },
    /// A complete bodiless request, borrowed from the input; `consumed` bytes belong to it.
    Request {
        consumed: usize,
        info: HeadInfo,
        request: Request<'a>,
    },
    /// A complete request with a body; `consumed` bytes of this input were used.
    Owned {
        consumed: usize,
        head: OwnedHead,
        body: Vec<u8>,
    },
}

/// The body decoder for the request being read.
#[derive(Debug)]
enum BodyState {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
}

/// Where the decoder is between requests.
#[derive(Debug)]
enum State {
    /// Reading a head. `scanned` bytes of the input are known to contain no end of head, and
    /// `line_end` records whether the request line has ended (to tell 414 from 431).
    Head { scanned: usize, line_end: bool },
    /// Reading the body of `head`.
    Body {
        head: OwnedHead,
        body: BodyState,
        data: Vec<u8>,
    },
    /// An error was returned: the stream cannot be trusted any more, nothing else is decoded.
    Failed,
}

/// The decoder for one connection's request stream.
#[derive(Debug)]
pub struct RequestDecoder {
    state: State,
}

impl Default for RequestDecoder {
    fn default() -> Self {
        RequestDecoder::new()
    }
}

impl RequestDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> RequestDecoder {
        RequestDecoder {
            state: State::Head {
                scanned: 0,
                line_end: false,
            },
        }
    }

    /// True while a body is being read (the body timeout applies).
    pub fn in_body(&self) -> bool {
        matches!(self.state, State::Body { .. })
    }

    /// Bytes of the current request's body held so far (0 between requests).
    pub fn body_buffered(&self) -> usize {
        match &self.state {
            State::Body { data, .. } => data.len(),
            State::Head { .. } | State::Failed => 0,
        }
    }

    /// Stop decoding for good and drop the body held so far: the connection has answered without
    /// reading the rest of this request (a refusal instead of `100 Continue`, a timeout, no
    /// memory left for bodies), so nothing after it can be framed.
    pub fn abandon(&mut self) {
        self.state = State::Failed;
    }

    /// The head of the request whose body is being read, while it is; `None` between requests.
    ///
    /// The head is complete and checked before the body starts, so its route is already known.
    /// A connection can look it up when the decoder asks for `100 Continue` and, if the route
    /// will fail anyway (404, 405, a bad query), answer that final status instead — RFC 9110
    /// §10.1.1 allows it, and the client then need not send a body it would be refused for.
    /// After such an answer the body's bytes are still on their way, so the connection must
    /// close (or read and discard them): this decoder would otherwise read them as the body.
    pub fn pending_head(&self) -> Option<&OwnedHead> {
        match &self.state {
            State::Body { head, .. } => Some(head),
            State::Head { .. } | State::Failed => None,
        }
    }

    /// Decode the next request from `input`, the connection's unconsumed bytes.
    ///
    /// The caller drops `consumed` bytes from the front of its buffer after each call and calls
    /// again while requests keep coming. After an `Err`, the decoder refuses everything.
    pub fn decode<'a>(
        &mut self,
        input: &'a [u8],
        storage: &'a mut [MaybeUninit<Header<'a>>],
        limits: &Limits,
    ) -> Result<Decoded<'a>, ParseError> {
        match self.decode_inner(input, storage, limits) {
            Ok(decoded) => Ok(decoded),
            Err(err) => {
                self.state = State::Failed;
                Err(err)
            }
        }
    }

    fn decode_inner<'a>(
        &mut self,
        input: &'a [u8],
        storage: &'a mut [MaybeUninit<Header<'a>>],
        limits: &Limits,
    ) -> Result<Decoded<'a>, ParseError> {
        let (scanned, line_end) = match &mut self.state {
            State::Failed => return Err(ParseError::BadRequest("connection already failed")),
            State::Body { .. } => return self.decode_body(input, 0, false, limits),
            State::Head { scanned, line_end } => (scanned, line_end),
        };

        // RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF) received prior
        // to the request-line. We skip any number, which is what clients that append a stray
        // CRLF after a POST body need.
        let mut start = 0;
        while input.len() >= start + 2 && &input[start..start + 2] == b"\r\n" {
            start += 2;
        }
        if start > 0 {
            *scanned = 0;
            *line_end = false;
            if input.len() == start || input[start..] == *b"\r" {
                return Ok(Decoded::Incomplete {
                    consumed: start,
                    send_continue: false,
                });
            }
        }
        let head = &input[start..];

        let Some(head_len) = find_head_end(head, scanned, line_end)? else {
            if head.len() > limits.max_head_bytes {
                return Err(if *line_end {
                    ParseError::HeadersTooLarge
                } else {
                    ParseError::UriTooLong
                });
            }
            return Ok(Decoded::Incomplete {
                consumed: start,
                send_continue: false,
            });
        };
        if head_len > limits.max_head_bytes {
            let line_len = head.iter().position(|&b| b == b'\n').unwrap_or(head_len);
            return Err(if line_len > limits.max_head_bytes {
                ParseError::UriTooLong
            } else {
                ParseError::HeadersTooLarge
            });
        }
        *scanned = 0;
        *line_end = false;

        let max_headers = limits.max_headers.clamp(1, storage.len());
        let mut parsed = httparse::Request::new(&mut []);
        match parsed.parse_with_uninit_headers(&head[..head_len], &mut storage[..max_headers]) {
            Ok(httparse::Status::Complete(n)) if n == head_len => {}
            Ok(_) => return Err(ParseError::BadRequest("malformed request head")),
            Err(httparse::Error::TooManyHeaders) => return Err(ParseError::HeadersTooLarge),
            Err(httparse::Error::Version) => return Err(version_error(head)),
            Err(httparse::Error::HeaderName) => {
                // A header line starting with SP/HTAB is obs-fold (RFC 9112 §5.2): rejected.
                return Err(ParseError::BadRequest("invalid header name or obs-fold"));
            }
            Err(httparse::Error::HeaderValue) => {
                return Err(ParseError::BadRequest("invalid byte in header value"))
            }
            Err(_) => return Err(ParseError::BadRequest("malformed request line")),
        }
        let method_token = parsed.method.unwrap_or("");
        let target = parsed.path.unwrap_or("");
        let version = match parsed.version {
            Some(0) => Version::Http10,
            Some(1) => Version::Http11,
            _ => return Err(ParseError::VersionNotSupported),
        };
        let headers: &'a [Header<'a>] = parsed.headers;
        let (info, parts) = validate_head(method_token, target, version, headers, limits)?;
        let consumed = start + head_len;

        if info.framing == Framing::None {
            return Ok(Decoded::Request {
                consumed,
                info,
                request: Request {
                    method: info.method,
                    path: parts.path,
                    query: parts.query,
                    version,
                    headers,
                    body: Vec::new(),
                },
            });
        }

        // The body may take many reads: copy the head out of the buffer and switch state.
        let owned = OwnedHead {
            info,
            target: target.to_string(),
            headers: headers
                .iter()
                .map(|h| (h.name.to_string(), h.value.to_vec()))
                .collect(),
        };
        let body = match info.framing {
            Framing::Length(n) => BodyState::Length { remaining: n },
            _ => BodyState::Chunked(ChunkedDecoder::new()),
        };
        let capacity = match info.framing {
            // Trust Content-Length for the allocation only up to what is already here, plus a
            // little: a client that announces 16 MiB and sends 10 bytes costs us 10 bytes.
            Framing::Length(n) => (n as usize).min(input.len() - consumed + 64 * 1024),
            _ => 0,
        };
        self.state = State::Body {
            head: owned,
            body,
            data: Vec::with_capacity(capacity),
        };
        self.decode_body(input, consumed, info.expect_continue, limits)
    }

    /// Feed `input[from..]` to the body decoder.
    fn decode_body<'a>(
        &mut self,
        input: &'a [u8],
        from: usize,
        expect_continue: bool,
        limits: &Limits,
    ) -> Result<Decoded<'a>, ParseError> {
        let State::Body { body, data, .. } = &mut self.state else {
            unreachable!("decode_body is only called in the Body state");
        };
        let rest = &input[from..];
        let (used, done) = match body {
            BodyState::Length { remaining } => {
                let take = (*remaining).min(rest.len() as u64) as usize;
                data.extend_from_slice(&rest[..take]);
                *remaining -= take as u64;
                (take, *remaining == 0)
            }
            BodyState::Chunked(chunked) => {
                let used = chunked.decode(rest, data, limits.max_body, limits.max_head_bytes)?;
                (used, chunked.is_done())
            }
        };
        let consumed = from + used;
        if !done {
            return Ok(Decoded::Incomplete {
                consumed,
                send_continue: expect_continue,
            });
        }
        let finished = std::mem::replace(
            &mut self.state,
            State::Head {
                scanned: 0,
                line_end: false,
            },
        );
        let State::Body { head, data, .. } = finished else {
            unreachable!("state was Body above");
        };
        Ok(Decoded::Owned {
            consumed,
            head,
            body: data,
        })
    }
}

/// Look for the blank line that ends the head, scanning only bytes not scanned before and
/// checking every line end on the way.
///
/// Returns the head's length including the final CRLF. RFC 9112 §2.2 lets a server accept a bare
/// LF as a line end, and requires a bare CR to be rejected or replaced: we refuse both (a server
/// and a proxy in front of it that disagree about where a line ends is a smuggling vector), at
/// the byte that proves a CR or LF bare, so a malformed head is answered at once instead of
/// waiting for a blank line that will never come. A CR that is the last byte so far is left
/// unscanned: its LF may arrive with the next read.
fn find_head_end(
    buf: &[u8],
    scanned: &mut usize,
    line_end: &mut bool,
) -> Result<Option<usize>, ParseError> {
    let mut i = *scanned;
    // One comparison per byte finds CR (13) and LF (10) alike: the only other bytes at or below
    // CR are controls that httparse refuses later (and HTAB, which is allowed), stepped over here.
    while let Some(offset) = buf[i..].iter().position(|&b| b <= b'\r') {
        let cr = i + offset;
        match buf[cr] {
            b'\r' => {}
            // Every CR LF is stepped over below, so a LF found here has no CR before it.
            b'\n' => return Err(ParseError::BadRequest("bare LF in request head")),
            _ => {
                i = cr + 1;
                continue;
            }
        }
        match buf.get(cr + 1) {
            Some(b'\n') => {}
            Some(_) => return Err(ParseError::BadRequest("bare CR in request head")),
            None => {
                *scanned = cr;
                return Ok(None);
            }
        }
        let lf = cr + 1;
        *line_end = true;
        if lf >= 3 && &buf[lf - 3..=lf] == b"\r\n\r\n" {
            return Ok(Some(lf + 1));
        }
        i = lf + 1;
    }
    *scanned = buf.len();
    Ok(None)
}

/// httparse reports `HTTP/2.0` and `HTTP/1.x` alike as a version error: 505 for a well-formed
/// version we do not speak, 400 for garbage.
fn version_error(head: &[u8]) -> ParseError {
    let line_end = head.iter().position(|&b| b == b'\r').unwrap_or(head.len());
    let line = &head[..line_end];
    // method SP request-target SP HTTP-version: anything but three parts is not a version issue.
    if line.split(|&b| b == b' ').count() != 3 {
        return ParseError::BadRequest("malformed request line");
    }
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or(&[]);
    if is_http_version_shape(version) {
        ParseError::VersionNotSupported
    } else {
        ParseError::BadRequest("malformed request line")
    }
}

/// Check the head's semantics: method, target, `Host`, and the body framing (RFC 9112 §6.3).
/// Returns what the head says and the target split into path and query.
fn validate_head<'t>(
    method_token: &str,
    target: &'t str,
    version: Version,
    headers: &[Header<'_>],
    limits: &Limits,
) -> Result<(HeadInfo, Target<'t>), ParseError> {
    let method = Method::parse(method_token).ok_or(ParseError::MethodNotImplemented)?;
    let target = Target::parse(target)?;

    let mut hosts = 0;
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    let mut close = false;
    let mut keep_alive = false;
    let mut expect_continue = false;
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            // RFC 9112 §3.2: a Host "with an invalid field value" is 400. An empty value is
            // valid when the target carries no authority (origin and asterisk forms: a client
            // MUST send an empty Host when the target URI has none); with an absolute-form
            // target the client MUST repeat its authority, so the host may not be empty.
            if !is_valid_host(header.value, target.authority.is_some()) {
                return Err(ParseError::BadRequest("invalid Host header"));
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            // RFC 9112 §6.3 rule 5: an invalid Content-Length, or several that differ, is an
            // unrecoverable framing error. Repeats of the same value are tolerated.
            let value = parse_content_length(header.value)?;
            if content_length.is_some_and(|seen| seen != value) {
                return Err(ParseError::BadRequest("conflicting Content-Length"));
            }
            content_length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // The only coding evloop accepts is a single `chunked`. Anything else (gzip,
            // "chunked, chunked", an empty value) means we could not find the end of the body
            // the way a proxy in front of us might: reject (RFC 9112 §6.3 rule 4).
            for coding in split_tokens(header.value) {
                if chunked || !coding.eq_ignore_ascii_case(b"chunked") {
                    return Err(ParseError::BadRequest("unsupported Transfer-Encoding"));
                }
                chunked = true;
            }
            transfer_encoding = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for option in split_tokens(header.value) {
                if option.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            // RFC 9110 §10.1.1: `Expect = #expectation`, and an empty list expects nothing.
            // The one expectation defined is 100-continue; any other is 417.
            let value = header.value.trim_ascii();
            if value.eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else if !value.is_empty() {
                return Err(ParseError::ExpectationFailed);
            }
        }
    }

    // RFC 9112 §3.2: "A server MUST respond with a 400 … to any HTTP/1.1 request message that
    // lacks a Host header field and to any request message that contains more than one Host
    // header field line" — any request, HTTP/1.0 included.
    if hosts > 1 {
        return Err(ParseError::BadRequest("duplicate Host header"));
    }
    if version == Version::Http11 && hosts == 0 {
        return Err(ParseError::BadRequest("missing Host header"));
    }
    if transfer_encoding && content_length.is_some() {
        // RFC 9112 §6.1: such a message "ought to be handled as an error"; it is the classic
        // CL.TE smuggling shape.
        return Err(ParseError::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if transfer_encoding && (version == Version::Http10 || !chunked) {
        return Err(ParseError::BadRequest("unsupported Transfer-Encoding"));
    }

    let framing = match content_length {
        _ if chunked => Framing::Chunked,
        Some(0) | None => Framing::None,
        Some(n) if n > limits.max_body as u64 => return Err(ParseError::BodyTooLarge),
        Some(n) => Framing::Length(n),
    };
    let keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => keep_alive && !close,
    };
    let info = HeadInfo {
        method,
        version,
        keep_alive,
        framing,
        // Only meaningful for a request with a body, and only in HTTP/1.1 (RFC 9110 §10.1.1:
        // a server MUST ignore 100-continue from an HTTP/1.0 client).
        expect_continue: expect_continue && framing != Framing::None && version == Version::Http11,
    };
    Ok((info, target))
}

/// `Content-Length = 1*DIGIT`, nothing else: no sign, no spaces inside, no list, no overflow.
pub(super) fn parse_content_length(value: &[u8]) -> Result<u64, ParseError> {
    let bad = ParseError::BadRequest("invalid Content-Length");
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    Ok(value
        .iter()
        .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0')))
}

/// Split a comma-separated header value into trimmed, non-empty tokens.
pub(super) fn split_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|token| token.trim_ascii())
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests;
