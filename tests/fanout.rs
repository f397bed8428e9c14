//! `GET /fanout`: K calls to the upstream's `/sleep`, awaited on the reactor, blocking in pool
//! jobs, or blocking the reactor. The blocking modes are checked against the test upstream:
//! what they answer, how long they take, how many threads they hold, and who else waits
//! meanwhile. Every failure of a call is answered by its cause.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use evloop::config::Config;
use evloop::endpoints;
use evloop::outbound::{CallLimits, Upstream};

use common::upstream::{Behaviour, TestUpstream};
use common::{get, spawn_binary, spawn_in_process, test_config, Client};

/// An in-process evloop with every endpoint, a pool of `pool`, calling `upstream`.
fn server(pool: usize, upstream: Option<Arc<Upstream>>, calls: CallLimits) -> SocketAddr {
    let config = Config {
        pool,
        upstream,
        calls,
        ..test_config()
    };
    spawn_in_process(config.clone(), endpoints::router_for(&config))
}

/// The same, calling `upstream` with the default limits.
fn server_for(pool: usize, upstream: &TestUpstream) -> SocketAddr {
    server(pool, Some(upstream.upstream()), CallLimits::default())
}

/// `GET path` on a new connection.
fn fetch(addr: SocketAddr, path: &str) -> common::Response {
    Client::connect(addr).request(get(path))
}

/// Send `GET slow` on one connection and, `after` it, time a `GET /plaintext` on another:
/// how long another client waits while the fan-out runs. Returns the fan-out's answer too.
fn time_a_bystander(addr: SocketAddr, slow: &str, after: Duration) -> (common::Response, Duration) {
    let mut fanning = Client::connect(addr);
    let mut bystander = Client::connect(addr);
    fanning.send(get(slow));
    sleep(after);
    let asked = Instant::now();
    let plain = bystander.request(get("/plaintext"));
    let waited = asked.elapsed();
    assert_eq!(plain.status, 200, "{plain:?}");
    (fanning.read_response(), waited)
}

/// Without `--upstream` the answer is 503, JSON, saying how to start the server, and never
/// stored by a cache.
#[test]
fn without_upstream_is_503() {
    let addr = server(1, None, CallLimits::default());
    for mode in ["await", "pool", "inline"] {
        let response = fetch(addr, &format!("/fanout?mode={mode}"));
        let message = response.assert_json_error(503);
        assert_eq!(message, "no upstream: start evloop with --upstream URL");
        assert_eq!(response.header("cache-control"), Some("no-store"));
    }
}

/// Parameters out of range or of the wrong kind are 400, and no call is made.
#[test]
fn bad_parameters_are_400_and_call_nothing() {
    let upstream = TestUpstream::start(Behaviour::Sleep);
    let addr = server_for(1, &upstream);
    for query in ["n=0", "n=1001", "n=many", "ms=60001", "mode=threads"] {
        let response = fetch(addr, &format!("/fanout?{query}"));
        let message = response.assert_json_error(400);
        let name = query.split('=').next().unwrap();
        assert!(message.contains(&format!("`{name}`")), "{query}: {message}");
    }
    assert_eq!(upstream.accepted(), 0);
}

/// `mode=pool`: each call holds a worker, so 8 calls of 100 ms on a pool of 4 take at least
/// 200 ms; `threads` counts the workers that made calls, and the time agrees with it. Each
/// call opens its own connection and closes it after the response (`requests.get`, no
/// session). The reactor stays free: another client is answered at once meanwhile.
#[test]
fn pool_mode_holds_a_worker_per_call() {
    let upstream = TestUpstream::start(Behaviour::Sleep);
    let addr = server_for(4, &upstream);
    let (response, waited) = time_a_bystander(
        addr,
        "/fanout?n=8&ms=100&mode=pool",
        Duration::from_millis(50),
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("cache-control"), Some("no-store"));
    let json = response.json();
    assert_eq!(
        (json["mode"].as_str(), json["n"].as_u64()),
        (Some("pool"), Some(8))
    );
    assert_eq!(json["ms"], 100);
    let threads = json["threads"].as_u64().unwrap();
    assert!((1..=4).contains(&threads), "{json}");
    let elapsed = json["elapsed_ms"].as_f64().unwrap();
    // At most `threads` calls ran at once, each for 100 ms.
    let rounds = 8_u64.div_ceil(threads) as f64;
    assert!(elapsed >= 100.0 * rounds && elapsed < 3000.0, "{json}");
    assert!(
        waited < Duration::from_millis(100),
        "a bystander waited {waited:?} while the pool made the calls"
    );

    assert_eq!((upstream.accepted(), upstream.requests()), (8, 8));
    assert!(
        upstream
            .wait_peer_closed(8, Duration::from_secs(2))
            .is_some(),
        "every blocking call closes its connection"
    );
}

/// `mode=inline`: the calls run one after another on the reactor, so 3 calls of 100 ms take
/// 300 ms, and a client that arrives meanwhile waits for all of them: the mistake on purpose.
#[test]
fn inline_mode_blocks_every_connection() {
    let upstream = TestUpstream::start(Behaviour::Sleep);
    let addr = server_for(2, &upstream);
    let (response, waited) = time_a_bystander(
        addr,
        "/fanout?n=3&ms=100&mode=inline",
        Duration::from_millis(50),
    );
    assert_eq!(response.status, 200, "{response:?}");
    let json = response.json();
    assert_eq!(json["mode"], "inline");
    assert_eq!(json["threads"], 1);
    let elapsed = json["elapsed_ms"].as_f64().unwrap();
    assert!((300.0..3000.0).contains(&elapsed), "{json}");
    assert!(
        waited >= Duration::from_millis(200),
        "a bystander waited only {waited:?}: the reactor was not blocked"
    );
    assert_eq!(upstream.accepted(), 3);
}

/// An upstream that answers something other than 200 is a 502 naming the status and how many
/// calls got it: here a base path under which `/sleep` does not exist.
#[test]
fn other_statuses_are_502() {
    let upstream = TestUpstream::start(Behaviour::Sleep);
    let missing = Upstream::parse(&format!("{}/missing", upstream.url())).unwrap();
    let addr = server(2, Some(Arc::new(missing)), CallLimits::default());
    for mode in ["await", "pool", "inline"] {
        let response = fetch(addr, &format!("/fanout?n=3&ms=0&mode={mode}"));
        assert_eq!(
            response.assert_json_error(502),
            "upstream answered 404 to 3 of 3 calls",
            "{mode}"
        );
    }
}

/// A call that fails outright is answered by its cause, in both blocking modes: refused and
/// reset are 502, an upstream that answers garbage is 502, one that never answers is 504 once
/// the response timeout has passed.
#[test]
fn failed_calls_are_answered_by_cause() {
    let limits = CallLimits {
        response_timeout: Duration::from_millis(200),
        ..CallLimits::default()
    };
    for (behaviour, status, message) in [
        (Behaviour::Refuse, 502, "upstream refused the connection"),
        (
            Behaviour::ResetMidResponse,
            502,
            "upstream reset the connection",
        ),
        (
            Behaviour::Garbage,
            502,
            "upstream sent a malformed status line",
        ),
        (Behaviour::Hang, 504, "upstream did not answer in time"),
    ] {
        let upstream = TestUpstream::start(behaviour);
        let addr = server(2, Some(upstream.upstream()), limits);
        for mode in ["await", "pool", "inline"] {
            let response = fetch(addr, &format!("/fanout?n=2&ms=0&mode={mode}"));
            assert_eq!(
                response.assert_json_error(status),
                message,
                "{behaviour:?} {mode}"
            );
            assert_eq!(response.header("cache-control"), Some("no-store"));
        }
    }
}

/// The binary takes the upstream and its timeout from the command line: calls reach the
/// upstream, and `--upstream-timeout` bounds them; the inline mode's blocking turn is logged
/// with the handler's name.
#[test]
fn binary_calls_the_upstream_from_the_command_line() {
    let sleepy = TestUpstream::start(Behaviour::Sleep);
    let server = spawn_binary(&["--pool", "2", "--upstream", &sleepy.url()]);
    let response = fetch(server.addr(), "/fanout?n=4&ms=10&mode=pool");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(sleepy.requests(), 4);
    let response = fetch(server.addr(), "/fanout?n=2&ms=100&mode=inline");
    assert_eq!(response.status, 200, "{response:?}");
    // The warning is logged at the end of the turn, after the response was written.
    let logged =
        |log: &str| log.contains("slow reactor turn") && log.contains("handler GET /fanout");
    let deadline = Instant::now() + Duration::from_secs(2);
    while !logged(&server.stderr()) && Instant::now() < deadline {
        sleep(Duration::from_millis(10));
    }
    assert!(logged(&server.stderr()), "{}", server.stderr());

    let hang = TestUpstream::start(Behaviour::Hang);
    let server = spawn_binary(&[
        "--pool",
        "1",
        "--upstream",
        &hang.url(),
        "--upstream-timeout",
        "0.2",
    ]);
    let started = Instant::now();
    let response = fetch(server.addr(), "/fanout?n=1&mode=pool");
    response.assert_json_error(504);
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// `mode=await`: the reactor makes all K calls at once on its own sockets, so 50 calls of
/// 200 ms take about 200 ms with one thread, and another client is answered at once
/// meanwhile.
#[test]
fn await_mode_waits_on_the_reactor() {
    let upstream = TestUpstream::start(Behaviour::Sleep);
    let addr = server_for(2, &upstream);
    let (response, waited) =
        time_a_bystander(addr, "/fanout?n=50&ms=200", Duration::from_millis(50));
    assert_eq!(response.status, 200, "{response:?}");
    let json = response.json();
    assert_eq!(json["mode"], "await");
    assert_eq!(json["threads"], 1);
    let elapsed = json["elapsed_ms"].as_f64().unwrap();
    assert!((200.0..1000.0).contains(&elapsed), "{json}");
    assert!(waited < Duration::from_millis(100), "{waited:?}");
    assert_eq!(upstream.requests(), 50);
}

/// The inline mode blocks the reactor, whose own deadlines cannot fire meanwhile: the handler
/// holds its calls to `--request-timeout` itself, so a fan-out that would take 2.4 s is cut
/// short at 0.5 s with a 504, and the other client waits no longer than that.
#[test]
fn inline_mode_keeps_to_the_request_timeout() {
    let upstream = TestUpstream::start(Behaviour::Sleep);
    let config = Config {
        upstream: Some(upstream.upstream()),
        request_timeout: Duration::from_millis(500),
        ..test_config()
    };
    let addr = spawn_in_process(config.clone(), endpoints::router_for(&config));
    let started = Instant::now();
    let (response, waited) = time_a_bystander(
        addr,
        "/fanout?n=6&ms=400&mode=inline",
        Duration::from_millis(50),
    );
    let took = started.elapsed();
    assert_eq!(response.assert_json_error(504), "request timed out");
    // 500 ms and not a call longer: the calls share the request's deadline.
    assert!(took < Duration::from_millis(750), "took {took:?}");
    assert!(
        waited < Duration::from_millis(750),
        "the other client waited {waited:?}"
    );
}
