//! The short-time spectrum, summed into seven sub-bands: the frames of the VAD and the SNR.
//!
//! Frame t covers samples tH … tH + L − 1 (hop H = `vad_hop_size`, window L = 2H), weighted by a
//! periodic Hann window w\[n\] = 0.5 − 0.5·cos(2πn/L) (Harris, "On the use of windows for
//! harmonic analysis with the discrete Fourier transform", Proc. IEEE 66(1), 1978). With 50 %
//! overlap the windows sum to a constant, so every sample counts equally. There are
//! ⌊(N − L)/H⌋ + 1 frames; a partial frame at the end is dropped.
//!
//! The power |X\[k\]|² of bins k = 0 … L/2 is summed into seven bands: from 250 Hz up, the WebRTC
//! VAD's (Google, `common_audio/vad/vad_filterbank.c`), with edges 250 | 500 | 1000 | 2000 |
//! 4000 | 8000 Hz, each [lo, hi), the last including 8 kHz; below 250 Hz, its first band split
//! in two: the bins that no voice reaches, then the rest. A bin of the Hann window hears
//! everything within two bins of its centre (its main lobe), so the first band holds the bins
//! whose main lobe ends at or below [`SPEECH_FREE_HZ`]: bin 0 alone for the default 512-point
//! window, bins 0–6 for 2048 points, none for windows under 512 points (every hop below 256),
//! where the DC bin stays in the second band. At those hops the global SNR is read from frames
//! of hop 256 ([`super::frames::SNR_MIN_HOP`]) whenever the clip has enough of them, and these
//! frames serve the VAD. The DC and Nyquist bins count half, as
//! Parseval's theorem weighs them for a real signal's half spectrum (every other bin stands for
//! itself and its mirror image), so that the bands add up to the frame's energy in the same
//! proportions as its samples do.
//!
//! Why a band below any voice: speech has nothing there (a voice's fundamental is above
//! 60 Hz), but low-frequency noise can have much of its energy there (brown noise, rumble).
//! Leaving the DC bin out, as the WebRTC bands do, loses that noise from the SNR's
//! denominator, and the clip reads several dB cleaner than it is; counted apart, it is noise
//! measured over the whole clip, speech or not ([`super::noise`]).

use std::ops::Range;
use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::RealToComplex;

use super::checkpoint::{Checkpoint, STFT_NS_PER_HOP_SAMPLE};
use super::{AudioError, SAMPLE_RATE};

/// Number of sub-bands.
pub(crate) const BANDS: usize = 7;

/// Band edges in Hz from the second band up (WebRTC VAD's, extended to the full 8 kHz).
const BAND_EDGES_HZ: [f64; BANDS - 1] = [250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0];
/// No voice has energy below this: the lowest fundamentals of speech are above 60 Hz.
const SPEECH_FREE_HZ: f64 = 62.5;
/// The band of the bins whose main lobe ends at or below [`SPEECH_FREE_HZ`]: no speech, only
/// noise.
pub(crate) const BELOW_SPEECH: usize = 0;

/// Energy of one frame in each band.
pub(crate) type BandEnergies = [f64; BANDS];

/// Everything the STFT needs for one hop: built once per hop and cached by the analyzer.
pub(crate) struct StftPlan {
    hop: usize,
    /// Real-to-complex FFT of length 2·hop.
    fft: Arc<dyn RealToComplex<f64>>,
    /// Periodic Hann window of length 2·hop.
    window: Vec<f64>,
    /// FFT bins of each band.
    bands: [Range<usize>; BANDS],
}

impl StftPlan {
    pub(crate) fn new(hop: usize, fft: Arc<dyn RealToComplex<f64>>) -> StftPlan {
        let len = 2 * hop;
        let window = (0..len)
            .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / len as f64).cos())
            .collect();
        StftPlan {
            hop,
            fft,
            window,
            bands: band_bins(len),
        }
    }

    /// Whole frames in `len` samples.
    pub(crate) fn frame_count(&self, len: usize) -> usize {
        let window = 2 * self.hop;
        if len < window {
            0
        } else {
            (len - window) / self.hop + 1
        }
    }

    /// Band energies of every whole frame of `x` (16 kHz).
    pub(crate) fn band_energies(
        &self,
        x: &[f64],
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<Vec<BandEnergies>, AudioError> {
        let mut out = Vec::with_capacity(self.frame_count(x.len()));
        self.extend(x, &mut self.buffers(), &mut out, checkpoint)?;
        Ok(out)
    }

    /// FFT buffers for [`StftPlan::extend`], so that a caller extending frame by frame
    /// allocates them once.
    pub(crate) fn buffers(&self) -> StftBuffers {
        StftBuffers {
            input: self.fft.make_input_vec(),
            spectrum: self.fft.make_output_vec(),
            scratch: self.fft.make_scratch_vec(),
        }
    }

    /// Append to `out` the band energies of the whole frames of `x` it does not hold yet:
    /// frames `out.len()` up to [`StftPlan::frame_count`]`(x.len())`. Each frame reads only its
    /// own samples, so a clip's frames computed a window at a time equal those computed at once.
    pub(crate) fn extend(
        &self,
        x: &[f64],
        buffers: &mut StftBuffers,
        out: &mut Vec<BandEnergies>,
        checkpoint: &mut Checkpoint<'_>,
    ) -> Result<(), AudioError> {
        let len = 2 * self.hop;
        let frame_ns = self.hop as u64 * STFT_NS_PER_HOP_SAMPLE;
        for t in out.len()..self.frame_count(x.len()) {
            let frame = &x[t * self.hop..t * self.hop + len];
            for ((slot, &v), &w) in buffers.input.iter_mut().zip(frame).zip(&self.window) {
                *slot = v * w;
            }
            // The buffers have the plan's own lengths, so the FFT cannot refuse them; if it
            // ever did, the frame would count as silent.
            let energies = match self.fft.process_with_scratch(
                &mut buffers.input,
                &mut buffers.spectrum,
                &mut buffers.scratch,
            ) {
                Ok(()) => {
                    let spectrum = &buffers.spectrum;
                    self.bands.clone().map(|bins| {
                        bins.map(|k| {
                            let power = spectrum[k].norm_sqr();
                            // DC and Nyquist: half, as Parseval counts them (see the top).
                            if k == 0 || k == len / 2 {
                                0.5 * power
                            } else {
                                power
                            }
                        })
                        .sum()
                    })
                }
                Err(_) => [0.0; BANDS],
            };
            out.push(energies);
            checkpoint.tick(frame_ns)?;
        }
        Ok(())
    }
}

/// The FFT's input, output and scratch buffers, of the plan's own lengths.
pub(crate) struct StftBuffers {
    input: Vec<f64>,
    spectrum: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
}

/// The bins of each band for an FFT of `len` points at 16 kHz. Bin frequencies are computed as
/// numpy's `rfftfreq` computes them, k·(1/(len·(1/16000))), so that a bin lying exactly on an
/// edge falls on the same side as in the reference.
fn band_bins(len: usize) -> [Range<usize>; BANDS] {
    let step = 1.0 / (len as f64 * (1.0 / f64::from(SAMPLE_RATE)));
    let freq = |k: usize| k as f64 * step;
    let nyquist = len / 2;
    // First bin at or above `hz`.
    let first_at = |hz: f64| {
        (0..=nyquist)
            .find(|&k| freq(k) >= hz)
            .unwrap_or(nyquist + 1)
    };
    // Bins whose main lobe (± 2 bins) ends at or below SPEECH_FREE_HZ.
    let speech_free = (0..=nyquist)
        .take_while(|&k| (k + 2) as f64 * step <= SPEECH_FREE_HZ)
        .count();
    std::array::from_fn(|b| match b {
        0 => 0..speech_free,
        1 => speech_free..first_at(BAND_EDGES_HZ[0]).max(speech_free),
        _ => {
            let lo = first_at(BAND_EDGES_HZ[b - 2]);
            // The top band includes the Nyquist bin; the others stop below their upper edge.
            let hi = if b == BANDS - 1 {
                (0..=nyquist)
                    .rev()
                    .find(|&k| freq(k) <= BAND_EDGES_HZ[b - 1])
                    .map_or(lo, |k| k + 1)
            } else {
                first_at(BAND_EDGES_HZ[b - 1])
            };
            lo..hi.max(lo)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// For the default 512-point window the bands are bins 0, 1–7, 8–15, 16–31, 32–63,
    /// 64–127 and 128–256 (31.25 Hz per bin); for 2048 points the first is bins 0–6; for 160
    /// points (100 Hz a bin, a main lobe of ± 200 Hz) it is empty.
    #[test]
    fn bands_of_512_points() {
        assert_eq!(
            band_bins(512),
            [0..1, 1..8, 8..16, 16..32, 32..64, 64..128, 128..257]
        );
        assert_eq!(band_bins(2048)[0], 0..7);
        assert_eq!(band_bins(160)[..2], [0..0, 0..3]);
    }

    /// Bands tile bins 0 … L/2 without gaps or overlap, for every accepted hop.
    #[test]
    fn bands_tile_the_spectrum() {
        for hop in crate::audio::HOP_RANGE {
            let b = band_bins(2 * hop);
            assert_eq!(b[0].start, 0);
            for i in 1..BANDS {
                assert_eq!(b[i - 1].end, b[i].start, "hop {hop}");
            }
            assert!(b[BANDS - 1].end == hop || b[BANDS - 1].end == hop + 1);
        }
    }

    /// For 128 of the accepted hops (88 is the first) numpy's `rfftfreq` puts the Nyquist bin
    /// at 8000.000000000001 Hz, so the reference leaves it out of the top band; so do we.
    #[test]
    fn nyquist_bin_as_numpy_rounds_it() {
        assert_eq!(band_bins(176)[BANDS - 1].end, 88);
        assert_eq!(band_bins(178)[BANDS - 1].end, 89);
        assert_eq!(band_bins(180)[BANDS - 1].end, 91);
    }
}
