//! `GET /metrics` on a running server: what it answers parses as strictly as the encoder's
//! own output, and the counters move with the requests made.

mod common;

use std::net::SocketAddr;

use common::metrics::parse::{parse, Exposition};
use common::{get, spawn_in_process, test_config, Client};

/// Scrape `/metrics` on `client`'s connection; fail the test, with the text, if it does not
/// parse.
fn scrape(client: &mut Client) -> (String, Exposition) {
    let response = client.request(get("/metrics"));
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = response.text().to_string();
    match parse(&text) {
        Ok(exposition) => (text, exposition),
        Err(why) => panic!("{why}\n{text}"),
    }
}

fn server() -> SocketAddr {
    spawn_in_process(test_config(), evloop::endpoints::router())
}

/// Open connections, over every state.
fn open_connections(e: &Exposition) -> f64 {
    let states = [
        "reading_head",
        "reading_body",
        "waiting",
        "writing",
        "idle",
        "lingering",
    ];
    states
        .iter()
        .map(|state| value(e, "evloop_connections", &[("state", state)]))
        .sum()
}

/// The value of a series that must exist.
fn value(e: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    e.value(name, labels)
        .unwrap_or_else(|| panic!("no series {name}{labels:?}"))
}

/// A scrape of a fresh server is well-formed, names every route the router knows (and
/// `unmatched`), and says how many workers the pool has.
#[test]
fn a_scrape_parses_strictly_and_names_every_route() {
    let addr = server();
    let (text, e) = scrape(&mut Client::connect(addr));
    for route in [
        "/",
        "/plaintext",
        "/cpu",
        "/metrics",
        "/analyze",
        "unmatched",
    ] {
        let series = [("route", route), ("status", "2xx")];
        assert!(
            e.value("evloop_requests_total", &series).is_some(),
            "no series for {route}\n{text}"
        );
    }
    assert_eq!(value(&e, "evloop_pool_workers", &[]), 2.0);
    assert!(value(&e, "process_start_time_seconds", &[]) > 1.6e9);
}

/// Requests are counted by route and status class once answered, with a duration each; a path
/// no route has is counted as `unmatched`, never under its own text; jobs, turns, wake-ups,
/// accepts and bytes move too.
#[test]
fn counters_move_with_requests() {
    let addr = server();
    let mut client = Client::connect(addr);
    let (_, before) = scrape(&mut client);
    for _ in 0..3 {
        assert_eq!(client.request(get("/plaintext")).status, 200);
    }
    assert_eq!(client.request(get("/no-such-path")).status, 404);
    assert_eq!(client.request(get("/cpu?ms=1")).status, 200);
    let (text, after) = scrape(&mut client);
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };

    let plaintext = [("route", "/plaintext"), ("status", "2xx")];
    assert_eq!(moved("evloop_requests_total", &plaintext), 3.0, "{text}");
    let count = "evloop_request_duration_seconds_count";
    assert_eq!(moved(count, &[("route", "/plaintext")]), 3.0);
    let missing = [("route", "unmatched"), ("status", "4xx")];
    assert_eq!(moved("evloop_requests_total", &missing), 1.0);
    assert!(!text.contains("no-such-path"), "a raw path became a label");
    // The first scrape was counted once its response was out; the second is not yet.
    let scrapes = [("route", "/metrics"), ("status", "2xx")];
    assert_eq!(value(&after, "evloop_requests_total", &scrapes), 1.0);

    assert_eq!(moved("evloop_pool_jobs_total", &[("outcome", "done")]), 1.0);
    assert_eq!(moved("evloop_pool_queue_wait_seconds_count", &[]), 1.0);
    assert_eq!(moved("evloop_pool_job_run_seconds_count", &[]), 1.0);
    assert!(moved("evloop_reactor_wakeups_total", &[]) >= 1.0);
    assert!(moved("evloop_reactor_turn_seconds_count", &[]) >= 5.0);
    assert!(value(&after, "evloop_reactor_turn_max_seconds", &[]) > 0.0);
    assert!(value(&after, "evloop_connections_accepted_total", &[]) >= 1.0);
    assert!(moved("evloop_received_bytes_total", &[]) >= 5.0 * 30.0);
    assert!(moved("evloop_sent_bytes_total", &[]) > 0.0);
    // This connection is open, and is counted in exactly one state.
    assert!(open_connections(&after) >= 1.0, "{text}");
}

/// A client that goes is counted closed, and its connection leaves the open gauge: the gauges
/// never go negative and never keep a closed connection.
#[test]
fn a_closed_connection_leaves_the_gauge() {
    let addr = server();
    {
        let mut gone = Client::connect(addr);
        assert_eq!(gone.request(get("/plaintext")).status, 200);
    }
    let mut client = Client::connect(addr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (text, e) = scrape(&mut client);
        let closed = value(
            &e,
            "evloop_connections_closed_total",
            &[("reason", "client")],
        );
        let open = open_connections(&e);
        if closed == 1.0 {
            assert_eq!(open, 1.0, "only the scraping connection is open\n{text}");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never counted closed\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// If `promtool` is installed, it accepts a scrape of a server that has served requests.
/// Skipped, with a note, where it is not.
#[test]
fn promtool_accepts_a_scrape() {
    let addr = server();
    let mut client = Client::connect(addr);
    client.request(get("/plaintext"));
    client.request(get("/nowhere"));
    let (text, _) = scrape(&mut client);
    if let Err(why) = common::metrics::parse::promtool_check(text.as_bytes()) {
        panic!("{why}\n{text}");
    }
}

/// Refusals the pipeline makes are counted by reason, each once: a job the full queue turned
/// away (503) as `queue_full`, a request that outlived `--request-timeout` (504) as
/// `deadline`. The counts equal the answers the clients saw.
#[test]
fn rejections_are_counted_by_reason() {
    let config = evloop::config::Config {
        pool: 1,
        queue: 1,
        request_timeout: std::time::Duration::from_millis(400),
        ..test_config()
    };
    let addr = spawn_in_process(config, evloop::endpoints::router());
    // Four jobs at once for one worker and one queue slot: at least two are turned away, and
    // the ones taken run past the deadline.
    let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(addr)).collect();
    for client in &mut clients {
        client.send(get("/cpu?ms=3000"));
    }
    let statuses: Vec<u16> = clients
        .iter_mut()
        .map(|c| c.read_response().status)
        .collect();
    let count = |status| statuses.iter().filter(|&&s| s == status).count() as f64;
    assert!(count(503) >= 2.0 && count(504) >= 1.0, "{statuses:?}");
    assert_eq!(count(503) + count(504), 4.0, "{statuses:?}");
    let (text, e) = scrape(&mut Client::connect(addr));
    let rejected = |reason| value(&e, "evloop_requests_rejected_total", &[("reason", reason)]);
    assert_eq!(rejected("queue_full"), count(503), "{statuses:?}\n{text}");
    assert_eq!(rejected("deadline"), count(504), "{statuses:?}\n{text}");
}

/// Calls upstream are counted by upstream and outcome: the configured upstream is named by
/// its address, a refused connection is `connect_failed`, and a call whose client left is
/// `cancelled`.
#[test]
fn calls_upstream_are_counted_by_upstream_and_outcome() {
    use common::upstream::{Behaviour, TestUpstream};
    let upstream = TestUpstream::start(Behaviour::Sleep);
    let config = evloop::config::Config {
        upstream: Some(upstream.upstream()),
        ..test_config()
    };
    let addr = spawn_in_process(config.clone(), evloop::endpoints::router_for(&config));
    let mut client = Client::connect(addr);
    assert_eq!(client.request(get("/fanout?n=3&ms=1")).status, 200);
    {
        // Leaves while its calls sleep upstream.
        let mut leaving = Client::connect(addr);
        leaving.send(get("/fanout?n=2&ms=5000"));
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let name = upstream.upstream().addr.to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (text, e) = scrape(&mut client);
        let calls = |outcome| {
            value(
                &e,
                "evloop_outbound_calls_total",
                &[("upstream", &name), ("outcome", outcome)],
            )
        };
        assert_eq!(calls("response"), 3.0, "{text}");
        let other = [("upstream", "other"), ("outcome", "response")];
        assert_eq!(value(&e, "evloop_outbound_calls_total", &other), 0.0);
        if calls("cancelled") == 2.0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not cancelled\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
