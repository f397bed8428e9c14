//! The request target and the `Host` field (RFC 9112 §3.2, RFC 3986 §3.2).
//!
//! ```text
//! request-target = origin-form / absolute-form / authority-form / asterisk-form
//! origin-form    = absolute-path [ "?" query ]
//! absolute-form  = absolute-URI                  ; here: "http" or "https" only
//! asterisk-form  = "*"
//! Host           = uri-host [ ":" port ]
//! authority      = [ userinfo "@" ] host [ ":" port ]
//! host           = IP-literal / IPv4address / reg-name
//! port           = *DIGIT
//! ```
//!
//! Authority-form (`CONNECT host:port`) is refused with the other shapes evloop does not serve.
//! No form has a fragment: a `#` anywhere in a target is an error.

use super::error::ParseError;
use super::syntax::{is_sub_delim, is_unreserved};

/// A checked request target, split into what routing needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// The path, e.g. `/cpu`; `/` for an absolute-form target with an empty path; `*` for the
    /// asterisk form.
    pub path: &'a str,
    /// The query without its `?`, e.g. `ms=5`; empty when absent.
    pub query: &'a str,
    /// The authority of an absolute-form target (`example.test:8080`); `None` for the origin and
    /// asterisk forms, which carry none.
    pub authority: Option<&'a str>,
}

impl<'a> Target<'a> {
    /// Check `target` against the grammar and split it.
    pub fn parse(target: &'a str) -> Result<Target<'a>, ParseError> {
        if target.contains('#') {
            // RFC 9112 §3.2: no form of request-target has a fragment (a client strips it).
            return Err(ParseError::BadRequest("fragment in request target"));
        }
        if target == "*" {
            return Ok(Target {
                path: "*",
                query: "",
                authority: None,
            });
        }
        if target.starts_with('/') {
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            return Ok(Target {
                path,
                query,
                authority: None,
            });
        }
        let rest = strip_scheme(target).ok_or(ParseError::BadRequest("invalid request target"))?;
        // RFC 3986 §3.2: the authority ends at the first "/", "?" or "#" (the last refused
        // above), or at the end of the target.
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(end);
        if !is_valid_host(authority.as_bytes(), true) {
            return Err(ParseError::BadRequest(
                "invalid authority in request target",
            ));
        }
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        Ok(Target {
            // RFC 9112 §3.2.1: an empty path is sent as "/" in origin form; read it the same.
            path: if path.is_empty() { "/" } else { path },
            query,
            authority: Some(authority),
        })
    }
}

/// The rest of an absolute-form target after `http://` or `https://`, with the scheme compared
/// case-insensitively (RFC 3986 §3.1: "schemes are case-insensitive"). `None` for any other
/// scheme, or an `http` URI without the `//` of its authority (RFC 9110 §4.2.1).
fn strip_scheme(target: &str) -> Option<&str> {
    let (scheme, rest) = target.split_once("://")?;
    let known = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    known.then_some(rest)
}

/// A `Host` field value or the authority of a target: `uri-host [ ":" port ]` (RFC 9112 §3.2,
/// RFC 9110 §7.2).
///
/// With `host_required`, the host may not be empty: RFC 9110 §4.2.1 says a recipient MUST reject
/// an `http` URI with an empty host. Without it, an empty host is valid, as the grammar allows
/// (`reg-name` may be empty); whether an empty `Host` is acceptable depends on the target, and
/// the decoder decides. Userinfo (`user@`) never passes, since `@` is not a host byte: RFC 9110
/// §4.2.4 says to treat it as an error in a target, and `Host` has no such part at all.
pub fn is_valid_host(value: &[u8], host_required: bool) -> bool {
    match split_port(value) {
        Some((host, _)) => !(host_required && host.is_empty()) && is_valid_uri_host(host),
        None => false,
    }
}

/// Split `host [ ":" port ]`, checking the port: `port = *DIGIT` (RFC 3986 §3.2.3; an empty port
/// is allowed by the grammar and means the scheme's default). `None` if what follows the host
/// is not a port.
fn split_port(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let host_end = if value.first() == Some(&b'[') {
        // An IP literal ends at its "]"; the colons inside it are not a port separator.
        value.iter().position(|&b| b == b']')? + 1
    } else {
        value.iter().position(|&b| b == b':').unwrap_or(value.len())
    };
    let (host, rest) = value.split_at(host_end);
    let port = match rest {
        [] => rest,
        [b':', port @ ..] => port,
        _ => return None,
    };
    port.iter().all(u8::is_ascii_digit).then_some((host, port))
}

/// `host = IP-literal / IPv4address / reg-name` (RFC 3986 §3.2.2).
///
/// An IPv4 address is a reg-name by its bytes (digits and dots), so the reg-name rule covers it;
/// `999.1.1.1` is a valid reg-name that happens not to resolve.
fn is_valid_uri_host(host: &[u8]) -> bool {
    match host {
        [b'[', inner @ .., b']'] => is_ip_literal(inner),
        _ => is_reg_name(host),
    }
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`, `pct-encoded = "%" HEXDIG HEXDIG`.
fn is_reg_name(host: &[u8]) -> bool {
    let mut i = 0;
    while i < host.len() {
        match host[i] {
            b'%' => {
                let escape = host.get(i + 1..i + 3);
                if !escape.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
            }
            byte if is_unreserved(byte) || is_sub_delim(byte) => i += 1,
            _ => return false,
        }
    }
    true
}

/// What is inside `[…]`: `IPv6address / IPvFuture` (RFC 3986 §3.2.2). The IPv6 grammar is the
/// standard library's parser, which takes exactly the RFC 4291 text forms (no zone identifier).
///
/// ```text
/// IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
/// ```
fn is_ip_literal(inner: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = inner {
        let Some(dot) = rest.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (version, address) = (&rest[..dot], &rest[dot + 1..]);
        return !version.is_empty()
            && version.iter().all(u8::is_ascii_hexdigit)
            && !address.is_empty()
            && address
                .iter()
                .all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':');
    }
    std::str::from_utf8(inner).is_ok_and(|text| text.parse::<std::net::Ipv6Addr>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(target: &str) -> (&str, &str, Option<&str>) {
        let t = Target::parse(target).unwrap_or_else(|err| panic!("{target}: {err}"));
        (t.path, t.query, t.authority)
    }

    /// Origin, absolute and asterisk forms split into path and query; an absolute form keeps
    /// its authority, and its empty path reads as `/`.
    #[test]
    fn targets_split_into_path_and_query() {
        assert_eq!(split("/cpu?ms=5"), ("/cpu", "ms=5", None));
        assert_eq!(split("/plaintext"), ("/plaintext", "", None));
        assert_eq!(split("/a?b?c=/d"), ("/a", "b?c=/d", None));
        assert_eq!(
            split("http://example.com/json?a=1"),
            ("/json", "a=1", Some("example.com"))
        );
        assert_eq!(split("http://example.com"), ("/", "", Some("example.com")));
        assert_eq!(split("http://a:8080?x=/y"), ("/", "x=/y", Some("a:8080")));
        assert_eq!(split("HTTPS://[::1]:443/p"), ("/p", "", Some("[::1]:443")));
        assert_eq!(split("hTtP://a:/p"), ("/p", "", Some("a:")));
        assert_eq!(split("*"), ("*", "", None));
    }

    /// A fragment anywhere, a bad port, userinfo, an empty host, another scheme, a relative
    /// target: each is refused.
    #[test]
    fn malformed_targets_are_refused() {
        for target in [
            "/a#b",
            "http://a#b/c",
            "http://a/c#b",
            "http://a:8o/",
            "http://a:80:80/",
            "http://a:-1/",
            "http://user@a/",
            "http://user:pw@a/",
            "http:///p",
            "http://:80/p",
            "http://[::1/p",
            "http://[::1]x/p",
            "http://a b/p",
            "http://a%zz/p",
            "ftp://a/p",
            "http:/a/p",
            "http:a/p",
            "a/p",
            "",
            "**",
        ] {
            assert!(
                matches!(Target::parse(target), Err(ParseError::BadRequest(_))),
                "{target:?}"
            );
        }
    }

    /// `Host` values: names, IPv4, IPv6 and IPvFuture literals, escapes, sub-delims, ports, an
    /// empty value and an empty port are valid; whitespace, other delimiters, bad escapes, bad
    /// literals and bad ports are not.
    #[test]
    fn host_values_follow_the_authority_grammar() {
        for good in [
            &b"localhost"[..],
            b"example.test:8080",
            b"127.0.0.1",
            b"999.1.1.1",
            b"[::1]",
            b"[::1]:80",
            b"[2001:db8::ffff:192.0.2.1]",
            b"[v7.fe:80]",
            b"[V1A.x]",
            b"a%20b",
            b"a!$&'()*+,;=b",
            b"example.test:",
            b"",
            b":80",
        ] {
            assert!(
                is_valid_host(good, false),
                "{:?}",
                String::from_utf8_lossy(good)
            );
        }
        for bad in [
            &b"a b"[..],
            b" a",
            b"a\t",
            b"a/b",
            b"a?b",
            b"a#b",
            b"a@b",
            b"a:80x",
            b"a:b:c",
            b"::1",
            b"[::1",
            b"[::1]x",
            b"[::1]:x",
            b"[zz]",
            b"[fe80::1%25eth0]",
            b"[v.x]",
            b"[v1.]",
            b"[vz.x]",
            b"[]",
            b"%zz",
            b"%4",
            b"a\"b",
            b"a\x80b",
            b"a\\b",
            b"a{b}",
            b"a\x00",
        ] {
            assert!(
                !is_valid_host(bad, false),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(is_valid_host(b"a:80", true));
        for empty in [&b""[..], b":80", b":"] {
            assert!(!is_valid_host(empty, true));
        }
    }
}
