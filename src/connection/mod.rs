//! One HTTP/1.1 connection: read, decode, dispatch, answer in request order, write.
//!
//! # Layout
//!
//! - [`transport`]: the socket — readiness, the bytes held in each direction, reads and writes
//!   until `WouldBlock`, the lingering close;
//! - [`pipeline`]: the requests still waiting for their response, in order — job completions,
//!   gathers, timers, 504s. No socket: unit-tested directly;
//! - [`deadline`]: which timeouts apply right now, and the one timer entry that enforces them;
//! - this file: the [`Input`] state and [`Connection::drive`], which ties the three together.
//!
//! # Theory of operation
//!
//! The reactor calls [`Connection::drive`] whenever something may let this connection make
//! progress: its socket became readable or writable, one of its jobs finished, one of its
//! timers fired, a drain began. `drive` loops over four steps until nothing more can be done:
//!
//! 1. **decode** the complete requests already held, if decoding was paused for room;
//! 2. **collect** the responses ready at the front of the pipeline into one output buffer;
//! 3. **flush**: one `write` for all of them;
//! 4. **read** once more if the socket may have bytes and we are willing to take them — and
//!    decode what arrived, dispatching each request to its handler as it is decoded.
//!
//! A cheap handler's response is encoded straight into the output buffer during dispatch (the
//! hot path: no pipeline entry, no allocation). Everything else waits in the pipeline.
//!
//! ## The input state
//!
//! ```text
//!        ┌─ no room (pipeline full, output blocked or at its high-water mark, budget spent)
//!        ▼         with complete requests possibly left in the held bytes
//!  Reading ──────▶ Paused ── room again: decode the held bytes (no socket event will come) ─┐
//!     ▲ ◀──────────────────────────────────────────────────────────────────────────────────┘
//!     │
//!     ├── last request read (`Connection: close`, HTTP/1.0, a refused request, a drain) ──▶
//!     │      Closing ── everything answered ──▶ Lingering ── peer's EOF or deadline ──▶ closed
//!     └── read returns 0 ──▶ PeerClosed ── everything answered ──▶ closed
//! ```
//!
//! ## When `drive` loops, yields or returns
//!
//! | situation | `drive` | what resumes the connection |
//! |---|---|---|
//! | `Paused` and there is room again | decodes the held requests, loops | — (hyper calls this "wants read again") |
//! | `Reading`, socket readable, pipeline and output not full | reads once, loops | — |
//! | its budget for this call is spent | returns [`Next::Again`] | the reactor, on its next turn |
//! | everything answered, `Closing` | shuts down writing, lingers | readable events, the linger deadline |
//! | everything answered, `PeerClosed` | returns [`Next::Close`] | — |
//! | the peer's EOF while jobs, calls upstream, timers or a stream still work for it (read, or, while we are not reading, reported by the socket's event) | returns [`Next::Close`] (the jobs and calls are cancelled) | — |
//! | waiting for a job, a timer, the socket, or the peer to read | arms its deadline, returns [`Next::Wait`] | a completion, a timer, a socket event |
//!
//! **Backpressure.** Reading stops while the peer is not taking our output, while
//! [`MAX_PIPELINE`] requests wait, and once the last request has been read. The socket stays
//! readable in the transport's books; because every one of those obstacles clears inside a
//! `drive` call (a write, a completion, a timer), the loop above looks again before it returns,
//! so no edge-triggered wake-up is lost.
//!
//! **Fairness.** One call decodes at most [`REQUESTS_PER_DRIVE`] requests and makes at most
//! [`READS_PER_DRIVE`] reads; a connection with more to do yields and is driven again on the
//! reactor's next turn (stage 8), after that turn's socket events.
//!
//! **Memory.** The reactor lends every connection the same read buffer and the same output
//! buffer for one call. A connection keeps bytes of its own only when they are left over — half
//! a request, output the peer has not taken — and frees them as soon as they are empty. An idle
//! keep-alive connection holds no buffer at all.

pub mod deadline;
pub mod pipeline;
pub mod transport;

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::access_log::AccessLog;
use crate::config::Config;
use crate::error::Error;
use crate::http::decoder::header_storage;
use crate::http::response::{chunk, CONTINUE, LAST_CHUNK};
use crate::http::{
    ConnectionHeader, DateCache, Decoded, HeadInfo, Method, Request, RequestDecoder, Response,
    Version,
};
use crate::metrics::{CloseReason, ConnectionState, ReactorMetrics, Registry, Rejection, Scrape};
use crate::outbound::{CallError, CallId, CallRequest, CallResult, Io, Outbound};
use crate::pool::{Completion, Outcome, Pool, Progress, SubmitError, Ticket, Work};
use crate::router::{Context, Reply, Router};
use crate::timer::{TimerKind, Timers};

use deadline::{Alarm, Deadline, Deadlines};
use pipeline::{Answer, JobOutput, Pipeline, ResponseMeta, Scheduler, StreamBody};
use transport::{ReadOutcome, Transport};

/// Most requests one connection may have waiting for their responses; past it, we stop reading
/// from that connection until the oldest is answered (actix uses 16, evloop 32).
pub const MAX_PIPELINE: usize = 32;
/// Requests one `drive` may decode before yielding to the other connections. With it, a client
/// that pipelines thousands of requests in one write costs the loop tens of microseconds per
/// turn, not tens of milliseconds.
pub const REQUESTS_PER_DRIVE: usize = 64;
/// Reads one `drive` may make before yielding.
pub const READS_PER_DRIVE: usize = 8;
/// Encoded output at which decoding pauses to write: bounds the memory a client that pipelines
/// without reading can make us hold.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;
/// How long a peer may go without taking any of our pending output before we give up on it
/// (nginx's `send_timeout`, also 60 s, is likewise measured between two successive writes).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long, after the last response of a closing connection, we keep reading and discarding
/// what the client still sends, so that closing does not reset the connection under the
/// response (nginx's lingering close).
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// Most bytes a lingering close discards before it gives up and closes: a client that keeps
/// sending cannot keep the connection (or the loop) busy.
pub const LINGER_MAX_BYTES: usize = 1024 * 1024;
/// Reads one lingering `drive` makes before yielding.
const LINGER_READS_PER_DRIVE: usize = 4;

/// The `Connection` header of a response: `close` on the `last` one, `keep-alive` for an
/// HTTP/1.0 client that asked for it, nothing otherwise.
fn connection_header(last: bool, meta: &ResponseMeta) -> ConnectionHeader {
    if last {
        ConnectionHeader::Close
    } else if meta.http10_keep_alive {
        ConnectionHeader::KeepAlive
    } else {
        ConnectionHeader::Omit
    }
}

/// Append one piece of a stream's body, framed as the stream's body is.
fn put_piece(out: &mut Vec<u8>, piece: &[u8], body: StreamBody) {
    match body {
        StreamBody::Chunked => chunk(out, piece),
        StreamBody::UntilClose => out.extend_from_slice(piece),
        StreamBody::Omitted => {}
    }
}

/// The `reason` a refused request is counted under, for the refusals that have one.
fn rejection(err: &Error) -> Option<Rejection> {
    Some(match err {
        Error::RequestTimeout => Rejection::Timeout,
        Error::Http(_) => match err.status() {
            413 => Rejection::BodyTooLarge,
            414 => Rejection::UriTooLong,
            431 => Rejection::HeaderTooLarge,
            _ => Rejection::BadRequest,
        },
        _ => return None,
    })
}

/// What the reactor should do with the connection after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing more to do until an event, a completion or a timer.
    Wait,
    /// Has more to do but yielded for fairness: drive it again on the next turn.
    Again,
    /// Close and forget this connection.
    Close,
}

/// What the connection does with its input. See the module docs for the diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Reading requests; the held bytes are at most one unfinished request.
    Reading,
    /// Decoding stopped for room while the held bytes may contain complete requests: decode
    /// them as soon as there is room, before reading more.
    Paused,
    /// The last request has been read: answer what is in flight, then linger.
    Closing,
    /// The peer closed its sending side: answer what is ready, then close — or close at once if
    /// a job, a call upstream or a timer still works for it (a client that has gone cannot read the answer).
    PeerClosed,
    /// Every response is out and our sending side is shut: discard input until the peer
    /// closes, [`LINGER_MAX_BYTES`], or `until`.
    Lingering { until: Instant, discarded: usize },
}

impl Input {
    /// Still taking requests.
    fn is_open(self) -> bool {
        matches!(self, Input::Reading | Input::Paused)
    }
}

/// What the reactor lends a connection for one call: the turn's clock, the shared buffers and
/// the services a request may need.
pub struct TurnContext<'a> {
    /// The time this reactor turn started (one clock read per turn, not per request).
    pub now: Instant,
    /// The server's settings.
    pub config: &'a Config,
    /// The handlers.
    pub router: &'a Router,
    /// The worker pool.
    pub pool: &'a Pool<JobOutput>,
    /// The reactor's timers.
    pub timers: &'a mut Timers,
    /// The cached `Date` header.
    pub date: &'a DateCache,
    /// `Some(grace)` once a graceful drain has begun: idle connections close at `grace`.
    pub drain: Option<Instant>,
    /// The shared read buffer (its length is its usable size).
    pub read_buf: &'a mut Vec<u8>,
    /// The shared output buffer, empty between calls.
    pub out: &'a mut Vec<u8>,
    /// The slowest handler of this turn, for the slow-turn warning.
    pub slowest: &'a mut Option<(Duration, String)>,
    /// The memory all connections hold in request bodies still arriving.
    pub bodies: &'a mut BodyMemory,
    /// The reactor's calls to upstreams.
    pub outbound: &'a mut Outbound,
    /// The poll's registry (for upstream sockets).
    pub registry: &'a mio::Registry,
    /// The server's metrics: requests and bytes are counted here, and `/metrics` renders them.
    pub metrics: &'a mut Registry,
    /// The access log, with `--access-log`: a line per response goes here.
    pub access: Option<&'a mut AccessLog>,
}

/// The metrics as `GET /metrics` sees them: the registry, with the levels that live elsewhere
/// (the pool's busy workers and queue, the upstream connections) read into it first. Lent to
/// the handler through [`Context::metrics`] for the length of its call, so rendering happens
/// on the loop's thread, at the moment of the scrape, with no lock.
struct LiveMetrics<'t> {
    registry: &'t Registry,
    pool: &'t Pool<JobOutput>,
    outbound: &'t Outbound,
}

impl Scrape for LiveMetrics<'_> {
    fn render(&self, out: &mut Vec<u8>) {
        read_levels(self.registry, self.pool, self.outbound);
        self.registry.render(out);
    }

    fn vitals(&self) -> &std::sync::Arc<crate::metrics::vitals::Vitals> {
        self.registry.vitals()
    }
}

/// Read into `registry` the levels that are counted nowhere, only looked at: busy workers, queue
/// depth, upstream connections. Before every render, and before every post to the scoreboard.
pub fn read_levels(registry: &Registry, pool: &Pool<JobOutput>, outbound: &Outbound) {
    registry.pool.set_busy(pool.busy());
    registry.pool.set_queue_depth(pool.queued());
    let idle = outbound.idle_connections();
    let active = outbound.connections().saturating_sub(idle);
    registry.reactor.set_upstream_connections(active, idle);
}

/// The bytes of request bodies that all connections together hold while those bodies arrive,
/// against `--max-body-memory`. Without it, ten thousand clients each sending (slowly) a body
/// just under `--max-body` could make the server hold ten thousand times that much.
#[derive(Debug)]
pub struct BodyMemory {
    limit: usize,
    held: usize,
}

impl BodyMemory {
    /// Nothing held yet; at most `limit` bytes.
    pub fn new(limit: usize) -> BodyMemory {
        BodyMemory { limit, held: 0 }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held
    }

    /// A connection's share went from `before` to `after` bytes.
    fn update(&mut self, before: usize, after: usize) {
        self.held = self.held - before + after;
    }

    /// A connection closed holding `bytes`.
    pub fn release(&mut self, bytes: usize) {
        self.held -= bytes;
    }
}

/// A connection's way into the pool, the timer heap and the upstreams, for its pipeline.
struct ReactorScheduler<'t> {
    token: usize,
    pool: &'t Pool<JobOutput>,
    outbound: &'t mut Outbound,
    io: Io<'t>,
    /// Where a job the full queue turned away is counted.
    metrics: &'t mut ReactorMetrics,
}

/// The scheduler for connection `token`'s pipeline, from what the reactor lent for this call.
fn scheduler<'t>(token: usize, turn: &'t mut TurnContext<'_>) -> ReactorScheduler<'t> {
    ReactorScheduler {
        token,
        pool: turn.pool,
        outbound: turn.outbound,
        io: Io {
            registry: turn.registry,
            timers: turn.timers,
            now: turn.now,
        },
        metrics: &mut turn.metrics.reactor,
    }
}

impl Scheduler for ReactorScheduler<'_> {
    fn submit(
        &mut self,
        seq: u64,
        part: usize,
        work: Work<JobOutput>,
    ) -> Result<Arc<AtomicBool>, SubmitError> {
        let ticket = Ticket {
            owner: self.token,
            seq,
            part,
        };
        let submitted = self.pool.submit(ticket, work);
        if let Err(SubmitError::Full) = submitted {
            self.metrics.rejected(Rejection::QueueFull);
        }
        submitted
    }

    fn wake_at(&mut self, at: Instant, seq: u64) {
        self.io.timers.insert(
            at,
            TimerKind::Request {
                token: self.token,
                seq,
            },
        );
    }

    fn call(&mut self, seq: u64, part: usize, request: &CallRequest) -> Result<CallId, CallError> {
        let owner = Ticket {
            owner: self.token,
            seq,
            part,
        };
        self.outbound.start(owner, request, &mut self.io)
    }

    fn cancel_call(&mut self, id: CallId) {
        self.outbound.cancel(id, &mut self.io);
    }
}

/// How much one `drive` call may still do.
struct Budget {
    requests: usize,
    reads: usize,
}

impl Budget {
    fn new() -> Budget {
        Budget {
            requests: REQUESTS_PER_DRIVE,
            reads: READS_PER_DRIVE,
        }
    }
}

/// One client connection. Lives in the reactor's slab from accept to close.
pub struct Connection {
    /// Our own token (slot + generation), carried by job tickets and timers.
    token: usize,
    /// The client's address, for logs.
    peer: SocketAddr,
    /// The socket and the bytes held in each direction.
    transport: Transport,
    /// Where we are in the request stream.
    decoder: RequestDecoder,
    /// Requests waiting for their responses, oldest first.
    pipeline: Pipeline,
    /// What we do with input.
    input: Input,
    /// When the first byte of the current unfinished head arrived (the header timeout runs
    /// from there; more bytes of the same head do not move it).
    head_started: Option<Instant>,
    /// When bytes last arrived (the body timeout runs from there).
    last_read: Instant,
    /// When the connection last had nothing in progress: accepted, or every response written.
    idle_since: Instant,
    /// Our entry in the timer heap.
    alarm: Alarm,
    /// Since when we have not been willing to read (the client's clocks stand still meanwhile).
    reading_paused_since: Option<Instant>,
    /// Bytes of the body being received, as last counted in [`BodyMemory`].
    body_held: usize,
    /// The state the metrics count this connection in (see [`Connection::state_change`]).
    counted_state: ConnectionState,
    /// Why the connection will close, if it closes now: the client's doing unless a deadline
    /// or an error said otherwise (for the metrics).
    close_reason: CloseReason,
}

impl Connection {
    /// A connection just accepted.
    pub fn new(stream: TcpStream, token: usize, peer: SocketAddr, now: Instant) -> Connection {
        Connection {
            token,
            peer,
            transport: Transport::new(stream),
            decoder: RequestDecoder::new(),
            pipeline: Pipeline::new(),
            input: Input::Reading,
            head_started: None,
            last_read: now,
            idle_since: now,
            alarm: Alarm::default(),
            reading_paused_since: None,
            body_held: 0,
            counted_state: ConnectionState::ReadingHead,
            close_reason: CloseReason::Client,
        }
    }

    /// Where the connection is in its life, for the `evloop_connections` gauge. Derived from
    /// the state the connection keeps anyway, so nothing on the request path maintains it.
    fn state(&self) -> ConnectionState {
        if let Input::Lingering { .. } = self.input {
            ConnectionState::Lingering
        } else if self.transport.is_blocked() {
            ConnectionState::Writing
        } else if !self.pipeline.is_empty() {
            ConnectionState::Waiting
        } else if self.decoder.in_body() {
            ConnectionState::ReadingBody
        } else if self.head_started.is_none() && self.pipeline.dispatched() > 0 {
            ConnectionState::Idle
        } else {
            // A new connection waits for its first request's head like one mid-head.
            ConnectionState::ReadingHead
        }
    }

    /// `Some((from, to))` if the connection's state moved since the metrics last counted it
    /// (the reactor asks after each `drive`); the new state is then the counted one.
    pub fn state_change(&mut self) -> Option<(ConnectionState, ConnectionState)> {
        let now = self.state();
        let before = std::mem::replace(&mut self.counted_state, now);
        (before != now).then_some((before, now))
    }

    /// The state the metrics count the connection in, and why it would close now.
    pub fn closing(&self) -> (ConnectionState, CloseReason) {
        (self.counted_state, self.close_reason)
    }

    /// Bytes of request body this connection holds (given back to [`BodyMemory`] on close).
    pub fn body_held(&self) -> usize {
        self.body_held
    }

    /// The socket, for (de)registration.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        self.transport.stream_mut()
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The socket reported readable; see [`Transport::set_readable`].
    pub fn set_readable(&mut self, closing: bool) {
        self.transport.set_readable(closing);
    }

    /// `Some(since)` when the connection is an idle keep-alive connection — it has been
    /// answered at least once, and has no request in progress, nothing held, nothing unsent — that
    /// could be closed to make room for a new client. A connection that has sent nothing yet is
    /// not one: its first request may already be on the wire.
    pub fn idle_since(&self) -> Option<Instant> {
        let idle = self.input == Input::Reading
            && !self.transport.is_readable()
            && self.pipeline.dispatched() > 0
            && self.pipeline.is_empty()
            && !self.transport.is_blocked()
            && self.transport.held().is_empty()
            && !self.decoder.in_body();
        idle.then_some(self.idle_since)
    }

    /// Is the timer entry `(at, kind)` one this connection still counts on? Everything else of
    /// ours in the heap is dead weight that compaction may drop.
    pub fn wants_timer(&self, at: Instant, kind: TimerKind) -> bool {
        match kind {
            TimerKind::Connection { .. } => self.alarm.is_armed_at(at),
            TimerKind::Request { seq, .. } => self.pipeline.is_sleeping(seq),
            _ => true,
        }
    }

    /// Make progress: decode, collect, flush, read; repeat. See the module docs.
    pub fn drive(&mut self, turn: &mut TurnContext<'_>) -> Next {
        let mut budget = Budget::new();
        loop {
            if let Input::Lingering { .. } = self.input {
                return self.linger(turn);
            }
            // 1. Requests we hold but have not decoded: no socket event will come for them.
            if self.input == Input::Paused && self.has_room(turn) && budget.requests > 0 {
                self.decode_held(turn, &mut budget);
            }
            // 2. The responses ready at the front of the pipeline, in order.
            self.collect_ready(turn);
            // 3. One write for all of them. Counted as sent once handed to the transport: what
            //    the socket does not take now is held and written later, or lost with the client.
            turn.metrics.reactor.sent(turn.out.len());
            match self.transport.flush(turn.out, turn.now) {
                Ok(all_sent) => {
                    if all_sent && self.pipeline.is_empty() {
                        self.idle_since = turn.now;
                    }
                }
                Err(err) => {
                    log::debug!("{}: write failed: {err}", self.peer);
                    self.close_reason = CloseReason::Error;
                    return Next::Close;
                }
            }
            // The write took everything while a stream's progress waited for it to: send that
            // now, rather than when the job next has news.
            if !self.transport.is_blocked() && self.pipeline.has_piece_waiting() {
                continue;
            }
            // Everything answered on a connection that takes no more requests?
            if self.pipeline.is_empty() && !self.transport.is_blocked() {
                match self.input {
                    Input::PeerClosed => return Next::Close,
                    Input::Closing => {
                        self.start_linger(turn.now);
                        continue;
                    }
                    _ => {}
                }
            }
            // 4. More to do? Held requests first, then the socket. Every return below comes
            //    after the flush above: nothing encoded is ever left in the shared buffer.
            if self.input == Input::Paused && self.has_room(turn) {
                if budget.requests == 0 {
                    return self.yield_turn(turn);
                }
                continue;
            }
            if !self.may_read()
                && self.transport.is_peer_closing()
                && self.pipeline.has_work_outstanding()
            {
                // The client has closed while jobs, timers or a stream still work for it, and we
                // are not reading (its last request is read, its pipeline is full, or it is not
                // taking our output). We learn it from the event rather than from a read: it has
                // gone, as below, and closing cancels its jobs now rather than when their answer
                // fails to be written.
                return Next::Close;
            }
            if !(self.may_read() && self.transport.is_readable()) {
                break;
            }
            if budget.reads == 0 {
                return self.yield_turn(turn);
            }
            budget.reads -= 1;
            if let Err(err) = self.read_once(turn, &mut budget) {
                log::debug!("{}: read failed: {err}", self.peer);
                self.close_reason = CloseReason::Error;
                return Next::Close;
            }
            if self.input == Input::PeerClosed && self.pipeline.has_work_outstanding() {
                // EOF while jobs or timers work for it: the client has gone (half-closed
                // clients are not supported, as in hyper's default). Nobody will read the
                // answers; closing cancels the jobs.
                return Next::Close;
            }
        }
        self.arm(turn);
        Next::Wait
    }

    /// Stop for now with work left: the reactor drives us again next turn.
    fn yield_turn(&mut self, turn: &mut TurnContext<'_>) -> Next {
        self.arm(turn);
        Next::Again
    }

    /// May we read more requests from the socket now?
    fn may_read(&self) -> bool {
        self.input == Input::Reading
            && !self.transport.is_blocked()
            && self.pipeline.len() < MAX_PIPELINE
    }

    /// Is there room to decode (and dispatch) another request now?
    fn has_room(&self, turn: &TurnContext<'_>) -> bool {
        self.input.is_open()
            && self.pipeline.len() < MAX_PIPELINE
            && !self.transport.is_blocked()
            && turn.out.len() < OUTPUT_HIGH_WATER
    }

    /// One read into the shared buffer. If we hold nothing, the bytes are decoded right there
    /// (the common case: no copy at all); otherwise they are appended to what we hold and the
    /// whole is decoded.
    fn read_once(&mut self, turn: &mut TurnContext<'_>, budget: &mut Budget) -> io::Result<()> {
        let mut buf = std::mem::take(turn.read_buf);
        let outcome = self.transport.read(&mut buf);
        if let Ok(ReadOutcome::Data(n)) = outcome {
            self.last_read = turn.now;
            turn.metrics.reactor.received(n);
            if self.transport.held().is_empty() {
                let used = self.decode(&buf[..n], turn, budget);
                if self.input.is_open() && used < n {
                    // Copied: the shared buffer belongs to the next connection in a moment.
                    self.transport.hold(&buf[used..n]);
                }
            } else {
                self.transport.hold(&buf[..n]);
                self.decode_held(turn, budget);
            }
            self.note_head_start(turn.now);
        }
        *turn.read_buf = buf;
        if let Ok(ReadOutcome::Eof) = outcome {
            if self.input.is_open() {
                self.input = Input::PeerClosed;
            }
        }
        outcome.map(|_| ())
    }

    /// Decode the bytes we hold, keeping the undecoded rest. The decoder remembers how far it has
    /// scanned, so a head arriving a byte at a time is still scanned only once.
    fn decode_held(&mut self, turn: &mut TurnContext<'_>, budget: &mut Budget) {
        let held = self.transport.take_held();
        let used = self.decode(&held, turn, budget);
        if self.input.is_open() {
            self.transport.keep(held, used);
        }
        self.note_head_start(turn.now);
    }

    /// Start the header clock on an unfinished head, or stop it. Line ends alone (the start of
    /// an empty line between requests) are not a head: they leave the connection idle.
    fn note_head_start(&mut self, now: Instant) {
        let unfinished_head = self.input == Input::Reading
            && !self.decoder.in_body()
            && self
                .transport
                .held()
                .iter()
                .any(|&b| b != b'\r' && b != b'\n');
        if unfinished_head {
            self.head_started.get_or_insert(now);
        } else {
            self.head_started = None;
        }
    }

    /// Decode and dispatch the complete requests in `input` while there is room and budget;
    /// return the bytes used. Sets [`Input::Paused`] when it stops with bytes left for lack of
    /// room.
    fn decode(&mut self, input: &[u8], turn: &mut TurnContext<'_>, budget: &mut Budget) -> usize {
        let mut pos = 0;
        let mut dispatched = false;
        while self.input.is_open() {
            if !self.has_room(turn) || budget.requests == 0 {
                self.input = if pos < input.len() {
                    Input::Paused
                } else {
                    Input::Reading
                };
                break;
            }
            let mut storage = header_storage();
            match self
                .decoder
                .decode(&input[pos..], &mut storage, &turn.config.limits)
            {
                Ok(Decoded::Incomplete {
                    consumed,
                    send_continue,
                }) => {
                    pos += consumed;
                    self.input = Input::Reading;
                    if self.count_body(turn) {
                        self.reject(Error::BodyMemoryFull, turn);
                        return input.len();
                    }
                    if send_continue {
                        // RFC 9110 §10.1.1: the client waits for our go-ahead. If the head alone
                        // already decides the answer (404, 405, a bad query), send that instead;
                        // the body is never read, so the connection ends with it.
                        if let Some(refusal) = self.refuse_early(turn) {
                            self.reject(refusal, turn);
                            return input.len();
                        }
                        let meta = self.meta(None, true, turn);
                        self.answer_continue(meta, turn);
                    }
                    break;
                }
                Ok(Decoded::Request {
                    consumed,
                    info,
                    request,
                }) => {
                    pos += consumed;
                    budget.requests -= 1;
                    self.dispatch(info, request, turn);
                    dispatched = true;
                }
                Ok(Decoded::Owned {
                    consumed,
                    head,
                    body,
                }) => {
                    pos += consumed;
                    budget.requests -= 1;
                    // The body now belongs to the request: no longer counted as arriving.
                    self.count_body(turn);
                    let mut headers = Vec::new();
                    let request = head.request(body, &mut headers);
                    self.dispatch(head.info, request, turn);
                    dispatched = true;
                }
                Err(err) => {
                    self.reject(Error::from(err), turn);
                    return input.len();
                }
            }
        }
        if dispatched && self.input == Input::Reading && turn.drain.is_some() {
            // Draining: every request already received has been dispatched and will be
            // answered; the last of them ends the connection (`Connection: close`).
            self.input = Input::Closing;
        }
        pos
    }

    /// Count the body being received in the server-wide [`BodyMemory`]. Returns true if this
    /// connection holds body bytes and the total is over the limit.
    fn count_body(&mut self, turn: &mut TurnContext<'_>) -> bool {
        let held = self.decoder.body_buffered();
        turn.bodies.update(self.body_held, held);
        self.body_held = held;
        held > 0 && turn.bodies.held() > turn.bodies.limit
    }

    /// What the router can say from the head of the request whose body we are about to ask for.
    fn refuse_early(&self, turn: &TurnContext<'_>) -> Option<Error> {
        let head = self.decoder.pending_head()?;
        let mut headers = Vec::new();
        let request = head.request(Vec::new(), &mut headers);
        let router = turn.router;
        // A route's check is user code on the loop's thread, like a handler.
        catch_unwind(AssertUnwindSafe(|| router.refuse_early(&request))).unwrap_or_else(|_| {
            log::error!("{}: a route's head check panicked", self.peer);
            Some(Error::JobPanicked)
        })
    }

    /// Hand a request to the router and file its reply.
    fn dispatch(&mut self, info: HeadInfo, mut request: Request<'_>, turn: &mut TurnContext<'_>) {
        self.head_started = None;
        if !info.keep_alive {
            self.input = Input::Closing;
        }
        let mut meta = self.meta(Some(&request), info.keep_alive, turn);
        meta.route = turn.router.route_index(info.method, request.path);
        meta.head_only = info.method == Method::Head;
        meta.http10 = info.version == Version::Http10;
        meta.http10_keep_alive = info.keep_alive && info.version == Version::Http10;

        let metrics = LiveMetrics {
            registry: turn.metrics,
            pool: turn.pool,
            outbound: turn.outbound,
        };
        let ctx = Context {
            draining: turn.drain.is_some(),
            metrics: Some(&metrics),
        };
        let started = Instant::now();
        // A handler is user code running on the loop's thread: a panic in it costs this
        // request a 500, never the server.
        let router = turn.router;
        let reply = catch_unwind(AssertUnwindSafe(|| router.dispatch(&mut request, &ctx)))
            .unwrap_or_else(|_| {
                log::error!(
                    "{}: handler for {} {} panicked",
                    self.peer,
                    info.method,
                    request.path
                );
                Reply::from(Error::JobPanicked)
            });
        let took = started.elapsed();
        if took > Duration::from_millis(1) && turn.slowest.as_ref().is_none_or(|(t, _)| took > *t) {
            // Named by its route (a client's raw path could be anything, of any length).
            let route = turn.router.route_name(meta.route);
            *turn.slowest = Some((took, format!("{} {route}", info.method)));
        }

        match reply {
            Reply::Now(response) => self.answer(response, meta, turn),
            reply => {
                let deadline = crate::timer::later(turn.now, turn.config.request_timeout);
                let now = turn.now;
                self.pipeline
                    .begin(reply, meta, deadline, now, &mut scheduler(self.token, turn));
            }
        }
    }

    /// Answer a request the decoder refused, and stop reading: nothing after a framing error can
    /// be trusted (this is what makes request smuggling impossible).
    fn reject(&mut self, err: Error, turn: &mut TurnContext<'_>) {
        log::debug!("{}: rejected request: {err}", self.peer);
        if let Some(reason) = rejection(&err) {
            turn.metrics.reactor.rejected(reason);
        }
        self.input = Input::Closing;
        self.transport.discard_held();
        self.head_started = None;
        self.decoder.abandon();
        self.count_body(turn);
        let meta = self.meta(None, false, turn);
        self.answer(err.into_response(), meta, turn);
    }

    /// A response that is ready now. With nothing ahead of it, it is encoded at once — the hot
    /// path, which never touches the pipeline. Not while draining: then whether a response is
    /// the last (and says `Connection: close`) is only known once the whole batch is decoded,
    /// so every response waits in the pipeline.
    fn answer(&mut self, response: Response, meta: ResponseMeta, turn: &mut TurnContext<'_>) {
        if self.pipeline.is_empty() && turn.drain.is_none() {
            self.pipeline.skip();
            self.encode(&response, &meta, turn);
        } else {
            self.pipeline.push_ready(response, meta);
        }
    }

    /// The interim `100 Continue`, in its place in the response order.
    fn answer_continue(&mut self, meta: ResponseMeta, turn: &mut TurnContext<'_>) {
        if self.pipeline.is_empty() && turn.drain.is_none() {
            self.pipeline.skip();
            turn.out.extend_from_slice(CONTINUE);
        } else {
            self.pipeline.push_continue(meta);
        }
    }

    fn meta(
        &self,
        request: Option<&Request<'_>>,
        keep_alive: bool,
        turn: &TurnContext<'_>,
    ) -> ResponseMeta {
        ResponseMeta {
            head_only: false,
            http10: false,
            http10_keep_alive: false,
            close: !keep_alive,
            started: turn.now,
            route: None,
            queued: Duration::ZERO,
            log: match request {
                _ if turn.access.is_none() => None,
                Some(r) => Some(Box::new((r.method.as_str(), r.path.to_string()))),
                None => Some(Box::new(("-", "-".to_string()))),
            },
        }
    }

    /// Encode everything ready at the front of the pipeline into the output buffer: responses,
    /// and the head, progress and end of a stream. A stream's progress goes in only while the
    /// client is taking what we write; otherwise it waits in the pipeline, where a newer message
    /// replaces it.
    fn collect_ready(&mut self, turn: &mut TurnContext<'_>) {
        loop {
            let pieces_wanted = !self.transport.is_blocked() && turn.out.len() < OUTPUT_HIGH_WATER;
            let Some(answer) = self.pipeline.next_answer(pieces_wanted) else {
                return;
            };
            match answer {
                Answer::Continue(_) => {
                    turn.out.extend_from_slice(CONTINUE);
                    // The client sends its body only now: its body clock starts now.
                    self.last_read = turn.now;
                }
                Answer::Final(response, meta) => self.encode(&response, &meta, turn),
                Answer::StreamHead(head, meta, body) => {
                    self.encode_stream_head(&head, &meta, body, turn)
                }
                Answer::Piece(piece, body) => put_piece(turn.out, &piece, body),
                Answer::StreamEnd {
                    last,
                    body,
                    meta,
                    status,
                    bytes,
                } => {
                    put_piece(turn.out, &last, body);
                    if body == StreamBody::Chunked {
                        turn.out.extend_from_slice(LAST_CHUNK);
                    }
                    self.finished(&meta, status, bytes, turn);
                }
            }
        }
    }

    /// The head of a streamed response. An HTTP/1.0 stream's body ends with the connection, so
    /// the connection takes no more requests and drops those already behind the stream.
    fn encode_stream_head(
        &mut self,
        head: &Response,
        meta: &ResponseMeta,
        body: StreamBody,
        turn: &mut TurnContext<'_>,
    ) {
        let until_close = body == StreamBody::UntilClose;
        if until_close {
            if self.input.is_open() {
                self.input = Input::Closing;
            }
            let mut scheduler = scheduler(self.token, turn);
            self.pipeline
                .abandon_behind_front(&mut |id| scheduler.cancel_call(id));
        }
        // The stream's slot is still in the pipeline: it is the last response if it is alone.
        let last =
            meta.close || until_close || (self.input == Input::Closing && self.pipeline.len() == 1);
        head.encode_stream_head(
            turn.out,
            turn.date,
            connection_header(last, meta),
            !meta.http10,
        );
    }

    fn encode(&self, response: &Response, meta: &ResponseMeta, turn: &mut TurnContext<'_>) {
        if !(200..=599).contains(&response.status) {
            // A handler's 1xx would read as an interim answer (and the real one would answer the
            // next request); anything outside 100–599 is not a status at all.
            log::error!(
                "{}: a handler answered with status {}; sending 500",
                self.peer,
                response.status
            );
            return self.encode(&Error::JobPanicked.into_response(), meta, turn);
        }
        let last = meta.close || (self.input == Input::Closing && self.pipeline.is_empty());
        let connection = connection_header(last, meta);
        let bytes = response.encode(turn.out, turn.date, connection, meta.head_only);
        self.finished(meta, response.status, bytes, turn);
    }

    /// A response is encoded whole: count it in the metrics (by route and status class, with
    /// its time from dispatch), and write its access-log line if the access log is on. Here,
    /// rather than when the last byte leaves, because this is the one place every response
    /// passes exactly once, the error answers included.
    fn finished(&self, meta: &ResponseMeta, status: u16, bytes: usize, turn: &mut TurnContext<'_>) {
        let elapsed = turn.now.saturating_duration_since(meta.started);
        turn.metrics
            .reactor
            .request_done(meta.route, status, elapsed);
        if let (Some(line), Some(access)) = (&meta.log, turn.access.as_deref_mut()) {
            let total = turn.now.saturating_duration_since(meta.started).as_micros();
            let peer = self.peer;
            access.line(|out| {
                let _ = write!(
                    out,
                    "{peer} {} {} {status} {bytes} {total}us queue={}us",
                    line.0,
                    line.1,
                    meta.queued.as_micros()
                );
            });
        }
    }

    /// Every response is out and none will follow: shut down our sending side, then read and
    /// discard until the client closes. Closing with unread input would make the kernel send
    /// RST, which can destroy the response before the client reads it.
    fn start_linger(&mut self, now: Instant) {
        self.transport.shutdown_write();
        self.input = Input::Lingering {
            until: now + LINGER_TIMEOUT,
            discarded: 0,
        };
    }

    fn linger(&mut self, turn: &mut TurnContext<'_>) -> Next {
        let Input::Lingering { discarded, .. } = &mut self.input else {
            return Next::Close;
        };
        match self
            .transport
            .discard_input(turn.read_buf, LINGER_READS_PER_DRIVE)
        {
            Ok((false, bytes)) => {
                *discarded += bytes;
                if *discarded > LINGER_MAX_BYTES {
                    log::debug!("{}: still sending while we close; closing now", self.peer);
                    return Next::Close;
                }
            }
            // The peer closed (or the connection broke): done.
            Ok((true, _)) | Err(_) => return Next::Close,
        }
        if self.transport.is_readable() {
            self.yield_turn(turn)
        } else {
            self.arm(turn);
            Next::Wait
        }
    }

    /// A job finished. File what it returned — a response, or more work — with its request;
    /// the reactor drives the connection afterwards.
    pub fn complete(&mut self, completion: Completion<JobOutput>, turn: &mut TurnContext<'_>) {
        let outcome = match completion.outcome {
            Outcome::Done(output) => Ok(output),
            Outcome::Panicked(message) => {
                log::error!("{}: job panicked: {message}", self.peer);
                Err(Error::JobPanicked)
            }
            Outcome::Cancelled => Err(Error::Unavailable),
        };
        let now = turn.now;
        self.pipeline.complete(
            completion.ticket.seq,
            completion.ticket.part,
            outcome,
            completion.queued,
            now,
            &mut scheduler(self.token, turn),
        );
    }

    /// A call upstream ended. Once every call of its request has, the request's continuation
    /// runs (here, on the reactor); the reactor drives the connection afterwards.
    pub fn call_done(&mut self, done: CallResult, turn: &mut TurnContext<'_>) {
        let now = turn.now;
        self.pipeline.call_done(
            done.owner.seq,
            done.owner.part,
            done.id,
            done.result,
            now,
            &mut scheduler(self.token, turn),
        );
    }

    /// A stream's job sent a progress message: it waits in the pipeline until the client can
    /// take it; the reactor drives the connection afterwards.
    pub fn progress(&mut self, progress: Progress) {
        self.pipeline.progress(progress.ticket.seq, progress.bytes);
    }

    /// A `/sleep` timer fired: its response is ready.
    pub fn on_request_timer(&mut self, seq: u64) {
        self.pipeline.on_timer(seq);
    }

    /// The connection's timer entry for `at` fired: act on every deadline that has passed.
    pub fn on_deadline(&mut self, at: Instant, turn: &mut TurnContext<'_>) -> Next {
        self.alarm.fired(at);
        let deadlines = self.deadlines(turn);
        for kind in deadlines.passed(turn.now) {
            match kind {
                Deadline::Request => {
                    let now = turn.now;
                    let expired = self.pipeline.expire(now, &mut scheduler(self.token, turn));
                    for _ in 0..expired {
                        turn.metrics.reactor.rejected(Rejection::Deadline);
                    }
                }
                Deadline::Idle | Deadline::Send | Deadline::Linger => {
                    log::debug!("{}: {kind:?} deadline passed; closing", self.peer);
                    self.close_reason = match kind {
                        Deadline::Idle if turn.drain.is_some() => CloseReason::Shutdown,
                        Deadline::Idle => CloseReason::KeepAliveTimeout,
                        // A peer that takes nothing for a minute is as good as broken.
                        Deadline::Send => CloseReason::Error,
                        _ => self.close_reason,
                    };
                    return Next::Close;
                }
                Deadline::Header | Deadline::Body => {
                    log::debug!("{}: {kind:?} timeout; answering 408", self.peer);
                    self.close_reason = match kind {
                        Deadline::Header => CloseReason::HeaderTimeout,
                        _ => CloseReason::BodyTimeout,
                    };
                    self.reject(Error::RequestTimeout, turn);
                }
            }
        }
        // A timer that fired early (the deadline moved) finds nothing passed: `drive` re-arms.
        self.drive(turn)
    }

    /// A graceful drain begins (`turn.drain` is set): requests already received are decoded and
    /// will be answered, the last with `Connection: close`, and nothing more is read from a busy
    /// connection. Idle connections stay open until the drain's grace deadline, so a request
    /// already on the wire is answered rather than reset.
    pub fn begin_drain(&mut self, turn: &mut TurnContext<'_>) -> Next {
        if self.input.is_open() && !self.transport.held().is_empty() && self.has_room(turn) {
            self.decode_held(turn, &mut Budget::new());
        }
        if !self.pipeline.is_empty() && self.input == Input::Reading {
            self.input = Input::Closing;
        }
        self.drive(turn)
    }

    /// Set every waiting job's cancel flag and cancel every call upstream: called when the
    /// connection closes.
    pub fn cancel_jobs(&mut self, outbound: &mut Outbound, io: &mut Io<'_>) {
        self.pipeline.cancel_all(&mut |id| outbound.cancel(id, io));
    }

    /// Make sure the timer heap will call us back at our next deadline.
    fn arm(&mut self, turn: &mut TurnContext<'_>) {
        self.pause_client_clocks(turn.now);
        let next = self.deadlines(turn).next();
        self.alarm.arm(next, self.token, turn.timers);
    }

    /// The header and body clocks measure the client, so they stand still while we are the ones
    /// not reading (output blocked, pipeline full): when reading resumes, they move forward by
    /// the length of the pause.
    fn pause_client_clocks(&mut self, now: Instant) {
        match (self.may_read(), self.reading_paused_since) {
            (false, None) => self.reading_paused_since = Some(now),
            (true, Some(since)) => {
                let pause = now.saturating_duration_since(since);
                self.reading_paused_since = None;
                self.last_read += pause;
                if let Some(started) = &mut self.head_started {
                    *started += pause;
                }
            }
            _ => {}
        }
    }

    /// The one place that decides which timeouts apply to this connection right now.
    fn deadlines(&self, turn: &TurnContext<'_>) -> Deadlines {
        let config = turn.config;
        if let Input::Lingering { until, .. } = self.input {
            return Deadlines {
                linger: Some(until),
                ..Deadlines::default()
            };
        }
        let mut deadlines = Deadlines {
            send: self.transport.stalled_since().map(|at| at + SEND_TIMEOUT),
            request: self.pipeline.next_deadline(),
            ..Deadlines::default()
        };
        // The client's own clocks run only while we are willing to read from it.
        if self.may_read() {
            if self.decoder.in_body() {
                // Not while our `100 Continue` waits behind earlier responses: until it is sent,
                // the client is right to hold its body back.
                if !self.pipeline.has_unsent_continue() {
                    deadlines.body = Some(self.last_read + config.body_timeout);
                }
            } else if let Some(started) = self.head_started {
                deadlines.header = Some(started + config.header_timeout);
            } else if self.pipeline.is_empty() {
                let idle = self.idle_since + config.keep_alive_timeout;
                deadlines.idle = Some(turn.drain.map_or(idle, |grace| grace.min(idle)));
            }
        }
        deadlines
    }
}
