//! The model's vocabulary: what a handler or a job answers ([`Plan`]), where each request's
//! response is ([`Fate`], and [`StreamModel`] for a streamed one), and the fake pool and timer
//! heap the pipeline schedules on ([`Queue`]).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use evloop::connection::pipeline::{JobOutput, ResponseMeta, Scheduler, StreamBody};
use evloop::http::{sse, Response};
use evloop::outbound::{CallError, CallId, CallRequest};
use evloop::pool::{SubmitError, Work};
use evloop::router::{Reply, Stream};

/// What a handler or a job answers, as the fuzzer chose it.
#[derive(Debug, Clone)]
pub enum Plan {
    /// A response now.
    Now(u16, String),
    /// A response after a timer.
    After(Duration, String),
    /// One pool job.
    Offload,
    /// A gather of `parts` parts. Its join answers the joined bodies (`then` is `None`), or
    /// continues with more work.
    Gather {
        parts: usize,
        then: Option<Box<Plan>>,
    },
    /// An event stream whose head has this status (200, or one that cannot stream).
    Stream(u16),
}

impl Plan {
    /// The [`Reply`] for request `index`. The work inside is never run: the fuzzer decides what
    /// each job returns, and every progress message, when it completes it. A gather's join is
    /// run, by the pipeline, when its last part succeeds.
    pub fn reply(&self, index: usize) -> Reply {
        match self {
            Plan::Now(status, body) => Reply::Now(Response::text_owned(*status, body.clone())),
            Plan::After(delay, body) => {
                Reply::After(*delay, Response::text_owned(200, body.clone()))
            }
            Plan::Offload => Reply::Offload(Box::new(|_| Reply::Now(Response::text(200, "")))),
            Plan::Gather { parts, then } => {
                let parts: Vec<Work<Result<String, Response>>> = (0..*parts)
                    .map(|_| -> Work<Result<String, Response>> { Box::new(|_| Ok(String::new())) })
                    .collect();
                let then = then.clone();
                Reply::gather(parts, move |bodies: Vec<String>| match then {
                    None => Reply::Now(Response::text_owned(200, joined(index, &bodies))),
                    Some(plan) => plan.reply(index),
                })
            }
            Plan::Stream(status) => {
                let mut stream = Stream::events(|_| Response::text(200, ""));
                stream.head.status = *status;
                Reply::Stream(stream)
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

/// True if a stream may answer with `status`: a status that has a body.
pub fn streamable(status: u16) -> bool {
    (200..=599).contains(&status) && status != 204 && status != 304
}

/// The last piece of an event stream that `response` ends: `event: result` with its body as
/// data, or `event: error` for a failure.
pub fn end_piece(response: &Response) -> Vec<u8> {
    let name = if response.status < 400 {
        "result"
    } else {
        "error"
    };
    sse::event(name, response.body.as_bytes())
}

/// Where a request's final response is, as the model sees it.
#[derive(Debug)]
pub enum Fate {
    /// Waiting for these jobs; for a gather, the parts' bodies so far and what its join does.
    Jobs {
        /// The [`Job::id`]s of the jobs its current step started (earlier steps are done).
        ids: Vec<u64>,
        /// For a gather: each part's body once it has succeeded, and the join's continuation.
        gather: Option<Gathering>,
    },
    /// Waiting for its timer; then this body.
    Timer { body: String },
    /// Ready: this status, and this body unless it is an error document.
    Answered { status: u16, body: Option<String> },
    /// A streamed response, from its start to its last piece.
    Stream(StreamModel),
    /// Handed out (for a stream: its last piece).
    Sent,
    /// Dropped behind an HTTP/1.0 stream, whose body ends with the connection.
    Dropped,
}

impl Fate {
    /// Waiting on a job or a timer: subject to the request deadline, and counted as work
    /// outstanding. A stream waits until its job has ended (or it was ended for it).
    pub fn is_waiting(&self) -> bool {
        match self {
            Fate::Jobs { .. } | Fate::Timer { .. } => true,
            Fate::Stream(stream) => stream.is_running(),
            Fate::Answered { .. } | Fate::Sent | Fate::Dropped => false,
        }
    }

    /// True if job `id`'s result is still awaited: its cancel flag must be clear.
    pub fn wants(&self, id: u64) -> bool {
        match self {
            Fate::Jobs { ids, .. } => ids.contains(&id),
            Fate::Stream(stream) => stream.is_running() && stream.job == id,
            _ => false,
        }
    }
}

/// A gather waiting for its parts.
#[derive(Debug)]
pub struct Gathering {
    /// Each part's body once it has succeeded, by part.
    pub bodies: Vec<Option<String>>,
    /// What the join continues with, or `None` if it answers the joined bodies.
    pub then: Option<Box<Plan>>,
}

/// A streamed response, as the model follows it.
pub struct StreamModel {
    /// Its job's [`Job::id`].
    pub job: u64,
    /// The head's status.
    pub status: u16,
    /// How its body is framed, once the head is out.
    pub body: Option<StreamBody>,
    /// The newest progress message sent since the last piece was handed out, while the job
    /// runs: the only piece the pipeline may hand out next.
    pub pending: Option<Vec<u8>>,
    /// The last piece, once the job has ended or the stream was ended for it (a deadline,
    /// a `HEAD` request).
    pub last: Option<Vec<u8>>,
    /// Body bytes handed out so far.
    pub bytes: usize,
}

impl std::fmt::Debug for StreamModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pieces as text: a failure message shows which progress message was which.
        let text = |bytes: &Option<Vec<u8>>| {
            bytes
                .as_deref()
                .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        };
        f.debug_struct("StreamModel")
            .field("job", &self.job)
            .field("status", &self.status)
            .field("body", &self.body)
            .field("pending", &text(&self.pending))
            .field("last", &text(&self.last))
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl StreamModel {
    /// The job may still send progress, and the stream is not complete.
    pub fn is_running(&self) -> bool {
        self.last.is_none()
    }

    /// The stream ends with `response`: its last piece, which supersedes unsent progress.
    pub fn finish(&mut self, response: &Response) {
        self.pending = None;
        self.last = Some(end_piece(response));
    }
}

/// A dispatched request.
#[derive(Debug)]
pub struct Req {
    /// Its pipeline sequence number.
    pub seq: u64,
    /// Its request deadline: past it, a request still waiting is answered 504.
    pub deadline: Instant,
    /// `HEAD`: a stream's head is followed by an empty end.
    pub head_only: bool,
    /// HTTP/1.0: a stream's body ends with the connection.
    pub http10: bool,
    /// Where its response is; `Sent` once the response has left.
    pub fate: Fate,
}

/// What a job computes, which decides what it may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// A job of its own: a response, a failure, or more work.
    Single,
    /// A gather's part: a value, or the response that fails the request.
    Part,
    /// A stream's job: the response that ends the stream.
    Stream,
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
    /// What it computes.
    pub kind: JobKind,
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
            // The model names the kind once it knows what the reply started.
            kind: JobKind::Single,
            cancel: Arc::clone(&cancel),
        });
        self.submitted += 1;
        Ok(cancel)
    }

    fn wake_at(&mut self, _at: Instant, seq: u64) {
        self.timers.push(seq);
    }

    // The model's handlers make no calls upstream (the outbound path has its own tests).
    fn call(
        &mut self,
        _seq: u64,
        _part: usize,
        _request: &CallRequest,
    ) -> Result<CallId, CallError> {
        Err(CallError::TooManyWaiting)
    }

    fn cancel_call(&mut self, _id: CallId) {}
}

/// The response metadata for request `index`. The access-log field carries the request's
/// number, so every response that leaves says which request it answers.
pub fn meta(index: usize, now: Instant, head_only: bool, http10: bool) -> ResponseMeta {
    ResponseMeta {
        head_only,
        http10,
        http10_keep_alive: false,
        close: false,
        started: now,
        route: None,
        queued: Duration::ZERO,
        log: Some(Box::new(("fuzz", index.to_string()))),
    }
}
