//! The ways a request's bytes can break HTTP/1.1: what the decoders return.
//!
//! A [`ParseError`] is a protocol error, not an application one: it knows the status code the
//! RFCs imply and a short message, and nothing about routes, jobs or audio. Every one of them
//! means the byte stream can no longer be trusted (where the next request starts is unknown),
//! so whoever answers it must close the connection afterwards.

use std::fmt;

/// A request the decoder refuses. Each variant names the status code it implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Malformed request (400): bad framing, bare CR or LF, invalid bytes, a bad `Host` or
    /// target, a smuggling shape. The text says which rule was broken.
    BadRequest(&'static str),
    /// The request line alone is longer than the head limit (414).
    UriTooLong,
    /// The header block or the trailer section is longer than the head limit, or has more
    /// fields than allowed (431).
    HeadersTooLarge,
    /// The body is larger than the body limit (413): known from `Content-Length` before reading,
    /// or from a chunk size while decoding.
    BodyTooLarge,
    /// `Expect` with a value other than `100-continue` (417).
    ExpectationFailed,
    /// A method this server does not implement (501).
    MethodNotImplemented,
    /// A well-formed HTTP version other than 1.0 and 1.1 (505).
    VersionNotSupported,
}

impl ParseError {
    /// The status code this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::BadRequest(_) => 400,
            ParseError::BodyTooLarge => 413,
            ParseError::UriTooLong => 414,
            ParseError::ExpectationFailed => 417,
            ParseError::HeadersTooLarge => 431,
            ParseError::MethodNotImplemented => 501,
            ParseError::VersionNotSupported => 505,
        }
    }

    /// A short message for the client, saying which rule was broken.
    pub fn message(&self) -> &'static str {
        match self {
            ParseError::BadRequest(why) => why,
            ParseError::UriTooLong => "request line too long",
            ParseError::HeadersTooLarge => "request header block too large",
            ParseError::BodyTooLarge => "request body too large",
            ParseError::ExpectationFailed => "only Expect: 100-continue is supported",
            ParseError::MethodNotImplemented => "method not implemented",
            ParseError::VersionNotSupported => "HTTP version not supported",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.message())
    }
}

impl std::error::Error for ParseError {}
