//! The analysis split into balanced parts, so that `/analyze` can keep several workers busy.
//!
//! # Where the work is
//!
//! On a 10 s clip the SNR and VAD take about 0.6 ms and the speaker estimate about 4.7 ms, of
//! which 0.6 ms repeats the frame analysis and about 4 ms are the MFCCs and F0 of the speech
//! frames; embedding and clustering the segments take a few microseconds (milliseconds only
//! for pathological clips of hundreds of segments). Running the two reports as two jobs can
//! therefore hide only the short one. The part worth splitting is the per-frame feature work.
//!
//! # The split
//!
//! Each part runs the whole frame analysis (STFT, noise floor, VAD): it is a small share of the
//! work, and it must see the whole clip anyway, since the noise floor is a histogram over every
//! frame and the VAD's verdict decides which feature frames are read at all. Every part thus
//! knows the SNR report and the [`SegmentPlan`], and computes the MFCCs and F0 of its own range
//! of feature frames. The ranges are cut where the *estimated cost* of the features (an MFCC
//! per speech frame, an F0 per segment frame: see `checkpoint.rs`) reaches 1/`of`, 2/`of`, …
//! of the total, not by duration: a clip that is all speech in its first half would otherwise
//! leave one part idle. A frame's features read its own 40 ms of the clip, which every part
//! holds whole, so the frames at a range's edges need no special care and every value is the
//! one the whole analysis computes.
//!
//! [`Analyzer::finish`] joins the ranges, normalises the MFCCs over the clip's speech frames,
//! embeds the segments and clusters them: the same code on the same numbers as
//! [`Analyzer::analyze`], so the same result to the last bit (`tests.rs` checks it on every
//! fixture against results recorded before the split existed).
//!
//! # How an endpoint chains the pieces
//!
//! For `/analyze` on a pool of `n` workers (`of` = 2 on `--pool 2`):
//!
//! 1. one job decodes: [`Analyzer::decode`] → `Arc<Clip>`;
//! 2. its reply is a gather of `of` jobs; job `i` runs
//!    `analyze_part(&clip, i, of, params, &|| job.is_cancelled())` → [`PartialAnalysis`];
//! 3. the gather's join, on the reactor, does no analysis: it moves the parts into one more job
//!    (clustering is O(n³) in segments, too slow for the reactor on a pathological clip);
//! 4. that job runs `finish(parts, &|| job.is_cancelled())` and answers
//!    [`super::analysis_json`] of the two reports.
//!
//! A part that fails (its job was cancelled) fails the gather, and `finish` never runs. Measured
//! on a 10 s clip: see `benches/audio.rs` (`parallel_ratio`) and `docs/AUDIO.md`.
//!
//! The decode is not split: after the bulk conversion it is about 1 ms for a 10 s 16 kHz clip,
//! three quarters of it the WADA statistic, whose sums must run in sample order to give the
//! same bits.

use std::ops::Range;

use super::checkpoint::{Checkpoint, LINK_NS};
use super::frames::SpeechPlan;
use super::speakers::{FeatureSpan, SegmentPlan};
use super::{clamp_hop, cluster, Analyzer, AudioError, Clip, SnrReport, SpeakerReport, VadParams};

/// One part's share of an analysis, to be handed to [`Analyzer::finish`] with its siblings.
pub struct PartialAnalysis {
    /// Which part this is: 0 ≤ `part` < `of`.
    part: usize,
    /// How many parts the analysis was split into.
    of: usize,
    /// The SNR report. Every part runs the whole frame analysis, so every part knows it.
    snr: SnrReport,
    /// This part's share of the speaker analysis.
    speakers: PartSpeakers,
}

/// A part's share of the speaker analysis.
enum PartSpeakers {
    /// Nothing to cluster (silence, a short clip, no speech): every part knows the report.
    Known(SpeakerReport),
    /// The features of this part's range of feature frames.
    Features {
        /// What to embed; carried by part 0 only (every part computes the same one).
        plan: Option<SegmentPlan>,
        /// MFCCs and F0 of this part's frames.
        span: FeatureSpan,
    },
}

impl PartialAnalysis {
    /// Which part this is, and of how many.
    pub fn part(&self) -> (usize, usize) {
        (self.part, self.of)
    }
}

impl Analyzer {
    /// Part `part` of `of` of the analysis of `clip`: the frame analysis, then the features of
    /// one range of frames, cut so that the parts cost about the same. Run the `of` parts in
    /// parallel, then [`Analyzer::finish`]. `Err(AudioError::Cancelled)` once `cancelled()`
    /// is true, polled about every 0.05 ms.
    ///
    /// # Panics
    ///
    /// If `part >= of`: a caller's mistake, not the clip's.
    pub fn analyze_part(
        &self,
        clip: &Clip,
        part: usize,
        of: usize,
        params: VadParams,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<PartialAnalysis, AudioError> {
        assert!(part < of, "part {part} of {of}");
        let mut checkpoint = Checkpoint::new(cancelled);
        let frames = self.frames(clip, params, &mut checkpoint)?;
        let snr = frames.snr_report(clip);
        let hop = clamp_hop(params.hop);
        let speakers = match frames.speech_plan(clip.samples.len(), hop, &mut checkpoint)? {
            SpeechPlan::Known(report) => PartSpeakers::Known(report),
            SpeechPlan::Segments(plan) => {
                let range = balanced_range(&plan, part, of, &mut checkpoint)?;
                let span = FeatureSpan::extract(
                    &self.features,
                    &clip.samples,
                    &plan,
                    range,
                    &mut checkpoint,
                )?;
                PartSpeakers::Features {
                    plan: (part == 0).then_some(plan),
                    span,
                }
            }
        };
        Ok(PartialAnalysis {
            part,
            of,
            snr,
            speakers,
        })
    }

    /// Join the parts of one split, in any order, into the two reports [`Analyzer::analyze`]
    /// gives: embeddings and clustering of the segments. `Err(AudioError::Cancelled)` once
    /// `cancelled()` is true, polled about every 0.05 ms of work from the first frame joined
    /// to the last row of the clustering.
    ///
    /// # Panics
    ///
    /// Unless `parts` holds each part of one split exactly once: a caller's mistake.
    pub fn finish(
        &self,
        mut parts: Vec<PartialAnalysis>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<(SnrReport, SpeakerReport), AudioError> {
        parts.sort_by_key(|p| p.part);
        let whole = !parts.is_empty()
            && parts
                .iter()
                .enumerate()
                .all(|(i, p)| p.part == i && p.of == parts.len());
        assert!(whole, "finish needs every part of one split exactly once");
        let snr = parts[0].snr.clone();
        let mut plan = None;
        let mut spans = Vec::with_capacity(parts.len());
        for part in parts {
            match part.speakers {
                PartSpeakers::Known(report) => return Ok((snr, report)),
                PartSpeakers::Features {
                    plan: Some(p),
                    span,
                } => {
                    plan = Some(p);
                    spans.push(span);
                }
                PartSpeakers::Features { plan: None, span } => spans.push(span),
            }
        }
        let mut checkpoint = Checkpoint::new(cancelled);
        let joined = match plan {
            Some(plan) => FeatureSpan::join(spans, plan.frames(), &mut checkpoint)?
                .map(|features| (plan, features)),
            None => None,
        };
        let Some((plan, features)) = joined else {
            panic!("the parts' frame ranges do not tile the clip: parts of different splits");
        };
        let speakers = cluster(&plan, features, &mut checkpoint)?;
        Ok((snr, speakers))
    }
}

/// The feature frames of part `part` of `of`: from where the estimated cost of the frames
/// before reaches `part`/`of` of the total, to where it reaches (`part` + 1)/`of`. The last part
/// always ends at the last frame. Three passes over the frames' costs, ticked per frame: on a
/// 600 s clip they are 60 000 frames each.
fn balanced_range(
    plan: &SegmentPlan,
    part: usize,
    of: usize,
    checkpoint: &mut Checkpoint<'_>,
) -> Result<Range<usize>, AudioError> {
    let mut total = 0;
    for t in 0..plan.frames() {
        total += plan.cost_ns(t);
        checkpoint.tick(LINK_NS)?;
    }
    let start = boundary(plan, total, part, of, checkpoint)?;
    Ok(start..boundary(plan, total, part + 1, of, checkpoint)?)
}

/// The first frame where the estimated cost of the frames before reaches `i`/`of` of `total`;
/// the end of the frames for `i` = `of`.
fn boundary(
    plan: &SegmentPlan,
    total: u64,
    i: usize,
    of: usize,
    checkpoint: &mut Checkpoint<'_>,
) -> Result<usize, AudioError> {
    let frames = plan.frames();
    if i == of {
        return Ok(frames);
    }
    // u128: a 600 s clip costs about 4·10⁸ estimated ns, times the part count.
    let target = u128::from(total) * i as u128;
    let mut cost = 0u128;
    for t in 0..frames {
        if cost * of as u128 >= target {
            return Ok(t);
        }
        cost += u128::from(plan.cost_ns(t));
        checkpoint.tick(LINK_NS)?;
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`balanced_range`] with a check that is never true.
    fn range(plan: &SegmentPlan, part: usize, of: usize) -> Range<usize> {
        let never = || false;
        match balanced_range(plan, part, of, &mut Checkpoint::new(&never)) {
            Ok(range) => range,
            Err(e) => panic!("never cancelled, yet {e}"),
        }
    }

    /// A plan with speech over `speech` and segments over `segments` (feature frames).
    fn plan(frames: usize, speech: Range<usize>, segments: Range<usize>) -> SegmentPlan {
        SegmentPlan {
            is_speech: (0..frames).map(|t| speech.contains(&t)).collect(),
            in_segment: (0..frames).map(|t| segments.contains(&t)).collect(),
            pieces: vec![segments],
        }
    }

    /// The ranges tile the frames, and cut the cost, not the duration, in equal shares: with
    /// all the speech in the first quarter, two parts split that quarter.
    #[test]
    fn ranges_balance_the_cost() {
        let p = plan(1000, 0..250, 0..250);
        assert_eq!(range(&p, 0, 2), 0..125);
        assert_eq!(range(&p, 1, 2), 125..1000);
        for of in 1..5 {
            let ranges: Vec<_> = (0..of).map(|i| range(&p, i, of)).collect();
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges[of - 1].end, 1000);
            assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
        }
        // No cost at all (speech too short for any frame): the last part takes every frame.
        let idle = plan(10, 0..0, 0..0);
        assert_eq!(range(&idle, 0, 2), 0..0);
        assert_eq!(range(&idle, 1, 2), 0..10);
    }

    /// Parts travel between worker threads.
    #[test]
    fn parts_are_send() {
        fn sent<T: Send + 'static>() {}
        sent::<PartialAnalysis>();
    }
}
