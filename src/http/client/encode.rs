//! The request encoder: what evloop sends to an upstream.
//!
//! The request is HTTP/1.1 in origin form (RFC 9112 §3.2.1) with a `Host` field, and a
//! `Content-Length` when it has a body. It sends no `Connection` field: keep-alive is HTTP/1.1's
//! default (RFC 9112 §9.3), and closing is the reactor's decision, not the request's.
//!
//! Every piece a caller supplies is checked before a byte is written. The path, the host and
//! the field values may come from evloop's own clients, so a CR or LF in one of them would let a
//! client add a header or a whole second request to what evloop sends (request splitting). Such
//! a request is refused, never "cleaned".

use std::fmt;

use crate::http::request::Method;
use crate::http::syntax::{is_field_vchar, is_ows, is_tchar};
use crate::http::target::is_valid_host;

/// Fields the encoder writes itself. A caller's copy could contradict the framing (two
/// `Content-Length`s, a `Transfer-Encoding` the body does not follow) or the connection's fate.
const RESERVED_FIELDS: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

/// A request the encoder refuses to write: a bug in the caller, or a client trying to steer
/// the request, never the upstream's doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// `CONNECT` needs an authority-form target and a tunnel, which evloop does not do.
    UnsupportedMethod,
    /// The host is not `uri-host [ ":" port ]` (RFC 9110 §7.2).
    InvalidHost,
    /// The path does not start with `/`, or holds a byte outside visible ASCII.
    InvalidPath,
    /// A field name that is not a token (RFC 9110 §5.1).
    InvalidFieldName,
    /// A field value with CR, LF, NUL or another control byte (RFC 9110 §5.5).
    InvalidFieldValue,
    /// A field the encoder writes itself, or one that would change the connection.
    ReservedField,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncodeError::UnsupportedMethod => "CONNECT is not supported upstream",
            EncodeError::InvalidHost => "invalid upstream host",
            EncodeError::InvalidPath => "invalid upstream path",
            EncodeError::InvalidFieldName => "invalid header name for upstream",
            EncodeError::InvalidFieldValue => "invalid header value for upstream",
            EncodeError::ReservedField => "header set by the upstream request encoder",
        })
    }
}

impl std::error::Error for EncodeError {}

/// Append one request to `out`: request line, `Host`, the caller's `fields`, `Content-Length`
/// when `body` is `Some` (even empty: RFC 9110 §8.6 wants it for a `POST` with no content), the
/// empty line, the body.
///
/// `path_and_query` is the origin-form target, `/path?query`. Nothing is written on error.
pub fn encode_request(
    out: &mut Vec<u8>,
    method: Method,
    host: &str,
    path_and_query: &str,
    fields: &[(&str, &[u8])],
    body: Option<&[u8]>,
) -> Result<(), EncodeError> {
    if method == Method::Connect {
        return Err(EncodeError::UnsupportedMethod);
    }
    if !is_valid_host(host.as_bytes(), true) {
        return Err(EncodeError::InvalidHost);
    }
    // origin-form = absolute-path [ "?" query ] (RFC 9112 §3.2.1). Checking visible ASCII keeps
    // out SP, CR, LF and NUL, which are what would split the request line; the finer URI grammar
    // is the caller's business.
    let path = path_and_query.as_bytes();
    if path.first() != Some(&b'/') || !path.iter().all(|&b| matches!(b, 0x21..=0x7E)) {
        return Err(EncodeError::InvalidPath);
    }
    for (name, value) in fields {
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(EncodeError::InvalidFieldName);
        }
        if RESERVED_FIELDS
            .iter()
            .any(|reserved| name.eq_ignore_ascii_case(reserved))
        {
            return Err(EncodeError::ReservedField);
        }
        if !value.iter().all(|&b| is_field_vchar(b) || is_ows(b)) {
            return Err(EncodeError::InvalidFieldValue);
        }
    }

    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in fields {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(body) = body {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
    } else {
        out.extend_from_slice(b"\r\n");
    }
    Ok(())
}
