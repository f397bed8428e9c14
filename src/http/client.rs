//! The client side of HTTP/1.1, without sockets: requests out, responses in.
//!
//! The reactor calls upstream servers itself, on non-blocking sockets, so that a handler can
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
//!    RFC 9112 §7.1), decoded by [`ChunkedDecoder`](super::chunked::ChunkedDecoder);
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

use super::error::ParseError;
use super::request::Version;

mod encode;
mod head;

use head::{find_head_end, parse_head, Body, Head};

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
/// (RFC 9110 §15.6.3) with its `Display` text naming the cause.
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

#[cfg(test)]
mod tests;
