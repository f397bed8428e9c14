//! Limits and request errors (size limits, error responses, accept limits): each limit has its
//! status code, protocol errors close the connection, request errors leave it usable.

mod common;

use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{get, spawn_binary, spawn_binary_with, Client, ServerProcess, Spawn};

const CLOSE_WITHIN: Duration = Duration::from_secs(3);

/// The binary with small limits: 1 KiB heads, 10 header fields, 1000-byte bodies.
fn limited_server() -> ServerProcess {
    spawn_binary(&[
        "--pool",
        "1",
        "--max-header-bytes",
        "1024",
        "--max-headers",
        "10",
        "--max-body",
        "1000",
    ])
}

/// Send `request` on a fresh connection and expect exactly one JSON error `status`, with
/// `Connection: close`, followed by EOF. A request placed behind it is never answered.
fn assert_refused_and_closed(server: &ServerProcess, request: &[u8], status: u16) -> String {
    let mut client = Client::connect(server.addr());
    let mut bytes = request.to_vec();
    bytes.extend_from_slice(get("/plaintext").as_bytes());
    client.send(bytes);
    let responses = client.responses_until_close(CLOSE_WITHIN);
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert!(responses[0].says_close(), "{:?}", responses[0]);
    responses[0].assert_json_error(status)
}

/// A request line longer than `--max-header-bytes` gets 414 and the connection closes.
#[test]
fn request_line_too_long_is_414() {
    let server = limited_server();
    let request = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(2000));
    assert_refused_and_closed(&server, request.as_bytes(), 414);
}

/// A request line that is too long is refused as soon as the limit is passed, before the line
/// even ends.
#[test]
fn endless_request_line_is_414_without_waiting_for_its_end() {
    let server = limited_server();
    let mut client = Client::connect(server.addr());
    client.send(format!("GET /{}", "a".repeat(1100)));
    let responses = client.responses_until_close(CLOSE_WITHIN);
    assert_eq!(responses.len(), 1);
    responses[0].assert_json_error(414);
}

/// A header block larger than `--max-header-bytes` (with a short request line) gets 431.
#[test]
fn header_block_too_large_is_431() {
    let server = limited_server();
    let request = format!(
        "GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(1100)
    );
    assert_refused_and_closed(&server, request.as_bytes(), 431);
}

/// More header fields than `--max-headers` gets 431; exactly the limit is fine.
#[test]
fn too_many_header_fields_is_431() {
    let server = limited_server();
    let fields = |n: usize| -> String { (0..n).map(|i| format!("X-{i}: v\r\n")).collect() };

    let mut client = Client::connect(server.addr());
    let at_limit = format!("GET /plaintext HTTP/1.1\r\nHost: x\r\n{}\r\n", fields(9));
    assert_eq!(client.request(at_limit).status, 200);

    let over = format!("GET /plaintext HTTP/1.1\r\nHost: x\r\n{}\r\n", fields(10));
    assert_refused_and_closed(&server, over.as_bytes(), 431);
}

/// A `Content-Length` over `--max-body` gets 413 before any of the body is sent.
#[test]
fn content_length_over_max_body_is_413() {
    let server = limited_server();
    assert_refused_and_closed(
        &server,
        b"POST /plaintext HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n",
        413,
    );
}

/// A 413 for a client that already sent its whole (too large) body still reaches the client
/// intact: the server does not reset the connection under its own response.
#[test]
fn content_length_over_max_body_with_body_sent() {
    let server = limited_server();
    let mut client = Client::connect(server.addr());
    let mut request =
        b"POST /plaintext HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".to_vec();
    request.extend_from_slice(&[b'x'; 5000]);
    client.send(request);
    let responses = client.responses_until_close(CLOSE_WITHIN);
    assert_eq!(responses.len(), 1);
    responses[0].assert_json_error(413);
}

/// A body within `--max-body` is read in full: the request is then routed (405 here, since
/// `/plaintext` has no POST) and the connection stays usable.
#[test]
fn body_within_max_body_is_read() {
    let server = limited_server();
    let mut client = Client::connect(server.addr());
    let mut request =
        b"POST /plaintext HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".to_vec();
    request.extend_from_slice(&[b'x'; 1000]);
    let response = client.request(request);
    response.assert_json_error(405);
    assert_eq!(client.request(get("/plaintext")).status, 200);
}

/// A chunked body that grows past `--max-body` gets 413 as soon as a chunk size says so.
#[test]
fn chunked_body_over_max_body_is_413() {
    let server = limited_server();
    let mut client = Client::connect(server.addr());
    client.send("POST /plaintext HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    client.send(format!("258\r\n{}\r\n", "a".repeat(600)));
    client.assert_silent_for(Duration::from_millis(100));
    client.send("258\r\n");
    let responses = client.responses_until_close(CLOSE_WITHIN);
    assert_eq!(responses.len(), 1, "{responses:?}");
    responses[0].assert_json_error(413);
    assert!(responses[0].says_close());
}

/// `HTTP/2.0` in the request line gets 505.
#[test]
fn unsupported_version_is_505() {
    let server = limited_server();
    assert_refused_and_closed(&server, b"GET /plaintext HTTP/2.0\r\nHost: x\r\n\r\n", 505);
}

/// An unknown method gets 501.
#[test]
fn unknown_method_is_501() {
    let server = limited_server();
    assert_refused_and_closed(&server, b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", 501);
}

/// An unknown path gets 404 `{"error":…,"status":404}` and the connection stays usable.
#[test]
fn unknown_path_is_404_json() {
    let server = limited_server();
    let mut client = Client::connect(server.addr());
    let response = client.request(get("/no/such/path"));
    response.assert_json_error(404);
    assert!(!response.says_close());
    assert_eq!(client.request(get("/plaintext")).status, 200);
}

/// A known path with the wrong method gets 405 with `Allow: GET, HEAD`.
#[test]
fn wrong_method_is_405_with_allow() {
    let server = limited_server();
    let mut client = Client::connect(server.addr());
    for request in [
        "DELETE /plaintext HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        "POST /sleep?ms=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_string(),
    ] {
        let response = client.request(request);
        response.assert_json_error(405);
        assert_eq!(response.header("allow"), Some("GET, HEAD"));
    }
    assert_eq!(client.request(get("/plaintext")).status, 200);
}

/// A bad query value gets 400 with a JSON error naming the parameter; the connection survives.
#[test]
fn bad_query_is_400_naming_the_parameter() {
    let server = limited_server();
    let mut client = Client::connect(server.addr());
    for (path, parameter) in [
        ("/sleep?ms=abc", "ms"),
        ("/sleep?ms=70000", "ms"),
        ("/sleep?ms=-5", "ms"),
        ("/sleep", "ms"),
        ("/cpu", "ms"),
        ("/cpu?ms=10001", "ms"),
        ("/cpu?ms=5&mode=turbo", "mode"),
    ] {
        let response = client.request(get(path));
        let message = response.assert_json_error(400);
        assert!(
            message.contains(&format!("`{parameter}`")),
            "{path}: message {message:?} does not name `{parameter}`"
        );
        assert!(!response.says_close(), "{path}");
    }
    assert_eq!(client.request(get("/plaintext")).status, 200);
}

/// `HEAD /plaintext` answers the `GET` headers (`Content-Length: 13`) and no body: the next
/// response on the connection starts right after the head.
#[test]
fn head_gets_headers_without_body() {
    let server = limited_server();
    let mut client = Client::connect(server.addr());
    let get_response = client.request(get("/plaintext"));
    client.send(format!(
        "HEAD /plaintext HTTP/1.1\r\nHost: x\r\n\r\n{}",
        get("/json")
    ));
    let head = client.read_head_response();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("13"));
    assert_eq!(
        head.header("content-type"),
        get_response.header("content-type")
    );
    assert!(
        client.buffered().is_empty() || client.buffered().starts_with(b"HTTP/1.1 200 OK\r\n"),
        "bytes after the HEAD response: {:?}",
        String::from_utf8_lossy(client.buffered())
    );
    assert_eq!(
        client.read_response().text(),
        r#"{"message":"Hello, World!"}"#
    );
}

/// At `--max-connections` with every connection busy, the server stops accepting; a connection
/// waiting in the backlog is served as soon as another one closes.
#[test]
fn max_connections_pauses_while_every_connection_is_busy() {
    let server = spawn_binary(&["--pool", "1", "--max-connections", "2"]);
    // Both have a request in progress: neither may be closed to make room. Each is sent behind
    // a `/plaintext` in the same write; once that is answered, the server has read the sleep
    // too (one read, one turn), so the connection is busy, not idle.
    let busy = |ms: u64| {
        let mut client = Client::connect(server.addr());
        client.send(format!(
            "{}{}",
            get("/plaintext"),
            get(&format!("/sleep?ms={ms}"))
        ));
        assert_eq!(client.read_response().text(), "Hello, World!");
        client
    };
    let first = busy(5000);
    let mut second = busy(1000);

    let mut third = Client::connect(server.addr()); // the kernel completes the handshake
    third.send(get("/plaintext"));
    third.assert_silent_for(Duration::from_millis(300));
    server.wait_for_log_line(&["pausing accept"], Duration::from_secs(5));
    let pauses = server.stderr().matches("pausing accept").count();
    assert!(
        (1..=2).contains(&pauses),
        "{pauses} 'pausing accept' lines: the log is not rate-limited"
    );

    drop(first);
    let response = third.read_response();
    assert_eq!(response.text(), "Hello, World!");
    assert_eq!(
        second.read_response().status,
        200,
        "the busy one was left alone"
    );
}

/// At `--max-connections`, idle keep-alive clients never lock out an active one: the
/// longest-idle connection is closed (silently, as an idle timeout would) to admit the new
/// client at once, and the others are left alone.
#[test]
fn max_connections_closes_the_longest_idle_to_admit_a_new_client() {
    let server = spawn_binary(&["--pool", "1", "--max-connections", "3"]);
    let mut oldest = Client::connect(server.addr());
    assert_eq!(oldest.request(get("/plaintext")).status, 200);
    sleep(Duration::from_millis(50));
    let mut newer = Client::connect(server.addr());
    assert_eq!(newer.request(get("/plaintext")).status, 200);
    let mut busy = Client::connect(server.addr());
    busy.send(get("/sleep?ms=700"));
    sleep(Duration::from_millis(50));

    let started = Instant::now();
    let mut fresh = Client::connect(server.addr());
    assert_eq!(fresh.request(get("/plaintext")).text(), "Hello, World!");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "admitted at once, took {:?}",
        started.elapsed()
    );
    oldest.assert_closed_silently(Duration::from_secs(2));
    assert_eq!(
        newer.request(get("/json")).status,
        200,
        "the newer idle one stays"
    );
    assert_eq!(busy.read_response().status, 200, "the busy one stays");
    // The reuse is logged.
    server.wait_for_log_line(
        &["closing idle keep-alive connections"],
        Duration::from_secs(5),
    );
}

/// Out of file descriptors (`EMFILE`), the server backs off instead of spinning or crashing: it
/// keeps serving the connections it has, burns little CPU while the backlog waits, and serves the
/// waiting connections once descriptors are free again.
#[test]
fn out_of_file_descriptors_backs_off_and_recovers() {
    let mut server = spawn_binary_with(
        &["--pool", "1"],
        Spawn {
            nofile: Some(24),
            ..Spawn::default()
        },
    );
    let mut clients: Vec<Client> = (0..30).map(|_| Client::connect(server.addr())).collect();
    sleep(Duration::from_millis(200));

    // The process is at its descriptor limit and connections wait in the backlog.
    let cpu_before = server.cpu_time();
    let window = Instant::now();
    sleep(Duration::from_millis(1000));
    let cpu_used = server.cpu_time().saturating_sub(cpu_before);
    let wall = window.elapsed();
    assert!(
        cpu_used < wall / 3,
        "the server used {cpu_used:?} of CPU in {wall:?} while out of descriptors (busy loop?)"
    );
    server.wait_for_log_line(&["accept failed"], Duration::from_secs(5));
    let failures = server.stderr().matches("accept failed").count();
    // The back-off retries every 100 ms; the log says so at most once a second.
    assert!(
        failures <= 3,
        "{failures} 'accept failed' lines in about 1.2 s: the log is not rate-limited"
    );
    assert!(server.wait_timeout(Duration::ZERO).is_none(), "evloop died");

    // An accepted connection is still served. The first one was accepted before the limit.
    assert_eq!(clients[0].request(get("/plaintext")).status, 200);

    // Free descriptors: every waiting connection is then accepted and served.
    clients.drain(..15);
    for (i, client) in clients.iter_mut().enumerate() {
        let response = client.request(get("/plaintext"));
        assert_eq!(response.status, 200, "waiting connection {i}");
    }
}
