//! The decoder side: one `decode` call made owned and checked, and the whole-stream reference.

use evloop::http::decoder::{header_storage, Framing};
use evloop::http::{Decoded, HeadInfo, Limits, Request, RequestDecoder};

/// A request that is well-formed under every limit preset: a decoder that has refused the
/// stream must refuse it too.
pub const GOOD_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

/// One decoded request, owned, in a form two decodings can be compared by.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    /// Method, version, keep-alive, framing, `Expect: 100-continue`.
    pub info: HeadInfo,
    /// The path part of the target.
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    /// The header fields, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The decoded body.
    pub body: Vec<u8>,
}

impl Seen {
    /// Copy what the decoder yielded.
    pub fn of(info: HeadInfo, request: &Request<'_>) -> Seen {
        Seen {
            info,
            path: request.path.to_string(),
            query: request.query.to_string(),
            headers: request
                .headers
                .iter()
                .map(|h| (h.name.to_string(), h.value.to_vec()))
                .collect(),
            body: request.body.clone(),
        }
    }
}

/// What the decoder yields over a stream, in order. (`100 Continue` is left out: whether it is
/// due depends on how the body arrives.)
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete request.
    Request(Seen),
    /// The decoder refused the stream here.
    Rejected,
}

/// One `decode` call, made owned, with the checks every answer must pass.
pub enum Step {
    /// More bytes are needed; the first `consumed` are done with.
    Incomplete {
        consumed: usize,
        send_continue: bool,
    },
    /// A complete request, `consumed` bytes long.
    Request { consumed: usize, seen: Seen },
    /// An error: the decoder refuses the stream from here on.
    Rejected,
}

/// Call `decode` once on `input` and check the answer's invariants: `consumed` within the
/// input and not zero for a request, a body within `--max-body` and of its `Content-Length`.
pub fn step(decoder: &mut RequestDecoder, input: &[u8], limits: &Limits) -> Step {
    let mut storage = header_storage();
    match decoder.decode(input, &mut storage, limits) {
        Ok(Decoded::Incomplete {
            consumed,
            send_continue,
        }) => {
            assert!(consumed <= input.len(), "consumed more than it was given");
            Step::Incomplete {
                consumed,
                send_continue,
            }
        }
        Ok(Decoded::Request {
            consumed,
            info,
            request,
        }) => {
            assert!(
                consumed > 0 && consumed <= input.len(),
                "consumed {consumed}"
            );
            assert!(request.body.is_empty(), "a bodiless request with a body");
            Step::Request {
                consumed,
                seen: Seen::of(info, &request),
            }
        }
        Ok(Decoded::Owned {
            consumed,
            head,
            body,
        }) => {
            assert!(consumed <= input.len(), "consumed {consumed}");
            assert!(body.len() <= limits.max_body, "a body over --max-body");
            if let Framing::Length(n) = head.info.framing {
                assert_eq!(body.len() as u64, n, "a body not of its Content-Length");
            }
            let mut scratch = Vec::new();
            let request = head.request(body, &mut scratch);
            Step::Request {
                consumed,
                seen: Seen::of(head.info, &request),
            }
        }
        // The error's type and status are the decoder's business; that it is final is ours.
        Err(_) => Step::Rejected,
    }
}

/// The reference: the whole stream decoded from one buffer.
pub fn decode_whole(stream: &[u8], limits: &Limits) -> Vec<Event> {
    let mut decoder = RequestDecoder::new();
    let mut events = Vec::new();
    let mut pos = 0;
    loop {
        match step(&mut decoder, &stream[pos..], limits) {
            Step::Incomplete { .. } => return events,
            Step::Request { consumed, seen } => {
                pos += consumed;
                events.push(Event::Request(seen));
            }
            Step::Rejected => {
                events.push(Event::Rejected);
                return events;
            }
        }
    }
}
