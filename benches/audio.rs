//! What the audio analysis costs, stage by stage, on a 10-second clip: one voice in white noise
//! at 10 dB, from the deterministic generator in `evloop::audio::synth`.
//!
//! - `audio/decode_16k`: WAV body → mono 16 kHz samples (RIFF walk, bulk sample
//!   conversion, DC, WADA);
//! - `audio/decode_44k_stereo`: the same clip at 44.1 kHz stereo, so the decode includes the
//!   channel mix and the polyphase resampler;
//! - `audio/snr`: STFT, noise floor, SNR and VAD (`/snr-detect` after the decode);
//! - `audio/speakers`: the frame analysis again, then MFCC, F0 and clustering;
//! - `audio/analyze`: decode + snr + speakers, what `/analyze` runs on one worker.
//!
//! Every clip is 10 s long, so **the time per iteration in milliseconds divided by 10 is the
//! CPU cost in ms per second of audio**. Targets: `analyze` ≤ 2.5 ms/s, `snr` ≤ 1.2 ms/s.
//!
//! `cargo bench --bench audio` measures (about 30 s, small samples: each iteration is
//! milliseconds long and steady); `cargo test --benches` runs each once as a test.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use evloop::audio::synth::{self, Voice};
use evloop::audio::{Analyzer, VadParams};

/// Length of every benchmark clip, seconds.
const SECONDS: f64 = 10.0;
/// Longest clip the decoder is asked to accept.
const MAX_SECONDS: f64 = 600.0;

/// The 10 s clip at 16 kHz, and at 44.1 kHz stereo (each channel the same), as WAV bodies.
fn bodies() -> (Vec<u8>, Vec<u8>) {
    let speech = synth::speech(Voice::LOW, SECONDS, 1);
    let noise = synth::white_noise(speech.len(), 2);
    let mix = synth::mix_at_snr(&speech, &noise, 10.0);
    let wav16 = synth::wav_16bit(&mix, synth::RATE).expect("16-bit WAV of a synthetic clip");

    // Upsample by linear interpolation: the bench needs a 44.1 kHz body, not a perfect one.
    let n = (SECONDS * 44_100.0) as usize;
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut body = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut body, spec).expect("WAV writer");
    for i in 0..n {
        let t = i as f64 * 16_000.0 / 44_100.0;
        let (k, frac) = (t as usize, t.fract());
        let v = mix[k] * (1.0 - frac) + mix.get(k + 1).copied().unwrap_or(0.0) * frac;
        let s = (v * 32767.0).round() as i16;
        writer.write_sample(s).expect("sample");
        writer.write_sample(s).expect("sample");
    }
    writer.finalize().expect("finalize");
    (wav16, body.into_inner())
}

fn audio(c: &mut Criterion) {
    let analyzer = Analyzer::new();
    let params = VadParams::default();
    let never = || false;
    let (wav16, wav44) = bodies();
    let clip = analyzer
        .decode(&wav16, MAX_SECONDS)
        .expect("bench clip decodes");
    // Set-up check: the clip is what the bench claims to measure.
    let report = analyzer.snr(&clip, params, &never).expect("not cancelled");
    assert_eq!(report.method, "noise-floor");
    assert!(report.snr_db.is_some_and(|v| (v - 10.0).abs() < 1.0));
    assert_eq!(
        analyzer
            .decode(&wav44, MAX_SECONDS)
            .map(|c| c.info.channels),
        Ok(2)
    );

    let mut group = c.benchmark_group("audio");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.bench_function("decode_16k", |b| {
        b.iter(|| analyzer.decode(black_box(&wav16), MAX_SECONDS))
    });
    group.bench_function("decode_44k_stereo", |b| {
        b.iter(|| analyzer.decode(black_box(&wav44), MAX_SECONDS))
    });
    group.bench_function("snr", |b| {
        b.iter(|| analyzer.snr(black_box(&clip), params, &never))
    });
    group.bench_function("speakers", |b| {
        b.iter(|| analyzer.speakers(black_box(&clip), params, &never))
    });
    group.bench_function("analyze", |b| {
        b.iter(|| {
            let clip = analyzer.decode(black_box(&wav16), MAX_SECONDS).ok()?;
            let snr = analyzer.snr(&clip, params, &never).ok()?;
            let speakers = analyzer.speakers(&clip, params, &never).ok()?;
            Some((snr, speakers))
        })
    });
    group.finish();
}

criterion_group!(benches, audio);
criterion_main!(benches);
