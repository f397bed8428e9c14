//! Which timeouts apply to a connection, and the one timer that enforces them.
//!
//! A connection can be subject to several timeouts at once: a slow reader (the send timeout)
//! while a job runs (its request deadline), or a half-sent head (the header timeout) behind
//! requests still being answered. The connection describes all of them in one [`Deadlines`]
//! value; the earliest is armed in the reactor's timer heap, and when the timer fires every
//! deadline that has passed is acted on — so no timeout ever hides another.
//!
//! | deadline | runs from | when it passes |
//! |---|---|---|
//! | [`Deadline::Idle`] | the last response (or accept), while nothing is in progress | close silently |
//! | [`Deadline::Header`] | the first byte of an unfinished request head | 408, close |
//! | [`Deadline::Body`] | the last bytes of an unfinished body | 408, close |
//! | [`Deadline::Send`] | the last time the peer took some of our output | close |
//! | [`Deadline::Request`] | dispatch of the oldest request still waiting for a job or a timer | 504 for it |
//! | [`Deadline::Linger`] | our last response of a closing connection | close |
//!
//! Bytes that are not part of a request (empty lines between requests) move no deadline: a
//! client cannot keep an idle connection open by sending a CRLF every few seconds.

use std::time::Instant;

use crate::timer::{TimerKind, Timers};

/// One kind of timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// Idle between requests (`--keep-alive-timeout`, or the drain's grace period).
    Idle,
    /// A request head has started but not finished (`--header-timeout`).
    Header,
    /// A body is arriving and the client paused (`--body-timeout`).
    Body,
    /// The peer is not taking our output (a fixed send timeout, as nginx's `send_timeout`).
    Send,
    /// A request ran out of `--request-timeout` before its response was ready.
    Request,
    /// Lingering after our last response.
    Linger,
}

/// Every deadline in force on one connection right now (`None`: does not apply).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deadlines {
    /// Nothing in progress: close at this instant.
    pub idle: Option<Instant>,
    /// The unfinished head must be complete by then.
    pub header: Option<Instant>,
    /// The unfinished body must make progress by then.
    pub body: Option<Instant>,
    /// The peer must take some output by then.
    pub send: Option<Instant>,
    /// The oldest waiting request must be answered by then.
    pub request: Option<Instant>,
    /// The lingering close ends then.
    pub linger: Option<Instant>,
}

impl Deadlines {
    /// Each deadline with its kind, in the order they are acted on when several pass at once:
    /// requests first (a 504 is still an answer), then the reasons to close.
    fn all(&self) -> [(Option<Instant>, Deadline); 6] {
        [
            (self.request, Deadline::Request),
            (self.linger, Deadline::Linger),
            (self.send, Deadline::Send),
            (self.header, Deadline::Header),
            (self.body, Deadline::Body),
            (self.idle, Deadline::Idle),
        ]
    }

    /// The earliest deadline: when the connection's timer must fire.
    pub fn next(&self) -> Option<Instant> {
        self.all().iter().filter_map(|(at, _)| *at).min()
    }

    /// The deadlines that have passed at `now`, in the order they are acted on.
    pub fn passed(&self, now: Instant) -> impl Iterator<Item = Deadline> {
        self.all()
            .into_iter()
            .filter(move |(at, _)| at.is_some_and(|at| at <= now))
            .map(|(_, kind)| kind)
    }
}

/// The connection's entry in the reactor's timer heap.
///
/// The heap cancels lazily (see `timer.rs`): moving a deadline later costs nothing, and only a
/// deadline *earlier* than the one armed needs a new entry. When an entry fires, the connection
/// recomputes its deadlines; an entry that fires early finds nothing passed and re-arms.
#[derive(Debug, Default)]
pub struct Alarm {
    /// The earliest instant for which an entry is in the heap for us.
    armed: Option<Instant>,
}

impl Alarm {
    /// Make sure the heap will call us back at `at` (or earlier).
    pub fn arm(&mut self, at: Option<Instant>, token: usize, timers: &mut Timers) {
        let Some(at) = at else { return };
        if self.armed.is_none_or(|armed| at < armed) {
            timers.insert(at, TimerKind::Connection { token });
            self.armed = Some(at);
        }
    }

    /// The entry for `at` fired.
    pub fn fired(&mut self, at: Instant) {
        if self.armed == Some(at) {
            self.armed = None;
        }
    }

    /// True if the heap entry for `at` is the one this alarm still counts on (for compacting
    /// the heap: every other entry of this connection is dead).
    pub fn is_armed_at(&self, at: Instant) -> bool {
        self.armed == Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// With a send timeout and a request deadline both in force, the earlier one is armed and
    /// both are reported once passed — a slow reader cannot hide a job's timeout.
    #[test]
    fn no_deadline_hides_another() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let deadlines = Deadlines {
            send: Some(t0 + 60 * s),
            request: Some(t0 + 5 * s),
            ..Deadlines::default()
        };
        assert_eq!(deadlines.next(), Some(t0 + 5 * s));
        assert_eq!(deadlines.passed(t0 + 4 * s).count(), 0);
        assert_eq!(
            deadlines.passed(t0 + 5 * s).collect::<Vec<_>>(),
            vec![Deadline::Request]
        );
        assert_eq!(
            deadlines.passed(t0 + 61 * s).collect::<Vec<_>>(),
            vec![Deadline::Request, Deadline::Send]
        );
    }

    /// Only an earlier deadline adds a heap entry; the entry that fires clears the alarm.
    #[test]
    fn alarm_inserts_only_for_earlier_deadlines() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        let mut alarm = Alarm::default();
        alarm.arm(Some(t0 + Duration::from_secs(5)), 7, &mut timers);
        alarm.arm(Some(t0 + Duration::from_secs(9)), 7, &mut timers);
        assert_eq!(timers.len(), 1, "a later deadline reuses the armed entry");
        alarm.arm(Some(t0 + Duration::from_secs(1)), 7, &mut timers);
        assert_eq!(timers.len(), 2, "an earlier one needs its own");
        assert!(alarm.is_armed_at(t0 + Duration::from_secs(1)));
        alarm.fired(t0 + Duration::from_secs(1));
        assert!(!alarm.is_armed_at(t0 + Duration::from_secs(1)));
    }
}
