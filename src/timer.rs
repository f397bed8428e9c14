//! Deadlines: one binary heap for every timer in the process.
//!
//! Keep-alive, header, body, send, linger and request timeouts, `/sleep`, the deadlines of
//! connections to upstreams (connect, response, idle), the accept back-off and the shutdown
//! deadline all end up here. The reactor asks [`Timers::poll_timeout`] how long its
//! `poll` may sleep (the way libuv computes `uv__next_timeout`), and after every poll pops what
//! has expired.
//!
//! Cancellation is *lazy*: nothing is ever removed from the middle of the heap. Whoever owns a
//! timer remembers which deadline it still wants, and when a stale entry pops the owner ignores it
//! (or asks for a later one). This keeps pushing O(log n), popping O(log n) and cancelling O(1),
//! and it means moving a keep-alive deadline further out after every response costs a field
//! write, not a heap operation. A production server with millions of timers would use a hashed
//! wheel (as the Linux kernel does); a heap is the clearer structure to read.
//!
//! Lazy cancellation leaves dead entries behind: those of connections that closed, of `/sleep`s
//! whose client left, of deadlines that moved. Left alone they would sit in the heap until their
//! time came (up to a minute) and the heap would never give memory back. So, as asyncio does
//! when cancelled timers outnumber live ones, the reactor *compacts* the heap once it has
//! doubled since the last compaction: [`Timers::compact`] keeps only the entries their owners
//! still want, and returns the spare memory. Each compaction is paid for by the insertions
//! that doubled the heap, so it costs O(1) per timer over time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// What a deadline is for. The reactor decides what "expired" means for each kind.
///
/// Timers due at the same instant pop in the order of this list: a `/sleep` as long as
/// `--request-timeout` is released by its own timer before its request deadline can answer 504.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKind {
    /// The deferred response (`/sleep`) of request `seq` on connection `token` is due.
    /// (Offloaded jobs need no timer of their own: the connection's deadline covers its oldest
    /// job's `--request-timeout`.)
    Request { token: usize, seq: u64 },
    /// The earliest deadline in force on connection `token`: idle keep-alive, header, body, send,
    /// linger, or the request deadline of a request still waiting for a job, a call upstream or
    /// a timer.
    Connection { token: usize },
    /// The deadline of upstream connection `token`: connected, answered, or (idle) closed by
    /// then.
    Upstream { token: usize },
    /// Accepting was paused (`EMFILE`, `--max-connections`); try again.
    ResumeAccept,
    /// The drain has run out of `--shutdown-timeout`.
    ShutdownDeadline,
    /// Time to post this process's metrics for the other processes of `--workers N`.
    PostMetrics,
    /// Time to publish a frame for the viewers of `GET /events/loop` (armed only while there
    /// are some).
    PublishVitals,
}

/// Below this many entries the heap is never compacted: too small to matter.
const COMPACT_FLOOR: usize = 1024;

/// A min-heap of `(deadline, kind)`.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, TimerKind)>>,
    /// Entries left by the last compaction: the next one is due when the heap has doubled.
    after_compaction: usize,
}

impl Timers {
    /// An empty set of timers.
    pub fn new() -> Self {
        Timers::default()
    }

    /// Arm a timer. Nothing is replaced: see the module docs on lazy cancellation.
    pub fn insert(&mut self, at: Instant, kind: TimerKind) {
        self.heap.push(Reverse((at, kind)));
    }

    /// The earliest armed deadline, stale or not.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// How long `poll` may sleep: until the next deadline, or forever without one. Rounded *up* to
    /// the next millisecond, because epoll's timeout is in milliseconds and waking a little early
    /// would cost a turn that finds nothing due.
    pub fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        self.next_deadline().map(|at| {
            let wait = at.saturating_duration_since(now);
            let ms = wait.as_nanos().div_ceil(1_000_000);
            Duration::from_millis(ms as u64)
        })
    }

    /// Remove and return one timer whose deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(Instant, TimerKind)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(entry)| entry),
            _ => None,
        }
    }

    /// True once the heap has doubled since the last compaction (and is not tiny), or holds far
    /// more memory than it uses (after a burst of live timers).
    pub fn needs_compaction(&self) -> bool {
        let len = self.heap.len();
        len > COMPACT_FLOOR.max(2 * self.after_compaction)
            || self.heap.capacity() > 4 * COMPACT_FLOOR.max(len)
    }

    /// Drop every entry `wanted` says no to, and give back the memory. Returns how many
    /// entries were dropped.
    pub fn compact(&mut self, mut wanted: impl FnMut(Instant, TimerKind) -> bool) -> usize {
        let before = self.heap.len();
        self.heap.retain(|Reverse((at, kind))| wanted(*at, *kind));
        self.heap.shrink_to_fit();
        self.after_compaction = self.heap.len();
        before - self.heap.len()
    }

    /// Armed timers, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// `now + delay`, or, if that is past what an `Instant` can hold (a library user's
/// `Duration::MAX` for "never"), a century from now: a deadline that never comes either way.
pub fn later(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Timers pop in deadline order, and only once they are due.
    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        timers.insert(t0 + Duration::from_millis(30), TimerKind::ResumeAccept);
        timers.insert(
            t0 + Duration::from_millis(10),
            TimerKind::Connection { token: 7 },
        );
        timers.insert(
            t0 + Duration::from_millis(20),
            TimerKind::Request { token: 7, seq: 1 },
        );
        assert_eq!(timers.pop_expired(t0), None);
        assert_eq!(
            timers.poll_timeout(t0),
            Some(Duration::from_millis(10)),
            "poll sleeps exactly until the earliest deadline"
        );
        let late = t0 + Duration::from_millis(25);
        assert_eq!(
            timers.pop_expired(late).map(|e| e.1),
            Some(TimerKind::Connection { token: 7 })
        );
        assert_eq!(
            timers.pop_expired(late).map(|e| e.1),
            Some(TimerKind::Request { token: 7, seq: 1 })
        );
        assert_eq!(timers.pop_expired(late), None);
        assert_eq!(timers.len(), 1);
    }

    /// Dead entries are dropped once the heap has doubled, and the memory is given back; live
    /// ones survive in order.
    #[test]
    fn compaction_drops_dead_entries_and_memory() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        for token in 0..5000 {
            timers.insert(
                t0 + Duration::from_millis(token as u64),
                TimerKind::Connection { token },
            );
        }
        assert!(timers.needs_compaction());
        let dropped = timers.compact(|_, kind| kind == TimerKind::Connection { token: 4321 });
        assert_eq!(dropped, 4999);
        assert_eq!(timers.len(), 1);
        assert!(timers.heap.capacity() < 16, "memory given back");
        assert!(!timers.needs_compaction());
        assert_eq!(
            timers
                .pop_expired(t0 + Duration::from_secs(10))
                .map(|e| e.1),
            Some(TimerKind::Connection { token: 4321 })
        );
    }

    /// A deadline 0.2 ms away is waited for as 1 ms, never as 0 (which would spin).
    #[test]
    fn poll_timeout_rounds_up() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        timers.insert(t0 + Duration::from_micros(200), TimerKind::ResumeAccept);
        assert_eq!(timers.poll_timeout(t0), Some(Duration::from_millis(1)));
        assert_eq!(Timers::new().poll_timeout(t0), None);
    }
}
