//! Graceful shutdown: on SIGTERM/SIGINT readiness flips to 503, the listener closes, requests in
//! flight finish with `Connection: close`, and the process exits 0; a second SIGINT or SIGTERM
//! exits at once (130); a drain that outlives `--shutdown-timeout` is aborted (exit 1), even when
//! a pool job ignores its cancel flag. Other signals (SIGHUP, SIGUSR1/2, SIGALRM) are logged and
//! ignored: they neither kill the process nor start a drain.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use evloop::config::Config;
use evloop::endpoints;
use evloop::http::{Method, Response};
use evloop::reactor::{Exit, Server};
use evloop::router::Reply;

use common::{
    assert_between, connection_refused, get, spawn_binary, test_config, wait_until_refused, Client,
};

/// A connection with `request` in flight: it is sent behind a `/plaintext` in the same write,
/// and the server reads and dispatches both at once, so once the plaintext is answered the
/// request has been dispatched — however slow the machine — and a signal sent now finds it in
/// flight (a connection only connected might still wait in the backlog, and be reset when the
/// listener closes).
fn in_flight(addr: std::net::SocketAddr, request: &str) -> Client {
    let mut client = Client::connect(addr);
    client.send(format!("{}{request}", get("/plaintext")));
    assert_eq!(client.read_response().text(), "Hello, World!");
    client
}

/// SIGTERM with requests in flight: each finishes with 200 and `Connection: close`, a request
/// arriving on an idle connection during the drain is answered (readiness 503) rather than reset,
/// new connections are refused, and the process exits 0.
#[test]
fn sigterm_drains_in_flight_requests_and_exits_0() {
    let mut server = spawn_binary(&["--pool", "2"]);
    let addr = server.addr();

    let mut idle = Client::connect(addr);
    assert_eq!(idle.request(get("/readyz")).text(), r#"{"status":"ready"}"#);
    let mut sleeping = in_flight(addr, &get("/sleep?ms=700"));
    let mut burning = in_flight(addr, &get("/cpu?ms=500"));

    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    assert!(
        wait_until_refused(addr, Duration::from_secs(2)),
        "the listener stayed open after SIGTERM"
    );

    // The drain has begun: a request on the idle connection is answered, and says close.
    idle.send(get("/readyz"));
    let responses = idle.responses_until_close(Duration::from_secs(3));
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_eq!(responses[0].status, 503);
    assert_eq!(responses[0].text(), r#"{"status":"draining"}"#);
    assert!(responses[0].says_close());

    let slept = sleeping.responses_until_close(Duration::from_secs(3));
    assert_eq!(slept.len(), 1, "{slept:?}");
    assert_eq!(slept[0].status, 200);
    assert_eq!(slept[0].text(), r#"{"slept_ms":700}"#);
    assert!(slept[0].says_close(), "{:?}", slept[0]);

    let burnt = burning.responses_until_close(Duration::from_secs(3));
    assert_eq!(burnt.len(), 1, "{burnt:?}");
    assert_eq!(burnt[0].status, 200);
    assert_eq!(burnt[0].json()["ms"], 500);
    assert!(burnt[0].says_close(), "{:?}", burnt[0]);

    drop((idle, sleeping, burning));
    assert_eq!(server.exit_code_within(Duration::from_secs(5)), 0);
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "drain took {:?}",
        signalled.elapsed()
    );
    assert!(connection_refused(addr));
}

/// A pipelined batch that arrives on an idle connection *after* the drain began is answered in
/// full: every request gets its response, in order, and only the last says `Connection: close`.
#[test]
fn a_batch_arriving_during_the_drain_is_answered_in_full() {
    let mut server = spawn_binary(&["--pool", "2"]);
    let addr = server.addr();
    let mut client = Client::connect(addr);
    assert_eq!(client.request(get("/plaintext")).status, 200);
    server.signal(libc::SIGTERM);
    assert!(
        wait_until_refused(addr, Duration::from_secs(2)),
        "the listener stayed open after SIGTERM"
    );
    client.send(format!(
        "{}{}{}",
        get("/sleep?ms=50"),
        get("/plaintext"),
        get("/cpu?ms=5")
    ));
    let responses = client.responses_until_close(Duration::from_secs(3));
    assert_eq!(responses.len(), 3, "{responses:?}");
    assert_eq!(responses[0].text(), r#"{"slept_ms":50}"#);
    assert_eq!(responses[1].text(), "Hello, World!");
    assert_eq!(responses[2].json()["ms"], 5);
    assert!(!responses[0].says_close() && !responses[1].says_close());
    assert!(responses[2].says_close(), "{:?}", responses[2]);
    drop(client);
    assert_eq!(server.exit_code_within(Duration::from_secs(5)), 0);
}

/// Requests already pipelined when the drain begins are all answered, in order, the last one
/// with `Connection: close`.
#[test]
fn pipelined_requests_are_answered_during_the_drain() {
    let mut server = spawn_binary(&["--pool", "1"]);
    let mut client = in_flight(
        server.addr(),
        &format!(
            "{}{}{}",
            get("/sleep?ms=400"),
            get("/plaintext"),
            get("/json")
        ),
    );
    server.signal(libc::SIGTERM);
    let responses = client.responses_until_close(Duration::from_secs(3));
    assert_eq!(responses.len(), 3, "{responses:?}");
    assert_eq!(responses[0].text(), r#"{"slept_ms":400}"#);
    assert_eq!(responses[1].text(), "Hello, World!");
    assert_eq!(responses[2].text(), r#"{"message":"Hello, World!"}"#);
    assert!(responses[2].says_close());
    drop(client);
    assert_eq!(server.exit_code_within(Duration::from_secs(5)), 0);
}

/// An idle server exits 0 promptly on SIGINT, and idle connections are closed without a byte.
#[test]
fn sigint_on_an_idle_server_exits_0() {
    let mut server = spawn_binary(&["--pool", "1"]);
    let mut idle = Client::connect(server.addr());
    assert_eq!(idle.request(get("/plaintext")).status, 200);
    let signalled = Instant::now();
    server.signal(libc::SIGINT);
    idle.assert_closed_silently(Duration::from_secs(2));
    assert_eq!(server.exit_code_within(Duration::from_secs(3)), 0);
    assert!(signalled.elapsed() < Duration::from_secs(2));
}

/// A second SIGINT during a drain exits at once with status 130, without waiting for the
/// request still in flight.
#[test]
fn second_sigint_exits_at_once_with_130() {
    let mut server = spawn_binary(&["--pool", "1"]);
    let _client = in_flight(server.addr(), &get("/sleep?ms=10000"));
    server.signal(libc::SIGINT);
    assert!(wait_until_refused(server.addr(), Duration::from_secs(2)));
    let second = Instant::now();
    server.signal(libc::SIGINT);
    assert_eq!(server.exit_code_within(Duration::from_secs(2)), 130);
    assert!(second.elapsed() < Duration::from_secs(1));
}

/// A second SIGTERM during a drain exits at once with status 130, like a second SIGINT.
#[test]
fn second_sigterm_exits_at_once_with_130() {
    let mut server = spawn_binary(&["--pool", "1"]);
    let _client = in_flight(server.addr(), &get("/sleep?ms=10000"));
    server.signal(libc::SIGTERM);
    assert!(wait_until_refused(server.addr(), Duration::from_secs(2)));
    let second = Instant::now();
    server.signal(libc::SIGTERM);
    assert_eq!(server.exit_code_within(Duration::from_secs(2)), 130);
    assert!(second.elapsed() < Duration::from_secs(1));
}

/// SIGHUP, SIGUSR1, SIGUSR2 and SIGALRM, whose default action would kill the process on the
/// spot, are logged and ignored: the server keeps answering on the same connection and on new
/// ones, and still drains and exits 0 on SIGTERM afterwards.
#[test]
fn other_signals_are_logged_and_ignored() {
    let mut server = spawn_binary(&["--pool", "1"]);
    let mut kept = Client::connect(server.addr());
    assert_eq!(kept.request(get("/plaintext")).status, 200);
    for (signal, name) in [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGALRM, "SIGALRM"),
    ] {
        server.signal(signal);
        sleep(Duration::from_millis(100));
        assert!(
            server.wait_timeout(Duration::ZERO).is_none(),
            "{name} killed the server"
        );
        assert_eq!(kept.request(get("/plaintext")).status, 200, "after {name}");
        let mut fresh = Client::connect(server.addr());
        assert_eq!(fresh.request(get("/readyz")).status, 200, "after {name}");
        server.wait_for_log_line(
            &[&format!("received {name}: ignored")],
            Duration::from_secs(5),
        );
    }
    drop(kept);
    server.signal(libc::SIGTERM);
    assert_eq!(server.exit_code_within(Duration::from_secs(3)), 0);
}

/// A drain that outlives `--shutdown-timeout` (a 5 s sleep in flight, 0.5 s allowed) is aborted:
/// exit status 1, soon after the timeout.
#[test]
fn shutdown_timeout_aborts_with_exit_1() {
    let mut server = spawn_binary(&["--pool", "1", "--shutdown-timeout", "0.5"]);
    let _client = in_flight(server.addr(), &get("/sleep?ms=5000"));
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    assert_eq!(server.exit_code_within(Duration::from_secs(4)), 1);
    assert_between(
        "aborted drain",
        signalled.elapsed(),
        Duration::from_millis(450),
        Duration::from_millis(2500),
    );
}

/// The shutdown timeout also bounds a drain waiting on a pool job: with an 8 s `/cpu` running,
/// the process still exits 1 soon after `--shutdown-timeout 0.5`.
#[test]
fn shutdown_timeout_aborts_a_running_job() {
    let mut server = spawn_binary(&["--pool", "1", "--shutdown-timeout", "0.5"]);
    let _client = in_flight(server.addr(), &get("/cpu?ms=8000"));
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.wait_timeout(Duration::from_secs(10));
    let took = signalled.elapsed();
    assert_eq!(status.and_then(|s| s.code()), Some(1));
    assert!(
        took < Duration::from_millis(2500),
        "exit 1 came {took:?} after SIGTERM with --shutdown-timeout 0.5"
    );
}

/// A library user drains a server from another thread with its shutdown handle: the request in
/// flight is answered with `Connection: close`, and `run` returns a graceful exit (status 0).
#[test]
fn shutdown_handle_drains_an_in_process_server() {
    let server = Server::bind(Config {
        port: 0,
        ..test_config()
    })
    .expect("bind");
    let addr = server.local_addr();
    let handle = server.shutdown_handle();
    let reactor = std::thread::spawn(move || server.run(endpoints::router()));

    let mut client = in_flight(addr, &get("/sleep?ms=300"));
    handle.shutdown();
    let responses = client.responses_until_close(Duration::from_secs(3));
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_eq!(responses[0].text(), r#"{"slept_ms":300}"#);
    assert!(responses[0].says_close());
    drop(client);

    let exit = reactor.join().expect("reactor thread").expect("run");
    assert_eq!(exit, Exit::Graceful);
    assert_eq!(exit.code(), 0);
    assert!(connection_refused(addr));
}

/// A pool job that ignores its cancel flag cannot hold the exit past `--shutdown-timeout`: its
/// client has left, so the drain itself completes at once, but the worker is still busy for
/// 30 s. `run` gives up on it at the shutdown deadline (1 s) and returns `Exit::TimedOut`
/// (status 1) instead of waiting for it.
#[test]
fn a_job_that_ignores_cancellation_cannot_hold_the_exit() {
    // Sleeps rather than spins: it ignores cancellation just the same, without taking a CPU
    // from the tests running beside it.
    static STARTED: AtomicBool = AtomicBool::new(false);
    let router = endpoints::router().route(Method::Get, "/stubborn", |_, _| {
        Reply::offload(|_| {
            STARTED.store(true, Ordering::SeqCst);
            sleep(Duration::from_secs(30));
            Response::text(200, "too late")
        })
    });
    let server = Server::bind(Config {
        pool: 1,
        shutdown_timeout: Duration::from_secs(1),
        ..test_config()
    })
    .expect("bind");
    let addr = server.local_addr();
    let handle = server.shutdown_handle();
    let (done, exited) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(server.run(router));
    });

    let mut client = Client::connect(addr);
    client.send(get("/stubborn"));
    // Once the only worker is inside the job (a job still queued would simply be skipped):
    let deadline = Instant::now() + Duration::from_secs(10);
    while !STARTED.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the job did not start within 10 s"
        );
        sleep(Duration::from_millis(1));
    }
    drop(client); // the job is cancelled, and ignores it
    sleep(Duration::from_millis(100));

    let asked = Instant::now();
    handle.shutdown();
    let exit = exited
        .recv_timeout(Duration::from_secs(5))
        .expect("run did not return within 5 s: it waited for the stubborn job")
        .expect("run");
    assert_eq!(exit, Exit::TimedOut);
    assert_eq!(exit.code(), 1);
    assert_between(
        "exit after the shutdown request",
        asked.elapsed(),
        Duration::from_millis(900),
        Duration::from_millis(2500),
    );
}
