//! The Prometheus text exposition format, version 0.0.4.
//!
//! <https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format>. Per family:
//!
//! ```text
//! # HELP evloop_requests_total Requests answered, by route and status class.
//! # TYPE evloop_requests_total counter
//! evloop_requests_total{route="/cpu",status="2xx"} 17
//! ```
//!
//! The rules this encoder keeps, each one a way Prometheus rejects a scrape or misreads it:
//!
//! - `# HELP` and `# TYPE` once per family, before its first sample. In 0.0.4 a counter's family
//!   name is its sample name, `_total` included (OpenMetrics would strip it).
//! - A histogram is cumulative `name_bucket{…,le="…"}` series in increasing `le`, ending with
//!   `le="+Inf"`, then `name_sum` and `name_count`, where `_count` equals the `+Inf` bucket.
//! - Label values escape `\`, `"` and newline as `\\`, `\"`, `\n`; HELP text escapes `\` and
//!   newline. Nothing else may be escaped.
//! - Numbers are Go `ParseFloat` syntax: `+Inf`, `-Inf`, `NaN`, or decimal digits. Nothing here
//!   depends on a locale: integers go through `itoa`, durations are printed as exact decimal
//!   seconds from integer nanoseconds, and floats (rare) through Rust's `Display`, which is
//!   locale-free and never uses a comma.
//!
//! The encoder appends to a caller's `Vec<u8>`, so the reactor can keep one buffer and reuse
//! it for every scrape.

use std::io::Write;

use super::histogram::Unit;

/// The `Content-Type` of a response carrying this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A family's `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets to zero when the process restarts); named `*_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted into buckets, with their sum and count.
    Histogram,
}

impl Kind {
    /// As written after `# TYPE name`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample's value, kept as what it was measured in until it is printed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// A count.
    Count(u64),
    /// A level that may be negative.
    Level(i64),
    /// Nanoseconds, printed as exact decimal seconds (`1500000` → `0.0015`).
    Nanos(u64),
    /// Anything else; infinities print as `+Inf`/`-Inf`, NaN as `NaN`.
    Float(f64),
}

/// A metric that can write its own samples, given its family's name and a series' labels.
pub trait Metric {
    /// The family's `# TYPE`.
    const KIND: Kind;
    /// Write this metric's sample lines (one, or a histogram's several).
    fn encode(&self, enc: &mut Encoder<'_>, name: &str, labels: &[(&str, &str)]);
}

/// Writes families into a buffer, one after another.
pub struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    /// A label written first on every sample (`pid` with several processes).
    constant: Option<(&'a str, &'a str)>,
}

impl<'a> Encoder<'a> {
    /// An encoder appending to `out` (which it does not clear).
    pub fn new(out: &'a mut Vec<u8>) -> Encoder<'a> {
        Encoder {
            out,
            constant: None,
        }
    }

    /// An encoder that also puts `label="value"` first on every sample it writes.
    pub fn with_label(out: &'a mut Vec<u8>, label: &'a str, value: &'a str) -> Encoder<'a> {
        debug_assert!(is_label_name(label) && label != "le");
        Encoder {
            out,
            constant: Some((label, value)),
        }
    }

    /// A family of one series without labels.
    pub fn metric<M: Metric>(&mut self, name: &str, help: &str, metric: &M) {
        self.header(name, help, M::KIND);
        metric.encode(self, name, &[]);
    }

    /// A labelled family: every series of the table.
    pub fn family<M: Metric, const N: usize>(
        &mut self,
        name: &str,
        help: &str,
        family: &super::Family<M, N>,
    ) {
        self.header(name, help, M::KIND);
        family.encode(self, name);
    }

    /// `# HELP` and `# TYPE` for a family.
    pub fn header(&mut self, name: &str, help: &str, kind: Kind) {
        debug_assert!(is_metric_name(name), "invalid metric name {name:?}");
        debug_assert!(
            kind != Kind::Counter || name.ends_with("_total"),
            "counter {name:?} must end in _total"
        );
        self.out.extend_from_slice(b"# HELP ");
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b' ');
        escape_help(self.out, help);
        self.out.extend_from_slice(b"\n# TYPE ");
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b' ');
        self.out.extend_from_slice(kind.as_str().as_bytes());
        self.out.push(b'\n');
    }

    /// One sample line: `name+suffix{labels,le="…"} value`.
    pub fn sample(
        &mut self,
        name: &str,
        suffix: &str,
        labels: &[(&str, &str)],
        le: Option<Number>,
        value: Number,
    ) {
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(suffix.as_bytes());
        if !labels.is_empty() || le.is_some() || self.constant.is_some() {
            self.out.push(b'{');
            for (k, (label, label_value)) in self.constant.iter().chain(labels).enumerate() {
                if k > 0 {
                    self.out.push(b',');
                }
                self.out.extend_from_slice(label.as_bytes());
                self.out.extend_from_slice(b"=\"");
                escape_label_value(self.out, label_value);
                self.out.push(b'"');
            }
            if let Some(le) = le {
                if !labels.is_empty() || self.constant.is_some() {
                    self.out.push(b',');
                }
                // A number needs no escaping: digits, '.', '+', '-', "Inf", "NaN".
                self.out.extend_from_slice(b"le=\"");
                write_number(self.out, le);
                self.out.push(b'"');
            }
            self.out.push(b'}');
        }
        self.out.push(b' ');
        write_number(self.out, value);
        self.out.push(b'\n');
    }

    /// A histogram's series: cumulative buckets from non-cumulative `counts` (one per bound,
    /// then the `+Inf` bucket), then `_sum` and `_count`.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        unit: Unit,
        bounds: &[u64],
        counts: impl Iterator<Item = u64>,
        sum: u64,
    ) {
        debug_assert!(labels.iter().all(|(label, _)| *label != "le"));
        let in_unit = |value: u64| match unit {
            Unit::Seconds => Number::Nanos(value),
            Unit::Bytes => Number::Count(value),
        };
        let mut cumulative = 0u64;
        let mut counts = counts;
        for &bound in bounds {
            cumulative = cumulative.wrapping_add(counts.next().unwrap_or(0));
            let le = Some(in_unit(bound));
            self.sample(name, "_bucket", labels, le, Number::Count(cumulative));
        }
        cumulative = cumulative.wrapping_add(counts.next().unwrap_or(0));
        let le = Some(Number::Float(f64::INFINITY));
        self.sample(name, "_bucket", labels, le, Number::Count(cumulative));
        self.sample(name, "_sum", labels, None, in_unit(sum));
        self.sample(name, "_count", labels, None, Number::Count(cumulative));
    }
}

/// A label value between its double quotes: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label_value(out: &mut Vec<u8>, value: &str) {
    for byte in value.bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            // Any other byte, UTF-8 continuation bytes included, goes through as it is.
            _ => out.push(byte),
        }
    }
}

/// HELP text: `\` → `\\`, newline → `\n`. (A `"` is not escaped here: the format says so.)
pub fn escape_help(out: &mut Vec<u8>, help: &str) {
    for byte in help.bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(byte),
        }
    }
}

/// A number as Prometheus parses it.
pub fn write_number(out: &mut Vec<u8>, number: Number) {
    match number {
        Number::Count(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        Number::Level(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        Number::Nanos(n) => write_seconds(out, n),
        Number::Float(x) if x.is_nan() => out.extend_from_slice(b"NaN"),
        Number::Float(x) if x == f64::INFINITY => out.extend_from_slice(b"+Inf"),
        Number::Float(x) if x == f64::NEG_INFINITY => out.extend_from_slice(b"-Inf"),
        // `Display` for f64 prints the shortest decimal that reads back as the same value,
        // without an exponent, and with a '.' whatever the locale. Writing to a Vec cannot fail.
        Number::Float(x) => {
            let _ = write!(out, "{x}");
        }
    }
}

/// Nanoseconds as exact decimal seconds, trailing zeros trimmed: 5_000_000 → `0.005`,
/// 2_000_000_000 → `2`.
fn write_seconds(out: &mut Vec<u8>, nanos: u64) {
    let (seconds, fraction) = (nanos / 1_000_000_000, nanos % 1_000_000_000);
    out.extend_from_slice(itoa::Buffer::new().format(seconds).as_bytes());
    if fraction > 0 {
        let digits = format_fraction(fraction);
        out.push(b'.');
        out.extend_from_slice(
            &digits[..digits.iter().rposition(|&d| d != b'0').map_or(0, |k| k + 1)],
        );
    }
}

/// The nine digits of a fraction of a second, zero-padded on the left.
fn format_fraction(mut fraction: u64) -> [u8; 9] {
    let mut digits = [b'0'; 9];
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (fraction % 10) as u8;
        fraction /= 10;
    }
    digits
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`: a metric name.
pub fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved for Prometheus itself).
pub fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with("__")
}
