//! Waiting without blocking: `/sleep` is a reactor timer, not a sleeping thread, so one reactor
//! holds hundreds of sleeping requests at once, each on its own timer, and the sleeps overlap
//! instead of adding up.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{get, parse_response, raise_nofile_limit, spawn_binary, IO_TIMEOUT};

/// 500 connections each asking `GET /sleep?ms=500` are all answered `{"slept_ms":500}` about
/// 500 ms after the last is sent, not 500 × 500 ms: the sleeps overlap on reactor timers.
#[test]
fn five_hundred_concurrent_sleeps_overlap() {
    const CONNECTIONS: usize = 500;
    let limit = raise_nofile_limit(4096);
    assert!(
        limit >= CONNECTIONS as u64 + 64,
        "open-files limit {limit} is too low for this test"
    );
    let server = spawn_binary(&["--pool", "1"]);
    let request = get("/sleep?ms=500");

    let started = Instant::now();
    let mut streams = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        let mut stream = TcpStream::connect_timeout(&server.addr(), IO_TIMEOUT)
            .unwrap_or_else(|err| panic!("connection {i}: {err}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        streams.push(stream);
    }
    let sent = started.elapsed();

    for (i, stream) in streams.iter_mut().enumerate() {
        let mut buf = Vec::new();
        let response = loop {
            if let Some((response, _)) = parse_response(&buf, false).unwrap() {
                break response;
            }
            let mut chunk = [0u8; 1024];
            let n = std::io::Read::read(stream, &mut chunk)
                .unwrap_or_else(|err| panic!("connection {i}: {err}"));
            assert!(n > 0, "connection {i} closed without a response");
            buf.extend_from_slice(&chunk[..n]);
        };
        assert_eq!(response.status, 200, "connection {i}");
        assert_eq!(response.text(), r#"{"slept_ms":500}"#, "connection {i}");
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(500),
        "answered in {elapsed:?}, before the sleep was over"
    );
    // Counted from the last request sent: opening 500 connections is the test's own work,
    // slow on a loaded machine. One after the other, the sleeps would take 250 s.
    assert!(
        elapsed < sent + Duration::from_millis(1500),
        "500 overlapping 500 ms sleeps took {elapsed:?} (requests sent after {sent:?})"
    );
}
