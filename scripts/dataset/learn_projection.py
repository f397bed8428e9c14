#!/usr/bin/env python3
"""Learn the speaker count's projection and write it to src/audio/projection.rs.

    python3 scripts/dataset/make_dataset.py --out /tmp/evlearn --split learn   # 2000 clips
    python3 scripts/dataset/learn_projection.py /tmp/evlearn                    # writes the file

The speaker count embeds each speech segment as 38 numbers: the mean and the standard
deviation of each of the MFCCs c1..c19 over the segment, after each coefficient is normalised
over the clip's speech (src/audio/speakers.rs). Those 38 numbers move with what is said as
much as with who says it. This script finds the directions in which they tell voices apart
best: linear discriminant analysis (Fisher 1936; the generalised eigenproblem S_b v = l S_w v)
over the segments of the learn split, whose 2000 clips have 300 voices of their own and whose
labels say who speaks when.

- S_w, within a voice: per clip and voice, the spread of that voice's segments around their
  mean, each segment weighted by its seconds (as Ward's clustering weighs them), pooled over
  every clip and divided by the segments less one per voice.
- S_b, between voices: per clip of two voices or more, the spread of the voices' means around
  the clip's mean, each weighted by its seconds, averaged over those clips.
- S_w is shrunk 30 % of the way towards the identity times its mean variance (SHRINK), so
  that directions in which the learn split happens to vary little are not blown up.
- The DIMS directions with the largest ratio l are kept, each scaled to unit variance under
  the shrunk S_w and then by the root of S_w's mean variance (the mean of its diagonal). Under
  S_w itself their variances are then 0.64-1.04 times that mean, and the total over the 20
  directions is 45 % of the total over the 38 numbers: the merge cost is chosen anew for them.

The segments are the labelled turns (trimmed speech, so no pauses), cut as the server cuts its
speech runs: pieces of at most 1.5 s, none under 0.25 s. The MFCCs are computed here exactly as
src/audio/features.rs computes them (the arithmetic of the Python reference), and normalised
over the frames of those segments. Deterministic: the same clips give the same file.
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
SEG_MIN_FRAMES = 25       # pieces under 0.25 s are not segments (speakers.rs SEG_MIN_S)
SEG_MAX_S = 1.5           # runs are cut into pieces of at most this (speakers.rs SEG_MAX_S)
FRAME_HOP = 160           # 10 ms feature frames ...
PITCH_LEN = 640           # ... of 40 ms, the MFCC's 25 ms (400 samples) centred in them
MFCC_OFFSET, MFCC_LEN, NFFT = 120, 400, 512
CEPS = 19
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


def scatter(clip_dir):
    labels = json.load(open(os.path.join(clip_dir, "labels.json")))["clips"]
    sw, sb = np.zeros((2 * CEPS, 2 * CEPS)), np.zeros((2 * CEPS, 2 * CEPS))
    dof, clips_between, segments = 0, 0, 0
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
        c = (c - c[speech].mean(0)) / (c[speech].std(0) + 1e-6)
        emb = np.array([np.concatenate([c[a:b].mean(0), c[a:b].std(0)]) for a, b, _ in pieces])
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
        sys.exit("learn_projection.py: no speaker clips in %s" % clip_dir)
    return sw / dof, sb / clips_between, segments


def projection(sw, sb):
    mean_var = np.trace(sw) / len(sw)
    sw_shrunk = (1 - SHRINK) * sw + SHRINK * mean_var * np.eye(len(sw))
    # S_w^-1/2 S_b S_w^-1/2, symmetric: its eigenvectors u give v = S_w^-1/2 u, v' S_w v = 1.
    evals, evecs = np.linalg.eigh(sw_shrunk)
    w_inv_sqrt = evecs @ np.diag(evals ** -0.5) @ evecs.T
    ratio, u = np.linalg.eigh(w_inv_sqrt @ sb @ w_inv_sqrt)
    order = np.argsort(ratio)[::-1][:DIMS]
    v = w_inv_sqrt @ u[:, order] * math.sqrt(mean_var)
    # Each direction's sign fixed (largest entry positive) so that the file is deterministic.
    v *= np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(DIMS)])
    return v.T, ratio[order]


def rust(p, ratio, segments):
    rows = "\n".join(
        "    [\n" + "".join("       " + "".join(" %r," % float(x) for x in row[i:i + 3]) + "\n"
                           for i in range(0, len(row), 3)) + "    ],"
        for row in p)
    ratios = ", ".join("%.1f" % r for r in ratio)
    ratio_lines, line = [], "//!"
    for word in ratios.split(" "):
        if len(line) + 1 + len(word) > 100:
            ratio_lines.append(line)
            line = "//!"
        line += " " + word
    ratio_lines.append(line)
    return """//! The speaker count's projection: the 38 numbers of a segment's MFCC statistics (19 means,
//! 19 standard deviations) onto the {dims} directions that tell voices apart best, learned by
//! linear discriminant analysis from the dev set's `learn` split ({segments} labelled segments of
//! 300 voices that no other split uses).
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

/// Directions kept.
pub(crate) const PROJECTED: usize = {dims};

/// Row `j` is direction `j`: projected value `j` = Σᵢ `PROJECTION[j][i]` · statistic `i`.
#[rustfmt::skip]
pub(crate) const PROJECTION: [[f64; 38]; PROJECTED] = [
{rows}
];
""".format(dims=len(p), segments=segments, ratio_lines="\n".join(ratio_lines), rows=rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("clips", help="the learn split, as make_dataset.py --split learn writes it")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--out", default=os.path.join(root, "src", "audio", "projection.rs"))
    args = ap.parse_args()
    sw, sb, segments = scatter(args.clips)
    p, ratio = projection(sw, sb)
    with open(args.out, "w") as f:
        f.write(rust(p, ratio, segments))
    print("wrote %s: %d directions from %d segments; ratios %s" % (
        args.out, len(p), segments, " ".join("%.3f" % r for r in ratio)))


if __name__ == "__main__":
    main()
