//! The `Transfer-Encoding: chunked` body decoder (RFC 9112 §7.1).
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF
//! ```
//!
//! A byte-at-a-time state machine for the framing lines, bulk copies for the data. It is
//! incremental — feed it any split of the stream and it produces the same body — and bounded:
//! chunk sizes cannot overflow, extensions and trailers have a length cap, and the body stops at
//! `max_body` ([`ParseError::BodyTooLarge`]) *while* decoding, not after.

use super::error::ParseError;

/// Longest chunk-size in hex digits: 15 digits keep the value below 2^60, far above any limit.
const MAX_SIZE_DIGITS: u32 = 15;
/// Longest chunk extension we skip over; extensions are ignored (RFC 9112 §7.1.1 allows that),
/// but an endless one is an attack.
const MAX_EXTENSION_BYTES: usize = 4096;

/// Where the decoder is in the chunked grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size { value: u64, digits: u32 },
    /// Skipping a chunk extension (`;name=value`) up to CR.
    Extension { value: u64, skipped: usize },
    /// Saw CR after the size line; LF must follow.
    SizeLf { value: u64 },
    /// Copying chunk data.
    Data { remaining: u64 },
    /// Chunk data done; CR must follow.
    DataCr,
    /// CR after data seen; LF must follow.
    DataLf,
    /// In the trailer section; `line` bytes of the current field line so far.
    Trailer { line: usize },
    /// CR seen in the trailer section; LF must follow.
    TrailerLf { line: usize },
    /// The final CRLF was read: the body is complete.
    Done,
}

/// Incremental decoder for one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Trailer bytes seen so far, capped by the head limit.
    trailer_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            trailer_bytes: 0,
        }
    }

    /// True once the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decode from `input`, appending chunk data to `body`. Returns how many bytes of `input`
    /// were consumed; stops at the end of the body (bytes after it belong to the next request).
    ///
    /// `max_body` bounds the decoded body; `max_trailer` bounds the trailer section.
    pub fn decode(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        max_body: usize,
        max_trailer: usize,
    ) -> Result<usize, ParseError> {
        let mut pos = 0;
        while pos < input.len() && self.state != State::Done {
            let byte = input[pos];
            self.state = match self.state {
                State::Size { value, digits } => match hex_value(byte) {
                    Some(d) if digits < MAX_SIZE_DIGITS => State::Size {
                        value: value * 16 + d,
                        digits: digits + 1,
                    },
                    Some(_) => return Err(ParseError::BadRequest("chunk size too long")),
                    None if digits == 0 => {
                        return Err(ParseError::BadRequest("missing chunk size"))
                    }
                    None => match byte {
                        b'\r' => State::SizeLf { value },
                        // RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name … )
                        b';' | b' ' | b'\t' => State::Extension { value, skipped: 0 },
                        _ => return Err(ParseError::BadRequest("invalid chunk size")),
                    },
                },
                State::Extension { value, skipped } => match byte {
                    b'\r' => State::SizeLf { value },
                    b'\n' => return Err(ParseError::BadRequest("bare LF in chunk extension")),
                    _ if skipped >= MAX_EXTENSION_BYTES => {
                        return Err(ParseError::BadRequest("chunk extension too long"))
                    }
                    _ => State::Extension {
                        value,
                        skipped: skipped + 1,
                    },
                },
                State::SizeLf { value } => match byte {
                    b'\n' if value == 0 => State::Trailer { line: 0 },
                    b'\n' => {
                        if (body.len() as u64).saturating_add(value) > max_body as u64 {
                            return Err(ParseError::BodyTooLarge);
                        }
                        State::Data { remaining: value }
                    }
                    _ => return Err(ParseError::BadRequest("expected LF after chunk size")),
                },
                State::Data { remaining } => {
                    // Bulk copy: the only state that does not advance one byte at a time.
                    let available = (input.len() - pos) as u64;
                    let take = remaining.min(available) as usize;
                    body.extend_from_slice(&input[pos..pos + take]);
                    pos += take;
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining: left }
                    };
                    continue;
                }
                State::DataCr => match byte {
                    b'\r' => State::DataLf,
                    _ => return Err(ParseError::BadRequest("chunk data longer than its size")),
                },
                State::DataLf => match byte {
                    b'\n' => State::Size {
                        value: 0,
                        digits: 0,
                    },
                    _ => return Err(ParseError::BadRequest("expected LF after chunk data")),
                },
                State::Trailer { line } => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > max_trailer {
                        return Err(ParseError::HeadersTooLarge);
                    }
                    match byte {
                        b'\r' => State::TrailerLf { line },
                        b'\n' => return Err(ParseError::BadRequest("bare LF in trailer")),
                        _ => State::Trailer { line: line + 1 },
                    }
                }
                State::TrailerLf { line } => match byte {
                    // An empty line ends the trailer section; trailer fields are read and
                    // ignored (RFC 9112 §7.1.2 lets a recipient discard them).
                    b'\n' if line == 0 => State::Done,
                    b'\n' => State::Trailer { line: 0 },
                    _ => return Err(ParseError::BadRequest("expected LF in trailer")),
                },
                State::Done => State::Done,
            };
            pos += 1;
        }
        Ok(pos)
    }
}

/// The value of one hex digit.
fn hex_value(byte: u8) -> Option<u64> {
    match byte {
        b'0'..=b'9' => Some(u64::from(byte - b'0')),
        b'a'..=b'f' => Some(u64::from(byte - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(byte - b'A' + 10)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize, bool), ParseError> {
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        let used = decoder.decode(input, &mut body, 1 << 20, 4096)?;
        Ok((body, used, decoder.is_done()))
    }

    /// Chunks, an extension and a trailer decode to the body; the next request's bytes are left.
    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let input = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: yes\r\n\r\nGET";
        let (body, used, done) = decode_all(input).unwrap();
        assert_eq!(body, b"Wikipedia");
        assert!(done);
        assert_eq!(&input[used..], b"GET");
    }

    /// Every split of the stream yields the same body.
    #[test]
    fn any_split_gives_the_same_body() {
        let input = b"A\r\n0123456789\r\n1\r\nx\r\n0\r\n\r\n";
        for cut in 0..input.len() {
            let mut decoder = ChunkedDecoder::new();
            let mut body = Vec::new();
            let a = decoder.decode(&input[..cut], &mut body, 100, 100).unwrap();
            assert_eq!(a, cut);
            let b = decoder.decode(&input[cut..], &mut body, 100, 100).unwrap();
            assert_eq!(a + b, input.len());
            assert!(decoder.is_done());
            assert_eq!(body, b"0123456789x");
        }
    }

    /// Malformed framing is an error, never a guess.
    #[test]
    fn rejects_malformed_framing() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"4\nWiki",
            b"4\r\nWikipedia\r\n",
            b"4\r\nWiki\n",
            b"1234567890123456\r\n",
            b"0\r\nX: y\n",
        ] {
            assert!(
                matches!(decode_all(bad), Err(ParseError::BadRequest(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// The body limit is enforced from the chunk size, before the data arrives.
    #[test]
    fn enforces_the_body_limit_early() {
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        assert_eq!(
            decoder.decode(b"FFFF\r\n", &mut body, 1000, 100),
            Err(ParseError::BodyTooLarge)
        );
    }
}
