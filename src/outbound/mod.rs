//! Calls to other HTTP services, made by the reactor on sockets of its own: the I/O column of
//! "CPU-bound work goes to a thread, I/O-bound work is awaited on the loop".
//!
//! A handler that returns [`Reply::call`](crate::router::Reply::call) does not wait for the
//! upstream; nothing does. The reactor connects a non-blocking socket, registers it with the
//! same `poll` as the client sockets, writes the request when the socket is writable, reads
//! and decodes the response as it arrives, and files it with the request that asked for it,
//! whose continuation then runs on the loop. Between those steps the thread serves everyone
//! else. That is all `await client.get(url)` is in asyncio: a socket in the selector and a
//! callback for when it is ready. A thousand calls in flight cost a thousand sockets and a
//! thousand small structs, not a thousand threads.
//!
//! # Theory of operation
//!
//! [`Outbound`] owns two slabs: the **connections** (mio sources, with tokens the reactor tells
//! apart from its client connections by a tag bit, and generations so that a late event can
//! never reach a reused slot) and the **calls** (each with its owner — the client connection,
//! request and part it answers — and its encoded request). A call is in one of three places:
//!
//! ```text
//!  start ─▶ on an idle kept-alive connection to its upstream (reused) ─┐
//!       ├─▶ on a new connection, if fewer than the limit are open ─────┼─▶ response or error:
//!       └─▶ waiting, in arrival order, for a connection to free ───────┘   a CallResult
//! ```
//!
//! Each connection does one call at a time (`conn.rs`). When its response is complete and the
//! upstream allows it, the connection goes back to its upstream's idle list, most recently
//! used last, and the next call to that upstream takes it from the end of that list (the
//! freshest connection is the least likely to have been closed by the upstream meanwhile).
//! An idle connection is closed after [`CallLimits::idle_timeout`].
//!
//! Results are not delivered from inside the socket code: they collect in a list the reactor
//! takes once a turn ([`Outbound::take_results`]) and files with their connections, exactly as
//! it files pool completions. A result whose client has gone finds no connection and is
//! dropped.
//!
//! # The rules a real client needs
//!
//! - **A bound.** At most [`CallLimits::max_connections`] upstream connections are open at
//!   once, idle ones included. A call that finds none free *waits* (aiohttp and httpx do the
//!   same; failing fast would turn a burst into errors). The wait is bounded twice: by
//!   [`CallLimits::max_waiting`] calls (past it a call fails at once, 503), and by the client
//!   request's own `--request-timeout`. Calls to one upstream may close idle connections of
//!   another to get a place.
//! - **Timeouts on the timer heap.** Each connection has one deadline: connected within the
//!   connect timeout, answered within the response timeout (504 otherwise), or, idle, closed.
//! - **Errors that name their cause**, as [`CallError`]: refused or reset 502, garbage 502,
//!   timeouts 504.
//! - **Cancellation.** A client that leaves (or a request that times out) cancels its calls:
//!   the connection carrying each is closed at once, so the upstream sees it and can stop
//!   working, and it is never put back in the idle list with a response half-read.
//! - **Stale keep-alive connections.** An upstream may close an idle connection just as a call
//!   is sent on it. If a reused connection fails before a byte of the response arrives, an
//!   idempotent request is sent once more, on a new connection (hyper and browsers do the
//!   same); anything else fails.
//!
//! Not implemented: TLS, HTTP/2, proxies, redirects, DNS at run time (an [`Upstream`] is
//! resolved once, when it is named), and a bound on how long a call may wait for a connection
//! other than its request's deadline.

mod blocking;
mod call;
mod conn;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use mio::{Interest, Registry, Token};

use crate::http::client::{ResponseLimits, UpstreamResponse};
use crate::http::Method;
use crate::pool::Ticket;
use crate::slab::Slab;
use crate::timer::{TimerKind, Timers};

pub use blocking::{call_blocking, call_blocking_before};
pub use call::{CallError, CallLimits, CallRequest, Upstream};

use conn::{ConnState, Outcome, UpstreamConn};

/// A call's name: a token of the calls' slab, generation-checked like every other token, so
/// cancelling a call that has already ended does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallId(pub usize);

/// How a call ended, for the request that made it.
#[derive(Debug)]
pub struct CallResult {
    /// The client connection, request and part the call answers.
    pub owner: Ticket,
    /// The call: a request may start several rounds of calls with the same parts, and only
    /// the call a part still waits for may answer it.
    pub id: CallId,
    /// The upstream it went to.
    pub upstream: SocketAddr,
    /// The response, or why there is none.
    pub result: Result<UpstreamResponse, CallError>,
}

/// Counts since start, for the log and the closing figures.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CallStats {
    /// Calls started.
    pub calls: u64,
    /// Connections opened.
    pub connects: u64,
    /// Calls sent on a kept-alive connection instead of a new one.
    pub reused: u64,
    /// Calls that ended in an error.
    pub failed: u64,
    /// Calls cancelled because nobody wanted the answer any more.
    pub cancelled: u64,
    /// Requests sent a second time after a kept-alive connection closed under them.
    pub retried: u64,
}

/// What the outbound side borrows from the reactor for one operation.
pub struct Io<'a> {
    /// Where sockets are registered.
    pub registry: &'a Registry,
    /// The reactor's timers.
    pub timers: &'a mut Timers,
    /// The time this reactor turn started.
    pub now: Instant,
}

/// A call that has not ended.
#[derive(Debug)]
struct Call {
    owner: Ticket,
    addr: SocketAddr,
    /// The encoded request, kept until a connection takes it (and, for a retry, after).
    request: Vec<u8>,
    head: bool,
    idempotent: bool,
    /// What its response may hold.
    limits: ResponseLimits,
    /// The connection carrying it; `None` while it waits.
    conn: Option<usize>,
    /// Sent a second time already.
    retried: bool,
}

/// Every upstream connection and call of the reactor. Only the reactor thread touches it.
#[derive(Debug)]
pub struct Outbound {
    limits: CallLimits,
    conns: Slab<UpstreamConn>,
    calls: Slab<Call>,
    /// Idle connections of each upstream, most recently used last.
    idle: Vec<(SocketAddr, Vec<usize>)>,
    /// Calls waiting for a connection, oldest first. Cancelled calls are left in place and
    /// skipped (their ids no longer resolve); `waiting` counts the live ones.
    queue: VecDeque<CallId>,
    waiting: usize,
    results: Vec<CallResult>,
    /// The upstreams of calls cancelled since the reactor last asked (for the metrics).
    cancelled: Vec<SocketAddr>,
    stats: CallStats,
    /// The server is draining: connections are closed, not kept, once their call is done.
    draining: bool,
}

/// The tag bit of upstream connections' tokens (client connections' tokens have none).
const CONN_TAG: u8 = 1;

impl Outbound {
    /// No connection, no call. Timeouts are capped at a day, so that adding one to the clock
    /// can never overflow.
    pub fn new(limits: CallLimits) -> Outbound {
        let day = std::time::Duration::from_secs(86_400);
        let limits = CallLimits {
            connect_timeout: limits.connect_timeout.min(day),
            response_timeout: limits.response_timeout.min(day),
            idle_timeout: limits.idle_timeout.min(day),
            ..limits
        };
        Outbound {
            limits,
            conns: Slab::with_tag(CONN_TAG),
            calls: Slab::new(),
            idle: Vec::new(),
            queue: VecDeque::new(),
            waiting: 0,
            results: Vec::new(),
            cancelled: Vec::new(),
            stats: CallStats::default(),
            draining: false,
        }
    }

    /// The upstream of each call cancelled since the last time this was asked, one entry per
    /// call.
    pub fn take_cancelled(&mut self) -> std::vec::Drain<'_, SocketAddr> {
        self.cancelled.drain(..)
    }

    /// Is `token` one of ours (an upstream connection's)?
    pub fn owns(token: usize) -> bool {
        Slab::<UpstreamConn>::tag_of(token) == Some(CONN_TAG)
    }

    /// Counts since start.
    pub fn stats(&self) -> CallStats {
        self.stats
    }

    /// Upstream connections open now, idle ones included.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Upstream connections kept alive with no call on them.
    pub fn idle_connections(&self) -> usize {
        self.idle.iter().map(|(_, tokens)| tokens.len()).sum()
    }

    /// Calls under way (connecting, sent, or waiting for a connection).
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Start a call for `owner`. It ends with a [`CallResult`] unless it is cancelled first;
    /// `Err` means it did not start at all (and no result will follow).
    pub fn start(
        &mut self,
        owner: Ticket,
        request: &CallRequest,
        io: &mut Io<'_>,
    ) -> Result<CallId, CallError> {
        let mut bytes = Vec::new();
        request.encode(&mut bytes).map_err(CallError::BadRequest)?;
        let id = CallId(self.calls.insert(Call {
            owner,
            addr: request.upstream.addr,
            request: bytes,
            head: request.method == Method::Head,
            limits: request.response_limits(self.limits.response),
            idempotent: request.is_idempotent(),
            conn: None,
            retried: false,
        }));
        if let Err(err) = self.assign(id, false, io) {
            self.calls.remove(id.0);
            return Err(err);
        }
        self.stats.calls += 1;
        Ok(id)
    }

    /// Nobody wants call `id`'s answer any more: close the connection carrying it (the
    /// upstream sees the close), or forget it in the queue (where it is skipped, and swept out
    /// once cancelled calls outnumber the live ones). No result will follow. A call
    /// that has ended already is left alone.
    pub fn cancel(&mut self, id: CallId, io: &mut Io<'_>) {
        let Some(call) = self.calls.remove(id.0) else {
            return;
        };
        self.stats.cancelled += 1;
        self.cancelled.push(call.addr);
        match call.conn {
            Some(token) => {
                log::debug!(
                    "upstream {}: call cancelled; closing its connection",
                    call.addr
                );
                self.close(token, io);
                self.serve_queue(io);
            }
            None => {
                self.waiting -= 1;
                // Cancelled calls stay in the queue until they reach its front; drop them all
                // once they outnumber the live ones, so the queue stays within twice its bound.
                if self.queue.len() > 2 * self.waiting + 64 {
                    let calls = &self.calls;
                    self.queue.retain(|id| calls.get(id.0).is_some());
                }
            }
        }
    }

    /// An event for the upstream connection `token`; `buf` is the reactor's read buffer.
    /// `closed`: the event says the upstream closed its side, or the connection failed.
    pub fn on_event(
        &mut self,
        token: usize,
        readable: bool,
        writable: bool,
        closed: bool,
        buf: &mut [u8],
        io: &mut Io<'_>,
    ) {
        let Some(conn) = self.conns.get_mut(token) else {
            return; // closed earlier in this turn; the event is stale
        };
        conn.on_event(readable, writable, closed);
        let outcome = conn.drive(buf, io.now + self.limits.response_timeout);
        self.settle(token, outcome, io);
    }

    /// The timer entry `at` of connection `token` fired.
    pub fn on_timer(&mut self, token: usize, at: Instant, io: &mut Io<'_>) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.armed == Some(at) {
            conn.armed = None;
        }
        if conn.deadline > io.now {
            // The deadline moved on since this entry was armed.
            self.arm(token, io);
            return;
        }
        let (error, addr) = match conn.state {
            ConnState::Connecting { .. } => (CallError::ConnectTimeout, conn.addr),
            ConnState::Busy { .. } => (CallError::ResponseTimeout, conn.addr),
            ConnState::Idle => {
                self.close(token, io);
                self.serve_queue(io);
                return;
            }
        };
        log::warn!("upstream {addr}: {error}");
        let outcome = Outcome::Failed {
            error,
            before_response: false,
        };
        self.settle(token, outcome, io);
    }

    /// Is the timer entry `(at, Upstream { token })` one a connection still counts on?
    pub fn wants_timer(&self, token: usize, at: Instant) -> bool {
        self.conns
            .get(token)
            .is_some_and(|conn| conn.armed == Some(at))
    }

    /// True when results wait to be taken.
    pub fn has_results(&self) -> bool {
        !self.results.is_empty()
    }

    /// The calls that ended since the last call, in the order they ended.
    pub fn take_results(&mut self) -> Vec<CallResult> {
        std::mem::take(&mut self.results)
    }

    /// The server is draining: close every idle connection, and from now on every connection
    /// once its call is done, since no new client will need them. Calls still under way
    /// finish (they answer requests the drain promised to answer), and new ones may start.
    pub fn begin_drain(&mut self, io: &mut Io<'_>) {
        self.draining = true;
        let idle: Vec<usize> = self
            .idle
            .iter()
            .flat_map(|(_, tokens)| tokens.iter().copied())
            .collect();
        for token in idle {
            self.close(token, io);
        }
    }

    /// Act on what a connection's `drive` found.
    fn settle(&mut self, token: usize, outcome: Outcome, io: &mut Io<'_>) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let call = conn.call();
        let reused = conn.calls > 1;
        match outcome {
            Outcome::Pending => {
                self.arm(token, io);
                return;
            }
            Outcome::Response { response, reusable } => {
                if reusable && !self.draining {
                    conn.set_idle(io.now + self.limits.idle_timeout);
                    let addr = conn.addr;
                    self.idle_list(addr).push(token);
                    self.arm(token, io);
                } else {
                    self.close(token, io);
                }
                if let Some(id) = call {
                    self.finish(id, Ok(response));
                }
            }
            Outcome::Failed {
                error,
                before_response,
            } => {
                self.close(token, io);
                if let Some(id) = call {
                    self.fail(id, error, reused && before_response, io);
                }
            }
            Outcome::IdleClosed => self.close(token, io),
        }
        // A connection went idle or closed: a waiting call can have it, or its place.
        self.serve_queue(io);
    }

    /// Call `id`'s connection failed. If it failed before any of the response arrived on a
    /// kept-alive connection (`stale`), an idempotent request is sent again, once; otherwise
    /// the call ends with `error`.
    fn fail(&mut self, id: CallId, error: CallError, stale: bool, io: &mut Io<'_>) {
        let Some(call) = self.calls.get(id.0) else {
            return;
        };
        if stale && call.idempotent && !call.retried {
            self.retry(id, io);
        } else {
            log::debug!("upstream {}: call failed: {error}", call.addr);
            self.finish(id, Err(error));
        }
    }

    /// Send call `id` again, on a new connection: the kept-alive one it went out on was closed
    /// by the upstream before answering (and has just been closed here, so there is room for
    /// the new one).
    fn retry(&mut self, id: CallId, io: &mut Io<'_>) {
        let Some(call) = self.calls.get_mut(id.0) else {
            return;
        };
        call.retried = true;
        call.conn = None;
        self.stats.retried += 1;
        log::debug!(
            "upstream {}: a kept-alive connection closed before answering; sending again",
            call.addr
        );
        if let Err(err) = self.assign(id, true, io) {
            self.finish(id, Err(err));
        }
    }

    /// Give call `id` a connection: an idle one to its upstream (unless `fresh`), a new one if
    /// the limit allows (closing another upstream's idle connection if that makes room), or a
    /// place in the queue. `Err`: it cannot even wait.
    fn assign(&mut self, id: CallId, fresh: bool, io: &mut Io<'_>) -> Result<(), CallError> {
        let Some(call) = self.calls.get(id.0) else {
            return Ok(());
        };
        let (addr, idempotent) = (call.addr, call.idempotent);
        if !fresh {
            while let Some(token) = self.idle_list(addr).pop() {
                // A request that must not be sent twice goes out only on a connection that
                // is still open: it could not be retried if this one had closed meanwhile.
                let quiet = idempotent
                    || self
                        .conns
                        .get_mut(token)
                        .is_some_and(|conn| conn.is_quiet());
                if quiet {
                    return self.send_on(token, id, io);
                }
                self.close(token, io);
            }
        }
        if self.conns.len() >= self.limits.max_connections {
            if let Some(token) = self.any_idle() {
                self.close(token, io);
            }
        }
        if self.conns.len() < self.limits.max_connections {
            return self.open(id, io);
        }
        if self.waiting >= self.limits.max_waiting {
            return Err(CallError::TooManyWaiting);
        }
        self.queue.push_back(id);
        self.waiting += 1;
        Ok(())
    }

    /// Send call `id` on the idle connection `token`.
    fn send_on(&mut self, token: usize, id: CallId, io: &mut Io<'_>) -> Result<(), CallError> {
        let (Some(call), Some(conn)) = (self.calls.get_mut(id.0), self.conns.get_mut(token)) else {
            return Ok(());
        };
        call.conn = Some(token);
        conn.send(
            id,
            call.request.clone(),
            call.head,
            call.limits,
            io.now + self.limits.response_timeout,
        );
        self.stats.reused += 1;
        match conn.write_now() {
            Outcome::Failed {
                error,
                before_response,
            } => {
                // Closed under us while idle: not a byte can have come back.
                self.close(token, io);
                self.fail(id, error, before_response, io);
            }
            _ => self.arm(token, io),
        }
        Ok(())
    }

    /// Open a new connection for call `id`.
    fn open(&mut self, id: CallId, io: &mut Io<'_>) -> Result<(), CallError> {
        let Some(call) = self.calls.get_mut(id.0) else {
            return Ok(());
        };
        let deadline = io.now + self.limits.connect_timeout;
        let mut conn = UpstreamConn::connect(
            call.addr,
            id,
            call.request.clone(),
            call.head,
            call.limits,
            deadline,
        )
        .map_err(|err| {
            log::warn!("upstream {}: connect failed: {err}", call.addr);
            CallError::from_connect(&err)
        })?;
        let token = self.conns.next_token();
        // Registered once for its whole life, both directions: readiness is tracked in the
        // connection, as for client connections.
        io.registry
            .register(
                conn.stream_mut(),
                Token(token),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|err| {
                log::error!("upstream {}: register failed: {err}", call.addr);
                CallError::Connect(err.to_string())
            })?;
        call.conn = Some(token);
        let inserted = self.conns.insert(conn);
        debug_assert_eq!(inserted, token);
        self.stats.connects += 1;
        self.arm(token, io);
        Ok(())
    }

    /// Give waiting calls the connections that became free, oldest call first.
    fn serve_queue(&mut self, io: &mut Io<'_>) {
        while let Some(&id) = self.queue.front() {
            let Some(call) = self.calls.get(id.0) else {
                self.queue.pop_front(); // cancelled while it waited
                continue;
            };
            let room = self.conns.len() < self.limits.max_connections
                || self.idle_of(call.addr).is_some()
                || self.any_idle().is_some();
            if !room {
                return;
            }
            self.queue.pop_front();
            self.waiting -= 1;
            if let Err(err) = self.assign(id, false, io) {
                self.finish(id, Err(err));
            }
        }
    }

    /// Call `id` ended: hand its result to the reactor.
    fn finish(&mut self, id: CallId, result: Result<UpstreamResponse, CallError>) {
        let Some(call) = self.calls.remove(id.0) else {
            return;
        };
        if result.is_err() {
            self.stats.failed += 1;
        }
        self.results.push(CallResult {
            owner: call.owner,
            id,
            upstream: call.addr,
            result,
        });
    }

    /// Close connection `token`: out of its idle list, out of the poll, socket closed.
    fn close(&mut self, token: usize, io: &mut Io<'_>) {
        let Some(mut conn) = self.conns.remove(token) else {
            return;
        };
        if conn.state == ConnState::Idle {
            let list = self.idle_list(conn.addr);
            list.retain(|&idle| idle != token);
        }
        if let Err(err) = io.registry.deregister(conn.stream_mut()) {
            log::debug!("upstream {}: deregister failed: {err}", conn.addr);
        }
    }

    /// Make sure the timer heap will call connection `token` back at its deadline.
    fn arm(&mut self, token: usize, io: &mut Io<'_>) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.armed.is_none_or(|armed| armed > conn.deadline) {
            io.timers
                .insert(conn.deadline, TimerKind::Upstream { token });
            conn.armed = Some(conn.deadline);
        }
    }

    /// The idle list of the upstream at `addr` (created empty on first use).
    fn idle_list(&mut self, addr: SocketAddr) -> &mut Vec<usize> {
        let at = match self.idle.iter().position(|(a, _)| *a == addr) {
            Some(at) => at,
            None => {
                self.idle.push((addr, Vec::new()));
                self.idle.len() - 1
            }
        };
        &mut self.idle[at].1
    }

    /// The most recently idle connection to `addr`, if any.
    fn idle_of(&self, addr: SocketAddr) -> Option<usize> {
        self.idle
            .iter()
            .find(|(a, _)| *a == addr)
            .and_then(|(_, tokens)| tokens.last().copied())
    }

    /// An idle connection to close for room, if any: the oldest of the first upstream (in the
    /// order upstreams were first called) that has one.
    fn any_idle(&self) -> Option<usize> {
        self.idle
            .iter()
            .filter_map(|(_, tokens)| tokens.first().copied())
            .next()
    }
}
