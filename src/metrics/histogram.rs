//! Histograms with fixed bucket bounds: one for worker threads (atomic), one for the reactor.
//!
//! An observation costs a binary search over a short static slice of bounds (four or five
//! comparisons for 16 buckets) and two additions: one to the bucket the value falls in, one to
//! the sum. Buckets are stored *non-cumulative* (each observation touches one bucket, not every
//! bucket above it) and summed into Prometheus's cumulative `le` series only when rendering.
//! The count is not stored at all: it is the sum of the buckets, so `_count` always equals the
//! `+Inf` bucket, even when a scrape races with an observation.
//!
//! Values are integers in the histogram's [`Unit`]: durations as **nanoseconds**, sizes as
//! bytes. Integer bounds make the search exact (no float compare of a value that was rounded
//! on the way in) and let the encoder print `le` and `_sum` in seconds without a float ever
//! being formatted. A `u64` sum of nanoseconds overflows after 584 years of summed time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::encode::{Encoder, Kind, Metric};
use super::local::nanos;

/// What a histogram's integers mean, and how they are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Observed and stored as nanoseconds, rendered as seconds (Prometheus's base unit).
    Seconds,
    /// Observed, stored and rendered as bytes.
    Bytes,
}

/// How long one reactor turn takes: mostly microseconds; anything past a few milliseconds is a
/// handler doing work that belongs on the pool. Nanoseconds.
pub const TURN_BOUNDS: &[u64] = &[
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
];

/// Request duration, queue wait and job run time: from a cached answer in tens of microseconds
/// to an audio analysis of seconds. Nanoseconds.
pub const LATENCY_BOUNDS: &[u64] = &[
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];

/// Which bucket `value` falls in: the first whose bound is `>= value` (Prometheus's `le`), or
/// `bounds.len()` (the `+Inf` bucket) if it is above them all.
fn bucket_of(bounds: &[u64], value: u64) -> usize {
    bounds.partition_point(|&bound| bound < value)
}

/// Bounds must go strictly up, or two `le` series would claim the same values.
fn check_bounds(bounds: &[u64]) {
    assert!(
        bounds.windows(2).all(|pair| pair[0] < pair[1]),
        "histogram bounds must be strictly increasing: {bounds:?}"
    );
}

/// A histogram that worker threads observe into by `&self` (queue wait, job run time).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    unit: Unit,
    /// One per bound, plus the `+Inf` bucket last. Not cumulative.
    buckets: Box<[AtomicU64]>,
    /// Sum of every observation, in `unit`'s integers.
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram with these bucket upper bounds (inclusive, strictly increasing, in `unit`'s
    /// integers). Allocates its buckets here, once.
    pub fn new(bounds: &'static [u64], unit: Unit) -> Histogram {
        check_bounds(bounds);
        Histogram {
            bounds,
            unit,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Observe a duration (for a [`Unit::Seconds`] histogram).
    pub fn observe(&self, elapsed: Duration) {
        self.observe_value(nanos(elapsed));
    }

    /// Observe a value in the histogram's unit (nanoseconds or bytes).
    pub fn observe_value(&self, value: u64) {
        self.buckets[bucket_of(self.bounds, value)].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Observations so far (the sum of the buckets).
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Sum of the observations so far, in the histogram's unit.
    pub fn sum(&self) -> u64 {
        self.sum.load(Ordering::Relaxed)
    }
}

impl Metric for Histogram {
    const KIND: Kind = Kind::Histogram;

    fn encode(&self, enc: &mut Encoder<'_>, name: &str, labels: &[(&str, &str)]) {
        let counts = self.buckets.iter().map(|b| b.load(Ordering::Relaxed));
        enc.histogram(name, labels, self.unit, self.bounds, counts, self.sum());
    }
}

/// A histogram the reactor owns and observes into by `&mut self` (turn and request duration).
#[derive(Debug, Clone)]
pub struct LocalHistogram {
    bounds: &'static [u64],
    unit: Unit,
    /// One per bound, plus the `+Inf` bucket last. Not cumulative.
    buckets: Box<[u64]>,
    /// Sum of every observation, in `unit`'s integers.
    sum: u64,
}

impl LocalHistogram {
    /// A histogram with these bucket upper bounds (inclusive, strictly increasing, in `unit`'s
    /// integers). Allocates its buckets here, once.
    pub fn new(bounds: &'static [u64], unit: Unit) -> LocalHistogram {
        check_bounds(bounds);
        LocalHistogram {
            bounds,
            unit,
            buckets: vec![0; bounds.len() + 1].into_boxed_slice(),
            sum: 0,
        }
    }

    /// Observe a duration (for a [`Unit::Seconds`] histogram).
    pub fn observe(&mut self, elapsed: Duration) {
        self.observe_value(nanos(elapsed));
    }

    /// Observe a value in the histogram's unit (nanoseconds or bytes).
    pub fn observe_value(&mut self, value: u64) {
        let bucket = &mut self.buckets[bucket_of(self.bounds, value)];
        *bucket = bucket.wrapping_add(1);
        self.sum = self.sum.wrapping_add(value);
    }

    /// Observations so far (the sum of the buckets).
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Sum of the observations so far, in the histogram's unit.
    pub fn sum(&self) -> u64 {
        self.sum
    }
}

impl Metric for LocalHistogram {
    const KIND: Kind = Kind::Histogram;

    fn encode(&self, enc: &mut Encoder<'_>, name: &str, labels: &[(&str, &str)]) {
        let counts = self.buckets.iter().copied();
        enc.histogram(name, labels, self.unit, self.bounds, counts, self.sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value equal to a bound falls in that bound's bucket (`le` is "less or equal");
    /// one above every bound falls in `+Inf`.
    #[test]
    fn bounds_are_inclusive() {
        let bounds = &[10, 20, 30];
        assert_eq!(bucket_of(bounds, 0), 0);
        assert_eq!(bucket_of(bounds, 10), 0);
        assert_eq!(bucket_of(bounds, 11), 1);
        assert_eq!(bucket_of(bounds, 30), 2);
        assert_eq!(bucket_of(bounds, 31), 3);
        assert_eq!(bucket_of(bounds, u64::MAX), 3);
    }

    /// Count is the sum of the buckets; the sum is the sum of the values.
    #[test]
    fn count_and_sum() {
        let shared = Histogram::new(&[10, 20], Unit::Bytes);
        let mut local = LocalHistogram::new(&[10, 20], Unit::Bytes);
        for value in [5, 15, 25, 10] {
            shared.observe_value(value);
            local.observe_value(value);
        }
        assert_eq!((shared.count(), shared.sum()), (4, 55));
        assert_eq!((local.count(), local.sum()), (4, 55));
    }

    /// Durations are kept in nanoseconds.
    #[test]
    fn durations_are_nanoseconds() {
        let mut local = LocalHistogram::new(TURN_BOUNDS, Unit::Seconds);
        local.observe(Duration::from_micros(10));
        local.observe(Duration::from_micros(11));
        assert_eq!(local.buckets[0], 1);
        assert_eq!(local.buckets[1], 1);
        assert_eq!(local.sum(), 21_000);
    }

    /// Bounds out of order are a bug caught at construction.
    #[test]
    #[should_panic(expected = "strictly increasing")]
    fn unordered_bounds_are_refused() {
        let _ = LocalHistogram::new(&[10, 10], Unit::Bytes);
    }

    /// The built-in bounds are valid.
    #[test]
    fn built_in_bounds_are_increasing() {
        check_bounds(TURN_BOUNDS);
        check_bounds(LATENCY_BOUNDS);
    }
}
