//! Deterministic speech-like signals and noise, for tests and benchmarks with exact labels.
//!
//! Not speech, but close enough in the ways the analyses look at: a source–filter model
//! (Fant, *Acoustic Theory of Speech Production*, 1960) with
//!
//! - a **voiced source**: a band-limited pulse train (all harmonics of F0 up to 3.8 kHz, equal
//!   amplitude) through a one-pole low-pass, the −6 dB/octave tilt of the glottal pulse; F0
//!   drifts within ±8 % of the voice's own pitch from syllable to syllable;
//! - **formants**: three two-pole resonators in cascade (Klatt, "Software for a
//!   cascade/parallel formant synthesizer", JASA 67(3), 1980) tuned to one of five vowels per
//!   syllable, scaled per voice (a shorter vocal tract has higher formants);
//! - **syllables and pauses**: 130–270 ms syllables under a raised-cosine envelope (a 3–5 Hz
//!   syllabic rhythm), two to four per word, words separated by 0.2–0.5 s of digital silence.
//!
//! Everything is driven by a small seeded PRNG, so a (voice, seed) pair always gives the same
//! samples. [`mix_at_snr`] adds noise at an exact global SNR, and [`wav_16bit`] writes the
//! result as a 16-bit PCM WAV body.

use std::f64::consts::PI;
use std::io::Cursor;

/// Sample rate of every generated signal.
pub const RATE: u32 = 16_000;

/// Highest harmonic frequency of the voiced source, Hz.
const SOURCE_TOP_HZ: f64 = 3800.0;
/// Pole of the glottal tilt low-pass: corner near 250 Hz at 16 kHz.
const TILT_POLE: f64 = 0.9;
/// Formants (F1, F2, F3) of five vowels of an adult male voice, Hz (Peterson & Barney 1952):
/// /a/, /i/, /u/, /e/, /o/.
const VOWELS: [[f64; 3]; 5] = [
    [730.0, 1090.0, 2440.0],
    [270.0, 2290.0, 3010.0],
    [300.0, 870.0, 2240.0],
    [530.0, 1840.0, 2480.0],
    [570.0, 840.0, 2410.0],
];
/// Formant bandwidths, Hz.
const BANDWIDTHS: [f64; 3] = [80.0, 100.0, 120.0];
/// Syllables per phrase, fewest and most.
const PHRASE_SYLLABLES: (u64, u64) = (10, 16);
/// Voiced nucleus of a syllable, seconds: with the onset, a 3–5 Hz syllable rate.
const SYLLABLE_S: (f64, f64) = (0.16, 0.26);
/// Fricative onset of a syllable, seconds.
const ONSET_S: (f64, f64) = (0.03, 0.07);
/// Onset level relative to the voiced source.
const ONSET_LEVEL: f64 = 0.3;
/// Share of the nucleus over which the formants glide from the previous vowel.
const GLIDE_SHARE: f64 = 0.4;
/// F0 of a syllable's start and end: within this fraction of the voice's own.
const F0_DRIFT: f64 = 0.08;
/// Chance of a short gap after a syllable (a word boundary), and its length in seconds.
const WORD_GAP_CHANCE: f64 = 0.3;
const WORD_GAP_S: (f64, f64) = (0.04, 0.12);
/// Breath pause between phrases, seconds: long enough for the VAD to end the segment.
const PAUSE_S: (f64, f64) = (0.4, 0.7);
/// Peak level of a generated utterance (before any noise is added).
const PEAK: f64 = 0.5;
/// Largest peak of a mix, as a fraction of full scale: leaves headroom for 16-bit rounding.
const MIX_PEAK: f64 = 0.95;

/// The two things that tell voices apart here: pitch and vocal-tract length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Voice {
    /// Centre of the voice's F0, Hz (90–250 is the human speaking range).
    pub f0_hz: f64,
    /// Multiplies every formant frequency: 1.0 for an adult male, about 1.2 for a female voice.
    pub formant_scale: f64,
}

impl Voice {
    /// A low male voice.
    pub const LOW: Voice = Voice {
        f0_hz: 100.0,
        formant_scale: 1.0,
    };
    /// A high female voice: more than an octave above [`Voice::LOW`].
    pub const HIGH: Voice = Voice {
        f0_hz: 230.0,
        formant_scale: 1.2,
    };
}

/// A small, fast, seeded PRNG (SplitMix64; Steele, Lea & Flood, OOPSLA 2014). Not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), from the top 53 bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal, by the Box–Muller transform.
    pub fn gaussian(&mut self) -> f64 {
        let u = 1.0 - self.uniform(); // in (0, 1]: ln(u) is finite
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
    }
}

/// `seconds` of speech-like signal at 16 kHz in `voice`, with pauses, starting and ending with
/// 0.3 s of silence.
pub fn speech(voice: Voice, seconds: f64, seed: u64) -> Vec<f64> {
    let len = (seconds * f64::from(RATE)) as usize;
    let edge = (0.3 * f64::from(RATE)) as usize;
    let mut rng = Rng::new(seed);
    let mut out = vec![0.0; edge.min(len)];
    let mut vowel = VOWELS[0];
    let mut vowels = VowelBag::default();
    while out.len() + edge < len {
        // A phrase of connected speech, with short gaps at some word boundaries (the VAD's
        // hangover bridges them), then a breath pause.
        for _ in
            0..PHRASE_SYLLABLES.0 + rng.next_u64() % (PHRASE_SYLLABLES.1 - PHRASE_SYLLABLES.0 + 1)
        {
            let next = vowels.draw(&mut rng);
            syllable(voice, vowel, next, &mut rng, &mut out);
            vowel = next;
            if rng.uniform() < WORD_GAP_CHANCE {
                let gap = rng.range(WORD_GAP_S.0, WORD_GAP_S.1);
                out.resize(out.len() + (gap * f64::from(RATE)) as usize, 0.0);
            }
        }
        let pause = rng.range(PAUSE_S.0, PAUSE_S.1);
        out.resize(out.len() + (pause * f64::from(RATE)) as usize, 0.0);
    }
    out.resize(len, 0.0);
    // The last phrase may run into the tail; silence the final 0.3 s regardless.
    for v in &mut out[len.saturating_sub(edge)..] {
        *v = 0.0;
    }
    normalise_peak(&mut out, PEAK);
    out
}

/// Turns by `voices` in order, round-robin, each `turn_seconds` long (pauses included, so a
/// turn change always falls in silence).
pub fn conversation(voices: &[Voice], turns: usize, turn_seconds: f64, seed: u64) -> Vec<f64> {
    let mut out = Vec::new();
    for turn in 0..turns {
        if let Some(&voice) = voices.get(turn % voices.len().max(1)) {
            out.extend(speech(
                voice,
                turn_seconds,
                seed.wrapping_mul(31).wrapping_add(turn as u64),
            ));
        }
    }
    out
}

/// `len` samples of white Gaussian noise, unit variance.
pub fn white_noise(len: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed ^ 0x5EED);
    (0..len).map(|_| rng.gaussian()).collect()
}

/// `len` samples of brown noise: white noise through a leaky integrator (a pole at 0.995, so
/// the power falls as 1/f² above about 13 Hz and is flat below), mean removed.
pub fn brown_noise(len: usize, seed: u64) -> Vec<f64> {
    let mut level = 0.0;
    let mut noise: Vec<f64> = white_noise(len, seed)
        .into_iter()
        .map(|w| {
            level = 0.995 * level + w;
            level
        })
        .collect();
    let mean = noise.iter().sum::<f64>() / len.max(1) as f64;
    noise.iter_mut().for_each(|v| *v -= mean);
    noise
}

/// `speech + g·noise` with g chosen so that Σ speech² / Σ (g·noise)² is exactly `snr_db`
/// (the API's global SNR), both scaled down together if the peak would pass 0.95. The noise
/// must be at least as long as the speech; it is cut to length.
pub fn mix_at_snr(speech: &[f64], noise: &[f64], snr_db: f64) -> Vec<f64> {
    let noise = &noise[..speech.len().min(noise.len())];
    let energy = |x: &[f64]| x.iter().map(|v| v * v).sum::<f64>();
    let (es, en) = (energy(speech), energy(noise));
    let gain = if en > 0.0 {
        (es / (en * 10f64.powf(snr_db / 10.0))).sqrt()
    } else {
        0.0
    };
    let mut mix: Vec<f64> = speech
        .iter()
        .zip(noise.iter().chain(std::iter::repeat(&0.0)))
        .map(|(s, n)| s + gain * n)
        .collect();
    let peak = mix.iter().fold(0.0, |m: f64, v| m.max(v.abs()));
    if peak > MIX_PEAK {
        normalise_peak(&mut mix, MIX_PEAK);
    }
    mix
}

/// A 16-bit PCM mono WAV body of `samples` (full scale ±1, rounded to 32767ths, clipped).
pub fn wav_16bit(samples: &[f64], sample_rate: u32) -> Result<Vec<u8>, hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut body = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut body, spec)?;
    for &v in samples {
        writer.write_sample((v * 32767.0).round().clamp(-32768.0, 32767.0) as i16)?;
    }
    writer.finalize()?;
    Ok(body.into_inner())
}

/// The vowels in shuffled rounds: every vowel once per round, so that any two seconds of
/// "speech" hold much the same mix of vowels, as two seconds of a language do.
#[derive(Default)]
struct VowelBag {
    left: Vec<[f64; 3]>,
}

impl VowelBag {
    fn draw(&mut self, rng: &mut Rng) -> [f64; 3] {
        if self.left.is_empty() {
            self.left = VOWELS.to_vec();
        }
        let i = (rng.next_u64() % self.left.len() as u64) as usize;
        self.left.swap_remove(i)
    }
}

/// Append one syllable: a short fricative onset, then a voiced nucleus whose formants glide
/// from the previous vowel `from` to `to` (coarticulation).
fn syllable(voice: Voice, from: [f64; 3], to: [f64; 3], rng: &mut Rng, out: &mut Vec<f64>) {
    let rate = f64::from(RATE);
    // Onset: noise through one resonator high in the spectrum, like /s/ or /f/.
    let onset = (rng.range(ONSET_S.0, ONSET_S.1) * rate) as usize;
    let mut hiss = Resonator::new(rng.range(3500.0, 5500.0) * voice.formant_scale, 600.0);
    for n in 0..onset {
        let envelope = (PI * n as f64 / onset as f64).sin();
        out.push(ONSET_LEVEL * envelope * hiss.step(rng.gaussian()) / hiss.a.sqrt());
    }
    // Nucleus.
    let len = (rng.range(SYLLABLE_S.0, SYLLABLE_S.1) * rate) as usize;
    let f0_start = voice.f0_hz * rng.range(1.0 - F0_DRIFT, 1.0 + F0_DRIFT);
    let f0_end = voice.f0_hz * rng.range(1.0 - F0_DRIFT, 1.0 + F0_DRIFT);
    // Fixed for the syllable, so the harmonic count never jumps mid-syllable.
    let harmonics = (SOURCE_TOP_HZ / f0_start.max(f0_end)).floor().max(1.0);
    let mut formants: Vec<Resonator> = BANDWIDTHS
        .iter()
        .map(|&bw| Resonator::new(1000.0, bw))
        .collect();
    let mut phase = rng.range(0.0, 2.0 * PI);
    let mut tilt = 0.0;
    for n in 0..len {
        let progress = n as f64 / len as f64;
        let glide = (progress / GLIDE_SHARE).min(1.0);
        for ((r, &f1), &f2) in formants.iter_mut().zip(&from).zip(&to) {
            r.tune((f1 + (f2 - f1) * glide) * voice.formant_scale);
        }
        let f0 = f0_start + (f0_end - f0_start) * progress;
        phase = (phase + 2.0 * PI * f0 / rate) % (2.0 * PI);
        tilt = pulse_train(phase, harmonics) + TILT_POLE * tilt;
        let voiced = formants.iter_mut().fold(tilt, |x, r| r.step(x));
        let envelope = (PI * progress).sin().powi(2);
        out.push(voiced * envelope);
    }
}

/// Σₖ₌₁..K cos(kφ): the band-limited pulse train, by the Dirichlet kernel's closed form
/// (sin((K + ½)φ) / (2 sin(φ/2)) − ½), two sines per sample instead of K cosines.
fn pulse_train(phase: f64, harmonics: f64) -> f64 {
    let half = (phase / 2.0).sin();
    if half.abs() < 1e-9 {
        harmonics // the limit at φ = 0: every cosine is 1
    } else {
        ((harmonics + 0.5) * phase).sin() / (2.0 * half) - 0.5
    }
}

/// Klatt's two-pole resonator with unit gain at DC: y\[n\] = A·x\[n\] + B·y\[n−1\] + C·y\[n−2\].
struct Resonator {
    a: f64,
    b: f64,
    c: f64,
    /// e^(−πB/fs): the pole radius, kept to retune the centre frequency.
    radius: f64,
    y1: f64,
    y2: f64,
}

impl Resonator {
    fn new(freq_hz: f64, bandwidth_hz: f64) -> Resonator {
        let radius = (-PI * bandwidth_hz / f64::from(RATE)).exp();
        let mut r = Resonator {
            a: 0.0,
            b: 0.0,
            c: -radius * radius,
            radius,
            y1: 0.0,
            y2: 0.0,
        };
        r.tune(freq_hz);
        r
    }

    /// Move the centre frequency, keeping the bandwidth and the filter's state.
    fn tune(&mut self, freq_hz: f64) {
        self.b = 2.0 * self.radius * (2.0 * PI * freq_hz / f64::from(RATE)).cos();
        self.a = 1.0 - self.b - self.c;
    }

    fn step(&mut self, x: f64) -> f64 {
        let y = self.a * x + self.b * self.y1 + self.c * self.y2;
        (self.y2, self.y1) = (self.y1, y);
        y
    }
}

fn normalise_peak(x: &mut [f64], target: f64) {
    let peak = x.iter().fold(0.0, |m: f64, v| m.max(v.abs()));
    if peak > 0.0 {
        for v in x {
            *v *= target / peak;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Same seed, same samples; another seed, other samples.
    #[test]
    fn deterministic() {
        assert_eq!(speech(Voice::LOW, 2.0, 7), speech(Voice::LOW, 2.0, 7));
        assert_ne!(speech(Voice::LOW, 2.0, 7), speech(Voice::LOW, 2.0, 8));
    }

    /// Exact length, silent edges, pauses inside, peak at 0.5.
    #[test]
    fn shape() {
        let x = speech(Voice::HIGH, 3.0, 1);
        assert_eq!(x.len(), 48_000);
        assert!(x[..4800].iter().chain(&x[43_200..]).all(|&v| v == 0.0));
        let silent = x.iter().filter(|&&v| v == 0.0).count() as f64 / x.len() as f64;
        assert!(silent > 0.1 && silent < 0.6, "{silent}");
        let peak = x.iter().fold(0.0, |m: f64, v| m.max(v.abs()));
        assert!((peak - 0.5).abs() < 1e-12);
    }

    /// The mix has exactly the SNR asked for.
    #[test]
    fn mix_snr_is_exact() {
        let s = speech(Voice::LOW, 2.0, 3);
        let n = white_noise(s.len(), 4);
        let mix = mix_at_snr(&s, &n, 10.0);
        let noise: Vec<f64> = mix.iter().zip(&s).map(|(m, s)| m - s).collect();
        let energy = |x: &[f64]| x.iter().map(|v| v * v).sum::<f64>();
        let snr = 10.0 * (energy(&s) / energy(&noise)).log10();
        assert!((snr - 10.0).abs() < 1e-9, "{snr}");
    }

    /// A WAV body hound reads back sample for sample.
    #[test]
    fn wav_round_trip() -> Result<(), hound::Error> {
        let body = wav_16bit(&[0.0, 0.5, -1.0, 2.0], 16_000)?;
        let samples: Vec<i16> = hound::WavReader::new(Cursor::new(body))?
            .into_samples()
            .collect::<Result<_, _>>()?;
        assert_eq!(samples, vec![0, 16384, -32767, 32767]);
        Ok(())
    }
}
