//! Resampling to 16 kHz: a polyphase FIR filter, the same one `scipy.signal.resample_poly`
//! designs, so that resampled clips give the reference's numbers.
//!
//! # Why not rubato
//!
//! The reference resamples with `resample_poly(x, up, down)`, where `up/down` is
//! 16000/rate in lowest terms. Matching it exactly takes about sixty lines, while rubato's sinc
//! or FFT resamplers would move every number of an 8 kHz or 44.1 kHz clip by a little. So this
//! is the textbook polyphase structure (Crochiere & Rabiner, *Multirate Digital Signal
//! Processing*, 1983, ch. 3) with scipy's filter:
//!
//! - prototype low-pass: `firwin(2·H + 1, 1/max(up, down), window = ('kaiser', 5.0))` with
//!   H = 10·max(up, down) — a windowed sinc, cut off at the lower Nyquist rate, scaled to unit
//!   DC gain, times `up` to make up for the zeros that upsampling inserts;
//! - output m is y\[m\] = Σₙ x\[n\]·h\[H + m·down − n·up\], with x zero outside the clip: the
//!   filter is centred on each output, so there is no delay, and there are ⌈N·up/down⌉ outputs.
//!
//! Only every `up`-th tap meets a real sample, so the taps are stored split by phase
//! (p = index mod up); each output is then one short dot product over contiguous taps:
//! 55 per output for 44.1 kHz, 61 for 48 kHz, 21 for 8 kHz.

use super::checkpoint::{Checkpoint, BLOCK, DESIGN_NS, READ_NS, TAP_NS, WRITE_NS};
use super::{AudioError, MIN_SAMPLE_RATE, SAMPLE_RATE};

/// Kaiser window shape parameter of `resample_poly`'s default window, `('kaiser', 5.0)`.
const KAISER_BETA: f64 = 5.0;
/// Half-length of the prototype filter in units of max(up, down) (`resample_poly`'s 10).
const HALF_LEN_PER_RATE: usize = 10;
/// Largest `up` or `down` accepted. Every standard rate stays far below it (44.1 kHz is
/// 160/441, 11.025 kHz is 640/441); a rate like 15999 Hz would need a 640 000-tap filter.
pub(crate) const MAX_RATIO_TERM: usize = 4000;

/// A polyphase resampler by the rational factor up/down.
pub(crate) struct Polyphase {
    up: usize,
    down: usize,
    /// H: the prototype filter has 2H + 1 taps, centred on tap H.
    half_len: usize,
    /// Phase p: prototype taps p, p + up, p + 2·up, … in reverse order, so that the last one
    /// meets the newest input sample.
    phases: Vec<Vec<f64>>,
}

/// `Some((up, down))` that turns `rate` into 16 kHz, in lowest terms; `None` for 16 kHz.
///
/// Rates below [`MIN_SAMPLE_RATE`] are refused here as well as by the decoder: whoever calls
/// it, the resampler never more than doubles its input (up/down ≤ 2), so its output, and the
/// work on it, stays in proportion to the bytes that were sent.
pub(crate) fn ratio_to_16k(rate: u32) -> Result<Option<(usize, usize)>, AudioError> {
    if rate < MIN_SAMPLE_RATE {
        return Err(AudioError::Unsupported(format!(
            "sample rate {rate} Hz: at least {MIN_SAMPLE_RATE} Hz is needed"
        )));
    }
    let (target, rate) = (SAMPLE_RATE as usize, rate as usize);
    let g = gcd(target, rate);
    let (up, down) = (target / g, rate / g);
    if up == down {
        return Ok(None);
    }
    if up.max(down) > MAX_RATIO_TERM {
        return Err(AudioError::Unsupported(format!(
            "sample rate {rate} Hz: resampling to 16 kHz by {up}/{down} needs too long a filter; \
             use a standard rate such as 8000, 22050, 44100 or 48000 Hz"
        )));
    }
    Ok(Some((up, down)))
}

impl Polyphase {
    /// Design scipy's filter for `up/down` (in lowest terms, neither zero). Up to 80 001
    /// taps (at [`MAX_RATIO_TERM`]), several milliseconds of work, so the checkpoint is ticked
    /// per tap, per phase, and per [`BLOCK`] of taps in the passes over all of them.
    pub(crate) fn design(
        up: usize,
        down: usize,
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<Polyphase, AudioError> {
        let max_rate = up.max(down);
        let cutoff = 1.0 / max_rate as f64;
        let half_len = HALF_LEN_PER_RATE * max_rate;
        let taps = 2 * half_len + 1;
        // firwin: cutoff·sinc(cutoff·m) under a symmetric Kaiser window, m = tap − H.
        let mut h: Vec<f64> = Vec::with_capacity(taps);
        for i in 0..taps {
            let m = i as f64 - half_len as f64;
            h.push(cutoff * sinc(cutoff * m) * kaiser(i, half_len));
            checkpoint.tick(DESIGN_NS)?;
        }
        // Unit gain at DC, then ×up for the inserted zeros. The sum runs in tap order from
        // −0.0, as `iter().sum()` does.
        let mut sum = -0.0;
        for block in h.chunks(BLOCK) {
            sum = block.iter().fold(sum, |sum, tap| sum + tap);
            checkpoint.tick(block.len() as u64 * READ_NS)?;
        }
        for block in h.chunks_mut(BLOCK) {
            for tap in block.iter_mut() {
                *tap = *tap / sum * up as f64;
            }
            checkpoint.tick(block.len() as u64 * WRITE_NS)?;
        }
        let mut phases = Vec::with_capacity(up);
        for p in 0..up {
            let mut taps: Vec<f64> = h.iter().skip(p).step_by(up).copied().collect();
            taps.reverse();
            phases.push(taps);
            // An allocation and a strided copy: about as long as one tap's design.
            checkpoint.tick(DESIGN_NS)?;
        }
        Ok(Polyphase {
            up,
            down,
            half_len,
            phases,
        })
    }

    /// Resample a whole clip: ⌈len·up/down⌉ outputs, computed a [`BLOCK`] at a time with a
    /// tick of the checkpoint after each block.
    pub(crate) fn apply(
        &self,
        x: &[f64],
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<Vec<f64>, AudioError> {
        let n_out = (x.len() * self.up).div_ceil(self.down);
        // Every phase holds ⌈(2H + 1)/up⌉ taps or one fewer.
        let output_ns = WRITE_NS + self.phases[0].len() as u64 * TAP_NS;
        let mut y = Vec::with_capacity(n_out);
        for first in (0..n_out).step_by(BLOCK) {
            let block = first..n_out.min(first + BLOCK);
            let outputs = block.len() as u64;
            y.extend(block.map(|m| self.output(x, m)));
            checkpoint.tick(outputs * output_ns)?;
        }
        Ok(y)
    }

    /// Output `m` of the resampled `x`.
    fn output(&self, x: &[f64], m: usize) -> f64 {
        // Position of output m on the upsampled time axis, shifted by the filter centre.
        let t = self.half_len + m * self.down;
        let taps = &self.phases[t % self.up];
        // The phase's taps meet inputs newest + 1 − taps.len() … newest; zeros outside the
        // clip contribute nothing, so clip the range to it.
        let newest = t / self.up;
        let start = (newest + 1).saturating_sub(taps.len());
        let end = (newest + 1).min(x.len());
        if start >= end {
            return 0.0;
        }
        let first_tap = start + taps.len() - (newest + 1);
        dot(&x[start..end], &taps[first_tap..first_tap + (end - start)])
    }
}

/// Σ a\[i\]·b\[i\] with four running sums, so consecutive multiply-adds do not wait on each other.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut sums = [0.0; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = a4
        .remainder()
        .iter()
        .zip(b4.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a4.zip(b4) {
        for k in 0..4 {
            sums[k] += x[k] * y[k];
        }
    }
    (sums[0] + sums[1]) + (sums[2] + sums[3]) + tail
}

/// numpy's normalised sinc, sin(πx)/(πx).
fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// Symmetric Kaiser window of 2·half_len + 1 points, at point `i`.
fn kaiser(i: usize, half_len: usize) -> f64 {
    let r = (i as f64 - half_len as f64) / half_len as f64;
    bessel_i0(KAISER_BETA * (1.0 - r * r).max(0.0).sqrt()) / bessel_i0(KAISER_BETA)
}

/// Modified Bessel function of the first kind, order 0, by its power series
/// Σ ((x/2)ᵏ / k!)²; for the x ≤ 5 used here it converges in about 20 terms.
fn bessel_i0(x: f64) -> f64 {
    let quarter_x2 = x * x / 4.0;
    let (mut sum, mut term, mut k) = (1.0, 1.0, 1.0);
    while term > sum * 1e-17 {
        term *= quarter_x2 / (k * k);
        sum += term;
        k += 1.0;
    }
    sum
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `x` resampled by `up/down`, with a check that is never true.
    fn resampled(up: usize, down: usize, x: &[f64]) -> Vec<f64> {
        let never = || false;
        let mut checkpoint = Checkpoint::new(&never);
        let resampled = Polyphase::design(up, down, &mut checkpoint)
            .and_then(|filter| filter.apply(x, &mut checkpoint));
        match resampled {
            Ok(y) => y,
            Err(e) => panic!("never cancelled, yet {e}"),
        }
    }

    /// A constant signal keeps its level through the filter (unit DC gain), away from the
    /// clip's edges where the zero padding pulls it down.
    #[test]
    fn dc_gain_is_one() {
        for (up, down) in [(2, 1), (1, 3), (160, 441)] {
            let y = resampled(up, down, &vec![1.0; 4000]);
            let mid = y[y.len() / 2];
            assert!((mid - 1.0).abs() < 1e-3, "{up}/{down}: {mid}");
        }
    }

    /// Output length is ⌈N·up/down⌉, as resample_poly's.
    #[test]
    fn output_length() {
        assert_eq!(resampled(160, 441, &[0.0; 1000]).len(), 363);
        assert_eq!(resampled(2, 1, &[0.0; 7]).len(), 14);
    }

    /// The ratio is reduced to lowest terms; 16 kHz needs none; odd rates are refused, and so
    /// is every rate below 8 kHz.
    #[test]
    fn ratios() {
        assert_eq!(ratio_to_16k(16_000), Ok(None));
        assert_eq!(ratio_to_16k(44_100), Ok(Some((160, 441))));
        assert_eq!(ratio_to_16k(8_000), Ok(Some((2, 1))));
        for rate in [15_999, 7_999, 4_000, 1_000, 4, 1, 0] {
            assert!(
                matches!(ratio_to_16k(rate), Err(AudioError::Unsupported(_))),
                "{rate}"
            );
        }
    }

    /// Over every rate the decoder could see (up to 768 kHz), an accepted one never more than
    /// doubles the samples, and its filter stays within the tap budget: the resampled clip is
    /// bounded by the input, whatever rate a header claims.
    #[test]
    fn every_accepted_rate_at_most_doubles_the_samples() {
        let mut accepted = 0;
        for rate in 0..=768_000 {
            if let Ok(Some((up, down))) = ratio_to_16k(rate) {
                assert!(up <= 2 * down, "{rate} Hz: {up}/{down}");
                assert!(up.max(down) <= MAX_RATIO_TERM, "{rate} Hz: {up}/{down}");
                accepted += 1;
            }
        }
        assert!(accepted > 100, "only {accepted} rates accepted");
    }

    /// I0 agrees with tabulated values (Abramowitz & Stegun, table 9.8).
    #[test]
    fn bessel_values() {
        assert!((bessel_i0(0.0) - 1.0).abs() < 1e-15);
        assert!((bessel_i0(1.0) - 1.266_065_877_752_008).abs() < 1e-14);
        assert!((bessel_i0(5.0) - 27.239_871_823_604_45).abs() < 1e-12);
    }
}
