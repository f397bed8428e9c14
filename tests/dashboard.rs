//! `GET /events/loop` and `GET /dashboard` on the wire: frames of the loop's vital signs about
//! four times a second that parse and move with the load (requests per second under a client,
//! the longest turn and a slow turn named after its handler when one blocks the loop), a cap on
//! viewers that a viewer leaving lifts, a drain that ends every viewer's stream, what a viewer
//! sees with `--workers 2` (every process, and one that stalls), and the page.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::sse::{self, Event};
use common::{get, start_in_process, test_config, Admission, Client, InProcess, Stopped};

/// A server with every built-in endpoint and a pool of 2 (so one viewer at a time).
fn server() -> InProcess {
    let server = start_in_process(
        test_config(),
        evloop::endpoints::router(),
        Admission::AtOnce,
    );
    assert!(server.wait_ready(Duration::from_secs(10)));
    server
}

/// Open `/events/loop` and check its head.
fn watch(server: &InProcess) -> Client {
    let mut client = Client::connect(server.addr);
    client.send(get("/events/loop"));
    let head = client.read_head_response();
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    client
}

/// The next `vitals` frame.
fn next_frame(client: &mut Client) -> Event {
    let chunk = client
        .next_chunk(Duration::from_secs(2))
        .expect("the stream goes on");
    let event = sse::parse(&chunk);
    assert_eq!(event.name, "vitals", "{event:?}");
    event
}

/// Read frames for up to `within` until one satisfies `wanted`; return it.
fn frame_where(client: &mut Client, within: Duration, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        last = next_frame(client).data;
        if wanted(&last) {
            return last;
        }
    }
    panic!("no such frame within {within:?}; the last was {last}");
}

/// Frames come about every 250 ms, each with a `retry:` and a JSON object with every figure the
/// dashboard draws.
#[test]
fn frames_come_four_times_a_second_and_parse() {
    let server = server();
    let mut client = watch(&server);
    let first = next_frame(&mut client);
    assert_eq!(first.retry, Some(1000));
    let started = Instant::now();
    let mut frames = vec![first.data];
    for _ in 0..4 {
        let event = next_frame(&mut client);
        assert_eq!(event.retry, Some(1000));
        frames.push(event.data);
    }
    let four = started.elapsed();
    assert!(
        four >= Duration::from_millis(700) && four <= Duration::from_millis(4000),
        "four frames took {four:?}"
    );
    for frame in &frames {
        for key in [
            "pid",
            "uptime_ms",
            "window_ms",
            "turn_max_us",
            "turns",
            "wakeups_per_s",
            "pool",
            "connections",
            "requests_per_s",
            "slow_turns",
        ] {
            assert!(frame.get(key).is_some(), "no {key} in {frame}");
        }
        assert_eq!(frame["pid"], std::process::id());
        assert_eq!(frame["pool"]["workers"], 2);
        assert!(
            frame["requests_per_s"].get("/plaintext").is_some(),
            "{frame}"
        );
    }
    // The viewer's own connection is open, its response being written by a job.
    let last = &frames[4];
    let open: i64 = last["connections"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_i64().unwrap())
        .sum();
    assert!(open >= 1, "{last}");
    assert!(last["pool"]["busy"].as_u64().unwrap() >= 1, "{last}");
    let window = last["window_ms"].as_u64().unwrap();
    assert!((100..=1500).contains(&window), "{last}");
}

/// A viewer who comes after a quiet spell gets the last quarter second, not an average (or a
/// longest turn) over everything since the server started or the last viewer left.
#[test]
fn the_first_frame_covers_only_the_moment() {
    let server = server();
    std::thread::sleep(Duration::from_millis(2500));
    let mut client = watch(&server);
    let first = next_frame(&mut client);
    let window = first.data["window_ms"].as_u64().unwrap();
    assert!(
        window <= 1500,
        "the first frame covers {window} ms: {}",
        first.data
    );
    drop(client);
    std::thread::sleep(Duration::from_millis(2500));
    let mut again = watch(&server);
    let first = next_frame(&mut again);
    let window = first.data["window_ms"].as_u64().unwrap();
    assert!(
        window <= 1500,
        "after a viewer left, {window} ms: {}",
        first.data
    );
}

/// While a client sends `/plaintext` requests, the frames count them per second.
#[test]
fn requests_per_second_move_under_load() {
    let server = server();
    let mut viewer = watch(&server);
    let addr = server.addr;
    let load = thread::spawn(move || {
        let mut client = Client::connect(addr);
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until {
            assert_eq!(client.request(get("/plaintext")).status, 200);
        }
    });
    let frame = frame_where(&mut viewer, Duration::from_secs(3), |frame| {
        frame["requests_per_s"]["/plaintext"].as_f64().unwrap() > 0.0
    });
    assert_eq!(frame["requests_per_s"]["/json"], 0.0, "{frame}");
    load.join().unwrap();
}

/// A handler that burns 200 ms on the reactor shows: the longest turn of that frame is at
/// least 200 ms, and the slow turns name it.
#[test]
fn a_blocking_handler_shows_as_a_long_turn_and_a_slow_turn() {
    let server = server();
    let mut viewer = watch(&server);
    next_frame(&mut viewer);
    let mut client = Client::connect(server.addr);
    assert_eq!(client.request(get("/cpu?ms=200&mode=inline")).status, 200);
    let frame = frame_where(&mut viewer, Duration::from_secs(2), |frame| {
        frame["turn_max_us"].as_u64().unwrap() >= 200_000
    });
    assert!(frame["turns"]["≥100ms"].as_u64().unwrap() >= 1, "{frame}");
    let slow = frame["slow_turns"].as_array().unwrap();
    assert!(
        slow.iter()
            .any(|turn| turn["handler"] == "GET /cpu" && turn["took_ms"].as_u64().unwrap() >= 200),
        "{frame}"
    );
}

/// With a pool of 2, one viewer at a time: a second is answered 503, and once the first leaves,
/// its job ends and a new viewer is admitted within a few polls.
#[test]
fn viewers_are_capped_and_a_viewer_leaving_frees_its_worker() {
    let server = server();
    let mut first = watch(&server);
    next_frame(&mut first);
    let mut second = Client::connect(server.addr);
    second.request(get("/events/loop")).assert_json_error(503);
    drop(first);
    let left = Instant::now();
    loop {
        let mut next = Client::connect(server.addr);
        next.send(get("/events/loop"));
        let head = next.read_head_response();
        if head.status == 200 {
            break;
        }
        assert!(
            left.elapsed() < Duration::from_secs(3),
            "still refused {:?} after the viewer left",
            left.elapsed()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A drain does not wait for a dashboard: the viewer's stream ends with `event: result` within
/// a poll or so, and the server exits well before its shutdown timeout (30 s).
#[test]
fn a_drain_ends_every_viewers_stream() {
    let server = server();
    let mut viewer = watch(&server);
    next_frame(&mut viewer);
    let asked = Instant::now();
    server.shutdown.shutdown();
    let last = loop {
        match viewer.next_chunk(Duration::from_secs(2)) {
            Some(chunk) => {
                let event = sse::parse(&chunk);
                if event.name != "vitals" {
                    break event;
                }
            }
            None => panic!("the stream ended without a last event"),
        }
    };
    assert_eq!(last.name, "result", "{last:?}");
    assert!(
        asked.elapsed() < Duration::from_millis(2000),
        "{:?}",
        asked.elapsed()
    );
    // The client goes, as a browser does (else the server lingers a moment for it to close).
    drop(viewer);
    server.exit_within(Duration::from_secs(5));
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
}

/// `/dashboard` is one HTML page that follows `/events/loop`, and fetches nothing else.
#[test]
fn the_dashboard_is_a_page_that_follows_the_event_stream() {
    let server = server();
    let mut client = Client::connect(server.addr);
    let response = client.request(get("/dashboard"));
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let page = response.text();
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains(r#"new EventSource("/events/loop")"#));
    // Nothing fetched from elsewhere: the one link is an empty inline icon, so the browser does
    // not ask for /favicon.ico either.
    assert!(!page.contains("<script src"));
    assert_eq!(page.matches("<link").count(), 1);
    assert!(page.contains(r#"<link rel="icon" href="data:,">"#));
}

/// The parent of process `pid`, from `/proc/PID/stat`.
fn parent_of(pid: u64) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`: the fields after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Each process's `age_ms` in a frame's `processes`, by pid.
fn ages(frame: &Value) -> Vec<(u64, u64)> {
    frame["processes"]
        .as_array()
        .map(|processes| {
            processes
                .iter()
                .filter_map(|p| Some((p["pid"].as_u64()?, p["age_ms"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// `--workers 2`, both processes ready.
fn two_workers() -> common::ServerProcess {
    let server = common::spawn_binary(&["--workers", "2", "--pool", "2"]);
    server.wait_for_log_line(
        &["all 2 worker processes are ready"],
        Duration::from_secs(20),
    );
    server
}

/// Open `/events/loop` on a server process.
fn watch_addr(addr: std::net::SocketAddr) -> Client {
    let mut client = Client::connect(addr);
    client.send(get("/events/loop"));
    assert_eq!(client.read_head_response().status, 200);
    client
}

/// The entry of process `pid` in a frame's `processes`.
fn entry(frame: &Value, pid: u64) -> Option<&Value> {
    frame["processes"]
        .as_array()?
        .iter()
        .find(|p| p["pid"].as_u64() == Some(pid))
}

/// With `--workers 2`, a viewer is served by one process, named by each frame's `pid`, and sees
/// both: its frames list every process with how long ago it posted. A process whose loop stops
/// (here: SIGSTOP, as a long turn would) falls behind while the viewer's frames go on, and
/// catches up when it runs again. Once the viewer has left, the other process stops posting
/// frames: the next viewer first sees it without one.
#[test]
fn with_workers_a_viewer_sees_every_process_and_a_stalled_one() {
    let server = two_workers();
    let supervisor = server.pid();
    let mut client = watch_addr(server.addr());

    // The other process hears the request for frames at its next metrics post (≤ 1 s).
    let both = frame_where(&mut client, Duration::from_secs(5), |frame| {
        let ages = ages(frame);
        ages.len() == 2
            && ages.iter().all(|&(_, age)| age < 1000)
            && frame["processes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p.get("pool").is_some())
    });
    let own = both["pid"].as_u64().expect("a pid");
    let pids: Vec<u64> = ages(&both).iter().map(|&(pid, _)| pid).collect();
    assert!(pids.contains(&own), "{both}");
    for &pid in &pids {
        assert_eq!(parent_of(pid), Some(supervisor), "{both}");
    }
    let other = *pids
        .iter()
        .find(|&&pid| pid != own)
        .expect("another process");

    let stopped = Stopped::new(other as u32);
    let stalled = frame_where(&mut client, Duration::from_secs(5), |frame| {
        entry(frame, other).is_some_and(|p| p["age_ms"].as_u64().unwrap_or(0) > 1500)
    });
    assert_eq!(stalled["pid"], own, "the viewer's own process goes on");
    drop(stopped);
    frame_where(&mut client, Duration::from_secs(5), |frame| {
        entry(frame, other).is_some_and(|p| {
            p["age_ms"].as_u64().unwrap_or(u64::MAX) < 1000 && p.get("pool").is_some()
        })
    });

    // The viewer leaves; 2 s later nobody asks, and the other process takes its frame off.
    drop(client);
    thread::sleep(Duration::from_millis(3500));
    // The next viewer may land on either process; the one it lands on shows the other.
    let mut client = watch_addr(server.addr());
    let first = next_frame(&mut client).data;
    let own = first["pid"].as_u64().expect("a pid");
    let other = pids
        .iter()
        .copied()
        .find(|&pid| pid != own)
        .expect("another process");
    let listed = entry(&first, other).unwrap_or_else(|| panic!("{first}"));
    assert!(
        listed.get("pool").is_none(),
        "still posting frames: {first}"
    );
    next_frame(&mut client);
}

/// A process whose loop was already stuck when the viewer came (it never heard the request for
/// frames) is still listed, by its last post, and shown stalled.
#[test]
fn with_workers_a_process_stuck_before_anyone_watched_is_listed() {
    let server = two_workers();
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", server.pid()))
        .expect("the supervisor's children");
    let pids: Vec<u64> = children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(pids.len(), 2, "{children:?}");
    let _stopped = Stopped::new(pids[1] as u32);
    // Only the running process accepts, so it serves the viewer.
    let mut client = watch_addr(server.addr());
    let frame = frame_where(&mut client, Duration::from_secs(6), |frame| {
        entry(frame, pids[1]).is_some_and(|p| p["age_ms"].as_u64().unwrap_or(0) > 2500)
    });
    assert_eq!(frame["pid"], pids[0], "{frame}");
    assert!(
        entry(&frame, pids[1]).unwrap().get("pool").is_none(),
        "{frame}"
    );
}
