//! One connection's request path without the socket, driven as the fuzzer chooses, and the
//! model that predicts every response.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use evloop::connection::pipeline::{Answer, JobOutput, Pipeline};
use evloop::error::Error;
use evloop::http::{Limits, RequestDecoder, Response};
use evloop::router::Reply;

use crate::choices::Choices;
use crate::decode::{step, Event, Step, GOOD_REQUEST};
use crate::model::{joined, meta, Fate, Job, Plan, Queue, Req};

/// Jobs one run may submit before job continuations stop asking for more work: a job that
/// always continues would otherwise never end.
const JOB_BUDGET: u64 = 256;

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
    /// The request whose final response goes out next.
    next_final: usize,
    /// The last request a `100 Continue` went out for.
    continued: Option<usize>,
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
            self.sent(Answer::Final(response, meta(index, self.now)));
        } else {
            self.pipeline.push_ready(response, meta(index, self.now));
            self.queued += 1;
        }
    }

    /// `100 Continue` for request `index`, in its place.
    fn answer_continue(&mut self, index: usize) {
        if self.pipeline.is_empty() {
            self.pipeline.skip();
            self.sent(Answer::Continue(meta(index, self.now)));
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

    /// One thing happens, as the fuzzer chooses: a job finishes, a timer fires, a paused
    /// connection has room again, or time passes.
    pub fn act(&mut self, choices: &mut Choices<'_>) {
        match choices.below(4) {
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
        // A gather's part answers with a value, or with the response that fails the request.
        let is_part = matches!(
            &self.requests[index].fate,
            Fate::Jobs { parts: Some(_), .. }
        );
        let outcome = match &end {
            End::Respond(status, body) => {
                let response = Response::text_owned(*status, body.clone());
                Ok(match (is_part, *status < 400) {
                    (false, _) => JobOutput::Reply(Reply::Now(response)),
                    (true, true) => JobOutput::Part(Ok(Box::new(body.clone()))),
                    (true, false) => JobOutput::Part(Err(response)),
                })
            }
            End::Fail(err) => Err(err.clone()),
            End::More(plan) => Ok(JobOutput::Reply(plan.reply(index))),
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
        while let Some(answer) = self.pipeline.next_answer(true) {
            self.queued -= 1;
            self.sent(answer);
        }
    }

    /// A response leaves: it must be the next in request order, and the one the model expects.
    fn sent(&mut self, answer: Answer) {
        let meta = match &answer {
            Answer::Continue(meta) | Answer::Final(_, meta) => meta,
            other => panic!("the model starts no stream, yet the pipeline sent {other:?}"),
        };
        let index: usize = meta
            .log
            .as_ref()
            .and_then(|log| log.1.parse().ok())
            .expect("every response carries its request's number");
        assert_eq!(index, self.next_final, "a response out of request order");
        let response = match answer {
            Answer::Continue(_) => {
                assert_ne!(
                    self.continued,
                    Some(index),
                    "two 100 Continue for one request"
                );
                self.continued = Some(index);
                return;
            }
            Answer::Final(response, _) => response,
            _ => unreachable!("matched above"),
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
            // The client leaves with work outstanding: the connection cancels all of it.
            self.pipeline.cancel_all();
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
