//! One HTTP/1.1 connection: read, decode, dispatch, keep responses in order, write.
//!
//! # Theory of operation
//!
//! The reactor calls [`Connection::drive`] whenever something happened that may let this
//! connection make progress: the socket became readable or writable, a job finished, a timer
//! fired. `drive` runs a small loop until no more progress is possible:
//!
//! 1. **decode** every complete request already buffered and **dispatch** each to the router;
//! 2. **collect** the responses that are ready *at the front* of the pipeline (responses go out
//!    strictly in request order, RFC 9112 §9.3.2) and encode them into one output buffer;
//! 3. **flush**: one `write` for everything collected;
//! 4. **read** more, if the socket has more and we are allowed to (see below); back to 1.
//!
//! A request either produces its response during dispatch (a cheap handler: encoded straight
//! into the output buffer, no bookkeeping) or leaves a `Slot` in the pipeline — waiting for a
//! job, a timer or an earlier response — that a later [`Connection::complete`] or
//! [`Connection::on_request_timer`] fills.
//!
//! **When we stop reading** (backpressure, SPEC §3): while the peer is not taking our output
//! (`wbuf` non-empty), while [`MAX_PIPELINE`] requests are waiting, and after a request that ends
//! the connection. The socket stays readable in our books (`readable`), and because the reactor
//! calls `drive` again when the obstacle clears, no edge-triggered event is lost.
//!
//! **Memory.** The reactor lends every connection the same 64 KiB read buffer and the same
//! output buffer for the duration of one `drive`. A connection only allocates its own buffers
//! when bytes are *left over* — half a request waiting for the rest, output the peer has not
//! taken — and frees them as soon as they are empty. An idle keep-alive connection holds no
//! buffer at all.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::config::Config;
use crate::error::Error;
use crate::http::decoder::header_storage;
use crate::http::response::CONTINUE;
use crate::http::{
    ConnectionHeader, DateCache, Decoded, HeadInfo, Method, Request, RequestDecoder, Response,
    Version,
};
use crate::pool::{Completion, Outcome, Pool, SubmitError, Ticket, Work};
use crate::router::{Context, Join, Reply, Router};
use crate::timer::{TimerKind, Timers};

/// Most requests one connection may have waiting for their responses; past it, we stop reading
/// from that connection until the oldest is answered (actix uses 16, evloop 32).
pub const MAX_PIPELINE: usize = 32;
/// Passes (a read, or a batch of buffered requests) one `drive` may make before yielding to
/// other connections; the reactor comes back to a connection that still has data on its next
/// turn (edge-triggered fairness, no lost wake-up).
const MAX_PASSES_PER_DRIVE: usize = 16;
/// Encoded output at which decoding pauses to write: bounds the work one pass does and the
/// memory a client that pipelines thousands of requests without reading can make us hold.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;
/// How long a peer may go without taking any of our pending output before we give up on it
/// (nginx's `send_timeout`, also 60 s, is likewise measured between two successive writes).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long, after answering with `Connection: close`, we keep reading and discarding what the
/// client still sends, so that closing does not reset the connection under the response
/// (nginx's lingering close).
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

/// What the reactor should do with the connection after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing more to do until an event, a completion or a timer.
    Wait,
    /// Still has input to process but yielded for fairness: drive again next turn.
    Again,
    /// Close and forget this connection.
    Close,
}

/// Which connection-level deadline is armed. Request-level deadlines (`/sleep`, 504) are timers
/// of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    /// Idle between requests: close silently (`--keep-alive-timeout`).
    Idle,
    /// A request head has started but not finished (`--header-timeout`): 408.
    Header,
    /// A body is being received and the client paused (`--body-timeout`): 408.
    Body,
    /// The peer is not reading what we wrote ([`SEND_TIMEOUT`]): close.
    Send,
    /// The oldest job ran out of `--request-timeout`: 504.
    Job,
    /// Lingering after `Connection: close` ([`LINGER_TIMEOUT`]): close.
    Linger,
}

/// What the reactor lends a connection for one call: the shared buffers and services.
pub struct Services<'a> {
    /// The time this reactor turn started (one clock read per turn, not per request).
    pub now: Instant,
    /// The server's settings.
    pub config: &'a Config,
    /// The handlers.
    pub router: &'a Router,
    /// The worker pool.
    pub pool: &'a Pool<Reply>,
    /// The reactor's timers.
    pub timers: &'a mut Timers,
    /// The cached `Date` header.
    pub date: &'a DateCache,
    /// `Some(deadline)` once a graceful drain has begun: idle connections close at `deadline`.
    pub drain_idle_deadline: Option<Instant>,
    /// The shared read buffer (its length is its usable size).
    pub read_buf: &'a mut Vec<u8>,
    /// The shared output buffer, empty between calls.
    pub out: &'a mut Vec<u8>,
    /// The slowest handler of this turn, for the slow-turn warning.
    pub slowest: &'a mut Option<(Duration, String)>,
}

/// A request whose response has not been written yet.
#[derive(Debug)]
struct Slot {
    /// Position in the connection's request order.
    seq: u64,
    /// Where its response is.
    state: SlotState,
    /// How to frame the response.
    framing: ResponseFraming,
}

/// Where a slot's response is.
#[derive(Debug)]
enum SlotState {
    /// `100 Continue` for a request whose body is still arriving: ready at once, but queued so it
    /// cannot overtake earlier responses.
    Continue,
    /// Jobs are running for it (one, or the parts of a gather).
    Waiting(Pending),
    /// A timer (`/sleep`) releases this response.
    Deferred(Response),
    /// Ready to encode as soon as everything before it has been.
    Ready(Response),
}

/// The jobs a slot waits for.
#[derive(Debug)]
struct Pending {
    /// One cancel flag per job still out: set them all when nobody wants the answer.
    cancels: Vec<Arc<AtomicBool>>,
    /// `--request-timeout` after dispatch: past it, the slot is answered 504 instead. The
    /// deadline stays with the request through every job it chains to.
    deadline: Instant,
    /// For a [`Reply::Gather`]: the parts' responses as they arrive, and how to join them.
    gather: Option<Gathering>,
}

/// The parts of a gathered request.
struct Gathering {
    parts: Vec<Option<Response>>,
    join: Join,
}

impl std::fmt::Debug for Gathering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gathering")
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

impl Pending {
    fn cancel(&self) {
        for flag in &self.cancels {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// Everything about a request that shapes its response, decided at dispatch.
#[derive(Debug, Clone)]
struct ResponseFraming {
    /// `HEAD`: headers only.
    head_only: bool,
    /// HTTP/1.0 with keep-alive: say `Connection: keep-alive`.
    http10_keep_alive: bool,
    /// The last response on this connection: say `Connection: close`.
    close: bool,
    /// When the request was dispatched (access log).
    started: Instant,
    /// Time its job spent in the queue (access log).
    queued: Duration,
    /// Method and path, kept only when the access log is on (`-` for a request the decoder
    /// refused).
    log: Option<Box<(&'static str, String)>>,
}

/// One client connection. Lives in the reactor's slab from accept to close.
pub struct Connection {
    /// The socket, registered once for READABLE | WRITABLE.
    stream: TcpStream,
    /// Our own token (slot + generation), carried by job tickets and timers.
    token: usize,
    /// The client's address, for logs.
    peer: SocketAddr,
    /// Where we are in the request stream.
    decoder: RequestDecoder,
    /// Received bytes not yet decoded (half a request). Empty and unallocated most of the time.
    rbuf: Vec<u8>,
    /// Encoded bytes the peer has not taken yet, from `wpos`. Non-empty only under backpressure.
    wbuf: Vec<u8>,
    /// How much of `wbuf` is already written.
    wpos: usize,
    /// Requests waiting for their turn to be answered, oldest first.
    pipeline: VecDeque<Slot>,
    /// Sequence number of the next request.
    next_seq: u64,
    /// The socket may have bytes for us: set by events, cleared only by `WouldBlock`.
    readable: bool,
    /// The peer closed its side (read returned 0).
    read_closed: bool,
    /// An event said the peer's FIN or an error is pending: read to the end, short reads or not.
    peer_closing: bool,
    /// Decoding stopped at [`OUTPUT_HIGH_WATER`] with complete requests still in `rbuf`.
    more_buffered: bool,
    /// No more requests will be read: a response ends the connection.
    close_after: bool,
    /// We sent our last response and shut down our side; reading and discarding until EOF.
    lingering: Option<Instant>,
    /// When the first byte of the current, incomplete request head arrived.
    head_started: Option<Instant>,
    /// When bytes last moved in either direction.
    last_activity: Instant,
    /// When a write first left bytes behind (peer not reading).
    write_stalled_since: Option<Instant>,
    /// The deadline in force and what it is for.
    deadline: Option<(Instant, Deadline)>,
    /// The earliest deadline already in the timer heap for us (lazy cancellation, see timer.rs).
    armed: Option<Instant>,
}

impl Connection {
    /// A connection just accepted.
    pub fn new(stream: TcpStream, token: usize, peer: SocketAddr, now: Instant) -> Connection {
        Connection {
            stream,
            token,
            peer,
            decoder: RequestDecoder::new(),
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            pipeline: VecDeque::new(),
            next_seq: 0,
            readable: false,
            read_closed: false,
            peer_closing: false,
            more_buffered: false,
            close_after: false,
            lingering: None,
            head_started: None,
            last_activity: now,
            write_stalled_since: None,
            deadline: None,
            armed: None,
        }
    }

    /// The socket, for (de)registration.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// The socket reported readable. `closed_hint` is mio's `is_read_closed() || is_error()`:
    /// the peer's FIN (or an error) is already queued, so we must read until `Ok(0)` rather than
    /// stop at a short read.
    pub fn set_readable(&mut self, closed_hint: bool) {
        self.readable = true;
        self.peer_closing |= closed_hint;
    }

    /// Make progress: decode, dispatch, collect, flush, read; repeat. See the module docs.
    pub fn drive(&mut self, sv: &mut Services<'_>) -> Next {
        let mut passes = 0;
        loop {
            if self.lingering.is_some() {
                return self.linger(sv);
            }
            if !self.rbuf.is_empty() && self.may_read() {
                self.process_own_buffer(sv);
            }
            self.collect_ready(sv);
            if let Err(err) = self.flush(sv) {
                log::debug!("{}: write failed: {err}", self.peer);
                return Next::Close;
            }
            if self.pipeline.is_empty() && self.wbuf.is_empty() {
                if self.read_closed {
                    return Next::Close;
                }
                if self.close_after {
                    self.start_linger(sv.now);
                    continue;
                }
            }
            let buffered = self.more_buffered && !self.rbuf.is_empty();
            if !(self.readable || buffered) || !self.may_read() {
                break;
            }
            if passes == MAX_PASSES_PER_DRIVE {
                self.arm_deadline(sv);
                return Next::Again;
            }
            passes += 1;
            if buffered {
                continue; // decode the rest of what we hold before reading more
            }
            if let Err(err) = self.read_once(sv) {
                log::debug!("{}: read failed: {err}", self.peer);
                return Next::Close;
            }
            if self.read_closed && self.has_waiting_jobs() {
                // EOF while jobs run: the client has gone (we do not support half-closed
                // clients, like hyper's default). Cancel the work; nobody will read the answer.
                return Next::Close;
            }
        }
        self.arm_deadline(sv);
        Next::Wait
    }

    /// May we read (and decode) more requests now?
    fn may_read(&self) -> bool {
        !self.close_after
            && !self.read_closed
            && self.wbuf.is_empty()
            && self.pipeline.len() < MAX_PIPELINE
    }

    /// May we decode (and dispatch) another request now?
    fn may_decode(&self) -> bool {
        !self.close_after && self.pipeline.len() < MAX_PIPELINE
    }

    fn has_waiting_jobs(&self) -> bool {
        self.pipeline
            .iter()
            .any(|slot| matches!(slot.state, SlotState::Waiting(_) | SlotState::Deferred(_)))
    }

    /// One `read` into the shared buffer. If we hold no partial request, the bytes are decoded
    /// right there (the common case: no copy at all); otherwise they are appended to what we
    /// hold and the whole is decoded.
    fn read_once(&mut self, sv: &mut Services<'_>) -> io::Result<()> {
        let mut buf = std::mem::take(sv.read_buf);
        let outcome = match self.stream.read(&mut buf[..]) {
            Ok(0) => {
                self.read_closed = true;
                self.readable = false;
                Ok(())
            }
            Ok(n) => {
                self.last_activity = sv.now;
                // A short read means the socket's receive queue is empty: on Linux the next
                // read would only say WouldBlock, and new data will raise a new edge. Skipping
                // that read saves one syscall per request (mio#1131: "reading until it returns
                // < buf.len() bytes is good enough"). Not when a FIN is pending: then we must
                // read on to see the Ok(0).
                if n < buf.len() && !self.peer_closing {
                    self.readable = false;
                }
                if self.rbuf.is_empty() {
                    let used = self.process(&buf[..n], sv);
                    self.keep_leftover(&buf[used..n], sv.now);
                } else {
                    self.rbuf.extend_from_slice(&buf[..n]);
                    self.process_own_buffer(sv);
                }
                Ok(())
            }
            // The OS's way of saying there is nothing more to read right now.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                Ok(())
            }
            // A signal interrupted the call; `readable` stays set, so we simply read again.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(err) => Err(err),
        };
        *sv.read_buf = buf;
        outcome
    }

    /// Decode what we hold in `rbuf`, keeping the undecoded rest. The decoder remembers how far
    /// it has scanned, so a head arriving a byte at a time is still scanned only once.
    fn process_own_buffer(&mut self, sv: &mut Services<'_>) {
        let mut buffered = std::mem::take(&mut self.rbuf);
        let used = self.process(&buffered, sv);
        buffered.drain(..used);
        if buffered.is_empty() || self.close_after {
            self.head_started = None;
        } else {
            self.head_started.get_or_insert(sv.now);
            self.rbuf = buffered;
        }
    }

    /// Keep bytes of the shared buffer that are not a whole request yet (copied: the shared
    /// buffer belongs to the next connection in a moment), and start the header clock on them.
    fn keep_leftover(&mut self, leftover: &[u8], now: Instant) {
        if leftover.is_empty() || self.close_after {
            // Nothing left, or nothing after the last request will ever be read.
            self.head_started = None;
            return;
        }
        self.rbuf.extend_from_slice(leftover);
        self.head_started.get_or_insert(now);
    }

    /// Decode and dispatch every complete request in `input`; return the bytes used.
    fn process(&mut self, input: &[u8], sv: &mut Services<'_>) -> usize {
        let mut pos = 0;
        let mut dispatched = false;
        self.more_buffered = false;
        while self.may_decode() {
            if sv.out.len() >= OUTPUT_HIGH_WATER {
                self.more_buffered = pos < input.len();
                break;
            }
            let mut storage = header_storage();
            match self
                .decoder
                .decode(&input[pos..], &mut storage, &sv.config.limits)
            {
                Ok(Decoded::Incomplete {
                    consumed,
                    send_continue,
                }) => {
                    pos += consumed;
                    if send_continue {
                        let framing = self.framing_for(None, true, sv);
                        self.push(SlotState::Continue, framing, sv);
                    }
                    if self.decoder.in_body() {
                        self.head_started = None; // the body clock takes over
                    }
                    break;
                }
                Ok(Decoded::Request {
                    consumed,
                    info,
                    request,
                }) => {
                    pos += consumed;
                    self.head_started = None;
                    self.dispatch(info, request, sv);
                    dispatched = true;
                }
                Ok(Decoded::Owned {
                    consumed,
                    head,
                    body,
                }) => {
                    pos += consumed;
                    self.head_started = None;
                    let mut headers = Vec::new();
                    let request = head.request(body, &mut headers);
                    self.dispatch(head.info, request, sv);
                    dispatched = true;
                }
                Err(err) => {
                    self.reject(Error::from(err), sv);
                    return input.len();
                }
            }
        }
        if dispatched && !self.more_buffered && sv.drain_idle_deadline.is_some() {
            // Draining: every request already received has been dispatched and will be
            // answered; the last of them ends the connection (`Connection: close`).
            self.close_after = true;
        }
        pos
    }

    /// Hand a request to the router and file its reply.
    fn dispatch(&mut self, info: HeadInfo, mut request: Request<'_>, sv: &mut Services<'_>) {
        let keep_alive = info.keep_alive;
        if !keep_alive {
            self.close_after = true;
        }
        let mut framing = self.framing_for(Some(&request), keep_alive, sv);
        framing.head_only = info.method == Method::Head;
        framing.http10_keep_alive = keep_alive && info.version == Version::Http10;

        let ctx = Context {
            draining: sv.drain_idle_deadline.is_some(),
        };
        let started = Instant::now();
        let reply = sv.router.dispatch(&mut request, &ctx);
        let took = started.elapsed();
        if took > Duration::from_millis(1) && sv.slowest.as_ref().is_none_or(|(t, _)| took > *t) {
            *sv.slowest = Some((took, format!("{} {}", info.method, request.path)));
        }

        let seq = self.next_seq;
        let deadline = sv.now + sv.config.request_timeout;
        let state = file(self.token, reply, seq, deadline, sv);
        self.push(state, framing, sv);
    }

    /// Answer a request the decoder refused, and stop reading: nothing after a framing error can
    /// be trusted (this is what makes request smuggling impossible).
    fn reject(&mut self, err: Error, sv: &mut Services<'_>) {
        log::debug!("{}: rejected request: {err}", self.peer);
        self.close_after = true;
        self.rbuf = Vec::new();
        self.head_started = None;
        let framing = self.framing_for(None, false, sv);
        self.push(SlotState::Ready(err.into_response()), framing, sv);
    }

    fn framing_for(
        &self,
        request: Option<&Request<'_>>,
        keep_alive: bool,
        sv: &Services<'_>,
    ) -> ResponseFraming {
        ResponseFraming {
            head_only: false,
            http10_keep_alive: false,
            close: !keep_alive,
            started: sv.now,
            queued: Duration::ZERO,
            log: match request {
                _ if !sv.config.access_log => None,
                Some(r) => Some(Box::new((r.method.as_str(), r.path.to_string()))),
                None => Some(Box::new(("-", "-".to_string()))),
            },
        }
    }

    /// File a response (or the promise of one) in request order. A ready response with nothing
    /// ahead of it is encoded at once — the hot path, which never touches the pipeline queue.
    /// Not while draining: then whether a response is the last (and says `Connection: close`)
    /// is only known once the whole batch is decoded, so every response waits in the queue.
    fn push(&mut self, state: SlotState, framing: ResponseFraming, sv: &mut Services<'_>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.pipeline.is_empty() && sv.drain_idle_deadline.is_none() {
            match &state {
                SlotState::Ready(response) => return self.encode(response, &framing, sv),
                SlotState::Continue => return sv.out.extend_from_slice(CONTINUE),
                SlotState::Waiting(_) | SlotState::Deferred(_) => {}
            }
        }
        self.pipeline.push_back(Slot {
            seq,
            state,
            framing,
        });
    }

    /// Encode every response that is ready at the front of the pipeline into the output buffer.
    fn collect_ready(&mut self, sv: &mut Services<'_>) {
        while let Some(slot) = self.pipeline.front() {
            if !matches!(slot.state, SlotState::Ready(_) | SlotState::Continue) {
                break;
            }
            let Some(slot) = self.pipeline.pop_front() else {
                break;
            };
            match slot.state {
                SlotState::Continue => sv.out.extend_from_slice(CONTINUE),
                SlotState::Ready(response) => self.encode(&response, &slot.framing, sv),
                SlotState::Waiting(_) | SlotState::Deferred(_) => {
                    unreachable!("checked above")
                }
            }
        }
        if self.pipeline.is_empty() && self.pipeline.capacity() > 0 {
            self.pipeline = VecDeque::new();
        }
    }

    fn encode(&self, response: &Response, framing: &ResponseFraming, sv: &mut Services<'_>) {
        let last = framing.close || (self.close_after && self.pipeline.is_empty());
        let connection = if last {
            ConnectionHeader::Close
        } else if framing.http10_keep_alive {
            ConnectionHeader::KeepAlive
        } else {
            ConnectionHeader::Omit
        };
        let bytes = response.encode(sv.out, sv.date, connection, framing.head_only);
        if let Some(line) = &framing.log {
            log::info!(
                target: "evloop::access",
                "{} {} {} {} {} {}us queue={}us",
                self.peer,
                line.0,
                line.1,
                response.status,
                bytes,
                sv.now.saturating_duration_since(framing.started).as_micros(),
                framing.queued.as_micros()
            );
        }
    }

    /// Write the output buffer (after any backlog). What the socket does not take is kept in
    /// `wbuf`, and reading stops until it drains.
    fn flush(&mut self, sv: &mut Services<'_>) -> io::Result<()> {
        if self.wbuf.is_empty() {
            if sv.out.is_empty() {
                return Ok(());
            }
            let written = write_until_blocked(&mut self.stream, sv.out)?;
            if written < sv.out.len() {
                self.wbuf.extend_from_slice(&sv.out[written..]);
                self.write_stalled_since = Some(sv.now);
            } else {
                self.last_activity = sv.now;
            }
            sv.out.clear();
            return Ok(());
        }
        self.wbuf.extend_from_slice(sv.out);
        sv.out.clear();
        let written = write_until_blocked(&mut self.stream, &self.wbuf[self.wpos..])?;
        self.wpos += written;
        if written > 0 {
            // The peer is reading, if slowly: the send timeout counts from its last progress
            // (nginx's send_timeout is likewise between two successive writes).
            self.write_stalled_since = Some(sv.now);
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf = Vec::new();
            self.wpos = 0;
            self.write_stalled_since = None;
            self.last_activity = sv.now;
        }
        Ok(())
    }

    /// Every response is out and none will follow: shut down our sending side, then read and
    /// discard until the client closes (or [`LINGER_TIMEOUT`]). Closing with unread input
    /// would make the kernel send RST, which can destroy the response before the client reads it.
    fn start_linger(&mut self, now: Instant) {
        // ENOTCONN here means the peer is already gone; the linger read will see it.
        let _ = self.stream.shutdown(Shutdown::Write);
        self.rbuf = Vec::new();
        self.lingering = Some(now + LINGER_TIMEOUT);
    }

    fn linger(&mut self, sv: &mut Services<'_>) -> Next {
        loop {
            match self.stream.read(&mut sv.read_buf[..]) {
                Ok(0) => return Next::Close,
                Ok(_) => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Next::Close,
            }
        }
        self.arm_deadline(sv);
        Next::Wait
    }

    /// A job finished. File what it returned — a response, or more work — with its request;
    /// the reactor drives the connection afterwards.
    pub fn complete(&mut self, completion: Completion<Reply>, sv: &mut Services<'_>) {
        let Completion {
            ticket,
            outcome,
            queued,
            ..
        } = completion;
        let Some(slot) = self.pipeline.iter_mut().find(|slot| slot.seq == ticket.seq) else {
            return; // the request was answered already (504): the late result is dropped
        };
        let SlotState::Waiting(pending) = &mut slot.state else {
            return;
        };
        slot.framing.queued = slot.framing.queued.max(queued);
        let outcome = match outcome {
            Outcome::Done(reply) => Ok(reply),
            Outcome::Panicked(message) => {
                log::error!("{}: job panicked: {message}", self.peer);
                Err(Error::JobPanicked)
            }
            Outcome::Cancelled => Err(Error::Unavailable),
        };
        let Some(gathering) = &mut pending.gather else {
            // A single job: what it returned is the request's next state.
            slot.state = match outcome {
                Ok(reply) => file(self.token, reply, slot.seq, pending.deadline, sv),
                Err(err) => SlotState::Ready(err.into_response()),
            };
            return;
        };
        let response = match outcome {
            Ok(Reply::Now(response)) => response,
            Ok(_) => {
                log::error!("{}: a gathered part must return a response", self.peer);
                pending.cancel();
                slot.state = SlotState::Ready(Error::JobPanicked.into_response());
                return;
            }
            Err(err) => {
                // One part failed: the request fails as a whole, and the other parts are
                // cancelled (the join never sees half a result).
                pending.cancel();
                slot.state = SlotState::Ready(err.into_response());
                return;
            }
        };
        if let Some(part) = gathering.parts.get_mut(ticket.part) {
            *part = Some(response);
        }
        if gathering.parts.iter().all(Option::is_some) {
            let SlotState::Waiting(Pending {
                gather: Some(gathering),
                ..
            }) = std::mem::replace(&mut slot.state, SlotState::Continue)
            else {
                unreachable!("matched Waiting with a gather above");
            };
            let parts = gathering.parts.into_iter().flatten().collect();
            slot.state = SlotState::Ready(join(gathering.join, parts, &self.peer));
        }
    }

    /// A `/sleep` timer fired: its response is ready.
    pub fn on_request_timer(&mut self, seq: u64) {
        let Some(slot) = self.pipeline.iter_mut().find(|slot| slot.seq == seq) else {
            return;
        };
        let state = std::mem::replace(&mut slot.state, SlotState::Continue);
        slot.state = match state {
            SlotState::Deferred(response) => SlotState::Ready(response),
            other => other,
        };
    }

    /// Answer 504 for every job that has outlived `--request-timeout`, and cancel it.
    fn expire_jobs(&mut self, now: Instant) {
        for slot in &mut self.pipeline {
            if let SlotState::Waiting(pending) = &slot.state {
                if pending.deadline <= now {
                    pending.cancel();
                    log::warn!(
                        "{}: request {} timed out; job cancelled",
                        self.peer,
                        slot.seq
                    );
                    slot.state = SlotState::Ready(Error::GatewayTimeout.into_response());
                }
            }
        }
    }

    /// The connection deadline timer fired at `at`. Returns what to do.
    pub fn on_deadline(&mut self, at: Instant, sv: &mut Services<'_>) -> Next {
        if self.armed == Some(at) {
            self.armed = None;
        }
        match self.deadline {
            Some((when, kind)) if when <= sv.now => match kind {
                Deadline::Idle | Deadline::Send | Deadline::Linger => {
                    log::debug!("{}: {kind:?} deadline passed; closing", self.peer);
                    Next::Close
                }
                Deadline::Header | Deadline::Body => {
                    log::debug!("{}: {kind:?} timeout; answering 408", self.peer);
                    self.reject(Error::RequestTimeout, sv);
                    self.drive(sv)
                }
                Deadline::Job => {
                    self.expire_jobs(sv.now);
                    self.drive(sv)
                }
            },
            // A stale timer: the deadline moved. `drive` re-arms the right one.
            _ => self.drive(sv),
        }
    }

    /// A graceful drain begins (`sv.drain_idle_deadline` is set): requests already received
    /// are decoded and will be answered, then no more are read on a busy connection; the last
    /// response says `Connection: close`. Idle connections stay open until the drain deadline
    /// so a request already on the wire is answered rather than reset.
    pub fn begin_drain(&mut self, sv: &mut Services<'_>) -> Next {
        if !self.rbuf.is_empty() && self.may_decode() {
            self.process_own_buffer(sv);
        }
        if !self.pipeline.is_empty() {
            self.close_after = true;
        }
        self.drive(sv)
    }

    /// Set every waiting job's cancel flag: called when the connection closes.
    pub fn cancel_jobs(&mut self) {
        for slot in &self.pipeline {
            if let SlotState::Waiting(pending) = &slot.state {
                pending.cancel();
            }
        }
    }

    /// Compute the deadline in force and make sure a timer will fire for it.
    fn arm_deadline(&mut self, sv: &mut Services<'_>) {
        self.deadline = self.wanted_deadline(sv);
        if let Some((at, _)) = self.deadline {
            if self.armed.is_none_or(|armed| at < armed) {
                sv.timers
                    .insert(at, TimerKind::Connection { token: self.token });
                self.armed = Some(at);
            }
        }
    }

    /// The one place that decides which timeout applies to a connection right now.
    fn wanted_deadline(&self, sv: &Services<'_>) -> Option<(Instant, Deadline)> {
        let config = sv.config;
        if let Some(until) = self.lingering {
            return Some((until, Deadline::Linger));
        }
        if let Some(since) = self.write_stalled_since {
            return Some((since + SEND_TIMEOUT, Deadline::Send));
        }
        if !self.pipeline.is_empty() {
            // Waiting for jobs (their request deadline) or `/sleep` timers (their own timer).
            return self
                .pipeline
                .iter()
                .filter_map(|slot| match slot.state {
                    SlotState::Waiting(ref pending) => Some(pending.deadline),
                    _ => None,
                })
                .min()
                .map(|at| (at, Deadline::Job));
        }
        if self.decoder.in_body() {
            return Some((self.last_activity + config.body_timeout, Deadline::Body));
        }
        if let Some(started) = self.head_started {
            return Some((started + config.header_timeout, Deadline::Header));
        }
        let idle = self.last_activity + config.keep_alive_timeout;
        Some(match sv.drain_idle_deadline {
            Some(drain) if drain < idle => (drain, Deadline::Idle),
            _ => (idle, Deadline::Idle),
        })
    }
}

/// Turn a handler's (or a job's) reply into the state its slot waits in, starting any jobs it
/// asks for. `deadline` is the request's `--request-timeout` deadline.
fn file(
    token: usize,
    reply: Reply,
    seq: u64,
    deadline: Instant,
    sv: &mut Services<'_>,
) -> SlotState {
    match reply {
        Reply::Now(response) => SlotState::Ready(response),
        Reply::After(delay, response) => {
            sv.timers
                .insert(sv.now + delay, TimerKind::Request { token, seq });
            SlotState::Deferred(response)
        }
        Reply::Offload(work) => submit(token, vec![work], seq, deadline, None, sv),
        Reply::Gather(parts, join) => {
            let works = parts
                .into_iter()
                .map(|part| -> Work<Reply> { Box::new(move |job| Reply::Now(part(job))) })
                .collect();
            submit(token, works, seq, deadline, Some(join), sv)
        }
    }
}

/// Queue `works` (one job, or every part of a gather) for request `seq`. If any part cannot be
/// queued, the parts already queued are cancelled and the request is answered 503 at once.
fn submit(
    token: usize,
    works: Vec<Work<Reply>>,
    seq: u64,
    deadline: Instant,
    join: Option<Join>,
    sv: &mut Services<'_>,
) -> SlotState {
    let parts = works.len();
    let mut pending = Pending {
        cancels: Vec::with_capacity(parts),
        deadline,
        gather: None,
    };
    for (part, work) in works.into_iter().enumerate() {
        match sv.pool.submit(
            Ticket {
                owner: token,
                seq,
                part,
            },
            work,
        ) {
            Ok(cancel) => pending.cancels.push(cancel),
            Err(err) => {
                pending.cancel();
                let error = match err {
                    SubmitError::Full => Error::QueueFull,
                    SubmitError::Closed => Error::Unavailable,
                };
                return SlotState::Ready(error.into_response());
            }
        }
    }
    if let Some(join_parts) = join {
        if parts == 0 {
            return SlotState::Ready(join_parts(Vec::new()));
        }
        pending.gather = Some(Gathering {
            parts: (0..parts).map(|_| None).collect(),
            join: join_parts,
        });
    }
    // No timer of its own: the connection's deadline covers its oldest request's deadline.
    SlotState::Waiting(pending)
}

/// Run a gather's join on the reactor. It is user code on the loop's thread, so a panic in it
/// is caught here: a 500 for that request, not the end of the server.
fn join(join: Join, parts: Vec<Response>, peer: &SocketAddr) -> Response {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || join(parts))) {
        Ok(response) => response,
        Err(_) => {
            log::error!("{peer}: a gather's join panicked");
            Error::JobPanicked.into_response()
        }
    }
}

/// Write as much of `buf` as the socket takes; stop at `WouldBlock`. Returns bytes written.
fn write_until_blocked(stream: &mut TcpStream, buf: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < buf.len() {
        match stream.write(&buf[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            // The socket buffer is full: the reactor drives us again on the WRITABLE event.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(written)
}
