//! Request bodies: `Content-Length`, `Transfer-Encoding: chunked` (extensions and
//! trailers), bodies split over many reads, and `Expect: 100-continue`.

mod common;

use std::net::SocketAddr;
use std::thread::sleep;
use std::time::Duration;

use evloop::endpoints;
use evloop::http::{Body, Limits, Method, Response};
use evloop::router::{Reply, Router};

use common::{get, spawn_in_process, test_config, Client};

/// The built-in endpoints plus `POST /echo`, which answers the request body byte for byte, and
/// `POST /echo-pool`, which does the same from a pool worker.
fn echo_router() -> Router {
    fn echo(body: Vec<u8>) -> Response {
        Response {
            status: 200,
            content_type: "application/octet-stream",
            body: Body::Owned(body),
            headers: Vec::new(),
        }
    }
    endpoints::router()
        .route(Method::Post, "/echo", |req, _| {
            Reply::Now(echo(std::mem::take(&mut req.body)))
        })
        .route(Method::Post, "/echo-pool", |req, _| {
            let body = std::mem::take(&mut req.body);
            Reply::offload(move |_| echo(body))
        })
}

/// An in-process echo server with `--max-body 1000`.
fn echo_server() -> SocketAddr {
    let mut config = test_config();
    config.limits = Limits {
        max_body: 1000,
        ..Limits::default()
    };
    spawn_in_process(config, echo_router())
}

const CLOSE_WITHIN: Duration = Duration::from_secs(3);

/// A `Content-Length` body reaches the handler intact, and the next request on the same
/// connection is parsed from the right place.
#[test]
fn content_length_body_then_next_request() {
    let addr = echo_server();
    let mut client = Client::connect(addr);
    let response =
        client.request("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"hello world");
    assert_eq!(client.request(get("/plaintext")).text(), "Hello, World!");
}

/// A chunked body with chunk extensions and a trailer decodes to the data alone; the trailer is
/// ignored and the request after it on the same connection still works.
#[test]
fn chunked_body_with_extensions_and_trailers() {
    let addr = echo_server();
    let mut client = Client::connect(addr);
    let response = client.request(
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
         5;name=value\r\nhello\r\n\
         6 ; ext\r\n world\r\n\
         0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"hello world");
    assert_eq!(client.request(get("/json")).status, 200);
}

/// Bodies dribbled over several writes (head, then pieces of the body, split inside chunk-size
/// lines too) are reassembled exactly, for both framings and for an offloaded handler.
#[test]
fn bodies_split_across_many_writes() {
    let addr = echo_server();
    let mut client = Client::connect(addr);
    for piece in [
        &b"POST /echo-pool HTTP/1.1\r\nHost: x\r\nContent-Le"[..],
        b"ngth: 10\r\n\r\n012",
        b"3456",
        b"789",
    ] {
        client.send(piece);
        sleep(Duration::from_millis(30));
    }
    assert_eq!(client.read_response().body, b"0123456789");

    for piece in [
        &b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"3\r",
        b"\nabc\r\n1",
        b"0\r\n0123456789abcdef\r\n0\r",
        b"\n\r\n",
    ] {
        client.send(piece);
        sleep(Duration::from_millis(30));
    }
    assert_eq!(client.read_response().body, b"abc0123456789abcdef");
}

/// Pipelined POSTs with bodies, in one write, are each answered with their own body, in order.
#[test]
fn pipelined_requests_with_bodies() {
    let addr = echo_server();
    let mut client = Client::connect(addr);
    client.send(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none\
         POST /echo-pool HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n\
         POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nthree",
    );
    assert_eq!(client.read_response().body, b"one");
    assert_eq!(client.read_response().body, b"two");
    assert_eq!(client.read_response().body, b"three");
}

/// `Expect: 100-continue`: the server says exactly `HTTP/1.1 100 Continue` before the client
/// sends the body, then gives the final response.
#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let addr = echo_server();
    let mut client = Client::connect(addr);
    client.send(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    );
    let interim = client.read_response();
    assert_eq!(interim.raw_head, "HTTP/1.1 100 Continue\r\n\r\n");
    assert!(client.buffered().is_empty());
    client.send("ping");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"ping");
    // The same connection goes on.
    assert_eq!(client.request(get("/plaintext")).status, 200);
}

/// `Expect: 100-continue` with a chunked body works the same way.
#[test]
fn expect_100_continue_with_chunked_body() {
    let addr = echo_server();
    let mut client = Client::connect(addr);
    client.send(
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
         Expect: 100-continue\r\n\r\n",
    );
    assert_eq!(client.read_response().status, 100);
    client.send("2\r\nok\r\n0\r\n\r\n");
    assert_eq!(client.read_response().body, b"ok");
}

/// `Expect: 100-continue` with a `Content-Length` over `--max-body` gets 413 at once, without
/// the client sending the body, and the connection closes.
#[test]
fn expect_100_continue_over_the_limit_gets_413_at_once() {
    let addr = echo_server();
    let mut client = Client::connect(addr);
    client.send(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\nExpect: 100-continue\r\n\r\n",
    );
    let responses = client.responses_until_close(CLOSE_WITHIN);
    assert_eq!(responses.len(), 1, "{responses:?}");
    responses[0].assert_json_error(413);
    assert!(responses[0].says_close());
}

/// Any expectation other than `100-continue` is refused with 417 and the connection closes.
#[test]
fn unknown_expectation_gets_417() {
    let addr = echo_server();
    let mut client = Client::connect(addr);
    client.send(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: something-else\r\n\r\nhi",
    );
    let responses = client.responses_until_close(CLOSE_WITHIN);
    assert_eq!(responses.len(), 1, "{responses:?}");
    responses[0].assert_json_error(417);
    assert!(responses[0].says_close());
}

/// An HTTP/1.0 client's `Expect: 100-continue` is ignored (RFC 9110 §10.1.1): no interim
/// response, the body is simply read when it comes.
#[test]
fn http10_expect_is_ignored() {
    let addr = echo_server();
    let mut client = Client::connect(addr);
    client.send("POST /echo HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
    client.assert_silent_for(Duration::from_millis(300));
    client.send("hi");
    let responses = client.responses_until_close(CLOSE_WITHIN);
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_eq!(responses[0].status, 200);
    assert_eq!(responses[0].body, b"hi");
}

/// A body of exactly `--max-body` bytes is accepted; the limit is inclusive.
#[test]
fn body_at_the_limit_is_accepted() {
    let addr = echo_server();
    let mut client = Client::connect(addr);
    let body = vec![b'z'; 1000];
    let mut request = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".to_vec();
    request.extend_from_slice(&body);
    let response = client.request(request);
    assert_eq!(response.status, 200);
    assert_eq!(response.body, body);
}

/// A body of several MiB, far more than one read or one turn of the reactor takes, arrives
/// intact and the echo of it goes back intact.
#[test]
fn multi_megabyte_body_round_trips() {
    const SIZE: usize = 6 << 20;
    let addr = spawn_in_process(test_config(), echo_router());
    let mut client = Client::connect(addr);
    let body: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let mut request =
        format!("POST /echo-pool HTTP/1.1\r\nHost: x\r\nContent-Length: {SIZE}\r\n\r\n")
            .into_bytes();
    request.extend_from_slice(&body);
    let response = client.request(request);
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), SIZE);
    assert!(response.body == body, "the echoed body differs");
    assert_eq!(client.request(get("/plaintext")).status, 200);
}

/// When the head alone decides the answer — an unknown path (404), a wrong method (405), a bad
/// query (400) — a client waiting for `100 Continue` gets that answer instead, at once, and the
/// connection closes without the body ever being sent.
#[test]
fn expect_100_continue_gets_the_final_status_when_the_head_decides_it() {
    let addr = echo_server();
    for (target, method, status) in [
        ("/nope", "POST", 404),
        ("/echo", "PUT", 405),
        ("/snr-detect?vad_hop_size=1", "POST", 400),
    ] {
        let mut client = Client::connect(addr);
        client.send(format!(
            "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\
             Expect: 100-continue\r\n\r\n"
        ));
        let responses = client.responses_until_close(CLOSE_WITHIN);
        assert_eq!(responses.len(), 1, "{target}: {responses:?}");
        responses[0].assert_json_error(status);
        assert!(responses[0].says_close(), "{target}");
    }
    // A good query on the same route still gets the go-ahead.
    let mut client = Client::connect(addr);
    client.send(
        "POST /snr-detect?vad_hop_size=256 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\
         Expect: 100-continue\r\n\r\n",
    );
    assert_eq!(client.read_response().status, 100);
}

/// Request bodies held at once are bounded over all connections (`--max-body-memory`): the body
/// that would pass the limit gets 503 with `Retry-After` and its connection closes, while the
/// body already being received goes on; once it is done, room is back.
#[test]
fn bodies_held_at_once_are_bounded() {
    let mut config = test_config();
    config.max_body_memory = 100_000;
    let addr = spawn_in_process(config, echo_router());
    let head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 80000\r\n\r\n";

    let mut first = Client::connect(addr);
    first.send(format!("{head}{}", "a".repeat(60_000)));
    sleep(Duration::from_millis(200));
    let mut second = Client::connect(addr);
    second.send(format!("{head}{}", "b".repeat(50_000)));
    let refused = second.responses_until_close(CLOSE_WITHIN);
    assert_eq!(refused.len(), 1, "{refused:?}");
    refused[0].assert_json_error(503);
    assert_eq!(refused[0].header("retry-after"), Some("1"));

    first.send("a".repeat(20_000));
    let done = first.read_response();
    assert_eq!(done.status, 200);
    assert_eq!(done.body.len(), 80_000);

    let mut third = Client::connect(addr);
    let response = third.request(format!("{head}{}", "c".repeat(80_000)));
    assert_eq!(response.status, 200, "the memory was given back");
}

/// A `100 Continue` queued behind a slow request: the client holds its body back until it gets
/// the go-ahead, so the body timeout does not run meanwhile — the request is answered, not 408.
#[test]
fn a_queued_100_continue_stops_the_body_clock() {
    let mut config = test_config();
    config.body_timeout = Duration::from_millis(400);
    let addr = spawn_in_process(config, echo_router());
    let mut client = Client::connect(addr);
    client.send(format!(
        "{}POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
        get("/sleep?ms=1200")
    ));
    assert_eq!(client.read_response().status, 200, "the sleep");
    assert_eq!(client.read_response().status, 100, "then the go-ahead");
    client.send("ping");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"ping");
}
