//! One connection to an upstream: a non-blocking socket, the request going out, the response
//! coming in.
//!
//! ```text
//!  connect() ─▶ Connecting ── writable, connected ──▶ Busy ── response complete ──▶ Idle
//!                  │                                   ▲  │                          │
//!                  └─ refused, timeout: failed         │  └─ reset, garbage, timeout │
//!                                                      └──── the next call ──────────┘
//! ```
//!
//! A connection carries one call at a time (no pipelining upstream: a slow response would hold
//! up the calls queued behind it, which is why browsers and HTTP clients do not pipeline
//! either). It knows nothing of calls' owners or of the other connections; [`super::Outbound`]
//! decides which call it carries and what becomes of it after each [`UpstreamConn::drive`].

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use crate::http::client::{Progress, ResponseDecoder, ResponseLimits, UpstreamResponse};

use super::call::CallError;
use super::CallId;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnState {
    /// `connect` has started; the kernel says when it is done by making the socket writable.
    Connecting { call: CallId },
    /// Carrying a call: writing its request, reading its response.
    Busy { call: CallId },
    /// Kept alive between calls, in its upstream's idle list.
    Idle,
}

/// What a [`UpstreamConn::drive`] found.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Nothing final yet: wait for the socket or the deadline.
    Pending,
    /// The call's response. `reusable`: the connection may carry another call.
    Response {
        response: UpstreamResponse,
        reusable: bool,
    },
    /// The call failed and the connection is unusable. `before_response`: not a byte of the
    /// response had arrived, so an idempotent request may be sent again on another connection
    /// (a kept-alive connection the upstream closed just as the request went out).
    Failed {
        error: CallError,
        before_response: bool,
    },
    /// An idle connection closed, broke, or sent bytes nobody asked for: it is done.
    IdleClosed,
}

/// One upstream connection, registered with the reactor's poll for its whole life.
#[derive(Debug)]
pub(super) struct UpstreamConn {
    stream: TcpStream,
    /// The upstream's address: which idle list it goes back to.
    pub(super) addr: SocketAddr,
    pub(super) state: ConnState,
    /// The request bytes still to write.
    out: Vec<u8>,
    written: usize,
    /// Bytes of the response read but not yet decoded.
    input: Vec<u8>,
    decoder: ResponseDecoder,
    /// An event said the socket may have bytes (or an EOF, or an error) for us.
    readable: bool,
    /// The last write stopped at `WouldBlock`; the next writable event clears it.
    write_blocked: bool,
    /// An event said the upstream closed its side (or the connection failed). The bytes before
    /// the close may still be read, but the connection will carry no further call.
    peer_closed: bool,
    /// Some byte of the current response has arrived.
    response_started: bool,
    /// When the current phase must be over: connected, answered, or (idle) closed.
    pub(super) deadline: Instant,
    /// The earliest entry this connection has in the timer heap, if any.
    pub(super) armed: Option<Instant>,
    /// Calls carried so far, the current one included.
    pub(super) calls: u64,
}

impl UpstreamConn {
    /// Start connecting to `addr` for `call`, whose request is `request`. Non-blocking: the
    /// connection is established (or refused) later, as an event says.
    pub(super) fn connect(
        addr: SocketAddr,
        call: CallId,
        request: Vec<u8>,
        head: bool,
        limits: ResponseLimits,
        deadline: Instant,
    ) -> io::Result<UpstreamConn> {
        let stream = TcpStream::connect(addr)?;
        // A request written in one piece should leave at once, not wait for Nagle's algorithm.
        stream.set_nodelay(true)?;
        Ok(UpstreamConn {
            stream,
            addr,
            state: ConnState::Connecting { call },
            out: request,
            written: 0,
            input: Vec::new(),
            decoder: ResponseDecoder::new(head, limits),
            readable: false,
            write_blocked: false,
            peer_closed: false,
            response_started: false,
            deadline,
            armed: None,
            calls: 1,
        })
    }

    /// The socket, for (de)registration.
    pub(super) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Take `call` on this idle connection.
    pub(super) fn send(
        &mut self,
        call: CallId,
        request: Vec<u8>,
        head: bool,
        limits: ResponseLimits,
        deadline: Instant,
    ) {
        debug_assert_eq!(self.state, ConnState::Idle);
        self.state = ConnState::Busy { call };
        self.out = request;
        self.written = 0;
        // Between responses a decoder holds nothing: a new one takes this call's limits.
        self.decoder = ResponseDecoder::new(head, limits);
        self.response_started = false;
        self.deadline = deadline;
        self.calls += 1;
    }

    /// The connection went back to its idle list: it must be closed by `deadline`.
    pub(super) fn set_idle(&mut self, deadline: Instant) {
        self.state = ConnState::Idle;
        self.deadline = deadline;
        // An idle connection holds no buffer.
        self.out = Vec::new();
        self.input = Vec::new();
    }

    /// The call it is connecting for or carrying, if any.
    pub(super) fn call(&self) -> Option<CallId> {
        match self.state {
            ConnState::Connecting { call } | ConnState::Busy { call } => Some(call),
            ConnState::Idle => None,
        }
    }

    /// An event for this socket arrived; `closed`: it says the upstream closed its side, or
    /// the connection failed.
    pub(super) fn on_event(&mut self, readable: bool, writable: bool, closed: bool) {
        self.readable |= readable || closed;
        self.peer_closed |= closed;
        if writable {
            self.write_blocked = false;
        }
    }

    /// Make every step the socket allows: finish connecting, write the request, read and decode
    /// the response. `response_deadline` is when the response must be complete, should the
    /// connection become established now.
    pub(super) fn drive(&mut self, buf: &mut [u8], response_deadline: Instant) -> Outcome {
        match self.state {
            ConnState::Connecting { call } => {
                match self.connected() {
                    Ok(true) => {}
                    Ok(false) => return Outcome::Pending,
                    Err(err) => {
                        return Outcome::Failed {
                            error: CallError::from_connect(&err),
                            before_response: false,
                        }
                    }
                }
                self.state = ConnState::Busy { call };
                self.deadline = response_deadline;
                self.exchange(buf)
            }
            ConnState::Busy { .. } => self.exchange(buf),
            ConnState::Idle => self.watch_idle(buf),
        }
    }

    /// Write the request of a call just given to this connection, without reading: the
    /// socket was writable when the connection went idle, so no event will say so again.
    pub(super) fn write_now(&mut self) -> Outcome {
        match self.write_request() {
            Ok(()) => Outcome::Pending,
            Err(err) => self.broken(err),
        }
    }

    /// Has the non-blocking `connect` finished? The kernel reports it by making the socket
    /// writable (or readable and closed, if it failed); the pending error, if any, says how
    /// it ended (mio's documented procedure for `TcpStream::connect`).
    fn connected(&mut self) -> io::Result<bool> {
        if let Some(err) = self.stream.take_error()? {
            return Err(err);
        }
        match self.stream.peer_addr() {
            Ok(_) => Ok(true),
            // Not yet: a spurious wake-up, or an event about something else.
            Err(err) if err.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Is this idle connection still open, as far as can be told without sending? A close
    /// (or stray bytes) that arrived after the last event was handled is only found by
    /// reading: one `read` that says `WouldBlock` means nothing is waiting. Worth its system
    /// call only before a request that must not be sent twice.
    pub(super) fn is_quiet(&mut self) -> bool {
        let mut byte = [0u8; 1];
        loop {
            return match self.stream.read(&mut byte) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    true
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Ok(_) | Err(_) => false,
            };
        }
    }

    /// Write what is left of the request, then read what the socket has of the response.
    fn exchange(&mut self, buf: &mut [u8]) -> Outcome {
        if let Err(err) = self.write_request() {
            return self.broken(err);
        }
        loop {
            if !self.readable {
                return Outcome::Pending;
            }
            match self.stream.read(buf) {
                Ok(0) => {
                    self.readable = false;
                    return match self.decoder.on_eof() {
                        Ok(response) => Outcome::Response {
                            response,
                            reusable: false,
                        },
                        Err(err) => Outcome::Failed {
                            error: err.into(),
                            before_response: !self.response_started,
                        },
                    };
                }
                Ok(n) => {
                    self.response_started = true;
                    self.input.extend_from_slice(&buf[..n]);
                    match self.decoder.decode(&self.input) {
                        Ok(Progress::Incomplete { consumed }) => {
                            self.input.drain(..consumed);
                        }
                        Ok(Progress::Complete { consumed, response }) => {
                            self.input.drain(..consumed);
                            // Bytes after the response, or a response that came before the
                            // whole request was sent: the connection's next response cannot
                            // be trusted to be ours. And an upstream that has closed its side
                            // (the event that brought the response said so) will take no
                            // further request.
                            let reusable = response.keep_alive
                                && self.input.is_empty()
                                && self.written == self.out.len()
                                && !self.peer_closed;
                            return Outcome::Response { response, reusable };
                        }
                        Err(err) => {
                            return Outcome::Failed {
                                error: err.into(),
                                before_response: false,
                            }
                        }
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return self.broken(err),
            }
        }
    }

    /// Write until the request is out or the socket is full.
    fn write_request(&mut self) -> io::Result<()> {
        while self.written < self.out.len() && !self.write_blocked {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.write_blocked = true,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// The socket failed under a call (reset, broken pipe).
    fn broken(&self, err: io::Error) -> Outcome {
        log::debug!("upstream {}: {err}", self.addr);
        Outcome::Failed {
            error: CallError::Reset,
            before_response: !self.response_started,
        }
    }

    /// An idle connection has nothing to say: an EOF, an error or unasked-for bytes end it.
    fn watch_idle(&mut self, buf: &mut [u8]) -> Outcome {
        if self.peer_closed {
            return Outcome::IdleClosed;
        }
        while self.readable {
            match self.stream.read(buf) {
                Ok(0) => return Outcome::IdleClosed,
                Ok(n) => {
                    log::debug!("upstream {}: {n} bytes on an idle connection", self.addr);
                    return Outcome::IdleClosed;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Outcome::IdleClosed,
            }
        }
        Outcome::Pending
    }
}
