//! The audio endpoints: `POST /snr-detect`, `/speaker-count` and `/analyze` over real
//! sockets, driven by the committed fixtures in `tests/fixtures/audio/` and their `labels.json`
//! (made by `scripts/dataset/make_dataset.py`): every decode path and every error status, the
//! answers' accuracy within generous bounds, and the three endpoints agreeing with each other.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{get, leave_and_time_next_job, spawn_binary, Client, Response, ServerProcess};

/// The fixture directory.
fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio")
}

/// The labels of every fixture, by file name.
fn labels() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(fixtures().join("labels.json")).expect("labels.json");
    let all: Value = serde_json::from_str(&text).expect("labels.json is JSON");
    all["clips"].as_object().expect("clips").clone()
}

fn wav(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap_or_else(|err| panic!("{name}: {err}"))
}

/// A raw POST of `body` to `path`.
fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: audio/wav\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

fn server() -> ServerProcess {
    spawn_binary(&["--pool", "2"])
}

fn analyze(client: &mut Client, name: &str) -> Response {
    client.request(post("/analyze", &wav(name)))
}

/// Every fixture, corrupt ones included, gets the status its label expects; a 4xx carries the
/// JSON error body that says what is wrong; and the connection stays usable after each.
#[test]
fn every_fixture_gets_its_expected_status() {
    let server = server();
    let mut client = Client::connect(server.addr());
    for (name, label) in labels() {
        let response = analyze(&mut client, &name);
        let expected = label["expect_status"].as_u64().expect("expect_status") as u16;
        let allowed: Vec<u16> = label["expect_any_of"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(Value::as_u64)
                    .map(|s| s as u16)
                    .collect()
            })
            .unwrap_or_else(|| vec![expected]);
        assert!(
            allowed.contains(&response.status),
            "{name}: got {} ({}), expected {allowed:?}",
            response.status,
            response.text()
        );
        if response.status >= 400 {
            let message = response.assert_json_error(response.status);
            assert!(!message.is_empty(), "{name}: empty error message");
        }
    }
}

/// The decode-error statuses, one by one: empty 400, not a WAV 415, an encoding we do not
/// decode 415, truncated 400, zero samples 422.
#[test]
fn decode_errors_map_to_their_statuses() {
    let server = server();
    let mut client = Client::connect(server.addr());
    for (name, status) in [
        ("bad_empty.wav", 400),
        ("bad_text.wav", 415),
        ("bad_json.wav", 415),
        ("bad_ima_adpcm.wav", 415),
        ("bad_alaw.wav", 415),
        ("bad_trunc_header.wav", 400),
        ("bad_trunc_data.wav", 400),
        ("bad_zero_channels.wav", 400),
        ("bad_zero_samples.wav", 422),
    ] {
        for path in ["/snr-detect", "/speaker-count", "/analyze"] {
            let response = client.request(post(path, &wav(name)));
            response.assert_json_error(status);
        }
    }
}

/// Every supported encoding decodes, and the JSON reports the file as it was: rate, channels,
/// bits and frames from the labels; the SNR of each variant of the same clip is close to the
/// 16-bit original's.
#[test]
fn every_supported_format_decodes() {
    let server = server();
    let mut client = Client::connect(server.addr());
    let labels = labels();
    let original = client.request(post("/snr-detect", &wav("fmt_source_pcm16.wav")));
    assert_eq!(original.status, 200, "{}", original.text());
    let original_snr = original.json()["snr_db"].as_f64().expect("snr_db");
    for name in [
        "fmt_pcm24.wav",
        "fmt_ext16.wav",
        "fmt_ext24.wav",
        "fmt_float32.wav",
        "fmt_u8.wav",
        "fmt_list_chunk.wav",
        "fmt_8k.wav",
        "fmt_44k_stereo.wav",
    ] {
        let label = &labels[name];
        let response = client.request(post("/snr-detect", &wav(name)));
        assert_eq!(response.status, 200, "{name}: {}", response.text());
        let json = response.json();
        for field in ["sample_rate", "channels", "bits"] {
            assert_eq!(json[field], label[field], "{name}: {field}");
        }
        let snr = json["snr_db"].as_f64().expect("snr_db");
        // 8-bit quantisation and resampling change the clip a little; the rest barely.
        let slack = if name == "fmt_u8.wav" || name == "fmt_8k.wav" {
            6.0
        } else {
            1.5
        };
        assert!(
            (snr - original_snr).abs() <= slack,
            "{name}: snr_db {snr} vs the 16-bit original's {original_snr}"
        );
    }
}

/// The SNR clips read close to their exact labels (generous bounds: brown noise is the hardest
/// case, see docs/AUDIO.md for the measured errors), with speech found in each.
#[test]
fn snr_clips_read_close_to_their_labels() {
    let server = server();
    let mut client = Client::connect(server.addr());
    for (name, label) in labels() {
        if label["set"] != "snr_grid" {
            continue;
        }
        let response = client.request(post("/snr-detect", &wav(&name)));
        assert_eq!(response.status, 200, "{name}: {}", response.text());
        let json = response.json();
        let truth = label["snr_db"].as_f64().expect("label snr_db");
        let got = json["snr_db"].as_f64().expect("snr_db");
        let slack = if label["noise"] == "brown" { 4.0 } else { 2.0 };
        assert!(
            (got - truth).abs() <= slack,
            "{name}: snr_db {got}, label {truth}"
        );
        let ratio = json["speech_ratio"].as_f64().expect("speech_ratio");
        let true_ratio = label["speech_ratio"].as_f64().expect("label speech_ratio");
        assert!(
            (ratio - true_ratio).abs() <= 0.2,
            "{name}: speech_ratio {ratio}, label {true_ratio}"
        );
        assert_eq!(json["method"], "noise-floor");
    }
}

/// The speaker clips are counted within one of their label (an estimate: the short single-voice
/// clip is one the method, like the Python reference, counts as two).
#[test]
fn speaker_counts_are_within_one() {
    let server = server();
    let mut client = Client::connect(server.addr());
    for (name, label) in labels() {
        if label["set"] != "speakers" {
            continue;
        }
        let response = client.request(post("/speaker-count", &wav(&name)));
        assert_eq!(response.status, 200, "{name}: {}", response.text());
        let got = response.json()["speakers"].as_i64().expect("speakers");
        let truth = label["speakers"].as_i64().expect("label speakers");
        assert!(
            (got - truth).abs() <= 1,
            "{name}: {got} speakers, label {truth}"
        );
        assert!(response.json()["segments"].as_u64().expect("segments") >= 1);
    }
}

/// Digital silence has no SNR (`null`, never NaN), no speech and no speaker; noise alone has
/// no speech either; a clip too short for the histogram falls back to WADA-SNR.
#[test]
fn silence_noise_and_short_clips() {
    let server = server();
    let mut client = Client::connect(server.addr());
    let silence = analyze(&mut client, "silence_1p5s.wav").json();
    assert_eq!(silence["snr"]["snr_db"], Value::Null, "{silence}");
    assert_eq!(silence["snr"]["speech_ratio"], 0.0);
    assert_eq!(silence["speaker_count"]["speakers"], 0);

    let noise = analyze(&mut client, "noise_only_white.wav").json();
    assert_eq!(noise["snr"]["speech_ratio"], 0.0, "{noise}");
    assert_eq!(noise["speaker_count"]["speakers"], 0);

    let short = client.request(post("/snr-detect", &wav("fmt_short_0p3s.wav")));
    assert_eq!(short.status, 200, "{}", short.text());
    let short = short.json();
    assert_eq!(short["method"], "wada", "{short}");
    assert!(short["snr_db"].is_number());
    assert_eq!(short["speech_ratio"], Value::Null);
}

/// `/analyze` is `/snr-detect` and `/speaker-count` side by side: the same numbers, computed by
/// two jobs; and `mode=inline` (the same work on the reactor) gives the same answer again.
#[test]
fn analyze_is_both_endpoints_and_inline_agrees() {
    let server = server();
    let mut client = Client::connect(server.addr());
    let body = wav("spk_k2_r0_clean.wav");
    let both = client.request(post("/analyze", &body)).json();
    let snr = client.request(post("/snr-detect", &body)).json();
    let speakers = client.request(post("/speaker-count", &body)).json();
    assert_eq!(both["snr"], snr);
    assert_eq!(both["speaker_count"], speakers);
    let inline = client.request(post("/analyze?mode=inline", &body)).json();
    assert_eq!(inline, both);
    for key in [
        "snr_db",
        "snr_active_db",
        "speech_ratio",
        "duration_s",
        "sample_rate",
        "channels",
        "bits",
        "frames",
    ] {
        assert!(snr.get(key).is_some(), "snr-detect lacks {key}: {snr}");
    }
    assert!(speakers.get("speakers").is_some() && speakers.get("duration_s").is_some());
}

/// The VAD parameters are validated, each error naming its parameter; in-range values change
/// what is reported.
#[test]
fn vad_parameters_are_validated() {
    let server = server();
    let mut client = Client::connect(server.addr());
    let body = wav("fmt_source_pcm16.wav");
    for (query, parameter) in [
        ("vad_hop_size=79", "vad_hop_size"),
        ("vad_hop_size=1025", "vad_hop_size"),
        ("vad_hop_size=abc", "vad_hop_size"),
        ("vad_threshold=1.5", "vad_threshold"),
        ("vad_threshold=-0.1", "vad_threshold"),
        ("vad_threshold=x", "vad_threshold"),
        ("mode=fast", "mode"),
    ] {
        let response = client.request(post(&format!("/snr-detect?{query}"), &body));
        let message = response.assert_json_error(400);
        assert!(message.contains(parameter), "{query}: {message}");
    }
    let custom = client
        .request(post(
            "/snr-detect?vad_hop_size=512&vad_threshold=0.8",
            &body,
        ))
        .json();
    assert_eq!(custom["vad_hop_size"], 512);
    assert_eq!(custom["vad_threshold"], 0.8);
}

/// Audio longer than `--max-audio-seconds` is refused with 413 (and the connection stays
/// usable); the wrong method is 405 with `Allow: POST`.
#[test]
fn too_long_and_wrong_method() {
    let server = spawn_binary(&["--pool", "1", "--max-audio-seconds", "1"]);
    let mut client = Client::connect(server.addr());
    let response = client.request(post("/snr-detect", &wav("clean_1_normal.wav")));
    response.assert_json_error(413);
    let response = client.request(get("/analyze"));
    response.assert_json_error(405);
    assert_eq!(response.header("allow"), Some("POST"));
    let short = client.request(post("/snr-detect", &wav("fmt_short_0p3s.wav")));
    assert_eq!(short.status, 200);
}

/// An 8-bit mono PCM WAV of `frames` samples whose header says `rate` Hz: the fewest bytes a
/// client can send per second of audio.
fn wav_8bit_mono(rate: u32, frames: u32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(b"RIFF");
    body.extend_from_slice(&(36 + frames + (frames & 1)).to_le_bytes());
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
    if frames & 1 == 1 {
        body.push(0); // RIFF pad byte
    }
    body
}

/// The work a request causes is bounded by its body: a 29 KB file that claims 4 Hz (two hours
/// of audio, which would be 115 million samples and a gigabyte once resampled to 16 kHz) is
/// refused at once with 415 and a message naming the rate floor, on every audio endpoint and
/// even with `--max-audio-seconds 7200`; the connection stays usable, and 8 kHz, the floor,
/// is analysed.
#[test]
fn low_sample_rates_are_refused_at_once() {
    let server = spawn_binary(&["--pool", "1", "--max-audio-seconds", "7200"]);
    let mut client = Client::connect(server.addr());
    let tiny = wav_8bit_mono(4, 4 * 7200);
    assert!(tiny.len() < 30_000);
    for path in [
        "/snr-detect",
        "/speaker-count",
        "/analyze",
        "/analyze?mode=inline",
    ] {
        let started = Instant::now();
        let response = client.request(post(path, &tiny));
        let took = started.elapsed();
        let message = response.assert_json_error(415);
        assert!(
            message.contains("4 Hz") && message.contains("8000 Hz"),
            "{path}: {message}"
        );
        assert!(
            took < Duration::from_secs(2),
            "{path}: refused after {took:?}"
        );
    }
    for rate in [1_000, 7_999] {
        let response = client.request(post("/snr-detect", &wav_8bit_mono(rate, rate)));
        response.assert_json_error(415);
    }
    let floor = client.request(post("/snr-detect", &wav_8bit_mono(8_000, 8_000)));
    assert_eq!(floor.status, 200, "{}", floor.text());
    assert_eq!(floor.json()["sample_rate"], 8_000);
}

/// A client that leaves while its upload decodes frees the only worker within half a second:
/// the decode polls its job's cancel flag, as the analyses do. The upload is the costliest a
/// 16 MiB body allows per byte (8-bit mono at 44.1 kHz, 360 s, resampled): decoding it takes
/// about 0.35 s of CPU in a release build and seconds in a debug one. The client leaves as soon
/// as `/metrics` shows the worker busy, so the decode is still running in either build. The
/// cancellation is counted.
#[test]
fn a_client_that_leaves_mid_decode_frees_the_worker() {
    let mut server = spawn_binary(&["--pool", "1"]);
    let body = wav_8bit_mono(44_100, 44_100 * 360);
    let mut uploader = Client::connect(server.addr());
    uploader.send(post("/snr-detect", &body));
    let mut scraper = Client::connect(server.addr());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !scraper
        .request(get("/metrics"))
        .text()
        .lines()
        .any(|line| line == "evloop_pool_busy_workers 1")
    {
        assert!(Instant::now() < deadline, "the decode never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = leave_and_time_next_job(server.addr(), uploader);
    assert!(
        took < Duration::from_millis(500),
        "the worker was busy {took:?} after its client left"
    );
    server.assert_cancelled_at_exit(1);
}

/// Every answer of the audio endpoints is about one upload and says `Cache-Control: no-store`
/// exactly once: a result from one job, from a gather's last job (`/analyze`), from the reactor
/// (`mode=inline`), a decode error from a worker, and a bad query refused on the reactor.
#[test]
fn audio_answers_are_not_stored() {
    let server = server();
    let mut client = Client::connect(server.addr());
    let good = wav("fmt_short_0p3s.wav");
    for (path, body, status) in [
        ("/snr-detect", &good, 200),
        ("/speaker-count", &good, 200),
        ("/analyze", &good, 200),
        ("/analyze?mode=inline", &good, 200),
        ("/snr-detect", &wav("bad_text.wav"), 415),
        ("/analyze", &wav("bad_trunc_data.wav"), 400),
        (
            "/speaker-count?mode=inline",
            &wav("bad_zero_samples.wav"),
            422,
        ),
        ("/analyze?vad_hop_size=1", &good, 400),
    ] {
        let response = client.request(post(path, body));
        assert_eq!(response.status, status, "{path}: {}", response.text());
        assert_eq!(response.header_count("cache-control"), 1, "{path}");
        assert_eq!(response.header("cache-control"), Some("no-store"), "{path}");
    }
}

/// The server's `/analyze` body is, byte for byte, `audio::analysis_json` of what the library
/// computes for the same upload, whichever way the library runs it: in one pass, as two parts
/// and a finish, or window by window. So an endpoint may use any of them, and a stream's final
/// event can reuse the JSON exactly.
#[test]
fn analyze_answers_the_library_json_byte_for_byte() {
    use evloop::audio::{analysis_json, Analyzer, VadParams};
    let server = server();
    let analyzer = Analyzer::new();
    let never = || false;
    for (name, query, params) in [
        ("spk_k3_r0_clean.wav", "", VadParams::default()),
        (
            "snr_v2_pink_05db.wav",
            "?vad_hop_size=160&vad_threshold=0.8",
            VadParams {
                hop: 160,
                threshold: 0.8,
            },
        ),
        ("fmt_44k_stereo.wav", "", VadParams::default()),
    ] {
        let body = wav(name);
        // A connection of its own for each request: the library's three runs between two
        // requests take seconds in a debug build, more than --keep-alive-timeout (5 s) on a
        // loaded machine, and the server rightly closes a connection idle that long.
        let response =
            Client::connect(server.addr()).request(post(&format!("/analyze{query}"), &body));
        assert_eq!(response.status, 200, "{name}");
        let clip = analyzer
            .decode(&body, 600.0, &|| false)
            .expect("fixture decodes");
        let json = |(snr, speakers)| analysis_json(&snr, &speakers, &clip.info, params).to_string();
        let one_pass = analyzer.analyze(&clip, params, &never).map(json);
        let parts = (0..2)
            .map(|i| analyzer.analyze_part(&clip, i, 2, params, &never))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|parts| analyzer.finish(parts, &never))
            .map(json);
        let progressive = analyzer
            .analyze_progressive(&clip, params, &never, &mut |_| {})
            .map(json);
        let served = String::from_utf8(response.body).expect("UTF-8 body");
        for (how, library) in [
            ("one pass", one_pass),
            ("parts", parts),
            ("progressive", progressive),
        ] {
            assert_eq!(library.as_deref(), Ok(served.as_str()), "{name}, {how}");
        }
    }
}
