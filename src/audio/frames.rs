//! The frame analysis (stages 2–4: STFT bands, noise floor, SNR and VAD) and what each report
//! takes from it. Every way of running the analysis — whole, split in parts, window by window —
//! ends in [`Frames::from_bands`] on the clip's band energies, so they all agree.

use super::checkpoint::Checkpoint;
use super::noise::{self, FrameAnalysis, Level};
use super::speakers::SegmentPlan;
use super::spectrum::BandEnergies;
use super::{finite, AudioError, Clip, SnrReport, SpeakerReport};

/// The shortest hop the global SNR is measured at. Its 512-point window is the shortest with a
/// bin that no voice reaches (`spectrum.rs`), which is where brown noise and rumble keep most of
/// their energy, measured over every frame. A VAD at a finer hop still reads the SNR on frames
/// of this hop, so that its `snr_db` in low-frequency noise is as good as the default's.
pub(crate) const SNR_MIN_HOP: usize = 256;

/// The hop whose frames give the global SNR at VAD hop `hop`, if it is not `hop` itself.
pub(crate) fn snr_hop(hop: usize) -> Option<usize> {
    (hop < SNR_MIN_HOP).then_some(SNR_MIN_HOP)
}

/// The clip's level on the frames of [`snr_hop`], if there are enough of them for a noise floor
/// (a clip of 0.1 to 0.34 s at a small hop has enough frames for its VAD, not for these: then
/// its own frames give the SNR, as they always did).
pub(crate) fn snr_level(
    snr_bands: &[BandEnergies],
    checkpoint: &mut Checkpoint<'_>,
) -> Result<Option<Level>, AudioError> {
    if snr_bands.len() < noise::MIN_FRAMES {
        return Ok(None);
    }
    checkpoint.poll()?;
    let floor = noise::noise_floor(snr_bands, SNR_MIN_HOP, checkpoint)?;
    Ok(Some(Level::of(snr_bands, &floor, checkpoint)?))
}

/// What the frame analysis found; both reports start from it.
pub(crate) enum Frames {
    /// Every sample is zero: nothing to measure.
    Silence,
    /// Fewer than `noise::MIN_FRAMES` STFT frames: too short for a histogram.
    TooShort,
    /// Noise floor, SNR and the speech mask.
    Analysed(FrameAnalysis),
}

/// Where the speaker analysis goes from the frame analysis.
pub(crate) enum SpeechPlan {
    /// Nothing to cluster (silence, a short clip, no speech): the report is known already.
    Known(SpeakerReport),
    /// The feature frames to read and the segments to embed.
    Segments(SegmentPlan),
}

impl Frames {
    /// Stages 3–4 on the band energies of a clip that is not digital silence, at `hop`; at
    /// hops under [`SNR_MIN_HOP`], `snr_bands` are the same clip's band energies at that hop
    /// ([`snr_hop`]), which the global SNR is read from. Polls the checkpoint between stages
    /// and inside them.
    pub(crate) fn from_bands(
        bands: &[BandEnergies],
        snr_bands: Option<&[BandEnergies]>,
        hop: usize,
        threshold: f64,
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<Frames, AudioError> {
        if bands.len() < noise::MIN_FRAMES {
            return Ok(Frames::TooShort);
        }
        let level = match snr_bands {
            Some(snr_bands) => snr_level(snr_bands, checkpoint)?,
            None => None,
        };
        checkpoint.poll()?;
        let floor = noise::noise_floor(bands, hop, checkpoint)?;
        checkpoint.poll()?;
        let analysis = noise::analyse_frames(bands, &floor, level, hop, threshold, checkpoint)?;
        Ok(Frames::Analysed(analysis))
    }

    /// The SNR report: the noise-floor estimate, or WADA for a short clip.
    pub(crate) fn snr_report(&self, clip: &Clip) -> SnrReport {
        let wada_snr_db = clip.wada_snr_db.filter(|v| v.is_finite());
        match self {
            Frames::Silence => SnrReport {
                snr_db: None,
                snr_active_db: None,
                speech_ratio: Some(0.0),
                wada_snr_db,
                method: "silence",
            },
            Frames::TooShort => SnrReport {
                snr_db: wada_snr_db,
                snr_active_db: None,
                speech_ratio: None,
                wada_snr_db,
                method: "wada",
            },
            Frames::Analysed(frames) => SnrReport {
                snr_db: finite(frames.snr_db),
                snr_active_db: frames.snr_active_db.and_then(finite),
                speech_ratio: finite(frames.speech_ratio()),
                wada_snr_db,
                method: "noise-floor",
            },
        }
    }

    /// What the speaker analysis of a clip of `len` samples at `hop` reads, unless the answer
    /// is known without it.
    pub(crate) fn speech_plan(
        &self,
        len: usize,
        hop: usize,
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<SpeechPlan, AudioError> {
        let none = |speakers| {
            Ok(SpeechPlan::Known(SpeakerReport {
                speakers,
                segments: 0,
            }))
        };
        match self {
            Frames::Silence => none(Some(0)),
            Frames::TooShort => none(None),
            // No speech at all (noise only): nothing to cluster.
            Frames::Analysed(frames) if frames.speech_ratio() <= 0.0 => none(Some(0)),
            Frames::Analysed(frames) => Ok(SpeechPlan::Segments(SegmentPlan::new(
                len,
                &frames.phrases,
                hop,
                checkpoint,
            )?)),
        }
    }
}
