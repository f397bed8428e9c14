//! The progressive analysis: one event per second of audio, estimates that are the analysis
//! of the audio so far where the module says they are, and a stop at the first true check.

use std::cell::Cell;

use super::*;

/// Every event of one progressive analysis, and its result.
fn run(
    a: &Analyzer,
    c: &Clip,
    params: VadParams,
) -> (
    Vec<Progress>,
    Result<(SnrReport, SpeakerReport), AudioError>,
) {
    let mut events = Vec::new();
    let result = a.analyze_progressive(c, params, &never, &mut |p| events.push(p));
    (events, result)
}

/// The clip made of the first `len` samples of `c`, as the analyses would see it had the
/// file ended there.
fn prefix(c: &Clip, len: usize) -> Clip {
    let samples = c.samples[..len].to_vec();
    Clip {
        silent: samples.iter().all(|&v| v == 0.0),
        samples,
        wada_snr_db: c.wada_snr_db,
        info: ClipInfo {
            frames: len as u64,
            duration_s: len as f64 / 16_000.0,
            ..c.info
        },
    }
}

/// 8.5 s of audio: nine events, one per second (the last one shorter); `processed_s`
/// increases and ends at `duration_s` exactly; the result is `analyze`'s.
#[test]
fn one_event_per_second() {
    let a = analyzer();
    let c = clip(&a, &noisy_speech(Voice::LOW, 8.5, 10.0, 71));
    let (events, result) = run(&a, &c, VadParams::default());
    assert_eq!(events.len(), 9);
    assert!(events
        .windows(2)
        .all(|w| w[0].processed_s < w[1].processed_s));
    assert!(events.iter().all(|e| e.duration_s == c.info.duration_s));
    assert_eq!(events[0].processed_s, 1.0);
    assert_eq!(events[8].processed_s, c.info.duration_s);
    assert_eq!(result, a.analyze(&c, VadParams::default(), &never));
}

/// At a refresh (after 1, 2, 3, 5 and 8 s, at hop 256 and at hop 80) the estimates are exactly
/// what `/snr-detect` says of the audio so far; between refreshes they are estimates, here
/// within 0.5 dB and 0.05 of it; and the last event carries the final values. In white and in
/// brown noise.
#[test]
fn estimates_are_the_audio_so_far() {
    let a = analyzer();
    let speech = synth::speech(Voice::HIGH, 9.5, 72);
    for noise in [
        synth::white_noise(speech.len(), 172),
        synth::brown_noise(speech.len(), 173),
    ] {
        let c = clip(&a, &synth::mix_at_snr(&speech, &noise, 10.0));
        for hop in [256, 80] {
            estimates_at_hop(
                &a,
                &c,
                VadParams {
                    hop,
                    threshold: 0.5,
                },
            );
        }
    }
}

/// At hop 80 the SNR so far is read from frames of hop 256, at a refresh and between refreshes
/// alike: every estimate is the one at hop 256, to the last bit (in brown noise, the hop-80
/// frames' own noise floor reads differently).
#[test]
fn small_hop_estimates_read_the_snr_at_hop_256() {
    let a = analyzer();
    let speech = synth::speech(Voice::LOW, 9.5, 74);
    let c = clip(
        &a,
        &synth::mix_at_snr(&speech, &synth::brown_noise(speech.len(), 174), 5.0),
    );
    let snr_so_far = |hop| {
        let (events, _) = run(
            &a,
            &c,
            VadParams {
                hop,
                threshold: 0.5,
            },
        );
        events.iter().map(|e| e.snr_db_so_far).collect::<Vec<_>>()
    };
    let at_256 = snr_so_far(256);
    assert_eq!(at_256.len(), 10);
    assert!(at_256.iter().all(Option::is_some), "{at_256:?}");
    assert_eq!(snr_so_far(80), at_256);
}

fn estimates_at_hop(a: &Analyzer, c: &Clip, params: VadParams) {
    let (events, result) = run(a, c, params);
    let Ok((snr, _)) = result else {
        panic!("{result:?}")
    };
    for (w, event) in events.iter().enumerate().take(events.len() - 1) {
        let so_far = match a.snr(&prefix(c, (w + 1) * 16_000), params, &never) {
            Ok(report) => report,
            Err(e) => panic!("{e}"),
        };
        let got = (event.snr_db_so_far, event.speech_ratio_so_far);
        let want = (so_far.snr_db, so_far.speech_ratio);
        if [1, 2, 3, 5, 8].contains(&(w + 1)) {
            assert_eq!(got, want, "{params:?} after {} s", w + 1);
        } else {
            let (Some(snr_db), Some(ratio)) = got else {
                panic!("{got:?}")
            };
            let (Some(want_snr), Some(want_ratio)) = want else {
                panic!("{want:?}")
            };
            assert!(
                (snr_db - want_snr).abs() < 0.5,
                "{params:?} after {} s: {got:?} {want:?}",
                w + 1
            );
            assert!(
                (ratio - want_ratio).abs() < 0.05,
                "{params:?} after {} s: {got:?} {want:?}",
                w + 1
            );
        }
    }
    let last = events[events.len() - 1];
    assert_eq!(
        (last.snr_db_so_far, last.speech_ratio_so_far),
        (snr.snr_db, snr.speech_ratio)
    );
}

/// Until the audio so far holds 20 STFT frames (1.3 s at hop 1024) there is no estimate.
#[test]
fn no_estimate_before_twenty_frames() {
    let a = analyzer();
    let c = clip(&a, &noisy_speech(Voice::LOW, 3.5, 10.0, 73));
    let params = VadParams {
        hop: 1024,
        threshold: 0.5,
    };
    let (events, _) = run(&a, &c, params);
    assert_eq!(events.len(), 4);
    assert_eq!(
        (events[0].snr_db_so_far, events[0].speech_ratio_so_far),
        (None, None)
    );
    assert!(events[1..].iter().all(|e| e.snr_db_so_far.is_some()));
}

/// Digital silence says so from the first event; a clip under a second has one event, the
/// final one.
#[test]
fn silence_and_short_clips() {
    let a = analyzer();
    let (events, _) = run(&a, &clip(&a, &[0.0; 40_000]), VadParams::default());
    assert_eq!(events.len(), 3);
    assert!(events
        .iter()
        .all(|e| (e.snr_db_so_far, e.speech_ratio_so_far) == (None, Some(0.0))));
    let short = clip(&a, &noisy_speech(Voice::LOW, 0.8, 10.0, 74));
    let (events, result) = run(&a, &short, VadParams::default());
    let Ok((snr, _)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].processed_s, short.info.duration_s);
    assert_eq!(events[0].snr_db_so_far, snr.snr_db);
}

/// A check that turns true once `k` events have been reported stops the analysis there: no
/// further event, and `Cancelled`.
#[test]
fn cancelled_after_k_windows() {
    let a = analyzer();
    let c = clip(&a, &noisy_speech(Voice::LOW, 6.0, 10.0, 75));
    for k in [1, 3, 5] {
        let reported = Cell::new(0);
        let result = a.analyze_progressive(
            &c,
            VadParams::default(),
            &|| reported.get() >= k,
            &mut |_| reported.set(reported.get() + 1),
        );
        assert_eq!(result, Err(AudioError::Cancelled));
        assert_eq!(reported.get(), k);
    }
}

/// The JSON of an event is rounded as the reports are.
#[test]
fn progress_as_json() {
    let event = Progress {
        processed_s: 2.0,
        duration_s: 9.98765,
        snr_db_so_far: Some(10.123_456),
        speech_ratio_so_far: None,
    };
    assert_eq!(
        progress_json(&event).to_string(),
        r#"{"processed_s":2.0,"duration_s":9.9877,"snr_db_so_far":10.123,"speech_ratio_so_far":null}"#
    );
}
