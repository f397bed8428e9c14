//! Decoding, one test per encoding path and per way a body can be wrong. Bodies are built byte
//! by byte here, so each test controls exactly what the file says.

use super::*;

/// What the `fmt ` chunk of a test file says.
#[derive(Clone, Copy)]
struct Spec {
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    /// Write a 40-byte `WAVE_FORMAT_EXTENSIBLE` chunk carrying `tag` in its GUID.
    extensible: bool,
}

const PCM16: Spec = Spec {
    tag: 1,
    channels: 1,
    rate: 16_000,
    bits: 16,
    extensible: false,
};

/// Interleaved samples in [−1, 1] as the data bytes of `spec`.
fn encode(samples: &[f64], spec: Spec) -> Vec<u8> {
    let mut out = Vec::new();
    for &v in samples {
        match (spec.tag, spec.bits) {
            (3, 32) => out.extend_from_slice(&(v as f32).to_le_bytes()),
            (_, 8) => out.push(((v * 127.0).round() + 128.0) as u8),
            (_, 16) => out.extend_from_slice(&((v * 32767.0).round() as i16).to_le_bytes()),
            (_, 24) => {
                out.extend_from_slice(&((v * 8_388_607.0).round() as i32).to_le_bytes()[..3])
            }
            (_, 32) => out.extend_from_slice(&((v * 2_147_483_647.0).round() as i32).to_le_bytes()),
            _ => panic!("test encoder: no {} bits", spec.bits),
        }
    }
    out
}

/// A WAV body: `fmt ` for `spec`, then `extra` chunks, then `data`.
fn wav(spec: Spec, data: &[u8], extra: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
    let block = spec.channels * spec.bits / 8;
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&(if spec.extensible { 0xFFFE } else { spec.tag }).to_le_bytes());
    fmt.extend_from_slice(&spec.channels.to_le_bytes());
    fmt.extend_from_slice(&spec.rate.to_le_bytes());
    fmt.extend_from_slice(&(spec.rate * u32::from(block)).to_le_bytes());
    fmt.extend_from_slice(&block.to_le_bytes());
    fmt.extend_from_slice(&spec.bits.to_le_bytes());
    if spec.extensible {
        fmt.extend_from_slice(&22u16.to_le_bytes()); // cbSize
        fmt.extend_from_slice(&spec.bits.to_le_bytes()); // valid bits
        fmt.extend_from_slice(&0u32.to_le_bytes()); // channel mask
        fmt.extend_from_slice(&spec.tag.to_le_bytes()); // GUID: tag, then the fixed tail
        fmt.extend_from_slice(&[
            0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
        ]);
    }
    let mut chunks = Vec::new();
    let mut push = |id: &[u8; 4], body: &[u8]| {
        chunks.extend_from_slice(id);
        chunks.extend_from_slice(&(body.len() as u32).to_le_bytes());
        chunks.extend_from_slice(body);
        if body.len() % 2 == 1 {
            chunks.push(0); // RIFF pad byte
        }
    };
    push(b"fmt ", &fmt);
    for (id, body) in extra {
        push(id, body);
    }
    push(b"data", data);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(4 + chunks.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(&chunks);
    out
}

/// A checkpoint whose check is never true.
fn unpolled() -> Checkpoint<'static> {
    Checkpoint::new(&never)
}

fn never() -> bool {
    false
}

fn decoded(body: &[u8]) -> Decoded {
    match decode(body, 600.0, &mut unpolled()) {
        Ok(d) => d,
        Err(e) => panic!("expected a clip, got: {e}"),
    }
}

fn error(body: &[u8]) -> AudioError {
    match decode(body, 600.0, &mut unpolled()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "sample {i}: {g} vs {w}");
    }
}

/// Subtract the mean, as decode does.
fn dc_free(x: &[f64]) -> Vec<f64> {
    let mean = x.iter().sum::<f64>() / x.len() as f64;
    x.iter().map(|v| v - mean).collect()
}

/// 16-bit PCM: samples are int/32768, DC removed; the header fields come through.
#[test]
fn pcm_16_bit() {
    let body = wav(PCM16, &encode(&[0.5, -0.25, 0.0, 1.0], PCM16), &[]);
    let d = decoded(&body);
    let want: Vec<f64> = [16384.0, -8192.0, 0.0, 32767.0]
        .iter()
        .map(|v| v / 32768.0)
        .collect();
    assert_close(&d.mono, &dc_free(&want), 1e-15);
    assert_eq!(d.lsb, 1.0 / 32768.0);
    assert_eq!(
        d.info,
        ClipInfo {
            sample_rate: 16_000,
            channels: 1,
            bits: 16,
            float: false,
            frames: 4,
            duration_s: 4.0 / 16_000.0
        }
    );
}

/// 8-bit PCM is unsigned: byte 128 is zero, 0 is −1, 255 is 127/128.
#[test]
fn pcm_8_bit_is_unsigned() {
    let spec = Spec { bits: 8, ..PCM16 };
    let d = decoded(&wav(spec, &[128, 255, 0, 192], &[]));
    assert_close(&d.mono, &dc_free(&[0.0, 127.0 / 128.0, -1.0, 0.5]), 1e-15);
    assert_eq!(d.lsb, 1.0 / 128.0);
}

/// 24-bit PCM: three bytes, sign-extended, over 2^23.
#[test]
fn pcm_24_bit() {
    let spec = Spec { bits: 24, ..PCM16 };
    let data = [
        0x00, 0x00, 0x80, 0xFF, 0xFF, 0x7F, 0x00, 0x00, 0x40, 0xFF, 0xFF, 0xFF,
    ];
    let d = decoded(&wav(spec, &data, &[]));
    let want = [-1.0, 8_388_607.0 / 8_388_608.0, 0.5, -1.0 / 8_388_608.0];
    assert_close(&d.mono, &dc_free(&want), 1e-15);
    assert_eq!(d.info.bits, 24);
}

/// 32-bit integer PCM, over 2^31.
#[test]
fn pcm_32_bit() {
    let spec = Spec { bits: 32, ..PCM16 };
    let mut data = i32::MIN.to_le_bytes().to_vec();
    data.extend_from_slice(&(1i32 << 29).to_le_bytes());
    let d = decoded(&wav(spec, &data, &[]));
    assert_close(&d.mono, &dc_free(&[-1.0, 0.25]), 1e-15);
}

/// 32-bit float is used as it is, and has no quantisation step.
#[test]
fn float_32_bit() {
    let spec = Spec {
        tag: 3,
        bits: 32,
        ..PCM16
    };
    let d = decoded(&wav(spec, &encode(&[0.125, -0.75, 0.3], spec), &[]));
    assert_close(&d.mono, &dc_free(&[0.125, -0.75, f64::from(0.3f32)]), 1e-15);
    assert!(d.info.float);
    assert_eq!(d.lsb, 0.0);
}

/// WAVE_FORMAT_EXTENSIBLE: the encoding comes from the sub-format GUID, int and float alike.
#[test]
fn extensible() {
    let samples = [0.5, -0.5, 0.25, 0.0];
    for (tag, bits) in [(1, 16), (1, 24), (3, 32)] {
        let spec = Spec {
            tag,
            bits,
            extensible: true,
            ..PCM16
        };
        let d = decoded(&wav(spec, &encode(&samples, spec), &[]));
        assert_close(&d.mono, &dc_free(&samples), 1e-4);
        assert_eq!(d.info.float, tag == 3);
    }
}

/// Stereo is mixed by the mean of the channels; the quantisation step halves with it.
#[test]
fn stereo_to_mono() {
    let spec = Spec {
        channels: 2,
        ..PCM16
    };
    let body = wav(spec, &encode(&[0.5, 0.0, -0.5, -0.25, 1.0, 1.0], spec), &[]);
    let d = decoded(&body);
    let mean = |a: f64, b: f64| (a + b) / 2.0;
    let want = [
        mean(16384.0, 0.0),
        mean(-16384.0, -8192.0),
        mean(32767.0, 32767.0),
    ]
    .map(|v| v / 32768.0);
    assert_close(&d.mono, &dc_free(&want), 1e-15);
    assert_eq!(d.lsb, 1.0 / 65536.0);
    assert_eq!((d.info.channels, d.info.frames), (2, 3));
}

/// A trailing partial frame (here one sample of a stereo pair) is ignored, as by the reference.
#[test]
fn partial_frame_is_ignored() {
    let spec = Spec {
        channels: 2,
        ..PCM16
    };
    let d = decoded(&wav(spec, &encode(&[0.5, 0.5, 0.25], spec), &[]));
    assert_eq!(d.info.frames, 1);
}

/// Chunks before `data` are skipped, including odd-sized ones with their pad byte and a
/// `fact` chunk longer than 4 bytes; chunks after `data` are never read.
#[test]
fn extra_chunks() {
    let samples = encode(&[0.5, -0.5], PCM16);
    let extra: &[(&[u8; 4], &[u8])] = &[
        (b"LIST", b"INFOISFT\x05\x00\x00\x00sox\x00\x00"),
        (b"fact", &[2, 0, 0, 0, 9, 9, 9, 9]),
        (b"odd ", b"abc"),
    ];
    let mut body = wav(PCM16, &samples, extra);
    body.extend_from_slice(b"id3 \x04\x00\x00\x00ab"); // a chunk after data, itself truncated
    let d = decoded(&body);
    assert_close(&d.mono, &[0.5, -0.5], 1e-15);
}

/// The redundant `fmt ` fields (byte rate, block alignment, `cbSize`) and its length past 16
/// bytes are not checked, as the reference does not check them; hound alone would refuse each.
#[test]
fn lenient_fmt_fields() {
    let samples = encode(&[0.5, -0.5], PCM16);
    let mut body = wav(PCM16, &samples, &[]);
    body[28..32].copy_from_slice(&12_345u32.to_le_bytes()); // byte rate
    body[32..34].copy_from_slice(&1u16.to_le_bytes()); // block align
    assert_close(&decoded(&body).mono, &[0.5, -0.5], 1e-15);

    let mut long_fmt = body[..36].to_vec();
    long_fmt[16] = 20; // fmt size 16 → 20, four zero bytes follow
    long_fmt.extend_from_slice(&[0; 4]);
    long_fmt.extend_from_slice(&body[36..]);
    assert_close(&decoded(&long_fmt).mono, &[0.5, -0.5], 1e-15);

    let mut extensible = wav(
        Spec {
            extensible: true,
            ..PCM16
        },
        &samples,
        &[],
    );
    extensible[36..38].copy_from_slice(&0u16.to_le_bytes()); // cbSize 22 → 0
    assert_close(&decoded(&extensible).mono, &[0.5, -0.5], 1e-15);
}

/// A zero-byte body.
#[test]
fn empty_body() {
    assert_eq!(error(b""), AudioError::Empty);
}

/// Text, JSON and MP3 bodies are not WAV at all.
#[test]
fn not_wav() {
    for body in [
        &b"hello, this is text"[..],
        b"{\"audio\": [1, 2, 3]}",
        b"ID3\x04\x00\x00\x00\x00\x00\x00\xFF\xFB\x90",
    ] {
        assert!(matches!(error(body), AudioError::NotWav(_)));
    }
    // A RIFF file of another kind (AVI) is not WAV either.
    assert!(matches!(
        error(b"RIFF\x04\x00\x00\x00AVI LIST"),
        AudioError::NotWav(_)
    ));
}

/// A body cut inside the RIFF header or inside the `fmt ` chunk is malformed.
#[test]
fn truncated_header() {
    let body = wav(PCM16, &encode(&[0.5; 100], PCM16), &[]);
    for cut in [8, 20, 30] {
        assert!(
            matches!(error(&body[..cut]), AudioError::Malformed(_)),
            "cut at {cut}"
        );
    }
    // Cut right after the fmt chunk: no data chunk at all.
    assert_eq!(
        error(&body[..36]),
        AudioError::Malformed("no data chunk".into())
    );
}

/// A `data` chunk declaring more bytes than the body holds (hound alone would accept it).
#[test]
fn truncated_data() {
    let body = wav(PCM16, &encode(&[0.5; 1000], PCM16), &[]);
    assert_eq!(
        error(&body[..1044]),
        AudioError::Malformed("data chunk truncated (1000 of 2000 bytes)".into())
    );
}

/// `fmt ` must come before `data`; a file with `data` first has no usable format.
#[test]
fn fmt_after_data() {
    let body = wav(PCM16, &[], &[]);
    let mut swapped = body[..12].to_vec();
    swapped.extend_from_slice(b"data\x02\x00\x00\x00\x00\x01");
    swapped.extend_from_slice(&body[12..36]);
    assert_eq!(
        error(&swapped),
        AudioError::Malformed("no fmt chunk".into())
    );
}

/// A valid file with an empty `data` chunk, or less than one frame in it.
#[test]
fn zero_samples() {
    assert_eq!(error(&wav(PCM16, &[], &[])), AudioError::NoSamples);
    let spec = Spec {
        channels: 2,
        ..PCM16
    };
    assert_eq!(error(&wav(spec, &[1, 2], &[])), AudioError::NoSamples);
}

/// Encodings we do not decode: ADPCM, A-law, µ-law, 12-bit PCM, 64-bit float, and an
/// extensible file whose GUID says ADPCM.
#[test]
fn unsupported_encodings() {
    for (tag, bits, extensible) in [
        (2, 4, false),
        (6, 8, false),
        (7, 8, false),
        (1, 12, false),
        (3, 64, false),
        (2, 16, true),
    ] {
        let spec = Spec {
            tag,
            bits,
            extensible,
            ..PCM16
        };
        let body = wav(spec, &[0; 64], &[]);
        assert!(
            matches!(error(&body), AudioError::Unsupported(_)),
            "tag {tag} bits {bits}"
        );
    }
}

/// Zero channels or a zero sample rate.
#[test]
fn zero_channels_or_rate() {
    for spec in [
        Spec {
            channels: 0,
            ..PCM16
        },
        Spec { rate: 0, ..PCM16 },
    ] {
        assert_eq!(
            error(&wav(spec, &[0; 8], &[])),
            AudioError::Malformed("zero channels or sample rate".into())
        );
    }
}

/// An extensible `fmt ` chunk shorter than its 40 bytes.
#[test]
fn truncated_extensible_fmt() {
    let mut body = wav(
        Spec {
            extensible: true,
            ..PCM16
        },
        &[0; 4],
        &[],
    );
    body[16] = 18; // fmt size 40 → 18: the GUID is gone, and the walk now lands mid-chunk
    assert!(matches!(error(&body), AudioError::Malformed(_)));
}

/// A rate that only a huge resampling filter could serve, a nonsense rate, and rates below
/// 8 kHz (the voice band is missing, and upsampling them would make minutes of audio out of a
/// few bytes).
#[test]
fn unusable_rates() {
    for rate in [15_999, 10_000_000, 7_999, 1_000, 4, 1] {
        let spec = Spec { rate, ..PCM16 };
        assert!(
            matches!(error(&wav(spec, &[0; 8], &[])), AudioError::Unsupported(_)),
            "{rate}"
        );
    }
}

/// The lowest rate accepted is 8 kHz, and the message of a lower one names the floor.
#[test]
fn rate_floor() {
    let at_floor = Spec {
        rate: 8_000,
        ..PCM16
    };
    assert!(decode(&wav(at_floor, &[0; 8], &[]), 600.0, &mut unpolled()).is_ok());
    let message = error(&wav(Spec { rate: 4, ..PCM16 }, &[0; 8], &[])).to_string();
    assert!(
        message.contains("4 Hz") && message.contains("8000 Hz"),
        "{message}"
    );
}

/// Longer than allowed: refused from the header, with both durations in the error.
#[test]
fn too_long() {
    let body = wav(PCM16, &vec![0; 2 * 32_000], &[]);
    assert_eq!(
        decode(&body, 1.5, &mut unpolled()).err(),
        Some(AudioError::TooLong {
            seconds: 2.0,
            max_seconds: 1.5
        })
    );
    assert!(decode(&body, 2.0, &mut unpolled()).is_ok());
}

/// NaN or infinite float samples are refused: nothing downstream could give a number.
#[test]
fn non_finite_float() {
    let spec = Spec {
        tag: 3,
        bits: 32,
        ..PCM16
    };
    for bad in [f32::NAN, f32::INFINITY] {
        let mut data = encode(&[0.5], spec);
        data.extend_from_slice(&bad.to_le_bytes());
        assert!(matches!(
            error(&wav(spec, &data, &[])),
            AudioError::Malformed(_)
        ));
    }
}

/// Every error says what is wrong in one line.
#[test]
fn messages() {
    let e = AudioError::TooLong {
        seconds: 700.0,
        max_seconds: 600.0,
    };
    assert_eq!(
        e.to_string(),
        "audio is 700.0 s long, longer than the 600 s allowed"
    );
    assert_eq!(
        AudioError::Empty.to_string(),
        "empty body: expected a WAV file"
    );
    assert!(error(&wav(
        Spec {
            tag: 2,
            bits: 4,
            ..PCM16
        },
        &[0; 8],
        &[]
    ))
    .to_string()
    .contains("Microsoft ADPCM"));
}

/// The samples as hound reads them, one call per sample, mixed and DC-removed as `decode`
/// does: the conversion this module used before it converted the bytes itself, kept as the
/// reference the bulk conversion must equal bit for bit.
fn hound_mono(body: &[u8]) -> Result<Vec<f64>, hound::Error> {
    let mut reader = hound::WavReader::new(body)?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    let samples: Vec<f64> = match spec.sample_format {
        hound::SampleFormat::Int => {
            let scale = 2f64.powi(1 - i32::from(spec.bits_per_sample));
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| f64::from(v) * scale))
                .collect::<Result<_, _>>()?
        }
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .map(|s| s.map(f64::from))
            .collect::<Result<_, _>>()?,
    };
    let mut mono: Vec<f64> = if channels == 1 {
        samples
    } else {
        samples
            .chunks_exact(channels)
            .map(|frame| {
                let mut sum = 0.0;
                for v in frame {
                    sum += v;
                }
                sum / channels as f64
            })
            .collect()
    };
    let mean = mono.iter().sum::<f64>() / mono.len() as f64;
    for v in &mut mono {
        *v -= mean;
    }
    Ok(mono)
}

/// `len` bytes from a small xorshift generator: every bit pattern a sample can take.
fn noise_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

fn assert_same_bits(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "{what}, sample {i}: {g} vs {w}");
    }
}

/// The bulk conversion gives hound's samples bit for bit: every integer width on random bytes
/// (every bit pattern, both signs, the extremes), 32-bit float with signed zeros, subnormals
/// and the largest finite values, one to three channels, plain and extensible headers.
#[test]
fn bulk_conversion_equals_hound() {
    let floats: Vec<u8> = [
        0.0f32,
        -0.0,
        1.0,
        -1.0,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE / 4.0,
        f32::MAX,
        f32::MIN,
        0.3,
        -0.7,
        1e-30,
        -2.5,
    ]
    .iter()
    .flat_map(|v| v.to_le_bytes())
    .collect();
    for (tag, bits) in [(1, 8), (1, 16), (1, 24), (1, 32), (3, 32)] {
        for channels in 1..=3u16 {
            for extensible in [false, true] {
                let spec = Spec {
                    tag,
                    channels,
                    bits,
                    extensible,
                    ..PCM16
                };
                let block = usize::from(channels * bits / 8);
                let data = if tag == 3 {
                    floats[..floats.len() / block * block].to_vec()
                } else {
                    noise_bytes(block * 997, u64::from(bits * 10 + channels))
                };
                let body = wav(spec, &data, &[]);
                let what = format!("tag {tag}, {bits} bits, {channels} ch, ext {extensible}");
                let want = hound_mono(&body).unwrap_or_else(|e| panic!("{what}: hound: {e}"));
                assert_same_bits(&decoded(&body).mono, &want, &what);
            }
        }
    }
}

/// Every committed fixture hound reads decodes to the same samples, bit for bit.
#[test]
fn fixtures_decode_as_hound_reads_them() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio");
    let mut compared = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{dir:?}: {e}")).path();
        if path.extension().is_none_or(|ext| ext != "wav") {
            continue;
        }
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        // Broken and exotic files are refused by both, with the messages the other tests pin.
        let (Ok(d), Ok(want)) = (decode(&body, 600.0, &mut unpolled()), hound_mono(&body)) else {
            continue;
        };
        assert_same_bits(&d.mono, &want, &path.display().to_string());
        compared += 1;
    }
    assert!(compared >= 15, "only {compared} fixtures compared");
}
