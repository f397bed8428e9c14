//! WADA-SNR: a blind SNR estimate from the amplitude distribution of the waveform.
//!
//! Kim & Stern, "Robust signal-to-noise ratio estimation based on waveform amplitude
//! distribution analysis", Interspeech 2008, pp. 2598–2601. Clean speech amplitude is modelled
//! as Gamma distributed with shape α = 0.4, the noise as independent Gaussian. The statistic
//! G = ln E|z| − E[ln |z|] of the noisy signal z is scale-free and depends only on the SNR, so
//! one number per clip, read through the curve G(SNR), gives the **global** SNR.
//!
//! Here it is the estimator for clips too short for the noise-floor histogram, and a
//! cross-check otherwise: on formant-synthesised speech it reads high above 15 dB, because such
//! speech is sparser than Gamma(0.4).
//!
//! An exact-zero sample stands for a value uniform in ±LSB/2, whose mean log magnitude is
//! ln(LSB/2) − 1; so |x| is floored at LSB/(2e) rather than at a tiny epsilon, which would let
//! the zeros of a quiet 16-bit recording drag E[ln |z|] down by several dB of SNR.

use super::checkpoint::{Checkpoint, BLOCK, LN_NS, READ_NS};
use super::AudioError;

/// SNR of the first table entry, dB; entries follow in 1 dB steps.
const TABLE_START_DB: f64 = -20.0;

/// G(SNR) for α = 0.4 at SNR = −20, −19, …, 100 dB (121 values, rising).
///
/// Produced once, offline, by the Python reference estimator's `wada_table()`:
/// deterministic Gauss–Legendre quadrature (3000 nodes, in t = x^α) of
/// G = ln E|z| − E ln|z| with z = x + n, |x| ~ Gamma(0.4, 1) with a random sign,
/// n ~ N(0, σ²), σ² = α(α + 1)/10^(SNR/10); E|z| from the folded-normal mean, E ln|z| from the
/// Poisson mixture of non-central χ² terms. It agrees with Chanwoo Kim's published Monte-Carlo
/// table (`Alpha0.400000.txt`) to 0.003 and, unlike it, is monotone.
const WADA_TABLE: [f64; 121] = [
    0.4094347000959302,
    0.4094594951106909,
    0.40949761591389233,
    0.40955584620766405,
    0.4096441247734054,
    0.4097767964193815,
    0.4099742173211445,
    0.4102647321429891,
    0.41068699188224156,
    0.41129251053599886,
    0.41214826934705756,
    0.41333908045319884,
    0.4149693352433158,
    0.4171637094879202,
    0.4200664005680233,
    0.42383854937163584,
    0.4286536563576897,
    0.4346910273976635,
    0.4421275524045565,
    0.45112838616713824,
    0.46183731682355245,
    0.47436772701886115,
    0.4887950448548795,
    0.5051514392405645,
    0.5234232580505338,
    0.5435513826337149,
    0.5654343372148208,
    0.5889337041391219,
    0.6138811986903187,
    0.6400866703431393,
    0.6673463166356297,
    0.6954504983884151,
    0.7241906979498725,
    0.7533653320455653,
    0.7827842903688911,
    0.8122722025287124,
    0.8416705313084429,
    0.8708386492713139,
    0.899654083406067,
    0.9280121160828418,
    0.9558249179366419,
    0.9830203659710093,
    1.0095406739066801,
    1.0353409350477691,
    1.0603876532536365,
    1.084657316224781,
    1.1081350475022989,
    1.1308133597568761,
    1.1526910210264893,
    1.1737720379224736,
    1.1940647542531522,
    1.2135810597045713,
    1.2323357012408143,
    1.2503456882850128,
    1.2676297826364804,
    1.284208063804559,
    1.3001015608125,
    1.3153319425680947,
    1.3299212587091065,
    1.3438917244149988,
    1.3572655430683578,
    1.3700647609603953,
    1.3823111499028289,
    1.394026112965046,
    1.4052306102347756,
    1.4159451011548145,
    1.4261895010132362,
    1.435983149140183,
    1.4453447868576386,
    1.454292543649329,
    1.46284392998089,
    1.4710158356590073,
    1.478824532623321,
    1.4862856814568395,
    1.4934143407589509,
    1.5002249787763096,
    1.5067314869052915,
    1.5129471944988007,
    1.5188848847049576,
    1.5245568109518612,
    1.5299747140333633,
    1.5351498392934737,
    1.5400929539843753,
    1.5448143646511647,
    1.549323934206077,
    1.5536310989473305,
    1.557744885103253,
    1.5616739251481149,
    1.565426473605988,
    1.569010422547573,
    1.5724333164834943,
    1.575702366900782,
    1.5788244662661604,
    1.5818062015642496,
    1.5846538673055433,
    1.5873734781519233,
    1.5899707809410133,
    1.5924512663326187,
    1.5948201800021198,
    1.5970825332710414,
    1.5992431134686478,
    1.6013064937538342,
    1.6032770425387375,
    1.6051589325918654,
    1.6069561496518543,
    1.6086725007557428,
    1.6103116221732021,
    1.6118769870062373,
    1.613371912466235,
    1.6147995668021489,
    1.6161629759959852,
    1.6174650300716262,
    1.6187084892234411,
    1.6198959895855078,
    1.6210300488110767,
    1.622113071375444,
    1.6231473536496717,
    1.6241350887489476,
    1.6250783711652759,
    1.6259792011991534,
    1.6268394891677058,
];

/// WADA-SNR in dB (−20 … 100) of a mono, DC-free signal with quantisation step `lsb` (0 for
/// float input). `None` for digital silence, where the SNR is undefined.
///
/// Both passes tick the checkpoint once per [`BLOCK`] of samples. The sums carry over from one
/// block to the next, so they still run in sample order: the same bits as one loop.
pub(crate) fn wada_snr_db(
    x: &[f64],
    lsb: f64,
    checkpoint: &mut Checkpoint<'_>,
) -> Result<Option<f64>, AudioError> {
    let mut peak: f64 = 0.0;
    for block in x.chunks(BLOCK) {
        peak = block.iter().fold(peak, |m, v| m.max(v.abs()));
        checkpoint.tick(block.len() as u64 * READ_NS)?;
    }
    if peak == 0.0 {
        return Ok(None);
    }
    let floor = if lsb > 0.0 {
        lsb / (2.0 * std::f64::consts::E)
    } else {
        1e-10 * peak
    };
    let (mut sum, mut sum_ln) = (0.0, 0.0);
    for block in x.chunks(BLOCK) {
        for v in block {
            let a = v.abs().max(floor);
            sum += a;
            sum_ln += a.ln();
        }
        checkpoint.tick(block.len() as u64 * LN_NS)?;
    }
    let n = x.len() as f64;
    Ok(Some(snr_from_g((sum / n).ln() - sum_ln / n)))
}

/// Read G through the table by linear interpolation, clamped at both ends.
fn snr_from_g(g: f64) -> f64 {
    let last = WADA_TABLE.len() - 1;
    if g <= WADA_TABLE[0] {
        return TABLE_START_DB;
    }
    if g >= WADA_TABLE[last] {
        return TABLE_START_DB + last as f64;
    }
    // The first entry above g; g lies between it and the one before.
    let i = WADA_TABLE.partition_point(|&t| t <= g);
    let (g0, g1) = (WADA_TABLE[i - 1], WADA_TABLE[i]);
    let db0 = TABLE_START_DB + (i - 1) as f64;
    // numpy.interp's arithmetic: slope × offset + left value.
    (1.0 / (g1 - g0)) * (g - g0) + db0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table rises strictly, so the interpolation is a function.
    #[test]
    fn table_is_monotone() {
        assert!(WADA_TABLE.windows(2).all(|w| w[0] < w[1]));
    }

    /// Table points read back as their own SNR; the ends clamp.
    #[test]
    fn interpolation() {
        assert_eq!(snr_from_g(WADA_TABLE[30]), 10.0);
        assert!((snr_from_g((WADA_TABLE[30] + WADA_TABLE[31]) / 2.0) - 10.5).abs() < 1e-12);
        assert_eq!(snr_from_g(0.0), -20.0);
        assert_eq!(snr_from_g(5.0), 100.0);
    }

    /// Silence has no SNR; Gaussian noise alone reads at the bottom of the table.
    #[test]
    fn silence_and_noise() {
        let never = || false;
        let wada = |x: &[f64], lsb| wada_snr_db(x, lsb, &mut Checkpoint::new(&never));
        assert_eq!(wada(&[0.0; 100], 1.0 / 32768.0), Ok(None));
        let noise = crate::audio::synth::white_noise(16_000, 3);
        let snr = wada(&noise, 0.0).ok().flatten().unwrap_or(f64::NAN);
        assert!(snr < -10.0, "{snr}");
    }
}
