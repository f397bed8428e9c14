//! Audio analysis: a blind SNR estimate, a speech-activity ratio and a speaker-count estimate
//! from a WAV body, with no trained model and no knowledge of the server.
//!
//! # Theory of operation
//!
//! Everything here is classical signal processing. It began as a number-for-number port of a
//! Python reference estimator (`reference_estimates.py`, kept outside this repository), which
//! stays the baseline: `scripts/dataset/evaluate.py --reference` scores the two on the same
//! clips. The noise floor, the VAD and the speaker constants have since moved past it
//! (docs/AUDIO.md, "Accuracy, measured"). One request runs these stages, in this order:
//!
//! 1. **decode** (`wav.rs`): walk the RIFF chunks, convert the samples from the `data` chunk's
//!    bytes in bulk, mix the channels to mono by their mean, subtract the mean (DC), measure the
//!    WADA statistic at the file's own rate, and resample to 16 kHz (`resample.rs`). Rates from
//!    8 kHz ([`MIN_SAMPLE_RATE`]) to 768 kHz are accepted, so the 16 kHz clip holds at most two
//!    samples per byte of body;
//! 2. **frames** (`spectrum.rs`): a short-time Fourier transform, window 2·hop, hop as asked,
//!    summed into seven bands: the WebRTC VAD's from 250 Hz up, and below 250 Hz the bins no
//!    voice reaches, then the rest. A window under 512 points has no such bin, so at hops under
//!    256 a second STFT at hop 256 gives the frames the global SNR is read from (`frames.rs`);
//! 3. **noise floor** (`noise.rs`): per band, the lowest mode of the histogram of log energies
//!    finds the pauses, and the noise is the mean of the pauses' energies (below any voice, of
//!    every frame): unbiased whatever the noise colour, as long as the clip pauses;
//! 4. **SNR and VAD** (`noise.rs`): global SNR = (P̄ − N)/N; a frame becomes speech when its
//!    loudest speech band's SNR, mapped through a logistic, exceeds the threshold, and stays
//!    speech a little below it; then a hangover, which in loud noise also widens each run;
//! 5. **speakers** (`features.rs`, `speakers.rs`, `projection.rs`): MFCC and F0 every 10 ms,
//!    one embedding per speech segment (MFCC statistics through a projection learned from
//!    generated voices, and the pitch), consecutive pieces of one run joined, Ward clustering
//!    weighted by each segment's seconds of speech.
//!
//! Clips too short for a histogram (fewer than 20 frames) get the WADA-SNR estimate (`wada.rs`,
//! Kim & Stern 2008) instead, and no speech ratio or speaker count.
//!
//! # The model
//!
//! [`Analyzer`] holds everything that does not depend on the clip: FFT plans, windows, the mel
//! filterbank, the DCT matrix and the resampling filters (the WADA curve is a constant table).
//! It is built once at start-up and shared by `Arc` among the workers; every method takes
//! `&self`, and the few lazily built parts (one STFT plan per hop, one resampling filter per
//! rate) sit behind a `Mutex` that is held only to look up or insert.
//!
//! # Three ways to run it
//!
//! - [`Analyzer::snr`], [`Analyzer::speakers`], [`Analyzer::analyze`]: on the calling thread;
//! - [`Analyzer::analyze_part`] for each of `n` parts, then [`Analyzer::finish`]: the
//!   per-frame feature work cut into `n` parts of equal estimated cost, for parallel jobs
//!   (`split.rs`, which also gives the plan for chaining them in an endpoint);
//! - [`Analyzer::analyze_progressive`]: a window (one second) at a time, reporting progress
//!   and estimates of the SNR and speech ratio so far (`progressive.rs`).
//!
//! All three end in the same code on the same numbers (`frames.rs` for stages 2–4, then the
//! same features, embeddings and clustering), so their results are equal to the last bit;
//! [`analysis_json`] and its siblings (`json.rs`) turn them into the endpoints' answers.
//!
//! # Cancellation
//!
//! Every analysis, and [`Analyzer::decode`], takes `cancelled: &dyn Fn() -> bool` and polls it
//! about every 0.05 ms of estimated work: inside the decode's passes (RIFF walk, conversion,
//! DC, WADA, the resampling filter's design and the resampler) and the STFT, noise-floor, VAD,
//! feature, join, embedding and clustering loops (`checkpoint.rs`, which also gives the gaps
//! measured). Once it returns true, the work stops and returns [`AudioError::Cancelled`]. That
//! matters for the decode too: about 1 ms for 10 s of 16 kHz audio, but 85–370 ms of CPU for
//! the costliest uploads a 16 MiB body allows (8-bit mono at 22.05 or 44.1 kHz, 16-bit at
//! 48 kHz).
//!
//! # Cost
//!
//! Measured by `benches/audio.rs` (one core, release build), in ms of CPU per second of 16 kHz
//! audio: decode 0.1, SNR 0.06, speakers 0.46 (it repeats the frame analysis), so about
//! 0.6–0.7 for all three; [`Analyzer::analyze`], which runs the frame analysis once, saves the
//! repeat. A 44.1 kHz stereo file costs about 0.7 ms per second to decode: 5.5 times the
//! samples, plus the resampler.
//!
//! # Omitted
//!
//! Compressed WAV encodings (ADPCM, A-law, µ-law), 64-bit float, non-WAV containers, neural
//! VAD or speaker embeddings. The speaker count is an *estimate*: it separates voices of
//! clearly different pitch and timbre that take turns with pauses, and does worse on
//! real conversations (overlap, same-gender voices, back-channels).

mod checkpoint;
mod features;
mod frames;
mod json;
mod noise;
mod progressive;
mod projection;
mod resample;
mod sounds;
mod speakers;
mod spectrum;
mod split;
pub mod synth;
mod wada;
mod wav;

pub use self::json::{analysis_json, progress_json, snr_json, speakers_json};
pub use self::progressive::Progress;
pub use self::split::PartialAnalysis;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use realfft::RealFftPlanner;

use self::checkpoint::Checkpoint;
use self::features::FrameFeatures;
use self::frames::{Frames, SpeechPlan};
use self::resample::Polyphase;
use self::speakers::{FeatureSpan, SegmentPlan};
use self::spectrum::StftPlan;

/// The rate every analysis runs at. Other rates are resampled to it on decode.
pub const SAMPLE_RATE: u32 = 16_000;

/// Lowest sample rate decoded; lower rates are refused as unsupported before any sample is read.
///
/// Two reasons, one per side of the request. The analysis needs it: the voice-activity band
/// reaches 4 kHz, so a file must be sampled at 8 kHz or more to hold it (Nyquist), and 8 kHz is
/// the lowest rate in common use for speech (telephony). And it keeps the work proportional to
/// the upload: resampling to 16 kHz at most doubles the samples, so the clip the analyses read
/// never holds more than two samples per byte of body (8-bit mono at 8 kHz is the worst case).
/// Without a floor, a 2.4 KB file that claims 4 Hz would decode to 600 s of 16 kHz audio.
pub const MIN_SAMPLE_RATE: u32 = 8_000;

/// Accepted `vad_hop_size` values (samples at 16 kHz): 5 ms to 64 ms. Out-of-range hops are
/// clamped into it by the analyses; the endpoint should reject them first.
pub const HOP_RANGE: std::ops::RangeInclusive<usize> = 80..=1024;

/// The speaker count is capped here: past a handful of voices the estimate means little, and
/// a cap keeps the answer's range known to clients.
pub const MAX_SPEAKERS: usize = 8;

/// Resampling filters kept in the cache at most; rarer rates are designed per request (a few
/// milliseconds at worst) so that a stream of odd rates cannot grow memory.
const FILTER_CACHE_LIMIT: usize = 16;

/// The analysis "model": plans, windows and filters built once and shared by all workers.
pub struct Analyzer {
    /// MFCC and F0 front end: 512-point and 1024-point FFT plans, the Hamming window, the
    /// sparse mel filterbank and the DCT. Built in [`Analyzer::new`], read-only after.
    features: FrameFeatures,
    /// Plans real FFTs of any size; used to build the STFT plans on first use of each hop.
    planner: Mutex<RealFftPlanner<f64>>,
    /// STFT plan (FFT, Hann window, band bin ranges) per window length 2·hop. At most one
    /// entry per value in [`HOP_RANGE`]; entries live as long as the analyzer.
    stft_plans: Mutex<HashMap<usize, Arc<StftPlan>>>,
    /// Polyphase resampling filters per (up, down) ratio to 16 kHz, at most
    /// [`FILTER_CACHE_LIMIT`] of them; entries live as long as the analyzer.
    filters: Mutex<HashMap<(usize, usize), Arc<Polyphase>>>,
}

/// A decoded clip, ready for analysis.
pub struct Clip {
    /// Mono samples at 16 kHz, DC removed: what every frame analysis reads.
    samples: Vec<f64>,
    /// WADA-SNR (dB) measured on the mono mix at the file's own rate, before resampling: the
    /// resampler's interpolation would change the amplitude distribution WADA reads. `None` for
    /// digital silence.
    wada_snr_db: Option<f64>,
    /// Every sample of the mono mix is exactly zero.
    silent: bool,
    /// What the file said about itself.
    pub info: ClipInfo,
}

/// What the WAV header said, and how long the clip is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipInfo {
    /// The file's sample rate in Hz (the analysis always runs at 16 kHz).
    pub sample_rate: u32,
    /// Channels in the file; they are mixed to mono by their mean.
    pub channels: u16,
    /// Bits per sample of the container (8, 16, 24 or 32).
    pub bits: u16,
    /// IEEE float samples rather than integers.
    pub float: bool,
    /// Sample frames per channel in the file.
    pub frames: u64,
    /// `frames / sample_rate`, in seconds.
    pub duration_s: f64,
}

/// The two knobs of the VAD, named after the service's `vad_hop_size` and `vad_threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadParams {
    /// Frame hop in samples at 16 kHz (the STFT window is twice this). See [`HOP_RANGE`]. Under
    /// 256 it is the VAD's hop, and the global SNR is read from frames of hop 256 (`frames.rs`).
    pub hop: usize,
    /// A frame becomes speech when its speech "probability" exceeds this, in [0, 1]. 0.5 means
    /// its loudest speech band 4 dB above the level that band's noise stays under in 9 pauses
    /// out of 10 (`noise.rs` has the whole rule).
    pub threshold: f64,
}

impl Default for VadParams {
    /// TEN VAD's defaults: 16 ms hop, threshold 0.5.
    fn default() -> Self {
        VadParams {
            hop: 256,
            threshold: 0.5,
        }
    }
}

/// The SNR estimate of one clip. Every number is finite or `None`, never NaN or infinite.
#[derive(Debug, Clone, PartialEq)]
pub struct SnrReport {
    /// Global SNR in dB: 10·log10(Σ speech² / Σ noise²) over the whole clip, −30 to 100.
    pub snr_db: Option<f64>,
    /// Speech power over speech-active frames only, against the same noise (0–3 dB above
    /// `snr_db` on typical clips). `None` when no frame is speech, or the clip is short.
    pub snr_active_db: Option<f64>,
    /// Fraction of frames the VAD calls speech. `None` for a short clip.
    pub speech_ratio: Option<f64>,
    /// WADA-SNR in dB, −20 to 100: the short-clip fallback, reported as a cross-check.
    pub wada_snr_db: Option<f64>,
    /// How `snr_db` was obtained: `"noise-floor"`, `"wada"` (short clip) or `"silence"`.
    pub method: &'static str,
}

/// The speaker-count estimate of one clip.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeakerReport {
    /// Distinct voices, at most [`MAX_SPEAKERS`]; 0 when nothing is speech, `None` for a clip
    /// too short to analyse.
    pub speakers: Option<usize>,
    /// Speech segments: the runs of speech of ≥ 0.25 s, cut into pieces of ≤ 1.5 s (counted
    /// before consecutive pieces of one run are joined for the clustering).
    pub segments: usize,
}

/// Why a body could not be decoded, or an analysis did not finish.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioError {
    /// The body is empty.
    Empty,
    /// Not a RIFF/WAVE file at all (text, JSON, MP3, ...).
    NotWav(String),
    /// A WAV in an encoding this module does not decode (ADPCM, A-law, 12-bit, 64-bit float, an
    /// exotic sample rate, ...).
    Unsupported(String),
    /// A WAV whose structure is broken: truncated header or data, missing `fmt ` or `data`
    /// chunk, zero channels or sample rate, a sample that cannot be read.
    Malformed(String),
    /// A well-formed WAV with no sample frames.
    NoSamples,
    /// Longer than the caller allows.
    TooLong {
        /// The clip's duration.
        seconds: f64,
        /// The limit it exceeds.
        max_seconds: f64,
    },
    /// The analysis stopped because its `cancelled` check said so: nobody wants the result
    /// (the client left, or the request timed out). Never caused by the body.
    Cancelled,
}

impl fmt::Display for AudioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioError::Empty => write!(f, "empty body: expected a WAV file"),
            AudioError::NotWav(why) => write!(f, "not a WAV file: {why}"),
            AudioError::Unsupported(why) => write!(f, "unsupported WAV encoding: {why}"),
            AudioError::Malformed(why) => write!(f, "malformed WAV file: {why}"),
            AudioError::NoSamples => write!(f, "WAV file contains no samples"),
            AudioError::TooLong {
                seconds,
                max_seconds,
            } => write!(
                f,
                "audio is {seconds:.1} s long, longer than the {max_seconds} s allowed"
            ),
            AudioError::Cancelled => write!(f, "analysis cancelled"),
        }
    }
}

impl std::error::Error for AudioError {}

impl Analyzer {
    /// Builds the model: FFT plans for the fixed sizes, windows, mel filterbank, DCT.
    pub fn new() -> Analyzer {
        let mut planner = RealFftPlanner::new();
        let features = FrameFeatures::new(&mut planner);
        Analyzer {
            features,
            planner: Mutex::new(planner),
            stft_plans: Mutex::new(HashMap::new()),
            filters: Mutex::new(HashMap::new()),
        }
    }

    /// Decode a WAV body: PCM 8/16/24/32-bit int, 32-bit float, WAVE_FORMAT_EXTENSIBLE, extra
    /// chunks; mono by channel mean; DC removed; resampled to 16 kHz. Rejects what it cannot
    /// use, and clips longer than `max_seconds`. `Err(AudioError::Cancelled)` once
    /// `cancelled()` is true: it is polled about every 0.05 ms of work, as in the analyses.
    pub fn decode(
        &self,
        wav: &[u8],
        max_seconds: f64,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Clip, AudioError> {
        let mut checkpoint = Checkpoint::new(cancelled);
        let decoded = wav::decode(wav, max_seconds, &mut checkpoint)?;
        let silent = all_zero(&decoded.mono, &mut checkpoint)?;
        let wada_snr_db = wada::wada_snr_db(&decoded.mono, decoded.lsb, &mut checkpoint)?;
        let samples = match resample::ratio_to_16k(decoded.info.sample_rate)? {
            None => decoded.mono,
            Some((up, down)) => {
                let samples = self
                    .polyphase(up, down, &mut checkpoint)?
                    .apply(&decoded.mono, &mut checkpoint)?;
                checkpoint.release(decoded.mono)?;
                samples
            }
        };
        Ok(Clip {
            samples,
            wada_snr_db,
            silent,
            info: decoded.info,
        })
    }

    /// Global SNR (sub-band noise floor, WADA fallback under 20 frames), active SNR, speech
    /// ratio. `Err(AudioError::Cancelled)` once `cancelled()` is true: it is polled about
    /// every 0.05 ms of work (see `checkpoint.rs`).
    pub fn snr(
        &self,
        clip: &Clip,
        params: VadParams,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<SnrReport, AudioError> {
        let mut checkpoint = Checkpoint::new(cancelled);
        Ok(self.frames(clip, params, &mut checkpoint)?.snr_report(clip))
    }

    /// Speaker count estimate (capped at [`MAX_SPEAKERS`]) and number of segments.
    /// `Err(AudioError::Cancelled)` once `cancelled()` is true, as for [`Analyzer::snr`].
    pub fn speakers(
        &self,
        clip: &Clip,
        params: VadParams,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<SpeakerReport, AudioError> {
        let mut checkpoint = Checkpoint::new(cancelled);
        let frames = self.frames(clip, params, &mut checkpoint)?;
        self.speaker_report(clip, &frames, params, &mut checkpoint)
    }

    /// Both reports, on the calling thread, with the frame analysis done once: what `/analyze`
    /// answers, and what [`Analyzer::analyze_part`] with [`Analyzer::finish`] and
    /// [`Analyzer::analyze_progressive`] give too, to the last bit.
    pub fn analyze(
        &self,
        clip: &Clip,
        params: VadParams,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<(SnrReport, SpeakerReport), AudioError> {
        let mut checkpoint = Checkpoint::new(cancelled);
        let frames = self.frames(clip, params, &mut checkpoint)?;
        let speakers = self.speaker_report(clip, &frames, params, &mut checkpoint)?;
        Ok((frames.snr_report(clip), speakers))
    }

    /// Stages 2–4, shared by both reports: STFT band energies, noise floor, SNR and VAD.
    fn frames(
        &self,
        clip: &Clip,
        params: VadParams,
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<Frames, AudioError> {
        if clip.silent {
            return Ok(Frames::Silence);
        }
        let hop = clamp_hop(params.hop);
        let bands = self
            .stft_plan(hop)
            .band_energies(&clip.samples, checkpoint)?;
        let snr_bands = match frames::snr_hop(hop) {
            Some(snr_hop) => Some(
                self.stft_plan(snr_hop)
                    .band_energies(&clip.samples, checkpoint)?,
            ),
            None => None,
        };
        let frames = Frames::from_bands(
            &bands,
            snr_bands.as_deref(),
            hop,
            params.threshold,
            checkpoint,
        )?;
        checkpoint.release(bands)?;
        if let Some(snr_bands) = snr_bands {
            checkpoint.release(snr_bands)?;
        }
        Ok(frames)
    }

    /// Stage 5 on the whole clip: features, embeddings, clustering.
    fn speaker_report(
        &self,
        clip: &Clip,
        frames: &Frames,
        params: VadParams,
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<SpeakerReport, AudioError> {
        let hop = clamp_hop(params.hop);
        let plan = match frames.speech_plan(clip.samples.len(), hop, checkpoint)? {
            SpeechPlan::Known(report) => return Ok(report),
            SpeechPlan::Segments(plan) => plan,
        };
        let all = 0..plan.frames();
        let features = FeatureSpan::extract(&self.features, &clip.samples, &plan, all, checkpoint)?;
        cluster(&plan, features, checkpoint)
    }

    /// The STFT plan for window 2·hop, built on first use.
    fn stft_plan(&self, hop: usize) -> Arc<StftPlan> {
        if let Some(plan) = lock(&self.stft_plans).get(&hop) {
            return Arc::clone(plan);
        }
        let fft = lock(&self.planner).plan_fft_forward(2 * hop);
        let plan = Arc::new(StftPlan::new(hop, fft));
        lock(&self.stft_plans).insert(hop, Arc::clone(&plan));
        plan
    }

    /// The resampling filter for `up/down`, designed outside the lock (two workers may both
    /// design the same filter once; both results are identical). A design cut short by the
    /// checkpoint leaves nothing in the cache.
    fn polyphase(
        &self,
        up: usize,
        down: usize,
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<Arc<Polyphase>, AudioError> {
        if let Some(filter) = lock(&self.filters).get(&(up, down)) {
            return Ok(Arc::clone(filter));
        }
        let filter = Arc::new(Polyphase::design(up, down, checkpoint)?);
        let mut cache = lock(&self.filters);
        if cache.len() < FILTER_CACHE_LIMIT {
            cache.insert((up, down), Arc::clone(&filter));
        }
        Ok(filter)
    }
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer::new()
    }
}

impl Clip {
    /// The mono 16 kHz samples the analyses read (DC removed).
    pub fn samples(&self) -> &[f64] {
        &self.samples
    }
}

/// A poisoned cache lock only means another worker panicked while inserting; the map itself is
/// still a valid cache, so carry on with it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every sample of `x` is exactly zero (digital silence), a block at a time.
fn all_zero(x: &[f64], checkpoint: &mut Checkpoint<'_>) -> Result<bool, AudioError> {
    for block in x.chunks(checkpoint::BLOCK) {
        if !block.iter().all(|&v| v == 0.0) {
            return Ok(false);
        }
        checkpoint.tick(block.len() as u64 * checkpoint::READ_NS)?;
    }
    Ok(true)
}

fn clamp_hop(hop: usize) -> usize {
    hop.clamp(*HOP_RANGE.start(), *HOP_RANGE.end())
}

/// The end of stage 5, once every feature frame `plan` reads is in `features`: embeddings,
/// clustering, the report.
fn cluster(
    plan: &SegmentPlan,
    mut features: FeatureSpan,
    checkpoint: &mut Checkpoint<'_>,
) -> Result<SpeakerReport, AudioError> {
    checkpoint.poll()?;
    let segments = speakers::embed(plan, &mut features, checkpoint)?;
    // Read no more: freed here a step at a time, not dropped at the end in one stretch.
    checkpoint.release(features.cepstra)?;
    checkpoint.release(features.f0)?;
    checkpoint.poll()?;
    let pieces = segments.len();
    let joined = speakers::join_runs(plan, segments, checkpoint)?;
    let speakers = speakers::count_speakers(&joined, checkpoint)?.min(MAX_SPEAKERS);
    Ok(SpeakerReport {
        speakers: Some(speakers),
        segments: pieces,
    })
}

/// Reports carry only finite numbers: JSON has no NaN.
fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}
