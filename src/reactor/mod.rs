//! The reactor: one thread, one `mio::Poll`, every socket.
//!
//! # One turn of the loop
//!
//! ```text
//!  ┌─▶ 1. poll, sleeping at most until the next timer deadline (not at all if a connection
//!  │      yielded on the previous turn, messages or call results are left over, or a shared
//!  │      listener may still hold connections)
//!  │   2. read the clock once for the turn; refresh the cached Date header if the second changed
//!  │   3. sockets: mark each connection readable as its event says, and drive it — serve what
//!  │      clients already sent before taking on anything new; an upstream socket's event goes
//!  │      to the outbound side, which connects, writes the request or reads the response
//!  │   4. WAKER: take finished jobs and progress off the channel (up to a bound per turn), file
//!  │      each with its request; file the calls upstream that ended with theirs; take the
//!  │      start-up thread's report (the server turns ready, or a failed hook begins the drain)
//!  │   5. SIGNAL: SIGINT/SIGTERM begin the graceful drain; SIGHUP, SIGUSR1/2, SIGALRM are logged
//!  │   6. LISTENER: accept until WouldBlock, or 4 at most from a socket shared with other
//!  │      processes (at the connection cap, close the longest-idle keep-alive connection to
//!  │      admit each new client)
//!  │   7. timers: fire every expired deadline (sleeps, connection deadlines, upstream
//!  │      connections' deadlines, accept back-off, the shutdown deadline, and once a second in
//!  │      a process of `--workers N`, posting its metrics for the others)
//!  │   8. file the calls that ended in steps 5–7; drive, once each, the connections steps 4
//!  │      to 8 touched (so responses that became ready together go out in one write) and
//!  │      those that yielded on the previous turn
//!  │   9. housekeeping: warn if the turn was slow (asyncio's slow-callback warning), count the
//!  │      turn in the metrics, hand the turn's access-log lines to their writer thread, compact
//!  │      the timer heap if dead entries dominate
//!  └── 10. if draining and no connection is left: return
//! ```
//!
//! Everything the reactor does is non-blocking. The only exception is deliberate: a handler that
//! computes inline (`/cpu?mode=inline`) blocks the loop, and step 9 says so in the log.
//!
//! The reactor knows sockets, tokens, timers and the pool — not HTTP: a [`Connection`] does
//! everything between the bytes and the handlers, and [`Outbound`] everything between a call
//! upstream and its response.
//!
//! # A run from start to end
//!
//! [`Server::run`] starts the pool, then the start-up hooks of the [`App`] on a thread of their
//! own, and turns the loop at once: while the hooks run, the server is `Starting`, and the
//! router serves only the routes that need nothing the hooks build (liveness, metrics);
//! the others answer 503 `starting`. When the start-up thread reports (step 4), the server
//! turns `Running`: it starts accepting if it was told to wait ([`Server::accept_after_ready`]),
//! logs `ready in N ms`, and calls [`Server::on_ready`]. A drain ends the loop (step 10); then
//! `run` joins the pool and runs the shutdown hooks, within `--shutdown-timeout`, and returns
//! the [`Exit`].
//!
//! - `lifecycle.rs`: `Starting`, `Running`, `Draining`, and the transitions between them;
//! - `hooks.rs`: the start-up thread and its report, and the shutdown hooks' thread;
//! - `accept.rs`: the listener and admission (the connection cap, back-off, reuse of idle
//!   connections, waiting for the start-up);
//! - `drain.rs`: the graceful drain and how a run ends.

mod accept;
mod drain;
mod hooks;
mod lifecycle;

pub use drain::{Exit, ShutdownHandle};

use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use crate::access_log::AccessLog;
use crate::config::Config;
use crate::connection::pipeline::JobOutput;
use crate::connection::{self, BodyMemory, Connection, Next, TurnContext};
use crate::http::DateCache;
use crate::lifespan::{App, Hook};
use crate::metrics::shared::Scoreboard;
use crate::metrics::{self, vitals, CallOutcome, CloseReason, JobEnd, Refusal};
use crate::outbound::CallError;
use crate::outbound::{Io, Outbound};
use crate::pool::{Message, Outcome, Pool};
use crate::router::Router;
use crate::signals::{Signal, Signals};
use crate::slab::Slab;
use crate::sys;
use crate::timer::{self, TimerKind, Timers};

use accept::{longest_idle, Accepted, Accepting, Acceptor, ACCEPT_BACKOFF, EVICTION_BATCH};
use drain::DRAIN_IDLE_GRACE;
use hooks::{ShutdownEnd, StartupReport};
use lifecycle::{Lifecycle, StartupHooks};

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
/// A turn longer than this is logged as slow.
const SLOW_TURN: Duration = Duration::from_millis(100);
/// How often the turn statistics are logged (at debug level, target `evloop::turns`).
const TURN_STATS_EVERY: Duration = Duration::from_secs(1);
/// How often a process of `--workers N` posts its metrics for the others: how old another
/// process's numbers in a scrape may be.
const POST_METRICS_EVERY: Duration = Duration::from_secs(1);
/// Most messages (completions and progress) one turn takes off the channel. Each job has at most
/// one message in the channel, but taking a progress message gives its job the credit for the
/// next one: without a bound, workers that emit as fast as the reactor takes could keep it in
/// step 4 for ever. The rest waits for the next turn, which then does not sleep.
const MESSAGES_PER_TURN: usize = 1024;

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
    /// When the server was bound: the metrics' `process_start_time_seconds`.
    started: SystemTime,
    /// Set by [`Server::share_metrics`]: the scoreboard of `--workers N`.
    scoreboard: Option<Scoreboard>,
    /// Set by [`Server::name_worker`]: which process of `--workers N` this is, for the logs.
    worker: Option<usize>,
    /// A second SIGTERM or SIGINT ends the process at once (not for a supervisor's processes).
    second_signal_exits: bool,
    /// Called once, on the reactor thread, when the server turns ready ([`Server::on_ready`]).
    on_ready: Vec<ReadyCallback>,
    /// How the listener starts out: `Open`, or `AfterStartup` ([`Server::accept_after_ready`]).
    accepting: Accepting,
    /// Most connections a turn accepts ([`Server::share_listener`]).
    accept_per_turn: usize,
}

/// What [`Server::on_ready`] registers.
type ReadyCallback = Box<dyn FnOnce() + Send>;

impl Server {
    /// Bind the listening socket (backlog [`LISTEN_BACKLOG`]) and set up the poller. Raises the
    /// open-files limit so `--max-connections` is reachable.
    pub fn bind(config: Config) -> io::Result<Server> {
        let addr = resolve(&config.host, config.port)?;
        let listener = sys::bind_listener(addr, LISTEN_BACKLOG)?;
        Server::with_listener(listener, config)
    }

    /// Serve on a listening socket made elsewhere: a process of `--workers N` gets it from the
    /// supervisor, which bound it once for all of them. `config.host` and `config.port` are
    /// not used. Raises the open-files limit as [`Server::bind`] does.
    pub fn with_listener(listener: std::net::TcpListener, config: Config) -> io::Result<Server> {
        match sys::raise_nofile_limit() {
            Ok(limit)
                if (limit as usize)
                    < config.max_connections + config.calls.max_connections + 64 =>
            {
                log::warn!(
                    "open-files limit {limit} is below --max-connections {} plus \
                     --upstream-max-connections {}; accept will pause at the limit",
                    config.max_connections,
                    config.calls.max_connections
                )
            }
            Ok(_) => {}
            Err(err) => log::warn!("could not read the open-files limit: {err}"),
        }
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener);
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
            started: SystemTime::now(),
            scoreboard: None,
            worker: None,
            second_signal_exits: true,
            on_ready: Vec::new(),
            accepting: Accepting::Open,
            accept_per_turn: usize::MAX,
        })
    }

    /// The listening socket is shared with other processes (`--workers N`): accept at most
    /// `per_turn` connections a turn rather than until the backlog is empty, so that a burst of
    /// new clients is dealt out between the processes instead of all going to the one that
    /// woke first (`docs/OPERATIONS.md` has the measurements).
    pub fn share_listener(&mut self, per_turn: usize) {
        self.accept_per_turn = per_turn.max(1);
    }

    /// This server is process `worker` (from 1) of `--workers N`: its access-log lines say so.
    pub fn name_worker(&mut self, worker: usize) {
        self.worker = Some(worker);
    }

    /// Post this process's metrics on `board` once a second and answer `/metrics` with every
    /// process's (a process of `--workers N`; see [`crate::metrics::shared`]).
    pub fn share_metrics(&mut self, board: Scoreboard) {
        self.scoreboard = Some(board);
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
        self.install_signals(Signals::new()?)
    }

    /// [`Server::handle_signals`] for a process of `--workers N`: a repeated SIGTERM or SIGINT
    /// does not cut the drain short (the supervisor's SIGTERM may follow one sent to the whole
    /// group); the supervisor ends a process that must stop at once with SIGKILL.
    pub fn handle_signals_supervised(&mut self) -> io::Result<()> {
        self.second_signal_exits = false;
        self.install_signals(Signals::delivering_all()?)
    }

    fn install_signals(&mut self, mut signals: Signals) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut signals, SIGNAL, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Call `ready` once, on the reactor thread, at the moment the server turns ready: after
    /// every start-up hook has finished (at once if there are none), before the turn that
    /// follows. Never called if a start-up hook fails, or if a drain begins first. Keep it
    /// short, as anything that runs on the loop: it might tell a supervisor through a pipe, or
    /// write a line. A panic in it is logged, and the server goes on. Each callback registered
    /// is called, in the order registered.
    pub fn on_ready(&mut self, ready: impl FnOnce() + Send + 'static) {
        self.on_ready.push(Box::new(ready));
    }

    /// Take no connection before the server is ready: the listener is registered with the
    /// poller only once the start-up hooks have finished, so clients that connect meanwhile
    /// wait in the kernel's backlog and are then served, instead of being answered 503. For
    /// processes that share one listening socket (a rolling restart): the kernel hands a
    /// connection to a process that is serving, not to one still starting. A drain begun
    /// before the server is ready closes the listener without accepting what waits in it.
    ///
    /// The default is to accept at once, so that a single process can answer a probe (`/healthz`
    /// 200, `/readyz` 503) while it starts.
    pub fn accept_after_ready(&mut self) {
        self.accepting = Accepting::AfterStartup;
    }

    /// Run `app` (an [`App`], or a [`Router`] alone) until a drain completes: start the worker
    /// pool and the start-up hooks, turn the loop until drained, join the pool, run the
    /// shutdown hooks. See "A run from start to end" above.
    pub fn run(self, app: impl Into<App>) -> io::Result<Exit> {
        let began = Instant::now();
        let App { router, lifespan } = app.into();
        let (startup, shutdown) = lifespan.into_hooks();
        sys::ignore_sigpipe();
        let mut listener = self.listener;
        if self.accepting == Accepting::Open {
            self.poll
                .registry()
                .register(&mut listener, LISTENER, Interest::READABLE)?;
        }
        let pool = Pool::start(
            self.config.pool,
            self.config.queue,
            Arc::clone(&self.waker),
            self.config.worker_priority,
        )?;
        // Every series exists from the start: one `route` per path the router knows.
        let mut metrics = metrics::Registry::new(router.paths(), pool.size(), self.started);
        let upstreams: Vec<_> = self.config.upstream.iter().map(|up| up.addr).collect();
        metrics.reactor.name_upstreams(&upstreams);
        let sharing = self.scoreboard.is_some();
        if let Some(board) = self.scoreboard {
            metrics.share(board);
        }
        // With --access-log, unless the log filter silences the target (`RUST_LOG`).
        let access = if self.config.access_log
            && log::log_enabled!(target: "evloop::access", log::Level::Info)
        {
            Some(AccessLog::start(self.worker)?)
        } else {
            None
        };
        let body_memory = self.config.max_body_memory;
        let calls = self.config.calls;
        // The hooks may take long: a thread of their own, which reports through the waker.
        let startup = if startup.is_empty() {
            None
        } else {
            Some(hooks::spawn_startup(startup, Arc::clone(&self.waker))?)
        };
        let mut reactor = Reactor {
            poll: self.poll,
            events: Events::with_capacity(EVENTS_PER_POLL),
            acceptor: Acceptor::new(listener, self.accepting, self.accept_per_turn),
            connections: Slab::new(),
            pool,
            timers: Timers::new(),
            date: DateCache::new(),
            router,
            config: self.config,
            signals: self.signals,
            second_signal_exits: self.second_signal_exits,
            shutdown_requested: self.shutdown,
            lifecycle: Lifecycle::Starting { since: began },
            startup,
            on_ready: self.on_ready,
            scratch: Scratch::new(),
            bodies: BodyMemory::new(body_memory),
            stats: TurnStats::new(),
            now: Instant::now(),
            outbound: Outbound::new(calls),
            metrics,
            vitals_armed: false,
            access,
        };
        reactor.router.set_phase(reactor.lifecycle.phase());
        if sharing {
            reactor.post_metrics();
        }
        if reactor.startup.is_none() {
            reactor.become_ready()?;
        }
        let drained = reactor.run();
        // A stopping process's numbers leave the scoreboard with it; its last access-log
        // lines are written before it goes.
        reactor.metrics.withdraw();
        if let Some(access) = reactor.access.take() {
            let deadline = reactor
                .lifecycle
                .deadline()
                .unwrap_or(reactor.now)
                .max(Instant::now() + Duration::from_millis(100));
            access.finish(deadline);
        }
        let drained = drained?;
        let deadline = reactor.lifecycle.deadline().unwrap_or(reactor.now);
        let started = reactor.lifecycle.hooks();
        let exit = match drained {
            // Every connection is gone and every job answered; jobs of clients that left were
            // cancelled. Wait for the workers so the process exits with nothing half done, but
            // not past the shutdown deadline: a job that ignores its cancel flag cannot be
            // stopped, only abandoned.
            Exit::Graceful => {
                if reactor.pool.join_until(deadline) {
                    Exit::Graceful
                } else {
                    log::error!("shutdown timeout: a worker is still running a job; exiting");
                    Exit::TimedOut
                }
            }
            // Out of time: cancel what is left and do not wait for it. The process is about to
            // exit, which stops the workers wherever they are. (The loop itself ends only
            // drained or out of time; how the start-up went is decided below.)
            Exit::TimedOut | Exit::StartupFailed => {
                for token in reactor.connections.tokens() {
                    reactor.close(token, Some(CloseReason::Shutdown));
                }
                Exit::TimedOut
            }
        };
        shut_down(exit, started, shutdown, deadline)
    }
}

/// The end of a run, once the pool is joined (or abandoned): the shutdown hooks, if the
/// start-up finished and there is time left, and the exit. A failed start-up is the exit,
/// whatever else happened.
fn shut_down(
    exit: Exit,
    started: StartupHooks,
    shutdown: Vec<Hook>,
    deadline: Instant,
) -> io::Result<Exit> {
    match started {
        StartupHooks::Failed => return Ok(Exit::StartupFailed),
        // The start-up thread is still in a hook, and is abandoned with the process: what the
        // shutdown hooks would release may not even exist yet.
        StartupHooks::Running => {
            if !shutdown.is_empty() {
                log::warn!("stopped before the start-up hooks finished: no shutdown hook runs");
            }
            return Ok(exit);
        }
        StartupHooks::Finished => {}
    }
    if exit == Exit::TimedOut {
        if !shutdown.is_empty() {
            log::error!(
                "shutdown timeout: no time left for the {} shutdown hooks",
                shutdown.len()
            );
        }
        return Ok(exit);
    }
    match hooks::run_shutdown(shutdown, deadline)? {
        ShutdownEnd::Done => Ok(exit),
        ShutdownEnd::TimedOut { hook } => {
            log::error!("shutdown timeout: shutdown hook `{hook}` is still running; exiting");
            Ok(Exit::TimedOut)
        }
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

/// Buffers and lists the reactor reuses from turn to turn, so a turn allocates nothing.
struct Scratch {
    /// The read buffer every connection borrows.
    read_buf: Vec<u8>,
    /// The output buffer every connection borrows.
    out: Vec<u8>,
    /// Connections with a socket event this turn.
    ready: Vec<usize>,
    /// Connections a completion or a timer touched this turn (driven once, in step 8).
    touched: Vec<usize>,
    /// Connections that yielded with work left this turn: driven on the next.
    yielded: Vec<usize>,
    /// Step 4 stopped at [`MESSAGES_PER_TURN`] with messages left: take them next turn.
    messages_left: bool,
    /// The slowest handler of this turn, for the slow-turn warning.
    slowest: Option<(Duration, String)>,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            read_buf: vec![0; READ_BUFFER],
            out: Vec::with_capacity(READ_BUFFER),
            ready: Vec::new(),
            touched: Vec::new(),
            yielded: Vec::new(),
            messages_left: false,
            slowest: None,
        }
    }
}

/// How long turns take, logged once a second at debug level (`RUST_LOG=evloop::turns=debug`):
/// the longest turn by the clock, and the most CPU time one turn used. A long turn with little
/// CPU waited for a core (another process, or the workers, had it); a long turn with as much CPU
/// did that much work. Nothing is measured while the log line is off.
#[derive(Debug, Default)]
struct TurnStats {
    /// Whether the statistics are logged at all (checked once, at start).
    enabled: bool,
    /// Turns since the last report.
    turns: u64,
    /// The longest of them, by the clock.
    max: Duration,
    /// The most CPU time one of them used.
    max_cpu: Duration,
    /// CPU time of the reactor thread when the current turn began.
    cpu_at_start: Duration,
    /// When the last report was logged.
    reported: Option<Instant>,
}

impl TurnStats {
    fn new() -> TurnStats {
        TurnStats {
            enabled: log::log_enabled!(target: "evloop::turns", log::Level::Debug),
            ..TurnStats::default()
        }
    }

    /// A turn begins (after `poll` returned).
    fn begin(&mut self) {
        if self.enabled {
            self.cpu_at_start = sys::thread_cpu_time();
        }
    }

    /// The turn that began at `now` took `turn`.
    fn record(&mut self, turn: Duration, now: Instant) {
        if !self.enabled {
            return;
        }
        let cpu = sys::thread_cpu_time().saturating_sub(self.cpu_at_start);
        self.turns += 1;
        self.max = self.max.max(turn);
        self.max_cpu = self.max_cpu.max(cpu);
        let due = self
            .reported
            .is_none_or(|at| now.saturating_duration_since(at) >= TURN_STATS_EVERY);
        if due {
            log::debug!(
                target: "evloop::turns",
                "{} turns, longest {} us, most CPU in one turn {} us",
                self.turns,
                self.max.as_micros(),
                self.max_cpu.as_micros()
            );
            self.turns = 0;
            self.max = Duration::ZERO;
            self.max_cpu = Duration::ZERO;
            self.reported = Some(now);
        }
    }
}

/// The loop's state. Only the reactor thread touches it.
struct Reactor {
    poll: Poll,
    events: Events,
    /// The listener and whether we are taking connections.
    acceptor: Acceptor,
    connections: Slab<Connection>,
    pool: Pool<JobOutput>,
    timers: Timers,
    date: DateCache,
    router: Router,
    config: Config,
    /// `None` unless [`Server::handle_signals`] was called. Dropped with the reactor, which
    /// removes the handlers.
    signals: Option<Signals>,
    /// Whether a second SIGTERM or SIGINT exits at once (what the drain's log line promises).
    second_signal_exits: bool,
    /// Set by a [`ShutdownHandle`] (or a signal): begin the drain.
    shutdown_requested: Arc<AtomicBool>,
    /// Starting, running or draining. Changed only by [`Reactor::enter`].
    lifecycle: Lifecycle,
    /// Where the start-up thread's report arrives, until it has: `None` from then on, and for
    /// an app without start-up hooks.
    startup: Option<Receiver<StartupReport>>,
    /// Called when the server turns ready, then empty.
    on_ready: Vec<ReadyCallback>,
    scratch: Scratch,
    /// Request bodies held while they arrive, over all connections.
    bodies: BodyMemory,
    stats: TurnStats,
    /// The time this turn started.
    now: Instant,
    /// Connections to upstreams and the calls they carry.
    outbound: Outbound,
    /// With `--access-log`: the lines of this turn, handed to a writer thread at its end.
    access: Option<AccessLog>,
    /// What the loop counts, rendered by `GET /metrics`. Owned here and counted through
    /// `&mut`: one thread, so no lock and no atomic on the hot path.
    metrics: metrics::Registry,
    /// True while a `PublishVitals` timer is in the heap: from the turn the first viewer of
    /// `GET /events/loop` arrives (or the metrics post that finds another process asking for
    /// frames) to the frame that finds nobody watching.
    vitals_armed: bool,
}

impl Reactor {
    fn run(&mut self) -> io::Result<Exit> {
        loop {
            // 1. Poll: sleep until the next deadline, or not at all if work is left over.
            let yielded = std::mem::take(&mut self.scratch.yielded);
            let timeout = if yielded.is_empty()
                && !self.scratch.messages_left
                && !self.outbound.has_results()
                && !self.acceptor.more_waiting
            {
                self.timers.poll_timeout(Instant::now())
            } else {
                Some(Duration::ZERO)
            };
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                // A signal arrived during epoll_wait; its byte is in the self-pipe.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {
                    self.scratch.yielded = yielded;
                    continue;
                }
                Err(err) => return Err(err),
            }

            // 2. One clock read for the whole turn.
            self.now = Instant::now();
            self.stats.begin();
            self.date.refresh(SystemTime::now());
            self.acceptor.eviction_candidates.clear();

            // 3. Socket events.
            let mut ready = std::mem::take(&mut self.scratch.ready);
            let (mut accept, mut wake, mut signal) = (false, false, false);
            for event in self.events.iter() {
                match event.token() {
                    LISTENER => accept = true,
                    WAKER => wake = true,
                    SIGNAL => signal = true,
                    Token(token) if Outbound::owns(token) => {
                        let closing = event.is_read_closed() || event.is_error();
                        let mut io = Io {
                            registry: self.poll.registry(),
                            timers: &mut self.timers,
                            now: self.now,
                        };
                        self.outbound.on_event(
                            token,
                            event.is_readable(),
                            event.is_writable() || closing,
                            closing,
                            &mut self.scratch.read_buf,
                            &mut io,
                        );
                    }
                    Token(token) => {
                        if let Some(conn) = self.connections.get_mut(token) {
                            // Read-closed and error are hints; the read that follows tells.
                            let closing = event.is_read_closed() || event.is_error();
                            if event.is_readable() || closing {
                                conn.set_readable(closing);
                            }
                            ready.push(token);
                        }
                        // else: no live connection has this token. Nothing is closed while the
                        // batch is sorted, so this is only a safety net.
                    }
                }
            }
            for token in ready.drain(..) {
                self.drive(token, Connection::drive);
            }
            self.scratch.ready = ready;
            if wake {
                self.metrics.reactor.woken();
            }

            // 4. Completions and progress; calls upstream that ended; the start-up's report.
            if wake || std::mem::take(&mut self.scratch.messages_left) {
                self.take_completions();
            }
            self.take_call_results();
            if wake {
                self.take_startup_report()?;
            }
            // 5. Signals and in-process shutdown requests.
            if signal {
                self.read_signals();
            }
            if self.shutdown_requested.load(Ordering::Acquire) && !self.lifecycle.is_draining() {
                self.begin_drain();
            }
            // 6. New connections.
            let more = std::mem::take(&mut self.acceptor.more_waiting);
            if accept || more || std::mem::take(&mut self.acceptor.resumed) {
                self.accept_all();
            }

            // 7. Timers.
            if let Some(exit) = self.fire_timers() {
                return Ok(exit);
            }

            // 8. Connections touched by completions, calls and timers, and those that yielded
            //    last turn — each once.
            self.take_call_results();
            let mut touched = std::mem::take(&mut self.scratch.touched);
            touched.extend_from_slice(&yielded);
            touched.sort_unstable();
            touched.dedup();
            for token in touched.drain(..) {
                self.drive(token, Connection::drive);
            }
            self.scratch.touched = touched;
            // A connection closed in steps 7–8 may have made room for one waiting in the backlog.
            if std::mem::take(&mut self.acceptor.resumed) {
                self.accept_all();
            }

            // 9. Housekeeping.
            self.after_turn();

            // 10. Done draining?
            if self.lifecycle.is_draining() && self.connections.is_empty() {
                let calls = self.outbound.stats();
                log::info!(
                    "drained: every connection closed ({} jobs ended cancelled since start; \
                     {} calls upstream on {} connections, {} of them reused, {} failed, \
                     {} cancelled)",
                    self.pool.cancelled(),
                    calls.calls,
                    calls.connects,
                    calls.reused,
                    calls.failed,
                    calls.cancelled
                );
                return Ok(Exit::Graceful);
            }
        }
    }

    /// Call `step` on the connection `token` with what the reactor lends it, then act on what
    /// it returns.
    fn drive(
        &mut self,
        token: usize,
        step: impl FnOnce(&mut Connection, &mut TurnContext<'_>) -> Next,
    ) {
        let Some(conn) = self.connections.get_mut(token) else {
            return; // closed earlier in this turn
        };
        let mut turn = TurnContext {
            now: self.now,
            config: &self.config,
            router: &self.router,
            pool: &self.pool,
            timers: &mut self.timers,
            date: &self.date,
            drain: self.lifecycle.grace(),
            read_buf: &mut self.scratch.read_buf,
            out: &mut self.scratch.out,
            slowest: &mut self.scratch.slowest,
            bodies: &mut self.bodies,
            outbound: &mut self.outbound,
            registry: self.poll.registry(),
            metrics: &mut self.metrics,
            access: self.access.as_mut(),
        };
        let next = step(conn, &mut turn);
        if let Some((from, to)) = conn.state_change() {
            self.metrics.reactor.connection_moved(from, to);
        }
        // A connection flushes what it encoded before it returns; only a connection that is
        // closing may leave output behind (nobody will read it).
        debug_assert!(
            next == Next::Close || self.scratch.out.is_empty(),
            "a connection returned {next:?} with {} bytes unflushed",
            self.scratch.out.len()
        );
        self.scratch.out.clear();
        if self.scratch.out.capacity() > 4 * READ_BUFFER {
            // A batch of large responses grew it: give the memory back.
            self.scratch.out = Vec::with_capacity(READ_BUFFER);
        }
        match next {
            Next::Wait => {}
            Next::Again => self.scratch.yielded.push(token),
            Next::Close => self.close(token, None),
        }
    }

    /// Step 6: accept until `WouldBlock` — edge-triggered, so stopping early would lose the
    /// wake-up — or until a limit makes us pause.
    fn accept_all(&mut self) {
        let mut accepted = 0;
        while self.acceptor.is_open() {
            if accepted == self.acceptor.per_turn {
                // A shared socket: leave the rest to the other processes this turn, and look
                // again next turn (without sleeping), since no new edge may come.
                self.acceptor.more_waiting = true;
                return;
            }
            // At the cap, a new client is admitted only if an idle connection can make room
            // for it; which one is decided before accepting, and it is closed only once a
            // client has actually been accepted.
            let full = self.connections.len() >= self.config.max_connections;
            if full && self.idle_candidate().is_none() {
                if let Some(held_back) = self.acceptor.capacity_log.allow(self.now) {
                    log::warn!(
                        "{} connections open (--max-connections) and none idle: pausing accept \
                         ({held_back} more such pauses not logged)",
                        self.connections.len()
                    );
                }
                self.acceptor.state = Accepting::AtCapacity;
                self.metrics.reactor.refused(Refusal::MaxConnections);
                // Resumes when a connection closes, or at this timer: by then one may be idle.
                self.timers
                    .insert(self.now + ACCEPT_BACKOFF, TimerKind::ResumeAccept);
                return;
            }
            match self.acceptor.accept() {
                Accepted::Connection(stream, peer) => {
                    if full {
                        self.evict_idle();
                    }
                    self.register(stream, peer);
                    accepted += 1;
                }
                Accepted::Empty | Accepted::Closed => return,
                Accepted::Skipped => {}
                Accepted::OutOfResources(err) => {
                    if let Some(held_back) = self.acceptor.resource_log.allow(self.now) {
                        log::error!(
                            "accept failed: {err}; pausing accept for {} ms \
                             ({held_back} more such failures not logged)",
                            ACCEPT_BACKOFF.as_millis()
                        );
                    }
                    self.acceptor.state = Accepting::BackingOff;
                    self.metrics.reactor.refused(Refusal::FileLimit);
                    self.timers
                        .insert(self.now + ACCEPT_BACKOFF, TimerKind::ResumeAccept);
                }
            }
        }
    }

    /// The longest-idle keep-alive connection, if any: the one to close when a new client needs
    /// its place. One scan of the connections finds a batch of them for the turn.
    fn idle_candidate(&mut self) -> Option<usize> {
        if self.acceptor.eviction_candidates.is_empty() {
            self.acceptor.eviction_candidates = longest_idle(
                self.connections
                    .iter()
                    .map(|(token, conn)| (token, conn.idle_since())),
                EVICTION_BATCH,
            );
        }
        // Candidates found earlier this turn may have become busy (or closed) since.
        while let Some(&token) = self.acceptor.eviction_candidates.last() {
            let still_idle = self
                .connections
                .get(token)
                .is_some_and(|conn| conn.idle_since().is_some());
            if still_idle {
                return Some(token);
            }
            self.acceptor.eviction_candidates.pop();
        }
        None
    }

    /// Close the longest-idle keep-alive connection to make room for a client just accepted.
    fn evict_idle(&mut self) {
        let Some(token) = self.idle_candidate() else {
            return;
        };
        self.acceptor.eviction_candidates.pop();
        self.close(token, Some(CloseReason::Evicted));
        self.acceptor.evicted += 1;
        if let Some(held_back) = self.acceptor.capacity_log.allow(self.now) {
            log::warn!(
                "{} connections open (--max-connections): closing idle keep-alive connections \
                 to admit new clients ({} so far, {held_back} lines not logged)",
                self.connections.len() + 1,
                self.acceptor.evicted
            );
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
        self.metrics.reactor.accepted();
        let inserted = self.connections.insert(conn);
        debug_assert_eq!(inserted, token);
        // The first deadline (keep-alive idle until the request arrives).
        self.drive(token, Connection::drive);
    }

    /// Remove a connection: cancel its jobs, give back its body memory, deregister, close. If
    /// accepting was paused at the cap, it resumes: in step 6 for connections closed in steps
    /// 3–5, right after step 8 for those closed in steps 7–8. `reason` is the reactor's own
    /// (eviction, shutdown); `None` takes the connection's.
    fn close(&mut self, token: usize, reason: Option<CloseReason>) {
        let Some(mut conn) = self.connections.remove(token) else {
            return;
        };
        let (state, own_reason) = conn.closing();
        self.metrics
            .reactor
            .closed(state, reason.unwrap_or(own_reason));
        let mut io = Io {
            registry: self.poll.registry(),
            timers: &mut self.timers,
            now: self.now,
        };
        conn.cancel_jobs(&mut self.outbound, &mut io);
        self.bodies.release(conn.body_held());
        deregister(self.poll.registry(), conn.stream_mut());
        drop(conn); // closes the socket
        self.acceptor.on_close();
    }

    /// Step 4: take every finished job and progress message (wakes coalesce, so one event may
    /// stand for many) and file each with its connection; at most [`MESSAGES_PER_TURN`].
    fn take_completions(&mut self) {
        self.pool.rearm_waker();
        for _ in 0..MESSAGES_PER_TURN {
            let Some(message) = self.pool.try_message() else {
                return;
            };
            let token = match &message {
                Message::Progress(progress) => progress.ticket.owner,
                Message::Done(completion) => completion.ticket.owner,
            };
            let client_left = self.connections.get(token).is_none();
            if let Message::Done(completion) = &message {
                let (end, run) = match completion.outcome {
                    Outcome::Cancelled => (JobEnd::Cancelled, None),
                    Outcome::Panicked(_) => (JobEnd::Panicked, Some(completion.run)),
                    // Finished for nobody: the work was wasted.
                    Outcome::Done(_) if client_left => (JobEnd::Cancelled, Some(completion.run)),
                    Outcome::Done(_) => (JobEnd::Done, Some(completion.run)),
                };
                self.metrics.pool.job_done(end, completion.queued, run);
            }
            if client_left {
                continue; // the client left; its job was cancelled or finished for nobody
            }
            self.drive(token, |conn, turn| {
                match message {
                    Message::Progress(progress) => conn.progress(progress),
                    Message::Done(completion) => conn.complete(completion, turn),
                }
                Next::Wait
            });
            self.scratch.touched.push(token);
        }
        // Stopped at the bound: what is left was announced by a wake-up this turn consumed.
        self.scratch.messages_left = true;
    }

    /// Steps 4 and 8: file every call upstream that ended with its connection, whose
    /// continuation then runs. A call whose client has gone finds no connection.
    fn take_call_results(&mut self) {
        for upstream in self.outbound.take_cancelled() {
            self.metrics
                .reactor
                .call_done(upstream, CallOutcome::Cancelled);
        }
        if !self.outbound.has_results() {
            return;
        }
        for done in self.outbound.take_results() {
            self.metrics
                .reactor
                .call_done(done.upstream, call_outcome(&done.result));
            let token = done.owner.owner;
            if self.connections.get(token).is_none() {
                continue;
            }
            self.drive(token, |conn, turn| {
                conn.call_done(done, turn);
                Next::Wait
            });
            self.scratch.touched.push(token);
        }
    }

    /// Step 5: take the signals received; SIGINT/SIGTERM begin the drain, the others are only
    /// logged.
    fn read_signals(&mut self) {
        let Some(signals) = &mut self.signals else {
            return;
        };
        for signal in signals.pending() {
            match signal {
                Signal::Interrupt | Signal::Terminate => {
                    if self.second_signal_exits {
                        log::info!("received {signal}; draining (send it again to exit at once)");
                    } else {
                        log::info!("received {signal}; draining");
                    }
                    self.shutdown_requested.store(true, Ordering::Release);
                }
                Signal::Hangup if !self.second_signal_exits => log::info!(
                    "received {signal}: ignored (a reload is the supervisor's: send SIGHUP to \
                     pid {})",
                    std::os::unix::process::parent_id()
                ),
                Signal::Hangup => log::info!(
                    "received {signal}: ignored (a reload replaces processes: it needs \
                     --workers 2 or more)"
                ),
                Signal::User1 | Signal::User2 | Signal::Alarm => {
                    log::info!("received {signal}: ignored")
                }
            }
        }
    }

    /// Every change of the lifecycle: logged, and told to the router (whose routes that need
    /// the start-up hooks wait for them).
    fn enter(&mut self, next: Lifecycle) {
        log::trace!("lifecycle: {:?} -> {next:?}", self.lifecycle);
        self.lifecycle = next;
        self.router.set_phase(next.phase());
    }

    /// Step 4: the start-up thread's report, if it has come. Every hook finished: the server
    /// turns ready (or, if a drain began meanwhile, the drain learns it). A hook failed: log it
    /// and drain; the run will end with [`Exit::StartupFailed`].
    fn take_startup_report(&mut self) -> io::Result<()> {
        let Some(report) = self.startup.as_ref().and_then(hooks::take_report) else {
            return Ok(());
        };
        self.startup = None;
        match (report, self.lifecycle) {
            (StartupReport::Finished, Lifecycle::Starting { .. }) => self.become_ready()?,
            (StartupReport::Finished, lifecycle) => {
                log::info!("start-up hooks finished during the drain: not turning ready");
                self.enter(lifecycle.with_hooks(StartupHooks::Finished));
            }
            (StartupReport::Failed { hook, error }, lifecycle) => {
                log::error!(
                    "start-up hook `{hook}` failed: {error}; stopping (exit status {})",
                    Exit::StartupFailed.code()
                );
                if !lifecycle.is_draining() {
                    self.begin_drain();
                }
                self.enter(self.lifecycle.with_hooks(StartupHooks::Failed));
            }
        }
        Ok(())
    }

    /// The start-up hooks have finished: serve every route, start accepting if that waited,
    /// say how long the start-up took, and call the `on_ready` callbacks.
    fn become_ready(&mut self) -> io::Result<()> {
        let Lifecycle::Starting { since } = self.lifecycle else {
            return Ok(());
        };
        self.enter(Lifecycle::Running);
        if self.acceptor.state == Accepting::AfterStartup {
            if let Some(listener) = self.acceptor.listener_mut() {
                // A socket of our own from the supervisor (`--reuse-port`) was handed over bound
                // but not listening, so that the kernel dealt it no connection while we were
                // starting; a shared one listens already, and listen(2) again only sets its
                // backlog.
                socket2::SockRef::from(&*listener).listen(LISTEN_BACKLOG)?;
                self.poll
                    .registry()
                    .register(listener, LISTENER, Interest::READABLE)?;
            }
            self.acceptor.state = Accepting::Open;
            // Whoever waited in the backlog is taken now, without waiting for an event.
            self.accept_all();
        }
        log::info!("ready in {} ms", since.elapsed().as_millis());
        for ready in std::mem::take(&mut self.on_ready) {
            // Code of the library's user on the loop's thread, like a handler: a panic in it
            // costs a log line, never the server.
            if catch_unwind(AssertUnwindSafe(ready)).is_err() {
                log::error!("an on_ready callback panicked");
            }
        }
        Ok(())
    }

    /// Begin the graceful drain (see `drain.rs`).
    fn begin_drain(&mut self) {
        log::info!(
            "draining {} connections (up to {} s)",
            self.connections.len(),
            self.config.shutdown_timeout.as_secs_f64()
        );
        // Connections already in the backlog were promised an answer: take them first, all of
        // them, even from a socket shared with other processes (not those of a listener still
        // waiting for the start-up: it was never registered, and nobody promised them anything).
        self.acceptor.per_turn = usize::MAX;
        self.accept_all();
        let registered = self.acceptor.state != Accepting::AfterStartup;
        if let Some(mut listener) = self.acceptor.close() {
            if registered {
                deregister(self.poll.registry(), &mut listener);
            }
        }
        // Viewers of `GET /events/loop` end their streams: a drain waits for no dashboard.
        self.metrics.vitals().close();
        let deadline = self.now + self.config.shutdown_timeout;
        self.enter(self.lifecycle.drain(self.now + DRAIN_IDLE_GRACE, deadline));
        self.timers.insert(deadline, TimerKind::ShutdownDeadline);
        let mut io = Io {
            registry: self.poll.registry(),
            timers: &mut self.timers,
            now: self.now,
        };
        self.outbound.begin_drain(&mut io);
        for token in self.connections.tokens() {
            self.drive(token, Connection::begin_drain);
        }
    }

    /// Publish a frame for the viewers of `GET /events/loop`, and come back in
    /// [`vitals::VITALS_EVERY`] while any are left here, or (with `--workers N`) another
    /// process asks for frames; else a new viewer's turn, or the next metrics post, re-arms it.
    fn publish_vitals(&mut self) {
        self.metrics
            .publish_vitals(self.now, self.pool.busy(), self.pool.queued());
        if self.metrics.vitals().viewers() > 0 || self.metrics.vitals_watched() {
            self.timers.insert(
                timer::later(self.now, vitals::VITALS_EVERY),
                TimerKind::PublishVitals,
            );
        } else {
            self.vitals_armed = false;
            self.metrics.vitals_stopped();
        }
    }

    /// Start publishing vitals frames, every [`vitals::VITALS_EVERY`] from now (a window
    /// starts now too), unless already doing so.
    fn arm_vitals(&mut self) {
        if self.vitals_armed {
            return;
        }
        self.vitals_armed = true;
        self.metrics.reactor.restart_window(self.now);
        self.timers.insert(
            timer::later(self.now, vitals::VITALS_EVERY),
            TimerKind::PublishVitals,
        );
    }

    /// Refresh the levels a scrape would read, post the metrics for the other processes, start
    /// posting vitals frames if another process's dashboard asks for them, and come back in
    /// [`POST_METRICS_EVERY`].
    fn post_metrics(&mut self) {
        connection::read_levels(&self.metrics, &self.pool, &self.outbound);
        self.metrics.post();
        if self.metrics.vitals_watched() {
            self.arm_vitals();
        }
        self.timers.insert(
            timer::later(self.now, POST_METRICS_EVERY),
            TimerKind::PostMetrics,
        );
    }

    /// Step 7: pop and act on every expired timer. Returns `Some` if the drain timed out.
    fn fire_timers(&mut self) -> Option<Exit> {
        while let Some((at, kind)) = self.timers.pop_expired(self.now) {
            match kind {
                TimerKind::Connection { token } => {
                    self.drive(token, |conn, turn| conn.on_deadline(at, turn));
                }
                TimerKind::Request { token, seq } => {
                    if let Some(conn) = self.connections.get_mut(token) {
                        conn.on_request_timer(seq);
                        self.scratch.touched.push(token);
                    }
                }
                TimerKind::Upstream { token } => {
                    let mut io = Io {
                        registry: self.poll.registry(),
                        timers: &mut self.timers,
                        now: self.now,
                    };
                    self.outbound.on_timer(token, at, &mut io);
                }
                TimerKind::ResumeAccept => {
                    if matches!(
                        self.acceptor.state,
                        Accepting::AtCapacity | Accepting::BackingOff
                    ) {
                        self.acceptor.state = Accepting::Open;
                        self.accept_all();
                    }
                }
                TimerKind::PostMetrics => self.post_metrics(),
                TimerKind::PublishVitals => self.publish_vitals(),
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

    /// Step 9: the slow-turn warning, turn statistics, and timer-heap compaction.
    fn after_turn(&mut self) {
        let turn = self.now.elapsed();
        let slowest = self.scratch.slowest.take();
        if turn > SLOW_TURN {
            match &slowest {
                Some((took, handler)) => log::warn!(
                    "slow reactor turn: {} ms (handler {handler} ran {} ms on the reactor; \
                     every other connection waited)",
                    turn.as_millis(),
                    took.as_millis()
                ),
                None => log::warn!("slow reactor turn: {} ms", turn.as_millis()),
            }
        }
        if turn >= vitals::SLOW_TURN {
            let handler = slowest.as_ref().map(|(_, handler)| handler.as_str());
            self.metrics
                .reactor
                .slow_turn(self.now + turn, turn, handler);
        }
        // A viewer of `GET /events/loop` arrived this turn: frames from now on.
        if !self.vitals_armed && self.metrics.vitals().viewers() > 0 {
            self.arm_vitals();
        }
        self.stats.record(turn, self.now);
        self.metrics.reactor.turn_done(turn);
        if let Some(access) = &mut self.access {
            let dropped = access.flush();
            self.metrics.reactor.access_log_dropped(dropped);
        }

        if self.timers.needs_compaction() {
            let connections = &self.connections;
            let outbound = &self.outbound;
            let dropped = self.timers.compact(|at, kind| match kind {
                TimerKind::Connection { token } | TimerKind::Request { token, .. } => connections
                    .get(token)
                    .is_some_and(|conn| conn.wants_timer(at, kind)),
                TimerKind::Upstream { token } => outbound.wants_timer(token, at),
                TimerKind::ResumeAccept
                | TimerKind::ShutdownDeadline
                | TimerKind::PostMetrics
                | TimerKind::PublishVitals => true,
            });
            log::debug!(
                "timer heap compacted: {dropped} dead entries dropped, {} kept",
                self.timers.len()
            );
        }
    }
}

/// The `outcome` a call upstream is counted under.
fn call_outcome<T>(result: &Result<T, CallError>) -> CallOutcome {
    match result {
        Ok(_) => CallOutcome::Response,
        Err(CallError::Refused | CallError::Connect(_) | CallError::ConnectTimeout) => {
            CallOutcome::ConnectFailed
        }
        Err(CallError::ResponseTimeout) => CallOutcome::Timeout,
        Err(_) => CallOutcome::Failed,
    }
}

/// Deregister a source; failure only means it was never registered or is already closed.
fn deregister(registry: &Registry, source: &mut impl mio::event::Source) {
    if let Err(err) = registry.deregister(source) {
        log::debug!("deregister failed: {err}");
    }
}
