//! A hostile upstream for the tests of calls: a small HTTP/1.1 server on std threads, bound to
//! `127.0.0.1:0`, that behaves well or badly on demand ([`Behaviour`]) and counts what it sees.
//!
//! ```ignore
//! let upstream = TestUpstream::start(Behaviour::Hang);
//! let config = Config { upstream: Some(upstream.upstream()), ..test_config() };
//! // … a request to evloop makes a call, its client leaves …
//! assert!(upstream.wait_peer_closed(1, Duration::from_secs(1)).is_some());
//! ```
//!
//! One thread accepts, and each connection gets a thread of its own, which reads requests and
//! answers them in order (pipelined requests included, one after another). Whatever the
//! behaviour, a connection's thread keeps reading while it waits (during a sleep, a hang, the
//! pause before a close), so it sees at once when the peer closes or resets the connection and
//! records the moment: that is how a test proves that evloop let go of a call.
//!
//! Requests are parsed just enough for that: the request line, `Content-Length` (a body is
//! skipped), `Connection: close` and HTTP/1.0 (the connection closes after the response).
//! Chunked request bodies are not supported.
//!
//! Dropping the [`TestUpstream`] stops accepting and shuts down every connection still open
//! (without counting those as closed by the peer).

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use evloop::outbound::Upstream;

/// Longest sleep `Sleep` accepts (ms), as evloop's own `/sleep`.
const MAX_SLEEP_MS: u64 = 60_000;
/// How long `ResetMidResponse` waits between the half response and the reset, so that the
/// half has surely been read: the reset then comes mid-response, not before it.
const RESET_PAUSE: Duration = Duration::from_millis(20);
/// The bytes `Garbage` answers with: no HTTP response starts like this.
pub const GARBAGE: &[u8] = b"I am not an HTTP server\r\n\r\n";

/// What the upstream does with each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// A well-behaved keep-alive HTTP/1.1 server: `GET /sleep?ms=N` is answered after N ms
    /// with `200`, `Content-Type: application/json`, `Content-Length` and `{"slept_ms":N}`.
    /// `/sleep` without a valid `ms` (0–60000) is `400`, any other path `404`, both at once.
    /// Only the path `/sleep` itself: an upstream URL with a base path gets 404s.
    Sleep,
    /// Accepts and reads requests, never answers; records when the peer closes.
    Hang,
    /// Reads a request, sends the first half of a `200` response (its head and a few bytes of a
    /// 40-byte body), then resets the connection: `SO_LINGER` of 0, so the close is a RST.
    ResetMidResponse,
    /// Answers every request with [`GARBAGE`], then goes on reading until the peer closes.
    Garbage,
    /// As `Sleep` for the first request on each connection, answered with keep-alive semantics
    /// (HTTP/1.1, no `Connection: close`), then waits `after` and closes the connection
    /// without a word (a FIN). A request that arrives meanwhile is read but never answered:
    /// the stale keep-alive connection a client must cope with. `after: Duration::ZERO`
    /// closes right after the response.
    CloseAfterEach { after: Duration },
    /// Nothing listens: the address is that of a port bound and released at once, so
    /// connecting is refused.
    Refuse,
}

/// A running test upstream. See the module's notes.
pub struct TestUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// What the accepting thread, the connections' threads and the test share.
struct Shared {
    behaviour: Behaviour,
    /// What has been seen so far; `changed` is notified at every change.
    seen: Mutex<Seen>,
    changed: Condvar,
    /// Set on drop: nothing more is accepted, and closes are no longer the peer's doing.
    stopping: AtomicBool,
    /// A handle on every connection still open, by number, so that drop can shut them down.
    open: Mutex<HashMap<u64, TcpStream>>,
    /// The number of the next connection.
    next_id: AtomicU64,
}

/// The counts, and when each peer close was seen.
#[derive(Debug, Default)]
struct Seen {
    accepted: usize,
    requests: usize,
    peer_closes: Vec<Instant>,
}

impl TestUpstream {
    /// Start an upstream behaving as `behaviour`, listening on `127.0.0.1:0`.
    pub fn start(behaviour: Behaviour) -> TestUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test upstream");
        let addr = listener.local_addr().expect("the test upstream's address");
        let shared = Arc::new(Shared {
            behaviour,
            seen: Mutex::new(Seen::default()),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        if behaviour == Behaviour::Refuse {
            // Dropping the listener releases the port: connecting to it is refused.
            drop(listener);
        } else {
            let accepting = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("upstream-accept-{}", addr.port()))
                .spawn(move || accept_loop(listener, accepting))
                .expect("spawn the test upstream");
        }
        TestUpstream { addr, shared }
    }

    /// Where it listens (for `Refuse`, where nothing does).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for `--upstream`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The upstream as a [`evloop::config::Config`] takes it.
    pub fn upstream(&self) -> Arc<Upstream> {
        Arc::new(Upstream::parse(&self.url()).expect("a test upstream's URL parses"))
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.seen().accepted
    }

    /// Complete requests received so far, answered or not.
    pub fn requests(&self) -> usize {
        self.seen().requests
    }

    /// Connections the peer closed (a FIN or a RST) so far. Closes by the upstream itself
    /// (`ResetMidResponse`, `CloseAfterEach`, `Connection: close`, drop) are not counted.
    pub fn peer_closed(&self) -> usize {
        self.seen().peer_closes.len()
    }

    /// When each peer close was seen, in order.
    pub fn peer_closes(&self) -> Vec<Instant> {
        self.seen().peer_closes.clone()
    }

    /// Wait until at least `count` connections have been accepted, at most `within`.
    pub fn wait_accepted(&self, count: usize, within: Duration) -> bool {
        self.wait_for(within, |seen| seen.accepted >= count)
            .is_some()
    }

    /// Wait until at least `count` requests have been received, at most `within`.
    pub fn wait_requests(&self, count: usize, within: Duration) -> bool {
        self.wait_for(within, |seen| seen.requests >= count)
            .is_some()
    }

    /// Wait until the peer has closed at least `count` connections, at most `within`; returns
    /// when the `count`-th close was seen, or `None` if it was not within the time.
    pub fn wait_peer_closed(&self, count: usize, within: Duration) -> Option<Instant> {
        let seen = self.wait_for(within, |seen| seen.peer_closes.len() >= count)?;
        Some(seen.peer_closes[count - 1])
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.shared.seen.lock().unwrap()
    }

    /// Wait until `done` holds, at most `within`; the counts at that moment, or `None`.
    fn wait_for(
        &self,
        within: Duration,
        done: impl Fn(&Seen) -> bool,
    ) -> Option<MutexGuard<'_, Seen>> {
        let (seen, _) = self
            .shared
            .changed
            .wait_timeout_while(self.seen(), within, |seen| !done(seen))
            .unwrap();
        done(&seen).then_some(seen)
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if self.shared.behaviour != Behaviour::Refuse {
            // Wake the accepting thread, which sees `stopping` and ends.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        }
        for (_, stream) in self.shared.open.lock().unwrap().drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Shared {
    fn update(&self, change: impl FnOnce(&mut Seen)) {
        change(&mut self.seen.lock().unwrap());
        self.changed.notify_all();
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// Accept connections until the upstream is dropped, each served on a thread of its own.
fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping() {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            // Out of file descriptors, or a connection reset before it was accepted: the
            // next one may do better.
            Err(_) => {
                thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        if let Ok(handle) = stream.try_clone() {
            shared.open.lock().unwrap().insert(id, handle);
        }
        shared.update(|seen| seen.accepted += 1);
        let serving = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name(format!("upstream-conn-{id}"))
            .spawn(move || {
                let behaviour = serving.behaviour;
                let mut conn = Conn {
                    stream,
                    buf: Vec::new(),
                    pending: VecDeque::new(),
                    shared: &serving,
                };
                conn.serve(behaviour);
                serving.open.lock().unwrap().remove(&id);
            });
        if spawned.is_err() {
            shared.open.lock().unwrap().remove(&id);
        }
    }
}

/// A request, as much of it as the upstream looks at.
#[derive(Debug)]
struct Received {
    /// The request target: path and query.
    target: String,
    /// The client asked for the connection to close after the response.
    close: bool,
}

/// What one read brought.
enum Heard {
    /// Bytes (perhaps completing requests, which are now in `pending`).
    Bytes,
    /// Nothing within the time given.
    Nothing,
    /// The connection is over: the peer closed or reset it (recorded), or the upstream is
    /// stopping.
    Closed,
}

/// One connection's state on its thread.
struct Conn<'a> {
    stream: TcpStream,
    /// Bytes read that do not yet make a complete request.
    buf: Vec<u8>,
    /// Complete requests not yet answered.
    pending: VecDeque<Received>,
    shared: &'a Shared,
}

impl Conn<'_> {
    fn serve(&mut self, behaviour: Behaviour) {
        match behaviour {
            Behaviour::Sleep => self.answer_sleeps(None),
            Behaviour::CloseAfterEach { after } => self.answer_sleeps(Some(after)),
            Behaviour::Hang => while !matches!(self.listen(None), Heard::Closed) {},
            Behaviour::ResetMidResponse => self.reset_mid_response(),
            Behaviour::Garbage => {
                while self.next_request().is_some() {
                    if !self.send(GARBAGE) {
                        return;
                    }
                }
            }
            Behaviour::Refuse => unreachable!("nothing listens for Refuse"),
        }
    }

    /// `Sleep`, and with `close_after` `CloseAfterEach`.
    fn answer_sleeps(&mut self, close_after: Option<Duration>) {
        while let Some(request) = self.next_request() {
            let (status, body, delay) = sleep_answer(&request.target);
            if !self.wait(delay) {
                return;
            }
            let close = if request.close {
                "Connection: close\r\n"
            } else {
                ""
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n{close}\r\n{body}",
                body.len()
            );
            if !self.send(response.as_bytes()) || request.close {
                return;
            }
            if let Some(after) = close_after {
                // Keep reading meanwhile, so that a request arriving now is consumed and the
                // close is a FIN, not a RST for unread data.
                self.wait(after);
                return;
            }
        }
    }

    /// `ResetMidResponse`: half a response, a pause, a RST.
    fn reset_mid_response(&mut self) {
        if self.next_request().is_none() {
            return;
        }
        let half = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: 40\r\n\r\n{\"slept_ms\":";
        if !self.send(half) || !self.wait(RESET_PAUSE) {
            return;
        }
        // A linger time of zero makes close() discard what is unsent and send a RST.
        let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
    }

    /// The next complete request, reading as needed; `None` once the connection is over.
    fn next_request(&mut self) -> Option<Received> {
        loop {
            if let Some(request) = self.pending.pop_front() {
                return Some(request);
            }
            if let Heard::Closed = self.listen(None) {
                return None;
            }
        }
    }

    /// Keep reading for `period` (requests that arrive are queued); false if the connection
    /// ended meanwhile.
    fn wait(&mut self, period: Duration) -> bool {
        let until = Instant::now() + period;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            if let Heard::Closed = self.listen(Some(left)) {
                return false;
            }
        }
    }

    /// One read, waiting at most `limit` (`None`: for ever).
    fn listen(&mut self, limit: Option<Duration>) -> Heard {
        if self.shared.stopping() || self.stream.set_read_timeout(limit).is_err() {
            return Heard::Closed;
        }
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => self.peer_closed(),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.take_requests();
                Heard::Bytes
            }
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Heard::Nothing
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => Heard::Nothing,
            Err(_) => self.peer_closed(),
        }
    }

    /// Write `bytes`; false (and the close recorded) if the peer has gone.
    fn send(&mut self, bytes: &[u8]) -> bool {
        match self.stream.write_all(bytes) {
            Ok(()) => true,
            Err(_) => {
                self.peer_closed();
                false
            }
        }
    }

    /// The connection is over. Unless the upstream is stopping, it was the peer's doing.
    fn peer_closed(&self) -> Heard {
        if !self.shared.stopping() {
            let at = Instant::now();
            self.shared.update(|seen| seen.peer_closes.push(at));
        }
        Heard::Closed
    }

    /// Move every complete request at the front of `buf` to `pending`, counting each.
    fn take_requests(&mut self) {
        while let Some((request, used)) = parse_request(&self.buf) {
            self.buf.drain(..used);
            self.pending.push_back(request);
            self.shared.update(|seen| seen.requests += 1);
        }
    }
}

/// A complete request at the front of `buf`, and the bytes it takes (head and body).
fn parse_request(buf: &[u8]) -> Option<(Received, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let mut words = lines.next().unwrap_or_default().split(' ');
    let (_method, target, version) = (words.next(), words.next(), words.next());
    let mut close = version == Some("HTTP/1.0");
    let mut length = 0;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().unwrap_or(0);
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let used = head_end + length;
    (buf.len() >= used).then(|| {
        let target = target.unwrap_or_default().to_string();
        (Received { target, close }, used)
    })
}

/// What `Sleep` answers to `target`: the status line's rest, the body, and how long to wait
/// before answering.
fn sleep_answer(target: &str) -> (&'static str, String, Duration) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != "/sleep" {
        let body = r#"{"error":"not found","status":404}"#.to_string();
        return ("404 Not Found", body, Duration::ZERO);
    }
    let ms = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|ms| *ms <= MAX_SLEEP_MS);
    match ms {
        Some(ms) => (
            "200 OK",
            format!(r#"{{"slept_ms":{ms}}}"#),
            Duration::from_millis(ms),
        ),
        None => (
            "400 Bad Request",
            r#"{"error":"ms must be an integer from 0 to 60000","status":400}"#.to_string(),
            Duration::ZERO,
        ),
    }
}
