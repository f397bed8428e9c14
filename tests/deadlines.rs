//! Deadlines that apply at the same time never hide one another, and a closing connection's
//! lingering read is bounded: what a slow or hostile client cannot make the server do.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, Socket, Type};
use std::thread;
use std::time::{Duration, Instant};

use evloop::config::Config;
use evloop::http::{Body, Method, Response};
use evloop::router::{Reply, Router};

use common::{get, parse_response, spawn_in_process, test_config};

/// Set by `/slow-job` once it runs.
static SLOW_JOB_STARTED: AtomicBool = AtomicBool::new(false);
/// Set by `/slow-job` as it returns its (late) answer.
static SLOW_JOB_ENDED: AtomicBool = AtomicBool::new(false);

/// Wait up to 20 s for `flag`; fail the test if it is not set by then.
fn wait_for(flag: &AtomicBool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !flag.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 20 s"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// A server with a job whose response is 16 MiB (more than the socket buffers hold), answered
/// once `/slow-job` runs, and `/slow-job`, which takes 3 s.
fn server(request_timeout: Duration) -> SocketAddr {
    let router = Router::new()
        .route(Method::Get, "/big-job", |_, _| {
            Reply::offload(|_| {
                wait_for(&SLOW_JOB_STARTED, "the slow job's start");
                Response {
                    body: Body::Owned(vec![b'x'; 16 << 20]),
                    ..Response::text(200, "")
                }
            })
        })
        .route(Method::Get, "/slow-job", |_, _| {
            Reply::offload(|_| {
                SLOW_JOB_STARTED.store(true, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(3000));
                SLOW_JOB_ENDED.store(true, Ordering::SeqCst);
                Response::text(200, "late")
            })
        })
        .route(Method::Get, "/plaintext", |_, _| {
            Response::text(200, "Hello, World!").into()
        });
    spawn_in_process(
        Config {
            request_timeout,
            ..test_config()
        },
        router,
    )
}

/// A client socket with a small receive buffer, so that a large response cannot all be parked
/// in the kernel: the server really has to wait for the client to read.
fn small_window_client(addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Two jobs start together; the first answers as soon as the second runs, with more than the
/// client takes, so the send timeout is in force while the second runs past
/// `--request-timeout`. The second's deadline still fires: the client, reading at last, finds a
/// 504 behind the big response — not the job's late 200, which came while it was not reading.
#[test]
fn a_slow_reader_does_not_hide_a_request_timeout() {
    // 1.5 s: time enough for the first job to answer within it on a loaded machine (at 0.5 s
    // it was itself answered 504 there), and half the second job's run.
    let addr = server(Duration::from_millis(1500));
    let mut stream = small_window_client(addr);
    stream
        .write_all(format!("{}{}", get("/big-job"), get("/slow-job")).as_bytes())
        .unwrap();
    // Do not read until the second job has ended: the output stalls, the job's deadline passes,
    // and then the job itself ends. Its late result must not replace the 504.
    wait_for(&SLOW_JOB_ENDED, "the slow job's end");
    let started = Instant::now();
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut responses = Vec::new();
    while responses.len() < 2 {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(err) => panic!("read: {err}"),
        }
        while let Ok(Some((response, used))) = parse_response(&bytes, false) {
            responses.push(response);
            bytes.drain(..used);
        }
    }
    assert_eq!(responses.len(), 2, "two responses");
    assert_eq!(responses[0].status, 200);
    assert_eq!(
        responses[1].status, 504,
        "the job's deadline fired while we were not reading"
    );
    // The 504 was waiting: reading is not held up by another timer (the send timeout is 60 s).
    // 16 MiB through a 16 KiB window took up to 1.5 s on a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "reading took {:?}",
        started.elapsed()
    );
}

/// After its last response, a closing connection reads and discards what the client still
/// sends (so the response is not reset), but only so much: a client that keeps sending is
/// disconnected after about 1 MiB instead of being read from for the whole linger period, and
/// other clients are served meanwhile.
#[test]
fn a_lingering_close_is_bounded() {
    let addr = server(Duration::from_secs(60));
    let mut hostile = TcpStream::connect(addr).unwrap();
    hostile
        .write_all(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    hostile
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let writer = thread::spawn(move || {
        let chunk = vec![b'z'; 64 * 1024];
        let started = Instant::now();
        let mut sent = 0usize;
        while sent < (64 << 20) && started.elapsed() < Duration::from_secs(5) {
            match hostile.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => return Some(sent),
            }
        }
        None
    });
    let mut other = common::Client::connect(addr);
    assert_eq!(other.request(get("/plaintext")).text(), "Hello, World!");
    let sent = writer.join().unwrap();
    let sent = sent.expect("the server kept reading 64 MiB (or 5 s) of junk after closing");
    assert!(sent < (16 << 20), "disconnected only after {sent} bytes");
}
