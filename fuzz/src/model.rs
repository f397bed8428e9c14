//! The model's vocabulary: what a handler or a job answers ([`Plan`]), where each request's
//! response is ([`Fate`]), and the fake pool and timer heap the pipeline schedules on
//! ([`Queue`]).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use evloop::connection::pipeline::{JobOutput, ResponseMeta, Scheduler};
use evloop::http::Response;
use evloop::pool::{SubmitError, Work};
use evloop::router::Reply;

/// What a handler or a job answers, as the fuzzer chose it.
#[derive(Debug)]
pub enum Plan {
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
    pub fn reply(&self, index: usize) -> Reply {
        match self {
            Plan::Now(status, body) => Reply::Now(Response::text_owned(*status, body.clone())),
            Plan::After(delay, body) => {
                Reply::After(*delay, Response::text_owned(200, body.clone()))
            }
            Plan::Offload => Reply::Offload(Box::new(|_| Reply::Now(Response::text(200, "")))),
            Plan::Gather(n) => {
                let parts: Vec<Work<Result<String, Response>>> = (0..*n)
                    .map(|_| -> Work<Result<String, Response>> { Box::new(|_| Ok(String::new())) })
                    .collect();
                Reply::gather(parts, move |bodies: Vec<String>| {
                    Response::text_owned(200, joined(index, &bodies))
                })
            }
        }
    }
}

/// The body a gather's join builds: the request's number, then the parts in part order.
pub fn joined(index: usize, parts: &[String]) -> String {
    let mut body = format!("{index} gather");
    for part in parts {
        body.push(' ');
        body.push_str(part);
    }
    body
}

/// Where a request's final response is, as the model sees it.
#[derive(Debug)]
pub enum Fate {
    /// Waiting for these jobs; for a gather, the parts' bodies so far, by part.
    Jobs {
        /// The [`Job::id`]s of the jobs its current step started (earlier steps are done).
        ids: Vec<u64>,
        /// For a gather: each part's body once it has succeeded.
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
pub struct Req {
    /// Its pipeline sequence number.
    pub seq: u64,
    /// Its request deadline: past it, a request still waiting is answered 504.
    pub deadline: Instant,
    /// Where its response is; `Sent` once the response has left.
    pub fate: Fate,
}

/// A job the fake pool holds until the fuzzer completes it.
#[derive(Debug)]
pub struct Job {
    /// Submission order; a request's current jobs are named by it.
    pub id: u64,
    /// The request it works for, by pipeline sequence number.
    pub seq: u64,
    /// Its place in a gather (0 for a job of its own).
    pub part: usize,
    /// A gather's part (it can only return a response) rather than a job of its own.
    pub in_gather: bool,
    /// Set by the pipeline when nobody wants the result any more.
    pub cancel: Arc<AtomicBool>,
}

/// The pool and the timer heap, as lists the fuzzer empties in any order.
pub struct Queue {
    /// Submitted and not yet completed.
    pub live: Vec<Job>,
    /// Sequence numbers of armed timers not yet fired. The fuzzer fires them in any order.
    pub timers: Vec<u64>,
    /// Jobs submitted so far (the next job's id).
    pub submitted: u64,
    /// Submissions refused: `live` was at `capacity`, or the pool is closed.
    pub refused: u64,
    /// Live jobs the queue takes before it answers `Full` (the pool's bounded queue); 0 stands
    /// for a pool that is closed (`Closed`).
    pub capacity: usize,
}

impl Scheduler for Queue {
    fn submit(
        &mut self,
        seq: u64,
        part: usize,
        _work: Work<JobOutput>,
    ) -> Result<Arc<AtomicBool>, SubmitError> {
        if self.capacity == 0 {
            self.refused += 1;
            return Err(SubmitError::Closed);
        }
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

/// The response metadata for request `index`. The access-log field carries the request's
/// number, so every response that leaves says which request it answers.
pub fn meta(index: usize, now: Instant) -> ResponseMeta {
    ResponseMeta {
        head_only: false,
        http10: false,
        http10_keep_alive: false,
        close: false,
        started: now,
        queued: Duration::ZERO,
        log: Some(Box::new(("fuzz", index.to_string()))),
    }
}
