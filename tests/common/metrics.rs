//! The strict parser of the Prometheus text format, shared with the library's unit tests.
//!
//! The library keeps it out of its public API (`#[cfg(test)]`): it is a test oracle, not a
//! feature. Rather than copy it, or publish it behind a cargo feature, this module includes the
//! very same file, so the scrape of a running server is held to exactly the checks the
//! encoder's own tests use. The file reaches the name checks through `super::`, which here are
//! the library's public ones.

pub use evloop::metrics::{is_label_name, is_metric_name};

#[path = "../../src/metrics/parse.rs"]
pub mod parse;
