//! Persistent connections: HTTP/1.1 keeps the connection by default, HTTP/1.0 only when asked
//! (and says so with `Connection: keep-alive`), and `Connection: close` is honoured.

mod common;

use std::time::Duration;

use common::{get, spawn_binary, Client};

const CLOSE_WITHIN: Duration = Duration::from_secs(3);

/// An HTTP/1.1 connection serves several requests in a row, none of them closing it.
#[test]
fn http11_connection_serves_many_requests() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut client = Client::connect(server.addr());
    for path in [
        "/plaintext",
        "/json",
        "/healthz",
        "/plaintext",
        "/sleep?ms=1",
    ] {
        let response = client.request(get(path));
        assert_eq!(response.status, 200, "{path}: {response:?}");
        assert_eq!(response.header("connection"), None, "{path}: {response:?}");
    }
    // Still open: one more request is answered on the same socket.
    assert_eq!(client.request(get("/plaintext")).text(), "Hello, World!");
}

/// HTTP/1.0 without `Connection: keep-alive` gets its response (framed by Content-Length,
/// never chunked) and then the server closes the connection.
#[test]
fn http10_closes_by_default() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut client = Client::connect(server.addr());
    client.send("GET /plaintext HTTP/1.0\r\n\r\n");
    let responses = client.responses_until_close(CLOSE_WITHIN);
    assert_eq!(responses.len(), 1);
    let response = &responses[0];
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "Hello, World!");
    assert_eq!(response.header("content-length"), Some("13"));
    assert_eq!(response.header("transfer-encoding"), None);
    assert_ne!(
        response.header("connection").map(str::to_ascii_lowercase),
        Some("keep-alive".to_string())
    );
}

/// HTTP/1.0 with `Connection: keep-alive` is told `Connection: keep-alive` and the connection
/// stays open for the next request (what `ab -k` counts).
#[test]
fn http10_keep_alive_is_honoured_and_announced() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut client = Client::connect(server.addr());
    for path in ["/plaintext", "/sleep?ms=10", "/json"] {
        let response = client.request(format!(
            "GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        ));
        assert_eq!(response.status, 200, "{path}: {response:?}");
        assert_eq!(
            response.header("connection").map(str::to_ascii_lowercase),
            Some("keep-alive".to_string()),
            "{path}: {response:?}"
        );
    }
    // A plain HTTP/1.0 request on the same connection ends it.
    client.send("GET /plaintext HTTP/1.0\r\n\r\n");
    let responses = client.responses_until_close(CLOSE_WITHIN);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].text(), "Hello, World!");
}

/// HTTP/1.1 `Connection: close` gets `Connection: close` and EOF; a request pipelined behind it
/// is never answered.
#[test]
fn http11_connection_close_is_honoured() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut client = Client::connect(server.addr());
    assert_eq!(client.request(get("/plaintext")).status, 200);
    client.send(format!(
        "GET /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n{}",
        get("/plaintext")
    ));
    let responses = client.responses_until_close(CLOSE_WITHIN);
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_eq!(responses[0].status, 200);
    assert!(responses[0].says_close(), "{responses:?}");
    assert_eq!(responses[0].text(), r#"{"message":"Hello, World!"}"#);
}

/// `Connection: close` is honoured on a deferred (`/sleep`) response too: it carries the header
/// and the connection closes once it is sent.
#[test]
fn connection_close_on_a_deferred_response() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut client = Client::connect(server.addr());
    client.send("GET /sleep?ms=50 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let responses = client.responses_until_close(CLOSE_WITHIN);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].text(), r#"{"slept_ms":50}"#);
    assert!(responses[0].says_close());
}

/// HTTP/1.0 without a `Host` header is fine (Host is only mandatory in HTTP/1.1).
#[test]
fn http10_needs_no_host() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut client = Client::connect(server.addr());
    client.send("GET /json HTTP/1.0\r\n\r\n");
    let responses = client.responses_until_close(CLOSE_WITHIN);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 200);
}
