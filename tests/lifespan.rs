//! The lifespan: start-up hooks run on a thread of their own before the server turns ready,
//! while `/healthz` and `/metrics` answer and every other route is 503 `starting` with
//! `Retry-After: 1`; `on_ready` is called once, on the reactor thread; a failing hook (an error
//! or a panic) drains what was accepted and ends the run with exit status 3;
//! `accept_after_ready` keeps clients in the kernel's backlog instead of answering 503; shutdown
//! hooks run after the drain and the pool, last registered first, within `--shutdown-timeout`.
//!
//! Most tests hold a start-up hook on a gate the test opens, so that "while starting" lasts
//! exactly as long as the test needs, however slow the machine.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use evloop::config::Config;
use evloop::endpoints;
use evloop::http::{Method, Response};
use evloop::lifespan::{App, HookResult};
use evloop::reactor::{Exit, Server};
use evloop::router::{Reply, Router};

use common::{
    assert_between, get, spawn_binary_with, spawn_in_process, start_in_process, test_config,
    Admission, Client, Spawn,
};

/// How the test opens a [`gate`].
enum Open {
    /// The hook returns `Ok`.
    Pass,
    /// The hook returns an error.
    Fail,
    /// The hook panics.
    Panic,
}

/// A start-up hook that waits until the test opens the gate, then passes, fails or panics as
/// told. A test that never opens it (or drops the sender) makes it fail.
fn gate() -> (
    mpsc::Sender<Open>,
    impl FnOnce() -> HookResult + Send + 'static,
) {
    let (open, opened) = mpsc::channel();
    let hook = move || match opened.recv_timeout(Duration::from_secs(60)) {
        Ok(Open::Pass) => Ok(()),
        Ok(Open::Fail) => Err("the gate says no".into()),
        Ok(Open::Panic) => panic!("the gate panics"),
        Err(_) => Err("the gate was never opened".into()),
    };
    (open, hook)
}

/// Assert `response` is the 503 a route gives while the server starts.
fn assert_starting(response: &common::Response) {
    let message = response.assert_json_error(503);
    assert!(message.starts_with("starting"), "{message:?}");
    assert_eq!(response.header("retry-after"), Some("1"), "{response:?}");
}

/// While a start-up hook runs, the server is alive and says it is not ready: `/healthz` 200,
/// `/readyz` and `/plaintext` 503 `starting` with `Retry-After: 1`, `/metrics` 200; `on_ready`
/// has not been called. Once the hook returns: `/readyz` 200 and `/plaintext` 200, and
/// `on_ready` has been called exactly once.
#[test]
fn while_starting_only_probes_are_served() {
    let config = test_config();
    let (open, hook) = gate();
    let app = endpoints::app_for(&config).on_startup("gate", hook);
    let server = start_in_process(config, app, Admission::AtOnce);

    let mut client = Client::connect(server.addr);
    assert_eq!(client.request(get("/healthz")).text(), r#"{"status":"ok"}"#);
    assert_starting(&client.request(get("/readyz")));
    assert_starting(&client.request(get("/plaintext")));
    let scrape = client.request(get("/metrics"));
    assert_eq!(scrape.status, 200, "{scrape:?}");
    assert_eq!(
        server.ready_calls(),
        0,
        "on_ready called before the hooks finished"
    );

    open.send(Open::Pass).unwrap();
    assert!(server.wait_ready(Duration::from_secs(10)), "never ready");
    assert_eq!(
        client.request(get("/readyz")).text(),
        r#"{"status":"ready"}"#
    );
    assert_eq!(client.request(get("/plaintext")).text(), "Hello, World!");
    sleep(Duration::from_millis(100));
    assert_eq!(server.ready_calls(), 0, "on_ready called more than once");

    server.shutdown.shutdown();
    assert_eq!(server.exit_within(Duration::from_secs(10)), Exit::Graceful);
}

/// `on_ready` runs on the thread that runs the loop, and with no start-up hook at all it is
/// still called, once, as the loop begins.
#[test]
fn on_ready_runs_once_on_the_reactor_thread() {
    let mut server = Server::bind(test_config()).expect("bind");
    let (tx, rx) = mpsc::channel();
    server.on_ready(move || {
        let _ = tx.send(thread::current().name().map(str::to_string));
    });
    let handle = server.shutdown_handle();
    let reactor = thread::Builder::new()
        .name("the-loop".to_string())
        .spawn(move || server.run(Router::new()))
        .unwrap();
    let name = rx.recv_timeout(Duration::from_secs(10)).expect("on_ready");
    assert_eq!(name.as_deref(), Some("the-loop"));
    handle.shutdown();
    assert_eq!(reactor.join().unwrap().unwrap(), Exit::Graceful);
    assert!(rx.try_recv().is_err(), "on_ready called twice");
}

/// A start-up hook that fails, by an error or a panic, stops the server: a request already in
/// flight is answered (with `Connection: close`), the hooks after it and the shutdown hooks
/// never run, `on_ready` is never called, and `run` returns `Exit::StartupFailed` (status 3).
#[test]
fn a_failing_start_up_hook_drains_and_exits_3() {
    for how in [Open::Fail, Open::Panic] {
        let after = Arc::new(AtomicBool::new(false));
        let cleaned = Arc::new(AtomicBool::new(false));
        let (after_ran, cleanup_ran) = (Arc::clone(&after), Arc::clone(&cleaned));
        let router = Router::new().route_while_starting(Method::Get, "/slow-probe", |_, _| {
            Reply::After(Duration::from_millis(300), Response::text(200, "slow"))
        });
        let (open, hook) = gate();
        let app = App::new(router)
            .on_startup("gate", hook)
            .on_startup("after", move || {
                after_ran.store(true, Ordering::SeqCst);
                Ok(())
            })
            .on_shutdown("cleanup", move || {
                cleanup_ran.store(true, Ordering::SeqCst);
                Ok(())
            });
        let server = start_in_process(test_config(), app, Admission::AtOnce);

        // Behind a 404 in the same write: once the 404 is back, both were dispatched.
        let mut client = Client::connect(server.addr);
        client.send(format!("{}{}", get("/nowhere"), get("/slow-probe")));
        assert_eq!(client.read_response().status, 404);
        open.send(how).unwrap();
        let responses = client.responses_until_close(Duration::from_secs(5));
        assert_eq!(responses.len(), 1, "{responses:?}");
        assert_eq!(responses[0].text(), "slow");
        assert!(responses[0].says_close(), "{:?}", responses[0]);

        let exit = server.exit_within(Duration::from_secs(10));
        assert_eq!(exit, Exit::StartupFailed);
        assert_eq!(exit.code(), 3);
        assert!(
            !after.load(Ordering::SeqCst),
            "a hook after the failure ran"
        );
        assert!(!cleaned.load(Ordering::SeqCst), "a shutdown hook ran");
        assert_eq!(server.ready_calls(), 0, "on_ready called");
    }
}

/// With `accept_after_ready`, a client that connects while the server starts waits in the
/// backlog, unanswered, and once the start-up hooks finish gets its 200 (not a 503).
#[test]
fn accept_after_ready_keeps_clients_waiting_instead_of_refusing_them() {
    let config = test_config();
    let (open, hook) = gate();
    let app = App::new(endpoints::router_for(&config)).on_startup("gate", hook);
    let server = start_in_process(config, app, Admission::AfterReady);

    let mut early = Client::connect(server.addr);
    early.send(get("/plaintext"));
    early.assert_silent_for(Duration::from_millis(300));
    open.send(Open::Pass).unwrap();
    let response = early.read_response();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.text(), "Hello, World!");
    assert!(server.wait_ready(Duration::from_secs(10)));
    server.shutdown.shutdown();
    assert_eq!(server.exit_within(Duration::from_secs(10)), Exit::Graceful);
}

/// A server told to accept after ready that is stopped before it is ready takes nobody from
/// the backlog: the waiting client is closed unanswered, `run` returns a graceful exit, and
/// no shutdown hook runs (the start-up never finished).
#[test]
fn stopped_before_ready_it_answers_nobody_and_runs_no_shutdown_hook() {
    let cleaned = Arc::new(AtomicBool::new(false));
    let cleanup_ran = Arc::clone(&cleaned);
    let (open, hook) = gate();
    let app = App::new(endpoints::router())
        .on_startup("gate", hook)
        .on_shutdown("cleanup", move || {
            cleanup_ran.store(true, Ordering::SeqCst);
            Ok(())
        });
    let server = start_in_process(test_config(), app, Admission::AfterReady);

    let mut early = Client::connect(server.addr);
    early.send(get("/plaintext"));
    early.assert_silent_for(Duration::from_millis(200));
    server.shutdown.shutdown();
    assert_eq!(server.exit_within(Duration::from_secs(10)), Exit::Graceful);
    let (bytes, _) = early.read_to_end(Duration::from_secs(5));
    assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));
    assert!(!cleaned.load(Ordering::SeqCst), "a shutdown hook ran");
    assert_eq!(server.ready_calls(), 0);
    drop(open); // the hook, still waiting, fails; nobody listens any more
}

/// Shutdown hooks run after the drain *and* after the pool is joined (a job that ignores its
/// cancel flag has finished by then), last registered first; one that fails is logged and the
/// others still run; the exit is graceful.
#[test]
fn shutdown_hooks_run_after_the_pool_in_reverse_order() {
    let started = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let (job_started, job_finished) = (Arc::clone(&started), Arc::clone(&finished));
    let router = Router::new().route(Method::Get, "/stubborn", move |_, _| {
        let (started, finished) = (Arc::clone(&job_started), Arc::clone(&job_finished));
        Reply::offload(move |_| {
            started.store(true, Ordering::SeqCst);
            sleep(Duration::from_millis(500)); // ignores its cancel flag
            finished.store(true, Ordering::SeqCst);
            Response::text(200, "late")
        })
    });
    let ran = Arc::new(Mutex::new(Vec::new()));
    let record = |name: &'static str, result: HookResult| {
        let (ran, finished) = (Arc::clone(&ran), Arc::clone(&finished));
        move || {
            let job = finished.load(Ordering::SeqCst);
            ran.lock()
                .unwrap()
                .push(format!("{name} (job finished: {job})"));
            result
        }
    };
    let app = App::new(router)
        .on_shutdown("first", record("first", Ok(())))
        .on_shutdown("failing", record("failing", Err("on purpose".into())))
        .on_shutdown("last", record("last", Ok(())));
    let config = Config {
        pool: 1,
        shutdown_timeout: Duration::from_secs(10),
        ..test_config()
    };
    let server = start_in_process(config, app, Admission::AtOnce);

    let mut client = Client::connect(server.addr);
    client.send(get("/stubborn"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !started.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the job never started");
        sleep(Duration::from_millis(1));
    }
    drop(client); // the drain will have nothing to wait for but the pool
    server.shutdown.shutdown();
    assert_eq!(server.exit_within(Duration::from_secs(10)), Exit::Graceful);
    assert_eq!(
        *ran.lock().unwrap(),
        [
            "last (job finished: true)",
            "failing (job finished: true)",
            "first (job finished: true)"
        ]
    );
}

/// A shutdown hook that hangs cannot hold the exit: `run` returns `Exit::TimedOut` (status 1)
/// about `--shutdown-timeout` (1 s) after the request to stop, and the hook registered before it,
/// due to run after it, never runs.
#[test]
fn a_hanging_shutdown_hook_ends_the_run_with_exit_1_at_the_deadline() {
    let later = Arc::new(AtomicBool::new(false));
    let later_ran = Arc::clone(&later);
    let app = App::new(endpoints::router())
        .on_shutdown("registered first, runs last", move || {
            later_ran.store(true, Ordering::SeqCst);
            Ok(())
        })
        .on_shutdown("hangs", || {
            sleep(Duration::from_secs(30));
            Ok(())
        });
    let config = Config {
        shutdown_timeout: Duration::from_secs(1),
        ..test_config()
    };
    let server = start_in_process(config, app, Admission::AtOnce);
    assert!(server.wait_ready(Duration::from_secs(10)));

    let asked = Instant::now();
    server.shutdown.shutdown();
    let exit = server.exit_within(Duration::from_secs(10));
    assert_eq!(exit, Exit::TimedOut);
    assert_eq!(exit.code(), 1);
    assert_between(
        "exit after the request to stop",
        asked.elapsed(),
        Duration::from_millis(900),
        Duration::from_secs(5),
    );
    assert!(!later.load(Ordering::SeqCst));
}

/// The audio endpoints find their model where the start-up hook puts it: served from a router
/// whose hook never ran, they answer 503 `starting`, never a panic's 500, and the rest of the
/// router is unaffected.
#[test]
fn audio_endpoints_without_their_model_answer_503() {
    let config = test_config();
    let unloaded = endpoints::app_for(&config).router; // the hook that loads the model is dropped
    let addr = spawn_in_process(config, unloaded);
    let mut client = Client::connect(addr);
    for path in [
        "/snr-detect",
        "/speaker-count",
        "/analyze",
        "/analyze/stream",
    ] {
        let response = client.request(format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nRIFF"
        ));
        assert_starting(&response);
    }
    assert_eq!(client.request(get("/plaintext")).status, 200);
}

/// The binary builds its audio model in a start-up hook and says when it is ready: with a slow
/// hook added (`EVLOOP_TEST_STARTUP_DELAY_MS`), it answers `/healthz` 200 and `/readyz` and
/// `/json` 503 at first, then prints its ready line, logs `ready in N ms` (N at least the
/// delay) and serves everything.
#[test]
fn the_binary_answers_probes_while_it_starts() {
    let mut server = spawn_binary_with(
        &["--pool", "1"],
        Spawn {
            env: &[("EVLOOP_TEST_STARTUP_DELAY_MS", "4000")],
            early: true,
            ..Spawn::default()
        },
    );
    let mut client = Client::connect(server.addr());
    assert_eq!(client.request(get("/healthz")).status, 200);
    assert_starting(&client.request(get("/readyz")));
    assert_starting(&client.request(get("/json")));
    assert!(!server.is_ready(), "ready before the delay was over");

    server.wait_ready(Duration::from_secs(30));
    assert_eq!(
        client.request(get("/readyz")).text(),
        r#"{"status":"ready"}"#
    );
    assert_eq!(client.request(get("/json")).status, 200);
    let line = server.wait_for_log_line(&["ready in "], Duration::from_secs(5));
    let ms: u64 = line
        .split("ready in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {line:?}"));
    assert!(ms >= 4000, "{line:?}");
    server.wait_for_log_line(
        &["start-up hook `audio model` done"],
        Duration::from_secs(5),
    );
}

/// The binary exits with status 3 when a start-up hook fails, by an error or by a panic
/// (`EVLOOP_TEST_STARTUP_FAIL`), after an error line naming the hook and its error; it never
/// prints its ready line.
#[test]
fn the_binary_exits_3_when_a_start_up_hook_fails() {
    for (how, says) in [
        ("error", "failed: EVLOOP_TEST_STARTUP_FAIL=error"),
        ("panic", "failed: panicked: EVLOOP_TEST_STARTUP_FAIL=panic"),
    ] {
        let mut server = spawn_binary_with(
            &["--pool", "1"],
            Spawn {
                env: &[("EVLOOP_TEST_STARTUP_FAIL", how)],
                early: true,
                ..Spawn::default()
            },
        );
        assert_eq!(server.exit_code_within(Duration::from_secs(10)), 3, "{how}");
        let log = server.final_stderr(Duration::from_secs(5));
        let line = log
            .lines()
            .find(|line| line.contains("start-up hook `test failure`"))
            .unwrap_or_else(|| panic!("no line naming the hook in:\n{log}"));
        assert!(line.contains("ERROR") && line.contains(says), "{line:?}");
        assert!(!server.is_ready(), "{how}: the ready line was printed");
    }
}
