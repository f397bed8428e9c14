//! The character classes of the HTTP and URI grammars, as byte predicates.
//!
//! Each function is one rule of RFC 3986 §2 (the characters of a URI), named as the RFC names
//! it, so a parser can be read against the ABNF it implements.

/// `unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"` (RFC 3986 §2.3).
pub fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// `sub-delims = "!" / "$" / "&" / "'" / "(" / ")" / "*" / "+" / "," / ";" / "="`
/// (RFC 3986 §2.2).
pub fn is_sub_delim(byte: u8) -> bool {
    b"!$&'()*+,;=".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The classes agree with the RFC's lists on every byte.
    #[test]
    fn classes_match_the_grammars() {
        let uri: Vec<u8> = (0..=255u8)
            .filter(|&b| is_unreserved(b) || is_sub_delim(b))
            .collect();
        assert_eq!(uri.len(), 62 + 4 + 11);
    }
}
