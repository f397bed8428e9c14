//! Speaker counting: one embedding per speech segment, then agglomerative clustering.
//!
//! # Segments and embeddings
//!
//! The VAD's speech runs as the speaker analysis reads them (only the pauses of ≤ 112 ms
//! inside a phrase filled, so that two voices taking turns across a short pause fall in
//! different runs: [`super::noise::FrameAnalysis::phrases`]), mapped onto the 10 ms feature
//! frames, are the segments: runs shorter than 0.25 s are dropped (too little to say whose
//! voice it is) and runs longer than 1.5 s are cut into equal pieces of at most 1.5 s (so that
//! a turn change without a pause still has a chance to show). Each piece becomes 21 numbers:
//!
//! - 342 statistics of its MFCCs c1 … c19, after each coefficient is normalised by its mean and
//!   standard deviation over the clip's speech frames: the mean and the standard deviation of
//!   each coefficient (the speaker's timbre, and how much it moves), and, for each of 16
//!   classes of speech sound, how far the piece's frames of that class lie from the class's
//!   mean ([`SoundModel`]: the same voice compared sound by sound) — projected onto 20
//!   directions (`projection.rs`);
//! - 30·log2(median F0 of the segment's voiced frames) — the pitch, in units where an octave
//!   weighs 30. The median is trusted when at least 5 frames are voiced and three quarters of
//!   them lie within half an octave of it. A segment whose pitch is not trusted (too few voiced
//!   frames, or frames that disagree: a low voice read at its formant in some of them, noise
//!   read as a pitch in others) takes the pitch of the segment with a trusted one whose 20
//!   projected numbers lie nearest its own — the voice it sounds most like. One wrong pitch is
//!   enough to make one voice two: an octave off is 900 in squared distance, where a
//!   one-second piece of one voice strays about 20 over all 20 projected numbers together.
//!
//! The plain MFCC statistics move with what is said as much as with who says it: a second of
//! speech has its means pulled around by which sounds it happens to hold. The shifts per sound
//! class take much of that out, and the projection keeps the directions in which voices differ
//! most for how much one voice's segments differ among themselves: linear discriminant
//! analysis, learned once, with the sound classes, from 2000 generated clips of 300 voice
//! settings that no clip it is measured on uses (`scripts/dataset/learn_projection.py`). Each
//! direction has unit spread within one voice over a second of speech, and the costs below are
//! in those units.
//!
//! # Clustering
//!
//! First, each piece joins the piece before it when they are consecutive pieces of one run and
//! joining them costs at most 220 ([`join_runs`]): a run is one voice unless the voice changed
//! without a pause, and joined, its seconds count together. The cost test keeps only clear
//! changes of voice inside a run apart: 50 of the 103 on the tune, holdout, pool, unseen and
//! check splits.
//!
//! Then Ward's method (Ward 1963), each segment weighted by its seconds of speech: start with
//! one cluster per (joined) segment and merge the pair whose merging costs least, while that
//! cost is at most 110. The cost of merging clusters A and B, of weights w_A and w_B and
//! weighted mean embeddings e_A and e_B, is w_A·w_B/(w_A + w_B)·|e_A − e_B|²: how much the
//! weighted sum of squared distances to the clusters' centres grows.
//!
//! Why Ward rather than a distance threshold (the Python reference's average linkage, which
//! stops at a mean distance of 2.5): a short segment's embedding is noisy, so two segments of
//! one voice can lie as far apart as two segments of two voices with the same pitch. A mean
//! distance between clusters stays as noisy however much speech they hold. Ward's cost weighs
//! the difference between two centres by the speech behind them: the centre of ten seconds of
//! one voice moves much less with the sounds than that of one second, so as clusters grow, the
//! cost of merging two voices grows with them while that of two halves of one voice does not.
//! It is a test of whether two samples share a mean, with the speech as the sample size. That
//! is also why the pieces of a run are joined first: a voice heard in one turn of three seconds
//! then weighs its three seconds against every other cluster, where its two pieces could each
//! have gone into another voice's cluster on their own.
//!
//! Merging A and B updates the cost to every other cluster C by the Lance–Williams formula
//! for Ward, Δ(A∪B, C) = ((w_A + w_C)·Δ(A, C) + (w_B + w_C)·Δ(B, C) − w_C·Δ(A, B)) / (w_A +
//! w_B + w_C), exact for weighted centres, so nothing is recomputed from the members. Cost
//! O(n³) for n segments: a 10-minute clip of ordinary speech has a few hundred; for one of a
//! thousand short blips the speaker analysis takes about 0.4 s, much of it clustering. Every
//! scan polls the cancel check, so a cancelled analysis stops within a fraction of a
//! millisecond even then.
//!
//! # Who computes what
//!
//! [`SegmentPlan`] says, from the VAD alone, which feature frames are read: MFCCs for speech
//! frames, F0 for segment frames. [`FeatureSpan::extract`] computes them over any range of
//! frames — the whole clip, one part of a split, or (through the progressive analysis' cache)
//! a window at a time — and [`embed`], [`join_runs`] and [`count_speakers`] finish from the
//! joined features.
//!
//! A cluster counts as a speaker if its segments add up to at least 0.5 s; at least one
//! speaker is reported when there is any segment at all.
//!
//! The constants (112 ms, 1.5 s) were chosen on the dev set's tuning split (synthetic
//! speech, disjoint voices; scripts/dataset/); the F0 weight (30) with the sound classes on
//! four of its splits together, the pitch's trust rule, the join cost (220) and the merge cost
//! (110) on five (1012 clips), and the least speech for a speaker (0.5 s) on six (1312 clips:
//! 90 % of their counts exact, all but two within one). On two more splits, each made later
//! for one change (300 clips each of voices of espeak-ng variants of their own, saying
//! sentences no other split says) and none of these constants chosen on them, 89 % and 90 % of
//! the counts are exact on clips of one to four voices and every one within one
//! (docs/AUDIO.md, "Accuracy, measured").

use std::cmp::Ordering;
use std::ops::Range;

use super::checkpoint::{Checkpoint, COPY_NS, DISTANCE_NS, F0_NS, LINK_NS, MFCC_NS, STEP_NS};
use super::features::{frame_count, Cepstrum, FrameFeatures, CEPS, FRAMES_PER_SECOND, FRAME_HOP};
use super::noise::runs;
use super::projection::{PROJECTED, PROJECTION, STATS};
use super::sounds::SoundModel;
use super::{AudioError, SAMPLE_RATE};

/// Speech runs shorter than this are not segments, seconds.
const SEG_MIN_S: f64 = 0.25;
/// Longer runs are cut into equal pieces of at most this, seconds.
const SEG_MAX_S: f64 = 1.5;
/// Weight of log2(F0) (octaves) against the projected MFCC statistics.
const F0_WEIGHT: f64 = 30.0;
/// Fewest voiced frames for a segment's own median F0.
const MIN_VOICED_FRAMES: usize = 5;
/// A segment's median F0 is trusted when at least this share of its voiced frames ...
const PITCH_AGREEMENT: f64 = 0.75;
/// ... lie within this many octaves of it.
const PITCH_SPREAD: f64 = 0.5;
/// Ward cost up to which clusters merge.
const MERGE_COST: f64 = 110.0;
/// Ward cost up to which a piece joins the piece before it in the same run, before the
/// clustering: twice [`MERGE_COST`], since the two are one voice unless the voice changed
/// without a pause (the ratio was chosen on the tune split with the previous embedding, where
/// 1.3 to 2.2 times the merge cost scored alike).
const JOIN_COST: f64 = 2.0 * MERGE_COST;
/// Least total speech for a cluster to count as a speaker, seconds: two of the shortest
/// segments. A voice heard in a few short phrases keeps little of them once runs under
/// [`SEG_MIN_S`] are dropped and the mixed pieces go elsewhere, and at 0.8 s such voices went
/// uncounted: on six splits (1312 clips), 0.3 to 0.6 s all counted 1310 or 1311 within one
/// where 0.8 s counted 1305, and 1179 or 1180 exact where it counted 1178; the price is a few
/// more stray clusters counted (docs/AUDIO.md, "Least speech for a speaker").
const MIN_SPEAKER_S: f64 = 2.0 * SEG_MIN_S;
/// Added to every standard deviation before dividing by it.
const SD_FLOOR: f64 = 1e-6;

/// The plain MFCC statistics at the head of a segment's [`STATS`]: 19 means, 19 standard
/// deviations. The shifts per sound class follow.
const MOMENTS: usize = 2 * CEPS;
/// Numbers per embedding: the statistics projected onto [`PROJECTED`] directions, then the
/// pitch.
const EMBEDDING_LEN: usize = PROJECTED + 1;

/// Feature frames [`FeatureSpan::join`] copies between two ticks: 10 KB.
const COPY_BLOCK: usize = 64;

/// One speech segment (or several joined), embedded.
pub(crate) struct Segment {
    /// Where the 21 numbers put this segment.
    embedding: [f64; EMBEDDING_LEN],
    /// Its length, seconds.
    seconds: f64,
}

impl Segment {
    /// Take `other` in: the embedding becomes the mean of both, weighted by their seconds
    /// (the centre Ward's method gives a cluster of the two).
    fn absorb(&mut self, other: &Segment) {
        let total = self.seconds + other.seconds;
        for (mine, theirs) in self.embedding.iter_mut().zip(&other.embedding) {
            *mine = (*mine * self.seconds + theirs * other.seconds) / total;
        }
        self.seconds = total;
    }
}

/// What the speaker analysis reads, decided by the VAD before any feature is computed: which
/// 10 ms feature frames are speech, and which of them make the segments.
pub(crate) struct SegmentPlan {
    /// Per feature frame: speech. Its MFCCs are computed, and normalised over all of these.
    pub is_speech: Vec<bool>,
    /// Per feature frame: inside a segment. Its F0 is computed.
    pub in_segment: Vec<bool>,
    /// The segments: speech runs of at least [`SEG_MIN_S`], cut into pieces of at most
    /// [`SEG_MAX_S`].
    pub pieces: Vec<Range<usize>>,
}

impl SegmentPlan {
    /// The plan for a 16 kHz clip of `len` samples, given the VAD's speech mask over STFT
    /// frames of `hop` samples.
    pub(crate) fn new(
        len: usize,
        speech: &[bool],
        hop: usize,
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<SegmentPlan, AudioError> {
        let frames = if speech.is_empty() {
            0
        } else {
            frame_count(len)
        };
        let mut is_speech = Vec::with_capacity(frames);
        for t in 0..frames {
            is_speech.push(speech[stft_frame_of(t, hop).min(speech.len() - 1)]);
            checkpoint.tick(STEP_NS)?;
        }
        let mut in_segment = vec![false; frames];
        let mut pieces = Vec::new();
        let speech_runs = runs(&is_speech, true);
        checkpoint.tick(frames as u64 * LINK_NS)?;
        for run in speech_runs {
            let len = run.len() as u64;
            if long_enough(run.len()) {
                in_segment[run.clone()].fill(true);
                let seconds = run.len() as f64 / FRAMES_PER_SECOND;
                pieces.extend(split(run, (seconds / SEG_MAX_S).ceil() as usize));
            }
            checkpoint.tick(len * LINK_NS)?;
        }
        Ok(SegmentPlan {
            is_speech,
            in_segment,
            pieces,
        })
    }

    /// Feature frames in the clip.
    pub(crate) fn frames(&self) -> usize {
        self.is_speech.len()
    }

    /// Estimated cost of the features frame `t` needs, in nanoseconds: the weight by which a
    /// split balances its parts.
    pub(crate) fn cost_ns(&self, t: usize) -> u64 {
        u64::from(self.is_speech[t]) * MFCC_NS + u64::from(self.in_segment[t]) * F0_NS
    }
}

/// The STFT frame whose VAD decision feature frame `t` takes: the one holding its centre.
pub(crate) fn stft_frame_of(t: usize, hop: usize) -> usize {
    let centre_s = (t * FRAME_HOP + FRAME_HOP * 2) as f64 / f64::from(SAMPLE_RATE);
    (centre_s * f64::from(SAMPLE_RATE) / hop as f64) as usize
}

/// A speech run of `frames` feature frames is long enough to be a segment.
pub(crate) fn long_enough(frames: usize) -> bool {
    frames as f64 / FRAMES_PER_SECOND >= SEG_MIN_S
}

/// MFCCs and F0 of a contiguous range of feature frames: what one part of a split computes,
/// or, over every frame, what the whole analysis does.
pub(crate) struct FeatureSpan {
    /// The feature frames covered.
    pub range: Range<usize>,
    /// MFCCs per frame of `range`; zeros where the frame is not speech (never read).
    pub cepstra: Vec<Cepstrum>,
    /// F0 in Hz per frame of `range`, 0 when unvoiced; 0 where the frame is in no segment
    /// (never read).
    pub f0: Vec<f64>,
}

impl FeatureSpan {
    /// The features `plan` needs in `range`: MFCCs of speech frames, F0 of segment frames.
    /// Frame by frame, from the whole clip `x`, so the frames at either end of the range read
    /// the samples they need from beyond it, and every value equals the one computed over
    /// the whole clip at once.
    pub(crate) fn extract(
        features: &FrameFeatures,
        x: &[f64],
        plan: &SegmentPlan,
        range: Range<usize>,
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<FeatureSpan, AudioError> {
        let mut scratch = features.scratch();
        // Filled by pushing, not zeroed up front: zeroing megabytes at once would be a long
        // stretch without a tick.
        let mut cepstra = Vec::with_capacity(range.len());
        let mut f0 = Vec::with_capacity(range.len());
        for t in range.clone() {
            cepstra.push(if plan.is_speech[t] {
                features.mfcc(x, t, &mut scratch)
            } else {
                [0.0; CEPS]
            });
            f0.push(if plan.in_segment[t] {
                features.f0(x, t, &mut scratch)
            } else {
                0.0
            });
            checkpoint.tick(plan.cost_ns(t) + LINK_NS)?;
        }
        Ok(FeatureSpan { range, cepstra, f0 })
    }

    /// Spans that tile `0..frames` in order, joined into one; `Ok(None)` if they do not.
    ///
    /// Copied [`COPY_BLOCK`] frames at a time with a tick after each, and each span freed a
    /// step at a time once copied: on a 600 s clip the copy is 9 MB written into a fresh
    /// buffer, milliseconds of page faults that would otherwise come before the first poll.
    pub(crate) fn join(
        spans: Vec<FeatureSpan>,
        frames: usize,
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<Option<FeatureSpan>, AudioError> {
        let mut joined = FeatureSpan {
            range: 0..0,
            cepstra: Vec::with_capacity(frames),
            f0: Vec::with_capacity(frames),
        };
        for span in spans {
            if span.range.start != joined.range.end {
                return Ok(None);
            }
            joined.range.end = span.range.end;
            let blocks = span
                .cepstra
                .chunks(COPY_BLOCK)
                .zip(span.f0.chunks(COPY_BLOCK));
            for (cepstra, f0) in blocks {
                joined.cepstra.extend_from_slice(cepstra);
                joined.f0.extend_from_slice(f0);
                checkpoint.tick(cepstra.len() as u64 * COPY_NS)?;
            }
            checkpoint.release(span.cepstra)?;
            checkpoint.release(span.f0)?;
        }
        Ok((joined.range.end == frames).then_some(joined))
    }
}

/// One embedding per segment of `plan`, from the features of every frame of the clip (a span
/// over all of them). Normalises the span's MFCCs in place.
pub(crate) fn embed(
    plan: &SegmentPlan,
    features: &mut FeatureSpan,
    checkpoint: &mut Checkpoint<'_>,
) -> Result<Vec<Segment>, AudioError> {
    normalise(&mut features.cepstra, &plan.is_speech, checkpoint)?;
    let (cepstra, f0) = (&features.cepstra, &features.f0);
    let sounds = SoundModel::new();
    let mut pitch: Vec<Pitch> = Vec::with_capacity(plan.pieces.len());
    let mut segments = Vec::with_capacity(plan.pieces.len());
    for piece in &plan.pieces {
        let mut voiced: Vec<f64> = f0[piece.clone()]
            .iter()
            .copied()
            .filter(|&f0| f0 > 0.0)
            .collect();
        pitch.push(Pitch::of(&mut voiced));
        let stats = statistics(&cepstra[piece.clone()], &sounds, checkpoint)?;
        let mut embedding = [0.0; EMBEDDING_LEN];
        for (value, direction) in embedding.iter_mut().zip(&PROJECTION) {
            *value = direction.iter().zip(&stats).map(|(d, s)| d * s).sum();
        }
        segments.push(Segment {
            embedding,
            seconds: piece.end as f64 / FRAMES_PER_SECOND - piece.start as f64 / FRAMES_PER_SECOND,
        });
        checkpoint.tick((PROJECTED * STATS) as u64 * LINK_NS)?;
    }

    let octaves = pitches(&segments, &pitch, checkpoint)?;
    for (segment, p) in segments.iter_mut().zip(octaves) {
        segment.embedding[EMBEDDING_LEN - 1] = p * F0_WEIGHT;
    }
    Ok(segments)
}

/// What a segment's voiced frames say of its pitch.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Pitch {
    /// Fewer than [`MIN_VOICED_FRAMES`] voiced frames: no pitch of its own.
    Unknown,
    /// log2 of the median F0, but the frames disagree: fewer than [`PITCH_AGREEMENT`] of them
    /// within [`PITCH_SPREAD`] octaves of it.
    Doubtful(f64),
    /// log2 of the median F0, with the frames agreeing on it.
    Trusted(f64),
}

impl Pitch {
    /// The pitch of a segment whose voiced frames read `voiced` (Hz; sorted in place).
    fn of(voiced: &mut [f64]) -> Pitch {
        if voiced.len() < MIN_VOICED_FRAMES {
            return Pitch::Unknown;
        }
        let octaves = median(voiced).log2();
        let near = voiced
            .iter()
            .filter(|f0| (f0.log2() - octaves).abs() <= PITCH_SPREAD)
            .count();
        if near as f64 >= PITCH_AGREEMENT * voiced.len() as f64 {
            Pitch::Trusted(octaves)
        } else {
            Pitch::Doubtful(octaves)
        }
    }
}

/// Each segment's pitch in octaves (log2 Hz). A trusted pitch is its own. A segment whose
/// pitch is unknown or doubtful takes that of the segment with a trusted one that sounds most
/// like it: the nearest in the projected MFCC statistics. If no segment's pitch is trusted,
/// each keeps its doubtful one, and unknown ones take the median of those.
fn pitches(
    segments: &[Segment],
    pitch: &[Pitch],
    checkpoint: &mut Checkpoint<'_>,
) -> Result<Vec<f64>, AudioError> {
    let trusted: Vec<(&Segment, f64)> = segments
        .iter()
        .zip(pitch)
        .filter_map(|(segment, p)| match p {
            Pitch::Trusted(octaves) => Some((segment, *octaves)),
            _ => None,
        })
        .collect();
    let mut known: Vec<f64> = pitch
        .iter()
        .filter_map(|p| match p {
            Pitch::Doubtful(octaves) => Some(*octaves),
            _ => None,
        })
        .collect();
    let fallback = if known.is_empty() {
        0.0
    } else {
        median(&mut known)
    };
    let mut out = Vec::with_capacity(segments.len());
    for (segment, p) in segments.iter().zip(pitch) {
        out.push(match (p, trusted.is_empty()) {
            (Pitch::Trusted(octaves), _) => *octaves,
            (Pitch::Doubtful(octaves), true) => *octaves,
            (Pitch::Unknown, true) => fallback,
            (_, false) => {
                let mut nearest = (f64::INFINITY, 0.0);
                for (other, octaves) in &trusted {
                    let d = timbre_distance(segment, other);
                    if d < nearest.0 {
                        nearest = (d, *octaves);
                    }
                }
                checkpoint.tick(trusted.len() as u64 * PROJECTED as u64 * LINK_NS)?;
                nearest.1
            }
        });
    }
    Ok(out)
}

/// Squared distance between two segments' projected MFCC statistics (the pitch left out).
fn timbre_distance(a: &Segment, b: &Segment) -> f64 {
    a.embedding[..PROJECTED]
        .iter()
        .zip(&b.embedding[..PROJECTED])
        .map(|(x, y)| (x - y) * (x - y))
        .sum()
}

/// The [`STATS`] statistics of a segment whose normalised MFCCs are `rows` (at least one): the
/// mean and the (population) standard deviation of each coefficient, then the shifts per sound
/// class, as `scripts/dataset/learn_projection.py` computes them to learn the projection.
fn statistics(
    rows: &[Cepstrum],
    sounds: &SoundModel,
    checkpoint: &mut Checkpoint<'_>,
) -> Result<[f64; STATS], AudioError> {
    let n = rows.len() as f64;
    let mut stats = [0.0; STATS];
    for c in 0..CEPS {
        let mean = rows.iter().map(|r| r[c]).sum::<f64>() / n;
        let var = rows.iter().map(|r| (r[c] - mean).powi(2)).sum::<f64>() / n;
        stats[c] = mean;
        stats[CEPS + c] = var.sqrt();
    }
    checkpoint.tick((rows.len() * MOMENTS) as u64 * LINK_NS)?;
    stats[MOMENTS..].copy_from_slice(&sounds.shifts(rows, checkpoint)?);
    Ok(stats)
}

/// The segments the clustering starts from: each piece of `plan` (embedded in `segments`, in
/// the same order) joined to the one before it if it follows it without a gap, in the same
/// speech run, and joining the two costs at most [`JOIN_COST`] (the Ward cost of merging the
/// piece into what it joins).
///
/// Pieces of one run are one voice unless the voice changed without a pause. Joined, they
/// enter the clustering as one segment with all their seconds behind it, so that Ward's
/// criterion weighs the turn as a whole rather than each piece on its own: a voice heard in one
/// turn of three seconds is then as hard to merge into another as its three seconds make it,
/// where its two pieces of a second and a half could each go into another voice's cluster
/// first. The cost test keeps a clear change of voice inside a run apart, not every one: on
/// the tune, holdout, pool, unseen and check splits' speaker clips, 50 of the 103 piece
/// boundaries where the voice changes inside a run (the first step of classical diarisation systems, "linear
/// clustering", is the same trade).
pub(crate) fn join_runs(
    plan: &SegmentPlan,
    segments: Vec<Segment>,
    checkpoint: &mut Checkpoint<'_>,
) -> Result<Vec<Segment>, AudioError> {
    debug_assert_eq!(plan.pieces.len(), segments.len(), "one segment per piece");
    let mut joined: Vec<Segment> = Vec::with_capacity(segments.len());
    let mut previous_end = None;
    for (piece, segment) in plan.pieces.iter().zip(segments) {
        let follows = previous_end == Some(piece.start);
        previous_end = Some(piece.end);
        match joined.last_mut() {
            Some(last) if follows && ward_cost(last, &segment) <= JOIN_COST => {
                last.absorb(&segment);
            }
            _ => joined.push(segment),
        }
        checkpoint.tick(EMBEDDING_LEN as u64 * 2 * LINK_NS)?;
    }
    Ok(joined)
}

/// Speakers among the segments: clusters of at least [`MIN_SPEAKER_S`] of speech after Ward
/// merging up to [`MERGE_COST`]; 0 without segments, else at least 1.
///
/// O(n³) for n segments, so the checkpoint is ticked inside every scan, once per row: a
/// pathological clip of a thousand short segments stops within a fraction of a millisecond
/// of being cancelled.
pub(crate) fn count_speakers(
    segments: &[Segment],
    checkpoint: &mut Checkpoint<'_>,
) -> Result<usize, AudioError> {
    if segments.is_empty() {
        return Ok(0);
    }
    let n = segments.len();
    // cost[i][j]: what merging clusters i and j costs (a cluster is named after its first
    // segment). Starts as the cost of merging two segments.
    // Filled a row at a time, the lower triangle copied from the rows above, so that each row
    // is first written (and its memory first touched) in its own turn between two ticks.
    let mut cost: Vec<Vec<f64>> = Vec::with_capacity(n);
    for i in 0..n {
        let row = (0..n)
            .map(|j| match j.cmp(&i) {
                Ordering::Less => cost[j][i],
                Ordering::Equal => 0.0,
                Ordering::Greater => ward_cost(&segments[i], &segments[j]),
            })
            .collect();
        cost.push(row);
        checkpoint.tick((n - i) as u64 * DISTANCE_NS + n as u64 * LINK_NS)?;
    }
    // Each cluster's weight: its seconds of speech.
    let mut weight: Vec<f64> = segments.iter().map(|s| s.seconds).collect();
    // Live clusters in segment order: a merge keeps the earlier one.
    let mut live: Vec<usize> = (0..n).collect();
    while live.len() > 1 {
        // The cheapest pair; on a tie, the first in scan order.
        let mut best = (f64::INFINITY, 0, 0);
        for (ai, &a) in live.iter().enumerate() {
            for (bi, &b) in live.iter().enumerate().skip(ai + 1) {
                if cost[a][b] < best.0 {
                    best = (cost[a][b], ai, bi);
                }
            }
            checkpoint.tick((live.len() - ai) as u64 * LINK_NS)?;
        }
        let (merge_cost, ai, bi) = best;
        if merge_cost > MERGE_COST {
            break;
        }
        let (a, b) = (live[ai], live[bi]);
        let (wa, wb) = (weight[a], weight[b]);
        for &c in &live {
            if c != a && c != b {
                let wc = weight[c];
                let merged = ((wa + wc) * cost[a][c] + (wb + wc) * cost[b][c] - wc * merge_cost)
                    / (wa + wb + wc);
                cost[a][c] = merged;
                cost[c][a] = merged;
            }
        }
        weight[a] = wa + wb;
        live.remove(bi);
        checkpoint.tick((live.len() + n) as u64 * LINK_NS)?;
    }
    let speakers = live.iter().filter(|&&c| weight[c] >= MIN_SPEAKER_S).count();
    Ok(speakers.max(1))
}

/// What merging two segments costs, Ward's criterion: how much the weighted sum of squared
/// distances to the cluster centres grows, w₁·w₂/(w₁ + w₂)·|e₁ − e₂|², weights in seconds.
fn ward_cost(a: &Segment, b: &Segment) -> f64 {
    let squared: f64 = a
        .embedding
        .iter()
        .zip(&b.embedding)
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    a.seconds * b.seconds / (a.seconds + b.seconds) * squared
}

/// Normalise each coefficient by its mean and standard deviation over the speech frames
/// (mean 0 and sd 1 when there are none).
///
/// Each coefficient's sums run over the speech frames in frame order, from −0.0 (where the
/// standard library's float `sum` starts), exactly as a separate pass per coefficient would
/// sum them; doing the 19 coefficients in one pass reads the frames once instead of 19 times.
fn normalise(
    cepstra: &mut [Cepstrum],
    is_speech: &[bool],
    checkpoint: &mut Checkpoint<'_>,
) -> Result<(), AudioError> {
    let mut speech = Vec::new();
    for (t, &speaks) in is_speech[..cepstra.len()].iter().enumerate() {
        if speaks {
            speech.push(t);
        }
        checkpoint.tick(LINK_NS)?;
    }
    if speech.is_empty() {
        return Ok(());
    }
    let n = speech.len() as f64;
    let frame_ns = CEPS as u64 * LINK_NS;
    let mut sum = [-0.0; CEPS];
    for &t in &speech {
        for (s, v) in sum.iter_mut().zip(&cepstra[t]) {
            *s += v;
        }
        checkpoint.tick(frame_ns)?;
    }
    let mean = sum.map(|s| s / n);
    let mut squares = [-0.0; CEPS];
    for &t in &speech {
        for ((s, v), m) in squares.iter_mut().zip(&cepstra[t]).zip(&mean) {
            *s += (v - m).powi(2);
        }
        checkpoint.tick(frame_ns)?;
    }
    let sd = squares.map(|s| (s / n).sqrt() + SD_FLOOR);
    for frame in cepstra.iter_mut() {
        for ((v, m), d) in frame.iter_mut().zip(&mean).zip(&sd) {
            *v = (*v - m) / d;
        }
        checkpoint.tick(frame_ns)?;
    }
    Ok(())
}

/// Cut `run` into `pieces` nearly equal parts at numpy.linspace's (truncated) boundaries.
fn split(run: Range<usize>, pieces: usize) -> impl Iterator<Item = Range<usize>> {
    let step = run.len() as f64 / pieces as f64;
    let bound = move |i: usize| {
        if i == pieces {
            run.end
        } else {
            (i as f64 * step + run.start as f64) as usize
        }
    };
    (0..pieces).map(move |i| bound(i)..bound(i + 1))
}

/// numpy.median: the middle value, or the mean of the two middle values. Sorts `values`.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::{Duration, Instant};

    use super::*;

    fn count(segments: &[Segment]) -> usize {
        match count_speakers(segments, &mut Checkpoint::new(&|| false)) {
            Ok(speakers) => speakers,
            Err(e) => panic!("never cancelled, yet {e}"),
        }
    }

    /// The tests place segments in units of √[`MERGE_COST`]: two segments of one second
    /// each, `d` such units apart, cost ½·d²·[`MERGE_COST`] to merge, so they merge when
    /// d ≤ √2.
    fn units(d: f64) -> f64 {
        d * MERGE_COST.sqrt()
    }

    fn segment(at: f64, seconds: f64) -> Segment {
        let mut embedding = [0.0; EMBEDDING_LEN];
        embedding[0] = units(at);
        Segment { embedding, seconds }
    }

    /// Two tight groups far apart are two speakers; three segments half a unit apart are one.
    #[test]
    fn clusters_by_distance() {
        let far = [
            segment(0.0, 1.0),
            segment(0.2, 1.0),
            segment(5.0, 1.0),
            segment(5.2, 1.0),
        ];
        assert_eq!(count(&far), 2);
        let near = [segment(0.0, 1.0), segment(0.5, 1.0), segment(1.0, 1.0)];
        assert_eq!(count(&near), 1);
        assert_eq!(count(&[]), 0);
    }

    /// A cluster with under 0.5 s of speech is not a speaker, but one is always reported.
    #[test]
    fn small_clusters_do_not_count() {
        assert_eq!(count(&[segment(0.0, 2.0), segment(10.0, 0.45)]), 1);
        assert_eq!(count(&[segment(0.0, 0.3)]), 1);
    }

    /// A voice heard in two short phrases counts: 0.6 s of speech, far from the other voice.
    #[test]
    fn a_voice_of_two_short_phrases_counts() {
        let phrases = [segment(0.0, 2.0), segment(10.0, 0.3), segment(10.0, 0.3)];
        assert_eq!(count(&phrases), 2);
        assert_eq!(count(&[segment(0.0, 2.0), segment(10.0, 0.6)]), 2);
        // Two of the shortest segments are enough.
        let shortest = SEG_MIN_S;
        let least = [
            segment(0.0, 2.0),
            segment(10.0, shortest),
            segment(10.0, shortest),
        ];
        assert_eq!(count(&least), 2);
    }

    /// Ward's criterion weighs a difference by the speech behind it: two voices 1.2 units
    /// apart are one speaker on a second each (cost ½·1.44 = 0.72 merge costs), two on four
    /// seconds each (2·1.44 = 2.9), whether those seconds come as one segment or as four.
    #[test]
    fn more_speech_tells_voices_apart() {
        assert_eq!(count(&[segment(0.0, 1.0), segment(1.2, 1.0)]), 1);
        assert_eq!(count(&[segment(0.0, 4.0), segment(1.2, 4.0)]), 2);
        let pieces: Vec<Segment> = (0..8)
            .map(|i| segment(if i % 2 == 0 { 0.0 } else { 1.2 }, 1.0))
            .collect();
        assert_eq!(count(&pieces), 2);
    }

    /// A plan whose pieces are `pieces` (feature frames), for [`join_runs`].
    fn plan(pieces: &[Range<usize>]) -> SegmentPlan {
        let frames = pieces.last().map_or(0, |p| p.end);
        SegmentPlan {
            is_speech: vec![true; frames],
            in_segment: vec![true; frames],
            pieces: pieces.to_vec(),
        }
    }

    fn joined(pieces: &[Range<usize>], segments: Vec<Segment>) -> Vec<Segment> {
        match join_runs(&plan(pieces), segments, &mut Checkpoint::new(&|| false)) {
            Ok(joined) => joined,
            Err(e) => panic!("never cancelled, yet {e}"),
        }
    }

    /// Consecutive pieces of one run join into one segment, its centre weighted by their
    /// seconds; a piece after a pause does not join, however close.
    #[test]
    fn pieces_of_one_run_join() {
        let out = joined(
            &[0..150, 150..250, 400..500],
            vec![segment(0.0, 1.5), segment(1.0, 1.0), segment(0.4, 1.0)],
        );
        let summary: Vec<(f64, f64)> = out
            .iter()
            .map(|s| ((s.embedding[0] / units(1.0) * 1e9).round() / 1e9, s.seconds))
            .collect();
        assert_eq!(summary, vec![(0.4, 2.5), (0.4, 1.0)]);
    }

    /// Pieces of one run that differ by more than the join allows (cost 0.75·4 = 3 merge
    /// costs, over 2) stay apart: a change of voice without a pause is still counted.
    #[test]
    fn a_change_of_voice_inside_a_run_is_kept_apart() {
        let out = joined(
            &[0..150, 150..300],
            vec![segment(0.0, 1.5), segment(2.0, 1.5)],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(count(&out), 2);
    }

    /// A voice heard in one run whose two halves sound different (the sounds differ) is one
    /// voice: alone, each half is too far from the other and from a second voice to merge with
    /// either (costs 1.92, 1.64 and 1.64 merge costs, over 1), so the pieces count three
    /// speakers; joined (cost 1.92, under 2), the turn is 3 s at (0.85, 0), and two.
    #[test]
    fn a_run_is_one_voice() {
        let other = |at: f64| segment(at, 1.5);
        let half = |y: f64| {
            let mut s = segment(0.85, 1.5);
            s.embedding[1] = units(y);
            s
        };
        let pieces = [0..150, 200..350, 400..550, 600..750, 800..950, 950..1100];
        let segments = || {
            vec![
                other(0.0),
                other(0.0),
                other(0.0),
                other(0.0),
                half(0.8),
                half(-0.8),
            ]
        };
        assert_eq!(count(&segments()), 3);
        assert_eq!(count(&joined(&pieces, segments())), 2);
    }

    /// No chaining: segments half a unit apart in a line 4.5 long are not one speaker because
    /// each is close to the next (single linkage would merge them all); the line's two ends
    /// are too far apart for one voice.
    #[test]
    fn a_chain_splits() {
        let chain: Vec<Segment> = (0..10).map(|i| segment(0.5 * i as f64, 1.0)).collect();
        assert!(count(&chain) >= 2, "{}", count(&chain));
    }

    /// A run cut in three: the pieces end at numpy.linspace's (truncated) boundaries.
    #[test]
    fn long_runs_are_split() {
        let pieces: Vec<_> = split(100..550, 3).collect();
        assert_eq!(pieces, vec![100..250, 250..400, 400..550]);
    }

    /// `n` segments scattered within merging distance of each other, so that every merge
    /// happens: the clustering's worst case, O(n³).
    fn pathological(n: usize) -> Vec<Segment> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| Segment {
                embedding: std::array::from_fn(|_| 0.3 * next()),
                seconds: 0.25,
            })
            .collect()
    }

    /// A check that is true from the start stops the clustering of 2000 segments at once; one
    /// that turns true 600 ms in stops it within a few milliseconds. Uncancelled, these take
    /// about 2 s in a release build (1300 of them, 0.3 s), so 600 ms in it is still merging.
    /// The bounds leave wide slack for debug builds and busy machines.
    #[test]
    fn cancelled_clustering_stops_promptly() {
        let segments = pathological(2000);
        let start = Instant::now();
        let result = count_speakers(&segments, &mut Checkpoint::new(&|| true));
        assert_eq!(result, Err(AudioError::Cancelled));
        assert!(
            start.elapsed() < Duration::from_millis(100),
            "{:?}",
            start.elapsed()
        );

        let flip = Duration::from_millis(600);
        let start = Instant::now();
        let late = || start.elapsed() >= flip;
        let result = count_speakers(&segments, &mut Checkpoint::new(&late));
        assert_eq!(result, Err(AudioError::Cancelled));
        let overrun = start.elapsed() - flip;
        assert!(
            overrun < Duration::from_millis(300),
            "stopped {overrun:?} late"
        );
    }

    /// A check that is polled and stays false changes no count: three groups of segments,
    /// and a chain, counted with and without polls.
    #[test]
    fn a_false_check_changes_nothing() {
        let mut groups = pathological(150);
        for (i, segment) in groups.iter_mut().enumerate() {
            segment.embedding[(i % 3) * 5] += 10.0;
        }
        let chain: Vec<Segment> = (0..120).map(|i| segment(0.7 * i as f64, 1.0)).collect();
        for segments in [groups, chain] {
            let polls = Cell::new(0);
            let counting = || {
                polls.set(polls.get() + 1);
                false
            };
            let polled = count_speakers(&segments, &mut Checkpoint::new(&counting));
            assert_eq!(polled, Ok(count(&segments)));
            assert!(polls.get() > 0);
        }
        assert_eq!(count(&pathological(150)), 1);
    }

    /// The statistics of a segment are those `learn_projection.py` learned the projection from:
    /// its `statistics()` on the same 40 frames (x[t][d] = 1.3·sin(0.7t + 1.1d) +
    /// 0.4·cos(0.23·t·d)) with the committed model gave these values (a selection, and a sum
    /// over every shift weighted by its place).
    #[test]
    fn statistics_are_the_learners() {
        let rows: Vec<Cepstrum> = (0..40)
            .map(|t| {
                std::array::from_fn(|d| {
                    let (t, d) = (t as f64, d as f64);
                    1.3 * (0.7 * t + 1.1 * d).sin() + 0.4 * (0.23 * t * d).cos()
                })
            })
            .collect();
        let stats = match statistics(&rows, &SoundModel::new(), &mut Checkpoint::new(&|| false)) {
            Ok(stats) => stats,
            Err(e) => panic!("never cancelled, yet {e}"),
        };
        let expected = [
            (0, 0.4829672487466438),
            (18, 0.08994115721924388),
            (19, 0.9182082817789603),
            (37, 0.9653410881962674),
            (38, -0.003441279027632844),
            (62, -0.22968022074537994),
            (86, -0.057136074858944425),
            (110, 3.321453961830701e-05),
            (115, 0.00017229335753800556),
            (139, -0.17928732266089592),
            (163, 0.09203591196908911),
            (187, 4.70322765919137e-08),
            (192, -0.13642047978891197),
            (216, 0.0022236303613050656),
            (240, 0.014414347637557754),
            (264, 0.004437906825425824),
            (269, -0.003010716231809784),
            (293, 0.0008720461832741487),
            (317, 0.07731718454121041),
            (341, -0.0023513977380492674),
        ];
        for (i, value) in expected {
            assert!(
                (stats[i] - value).abs() < 1e-12,
                "{i}: {} for {value}",
                stats[i]
            );
        }
        let checksum: f64 = (MOMENTS..STATS).map(|i| stats[i] * (i + 1) as f64).sum();
        assert!((checksum - 119.54024169898935).abs() < 1e-9, "{checksum}");
    }

    /// Five frames or more agreeing within half an octave are a trusted pitch; frames split
    /// between a low voice and five times its pitch (a formant read as the period) are not.
    #[test]
    fn pitch_is_trusted_when_the_frames_agree() {
        assert_eq!(Pitch::of(&mut [100.0; 4]), Pitch::Unknown);
        assert_eq!(Pitch::of(&mut [100.0; 5]), Pitch::Trusted(100f64.log2()));
        // Three of five within half an octave of the median (120 Hz): doubtful.
        assert_eq!(
            Pitch::of(&mut [400.0, 100.0, 110.0, 120.0, 400.0]),
            Pitch::Doubtful(120f64.log2())
        );
        // Five of six: trusted.
        let mut steady = [100.0, 105.0, 110.0, 120.0, 130.0, 400.0];
        assert_eq!(Pitch::of(&mut steady), Pitch::Trusted(115f64.log2()));
        let mut split = [
            62.0, 62.0, 62.0, 62.0, 62.0, 310.0, 310.0, 310.0, 310.0, 310.0,
        ];
        assert_eq!(Pitch::of(&mut split), Pitch::Doubtful(186f64.log2()));
    }

    /// A segment whose pitch is doubtful or unknown takes the trusted pitch of the segment
    /// nearest to it in timbre; with none trusted, the doubtful keep theirs and the unknown take
    /// their median.
    #[test]
    fn doubtful_pitch_is_taken_from_the_nearest_voice() {
        let none = &mut Checkpoint::new(&|| false);
        let mut segments = [
            segment(0.0, 1.0),
            segment(0.1, 1.0),
            segment(5.0, 1.0),
            segment(5.3, 1.0),
            segment(4.0, 1.0),
        ];
        // Whatever sits in the pitch slot is not timbre: were it read, the second segment's
        // nearest would be the third.
        segments[1].embedding[PROJECTED] = 1000.0;
        segments[2].embedding[PROJECTED] = 1000.0;
        let pitch = [
            Pitch::Trusted(6.0),
            Pitch::Doubtful(8.3),
            Pitch::Trusted(7.0),
            Pitch::Unknown,
            Pitch::Doubtful(6.1),
        ];
        let octaves = pitches(&segments, &pitch, none).expect("not cancelled");
        assert_eq!(octaves, [6.0, 6.0, 7.0, 7.0, 7.0]);
        let untrusted = [Pitch::Doubtful(6.0), Pitch::Unknown, Pitch::Doubtful(8.0)];
        let octaves = pitches(&segments[..3], &untrusted, none).expect("not cancelled");
        assert_eq!(octaves, [6.0, 7.0, 8.0]);
        let unknown = [Pitch::Unknown, Pitch::Unknown];
        assert_eq!(
            pitches(&segments[..2], &unknown, none).expect("not cancelled"),
            [0.0, 0.0]
        );
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
