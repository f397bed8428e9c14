//! The noise floor, the global SNR and the band-SNR voice activity detector.
//!
//! # Noise floor: the mean of the pauses, found by the lowest mode
//!
//! NIST's `stnr` (SPHERE tools) takes the noise level from the first clear peak of the histogram
//! of frame energies in dB. That idea holds for Gaussian noise: a band energy X is then Gamma
//! (χ²) distributed, and the density of y = ln X, ∝ exp(a·y − eʸ/θ), peaks at eʸ = a·θ, the
//! mean. So the *mode* of the log-energy histogram finds the noise, for any colour, provided
//! the clip pauses often enough for the noise-only frames to make a visible hump. Speech
//! frames sit above it.
//!
//! Per band: smooth the energies over 3 frames, take 10·log10, histogram them in 0.05 dB bins,
//! smooth the histogram with a Gaussian kernel of σ = 1 dB (a kernel density estimate on a
//! grid), and take the **lowest** local maximum that reaches 10 % of the highest.
//!
//! The mode is only where the noise is, not how much there is. Where a band has few degrees
//! of freedom (the low bands in brown noise: a handful of bins carry its energy) the hump is
//! wide and lopsided, and its smoothed peak sits a dB or more off the mean. So the mode only
//! finds the pauses: a frame whose speech bands (250–4000 Hz) are more than 3 dB above their
//! modes is speech, and so is every frame within 64 ms of one (speech fades in and out below
//! the threshold). Every band's noise is then the plain **mean of its energies over the other
//! frames**, the pauses: an average of independent noise frames is unbiased for any number of
//! degrees of freedom. For the bands outside the speech bands that holds whatever picked the
//! pauses; in the speech bands the pauses are picked by the same energies, which leaves out
//! their loudest noise frames and reads a little low (little at hop 256, whose speech bands
//! have 8 bins or more). A clip with fewer than 10 pause frames keeps the modes.
//!
//! The band below any voice ([`super::spectrum::BELOW_SPEECH`]: the DC bin, for the default
//! window) holds no speech, so its noise is the mean over every frame, speech or not, which
//! halves the error of low-frequency noise that varies slowly. Brown noise has much of its
//! energy there, and without that band (the WebRTC bands leave the DC bin out) a clip in brown
//! noise read 1–3 dB cleaner than it is. When the speech frames are more than 3 dB louder in
//! that band than the pauses, it is hearing speech after all (through the window's side lobes:
//! only a clean recording is quiet enough to notice), and its noise is the pauses' mean.
//!
//! # SNR
//!
//! With P̄ the mean frame energy over the clip, the global SNR is 10·log10((P̄ − N)/N): speech
//! energy over noise energy, the quantity the API promises. −30 dB when P̄ is within 0.1 % of N;
//! capped at 100 dB. At hops under 256, whose windows have no band below the voices, P̄ and N
//! are those of the same clip's frames at hop 256 ([`Level`], `frames.rs`; unless the clip is
//! too short for 20 of them); the VAD's finer frames still say which part is speech, for the
//! speech ratio and the active SNR, and the hangover's widening follows that global SNR.
//!
//! # VAD
//!
//! A frame's speech level is that of its loudest speech band (250–500, 500–1000, 1000–2000 or
//! 2000–4000 Hz: where speech lives, and rumble and hiss do not) over the level that band's
//! noise stays under in 9 pauses out of 10 ([`NoiseFloor::loud`]). Speech is loud in one or two
//! bands at a time, a vowel low and a fricative high, so the loudest band finds it where the
//! four bands summed would dilute it with the others' noise; and the noise's 90th percentile
//! rather than its mean, because a band of two or three FFT bins (at small hops) has noise that
//! swings far above its mean. For the same reason, at hops under 256 the VAD judges the mean of
//! the frames covering 16 ms. The level s goes through a logistic, p = 1/(1 + exp(−(s − 4 dB)
//! / 1.5 dB)), a "probability" compared with `vad_threshold` the way TEN VAD's is: at 0.5 a
//! frame becomes speech when a band is 4 dB above that level. Once speech has started it goes
//! on while a band stays 0.5 dB above (the level counts 3.5 dB more after a speech frame:
//! hysteresis, so that speech fading towards the noise at the end of a word is not cut short;
//! never below 0.5 dB, whatever the threshold, or a low threshold's speech would never end).
//! Then a hangover: gaps of ≤ 200 ms between speech are filled (the pauses between words:
//! talking, as ITU-T P.56 counts it), speech runs of ≤ 64 ms are dropped, and, in noise, each
//! run is widened on both sides by 64 ms × (20 − SNR)/20 (none from 20 dB up, 64 ms from 0 dB
//! down to −10 dB, none below, where the clip is noise): the quiet ends of words sink under
//! loud noise before the detector lets go of them ([`Hangover::new`]). The speech ratio counts
//! the widened runs. The speaker analysis reads the VAD's decisions with a shorter hangover,
//! gaps of ≤ 112 ms filled and no widening ([`FrameAnalysis::phrases`]), so that two voices
//! taking turns across a short pause fall in different runs.

use std::ops::Range;

use super::checkpoint::{Checkpoint, KERNEL_NS, LEVEL_NS, LINK_NS, STEP_NS};
use super::spectrum::{BandEnergies, BANDS, BELOW_SPEECH};
use super::AudioError;

/// Fewer STFT frames than this and the histogram has too few points: use WADA instead.
pub(crate) const MIN_FRAMES: usize = 20;

/// Frames in the moving average of band energies before the histogram.
const SMOOTH_FRAMES: usize = 3;
/// Standard deviation of the histogram's Gaussian smoothing kernel, dB.
const KDE_BW_DB: f64 = 1.0;
/// Histogram bin width, dB.
const KDE_STEP_DB: f64 = 0.05;
/// The noise mode must reach this fraction of the density maximum (smaller bumps are the
/// histogram's own noise).
const PEAK_REL: f64 = 0.1;
/// The loudest speech band's level over its noise's [`LOUD_QUANTILE`] at which the speech
/// probability is one half, dB.
const VAD_CENTER_DB: f64 = 4.0;
/// After a speech frame, a band this much quieter (dB) still counts as loud: speech starts
/// clearly above the noise and may fade closer to it before it ends (hysteresis).
const VAD_HOLD_DB: f64 = 3.5;
/// Speech holds on only while a band is at least this far (dB) above its noise's loud level.
const VAD_HOLD_FLOOR_DB: f64 = 0.5;
/// The VAD compares each speech band with the level its noise stays under in this fraction of
/// the pauses, not with the noise's mean: a band of few FFT bins (at small hops) has noise
/// that swings far above its mean, and would otherwise pass for speech.
const LOUD_QUANTILE: f64 = 0.9;
/// The VAD judges the mean of the frames covering at least this long (ms): one frame from hop
/// 256 up, four at hop 80, whose bands of two or three FFT bins swing too far frame by frame.
const VAD_SPAN_MS: f64 = 16.0;
/// The speech SNR of all four speech bands together at which the noise floor's first pass
/// calls a frame speech, to find the pauses, dB.
const PAUSE_SPEECH_DB: f64 = 3.0;
/// Slope of the logistic, dB.
const VAD_SLOPE_DB: f64 = 1.5;
/// The speech bands: 250–500, 500–1000, 1000–2000 and 2000–4000 Hz.
const VAD_BANDS: Range<usize> = 2..6;
/// Frames this close to speech (in ms) are not pauses, for the noise floor: speech fades in and
/// out below the threshold that finds it.
const PAUSE_GUARD_MS: f64 = 64.0;
/// Fewer pause frames than this and the noise floor stays the histogram's modes.
const MIN_PAUSE_FRAMES: usize = 10;
/// Hangover: non-speech gaps of at most this long, with speech on both sides, become speech.
const GAP_FILL_MS: f64 = 200.0;
/// For the speaker analysis, only gaps of at most this long are filled.
const PHRASE_GAP_MS: f64 = 112.0;
/// Then speech runs of at most this long are dropped as blips.
const MIN_RUN_MS: f64 = 64.0;
/// Then each speech run is widened by up to this much on either side: the edges of words that
/// the noise hides, all of it from 0 dB SNR down to −10 dB (see [`Hangover::new`]).
const EDGE_PAD_MS: f64 = 64.0;
/// The SNR at and above which the edges are not widened at all, dB.
const EDGE_PAD_SNR_DB: f64 = 20.0;
/// Below this SNR there is no speech to widen (noise alone reads −17 to −30 dB), dB.
const EDGE_PAD_FLOOR_DB: f64 = -10.0;
/// Floor added before every logarithm of an energy, so digital silence gives −300 dB, not −∞.
const TINY: f64 = 1e-30;
/// The noise floor is at least this fraction of the mean frame energy: caps the SNR at 100 dB.
const NOISE_FLOOR_MIN_REL: f64 = 1e-10;

/// What the frame analysis found.
pub(crate) struct FrameAnalysis {
    /// Per STFT frame: speech after the hangover (talking time, what the speech ratio counts).
    pub speech: Vec<bool>,
    /// Per STFT frame: speech as the speaker analysis reads it, the VAD's decisions with only
    /// the gaps of ≤ 112 ms filled (a pause inside a phrase), blips dropped, and not widened.
    /// A turn change after a short pause still splits its runs, and a widened edge, mostly
    /// noise, says little of whose voice it is.
    pub phrases: Vec<bool>,
    /// Global SNR, dB.
    pub snr_db: f64,
    /// SNR over speech frames only (before the widening), dB; `None` when no frame is speech.
    pub snr_active_db: Option<f64>,
    /// The VAD after the last frame: its decision on it, before the hangover, and the frames
    /// of its 16 ms mean. A VAD continuing after these frames goes on from it, and decides
    /// the next frames as one pass over all of them would.
    pub vad: Vad,
    /// The hangover the mask went through (its widening depends on the SNR).
    pub hangover: Hangover,
}

impl FrameAnalysis {
    /// Fraction of frames that are speech.
    pub(crate) fn speech_ratio(&self) -> f64 {
        self.speech.iter().filter(|&&s| s).count() as f64 / self.speech.len() as f64
    }
}

/// What the noise floor found: each band's noise power, and how loud each speech band's noise
/// gets (the VAD's reference).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NoiseFloor {
    /// Mean noise power per band: what the SNR divides by.
    pub power: [f64; BANDS],
    /// Per band, the power the noise stays under in 9 frames out of 10 ([`LOUD_QUANTILE`]);
    /// the mean where there are too few pauses to tell, and outside the speech bands.
    pub loud: [f64; BANDS],
}

/// Noise power per band: the mean energy of the pauses, which the lowest modes of the bands'
/// log-energy histograms find; below any voice, the mean of every frame; and how loud each
/// speech band's noise gets in the pauses (see the module docs). Needs at least
/// [`SMOOTH_FRAMES`] frames.
pub(crate) fn noise_floor(
    bands: &[BandEnergies],
    hop: usize,
    checkpoint: &mut Checkpoint<'_>,
) -> Result<NoiseFloor, AudioError> {
    let modes = mode_floor(bands, checkpoint)?;
    let frame_ms = 1000.0 * hop as f64 / 16000.0;
    let guard = (PAUSE_GUARD_MS / frame_ms).ceil() as usize;
    let near = near_speech(bands, &modes, guard, checkpoint)?;
    let mut power = modes;
    let mut sums = [0.0; BANDS];
    let mut pauses = 0usize;
    let (mut below_all, mut below_in_speech) = (0.0, 0.0);
    for (energies, near) in bands.chunks(TICK_FRAMES).zip(near.chunks(TICK_FRAMES)) {
        for (e, &near) in energies.iter().zip(near) {
            below_all += e[BELOW_SPEECH];
            if near {
                below_in_speech += e[BELOW_SPEECH];
            } else {
                pauses += 1;
                for (sum, energy) in sums.iter_mut().zip(e) {
                    *sum += energy;
                }
            }
        }
        checkpoint.tick(energies.len() as u64 * BANDS as u64)?;
    }
    let mut loud = modes;
    if pauses >= MIN_PAUSE_FRAMES {
        for (slot, sum) in power.iter_mut().zip(sums) {
            *slot = sum / pauses as f64;
        }
        loud = power;
        for b in VAD_BANDS {
            loud[b] = pause_quantile(bands, &near, b, power[b], checkpoint)?;
        }
    }
    // Below any voice the noise is measured over every frame, speech or not: twice the data
    // of the pauses alone, which low-frequency noise, slow to vary, needs. Unless the speech
    // frames are louder there than the pauses (by more than 3 dB): then the band is hearing
    // speech after all (a clean recording, whose only noise is tiny, hears a voice's
    // harmonics through the window's side lobes), and the pauses alone are its noise.
    let speech_frames = bands.len() - pauses;
    let leaks = pauses >= MIN_PAUSE_FRAMES
        && speech_frames > 0
        && below_in_speech / speech_frames as f64 > 2.0 * power[BELOW_SPEECH];
    if !leaks {
        power[BELOW_SPEECH] = below_all / bands.len() as f64;
        loud[BELOW_SPEECH] = power[BELOW_SPEECH];
    }
    Ok(NoiseFloor { power, loud })
}

/// Frames at once between two ticks of the noise floor's passes.
const TICK_FRAMES: usize = 4096;

/// Which frames are speech or within `guard` frames of speech, by the modes: a speech-band SNR
/// above [`PAUSE_SPEECH_DB`]. The others are the pauses.
fn near_speech(
    bands: &[BandEnergies],
    modes: &[f64; BANDS],
    guard: usize,
    checkpoint: &mut Checkpoint<'_>,
) -> Result<Vec<bool>, AudioError> {
    let speech_noise = modes[VAD_BANDS].iter().sum::<f64>().max(TINY);
    let threshold = 10f64.powf(PAUSE_SPEECH_DB / 10.0);
    let mut speech = Vec::with_capacity(bands.len());
    for block in bands.chunks(TICK_FRAMES) {
        speech.extend(
            block
                .iter()
                .map(|e| e[VAD_BANDS].iter().sum::<f64>() / speech_noise > threshold),
        );
        checkpoint.tick(block.len() as u64 * 4)?;
    }
    // Within `guard` frames after a speech frame, then within `guard` frames before one.
    let mut near = vec![false; speech.len()];
    let mut since = usize::MAX;
    for (t, &s) in speech.iter().enumerate() {
        since = if s { 0 } else { since.saturating_add(1) };
        near[t] = since <= guard;
        if t % TICK_FRAMES == 0 {
            checkpoint.tick(TICK_FRAMES as u64)?;
        }
    }
    let mut until = usize::MAX;
    for t in (0..speech.len()).rev() {
        until = if speech[t] {
            0
        } else {
            until.saturating_add(1)
        };
        near[t] |= until <= guard;
        if t % TICK_FRAMES == 0 {
            checkpoint.tick(TICK_FRAMES as u64)?;
        }
    }
    Ok(near)
}

/// The power that band `b`'s energy stays under in [`LOUD_QUANTILE`] of the pause frames (not
/// `near`), read from a histogram of its level relative to `mean` in [`KDE_STEP_DB`] bins
/// (a fixed allocation, whatever the clip's length).
fn pause_quantile(
    bands: &[BandEnergies],
    near: &[bool],
    b: usize,
    mean: f64,
    checkpoint: &mut Checkpoint<'_>,
) -> Result<f64, AudioError> {
    const SPAN_DB: f64 = 40.0;
    let bins = (2.0 * SPAN_DB / KDE_STEP_DB) as usize + 1;
    let mut histogram = vec![0usize; bins];
    let mut count = 0usize;
    for (energies, near) in bands.chunks(TICK_FRAMES).zip(near.chunks(TICK_FRAMES)) {
        for (e, _) in energies.iter().zip(near).filter(|(_, &near)| !near) {
            let db = 10.0 * ((e[b] + TINY) / mean.max(TINY)).log10();
            let bin = ((db + SPAN_DB) / KDE_STEP_DB)
                .round()
                .clamp(0.0, (bins - 1) as f64);
            histogram[bin as usize] += 1;
            count += 1;
        }
        checkpoint.tick(energies.len() as u64 * LEVEL_NS)?;
    }
    let wanted = (LOUD_QUANTILE * count as f64).ceil() as usize;
    let mut seen = 0;
    for (bin, n) in histogram.iter().enumerate() {
        seen += n;
        if seen >= wanted.max(1) {
            let db = bin as f64 * KDE_STEP_DB - SPAN_DB;
            return Ok(mean * 10f64.powf(db / 10.0));
        }
    }
    Ok(mean)
}

/// Each band's lowest mode of its smoothed log-energy histogram, as a power.
fn mode_floor(
    bands: &[BandEnergies],
    checkpoint: &mut Checkpoint<'_>,
) -> Result<[f64; BANDS], AudioError> {
    let kernel = gaussian_kernel();
    let mut levels_db = Vec::with_capacity(bands.len());
    let mut floor = [0.0; BANDS];
    for (b, slot) in floor.iter_mut().enumerate() {
        levels_db.clear();
        for w in bands.windows(SMOOTH_FRAMES) {
            // The reference convolves with [1/3, 1/3, 1/3]; same products, same sum.
            let smoothed: f64 = w.iter().map(|e| e[b] * (1.0 / SMOOTH_FRAMES as f64)).sum();
            levels_db.push(10.0 * (smoothed + TINY).log10());
            checkpoint.tick(LEVEL_NS)?;
        }
        *slot = 10f64.powf(lowest_mode_db(&levels_db, &kernel, checkpoint)? / 10.0);
    }
    Ok(floor)
}

/// A clip's mean frame energy and the noise power per band under it, on the frames of one
/// hop: what the global SNR compares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Level {
    /// Mean energy of a frame, P̄.
    pub mean_energy: f64,
    /// Mean noise power per band ([`NoiseFloor::power`]).
    pub power: [f64; BANDS],
}

impl Level {
    /// The level of `bands`, whose noise floor is `floor`.
    pub(crate) fn of(
        bands: &[BandEnergies],
        floor: &NoiseFloor,
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<Level, AudioError> {
        let mean_energy = bands.iter().map(frame_energy).sum::<f64>() / bands.len() as f64;
        checkpoint.tick(bands.len() as u64 * BANDS as u64)?;
        Ok(Level {
            mean_energy,
            power: floor.power,
        })
    }

    /// The noise's share of the mean frame energy, N ([`noise_total`]).
    pub(crate) fn noise(&self) -> f64 {
        noise_total(&self.power, self.mean_energy)
    }

    /// The global SNR, 10·log10((P̄ − N)/N), dB.
    pub(crate) fn snr_db(&self) -> f64 {
        let noise = self.noise();
        ratio_db((self.mean_energy - noise) / noise)
    }
}

/// Global and active SNR, and the speech mask after the hangover.
///
/// `snr_level` is where the SNRs are read when the frames' own noise floor is not the best
/// measure of the noise (at hops under 256, whose windows have no band below the voices): the
/// level of the same clip on frames of another hop. The active SNR then takes the speech
/// frames' energy relative to the mean of these frames, and reads it against that level.
pub(crate) fn analyse_frames(
    bands: &[BandEnergies],
    noise: &NoiseFloor,
    snr_level: Option<Level>,
    hop: usize,
    threshold: f64,
    checkpoint: &mut Checkpoint<'_>,
) -> Result<FrameAnalysis, AudioError> {
    // A pass over the frames costs about a nanosecond a frame and a band; each is followed by
    // a tick, so that no run of passes goes unpolled on a long clip.
    let pass_ns = bands.len() as u64 * BANDS as u64;
    let own = Level::of(bands, noise, checkpoint)?;
    let level = snr_level.unwrap_or(own);
    let snr_db = level.snr_db();
    let mut vad = Vad::new(noise, threshold, hop);
    let mut raw = Vec::with_capacity(bands.len());
    for e in bands {
        raw.push(vad.is_speech(e));
        checkpoint.tick(LEVEL_NS)?;
    }
    let hangover = Hangover::new(hop, snr_db);
    let phrases = hangover.phrases(raw.clone());
    checkpoint.tick(pass_ns)?;
    let closed = hangover.close(raw);
    checkpoint.tick(pass_ns)?;

    // The active SNR is over the speech as heard, before the widening: a widened edge is
    // mostly noise.
    let (speech_sum, speech_frames) = bands
        .iter()
        .zip(&closed)
        .filter(|(_, &s)| s)
        .fold((0.0, 0usize), |(sum, n), (e, _)| {
            (sum + frame_energy(e), n + 1)
        });
    checkpoint.tick(pass_ns)?;
    let speech_energy = match (speech_frames, snr_level) {
        (0, _) => None,
        (n, None) => Some(speech_sum / n as f64),
        // On another hop's level, the speech is as much louder than the clip's mean as here;
        // if these frames hold nothing at all (a clip whose only sound falls outside them, in
        // the last few samples), that says nothing.
        (n, Some(level)) => (own.mean_energy > 0.0)
            .then(|| level.mean_energy * (speech_sum / n as f64 / own.mean_energy)),
    };
    let snr_active_db = speech_energy.map(|speech_energy| {
        let noise = level.noise();
        ratio_db((speech_energy - noise) / noise)
    });
    let speech = hangover.widen(closed);
    checkpoint.tick(pass_ns)?;
    Ok(FrameAnalysis {
        snr_db,
        snr_active_db,
        speech,
        phrases,
        vad,
        hangover,
    })
}

/// A frame's energy over all bands.
pub(crate) fn frame_energy(e: &BandEnergies) -> f64 {
    e.iter().sum::<f64>()
}

/// The noise power the SNR divides by: the bands' floors summed, at least
/// [`NOISE_FLOOR_MIN_REL`] of the mean frame energy (which caps the SNR at 100 dB).
pub(crate) fn noise_total(noise: &[f64; BANDS], mean_energy: f64) -> f64 {
    noise
        .iter()
        .sum::<f64>()
        .max(NOISE_FLOOR_MIN_REL * mean_energy)
        .max(TINY)
}

/// The VAD's decision for one frame, before the hangover.
pub(crate) struct Vad {
    /// How loud each speech band's noise gets (250–500, 500–1000, 1000–2000, 2000–4000 Hz):
    /// [`NoiseFloor::loud`].
    speech_noise: [f64; VAD_BANDS.end - VAD_BANDS.start],
    /// `vad_threshold`.
    threshold: f64,
    /// The last frame's decision: speech goes on at a lower SNR than it starts.
    speaking: bool,
    /// The speech bands' energies of the last [`Vad::span`] frames: the VAD judges their mean.
    recent: std::collections::VecDeque<[f64; VAD_BANDS.end - VAD_BANDS.start]>,
    /// Frames in the mean: as many as cover [`VAD_SPAN_MS`] (one from hop 256 up).
    span: usize,
}

impl Vad {
    pub(crate) fn new(noise: &NoiseFloor, threshold: f64, hop: usize) -> Vad {
        let frame_ms = 1000.0 * hop as f64 / 16000.0;
        let span = ((VAD_SPAN_MS / frame_ms).ceil() as usize).max(1);
        Vad {
            speech_noise: std::array::from_fn(|i| noise.loud[VAD_BANDS.start + i].max(TINY)),
            threshold,
            speaking: false,
            recent: std::collections::VecDeque::with_capacity(span),
            span,
        }
    }

    /// The speech probability of the loudest speech band over its noise, above the threshold;
    /// after a speech frame the band may be [`VAD_HOLD_DB`] quieter.
    pub(crate) fn is_speech(&mut self, e: &BandEnergies) -> bool {
        if self.recent.len() == self.span {
            self.recent.pop_front();
        }
        self.recent
            .push_back(std::array::from_fn(|i| e[VAD_BANDS.start + i]));
        let frames = self.recent.len() as f64;
        let loudest = (0..self.speech_noise.len())
            .map(|i| {
                let energy = self.recent.iter().map(|r| r[i]).sum::<f64>() / frames;
                energy / self.speech_noise[i]
            })
            .fold(0.0, f64::max);
        let level_db = 10.0 * (loudest + 1e-12).log10();
        let judged_db = if self.speaking {
            level_db + VAD_HOLD_DB
        } else {
            level_db
        };
        let p = 1.0 / (1.0 + (-(judged_db - VAD_CENTER_DB) / VAD_SLOPE_DB).exp());
        // Speech holds on only above the noise's loud level, whatever the threshold: with a low
        // one, the hold would otherwise reach into the noise, and speech would never end.
        self.speaking = p > self.threshold && (!self.speaking || level_db > VAD_HOLD_FLOOR_DB);
        self.speaking
    }
}

/// The hangover's lengths, in frames of one hop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hangover {
    /// Non-speech gaps of at most this many frames, with speech on both sides, are filled.
    gap: usize,
    /// The gaps filled for the speaker analysis ([`FrameAnalysis::phrases`]), shorter.
    phrase_gap: usize,
    /// Then speech runs of at most this many frames are dropped.
    blip: usize,
    /// Then every speech run is widened by this many frames on each side (as far as the clip
    /// goes). Always under half of `gap`, so two widened runs never meet.
    pad: usize,
}

impl Hangover {
    /// The hangover at `hop` for a clip whose global SNR is `snr_db`.
    ///
    /// The widening grows as the SNR falls: 64 ms × (20 − SNR)/20, rounded down to whole
    /// frames, from nothing at 20 dB to 64 ms from 0 dB down (at hop 1024, 64 ms frames,
    /// that is one frame at 0 dB and none above). In noise, the quiet ends of words (a fading
    /// vowel, a soft consonant) sink under the noise before the detector lets go of them, and
    /// their starts before it picks them up, so in loud noise the speech runs it finds are
    /// shorter than the talking; at 0 dB each run loses some 60 ms at either end. AMR's VAD
    /// option 2 lengthens its hangover as the SNR falls for the same reason (3GPP TS 26.073,
    /// `vad2.c`: 8 frames at high SNR, 30 at low), though only at the end of a run.
    ///
    /// Below −10 dB there is no speech to widen: the clip is noise, and whatever runs the
    /// detector finds (at a low `vad_threshold`) are the noise's own swings, which widening
    /// would only double.
    pub(crate) fn new(hop: usize, snr_db: f64) -> Hangover {
        let frame_ms = 1000.0 * hop as f64 / 16000.0;
        let noisy = if snr_db < EDGE_PAD_FLOOR_DB {
            0.0
        } else {
            ((EDGE_PAD_SNR_DB - snr_db) / EDGE_PAD_SNR_DB).clamp(0.0, 1.0)
        };
        Hangover {
            gap: floor_div(GAP_FILL_MS, frame_ms),
            phrase_gap: floor_div(PHRASE_GAP_MS, frame_ms),
            blip: floor_div(MIN_RUN_MS, frame_ms),
            pad: (EDGE_PAD_MS * noisy / frame_ms).floor() as usize,
        }
    }

    /// The speech mask after the hangover, all three steps.
    #[cfg(test)]
    pub(crate) fn apply(self, raw: Vec<bool>) -> Vec<bool> {
        self.widen(self.close(raw))
    }

    /// The hangover's first two steps: gaps filled, blips dropped.
    pub(crate) fn close(self, raw: Vec<bool>) -> Vec<bool> {
        close_open(raw, self.gap, self.blip)
    }

    /// The speaker analysis' mask: the first two steps with the shorter gap.
    pub(crate) fn phrases(self, raw: Vec<bool>) -> Vec<bool> {
        close_open(raw, self.phrase_gap, self.blip)
    }

    /// The last step: every speech run of `closed` widened by `pad` frames on each side.
    pub(crate) fn widen(self, closed: Vec<bool>) -> Vec<bool> {
        let mut mask = closed;
        let len = mask.len();
        for run in runs(&mask, true) {
            mask[run.start.saturating_sub(self.pad)..(run.end + self.pad).min(len)].fill(true);
        }
        mask
    }
}

/// The hangover applied one frame at a time: [`Hangover::close`] then [`Hangover::widen`] on
/// a mask that grows.
///
/// Only the end of the mask is ever in doubt: a speech run can still grow, or be joined to the
/// next one across a short gap, the non-speech frames after it can still be filled, and the
/// last few non-speech frames can still become the widened start of a run to come. Every
/// frame before that is decided once and for all, and goes to `decided`. So the speech count
/// of `apply(raw so far)` is `decided_speech` plus the open run, widened, if it is longer than
/// a blip: O(1) per frame instead of a pass over the whole mask.
pub(crate) struct StreamingHangover {
    hangover: Hangover,
    /// Decisions that can no longer change, for the first `decided.len()` frames.
    pub decided: Vec<bool>,
    /// Speech frames in `decided`.
    decided_speech: usize,
    /// Non-speech frames just before the open run (or, with none open, the last ones), at
    /// most `pad`: the run's widened start, if it is kept.
    lead: usize,
    /// Length of the open speech run after gap filling (0: none).
    run: usize,
    /// Non-speech frames since the open run, not yet more than a fillable gap.
    gap: usize,
}

impl StreamingHangover {
    pub(crate) fn new(hangover: Hangover) -> StreamingHangover {
        StreamingHangover {
            hangover,
            decided: Vec::new(),
            decided_speech: 0,
            lead: 0,
            run: 0,
            gap: 0,
        }
    }

    /// Frames pushed so far.
    pub(crate) fn len(&self) -> usize {
        self.decided.len() + self.lead + self.run + self.gap
    }

    /// Append one frame's decision before the hangover.
    pub(crate) fn push(&mut self, speech: bool) {
        let Hangover { gap, blip, pad, .. } = self.hangover;
        match (speech, self.run) {
            // Speech after a run: the gap between them (if any) is short enough to fill.
            (true, 1..) => {
                self.run += self.gap + 1;
                self.gap = 0;
            }
            (true, 0) => self.run = 1,
            // Non-speech with no run open: the last `pad` of these may yet lead into one.
            (false, 0) => {
                if self.lead == pad {
                    self.decided.push(false);
                } else {
                    self.lead += 1;
                }
            }
            (false, _) => {
                self.gap += 1;
                if self.gap > gap {
                    // Too long to fill: the run is over. Kept, it is widened on both sides
                    // (gap > 2·pad, so the gap has room for both widenings); the gap's last
                    // `pad` frames may lead into the next run.
                    let keep = self.run > blip;
                    let (before, after) = if keep { (self.lead, pad) } else { (0, 0) };
                    let rest = self.gap - after - pad;
                    self.decided
                        .extend(std::iter::repeat_n(false, self.lead - before));
                    self.decided
                        .extend(std::iter::repeat_n(keep, before + self.run + after));
                    self.decided.extend(std::iter::repeat_n(false, rest));
                    self.decided_speech += if keep { before + self.run + after } else { 0 };
                    (self.lead, self.run, self.gap) = (pad, 0, 0);
                }
            }
        }
    }

    /// Speech frames in `Hangover::apply` of every frame pushed so far: the mask as if it
    /// ended here (a trailing gap is not filled, only widened into; the open run counts unless
    /// it is a blip).
    pub(crate) fn speech_frames(&self) -> usize {
        let Hangover { blip, pad, .. } = self.hangover;
        self.decided_speech
            + if self.run > blip {
                self.lead + self.run + self.gap.min(pad)
            } else {
                0
            }
    }
}

/// A power ratio in dB: −30 dB for ratios ≤ 10⁻³ (speech energy lost in the noise estimate's
/// error), at most 100 dB.
pub(crate) fn ratio_db(ratio: f64) -> f64 {
    if ratio > 1e-3 {
        (10.0 * ratio.log10()).min(100.0)
    } else {
        -30.0
    }
}

/// exp(−½(k/σ)²) at k = −4σ … 4σ in histogram steps: 161 taps.
fn gaussian_kernel() -> Vec<f64> {
    let reach = (4.0 * KDE_BW_DB / KDE_STEP_DB) as i64;
    (-reach..=reach)
        .map(|i| {
            let k = i as f64 * KDE_STEP_DB / KDE_BW_DB;
            (-0.5 * k * k).exp()
        })
        .collect()
}

/// The lowest local maximum of the smoothed histogram of `values` (dB) that reaches
/// [`PEAK_REL`] of the highest; the highest if there is none.
pub(crate) fn lowest_mode_db(
    values: &[f64],
    kernel: &[f64],
    checkpoint: &mut Checkpoint<'_>,
) -> Result<f64, AudioError> {
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    checkpoint.tick(values.len() as u64 * LINK_NS)?;
    let reach = kernel.len() / 2;
    // The grid spans the values plus the kernel's reach on both sides.
    let lo = (min / KDE_STEP_DB).floor() * KDE_STEP_DB - 4.0 * KDE_BW_DB;
    let bins = ((max + 4.0 * KDE_BW_DB - lo) / KDE_STEP_DB).ceil() as usize + 1;
    let mut counts = vec![0.0; bins];
    for v in values {
        // numpy rounds half to even; so do we, for the same bins.
        let i = ((v - lo) / KDE_STEP_DB).round_ties_even().max(0.0) as usize;
        counts[i.min(bins - 1)] += 1.0;
        checkpoint.tick(STEP_NS)?;
    }
    // Kernel density: spread each occupied bin over its neighbours. Most bins are empty, so
    // scattering from the occupied ones is far cheaper than a dense convolution.
    let mut density = vec![0.0; bins];
    for (i, &c) in counts.iter().enumerate().filter(|(_, &c)| c > 0.0) {
        let first = i.saturating_sub(reach);
        let last = (i + reach).min(bins - 1);
        for (j, d) in density[first..=last].iter_mut().enumerate() {
            *d += c * kernel[first + j + reach - i];
        }
        checkpoint.tick(KERNEL_NS)?;
    }
    let peak = density.iter().copied().fold(0.0, f64::max);
    let mode = (1..bins.saturating_sub(1))
        .find(|&i| {
            density[i] >= density[i - 1]
                && density[i] > density[i + 1]
                && density[i] >= PEAK_REL * peak
        })
        .unwrap_or_else(|| density.iter().position(|&d| d == peak).unwrap_or(0));
    Ok(lo + mode as f64 * KDE_STEP_DB)
}

/// The hangover: fill gaps of ≤ `gap` non-speech frames that have speech on both sides, then
/// drop speech runs of ≤ `blip` frames.
fn close_open(mut mask: Vec<bool>, gap: usize, blip: usize) -> Vec<bool> {
    let len = mask.len();
    for run in runs(&mask, false) {
        if run.len() <= gap && run.start > 0 && run.end < len {
            mask[run].fill(true);
        }
    }
    for run in runs(&mask, true) {
        if run.len() <= blip {
            mask[run].fill(false);
        }
    }
    mask
}

/// The maximal runs of `value` in `mask`, in order.
pub(crate) fn runs(mask: &[bool], value: bool) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &m) in mask.iter().enumerate() {
        match (m == value, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..mask.len());
    }
    out
}

/// Whole frames of `b` ms in `a` ms, rounded down (the reference's `a // b`). The frame length
/// is hop/16 ms, exact in binary, and 16·a/hop is either an integer or at least 1/hop away
/// from one, so the plain floor of the quotient is Python's answer.
fn floor_div(a: f64, b: f64) -> usize {
    (a / b).floor() as usize
}

/// `len` frames of noise of unit mean per band (exponential, as one FFT bin's power), with
/// every other stretch of 20 frames a burst up to 10 dB louder: frames for testing the VAD,
/// from a fixed seed.
#[cfg(test)]
pub(crate) fn noise_with_bursts(len: usize) -> Vec<BandEnergies> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut uniform = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..len)
        .map(|t| {
            let gain = if (t / 20) % 2 == 1 {
                10f64.powf(uniform())
            } else {
                1.0
            };
            std::array::from_fn(|_| -gain * (1.0 - uniform()).ln())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(values: &[f64]) -> f64 {
        lowest_mode_db(values, &gaussian_kernel(), &mut Checkpoint::new(&|| false))
            .unwrap_or(f64::NAN)
    }

    /// The mode of a histogram of identical values is that value (to the bin width).
    #[test]
    fn mode_of_a_spike() {
        let mode = mode(&[-42.0; 50]);
        assert!((mode + 42.0).abs() < 0.051, "{mode}");
    }

    /// With a big noise hump and a bigger speech hump, the lowest clear mode is the noise.
    #[test]
    fn lowest_mode_is_the_noise() {
        let mut values = vec![-60.0; 40];
        values.extend([-20.0; 100]);
        let mode = mode(&values);
        assert!((mode + 60.0).abs() < 0.2, "{mode}");
    }

    /// A hump under 10 % of the maximum is histogram noise, not the floor.
    #[test]
    fn small_humps_are_ignored() {
        let mut values = vec![-80.0; 3];
        values.extend([-50.0; 100]);
        let mode = mode(&values);
        assert!((mode + 50.0).abs() < 0.2, "{mode}");
    }

    /// Gaps of ≤ `gap` between speech are filled; gaps at the edges are not; short runs go.
    /// Speech starts 4 dB above the level a band's noise stays under in 9 pauses out of 10,
    /// and goes on down to 0.5 dB; the loudest band counts, not the four summed.
    #[test]
    fn the_vad_starts_high_and_holds_lower() {
        let noise = NoiseFloor {
            power: [1.0; BANDS],
            loud: [1.0; BANDS],
        };
        let mut vad = Vad::new(&noise, 0.5, 256);
        let frame = |db: f64| {
            let mut e = [1.0; BANDS];
            e[VAD_BANDS.start] = 10f64.powf(db / 10.0);
            e
        };
        assert!(!vad.is_speech(&frame(3.5)), "3.5 dB does not start speech");
        assert!(vad.is_speech(&frame(5.0)), "5 dB in one band does");
        assert!(vad.is_speech(&frame(1.0)), "1 dB holds it");
        assert!(!vad.is_speech(&frame(0.0)), "0 dB ends it");
        assert!(
            !vad.is_speech(&frame(1.0)),
            "and 1 dB does not start it again"
        );
    }

    #[test]
    fn hangover() {
        let m = |s: &str| s.chars().map(|c| c == '#').collect::<Vec<_>>();
        // At hop 256 (16 ms frames): gaps of 12 frames filled, runs of 4 dropped, and runs
        // widened by nothing at 20 dB, 2 frames (32 ms) at 10 dB, 4 (64 ms) from 0 dB to -10 dB.
        let mask = m("....#####..............######..............##....");
        assert_eq!(
            Hangover::new(256, 25.0).apply(mask.clone()),
            m("....#####..............######....................")
        );
        assert_eq!(
            Hangover::new(256, 10.0).apply(mask.clone()),
            m("..#########..........##########..................")
        );
        assert_eq!(
            Hangover::new(256, -10.0).apply(mask.clone()),
            m("#############......##############................")
        );
        // Below −10 dB the clip is noise, and its runs are not widened.
        assert_eq!(
            Hangover::new(256, -20.0).apply(mask.clone()),
            Hangover::new(256, 25.0).apply(mask.clone())
        );
        // The speaker analysis' mask fills only gaps of ≤ 112 ms (7 frames): a 128 ms pause
        // between two runs keeps them apart there, though the talking goes on across it.
        let mask = m("######........######......######");
        let hangover = Hangover::new(256, 30.0);
        assert_eq!(
            hangover.phrases(mask.clone()),
            m("######........##################")
        );
        assert_eq!(hangover.apply(mask), m("################################"));
        // A run at the edge of the clip is widened only as far as the clip goes.
        assert_eq!(Hangover::new(256, 0.0).apply(m("#####..")), m("#######"));
        assert_eq!(close_open(m("##..##"), 2, 1), m("######"));
        assert_eq!(close_open(m("..##..."), 2, 1), m("..##..."));
        assert_eq!(close_open(m("#...#....##"), 2, 1), m(".........##"));
        assert_eq!(close_open(m("##...##"), 2, 1), m("##...##"));
    }

    /// The streaming hangover agrees with the whole-mask one on every prefix of random masks
    /// (runs of random lengths, so that gaps and blips of every length around the limits
    /// occur), for the hangover lengths of hops 80, 256 and 1024; and what it has decided is
    /// what the whole-mask hangover says of those frames.
    #[test]
    fn streaming_hangover_equals_the_whole_mask() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for (hop, snr_db) in [
            (80, 30.0),
            (80, 5.0),
            (256, 30.0),
            (256, 12.0),
            (256, -3.0),
            (1024, 0.0),
        ] {
            let hangover = Hangover::new(hop, snr_db);
            for _ in 0..50 {
                let mut raw = Vec::new();
                let mut speech = next(2) == 0;
                while raw.len() < 400 {
                    let len = 1 + next(2 * hangover.gap as u64 + 4) as usize;
                    raw.extend(std::iter::repeat_n(speech, len));
                    speech = !speech;
                }
                let mut streaming = StreamingHangover::new(hangover);
                for (i, &r) in raw.iter().enumerate() {
                    streaming.push(r);
                    let whole = hangover.apply(raw[..=i].to_vec());
                    assert_eq!(streaming.len(), i + 1);
                    let want = whole.iter().filter(|&&s| s).count();
                    assert_eq!(streaming.speech_frames(), want, "hop {hop}, frame {i}");
                    assert_eq!(streaming.decided[..], whole[..streaming.decided.len()]);
                }
            }
        }
    }

    /// A VAD that goes on after an analysis of the first frames (as the progressive analysis'
    /// does between refreshes) decides every later frame as one pass over all the frames does,
    /// with the same noise floor, at hops whose VAD judges the mean of several frames (80, 128)
    /// and of one (256): it carries over its last decision and the frames of its mean. Frames
    /// of noise with bursts of random loudness, cut at every frame.
    #[test]
    fn the_vad_goes_on_where_the_analysis_stopped() {
        let checkpoint = &mut Checkpoint::new(&|| false);
        let bands = noise_with_bursts(300);
        for hop in [80, 128, 256] {
            let floor = noise_floor(&bands, hop, checkpoint).expect("never cancelled");
            let mut vad = Vad::new(&floor, 0.5, hop);
            let whole: Vec<bool> = bands.iter().map(|e| vad.is_speech(e)).collect();
            assert!(whole.iter().any(|&s| s) && whole.iter().any(|&s| !s));
            for cut in MIN_FRAMES..bands.len() {
                let analysis = analyse_frames(&bands[..cut], &floor, None, hop, 0.5, checkpoint)
                    .expect("never cancelled");
                let mut vad = analysis.vad;
                let rest: Vec<bool> = bands[cut..].iter().map(|e| vad.is_speech(e)).collect();
                assert_eq!(rest[..], whole[cut..], "hop {hop}, cut at frame {cut}");
            }
        }
    }

    /// Python's float floor division on the hop lengths the API accepts.
    #[test]
    fn python_floor_division() {
        assert_eq!(floor_div(200.0, 16.0), 12);
        assert_eq!(floor_div(40.0, 16.0), 2);
        assert_eq!(floor_div(200.0, 5.0), 40);
        assert_eq!(floor_div(40.0, 6.25), 6);
        assert_eq!(floor_div(200.0, 64.0), 3);
    }

    /// Runs of a value, in order, including one that reaches the end.
    #[test]
    fn runs_in_order() {
        assert_eq!(runs(&[true, true, false, true], true), vec![0..2, 3..4]);
        assert_eq!(runs(&[true, false, false], false), vec![1..3]);
    }
}
