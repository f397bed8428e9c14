//! Signals as events of the loop: SIGINT and SIGTERM start the graceful drain, the others are
//! logged and ignored, and none of them can kill the process mid-request.
//!
//! # The self-pipe
//!
//! A signal handler interrupts whatever the thread was doing, perhaps in the middle of a
//! `malloc`, so it may only call the few functions POSIX lists as async-signal-safe. It cannot
//! take a lock, log a line, or touch the reactor's state. The classic way out, the *self-pipe*
//! (djb's trick, also how asyncio's `add_signal_handler` works), is for the handler to write one
//! byte into a non-blocking pipe and return; the read end of the pipe is registered with the
//! poller like any socket, so the signal arrives on the loop as an ordinary readable event, and
//! the loop does the real work on its own thread, in its own time.
//!
//! `signal_hook_mio::v1_0::Signals` is exactly that: a handler (from `signal-hook`) that records
//! the signal and writes a byte to a Unix socket pair, whose read end is a `mio` event source.
//! [`Signals`] wraps it so the reactor sees named [`Signal`]s, adds the "second signal exits at
//! once" rule, and unregisters everything when dropped.
//!
//! # Lifetime
//!
//! Everything a [`Signals`] registers is removed when it is dropped, so a second server in the
//! same process, or a signal that arrives after [`crate::reactor::Server::run`] returned, never
//! reaches a pipe or a flag that belongs to a server that is gone. signal-hook cannot restore the
//! default action of a signal once it has handled it: after the drop, these six signals are
//! ignored by the process until something registers them again.

use std::fmt;
use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use mio::event::Source;
use mio::{Interest, Registry, Token};
use signal_hook::consts::{SIGALRM, SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::SigId;

/// Exit status when a second SIGINT or SIGTERM interrupts a graceful drain: 128 + SIGINT, as a
/// shell reports a process stopped by Ctrl-C.
pub const EXIT_SECOND_SIGNAL: i32 = 130;

/// The signals the server takes over from their default action (which is to kill the process).
const HANDLED: [libc::c_int; 6] = [SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM];

/// A signal the server handles, by its meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C): drain and exit.
    Interrupt,
    /// SIGTERM (`kill`, a supervisor, a container runtime stopping us): drain and exit.
    Terminate,
    /// SIGHUP: the terminal went away, or an operator asks for a reload.
    Hangup,
    /// SIGUSR1.
    User1,
    /// SIGUSR2.
    User2,
    /// SIGALRM: a timer set with `alarm(2)` expired.
    Alarm,
}

impl Signal {
    /// The signal with this number, if it is one we handle.
    fn from_raw(signal: libc::c_int) -> Option<Signal> {
        match signal {
            SIGINT => Some(Signal::Interrupt),
            SIGTERM => Some(Signal::Terminate),
            SIGHUP => Some(Signal::Hangup),
            SIGUSR1 => Some(Signal::User1),
            SIGUSR2 => Some(Signal::User2),
            SIGALRM => Some(Signal::Alarm),
            _ => None,
        }
    }

    /// True for the signals that ask the server to stop (SIGINT, SIGTERM).
    pub fn is_shutdown(self) -> bool {
        matches!(self, Signal::Interrupt | Signal::Terminate)
    }

    /// The conventional name: `SIGINT`, `SIGTERM`, …
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
            Signal::User1 => "SIGUSR1",
            Signal::User2 => "SIGUSR2",
            Signal::Alarm => "SIGALRM",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2 and SIGALRM, delivered to the loop as a readable
/// event source. Register it with a `mio::Registry`; when it is readable, take the signals with
/// [`Signals::pending`].
pub struct Signals {
    /// The self-pipe and its handler (see the module documentation).
    inner: signal_hook_mio::v1_0::Signals,
    /// The "second signal exits at once" actions, removed on drop.
    second_signal: Vec<SigId>,
}

impl Signals {
    /// Take over the six signals, and deliver every one of them to the loop, a second SIGTERM
    /// too: for a supervisor, whose loop never blocks and handles a second signal itself (it
    /// must stop its processes before it goes), and for the processes of a supervisor, which
    /// may get SIGTERM from both the supervisor and whoever signalled the whole group, and must
    /// still drain.
    pub fn delivering_all() -> io::Result<Signals> {
        Ok(Signals {
            inner: signal_hook_mio::v1_0::Signals::new(HANDLED)?,
            second_signal: Vec::new(),
        })
    }

    /// Take over the six signals. The first SIGINT or SIGTERM is delivered like the others; a
    /// second one exits the process at once, from the handler itself, with status
    /// [`EXIT_SECOND_SIGNAL`]: the operator pressed Ctrl-C twice and wants out now, whatever the
    /// loop is doing.
    pub fn new() -> io::Result<Signals> {
        let inner = signal_hook_mio::v1_0::Signals::new(HANDLED)?;
        let seen = Arc::new(AtomicBool::new(false));
        let mut second_signal = Vec::with_capacity(4);
        for signal in [SIGINT, SIGTERM] {
            // Actions run in the order they were registered: the exit checks `seen` before the
            // flag action sets it, so the first signal only sets it and the second one exits.
            let registered = signal_hook::flag::register_conditional_shutdown(
                signal,
                EXIT_SECOND_SIGNAL,
                Arc::clone(&seen),
            )
            .and_then(|exit| {
                second_signal.push(exit);
                signal_hook::flag::register(signal, Arc::clone(&seen))
            });
            match registered {
                Ok(id) => second_signal.push(id),
                Err(err) => {
                    unregister(&second_signal);
                    return Err(err);
                }
            }
        }
        Ok(Signals {
            inner,
            second_signal,
        })
    }

    /// The signals received since the last call, in signal-number order (not arrival order);
    /// the same signal received twice in between is reported once. Never blocks.
    pub fn pending(&mut self) -> Vec<Signal> {
        self.inner.pending().filter_map(Signal::from_raw).collect()
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        // The self-pipe's own actions are unregistered when `inner` drops.
        unregister(&self.second_signal);
    }
}

/// Remove signal-hook actions; an action that is already gone is not an error.
fn unregister(ids: &[SigId]) {
    for &id in ids {
        signal_hook::low_level::unregister(id);
    }
}

/// The reactor registers [`Signals`] like a socket; all three calls go to the self-pipe.
impl Source for Signals {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.inner.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.inner.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.inner.deregister(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::time::{Duration, Instant};

    const SIGNAL: Token = Token(7);

    /// Raise `signal` in this process and wait for `signals` to report it through the poller.
    fn deliver(poll: &mut Poll, signals: &mut Signals, signal: libc::c_int) -> Vec<Signal> {
        signal_hook::low_level::raise(signal).expect("raise");
        let mut events = Events::with_capacity(4);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .expect("poll");
            let got = signals.pending();
            if !got.is_empty() {
                return got;
            }
        }
        Vec::new()
    }

    /// A signal arrives as a readable event and a named [`Signal`]; after a drop, a new
    /// `Signals` in the same process receives signals again; and a signal raised after the last
    /// drop neither reaches a pipe that is gone nor kills the process.
    ///
    /// Only SIGUSR1 and SIGUSR2 are raised: the test process must survive them, and no other
    /// test of this binary handles them.
    #[test]
    fn signals_are_delivered_and_released_on_drop() {
        for round in 0..2 {
            let mut poll = Poll::new().expect("poll");
            let mut signals = Signals::new().expect("signals");
            poll.registry()
                .register(&mut signals, SIGNAL, Interest::READABLE)
                .expect("register");
            assert_eq!(
                deliver(&mut poll, &mut signals, SIGUSR1),
                vec![Signal::User1],
                "round {round}"
            );
            assert_eq!(
                deliver(&mut poll, &mut signals, SIGUSR2),
                vec![Signal::User2],
                "round {round}"
            );
        }
        // Every Signals is gone: the default action (terminate) would end this test here.
        signal_hook::low_level::raise(SIGUSR1).expect("raise");
    }

    /// Each handled signal has its name and its meaning.
    #[test]
    fn signal_names_and_meanings() {
        let all: Vec<Signal> = HANDLED
            .iter()
            .filter_map(|&s| Signal::from_raw(s))
            .collect();
        let names: Vec<&str> = all.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            ["SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGALRM"]
        );
        let shutdown: Vec<Signal> = all.into_iter().filter(|s| s.is_shutdown()).collect();
        assert_eq!(shutdown, [Signal::Interrupt, Signal::Terminate]);
        assert_eq!(Signal::from_raw(libc::SIGPIPE), None);
    }
}
