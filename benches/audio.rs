//! What the audio analysis costs, stage by stage, on a 10-second clip: one voice in white noise
//! at 10 dB, from the deterministic generator in `evloop::audio::synth`.
//!
//! - `audio/decode_16k`: WAV body → mono 16 kHz samples (RIFF walk, bulk sample
//!   conversion, DC, WADA);
//! - `audio/decode_44k_stereo`: the same clip at 44.1 kHz stereo, so the decode includes the
//!   channel mix and the polyphase resampler;
//! - `audio/snr`: STFT, noise floor, SNR and VAD (`/snr-detect` after the decode);
//! - `audio/speakers`: the frame analysis again, then MFCC, F0 and clustering;
//! - `audio/analyze`: decode + snr + speakers, the work of `/snr-detect` and `/speaker-count`
//!   together (the sum `/analyze`'s split is measured against);
//! - `audio/analyze_one_pass`: decode + `Analyzer::analyze` (the frame analysis once);
//! - `audio/part_0_of_2`, `audio/part_1_of_2`, `audio/finish`: the split analysis' pieces;
//! - `audio/parallel`: the two parts on two scoped threads, then `finish` (no decode);
//! - `audio/progressive`: `Analyzer::analyze_progressive`, one window per second.
//!
//! Every clip is 10 s long, so **the time per iteration in milliseconds divided by 10 is the
//! CPU cost in ms per second of audio**. Targets: `analyze` ≤ 1.0 ms/s (the work of
//! `/analyze`), `decode_16k` + `snr` ≤ 0.5 ms/s (the work of `/snr-detect`).
//!
//! After criterion, `audio/ratios` times the pieces itself (medians of 200 runs, in thread CPU
//! time, so that other processes on the machine do not count) and prints the ratios
//! `docs/AUDIO.md` quotes: the parallel pipeline against snr + speakers (its critical path in
//! CPU time, which is its wall time on an idle machine with a core per part, and its wall
//! time as measured), the balance of the two parts, the progressive analysis against one
//! pass, and the most work between two polls of the cancel check, on the 10 s clip and on a
//! pathological 10-minute clip of short blips (1000 segments to cluster).
//!
//! `audio/long` does the same for the longest inputs the default limits let through (600 s,
//! 16 MiB of body): the most CPU time between two polls in `finish`, `analyze_progressive` and
//! the other analyses of a 600 s clip of speech and of the 600 s of blips, and in the decode
//! of the four bodies that cost it most: 8-bit mono at 22.05 kHz for 600 s and at 44.1 kHz
//! for 360 s, 16-bit mono at 48 kHz for 170 s and at 16 kHz for 520 s (and of 16 MiB of empty
//! chunks). Each is the longest gap of a run, the median and the largest of [`GAP_RUNS`] runs,
//! and the gap 99 % of the gaps stay under; the decode rows add the decode's CPU time and the
//! time its caller then takes to free the clip, after the last poll.
//!
//! `cargo bench --bench audio` measures (about 60 s, small samples: each iteration is
//! milliseconds long and steady; `-- ratios` or `-- long` runs one section alone);
//! `cargo test --benches` runs each once as a test, and skips the ratios and the long inputs.

use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use evloop::audio::synth::{self, Rng, Voice};
use evloop::audio::{
    Analyzer, AudioError, Clip, PartialAnalysis, SnrReport, SpeakerReport, VadParams,
};
use evloop::sys::thread_cpu_time;

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

/// 600 s of 0.3 s harmonic blips of random pitch, 0.3 s apart, in noise at 30 dB: each blip
/// is a segment, 1000 of them, the clustering's worst kind of input.
fn blips() -> Vec<u8> {
    let rate = f64::from(synth::RATE);
    let (blip, gap) = ((0.3 * rate) as usize, (0.3 * rate) as usize);
    let mut rng = Rng::new(3);
    let mut x = Vec::with_capacity(1000 * (blip + gap));
    for _ in 0..1000 {
        let f0 = rng.range(90.0, 250.0);
        x.extend((0..blip).map(|n| {
            let t = n as f64 / rate;
            (1..=8)
                .map(|h| (2.0 * std::f64::consts::PI * f0 * h as f64 * t).sin() / h as f64)
                .sum::<f64>()
                * 0.1
        }));
        x.resize(x.len() + gap, 0.0);
    }
    let noise = synth::white_noise(x.len(), 4);
    synth::wav_16bit(&synth::mix_at_snr(&x, &noise, 30.0), synth::RATE).expect("blips WAV")
}

type Reports = (SnrReport, SpeakerReport);

/// The split analysis as a pool of two would run it: both parts at once, then the finish.
fn parallel(analyzer: &Analyzer, clip: &Clip, params: VadParams) -> Result<Reports, AudioError> {
    let never = || false;
    let parts: Vec<Result<PartialAnalysis, AudioError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|i| s.spawn(move || analyzer.analyze_part(clip, i, 2, params, &|| false)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("part thread"))
            .collect()
    });
    analyzer.finish(parts.into_iter().collect::<Result<_, _>>()?, &never)
}

fn audio(c: &mut Criterion) {
    let analyzer = Analyzer::new();
    let params = VadParams::default();
    let never = || false;
    let (wav16, wav44) = bodies();
    let clip = analyzer
        .decode(&wav16, MAX_SECONDS, &never)
        .expect("bench clip decodes");
    // Set-up check: the clip is what the bench claims to measure.
    let report = analyzer.snr(&clip, params, &never).expect("not cancelled");
    assert_eq!(report.method, "noise-floor");
    assert!(report.snr_db.is_some_and(|v| (v - 10.0).abs() < 1.0));
    assert_eq!(
        analyzer
            .decode(&wav44, MAX_SECONDS, &never)
            .map(|c| c.info.channels),
        Ok(2)
    );
    let whole = analyzer.analyze(&clip, params, &never);
    assert_eq!(parallel(&analyzer, &clip, params), whole);

    let mut group = c.benchmark_group("audio");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.bench_function("decode_16k", |b| {
        b.iter(|| analyzer.decode(black_box(&wav16), MAX_SECONDS, &never))
    });
    group.bench_function("decode_44k_stereo", |b| {
        b.iter(|| analyzer.decode(black_box(&wav44), MAX_SECONDS, &never))
    });
    group.bench_function("snr", |b| {
        b.iter(|| analyzer.snr(black_box(&clip), params, &never))
    });
    // The smallest hop: its VAD frames, and frames of hop 256 for the global SNR.
    let smallest = VadParams {
        hop: 80,
        threshold: params.threshold,
    };
    group.bench_function("snr_hop_80", |b| {
        b.iter(|| analyzer.snr(black_box(&clip), smallest, &never))
    });
    group.bench_function("speakers", |b| {
        b.iter(|| analyzer.speakers(black_box(&clip), params, &never))
    });
    group.bench_function("analyze", |b| {
        b.iter(|| {
            let clip = analyzer
                .decode(black_box(&wav16), MAX_SECONDS, &never)
                .ok()?;
            let snr = analyzer.snr(&clip, params, &never).ok()?;
            let speakers = analyzer.speakers(&clip, params, &never).ok()?;
            Some((snr, speakers))
        })
    });
    group.bench_function("analyze_one_pass", |b| {
        b.iter(|| {
            let clip = analyzer
                .decode(black_box(&wav16), MAX_SECONDS, &never)
                .ok()?;
            analyzer.analyze(&clip, params, &never).ok()
        })
    });
    for part in 0..2 {
        group.bench_function(format!("part_{part}_of_2"), |b| {
            b.iter(|| analyzer.analyze_part(black_box(&clip), part, 2, params, &never))
        });
    }
    group.bench_function("finish", |b| {
        b.iter_batched(
            || {
                (0..2)
                    .map(|i| analyzer.analyze_part(&clip, i, 2, params, &never))
                    .collect::<Result<Vec<_>, _>>()
                    .expect("parts")
            },
            |parts| analyzer.finish(parts, &never),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("parallel", |b| {
        b.iter(|| parallel(&analyzer, black_box(&clip), params))
    });
    group.bench_function("progressive", |b| {
        b.iter(|| analyzer.analyze_progressive(black_box(&clip), params, &never, &mut |_| {}))
    });
    group.finish();

    if measuring("audio/ratios") {
        ratios(&analyzer, &wav16, &clip, params);
    }
    if measuring("audio/long") {
        long_inputs(&analyzer, params);
    }
}

/// Whether this run benchmarks (not `cargo test --benches`) with no filter, or a filter that
/// matches `name`.
fn measuring(name: &str) -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    args.iter().any(|a| a == "--bench")
        && (filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
}

/// Median CPU time of the calling thread over `runs` calls of `f`: what the work costs,
/// whatever else the machine is running.
fn median_cpu(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = thread_cpu_time();
            f();
            thread_cpu_time() - start
        })
        .collect();
    times.sort();
    times[runs / 2]
}

/// One run of the parallel pipeline: its wall time, and its critical path in CPU time (the
/// slower part's CPU time plus the finish's), which is its wall time on an idle machine with
/// a core per part.
fn parallel_timed(analyzer: &Analyzer, clip: &Clip, params: VadParams) -> (Duration, Duration) {
    let never = || false;
    let start = Instant::now();
    let parts: Vec<(PartialAnalysis, Duration)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|i| {
                s.spawn(move || {
                    let cpu = thread_cpu_time();
                    let part = analyzer.analyze_part(clip, i, 2, params, &|| false);
                    (part.expect("not cancelled"), thread_cpu_time() - cpu)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("part thread"))
            .collect()
    });
    let slowest = parts.iter().map(|(_, cpu)| *cpu).max().unwrap_or_default();
    let finish_cpu = thread_cpu_time();
    let result = analyzer.finish(parts.into_iter().map(|(p, _)| p).collect(), &never);
    black_box(result.expect("not cancelled"));
    (start.elapsed(), slowest + (thread_cpu_time() - finish_cpu))
}

/// The CPU time the calling thread spends between two polls of the cancel check (or the start
/// or end) during `f`: the longest gap, and the one 99 % of the gaps stay under. CPU time, not
/// wall time: a thread that waits for a core is not working. What `f` returns is dropped after
/// the last poll: freeing it is the caller's work.
fn poll_gaps<T>(f: impl FnOnce(&dyn Fn() -> bool) -> T) -> PollGaps {
    let last = Cell::new(thread_cpu_time());
    let gaps = RefCell::new(Vec::new());
    let poll = || {
        let now = thread_cpu_time();
        gaps.borrow_mut().push(now - last.get());
        last.set(now);
        false
    };
    let result = f(&poll);
    poll();
    drop(result);
    let mut gaps = gaps.into_inner();
    gaps.sort();
    PollGaps {
        longest: gaps[gaps.len() - 1],
        p99: gaps[gaps.len() * 99 / 100],
    }
}

/// What [`poll_gaps`] measured.
#[derive(Clone, Copy)]
struct PollGaps {
    longest: Duration,
    p99: Duration,
}

/// The longest gap between two polls during `f`.
fn longest_poll_gap<T>(f: impl FnOnce(&dyn Fn() -> bool) -> T) -> Duration {
    poll_gaps(f).longest
}

fn ratios(analyzer: &Analyzer, wav16: &[u8], clip: &Clip, params: VadParams) {
    let never = || false;
    const RUNS: usize = 200;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let decode = median_cpu(RUNS, || {
        drop(black_box(analyzer.decode(wav16, MAX_SECONDS, &never)))
    });
    let snr = median_cpu(RUNS, || drop(black_box(analyzer.snr(clip, params, &never))));
    let smallest = VadParams { hop: 80, ..params };
    let snr_hop_80 = median_cpu(RUNS, || {
        drop(black_box(analyzer.snr(clip, smallest, &never)))
    });
    let speakers = median_cpu(RUNS, || {
        drop(black_box(analyzer.speakers(clip, params, &never)))
    });
    let one_pass = median_cpu(RUNS, || {
        drop(black_box(analyzer.analyze(clip, params, &never)))
    });
    let part = |i| {
        median_cpu(RUNS, || {
            drop(black_box(analyzer.analyze_part(clip, i, 2, params, &never)))
        })
    };
    let (part0, part1) = (part(0), part(1));
    let progressive = median_cpu(RUNS, || {
        drop(black_box(analyzer.analyze_progressive(
            clip,
            params,
            &never,
            &mut |_| {},
        )))
    });
    let mut runs: Vec<(Duration, Duration)> = (0..RUNS)
        .map(|_| parallel_timed(analyzer, clip, params))
        .collect();
    runs.sort();
    let (wall_min, wall_median) = (runs[0].0, runs[RUNS / 2].0);
    let mut critical: Vec<Duration> = runs.iter().map(|r| r.1).collect();
    critical.sort();
    let critical = critical[RUNS / 2];
    let of_sum = |d: Duration| d.as_secs_f64() / (snr + speakers).as_secs_f64();

    println!("audio/ratios: 10 s clip, medians of {RUNS} runs, CPU time unless said");
    println!(
        "  decode {:.2} ms, snr {:.2} ms, speakers {:.2} ms, analyze (one pass) {:.2} ms",
        ms(decode),
        ms(snr),
        ms(speakers),
        ms(one_pass)
    );
    println!("  snr at hop 80 {:.2} ms", ms(snr_hop_80));
    println!(
        "  part 0 {:.2} ms, part 1 {:.2} ms; parallel pipeline (2 threads + finish): \
         critical path {:.2} ms, wall {:.2} ms median, {:.2} ms best",
        ms(part0),
        ms(part1),
        ms(critical),
        ms(wall_median),
        ms(wall_min)
    );
    println!(
        "  parallel / (snr + speakers): critical path {:.3}, wall {:.3} median, {:.3} best",
        of_sum(critical),
        of_sum(wall_median),
        of_sum(wall_min)
    );
    println!(
        "  with the decode, as requests: (decode + critical path) / (2 decode + snr + speakers) \
         = {:.3}",
        (decode + critical).as_secs_f64() / (2 * decode + snr + speakers).as_secs_f64()
    );
    println!(
        "  progressive / analyze (one pass) = {:.3}",
        progressive.as_secs_f64() / one_pass.as_secs_f64()
    );

    let gaps = [
        longest_poll_gap(|check| drop(analyzer.analyze(clip, params, check))),
        longest_poll_gap(|check| drop(analyzer.analyze_part(clip, 0, 2, params, check))),
        longest_poll_gap(|check| {
            drop(analyzer.analyze_progressive(clip, params, check, &mut |_| {}))
        }),
    ];
    let blips = analyzer
        .decode(&blips(), MAX_SECONDS, &never)
        .expect("blips decode");
    let start = thread_cpu_time();
    let report = analyzer
        .speakers(&blips, params, &never)
        .expect("not cancelled");
    let blips_time = thread_cpu_time() - start;
    let blips_gap = longest_poll_gap(|check| drop(analyzer.speakers(&blips, params, check)));
    println!(
        "  longest gap between cancel polls: analyze {:.3} ms, part {:.3} ms, \
         progressive {:.3} ms",
        ms(gaps[0]),
        ms(gaps[1]),
        ms(gaps[2])
    );
    println!(
        "  600 s of blips: {} segments, speakers {:.0} ms, longest gap between polls {:.3} ms",
        report.segments,
        ms(blips_time),
        ms(blips_gap)
    );
}

/// Runs of each measurement in `audio/long`.
const GAP_RUNS: usize = 5;

/// [`GAP_RUNS`] measurements of `gaps`, as "longest: median (largest) of the runs, 99th
/// percentile: median of the runs".
fn gap_runs(mut gaps: impl FnMut() -> PollGaps) -> String {
    let runs: Vec<PollGaps> = (0..GAP_RUNS).map(|_| gaps()).collect();
    let mut longest: Vec<Duration> = runs.iter().map(|g| g.longest).collect();
    let mut p99: Vec<Duration> = runs.iter().map(|g| g.p99).collect();
    longest.sort();
    p99.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "{:.3} ({:.3}) ms, p99 {:.3} ms",
        ms(longest[GAP_RUNS / 2]),
        ms(longest[GAP_RUNS - 1]),
        ms(p99[GAP_RUNS / 2])
    )
}

/// A mono PCM WAV body of `seconds` at `rate` Hz with `bits` (8 or 16) per sample: a tone in
/// noise, written byte by byte (the bench needs the size and the encoding, not the sound).
fn upload(rate: u32, bits: u16, seconds: u32) -> Vec<u8> {
    let frames = rate * seconds;
    let bytes = frames * u32::from(bits / 8);
    let mut body = Vec::with_capacity(44 + bytes as usize);
    body.extend_from_slice(b"RIFF");
    body.extend_from_slice(&(36 + bytes).to_le_bytes());
    body.extend_from_slice(b"WAVEfmt ");
    body.extend_from_slice(&16u32.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes()); // PCM
    body.extend_from_slice(&1u16.to_le_bytes()); // mono
    body.extend_from_slice(&rate.to_le_bytes());
    body.extend_from_slice(&(rate * u32::from(bits / 8)).to_le_bytes());
    body.extend_from_slice(&(bits / 8).to_le_bytes());
    body.extend_from_slice(&bits.to_le_bytes());
    body.extend_from_slice(b"data");
    body.extend_from_slice(&bytes.to_le_bytes());
    let mut rng = Rng::new(5);
    for n in 0..frames {
        let tone = (2.0 * std::f64::consts::PI * 440.0 * f64::from(n) / f64::from(rate)).sin();
        let v = 0.3 * tone + 0.05 * rng.gaussian();
        match bits {
            8 => body.push((v * 127.0).round().clamp(-128.0, 127.0) as i8 as u8 ^ 0x80),
            _ => body.extend_from_slice(&((v * 32767.0).round() as i16).to_le_bytes()),
        }
    }
    body
}

/// 16 MiB of empty `JUNK` chunks between the `fmt ` chunk and one second of 16-bit audio: the
/// most chunks a default-sized body can hold.
fn junk_upload() -> Vec<u8> {
    let mut body = upload(16_000, 16, 1);
    let data = body.split_off(36);
    for _ in 0..(16 << 20) / 8 - 10_000 {
        body.extend_from_slice(b"JUNK\0\0\0\0");
    }
    body.extend_from_slice(&data);
    let riff = (body.len() - 8) as u32;
    body[4..8].copy_from_slice(&riff.to_le_bytes());
    body
}

/// The most CPU time between two cancel polls on the longest inputs: see the module notes.
fn long_inputs(analyzer: &Analyzer, params: VadParams) {
    let never = || false;
    let speech = synth::speech(Voice::LOW, MAX_SECONDS, 6);
    let noise = synth::white_noise(speech.len(), 7);
    let speech = synth::wav_16bit(&synth::mix_at_snr(&speech, &noise, 10.0), synth::RATE)
        .expect("600 s WAV");
    println!(
        "audio/long: CPU time between two cancel polls: the longest gap, median (largest) of \
         {GAP_RUNS} runs, and the 99th percentile gap"
    );
    for (name, body) in [("speech", speech), ("blips", blips())] {
        let clip = analyzer
            .decode(&body, MAX_SECONDS, &never)
            .expect("600 s clip");
        let parts = || {
            (0..2)
                .map(|i| analyzer.analyze_part(&clip, i, 2, params, &never))
                .collect::<Result<Vec<_>, _>>()
                .expect("not cancelled")
        };
        let finish = gap_runs(|| {
            let parts = parts();
            poll_gaps(|check| analyzer.finish(parts, check))
        });
        let part =
            gap_runs(|| poll_gaps(|check| analyzer.analyze_part(&clip, 1, 2, params, check)));
        let one_pass = gap_runs(|| poll_gaps(|check| analyzer.analyze(&clip, params, check)));
        let progressive = gap_runs(|| {
            poll_gaps(|check| analyzer.analyze_progressive(&clip, params, check, &mut |_| {}))
        });
        let segments = analyzer
            .analyze(&clip, params, &never)
            .map(|(_, speakers)| speakers.segments)
            .unwrap_or_default();
        println!("  600 s of {name}, {segments} segments:");
        println!("    finish {finish}, part 1 of 2 {part}");
        println!("    analyze {one_pass}, progressive {progressive}");
    }
    let uploads = [
        ("8-bit 22.05 kHz 600 s", upload(22_050, 8, 600)),
        ("8-bit 44.1 kHz 360 s", upload(44_100, 8, 360)),
        ("16-bit 48 kHz 170 s", upload(48_000, 16, 170)),
        ("16-bit 16 kHz 520 s", upload(16_000, 16, 520)),
        ("2 million empty chunks, then 1 s", junk_upload()),
    ];
    for (name, body) in uploads {
        // The first run at a new rate designs its resampling filter too.
        let gap = gap_runs(|| poll_gaps(|check| analyzer.decode(&body, MAX_SECONDS, check)));
        let start = thread_cpu_time();
        let clip = analyzer.decode(&body, MAX_SECONDS, &never);
        let cpu = thread_cpu_time() - start;
        let start = thread_cpu_time();
        drop(clip);
        let free = thread_cpu_time() - start;
        println!(
            "  decode {name} ({:.1} MiB): {:.0} ms of CPU, gap {gap}; the caller frees the clip \
             in {:.1} ms",
            body.len() as f64 / f64::from(1 << 20),
            cpu.as_secs_f64() * 1e3,
            free.as_secs_f64() * 1e3
        );
    }
}

criterion_group!(benches, audio);
criterion_main!(benches);
