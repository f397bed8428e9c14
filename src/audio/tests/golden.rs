//! Every way of running the analysis gives the results of the record
//! (`testdata/analyze_golden.json`, written by the one-pass `analyze`: first before the split
//! and the progressive analysis existed, and again by [`record_the_golden_file`] each time the
//! estimators changed on purpose): every number to the last bit, and the `/analyze` JSON byte
//! for byte, on every fixture that decodes, at six hop and threshold settings.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

use super::*;

/// The record: `"<fixture> <hop> <threshold>"` → the `/analyze` JSON and the unrounded
/// reports (numbers as strings of their shortest exact decimal form).
const GOLDEN: &str = include_str!("../testdata/analyze_golden.json");

/// One fixture, decoded, with the recorded results for each setting.
struct Case {
    name: String,
    clip: Clip,
    settings: Vec<(VadParams, Value)>,
}

/// The fixtures, decoded once for all the tests here (decoding them takes a while in a debug
/// build).
fn cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(read_cases)
}

fn read_cases() -> Vec<Case> {
    let golden: serde_json::Map<String, Value> = match serde_json::from_str(GOLDEN) {
        Ok(map) => map,
        Err(e) => panic!("testdata/analyze_golden.json: {e}"),
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio");
    let a = analyzer();
    let mut cases: Vec<Case> = Vec::new();
    for (key, want) in golden {
        let mut words = key.split(' ');
        let (Some(name), Some(hop), Some(threshold)) = (words.next(), words.next(), words.next())
        else {
            panic!("bad key {key}")
        };
        let params = VadParams {
            hop: hop.parse().unwrap_or_else(|e| panic!("{key}: {e}")),
            threshold: threshold.parse().unwrap_or_else(|e| panic!("{key}: {e}")),
        };
        if cases.last().is_none_or(|c| c.name != name) {
            let body = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let clip = a
                .decode(&body, 600.0, &never)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            cases.push(Case {
                name: name.to_string(),
                clip,
                settings: Vec::new(),
            });
        }
        if let Some(case) = cases.last_mut() {
            case.settings.push((params, want));
        }
    }
    assert_eq!(cases.len(), 23, "fixtures in the record");
    cases
}

/// `got` is the record `want`, bit for bit, and so is its JSON.
fn assert_recorded(
    what: &str,
    got: &(SnrReport, SpeakerReport),
    clip: &Clip,
    params: VadParams,
    want: &Value,
) {
    let (snr, speakers) = got;
    let json = analysis_json(snr, speakers, &clip.info, params).to_string();
    assert_eq!(Some(json.as_str()), want["json"].as_str(), "{what}");
    let bits = |v: Option<f64>| v.map(f64::to_bits);
    for (field, value) in [
        ("snr_db", snr.snr_db),
        ("snr_active_db", snr.snr_active_db),
        ("speech_ratio", snr.speech_ratio),
        ("wada_snr_db", snr.wada_snr_db),
    ] {
        // Written as strings: Rust's own parser rounds correctly, serde_json's may miss by one
        // unit in the last place.
        let recorded = want[field].as_str().map(|text| {
            text.parse::<f64>()
                .unwrap_or_else(|e| panic!("{what}: {field}: {e}"))
        });
        assert_eq!(bits(value), bits(recorded), "{what}: {field}");
    }
    assert_eq!(Some(snr.method), want["method"].as_str(), "{what}");
    let count = speakers.speakers.map(|k| k as u64);
    assert_eq!(count, want["speakers"].as_u64(), "{what}");
    assert_eq!(
        Some(speakers.segments as u64),
        want["segments"].as_u64(),
        "{what}"
    );
}

/// Run `analysis` on every recorded case (or only at the default settings) and compare.
fn each_case(
    all_settings: bool,

    analysis: impl Fn(&Analyzer, &Clip, VadParams) -> Result<(SnrReport, SpeakerReport), AudioError>,
) {
    let a = analyzer();
    for case in cases() {
        for (params, want) in &case.settings {
            if !all_settings && *params != VadParams::default() {
                continue;
            }
            let what = format!("{} {params:?}", case.name);
            match analysis(&a, &case.clip, *params) {
                Ok(got) => assert_recorded(&what, &got, &case.clip, *params, want),
                Err(e) => panic!("{what}: {e}"),
            }
        }
    }
}

/// The two reports `/analyze` runs as two jobs today. (At the default settings only: they
/// share every stage with `analyze`, which is checked at all six.)
#[test]
fn separate_reports_equal_the_record() {
    each_case(false, |a, clip, params| {
        Ok((
            a.snr(clip, params, &never)?,
            a.speakers(clip, params, &never)?,
        ))
    });
}

/// `analyze`, which runs the frame analysis once for both reports.
#[test]
fn one_analysis_equals_the_record() {
    each_case(true, |a, clip, params| a.analyze(clip, params, &never));
}

/// Two parts, handed to `finish` in either order.
#[test]
fn two_parts_equal_the_record() {
    each_case(true, |a, clip, params| {
        let part = |i| a.analyze_part(clip, i, 2, params, &never);
        let (first, second) = (part(0)?, part(1)?);
        a.finish(vec![second, first], &never)
    });
}

/// Three parts (at the default settings only).
#[test]
fn three_parts_equal_the_record() {
    each_case(false, |a, clip, params| {
        let part = |i| a.analyze_part(clip, i, 3, params, &never);
        a.finish(vec![part(0)?, part(1)?, part(2)?], &never)
    });
}

/// The progressive analysis' final result; its last progress event carries the final SNR
/// and speech ratio.
#[test]
fn progressive_equals_the_record() {
    each_case(true, |a, clip, params| {
        let mut last = None;
        let result = a.analyze_progressive(clip, params, &never, &mut |p| last = Some(p))?;
        let last = last.unwrap_or_else(|| panic!("no progress reported"));
        assert_eq!(
            (last.snr_db_so_far, last.speech_ratio_so_far),
            (result.0.snr_db, result.0.speech_ratio)
        );
        Ok(result)
    });
}

/// Rewrite the record from today's one-shot `analyze`, keeping its keys (fixtures and
/// settings). Run it when the estimators change on purpose, then read the diff:
/// `cargo test --lib record_the_golden_file -- --ignored`.
#[test]
#[ignore = "rewrites src/audio/testdata/analyze_golden.json"]
fn record_the_golden_file() {
    let a = analyzer();
    let mut lines = Vec::new();
    for case in cases() {
        for (params, _) in &case.settings {
            let (snr, speakers) = a
                .analyze(&case.clip, *params, &never)
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            let number = |v: Option<f64>| v.map_or(Value::Null, |v| Value::from(format!("{v:?}")));
            let entry = serde_json::json!({
                "json": analysis_json(&snr, &speakers, &case.clip.info, *params).to_string(),
                "snr_db": number(snr.snr_db),
                "snr_active_db": number(snr.snr_active_db),
                "speech_ratio": number(snr.speech_ratio),
                "wada_snr_db": number(snr.wada_snr_db),
                "method": snr.method,
                "speakers": speakers.speakers,
                "segments": speakers.segments,
            });
            let key = format!("{} {} {}", case.name, params.hop, params.threshold);
            lines.push(format!("  {}: {}", Value::from(key), entry));
        }
    }
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/audio/testdata/analyze_golden.json");
    std::fs::write(&path, format!("{{\n{}\n}}\n", lines.join(",\n"))).expect("write the record");
}
