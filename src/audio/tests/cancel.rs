//! Cancellation: a check that turns true stops every analysis with `AudioError::Cancelled`,
//! a check that stays false changes nothing, and the check is polled inside the long loops,
//! not only between stages.

use std::cell::Cell;

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

/// The server answers a cancelled analysis with 503; nobody is there to read it.
#[test]
fn cancelled_is_a_503() {
    assert_eq!(
        crate::error::Error::from(AudioError::Cancelled).status(),
        503
    );
}
