//! The built-in endpoints and the headers every response carries: `Date` in IMF-fixdate,
//! `Server: evloop`, `Content-Type`, `Content-Length`; and `Cache-Control: no-store` on exactly
//! the answers computed for one request.

mod common;

use std::net::SocketAddr;
use std::thread::sleep;
use std::time::{Duration, SystemTime};

use evloop::endpoints;

use common::{get, spawn_in_process, test_config, Client};

fn server() -> SocketAddr {
    spawn_in_process(test_config(), endpoints::router())
}

/// `GET /plaintext` is exactly `Hello, World!` as UTF-8 text.
#[test]
fn plaintext() {
    let response = Client::connect(server()).request(get("/plaintext"));
    assert_eq!(response.status, 200);
    assert_eq!(response.reason, "OK");
    assert_eq!(response.version, "HTTP/1.1");
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(response.header("content-length"), Some("13"));
    assert_eq!(response.text(), "Hello, World!");
}

/// `GET /json` is `{"message":"Hello, World!"}` as `application/json`.
#[test]
fn json() {
    let response = Client::connect(server()).request(get("/json"));
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.text(), r#"{"message":"Hello, World!"}"#);
}

/// `GET /cpu?ms=30` runs on a pool worker and reports which one, its queue wait and run time.
#[test]
fn cpu_on_the_pool_reports_worker_and_timings() {
    let response = Client::connect(server()).request(get("/cpu?ms=30"));
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let json = response.json();
    assert_eq!(json["ms"], 30);
    let worker = json["worker"].as_u64().expect("worker is a number");
    assert!(worker < 2, "worker {worker} of a pool of 2");
    assert!(json["queued_us"].is_u64(), "{json}");
    let run_us = json["run_us"].as_u64().expect("run_us is a number");
    assert!(run_us >= 30_000, "ran {run_us} µs for a 30 ms burn");
}

/// `GET /cpu?ms=50&mode=inline` runs on the reactor and says so.
#[test]
fn cpu_inline_says_inline() {
    let response = Client::connect(server()).request(get("/cpu?ms=50&mode=inline"));
    assert_eq!(response.status, 200);
    let json = response.json();
    assert_eq!(json["mode"], "inline");
    assert_eq!(json["ms"], 50);
    assert!(json["worker"].is_null(), "{json}");
    assert!(json["run_us"].as_u64().expect("run_us") >= 50_000);
}

/// `GET /cpu?ms=N&mode=pool` is the pool, like no mode at all.
#[test]
fn cpu_mode_pool_is_the_default() {
    let response = Client::connect(server()).request(get("/cpu?ms=1&mode=pool"));
    assert_eq!(response.status, 200);
    assert!(response.json()["worker"].is_u64());
}

/// `GET /sleep?ms=N` answers `{"slept_ms":N}` no sooner than N ms.
#[test]
fn sleep_answers_after_the_delay() {
    let mut client = Client::connect(server());
    let started = std::time::Instant::now();
    let response = client.request(get("/sleep?ms=150"));
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.text(), r#"{"slept_ms":150}"#);
    assert_eq!(
        client.request(get("/sleep?ms=0")).text(),
        r#"{"slept_ms":0}"#
    );
}

/// `GET /` lists the endpoints, each with a `curl` line using the request's `Host`.
#[test]
fn index_lists_curl_lines() {
    let mut client = Client::connect(server());
    let response = client.request("GET / HTTP/1.1\r\nHost: example.test:1234\r\n\r\n");
    assert_eq!(response.status, 200);
    assert!(response
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    let text = response.text();
    let curls: Vec<&str> = text.lines().filter(|l| l.starts_with("curl ")).collect();
    for path in [
        "/plaintext",
        "/json",
        "/sleep?ms=",
        "/cpu?ms=",
        "mode=inline",
        "/healthz",
        "/readyz",
    ] {
        assert!(
            curls.iter().any(|line| line.contains(path)),
            "no curl line for {path} in:\n{text}"
        );
    }
    assert!(
        curls
            .iter()
            .all(|line| line.contains("http://example.test:1234/")),
        "curl lines do not use the Host header:\n{text}"
    );
}

/// `GET /healthz` is 200 `{"status":"ok"}`; `GET /readyz` is 200 `{"status":"ready"}` when not
/// draining.
#[test]
fn health_and_readiness() {
    let mut client = Client::connect(server());
    let health = client.request(get("/healthz"));
    assert_eq!(health.status, 200);
    assert_eq!(health.text(), r#"{"status":"ok"}"#);
    let ready = client.request(get("/readyz"));
    assert_eq!(ready.status, 200);
    assert_eq!(ready.text(), r#"{"status":"ready"}"#);
}

/// An absolute-form target (`GET http://host/path`) is served like its path, and the query
/// survives.
#[test]
fn absolute_form_target() {
    let mut client = Client::connect(server());
    let response =
        client.request("GET http://example.test/sleep?ms=1 HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert_eq!(response.text(), r#"{"slept_ms":1}"#);
}

/// Every response — success, error, and from each place work runs — carries `Server: evloop`, a
/// single `Date` in IMF-fixdate close to now, a `Content-Type` and a `Content-Length` matching the
/// body.
#[test]
fn every_response_has_standard_headers() {
    let mut client = Client::connect(server());
    for path in [
        "/plaintext",
        "/json",
        "/sleep?ms=1",
        "/cpu?ms=1",
        "/nope",
        "/cpu",
    ] {
        let response = client.request(get(path));
        assert_eq!(response.header("server"), Some("evloop"), "{path}");
        assert_eq!(response.header_count("date"), 1, "{path}");
        let date = response.header("date").unwrap();
        assert_imf_fixdate(date);
        assert!(response.header("content-type").is_some(), "{path}");
        assert_eq!(
            response.header("content-length"),
            Some(response.body.len().to_string().as_str()),
            "{path}"
        );
    }
}

/// The `Date` header moves with the clock (it is refreshed, not frozen at start-up).
#[test]
fn date_header_changes_over_time() {
    let mut client = Client::connect(server());
    let first = client.request(get("/plaintext"));
    sleep(Duration::from_millis(1100));
    let second = client.request(get("/plaintext"));
    let (a, b) = (
        first.header("date").unwrap(),
        second.header("date").unwrap(),
    );
    assert_ne!(a, b, "Date did not change in 1.1 s");
    let parsed_a = httpdate::parse_http_date(a).unwrap();
    let parsed_b = httpdate::parse_http_date(b).unwrap();
    assert!(parsed_b > parsed_a);
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`: the fixed-length form, in GMT, within a few seconds of now.
fn assert_imf_fixdate(value: &str) {
    assert_eq!(value.len(), 29, "{value:?} is not IMF-fixdate");
    let parsed = httpdate::parse_http_date(value)
        .unwrap_or_else(|err| panic!("{value:?} is not an HTTP date: {err}"));
    assert_eq!(
        httpdate::fmt_http_date(parsed),
        value,
        "{value:?} is not in the IMF-fixdate form"
    );
    let now = SystemTime::now();
    let skew = now
        .duration_since(parsed)
        .or_else(|_| parsed.duration_since(now))
        .unwrap();
    assert!(skew < Duration::from_secs(5), "{value:?} is {skew:?} off");
}

/// `HEAD` works wherever `GET` does, whatever produces the answer — a timer or a pool job — and
/// never sends the body: the next response follows the head directly.
#[test]
fn head_on_deferred_and_pooled_responses() {
    let mut client = Client::connect(server());
    for path in ["/sleep?ms=20", "/cpu?ms=5", "/json"] {
        client.send(format!(
            "HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n{}",
            get("/plaintext")
        ));
        let head = client.read_head_response();
        assert_eq!(head.status, 200, "{path}");
        let length: usize = head
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{path}: no Content-Length in {head:?}"));
        assert!(length > 0, "{path}: HEAD announces the GET body's length");
        assert_eq!(client.read_response().text(), "Hello, World!", "{path}");
    }
}

/// Answers computed for one request — a timer, a pool job, a burn on the reactor, readiness —
/// say `Cache-Control: no-store` exactly once, their errors (a bad or missing query) too, and
/// for `HEAD` as for `GET`; so no cache may store them and serve them to someone else.
#[test]
fn per_request_answers_are_not_stored() {
    let mut client = Client::connect(server());
    for (path, status) in [
        ("/cpu?ms=1", 200),
        ("/cpu?ms=1&mode=pool", 200),
        ("/cpu?ms=1&mode=inline", 200),
        ("/sleep?ms=1", 200),
        ("/readyz", 200),
        ("/cpu", 400),
        ("/cpu?ms=x", 400),
        ("/cpu?ms=1&mode=fast", 400),
        ("/sleep?ms=-1", 400),
    ] {
        let response = client.request(get(path));
        assert_eq!(response.status, status, "{path}: {}", response.text());
        assert_eq!(response.header_count("cache-control"), 1, "{path}");
        assert_eq!(response.header("cache-control"), Some("no-store"), "{path}");
    }
    for path in ["/cpu?ms=1", "/sleep?ms=1", "/readyz"] {
        client.send(format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
        let head = client.read_head_response();
        assert_eq!(
            head.header("cache-control"),
            Some("no-store"),
            "HEAD {path}"
        );
    }
}

/// Fixed answers stay cacheable: `/plaintext`, `/json`, `/` and `/healthz` carry no
/// `Cache-Control`.
#[test]
fn fixed_answers_carry_no_cache_control() {
    let mut client = Client::connect(server());
    for path in ["/plaintext", "/json", "/", "/healthz"] {
        let response = client.request(get(path));
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.header("cache-control"), None, "{path}");
    }
}
