//! Pipelining: every request a client sends in one write is served, even those left over when
//! the pipeline was full; responses go out strictly in request order whatever order their work
//! finishes in; and a client that pipelines without reading cannot make the server's memory grow
//! with what it sends (once its output backs up, the server stops reading it), nor starve the
//! other clients.

mod common;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use evloop::endpoints;
use evloop::http::{Body, Method, Response};
use evloop::router::Reply;

use common::{get, parse_response, spawn_binary, spawn_in_process, test_config, Client};

/// A slow pool job first and an instant reply second, in one write: the slow answer comes first
/// and the instant one waits for it (not before the 200 ms job is done).
#[test]
fn responses_keep_request_order_behind_a_pool_job() {
    let server = spawn_binary(&["--pool", "2"]);
    let mut client = Client::connect(server.addr());
    let started = Instant::now();
    client.send(format!("{}{}", get("/cpu?ms=200"), get("/plaintext")));
    let first = client.read_response();
    let second = client.read_response();
    let elapsed = started.elapsed();
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["ms"], 200, "{first:?}");
    assert_eq!(second.text(), "Hello, World!");
    assert!(
        elapsed >= Duration::from_millis(190),
        "plaintext arrived after {elapsed:?}, before the 200 ms job could finish"
    );
}

/// Responses that become ready together go out together: once the slow job at the head of the
/// pipeline finishes, the read that brings its response already holds the one queued behind it.
#[test]
fn responses_ready_together_arrive_in_one_read() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut client = Client::connect(server.addr());
    client.send(format!(
        "{}{}{}",
        get("/cpu?ms=100"),
        get("/plaintext"),
        get("/json")
    ));
    let bytes = client.read_some(Duration::from_secs(5)).to_vec();
    let (first, used) = parse_response(&bytes, false)
        .expect("valid response")
        .expect("the first read holds the whole first response");
    assert_eq!(first.json()["ms"], 100);
    let rest = &bytes[used..];
    let (second, used2) = parse_response(rest, false)
        .expect("valid response")
        .unwrap_or_else(|| {
            panic!(
                "the queued responses were not written with the job's: {:?}",
                String::from_utf8_lossy(rest)
            )
        });
    assert_eq!(second.text(), "Hello, World!");
    let (third, _) = parse_response(&rest[used2..], false)
        .expect("valid response")
        .expect("third response in the same read");
    assert_eq!(third.text(), r#"{"message":"Hello, World!"}"#);
}

/// Many instant requests in one write are all answered, in order.
#[test]
fn many_pipelined_requests_answered_in_order() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut client = Client::connect(server.addr());
    let paths = ["/plaintext", "/json", "/healthz", "/readyz", "/nope"];
    let batch: String = (0..20).map(|i| get(paths[i % paths.len()])).collect();
    client.send(batch);
    for i in 0..20 {
        let response = client.read_response();
        match paths[i % paths.len()] {
            "/plaintext" => assert_eq!(response.text(), "Hello, World!"),
            "/json" => assert_eq!(response.text(), r#"{"message":"Hello, World!"}"#),
            "/healthz" => assert_eq!(response.text(), r#"{"status":"ok"}"#),
            "/readyz" => assert_eq!(response.text(), r#"{"status":"ready"}"#),
            _ => assert_eq!(response.status, 404),
        }
    }
    // The connection is still usable afterwards.
    assert_eq!(client.request(get("/plaintext")).status, 200);
}

/// Pool jobs that finish out of order are still answered in request order: a 300 ms job queued
/// before a 10 ms job (two workers) is answered first.
#[test]
fn out_of_order_completions_are_reordered() {
    let server = spawn_binary(&["--pool", "2"]);
    let mut client = Client::connect(server.addr());
    client.send(format!(
        "{}{}{}",
        get("/cpu?ms=300"),
        get("/cpu?ms=10"),
        get("/sleep?ms=5")
    ));
    assert_eq!(client.read_response().json()["ms"], 300);
    assert_eq!(client.read_response().json()["ms"], 10);
    assert_eq!(client.read_response().json()["slept_ms"], 5);
}

/// More pipelined requests than a connection may have in flight: the server stops reading, then
/// resumes on its own as answers go out; all 100 are answered, in order.
#[test]
fn deep_pipeline_is_fully_answered_in_order() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut client = Client::connect(server.addr());
    let batch: String = (0..100)
        .map(|i| get(&format!("/sleep?ms={}", 20 + i)))
        .collect();
    client.send(batch);
    for i in 0..100 {
        let response = client.read_response();
        assert_eq!(response.status, 200);
        assert_eq!(
            response.json()["slept_ms"],
            20 + i,
            "response {i} out of order"
        );
    }
}

/// A client that pipelines requests for large responses and does not read for a while still
/// gets every byte of every response, in order, once it reads (write backpressure loses nothing).
#[test]
fn large_responses_survive_a_client_that_reads_late() {
    const SIZE: usize = 1 << 20;
    let router = endpoints::router().route(Method::Get, "/big", |req, _| {
        let fill = req
            .query_param("fill")
            .and_then(|f| f.bytes().next())
            .unwrap_or(b'x');
        Reply::Now(Response {
            status: 200,
            content_type: "application/octet-stream",
            body: Body::Owned(vec![fill; SIZE]),
            headers: Vec::new(),
        })
    });
    let addr = spawn_in_process(test_config(), router);
    let mut client = Client::connect(addr);
    let fills = b"abcdefghijklmnop";
    let batch: String = fills
        .iter()
        .map(|&f| get(&format!("/big?fill={}", f as char)))
        .collect();
    client.send(batch);
    std::thread::sleep(Duration::from_millis(300));
    for &fill in fills {
        let response = client.read_response();
        assert_eq!(response.status, 200);
        assert_eq!(response.body.len(), SIZE);
        assert!(
            response.body.iter().all(|&b| b == fill),
            "response for fill={} has foreign bytes",
            fill as char
        );
    }
    assert_eq!(client.request(get("/plaintext")).status, 200);
}

/// Clients that pipeline requests without ever reading cannot make the server's memory grow
/// with what they send: once a connection's output backs up, the server stops reading it. Other
/// clients are still served (not starved).
#[test]
fn non_reading_clients_cannot_grow_memory() {
    const CLIENTS: usize = 20;
    const PER_CLIENT: usize = 4 << 20;
    let server = spawn_binary(&["--pool", "1"]);
    let before = server.rss_bytes();
    // `GET /` is ~30 bytes in and ~1 KB out: a server that read everything would have to hold
    // about 140 MB of responses per client.
    let batch = get("/").repeat(2000).into_bytes();
    let mut hogs = Vec::new();
    for _ in 0..CLIENTS {
        let mut stream = TcpStream::connect(server.addr()).expect("connect");
        stream.set_nonblocking(true).unwrap();
        let mut sent = 0;
        let started = Instant::now();
        while sent < PER_CLIENT && started.elapsed() < Duration::from_secs(1) {
            match stream.write(&batch) {
                Ok(n) => sent += n,
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) => panic!("write: {err}"),
            }
        }
        hogs.push(stream);
    }
    std::thread::sleep(Duration::from_millis(300));
    let grown = server.rss_bytes().saturating_sub(before);
    assert!(
        grown < 200 << 20,
        "{CLIENTS} non-reading clients grew the server by {} MB",
        grown >> 20
    );
    let started = Instant::now();
    assert_eq!(
        Client::connect(server.addr())
            .request(get("/plaintext"))
            .status,
        200
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a new client waited {:?} behind the non-reading ones",
        started.elapsed()
    );
}

/// A full pipeline with requests still buffered: one write holds a 50 ms sleep followed by 39
/// instant requests. Only 32 fit in the pipeline at once; the rest wait in the connection's
/// buffer and must be decoded as soon as the sleep's answer frees room — no socket event will
/// come for bytes already read. All 40 answers arrive, in order, long before any timeout.
#[test]
fn requests_left_in_a_full_pipeline_are_answered_when_room_frees() {
    let server = spawn_binary(&["--pool", "1", "--header-timeout", "3"]);
    for instant in [32, 39] {
        let mut client = Client::connect(server.addr());
        let mut batch = get("/sleep?ms=50");
        for _ in 0..instant {
            batch.push_str(&get("/plaintext"));
        }
        let started = Instant::now();
        client.send(batch);
        assert_eq!(client.read_response().text(), r#"{"slept_ms":50}"#);
        for i in 0..instant {
            assert_eq!(client.read_response().text(), "Hello, World!", "answer {i}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "1 sleep + {instant} plaintext took {:?}",
            started.elapsed()
        );
    }
}

/// Equal delays in a full pipeline: 100 `/sleep?ms=20` in one write finish in batches of at most
/// 32 (the pipeline limit), every one answered, in order.
#[test]
fn a_hundred_equal_sleeps_in_one_write_are_all_answered_in_order() {
    let server = spawn_binary(&["--pool", "1", "--header-timeout", "3"]);
    let mut client = Client::connect(server.addr());
    let batch: String = (0..100).map(|_| get("/sleep?ms=20")).collect();
    let started = Instant::now();
    client.send(batch);
    for i in 0..100 {
        let response = client.read_response();
        assert_eq!(response.text(), r#"{"slept_ms":20}"#, "answer {i}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

/// More instant requests in one write than one call of the connection decodes (64): the
/// connection yields and comes back, and every answer arrives, each paired with its own request
/// (the paths alternate with a period that does not divide 64, so a lost or shifted answer
/// shows).
#[test]
fn more_instant_requests_than_one_drive_decodes_are_all_answered_in_order() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut client = Client::connect(server.addr());
    let path = |i: usize| {
        if i.is_multiple_of(3) {
            "/plaintext"
        } else {
            "/json"
        }
    };
    let batch: String = (0..1000).map(|i| get(path(i))).collect();
    client.send(batch);
    for i in 0..1000_usize {
        let want = if i.is_multiple_of(3) {
            "Hello, World!"
        } else {
            r#"{"message":"Hello, World!"}"#
        };
        assert_eq!(client.read_response().text(), want, "answer {i}");
    }
}
