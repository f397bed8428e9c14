//! The character classes of the HTTP and URI grammars, as byte predicates.
//!
//! Each function is one rule of RFC 9110 §5.6 (tokens, field values, quoted strings) or
//! RFC 3986 §2 (the characters of a URI), named as the RFC names it, so a parser can be read
//! against the ABNF it implements.

/// `tchar` (RFC 9110 §5.6.2): the bytes of a token — a method, a field name, a chunk-extension
/// name or value.
///
/// ```text
/// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|"
///       / "~" / DIGIT / ALPHA
/// ```
pub fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// `SP / HTAB`: the whitespace of `OWS` and `BWS` (RFC 9110 §5.6.3).
pub fn is_ows(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// `field-vchar = VCHAR / obs-text` (RFC 9110 §5.5): a visible byte of a field value. Inside a
/// value, SP and HTAB are allowed too; CR, LF, NUL, DEL and the other controls never are.
pub fn is_field_vchar(byte: u8) -> bool {
    matches!(byte, 0x21..=0x7E | 0x80..=0xFF)
}

/// `qdtext` (RFC 9110 §5.6.4): a byte that stands for itself inside a quoted string (anything
/// visible but `"` and `\`, plus SP and HTAB).
pub fn is_qdtext(byte: u8) -> bool {
    matches!(byte, b'\t' | b' ' | 0x21 | 0x23..=0x5B | 0x5D..=0x7E | 0x80..=0xFF)
}

/// The byte after `\` in a `quoted-pair` (RFC 9110 §5.6.4): `HTAB / SP / VCHAR / obs-text`.
pub fn is_quoted_pair_char(byte: u8) -> bool {
    is_ows(byte) || is_field_vchar(byte)
}

/// `unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"` (RFC 3986 §2.3).
pub fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// `sub-delims = "!" / "$" / "&" / "'" / "(" / ")" / "*" / "+" / "," / ";" / "="`
/// (RFC 3986 §2.2).
pub fn is_sub_delim(byte: u8) -> bool {
    b"!$&'()*+,;=".contains(&byte)
}

/// `HTTP/d.d` or `HTTP/d`: the shape of an HTTP version, well-formed or not one we speak.
/// httparse reports `HTTP/2` and a line that is no HTTP at all alike, as a version error; this
/// tells a version we do not speak (505 for a request, refused for a response) from garbage.
pub fn is_http_version_shape(token: &[u8]) -> bool {
    match token {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] => {
            major.is_ascii_digit() && minor.is_ascii_digit()
        }
        [b'H', b'T', b'T', b'P', b'/', major] => major.is_ascii_digit(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The classes agree with the RFCs' lists on every byte.
    #[test]
    fn classes_match_the_grammars() {
        let tchars: Vec<u8> = (0..=255u8).filter(|&b| is_tchar(b)).collect();
        assert_eq!(tchars.len(), 10 + 52 + 15);
        for byte in [
            b' ', b'"', b'(', b')', b',', b'/', b':', b';', b'=', b'@', 0x7F, 0x80,
        ] {
            assert!(!is_tchar(byte), "{byte:#x}");
        }
        for byte in [0x00, b'\t', b'\r', b'\n', b' ', 0x7F] {
            assert!(!is_field_vchar(byte), "{byte:#x}");
        }
        assert!(is_field_vchar(0xE9));
        assert!(!is_qdtext(b'"') && !is_qdtext(b'\\') && !is_qdtext(0x7F) && !is_qdtext(0));
        assert!(is_qdtext(b'\t') && is_qdtext(b' ') && is_qdtext(b'!') && is_qdtext(0xFF));
        assert!(is_quoted_pair_char(b'"') && is_quoted_pair_char(b'\\'));
        assert!(!is_quoted_pair_char(b'\r') && !is_quoted_pair_char(0));
        let uri: Vec<u8> = (0..=255u8)
            .filter(|&b| is_unreserved(b) || is_sub_delim(b))
            .collect();
        assert_eq!(uri.len(), 62 + 4 + 11);
    }
}
