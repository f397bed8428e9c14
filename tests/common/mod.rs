//! Shared helpers for the integration tests.
//!
//! - **Servers.** [`spawn_binary`] runs the real `evloop` binary on port 0, reads the port off
//!   its start-up line and waits for its ready line; [`spawn_in_process`] runs the library's
//!   reactor on a thread of the test process, for tests that register their own routes, and
//!   waits until it is ready; [`start_in_process`] returns at once, for tests that watch the
//!   start-up itself. Every test starts its own server.
//! - **Raw HTTP.** [`Client`] is a plain blocking `TcpStream` with a buffer: send exact bytes,
//!   read exactly one response off the wire (status line, headers, `Content-Length` body), read
//!   until EOF, assert that the server closes the connection within a bound.
//! - **Upstreams.** [`upstream::TestUpstream`] is a server for evloop to call: well-behaved,
//!   or hanging, resetting, talking garbage, closing kept-alive connections, or refusing, on
//!   demand; it counts connections, requests and the closes it sees.
//!
//! - **Event streams.** [`sse::parse`] checks and splits one chunk of a Server-Sent Events
//!   stream.
//!
//! - **Metrics.** [`metrics::parse::parse`] is the library's strict parser of the Prometheus text
//!   format, the same file, so a scrape is held to what the encoder's own tests check.
//!
//! Every read has a timeout, so a server that hangs fails the test instead of hanging it.
//!
//! Each test file uses a different subset of these helpers.
#![allow(dead_code)]

pub mod metrics;
pub mod sse;
pub mod upstream;

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use evloop::config::Config;
use evloop::lifespan::App;
use evloop::pool::WorkerPriority;
use evloop::reactor::{Exit, Server, ShutdownHandle};

/// How long any single socket operation may block before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the binary may take to print its start-up line.
const START_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------------

/// A running `evloop` process. Killed (SIGKILL) on drop unless the test already saw it exit.
pub struct ServerProcess {
    child: Child,
    /// The port it listens on, read from the start-up line.
    pub port: u16,
    /// The start-up line, e.g. `evloop 0.1.0 listening on http://127.0.0.1:4321 (pool 2, …)`.
    pub start_line: String,
    /// The lines of stdout after the start-up line (`evloop ready on …`), as they come.
    later_lines: mpsc::Receiver<String>,
    /// Everything the process wrote to stderr so far (its log), as a thread reads it off the
    /// pipe: a line the process has written may reach it only a moment later.
    stderr: Arc<Log>,
    /// Set once the test has reaped the process.
    exited: Option<ExitStatus>,
}

/// How to start the binary beyond its arguments.
#[derive(Default)]
pub struct Spawn<'a> {
    /// Extra environment variables.
    pub env: &'a [(&'a str, &'a str)],
    /// Soft and hard `RLIMIT_NOFILE` for the child (the server raises soft to hard, so both).
    pub nofile: Option<u64>,
    /// Return once the server listens, without waiting for its ready line: for tests of the
    /// start-up itself (see [`ServerProcess::wait_ready`]).
    pub early: bool,
}

/// Run the binary with `--port 0` plus `args` and wait for its start-up line, then for its
/// ready line (its start-up hooks have finished: every route is served).
pub fn spawn_binary(args: &[&str]) -> ServerProcess {
    spawn_binary_with(args, Spawn::default())
}

/// [`spawn_binary`] with extra environment variables or a file-descriptor limit.
pub fn spawn_binary_with(args: &[&str], spawn: Spawn<'_>) -> ServerProcess {
    let mut command = binary_command();
    command.arg("--port").arg("0").args(args);
    for (name, value) in spawn.env {
        command.env(name, value);
    }
    if let Some(limit) = spawn.nofile {
        // SAFETY: the closure runs in the forked child before exec and only calls setrlimit,
        // which is async-signal-safe; it touches no memory shared with the parent.
        unsafe {
            command.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: limit as libc::rlim_t,
                    rlim_max: limit as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn the evloop binary");

    // Drain stderr for the whole life of the process: a full pipe would block its logger.
    let stderr = Arc::new(Log::default());
    let sink = Arc::clone(&stderr);
    let mut err_pipe = child.stderr.take().expect("stderr is piped");
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err_pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.append(&buf[..n]);
        }
        sink.close();
    });

    // Read stdout on a thread too, so waiting for the start-up line can time out.
    let out_pipe = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out_pipe).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("evloop ") {
                let _ = tx.send(line);
            }
        }
    });

    let start_line = match rx.recv_timeout(START_TIMEOUT) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "evloop printed no start-up line (status {status:?}); stderr:\n{}",
                stderr.text()
            );
        }
    };
    let port = parse_start_line(&start_line)
        .unwrap_or_else(|| panic!("unexpected start-up line: {start_line:?}"));
    let mut server = ServerProcess {
        child,
        port,
        start_line,
        later_lines: rx,
        stderr,
        exited: None,
    };
    if !spawn.early {
        server.wait_ready(START_TIMEOUT);
    }
    server
}

/// A `Command` for the binary with no `EVLOOP_*` variable inherited from the test's environment.
pub fn binary_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_evloop"));
    for (name, _) in std::env::vars() {
        if name.starts_with("EVLOOP_") {
            command.env_remove(name);
        }
    }
    command.env_remove("RUST_LOG");
    command
}

/// The port in `evloop <version> listening on http://127.0.0.1:PORT (...)`.
pub fn parse_start_line(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("evloop ")?;
    let (_version, rest) = rest.split_once(" listening on http://")?;
    let (addr, _details) = rest.split_once(' ')?;
    addr.rsplit_once(':')?.1.parse().ok()
}

impl ServerProcess {
    /// Wait up to `within` for the line `evloop ready on http://…`, which the binary prints once
    /// its start-up hooks have finished; fail the test if it does not come.
    pub fn wait_ready(&mut self, within: Duration) {
        match self.later_lines.recv_timeout(within) {
            Ok(line) if line.starts_with("evloop ready on http://") => {}
            Ok(line) => panic!("unexpected line where the ready line should be: {line:?}"),
            Err(_) => {
                let status = self.wait_timeout(Duration::ZERO);
                panic!(
                    "evloop printed no ready line within {within:?} (status {status:?}); \
                     stderr:\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// True if the ready line has been printed by now (without waiting for it).
    pub fn is_ready(&self) -> bool {
        self.later_lines.try_recv().is_ok()
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: `kill` has no memory-safety preconditions; the pid is our own child, which
        // has not been reaped yet (so the pid cannot have been reused).
        let ret = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(ret, 0, "kill({}, {signal}) failed", self.pid());
    }

    /// Wait up to `limit` for the process to exit.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exited {
            return Some(status);
        }
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(status);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Wait up to `limit` for the exit and return its status code; fail the test otherwise.
    pub fn exit_code_within(&mut self, limit: Duration) -> i32 {
        match self.wait_timeout(limit) {
            Some(status) => status
                .code()
                .unwrap_or_else(|| panic!("evloop died by a signal: {status:?}")),
            None => panic!(
                "evloop did not exit within {limit:?}; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// The process's log so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Wait up to `within` for a line of the log containing every one of `parts`, and return
    /// it; fail the test if none comes. The line may be read off the pipe a little after the
    /// process wrote it (after it sent a response, say), so a log line is waited for, not
    /// looked up once.
    pub fn wait_for_log_line(&self, parts: &[&str], within: Duration) -> String {
        let find = |log: &LogState| {
            log.text
                .lines()
                .find(|line| parts.iter().all(|part| line.contains(part)))
                .map(str::to_string)
        };
        let (state, _) = self
            .stderr
            .wait_until(within, |log| log.closed || find(log).is_some());
        find(&state)
            .unwrap_or_else(|| panic!("no log line containing {parts:?} in:\n{}", state.text))
    }

    /// The whole log of a process that has exited: waits up to `within` for the last of it to
    /// be read off the pipe.
    pub fn final_stderr(&self, within: Duration) -> String {
        assert!(self.exited.is_some(), "the process is still running");
        let (state, closed) = self.stderr.wait_until(within, |log| log.closed);
        assert!(closed, "stderr still open {within:?} after the exit");
        state.text.clone()
    }

    /// The process's resident memory now.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kib * 1024
    }

    /// Stop the server with SIGTERM, check it exits 0, and check the count of cancelled jobs
    /// it reports as it goes.
    pub fn assert_cancelled_at_exit(&mut self, jobs: u64) {
        self.signal(libc::SIGTERM);
        assert_eq!(self.exit_code_within(Duration::from_secs(10)), 0);
        let line = format!("({jobs} jobs ended cancelled since start");
        let log = self.final_stderr(Duration::from_secs(10));
        assert!(log.contains(&line), "no {line:?} in {log}");
    }

    /// CPU time (user + system) the process has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("read /proc/<pid>/stat");
        // Fields after the `(comm)` part, which may itself contain spaces.
        let after = &stat[stat.rfind(')').expect("comm field") + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after `(comm)`.
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A child's log as a thread reads it off its stderr pipe; waiters are woken at each read.
#[derive(Default)]
struct Log {
    state: Mutex<LogState>,
    changed: Condvar,
}

#[derive(Default)]
struct LogState {
    text: String,
    /// The pipe reached EOF: the process and everything it started have exited.
    closed: bool,
}

impl Log {
    fn append(&self, bytes: &[u8]) {
        self.state
            .lock()
            .unwrap()
            .text
            .push_str(&String::from_utf8_lossy(bytes));
        self.changed.notify_all();
    }

    fn close(&self) {
        self.state.lock().unwrap().closed = true;
        self.changed.notify_all();
    }

    fn text(&self) -> String {
        self.state.lock().unwrap().text.clone()
    }

    /// Wait up to `within` for `done` to hold; the state then, and whether `done` held.
    fn wait_until(
        &self,
        within: Duration,
        done: impl Fn(&LogState) -> bool,
    ) -> (std::sync::MutexGuard<'_, LogState>, bool) {
        let (state, timeout) = self
            .changed
            .wait_timeout_while(self.state.lock().unwrap(), within, |state| !done(state))
            .unwrap();
        (state, !timeout.timed_out())
    }
}

// ---------------------------------------------------------------------------------------------
// The library, in this process
// ---------------------------------------------------------------------------------------------

/// Settings for an in-process server: port 0, a small pool, no worker nice.
pub fn test_config() -> Config {
    Config {
        port: 0,
        pool: 2,
        queue: 64,
        worker_priority: WorkerPriority::Normal,
        ..Config::default()
    }
}

/// Bind `config` (its port forced to 0) and run `app` (a `Router`, or an `App` with its hooks)
/// on a thread of this process; return once it is ready. The server lives until the test
/// process exits; signals are never installed in-process.
pub fn spawn_in_process(config: Config, app: impl Into<App>) -> SocketAddr {
    let server = start_in_process(config, app, Admission::AtOnce);
    assert!(
        server.wait_ready(START_TIMEOUT),
        "the in-process server was not ready within {START_TIMEOUT:?}"
    );
    server.addr
}

/// When an in-process server takes its first connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// At once, as the binary does: while starting, it answers probes and 503s.
    AtOnce,
    /// Only once ready (`Server::accept_after_ready`).
    AfterReady,
}

/// An in-process server, and what the test can watch of it.
pub struct InProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Begins its drain, as SIGTERM does the binary's.
    pub shutdown: ShutdownHandle,
    /// One message each time `on_ready` is called.
    ready: mpsc::Receiver<()>,
    /// What `run` returned.
    exit: mpsc::Receiver<io::Result<Exit>>,
}

impl InProcess {
    /// Wait up to `within` for the server to turn ready; true if it did.
    pub fn wait_ready(&self, within: Duration) -> bool {
        self.ready.recv_timeout(within).is_ok()
    }

    /// How many times `on_ready` has been called that the test has not yet seen.
    pub fn ready_calls(&self) -> usize {
        self.ready.try_iter().count()
    }

    /// Wait up to `within` for `run` to return, and return its exit; fail the test otherwise.
    pub fn exit_within(&self, within: Duration) -> Exit {
        match self.exit.recv_timeout(within) {
            Ok(Ok(exit)) => exit,
            Ok(Err(err)) => panic!("in-process reactor failed: {err}"),
            Err(_) => panic!("run did not return within {within:?}"),
        }
    }
}

/// Bind `config` (its port forced to 0) and run `app` on a thread of this process, taking
/// connections as `admission` says; return at once, while its start-up hooks may still run.
pub fn start_in_process(config: Config, app: impl Into<App>, admission: Admission) -> InProcess {
    let mut server = Server::bind(Config { port: 0, ..config }).expect("bind an in-process server");
    let addr = server.local_addr();
    let shutdown = server.shutdown_handle();
    let (ready_tx, ready) = mpsc::channel();
    server.on_ready(move || {
        let _ = ready_tx.send(());
    });
    if admission == Admission::AfterReady {
        server.accept_after_ready();
    }
    let app = app.into();
    let (exit_tx, exit) = mpsc::channel();
    thread::Builder::new()
        .name(format!("evloop-reactor-{}", addr.port()))
        .spawn(move || {
            if let Err(unheard) = exit_tx.send(server.run(app)) {
                if let Err(err) = unheard.0 {
                    panic!("in-process reactor failed: {err}");
                }
            }
        })
        .expect("spawn the reactor thread");
    InProcess {
        addr,
        shutdown,
        ready,
        exit,
    }
}

// ---------------------------------------------------------------------------------------------
// Raw sockets
// ---------------------------------------------------------------------------------------------

/// A `GET` request for `path`, HTTP/1.1, with a `Host` header.
pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

/// A response read off the wire.
#[derive(Clone)]
pub struct Response {
    /// `HTTP/1.1`.
    pub version: String,
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// Header fields in the order received.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes, or the chunks of a chunked body joined).
    pub body: Vec<u8>,
    /// The chunks of a chunked body, each as received; empty for a `Content-Length` body.
    pub chunks: Vec<Vec<u8>>,
    /// The head exactly as received, up to and including the blank line.
    pub raw_head: String,
}

impl std::fmt::Debug for Response {
    /// The head as received and the body as (lossy) text: what a failed assertion should show.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 300;
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(SHOWN)]);
        let more = if self.body.len() > SHOWN { "…" } else { "" };
        write!(f, "{:?}{body:?}{more}", self.raw_head)
    }
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How many times header `name` appears.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// True if the response says `Connection: close`.
    pub fn says_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// The body as text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {:?}", self.text()))
    }

    /// Assert this is a JSON error `{"error": "...", "status": N}` with status `status`, and
    /// return the message.
    pub fn assert_json_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.header("content-type"), Some("application/json"));
        let json = self.json();
        assert_eq!(json["status"], status, "{json}");
        json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {json}"))
            .to_string()
    }
}

/// Parse one response from the front of `buf`. `Ok(None)` means more bytes are needed; the
/// second value is the number of bytes the response took. `head_only` is for the answer to a
/// `HEAD` request (headers announce a length but no body follows).
pub fn parse_response(buf: &[u8], head_only: bool) -> Result<Option<(Response, usize)>, String> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head_len = head_end + 4;
    let raw_head = String::from_utf8(buf[..head_len].to_vec())
        .map_err(|_| format!("response head is not UTF-8: {:?}", &buf[..head_len]))?;
    let mut lines = raw_head[..head_end].split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_string();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let reason = parts.next().unwrap_or_default().to_string();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut response = Response {
        version,
        status,
        reason,
        headers,
        body: Vec::new(),
        chunks: Vec::new(),
        raw_head,
    };
    let bodiless = head_only || (100..200).contains(&status) || status == 204 || status == 304;
    if !bodiless
        && response
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        let Some((chunks, used)) = parse_chunks(&buf[head_len..])? else {
            return Ok(None);
        };
        response.body = chunks.concat();
        response.chunks = chunks;
        return Ok(Some((response, head_len + used)));
    }
    let length = if bodiless {
        0
    } else {
        response
            .header("content-length")
            .ok_or_else(|| format!("response without Content-Length: {response:?}"))?
            .parse::<usize>()
            .map_err(|_| format!("bad Content-Length in {response:?}"))?
    };
    if buf.len() < head_len + length {
        return Ok(None);
    }
    response.body = buf[head_len..head_len + length].to_vec();
    Ok(Some((response, head_len + length)))
}

/// The chunks of a whole chunked body, and the bytes it took on the wire.
pub type Chunks = (Vec<Vec<u8>>, usize);

/// Parse a whole chunked body (lowercase hex sizes, no extensions, no trailers: what evloop
/// sends) from the front of `buf`: its chunks and the bytes it took, or `None` if incomplete.
pub fn parse_chunks(buf: &[u8]) -> Result<Option<Chunks>, String> {
    let mut chunks = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line_end) = buf[pos..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&buf[pos..pos + line_end])
            .map_err(|_| "chunk size is not text".to_string())?;
        if size_text.is_empty() || !size_text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("bad chunk size line {size_text:?}"));
        }
        let size = usize::from_str_radix(size_text, 16).map_err(|e| e.to_string())?;
        let data = pos + line_end + 2;
        if buf.len() < data + size + 2 {
            return Ok(None);
        }
        if &buf[data + size..data + size + 2] != b"\r\n" {
            return Err(format!("chunk of {size} bytes not followed by CRLF"));
        }
        pos = data + size + 2;
        if size == 0 {
            return Ok(Some((chunks, pos)));
        }
        chunks.push(buf[data..data + size].to_vec());
    }
}

/// Parse every response in `bytes` (e.g. all a connection sent before EOF); fail on leftovers.
pub fn parse_all(bytes: &[u8]) -> Vec<Response> {
    let mut responses = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match parse_response(&bytes[pos..], false) {
            Ok(Some((response, used))) => {
                responses.push(response);
                pos += used;
            }
            Ok(None) => panic!(
                "truncated response after {} complete ones: {:?}",
                responses.len(),
                String::from_utf8_lossy(&bytes[pos..])
            ),
            Err(err) => panic!("{err}"),
        }
    }
    responses
}

/// Why a read stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The server closed the connection (FIN).
    Eof,
    /// The server reset the connection (RST).
    Reset,
}

/// A raw HTTP client on one connection.
pub struct Client {
    stream: TcpStream,
    /// Bytes received and not yet returned as a response.
    buf: Vec<u8>,
}

impl Client {
    /// Connect to `addr` (with timeouts and `TCP_NODELAY`), failing the test if it cannot.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|err| panic!("connect to {addr}: {err}"));
        Client::on(stream)
    }

    /// A client on a connected socket: `TCP_NODELAY`, and the I/O timeouts.
    fn on(stream: TcpStream) -> Client {
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connect with a receive buffer of about `bytes` (set before the connection, so the
    /// window the client advertises is small): a client that stops reading stops the server
    /// soon, instead of after megabytes of kernel buffers.
    pub fn connect_with_receive_buffer(addr: SocketAddr, bytes: usize) -> Client {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        socket
            .connect_timeout(&addr.into(), IO_TIMEOUT)
            .unwrap_or_else(|err| panic!("connect to {addr}: {err}"));
        Client::on(socket.into())
    }

    /// The next chunk of a chunked body whose head was read with
    /// [`Client::read_head_response`]: `Some(data)`, or `None` for the last chunk (its empty
    /// trailer section consumed too). Fails the test if nothing complete arrives in `within`.
    pub fn next_chunk(&mut self, within: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line_end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let size = std::str::from_utf8(&self.buf[..line_end])
                    .ok()
                    .and_then(|text| usize::from_str_radix(text, 16).ok())
                    .unwrap_or_else(|| {
                        panic!(
                            "bad chunk size line in {:?}",
                            String::from_utf8_lossy(&self.buf)
                        )
                    });
                let data = line_end + 2;
                let total = data + size + 2;
                if self.buf.len() >= total {
                    assert_eq!(
                        &self.buf[data + size..total],
                        b"\r\n",
                        "chunk not ended by CRLF"
                    );
                    let chunk = self.buf[data..data + size].to_vec();
                    self.buf.drain(..total);
                    return (size > 0).then_some(chunk);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no complete chunk within {within:?}; have {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            match self.fill(left) {
                Ok(0) => panic!("EOF inside a chunked body"),
                Ok(_) => {}
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(err) => panic!("read: {err}"),
            }
        }
    }

    /// The socket, for tests that need it directly (`shutdown`, `try_clone`).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Write all of `bytes` in one `write_all` call.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream
            .write_all(bytes.as_ref())
            .unwrap_or_else(|err| panic!("send: {err}"));
    }

    /// Send `bytes` and read one response.
    pub fn request(&mut self, bytes: impl AsRef<[u8]>) -> Response {
        self.send(bytes);
        self.read_response()
    }

    /// Read exactly one response (an interim `1xx` counts as one).
    pub fn read_response(&mut self) -> Response {
        self.read_one(false)
    }

    /// Read exactly one response to a `HEAD` request: headers only, whatever they announce.
    pub fn read_head_response(&mut self) -> Response {
        self.read_one(true)
    }

    /// Read exactly one response, waiting up to `within` for it as a whole: for an answer that
    /// comes only after a long job (longer than [`IO_TIMEOUT`] on a slow or loaded machine).
    pub fn read_response_within(&mut self, within: Duration) -> Response {
        self.read_one_within(false, within)
    }

    /// [`Client::read_head_response`], waiting up to `within` for the head as a whole.
    pub fn read_head_response_within(&mut self, within: Duration) -> Response {
        self.read_one_within(true, within)
    }

    fn read_one_within(&mut self, head_only: bool, within: Duration) -> Response {
        let deadline = Instant::now() + within;
        loop {
            match parse_response(&self.buf, head_only) {
                Ok(Some((response, used))) => {
                    self.buf.drain(..used);
                    return response;
                }
                Ok(None) => {}
                Err(err) => panic!("{err}"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no complete response within {within:?}; have {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            match self.fill(left) {
                Ok(0) => panic!(
                    "connection closed before a complete response; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(_) => {}
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(err) => panic!("reading a response: {err}"),
            }
        }
    }

    fn read_one(&mut self, head_only: bool) -> Response {
        loop {
            match parse_response(&self.buf, head_only) {
                Ok(Some((response, used))) => {
                    self.buf.drain(..used);
                    return response;
                }
                Ok(None) => {}
                Err(err) => panic!("{err}"),
            }
            match self.fill(IO_TIMEOUT) {
                Ok(0) => panic!(
                    "connection closed before a complete response; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(_) => {}
                Err(err) => panic!(
                    "reading a response: {err}; have {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// One `read` into the buffer, waiting at most `limit`. `Ok(0)` is EOF.
    fn fill(&mut self, limit: Duration) -> io::Result<usize> {
        self.stream
            .set_read_timeout(Some(limit.max(Duration::from_millis(1))))?;
        let mut chunk = [0u8; 64 * 1024];
        let result = loop {
            match self.stream.read(&mut chunk) {
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.stream.set_read_timeout(Some(IO_TIMEOUT))?;
        let n = result?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// One `read` of whatever arrives within `limit` (at least one byte), returning all bytes
    /// buffered so far without consuming them. Fails the test on timeout or EOF.
    pub fn read_some(&mut self, limit: Duration) -> &[u8] {
        match self.fill(limit) {
            Ok(0) => panic!("unexpected EOF"),
            Ok(_) => &self.buf,
            Err(err) => panic!("no bytes within {limit:?}: {err}"),
        }
    }

    /// Bytes buffered but not yet returned as a response.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Read until the server closes the connection, at most `within`; return every byte not yet
    /// returned as a response, and how the stream ended. Fails the test if it stays open.
    pub fn read_to_end(&mut self, within: Duration) -> (Vec<u8>, End) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "connection still open after {within:?}; received {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
            match self.fill(left) {
                Ok(0) => return (std::mem::take(&mut self.buf), End::Eof),
                Ok(_) => {}
                Err(err) if err.kind() == ErrorKind::ConnectionReset => {
                    return (std::mem::take(&mut self.buf), End::Reset)
                }
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(err) => panic!("read: {err}"),
            }
        }
    }

    /// Read every response until the server closes the connection (at most `within`).
    pub fn responses_until_close(&mut self, within: Duration) -> Vec<Response> {
        let (bytes, _end) = self.read_to_end(within);
        parse_all(&bytes)
    }

    /// Assert the server closes the connection within `within` without sending another byte.
    pub fn assert_closed_silently(&mut self, within: Duration) {
        let (bytes, _end) = self.read_to_end(within);
        assert!(
            bytes.is_empty(),
            "expected a silent close, got {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }

    /// Assert nothing arrives (and the connection stays open) for `period`.
    pub fn assert_silent_for(&mut self, period: Duration) {
        match self.fill(period) {
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(0) => panic!("connection closed during a {period:?} silence"),
            Ok(_) => panic!(
                "expected silence for {period:?}, got {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Err(err) => panic!("read: {err}"),
        }
    }
}

/// Drop `leaving` (the client goes away) and time how long until the server runs another job:
/// a `GET /cpu?ms=1` on a connection opened beforehand. With `--pool 1` that is how long the
/// job of the client that left kept the only worker. Fails the test on a non-200.
pub fn leave_and_time_next_job(addr: SocketAddr, leaving: Client) -> Duration {
    let mut other = Client::connect(addr);
    drop(leaving);
    let left = Instant::now();
    let answer = other.request(get("/cpu?ms=1"));
    let took = left.elapsed();
    assert_eq!(answer.status, 200, "{answer:?}");
    took
}

/// True if a TCP connect to `addr` is refused (nothing listens there any more).
pub fn connection_refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Err(err) => err.kind() == ErrorKind::ConnectionRefused,
        Ok(_) => false,
    }
}

/// Poll until connecting to `addr` is refused, or `within` passes; returns whether it was.
pub fn wait_until_refused(addr: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if connection_refused(addr) {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Raise this process's soft `RLIMIT_NOFILE` to at least `wanted` (up to the hard limit) and
/// return the soft limit now in force.
pub fn raise_nofile_limit(wanted: u64) -> u64 {
    // SAFETY: `rlimit` is plain old data and the pointers passed are valid for the calls.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if (lim.rlim_cur as u64) < wanted {
            let target = (wanted as libc::rlim_t).min(lim.rlim_max);
            let raised = libc::rlimit {
                rlim_cur: target,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
        lim.rlim_cur as u64
    }
}

/// Assert `elapsed` lies in `low..=high`, with a message naming `what`.
pub fn assert_between(what: &str, elapsed: Duration, low: Duration, high: Duration) {
    assert!(
        elapsed >= low && elapsed <= high,
        "{what}: took {elapsed:?}, expected between {low:?} and {high:?}"
    );
}

/// A process stopped with SIGSTOP (what a loop stuck in a long turn looks like from outside),
/// resumed when this is dropped, so that a failing test leaves no stopped process behind.
pub struct Stopped(u32);

impl Stopped {
    pub fn new(pid: u32) -> Stopped {
        // SAFETY: kill(2) with a pid of a server process the test started, and a constant signal.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}
