//! Speaker counting: one embedding per speech segment, then agglomerative clustering.
//!
//! # Segments and embeddings
//!
//! The VAD's speech runs, mapped onto the 10 ms feature frames, are the segments: runs shorter
//! than 0.25 s are dropped (too little to say whose voice it is) and runs longer than 2 s are
//! cut into equal pieces of at most 2 s (so one long turn does not outweigh the others, and a
//! turn change without a pause still has a chance to show). Each segment becomes 39 numbers:
//!
//! - the mean and the standard deviation of each of c1 … c19, after each coefficient is
//!   normalised by its mean and standard deviation over the clip's speech frames — the
//!   speaker's timbre, and how much it moves;
//! - 6·log2(median F0 of the segment's voiced frames) — the pitch, in units where an octave
//!   weighs 6. A segment with fewer than 5 voiced frames takes the median over segments.
//!
//! # Clustering
//!
//! Average linkage (UPGMA; Sokal & Michener 1958), Euclidean distances: start with one cluster
//! per segment and merge the closest pair, the distance between clusters being the mean of all
//! distances between their members, while that distance is at most 2.5. Merging A and B
//! updates the distance to every other cluster C by the Lance–Williams formula
//! d(A∪B, C) = (|A|·d(A, C) + |B|·d(B, C)) / (|A| + |B|), which is the same mean without
//! recomputing it from the members. Cost O(n³) for n segments: a 10-minute clip has a few
//! hundred.
//!
//! A cluster counts as a speaker if its segments add up to at least 0.5 s; at least one
//! speaker is reported when there is any segment at all.
//!
//! The constants (F0 weight 6, threshold 2.5) were chosen on tuning clips of synthetic speech
//! with disjoint voices; expect about 2 in 3 counts exact on turn-taking speech, nearly all
//! within one.

use std::ops::Range;

use super::features::{frame_count, Cepstrum, FrameFeatures, CEPS, FRAMES_PER_SECOND, FRAME_HOP};
use super::noise::runs;
use super::SAMPLE_RATE;

/// Speech runs shorter than this are not segments, seconds.
const SEG_MIN_S: f64 = 0.25;
/// Longer runs are cut into equal pieces of at most this, seconds.
const SEG_MAX_S: f64 = 2.0;
/// Weight of log2(F0) (octaves) against the normalised MFCC statistics.
const F0_WEIGHT: f64 = 6.0;
/// Fewest voiced frames for a segment's own median F0.
const MIN_VOICED_FRAMES: usize = 5;
/// Average-linkage distance up to which clusters merge.
const MERGE_DIST: f64 = 2.5;
/// Least total speech for a cluster to count as a speaker, seconds.
const MIN_SPEAKER_S: f64 = 0.5;
/// Added to every standard deviation before dividing by it.
const SD_FLOOR: f64 = 1e-6;

/// Numbers per embedding: 19 means, 19 standard deviations, 1 pitch.
const EMBEDDING_LEN: usize = 2 * CEPS + 1;

/// One speech segment, embedded.
pub(crate) struct Segment {
    /// Where the 39 numbers put this segment.
    embedding: [f64; EMBEDDING_LEN],
    /// Its length, seconds.
    seconds: f64,
}

/// Embed every speech segment of `x` (16 kHz), given the VAD's speech mask over STFT frames of
/// `hop` samples.
pub(crate) fn embed_segments(
    features: &FrameFeatures,
    x: &[f64],
    speech: &[bool],
    hop: usize,
) -> Vec<Segment> {
    let frames = frame_count(x.len());
    if frames == 0 || speech.is_empty() {
        return Vec::new();
    }
    // Each feature frame takes the VAD decision of the STFT frame holding its centre.
    let is_speech: Vec<bool> = (0..frames)
        .map(|t| {
            let centre_s = (t * FRAME_HOP + FRAME_HOP * 2) as f64 / f64::from(SAMPLE_RATE);
            let stft_frame = (centre_s * f64::from(SAMPLE_RATE) / hop as f64) as usize;
            speech[stft_frame.min(speech.len() - 1)]
        })
        .collect();

    let mut scratch = features.scratch();
    // MFCCs of speech frames only: no other frame is ever read.
    let mut cepstra = vec![[0.0; CEPS]; frames];
    for t in (0..frames).filter(|&t| is_speech[t]) {
        cepstra[t] = features.mfcc(x, t, &mut scratch);
    }
    normalise(&mut cepstra, &is_speech);

    let mut pieces = Vec::new();
    for run in runs(&is_speech, true) {
        let seconds = run.len() as f64 / FRAMES_PER_SECOND;
        if seconds >= SEG_MIN_S {
            pieces.extend(split(run, (seconds / SEG_MAX_S).ceil() as usize));
        }
    }

    let mut pitch: Vec<Option<f64>> = Vec::with_capacity(pieces.len());
    let mut segments: Vec<Segment> = pieces
        .iter()
        .map(|piece| {
            let mut voiced: Vec<f64> = piece
                .clone()
                .map(|t| features.f0(x, t, &mut scratch))
                .filter(|&f0| f0 > 0.0)
                .collect();
            pitch.push((voiced.len() >= MIN_VOICED_FRAMES).then(|| median(&mut voiced).log2()));
            let rows = &cepstra[piece.clone()];
            let n = rows.len() as f64;
            let mut embedding = [0.0; EMBEDDING_LEN];
            for c in 0..CEPS {
                let mean = rows.iter().map(|r| r[c]).sum::<f64>() / n;
                let var = rows.iter().map(|r| (r[c] - mean).powi(2)).sum::<f64>() / n;
                embedding[c] = mean;
                embedding[CEPS + c] = var.sqrt();
            }
            Segment {
                embedding,
                seconds: piece.end as f64 / FRAMES_PER_SECOND
                    - piece.start as f64 / FRAMES_PER_SECOND,
            }
        })
        .collect();

    // Segments without a pitch of their own take the median over those with one.
    let mut known: Vec<f64> = pitch.iter().flatten().copied().collect();
    let fallback = if known.is_empty() {
        0.0
    } else {
        median(&mut known)
    };
    for (segment, p) in segments.iter_mut().zip(pitch) {
        segment.embedding[EMBEDDING_LEN - 1] = p.unwrap_or(fallback) * F0_WEIGHT;
    }
    segments
}

/// Speakers among the segments: clusters of at least [`MIN_SPEAKER_S`] of speech after
/// average-linkage merging up to [`MERGE_DIST`]; 0 without segments, else at least 1.
pub(crate) fn count_speakers(segments: &[Segment]) -> usize {
    if segments.is_empty() {
        return 0;
    }
    let n = segments.len();
    // dist[i][j]: average distance between clusters i and j (a cluster is named after its
    // first segment). Starts as the distance between segments.
    let mut dist = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in i + 1..n {
            let d = euclidean(&segments[i].embedding, &segments[j].embedding);
            dist[i][j] = d;
            dist[j][i] = d;
        }
    }
    let mut size = vec![1usize; n];
    let mut cluster_of: Vec<usize> = (0..n).collect();
    // Live clusters in the order the reference keeps them: a merge keeps the earlier one.
    let mut live: Vec<usize> = (0..n).collect();
    while live.len() > 1 {
        // The closest pair; on a tie, the first in scan order.
        let mut best = (f64::INFINITY, 0, 0);
        for (ai, &a) in live.iter().enumerate() {
            for (bi, &b) in live.iter().enumerate().skip(ai + 1) {
                if dist[a][b] < best.0 {
                    best = (dist[a][b], ai, bi);
                }
            }
        }
        let (d, ai, bi) = best;
        if d > MERGE_DIST {
            break;
        }
        let (a, b) = (live[ai], live[bi]);
        let (na, nb) = (size[a] as f64, size[b] as f64);
        for &c in &live {
            if c != a && c != b {
                let merged = (na * dist[a][c] + nb * dist[b][c]) / (na + nb);
                dist[a][c] = merged;
                dist[c][a] = merged;
            }
        }
        size[a] += size[b];
        for owner in cluster_of.iter_mut().filter(|o| **o == b) {
            *owner = a;
        }
        live.remove(bi);
    }
    let speakers = live
        .iter()
        .filter(|&&c| {
            // Summed in segment order, as the reference sums them.
            let total: f64 = segments
                .iter()
                .zip(&cluster_of)
                .filter(|(_, &owner)| owner == c)
                .map(|(s, _)| s.seconds)
                .sum();
            total >= MIN_SPEAKER_S
        })
        .count();
    speakers.max(1)
}

/// Normalise each coefficient by its mean and standard deviation over the speech frames
/// (mean 0 and sd 1 when there are none).
fn normalise(cepstra: &mut [Cepstrum], is_speech: &[bool]) {
    let speech: Vec<usize> = (0..cepstra.len()).filter(|&t| is_speech[t]).collect();
    if speech.is_empty() {
        return;
    }
    let n = speech.len() as f64;
    for c in 0..CEPS {
        let mean = speech.iter().map(|&t| cepstra[t][c]).sum::<f64>() / n;
        let var = speech
            .iter()
            .map(|&t| (cepstra[t][c] - mean).powi(2))
            .sum::<f64>()
            / n;
        let sd = var.sqrt() + SD_FLOOR;
        for frame in cepstra.iter_mut() {
            frame[c] = (frame[c] - mean) / sd;
        }
    }
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

fn euclidean(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(at: f64, seconds: f64) -> Segment {
        let mut embedding = [0.0; EMBEDDING_LEN];
        embedding[0] = at;
        Segment { embedding, seconds }
    }

    /// Two tight groups far apart are two speakers; within 2.5 they are one.
    #[test]
    fn clusters_by_distance() {
        let far = [
            segment(0.0, 1.0),
            segment(0.5, 1.0),
            segment(10.0, 1.0),
            segment(10.4, 1.0),
        ];
        assert_eq!(count_speakers(&far), 2);
        let near = [segment(0.0, 1.0), segment(1.0, 1.0), segment(2.0, 1.0)];
        assert_eq!(count_speakers(&near), 1);
        assert_eq!(count_speakers(&[]), 0);
    }

    /// A cluster with under 0.5 s of speech is not a speaker, but one is always reported.
    #[test]
    fn small_clusters_do_not_count() {
        assert_eq!(count_speakers(&[segment(0.0, 2.0), segment(10.0, 0.3)]), 1);
        assert_eq!(count_speakers(&[segment(0.0, 0.3)]), 1);
    }

    /// Average linkage, not single linkage: a chain whose ends are far apart splits.
    #[test]
    fn average_linkage() {
        let chain: Vec<Segment> = (0..4).map(|i| segment(2.0 * i as f64, 1.0)).collect();
        assert_eq!(count_speakers(&chain), 2);
    }

    /// 4.5 s in 2 s pieces: three pieces at numpy.linspace's boundaries.
    #[test]
    fn long_runs_are_split() {
        let pieces: Vec<_> = split(100..550, 3).collect();
        assert_eq!(pieces, vec![100..250, 250..400, 400..550]);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
