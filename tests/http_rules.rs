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

use common::{spawn_in_process, test_config, Client};

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
