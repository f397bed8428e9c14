//! The test upstream itself (`tests/common/upstream.rs`): each behaviour does what the tests
//! of calls rely on, as seen by a raw client and by evloop's blocking client.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use evloop::http::client::ResponseError;
use evloop::outbound::{call_blocking, CallError, CallLimits, CallRequest};

use common::upstream::{Behaviour, TestUpstream};
use common::{get, Client};

/// Call limits with a response timeout of `ms`.
fn timeout_ms(ms: u64) -> CallLimits {
    CallLimits {
        response_timeout: Duration::from_millis(ms),
        ..CallLimits::default()
    }
}

/// One blocking call of `path` to `upstream`.
fn call(upstream: &TestUpstream, path: &str, limits: &CallLimits) -> Result<u16, CallError> {
    let request = CallRequest::get(&upstream.upstream(), path);
    call_blocking(&request, limits).map(|response| response.status)
}

/// `Sleep` answers pipelined requests in order on one kept-alive connection, each after its
/// sleep; other paths are 404; the client's close is seen.
#[test]
fn sleep_keeps_alive_and_answers_in_order() {
    let upstream = TestUpstream::start(Behaviour::Sleep);
    let mut client = Client::connect(upstream.addr());
    let started = Instant::now();
    client.send(get("/sleep?ms=30") + &get("/sleep?ms=0"));
    let first = client.read_response();
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!((first.status, first.text()), (200, r#"{"slept_ms":30}"#));
    assert!(!first.says_close());
    assert_eq!(client.read_response().text(), r#"{"slept_ms":0}"#);
    assert_eq!(client.request(get("/elsewhere")).status, 404);
    assert_eq!(client.request(get("/sleep?ms=x")).status, 400);
    assert_eq!((upstream.accepted(), upstream.requests()), (1, 4));

    drop(client);
    assert!(upstream
        .wait_peer_closed(1, Duration::from_secs(2))
        .is_some());
}

/// `Sleep` serves connections at once: ten calls of 200 ms take about 200 ms, not 2 s.
#[test]
fn sleep_serves_connections_at_once() {
    let upstream = TestUpstream::start(Behaviour::Sleep);
    let started = Instant::now();
    thread::scope(|scope| {
        let calls: Vec<_> = (0..10)
            .map(|_| scope.spawn(|| call(&upstream, "/sleep?ms=200", &CallLimits::default())))
            .collect();
        for call in calls {
            assert_eq!(call.join().unwrap(), Ok(200));
        }
    });
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(upstream.accepted(), 10);
    // Each blocking call closes its connection after the response.
    assert!(upstream
        .wait_peer_closed(10, Duration::from_secs(2))
        .is_some());
}

/// `Hang` never answers, and sees the moment the caller gives up and closes: after the
/// caller's 100 ms, not at once. The bound has 10 ms of slack, as timing bounds in these tests
/// do: the two instants are read on two threads, and a run of CI once saw the close land under
/// the bare 100 ms.
#[test]
fn hang_sees_the_caller_give_up() {
    let upstream = TestUpstream::start(Behaviour::Hang);
    let started = Instant::now();
    assert_eq!(
        call(&upstream, "/sleep?ms=0", &timeout_ms(100)),
        Err(CallError::ResponseTimeout)
    );
    let closed = upstream
        .wait_peer_closed(1, Duration::from_secs(2))
        .expect("the upstream sees the close");
    let after = closed.saturating_duration_since(started);
    assert!(
        after >= Duration::from_millis(90),
        "the upstream saw the close {after:?} after the call began"
    );
    assert_eq!(upstream.requests(), 1);
}

/// The misbehaviours fail a call the way each should: a reset mid-response, a response that
/// is not HTTP, a refused connection.
#[test]
fn misbehaviours_fail_calls() {
    let reset = TestUpstream::start(Behaviour::ResetMidResponse);
    assert_eq!(
        call(&reset, "/sleep?ms=0", &timeout_ms(2000)),
        Err(CallError::Reset)
    );
    assert_eq!(reset.peer_closed(), 0, "the upstream closed, not the peer");

    let garbage = TestUpstream::start(Behaviour::Garbage);
    assert_eq!(
        call(&garbage, "/sleep?ms=0", &timeout_ms(2000)),
        Err(CallError::Protocol(ResponseError::MalformedStatusLine))
    );
    assert!(garbage
        .wait_peer_closed(1, Duration::from_secs(2))
        .is_some());

    let refuse = TestUpstream::start(Behaviour::Refuse);
    assert_eq!(
        call(&refuse, "/sleep?ms=0", &timeout_ms(2000)),
        Err(CallError::Refused)
    );
    assert_eq!(refuse.accepted(), 0);
}

/// `CloseAfterEach` answers with keep-alive semantics, then closes silently after the delay;
/// a request sent meanwhile is read but never answered.
#[test]
fn close_after_each_leaves_a_stale_connection() {
    let after = Duration::from_millis(100);
    let upstream = TestUpstream::start(Behaviour::CloseAfterEach { after });
    let mut client = Client::connect(upstream.addr());
    let response = client.request(get("/sleep?ms=0"));
    let answered = Instant::now();
    assert_eq!(response.status, 200);
    assert!(!response.says_close(), "{response:?}");
    client.send(get("/sleep?ms=0"));
    client.assert_closed_silently(Duration::from_secs(2));
    assert!(answered.elapsed() >= after - Duration::from_millis(10));
    assert_eq!(upstream.requests(), 2);
    assert_eq!(upstream.peer_closed(), 0);
}
