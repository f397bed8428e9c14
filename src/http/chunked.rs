//! The `Transfer-Encoding: chunked` body decoder (RFC 9112 §7.1).
//!
//! ```text
//! chunked-body    = *chunk last-chunk trailer-section CRLF
//! chunk           = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size      = 1*HEXDIG
//! last-chunk      = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext       = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! chunk-ext-name  = token
//! chunk-ext-val   = token / quoted-string
//! trailer-section = *( field-line CRLF )
//! field-line      = field-name ":" OWS field-value OWS
//! ```
//!
//! A byte-at-a-time state machine for the framing lines, bulk copies for the data. It is
//! incremental — feed it any split of the stream and it produces the same body — and bounded:
//! chunk sizes cannot overflow, extensions and trailers have a length cap, and the body stops at
//! `max_body` ([`ParseError::BodyTooLarge`]) *while* decoding, not after.
//!
//! It is also strict. Extensions and trailer fields are ignored (RFC 9112 §7.1.1 and §7.1.2 let
//! a recipient do that), but they are parsed to the grammar above first, with the same byte
//! rules as the request head. A line that a lenient parser in front of evloop could read
//! differently — an unbalanced quote, a trailer line with no colon, obs-fold, a NUL — is where
//! two parsers would disagree on where this body ends and the next request starts, so it is an
//! error, never skipped over.

use super::error::ParseError;
use super::syntax::{is_field_vchar, is_ows, is_qdtext, is_quoted_pair_char, is_tchar};

/// Longest chunk-size in hex digits, leading zeros included: 15 digits keep the value below
/// 2^60, far above any body limit, so it cannot overflow.
const MAX_SIZE_DIGITS: u32 = 15;
/// Longest run of chunk extensions on one size line. They are ignored, but an endless one would
/// hold the connection; past this the request is refused.
const MAX_EXTENSION_BYTES: usize = 4096;

/// Where the decoder is in the chunked grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size { value: u64, digits: u32 },
    /// In the chunk extensions of a size line: `at` says where, `len` bytes so far.
    Extension { value: u64, at: Ext, len: usize },
    /// Saw CR after the size line; LF must follow.
    SizeLf { value: u64 },
    /// Copying chunk data.
    Data { remaining: u64 },
    /// Chunk data done; CR must follow.
    DataCr,
    /// CR after data seen; LF must follow.
    DataLf,
    /// At the start of a trailer line, or of the empty line that ends the section.
    TrailerStart,
    /// In a trailer field's name.
    TrailerName,
    /// After a trailer field's colon: the value, with its optional whitespace.
    TrailerValue,
    /// CR at the end of a trailer field line; LF must follow.
    TrailerLf,
    /// CR of the empty line that ends the trailer section; LF must follow.
    EndLf,
    /// The final CRLF was read: the body is complete.
    Done,
}

/// Where a size line is in `chunk-ext` (RFC 9112 §7.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ext {
    /// BWS after the size or after a value: only more BWS or `;` may follow.
    Bws,
    /// After `;`: BWS, then the first byte of a name.
    NameStart,
    /// In a name.
    Name,
    /// BWS after a name: `=` or `;` may follow.
    NameBws,
    /// After `=`: BWS, then a token or a quoted string.
    ValueStart,
    /// In a token value.
    Token,
    /// Inside a quoted-string value.
    Quoted,
    /// After `\` inside a quoted string: the escaped byte.
    QuotedPair,
    /// After the closing `"` of a quoted string.
    QuotedEnd,
}

impl State {
    /// True in the trailer section, whose bytes count against the head limit.
    fn in_trailer(self) -> bool {
        matches!(
            self,
            State::TrailerStart
                | State::TrailerName
                | State::TrailerValue
                | State::TrailerLf
                | State::EndLf
        )
    }
}

/// Incremental decoder for one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Trailer bytes seen so far, CRLFs included, capped by the head limit.
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
            if self.state.in_trailer() {
                self.trailer_bytes += 1;
                if self.trailer_bytes > max_trailer {
                    return Err(ParseError::HeadersTooLarge);
                }
            }
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
                        b';' => State::Extension {
                            value,
                            at: Ext::NameStart,
                            len: 1,
                        },
                        // BWS before the first ";" (RFC 9112 §7.1.1).
                        b' ' | b'\t' => State::Extension {
                            value,
                            at: Ext::Bws,
                            len: 1,
                        },
                        _ => return Err(ParseError::BadRequest("invalid chunk size")),
                    },
                },
                State::Extension { value, at, len } => {
                    if len >= MAX_EXTENSION_BYTES {
                        return Err(ParseError::BadRequest("chunk extension too long"));
                    }
                    match next_in_extension(at, byte)? {
                        Some(at) => State::Extension {
                            value,
                            at,
                            len: len + 1,
                        },
                        None => State::SizeLf { value },
                    }
                }
                State::SizeLf { value } => match byte {
                    b'\n' if value == 0 => State::TrailerStart,
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
                // The trailer section has the head's field-line rules (RFC 9112 §7.1.2, §5):
                // fields are read and ignored, but only once they are well-formed.
                State::TrailerStart => match byte {
                    b'\r' => State::EndLf,
                    _ if is_tchar(byte) => State::TrailerName,
                    // RFC 9112 §5.2: obs-fold may be refused; a first line starting with
                    // whitespace is refused too (§2.2).
                    b' ' | b'\t' => {
                        return Err(ParseError::BadRequest("obs-fold or whitespace in trailer"))
                    }
                    _ => return Err(ParseError::BadRequest("invalid trailer field name")),
                },
                State::TrailerName => match byte {
                    b':' => State::TrailerValue,
                    _ if is_tchar(byte) => State::TrailerName,
                    // No colon, whitespace before the colon (RFC 9112 §5.1: MUST be refused),
                    // or a request line: none of them is a field line.
                    _ => return Err(ParseError::BadRequest("invalid trailer field name")),
                },
                State::TrailerValue => match byte {
                    b'\r' => State::TrailerLf,
                    _ if is_field_vchar(byte) || is_ows(byte) => State::TrailerValue,
                    _ => {
                        return Err(ParseError::BadRequest(
                            "invalid byte in trailer field value",
                        ))
                    }
                },
                State::TrailerLf | State::EndLf if byte != b'\n' => {
                    return Err(ParseError::BadRequest("bare CR in trailer"))
                }
                State::TrailerLf => State::TrailerStart,
                State::EndLf => State::Done,
                State::Done => State::Done,
            };
            pos += 1;
        }
        Ok(pos)
    }
}

/// One byte of `chunk-ext` (RFC 9112 §7.1.1): the next place in the grammar, or `None` for the
/// CR that ends the size line.
///
/// BWS is allowed before `;` and around `=`, as the grammar says, and nowhere else: not at the
/// end of the line, not inside a name or a value.
fn next_in_extension(at: Ext, byte: u8) -> Result<Option<Ext>, ParseError> {
    let next = match (at, byte) {
        // quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE (RFC 9110 §5.6.4)
        (Ext::Quoted, b'"') => Ext::QuotedEnd,
        (Ext::Quoted, b'\\') => Ext::QuotedPair,
        (Ext::Quoted, _) if is_qdtext(byte) => Ext::Quoted,
        (Ext::QuotedPair, _) if is_quoted_pair_char(byte) => Ext::Quoted,
        (Ext::Quoted | Ext::QuotedPair, _) => {
            return Err(ParseError::BadRequest(
                "invalid quoted string in chunk extension",
            ))
        }
        // The line may end after a name or a value, never after BWS or a bare ";" or "=".
        (Ext::Name | Ext::Token | Ext::QuotedEnd, b'\r') => return Ok(None),
        (Ext::Name | Ext::Token | Ext::QuotedEnd | Ext::Bws | Ext::NameBws, b';') => Ext::NameStart,
        (Ext::Name | Ext::NameBws, b'=') => Ext::ValueStart,
        (Ext::Name, _) if is_tchar(byte) => Ext::Name,
        (Ext::Token, _) if is_tchar(byte) => Ext::Token,
        (Ext::NameStart, _) if is_tchar(byte) => Ext::Name,
        (Ext::ValueStart, _) if is_tchar(byte) => Ext::Token,
        (Ext::ValueStart, b'"') => Ext::Quoted,
        (Ext::Name | Ext::NameBws, _) if is_ows(byte) => Ext::NameBws,
        (Ext::Token | Ext::QuotedEnd | Ext::Bws, _) if is_ows(byte) => Ext::Bws,
        (Ext::NameStart | Ext::ValueStart, _) if is_ows(byte) => at,
        _ => return Err(ParseError::BadRequest("invalid chunk extension")),
    };
    Ok(Some(next))
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

    /// Chunk-size lines follow RFC 9112 §7.1.1 exactly: hex digits, then only well-formed
    /// `;name[=value]` extensions (token names; token or quoted-string values with balanced
    /// quotes and valid escapes; BWS around `;` and `=`), then CRLF.
    #[test]
    fn chunk_size_lines_follow_the_grammar() {
        for good in [
            &b"4;a\r\n"[..],
            b"4;a=b\r\n",
            b"4 ;a\r\n",
            b"4\t; a = b ;c\r\n",
            b"4;a=\"\"\r\n",
            b"4;a=\"x;y=z \\\"q\\\\\"\r\n",
            b"4;a=\"caf\xc3\xa9\";b=!#$%&'*+-.^_`|~\r\n",
            b"4;a=\"x\" ;b\r\n",
            b"0004\r\n",
        ] {
            let mut input = good.to_vec();
            input.extend_from_slice(b"Wiki\r\n0;z=\"0\"\r\n\r\n");
            let (body, used, done) = decode_all(&input)
                .unwrap_or_else(|err| panic!("{:?}: {err}", String::from_utf8_lossy(good)));
            assert_eq!(
                (body.as_slice(), used, done),
                (&b"Wiki"[..], input.len(), true)
            );
        }
        for bad in [
            &b"4;\r\n"[..],
            b"4; \r\n",
            b"4;;a\r\n",
            b"4;=b\r\n",
            b"4;\"a\"\r\n",
            b"4;a\"b\r\n",
            b"4;a=\r\n",
            b"4;a==b\r\n",
            b"4;a=b=c\r\n",
            b"4;a=\"open\r\n",
            b"4;a=\"x\"y\r\n",
            b"4;a=\"\x01\"\r\n",
            b"4;a=\"\x7f\"\r\n",
            b"4;a=\"\\\x00\"\r\n",
            b"4;a=b c\r\n",
            b"4;a b\r\n",
            b"4;a \r\n",
            b"4;a=b \r\n",
            b"4;a=\"x\" \r\n",
            b"4 \r\n",
            b"4 x\r\n",
            b"4;a=b,c\r\n",
            b"4;a\x00\r\n",
            b"4;a\nWiki",
            b"4;a\rWiki",
            b"4x\r\n",
            b"-4\r\n",
            b"+4\r\n",
            b"0x4\r\n",
            b" 4\r\n",
            b";a\r\n",
        ] {
            assert!(
                matches!(decode_all(bad), Err(ParseError::BadRequest(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Sizes are bounded by digit count, leading zeros included, so the value cannot overflow;
    /// an extension is bounded in length.
    #[test]
    fn sizes_and_extensions_are_bounded() {
        assert!(decode_all(b"000000000000004\r\nWiki\r\n0\r\n\r\n").is_ok());
        assert!(decode_all(b"0000000000000004\r\n").is_err());
        assert!(decode_all(b"ffffffffffffffffffff\r\n").is_err());
        let mut long = b"4;a=".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_EXTENSION_BYTES));
        long.extend_from_slice(b"\r\n");
        assert_eq!(
            decode_all(&long),
            Err(ParseError::BadRequest("chunk extension too long"))
        );
    }

    /// Trailer lines follow the head's field-line rules: `token ":" OWS value OWS` with value
    /// bytes VCHAR, obs-text, SP or HTAB. NUL and other controls, obs-fold, no colon, space
    /// before the colon, an empty name or a request line are refused.
    #[test]
    fn trailer_lines_follow_the_field_rules() {
        for good in [
            &b"X: y\r\n"[..],
            b"X:y\r\n",
            b"X:\r\n",
            b"X:  y z\t\r\n",
            b"X: caf\xc3\xa9\r\nY: 1\r\n",
            b"!#$%&'*+-.^_`|~: v\r\n",
        ] {
            let mut input = b"0\r\n".to_vec();
            input.extend_from_slice(good);
            input.extend_from_slice(b"\r\n");
            let (_, used, done) = decode_all(&input)
                .unwrap_or_else(|err| panic!("{:?}: {err}", String::from_utf8_lossy(good)));
            assert!(done && used == input.len());
        }
        for bad in [
            &b"X: a\x00b\r\n"[..],
            b"X: a\x01b\r\n",
            b"X: a\x7fb\r\n",
            b"X: a\r\n b\r\n",
            b" X: a\r\n",
            b"\tX: a\r\n",
            b"NoColon\r\n",
            b"X : a\r\n",
            b": a\r\n",
            b"X(1): a\r\n",
            b"GET / HTTP/1.1\r\n",
            b"X: a\rb\r\n",
            b"X: a\nY: b\r\n",
            b"\r\r\n",
        ] {
            let mut input = b"0\r\n".to_vec();
            input.extend_from_slice(bad);
            input.extend_from_slice(b"\r\n");
            assert!(
                matches!(decode_all(&input), Err(ParseError::BadRequest(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// The trailer section, CRLFs included, is bounded by the head limit (431 past it).
    #[test]
    fn trailers_are_bounded_by_the_head_limit() {
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        let fits = b"0\r\nX: 12345\r\n\r\n";
        assert_eq!(decoder.decode(fits, &mut body, 100, 12), Ok(fits.len()));
        let mut decoder = ChunkedDecoder::new();
        assert_eq!(
            decoder.decode(fits, &mut body, 100, 11),
            Err(ParseError::HeadersTooLarge)
        );
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
