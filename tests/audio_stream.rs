//! `POST /analyze/stream` on the wire: its `result` event is exactly what `/analyze` answers,
//! its progress covers the clip window by window, a bad upload is an ordinary error before any
//! stream, a client that stops reading during a 60 s clip costs no memory and no worker, and
//! one that leaves frees the worker at once.

mod common;

use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use evloop::audio::synth::{self, Voice};
use serde_json::Value;

use common::{get, leave_and_time_next_job, spawn_binary, Client, Response};

/// How long the decode of a long upload may take before its stream's head: generous, since a
/// debug build on a loaded two-core machine is many times slower than a release build.
const DECODE_WITHIN: Duration = Duration::from_secs(120);
/// How long the analysis of a 60 s clip may take, likewise.
const ANALYSIS_WITHIN: Duration = Duration::from_secs(120);

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio");
    std::fs::read(path.join(name)).unwrap_or_else(|err| panic!("{name}: {err}"))
}

/// A two-voice conversation in white noise at 20 dB, `seconds` long, as a WAV body.
fn conversation(seconds: f64) -> Vec<u8> {
    let turns = (seconds / 2.5).ceil() as usize;
    let speech = synth::conversation(&[Voice::LOW, Voice::HIGH], turns, 2.5, 7);
    let noise = synth::white_noise(speech.len(), 8);
    let mix = synth::mix_at_snr(&speech, &noise, 20.0);
    synth::wav_16bit(&mix, synth::RATE).expect("a WAV body")
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// Split one event, checking its exact bytes: `event: NAME\ndata: JSON\n\n`.
fn event(chunk: &[u8]) -> (String, Value) {
    let text = std::str::from_utf8(chunk).expect("text");
    let (name, data) = text
        .strip_prefix("event: ")
        .and_then(|rest| rest.split_once("\ndata: "))
        .unwrap_or_else(|| panic!("not an event: {text:?}"));
    let data = data
        .strip_suffix("\n\n")
        .expect("an empty line ends the event");
    assert!(!data.contains('\n'), "{text:?}");
    (
        name.to_string(),
        serde_json::from_str(data).expect("JSON data"),
    )
}

/// The head of the stream, then the raw chunks (each one event).
fn read_stream(client: &mut Client, within: Duration) -> (Response, Vec<Vec<u8>>) {
    let head = client.read_head_response();
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(head.header("cache-control"), Some("no-cache"));
    let mut chunks = Vec::new();
    while let Some(chunk) = client.next_chunk(within) {
        chunks.push(chunk);
    }
    (head, chunks)
}

/// The last event is `result` with the very bytes `/analyze` answers, for several clips and
/// query strings; the progress before it walks the clip in windows of about a second. (The
/// last window's progress may not be seen: the result, which follows it at once, replaces it
/// if the client has not taken it yet.)
#[test]
fn the_result_event_is_what_analyze_answers() {
    let server = spawn_binary(&["--pool", "2"]);
    let mut client = Client::connect(server.addr());
    for (name, query) in [
        ("snr_v2_pink_05db.wav", ""),
        ("clean_1_normal.wav", "?vad_hop_size=128&vad_threshold=0.3"),
        ("fmt_44k_stereo.wav", "?vad_threshold=0.7"),
        ("silence_1p5s.wav", ""),
    ] {
        let body = fixture(name);
        let whole = client.request(post(&format!("/analyze{query}"), &body));
        assert_eq!(whole.status, 200, "{name}: {whole:?}");
        client.send(post(&format!("/analyze/stream{query}"), &body));
        let (_, chunks) = read_stream(&mut client, Duration::from_secs(30));
        let (last, progress) = chunks.split_last().expect("at least the result");
        let expected = [b"event: result\ndata: ".as_slice(), &whole.body, b"\n\n"].concat();
        assert_eq!(
            String::from_utf8_lossy(last),
            String::from_utf8_lossy(&expected),
            "{name}{query}"
        );
        let duration = whole.json()["snr"]["duration_s"]
            .as_f64()
            .expect("duration");
        let mut previous = 0.0;
        for chunk in progress {
            let (name, data) = event(chunk);
            assert_eq!(name, "progress");
            let processed = data["processed_s"].as_f64().expect("processed_s");
            assert!(
                processed > previous && processed <= duration + 1e-9,
                "{data}"
            );
            assert!(
                processed - previous <= 1.0 + 1e-9 || previous == 0.0,
                "{data}"
            );
            assert_eq!(data["duration_s"].as_f64(), Some(duration));
            previous = processed;
        }
    }
}

/// A bad upload or query is an ordinary error response, before any stream starts.
#[test]
fn a_bad_upload_is_refused_before_the_stream() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut client = Client::connect(server.addr());
    for (body, status) in [
        (fixture("bad_text.wav"), 415),
        (fixture("bad_trunc_header.wav"), 400),
        (fixture("bad_zero_samples.wav"), 422),
    ] {
        let response = client.request(post("/analyze/stream", &body));
        response.assert_json_error(status);
        assert!(response.header("content-length").is_some(), "{response:?}");
    }
    let response = client.request(post(
        "/analyze/stream?mode=inline",
        &fixture("clean_1_normal.wav"),
    ));
    response.assert_json_error(400);
}

/// A 60 s clip streamed to a client that stops reading (3 s, or longer if the analysis takes
/// longer, as in a debug build): the server's memory stays flat, the only worker finishes the
/// stream's job and takes another client's while the reader is still away, and the stream
/// completes, with its result, when reading resumes.
#[test]
fn a_long_clip_to_a_client_that_stops_reading() {
    let server = spawn_binary(&["--pool", "1"]);
    let body = conversation(60.0);
    let mut reader = Client::connect_with_receive_buffer(server.addr(), 4096);
    let rss_before = server.rss_bytes();
    reader.send(post("/analyze/stream", &body));
    // The head follows the decode, seconds in a debug build on a loaded machine.
    let head = reader.read_head_response_within(DECODE_WITHIN);
    assert_eq!(head.status, 200, "{head:?}");
    let paused = Instant::now();
    // Queued behind the stream's job on the only worker: answered once that job is done,
    // which must not need the reader to read. The analysis takes seconds in a debug build, and
    // many more on a loaded machine, so the answer may take much longer than one read's
    // timeout; a job that waited for the reader would never end, since the reader waits for
    // this answer.
    let mut other = Client::connect(server.addr());
    other.send(get("/cpu?ms=1"));
    let answer = other.read_response_within(ANALYSIS_WITHIN);
    assert_eq!(answer.status, 200, "{answer:?}");
    let rss_during = server.rss_bytes();
    sleep(Duration::from_secs(3).saturating_sub(paused.elapsed()));
    let mut events = Vec::new();
    while let Some(chunk) = reader.next_chunk(Duration::from_secs(30)) {
        events.push(event(&chunk));
    }
    let (last, progress) = events.split_last().expect("events");
    assert_eq!(last.0, "result", "{:?}", last.1);
    assert!(!progress.is_empty());
    // The body (1.9 MB) is held while it arrives and decodes; the stream adds nothing to it.
    assert!(
        rss_during < rss_before + body.len() as u64 * 4 + 4 * 1024 * 1024,
        "RSS went from {rss_before} to {rss_during} bytes"
    );
}

/// A client that leaves in the middle of a long analysis frees the only worker at once: the
/// analysis checks its cancel flag every window. The cancellation is counted.
#[test]
fn a_client_that_leaves_mid_analysis_frees_the_worker() {
    let mut server = spawn_binary(&["--pool", "1"]);
    let body = conversation(300.0);
    let mut streamer = Client::connect(server.addr());
    streamer.send(post("/analyze/stream", &body));
    // The head follows the decode of the 300 s clip: many seconds in a debug build on a
    // loaded machine.
    let head = streamer.read_head_response_within(DECODE_WITHIN);
    assert_eq!(head.status, 200, "{head:?}");
    let first = streamer
        .next_chunk(Duration::from_secs(30))
        .expect("progress");
    assert_eq!(event(&first).0, "progress");
    let took = leave_and_time_next_job(server.addr(), streamer);
    assert!(
        took < Duration::from_millis(500),
        "the worker was busy {took:?} after its client left"
    );
    server.assert_cancelled_at_exit(1);
}
