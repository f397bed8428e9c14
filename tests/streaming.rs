//! Streamed responses on the wire: the exact bytes of a Server-Sent Events stream inside a
//! chunked body, its place in the response order, HTTP/1.0 and `HEAD`, a client that stops
//! reading (memory stays flat, the worker never waits, and what is sent is the newest
//! progress), a client that leaves (its job stops at once), and `--request-timeout` ending a
//! stream that has already started.

mod common;

use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

use evloop::http::Method;
use evloop::router::{Reply, Router, Stream};

use common::{
    get, leave_and_time_next_job, spawn_binary, spawn_in_process, test_config, Client, Response,
};

/// Split one SSE event, checking its exact bytes: `event: NAME\ndata: JSON\n\n`, and no
/// `retry:` field (these streams set none).
fn event(chunk: &[u8]) -> (String, Value) {
    let event = common::sse::parse(chunk);
    assert_eq!(
        event.retry,
        None,
        "a retry field: {:?}",
        String::from_utf8_lossy(chunk)
    );
    (event.name, event.data)
}

/// The head of an event stream sent with chunked framing.
fn assert_chunked_event_stream(head: &Response) {
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(head.header("cache-control"), Some("no-cache"));
    assert_eq!(head.header("content-length"), None);
}

/// Read every event of a chunked stream, each chunk exactly one event.
fn read_events(client: &mut Client, within: Duration) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    while let Some(chunk) = client.next_chunk(within) {
        events.push(event(&chunk));
    }
    events
}

/// Progress events, in order, one per chunk, then the result; the connection carries on.
#[test]
fn an_event_stream_is_one_event_per_chunk_then_the_result() {
    let server = spawn_binary(&["--pool", "2"]);
    let mut client = Client::connect(server.addr());
    client.send(get("/cpu/stream?ms=200&every=40"));
    let head = client.read_head_response();
    assert_chunked_event_stream(&head);
    let events = read_events(&mut client, Duration::from_secs(10));
    let (last, progress) = events.split_last().expect("at least the result");
    assert_eq!(last.0, "result", "{events:?}");
    assert_eq!(last.1["ms"], 200);
    assert!(!progress.is_empty(), "no progress at all: {events:?}");
    let mut previous = 0;
    for (name, data) in progress {
        assert_eq!(name, "progress");
        assert_eq!(data["total_ms"], 200);
        let done = data["done_ms"].as_u64().expect("done_ms");
        assert!(
            done > previous && done < 200 && done % 40 == 0,
            "{events:?}"
        );
        previous = done;
    }
    // Keep-alive: the next request on the same connection is answered normally.
    let next = client.request(get("/plaintext"));
    assert_eq!(next.body, b"Hello, World!");
}

/// A stream waits for the response before it, and the one after it waits for the stream's end.
#[test]
fn a_stream_keeps_its_place_among_pipelined_requests() {
    let server = spawn_binary(&["--pool", "2"]);
    let mut client = Client::connect(server.addr());
    client.send(
        [
            get("/sleep?ms=150"),
            get("/cpu/stream?ms=100&every=20"),
            get("/plaintext"),
        ]
        .concat(),
    );
    let slept = client.read_response();
    assert_eq!(slept.json()["slept_ms"], 150);
    assert_chunked_event_stream(&client.read_head_response());
    let events = read_events(&mut client, Duration::from_secs(10));
    assert_eq!(events.last().map(|e| e.0.as_str()), Some("result"));
    assert_eq!(client.read_response().body, b"Hello, World!");
}

/// HTTP/1.0 has no chunked coding: the body is the events themselves, ended by the close, and
/// a request pipelined behind the stream is not answered (nothing can follow such a body).
#[test]
fn an_http10_stream_ends_with_the_connection() {
    let server = spawn_binary(&["--pool", "2"]);
    let mut client = Client::connect(server.addr());
    client.send(
        "GET /cpu/stream?ms=100&every=20 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
         GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    let head = client.read_head_response();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("transfer-encoding"), None);
    assert_eq!(head.header("content-length"), None);
    assert!(head.says_close(), "{head:?}");
    let (body, _) = client.read_to_end(Duration::from_secs(10));
    let text = String::from_utf8(body).expect("text");
    let events: Vec<&str> = text.split_inclusive("\n\n").collect();
    let (last, progress) = events.split_last().expect("events");
    for piece in progress {
        assert_eq!(event(piece.as_bytes()).0, "progress", "{text:?}");
    }
    let (name, data) = event(last.as_bytes());
    assert_eq!((name.as_str(), data["ms"].as_u64()), ("result", Some(100)));
}

/// `HEAD` gets the head alone, and the job behind it stops at once: with one worker, the next
/// job runs right away.
#[test]
fn head_of_a_stream_is_the_head_alone_and_stops_the_job() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut client = Client::connect(server.addr());
    client.send("HEAD /cpu/stream?ms=5000 HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = client.read_head_response();
    assert_chunked_event_stream(&head);
    let started = Instant::now();
    let next = client.request(get("/cpu?ms=1"));
    assert_eq!(next.status, 200, "{next:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the HEAD's 5 s job held the only worker for {:?}",
        started.elapsed()
    );
}

/// Bad parameters are refused with an ordinary JSON error, before any stream starts.
#[test]
fn bad_parameters_are_an_ordinary_400() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut client = Client::connect(server.addr());
    for path in [
        "/cpu/stream",
        "/cpu/stream?ms=x",
        "/cpu/stream?ms=10&every=0",
        "/cpu/stream?ms=99999999",
    ] {
        let response = client.request(get(path));
        response.assert_json_error(400);
        assert!(response.header("content-length").is_some());
    }
}

/// A client that stops reading for 3 s or more: the server's memory stays flat, the worker
/// finishes on its own time (it is free for another client while the reader is still away),
/// and when reading resumes the stream completes, in order. (These 500 small events all fit in
/// the kernel's socket buffers, which grow to megabytes; the next test overflows them.)
#[test]
fn a_client_that_stops_reading_costs_neither_memory_nor_the_worker() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut reader = Client::connect_with_receive_buffer(server.addr(), 4096);
    let asked = Instant::now();
    reader.send(get("/cpu/stream?ms=500&every=1"));
    assert_chunked_event_stream(&reader.read_head_response());
    let rss_before = server.rss_bytes();

    // While the reader is away, the job runs out its half second of burn (seconds on a loaded
    // machine, where each of its 500 steps may wait for a CPU) and the worker goes idle: a job
    // from another client, queued behind the stream's on the only worker, is answered before
    // the reader reads a byte. A stream job that waited for its reader would never end, since
    // the reader waits for this answer.
    let mut other = Client::connect(server.addr());
    other.send(get("/cpu?ms=1"));
    let answer = other.read_response_within(Duration::from_secs(60));
    assert_eq!(answer.status, 200, "{answer:?}");
    let rss_during = server.rss_bytes();
    sleep(Duration::from_secs(3).saturating_sub(asked.elapsed()));

    let away_ms = asked.elapsed().as_millis() as u64;
    let events = read_events(&mut reader, Duration::from_secs(10));
    let (last, progress) = events.split_last().expect("events");
    assert_eq!(last.0, "result", "the stream did not complete");
    let run_ms = last.1["run_us"].as_u64().expect("run_us") / 1000;
    assert!(
        run_ms < away_ms,
        "the job ran {run_ms} ms: it did not finish in the {away_ms} ms its reader was away"
    );
    let done: Vec<u64> = progress
        .iter()
        .map(|(_, data)| data["done_ms"].as_u64().expect("done_ms"))
        .collect();
    assert!(
        done.windows(2).all(|w| w[0] < w[1]),
        "out of order: {done:?}"
    );
    assert!(
        rss_during < rss_before + 2 * 1024 * 1024,
        "RSS grew from {rss_before} to {rss_during} bytes while a client did not read"
    );
}

/// Set by the `/flood` job once it has emitted every message.
static FLOOD_EMITTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// When the socket buffers are full, progress the client is not taking is replaced by newer
/// progress instead of piling up: a job emitting 64 MB of 32 KB messages as fast as it can
/// finishes emitting while its client has read nothing at all (the job never waits for it),
/// and the client then gets a few messages — the newest ones, in order, the very last one
/// included as soon as the client makes room for it (not only when the job next has news,
/// which here is its result, 2.5 s later, that would supersede it) — and the result.
#[test]
fn unsent_progress_is_replaced_by_newer_progress() {
    use std::sync::atomic::Ordering;
    const MESSAGES: usize = 2048;
    const SIZE: usize = 32 * 1024;
    let router = Router::new().route(Method::Get, "/flood", |_, _| {
        Reply::Stream(Stream::events(|job| {
            for index in 0..MESSAGES {
                let mut data = format!("{index:06} ").into_bytes();
                data.resize(SIZE, b'x');
                job.emit(evloop::http::sse::event("progress", &data));
            }
            FLOOD_EMITTED.store(true, Ordering::SeqCst);
            // A long last phase with no news, checking for cancellation as long jobs do: a
            // message still waiting in the job's outbox goes out at such a checkpoint.
            let quiet = Instant::now();
            while quiet.elapsed() < Duration::from_millis(2500) && !job.is_cancelled() {
                sleep(Duration::from_millis(5));
            }
            evloop::http::Response::text(200, "done")
        }))
    });
    let addr = spawn_in_process(test_config(), router);
    let mut client = Client::connect_with_receive_buffer(addr, 4096);
    client.send(get("/flood"));
    assert_chunked_event_stream(&client.read_head_response());
    let waiting = Instant::now();
    while !FLOOD_EMITTED.load(Ordering::SeqCst) {
        assert!(
            waiting.elapsed() < Duration::from_secs(20),
            "the job could not finish emitting while its client did not read"
        );
        sleep(Duration::from_millis(10));
    }
    let mut indexes = Vec::new();
    let result = loop {
        let chunk = client
            .next_chunk(Duration::from_secs(10))
            .expect("the stream ends with its result, not an empty chunk");
        let text = String::from_utf8(chunk).expect("text");
        if let Some(data) = text.strip_prefix("event: result\ndata: ") {
            break data.trim_end().to_string();
        }
        let data = text
            .strip_prefix("event: progress\ndata: ")
            .expect("progress");
        assert_eq!(data.len(), SIZE + 2, "a message arrived whole");
        indexes.push(data[..6].parse::<usize>().expect("index"));
    };
    assert_eq!(result, "done");
    assert_eq!(client.next_chunk(Duration::from_secs(5)), None);
    assert!(
        indexes.len() < MESSAGES / 2,
        "{} of {MESSAGES} messages were sent: nothing was replaced",
        indexes.len()
    );
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");
    assert_eq!(indexes.last(), Some(&(MESSAGES - 1)), "{indexes:?}");
}

/// A client that leaves mid-stream cancels its job: with one worker and 200 ms windows, the
/// next job starts well within 1.5 windows of the disconnect.
#[test]
fn a_client_that_leaves_frees_the_worker_within_a_window() {
    let mut server = spawn_binary(&["--pool", "1"]);
    let mut streamer = Client::connect(server.addr());
    streamer.send(get("/cpu/stream?ms=10000&every=200"));
    assert_chunked_event_stream(&streamer.read_head_response());
    let first = streamer
        .next_chunk(Duration::from_secs(5))
        .expect("a progress event");
    assert_eq!(event(&first).0, "progress");
    let took = leave_and_time_next_job(server.addr(), streamer);
    assert!(
        took < Duration::from_millis(300),
        "the next job waited {took:?} after the streaming client left"
    );
    // The cancellation is counted, and reported when the server stops.
    server.assert_cancelled_at_exit(1);
}

/// `--request-timeout` ends a stream that has started with an error event carrying the 504, and
/// the connection carries on.
#[test]
fn the_request_timeout_ends_a_started_stream_with_an_error_event() {
    let server = spawn_binary(&["--pool", "1", "--request-timeout", "1"]);
    let mut client = Client::connect(server.addr());
    let started = Instant::now();
    client.send(get("/cpu/stream?ms=8000&every=100"));
    assert_chunked_event_stream(&client.read_head_response());
    let events = read_events(&mut client, Duration::from_secs(10));
    let took = started.elapsed();
    let (last, progress) = events.split_last().expect("events");
    assert_eq!(last.0, "error", "{events:?}");
    assert_eq!(last.1["status"], 504, "{events:?}");
    assert!(progress.iter().all(|(name, _)| name == "progress"));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "ended after {took:?}"
    );
    // The job was cancelled: the only worker takes the next job at once.
    let asked = Instant::now();
    assert_eq!(client.request(get("/cpu?ms=1")).status, 200);
    assert!(asked.elapsed() < Duration::from_millis(1000));
}

/// A client that leaves after a request that ends its connection (`Connection: close`, or
/// any HTTP/1.0 stream) is not read from any more, yet its leaving still cancels the job.
#[test]
fn a_client_that_leaves_after_its_last_request_cancels_its_job_too() {
    let server = spawn_binary(&["--pool", "1"]);
    for request in [
        "GET /cpu?ms=10000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /cpu/stream?ms=10000&every=200 HTTP/1.0\r\n\r\n",
    ] {
        let mut leaving = Client::connect(server.addr());
        leaving.send(request);
        sleep(Duration::from_millis(300)); // the job is running
        let took = leave_and_time_next_job(server.addr(), leaving);
        assert!(
            took < Duration::from_millis(1000),
            "after {request:?} the next job waited {took:?}"
        );
    }
}

/// A stream's `end` is user code on the loop's thread: if it panics, that stream ends without
/// its last event, and the server goes on serving.
#[test]
fn a_panicking_end_costs_its_stream_not_the_server() {
    fn explode(_: &evloop::http::Response) -> Vec<u8> {
        panic!("this end fails on purpose")
    }
    let router = Router::new().route(Method::Get, "/boom", |_, _| {
        let mut stream = Stream::events(|job| {
            job.emit(evloop::http::sse::event("progress", b"{}"));
            evloop::http::Response::text(200, "done")
        });
        stream.end = explode;
        Reply::Stream(stream)
    });
    let addr = spawn_in_process(test_config(), router);
    let mut client = Client::connect(addr);
    client.send(get("/boom"));
    assert_chunked_event_stream(&client.read_head_response());
    while client.next_chunk(Duration::from_secs(5)).is_some() {}
    let mut other = Client::connect(addr);
    other.send(get("/boom"));
    assert_chunked_event_stream(&other.read_head_response());
}

/// A client that fills its pipeline and then leaves is noticed although the connection has
/// stopped reading from it: its jobs are cancelled at once, not after the first one's run.
#[test]
fn a_client_that_leaves_with_a_full_pipeline_cancels_its_jobs() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut leaving = Client::connect(server.addr());
    leaving.send(get("/cpu?ms=4000").repeat(40));
    sleep(Duration::from_millis(300)); // the first job is running, the pipeline is full
    let took = leave_and_time_next_job(server.addr(), leaving);
    assert!(
        took < Duration::from_millis(1000),
        "the next job waited {took:?} after the client left"
    );
}
