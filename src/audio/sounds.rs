//! How a segment's voice says each class of speech sound.
//!
//! A segment's MFCC means mix its voice with what it says: a second of speech holds a few
//! vowels and consonants, and the means move with which ones. Comparing two segments sound by
//! sound takes most of that out. A background model of speech sounds (`projection.rs`: a
//! mixture of 16 Gaussians over the normalised c1..c19, learned once from 300 generated voices)
//! shares each frame among the sound classes by how likely the class makes it (its posterior,
//! γₖ, summing to 1 over the classes). A segment's *shift* for class k is then how far its
//! frames of that class lie from the class's mean, per coefficient in units of the class's
//! spread:
//!
//! shiftₖ = (Fₖ − Nₖ·μₖ) / (Nₖ + r) / σₖ · √wₖ, with Nₖ = Σ γₖ and Fₖ = Σ γₖ·x over the frames,
//!
//! which is the offset of the frames' mean from μₖ, shrunk towards 0 by Nₖ / (Nₖ + r) when the
//! segment holds little of the class (r = 4 frames' worth), and weighted by the class's share
//! of speech wₖ. This is the adaptation of a background model's means to a speaker (Reynolds,
//! Quatieri and Dunn 2000), and the 16 × 19 shifts are the "GMM supervector" of classical
//! speaker recognition (Campbell, Sturim and Reynolds 2006); the projection keeps 20 numbers of
//! them and of the plain means and deviations.

use super::checkpoint::{Checkpoint, SOUND_NS};
use super::features::{Cepstrum, CEPS};
use super::projection::{RELEVANCE, SOUNDS, SOUND_MEANS, SOUND_VARIANCES, SOUND_WEIGHTS};
use super::AudioError;

/// The background model, in the form the per-frame arithmetic wants.
pub(crate) struct SoundModel {
    /// Each class's mean.
    means: [[f64; CEPS]; SOUNDS],
    /// −½ / variance, per class and coefficient.
    neg_half_precision: [[f64; CEPS]; SOUNDS],
    /// ln wₖ − ½·Σ ln σ²: the log-likelihood of a frame at the class's mean, up to a constant
    /// shared by every class.
    log_peak: [f64; SOUNDS],
    /// √wₖ / σ, per class and coefficient.
    scale: [[f64; CEPS]; SOUNDS],
}

impl SoundModel {
    pub(crate) fn new() -> SoundModel {
        let mut model = SoundModel {
            means: SOUND_MEANS,
            neg_half_precision: [[0.0; CEPS]; SOUNDS],
            log_peak: [0.0; SOUNDS],
            scale: [[0.0; CEPS]; SOUNDS],
        };
        for k in 0..SOUNDS {
            let variances = &SOUND_VARIANCES[k];
            model.log_peak[k] =
                SOUND_WEIGHTS[k].ln() - 0.5 * variances.iter().map(|v| v.ln()).sum::<f64>();
            for (d, variance) in variances.iter().enumerate() {
                model.neg_half_precision[k][d] = -0.5 / variance;
                model.scale[k][d] = SOUND_WEIGHTS[k].sqrt() / variance.sqrt();
            }
        }
        model
    }

    /// The shifts of the segment whose normalised MFCCs are `frames`, class after class, 19
    /// each.
    pub(crate) fn shifts(
        &self,
        frames: &[Cepstrum],
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<[f64; SOUNDS * CEPS], AudioError> {
        let mut mass = [0.0; SOUNDS];
        let mut sums = [[0.0; CEPS]; SOUNDS];
        let mut posterior = [0.0; SOUNDS];
        for x in frames {
            self.posteriors(x, &mut posterior);
            for k in 0..SOUNDS {
                mass[k] += posterior[k];
                for (sum, v) in sums[k].iter_mut().zip(x) {
                    *sum += posterior[k] * v;
                }
            }
            checkpoint.tick(SOUND_NS)?;
        }
        let mut shifts = [0.0; SOUNDS * CEPS];
        for k in 0..SOUNDS {
            let shrink = mass[k] + RELEVANCE;
            for d in 0..CEPS {
                shifts[k * CEPS + d] =
                    (sums[k][d] - mass[k] * self.means[k][d]) / shrink * self.scale[k][d];
            }
        }
        Ok(shifts)
    }

    /// γₖ of frame `x` for every class k, into `posterior`: the classes' likelihoods
    /// normalised to sum to 1, computed from their logarithms less the largest, so that no
    /// frame far from every class underflows to 0/0. (A normalised speech frame stays within
    /// about √(speech frames) of 0, a few hundred at most; a frame so far out that every
    /// logarithm is −∞, or one holding a NaN, is shared equally.)
    fn posteriors(&self, x: &Cepstrum, posterior: &mut [f64; SOUNDS]) {
        for (k, log) in posterior.iter_mut().enumerate() {
            let mut distance = 0.0;
            for ((v, m), p) in x
                .iter()
                .zip(&self.means[k])
                .zip(&self.neg_half_precision[k])
            {
                distance += (v - m) * (v - m) * p;
            }
            *log = self.log_peak[k] + distance;
        }
        let top = posterior.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !top.is_finite() {
            posterior.fill(1.0 / SOUNDS as f64);
            return;
        }
        let mut total = 0.0;
        for p in posterior.iter_mut() {
            *p = (*p - top).exp();
            total += *p;
        }
        for p in posterior.iter_mut() {
            *p /= total;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shifts(frames: &[Cepstrum]) -> [f64; SOUNDS * CEPS] {
        match SoundModel::new().shifts(frames, &mut Checkpoint::new(&|| false)) {
            Ok(out) => out,
            Err(e) => panic!("never cancelled, yet {e}"),
        }
    }

    /// Every frame's posteriors are a distribution over the classes, even for a frame far
    /// from all of them, and a frame at a class's mean belongs mostly to that class.
    #[test]
    fn posteriors_are_a_distribution() {
        let model = SoundModel::new();
        let mut posterior = [0.0; SOUNDS];
        for x in [
            [0.0; CEPS],
            [1e3; CEPS],
            [-40.0; CEPS],
            SOUND_MEANS[3],
            [1e160; CEPS],
            [f64::NAN; CEPS],
        ] {
            model.posteriors(&x, &mut posterior);
            let total: f64 = posterior.iter().sum();
            assert!((total - 1.0).abs() < 1e-12, "{total}");
            assert!(posterior.iter().all(|p| p.is_finite() && *p >= 0.0));
        }
        model.posteriors(&SOUND_MEANS[3], &mut posterior);
        let best = (0..SOUNDS).max_by(|&a, &b| posterior[a].total_cmp(&posterior[b]));
        assert_eq!(best, Some(3), "{posterior:?}");
    }

    /// The posteriors are those `learn_projection.py` computes with the committed model, for
    /// the frame x[d] = 1.3·sin(1.1d) + 0.4 (its `log_posteriors`, exponentiated).
    #[test]
    fn posteriors_are_the_learners() {
        let x: Cepstrum = std::array::from_fn(|d| 1.3 * (1.1 * d as f64).sin() + 0.4);
        let expected = [
            0.003919357969125823,
            0.17165773784541777,
            8.421013286028582e-07,
            7.589821717948538e-08,
            5.303972937139372e-06,
            2.0276539426990767e-06,
            1.5409719049074802e-10,
            3.171358136442619e-20,
            2.5629763033335407e-07,
            0.00028511060938790964,
            0.009236269613835908,
            0.13717703972629808,
            4.4485269222197583e-13,
            1.5360805136157023e-05,
            0.6776034704357,
            9.714691650047998e-05,
        ];
        let mut posterior = [0.0; SOUNDS];
        SoundModel::new().posteriors(&x, &mut posterior);
        for (k, (got, want)) in posterior.iter().zip(expected).enumerate() {
            assert!(
                (got - want).abs() <= 1e-12 * want.max(1e-3),
                "{k}: {got} for {want}"
            );
        }
    }

    /// No frames, no shift. A segment whose frames all sit at a class's mean does not shift
    /// that class, whatever share of them the class takes; one whose frames sit a little
    /// higher in c1 shifts it that way, in c1 alone, and more the more frames there are (the
    /// shrinking by N / (N + r) lets go).
    #[test]
    fn shifts_follow_the_voice() {
        assert!(shifts(&[]).iter().all(|&s| s == 0.0));
        for (k, mean) in SOUND_MEANS.iter().enumerate() {
            let at = |frames: usize, raise: f64| {
                let mut frame = *mean;
                frame[0] += raise;
                shifts(&vec![frame; frames])
            };
            let own = k * CEPS..(k + 1) * CEPS;
            assert!(
                at(20, 0.0)[own.clone()].iter().all(|&s| s.abs() < 1e-12),
                "{k}"
            );
            let (few, many) = (at(20, 0.1), at(40, 0.1));
            assert!(few[own.start] > 0.0, "{k}: {}", few[own.start]);
            assert!(many[own.start] > few[own.start], "{k}");
            assert!(few[own.start + 1..own.end].iter().all(|&s| s.abs() < 1e-12));
        }
    }
}
