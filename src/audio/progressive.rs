//! Progressive analysis: a clip processed one window (one second of audio) at a time, with an
//! estimate of the SNR and the speech ratio after each window, then the same final result as
//! [`Analyzer::analyze`] — for a stream that shows its progress.
//!
//! # What a window does
//!
//! 1. the STFT frames the window completes are appended to the clip's band energies (at hops
//!    under 256, those of the hop-256 STFT the global SNR is read from too; each
//!    frame reads only its own samples, so at the end they are exactly the whole analysis's);
//! 2. the estimate is updated (below), and the window's progress is reported;
//! 3. the MFCCs and F0 of the feature frames the estimate already calls speech are computed
//!    ahead and cached, so the feature work, most of the cost, is spread over the windows
//!    instead of waiting for the end.
//!
//! After the last window comes the exact analysis of the whole clip: the noise floor and the
//! VAD over all its frames ([`Frames::from_bands`], as for `/analyze`), the features the
//! final plan needs that the cache lacks (a frame's features do not depend on when they are
//! computed, so cached values are the final ones), then embedding and clustering. So the result
//! is `/analyze`'s to the last bit; features cached for frames the final VAD does not call
//! speech are the only work wasted.
//!
//! # What "so far" means
//!
//! The noise floor is a histogram mode (and a mean over the pauses it finds) over every
//! frame: it cannot be updated a frame at a time, and recomputing it after every window would
//! cost O(windows²). So the estimate is
//! *refreshed* — the noise floor, SNR and VAD recomputed exactly over all the frames so far,
//! by the same code as the final analysis — whenever the frames so far have grown by half since
//! the last refresh (at 1, 2, 3, 5, 8, 12, 18 … seconds). Refreshes cost at most three times
//! one noise-floor-and-VAD pass over the whole clip (1 + 2/3 + 4/9 + …), a few percent of
//! the analysis; the STFT is never repeated. Then:
//!
//! - **at a refresh**, `snr_db_so_far` and `speech_ratio_so_far` are exactly what `/snr-detect`
//!   would report for a clip holding only the audio so far;
//! - **between refreshes**, `snr_db_so_far` compares the mean frame energy of *all* the frames
//!   so far with the noise floor of the last refresh, and `speech_ratio_so_far` counts the
//!   frames of the last refresh as it judged them, plus the frames since, judged one by one
//!   against that noise floor by the refresh's VAD going on where it stopped (its last
//!   decision and the frames of its 16 ms mean), with the hangover applied among them
//!   (`StreamingHangover`, O(1) a frame);
//! - **before the audio so far holds 20 STFT frames** (the minimum the noise floor needs:
//!   0.34 s at hop 256, 1.3 s at hop 1024), both are `None`; for digital silence they are
//!   `None` and 0, as the final report says;
//! - **at the last window** they are the final report's `snr_db` and `speech_ratio`, exactly.
//!
//! As the audio so far grows, the noise floor of a refresh rests on more frames and each
//! refresh moves the estimate less; how far a mid-clip estimate is from the final value depends
//! on the clip (a clip whose first seconds are all speech overestimates the noise at first).

use std::sync::Arc;

use super::checkpoint::{Checkpoint, F0_NS, LEVEL_NS, MFCC_NS, STEP_NS};
use super::features::{frame_count, Cepstrum, Scratch, CEPS};
use super::frames::{snr_hop, snr_level, Frames, SpeechPlan};
use super::noise::{self, Level, NoiseFloor, StreamingHangover, Vad};
use super::speakers::{long_enough, stft_frame_of, FeatureSpan, SegmentPlan};
use super::spectrum::{BandEnergies, StftBuffers, StftPlan, BANDS};
use super::{
    clamp_hop, cluster, finite, Analyzer, AudioError, Clip, SnrReport, SpeakerReport, VadParams,
    SAMPLE_RATE,
};

/// Samples per window: one second at 16 kHz.
const WINDOW: usize = SAMPLE_RATE as usize;

/// What [`Analyzer::analyze_progressive`] reports after each window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Seconds of the clip processed, on the file's own clock: increasing, and exactly
    /// `duration_s` at the last window.
    pub processed_s: f64,
    /// The clip's duration (`ClipInfo::duration_s`).
    pub duration_s: f64,
    /// Global SNR of the audio so far, in dB (see the module notes for how it is estimated);
    /// the final `snr_db` at the last window.
    pub snr_db_so_far: Option<f64>,
    /// Speech ratio of the audio so far; the final `speech_ratio` at the last window.
    pub speech_ratio_so_far: Option<f64>,
}

impl Analyzer {
    /// The analysis of `clip` one window (one second) at a time, calling `progress` after each
    /// window, then returning exactly what [`Analyzer::analyze`] returns. `cancelled` is
    /// polled at every window and about every 0.05 ms of work within it; once it is true, no
    /// further progress is reported and the result is `Err(AudioError::Cancelled)`.
    pub fn analyze_progressive(
        &self,
        clip: &Clip,
        params: VadParams,
        cancelled: &dyn Fn() -> bool,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(SnrReport, SpeakerReport), AudioError> {
        let mut checkpoint = Checkpoint::new(cancelled);
        let x = &clip.samples;
        let duration_s = clip.info.duration_s;
        let hop = clamp_hop(params.hop);
        let mut stft = Stft::new(self.stft_plan(hop), x.len());
        // At hops under 256, the frames the global SNR is read from (see `frames.rs`).
        let mut snr_stft = snr_hop(hop).map(|snr_hop| Stft::new(self.stft_plan(snr_hop), x.len()));
        let mut estimate = Estimate::new(hop, params.threshold);
        let mut cache = FeatureCache::new(self, frame_count(x.len()));

        // Every window but the last: estimates.
        for end in (WINDOW..x.len()).step_by(WINDOW) {
            checkpoint.poll()?;
            let processed_s = duration_s * (end as f64 / x.len() as f64);
            let (snr_db_so_far, speech_ratio_so_far) = if clip.silent {
                (None, Some(0.0))
            } else {
                stft.extend(&x[..end], &mut checkpoint)?;
                if let Some(snr_stft) = &mut snr_stft {
                    snr_stft.extend(&x[..end], &mut checkpoint)?;
                }
                let snr_bands = snr_stft.as_ref().map(|s| &s.bands[..]);
                let so_far = estimate.update(&stft.bands, snr_bands, &mut checkpoint)?;
                cache.read_ahead(&x[..end], &estimate, &mut checkpoint)?;
                so_far
            };
            progress(Progress {
                processed_s,
                duration_s,
                snr_db_so_far,
                speech_ratio_so_far,
            });
        }

        // The last window, then the exact analysis of the whole clip.
        checkpoint.poll()?;
        let frames = if clip.silent {
            Frames::Silence
        } else {
            stft.extend(x, &mut checkpoint)?;
            if let Some(snr_stft) = &mut snr_stft {
                snr_stft.extend(x, &mut checkpoint)?;
            }
            let snr_bands = snr_stft.as_ref().map(|s| &s.bands[..]);
            Frames::from_bands(
                &stft.bands,
                snr_bands,
                hop,
                params.threshold,
                &mut checkpoint,
            )?
        };
        checkpoint.release(stft.bands)?;
        if let Some(snr_stft) = snr_stft {
            checkpoint.release(snr_stft.bands)?;
        }
        let snr = frames.snr_report(clip);
        let last = Progress {
            processed_s: duration_s,
            duration_s,
            snr_db_so_far: snr.snr_db,
            speech_ratio_so_far: snr.speech_ratio,
        };
        let speakers = match frames.speech_plan(x.len(), hop, &mut checkpoint)? {
            SpeechPlan::Known(report) => {
                progress(last);
                report
            }
            SpeechPlan::Segments(plan) => {
                let features = cache.complete(x, &plan, &mut checkpoint)?;
                progress(last);
                cluster(&plan, features, &mut checkpoint)?
            }
        };
        Ok((snr, speakers))
    }
}

/// One hop's STFT, extended window by window: its plan, FFT buffers and the band energies of
/// the frames so far.
struct Stft {
    plan: Arc<StftPlan>,
    buffers: StftBuffers,
    bands: Vec<BandEnergies>,
}

impl Stft {
    fn new(plan: Arc<StftPlan>, len: usize) -> Stft {
        Stft {
            buffers: plan.buffers(),
            bands: Vec::with_capacity(plan.frame_count(len)),
            plan,
        }
    }

    /// Append the frames that `x`, the clip so far, completes.
    fn extend(&mut self, x: &[f64], checkpoint: &mut Checkpoint<'_>) -> Result<(), AudioError> {
        self.plan
            .extend(x, &mut self.buffers, &mut self.bands, checkpoint)
    }
}

/// The running estimate behind the "so far" values.
struct Estimate {
    hop: usize,
    threshold: f64,
    /// Mean energies of the frames so far, summed in frame order: the VAD's frames, and (at
    /// hops under 256) the frames the SNR is read from.
    energy: EnergySum,
    snr_energy: EnergySum,
    /// The last exact analysis of the frames so far, and the frames judged since.
    refresh: Option<Refresh>,
}

/// Frame energies summed in frame order, as the frames arrive.
#[derive(Default)]
struct EnergySum {
    sum: f64,
    /// Frames in `sum`.
    frames: usize,
}

impl EnergySum {
    /// Take in the frames of `bands` not summed yet; their mean energy.
    fn update(&mut self, bands: &[BandEnergies]) -> f64 {
        for e in &bands[self.frames..] {
            self.sum += noise::frame_energy(e);
        }
        self.frames = bands.len();
        self.sum / self.frames as f64
    }
}

/// An exact analysis of the first `frames` frames, and the frames judged against it since.
struct Refresh {
    /// Frames it analysed.
    frames: usize,
    /// Its noise floor per band (the VAD below holds its own copy of what it compares with).
    noise: NoiseFloor,
    /// At hops under 256, the noise power per band on the frames the SNR is read from; `None`
    /// when the SNR was read from the VAD's own frames.
    snr_noise: Option<[f64; BANDS]>,
    /// The VAD against that floor.
    vad: Vad,
    /// Its speech mask as the speaker analysis reads it ([`noise::FrameAnalysis::phrases`])
    /// over those frames.
    speech: Vec<bool>,
    /// Speech frames in its widened mask (what the speech ratio counts).
    speech_frames: usize,
    /// The frames since, judged against `noise`, with the hangover among them.
    since: StreamingHangover,
}

impl Estimate {
    fn new(hop: usize, threshold: f64) -> Estimate {
        Estimate {
            hop,
            threshold,
            energy: EnergySum::default(),
            snr_energy: EnergySum::default(),
            refresh: None,
        }
    }

    /// Take in the frames of `bands` (and of `snr_bands`, at hops under 256) not seen yet; the
    /// SNR and speech ratio so far.
    fn update(
        &mut self,
        bands: &[BandEnergies],
        snr_bands: Option<&[BandEnergies]>,
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<(Option<f64>, Option<f64>), AudioError> {
        let mean_energy = self.energy.update(bands);
        let snr_mean_energy = snr_bands.map(|b| self.snr_energy.update(b));
        let frames = bands.len();
        if frames < noise::MIN_FRAMES {
            return Ok((None, None));
        }
        // Refresh when the frames have grown by half since the last refresh.
        let refresh = match self.refresh.take() {
            Some(refresh) if 2 * frames < 3 * refresh.frames => refresh,
            _ => {
                let level = match snr_bands {
                    Some(snr_bands) => snr_level(snr_bands, checkpoint)?,
                    None => None,
                };
                let noise = noise::noise_floor(bands, self.hop, checkpoint)?;
                let analysis = noise::analyse_frames(
                    bands,
                    &noise,
                    level,
                    self.hop,
                    self.threshold,
                    checkpoint,
                )?;
                let so_far = (finite(analysis.snr_db), finite(analysis.speech_ratio()));
                self.refresh = Some(Refresh {
                    frames,
                    noise,
                    snr_noise: level.map(|level| level.power),
                    // The VAD goes on where the analysis left it: its last decision (the
                    // hysteresis) and the frames of its 16 ms mean.
                    vad: analysis.vad,
                    speech_frames: analysis.speech.iter().filter(|&&s| s).count(),
                    speech: analysis.phrases,
                    since: StreamingHangover::new(analysis.hangover),
                });
                return Ok(so_far);
            }
        };
        let refresh = self.refresh.insert(refresh);
        for e in &bands[refresh.frames + refresh.since.len()..] {
            refresh.since.push(refresh.vad.is_speech(e));
            checkpoint.tick(LEVEL_NS)?;
        }
        let level = match (refresh.snr_noise, snr_mean_energy) {
            (Some(power), Some(mean_energy)) => Level { mean_energy, power },
            _ => Level {
                mean_energy,
                power: refresh.noise.power,
            },
        };
        let snr_db = level.snr_db();
        let speech = refresh.speech_frames + refresh.since.speech_frames();
        Ok((finite(snr_db), finite(speech as f64 / frames as f64)))
    }

    /// The estimate's verdict on STFT frame `s`, if it has one that can no longer change
    /// until the next refresh: which features are worth computing ahead. Up to the refresh it
    /// is the mask the speaker analysis reads; after it, the speech ratio's, whose longer
    /// hangover and widening call a few more frames speech than the final speaker analysis
    /// reads: features computed ahead for nothing, but never wrong.
    fn speech(&self, s: usize) -> Option<bool> {
        let refresh = self.refresh.as_ref()?;
        match s.checked_sub(refresh.frames) {
            None => refresh.speech.get(s).copied(),
            Some(since) => refresh.since.decided.get(since).copied(),
        }
    }
}

/// Features computed ahead, window by window, for the frames the estimate calls speech.
///
/// The per-frame vectors grow as the frames are visited, in order, into capacity reserved up
/// front: zeroing them all at once would be a long stretch without a tick.
struct FeatureCache<'a> {
    analyzer: &'a Analyzer,
    scratch: Scratch,
    /// MFCCs per feature frame visited, where `has_mfcc`.
    cepstra: Vec<Cepstrum>,
    has_mfcc: Vec<bool>,
    /// F0 per feature frame visited, where `has_f0`.
    f0: Vec<f64>,
    has_f0: Vec<bool>,
    /// The next feature frame to look at.
    next: usize,
    /// First frame of the speech run the estimate is in at `next`, if any.
    run_start: Option<usize>,
}

impl<'a> FeatureCache<'a> {
    fn new(analyzer: &'a Analyzer, frames: usize) -> FeatureCache<'a> {
        FeatureCache {
            analyzer,
            scratch: analyzer.features.scratch(),
            cepstra: Vec::with_capacity(frames),
            has_mfcc: Vec::with_capacity(frames),
            f0: Vec::with_capacity(frames),
            has_f0: Vec::with_capacity(frames),
            next: 0,
            run_start: None,
        }
    }

    /// Compute ahead the features of the feature frames of `x` (the audio so far) that the
    /// estimate has a verdict on: MFCCs of speech frames; F0 of the frames of speech runs once
    /// they are long enough to be segments.
    fn read_ahead(
        &mut self,
        x: &[f64],
        estimate: &Estimate,
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<(), AudioError> {
        let available = frame_count(x.len());
        while self.next < available {
            let t = self.next;
            let Some(speech) = estimate.speech(stft_frame_of(t, estimate.hop)) else {
                break;
            };
            self.visit(t);
            self.next += 1;
            if !speech {
                self.run_start = None;
                continue;
            }
            self.mfcc(x, t, checkpoint)?;
            let start = *self.run_start.get_or_insert(t);
            if long_enough(t + 1 - start) {
                // The run has just become a segment: its frames so far need their F0 too.
                let from = if long_enough(t - start) { t } else { start };
                for u in from..=t {
                    self.f0(x, u, checkpoint)?;
                }
            }
        }
        Ok(())
    }

    /// Every feature the final `plan` reads, computing what was not read ahead.
    fn complete(
        mut self,
        x: &[f64],
        plan: &SegmentPlan,
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<FeatureSpan, AudioError> {
        for t in 0..plan.frames() {
            self.visit(t);
            if plan.is_speech[t] {
                self.mfcc(x, t, checkpoint)?;
            }
            if plan.in_segment[t] {
                self.f0(x, t, checkpoint)?;
            }
            checkpoint.tick(STEP_NS)?;
        }
        Ok(FeatureSpan {
            range: 0..plan.frames(),
            cepstra: self.cepstra,
            f0: self.f0,
        })
    }

    /// Make room for frame `t`, the next frame not visited yet or one before it.
    fn visit(&mut self, t: usize) {
        if t == self.cepstra.len() {
            self.cepstra.push([0.0; CEPS]);
            self.has_mfcc.push(false);
            self.f0.push(0.0);
            self.has_f0.push(false);
        }
    }

    /// The MFCCs of frame `t`, unless they are cached already.
    fn mfcc(
        &mut self,
        x: &[f64],
        t: usize,
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<(), AudioError> {
        if self.has_mfcc[t] {
            return Ok(());
        }
        self.cepstra[t] = self.analyzer.features.mfcc(x, t, &mut self.scratch);
        self.has_mfcc[t] = true;
        checkpoint.tick(MFCC_NS)
    }

    /// The F0 of frame `t`, unless it is cached already.
    fn f0(
        &mut self,
        x: &[f64],
        t: usize,
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<(), AudioError> {
        if self.has_f0[t] {
            return Ok(());
        }
        self.f0[t] = self.analyzer.features.f0(x, t, &mut self.scratch);
        self.has_f0[t] = true;
        checkpoint.tick(F0_NS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::noise::noise_with_bursts;

    /// Between refreshes the estimate judges each new frame as one pass of the VAD over all
    /// the frames so far, with the last refresh's noise floor, would (at hop 80 its mean spans
    /// four frames), and its hangover runs over those verdicts from the refresh on: frames
    /// arriving a second (200 frames) at a time, refreshed at 1, 2, 3, 5, 8 and 12 s.
    #[test]
    fn between_refreshes_the_vad_is_one_pass() {
        let hop = 80;
        let checkpoint = &mut Checkpoint::new(&|| false);
        let bands = noise_with_bursts(3000);
        let mut estimate = Estimate::new(hop, 0.5);
        let mut checked = 0;
        for end in (200..=bands.len()).step_by(200) {
            estimate
                .update(&bands[..end], None, checkpoint)
                .expect("never cancelled");
            let Some(refresh) = &estimate.refresh else {
                panic!("no refresh after {end} frames")
            };
            if refresh.frames == end {
                continue;
            }
            let mut vad = Vad::new(&refresh.noise, 0.5, hop);
            let raw: Vec<bool> = bands[..end].iter().map(|e| vad.is_speech(e)).collect();
            let analysis = noise::analyse_frames(
                &bands[..refresh.frames],
                &refresh.noise,
                None,
                hop,
                0.5,
                checkpoint,
            )
            .expect("never cancelled");
            let mut want = StreamingHangover::new(analysis.hangover);
            for &r in &raw[refresh.frames..] {
                want.push(r);
            }
            assert_eq!(refresh.since.decided, want.decided, "after {end} frames");
            assert_eq!(refresh.since.speech_frames(), want.speech_frames());
            checked += 1;
        }
        assert_eq!(checked, 9);
    }
}
