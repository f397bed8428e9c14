//! Prometheus metrics: counting on the hot path, and the text a `/metrics` scrape reads.
//!
//! (Docs to come.)

mod atomic;
mod encode;
mod family;
mod histogram;
mod local;
mod registry;

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
    Registry, Rejection, StatusClass, UpstreamState, UNMATCHED_ROUTE,
};
