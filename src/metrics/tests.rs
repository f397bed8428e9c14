//! The encoder checked against the strict parser (`parse.rs`), and against `promtool` when it
//! is installed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::parse::{parse, Exposition};
use super::*;

/// Render `registry` and parse it back, failing the test with the text if it does not parse.
fn render(registry: &Registry) -> (String, Exposition) {
    let mut out = Vec::new();
    registry.render(&mut out);
    let text = String::from_utf8(out).expect("the exposition is UTF-8");
    match parse(&text) {
        Ok(exposition) => (text, exposition),
        Err(why) => panic!("{why}\n{text}"),
    }
}

/// A registry with something in every family.
fn busy_registry() -> Registry {
    let started = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
    let mut registry = Registry::new(["/", "/cpu", "/sleep"], 4, started);
    let reactor = &mut registry.reactor;
    for micros in [5, 40, 900, 12_000, 2_000_000] {
        reactor.turn_done(Duration::from_micros(micros));
    }
    reactor.woken();
    for _ in 0..3 {
        reactor.accepted();
    }
    reactor.connection_moved(ConnectionState::ReadingHead, ConnectionState::Waiting);
    reactor.connection_moved(ConnectionState::ReadingHead, ConnectionState::Idle);
    reactor.closed(ConnectionState::Idle, CloseReason::KeepAliveTimeout);
    reactor.refused(Refusal::MaxConnections);
    reactor.rejected(Rejection::QueueFull);
    reactor.request_done(Some(1), 200, Duration::from_micros(1_500));
    reactor.request_done(Some(1), 503, Duration::from_millis(40));
    reactor.request_done(None, 404, Duration::from_micros(80));
    reactor.received(1_000);
    reactor.sent(250);
    let upstream: std::net::SocketAddr = "127.0.0.1:9000".parse().expect("an address");
    reactor.name_upstreams(&[upstream]);
    reactor.call_done(upstream, CallOutcome::Timeout);
    reactor.call_done(
        "127.0.0.1:9001".parse().expect("an address"),
        CallOutcome::Failed,
    );
    reactor.set_upstream_connections(2, 5);
    let pool = &registry.pool;
    let ran = |ms| Some(Duration::from_millis(ms));
    pool.job_done(JobEnd::Done, Duration::from_micros(300), ran(20));
    pool.job_done(JobEnd::Panicked, Duration::ZERO, ran(1));
    pool.job_done(JobEnd::Cancelled, Duration::from_secs(1), None);
    pool.set_queue_depth(7);
    registry
}

/// A fresh registry renders every planned family, each with HELP and TYPE, all at zero.
#[test]
fn a_fresh_registry_renders_every_family() {
    let registry = Registry::new(["/"], 2, SystemTime::now());
    let (_, exposition) = render(&registry);
    let names: Vec<&str> = exposition
        .families
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "process_start_time_seconds",
            "evloop_reactor_turn_seconds",
            "evloop_reactor_turn_max_seconds",
            "evloop_reactor_wakeups_total",
            "evloop_connections",
            "evloop_connections_accepted_total",
            "evloop_connections_refused_total",
            "evloop_connections_closed_total",
            "evloop_requests_total",
            "evloop_request_duration_seconds",
            "evloop_requests_rejected_total",
            "evloop_received_bytes_total",
            "evloop_sent_bytes_total",
            "evloop_access_log_dropped_lines_total",
            "evloop_outbound_calls_total",
            "evloop_outbound_connections",
            "evloop_pool_workers",
            "evloop_pool_busy_workers",
            "evloop_pool_queue_depth",
            "evloop_pool_queue_wait_seconds",
            "evloop_pool_job_run_seconds",
            "evloop_pool_jobs_total",
        ]
    );
    assert!(exposition.families.iter().all(|f| f.help.is_some()));
    assert_eq!(exposition.value("evloop_pool_workers", &[]), Some(2.0));
    let series = [("route", "unmatched"), ("status", "5xx")];
    assert_eq!(
        exposition.value("evloop_requests_total", &series),
        Some(0.0)
    );
}

/// What was counted is what is rendered: counters, gauges, histogram buckets (cumulative, in
/// seconds), sums, and the start time.
#[test]
fn counted_values_are_rendered() {
    let (text, e) = render(&busy_registry());
    let v = |name: &str, labels: &[(&str, &str)]| e.value(name, labels);
    assert_eq!(v("process_start_time_seconds", &[]), Some(1_700_000_000.25));
    assert!(text.contains("\nprocess_start_time_seconds 1700000000.25\n"));

    let turn = "evloop_reactor_turn_seconds";
    assert_eq!(
        v(&format!("{turn}_bucket"), &[("le", "0.00001")]),
        Some(1.0)
    );
    assert_eq!(v(&format!("{turn}_bucket"), &[("le", "0.001")]), Some(3.0));
    assert_eq!(v(&format!("{turn}_bucket"), &[("le", "1")]), Some(4.0));
    assert_eq!(v(&format!("{turn}_bucket"), &[("le", "+Inf")]), Some(5.0));
    assert_eq!(v(&format!("{turn}_count"), &[]), Some(5.0));
    assert!(text.contains("\nevloop_reactor_turn_seconds_sum 2.012945\n"));
    assert_eq!(v("evloop_reactor_turn_max_seconds", &[]), Some(2.0));

    assert_eq!(
        v("evloop_connections", &[("state", "reading_head")]),
        Some(1.0)
    );
    assert_eq!(v("evloop_connections", &[("state", "idle")]), Some(0.0));
    assert_eq!(v("evloop_connections", &[("state", "waiting")]), Some(1.0));
    let closed = [("reason", "keepalive_timeout")];
    assert_eq!(v("evloop_connections_closed_total", &closed), Some(1.0));
    assert_eq!(v("evloop_connections_accepted_total", &[]), Some(3.0));

    let ok = [("route", "/cpu"), ("status", "2xx")];
    assert_eq!(v("evloop_requests_total", &ok), Some(1.0));
    let shed = [("route", "/cpu"), ("status", "5xx")];
    assert_eq!(v("evloop_requests_total", &shed), Some(1.0));
    let missing = [("route", "unmatched"), ("status", "4xx")];
    assert_eq!(v("evloop_requests_total", &missing), Some(1.0));
    let duration = [("route", "/cpu")];
    assert_eq!(
        v("evloop_request_duration_seconds_count", &duration),
        Some(2.0)
    );
    assert!(text.contains("evloop_request_duration_seconds_sum{route=\"/cpu\"} 0.0415\n"));

    assert_eq!(v("evloop_received_bytes_total", &[]), Some(1000.0));
    let active = [("state", "active")];
    assert_eq!(v("evloop_outbound_connections", &active), Some(2.0));
    let calls = |upstream, outcome| {
        v(
            "evloop_outbound_calls_total",
            &[("upstream", upstream), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("127.0.0.1:9000", "timeout"), Some(1.0));
    assert_eq!(calls("127.0.0.1:9000", "failed"), Some(0.0));
    assert_eq!(calls("other", "failed"), Some(1.0));

    assert_eq!(v("evloop_pool_busy_workers", &[]), Some(0.0));
    assert_eq!(v("evloop_pool_queue_depth", &[]), Some(7.0));
    assert_eq!(v("evloop_pool_queue_wait_seconds_count", &[]), Some(3.0));
    assert_eq!(v("evloop_pool_queue_wait_seconds_sum", &[]), Some(1.0003));
    let cancelled = [("outcome", "cancelled")];
    assert_eq!(v("evloop_pool_jobs_total", &cancelled), Some(1.0));
}

/// A reused buffer is replaced, not appended to, and renders the same bytes.
#[test]
fn rendering_reuses_the_buffer() {
    let registry = busy_registry();
    let mut out = Vec::new();
    registry.render(&mut out);
    let first = out.clone();
    let capacity = out.capacity();
    registry.render(&mut out);
    assert_eq!(out, first);
    assert_eq!(out.capacity(), capacity);
}

/// A request for an index past the router's routes counts as unmatched, not as a panic.
#[test]
fn unknown_route_indices_count_as_unmatched() {
    let mut registry = Registry::new(["/a"], 1, SystemTime::now());
    registry.reactor.request_done(Some(9), 200, Duration::ZERO);
    let (_, e) = render(&registry);
    let series = [("route", "unmatched"), ("status", "2xx")];
    assert_eq!(e.value("evloop_requests_total", &series), Some(1.0));
}

/// Route names with every character the format must escape, and some that merely look like
/// syntax, come back unchanged.
#[test]
fn adversarial_label_values_round_trip() {
    let routes = [
        "back\\slash",
        "quote\"d",
        "new\nline",
        "\\\"\n\\n",
        "a\"},b=\"c",
        "ends with \\",
        "",
        "ünïcødé ✓ 🚀",
        "le=\"+Inf\"",
        "tab\there",
    ];
    let mut registry = Registry::new(routes, 1, SystemTime::now());
    for (index, _) in routes.iter().enumerate() {
        for _ in 0..=index {
            registry
                .reactor
                .request_done(Some(index), 201, Duration::ZERO);
        }
    }
    let (text, e) = render(&registry);
    assert!(text.contains(r#"route="new\nline""#));
    assert!(text.contains(r#"route="\\\"\n\\n""#));
    for (index, route) in routes.iter().enumerate() {
        let series = [("route", *route), ("status", "2xx")];
        assert_eq!(
            e.value("evloop_requests_total", &series),
            Some(index as f64 + 1.0)
        );
    }
}

/// HELP text escapes backslash and newline, and leaves a double quote alone.
#[test]
fn help_text_is_escaped() {
    let mut out = Vec::new();
    let help = "a \\ b\nc \"d\"";
    Encoder::new(&mut out).metric("x", help, &LocalGauge::new());
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text, "# HELP x a \\\\ b\\nc \"d\"\n# TYPE x gauge\nx 0\n");
    assert_eq!(
        parse(&text).unwrap().family("x").unwrap().help.as_deref(),
        Some(help)
    );
}

/// Numbers print as Prometheus parses them: exact seconds, signed levels, `+Inf`/`-Inf`/`NaN`.
#[test]
fn numbers_are_formatted_for_prometheus() {
    let cases = [
        (Number::Count(0), "0"),
        (Number::Count(u64::MAX), "18446744073709551615"),
        (Number::Level(-3), "-3"),
        (Number::Nanos(0), "0"),
        (Number::Nanos(1), "0.000000001"),
        (Number::Nanos(5_000_000), "0.005"),
        (Number::Nanos(2_000_000_000), "2"),
        (Number::Nanos(30_000_000_010), "30.00000001"),
        (Number::Float(f64::INFINITY), "+Inf"),
        (Number::Float(f64::NEG_INFINITY), "-Inf"),
        (Number::Float(f64::NAN), "NaN"),
        (Number::Float(0.1), "0.1"),
        (Number::Float(-2.5e-7), "-0.00000025"),
        (Number::Float(1e21), "1000000000000000000000"),
    ];
    for (number, expected) in cases {
        let mut out = Vec::new();
        write_number(&mut out, number);
        assert_eq!(String::from_utf8(out).unwrap(), expected, "{number:?}");
    }
}

/// The parser refuses each mistake an encoder could make. (If it accepted them, the tests
/// above would prove nothing.)
#[test]
fn the_parser_refuses_what_prometheus_would() {
    let h = "# HELP h x\n# TYPE h histogram\n";
    let cases = [
        ("c_total 1\n", "before any TYPE"),
        ("# HELP c_total x\nc_total 1\n", "without a TYPE"),
        ("# TYPE c counter\nc 1\n", "_total"),
        ("# TYPE c_total counter\nc_total -1\n", "negative"),
        ("# TYPE g gauge\ng 1\ng 2\n", "duplicate series"),
        ("# TYPE g gauge\ng{a=\"1\",b=\"2\"} 1\ng{b=\"2\",a=\"1\"} 1\n", "duplicate series"),
        ("# TYPE g gauge\n# TYPE g gauge\ng 1\n", "second TYPE"),
        ("# HELP g a\n# HELP g b\n# TYPE g gauge\n", "second HELP"),
        ("# TYPE g gauge\ng 1\n# TYPE f gauge\nf 1\n# TYPE g gauge\n", "appears twice"),
        ("# TYPE g gauge\ng 1\n# HELP g late\n", "after the family's samples"),
        ("# TYPE g gauge\nf 1\n", "outside its family"),
        ("# TYPE g gauge\ng{a=\"x\\t\"} 1\n", "bad escape"),
        ("# TYPE g gauge\ng{a=\"x\\\"} 1\n", "unterminated"),
        ("# HELP g a \\t b\n# TYPE g gauge\n", "bad escape in HELP"),
        ("# TYPE g gauge\ng{a=\"1\"b=\"2\"} 1\n", "comma"),
        ("# TYPE g gauge\ng{a=\"1\",a=\"2\"} 1\n", "twice"),
        ("# TYPE g gauge\ng{__a=\"1\"} 1\n", "invalid label name"),
        ("# TYPE g gauge\ng 1,5\n", "bad number"),
        ("# TYPE g gauge\ng inf\n", "bad number"),
        ("# TYPE g gauge\ng 1", "newline"),
        ("# TYPE g gauge\n\ng 1\n", "empty line"),
        ("# TYPE g summary\ng 1\n", "never writes"),
        (
            &format!("{h}h_bucket{{le=\"1\"}} 2\nh_bucket{{le=\"2\"}} 1\nh_bucket{{le=\"+Inf\"}} 2\nh_sum 0\nh_count 2\n"),
            "not cumulative",
        ),
        (
            &format!("{h}h_bucket{{le=\"1\"}} 2\nh_sum 0\nh_count 2\n"),
            "+Inf",
        ),
        (
            &format!("{h}h_bucket{{le=\"2\"}} 1\nh_bucket{{le=\"1\"}} 1\nh_bucket{{le=\"+Inf\"}} 1\nh_sum 0\nh_count 1\n"),
            "increasing",
        ),
        (
            &format!("{h}h_bucket{{le=\"+Inf\"}} 2\nh_sum 0\nh_count 3\n"),
            "_count differs",
        ),
        (&format!("{h}h_bucket{{le=\"+Inf\"}} 2\nh_count 2\n"), "no _sum"),
        (&format!("{h}h_sum 0\nh_count 0\n"), "no buckets"),
        (&format!("{h}h_sum{{le=\"1\"}} 0\n"), "le on a histogram line"),
        (&format!("{h}h_bucket 0\n"), "le on a histogram line"),
        (&format!("{h}h 0\n"), "never writes"),
    ];
    for (text, why) in cases {
        match parse(text) {
            Ok(_) => panic!("accepted {text:?}, which should fail with {why:?}"),
            Err(error) => assert!(error.contains(why), "{text:?}: {error} (wanted {why:?})"),
        }
    }
    // And it accepts what Prometheus accepts that the encoder never writes on its own.
    let fine = "# some comment\n# TYPE g gauge\ng{a=\"1\",} 1 1700000000000\n";
    assert_eq!(parse(fine).unwrap().value("g", &[("a", "1")]), Some(1.0));
}

/// If `promtool` is installed, it accepts a busy registry's exposition (its own parser and
/// its lint rules). Skipped, with a note, where it is not.
#[test]
fn promtool_accepts_the_exposition() {
    let mut out = Vec::new();
    busy_registry().render(&mut out);
    if let Err(why) = super::parse::promtool_check(&out) {
        panic!("{why}");
    }
}

proptest! {
    /// Any route names (distinct), any counts: the parser reads back exactly what was counted.
    #[test]
    fn any_label_values_round_trip(
        routes in prop::collection::btree_set(any::<String>(), 1..6),
        hits in prop::collection::vec((0usize..8, 100u16..600), 0..40),
    ) {
        let routes: Vec<String> = routes.into_iter().filter(|r| r != UNMATCHED_ROUTE).collect();
        let mut registry = Registry::new(routes.clone(), 1, SystemTime::now());
        let mut expected = std::collections::HashMap::new();
        for &(route, status) in &hits {
            registry.reactor.request_done(Some(route), status, Duration::ZERO);
            let name = routes.get(route).map_or(UNMATCHED_ROUTE, String::as_str);
            *expected.entry((name, StatusClass::of(status).as_str())).or_insert(0.0) += 1.0;
        }
        let (_, e) = render(&registry);
        for ((route, class), count) in expected {
            let series = [("route", route), ("status", class)];
            prop_assert_eq!(e.value("evloop_requests_total", &series), Some(count));
        }
    }

    /// Any observations: each cumulative bucket holds exactly the values at or below its
    /// bound, and the sum is exact.
    #[test]
    fn histogram_buckets_hold_what_was_observed(
        values in prop::collection::vec(0u64..40_000_000_000, 0..50),
    ) {
        let mut histogram = LocalHistogram::new(LATENCY_BOUNDS, Unit::Seconds);
        for &value in &values {
            histogram.observe_value(value);
        }
        let mut out = Vec::new();
        Encoder::new(&mut out).metric("h_seconds", "h", &histogram);
        let text = String::from_utf8(out).unwrap();
        let e = parse(&text).map_err(|why| TestCaseError::fail(format!("{why}\n{text}")))?;
        for &bound in LATENCY_BOUNDS {
            let mut le = Vec::new();
            write_number(&mut le, Number::Nanos(bound));
            let le = String::from_utf8(le).unwrap();
            let below = values.iter().filter(|&&v| v <= bound).count() as f64;
            prop_assert_eq!(e.value("h_seconds_bucket", &[("le", le.as_str())]), Some(below));
        }
        let count = values.len() as f64;
        prop_assert_eq!(e.value("h_seconds_count", &[]), Some(count));
        let sum: u64 = values.iter().sum();
        let mut expected = Vec::new();
        write_number(&mut expected, Number::Nanos(sum));
        let expected = format!("\nh_seconds_sum {}\n", String::from_utf8(expected).unwrap());
        prop_assert!(text.contains(&expected));
    }
}

/// With `--workers N`: a process with a dashboard viewer asks the others for frames, and each
/// frame its viewer gets lists every process that posts one, with its age; a process that
/// stops posting leaves the list.
#[test]
fn a_viewer_sees_every_process_that_posts_vitals() {
    use super::shared::Scoreboard;
    use super::vitals::Vitals;
    use std::time::Instant;

    let board = Scoreboard::create(3).unwrap();
    let registry = |own| {
        let mut registry = Registry::new(["/"], 4, SystemTime::now());
        registry.share(board.as_process(own));
        registry
    };
    let (mut watched, mut other) = (registry(0), registry(1));
    let mut viewer = Vitals::watch(watched.vitals()).unwrap();
    let frame = |viewer: &mut super::vitals::Viewer| -> serde_json::Value {
        serde_json::from_str(&viewer.next_frame().expect("a new frame")).unwrap()
    };

    assert!(!other.vitals_watched(), "nobody has asked yet");
    other.post(); // on the scoreboard, no frame yet
    watched.publish_vitals(Instant::now(), 1, 0);
    let first = frame(&mut viewer);
    let processes = first["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 2, "{first}");
    assert!(
        processes.iter().filter(|p| p.get("pool").is_none()).count() == 1,
        "the other process is listed without a frame: {first}"
    );
    assert!(processes.iter().any(|p| p["age_ms"] == 0));
    assert!(
        other.vitals_watched(),
        "the viewer's process asks the others"
    );
    assert!(!watched.vitals_watched(), "a process does not ask itself");

    other.reactor.turn_done(Duration::from_millis(30));
    other.publish_vitals(Instant::now(), 3, 2);
    watched.publish_vitals(Instant::now(), 1, 0);
    let second = frame(&mut viewer);
    let processes = second["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 2, "{second}");
    let posted = processes
        .iter()
        .find(|frame| frame["pool"]["busy"] == 3)
        .expect("the other process's frame");
    assert_eq!(posted["pool"]["queued"], 2);
    assert_eq!(posted["turn_max_us"], 30_000);
    assert!(posted["age_ms"].as_u64().unwrap() < 1_000, "{posted}");
    assert_eq!(
        second["pool"]["busy"], 1,
        "the top level is the viewer's own process"
    );

    // Stopping takes the frame off the scoreboard; the process stays listed, without one.
    other.vitals_stopped();
    watched.publish_vitals(Instant::now(), 1, 0);
    let third = frame(&mut viewer);
    let processes = third["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 2, "{third}");
    assert!(processes.iter().all(|p| p["pool"]["busy"] != 3), "{third}");

    // Without viewers, a process still posts for the others but asks nobody.
    drop(viewer);
    board.clear(0);
    let mut alone = registry(2);
    alone.post();
    alone.publish_vitals(Instant::now(), 0, 0);
    assert!(!board.as_process(1).watched(crate::sys::monotonic_ms()));
    let seen = board
        .as_process(1)
        .others_vitals(crate::sys::monotonic_ms());
    assert!(seen.iter().any(|other| other.frame.is_some()), "{seen:?}");
}
