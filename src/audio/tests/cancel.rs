//! Cancellation: a check that turns true stops every analysis, and the decode, with
//! `AudioError::Cancelled`; a check that stays false changes nothing; and the check is polled
//! inside the long loops, not only between stages.

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::*;

/// A `cancelled` check that counts its polls and turns true after `n` of them.
struct CancelAfter {
    polls: Cell<usize>,
    n: usize,
}

impl CancelAfter {
    fn new(n: usize) -> CancelAfter {
        CancelAfter {
            polls: Cell::new(0),
            n,
        }
    }

    fn check(&self) -> bool {
        self.polls.set(self.polls.get() + 1);
        self.polls.get() > self.n
    }
}

/// 10 s of two voices taking turns, in noise at 20 dB.
fn conversation(a: &Analyzer) -> Clip {
    let turns = synth::conversation(&[Voice::LOW, Voice::HIGH], 4, 2.5, 61);
    let noise = synth::white_noise(turns.len(), 62);
    clip(a, &synth::mix_at_snr(&turns, &noise, 20.0))
}

/// Every entry point, with a check that is true from the start, answers `Cancelled`.
#[test]
fn a_true_check_stops_every_analysis() {
    let a = analyzer();
    let c = conversation(&a);
    let p = VadParams::default();
    let yes = || true;
    let cancelled = |result: Result<_, AudioError>| matches!(result, Err(AudioError::Cancelled));
    assert!(cancelled(a.snr(&c, p, &yes).map(drop)));
    assert!(cancelled(a.speakers(&c, p, &yes).map(drop)));
    assert!(cancelled(a.analyze(&c, p, &yes).map(drop)));
    assert!(cancelled(a.analyze_part(&c, 1, 2, p, &yes).map(drop)));
    let mut events = 0;
    let progressive = a.analyze_progressive(&c, p, &yes, &mut |_| events += 1);
    assert!(cancelled(progressive.map(drop)));
    assert_eq!(events, 0);
    let parts = [0, 1].map(|i| a.analyze_part(&c, i, 2, p, &never));
    let parts = Vec::from(parts.map(|part| part.unwrap_or_else(|e| panic!("{e}"))));
    assert!(cancelled(a.finish(parts, &yes).map(drop)));
}

/// The check is polled all along the work, not only between stages: dozens of times for
/// 10 s of audio (about 5 ms of work in a release build, one poll per 0.05 ms). A check that
/// is polled and stays false gives the same result as none; one that turns true after `n`
/// polls is polled exactly `n + 1` times, whatever `n`: the analysis stops at the first true.
#[test]
fn polled_inside_the_loops() {
    let a = analyzer();
    let c = conversation(&a);
    let p = VadParams::default();
    let counting = CancelAfter::new(usize::MAX);
    let polled = a.analyze(&c, p, &|| counting.check());
    assert_eq!(polled, a.analyze(&c, p, &never));
    let polls = counting.polls.get();
    assert!(polls >= 30, "{polls} polls");
    for n in [0, 1, 2, 5, polls / 3, polls / 2, polls - 1] {
        let check = CancelAfter::new(n);
        assert_eq!(
            a.analyze(&c, p, &|| check.check()),
            Err(AudioError::Cancelled)
        );
        assert_eq!(check.polls.get(), n + 1, "cancelled after {n} polls");
    }
}

/// An 8-bit mono PCM WAV body of `seconds` at 44.1 kHz: about the costliest upload to decode
/// per byte (every byte a sample, then a 160/441 resampler), 15.9 MB for 360 s. Written byte by
/// byte: a debug build takes seconds to make it through a WAV writer.
fn costly_upload(seconds: u32) -> Vec<u8> {
    let rate: u32 = 44_100;
    let frames = rate * seconds;
    let mut body = Vec::with_capacity(44 + frames as usize);
    body.extend_from_slice(b"RIFF");
    body.extend_from_slice(&(36 + frames).to_le_bytes());
    body.extend_from_slice(b"WAVEfmt ");
    body.extend_from_slice(&16u32.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes()); // PCM
    body.extend_from_slice(&1u16.to_le_bytes()); // mono
    body.extend_from_slice(&rate.to_le_bytes());
    body.extend_from_slice(&rate.to_le_bytes()); // byte rate: one byte a frame
    body.extend_from_slice(&1u16.to_le_bytes()); // block align
    body.extend_from_slice(&8u16.to_le_bytes()); // bits
    body.extend_from_slice(b"data");
    body.extend_from_slice(&frames.to_le_bytes());
    body.extend((0..frames).map(|n| 128u8.wrapping_add((n % 7) as u8 * 9)));
    body
}

/// A check that is true from the start stops the decode of a 15.9 MB upload at its first poll,
/// within a millisecond of work; undisturbed, that decode takes about 0.35 s in a release build
/// and seconds in a debug one. The bound leaves wide slack for debug builds and busy machines.
#[test]
fn a_true_check_stops_the_decode_at_once() {
    let a = analyzer();
    let body = costly_upload(360);
    let start = Instant::now();
    assert_eq!(
        a.decode(&body, 600.0, &|| true).map(drop),
        Err(AudioError::Cancelled)
    );
    let took = start.elapsed();
    assert!(took < Duration::from_millis(200), "stopped after {took:?}");
}

/// A check that turns true 50 ms into the decode of the same upload stops it within a few
/// milliseconds (each poll follows about 0.05 ms of work in a release build, more in a debug
/// one); the bound is again generous.
#[test]
fn a_late_check_stops_the_decode_promptly() {
    let a = analyzer();
    let body = costly_upload(360);
    let flip = Duration::from_millis(50);
    let start = Instant::now();
    let late = || start.elapsed() >= flip;
    assert_eq!(
        a.decode(&body, 600.0, &late).map(drop),
        Err(AudioError::Cancelled)
    );
    let overrun = start.elapsed() - flip;
    assert!(
        overrun < Duration::from_millis(200),
        "stopped {overrun:?} late"
    );
}

/// The decode polls all along its passes: the RIFF walk, the conversion and the channel mix,
/// the DC, silence and WADA passes, the resampling filter's design (a fresh analyzer has none
/// cached) and the resampler. A check that is polled and stays false gives the same clip, bit
/// for bit, as one never polled; a check that turns true after `n` polls is polled exactly
/// `n + 1` times, wherever the `n`-th poll falls.
#[test]
fn the_decode_is_polled_inside_its_passes() -> Result<(), Box<dyn std::error::Error>> {
    let x = noisy_speech(Voice::HIGH, 6.0, 10.0, 71);
    let stereo: Vec<f64> = resampled(441, 160, &x)
        .iter()
        .flat_map(|&v| [v, -v * 0.5])
        .collect();
    let body = wav_body(&stereo, 44_100, 2)?;
    let want = analyzer().decode(&body, 600.0, &never)?;
    let counting = CancelAfter::new(usize::MAX);
    let got = analyzer().decode(&body, 600.0, &|| counting.check())?;
    let bits = |c: &Clip| c.samples.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got), bits(&want));
    assert_eq!(
        got.wada_snr_db.map(f64::to_bits),
        want.wada_snr_db.map(f64::to_bits)
    );
    assert_eq!((got.silent, got.info), (want.silent, want.info));
    let polls = counting.polls.get();
    assert!(polls >= 30, "{polls} polls");
    for n in [0, 1, polls / 4, polls / 2, 3 * polls / 4, polls - 1] {
        let check = CancelAfter::new(n);
        assert_eq!(
            analyzer().decode(&body, 600.0, &|| check.check()).map(drop),
            Err(AudioError::Cancelled)
        );
        assert_eq!(check.polls.get(), n + 1, "cancelled after {n} polls");
    }
    Ok(())
}

/// The server answers a cancelled analysis with 503; nobody is there to read it.
#[test]
fn cancelled_is_a_503() {
    assert_eq!(
        crate::error::Error::from(AudioError::Cancelled).status(),
        503
    );
}
