//! WAV decoding: RIFF chunks in, mono float samples out.
//!
//! A WAV file is a RIFF container (Microsoft/IBM, *Multimedia Programming Interface and Data
//! Specifications 1.0*, 1991): the 12-byte header `RIFF <size> WAVE`, then chunks, each an
//! ASCII id, a little-endian `u32` size and that many bytes, plus one pad byte when the size is
//! odd. Two chunks matter: `fmt ` (the encoding) and `data` (the samples); every other chunk
//! (`LIST`, `fact`, `bext`, ...) is skipped.
//!
//! # Who does what
//!
//! The **chunk walk is ours**, written to the reference decoder's rules, because that is where
//! hound (the WAV crate this module first used) is both more lenient and stricter. It accepts a
//! `data` chunk whose declared size runs past the end of the body, and fails only while reading
//! samples; yet it rejects files the reference reads: an odd-sized chunk followed by its pad
//! byte, a `fact` chunk of other than 4 bytes, a `fmt ` chunk of unusual length or an
//! extensible one whose `cbSize` is not 22, a byte rate or block alignment that disagrees with
//! the rest, a trailing partial sample.
//!
//! The **sample conversion is ours too**. Once the chunks are found, the `data` chunk is a byte
//! slice already in memory, so its whole frames are converted in one pass per sample width
//! (`read_mono`) instead of one reader call per sample: hound's per-sample reader cost about
//! 17 ns a sample, two thirds of the whole decode. The values are the ones hound gave, bit for
//! bit (the tests decode the same bodies both ways and compare).
//!
//! `WAVE_FORMAT_EXTENSIBLE` (tag `0xFFFE`) carries the real encoding in the first two bytes of
//! its sub-format GUID; the container width (`wBitsPerSample`) is what is read, as in the
//! reference, and since samples are left-justified in their container the scale is the same.
//!
//! Integer samples are divided by 2^(bits−1) (8-bit WAV is unsigned, offset 128); float samples
//! are used as they are. Channels are mixed by their mean, then the mean of the clip (DC) is
//! subtracted.

use super::checkpoint::{Checkpoint, BLOCK, CHUNK_NS, READ_NS, WRITE_NS};
use super::{resample, AudioError, ClipInfo, MIN_SAMPLE_RATE};

/// `WAVE_FORMAT_PCM`: integer samples.
const TAG_PCM: u16 = 0x0001;
/// `WAVE_FORMAT_IEEE_FLOAT`: 32-bit float samples.
const TAG_FLOAT: u16 = 0x0003;
/// `WAVE_FORMAT_EXTENSIBLE`: the real tag is in the sub-format GUID at byte 24 of `fmt `.
const TAG_EXTENSIBLE: u16 = 0xFFFE;

/// Bytes in the `fmt ` chunk's fixed part (`PCMWAVEFORMAT`): tag, channels, rate, byte rate,
/// block align, bits.
const FMT_MIN_LEN: usize = 16;
/// Bytes in a `WAVEFORMATEXTENSIBLE` `fmt ` chunk: the fixed part, `cbSize`, valid bits,
/// channel mask and the 16-byte sub-format GUID.
const FMT_EXTENSIBLE_LEN: usize = 40;

/// Highest sample rate accepted: 768 kHz is the top of what converters offer; a larger value
/// is a broken header, not audio.
const MAX_SAMPLE_RATE: u32 = 768_000;
/// Most channels accepted: far more than any recording has, so a larger count is a broken
/// header; it also keeps a frame within 1 KiB (256 channels of 32 bits).
const MAX_CHANNELS: u16 = 256;

/// A decoded WAV body: mono, DC removed, still at the file's rate.
pub(crate) struct Decoded {
    /// Mean of the channels, minus the mean over the clip.
    pub mono: Vec<f64>,
    /// Quantisation step of `mono` for WADA: 2^−(bits−1) divided by the channel count, 0 for
    /// float input.
    pub lsb: f64,
    /// What the header said.
    pub info: ClipInfo,
}

/// How the samples are stored, after resolving `WAVE_FORMAT_EXTENSIBLE`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Encoding {
    /// Two's-complement integers (unsigned for 8 bits) of 8, 16, 24 or 32 bits.
    Int,
    /// IEEE 754 single precision.
    Float,
}

/// The parts of the `fmt ` chunk that decoding needs.
#[derive(Debug, Clone, Copy)]
struct Format {
    encoding: Encoding,
    channels: u16,
    sample_rate: u32,
    /// Container width in bits: 8, 16, 24 or 32.
    bits: u16,
}

impl Format {
    /// Bytes per sample frame (one sample of every channel), as the reference reads them.
    fn block_align(&self) -> usize {
        usize::from(self.channels) * usize::from(self.bits / 8)
    }
}

/// Decode a WAV body to mono samples at its own rate. The checks run in the reference's
/// order, so the same file gets the same complaint. Every pass over the samples ticks the
/// checkpoint once per [`BLOCK`], and so does the chunk walk once per chunk.
pub(crate) fn decode(
    body: &[u8],
    max_seconds: f64,
    checkpoint: &mut Checkpoint<'_>,
) -> Result<Decoded, AudioError> {
    if body.is_empty() {
        return Err(AudioError::Empty);
    }
    let (fmt, data) = find_chunks(body, checkpoint)?;
    let format = parse_format(fmt)?;
    // The reference ignores a trailing partial frame; so do we.
    let frames = data.len() / format.block_align();
    if frames == 0 {
        return Err(AudioError::NoSamples);
    }
    let info = ClipInfo {
        sample_rate: format.sample_rate,
        channels: format.channels,
        bits: format.bits,
        float: format.encoding == Encoding::Float,
        frames: frames as u64,
        duration_s: frames as f64 / f64::from(format.sample_rate),
    };
    // Checked before reading a single sample: a long clip costs nothing to refuse.
    if info.duration_s > max_seconds {
        return Err(AudioError::TooLong {
            seconds: info.duration_s,
            max_seconds,
        });
    }
    let mut mono = read_mono(&format, &data[..frames * format.block_align()], checkpoint)?;
    let mean = mean(&mono, checkpoint)?;
    for block in mono.chunks_mut(BLOCK) {
        for v in block.iter_mut() {
            *v -= mean;
        }
        checkpoint.tick(block.len() as u64 * READ_NS)?;
    }
    let lsb = match format.encoding {
        Encoding::Int => 2f64.powi(1 - i32::from(format.bits)) / f64::from(format.channels),
        Encoding::Float => 0.0,
    };
    Ok(Decoded { mono, lsb, info })
}

/// The mean of `x`: the sum in sample order from −0.0, where the standard library's float
/// `sum` starts, so the bits are those of `x.iter().sum::<f64>()`, a block at a time.
fn mean(x: &[f64], checkpoint: &mut Checkpoint<'_>) -> Result<f64, AudioError> {
    let mut sum = -0.0;
    for block in x.chunks(BLOCK) {
        sum = block.iter().fold(sum, |sum, v| sum + v);
        checkpoint.tick(block.len() as u64 * READ_NS)?;
    }
    Ok(sum / x.len() as f64)
}

/// Walk the RIFF chunks to the first `data` chunk; return the last `fmt ` body seen before it
/// and the `data` body. Chunks after `data` are never looked at. A body can hold millions of
/// empty chunks, so the walk ticks the checkpoint at each.
fn find_chunks<'b>(
    body: &'b [u8],
    checkpoint: &mut Checkpoint<'_>,
) -> Result<(&'b [u8], &'b [u8]), AudioError> {
    if body.len() < 12 || &body[..4] != b"RIFF" || &body[8..12] != b"WAVE" {
        if body.len() < 12 && body.starts_with(b"RIFF") {
            return Err(AudioError::Malformed(
                "file ends inside the RIFF header".into(),
            ));
        }
        return Err(AudioError::NotWav("no RIFF/WAVE header".into()));
    }
    let mut pos = 12;
    let mut fmt = None;
    let mut data = None;
    while pos + 8 <= body.len() {
        let id = &body[pos..pos + 4];
        let size = u32::from_le_bytes([body[pos + 4], body[pos + 5], body[pos + 6], body[pos + 7]]);
        let size = size as usize;
        let start = pos + 8;
        // The body as far as the file goes; shorter than `size` when the file is cut short.
        let chunk = &body[start..body.len().min(start.saturating_add(size))];
        match id {
            b"fmt " => {
                if chunk.len() < FMT_MIN_LEN {
                    return Err(AudioError::Malformed("fmt chunk truncated".into()));
                }
                fmt = Some(chunk);
            }
            b"data" => {
                if chunk.len() < size {
                    return Err(AudioError::Malformed(format!(
                        "data chunk truncated ({} of {} bytes)",
                        chunk.len(),
                        size
                    )));
                }
                data = Some(chunk);
                break;
            }
            // LIST, fact, bext, cue, JUNK ...: metadata we do not need.
            _ => {}
        }
        // RIFF: a chunk of odd size is followed by one pad byte.
        pos = start.saturating_add(size).saturating_add(size & 1);
        checkpoint.tick(CHUNK_NS)?;
    }
    match (fmt, data) {
        (None, _) => Err(AudioError::Malformed("no fmt chunk".into())),
        (Some(_), None) => Err(AudioError::Malformed("no data chunk".into())),
        (Some(fmt), Some(data)) => Ok((fmt, data)),
    }
}

/// Read the encoding from a `fmt ` body of at least [`FMT_MIN_LEN`] bytes.
fn parse_format(fmt: &[u8]) -> Result<Format, AudioError> {
    let u16_at = |i: usize| u16::from_le_bytes([fmt[i], fmt[i + 1]]);
    let mut tag = u16_at(0);
    let channels = u16_at(2);
    let sample_rate = u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]);
    // Bytes 8..14 (byte rate, block align) are redundant; the reference ignores them too.
    let bits = u16_at(14);
    if tag == TAG_EXTENSIBLE {
        if fmt.len() < FMT_EXTENSIBLE_LEN {
            return Err(AudioError::Malformed(
                "extensible fmt chunk truncated".into(),
            ));
        }
        tag = u16_at(24);
    }
    if channels == 0 || sample_rate == 0 {
        return Err(AudioError::Malformed("zero channels or sample rate".into()));
    }
    let encoding = match (tag, bits) {
        (TAG_PCM, 8 | 16 | 24 | 32) => Encoding::Int,
        (TAG_FLOAT, 32) => Encoding::Float,
        _ => {
            return Err(AudioError::Unsupported(format!(
                "format tag {tag:#06x} ({}) with {bits} bits per sample; \
                 only 8/16/24/32-bit PCM and 32-bit float are decoded",
                tag_name(tag)
            )))
        }
    };
    if channels > MAX_CHANNELS {
        return Err(AudioError::Unsupported(format!(
            "{channels} channels (at most {MAX_CHANNELS})"
        )));
    }
    if sample_rate > MAX_SAMPLE_RATE {
        return Err(AudioError::Unsupported(format!(
            "sample rate {sample_rate} Hz (at most {MAX_SAMPLE_RATE} Hz)"
        )));
    }
    // Below the floor the voice band is missing, and upsampling would turn a few bytes into
    // minutes of audio: refused from the header, for the cost of reading it.
    if sample_rate < MIN_SAMPLE_RATE {
        return Err(AudioError::Unsupported(format!(
            "sample rate {sample_rate} Hz (at least {MIN_SAMPLE_RATE} Hz: \
             the analysis needs the voice band up to 4 kHz)"
        )));
    }
    // Refuse a rate we cannot resample before reading any sample.
    resample::ratio_to_16k(sample_rate)?;
    Ok(Format {
        encoding,
        channels,
        sample_rate,
        bits,
    })
}

/// Convert whole frames to mono, straight from the `data` chunk's little-endian bytes.
///
/// Every width has its own monomorphised loop over fixed-size byte arrays, with no per-sample
/// error path, so the compiler can unroll and vectorise the conversion. The arithmetic is the
/// one a per-sample reader does: each sample is widened exactly to `f64`, integers are then
/// multiplied by 2^−(bits−1) (a power of two: exact, like dividing), and the channels of a
/// frame are summed from 0.0 in channel order and divided by the channel count.
fn read_mono(
    format: &Format,
    data: &[u8],
    checkpoint: &mut Checkpoint<'_>,
) -> Result<Vec<f64>, AudioError> {
    let channels = usize::from(format.channels);
    let scale = 2f64.powi(1 - i32::from(format.bits));
    let mono = match (format.encoding, format.bits) {
        // 8-bit WAV is unsigned: 128 is zero.
        (Encoding::Int, 8) => mix(
            data,
            channels,
            |[b]: [u8; 1]| f64::from(i32::from(b) - 128) * scale,
            checkpoint,
        )?,
        (Encoding::Int, 16) => mix(
            data,
            channels,
            |b: [u8; 2]| f64::from(i16::from_le_bytes(b)) * scale,
            checkpoint,
        )?,
        // Three bytes into the top of an i32, then an arithmetic shift extends the sign.
        (Encoding::Int, 24) => mix(
            data,
            channels,
            |[b0, b1, b2]: [u8; 3]| f64::from(i32::from_le_bytes([0, b0, b1, b2]) >> 8) * scale,
            checkpoint,
        )?,
        (Encoding::Int, 32) => mix(
            data,
            channels,
            |b: [u8; 4]| f64::from(i32::from_le_bytes(b)) * scale,
            checkpoint,
        )?,
        (Encoding::Float, 32) => {
            let mono = mix(
                data,
                channels,
                |b: [u8; 4]| f64::from(f32::from_le_bytes(b)),
                checkpoint,
            )?;
            // A NaN or infinity in any channel reaches the mix; nothing downstream could
            // give a number from it.
            for block in mono.chunks(BLOCK) {
                if !block.iter().all(|v| v.is_finite()) {
                    return Err(AudioError::Malformed(
                        "a float sample is NaN or infinite".into(),
                    ));
                }
                checkpoint.tick(block.len() as u64 * READ_NS)?;
            }
            mono
        }
        // `parse_format` lets no other pair through.
        (_, bits) => return Err(AudioError::Unsupported(format!("{bits} bits per sample"))),
    };
    Ok(mono)
}

/// The mean of each frame's `channels` interleaved samples of `W` bytes, each converted by
/// `sample`. `data` holds whole frames only. Converted a block of about [`BLOCK`] samples
/// (whole frames) at a time, with a tick after each: the loop over a block is the same
/// straight-line code as over the whole chunk, so it still unrolls and vectorises.
#[inline(always)]
fn mix<const W: usize>(
    data: &[u8],
    channels: usize,
    sample: impl Fn([u8; W]) -> f64,
    checkpoint: &mut Checkpoint<'_>,
) -> Result<Vec<f64>, AudioError> {
    let (samples, _partial) = data.as_chunks::<W>();
    let mut mono = Vec::with_capacity(samples.len() / channels);
    for block in samples.chunks(BLOCK.div_ceil(channels) * channels) {
        if channels == 1 {
            mono.extend(block.iter().map(|&b| sample(b)));
        } else {
            mono.extend(
                block.chunks_exact(channels).map(|frame| {
                    frame.iter().fold(0.0, |sum, &b| sum + sample(b)) / channels as f64
                }),
            );
        }
        let frames = (block.len() / channels) as u64;
        checkpoint.tick(block.len() as u64 * READ_NS + frames * WRITE_NS)?;
    }
    Ok(mono)
}

/// A name for the format tags people actually send (mmreg.h).
fn tag_name(tag: u16) -> &'static str {
    match tag {
        0x0001 => "PCM",
        0x0002 => "Microsoft ADPCM",
        0x0003 => "IEEE float",
        0x0006 => "A-law",
        0x0007 => "µ-law",
        0x0011 => "IMA ADPCM",
        0x0031 => "GSM 6.10",
        0x0050 => "MPEG",
        0x0055 => "MPEG Layer 3",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests;
