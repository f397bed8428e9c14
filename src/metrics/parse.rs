//! A strict parser of the text format, for tests only (the library's, and the integration tests',
//! which include this file): it turns a rendered exposition back
//! into samples, and refuses anything Prometheus would refuse that an encoder could plausibly
//! get wrong — and, stricter than Prometheus, anything this encoder never writes (blank lines,
//! untyped samples, spaces inside braces), so a change in the output is noticed.
//!
//! Checked: a `# TYPE` before a family's first sample, HELP and TYPE at most once each and
//! never after samples, each family in one block, names and label names valid, label values
//! and HELP text escaped correctly (`\\`, `\"`, `\n` only), no series twice, counters named
//! `*_total` and never negative, and histograms whole: `le` increasing, bucket counts
//! cumulative, a last `le="+Inf"`, a `_sum`, and a `_count` equal to the `+Inf` bucket.

use std::collections::{BTreeMap, HashSet};

// Through the module's re-exports, not `super::encode`: the integration tests include this
// same file (`tests/common/metrics.rs`) beside the library's public names.
use super::{is_label_name, is_metric_name};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In the order they were written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A family's header.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyHeader {
    pub name: String,
    pub kind: String,
    pub help: Option<String>,
}

/// A parsed exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    pub families: Vec<FamilyHeader>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the sample named `name` with exactly these labels (in any order).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut wanted: Vec<(&str, &str)> = labels.to_vec();
        wanted.sort_unstable();
        self.samples
            .iter()
            .find(|sample| {
                let mut have: Vec<(&str, &str)> = sample
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                have.sort_unstable();
                sample.name == name && have == wanted
            })
            .map(|sample| sample.value)
    }

    /// The header of family `name`.
    pub fn family(&self, name: &str) -> Option<&FamilyHeader> {
        self.families.iter().find(|family| family.name == name)
    }
}

/// A histogram series' lines, gathered for the checks at the end.
#[derive(Default)]
struct HistogramSeries {
    buckets: Vec<(f64, f64)>,
    sum: Option<f64>,
    count: Option<f64>,
}

/// Parse `text`, or say which line is wrong and why.
pub fn parse(text: &str) -> Result<Exposition, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the last line does not end with a newline".into());
    }
    let mut exposition = Exposition::default();
    // Family index, and whether it has samples yet.
    let mut current: Option<(usize, bool)> = None;
    let mut series_seen = HashSet::new();
    // (family index, labels without `le`) → lines, for the histogram checks.
    let mut histograms: BTreeMap<(usize, Vec<(String, String)>), HistogramSeries> = BTreeMap::new();

    for (number, line) in text.split_terminator('\n').enumerate() {
        let at = |why: String| format!("line {}: {why}: {line:?}", number + 1);
        if line.is_empty() {
            return Err(at("empty line".into()));
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let index = header_family(&mut exposition, &mut current, name).map_err(at)?;
            let family = &mut exposition.families[index];
            if family.help.is_some() {
                return Err(at("a second HELP line".into()));
            }
            family.help = Some(unescape_help(help).map_err(at)?);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without a type".into()))?;
            if !matches!(
                kind,
                "counter" | "gauge" | "histogram" | "summary" | "untyped"
            ) {
                return Err(at(format!("unknown type {kind:?}")));
            }
            let index = header_family(&mut exposition, &mut current, name).map_err(at)?;
            let family = &mut exposition.families[index];
            if !family.kind.is_empty() {
                return Err(at("a second TYPE line".into()));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(at("a counter whose name does not end in _total".into()));
            }
            family.kind = kind.to_owned();
        } else if line.starts_with('#') {
            // Any other comment is allowed and ignored.
        } else {
            let sample = parse_sample(line).map_err(at)?;
            let Some((index, has_samples)) = current.as_mut() else {
                return Err(at("a sample before any TYPE line".into()));
            };
            *has_samples = true;
            let family = &exposition.families[*index];
            let suffix = sample
                .name
                .strip_prefix(family.name.as_str())
                .ok_or_else(|| at(format!("a sample outside its family {:?}", family.name)))?;
            let has_le = sample.labels.iter().any(|(k, _)| k == "le");
            match (family.kind.as_str(), suffix) {
                ("", _) => return Err(at("a sample of a family without a TYPE line".into())),
                ("counter", "") if sample.value >= 0.0 && !has_le => {}
                ("counter", "") => return Err(at("a negative or NaN counter".into())),
                ("gauge", "") if !has_le => {}
                ("histogram", "_bucket" | "_sum" | "_count") => {
                    if has_le != (suffix == "_bucket") {
                        return Err(at(
                            "le on a histogram line other than _bucket, or a _bucket without le"
                                .into(),
                        ));
                    }
                    let mut rest = Vec::new();
                    let mut le = None;
                    for (k, v) in &sample.labels {
                        if k == "le" {
                            le = Some(parse_value(v).map_err(&at)?);
                        } else {
                            rest.push((k.clone(), v.clone()));
                        }
                    }
                    rest.sort();
                    let series = histograms.entry((*index, rest)).or_default();
                    match (suffix, le) {
                        ("_bucket", Some(le)) => series.buckets.push((le, sample.value)),
                        ("_sum", _) if series.sum.is_none() => series.sum = Some(sample.value),
                        ("_count", _) if series.count.is_none() => {
                            series.count = Some(sample.value)
                        }
                        _ => return Err(at("a duplicate series".into())),
                    }
                }
                (kind, _) => {
                    return Err(at(format!(
                        "a sample this encoder never writes for a {kind}"
                    )))
                }
            }
            let mut key = sample.labels.clone();
            key.sort();
            if !series_seen.insert((sample.name.clone(), key)) {
                return Err(at("a duplicate series".into()));
            }
            exposition.samples.push(sample);
        }
    }

    for ((index, labels), series) in &histograms {
        let at = |why: &str| {
            format!(
                "histogram {} {labels:?}: {why}",
                exposition.families[*index].name
            )
        };
        let Some(&(last_le, last_count)) = series.buckets.last() else {
            return Err(at("no buckets"));
        };
        for pair in series.buckets.windows(2) {
            let ((le0, count0), (le1, count1)) = (pair[0], pair[1]);
            if le0.is_nan() || le1.is_nan() || le0 >= le1 {
                return Err(at("le not strictly increasing"));
            }
            if count1 < count0 {
                return Err(at("bucket counts not cumulative"));
            }
        }
        if last_le != f64::INFINITY {
            return Err(at("no le=\"+Inf\" bucket last"));
        }
        if series.sum.is_none() {
            return Err(at("no _sum"));
        }
        if series.count != Some(last_count) {
            return Err(at("_count differs from the +Inf bucket"));
        }
    }
    Ok(exposition)
}

/// The family a HELP or TYPE line names: the current one, or a new one. A family named again
/// after another began, or after its samples, is refused.
fn header_family(
    exposition: &mut Exposition,
    current: &mut Option<(usize, bool)>,
    name: &str,
) -> Result<usize, String> {
    if !is_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    if let Some((index, has_samples)) = *current {
        if exposition.families[index].name == name {
            if has_samples {
                return Err("HELP or TYPE after the family's samples".into());
            }
            return Ok(index);
        }
    }
    if exposition.family(name).is_some() {
        return Err(format!("family {name:?} appears twice"));
    }
    exposition.families.push(FamilyHeader {
        name: name.to_owned(),
        kind: String::new(),
        help: None,
    });
    let index = exposition.families.len() - 1;
    *current = Some((index, false));
    Ok(index)
}

/// `name{label="value",…} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels: Vec<(String, String)> = Vec::new();
    if let Some(mut inside) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = inside.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = inside.split_once("=\"").ok_or("a label without =\"")?;
            if !is_label_name(label) {
                return Err(format!("invalid label name {label:?}"));
            }
            if labels.iter().any(|(k, _)| k == label) {
                return Err(format!("label {label:?} twice"));
            }
            let (value, after) = unescape_label_value(after)?;
            labels.push((label.to_owned(), value));
            inside = after.strip_prefix(',').unwrap_or(after);
            if !after.starts_with([',', '}']) {
                return Err("labels not separated by a comma".into());
            }
        }
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let (value, timestamp) = match rest.split_once(' ') {
        Some((value, timestamp)) => (value, Some(timestamp)),
        None => (rest, None),
    };
    if let Some(timestamp) = timestamp {
        let digits = timestamp.strip_prefix('-').unwrap_or(timestamp);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("bad timestamp {timestamp:?}"));
        }
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value)?,
    })
}

/// A quoted label value's text up to its closing quote, unescaped, and what follows the quote.
fn unescape_label_value(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((k, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[k + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                other => return Err(format!("bad escape in a label value: {other:?}")),
            },
            c => value.push(c),
        }
    }
    Err("an unterminated label value".into())
}

/// HELP text: only `\\` and `\n` are escapes.
fn unescape_help(text: &str) -> Result<String, String> {
    let mut help = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => help.push('\\'),
                Some('n') => help.push('\n'),
                other => return Err(format!("bad escape in HELP: {other:?}")),
            },
            c => help.push(c),
        }
    }
    Ok(help)
}

/// Go `ParseFloat` syntax as Prometheus writes it: `+Inf`, `-Inf`, `NaN`, or a decimal
/// number with an optional sign, fraction and exponent. Rust's parser alone would also take
/// `inf` and `infinity` in any case.
fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" | "Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        "NaN" => return Ok(f64::NAN),
        _ => {}
    }
    let digits_ok = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    if !digits_ok || !text.bytes().any(|b| b.is_ascii_digit()) {
        return Err(format!("bad number {text:?}"));
    }
    text.parse().map_err(|_| format!("bad number {text:?}"))
}

/// Run `promtool check metrics` (Prometheus's own parser and lint rules) on `text`: `Ok` if it
/// accepts it, `Err` with what it said if not. Where promtool is not installed, a note and `Ok`
/// — unless `EVLOOP_REQUIRE_PROMTOOL` is set (CI installs promtool and sets it), then `Err`.
pub fn promtool_check(text: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) if std::env::var_os("EVLOOP_REQUIRE_PROMTOOL").is_some() => {
            return Err(format!("promtool is required here: {error}"));
        }
        Err(error) => {
            eprintln!("promtool not found ({error}): skipping; apt-get install prometheus");
            return Ok(());
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text)
            .map_err(|e| format!("writing to promtool: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("promtool: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "promtool check metrics failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
