//! Server-Sent Events off the wire: one emitted message per chunk of a chunked body, each an
//! optional `retry:` field on its own, then `event: NAME`, one `data:` line and a blank line.

use serde_json::Value;

/// One message of an event stream.
#[derive(Debug)]
pub struct Event {
    /// The `retry:` field sent before the event, if any (ms).
    pub retry: Option<u64>,
    /// The event's name.
    pub name: String,
    /// Its data, parsed as JSON.
    pub data: Value,
}

/// Parse one chunk as one event, checking its exact layout; fails the test otherwise.
pub fn parse(chunk: &[u8]) -> Event {
    let mut text = std::str::from_utf8(chunk).expect("an event is text");
    let mut retry = None;
    if let Some(rest) = text.strip_prefix("retry: ") {
        let (ms, rest) = rest
            .split_once("\n\n")
            .unwrap_or_else(|| panic!("retry not ended by a blank line: {chunk:?}"));
        retry = Some(ms.parse().unwrap_or_else(|e| panic!("retry {ms:?}: {e}")));
        text = rest;
    }
    let rest = text
        .strip_prefix("event: ")
        .unwrap_or_else(|| panic!("not an event: {text:?}"));
    let (name, rest) = rest.split_once('\n').expect("the event line ends");
    let data = rest
        .strip_prefix("data: ")
        .and_then(|rest| rest.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("not one data line then a blank line: {text:?}"));
    assert!(!data.contains('\n'), "one data line: {text:?}");
    let data = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data:?}"));
    Event {
        retry,
        name: name.to_string(),
        data,
    }
}
