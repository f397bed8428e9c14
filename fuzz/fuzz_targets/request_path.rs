//! The socket-free request path under arbitrary input: bytes → [`RequestDecoder`] → replies →
//! [`Pipeline`] → responses, driven the way a connection drives it, with the fuzzer choosing
//! everything a socket, a pool and a clock would.
//!
//! # The input
//!
//! ```text
//! [ n: u16 little-endian ][ n control bytes ][ the request stream ]
//! ```
//!
//! The control bytes choose, in the order they are needed: the limits, the request timeout, the
//! job queue's capacity; then for each read, how many bytes of the stream arrive; for each
//! decoded request, its reply (now, after a timer, one job, a gather of parts); and between
//! reads, what happens next (a job finishes and with what, a timer fires, time passes). When
//! they run out every choice takes its first option: the stream arrives in one read, and every
//! request is answered at once. The seeds in `corpus/request_path/` are real request streams
//! behind an empty or short control section.
//!
//! # What is asserted
//!
//! 1. Nothing panics (integer overflow included: fuzz builds keep debug assertions).
//! 2. The decoder yields the same requests, and the same rejection, whatever the reads: the
//!    split run is compared with one decode of the whole stream.
//! 3. After its first error the decoder refuses everything, and nothing more is dispatched.
//! 4. `100 Continue` is signalled at most once per request, only for a request that asked for
//!    it, and never overtakes an earlier response.
//! 5. Responses leave in exactly request order (each carries its request's number), and every
//!    request gets exactly one final response — the one a model of the pipeline predicts: the
//!    handler's, the job's, the joined parts in part order, the failure of a part, 503 when the
//!    queue is full, 504 past the deadline.
//! 6. A job's cancel flag is set exactly when nobody waits for its result any more.
//! 7. `len`, `has_work_outstanding`, `next_deadline` and `is_sleeping` agree with the model
//!    after every step.

#![no_main]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

use evloop::connection::pipeline::{Answer, Pipeline, ResponseMeta, Scheduler};
use evloop::error::Error;
use evloop::http::decoder::header_storage;
use evloop::http::{Decoded, HeadInfo, Limits, Request, RequestDecoder, Response};
use evloop::pool::{SubmitError, Work};
use evloop::router::Reply;

/// Longest request stream tried. Long enough for a pipelined batch of a hundred small requests;
/// short enough that one run takes well under a millisecond.
const MAX_STREAM: usize = 4096;

/// Jobs one run may submit before job continuations stop asking for more work: a job that
/// always continues would otherwise never end.
const JOB_BUDGET: u64 = 256;

/// A request that is well-formed under every limit preset: a rejected decoder must refuse it.
const GOOD_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
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
    assert_eq!(
        conn.decoded, whole,
        "decoding in reads differs from decoding the whole stream"
    );
}

/// Cut the input into its control section and the request stream.
fn split_input(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return (&[], data);
    };
    let n = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    rest.split_at(n)
}

/// The fuzzer's choices. When the bytes run out, every choice is its first option.
struct Choices<'a>(Unstructured<'a>);

impl Choices<'_> {
    /// A number in `0..n` (0 when `n` is 0 or the bytes are spent).
    fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        self.0.int_in_range(0..=n - 1).unwrap_or(0)
    }

    fn exhausted(&self) -> bool {
        self.0.is_empty()
    }
}

// ----- the decoder side ---------------------------------------------------------------------

/// One decoded request, owned, in a form two decodings can be compared by.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    info: HeadInfo,
    path: String,
    query: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Seen {
    fn of(info: HeadInfo, request: &Request<'_>) -> Seen {
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
enum Event {
    Request(Seen),
    Rejected,
}

/// One `decode` call, made owned, with the checks every answer must pass.
enum Step {
    Incomplete {
        consumed: usize,
        send_continue: bool,
    },
    Request {
        consumed: usize,
        seen: Seen,
    },
    Rejected,
}

fn step(decoder: &mut RequestDecoder, input: &[u8], limits: &Limits) -> Step {
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
            if let evloop::http::decoder::Framing::Length(n) = head.info.framing {
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
fn decode_whole(stream: &[u8], limits: &Limits) -> Vec<Event> {
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

// ----- the pipeline side --------------------------------------------------------------------

/// What a handler or a job answers, as the fuzzer chose it.
#[derive(Debug)]
enum Plan {
    /// A response now.
    Now(u16, String),
    /// A response after a timer.
    After(Duration, String),
    /// One pool job.
    Offload,
    /// A gather of this many parts.
    Gather(usize),
}

impl Plan {
    /// The [`Reply`] for request `index`. The work inside is never run: the fuzzer decides what
    /// each job returns when it completes it.
    fn reply(&self, index: usize) -> Reply {
        match self {
            Plan::Now(status, body) => Reply::Now(Response::text_owned(*status, body.clone())),
            Plan::After(delay, body) => {
                Reply::After(*delay, Response::text_owned(200, body.clone()))
            }
            Plan::Offload => Reply::Offload(Box::new(|_| Reply::Now(Response::text(200, "")))),
            Plan::Gather(n) => {
                let parts: Vec<Work<Response>> = (0..*n)
                    .map(|_| -> Work<Response> { Box::new(|_| Response::text(200, "")) })
                    .collect();
                Reply::gather(parts, move |parts: Vec<Response>| {
                    let bodies: Vec<String> = parts
                        .iter()
                        .map(|p| String::from_utf8_lossy(p.body.as_bytes()).into_owned())
                        .collect();
                    Response::text_owned(200, joined(index, &bodies))
                })
            }
        }
    }
}

/// The body a gather's join builds: the request's number, then the parts in part order.
fn joined(index: usize, parts: &[String]) -> String {
    let mut body = format!("{index} gather");
    for part in parts {
        body.push(' ');
        body.push_str(part);
    }
    body
}

/// Where a request's final response is, as the model sees it.
#[derive(Debug)]
enum Fate {
    /// Waiting for these jobs; for a gather, the parts' bodies so far, by part.
    Jobs {
        ids: Vec<u64>,
        parts: Option<Vec<Option<String>>>,
    },
    /// Waiting for its timer; then this body.
    Timer { body: String },
    /// Ready: this status, and this body unless it is an error document.
    Answered { status: u16, body: Option<String> },
    /// Handed out.
    Sent,
}

/// A dispatched request.
#[derive(Debug)]
struct Req {
    /// Its pipeline sequence number.
    seq: u64,
    deadline: Instant,
    fate: Fate,
}

/// A job the fake pool holds until the fuzzer completes it.
#[derive(Debug)]
struct Job {
    /// Submission order; a request's current jobs are named by it.
    id: u64,
    seq: u64,
    part: usize,
    /// A gather's part (it can only return a response) rather than a job of its own.
    in_gather: bool,
    cancel: Arc<AtomicBool>,
}

/// The pool and the timer heap, as lists the fuzzer empties in any order.
struct Queue {
    /// Submitted and not yet completed.
    live: Vec<Job>,
    /// Sequence numbers of armed timers not yet fired. The fuzzer fires them in any order.
    timers: Vec<u64>,
    /// Jobs submitted so far (the next job's id).
    submitted: u64,
    /// Submissions refused because `live` was at `capacity`.
    refused: u64,
    capacity: usize,
}

impl Scheduler for Queue {
    fn submit(
        &mut self,
        seq: u64,
        part: usize,
        _work: Work<Reply>,
    ) -> Result<Arc<AtomicBool>, SubmitError> {
        if self.live.len() >= self.capacity {
            self.refused += 1;
            return Err(SubmitError::Full);
        }
        let cancel = Arc::new(AtomicBool::new(false));
        self.live.push(Job {
            id: self.submitted,
            seq,
            part,
            in_gather: false,
            cancel: Arc::clone(&cancel),
        });
        self.submitted += 1;
        Ok(cancel)
    }

    fn wake_at(&mut self, _at: Instant, seq: u64) {
        self.timers.push(seq);
    }
}

/// One connection's request path without the socket: the held bytes and the decoder, the
/// pipeline and its fake scheduler, and the model of what every response must be.
struct Connection {
    limits: Limits,
    decoder: RequestDecoder,
    /// Bytes read but not yet consumed by the decoder.
    held: Vec<u8>,
    /// What the decoder yielded, for the comparison with the whole-stream decode.
    decoded: Vec<Event>,
    /// The decoder has refused the stream: nothing more is dispatched.
    rejected: bool,
    /// The request a `100 Continue` was signalled for, until that request is decoded.
    continue_for: Option<usize>,

    pipeline: Pipeline,
    queue: Queue,
    requests: Vec<Req>,
    by_seq: HashMap<u64, usize>,
    /// Entries in the pipeline, by the model's count.
    queued: usize,
    /// The request whose final response goes out next.
    next_final: usize,
    /// The last request a `100 Continue` went out for.
    continued: Option<usize>,
    now: Instant,
    request_timeout: Duration,
}

impl Connection {
    fn new(limits: Limits, choices: &mut Choices<'_>) -> Connection {
        let request_timeout = Duration::from_millis(1 + choices.below(50) as u64);
        let capacity = [usize::MAX, 1, 3, 8][choices.below(4)];
        Connection {
            limits,
            decoder: RequestDecoder::new(),
            held: Vec::new(),
            decoded: Vec::new(),
            rejected: false,
            continue_for: None,
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
            now: Instant::now(),
            request_timeout,
        }
    }

    /// Bytes arrive: hold them, decode and dispatch every complete request, keep the rest —
    /// what the connection does after each read.
    fn read(&mut self, bytes: &[u8], choices: &mut Choices<'_>) {
        self.held.extend_from_slice(bytes);
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
                    self.decoded.push(Event::Request(seen));
                    self.dispatch(choices);
                }
                Step::Rejected => {
                    self.decoded.push(Event::Rejected);
                    self.rejected = true;
                    // The connection answers the refused request, in its place, and stops.
                    let index = self.requests.len();
                    self.requests.push(Req {
                        seq: u64::MAX,
                        deadline: self.now,
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
        self.collect();
        self.check();
    }

    /// The handler's reply for the request just decoded, filed the way the connection files it.
    fn dispatch(&mut self, choices: &mut Choices<'_>) {
        let index = self.requests.len();
        let plan = match choices.below(4) {
            0 => Plan::Now(200, format!("{index} now")),
            1 => Plan::After(
                Duration::from_millis(choices.below(20) as u64),
                format!("{index} slept"),
            ),
            2 => Plan::Offload,
            _ => Plan::Gather(choices.below(4)),
        };
        let deadline = self.now + self.request_timeout;
        if let Plan::Now(status, body) = plan {
            self.requests.push(Req {
                seq: u64::MAX,
                deadline,
                fate: Fate::Answered {
                    status,
                    body: Some(body.clone()),
                },
            });
            self.answer(index, Response::text_owned(status, body));
            return;
        }
        let seq = self.pipeline.dispatched();
        self.requests.push(Req {
            seq,
            deadline,
            fate: Fate::Sent,
        });
        self.by_seq.insert(seq, index);
        let before = (self.queue.submitted, self.queue.refused);
        self.pipeline.begin(
            plan.reply(index),
            meta(index, self.now),
            deadline,
            self.now,
            &mut self.queue,
        );
        assert_eq!(self.pipeline.dispatched(), seq + 1);
        self.queued += 1;
        self.requests[index].fate = self.started(index, &plan, before);
    }

    /// A ready response: encoded at once when nothing is ahead of it (the hot path), else
    /// queued behind the earlier ones.
    fn answer(&mut self, index: usize, response: Response) {
        if self.pipeline.is_empty() {
            self.pipeline.skip();
            self.sent(Answer::Final(response), meta(index, self.now));
        } else {
            self.pipeline.push_ready(response, meta(index, self.now));
            self.queued += 1;
        }
    }

    /// `100 Continue` for request `index`, in its place.
    fn answer_continue(&mut self, index: usize) {
        if self.pipeline.is_empty() {
            self.pipeline.skip();
            self.sent(Answer::Continue, meta(index, self.now));
        } else {
            self.pipeline.push_continue(meta(index, self.now));
            self.queued += 1;
        }
    }

    /// The model's fate for request `index` once the pipeline has started `plan`. `before` is
    /// the queue's (submitted, refused) counts just before.
    fn started(&mut self, index: usize, plan: &Plan, before: (u64, u64)) -> Fate {
        let (first_new, refused_before) = before;
        let new_ids: Vec<u64> = (first_new..self.queue.submitted).collect();
        let in_gather = matches!(plan, Plan::Gather(_));
        for job in self.queue.live.iter_mut().filter(|j| j.id >= first_new) {
            job.in_gather = in_gather;
        }
        match plan {
            Plan::Now(status, body) => Fate::Answered {
                status: *status,
                body: Some(body.clone()),
            },
            Plan::After(_, body) => Fate::Timer { body: body.clone() },
            Plan::Gather(0) => Fate::Answered {
                status: 200,
                body: Some(joined(index, &[])),
            },
            _ if self.queue.refused > refused_before => Fate::Answered {
                status: 503,
                body: None,
            },
            Plan::Offload => Fate::Jobs {
                ids: new_ids,
                parts: None,
            },
            Plan::Gather(n) => Fate::Jobs {
                ids: new_ids,
                parts: Some(vec![None; *n]),
            },
        }
    }

    /// One thing happens, as the fuzzer chooses: a job finishes, a timer fires, or time passes.
    fn act(&mut self, choices: &mut Choices<'_>) {
        match choices.below(3) {
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
            _ => {
                let step = choices.below(2 * self.request_timeout.as_millis() as usize + 1);
                self.now += Duration::from_millis(step as u64);
                self.expire();
            }
        }
        self.collect();
        self.check();
    }

    /// `job` finishes, returning what the fuzzer chooses.
    fn complete(&mut self, job: Job, choices: &mut Choices<'_>) {
        let index = self.by_seq[&job.seq];
        let failed = |choices: &mut Choices<'_>| [400, 404, 500, 503][choices.below(4)];
        // What the job returns: a response, a failure, or (for a job of its own) more work.
        enum End {
            Respond(u16, String),
            Fail(Error),
            More(Plan),
        }
        let kinds = if job.in_gather { 4 } else { 7 };
        let end = match choices.below(kinds) {
            0 if job.in_gather => End::Respond(200, format!("p{}", job.part)),
            0 => End::Respond(200, format!("{index} job")),
            1 => End::Respond(failed(choices), format!("{index} failed")),
            2 => End::Fail(Error::JobPanicked),
            3 => End::Fail(Error::Unavailable),
            _ if self.queue.submitted >= JOB_BUDGET => End::Respond(200, format!("{index} job")),
            4 => End::More(Plan::After(
                Duration::from_millis(choices.below(20) as u64),
                format!("{index} slept"),
            )),
            5 => End::More(Plan::Offload),
            _ => End::More(Plan::Gather(choices.below(4))),
        };
        let outcome = match &end {
            End::Respond(status, body) => {
                Ok(Reply::Now(Response::text_owned(*status, body.clone())))
            }
            End::Fail(err) => Err(err.clone()),
            End::More(plan) => Ok(plan.reply(index)),
        };
        let wanted =
            matches!(&self.requests[index].fate, Fate::Jobs { ids, .. } if ids.contains(&job.id));
        let before = (self.queue.submitted, self.queue.refused);
        let timers = self.queue.timers.len();
        self.pipeline.complete(
            job.seq,
            job.part,
            outcome,
            Duration::ZERO,
            self.now,
            &mut self.queue,
        );
        if !wanted {
            // Nobody waits for it (its request timed out, failed, or was answered): dropped.
            assert_eq!(self.queue.submitted, before.0, "a late result started work");
            assert_eq!(
                self.queue.timers.len(),
                timers,
                "a late result armed a timer"
            );
            return;
        }
        if let End::More(plan) = end {
            // A continuation: the request waits again, on whatever the job started.
            self.requests[index].fate = self.started(index, &plan, before);
            return;
        }
        let Fate::Jobs { parts, .. } = &mut self.requests[index].fate else {
            unreachable!("wanted means waiting for jobs");
        };
        let fate = match (end, parts) {
            (End::Respond(status, body), Some(parts)) if status < 400 => {
                parts[job.part] = Some(body);
                if parts.iter().all(Option::is_some) {
                    let bodies: Vec<String> = parts.iter().flatten().cloned().collect();
                    Fate::Answered {
                        status: 200,
                        body: Some(joined(index, &bodies)),
                    }
                } else {
                    return; // still waiting for the other parts
                }
            }
            (End::Respond(status, body), _) => Fate::Answered {
                status,
                body: Some(body),
            },
            (End::Fail(err), _) => Fate::Answered {
                status: err.status(),
                body: None,
            },
            (End::More(_), _) => unreachable!("handled above"),
        };
        self.requests[index].fate = fate;
    }

    /// The timer of request `seq` fires.
    fn fire(&mut self, seq: u64) {
        self.pipeline.on_timer(seq);
        let req = &mut self.requests[self.by_seq[&seq]];
        if let Fate::Timer { body } = &mut req.fate {
            let body = std::mem::take(body);
            req.fate = Fate::Answered {
                status: 200,
                body: Some(body),
            };
        }
    }

    /// The request deadlines that have passed answer 504.
    fn expire(&mut self) {
        let mut expected = 0;
        for req in &mut self.requests {
            let waiting = matches!(req.fate, Fate::Jobs { .. } | Fate::Timer { .. });
            if waiting && req.deadline <= self.now {
                req.fate = Fate::Answered {
                    status: 504,
                    body: None,
                };
                expected += 1;
            }
        }
        assert_eq!(self.pipeline.expire(self.now), expected, "expired requests");
    }

    /// Hand out every response ready at the front, as the connection does before each write.
    fn collect(&mut self) {
        while let Some((answer, meta)) = self.pipeline.pop_ready() {
            self.queued -= 1;
            self.sent(answer, meta);
        }
    }

    /// A response leaves: it must be the next in request order, and the one the model expects.
    fn sent(&mut self, answer: Answer, meta: ResponseMeta) {
        let index: usize = meta
            .log
            .as_ref()
            .and_then(|log| log.1.parse().ok())
            .expect("every response carries its request's number");
        assert_eq!(index, self.next_final, "a response out of request order");
        let response = match answer {
            Answer::Continue => {
                assert_ne!(
                    self.continued,
                    Some(index),
                    "two 100 Continue for one request"
                );
                self.continued = Some(index);
                return;
            }
            Answer::Final(response) => response,
        };
        let req = &mut self.requests[index];
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
        self.next_final += 1;
    }

    /// The pipeline's view agrees with the model's, and cancel flags with who still waits.
    fn check(&self) {
        assert_eq!(self.pipeline.len(), self.queued, "pipeline length");
        let waiting = self
            .requests
            .iter()
            .filter(|r| matches!(r.fate, Fate::Jobs { .. } | Fate::Timer { .. }));
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
        for job in &self.queue.live {
            let wanted = matches!(
                &self.requests[self.by_seq[&job.seq]].fate,
                Fate::Jobs { ids, .. } if ids.contains(&job.id)
            );
            assert_eq!(
                job.cancel.load(Ordering::Relaxed),
                !wanted,
                "cancel flag of {job:?}"
            );
        }
    }

    /// The stream has ended: let every job finish and every timer fire, in the order the fuzzer
    /// chooses while it has bytes and in submission order after; then everything must have been
    /// answered, once, in order.
    fn finish(&mut self, choices: &mut Choices<'_>) {
        if self.rejected {
            let refused = matches!(
                step(&mut self.decoder, GOOD_REQUEST, &self.limits),
                Step::Rejected
            );
            assert!(refused, "the decoder accepted a request after an error");
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
            self.collect();
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
        self.collect();
        assert!(self.pipeline.is_empty(), "requests left unanswered");
        assert_eq!(self.next_final, self.requests.len(), "requests answered");
        assert!(self.requests.iter().all(|r| matches!(r.fate, Fate::Sent)));
    }
}

/// The response metadata for request `index`. The access-log field carries the request's
/// number, so every response that leaves says which request it answers.
fn meta(index: usize, now: Instant) -> ResponseMeta {
    ResponseMeta {
        head_only: false,
        http10_keep_alive: false,
        close: false,
        started: now,
        queued: Duration::ZERO,
        log: Some(Box::new(("fuzz", index.to_string()))),
    }
}
