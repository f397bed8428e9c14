//! What a call upstream is: the upstream it goes to, the request, the settings that bound it,
//! and every way it can fail.
//!
//! These are the types a handler sees. The sockets that carry a call live in the reactor
//! ([`super::Outbound`]), or, for the blocking anti-patterns, in [`super::blocking`].

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::http::client::{encode_request, EncodeError, ResponseError, ResponseLimits};
use crate::http::Method;

/// An upstream server: where calls go. Named by an `http://host[:port][/base]` URL and resolved
/// to an address once, when it is parsed: name resolution (`getaddrinfo`) blocks, so it never
/// happens on the reactor. nginx does the same for a `proxy_pass` to a literal host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The URL as given, for logs.
    pub url: String,
    /// The `Host` field of every request: the URL's `host[:port]`, as given.
    pub authority: String,
    /// The address connected to.
    pub addr: SocketAddr,
    /// The URL's path without its trailing `/` (empty for none): every call's path goes under it.
    pub base_path: String,
}

impl Upstream {
    /// Parse `http://host[:port][/base]` and resolve the host (blocking: call it at start-up).
    /// The port defaults to 80. `https` is refused: evloop does not do TLS.
    pub fn parse(url: &str) -> Result<Upstream, String> {
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(format!(
                    "{url}: https is not supported (evloop does not do TLS)"
                ))
            }
            _ => return Err(format!("{url}: expected http://host[:port][/path]")),
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if path.contains(['?', '#']) || !path.bytes().all(|b| matches!(b, 0x21..=0x7E)) {
            return Err(format!(
                "{url}: the path may not hold a query, a fragment or spaces"
            ));
        }
        if authority.is_empty()
            || authority.contains('@')
            || !crate::http::target::is_valid_host(authority.as_bytes(), true)
        {
            return Err(format!("{url}: invalid host"));
        }
        let with_port = match authority.rsplit_once(':') {
            Some((_, port)) if !authority.ends_with(']') => {
                if port.parse::<u16>().is_err() {
                    return Err(format!("{url}: invalid port"));
                }
                authority.to_string()
            }
            _ => format!("{authority}:80"),
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|err| format!("{url}: cannot resolve {authority}: {err}"))?
            .next()
            .ok_or_else(|| format!("{url}: {authority} has no address"))?;
        Ok(Upstream {
            url: url.to_string(),
            authority: authority.to_string(),
            addr,
            base_path: path.trim_end_matches('/').to_string(),
        })
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// One request to send upstream.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// Where it goes.
    pub upstream: Arc<Upstream>,
    /// The method.
    pub method: Method,
    /// Path and query, starting with `/`, under the upstream's base path.
    pub path: String,
    /// Extra header fields (`Host`, `Content-Length` and the connection's fields are written
    /// by evloop and refused here).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, if the request has one.
    pub body: Option<Vec<u8>>,
    /// The largest response body this call accepts (a response over it fails the call, 502);
    /// `None`: [`CallLimits::response`]'s. A caller that needs only a small answer says so:
    /// every response is held whole until its request's continuation runs.
    pub max_body: Option<usize>,
}

impl CallRequest {
    /// `GET path` on `upstream`.
    pub fn get(upstream: &Arc<Upstream>, path: impl Into<String>) -> CallRequest {
        CallRequest {
            upstream: Arc::clone(upstream),
            method: Method::Get,
            path: path.into(),
            headers: Vec::new(),
            body: None,
            max_body: None,
        }
    }

    /// Append the request's bytes to `out` (nothing on error).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let fields: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_slice()))
            .collect();
        let path = format!("{}{}", self.upstream.base_path, self.path);
        encode_request(
            out,
            self.method,
            &self.upstream.authority,
            &path,
            &fields,
            self.body.as_deref(),
        )
    }

    /// The limits its response is read within: `limits`, with this request's `max_body` if it
    /// is smaller.
    pub fn response_limits(&self, limits: ResponseLimits) -> ResponseLimits {
        ResponseLimits {
            max_body: self
                .max_body
                .map_or(limits.max_body, |max| max.min(limits.max_body)),
            ..limits
        }
    }

    /// May the request be sent again if a kept-alive connection turns out to have been closed
    /// before it was answered? Only if repeating it cannot do harm (RFC 9110 §9.2.2).
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self.method,
            Method::Get | Method::Head | Method::Options | Method::Put | Method::Delete
        )
    }
}

/// What bounds the calls a server makes (`--upstream-*` options).
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// Connections to upstreams open at once, idle ones included. Calls past it wait in a
    /// queue for a connection.
    pub max_connections: usize,
    /// Calls that may wait for a connection; past it a call fails at once (503). The command
    /// line makes it 64 × `max_connections`.
    pub max_waiting: usize,
    /// From starting to connect to connected (then 504).
    pub connect_timeout: Duration,
    /// From the first byte of the request sent to the last byte of the response (then 504).
    pub response_timeout: Duration,
    /// How long a kept-alive connection may sit idle before evloop closes it. Below the
    /// upstream's own keep-alive timeout (5 s for evloop and uvicorn), so that evloop, not the
    /// upstream, closes first, and a request is rarely sent on a connection being closed.
    pub idle_timeout: Duration,
    /// Limits on each response.
    pub response: ResponseLimits,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            max_connections: 256,
            max_waiting: crate::config::WAITING_PER_UPSTREAM_CONNECTION * 256,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(4),
            response: ResponseLimits::default(),
        }
    }
}

/// Why a call failed. Each is answered with a JSON error naming the cause: 502 when the
/// upstream did something wrong, 504 when it took too long, 503 when evloop would not start
/// the call, 500 when the handler asked for a request that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The upstream refused the connection (nothing listens there): 502.
    Refused,
    /// Connecting failed otherwise (unreachable network, no route): 502.
    Connect(String),
    /// Not connected within [`CallLimits::connect_timeout`]: 504.
    ConnectTimeout,
    /// The connection was reset, or failed, while the call used it: 502.
    Reset,
    /// The upstream answered something that is not a valid HTTP/1.1 response, or closed the
    /// connection before the response was complete: 502.
    Protocol(ResponseError),
    /// No complete response within [`CallLimits::response_timeout`]: 504.
    ResponseTimeout,
    /// [`CallLimits::max_waiting`] calls already wait for a connection: 503.
    TooManyWaiting,
    /// The request cannot be written (a handler's bug, or a client trying to inject a
    /// header): 500.
    BadRequest(EncodeError),
}

impl CallError {
    /// The status evloop answers its own client with.
    pub fn status(&self) -> u16 {
        match self {
            CallError::Refused
            | CallError::Connect(_)
            | CallError::Reset
            | CallError::Protocol(_) => 502,
            CallError::ConnectTimeout | CallError::ResponseTimeout => 504,
            CallError::TooManyWaiting => 503,
            CallError::BadRequest(_) => 500,
        }
    }

    /// The error from an I/O failure while connecting.
    pub fn from_connect(err: &io::Error) -> CallError {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => CallError::Refused,
            io::ErrorKind::TimedOut => CallError::ConnectTimeout,
            _ => CallError::Connect(err.to_string()),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Refused => f.write_str("upstream refused the connection"),
            CallError::Connect(why) => write!(f, "cannot connect to upstream: {why}"),
            CallError::ConnectTimeout => {
                f.write_str("upstream did not accept the connection in time")
            }
            CallError::Reset => f.write_str("upstream reset the connection"),
            CallError::Protocol(err) => err.fmt(f),
            CallError::ResponseTimeout => f.write_str("upstream did not answer in time"),
            CallError::TooManyWaiting => {
                f.write_str("server busy: too many calls waiting for an upstream connection")
            }
            CallError::BadRequest(err) => write!(f, "cannot send the upstream request: {err}"),
        }
    }
}

impl std::error::Error for CallError {}

impl From<ResponseError> for CallError {
    fn from(err: ResponseError) -> CallError {
        CallError::Protocol(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstream_urls() {
        let upstream = Upstream::parse("http://127.0.0.1:9000/api/").unwrap();
        assert_eq!(upstream.addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(upstream.authority, "127.0.0.1:9000");
        assert_eq!(upstream.base_path, "/api");
        let bare = Upstream::parse("HTTP://localhost").unwrap();
        assert_eq!(bare.addr.port(), 80);
        assert_eq!(bare.base_path, "");
        let v6 = Upstream::parse("http://[::1]:8080").unwrap();
        assert_eq!(v6.addr, "[::1]:8080".parse().unwrap());
        for bad in [
            "https://127.0.0.1",
            "127.0.0.1:80",
            "http://",
            "http://a b",
            "http://127.0.0.1:99999",
            "http://127.0.0.1/x?y",
            "http://user@127.0.0.1",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encodes_under_the_base_path() {
        let upstream = Arc::new(Upstream::parse("http://127.0.0.1:9000/api").unwrap());
        let mut out = Vec::new();
        CallRequest::get(&upstream, "/sleep?ms=5")
            .encode(&mut out)
            .unwrap();
        assert_eq!(
            out,
            b"GET /api/sleep?ms=5 HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n\r\n"
        );
        let mut bad = CallRequest::get(&upstream, "/x");
        bad.headers.push(("X-A".into(), b"1\r\nEvil: 1".to_vec()));
        assert_eq!(bad.encode(&mut out), Err(EncodeError::InvalidFieldValue));
    }

    #[test]
    fn statuses_follow_the_cause() {
        assert_eq!(CallError::Refused.status(), 502);
        assert_eq!(CallError::Reset.status(), 502);
        assert_eq!(
            CallError::Protocol(ResponseError::MalformedStatusLine).status(),
            502
        );
        assert_eq!(CallError::ConnectTimeout.status(), 504);
        assert_eq!(CallError::ResponseTimeout.status(), 504);
        assert_eq!(CallError::TooManyWaiting.status(), 503);
    }
}
