//! The JSON the audio endpoints answer with. Built here, next to the reports, so that every way
//! of running an analysis — one job, a gather of parts, the last event of a stream — answers
//! with the same bytes for the same clip.
//!
//! Numbers are rounded for the wire (dB to 0.001, ratios to 0.0001, seconds to 0.0001); an
//! undefined value is `null`. Objects keep their keys in the order written here (serde_json's
//! `preserve_order`).

use serde_json::{json, Value};

use super::{ClipInfo, Progress, SnrReport, SpeakerReport, VadParams};

/// The `/snr-detect` answer.
pub fn snr_json(report: &SnrReport, info: &ClipInfo, params: VadParams) -> Value {
    json!({
        "snr_db": round(report.snr_db, 3),
        "snr_active_db": round(report.snr_active_db, 3),
        "speech_ratio": round(report.speech_ratio, 4),
        "wada_snr_db": round(report.wada_snr_db, 3),
        "method": report.method,
        "vad_hop_size": params.hop,
        "vad_threshold": params.threshold,
        "duration_s": round(Some(info.duration_s), 4),
        "sample_rate": info.sample_rate,
        "channels": info.channels,
        "bits": info.bits,
        "frames": info.frames,
    })
}

/// The `/speaker-count` answer.
pub fn speakers_json(report: &SpeakerReport, info: &ClipInfo) -> Value {
    json!({
        "speakers": report.speakers,
        "segments": report.segments,
        "duration_s": round(Some(info.duration_s), 4),
    })
}

/// The `/analyze` answer (and the data of `/analyze/stream`'s last event): the two others side
/// by side, `{"snr": …, "speaker_count": …}`. Serialised, it is byte for byte the splice of the
/// two serialised objects into `{"snr":` … `,"speaker_count":` … `}`.
pub fn analysis_json(
    snr: &SnrReport,
    speakers: &SpeakerReport,
    info: &ClipInfo,
    params: VadParams,
) -> Value {
    json!({
        "snr": snr_json(snr, info, params),
        "speaker_count": speakers_json(speakers, info),
    })
}

/// One progress event of [`super::Analyzer::analyze_progressive`], rounded as the reports are.
pub fn progress_json(progress: &Progress) -> Value {
    json!({
        "processed_s": round(Some(progress.processed_s), 4),
        "duration_s": round(Some(progress.duration_s), 4),
        "snr_db_so_far": round(progress.snr_db_so_far, 3),
        "speech_ratio_so_far": round(progress.speech_ratio_so_far, 4),
    })
}

/// Round to `digits` decimals for the JSON (`None` stays `null`; NaN and infinities, which the
/// analysis never returns, would also become `null`).
fn round(value: Option<f64>, digits: i32) -> Option<f64> {
    let scale = 10f64.powi(digits);
    value
        .filter(|v| v.is_finite())
        .map(|v| (v * scale).round() / scale)
}
