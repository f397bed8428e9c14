//! `--workers N`: one supervisor process, N reactor processes sharing one listening socket —
//! gunicorn's arbiter and its workers.
//!
//! A reactor is one thread: one process uses one core for its loop, however many threads its
//! pool has. gunicorn's answer for Python, where the interpreter lock makes threads no help for
//! CPU, is to run N copies of the server as processes behind one socket, each with its own
//! event loop and its own pool, and a small parent that keeps N of them alive. This module is
//! that parent. It serves no request; it binds the socket, starts the processes, and watches.
//!
//! ```text
//!                      supervisor (this module)
//!             binds the socket once, never accepts on it
//!              │ fork + exec the same binary, socket as fd 3
//!      ┌───────┴────────┬────────────────┐
//!  process 1        process 2   …    process N     each: reactor + pool of --pool threads,
//!  accept()s        accept()s        accept()s     its own model, its own metrics
//!      └───────────── one listening socket (kernel backlog) ─┘
//! ```
//!
//! # How it works
//!
//! - **One socket, inherited.** The supervisor binds the listening socket and hands it to each
//!   process it starts as descriptor 3 (`inherit.rs` lists what else passes). Every process
//!   registers the same socket with its own poller and accepts from it; whoever is free first
//!   takes the next connection, so a process stuck in a long job simply stops taking new
//!   ones. Because the supervisor holds the socket for its whole life, replacing every process
//!   never closes it: a client that connects while no process accepts waits in the backlog.
//!   With `--reuse-port` each process gets a socket of its own instead (`SO_REUSEPORT`), and
//!   the kernel deals connections out evenly — to a stalled process too. `docs/OPERATIONS.md`
//!   has the measurements behind the default.
//! - **Readiness.** A process says `READY=1` on a pipe once its start-up hooks are done; until
//!   then it does not accept, and the supervisor does not count it as started.
//! - **Exits.** Each process's pidfd is on the poller: an exit, whatever its cause (SIGKILL, a
//!   panic that aborted, `exit(1)`), wakes the supervisor, which reaps it and decides.
//! - **Decisions** are [`plan::Plan`]'s, which has no processes in it and is tested alone:
//!   restart with back-off, give up if start-up fails, replace one at a time on SIGHUP, stop
//!   all on SIGTERM.
//! - **Signals** arrive as events through the same self-pipe the reactor uses
//!   ([`crate::signals`]). SIGTERM or SIGINT: every process is sent SIGTERM and drains as a
//!   single process does; the supervisor exits when the last one has, 0 if all exited 0. A
//!   second SIGTERM or SIGINT: every process is killed (SIGKILL) and the supervisor exits 130
//!   at once. The processes themselves never cut a drain short on a repeated SIGTERM (they may
//!   get one from the supervisor and one sent to the whole group, by `pkill` or a service
//!   manager); only the supervisor decides that. SIGHUP: replace every process, one at a
//!   time, with the binary found at the supervisor's path now (so a new build installed there
//!   is picked up).
//! - **Orphans.** If the supervisor itself dies (even by SIGKILL), the kernel sends each
//!   process SIGTERM (`PR_SET_PDEATHSIG`): they drain and exit rather than serve on
//!   unsupervised.

pub mod inherit;
pub mod plan;
mod process;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::Instant;

use mio::{Events, Interest, Poll, Token};

use crate::config::Config;
use crate::metrics::shared::{self, Scoreboard};
use crate::reactor::LISTEN_BACKLOG;
use crate::signals::{Signal, Signals};
use crate::sys;
use plan::{Action, Id, Plan};
use process::{describe, Process};

/// The signals' token; a process `id` has tokens `2·id` (exit) and `2·id + 1` (readiness).
const SIGNALS: Token = Token(0);

/// How the processes get their listening socket.
#[derive(Debug)]
enum Listening {
    /// Stopping: the supervisor's socket is closed; no process is started any more.
    Closed,
    /// One socket, held by the supervisor and inherited by every process.
    Shared(TcpListener),
    /// `--reuse-port`: a socket per process, made as the process starts and closed here once
    /// it has it; the supervisor holds only `reserved`, bound but not listening, to keep the
    /// port.
    PerProcess { reserved: TcpListener },
}

/// A bound supervisor, ready to start its processes.
pub struct Supervisor {
    listening: Listening,
    addr: SocketAddr,
    config: Config,
    exe: PathBuf,
    args: Vec<OsString>,
}

impl Supervisor {
    /// Bind the socket the processes will share; `args` are the command-line arguments each
    /// process is started with (this program's own, normally).
    pub fn bind(config: Config, args: Vec<OsString>) -> io::Result<Supervisor> {
        use std::net::ToSocketAddrs;
        let addr = (config.host.as_str(), config.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
        let (listening, addr) = if config.reuse_port {
            let reserved = sys::reserve_port(addr)?;
            let bound = reserved.local_addr()?;
            (Listening::PerProcess { reserved }, bound)
        } else {
            let shared = sys::bind_listener(addr, LISTEN_BACKLOG)?;
            let bound = shared.local_addr()?;
            (Listening::Shared(shared), bound)
        };
        // Exits are heard through pidfds (Linux 5.3): say so now, not as failed starts later.
        sys::pidfd_open(std::process::id()).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("--workers needs pidfd_open(2) (Linux 5.3 or later): {err}"),
            )
        })?;
        Ok(Supervisor {
            listening,
            addr,
            config,
            exe: std::env::current_exe()?,
            args,
        })
    }

    /// Stop listening: drop the supervisor's socket (the processes close their copies as they
    /// drain, and then the kernel refuses new clients).
    fn close_listener(&mut self) {
        self.listening = Listening::Closed;
    }

    /// The address bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Start the processes and watch them until told to stop; returns the exit status.
    pub fn run(self) -> io::Result<i32> {
        // Exits are collected with waitpid, which needs SIGCHLD's default action.
        sys::default_sigchld();
        let mut poll = Poll::new()?;
        // Every signal reaches the loop, a second SIGTERM too: the plan answers it by killing
        // the processes before the supervisor exits.
        let mut signals = Signals::delivering_all()?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let mut watch = Watch {
            plan: Plan::new(self.config.workers, self.config.shutdown_timeout),
            processes: HashMap::new(),
            scoreboard: Scoreboard::create(shared::slots_for(self.config.workers))?,
            announced_ready: false,
            supervisor: self,
        };
        let mut events = Events::with_capacity(64);
        let actions = watch.plan.start(Instant::now());
        if let Some(status) = watch.carry_out(actions, &poll)? {
            return Ok(status);
        }
        loop {
            let timeout = watch
                .plan
                .next_deadline()
                .map(|at| at.saturating_duration_since(Instant::now()));
            if let Err(err) = poll.poll(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            let now = Instant::now();
            let mut actions = Vec::new();
            for event in events.iter() {
                match event.token() {
                    SIGNALS => {
                        for signal in signals.pending() {
                            actions.extend(watch.on_signal(signal, now));
                        }
                    }
                    Token(token) => {
                        let id = (token / 2) as Id;
                        if token % 2 == 0 {
                            actions.extend(watch.on_exit(id, &poll, now));
                        } else {
                            actions.extend(watch.on_readable(id, &poll, now));
                        }
                    }
                }
            }
            actions.extend(watch.plan.on_tick(now));
            if let Some(status) = watch.carry_out(actions, &poll)? {
                return Ok(status);
            }
        }
    }
}

/// The supervisor at work: the plan, and the processes its ids stand for.
struct Watch {
    plan: Plan,
    processes: HashMap<Id, Process>,
    supervisor: Supervisor,
    /// Where the processes post their metrics; a slot per living process.
    scoreboard: Scoreboard,
    /// The `ready` line has been printed (once, when every process was first ready).
    announced_ready: bool,
}

impl Watch {
    fn on_signal(&mut self, signal: Signal, now: Instant) -> Vec<Action> {
        match signal {
            Signal::Interrupt | Signal::Terminate => {
                log::info!(
                    "received {}; stopping {} worker processes (send it again to kill them)",
                    signal.name(),
                    self.plan.alive()
                );
                self.plan.on_stop(now)
            }
            Signal::Hangup => {
                log::info!("received SIGHUP; replacing the worker processes one at a time");
                self.plan.on_reload(now)
            }
            other => {
                log::info!("received {}; ignored", other.name());
                Vec::new()
            }
        }
    }

    fn on_readable(&mut self, id: Id, poll: &Poll, now: Instant) -> Vec<Action> {
        let Some(process) = self.processes.get_mut(&id) else {
            return Vec::new();
        };
        if !process.read_ready(poll.registry()) {
            return Vec::new();
        }
        log::info!(
            "worker process {} (pid {}) is ready",
            self.plan.slot_of(id).map_or(0, |slot| slot + 1),
            process.pid()
        );
        self.plan.on_ready(id, now)
    }

    fn on_exit(&mut self, id: Id, poll: &Poll, now: Instant) -> Vec<Action> {
        let Some(process) = self.processes.get_mut(&id) else {
            return Vec::new();
        };
        let worker = self.plan.slot_of(id).map_or(0, |slot| slot + 1);
        let clean = match process.reap(poll.registry()) {
            Ok(Some(status)) => {
                let line = format!(
                    "worker process {worker} (pid {}) exited: {}",
                    process.pid(),
                    describe(status)
                );
                // SIGTERM ends only a process that was asked to stop (by us, or by whoever
                // signalled the group) before its handlers were in place: a stop, not a crash.
                let clean = status.success() || status.signal() == Some(libc::SIGTERM);
                if clean {
                    log::info!("{line}");
                } else {
                    log::warn!("{line}");
                }
                clean
            }
            Ok(None) => return Vec::new(),
            // Exited, but its status went elsewhere (SIGCHLD ignored by whoever started us,
            // before `run` restored it): an exit all the same.
            Err(err) => {
                log::warn!(
                    "worker process {worker} (pid {}) exited; its status is lost: {err}",
                    process.pid()
                );
                false
            }
        };
        // However it ended, its numbers are gone with it: a crashed process cannot withdraw
        // them itself.
        if let Some(slot) = process.metrics_slot {
            self.scoreboard.clear(slot);
        }
        self.processes.remove(&id);
        self.plan.on_exit(id, clean, now)
    }

    /// Do what the plan says; `Some(status)` when it says to exit. A process that cannot be
    /// started counts as one that exited at once.
    fn carry_out(&mut self, mut actions: Vec<Action>, poll: &Poll) -> io::Result<Option<i32>> {
        while !actions.is_empty() {
            let mut next = Vec::new();
            for action in actions {
                match action {
                    Action::Start { id, slot } => match self.start(id, slot, poll) {
                        Ok(process) => {
                            log::info!(
                                "worker process {} started (pid {})",
                                slot + 1,
                                process.pid()
                            );
                            self.processes.insert(id, process);
                        }
                        Err(err) => {
                            log::error!("could not start worker process {}: {err}", slot + 1);
                            next.extend(self.plan.on_exit(id, false, Instant::now()));
                        }
                    },
                    Action::Stop(id) => {
                        if let Some(process) = self.processes.get(&id) {
                            process.signal(libc::SIGTERM);
                        }
                    }
                    Action::Kill(id) => {
                        if let Some(process) = self.processes.get(&id) {
                            process.signal(libc::SIGKILL);
                        }
                    }
                    Action::Announce(state) => {
                        crate::notify::notify(state);
                        if state == crate::notify::State::Ready && !self.announced_ready {
                            // The binary's second line, as a single process prints it; a
                            // stdout nobody reads any more is no reason to stop.
                            self.announced_ready = true;
                            let mut out = std::io::stdout();
                            let _ =
                                writeln!(out, "evloop ready on http://{}", self.supervisor.addr);
                            let _ = out.flush();
                        }
                    }
                    Action::CloseListener => self.supervisor.close_listener(),
                    Action::Exit(status) => return Ok(Some(status)),
                }
            }
            actions = next;
        }
        Ok(None)
    }

    fn start(&self, id: Id, slot: usize, poll: &Poll) -> io::Result<Process> {
        let supervisor = &self.supervisor;
        // With --reuse-port the socket is made for this process and closed here as soon as the
        // process has its copy: when the process exits, the socket goes with it.
        let own;
        let listener = match &supervisor.listening {
            Listening::Shared(listener) => listener,
            Listening::PerProcess { reserved } => {
                // Bound, not listening: the process listens once it is ready, so the kernel
                // deals its socket no connection while it starts (or if it never gets ready).
                own = sys::reserve_port(reserved.local_addr()?)?;
                &own
            }
            Listening::Closed => {
                return Err(io::Error::other("stopping: the listening socket is closed"));
            }
        };
        let token = id as usize * 2;
        // A scoreboard slot no living process holds. There are four per place; should reloads
        // pile up draining processes beyond that, the new one serves with metrics of its own
        // rather than not at all.
        let metrics_slot = (0..self.scoreboard.slots())
            .find(|s| self.processes.values().all(|p| p.metrics_slot != Some(*s)));
        match metrics_slot {
            Some(slot) => self.scoreboard.clear(slot),
            None => log::warn!(
                "no free metrics slot: worker process {} will answer /metrics for itself only",
                slot + 1
            ),
        }
        Process::start(
            &supervisor.exe,
            &supervisor.args,
            listener,
            slot + 1,
            metrics_slot.map(|slot| (self.scoreboard.fd(), slot)),
            poll.registry(),
            [Token(token), Token(token + 1)],
        )
    }
}
