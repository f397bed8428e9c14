//! The requests of one connection that still wait for their response, in request order.
//!
//! # Theory of operation
//!
//! HTTP/1.1 answers requests strictly in the order they arrived (RFC 9112 §9.3.2), but the work
//! behind them finishes in any order: a `/sleep` timer, a pool job, the two halves of a gather.
//! The pipeline is the queue that reconciles the two. Each request that is not answered on the
//! spot gets a `Slot`, and a slot is in exactly one `SlotState`:
//!
//! ```text
//!              ┌──────── job or timer finishes ────────┐
//!  dispatch ─▶ Running(jobs) / Sleeping(response) ─────▶ Ready(response) ─▶ popped in order
//!      │          │  a job (or a join) returns more work: Running again    ▲
//!      │          └── request deadline passes: Ready(504) ─────────────────┘
//!      ├─ answered at once, or refused: Ready ─────────────────────────────┘
//!      ├─ calls upstream: Awaiting(calls) ── every response, or a failure: its continuation
//!      │     runs, and what it returns is the slot's next state (Ready, Running, ...)
//!      └─ a stream: Streaming ─▶ head, pieces, last piece ─▶ popped after its last piece
//! ```
//!
//! [`Pipeline::next_answer`] hands out responses only from the front, so a ready response waits
//! for every earlier one.
//!
//! ## Streams
//!
//! A streamed response is handed out in pieces while its slot stays at the front: its head
//! when it reaches the front, then each progress message its job sends, then its last piece,
//! which pops the slot. Until then the requests behind it wait, as HTTP/1.1 requires. A stream
//! holds at most one unsent progress message: a newer one replaces it ([`Pipeline::progress`]),
//! and the connection only asks for a piece when the client has taken what was written before.
//! So however long a client stops reading, a stream's memory stays one message, and the job
//! never waits. Nothing here touches a socket, a clock or a thread: the pool and the
//! timers are reached through the [`Scheduler`] trait, and time comes in as an argument. That
//! is what lets the unit tests below (and the fuzz target) drive every interleaving of
//! completions, timers and deadlines directly.

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::http::client::UpstreamResponse;
use crate::http::Response;
use crate::outbound::{CallError, CallId, CallRequest};
use crate::pool::{SubmitError, Work};
use crate::router::{Join, PartResult, Reply, Stream, Then};

/// What a pool job hands back to the pipeline.
pub enum JobOutput {
    /// An offloaded job's reply: the answer, or more work.
    Reply(Reply),
    /// A gather part's value, or the response that answers the request instead.
    Part(PartResult),
    /// The response that ends a stream.
    StreamEnd(Response),
}

impl std::fmt::Debug for JobOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobOutput::Reply(_) => "Reply",
            JobOutput::Part(_) => "Part",
            JobOutput::StreamEnd(_) => "StreamEnd",
        })
    }
}

/// How a pipeline starts the work a reply asks for. The connection implements it with the
/// reactor's pool and timer heap; tests implement it with a list.
pub trait Scheduler {
    /// Queue `work` as part `part` of request `seq`. Returns the job's cancel flag.
    fn submit(
        &mut self,
        seq: u64,
        part: usize,
        work: Work<JobOutput>,
    ) -> Result<Arc<AtomicBool>, SubmitError>;
    /// Arrange for [`Pipeline::on_timer`]`(seq)` to be called at `at`.
    fn wake_at(&mut self, at: Instant, seq: u64);
    /// Start `request` upstream as part `part` of request `seq`; its end comes back through
    /// [`Pipeline::call_done`]. `Err`: it did not start.
    fn call(&mut self, seq: u64, part: usize, request: &CallRequest) -> Result<CallId, CallError>;
    /// Nobody wants the answer of call `id` any more.
    fn cancel_call(&mut self, id: CallId);
}

/// Everything about a request that shapes its response, decided when it is dispatched.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    /// `HEAD`: headers only.
    pub head_only: bool,
    /// The request came as HTTP/1.0: a streamed body must end with the connection.
    pub http10: bool,
    /// HTTP/1.0 with keep-alive: say `Connection: keep-alive`.
    pub http10_keep_alive: bool,
    /// The client asked for this to be the last response (`Connection: close`, HTTP/1.0), or the
    /// request was refused: say `Connection: close`.
    pub close: bool,
    /// When the request was dispatched (access log, request duration).
    pub started: Instant,
    /// The router's index of the route that took the request (`None`: none did, or it was
    /// refused before dispatch), for the metrics' `route` label.
    pub route: Option<usize>,
    /// Time its jobs spent in the queue (access log).
    pub queued: Duration,
    /// Method and path, kept only when the access log is on (`-` for a refused request).
    pub log: Option<Box<(&'static str, String)>>,
}

/// What comes out of the front of the pipeline.
#[derive(Debug)]
pub enum Answer {
    /// The interim `100 Continue` for a request whose body is still to come.
    Continue(ResponseMeta),
    /// A final response; its slot is done.
    Final(Response, ResponseMeta),
    /// The head of a streamed response, and how its body is framed. Its slot stays at the
    /// front for the pieces that follow.
    StreamHead(Response, ResponseMeta, StreamBody),
    /// A piece of the body of the stream at the front.
    Piece(Vec<u8>, StreamBody),
    /// The last piece of the stream at the front; its slot is done. `status` is the head's,
    /// `bytes` the body bytes handed out in all, for the access log.
    StreamEnd {
        last: Vec<u8>,
        body: StreamBody,
        meta: ResponseMeta,
        status: u16,
        bytes: usize,
    },
}

/// How the body of a streamed response is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamBody {
    /// In chunks (HTTP/1.1).
    Chunked,
    /// As it is, ended by closing the connection (HTTP/1.0).
    UntilClose,
    /// Not at all: the request was `HEAD`.
    Omitted,
}

/// Where a slot's response is.
#[derive(Debug)]
enum SlotState {
    /// `100 Continue`: ready at once, but queued so it cannot overtake earlier responses.
    Continue,
    /// Pool jobs are computing it: one, or the parts of a gather.
    Running(Jobs),
    /// A timer releases it (`/sleep`).
    Sleeping(Response),
    /// Ready to go out as soon as everything before it has.
    Ready(Response),
    /// A stream: its job running or done, its head sent or not.
    Streaming(Box<Streaming>),
    /// Calls upstream are under way; their continuation runs when they have all answered.
    Awaiting(Box<Awaiting>),
}

/// The calls of a [`Reply::Call`] and what to do with their responses.
struct Awaiting {
    /// Each call, until it has answered.
    calls: Vec<Option<CallId>>,
    /// The responses so far, in the order of the requests.
    responses: Vec<Option<UpstreamResponse>>,
    then: Then,
}

impl Awaiting {
    /// Cancel the calls that have not answered.
    fn cancel(&self, cancel_call: &mut dyn FnMut(CallId)) {
        for id in self.calls.iter().flatten() {
            cancel_call(*id);
        }
    }
}

impl std::fmt::Debug for Awaiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let done = self.responses.iter().filter(|r| r.is_some()).count();
        f.debug_struct("Awaiting")
            .field("calls", &self.calls.len())
            .field("answered", &done)
            .finish_non_exhaustive()
    }
}

/// A streamed response on its way out.
#[derive(Debug)]
struct Streaming {
    /// The stream's job.
    job: Jobs,
    /// The head, until it is handed out.
    head: Option<Response>,
    /// How the body is framed, once the head is out.
    body: StreamBody,
    /// The newest progress message not handed out yet.
    progress: Option<Vec<u8>>,
    /// The last piece, once the job has ended (or the stream was ended for it).
    last: Option<Vec<u8>>,
    /// Turns the response that ends the stream into its last piece.
    end: fn(&Response) -> Vec<u8>,
    /// The head's status, for the access log.
    status: u16,
    /// Body bytes handed out so far.
    bytes: usize,
    /// Progress messages replaced before they were handed out.
    coalesced: u64,
}

impl Streaming {
    /// The stream ends with `response` (the job's, or an error the server answers for it).
    /// Progress not handed out yet is obsolete.
    fn finish(&mut self, response: &Response) {
        self.progress = None;
        let end = self.end;
        self.last = Some(
            catch_unwind(AssertUnwindSafe(|| end(response))).unwrap_or_else(|_| {
                log::error!("a stream's end panicked");
                Vec::new()
            }),
        );
    }

    /// The job may still send progress, and the stream is not complete.
    fn is_running(&self) -> bool {
        self.last.is_none()
    }
}

/// A request whose response has not been handed out yet.
#[derive(Debug)]
struct Slot {
    /// Position in the connection's request order.
    seq: u64,
    /// Where its response is.
    state: SlotState,
    /// `--request-timeout` after dispatch: a slot still `Running`, `Sleeping` or `Awaiting`
    /// then is answered 504 instead (its jobs and calls cancelled), and a stream still running ends with the 504 as its last piece
    /// (or is answered 504, if its head is not out yet). It stays with the request through
    /// every job it chains to.
    deadline: Instant,
    /// How to frame the response.
    meta: ResponseMeta,
}

/// The jobs a slot waits for.
#[derive(Debug)]
struct Jobs {
    /// One cancel flag per job: set them all when nobody wants the answer any more.
    cancels: Vec<Arc<AtomicBool>>,
    /// For a [`Reply::Gather`]: the parts' values as they arrive, and how to join them.
    gather: Option<Gathering>,
}

impl Jobs {
    fn cancel(&self) {
        for flag in &self.cancels {
            // Relaxed is enough: the flag is a hint the job polls; nothing is published with it.
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// The parts of a gathered request.
struct Gathering {
    parts: Vec<Option<Box<dyn Any + Send>>>,
    join: Join,
}

impl std::fmt::Debug for Gathering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let done = self.parts.iter().filter(|part| part.is_some()).count();
        f.debug_struct("Gathering")
            .field("parts", &self.parts.len())
            .field("done", &done)
            .finish_non_exhaustive()
    }
}

/// One connection's unanswered requests, oldest first.
#[derive(Debug, Default)]
pub struct Pipeline {
    slots: VecDeque<Slot>,
    /// Sequence number of the next request dispatched on the connection.
    next_seq: u64,
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    /// Requests waiting for their response to be handed out.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when every request so far has been answered.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Requests dispatched on this connection so far.
    pub fn dispatched(&self) -> u64 {
        self.next_seq
    }

    /// Take a sequence number for a request answered on the spot (the hot path: its response
    /// is encoded at once and never enters the queue).
    pub fn skip(&mut self) {
        self.next_seq += 1;
    }

    /// Queue the interim `100 Continue`.
    pub fn push_continue(&mut self, meta: ResponseMeta) {
        self.push(SlotState::Continue, meta.started, meta);
    }

    /// Queue a response that is ready now.
    pub fn push_ready(&mut self, response: Response, meta: ResponseMeta) {
        self.push(SlotState::Ready(response), meta.started, meta);
    }

    /// Queue the request that produced `reply`, starting whatever work the reply asks for.
    /// `deadline` is its `--request-timeout` deadline.
    pub fn begin(
        &mut self,
        reply: Reply,
        meta: ResponseMeta,
        deadline: Instant,
        now: Instant,
        scheduler: &mut dyn Scheduler,
    ) {
        let seq = self.next_seq;
        let state = start(reply, seq, now, scheduler);
        self.push(state, deadline, meta);
    }

    fn push(&mut self, state: SlotState, deadline: Instant, meta: ResponseMeta) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.slots.push_back(Slot {
            seq,
            state,
            deadline,
            meta,
        });
    }

    /// Job `part` of request `seq` finished with `outcome` after waiting `queued` in the queue.
    /// What it returned becomes the slot's next state: a response, a piece, or more work.
    pub fn complete(
        &mut self,
        seq: u64,
        part: usize,
        outcome: Result<JobOutput, Error>,
        queued: Duration,
        now: Instant,
        scheduler: &mut dyn Scheduler,
    ) {
        let Some(slot) = self.slots.iter_mut().find(|slot| slot.seq == seq) else {
            return; // answered already (504): the late result is dropped
        };
        slot.meta.queued = slot.meta.queued.max(queued);
        match &mut slot.state {
            SlotState::Running(jobs) => {
                if let Some(state) = complete_job(jobs, seq, part, outcome, now, scheduler) {
                    slot.state = state;
                }
            }
            SlotState::Streaming(stream) if stream.is_running() => {
                let response = match outcome {
                    Ok(JobOutput::StreamEnd(response)) => response,
                    Ok(other) => {
                        log::error!("request {seq}: a stream's job returned {other:?}");
                        Error::JobPanicked.into_response()
                    }
                    Err(err) => err.into_response(),
                };
                if stream.head.is_some() && response.status >= 400 {
                    // Nothing of the stream is out yet: the error can still be an ordinary
                    // response, with its own status.
                    slot.state = SlotState::Ready(response);
                } else {
                    stream.finish(&response);
                }
            }
            // The slot moved on without this job (a 504, a failed sibling): dropped.
            _ => {}
        }
    }

    /// Request `seq`'s stream sent a progress message. It replaces the one not handed out yet,
    /// if any.
    pub fn progress(&mut self, seq: u64, bytes: Vec<u8>) {
        let Some(slot) = self.slots.iter_mut().find(|slot| slot.seq == seq) else {
            return;
        };
        if let SlotState::Streaming(stream) = &mut slot.state {
            if stream.is_running() && stream.progress.replace(bytes).is_some() {
                stream.coalesced += 1;
            }
        }
    }

    /// Call `id`, part `part` of request `seq`, ended with `result`. Once every call of the
    /// request has its response, or as soon as one fails (the others are then cancelled), the
    /// continuation runs and what it returns is the slot's next state. A result for a call the
    /// slot no longer waits for (it was answered 504, a sibling failed, or the continuation
    /// started a new round of calls) is dropped.
    pub fn call_done(
        &mut self,
        seq: u64,
        part: usize,
        id: CallId,
        result: Result<UpstreamResponse, CallError>,
        now: Instant,
        scheduler: &mut dyn Scheduler,
    ) {
        let Some(slot) = self.slots.iter_mut().find(|slot| slot.seq == seq) else {
            return; // answered already (504): the call was cancelled, its result is dropped
        };
        let SlotState::Awaiting(awaiting) = &mut slot.state else {
            return;
        };
        match awaiting.calls.get_mut(part) {
            Some(call) if *call == Some(id) => *call = None,
            _ => return,
        }
        let outcome = match result {
            Ok(response) => {
                if let Some(place) = awaiting.responses.get_mut(part) {
                    *place = Some(response);
                }
                if awaiting.calls.iter().any(Option::is_some) {
                    return;
                }
                Ok(())
            }
            Err(err) => {
                awaiting.cancel(&mut |id| scheduler.cancel_call(id));
                Err(err)
            }
        };
        let SlotState::Awaiting(awaiting) = std::mem::replace(&mut slot.state, SlotState::Continue)
        else {
            return;
        };
        let Awaiting {
            responses, then, ..
        } = *awaiting;
        // Every part answered (no call is left), so every response is there.
        debug_assert!(outcome.is_err() || responses.iter().all(Option::is_some));
        let result = outcome.map(|()| responses.into_iter().flatten().collect());
        slot.state = match run_then(then, result) {
            Some(reply) => start(reply, seq, now, scheduler),
            None => SlotState::Ready(Error::JobPanicked.into_response()),
        };
    }

    /// The `/sleep` timer of request `seq` fired: its response is ready.
    pub fn on_timer(&mut self, seq: u64) {
        if let Some(slot) = self.slots.iter_mut().find(|slot| slot.seq == seq) {
            if let SlotState::Sleeping(response) = &mut slot.state {
                // Move the response out; the empty one left behind is overwritten at once.
                let response = std::mem::replace(response, Response::text(200, ""));
                slot.state = SlotState::Ready(response);
            }
        }
    }

    /// True while request `seq` waits for its `/sleep` timer (a timer for anything else is
    /// stale).
    pub fn is_sleeping(&self, seq: u64) -> bool {
        self.slots
            .iter()
            .any(|slot| slot.seq == seq && matches!(slot.state, SlotState::Sleeping(_)))
    }

    /// Answer 504 for every request that has outlived its deadline, cancelling its jobs and
    /// calls. Returns how many timed out.
    pub fn expire(&mut self, now: Instant, scheduler: &mut dyn Scheduler) -> usize {
        let mut expired = 0;
        for slot in &mut self.slots {
            if !slot.state.is_waiting() || slot.deadline > now {
                continue;
            }
            log::warn!("request {} timed out; its work was cancelled", slot.seq);
            expired += 1;
            let timeout = Error::GatewayTimeout.into_response();
            match &mut slot.state {
                SlotState::Running(jobs) => jobs.cancel(),
                SlotState::Awaiting(awaiting) => {
                    awaiting.cancel(&mut |id| scheduler.cancel_call(id))
                }
                SlotState::Streaming(stream) => {
                    stream.job.cancel();
                    if stream.head.is_none() {
                        // The head is out: the stream ends with the error as its last piece.
                        stream.finish(&timeout);
                        continue;
                    }
                }
                _ => {}
            }
            slot.state = SlotState::Ready(timeout);
        }
        expired
    }

    /// The earliest deadline of a request still waiting for its response.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter(|slot| slot.state.is_waiting())
            .map(|slot| slot.deadline)
            .min()
    }

    /// True while a `100 Continue` waits behind earlier responses: the client holds its body
    /// back until it has it, so the body timeout must not run.
    pub fn has_unsent_continue(&self) -> bool {
        self.slots
            .iter()
            .any(|slot| matches!(slot.state, SlotState::Continue))
    }

    /// True while some request waits on a job, a call upstream or a timer (rather than only on
    /// earlier responses or the socket).
    pub fn has_work_outstanding(&self) -> bool {
        self.slots.iter().any(|slot| slot.state.is_waiting())
    }

    /// What the front of the pipeline has to send next, if anything: a response, or the head,
    /// a piece or the end of a stream. Progress pieces are handed out only if `pieces_wanted`
    /// (the client has taken what was written before); until then the newest waits here.
    pub fn next_answer(&mut self, pieces_wanted: bool) -> Option<Answer> {
        let front = self.slots.front_mut()?;
        match &mut front.state {
            SlotState::Running(_) | SlotState::Sleeping(_) | SlotState::Awaiting(_) => return None,
            SlotState::Continue | SlotState::Ready(_) => {}
            SlotState::Streaming(stream) => {
                if let Some(head) = stream.head.take() {
                    stream.body = if front.meta.head_only {
                        // Nobody will read the body: stop the job, end the stream.
                        stream.job.cancel();
                        stream.progress = None;
                        stream.last = Some(Vec::new());
                        StreamBody::Omitted
                    } else if front.meta.http10 {
                        StreamBody::UntilClose
                    } else {
                        StreamBody::Chunked
                    };
                    return Some(Answer::StreamHead(head, front.meta.clone(), stream.body));
                }
                if pieces_wanted {
                    if let Some(piece) = stream.progress.take() {
                        stream.bytes += piece.len();
                        return Some(Answer::Piece(piece, stream.body));
                    }
                }
                // Still running, nothing to send: wait.
                stream.last.as_ref()?;
            }
        }
        let slot = self.slots.pop_front()?;
        if self.slots.is_empty() {
            // Give the memory back: an idle connection holds no buffer at all.
            self.slots = VecDeque::new();
        }
        match slot.state {
            SlotState::Continue => Some(Answer::Continue(slot.meta)),
            SlotState::Ready(response) => Some(Answer::Final(response, slot.meta)),
            SlotState::Streaming(stream) => {
                let last = stream.last.unwrap_or_default();
                if stream.coalesced > 0 {
                    log::debug!(
                        "request {}: stream ended; {} progress messages were replaced unsent",
                        slot.seq,
                        stream.coalesced
                    );
                }
                Some(Answer::StreamEnd {
                    bytes: stream.bytes + last.len(),
                    last,
                    body: stream.body,
                    meta: slot.meta,
                    status: stream.status,
                })
            }
            SlotState::Running(_) | SlotState::Sleeping(_) | SlotState::Awaiting(_) => None,
        }
    }

    /// True when the stream at the front has a progress message waiting for the client to take
    /// what was written before.
    pub fn has_piece_waiting(&self) -> bool {
        matches!(
            self.slots.front().map(|slot| &slot.state),
            Some(SlotState::Streaming(stream)) if stream.head.is_none() && stream.progress.is_some()
        )
    }

    /// Drop every request behind the front one, cancelling their work: the front one is a
    /// stream whose body ends with the connection, so nothing can be answered after it.
    pub fn abandon_behind_front(&mut self, cancel_call: &mut dyn FnMut(CallId)) {
        while self.slots.len() > 1 {
            if let Some(slot) = self.slots.pop_back() {
                slot.state.cancel(cancel_call);
                log::debug!("request {} dropped behind an HTTP/1.0 stream", slot.seq);
            }
        }
    }

    /// Set every cancel flag and cancel every call: nobody will read these answers (the
    /// connection is closing).
    pub fn cancel_all(&self, cancel_call: &mut dyn FnMut(CallId)) {
        for slot in &self.slots {
            slot.state.cancel(cancel_call);
        }
    }
}

impl SlotState {
    /// Waiting on a job or a timer (and so subject to the request deadline).
    fn is_waiting(&self) -> bool {
        match self {
            SlotState::Running(_) | SlotState::Sleeping(_) | SlotState::Awaiting(_) => true,
            SlotState::Streaming(stream) => stream.is_running(),
            SlotState::Continue | SlotState::Ready(_) => false,
        }
    }

    /// Set the cancel flags of whatever jobs work for this slot, and cancel its calls.
    fn cancel(&self, cancel_call: &mut dyn FnMut(CallId)) {
        match self {
            SlotState::Running(jobs) => jobs.cancel(),
            SlotState::Awaiting(awaiting) => awaiting.cancel(cancel_call),
            SlotState::Streaming(stream) => stream.job.cancel(),
            _ => {}
        }
    }
}

/// Job `part` of a slot in `Running(jobs)` ended. Returns the slot's next state, or `None` while
/// the gather it belongs to still waits for other parts.
fn complete_job(
    jobs: &mut Jobs,
    seq: u64,
    part: usize,
    outcome: Result<JobOutput, Error>,
    now: Instant,
    scheduler: &mut dyn Scheduler,
) -> Option<SlotState> {
    let Some(gathering) = &mut jobs.gather else {
        // A single job: what it returned is the request's next state.
        return Some(match outcome {
            Ok(JobOutput::Reply(reply)) => start(reply, seq, now, scheduler),
            Ok(other) => {
                log::error!("request {seq}: a job returned {other:?} where a reply was due");
                SlotState::Ready(Error::JobPanicked.into_response())
            }
            Err(err) => SlotState::Ready(err.into_response()),
        });
    };
    let value = match outcome {
        Ok(JobOutput::Part(Ok(value))) => value,
        Ok(JobOutput::Part(Err(failed))) => {
            // A part answered with an error: that error is the answer, and the other parts are
            // cancelled — the join only ever sees a complete set of successes.
            jobs.cancel();
            return Some(SlotState::Ready(failed));
        }
        Ok(other) => {
            log::error!("request {seq}: a gathered part returned {other:?}");
            jobs.cancel();
            return Some(SlotState::Ready(Error::JobPanicked.into_response()));
        }
        Err(err) => {
            jobs.cancel();
            return Some(SlotState::Ready(err.into_response()));
        }
    };
    if let Some(place) = gathering.parts.get_mut(part) {
        *place = Some(value);
    }
    if !gathering.parts.iter().all(Option::is_some) {
        return None;
    }
    let Gathering { parts, join } = jobs.gather.take()?;
    let values = parts.into_iter().flatten().collect();
    Some(match run_join(join, values) {
        Some(reply) => start(reply, seq, now, scheduler),
        None => SlotState::Ready(Error::JobPanicked.into_response()),
    })
}

/// Turn a handler's (or a job's) reply into the state its slot waits in, starting the jobs or
/// the timer it asks for.
fn start(reply: Reply, seq: u64, now: Instant, scheduler: &mut dyn Scheduler) -> SlotState {
    match reply {
        Reply::Now(response) => SlotState::Ready(response),
        Reply::After(delay, response) => match now.checked_add(delay) {
            Some(at) => {
                scheduler.wake_at(at, seq);
                SlotState::Sleeping(response)
            }
            // A delay past the end of time is a handler's bug: a 500, not a reactor panic.
            None => {
                log::error!("request {seq}: a reply delayed by {delay:?} cannot be scheduled");
                SlotState::Ready(Error::JobPanicked.into_response())
            }
        },
        Reply::Offload(work) => {
            let work: Work<JobOutput> = Box::new(move |job| JobOutput::Reply(work(job)));
            submit(vec![work], seq, None, scheduler)
        }
        Reply::Gather(gather) => {
            let (parts, join) = gather.into_parts();
            if parts.is_empty() {
                return match run_join(join, Vec::new()) {
                    Some(reply) => start(reply, seq, now, scheduler),
                    None => SlotState::Ready(Error::JobPanicked.into_response()),
                };
            }
            let works = parts
                .into_iter()
                .map(|part| -> Work<JobOutput> { Box::new(move |job| JobOutput::Part(part(job))) })
                .collect();
            submit(works, seq, Some(join), scheduler)
        }
        Reply::Stream(stream) => start_stream(stream, seq, scheduler),
        Reply::Call(calls) => start_calls(calls, seq, now, scheduler),
    }
}

/// Start every call of a [`Reply::Call`]. If one cannot start, those started are cancelled
/// and the continuation runs at once with the error.
fn start_calls(
    calls: crate::router::Calls,
    seq: u64,
    now: Instant,
    scheduler: &mut dyn Scheduler,
) -> SlotState {
    let (requests, then) = calls.into_parts();
    let mut awaiting = Awaiting {
        calls: Vec::with_capacity(requests.len()),
        responses: (0..requests.len()).map(|_| None).collect(),
        then,
    };
    let mut failed = None;
    for (part, request) in requests.iter().enumerate() {
        match scheduler.call(seq, part, request) {
            Ok(id) => awaiting.calls.push(Some(id)),
            Err(err) => {
                awaiting.cancel(&mut |id| scheduler.cancel_call(id));
                failed = Some(err);
                break;
            }
        }
    }
    let result = match failed {
        Some(err) => Err(err),
        None if requests.is_empty() => Ok(Vec::new()),
        None => return SlotState::Awaiting(Box::new(awaiting)),
    };
    match run_then(awaiting.then, result) {
        Some(reply) => start(reply, seq, now, scheduler),
        None => SlotState::Ready(Error::JobPanicked.into_response()),
    }
}

/// Run a call's continuation: user code on the loop's thread, so a panic in it is caught
/// (`None`).
fn run_then(then: Then, result: Result<Vec<UpstreamResponse>, CallError>) -> Option<Reply> {
    match catch_unwind(AssertUnwindSafe(move || then(result))) {
        Ok(reply) => Some(reply),
        Err(_) => {
            log::error!("a call's continuation panicked");
            None
        }
    }
}

/// Start a stream's job. Its head waits in the slot until the stream reaches the front.
fn start_stream(stream: Stream, seq: u64, scheduler: &mut dyn Scheduler) -> SlotState {
    let Stream { head, work, end } = stream;
    let status = head.status;
    if !(200..=599).contains(&status) || status == 204 || status == 304 {
        // These statuses have no body to stream.
        log::error!("request {seq}: a stream cannot answer with status {status}");
        return SlotState::Ready(Error::JobPanicked.into_response());
    }
    let work: Work<JobOutput> = Box::new(move |job| JobOutput::StreamEnd(work(job)));
    match submit(vec![work], seq, None, scheduler) {
        SlotState::Running(job) => SlotState::Streaming(Box::new(Streaming {
            job,
            head: Some(head),
            body: StreamBody::Chunked,
            progress: None,
            last: None,
            end,
            status,
            bytes: 0,
            coalesced: 0,
        })),
        refused => refused,
    }
}

/// Queue `works` (one job, or every part of a gather). If any part cannot be queued, the parts
/// already queued are cancelled and the request is answered 503 at once.
fn submit(
    works: Vec<Work<JobOutput>>,
    seq: u64,
    join: Option<Join>,
    scheduler: &mut dyn Scheduler,
) -> SlotState {
    let count = works.len();
    let mut jobs = Jobs {
        cancels: Vec::with_capacity(count),
        gather: None,
    };
    for (part, work) in works.into_iter().enumerate() {
        match scheduler.submit(seq, part, work) {
            Ok(cancel) => jobs.cancels.push(cancel),
            Err(err) => {
                jobs.cancel();
                return SlotState::Ready(
                    match err {
                        SubmitError::Full => Error::QueueFull,
                        SubmitError::Closed => Error::Unavailable,
                    }
                    .into_response(),
                );
            }
        }
    }
    if let Some(join) = join {
        jobs.gather = Some(Gathering {
            parts: (0..count).map(|_| None).collect(),
            join,
        });
    }
    SlotState::Running(jobs)
}

/// Run a gather's join. It is user code on the loop's thread, so a panic in it is caught
/// (`None`): a 500 for that request, not the end of the server.
fn run_join(join: Join, values: Vec<Box<dyn Any + Send>>) -> Option<Reply> {
    match catch_unwind(AssertUnwindSafe(move || join(values))) {
        Ok(reply) => Some(reply),
        Err(_) => {
            log::error!("a gather's join panicked");
            None
        }
    }
}

#[cfg(test)]
mod tests;
