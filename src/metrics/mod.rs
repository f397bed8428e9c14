//! Prometheus metrics: counting on the hot path, and the text a `/metrics` scrape reads.
//!
//! The metric types, evloop's families ([`Registry`]) and the encoder are socket-free; the
//! reactor owns a `Registry`, counts into it, and `GET /metrics` renders it (see "How it is
//! wired" below for what is counted where, and what is not yet).
//!
//! # Theory of operation
//!
//! **Why no locks.** The reactor counts something on nearly every step of a turn: a turn, a
//! read, a request, a state change. A mutex there would be taken thousands of times a second by
//! the one thread that must never wait; a hash map of series would hash a label string on every
//! request. So every metric is a fixed integer slot, and who may write it is decided by its
//! type:
//!
//! - **Reactor-owned** ([`LocalCounter`], [`LocalGauge`], [`LocalMax`], [`LocalHistogram`],
//!   gathered in [`ReactorMetrics`]): plain `u64`/`i64` fields, updated through `&mut self`.
//!   Only the reactor thread counts them, and `/metrics` will be rendered on that same thread
//!   (it is a route like any other), so nobody else ever reads them. No atomics, no `Cell`: the
//!   borrow checker is the proof that there is one owner.
//! - **Shared** ([`Counter`], [`Gauge`], [`Histogram`], gathered in [`PoolMetrics`]
//!   behind an `Arc`, and the levels a scrape reads in through `&self`): `AtomicU64`/`AtomicI64` updated with `Ordering::Relaxed`, because each
//!   value stands alone — no reader infers anything from the order two metrics changed in, and
//!   `Relaxed` still loses no increment and tears no value.
//!
//! **Why fixed label tables.** Every label's values are known before the first request: the
//! router's routes at start-up, status classes and reasons as enums ([`LabelValue`]). A
//! [`Family`] is one flat array with a slot per combination, indexed by small ids; the series
//! count is bounded by construction, and a path no route matched is counted as
//! [`UNMATCHED_ROUTE`], never under its raw text (which would let any client create series).
//!
//! **Cost per observation.** No allocation anywhere after construction. Reactor-owned: one
//! `add` to a field already in cache (a family adds a bounds check and a multiply-add to find
//! the slot). Worker-published: one uncontended `lock xadd` on x86-64. A histogram
//! observation is a binary search over its static bounds (four or five comparisons for 16
//! buckets) and two adds — the bucket and the sum; the count is the sum of the buckets, so it
//! costs nothing and always equals the `+Inf` bucket. Durations are kept as integer
//! **nanoseconds** (sums included), sizes as bytes.
//!
//! **Rendering.** [`Registry::render`] clears a caller's `Vec<u8>` (which the reactor can keep
//! from scrape to scrape, so rendering stops allocating after the first) and writes each family
//! with the [`Encoder`]: `# HELP` and `# TYPE` once, then one line per series; histogram buckets
//! are made cumulative as they are written. Nanoseconds are printed as exact decimal seconds
//! from integers (no float, no locale), infinity as `+Inf`. The response's `Content-Type` is
//! [`CONTENT_TYPE`]. Reading the worker atomics while workers write them gives a snapshot that
//! may be a few observations apart between families, as in every Prometheus client.
//!
//! # The families
//!
//! | name | type | labels | alert on |
//! |---|---|---|---|
//! | `evloop_reactor_turn_seconds` | histogram | | p99 in the milliseconds: a handler blocks the loop |
//! | `evloop_reactor_turn_max_seconds` | gauge | | any jump: the longest stall since start ("loop lag") |
//! | `evloop_reactor_wakeups_total` | counter | | rate far below the job rate is fine (wakes coalesce) |
//! | `evloop_connections` | gauge | `state` | many in `reading_head` for long: slowloris |
//! | `evloop_connections_accepted_total` | counter | | |
//! | `evloop_connections_refused_total` | counter | `reason` | any `file_limit`; sustained `max_connections` |
//! | `evloop_connections_closed_total` | counter | `reason` | rising `header_timeout`/`error` |
//! | `evloop_requests_total` | counter | `route`, `status` | `5xx` ratio |
//! | `evloop_request_duration_seconds` | histogram | `route` | p99 per route against its objective |
//! | `evloop_requests_rejected_total` | counter | `reason` | any `queue_full`: the pool is saturated |
//! | `evloop_received_bytes_total`, `evloop_sent_bytes_total` | counter | | |
//! | `evloop_access_log_dropped_lines_total` | counter | | any: stderr is read too slowly |
//! | `evloop_outbound_calls_total` | counter | `upstream`, `outcome` | `timeout`/`connect_failed` ratio |
//! | `evloop_outbound_connections` | gauge | `state` | |
//! | `evloop_pool_workers`, `evloop_pool_busy_workers` | gauge | | busy = workers for minutes |
//! | `evloop_pool_queue_depth` | gauge | | near `--queue`: 503s are next |
//! | `evloop_pool_queue_wait_seconds` | histogram | | p99 rising: too few workers |
//! | `evloop_pool_job_run_seconds` | histogram | | |
//! | `evloop_pool_jobs_total` | counter | `outcome` | any `panicked`; `cancelled` rising (wasted work) |
//! | `process_start_time_seconds` | gauge | | restarts |
//!
//! # How it is wired
//!
//! - `Server::run` builds the `Registry` from [`crate::router::Router::paths`] (one `route`
//!   label per path; [`crate::router::Router::route_index`] names a request's) and the pool's
//!   size. The reactor owns it and lends it to connections in `TurnContext::metrics`.
//! - The reactor counts turns (step 9), wake-ups, accepts, evictions and refusals, calls
//!   upstream as their results are taken, and pool jobs as their completions arrive
//!   (`Completion` carries queue wait and run time; a job whose client had left counts as
//!   `cancelled`). The workers count nothing.
//! - A connection counts bytes in (each read) and out (what it hands to the socket), and each
//!   response where it writes its access-log line: by route, status class, and the time from
//!   dispatch (the turn's clock, so a response answered within its turn counts as 0 s). The
//!   reactor asks it after every `drive` whether its state moved, for `evloop_connections`, and
//!   on close why it closed.
//! - `GET /metrics` is an ordinary route; the connection lends its handler a [`Scrape`]
//!   through `Context::metrics`, which reads the pool's busy workers and queue depth and the
//!   upstream connections into the registry, then renders.
//!
//! - Refusals the pipeline makes are counted where they happen: `queue_full` by the
//!   connection's scheduler when the pool turns a job away, `deadline` for each request the
//!   pipeline expires with a 504; the refusals of malformed or oversized requests where the
//!   connection answers them.
//! - Calls upstream are counted by `upstream` (the `--upstream` address; any other address as
//!   `other`) and `outcome` as their results are taken; a cancelled call has no result, so
//!   `Outbound` lists the upstreams of the calls it cancelled and the reactor counts them in
//!   the same step.
//!
//! # Files
//!
//! - `local.rs`: reactor-owned counter, gauge and maximum;
//! - `atomic.rs`: worker-published counter and gauge;
//! - `histogram.rs`: both histograms, their units and bucket bounds;
//! - `family.rs`: labels and labelled families;
//! - `encode.rs`: the text exposition format 0.0.4;
//! - `registry.rs`: evloop's families, their label enums, and `render`;
//! - `vitals.rs`: the frames of `GET /events/loop`, published by the reactor for the pool jobs
//!   that stream them (its module docs say why it is built that way);
//! - `parse.rs` (tests only): a strict parser of the format; `tests.rs`: the encoder checked
//!   against it and against `promtool`.

mod atomic;
mod encode;
mod family;
mod histogram;
mod local;
mod merge;
mod registry;
pub mod shared;
pub mod vitals;

#[cfg(test)]
mod parse;
#[cfg(test)]
mod tests;

pub use atomic::{Counter, Gauge};
pub use encode::{
    escape_help, escape_label_value, is_label_name, is_metric_name, write_number, Encoder, Kind,
    Metric, Number, CONTENT_TYPE,
};
pub use family::{Family, Label, LabelValue};
pub use histogram::{Histogram, LocalHistogram, Unit, LATENCY_BOUNDS, TURN_BOUNDS};
pub use local::{LocalCounter, LocalGauge, LocalMax};
pub use registry::{
    CallOutcome, CloseReason, ConnectionState, JobEnd, PoolMetrics, ReactorMetrics, Refusal,
    Registry, Rejection, Scrape, StatusClass, UpstreamState, UNMATCHED_ROUTE,
};
