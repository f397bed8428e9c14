//! The socket-free request path under arbitrary input, for the `request_path` fuzz target:
//! bytes → [`RequestDecoder`] → replies → [`Pipeline`] → responses, driven the way a connection
//! drives it, with the fuzzer choosing everything a socket, a pool and a clock would.
//!
//! [`RequestDecoder`]: evloop::http::RequestDecoder
//! [`Pipeline`]: evloop::connection::pipeline::Pipeline
//!
//! # The input
//!
//! ```text
//! [ n: u16 little-endian ][ n control bytes ][ the request stream ]
//! ```
//!
//! The control bytes choose, in the order they are needed: the limits, the request timeout, the
//! job queue's capacity (or a closed pool); then for each read, how many bytes of the stream
//! arrive (1–255, or all that is left); for each decoded request, its reply (now, after a timer,
//! one job, a gather of 0–3 parts whose join answers or continues with more work, an event
//! stream) and whether decoding pauses after it, as it does when the pipeline is full; and
//! between reads, what happens next (a job finishes and with what — a response, an error, more
//! work — a timer fires, a paused connection has room again, time passes and deadlines expire,
//! a progress message arrives for a stream or for any other sequence number). Each time the
//! connection collects what is ready, it chooses whether the client is taking what was written,
//! which decides whether a stream's progress may go out. At the end, the client may leave with
//! work outstanding. When the control bytes run out every choice takes its first option: the
//! stream arrives in one read, every request is answered at once, pieces are wanted, and
//! remaining jobs finish in submission order. The seeds in `fuzz/corpus/request_path/` are real
//! request streams behind an empty or short control section.
//!
//! # What is asserted
//!
//! 1. Nothing panics (integer overflow included: fuzz builds keep debug assertions).
//! 2. The decoder yields the same requests, and the same rejection, whatever the reads: the
//!    split run is compared with one decode of the whole stream (with its prefix, once an
//!    HTTP/1.0 stream has made the connection stop reading).
//! 3. After its first error the decoder refuses everything, and nothing more is dispatched.
//!    Requests held while decoding was paused are decoded without a new byte arriving.
//! 4. `100 Continue` is signalled at most once per request, only for a request that asked for
//!    it, and never overtakes an earlier response.
//! 5. Answers leave in exactly request order (each carries its request's number), and every
//!    request gets exactly one final response or one stream — the one a model of the pipeline
//!    predicts: the handler's, the job's, the joined parts in part order or what the join
//!    continued with, the failure of a part, 503 when the queue is full, 504 past the deadline.
//!    Nothing due at the front is held back.
//! 6. A stream leaves as its head, pieces, and one end, with nothing of another request in
//!    between. Pieces go out only when the client is taking them, and each is the newest
//!    progress sent since the previous piece: never an older one, never one twice, none after
//!    the stream's job ended. The end is what the stream's `end` makes of the job's response,
//!    or of the 500, 503 or 504 that replaced it; a failure before the head is an ordinary
//!    response instead. `HEAD` gets the head and an empty end; HTTP/1.0 a close-delimited body, and the
//!    requests behind it are dropped.
//! 7. A job's cancel flag is set exactly when nobody waits for its result any more (a deadline,
//!    a failed sibling, a full queue, a `HEAD` stream's head, a request dropped behind an
//!    HTTP/1.0 stream), and for every job, a running stream's included, when the client leaves.
//! 8. `len`, `has_work_outstanding`, `next_deadline`, `is_sleeping`, `has_unsent_continue` and
//!    `has_piece_waiting` agree with the model after every step (a running stream is work
//!    outstanding).
//!
//! # Layout
//!
//! - [`choices`]: the control bytes, read as choices with defaults;
//! - [`decode`]: one `decode` call made owned and checked; the whole-stream reference;
//! - [`model`]: replies, request fates and streams, and the fake pool and timer heap;
//! - [`connection`]: the connection as the fuzzer drives it, checked against the model: the
//!   work behind the replies in `connection/work.rs`, what leaves the pipeline's front in
//!   `connection/front.rs`.

mod choices;
mod connection;
mod decode;
mod model;

use arbitrary::Unstructured;
use evloop::http::Limits;

use choices::{split_input, Choices};
use connection::Connection;
use decode::decode_whole;

/// Longest request stream tried. Long enough for a pipelined batch of a hundred small requests;
/// short enough that one run takes well under a millisecond.
const MAX_STREAM: usize = 4096;

/// Run one input through the request path (see the crate documentation).
pub fn request_path(data: &[u8]) {
    let (control, stream) = split_input(data);
    if stream.len() > MAX_STREAM {
        return;
    }
    let mut choices = Choices(Unstructured::new(control));
    let limits = [
        Limits::default(),
        Limits {
            max_head_bytes: 256,
            max_headers: 8,
            max_body: 256,
        },
        Limits {
            max_head_bytes: 48,
            max_headers: 2,
            max_body: 8,
        },
    ][choices.below(3)];
    let whole = decode_whole(stream, &limits);

    let mut conn = Connection::new(limits, &mut choices);
    let mut rest = stream;
    while !rest.is_empty() {
        // One read: 1–255 bytes, or (0, and the default) everything left.
        let n = match choices.below(256) {
            0 => rest.len(),
            n => n.min(rest.len()),
        };
        let (read, tail) = rest.split_at(n);
        conn.read(read, &mut choices);
        for _ in 0..choices.below(5) {
            conn.act(&mut choices);
        }
        rest = tail;
    }
    conn.finish(&mut choices);
    if conn.closing {
        // An HTTP/1.0 stream ended the connection's reading: what was decoded before must
        // agree.
        assert!(
            whole.starts_with(&conn.decoded),
            "decoding in reads differs from decoding the whole stream"
        );
    } else {
        assert_eq!(
            conn.decoded, whole,
            "decoding in reads differs from decoding the whole stream"
        );
    }
}
