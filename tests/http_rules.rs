//! The finer HTTP/1.1 rules, one test per rule: bare CR in the head, `Host` syntax, absolute-form
//! targets, chunk-size lines and chunk extensions, trailer lines, body framing checked before the
//! route is known to fail, `Expect` with an empty value, and the responses evloop itself writes
//! (no `Content-Length` on 204, no header value that could split a response).
//!
//! Every refusal is a 400 JSON error with `Connection: close`, and a request sent behind the bad
//! one in the same write is never answered.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use evloop::endpoints;
use evloop::http::{Body, Method, Response};
use evloop::router::{Reply, Router};

use common::{get, spawn_in_process, test_config, Client};

/// How long a refusal may take. The header timeout is set far above it, so a server that waits
/// for more bytes instead of refusing at once fails the test.
const AT_ONCE: Duration = Duration::from_secs(2);

/// The built-in endpoints plus three test routes: `POST /echo` answers the body byte for byte,
/// `GET /no-content` answers 204 with a body its handler should not have set, and `GET /note`
/// answers with a header value holding CR LF and a whole forged response.
fn router() -> Router {
    endpoints::router()
        .route(Method::Post, "/echo", |req, _| {
            Reply::Now(Response {
                status: 200,
                content_type: "application/octet-stream",
                body: Body::Owned(std::mem::take(&mut req.body)),
                headers: Vec::new(),
            })
        })
        .route(Method::Get, "/no-content", |_, _| {
            Reply::Now(Response::text(204, "oops"))
        })
        .route(Method::Get, "/note", |_, _| {
            let mut response = Response::text(200, "noted");
            response.headers.push((
                "X-Note",
                "a\r\nSet-Cookie: forged=1\r\n\r\nHTTP/1.1 200 OK".to_string(),
            ));
            Reply::Now(response)
        })
}

/// An in-process server with a 30 s header timeout.
fn server() -> SocketAddr {
    let mut config = test_config();
    config.header_timeout = Duration::from_secs(30);
    spawn_in_process(config, router())
}

/// Send `bytes` on a fresh connection; expect one 400 JSON error with `Connection: close`, then
/// EOF, all within [`AT_ONCE`]. Returns the error message.
fn refused_at_once(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut client = Client::connect(addr);
    client.send(bytes);
    let started = Instant::now();
    let responses = client.responses_until_close(AT_ONCE);
    assert!(started.elapsed() < AT_ONCE);
    assert_eq!(
        responses.len(),
        1,
        "{:?} got {responses:?}",
        String::from_utf8_lossy(bytes)
    );
    assert!(responses[0].says_close(), "{:?}", responses[0]);
    responses[0].assert_json_error(400)
}

/// [`refused_at_once`] with a valid `GET /plaintext` written right behind `bad`: it must never
/// be answered.
fn refused_alone(addr: SocketAddr, bad: &[u8]) -> String {
    let mut bytes = bad.to_vec();
    bytes.extend_from_slice(get("/plaintext").as_bytes());
    refused_at_once(addr, &bytes)
}

/// A chunked `POST` to `path` whose body is `body` (framing included).
fn chunked_post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes =
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

// ----- bare CR in the head (RFC 9112 §2.2) -----

/// A CR where the blank line's LF belongs (`\r\n\r` then another byte) is refused as soon as the
/// byte after the CR arrives, not after the header timeout.
#[test]
fn bare_cr_in_the_blank_line_is_refused_at_once() {
    let addr = server();
    refused_at_once(addr, b"GET /plaintext HTTP/1.1\r\nHost: a\r\n\rX");
    refused_at_once(addr, b"GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\r\n");
}

/// A CR inside a header line or the request line, with the head not yet complete, is refused at
/// once.
#[test]
fn bare_cr_inside_a_line_is_refused_at_once() {
    let addr = server();
    refused_at_once(addr, b"GET /plaintext HTTP/1.1\r\nHost: a\r\nX-A: b\rc");
    refused_at_once(addr, b"GET /plain\rtext HTTP/1.1\r\n");
    refused_at_once(addr, b"\r\n\rGET /plaintext HTTP/1.1\r\n");
}

/// A head that ends in CR, waiting for its LF, is not refused: the LF may be in the next read.
#[test]
fn a_cr_at_the_end_of_a_read_waits_for_its_lf() {
    let addr = server();
    let mut client = Client::connect(addr);
    client.send("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r");
    client.assert_silent_for(Duration::from_millis(200));
    client.send("\n");
    assert_eq!(client.read_response().text(), "Hello, World!");
}

// ----- Host (RFC 9112 §3.2, RFC 3986 §3.2.2) -----

/// `Host` values outside `uri-host [ ":" port ]` are 400 and close.
#[test]
fn host_values_outside_the_authority_grammar_are_refused() {
    let addr = server();
    for host in [
        &b"a b"[..],
        b"a\tb",
        b"a/b",
        b"a?b",
        b"a#b",
        b"user@a",
        b"a:80x",
        b"a:-1",
        b"a:b:c",
        b"a:80:80",
        b"[::1",
        b"[zz]",
        b"[::1]x",
        b"[::1]:x",
        b"::1",
        b"%zz",
        b"%4",
        b"exa\"mple",
        b"a\x80b",
        b"a\\b",
        b"a{b}",
    ] {
        let mut bad = b"GET /plaintext HTTP/1.1\r\nHost: ".to_vec();
        bad.extend_from_slice(host);
        bad.extend_from_slice(b"\r\n\r\n");
        refused_alone(addr, &bad);
    }
}

/// Names, IPv4 and IPv6 literals, `IPvFuture`, percent-encoded bytes, sub-delims and ports are
/// accepted; so is an empty `Host` with an origin-form target, which has no authority of its own.
#[test]
fn valid_host_values_are_accepted() {
    let addr = server();
    let mut client = Client::connect(addr);
    for host in [
        "localhost",
        "example.test:8080",
        "127.0.0.1:80",
        "[::1]",
        "[::1]:8080",
        "[2001:db8::ffff:192.0.2.1]",
        "[v7.fe:80]",
        "xn--bcher-kva.example",
        "a%20b",
        "a!$&'()*+,;=b",
        "example.test:",
        "",
    ] {
        let response = client.request(format!("GET /plaintext HTTP/1.1\r\nHost: {host}\r\n\r\n"));
        assert_eq!(response.status, 200, "Host: {host:?} gave {response:?}");
    }
}

/// An empty `Host` with an absolute-form target is 400: the target has an authority, and the
/// client must repeat it in `Host`.
#[test]
fn empty_host_with_an_absolute_form_target_is_refused() {
    refused_alone(
        server(),
        b"GET http://example.test/plaintext HTTP/1.1\r\nHost: \r\n\r\n",
    );
}

// ----- absolute-form targets (RFC 9112 §3.2.2, RFC 3986 §3) -----

/// The scheme is case-insensitive: `HTTP://` is served like `http://`.
#[test]
fn absolute_form_scheme_is_case_insensitive() {
    let mut client = Client::connect(server());
    for target in [
        "HTTP://example.test/plaintext",
        "Http://example.test/plaintext",
        "hTTPs://example.test/plaintext",
    ] {
        let response = client.request(format!(
            "GET {target} HTTP/1.1\r\nHost: example.test\r\n\r\n"
        ));
        assert_eq!(response.text(), "Hello, World!", "{target}");
    }
}

/// The authority ends at the first `/`, `?` or `#`; the path and query after it are routed as in
/// origin form, and an empty path is `/`.
#[test]
fn absolute_form_path_and_query_are_split_after_the_authority() {
    let mut client = Client::connect(server());
    let response = client
        .request("GET http://example.test:8080/sleep?ms=1 HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert_eq!(response.text(), r#"{"slept_ms":1}"#);
    let response = client
        .request("GET http://example.test?then=/plaintext HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert_eq!(response.status, 200);
    assert_ne!(response.text(), "Hello, World!", "routed as / with a query");
}

/// A `#` in the authority (or anywhere: a request target has no fragment), a port that is not
/// digits, userinfo, or an empty host: 400 and close.
#[test]
fn malformed_absolute_form_targets_are_refused() {
    let addr = server();
    for target in [
        "http://example.test#x/plaintext",
        "http://example.test/plaintext#x",
        "http://example.test:8o/plaintext",
        "http://example.test:80:80/plaintext",
        "http://user@example.test/plaintext",
        "http:///plaintext",
        "http://[::1/plaintext",
        "ftp://example.test/plaintext",
        "http:/example.test/plaintext",
    ] {
        refused_alone(
            addr,
            format!("GET {target} HTTP/1.1\r\nHost: example.test\r\n\r\n").as_bytes(),
        );
    }
}

// ----- chunk-size lines (RFC 9112 §7.1, §7.1.1) -----

/// Chunk extensions that are not `;name[=token|quoted-string]` with optional BWS are 400.
#[test]
fn malformed_chunk_extensions_are_refused() {
    let addr = server();
    for line in [
        &b"4;a\"b\r\n"[..],
        b"4;\"a\"\r\n",
        b"4;=x\r\n",
        b"4;\r\n",
        b"4;a=\r\n",
        b"4;a=\"open\r\n",
        b"4;a=\"x\"y\r\n",
        b"4;a=\"\x01\"\r\n",
        b"4;a=\"\\\x01\"\r\n",
        b"4;a=b c\r\n",
        b"4;a b\r\n",
        b"4;a=b \r\n",
        b"4 \r\n",
        b"4 x\r\n",
        b"4;a=\x00\r\n",
        b"4;a=b,c\r\n",
        b"4;a\rb\r\n",
    ] {
        let mut body = line.to_vec();
        body.extend_from_slice(b"Wiki\r\n0\r\n\r\n");
        refused_alone(addr, &chunked_post("/echo", &body));
    }
}

/// Well-formed extensions — BWS around `;` and `=`, token and quoted values, escapes inside
/// quotes, several per line, on the last chunk too — are read and ignored.
#[test]
fn well_formed_chunk_extensions_are_ignored() {
    let mut client = Client::connect(server());
    let response = client.request(chunked_post(
        "/echo",
        b"4 ; a = \"q\\\"x;y\" ;b;c=d\r\nWiki\r\n\
          5\t;e=\"\"\r\npedia\r\n\
          000;last=1\r\n\r\n",
    ));
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"Wikipedia");
    assert_eq!(client.request(get("/plaintext")).status, 200);
}

// ----- trailer section (RFC 9112 §7.1.2, §5) -----

/// Trailer lines follow the head's field-line rules: NUL or other control bytes, obs-fold, no
/// colon, a space before the colon, an empty name, a line shaped like a request line: 400.
#[test]
fn malformed_trailer_lines_are_refused() {
    let addr = server();
    for trailer in [
        &b"X-A: a\x00b\r\n"[..],
        b"X-A: a\x01b\r\n",
        b"X-A: a\x7fb\r\n",
        b"X-A: a\r\n folded\r\n",
        b" X-A: a\r\n",
        b"\tX-A: a\r\n",
        b"NoColon\r\n",
        b"X-A : a\r\n",
        b": a\r\n",
        b"X(A): a\r\n",
        b"GET /smuggled HTTP/1.1\r\n",
        b"X-A: a\rb\r\n",
    ] {
        let mut body = b"4\r\nWiki\r\n0\r\n".to_vec();
        body.extend_from_slice(trailer);
        body.extend_from_slice(b"\r\n");
        refused_alone(addr, &chunked_post("/echo", &body));
    }
}

/// Well-formed trailer fields, with OWS and obs-text in their values, are read and ignored.
#[test]
fn well_formed_trailers_are_ignored() {
    let mut client = Client::connect(server());
    let response = client.request(chunked_post(
        "/echo",
        b"4\r\nWiki\r\n0\r\nX-Sum: abc \r\nX-Empty:\r\nX-Text:\tcaf\xc3\xa9 au lait\r\n\r\n",
    ));
    assert_eq!(response.body, b"Wiki");
    assert_eq!(client.request(get("/plaintext")).status, 200);
}

// ----- body framing before routing -----

/// A malformed chunked body to a path with no route is 400 and close, not 404: the framing is
/// read before the route's answer, or the bytes after it would be read as a request.
#[test]
fn body_framing_is_checked_before_a_404() {
    let addr = server();
    refused_alone(addr, &chunked_post("/nope", b"4;a\"b\r\nWiki\r\n0\r\n\r\n"));
    refused_alone(
        addr,
        &chunked_post("/nope", b"4\r\nWiki\r\n0\r\nNoColon\r\n\r\n"),
    );
}

/// The same for a path that exists but not for this method (405).
#[test]
fn body_framing_is_checked_before_a_405() {
    let addr = server();
    refused_alone(
        addr,
        &chunked_post("/plaintext", b"4 x\r\nWiki\r\n0\r\n\r\n"),
    );
    refused_alone(
        addr,
        &chunked_post("/plaintext", b"4\r\nWiki\r\n0\r\nGET / HTTP/1.1\r\n\r\n"),
    );
}

// ----- Expect (RFC 9110 §10.1.1) -----

/// An empty `Expect` value is no expectation: the request is served and the connection stays
/// open.
#[test]
fn empty_expect_is_no_expectation() {
    let mut client = Client::connect(server());
    let response =
        client.request("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect:\r\n\r\nhi");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"hi");
    assert!(!response.says_close());
    let response = client
        .request("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect:   \r\n\r\nho");
    assert_eq!(response.body, b"ho");
}

// ----- responses (RFC 9110 §8.6, §5.5) -----

/// A 204 carries no `Content-Length` and no body, even when its handler set one; the response
/// after it on the connection is read from the right place.
#[test]
fn no_content_length_or_body_on_204() {
    let mut client = Client::connect(server());
    client.send(format!("{}{}", get("/no-content"), get("/plaintext")));
    let response = client.read_response();
    assert_eq!(response.status, 204);
    assert_eq!(response.header("content-length"), None, "{response:?}");
    assert_eq!(client.read_response().text(), "Hello, World!");
}

/// A handler's header value holding CR LF cannot split the response: it stays one field line
/// (CR and LF sent as spaces), no forged field or response follows.
#[test]
fn header_values_with_cr_lf_cannot_split_the_response() {
    let mut client = Client::connect(server());
    client.send(format!("{}{}", get("/note"), get("/plaintext")));
    let response = client.read_response();
    assert_eq!(response.text(), "noted");
    assert_eq!(response.header_count("set-cookie"), 0, "{response:?}");
    assert_eq!(
        response.header("x-note"),
        Some("a  Set-Cookie: forged=1    HTTP/1.1 200 OK")
    );
    assert_eq!(client.read_response().text(), "Hello, World!");
}
