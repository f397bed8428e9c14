//! Admission: the listening socket, and when new connections are taken.
//!
//! The listener is edge-triggered like every other socket, so the reactor accepts until
//! `WouldBlock` — or until a limit makes it pause:
//!
//! | state | why | what resumes it |
//! |---|---|---|
//! | [`Accepting::Open`] | — | — |
//! | [`Accepting::AtCapacity`] | `--max-connections` are open and none is an idle keep-alive connection that could be closed | a connection closing, or the back-off timer (by then one may have become idle) |
//! | [`Accepting::BackingOff`] | the process is out of file descriptors or memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) | the back-off timer |
//! | [`Accepting::AfterStartup`] | `Server::accept_after_ready`: the listener is not even registered with the poller until the start-up hooks have finished, so clients wait in the kernel's backlog instead of being answered 503 | the server turning ready |
//!
//! **Idle clients never lock out active ones.** At the cap, the longest-idle keep-alive
//! connection (answered at least once; no request in progress, nothing held, nothing unsent) is
//! closed to admit the new client, as nginx does when its worker connections run out ("reusing connections"). A
//! client that was idle can reconnect at no cost; a client kept waiting in the backlog cannot be
//! served at all.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};

/// How long accepting pauses after `EMFILE`/`ENFILE`, or at the cap with nothing to evict
/// (nginx waits 500 ms, hyper 1 s).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Idle connections looked up at once when the cap is reached: one scan of the connections
/// serves this many admissions.
pub const EVICTION_BATCH: usize = 32;
/// Each kind of admission warning is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Whether the listener is taking new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepting {
    /// Accepting.
    Open,
    /// At `--max-connections` with nothing to evict: resume when a connection closes or the
    /// back-off timer fires.
    AtCapacity,
    /// Out of resources: resume when the back-off timer fires.
    BackingOff,
    /// Not before the server is ready: the listener is not registered with the poller, so
    /// connections wait in the kernel's backlog (up to `LISTEN_BACKLOG`). Used where several
    /// processes share one listening socket: a process still starting takes no client that
    /// a ready one could serve.
    AfterStartup,
}

/// What one `accept` gave.
pub enum Accepted {
    /// A new connection.
    Connection(TcpStream, SocketAddr),
    /// The backlog is empty: the next connection raises a new event.
    Empty,
    /// The client gave up between its SYN and our accept, or a signal interrupted us: go on.
    Skipped,
    /// Out of file descriptors or memory: retrying now would fail again (or spin).
    OutOfResources(io::Error),
    /// The listener is closed (draining).
    Closed,
}

/// The listener and its admission state.
pub struct Acceptor {
    /// `None` once a drain has begun: new connections are refused by the kernel.
    listener: Option<TcpListener>,
    /// Whether we are taking connections.
    pub state: Accepting,
    /// Idle connections to close at the cap, oldest last (so `pop` takes the oldest). Found by
    /// one scan; valid for the turn that made it.
    pub eviction_candidates: Vec<usize>,
    /// Idle keep-alive connections closed to admit new clients, since start.
    pub evicted: u64,
    /// A connection closed while we were at the cap: accept again this turn.
    pub resumed: bool,
    /// Most connections one turn accepts: unbounded for a listener of our own; a few when the
    /// socket is shared with other processes (`Server::share_listener`).
    pub per_turn: usize,
    /// The last turn stopped at `per_turn`: more may be waiting, and no new edge will say so.
    pub more_waiting: bool,
    /// Rate limit for the "at capacity" lines.
    pub capacity_log: LogLimit,
    /// Rate limit for the "accept failed" lines.
    pub resource_log: LogLimit,
}

impl Acceptor {
    /// Take over a bound, listening socket, accepting from `state` (`Open`, or `AfterStartup`),
    /// at most `per_turn` connections a turn (`usize::MAX`: until the backlog is empty).
    pub fn new(listener: TcpListener, state: Accepting, per_turn: usize) -> Acceptor {
        Acceptor {
            listener: Some(listener),
            state,
            eviction_candidates: Vec::new(),
            evicted: 0,
            resumed: false,
            per_turn: per_turn.max(1),
            more_waiting: false,
            capacity_log: LogLimit::default(),
            resource_log: LogLimit::default(),
        }
    }

    /// The listener, to register it with the poller (`None` once closed).
    pub fn listener_mut(&mut self) -> Option<&mut TcpListener> {
        self.listener.as_mut()
    }

    /// Stop listening for good (the drain): the caller deregisters it first.
    pub fn close(&mut self) -> Option<TcpListener> {
        self.listener.take()
    }

    /// True while new connections may be taken right now.
    pub fn is_open(&self) -> bool {
        self.state == Accepting::Open && self.listener.is_some()
    }

    /// One `accept`.
    pub fn accept(&self) -> Accepted {
        let Some(listener) = &self.listener else {
            return Accepted::Closed;
        };
        match listener.accept() {
            Ok((stream, peer)) => Accepted::Connection(stream, peer),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Accepted::Empty,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                ) =>
            {
                Accepted::Skipped
            }
            Err(err) => Accepted::OutOfResources(err),
        }
    }

    /// A connection closed: if we were waiting for one to, accept again.
    pub fn on_close(&mut self) {
        if self.state == Accepting::AtCapacity {
            self.state = Accepting::Open;
            self.resumed = true;
        }
    }
}

/// The tokens of up to `max` idle connections, the longest-idle *last*. `idle` yields each
/// connection's token and, for an idle one, since when.
pub fn longest_idle(
    idle: impl Iterator<Item = (usize, Option<Instant>)>,
    max: usize,
) -> Vec<usize> {
    let mut candidates: Vec<(Instant, usize)> = idle
        .filter_map(|(token, since)| since.map(|since| (since, token)))
        .collect();
    if candidates.len() > max {
        candidates.select_nth_unstable(max);
        candidates.truncate(max);
    }
    // Newest first, so that `pop` takes the oldest.
    candidates.sort_unstable_by(|a, b| b.cmp(a));
    candidates.into_iter().map(|(_, token)| token).collect()
}

/// Lets a repeated warning through at most once per [`LOG_EVERY`], counting what it held back,
/// so a flood of identical failures costs one line a second, not one per event.
#[derive(Debug, Default)]
pub struct LogLimit {
    last: Option<Instant>,
    held_back: u64,
}

impl LogLimit {
    /// `Some(n)` if a line may be logged now (`n` lines were held back since the last one).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < LOG_EVERY)
        {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The oldest idle connections are picked, oldest popped first; busy ones never.
    #[test]
    fn picks_the_longest_idle() {
        let t0 = Instant::now();
        let at = |ms| Some(t0 + Duration::from_millis(ms));
        let conns = vec![
            (1, at(30)),
            (2, None),
            (3, at(10)),
            (4, at(20)),
            (5, at(40)),
        ];
        let mut picked = longest_idle(conns.into_iter(), 3);
        assert_eq!(picked.pop(), Some(3));
        assert_eq!(picked.pop(), Some(4));
        assert_eq!(picked.pop(), Some(1));
        assert_eq!(picked.pop(), None);
    }

    /// One line per second, with the count of lines held back.
    #[test]
    fn log_limit_counts_what_it_holds_back() {
        let t0 = Instant::now();
        let mut limit = LogLimit::default();
        assert_eq!(limit.allow(t0), Some(0));
        for ms in 1..=5 {
            assert_eq!(limit.allow(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(limit.allow(t0 + Duration::from_millis(1001)), Some(5));
    }
}
