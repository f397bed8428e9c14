//! The requests of one connection that still wait for their response, in request order.
//!
//! # Theory of operation
//!
//! HTTP/1.1 answers requests strictly in the order they arrived (RFC 9112 §9.3.2), but the work
//! behind them finishes in any order: a `/sleep` timer, a pool job, the two halves of a gather.
//! The pipeline is the queue that reconciles the two. Each request that is not answered on the
//! spot gets a [`Slot`], and a slot is in exactly one [`SlotState`]:
//!
//! ```text
//!              ┌──────── job or timer finishes ────────┐
//!  dispatch ─▶ Running(jobs) / Sleeping(response) ─────▶ Ready(response) ─▶ popped in order
//!      │          │  a job returns more work: Running again      ▲
//!      │          └── request deadline passes: Ready(504) ───────┘
//!      └─ answered at once, or refused: Ready ───────────────────┘
//! ```
//!
//! [`Pipeline::pop_ready`] hands out responses only from the front, so a ready response waits
//! for every earlier one. Nothing here touches a socket, a clock or a thread: the pool and the
//! timers are reached through the [`Scheduler`] trait, and time comes in as an argument. That
//! is what lets the unit tests below (and the fuzz target) drive every interleaving of
//! completions, timers and deadlines directly.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::http::Response;
use crate::pool::{SubmitError, Work};
use crate::router::{Join, Reply};

/// How a pipeline starts the work a reply asks for. The connection implements it with the
/// reactor's pool and timer heap; tests implement it with a list.
pub trait Scheduler {
    /// Queue `work` as part `part` of request `seq`. Returns the job's cancel flag.
    fn submit(
        &mut self,
        seq: u64,
        part: usize,
        work: Work<Reply>,
    ) -> Result<Arc<AtomicBool>, SubmitError>;
    /// Arrange for [`Pipeline::on_timer`]`(seq)` to be called at `at`.
    fn wake_at(&mut self, at: Instant, seq: u64);
}

/// Everything about a request that shapes its response, decided when it is dispatched.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    /// `HEAD`: headers only.
    pub head_only: bool,
    /// HTTP/1.0 with keep-alive: say `Connection: keep-alive`.
    pub http10_keep_alive: bool,
    /// The client asked for this to be the last response (`Connection: close`, HTTP/1.0), or the
    /// request was refused: say `Connection: close`.
    pub close: bool,
    /// When the request was dispatched (access log).
    pub started: Instant,
    /// Time its jobs spent in the queue (access log).
    pub queued: Duration,
    /// Method and path, kept only when the access log is on (`-` for a refused request).
    pub log: Option<Box<(&'static str, String)>>,
}

/// What comes out of the front of the pipeline.
#[derive(Debug)]
pub enum Answer {
    /// The interim `100 Continue` for a request whose body is still to come.
    Continue,
    /// A final response.
    Final(Response),
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
}

/// A request whose response has not been handed out yet.
#[derive(Debug)]
struct Slot {
    /// Position in the connection's request order.
    seq: u64,
    /// Where its response is.
    state: SlotState,
    /// `--request-timeout` after dispatch: a slot still `Running` or `Sleeping` then is
    /// answered 504 instead. It stays with the request through every job it chains to.
    deadline: Instant,
    /// How to frame the response.
    meta: ResponseMeta,
}

/// The jobs a slot waits for.
#[derive(Debug)]
struct Jobs {
    /// One cancel flag per job: set them all when nobody wants the answer any more.
    cancels: Vec<Arc<AtomicBool>>,
    /// For a [`Reply::Gather`]: the parts' responses as they arrive, and how to join them.
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
    parts: Vec<Option<Response>>,
    join: Join,
}

impl std::fmt::Debug for Gathering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gathering")
            .field("parts", &self.parts)
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
    /// What it returned becomes the slot's next state: a response, or more work.
    pub fn complete(
        &mut self,
        seq: u64,
        part: usize,
        outcome: Result<Reply, Error>,
        queued: Duration,
        now: Instant,
        scheduler: &mut dyn Scheduler,
    ) {
        let Some(slot) = self.slots.iter_mut().find(|slot| slot.seq == seq) else {
            return; // answered already (504): the late result is dropped
        };
        let SlotState::Running(jobs) = &mut slot.state else {
            return; // likewise: the slot moved on without this job
        };
        slot.meta.queued = slot.meta.queued.max(queued);
        let Some(gathering) = &mut jobs.gather else {
            // A single job: what it returned is the request's next state.
            slot.state = match outcome {
                Ok(reply) => start(reply, seq, now, scheduler),
                Err(err) => SlotState::Ready(err.into_response()),
            };
            return;
        };
        let response = match outcome {
            Ok(Reply::Now(response)) if response.status < 400 => response,
            Ok(Reply::Now(failed)) => {
                // A part answered with an error: that error is the answer, and the other parts
                // are cancelled — the join only ever sees a complete set of successes.
                jobs.cancel();
                slot.state = SlotState::Ready(failed);
                return;
            }
            Ok(_) => {
                log::error!("request {seq}: a gathered part must return a response");
                jobs.cancel();
                slot.state = SlotState::Ready(Error::JobPanicked.into_response());
                return;
            }
            Err(err) => {
                jobs.cancel();
                slot.state = SlotState::Ready(err.into_response());
                return;
            }
        };
        if let Some(place) = gathering.parts.get_mut(part) {
            *place = Some(response);
        }
        if gathering.parts.iter().all(Option::is_some) {
            if let Some(Gathering { parts, join }) = jobs.gather.take() {
                let parts = parts.into_iter().flatten().collect();
                slot.state = SlotState::Ready(run_join(join, parts));
            }
        }
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

    /// Answer 504 for every request that has outlived its deadline, cancelling its jobs.
    /// Returns how many timed out.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        for slot in &mut self.slots {
            let waiting = matches!(slot.state, SlotState::Running(_) | SlotState::Sleeping(_));
            if waiting && slot.deadline <= now {
                if let SlotState::Running(jobs) = &slot.state {
                    jobs.cancel();
                }
                log::warn!("request {} timed out; its work was cancelled", slot.seq);
                slot.state = SlotState::Ready(Error::GatewayTimeout.into_response());
                expired += 1;
            }
        }
        expired
    }

    /// The earliest deadline of a request still waiting for its response.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter(|slot| matches!(slot.state, SlotState::Running(_) | SlotState::Sleeping(_)))
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

    /// True while some request waits on a job or a timer (rather than only on earlier
    /// responses or the socket).
    pub fn has_work_outstanding(&self) -> bool {
        self.slots
            .iter()
            .any(|slot| matches!(slot.state, SlotState::Running(_) | SlotState::Sleeping(_)))
    }

    /// The next response, if the request at the front has one ready.
    pub fn pop_ready(&mut self) -> Option<(Answer, ResponseMeta)> {
        let front = self.slots.front()?;
        if !matches!(front.state, SlotState::Ready(_) | SlotState::Continue) {
            return None;
        }
        let slot = self.slots.pop_front()?;
        if self.slots.is_empty() {
            // Give the memory back: an idle connection holds no buffer at all.
            self.slots = VecDeque::new();
        }
        match slot.state {
            SlotState::Continue => Some((Answer::Continue, slot.meta)),
            SlotState::Ready(response) => Some((Answer::Final(response), slot.meta)),
            SlotState::Running(_) | SlotState::Sleeping(_) => None,
        }
    }

    /// Set every cancel flag: nobody will read these answers (the connection is closing).
    pub fn cancel_all(&self) {
        for slot in &self.slots {
            if let SlotState::Running(jobs) = &slot.state {
                jobs.cancel();
            }
        }
    }
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
        Reply::Offload(work) => submit(vec![work], seq, None, scheduler),
        Reply::Gather(parts, join) => {
            if parts.is_empty() {
                return SlotState::Ready(run_join(join, Vec::new()));
            }
            let works = parts
                .into_iter()
                .map(|part| -> Work<Reply> { Box::new(move |job| Reply::Now(part(job))) })
                .collect();
            submit(works, seq, Some(join), scheduler)
        }
    }
}

/// Queue `works` (one job, or every part of a gather). If any part cannot be queued, the parts
/// already queued are cancelled and the request is answered 503 at once.
fn submit(
    works: Vec<Work<Reply>>,
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

/// Run a gather's join. It is user code on the loop's thread, so a panic in it is caught: a
/// 500 for that request, not the end of the server.
fn run_join(join: Join, parts: Vec<Response>) -> Response {
    match catch_unwind(AssertUnwindSafe(move || join(parts))) {
        Ok(response) => response,
        Err(_) => {
            log::error!("a gather's join panicked");
            Error::JobPanicked.into_response()
        }
    }
}

#[cfg(test)]
mod tests;
