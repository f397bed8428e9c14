//! What leaves the front of the pipeline, checked against the model: every answer in request
//! order, a stream's head, pieces and end together and in that order, each piece the newest
//! progress; nothing due held back; and the pipeline's own view of itself.

use std::sync::atomic::Ordering;

use evloop::connection::pipeline::{Answer, ResponseMeta, StreamBody};

use super::Connection;
use crate::choices::Choices;
use crate::model::{Fate, Req};

impl Connection {
    /// Hand out everything ready at the front, as the connection does before each write. The
    /// fuzzer chooses whether the client is taking what was written: only then may a stream's
    /// progress go out as a piece.
    pub(super) fn collect(&mut self, choices: &mut Choices<'_>) {
        let pieces_wanted = choices.below(2) == 0;
        while let Some(answer) = self.pipeline.next_answer(pieces_wanted) {
            if matches!(
                answer,
                Answer::Continue(_) | Answer::Final(..) | Answer::StreamEnd { .. }
            ) {
                self.queued -= 1; // the answer that pops its entry
            }
            self.sent(answer, pieces_wanted);
        }
        self.nothing_held_back(pieces_wanted);
    }

    /// An answer leaves: it must be the next in request order (a piece: of the stream at the
    /// front), and the one the model expects.
    pub(super) fn sent(&mut self, answer: Answer, pieces_wanted: bool) {
        let meta = match &answer {
            Answer::Piece(piece, body) => return self.piece(piece, *body, pieces_wanted),
            Answer::Continue(meta)
            | Answer::Final(_, meta)
            | Answer::StreamHead(_, meta, _)
            | Answer::StreamEnd { meta, .. } => meta,
        };
        let index = number(meta);
        assert_eq!(
            index, self.next_final,
            "an answer for request {index} while request {} is due (out of order, or inside \
             a stream)",
            self.next_final
        );
        // A 100 Continue comes before its request is decoded: it has no entry yet.
        if let Answer::Continue(_) = answer {
            assert_ne!(
                self.continued,
                Some(index),
                "two 100 Continue for one request"
            );
            self.continued = Some(index);
            if self.continue_queued == Some(index) {
                self.continue_queued = None;
            }
            return;
        }
        let req = &mut self.requests[index];
        match answer {
            Answer::Final(response, _) => {
                match std::mem::replace(&mut req.fate, Fate::Sent) {
                    Fate::Answered { status, body } => {
                        assert_eq!(response.status, status, "request {index}: status");
                        if let Some(body) = body {
                            assert_eq!(
                                String::from_utf8_lossy(response.body.as_bytes()),
                                body,
                                "request {index}: body"
                            );
                        }
                    }
                    fate => panic!("request {index} answered while it is {fate:?}"),
                }
                self.advance();
            }
            Answer::StreamHead(head, meta, body) => {
                let expected = framing(req);
                let Fate::Stream(stream) = &mut req.fate else {
                    panic!(
                        "request {index}: a stream's head while it is {:?}",
                        req.fate
                    );
                };
                assert!(stream.body.is_none(), "request {index}: a second head");
                assert_eq!(
                    head.status, stream.status,
                    "request {index}: the head's status"
                );
                assert_eq!(meta.head_only, req.head_only, "request {index}: head_only");
                assert_eq!(body, expected, "request {index}: the stream's framing");
                stream.body = Some(body);
                match body {
                    StreamBody::Omitted => {
                        // HEAD: nobody reads the body. The job is cancelled (check() sees
                        // its flag), and the end is empty.
                        stream.pending = None;
                        stream.last = Some(Vec::new());
                    }
                    StreamBody::UntilClose => self.close_behind(index),
                    StreamBody::Chunked => {}
                }
            }
            Answer::StreamEnd {
                last,
                body,
                status,
                bytes,
                ..
            } => {
                let Fate::Stream(stream) = &req.fate else {
                    panic!("request {index}: a stream's end while it is {:?}", req.fate);
                };
                assert_eq!(
                    stream.body,
                    Some(body),
                    "request {index}: an end before the head"
                );
                let Some(expected) = &stream.last else {
                    panic!("request {index}: an end while the stream's job still runs");
                };
                assert_eq!(
                    String::from_utf8_lossy(&last),
                    String::from_utf8_lossy(expected),
                    "request {index}: the stream's last piece"
                );
                assert_eq!(status, stream.status, "request {index}: the end's status");
                assert_eq!(
                    bytes,
                    stream.bytes + last.len(),
                    "request {index}: body bytes"
                );
                req.fate = Fate::Sent;
                self.advance();
            }
            Answer::Continue(_) | Answer::Piece(..) => unreachable!("handled above"),
        }
    }

    /// A piece of the stream at the front leaves: only while pieces are wanted, after the head
    /// and before the end, and only the newest progress sent since the previous piece.
    fn piece(&mut self, piece: &[u8], body: StreamBody, pieces_wanted: bool) {
        let index = self.next_final;
        assert!(
            pieces_wanted,
            "request {index}: a piece while the client is not taking them"
        );
        let Some(Req {
            fate: Fate::Stream(stream),
            ..
        }) = self.requests.get_mut(index)
        else {
            panic!("a piece while request {index}, not a stream, is due");
        };
        let Some(framing) = stream.body else {
            panic!("request {index}: a piece before the stream's head");
        };
        assert_eq!(body, framing, "request {index}: a piece's framing");
        assert!(
            stream.is_running(),
            "request {index}: a piece after the stream ended"
        );
        assert_eq!(
            stream
                .pending
                .take()
                .as_deref()
                .map(String::from_utf8_lossy),
            Some(String::from_utf8_lossy(piece)),
            "request {index}: a piece that is not the newest progress since the last piece"
        );
        stream.bytes += piece.len();
    }

    /// Request `index`'s HTTP/1.0 stream has its head out: its body ends with the connection,
    /// so the connection drops every request behind it and decodes no more.
    fn close_behind(&mut self, index: usize) {
        self.pipeline.abandon_behind_front(&mut |_| {});
        for req in &mut self.requests[index + 1..] {
            req.fate = Fate::Dropped;
        }
        self.continue_queued = None;
        self.queued = 1;
        self.closing = true;
    }

    /// The request at the front is done: the next one is due.
    fn advance(&mut self) {
        self.next_final += 1;
        while matches!(
            self.requests.get(self.next_final),
            Some(Req {
                fate: Fate::Dropped,
                ..
            })
        ) {
            self.next_final += 1;
        }
    }

    /// `next_answer` said nothing is ready: the model must agree. A response, a stream's head
    /// and its end are due whenever their request is at the front; a piece when pieces are
    /// wanted too.
    fn nothing_held_back(&self, pieces_wanted: bool) {
        let index = self.next_final;
        assert_ne!(
            self.continue_queued,
            Some(index),
            "request {index}: its 100 Continue is at the front but was held back"
        );
        let Some(req) = self.requests.get(index) else {
            return;
        };
        let due = match &req.fate {
            Fate::Answered { .. } => "its response",
            Fate::Stream(stream) if stream.body.is_none() => "its stream's head",
            Fate::Stream(stream) if stream.last.is_some() => "its stream's end",
            Fate::Stream(stream) if pieces_wanted && stream.pending.is_some() => "a piece",
            _ => return,
        };
        panic!("request {index}: {due} is due at the front but was held back");
    }

    /// The pipeline's view agrees with the model's, and cancel flags with who still waits.
    pub(super) fn check(&self) {
        assert_eq!(self.pipeline.len(), self.queued, "pipeline length");
        let waiting = self.requests.iter().filter(|r| r.fate.is_waiting());
        assert_eq!(
            self.pipeline.has_work_outstanding(),
            waiting.clone().next().is_some(),
            "work outstanding"
        );
        assert_eq!(
            self.pipeline.next_deadline(),
            waiting.clone().map(|r| r.deadline).min(),
            "next deadline"
        );
        for req in waiting {
            let sleeping = matches!(req.fate, Fate::Timer { .. });
            assert_eq!(self.pipeline.is_sleeping(req.seq), sleeping, "{req:?}");
        }
        assert_eq!(
            self.pipeline.has_unsent_continue(),
            self.continue_queued.is_some(),
            "a 100 Continue waiting"
        );
        let piece_waiting = matches!(
            self.requests.get(self.next_final),
            Some(Req { fate: Fate::Stream(stream), .. })
                if stream.body.is_some() && stream.pending.is_some()
        );
        assert_eq!(
            self.pipeline.has_piece_waiting(),
            piece_waiting,
            "a piece waiting"
        );
        for job in &self.queue.live {
            let wanted = self.requests[self.request_of(job.seq)].fate.wants(job.id);
            assert_eq!(
                job.cancel.load(Ordering::Relaxed),
                !wanted,
                "cancel flag of {job:?}"
            );
        }
    }
}

/// The request number an answer's metadata carries.
fn number(meta: &ResponseMeta) -> usize {
    meta.log
        .as_ref()
        .and_then(|log| log.1.parse().ok())
        .expect("every response carries its request's number")
}

/// How request `req`'s stream body must be framed: not at all for `HEAD`, until the
/// connection closes for HTTP/1.0, chunked otherwise.
fn framing(req: &Req) -> StreamBody {
    if req.head_only {
        StreamBody::Omitted
    } else if req.http10 {
        StreamBody::UntilClose
    } else {
        StreamBody::Chunked
    }
}
