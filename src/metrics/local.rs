//! Metrics the reactor thread owns: plain integers behind `&mut self`.
//!
//! Everything the reactor counts — turns, connections, requests, bytes — happens on the reactor
//! thread, and `/metrics` is rendered on that thread too (it is a route like any other). A value
//! that only one thread writes and reads needs no atomic: `inc` is one `add` instruction on a
//! field the reactor already has in cache. The borrow checker enforces the "one owner" rule
//! that makes this sound; `Cell` is not needed because the reactor holds `&mut` to its metrics
//! wherever it counts.
//!
//! If a metric ever had to be read from another thread (a dashboard thread, say), it would move
//! to [`super::atomic`]; on x86-64 a single-writer `AtomicU64` updated by `load` + `store` costs
//! the same as these, but it would make every reader wonder who else writes.

use std::time::Duration;

use super::encode::{Encoder, Kind, Metric, Number};

/// A count that only goes up, owned by the reactor (`evloop_*_total`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LocalCounter(u64);

impl LocalCounter {
    /// A counter at zero.
    pub const fn new() -> LocalCounter {
        LocalCounter(0)
    }

    /// Count one.
    pub fn inc(&mut self) {
        self.0 = self.0.wrapping_add(1);
    }

    /// Count `n` (bytes read, say).
    pub fn add(&mut self, n: u64) {
        // Wrapping, not saturating: at a billion a second a u64 wraps after 584 years, and
        // Prometheus treats any decrease as a counter reset anyway.
        self.0 = self.0.wrapping_add(n);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0
    }
}

impl Metric for LocalCounter {
    const KIND: Kind = Kind::Counter;

    fn encode(&self, enc: &mut Encoder<'_>, name: &str, labels: &[(&str, &str)]) {
        enc.sample(name, "", labels, None, Number::Count(self.0));
    }
}

/// A level that goes up and down, owned by the reactor: connections in a state, say.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LocalGauge(i64);

impl LocalGauge {
    /// A gauge at zero.
    pub const fn new() -> LocalGauge {
        LocalGauge(0)
    }

    /// Set the level.
    pub fn set(&mut self, value: i64) {
        self.0 = value;
    }

    /// One more.
    pub fn inc(&mut self) {
        self.0 += 1;
    }

    /// One fewer.
    pub fn dec(&mut self) {
        self.0 -= 1;
    }

    /// The level now.
    pub fn get(&self) -> i64 {
        self.0
    }
}

impl Metric for LocalGauge {
    const KIND: Kind = Kind::Gauge;

    fn encode(&self, enc: &mut Encoder<'_>, name: &str, labels: &[(&str, &str)]) {
        enc.sample(name, "", labels, None, Number::Level(self.0));
    }
}

/// The longest duration seen since start, owned by the reactor: the longest turn ("loop lag").
///
/// A histogram says how often turns are slow; this says how bad the worst one was, which a
/// histogram's top bucket (`le="+Inf"`) cannot. It never goes down: a scrape taken after a
/// stall still shows it, where a "max since the last scrape" would depend on who scraped.
/// Rendered as a gauge in seconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LocalMax {
    nanos: u64,
}

impl LocalMax {
    /// Nothing seen yet (renders as 0).
    pub const fn new() -> LocalMax {
        LocalMax { nanos: 0 }
    }

    /// Keep `elapsed` if it is the longest so far.
    pub fn observe(&mut self, elapsed: Duration) {
        self.nanos = self.nanos.max(nanos(elapsed));
    }

    /// The longest so far.
    pub fn get(&self) -> Duration {
        Duration::from_nanos(self.nanos)
    }
}

impl Metric for LocalMax {
    const KIND: Kind = Kind::Gauge;

    fn encode(&self, enc: &mut Encoder<'_>, name: &str, labels: &[(&str, &str)]) {
        enc.sample(name, "", labels, None, Number::Nanos(self.nanos));
    }
}

/// A duration in whole nanoseconds, saturating (after 584 years) instead of wrapping.
pub(super) fn nanos(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}
