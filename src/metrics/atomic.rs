//! Metrics that worker threads publish: one `AtomicU64`/`AtomicI64` each, updated with
//! `Relaxed` ordering.
//!
//! `Relaxed` is enough because nothing is inferred from the *order* in which two metrics change:
//! each value is a running total read on its own, and a `/metrics` scrape that sees a job's
//! `run` observation a moment before its `done` count is as correct as one that sees both. What
//! `Relaxed` still guarantees is what a counter needs: no increment is lost, and a reader never
//! sees a torn value. On x86-64 an uncontended `fetch_add` is one `lock xadd` (some tens of
//! cycles at worst); nothing blocks, nothing allocates.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::encode::{Encoder, Kind, Metric, Number};

/// A count that only goes up, shared by `&self` between threads (`evloop_*_total`).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// A counter at zero.
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    /// Count one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Count `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Metric for Counter {
    const KIND: Kind = Kind::Counter;

    fn encode(&self, enc: &mut Encoder<'_>, name: &str, labels: &[(&str, &str)]) {
        enc.sample(name, "", labels, None, Number::Count(self.get()));
    }
}

/// A level that goes up and down, shared by `&self` between threads: busy workers, queue depth.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// A gauge at zero.
    pub const fn new() -> Gauge {
        Gauge(AtomicI64::new(0))
    }

    /// Set the level (for a value read from elsewhere just before rendering, like queue depth).
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// One more.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// One fewer.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// The level now.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Metric for Gauge {
    const KIND: Kind = Kind::Gauge;

    fn encode(&self, enc: &mut Encoder<'_>, name: &str, labels: &[(&str, &str)]) {
        enc.sample(name, "", labels, None, Number::Level(self.get()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Increments from several threads at once are all counted (Relaxed loses none).
    #[test]
    fn concurrent_increments_are_not_lost() {
        let counter = Arc::new(Counter::new());
        let gauge = Arc::new(Gauge::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (counter, gauge) = (Arc::clone(&counter), Arc::clone(&gauge));
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        counter.inc();
                        gauge.inc();
                        gauge.dec();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("the thread does not panic");
        }
        assert_eq!(counter.get(), 40_000);
        assert_eq!(gauge.get(), 0);
    }
}
