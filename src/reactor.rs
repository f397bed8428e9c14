//! The reactor: one thread, one `mio::Poll`, every socket.
//!
//! # One turn of the loop
//!
//! ```text
//!  ┌─▶ 1. poll(timeout = time until the next deadline, or 0 if a connection yielded)
//!  │   2. read the clock once; refresh the cached Date header if the second changed
//!  │   3. handle the events, in this order:
//!  │        sockets   mark each readable as the event says and drive its connection — serve
//!  │                  what clients already sent before taking on anything new
//!  │        WAKER     drain finished jobs until the channel is empty; file each response
//!  │        SIGNAL    SIGINT/SIGTERM: begin the graceful drain; SIGHUP, SIGUSR1/2, SIGALRM: log
//!  │        LISTENER  accept until WouldBlock (or until the connection cap)
//!  │   4. fire every expired timer (sleeps, connection deadlines, back-off, shutdown)
//!  │   5. drive every connection touched by 3–4 once (so responses that became ready together
//!  │      go out in one write) and the ones that yielded for fairness
//!  │   6. warn if the turn took over 100 ms (asyncio's slow-callback warning)
//!  └── 7. if draining and no connection is left: return
//! ```
//!
//! Everything the reactor does is non-blocking. The only exception is deliberate: a handler that
//! computes inline (`/cpu?mode=inline`) blocks the loop, and step 6 says so in the log.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use crate::config::Config;
use crate::connection::{Connection, Next, Services};
use crate::http::DateCache;
use crate::pool::Pool;
use crate::router::{Reply, Router};
use crate::signals::{Signal, Signals};
use crate::slab::Slab;
use crate::sys;
use crate::timer::{TimerKind, Timers};

/// The listening socket's token.
const LISTENER: Token = Token(usize::MAX - 1);
/// The pool's waker: a job finished (or a shutdown was requested in-process).
const WAKER: Token = Token(usize::MAX - 2);
/// Signals: the read end of the self-pipe that `signals::Signals` wraps.
const SIGNAL: Token = Token(usize::MAX - 3);

/// `listen(2)` backlog: room for a burst of connects (`wrk -c1000`) before the kernel drops SYNs.
pub const LISTEN_BACKLOG: i32 = 4096;
/// Size of the read buffer every connection borrows.
const READ_BUFFER: usize = 64 * 1024;
/// Events taken from the kernel per poll; more simply wait for the next turn.
const EVENTS_PER_POLL: usize = 1024;
/// How long accepting pauses after `EMFILE`/`ENFILE` (nginx waits 500 ms, hyper 1 s).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long idle keep-alive connections stay open once a drain begins, so a request already on
/// its way is answered (with `Connection: close`) instead of meeting a closed socket.
const DRAIN_IDLE_GRACE: Duration = Duration::from_millis(250);
/// A turn longer than this is logged as slow.
const SLOW_TURN: Duration = Duration::from_millis(100);

/// How a server run ended; [`Exit::code`] is the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Drained: every request answered, every worker idle.
    Graceful,
    /// `--shutdown-timeout` passed with connections still open (they were aborted) or with a
    /// worker still running a job (it was abandoned).
    TimedOut,
}

impl Exit {
    /// 0 for a graceful exit, 1 when the drain timed out.
    pub fn code(self) -> i32 {
        match self {
            Exit::Graceful => 0,
            Exit::TimedOut => 1,
        }
    }
}

/// Asks a running server to drain and stop, from any thread. The signal handler does the same
/// through the self-pipe.
#[derive(Clone)]
pub struct ShutdownHandle {
    requested: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Begin the graceful drain (like SIGTERM).
    pub fn shutdown(&self) {
        self.requested.store(true, Ordering::SeqCst);
        if let Err(err) = self.waker.wake() {
            log::error!("shutdown: waking the reactor failed: {err}");
        }
    }
}

/// Whether the listener is taking new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepting {
    /// Accepting.
    Open,
    /// At `--max-connections`: resume when a connection closes.
    AtCapacity,
    /// Out of file descriptors: resume when the back-off timer fires.
    BackingOff,
}

/// A bound server, ready to run.
pub struct Server {
    poll: Poll,
    listener: TcpListener,
    addr: SocketAddr,
    waker: Arc<Waker>,
    /// Set by [`Server::handle_signals`]; without it, signals keep their default actions.
    signals: Option<Signals>,
    shutdown: Arc<AtomicBool>,
    config: Config,
}

impl Server {
    /// Bind the listening socket (backlog [`LISTEN_BACKLOG`]) and set up the poller. Raises the
    /// open-files limit so `--max-connections` is reachable.
    pub fn bind(config: Config) -> io::Result<Server> {
        let addr = resolve(&config.host, config.port)?;
        match sys::raise_nofile_limit() {
            Ok(limit) if (limit as usize) < config.max_connections + 64 => log::warn!(
                "open-files limit {limit} is below --max-connections {}; accept will pause at the limit",
                config.max_connections
            ),
            Ok(_) => {}
            Err(err) => log::warn!("could not read the open-files limit: {err}"),
        }
        let listener = TcpListener::from_std(sys::bind_listener(addr, LISTEN_BACKLOG)?);
        let addr = listener.local_addr()?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(Server {
            poll,
            listener,
            addr,
            waker,
            signals: None,
            shutdown: Arc::new(AtomicBool::new(false)),
            config,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that starts the graceful drain from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            requested: Arc::clone(&self.shutdown),
            waker: Arc::clone(&self.waker),
        }
    }

    /// Deliver signals to this server's loop (for the binary; a library user may prefer
    /// [`Server::shutdown_handle`]): SIGINT and SIGTERM begin the drain, and a second one exits
    /// the process at once (status 130); SIGHUP, SIGUSR1, SIGUSR2 and SIGALRM are logged and
    /// ignored. The handlers are removed when `run` returns.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let mut signals = Signals::new()?;
        self.poll
            .registry()
            .register(&mut signals, SIGNAL, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Run the loop until a drain completes. Starts the worker pool first and joins it last.
    pub fn run(self, router: Router) -> io::Result<Exit> {
        sys::ignore_sigpipe();
        let mut listener = self.listener;
        self.poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let pool = Pool::start(
            self.config.pool,
            self.config.queue,
            Arc::clone(&self.waker),
            self.config.worker_priority,
        )?;
        let mut reactor = Reactor {
            poll: self.poll,
            events: Events::with_capacity(EVENTS_PER_POLL),
            listener: Some(listener),
            accepting: Accepting::Open,
            connections: Slab::new(),
            pool,
            timers: Timers::new(),
            date: DateCache::new(),
            router,
            config: self.config,
            signals: self.signals,
            shutdown: self.shutdown,
            drain_idle_deadline: None,
            shutdown_deadline: None,
            read_buf: vec![0; READ_BUFFER],
            out: Vec::with_capacity(READ_BUFFER),
            ready: Vec::new(),
            touched: Vec::new(),
            again: Vec::new(),
            slowest: None,
            now: Instant::now(),
        };
        let exit = reactor.run()?;
        match exit {
            // Every connection is gone and every job answered; jobs of clients that left were
            // cancelled. Wait for the workers so the process exits with nothing half done, but
            // not past the shutdown deadline: a job that ignores its cancel flag cannot be
            // stopped, only abandoned.
            Exit::Graceful => {
                let deadline = reactor.shutdown_deadline.unwrap_or(reactor.now);
                if !reactor.pool.join_until(deadline) {
                    return Ok(Exit::TimedOut);
                }
            }
            // Out of time: cancel what is left and do not wait for it. The process is about to
            // exit, which stops the workers wherever they are.
            Exit::TimedOut => {
                for token in reactor.connections.tokens() {
                    reactor.close(token);
                }
            }
        }
        Ok(exit)
    }
}

/// Resolve `host:port` to the first address (`localhost` works, as do IPv6 literals).
fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    (host, port).to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host} has no address"),
        )
    })
}

/// The loop's state. Only the reactor thread touches it.
struct Reactor {
    poll: Poll,
    events: Events,
    /// `None` once a drain has begun: new connections are refused by the kernel.
    listener: Option<TcpListener>,
    accepting: Accepting,
    connections: Slab<Connection>,
    pool: Pool<Reply>,
    timers: Timers,
    date: DateCache,
    router: Router,
    config: Config,
    /// `None` unless [`Server::handle_signals`] was called. Dropped with the reactor, which
    /// removes the handlers.
    signals: Option<Signals>,
    shutdown: Arc<AtomicBool>,
    /// Set when a drain begins: idle connections close at this instant.
    drain_idle_deadline: Option<Instant>,
    /// Set when a drain begins: `--shutdown-timeout` from then, for the connections and, after
    /// them, for the workers.
    shutdown_deadline: Option<Instant>,
    /// The read buffer every connection borrows.
    read_buf: Vec<u8>,
    /// The output buffer every connection borrows.
    out: Vec<u8>,
    /// Connections with a socket event this turn (reused allocation).
    ready: Vec<usize>,
    /// Connections a completion or timer touched this turn (driven once, in step 5).
    touched: Vec<usize>,
    /// Connections that yielded with input left; driven next turn.
    again: Vec<usize>,
    /// The slowest handler this turn.
    slowest: Option<(Duration, String)>,
    /// The time this turn started.
    now: Instant,
}

impl Reactor {
    fn run(&mut self) -> io::Result<Exit> {
        loop {
            // 1. Poll: sleep until the next deadline, or not at all if work is left over.
            let timeout = if self.again.is_empty() {
                self.timers.poll_timeout(Instant::now())
            } else {
                Some(Duration::ZERO)
            };
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                // A signal arrived during epoll_wait; its byte is in the self-pipe.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }

            // 2. One clock read for the whole turn.
            self.now = Instant::now();
            self.date.refresh(SystemTime::now());

            // 3. Events.
            let mut ready = std::mem::take(&mut self.ready);
            let (mut accept, mut wake, mut signal) = (false, false, false);
            for event in self.events.iter() {
                match event.token() {
                    LISTENER => accept = true,
                    WAKER => wake = true,
                    SIGNAL => signal = true,
                    Token(token) => {
                        if let Some(conn) = self.connections.get_mut(token) {
                            // Read-closed and error are hints; the read that follows tells.
                            let closing = event.is_read_closed() || event.is_error();
                            if event.is_readable() || closing {
                                conn.set_readable(closing);
                            }
                            ready.push(token);
                        }
                        // else: a stale event for a connection closed earlier this turn (the
                        // generation in the token no longer matches).
                    }
                }
            }
            // Socket events first: serve what clients sent before taking more clients.
            for token in ready.drain(..) {
                self.drive(token, Connection::drive);
            }
            self.ready = ready;
            if wake {
                self.drain_completions();
            }
            if signal {
                self.read_signals();
            }
            if self.shutdown.load(Ordering::SeqCst) && self.drain_idle_deadline.is_none() {
                self.begin_drain();
            }
            if accept {
                self.accept_all();
            }

            // 4. Timers.
            if let Some(exit) = self.fire_timers() {
                return Ok(exit);
            }

            // 5. Connections touched by completions and timers, and those that yielded.
            let mut touched = std::mem::take(&mut self.touched);
            touched.append(&mut self.again);
            touched.sort_unstable();
            touched.dedup();
            for token in touched.drain(..) {
                self.drive(token, Connection::drive);
            }
            self.touched = touched;

            // 6. Slow turn?
            let turn = self.now.elapsed();
            if turn > SLOW_TURN {
                match self.slowest.take() {
                    Some((took, handler)) => log::warn!(
                        "slow reactor turn: {} ms (handler {handler} ran {} ms on the reactor; \
                         every other connection waited)",
                        turn.as_millis(),
                        took.as_millis()
                    ),
                    None => log::warn!("slow reactor turn: {} ms", turn.as_millis()),
                }
            }
            self.slowest = None;

            // 7. Done draining?
            if self.drain_idle_deadline.is_some() && self.connections.is_empty() {
                log::info!("drained: every connection closed");
                return Ok(Exit::Graceful);
            }
        }
    }

    /// Call `step` on the connection `token` with the reactor's services, then act on what it
    /// returns.
    fn drive(
        &mut self,
        token: usize,
        step: impl FnOnce(&mut Connection, &mut Services<'_>) -> Next,
    ) {
        let Some(conn) = self.connections.get_mut(token) else {
            return; // closed earlier in this turn
        };
        let mut services = Services {
            now: self.now,
            config: &self.config,
            router: &self.router,
            pool: &self.pool,
            timers: &mut self.timers,
            date: &self.date,
            drain_idle_deadline: self.drain_idle_deadline,
            read_buf: &mut self.read_buf,
            out: &mut self.out,
            slowest: &mut self.slowest,
        };
        let next = step(conn, &mut services);
        // Whatever happened, the shared output buffer is empty for the next connection.
        self.out.clear();
        match next {
            Next::Wait => {}
            Next::Again => self.again.push(token),
            Next::Close => self.close(token),
        }
    }

    /// Accept until `WouldBlock` — edge-triggered, so stopping early would lose the wake-up —
    /// or until a limit makes us pause.
    fn accept_all(&mut self) {
        while self.accepting == Accepting::Open {
            let Some(listener) = &self.listener else {
                return;
            };
            if self.connections.len() >= self.config.max_connections {
                log::warn!(
                    "{} connections open (--max-connections): pausing accept",
                    self.connections.len()
                );
                self.accepting = Accepting::AtCapacity;
                return;
            }
            match listener.accept() {
                Ok((stream, peer)) => self.register(stream, peer),
                // The backlog is empty: the next connection will raise a new event.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                // The client gave up between SYN and accept, or a signal interrupted us: next.
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) => {}
                // EMFILE, ENFILE, ENOBUFS, ENOMEM: we are out of resources. Retrying now would
                // fail again (or spin), so pause and let the back-off timer bring us back.
                Err(err) => {
                    log::error!(
                        "accept failed: {err}; pausing accept for {} ms",
                        ACCEPT_BACKOFF.as_millis()
                    );
                    self.accepting = Accepting::BackingOff;
                    self.timers
                        .insert(self.now + ACCEPT_BACKOFF, TimerKind::ResumeAccept);
                }
            }
        }
    }

    /// Take an accepted socket into the slab and the poller.
    fn register(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        // Without TCP_NODELAY, a small response written after a small request can wait 40 ms
        // for Nagle's algorithm and the client's delayed ACK.
        if let Err(err) = stream.set_nodelay(true) {
            log::debug!("{peer}: TCP_NODELAY failed: {err}");
        }
        let token = self.connections.next_token();
        // READABLE | WRITABLE once, for the connection's life: readiness is tracked in the
        // connection, so no epoll_ctl is ever needed per request.
        if let Err(err) = self.poll.registry().register(
            &mut stream,
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::error!("{peer}: register failed: {err}");
            return;
        }
        let conn = Connection::new(stream, token, peer, self.now);
        let inserted = self.connections.insert(conn);
        debug_assert_eq!(inserted, token);
        // The first deadline (keep-alive idle until the request arrives).
        self.drive(token, Connection::drive);
    }

    /// Remove a connection: cancel its jobs, deregister, close. Resume accepting if we were at
    /// the cap.
    fn close(&mut self, token: usize) {
        let Some(mut conn) = self.connections.remove(token) else {
            return;
        };
        conn.cancel_jobs();
        deregister(self.poll.registry(), conn.stream_mut());
        drop(conn); // closes the socket
        if self.accepting == Accepting::AtCapacity {
            self.accepting = Accepting::Open;
            self.accept_all();
        }
    }

    /// Step 3, WAKER: take every finished job (wakes coalesce, so one event may stand for
    /// many) and file each response with its connection.
    fn drain_completions(&mut self) {
        self.pool.rearm_waker();
        while let Some(completion) = self.pool.try_completion() {
            let token = completion.ticket.owner;
            if self.connections.get_mut(token).is_some() {
                self.drive(token, |conn, sv| {
                    conn.complete(completion, sv);
                    Next::Wait
                });
                self.touched.push(token);
            }
            // else: the client left; its job was cancelled or finished for nobody.
        }
    }

    /// Step 3, SIGNAL: take the signals received; SIGINT/SIGTERM begin the drain, the others
    /// are only logged.
    fn read_signals(&mut self) {
        let Some(signals) = &mut self.signals else {
            return;
        };
        for signal in signals.pending() {
            match signal {
                Signal::Interrupt | Signal::Terminate => {
                    log::info!("received {signal}; draining (send it again to exit at once)");
                    self.shutdown.store(true, Ordering::SeqCst);
                }
                Signal::Hangup => {
                    log::info!("received {signal}: ignored; reload arrives with --workers")
                }
                Signal::User1 | Signal::User2 | Signal::Alarm => {
                    log::info!("received {signal}: ignored")
                }
            }
        }
    }

    /// The graceful drain (SPEC §4.6): readiness flips to 503; connections waiting in the
    /// backlog are accepted and the listener closed; requests already received are answered,
    /// the last with `Connection: close`; idle connections get [`DRAIN_IDLE_GRACE`] to deliver a
    /// request already on the wire, then close. The pool finishes its jobs. After
    /// `--shutdown-timeout`, whatever is left is aborted.
    fn begin_drain(&mut self) {
        log::info!(
            "draining {} connections (up to {} s)",
            self.connections.len(),
            self.config.shutdown_timeout.as_secs_f64()
        );
        self.accept_all();
        if let Some(mut listener) = self.listener.take() {
            deregister(self.poll.registry(), &mut listener);
        }
        self.drain_idle_deadline = Some(self.now + DRAIN_IDLE_GRACE);
        let shutdown_deadline = self.now + self.config.shutdown_timeout;
        self.shutdown_deadline = Some(shutdown_deadline);
        self.timers
            .insert(shutdown_deadline, TimerKind::ShutdownDeadline);
        for token in self.connections.tokens() {
            self.drive(token, Connection::begin_drain);
        }
    }

    /// Step 4: pop and act on every expired timer. Returns `Some` if the drain timed out.
    fn fire_timers(&mut self) -> Option<Exit> {
        while let Some((at, kind)) = self.timers.pop_expired(self.now) {
            match kind {
                TimerKind::Connection { token } => {
                    self.drive(token, |conn, sv| conn.on_deadline(at, sv));
                }
                TimerKind::Request { token, seq } => {
                    if let Some(conn) = self.connections.get_mut(token) {
                        conn.on_request_timer(seq);
                        self.touched.push(token);
                    }
                }
                TimerKind::ResumeAccept => {
                    if self.accepting == Accepting::BackingOff {
                        self.accepting = Accepting::Open;
                        self.accept_all();
                    }
                }
                TimerKind::ShutdownDeadline => {
                    log::error!(
                        "shutdown timeout: aborting {} connections and {} queued jobs",
                        self.connections.len(),
                        self.pool.queued()
                    );
                    return Some(Exit::TimedOut);
                }
            }
        }
        None
    }
}

/// Deregister a source; failure only means it was never registered or is already closed.
fn deregister(registry: &Registry, source: &mut impl mio::event::Source) {
    if let Err(err) = registry.deregister(source) {
        log::debug!("deregister failed: {err}");
    }
}
