//! Server-Sent Events framing (the `text/event-stream` format of the HTML standard, §9.2).
//!
//! An event is a few `field: value` lines and an empty line:
//!
//! ```text
//! event: progress
//! data: {"done_ms":200,"total_ms":1000}
//!
//! ```
//!
//! A browser's `EventSource` dispatches it to the listener for `progress`. The data may not
//! hold a line break, so data of several lines becomes several `data:` lines, which the reader
//! joins back with `\n`.

/// One event named `name` carrying `data`, ready to send.
///
/// ```
/// assert_eq!(evloop::http::sse::event("tick", b"1"), b"event: tick\ndata: 1\n\n");
/// assert_eq!(evloop::http::sse::event("two", b"a\nb"), b"event: two\ndata: a\ndata: b\n\n");
/// ```
pub fn event(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + data.len() + 16);
    out.extend_from_slice(b"event: ");
    // A line break in the name would start a field of its own.
    out.extend(name.bytes().filter(|&b| b != b'\r' && b != b'\n'));
    out.push(b'\n');
    // CR LF, a lone CR and a lone LF all end a line in this format.
    let text = data;
    let mut start = 0;
    let mut i = 0;
    while i <= text.len() {
        let end_of_line = i == text.len() || text[i] == b'\n' || text[i] == b'\r';
        if end_of_line {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(&text[start..i]);
            out.push(b'\n');
            if i + 1 < text.len() && text[i] == b'\r' && text[i + 1] == b'\n' {
                i += 1;
            }
            start = i + 1;
        }
        i += 1;
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::event;

    #[test]
    fn every_line_of_data_is_a_data_field() {
        assert_eq!(event("p", b"{}"), b"event: p\ndata: {}\n\n");
        assert_eq!(event("p", b""), b"event: p\ndata: \n\n");
        assert_eq!(
            event("p", b"a\r\nb\rc\nd"),
            b"event: p\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(event("p", b"a\n"), b"event: p\ndata: a\ndata: \n\n");
    }

    #[test]
    fn a_line_break_in_the_name_cannot_start_a_field() {
        assert_eq!(
            event("x\ndata: forged", b"1"),
            b"event: xdata: forged\ndata: 1\n\n"
        );
    }
}
