//! The request a handler sees: method, path, query, headers and body.

use std::fmt;

/// The methods evloop knows. Anything else is answered 501 (RFC 9110 §9.1: "An origin server
/// that receives a request method that is unrecognized or not implemented SHOULD respond with
/// the 501 status code").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Trace,
    Connect,
}

impl Method {
    /// Parse a method token (case-sensitive, RFC 9110 §9.1).
    pub fn parse(token: &str) -> Option<Method> {
        Some(match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            "TRACE" => Method::Trace,
            "CONNECT" => Method::Connect,
            _ => return None,
        })
    }

    /// The method's token, as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Trace => "TRACE",
            Method::Connect => "CONNECT",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The two HTTP versions evloop speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// One parsed request, borrowed from the connection's read buffer where possible.
///
/// Bodiless requests (the hot path: `GET /plaintext` under `wrk`) are never copied: `path`,
/// `query` and `headers` point into the bytes the reactor just read. A request with a body owns
/// the body, so an offloaded handler can move it into its job without a copy.
#[derive(Debug)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// The path part of the request target, e.g. `/cpu`.
    pub path: &'a str,
    /// The query string without the `?`, e.g. `ms=5&mode=inline`; empty when absent.
    pub query: &'a str,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The header fields in the order received.
    pub headers: &'a [httparse::Header<'a>],
    /// The decoded body (chunked framing removed); empty for bodiless requests.
    pub body: Vec<u8>,
}

impl<'a> Request<'a> {
    /// The first value of the query parameter `name`, e.g. `query_param("ms")` on `ms=5` gives
    /// `Some("5")`. Values are returned as sent: evloop's own parameters are numbers and words, so
    /// percent-decoding is left to handlers that need it.
    pub fn query_param(&self, name: &str) -> Option<&'a str> {
        self.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }

    /// The first header named `name` (case-insensitive), as bytes.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_found_by_name() {
        let req = Request {
            method: Method::Get,
            path: "/cpu",
            query: "ms=5&mode=inline&flag",
            version: Version::Http11,
            headers: &[],
            body: Vec::new(),
        };
        assert_eq!(req.query_param("ms"), Some("5"));
        assert_eq!(req.query_param("mode"), Some("inline"));
        assert_eq!(req.query_param("flag"), Some(""));
        assert_eq!(req.query_param("m"), None);
    }
}
