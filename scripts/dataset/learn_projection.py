#!/usr/bin/env python3
"""Learn the speaker count's constants and write them to src/audio/projection.rs.

    python3 scripts/dataset/make_dataset.py --out /tmp/evlearn --split learn   # 2000 clips
    python3 scripts/dataset/learn_projection.py /tmp/evlearn                    # writes the file

The speaker count embeds each speech segment as 342 numbers (src/audio/speakers.rs and
sounds.rs), from its MFCCs c1..c19, each normalised over the clip's speech:

- the mean and the standard deviation of each coefficient over the segment (38);
- per class of speech sound k, the shift of the segment's frames of that class from the
  class's mean: (F_k - N_k mu_k) / (N_k + RELEVANCE) / sigma_k * sqrt(w_k), with N_k the
  frames' posterior mass of class k and F_k their posterior-weighted sum (16 x 19 = 304).

Those numbers move with what is said as much as with who says it; the shifts, which compare a
voice with the average voice sound by sound, move less. This script learns, from the learn
split (2000 clips of 300 voices of its own, whose labels say who speaks when):

1. the classes of speech sound: a Gaussian mixture of SOUNDS components with diagonal
   covariances, fitted by EM to UBM_FRAMES normalised frames drawn at random from the
   segments (a "universal background model", Reynolds, Quatieri and Dunn 2000);
2. the directions in which the 342 numbers tell voices apart best: linear discriminant
   analysis (Fisher 1936; the generalised eigenproblem S_b v = l S_w v) over the segments.

- S_w, within a voice: per clip and voice, the spread of that voice's segments around their
  mean, each segment weighted by its seconds (as Ward's clustering weighs them), pooled over
  every clip and divided by the segments less one per voice: the spread of a one-second
  segment.
- S_b, between voices: per clip of two voices or more, the spread of the voices' means around
  the clip's mean, each weighted by its seconds, averaged over those clips.
- S_w is shrunk 30 % of the way towards the identity times its mean variance (SHRINK), so
  that directions in which the learn split happens to vary little are not blown up.
- The DIMS directions with the largest ratio l are kept, each scaled to unit variance under
  the shrunk S_w: a projected value has a spread of about 1 within one voice over one second
  of speech, which is the scale the merge cost in speakers.rs is set in.

The segments are the labelled turns (trimmed speech, so no pauses), cut as the server cuts its
speech runs: pieces of at most 1.5 s, none under 0.25 s. The MFCCs are computed here exactly as
src/audio/features.rs computes them (the arithmetic of the Python reference), and normalised
over the frames of those segments. Deterministic (seeded draws, fixed rounds of EM): the same
clips give the same file, byte for byte, with the same numpy and the same BLAS (numpy's
linear algebra sums in the library's order: with OpenBLAS instead of the reference BLAS, the
last digits of some constants differ, at about one part in 10^13).
"""
import argparse
import json
import math
import os
import sys
import wave

import numpy as np

DIMS = 20                 # directions kept
SHRINK = 0.3              # share of S_w replaced by its mean variance times the identity
SOUNDS = 16               # sound classes in the background model
RELEVANCE = 4.0           # frames of a class for its shift to count half
UBM_FRAMES = 200000       # frames the background model is fitted to
ITERATIONS = 25           # rounds of EM
VARIANCE_FLOOR = 0.01     # least variance of a class (the frames' own is 1)
SEG_MIN_FRAMES = 25       # pieces under 0.25 s are not segments (speakers.rs SEG_MIN_S)
SEG_MAX_S = 1.5           # runs are cut into pieces of at most this (speakers.rs SEG_MAX_S)
FRAME_HOP = 160           # 10 ms feature frames ...
PITCH_LEN = 640           # ... of 40 ms, the MFCC's 25 ms (400 samples) centred in them
MFCC_OFFSET, MFCC_LEN, NFFT = 120, 400, 512
CEPS = 19
STATS = 2 * CEPS + SOUNDS * CEPS
SR = 16000


def mel_filterbank(nmel=40, fmin=60.0, fmax=7600.0):
    hz2mel = lambda f: 2595 * np.log10(1 + f / 700)
    mel2hz = lambda m: 700 * (10 ** (m / 2595) - 1)
    pts = mel2hz(np.linspace(hz2mel(fmin), hz2mel(fmax), nmel + 2))
    bins = np.fft.rfftfreq(NFFT, 1 / SR)
    fb = np.zeros((nmel, len(bins)))
    for i in range(nmel):
        lo, c, hi = pts[i], pts[i + 1], pts[i + 2]
        fb[i] = np.clip(np.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)), 0, None)
    return fb


FB = mel_filterbank()
DCT = np.array([[math.cos(math.pi / 40 * (n + 0.5) * k) * math.sqrt(2 / 40) for n in range(40)]
                for k in range(1, CEPS + 1)])
HAMMING = np.hamming(MFCC_LEN)


def read_wav(path):
    """16-bit mono 16 kHz samples as the server decodes them: /32768, mean removed."""
    with wave.open(path) as w:
        if (w.getsampwidth(), w.getnchannels(), w.getframerate()) != (2, 1, SR):
            sys.exit("learn_projection.py: %s is not 16-bit mono 16 kHz" % path)
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2") / 32768.0
    return x - x.mean()


def mfcc(x):
    """c1..c19 of every feature frame (features.rs: pre-emphasis 0.97, Hamming, 512-point FFT,
    40 mel bands 60-7600 Hz, log, DCT-II)."""
    frames = (len(x) - PITCH_LEN) // FRAME_HOP + 1 if len(x) >= PITCH_LEN else 0
    if frames == 0:
        return np.zeros((0, CEPS))
    starts = np.arange(frames) * FRAME_HOP + MFCC_OFFSET
    idx = starts[:, None] + np.arange(MFCC_LEN)[None, :]
    y = (x[idx] - 0.97 * x[idx - 1]) * HAMMING
    power = np.abs(np.fft.rfft(y, NFFT)) ** 2
    return np.log(power @ FB.T + 1e-10) @ DCT.T


def pieces_of(turns, frames):
    """The labelled turns as feature-frame ranges (frames whose centre, 20 ms after their
    start, lies in the turn), cut like speakers.rs cuts runs. Returns [(start, end, speaker)]."""
    out = []
    for start_s, end_s, speaker in turns:
        a = max(0, math.ceil(start_s * 100 - 2))
        b = min(frames, math.ceil(end_s * 100 - 2))
        if b - a < SEG_MIN_FRAMES:
            continue
        n = math.ceil((b - a) / 100 / SEG_MAX_S)
        step = (b - a) / n
        bound = lambda i: b if i == n else int(i * step + a)
        out += [(bound(i), bound(i + 1), speaker) for i in range(n)]
    return out


def learn_clips(clip_dir):
    """Per speaker clip of the learn split: its normalised MFCCs and its pieces."""
    labels = json.load(open(os.path.join(clip_dir, "labels.json")))["clips"]
    out = []
    for name in sorted(labels):
        lab = labels[name]
        if lab.get("set") not in ("speakers", "speakers_short"):
            continue
        c = mfcc(read_wav(os.path.join(clip_dir, name)))
        pieces = pieces_of(lab["turns"], len(c))
        if not pieces:
            continue
        speech = np.zeros(len(c), bool)
        for a, b, _ in pieces:
            speech[a:b] = True
        out.append(((c - c[speech].mean(0)) / (c[speech].std(0) + 1e-6), speech, pieces))
    if not out:
        sys.exit("learn_projection.py: no speaker clips in %s" % clip_dir)
    return out


def log_posteriors(x, weights, means, variances):
    """log P(sound k | frame) for each frame of x (rows) and each sound class k (columns)."""
    ll = (-0.5 * (((x[:, None, :] - means[None]) ** 2) / variances[None]).sum(-1)
          - 0.5 * np.log(variances).sum(-1)[None] + np.log(weights)[None])
    top = ll.max(1, keepdims=True)
    return ll - (top + np.log(np.exp(ll - top).sum(1, keepdims=True)))


def background(clips):
    """The classes of speech sound: a Gaussian mixture of SOUNDS components with diagonal
    covariances over the normalised MFCCs, fitted by EM (ITERATIONS rounds) to UBM_FRAMES
    frames drawn at random from the learn split's segments, started from SOUNDS of those
    frames with the frames' own variance. Seeded: the same clips give the same model."""
    frames = np.concatenate([c[speech] for c, speech, _ in clips])
    x = frames[np.random.default_rng(1).choice(len(frames), UBM_FRAMES, replace=False)]
    means = x[np.random.default_rng(0).choice(len(x), SOUNDS, replace=False)].copy()
    variances = np.ones((SOUNDS, CEPS)) * x.var(0)
    weights = np.ones(SOUNDS) / SOUNDS
    for _ in range(ITERATIONS):
        g = np.exp(log_posteriors(x, weights, means, variances))
        n = g.sum(0) + 1e-9
        means = (g.T @ x) / n[:, None]
        variances = np.maximum((g.T @ (x * x)) / n[:, None] - means ** 2, VARIANCE_FLOOR)
        weights = n / n.sum()
    return weights, means, variances


def statistics(c, ubm):
    """A segment's STATS numbers, as speakers.rs computes them: the mean and the standard
    deviation of each coefficient, then per sound class k the shift of the segment's frames of
    that class from the class mean, (F_k - N_k mu_k) / (N_k + RELEVANCE) / sigma_k * sqrt(w_k),
    with N_k the frames' posterior mass of class k and F_k their posterior-weighted sum."""
    weights, means, variances = ubm
    g = np.exp(log_posteriors(c, weights, means, variances))
    n, f = g.sum(0), g.T @ c
    shift = (f - n[:, None] * means) / (n + RELEVANCE)[:, None] / np.sqrt(variances)
    shift *= np.sqrt(weights)[:, None]
    return np.concatenate([c.mean(0), c.std(0), shift.ravel()])


def scatter(clips, ubm):
    sw, sb = np.zeros((STATS, STATS)), np.zeros((STATS, STATS))
    dof, clips_between, segments = 0, 0, 0
    for c, _, pieces in clips:
        emb = np.array([statistics(c[a:b], ubm) for a, b, _ in pieces])
        sec = np.array([(b - a) / 100 for a, b, _ in pieces])
        who = np.array([s for _, _, s in pieces])
        centre = np.average(emb, axis=0, weights=sec)
        for s in set(who):
            m = who == s
            mean = np.average(emb[m], axis=0, weights=sec[m])
            d = (emb[m] - mean) * np.sqrt(sec[m])[:, None]
            sw += d.T @ d
            dof += m.sum() - 1
            if len(set(who)) > 1:
                sb += sec[m].sum() * np.outer(mean - centre, mean - centre)
        clips_between += len(set(who)) > 1
        segments += len(pieces)
    if dof <= 0 or clips_between == 0:
        sys.exit("learn_projection.py: too few voices in the learn split")
    return sw / dof, sb / clips_between, segments


def projection(sw, sb):
    mean_var = np.trace(sw) / len(sw)
    sw_shrunk = (1 - SHRINK) * sw + SHRINK * mean_var * np.eye(len(sw))
    # S_w^-1/2 S_b S_w^-1/2, symmetric: its eigenvectors u give v = S_w^-1/2 u, v' S_w v = 1.
    evals, evecs = np.linalg.eigh(sw_shrunk)
    w_inv_sqrt = evecs @ np.diag(evals ** -0.5) @ evecs.T
    ratio, u = np.linalg.eigh(w_inv_sqrt @ sb @ w_inv_sqrt)
    order = np.argsort(ratio)[::-1][:DIMS]
    v = w_inv_sqrt @ u[:, order]
    # Each direction's sign fixed (largest entry positive) so that the file is deterministic.
    v *= np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(DIMS)])
    return v.T, ratio[order]


def table(rows, indent):
    """Rust array rows, four numbers a line, each exactly as numpy computed it."""
    out = []
    for row in rows:
        lines = "".join(indent + "   " + "".join(" %r," % float(x) for x in row[i:i + 4]) + "\n"
                        for i in range(0, len(row), 4))
        out.append(indent + "[\n" + lines + indent + "],")
    return "\n".join(out)


def wrapped(text, prefix="//!"):
    lines, line = [], prefix
    for word in text.split(" "):
        if len(line) + 1 + len(word) > 100:
            lines.append(line)
            line = prefix
        line += " " + word
    lines.append(line)
    return "\n".join(lines)


def rust(p, ratio, segments, ubm):
    weights, means, variances = ubm
    return """//! The speaker count's learned constants: a model of the classes of speech sound (a Gaussian
//! mixture of {sounds} components over the normalised MFCCs) and the projection of a segment's
//! {stats} statistics (19 MFCC means, 19 standard deviations, and per sound class the shift of
//! the segment's frames from the class mean, 19 each) onto the {dims} directions that tell voices
//! apart best, learned by linear discriminant analysis. Both come from the dev set's `learn`
//! split ({segments} labelled segments of 300 voices that no other split uses).
//!
//! Generated by `scripts/dataset/learn_projection.py` (which says how); do not edit. To
//! regenerate:
//!
//! ```sh
//! python3 scripts/dataset/make_dataset.py --out /tmp/evlearn --split learn
//! python3 scripts/dataset/learn_projection.py /tmp/evlearn
//! ```
//!
//! The Fisher ratio (between-voice over within-voice scatter, as the script weighs them) of each
//! direction, largest first:
{ratio_lines}

use super::features::CEPS;

/// Sound classes in the model.
pub(crate) const SOUNDS: usize = {sounds};

/// How many frames of a class a segment needs for its shift to count half: the shift of a
/// class is its frames' mean offset times N / (N + RELEVANCE) for N frames' worth of it.
pub(crate) const RELEVANCE: f64 = {relevance!r};

/// Statistics per segment: the MFCC means and standard deviations, then a shift per class.
pub(crate) const STATS: usize = 2 * CEPS + SOUNDS * CEPS;

/// Directions kept.
pub(crate) const PROJECTED: usize = {dims};

/// Each class's share of the frames.
#[rustfmt::skip]
pub(crate) const SOUND_WEIGHTS: [f64; SOUNDS] = [
{weights}
];

/// Each class's mean of the normalised c1..c19.
#[rustfmt::skip]
pub(crate) const SOUND_MEANS: [[f64; CEPS]; SOUNDS] = [
{means}
];

/// Each class's variance of the normalised c1..c19.
#[rustfmt::skip]
pub(crate) const SOUND_VARIANCES: [[f64; CEPS]; SOUNDS] = [
{variances}
];

/// Row `j` is direction `j`: projected value `j` = Σᵢ `PROJECTION[j][i]` · statistic `i`. Each
/// direction has unit variance within one voice over a second of speech (under the learn
/// split's within-voice scatter as the script shrinks it).
#[rustfmt::skip]
pub(crate) static PROJECTION: [[f64; STATS]; PROJECTED] = [
{rows}
];
""".format(sounds=SOUNDS, stats=STATS, dims=len(p), segments=segments, relevance=RELEVANCE,
           ratio_lines=wrapped(", ".join("%.1f" % r for r in ratio)),
           weights=table([weights], "")[2:-3].rstrip(),
           means=table(means, "    "), variances=table(variances, "    "), rows=table(p, "    "))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("clips", help="the learn split, as make_dataset.py --split learn writes it")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--out", default=os.path.join(root, "src", "audio", "projection.rs"))
    args = ap.parse_args()
    clips = learn_clips(args.clips)
    ubm = background(clips)
    sw, sb, segments = scatter(clips, ubm)
    p, ratio = projection(sw, sb)
    with open(args.out, "w") as f:
        f.write(rust(p, ratio, segments, ubm))
    print("wrote %s: %d directions from %d segments; ratios %s" % (
        args.out, len(p), segments, " ".join("%.3f" % r for r in ratio)))


if __name__ == "__main__":
    main()
