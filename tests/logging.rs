//! What the server logs: one access-log line per request with `--access-log` (refused requests
//! included), none without it, and a warning naming the handler when a reactor turn runs long —
//! never for work done on the pool.

mod common;

use std::thread::sleep;
use std::time::Duration;

use common::{get, spawn_binary, Client};

/// How long a log line may take to appear.
const LOG_WITHIN: Duration = Duration::from_secs(3);

/// `--access-log` writes one line per request on target `evloop::access` with the client
/// address, method, path, status and byte count.
#[test]
fn access_log_records_each_request() {
    let server = spawn_binary(&["--pool", "1", "--access-log"]);
    let mut client = Client::connect(server.addr());
    let local = client.stream().local_addr().unwrap().to_string();
    assert_eq!(client.request(get("/plaintext")).status, 200);
    assert_eq!(client.request(get("/missing")).status, 404);

    let line = server.wait_for_log_line(&["evloop::access", "GET /plaintext 200"], LOG_WITHIN);
    assert!(line.contains(&local), "no client address in {line:?}");
    server.wait_for_log_line(&["evloop::access", "GET /missing 404"], LOG_WITHIN);
}

/// Without `--access-log` no access line is written.
#[test]
fn no_access_log_by_default() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut client = Client::connect(server.addr());
    assert_eq!(client.request(get("/plaintext")).status, 200);
    // A request whose log line would surely be out by now if there were one.
    assert_eq!(client.request(get("/sleep?ms=100")).status, 200);
    sleep(Duration::from_millis(100));
    assert!(
        !server.stderr().contains("evloop::access"),
        "{}",
        server.stderr()
    );
}

/// A handler that blocks the reactor (`mode=inline`) is reported as a slow turn naming it.
#[test]
fn slow_turn_is_logged_with_its_handler() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut client = Client::connect(server.addr());
    assert_eq!(client.request(get("/cpu?ms=200&mode=inline")).status, 200);
    let line = server.wait_for_log_line(&["slow reactor turn", "/cpu"], LOG_WITHIN);
    assert!(line.contains("WARN"), "{line:?}");
}

/// Work on the pool never makes a slow turn: a 300 ms pool job logs no such warning.
#[test]
fn pool_work_makes_no_slow_turn() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut client = Client::connect(server.addr());
    assert_eq!(client.request(get("/cpu?ms=300")).status, 200);
    assert_eq!(client.request(get("/plaintext")).status, 200);
    sleep(Duration::from_millis(100));
    assert!(
        !server.stderr().contains("slow reactor turn"),
        "{}",
        server.stderr()
    );
}

/// A request refused before routing (413 from `Content-Length`, or a smuggling-shaped 400) is
/// logged too: an operator needs to see refused and hostile requests, not only routed ones.
#[test]
fn access_log_records_refused_requests() {
    let server = spawn_binary(&["--pool", "1", "--access-log", "--max-body", "10"]);
    let mut client = Client::connect(server.addr());
    client.send("POST /plaintext HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n");
    let responses = client.responses_until_close(Duration::from_secs(3));
    assert_eq!(responses[0].status, 413);
    server.wait_for_log_line(&["evloop::access", " 413 "], LOG_WITHIN);
}

/// A stderr nobody reads (a full pipe) costs access-log lines, never answers: the reactor
/// hands lines to a writer thread and drops what that thread cannot take, counting them in
/// `/metrics`. A server that wrote each line itself would block on the full pipe within a
/// thousand requests.
#[test]
fn a_stalled_stderr_does_not_stall_the_server() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    /// Killed when dropped, so that a failed assertion leaves no server behind.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = common::binary_command()
        .args(["--port", "0", "--pool", "1", "--access-log"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Piped and never read: once its 64 KiB are full, every write to it blocks.
        .stderr(Stdio::piped())
        .spawn()
        .map(Killed)
        .expect("spawn evloop");
    let mut stdout = BufReader::new(child.0.stdout.take().expect("stdout"));
    let mut start_line = String::new();
    stdout
        .read_line(&mut start_line)
        .expect("the start-up line");
    let port = common::parse_start_line(start_line.trim()).expect("a port");
    // Then the ready line: the start-up hooks are done and every route answers.
    let mut ready_line = String::new();
    stdout.read_line(&mut ready_line).expect("the ready line");
    assert!(ready_line.starts_with("evloop ready on"), "{ready_line:?}");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut client = Client::connect(addr);
    // About 80 bytes a line: 5000 lines are six times what the pipe holds.
    for _ in 0..5000 {
        assert_eq!(client.request(get("/plaintext")).status, 200);
    }
    let metrics = client.request(get("/metrics")).text().to_string();
    let dropped: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("evloop_access_log_dropped_lines_total "))
        .and_then(|value| value.parse().ok())
        .expect("the dropped-lines counter");
    drop(child);
    assert!(dropped > 0.0, "no line was dropped:\n{metrics}");
}
