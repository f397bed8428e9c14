//! Connection deadlines: a slow head gets 408 at `--header-timeout` however the client dribbles
//! it, a stalled body gets 408 at `--body-timeout`, an idle keep-alive connection is closed
//! silently at `--keep-alive-timeout` (empty lines sent between requests do not keep it open),
//! and a `/sleep` longer than `--request-timeout` is answered 504.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{assert_between, get, spawn_binary, Client, Response};

/// Send an incomplete request on a server whose deadline is 0.5 s: exactly one response comes,
/// a JSON 408, between 0.45 s and 2 s later, and then the connection closes. Returns it.
fn send_and_expect_408(client: &mut Client, incomplete: &str) -> Response {
    let started = Instant::now();
    client.send(incomplete);
    let mut responses = client.responses_until_close(Duration::from_secs(3));
    assert_between(
        "408 + close",
        started.elapsed(),
        Duration::from_millis(450),
        Duration::from_secs(2),
    );
    assert_eq!(responses.len(), 1, "{responses:?}");
    responses[0].assert_json_error(408);
    responses.remove(0)
}

/// Half a request head, then nothing: at `--header-timeout 0.5` the server answers 408 with
/// `Connection: close` and closes; the server goes on serving other connections.
#[test]
fn incomplete_head_gets_408_at_the_header_deadline() {
    let server = spawn_binary(&["--pool", "1", "--header-timeout", "0.5"]);
    let mut client = Client::connect(server.addr());
    let response = send_and_expect_408(
        &mut client,
        "GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Half: ",
    );
    assert!(response.says_close());
    assert_eq!(
        Client::connect(server.addr())
            .request(get("/plaintext"))
            .status,
        200
    );
}

/// The header deadline runs from the first byte of a request, even after earlier requests on the
/// same keep-alive connection.
#[test]
fn header_deadline_applies_to_later_requests_too() {
    let server = spawn_binary(&["--pool", "1", "--header-timeout", "0.5"]);
    let mut client = Client::connect(server.addr());
    assert_eq!(client.request(get("/plaintext")).status, 200);
    send_and_expect_408(&mut client, "GET /json HTTP/1.1\r\n");
}

/// A slowloris client sending one header byte every 100 ms cannot extend the header deadline:
/// it gets 408 at `--header-timeout` after its first byte, while still sending.
#[test]
fn slowloris_cannot_extend_the_header_deadline() {
    let server = spawn_binary(&["--pool", "1", "--header-timeout", "1"]);
    let mut client = Client::connect(server.addr());
    let mut writer = client.stream().try_clone().expect("clone the socket");
    let stop = Arc::new(AtomicBool::new(false));
    let stop_writer = Arc::clone(&stop);
    let started = Instant::now();
    let dribble = thread::spawn(move || {
        let head = b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Slow: abcdefghijklmnopqrstuvwxyz0123456789abcdefghij\r\n\r\n";
        for byte in head.iter() {
            if stop_writer.load(Ordering::SeqCst) || writer.write_all(&[*byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let response = client.read_response();
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    dribble.join().unwrap();
    response.assert_json_error(408);
    assert!(response.says_close());
    assert_between(
        "408 for a slowloris",
        elapsed,
        Duration::from_millis(950),
        Duration::from_millis(2500),
    );
}

/// A body that stalls mid-way gets 408 at `--body-timeout`.
#[test]
fn stalled_body_gets_408_at_the_body_deadline() {
    let server = spawn_binary(&["--pool", "1", "--body-timeout", "0.5"]);
    let mut client = Client::connect(server.addr());
    send_and_expect_408(
        &mut client,
        "POST /plaintext HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123",
    );
}

/// An idle keep-alive connection is closed at `--keep-alive-timeout` without a byte sent.
#[test]
fn idle_keep_alive_connection_is_closed_silently() {
    let server = spawn_binary(&["--pool", "1", "--keep-alive-timeout", "0.5"]);
    let mut client = Client::connect(server.addr());
    assert_eq!(client.request(get("/plaintext")).status, 200);
    let idle_since = Instant::now();
    client.assert_closed_silently(Duration::from_secs(2));
    assert!(
        idle_since.elapsed() >= Duration::from_millis(450),
        "closed after {:?} idle",
        idle_since.elapsed()
    );
}

/// A connection that never sends anything is closed at the keep-alive timeout, silently.
#[test]
fn silent_new_connection_is_closed() {
    let server = spawn_binary(&["--pool", "1", "--keep-alive-timeout", "0.5"]);
    let mut client = Client::connect(server.addr());
    let started = Instant::now();
    client.assert_closed_silently(Duration::from_secs(2));
    assert!(started.elapsed() >= Duration::from_millis(450));
}

/// Activity resets the idle deadline: requests spaced closer than the keep-alive timeout keep the
/// connection open well past it. (Spaced 250 ms under a 1 s timeout, twice its length in all:
/// a late wake-up of the test on a loaded machine still leaves the gap well inside it.)
#[test]
fn activity_keeps_the_connection_alive() {
    let server = spawn_binary(&["--pool", "1", "--keep-alive-timeout", "1"]);
    let mut client = Client::connect(server.addr());
    for _ in 0..8 {
        assert_eq!(client.request(get("/plaintext")).status, 200);
        thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(client.request(get("/plaintext")).status, 200);
}

/// A response still being prepared is not an idle connection: a `/sleep` longer than the
/// keep-alive timeout is answered.
#[test]
fn waiting_for_a_response_is_not_idle() {
    let server = spawn_binary(&["--pool", "1", "--keep-alive-timeout", "0.3"]);
    let mut client = Client::connect(server.addr());
    let response = client.request(get("/sleep?ms=800"));
    assert_eq!(response.text(), r#"{"slept_ms":800}"#);
}

/// Empty lines between requests are not requests: a client that sends a bare CRLF every 200 ms
/// cannot keep an idle connection open past `--keep-alive-timeout`.
#[test]
fn a_crlf_drip_does_not_keep_an_idle_connection_open() {
    let server = spawn_binary(&["--pool", "1", "--keep-alive-timeout", "0.6"]);
    let mut client = Client::connect(server.addr());
    assert_eq!(client.request(get("/plaintext")).status, 200);
    let mut drip = client.stream().try_clone().expect("clone the socket");
    let stop = Arc::new(AtomicBool::new(false));
    let dripping = Arc::clone(&stop);
    let dripper = thread::spawn(move || {
        while !dripping.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(200));
            if drip.write_all(b"\r\n").is_err() {
                return;
            }
        }
    });
    let idle_since = Instant::now();
    client.assert_closed_silently(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    let _ = dripper.join();
    assert!(
        idle_since.elapsed() < Duration::from_millis(2000),
        "closed only after {:?}",
        idle_since.elapsed()
    );
}

/// A `/sleep` is a request like any other: past `--request-timeout` it is answered 504, and the
/// connection goes on.
#[test]
fn a_sleep_longer_than_the_request_timeout_gets_504() {
    let server = spawn_binary(&["--pool", "1", "--request-timeout", "0.5"]);
    let mut client = Client::connect(server.addr());
    let started = Instant::now();
    assert_eq!(client.request(get("/sleep?ms=3000")).status, 504);
    assert!(started.elapsed() < Duration::from_millis(2000));
    assert_eq!(client.request(get("/plaintext")).status, 200);
}

/// A `/sleep` exactly as long as `--request-timeout` is released by its own timer, not answered
/// 504 by its deadline at the same instant.
#[test]
fn a_sleep_as_long_as_the_request_timeout_is_answered() {
    let server = spawn_binary(&["--pool", "1", "--request-timeout", "0.5"]);
    let mut client = Client::connect(server.addr());
    let response = client.request(get("/sleep?ms=500"));
    assert_eq!(response.status, 200, "{response:?}");
}

/// A lone CR after a response (the start of an empty line) is not a request head: the
/// connection stays idle and closes silently at `--keep-alive-timeout`, not with a 408 at
/// `--header-timeout`.
#[test]
fn a_lone_cr_leaves_the_connection_idle() {
    let server = spawn_binary(&[
        "--pool",
        "1",
        "--keep-alive-timeout",
        "0.5",
        "--header-timeout",
        "4",
    ]);
    let mut client = Client::connect(server.addr());
    assert_eq!(client.request(get("/plaintext")).status, 200);
    client.send("\r");
    let started = Instant::now();
    client.assert_closed_silently(Duration::from_secs(3));
    assert!(started.elapsed() < Duration::from_secs(2));
}
