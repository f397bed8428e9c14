//! One connection's request path without the socket, driven as the fuzzer chooses, and the
//! model that predicts every response. What the work behind the replies does (jobs, timers,
//! progress, deadlines) is in [`work`]; what leaves the pipeline's front is checked in
//! [`front`].

mod front;
mod work;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use evloop::connection::pipeline::{Answer, Pipeline, ResponseMeta};
use evloop::http::{Limits, Method, RequestDecoder, Response, Version};

use crate::choices::Choices;
use crate::decode::{step, Event, Step, GOOD_REQUEST};
use crate::model::{meta, Fate, Plan, Queue, Req};

/// Jobs one run may submit before job continuations stop asking for more work: a job that
/// always continues would otherwise never end.
const JOB_BUDGET: u64 = 256;

/// How many joins deep a gather's continuation may chain more gathers.
const JOIN_DEPTH: usize = 2;

/// One connection's request path without the socket: the held bytes and the decoder, the
/// pipeline and its fake scheduler, and the model of what every response must be.
pub struct Connection {
    /// The limits every `decode` call gets, the same as the whole-stream reference's.
    limits: Limits,
    /// The decoder under test, fed read by read.
    decoder: RequestDecoder,
    /// Bytes read but not yet consumed by the decoder.
    held: Vec<u8>,
    /// What the decoder yielded, for the comparison with the whole-stream decode.
    pub decoded: Vec<Event>,
    /// The decoder has refused the stream: nothing more is dispatched.
    rejected: bool,
    /// The head of an HTTP/1.0 stream is out: its body ends with the connection, which decodes
    /// no more requests (what it decoded is then a prefix of the whole-stream decode).
    pub closing: bool,
    /// The request a `100 Continue` was signalled for, until that request is decoded.
    continue_for: Option<usize>,
    /// Decoding stopped for room (the fuzzer's choice, as a full pipeline makes the connection
    /// stop) with requests possibly left in `held`: the next read or room again resumes it,
    /// with no new byte needed.
    paused: bool,

    /// The pipeline under test.
    pipeline: Pipeline,
    /// Its scheduler: jobs and timers wait here until the fuzzer finishes them.
    queue: Queue,
    /// Every request dispatched (and the refused one, if any), by request number.
    requests: Vec<Req>,
    /// Request number by pipeline sequence number, for the requests that entered the pipeline
    /// through `begin`.
    by_seq: HashMap<u64, usize>,
    /// Entries in the pipeline, by the model's count.
    queued: usize,
    /// The request whose final response (or stream) goes out next.
    next_final: usize,
    /// The last request a `100 Continue` went out for.
    continued: Option<usize>,
    /// The request whose `100 Continue` waits in the pipeline behind earlier responses.
    continue_queued: Option<usize>,
    /// Progress messages sent so far: each message's text is unique, so a piece handed out
    /// twice, or an older one, is told apart from the newest.
    messages: u64,
    /// The model's clock: it moves only when the fuzzer lets time pass.
    now: Instant,
    /// `--request-timeout`: 1–50 ms of the model's clock.
    request_timeout: Duration,
}

impl Connection {
    /// A fresh connection; the fuzzer chooses the request timeout and the queue's capacity
    /// (unbounded, 1, 3 or 8 jobs, or 0: a pool closed by a drain).
    pub fn new(limits: Limits, choices: &mut Choices<'_>) -> Connection {
        let request_timeout = Duration::from_millis(1 + choices.below(50) as u64);
        let capacity = [usize::MAX, 1, 3, 8, 0][choices.below(5)];
        Connection {
            limits,
            decoder: RequestDecoder::new(),
            held: Vec::new(),
            decoded: Vec::new(),
            rejected: false,
            closing: false,
            continue_for: None,
            paused: false,
            pipeline: Pipeline::new(),
            queue: Queue {
                live: Vec::new(),
                timers: Vec::new(),
                submitted: 0,
                refused: 0,
                capacity,
            },
            requests: Vec::new(),
            by_seq: HashMap::new(),
            queued: 0,
            next_final: 0,
            continued: None,
            continue_queued: None,
            messages: 0,
            now: Instant::now(),
            request_timeout,
        }
    }

    /// Bytes arrive: hold them, decode and dispatch the complete requests, keep the rest —
    /// what the connection does after each read.
    pub fn read(&mut self, bytes: &[u8], choices: &mut Choices<'_>) {
        self.held.extend_from_slice(bytes);
        self.decode_held(choices);
    }

    /// Decode and dispatch complete requests from the held bytes until more bytes are needed,
    /// the decoder refuses the stream, or the fuzzer says the pipeline is full.
    fn decode_held(&mut self, choices: &mut Choices<'_>) {
        self.paused = false;
        if self.closing {
            // The connection takes no more requests.
            return;
        }
        if self.rejected {
            let refused = matches!(
                step(&mut self.decoder, &self.held, &self.limits),
                Step::Rejected
            );
            assert!(refused, "the decoder accepted bytes after an error");
            return;
        }
        let mut pos = 0;
        loop {
            match step(&mut self.decoder, &self.held[pos..], &self.limits) {
                Step::Incomplete {
                    consumed,
                    send_continue,
                } => {
                    pos += consumed;
                    if send_continue {
                        let index = self.requests.len();
                        assert_ne!(self.continue_for, Some(index), "a second 100 Continue");
                        self.continue_for = Some(index);
                        self.answer_continue(index);
                    }
                    break;
                }
                Step::Request { consumed, seen } => {
                    pos += consumed;
                    if self.continue_for.take().is_some() {
                        assert!(
                            seen.info.expect_continue,
                            "100 Continue for a request that did not ask for it"
                        );
                    }
                    let head_only = seen.info.method == Method::Head;
                    let http10 = seen.info.version == Version::Http10;
                    self.decoded.push(Event::Request(seen));
                    self.dispatch(head_only, http10, choices);
                    if choices.below(4) == 3 {
                        self.paused = true;
                        break;
                    }
                }
                Step::Rejected => {
                    self.decoded.push(Event::Rejected);
                    self.rejected = true;
                    // The connection answers the refused request, in its place, and stops.
                    let index = self.requests.len();
                    self.requests.push(Req {
                        seq: u64::MAX,
                        deadline: self.now,
                        head_only: false,
                        http10: false,
                        fate: Fate::Answered {
                            status: 400,
                            body: Some("rejected".into()),
                        },
                    });
                    self.answer(index, Response::text(400, "rejected"));
                    break;
                }
            }
        }
        self.held.drain(..pos);
        self.collect(choices);
        self.check();
    }

    /// The handler's reply for the request just decoded, filed the way the connection files it.
    /// `head_only` and `http10` are the request's, as the connection puts them in its metadata.
    fn dispatch(&mut self, head_only: bool, http10: bool, choices: &mut Choices<'_>) {
        let index = self.requests.len();
        let plan = match choices.below(5) {
            0 => Plan::Now(200, format!("{index} now")),
            1 => Plan::After(
                Duration::from_millis(choices.below(20) as u64),
                format!("{index} slept"),
            ),
            2 => Plan::Offload,
            3 => self.gather(index, 0, choices),
            _ => work::stream(choices),
        };
        let deadline = self.now + self.request_timeout;
        // Its sequence number and fate are filled in below, once the reply is filed.
        self.requests.push(Req {
            seq: u64::MAX,
            deadline,
            head_only,
            http10,
            fate: Fate::Sent,
        });
        if let Plan::Now(status, body) = plan {
            self.requests[index].fate = Fate::Answered {
                status,
                body: Some(body.clone()),
            };
            self.answer(index, Response::text_owned(status, body));
            return;
        }
        let seq = self.pipeline.dispatched();
        self.requests[index].seq = seq;
        self.by_seq.insert(seq, index);
        let before = (self.queue.submitted, self.queue.refused);
        self.pipeline.begin(
            plan.reply(index),
            self.meta(index),
            deadline,
            self.now,
            &mut self.queue,
        );
        assert_eq!(self.pipeline.dispatched(), seq + 1);
        self.queued += 1;
        self.requests[index].fate = self.started(index, &plan, before);
    }

    /// The request a job or a timer works for, by its sequence number: one the pipeline began.
    fn request_of(&self, seq: u64) -> usize {
        match self.by_seq.get(&seq) {
            Some(&index) => index,
            None => panic!("work started for sequence number {seq}, which no request has"),
        }
    }

    /// The metadata the connection gives request `index` (a `100 Continue` comes before its
    /// request is decoded, and gets the defaults).
    fn meta(&self, index: usize) -> ResponseMeta {
        let (head_only, http10) = self
            .requests
            .get(index)
            .map_or((false, false), |req| (req.head_only, req.http10));
        meta(index, self.now, head_only, http10)
    }

    /// A ready response: encoded at once when nothing is ahead of it (the hot path), else
    /// queued behind the earlier ones.
    fn answer(&mut self, index: usize, response: Response) {
        if self.pipeline.is_empty() {
            self.pipeline.skip();
            self.sent(Answer::Final(response, self.meta(index)), true);
        } else {
            self.pipeline.push_ready(response, self.meta(index));
            self.queued += 1;
        }
    }

    /// `100 Continue` for request `index`, in its place.
    fn answer_continue(&mut self, index: usize) {
        if self.pipeline.is_empty() {
            self.pipeline.skip();
            self.sent(Answer::Continue(self.meta(index)), true);
        } else {
            self.pipeline.push_continue(self.meta(index));
            self.continue_queued = Some(index);
            self.queued += 1;
        }
    }

    /// One thing happens, as the fuzzer chooses: a job finishes, a timer fires, a paused
    /// connection has room again, time passes, or a stream's job sends progress.
    pub fn act(&mut self, choices: &mut Choices<'_>) {
        match choices.below(5) {
            0 if !self.queue.live.is_empty() => {
                let job = self.queue.live.remove(choices.below(self.queue.live.len()));
                self.complete(job, choices);
            }
            1 if !self.queue.timers.is_empty() => {
                let seq = self
                    .queue
                    .timers
                    .remove(choices.below(self.queue.timers.len()));
                self.fire(seq);
            }
            2 if self.paused => self.decode_held(choices),
            4 => self.progress(choices),
            _ => {
                let step = choices.below(2 * self.request_timeout.as_millis() as usize + 1);
                self.now += Duration::from_millis(step as u64);
                self.expire();
            }
        }
        self.collect(choices);
        self.check();
    }

    /// The stream has ended: let every job finish and every timer fire, in the order the fuzzer
    /// chooses while it has bytes and in submission order after; then everything must have been
    /// answered, once, in order.
    pub fn finish(&mut self, choices: &mut Choices<'_>) {
        // Requests already held are decoded even if no byte comes ("wants read again").
        while self.paused {
            self.decode_held(choices);
        }
        if self.rejected {
            let refused = matches!(
                step(&mut self.decoder, GOOD_REQUEST, &self.limits),
                Step::Rejected
            );
            assert!(refused, "the decoder accepted a request after an error");
        }
        if choices.below(8) == 7 {
            // The client leaves with work outstanding: the connection cancels all of it, a
            // running stream's job included.
            self.pipeline.cancel_all(&mut |_| {});
            let cancelled = self
                .queue
                .live
                .iter()
                .all(|j| j.cancel.load(Ordering::Relaxed));
            assert!(cancelled, "a job left running after cancel_all");
            return;
        }
        // Each round takes a control byte or settles one job or timer, and job continuations
        // stop at JOB_BUDGET, so this ends; the bound only turns a mistake into a failure.
        for _ in 0..100_000 {
            if !self.pipeline.has_work_outstanding() {
                break;
            }
            if !choices.exhausted() {
                self.act(choices);
                continue;
            }
            if !self.queue.live.is_empty() {
                let job = self.queue.live.remove(0);
                self.complete(job, choices);
            } else if let Some(seq) = self.queue.timers.pop() {
                self.fire(seq);
            } else {
                panic!("work outstanding with no job or timer to finish it");
            }
            self.collect(choices);
            self.check();
        }
        // Late results and stale timers of requests already answered change nothing.
        while !self.queue.live.is_empty() {
            let job = self.queue.live.remove(0);
            self.complete(job, choices);
        }
        while let Some(seq) = self.queue.timers.pop() {
            self.fire(seq);
        }
        self.collect(choices);
        self.check();
        assert!(self.pipeline.is_empty(), "requests left unanswered");
        assert_eq!(self.next_final, self.requests.len(), "requests answered");
        let done = |req: &Req| matches!(req.fate, Fate::Sent | Fate::Dropped);
        assert!(self.requests.iter().all(done), "requests answered");
    }
}
