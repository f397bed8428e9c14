//! The worker pool: a fixed set of threads that run CPU-heavy jobs off the reactor.
//!
//! This is `run_in_threadpool` / `loop.run_in_executor(executor, ...)` of the notes, with every
//! moving part in view:
//!
//! ```text
//!  reactor ──try_send(Job)──▶ [bounded job queue] ──▶ evloop-worker-K runs the job
//!     ▲                                                        │
//!     └── poll() returns WAKER ◀── waker.wake() ◀── send(Completion) on the completion channel
//! ```
//!
//! Rules this module keeps (each one is a bug somebody shipped):
//!
//! 1. **The reactor never blocks on the pool.** Jobs go in with `try_send`; a full queue is
//!    reported at once as [`SubmitError::Full`] (the server answers 503 + `Retry-After`), never
//!    waited out.
//! 2. **Send, then wake.** A worker puts its completion on the channel *before* waking the
//!    reactor, so the reactor can never wake, find nothing, and sleep through the result.
//! 3. **Wakes coalesce; never miss one.** Three completions may produce one `WAKER` event, so
//!    the reactor calls [`Pool::try_message`] until it returns `None` (or, at its bound per
//!    turn, on its next turn without sleeping). To spare a `write(2)`
//!    per completion, a worker only calls `wake()` when the `wake_pending` flag was clear
//!    (libuv's `uv_async_send` does the same). The reactor re-arms the flag with
//!    [`Pool::rearm_waker`] *before* it takes completions, so a completion sent after that point
//!    always wakes it again; a `wake()` that fails clears the flag, so the next completion tries
//!    again instead of trusting a wake-up that never happened.
//! 4. **A panicking job costs one answer, not one worker.** Each job runs under `catch_unwind`;
//!    the panic becomes [`Outcome::Panicked`] and the thread takes the next job.
//! 5. **Cancellation is cooperative.** Every job carries a flag the reactor sets when the client
//!    goes away. A queued job whose flag is set is skipped; a running job may poll
//!    [`JobContext::is_cancelled`] and stop early. A job that never looks cannot be stopped, so
//!    [`Pool::join_until`] waits for the workers only until a deadline.
//! 6. **The reactor stays ahead of its workers, without starving them.** While the reactor waits
//!    for a CPU, every connection waits; but a pool that only runs when the machine is otherwise
//!    idle stops entirely beside any busy process. By default workers take their fair share of
//!    the CPU, never preempt anyone when they wake, and give the CPU away at their checkpoints
//!    ([`JobContext::is_cancelled`]) at most every [`YIELD_EVERY`] of work, the way every
//!    `await` of an asyncio coroutine is both a cancellation point and a chance for the loop to
//!    run. [`WorkerPriority`] chooses the trade-off; `docs/SCHEDULING.md` measures each choice.
//!
//! 7. **Progress never makes a worker wait, nor memory grow.** A running job may send partial
//!    results before its final one ([`JobContext::emit`]); they travel the same channel and wake
//!    the reactor the same way as completions. Each job has at most one message in the channel:
//!    one emitted while the previous is still there waits in the job's outbox, where a newer one
//!    replaces it, and goes out at the job's next `emit` or checkpoint after the reactor has
//!    taken the previous one (taking a message gives the job its credit back). Progress is a
//!    snapshot, so the newest is all anyone needs; the final result is never replaced.
//!
//! The pool knows nothing about HTTP: a job is a closure producing any `T`, a progress message
//! is bytes, and a [`Ticket`] is an opaque triple the reactor uses to find who asked.

use std::any::Any;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use mio::Waker;

use crate::sys::{self, Policy};

/// Who is waiting for a job: the reactor's connection token, the request's sequence number on
/// that connection, and which part of a gathered request this job is. The pool only carries it
/// back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// The connection's token (slot index and generation).
    pub owner: usize,
    /// The request's position in that connection's pipeline.
    pub seq: u64,
    /// The part, for a request answered by several jobs at once (0 otherwise).
    pub part: usize,
}

/// How often, at most, a job running in [`WorkerPriority::Batch`] gives the CPU away at a
/// checkpoint. The kernel re-examines a running thread's slice only at its timer tick (every
/// 4 ms at the common `HZ=250`), so without checkpoints a reactor that a worker displaced waits
/// up to a tick; with them, about this long (if the job checks often). Shorter costs job
/// throughput beside
/// other processes (each yield is a chance for them to run too); 250 µs and 1 ms were measured
/// against this value in `docs/SCHEDULING.md`.
pub const YIELD_EVERY: Duration = Duration::from_micros(500);

/// What a running job can see of its surroundings.
pub struct JobContext<'a> {
    /// Which worker runs the job (`K` in `evloop-worker-K`).
    pub worker: usize,
    /// How long the job waited in the queue before a worker took it.
    pub queued: Duration,
    cancel: &'a AtomicBool,
    /// When the job started: the origin of `next_yield`.
    started: Instant,
    /// [`YIELD_EVERY`], or `None` when the workers' mode never yields.
    yield_every: Option<Duration>,
    /// Nanoseconds after `started` at which the next checkpoint yields. Atomic rather than a
    /// `Cell` so that a job may share its context with threads of its own.
    next_yield: AtomicU64,
    /// Where [`JobContext::emit`] sends progress; `None` in contexts made for tests.
    progress: Option<&'a (dyn SendProgress + Sync)>,
    /// Progress waiting for the job's credit (rule 7). A mutex for the same reason as above;
    /// only `emit`, and a checkpoint while a message waits, take it.
    outbox: Mutex<Outbox>,
    /// True while a message waits in the outbox: lets a checkpoint skip the lock.
    holding: AtomicBool,
}

/// A job's side of rule 7.
#[derive(Default)]
struct Outbox {
    /// Set while one of this job's messages is in the channel; created at the first `emit`.
    credit: Option<Arc<AtomicBool>>,
    /// The newest message emitted while the credit was out.
    held: Option<Vec<u8>>,
}

/// How a worker puts a progress message on the channel and wakes the reactor.
trait SendProgress {
    fn send_progress(&self, bytes: Vec<u8>, credit: Arc<AtomicBool>);
}

impl JobContext<'_> {
    /// The context of a job that starts now on `worker`.
    fn new<'a>(
        worker: usize,
        queued: Duration,
        cancel: &'a AtomicBool,
        yield_every: Option<Duration>,
        progress: Option<&'a (dyn SendProgress + Sync)>,
    ) -> JobContext<'a> {
        JobContext {
            worker,
            queued,
            cancel,
            started: Instant::now(),
            yield_every,
            next_yield: AtomicU64::new(yield_every.map_or(u64::MAX, nanos)),
            progress,
            outbox: Mutex::new(Outbox::default()),
            holding: AtomicBool::new(false),
        }
    }

    /// True once the reactor has given up on this job (the client left or timed out). Long jobs
    /// should check it between units of work and return early.
    ///
    /// It is also the job's checkpoint for the scheduler: in the default
    /// [`WorkerPriority::Batch`], when the job has run [`YIELD_EVERY`] since its last yield, the
    /// worker gives the CPU away (`sched_yield`) before answering, so a reactor waiting for this
    /// CPU runs now rather than at the next timer tick. If nobody is waiting, the call returns
    /// at once; the cost is a clock read per call. And it is where a progress message that
    /// waits in the job's outbox goes out, once the reactor has taken the previous one.
    pub fn is_cancelled(&self) -> bool {
        self.checkpoint();
        if self.holding.load(Ordering::Relaxed) {
            self.send_held();
        }
        self.cancel.load(Ordering::Relaxed)
    }

    /// Send a progress message towards whoever waits for this job's result (for an HTTP stream,
    /// one piece of the response body), without waiting for anything: the
    /// `yield` of an async generator behind a `StreamingResponse`.
    ///
    /// A message is a snapshot that a newer one makes obsolete, so messages may be coalesced on
    /// the way: if this job's previous message is still in the channel, this one waits in the
    /// job's outbox, where a newer message replaces it, and goes out at the job's next `emit` or
    /// checkpoint ([`JobContext::is_cancelled`]) after the reactor has taken the previous one
    /// (rule 7). The job's result is never coalesced, and makes a message still waiting in the
    /// outbox obsolete. Messages that do arrive keep their order, and all of them arrive before
    /// the result.
    pub fn emit(&self, message: impl Into<Vec<u8>>) {
        if self.progress.is_none() {
            return;
        }
        let mut outbox = self.outbox();
        // A message waiting is older than this one: this one takes its place.
        outbox.held = Some(message.into());
        self.holding.store(true, Ordering::Relaxed);
        self.send_from(outbox);
    }

    /// Send the message waiting in the outbox, if the credit is back.
    fn send_held(&self) {
        let outbox = self.outbox();
        self.send_from(outbox);
    }

    /// Send the outbox's message if the job holds the credit; otherwise leave it waiting.
    fn send_from(&self, mut outbox: MutexGuard<'_, Outbox>) {
        let Some(progress) = self.progress else {
            return;
        };
        let credit = Arc::clone(
            outbox
                .credit
                .get_or_insert_with(|| Arc::new(AtomicBool::new(false))),
        );
        if outbox.held.is_none() || credit.swap(true, Ordering::AcqRel) {
            return; // nothing to send, or the previous message is still in the channel
        }
        let Some(message) = outbox.held.take() else {
            return;
        };
        self.holding.store(false, Ordering::Relaxed);
        drop(outbox);
        progress.send_progress(message, credit);
    }

    /// The outbox. A poisoned lock only means a thread of this job panicked while emitting; the
    /// outbox itself is always whole.
    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Yield the CPU if the job has run [`YIELD_EVERY`] since the last yield. Returns true when
    /// it did.
    fn checkpoint(&self) -> bool {
        let Some(every) = self.yield_every else {
            return false;
        };
        let now = nanos(self.started.elapsed());
        if now < self.next_yield.load(Ordering::Relaxed) {
            return false;
        }
        self.next_yield.store(now + nanos(every), Ordering::Relaxed);
        std::thread::yield_now();
        true
    }
}

/// A duration in whole nanoseconds (saturating; 584 years fit).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The work itself: runs once, on a worker thread.
pub type Work<T> = Box<dyn FnOnce(&JobContext<'_>) -> T + Send + 'static>;

/// A job in the queue.
struct Job<T> {
    ticket: Ticket,
    cancel: Arc<AtomicBool>,
    enqueued: Instant,
    work: Work<T>,
}

/// How a job ended.
#[derive(Debug)]
pub enum Outcome<T> {
    /// The job ran and returned a value.
    Done(T),
    /// The job panicked; the message is kept for the log.
    Panicked(String),
    /// The job was cancelled before a worker started it, and was skipped.
    Cancelled,
}

/// A finished job, on its way back to the reactor.
#[derive(Debug)]
pub struct Completion<T> {
    /// Who asked.
    pub ticket: Ticket,
    /// The result.
    pub outcome: Outcome<T>,
    /// Time spent waiting in the queue.
    pub queued: Duration,
    /// Time spent running (zero for a skipped job).
    pub run: Duration,
}

/// A progress message from a running job ([`JobContext::emit`]).
#[derive(Debug)]
pub struct Progress {
    /// Whose job sent it.
    pub ticket: Ticket,
    /// The message.
    pub bytes: Vec<u8>,
}

/// What comes back from the workers, in the order each worker sent it.
#[derive(Debug)]
pub enum Message<T> {
    /// A job in progress emitted a message.
    Progress(Progress),
    /// A job ended.
    Done(Completion<T>),
}

/// What travels on the channel: a message, and for progress the credit to give back (rule 7).
enum Envelope<T> {
    Progress(Progress, Arc<AtomicBool>),
    Done(Completion<T>),
}

/// How worker threads are scheduled against the reactor (`--worker-priority`).
///
/// The reactor is the latency-critical thread: while it waits for a CPU, every connection waits.
/// The workers are the throughput: while they wait, every job waits. Each mode is one trade-off
/// between the two; `docs/SCHEDULING.md` measures all four beside busy processes and under a
/// saturated pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WorkerPriority {
    /// SCHED_BATCH workers that yield at checkpoints: fair beside other processes (default)
    ///
    /// Workers get their fair share of the CPU beside other processes, but a waking worker
    /// never preempts the reactor, and a running job gives the CPU away at its checkpoints
    /// ([`JobContext::is_cancelled`]) at most every [`YIELD_EVERY`].
    #[default]
    Batch,
    /// Workers scheduled exactly like the reactor
    ///
    /// Nothing is changed: a worker and the reactor compete for a CPU as equals, and a worker
    /// that holds one keeps it until the kernel's next tick.
    Normal,
    /// Workers at nice +19: starved beside any busy process
    ///
    /// The reactor is strongly favoured, but beside a busy process the workers get about 1/70
    /// of a CPU each.
    Low,
    /// SCHED_IDLE workers: stopped beside any busy process
    ///
    /// Workers run only when nothing else wants the CPU, so the reactor never waits for them;
    /// beside any busy process the pool stops.
    Idle,
}

impl WorkerPriority {
    /// Apply this priority to the calling thread, a worker at its start. Failure (a container
    /// that forbids it) only leaves the thread at normal priority, so it is logged and ignored.
    fn apply_to_worker(self) {
        let result = match self {
            WorkerPriority::Batch => sys::set_thread_policy(Policy::Batch),
            WorkerPriority::Normal => Ok(()),
            WorkerPriority::Low => {
                sys::thread_nice().and_then(|nice| sys::set_thread_nice(nice + 19))
            }
            WorkerPriority::Idle => sys::set_thread_policy(Policy::Idle),
        };
        if let Err(err) = result {
            log::warn!("worker stays at normal priority: {self:?} scheduling failed: {err}");
        }
    }

    /// How often a job yields at its checkpoints in this mode.
    fn yield_every(self) -> Option<Duration> {
        match self {
            WorkerPriority::Batch => Some(YIELD_EVERY),
            // `normal` changes nothing by definition; `low` and `idle` already put every other
            // thread first.
            WorkerPriority::Normal | WorkerPriority::Low | WorkerPriority::Idle => None,
        }
    }
}

/// Why a job could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// `--queue` jobs are already waiting: shed load (503) instead of queueing without bound.
    Full,
    /// The workers are gone (the pool is shutting down).
    Closed,
}

/// A fixed pool of worker threads and the two channels that connect it to the reactor.
pub struct Pool<T: Send + 'static> {
    /// Bounded: its capacity is `--queue`. `None` once [`Pool::close`] has run.
    jobs: Option<Sender<Job<T>>>,
    /// Unbounded on purpose: a worker must never block on the reactor. Its length is bounded
    /// anyway: one completion per job in flight (queue + workers), and at most one progress
    /// message per running job (rule 7).
    messages: Receiver<Envelope<T>>,
    /// Jobs that ended with their cancel flag set: skipped in the queue, or stopped (or
    /// finished) after the reactor gave up on them.
    cancelled: Arc<AtomicU64>,
    /// How workers wake the reactor (rule 3); shared with every worker.
    notifier: Arc<Notifier>,
    /// Workers currently running a job.
    busy: Arc<AtomicUsize>,
    /// Never carries a message: each worker holds a sender and drops it as it returns, so the
    /// channel disconnects when the last worker is gone. [`Pool::join_until`] waits on it with a
    /// deadline, which a `JoinHandle` cannot do.
    exits: Receiver<()>,
    /// The threads, joined by [`Pool::join`] and [`Pool::join_until`].
    threads: Vec<JoinHandle<()>>,
    size: usize,
}

impl<T: Send + 'static> Pool<T> {
    /// Start `size` threads named `evloop-worker-K` sharing a queue of `queue` jobs. `waker` wakes
    /// the reactor's `poll`; `priority` says how the workers are scheduled against it.
    pub fn start(
        size: usize,
        queue: usize,
        waker: Arc<Waker>,
        priority: WorkerPriority,
    ) -> io::Result<Self> {
        let (job_tx, job_rx) = crossbeam_channel::bounded::<Job<T>>(queue.max(1));
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Envelope<T>>();
        let cancelled = Arc::new(AtomicU64::new(0));
        let (exit_tx, exit_rx) = crossbeam_channel::bounded::<()>(0);
        let notifier = Arc::new(Notifier::new(waker));
        let busy = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::with_capacity(size);
        for worker in 0..size {
            let jobs = job_rx.clone();
            let done = done_tx.clone();
            let notifier = Arc::clone(&notifier);
            let busy = Arc::clone(&busy);
            let cancelled = Arc::clone(&cancelled);
            let exit = exit_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("evloop-worker-{worker}"))
                .spawn(move || {
                    priority.apply_to_worker();
                    let yield_every = priority.yield_every();
                    let shared = WorkerShared {
                        done,
                        notifier: &notifier,
                        busy: &busy,
                        cancelled: &cancelled,
                    };
                    worker_loop(worker, yield_every, jobs, &shared);
                    drop(exit); // the last one to go disconnects `exits`
                })?;
            threads.push(handle);
        }
        Ok(Pool {
            jobs: Some(job_tx),
            messages: done_rx,
            cancelled,
            notifier,
            busy,
            exits: exit_rx,
            threads,
            size,
        })
    }

    /// Queue `work` for `ticket` without blocking. Returns the job's cancel flag: store it, and
    /// set it when nobody wants the answer any more.
    pub fn submit(&self, ticket: Ticket, work: Work<T>) -> Result<Arc<AtomicBool>, SubmitError> {
        let Some(jobs) = &self.jobs else {
            return Err(SubmitError::Closed);
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let job = Job {
            ticket,
            cancel: Arc::clone(&cancel),
            enqueued: Instant::now(),
            work,
        };
        match jobs.try_send(job) {
            Ok(()) => Ok(cancel),
            Err(TrySendError::Full(_)) => Err(SubmitError::Full),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Closed),
        }
    }

    /// Call once per `WAKER` event, *before* taking messages with [`Pool::try_message`]: from
    /// here on, the next message a worker sends wakes the reactor again (rule 3).
    pub fn rearm_waker(&self) {
        self.notifier.rearm();
    }

    /// The next message from the workers, if any. Never blocks. Taking a progress message gives
    /// its job the credit to send the next one (rule 7).
    pub fn try_message(&self) -> Option<Message<T>> {
        match self.messages.try_recv() {
            Ok(Envelope::Progress(progress, credit)) => {
                credit.store(false, Ordering::Release);
                Some(Message::Progress(progress))
            }
            Ok(Envelope::Done(completion)) => Some(Message::Done(completion)),
            // Empty: drained. Disconnected cannot happen while a worker lives, and the pool
            // outlives its workers' senders only after `join`.
            Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => None,
        }
    }

    /// Jobs so far that ended with their cancel flag set: skipped while queued, or run by a
    /// worker after the reactor had given up on them.
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Number of worker threads.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.jobs.as_ref().map_or(0, |jobs| jobs.len())
    }

    /// Workers running a job right now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// Stop taking jobs: workers finish what is queued and exit.
    pub fn close(&mut self) {
        self.jobs = None;
    }

    /// Close the queue and wait for every worker to exit, however long their jobs take. A job
    /// that ignores its cancel flag holds this up for as long as it runs: a server on its way
    /// out wants [`Pool::join_until`].
    pub fn join(mut self) {
        self.close();
        for handle in self.threads.drain(..) {
            // A worker never panics (jobs run under catch_unwind); if one did, there is nothing
            // left to clean up.
            let _ = handle.join();
        }
    }

    /// Close the queue and wait for every worker to exit, but not past `deadline`. True when
    /// they all exited in time. Workers still running a job at the deadline are abandoned:
    /// their threads are detached, and end with the process, which is about to exit. This is
    /// what makes `--shutdown-timeout` bound the exit even when a job never checks
    /// [`JobContext::is_cancelled`].
    pub fn join_until(mut self, deadline: Instant) -> bool {
        self.close();
        loop {
            match self.exits.recv_deadline(deadline) {
                // Nothing is ever sent on `exits`; only the disconnection means something.
                Ok(()) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    log::warn!(
                        "{} of {} workers still running a job at the shutdown deadline; \
                         abandoning them",
                        self.busy(),
                        self.size
                    );
                    return false;
                }
            }
        }
        for handle in self.threads.drain(..) {
            // Every worker has returned from its loop; this only reaps the thread.
            let _ = handle.join();
        }
        true
    }
}

/// What every worker shares with the pool.
struct WorkerShared<'a, T> {
    done: Sender<Envelope<T>>,
    notifier: &'a Notifier,
    busy: &'a AtomicUsize,
    cancelled: &'a AtomicU64,
}

/// A worker's way to send the progress of the job it runs.
struct ProgressSender<'a, T> {
    shared: &'a WorkerShared<'a, T>,
    worker: usize,
    ticket: Ticket,
}

impl<T> SendProgress for ProgressSender<'_, T> {
    fn send_progress(&self, bytes: Vec<u8>, credit: Arc<AtomicBool>) {
        let progress = Progress {
            ticket: self.ticket,
            bytes,
        };
        // Rule 2, as for completions. A reactor that is gone reads nothing; the job's own
        // completion will find the channel closed too.
        if self
            .shared
            .done
            .send(Envelope::Progress(progress, credit))
            .is_ok()
        {
            self.shared.notifier.notify(self.worker);
        }
    }
}

/// One worker thread: take a job, run it under `catch_unwind`, send the completion, wake.
fn worker_loop<T: Send>(
    worker: usize,
    yield_every: Option<Duration>,
    jobs: Receiver<Job<T>>,
    shared: &WorkerShared<'_, T>,
) {
    // `recv` returns Err once the reactor drops the sending half: the pool is closing.
    while let Ok(job) = jobs.recv() {
        let started = Instant::now();
        let queued = started.saturating_duration_since(job.enqueued);
        let outcome = if job.cancel.load(Ordering::Relaxed) {
            // The client left while we were queued: skip the work entirely.
            Outcome::Cancelled
        } else {
            shared.busy.fetch_add(1, Ordering::Relaxed);
            let sender = ProgressSender {
                shared,
                worker,
                ticket: job.ticket,
            };
            let ctx = JobContext::new(worker, queued, &job.cancel, yield_every, Some(&sender));
            let work = job.work;
            let result = catch_unwind(AssertUnwindSafe(move || work(&ctx)));
            shared.busy.fetch_sub(1, Ordering::Relaxed);
            match result {
                Ok(value) => Outcome::Done(value),
                Err(payload) => {
                    Outcome::Panicked(panic_message(payload.as_ref(), "a job panicked"))
                }
            }
        };
        if job.cancel.load(Ordering::Relaxed) {
            shared.cancelled.fetch_add(1, Ordering::Relaxed);
        }
        let completion = Completion {
            ticket: job.ticket,
            outcome,
            queued,
            run: started.elapsed(),
        };
        // Rule 2: send first, then wake.
        if shared.done.send(Envelope::Done(completion)).is_err() {
            return; // The reactor is gone; nobody is listening.
        }
        shared.notifier.notify(worker);
    }
}

/// How workers wake the reactor: at most once between two [`Pool::rearm_waker`] calls, and
/// again after a wake-up that failed (rule 3).
struct Notifier {
    waker: Arc<Waker>,
    /// Set by the worker that wakes the reactor, cleared by the reactor when it re-arms (and by
    /// a worker whose `wake()` failed).
    ///
    /// Why it never misses a completion: every change of the flag on the happy path is an
    /// atomic read-modify-write with `AcqRel` ordering. A worker sends its completion, then
    /// swaps in `true`. If it finds `true` already, some wake-up is pending that the reactor has
    /// not re-armed yet: the reactor's later `swap(false)` reads the worker's `true` (or a later
    /// swap's, which continues the same release sequence), so it *synchronises with* the
    /// worker's swap, and everything the worker did before, the send included, is visible to
    /// the `try_recv` calls that follow. That is a guarantee of the memory model, not of the
    /// x86 hardware, which would forgive weaker orderings.
    pending: AtomicBool,
    /// Failed wake-ups are logged at most once a second.
    failures: LogLimit,
}

impl Notifier {
    fn new(waker: Arc<Waker>) -> Notifier {
        Notifier {
            waker,
            pending: AtomicBool::new(false),
            failures: LogLimit::new(Duration::from_secs(1)),
        }
    }

    /// Called by a worker after sending a completion.
    fn notify(&self, worker: usize) {
        self.notify_with(worker, || self.waker.wake());
    }

    /// [`Notifier::notify`] with the wake-up itself supplied, so a test can make it fail.
    /// Returns true when this call woke the reactor.
    fn notify_with(&self, worker: usize, wake: impl FnOnce() -> io::Result<()>) -> bool {
        if self.pending.swap(true, Ordering::AcqRel) {
            return false; // a wake-up is already on its way; it will find our completion too
        }
        match wake() {
            Ok(()) => true,
            Err(err) => {
                // The reactor was not woken, so it will never re-arm: clear the flag ourselves,
                // or every later completion would trust this wake-up and wait forever. Our own
                // completion waits for the next one that wakes the reactor.
                self.pending.store(false, Ordering::Release);
                if let Some(suppressed) = self.failures.allow() {
                    log::error!(
                        "worker {worker}: waking the reactor failed: {err} \
                         ({suppressed} more failures since the last report)"
                    );
                }
                false
            }
        }
    }

    /// Called by the reactor, once per `WAKER` event, before it takes completions.
    fn rearm(&self) {
        self.pending.swap(false, Ordering::AcqRel);
    }
}

/// Lets a repeated error through to the log at most once per period, counting what it held
/// back.
struct LogLimit {
    period_ms: u64,
    start: Instant,
    /// Milliseconds since `start` before which nothing more is logged.
    next_ms: AtomicU64,
    /// Errors held back since the last one logged.
    suppressed: AtomicU64,
}

impl LogLimit {
    fn new(period: Duration) -> LogLimit {
        LogLimit {
            period_ms: period.as_millis() as u64,
            start: Instant::now(),
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(number held back since the last report)` when this error may be logged.
    fn allow(&self) -> Option<u64> {
        let now = self.start.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + self.period_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// The text of a panic payload (`panic!("...")` carries a `&str` or a `String`; anything else
/// is described as `otherwise`).
pub(crate) fn panic_message(payload: &(dyn Any + Send), otherwise: &str) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        otherwise.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};

    const WAKER: Token = Token(1);

    fn pool(size: usize, queue: usize) -> (Poll, Pool<u32>) {
        let poll = Poll::new().expect("poll");
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).expect("waker"));
        (
            poll,
            Pool::start(size, queue, waker, WorkerPriority::Normal).expect("pool"),
        )
    }

    /// Wait for `n` completions the way the reactor does: poll for the waker, drain until empty.
    fn collect(poll: &mut Poll, pool: &Pool<u32>, n: usize) -> Vec<Completion<u32>> {
        let mut events = Events::with_capacity(8);
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while out.len() < n && Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .expect("poll");
            pool.rearm_waker();
            while let Some(message) = pool.try_message() {
                if let Message::Done(c) = message {
                    out.push(c);
                }
            }
        }
        out
    }

    /// Completions come back through the waker, carrying the ticket they went out with.
    #[test]
    fn completions_wake_the_poller() {
        let (mut poll, pool) = pool(2, 8);
        for seq in 0..4 {
            let ticket = Ticket {
                owner: 9,
                seq,
                part: 0,
            };
            pool.submit(ticket, Box::new(move |_| seq as u32 * 10))
                .expect("queued");
        }
        let mut got: Vec<(u64, u32)> = collect(&mut poll, &pool, 4)
            .into_iter()
            .map(|c| match c.outcome {
                Outcome::Done(v) => (c.ticket.seq, v),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        got.sort();
        assert_eq!(got, vec![(0, 0), (1, 10), (2, 20), (3, 30)]);
    }

    /// A panic is reported as an outcome and the same single worker runs the next job.
    #[test]
    fn a_panicking_job_does_not_kill_its_worker() {
        let (mut poll, pool) = pool(1, 8);
        let t = |seq| Ticket {
            owner: 1,
            seq,
            part: 0,
        };
        pool.submit(t(0), Box::new(|_| panic!("boom")))
            .expect("queued");
        pool.submit(t(1), Box::new(|ctx| ctx.worker as u32 + 7))
            .expect("queued");
        let done = collect(&mut poll, &pool, 2);
        assert!(matches!(&done[0].outcome, Outcome::Panicked(m) if m == "boom"));
        assert!(matches!(done[1].outcome, Outcome::Done(7)));
    }

    /// A full queue is refused at once, and a cancelled queued job is skipped, not run.
    #[test]
    fn full_queue_is_refused_and_cancelled_jobs_are_skipped() {
        let (mut poll, pool) = pool(1, 1);
        let t = |seq| Ticket {
            owner: 1,
            seq,
            part: 0,
        };
        let gate = Arc::new(AtomicBool::new(false));
        let hold = Arc::clone(&gate);
        // Occupy the only worker until `gate` opens.
        pool.submit(
            t(0),
            Box::new(move |_| {
                while !hold.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                0
            }),
        )
        .expect("queued");
        // Wait until the worker has taken job 0, so the queue slot is free again.
        while pool.busy() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let ran = Arc::new(AtomicBool::new(false));
        let ran2 = Arc::clone(&ran);
        let cancel = pool
            .submit(
                t(1),
                Box::new(move |_| {
                    ran2.store(true, Ordering::SeqCst);
                    1
                }),
            )
            .expect("queued");
        assert_eq!(
            pool.submit(t(2), Box::new(|_| 2)).unwrap_err(),
            SubmitError::Full
        );
        cancel.store(true, Ordering::SeqCst);
        gate.store(true, Ordering::SeqCst);
        let done = collect(&mut poll, &pool, 2);
        assert!(matches!(done[1].outcome, Outcome::Cancelled));
        assert!(!ran.load(Ordering::SeqCst), "a cancelled job never runs");
    }

    /// A job has at most one progress message in the channel: what it emits meanwhile waits in
    /// its outbox, the newest replacing the older, and goes out at the job's first checkpoint
    /// (or `emit`) after the reactor has taken the previous message. Messages keep their order,
    /// before the result.
    #[test]
    fn a_job_has_one_progress_message_in_the_channel_at_a_time() {
        let (mut poll, pool) = pool(1, 8);
        let ticket = Ticket {
            owner: 3,
            seq: 0,
            part: 0,
        };
        let (step_tx, step_rx) = crossbeam_channel::unbounded::<()>();
        let (emitted_tx, emitted_rx) = crossbeam_channel::unbounded::<()>();
        pool.submit(
            ticket,
            Box::new(move |job| {
                for i in 0..5u8 {
                    job.emit(vec![i]); // 0 goes out; 1..=4 wait, each replacing the last
                }
                emitted_tx.send(()).unwrap();
                step_rx.recv().unwrap(); // the reactor has taken message 0
                assert!(!job.is_cancelled()); // a checkpoint: 4 goes out
                emitted_tx.send(()).unwrap();
                step_rx.recv().unwrap(); // the reactor has taken message 4
                job.emit(vec![8]); // the credit is back: 8 goes out
                job.emit(vec![9]); // waits, and is made obsolete by the result
                emitted_tx.send(()).unwrap();
                step_rx.recv().unwrap();
                7
            }),
        )
        .expect("queued");
        let mut events = Events::with_capacity(8);
        let mut take = |poll: &mut Poll| {
            emitted_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("job ran");
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .expect("poll");
            pool.rearm_waker();
            let mut got = Vec::new();
            while let Some(message) = pool.try_message() {
                match message {
                    Message::Progress(p) => got.push(p.bytes),
                    Message::Done(_) => panic!("done too early"),
                }
            }
            step_tx.send(()).unwrap();
            got
        };
        assert_eq!(take(&mut poll), vec![vec![0]]);
        assert_eq!(take(&mut poll), vec![vec![4]]);
        assert_eq!(take(&mut poll), vec![vec![8]]);
        let done = collect(&mut poll, &pool, 1);
        assert!(matches!(done[0].outcome, Outcome::Done(7)));
        assert_eq!(pool.cancelled(), 0);
    }

    /// A job may share its context with threads of its own.
    #[test]
    fn a_job_context_can_be_shared_with_the_jobs_own_threads() {
        fn assert_sync<T: Sync>() {}
        assert_sync::<JobContext<'static>>();
    }

    /// Jobs that end with their cancel flag set are counted, skipped or not.
    #[test]
    fn cancelled_jobs_are_counted() {
        let (mut poll, pool) = pool(1, 8);
        let t = |seq| Ticket {
            owner: 1,
            seq,
            part: 0,
        };
        let gate = Arc::new(AtomicBool::new(false));
        let hold = Arc::clone(&gate);
        let running = pool
            .submit(
                t(0),
                Box::new(move |job| {
                    while !hold.load(Ordering::SeqCst) && !job.is_cancelled() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    0
                }),
            )
            .expect("queued");
        let queued = pool.submit(t(1), Box::new(|_| 1)).expect("queued");
        pool.submit(t(2), Box::new(|_| 2)).expect("queued");
        queued.store(true, Ordering::SeqCst);
        running.store(true, Ordering::SeqCst);
        collect(&mut poll, &pool, 3);
        assert_eq!(pool.cancelled(), 2);
        drop(gate);
    }

    /// A notifier on a real poller, for the wake-up rules.
    fn notifier() -> (Poll, Notifier) {
        let poll = Poll::new().expect("poll");
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).expect("waker"));
        (poll, Notifier::new(waker))
    }

    /// Wake-ups coalesce: once one is pending, further completions do not wake again until the
    /// reactor re-arms; after that, the next completion wakes it.
    #[test]
    fn wake_ups_coalesce_until_the_reactor_rearms() {
        let (_poll, notifier) = notifier();
        let mut wakes = 0;
        let mut wake = || {
            wakes += 1;
            Ok(())
        };
        assert!(notifier.notify_with(0, &mut wake));
        assert!(!notifier.notify_with(1, &mut wake));
        assert!(!notifier.notify_with(0, &mut wake));
        notifier.rearm();
        assert!(notifier.notify_with(1, &mut wake));
        assert_eq!(wakes, 2);
    }

    /// A failed `wake()` clears the pending flag, so the next completion tries to wake the
    /// reactor again instead of trusting a wake-up that never happened.
    #[test]
    fn a_failed_wake_up_is_retried_by_the_next_completion() {
        let (_poll, notifier) = notifier();
        let failing = || Err(io::Error::other("eventfd write failed"));
        assert!(!notifier.notify_with(0, failing));
        assert!(
            !notifier.pending.load(Ordering::Acquire),
            "the flag stayed set after a failed wake-up"
        );
        let mut tried = false;
        assert!(notifier.notify_with(1, || {
            tried = true;
            Ok(())
        }));
        assert!(tried, "the next completion did not try to wake the reactor");
    }

    /// Repeated failures are logged once per period, with the count of those held back.
    #[test]
    fn log_limit_lets_one_error_through_per_period() {
        let limit = LogLimit::new(Duration::from_millis(200));
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.allow(), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(limit.allow(), Some(2));
    }

    /// `join_until` returns true at once when every worker is idle.
    #[test]
    fn join_until_with_idle_workers_is_prompt() {
        let (_poll, pool) = pool(2, 8);
        let started = Instant::now();
        assert!(pool.join_until(started + Duration::from_secs(5)));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    /// A job that ignores its cancel flag cannot hold `join_until` past its deadline: it
    /// returns false at the deadline and abandons the worker.
    #[test]
    fn join_until_abandons_a_job_that_ignores_cancellation() {
        let (_poll, pool) = pool(1, 8);
        let ticket = Ticket {
            owner: 1,
            seq: 0,
            part: 0,
        };
        let cancel = pool
            .submit(
                ticket,
                Box::new(|_| {
                    // Never looks at its cancel flag.
                    std::thread::sleep(Duration::from_secs(3));
                    0
                }),
            )
            .expect("queued");
        while pool.busy() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        cancel.store(true, Ordering::SeqCst);
        let started = Instant::now();
        assert!(!pool.join_until(started + Duration::from_millis(200)));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(190) && took < Duration::from_millis(1000),
            "join_until returned after {took:?}"
        );
    }

    /// A checkpoint yields the CPU at most once per period of work, the first time only after a
    /// full period; in a mode that never yields, it never does.
    #[test]
    fn checkpoints_yield_at_most_once_per_period() {
        let cancel = AtomicBool::new(false);
        let period = Duration::from_millis(50);
        let ctx = JobContext::new(0, Duration::ZERO, &cancel, Some(period), None);
        assert!(!ctx.checkpoint(), "yielded before a full period of work");
        std::thread::sleep(period + Duration::from_millis(10));
        assert!(ctx.checkpoint());
        assert!(!ctx.checkpoint(), "yielded twice in one period");
        std::thread::sleep(period + Duration::from_millis(10));
        assert!(ctx.checkpoint());
        assert!(!ctx.is_cancelled());
        cancel.store(true, Ordering::Relaxed);
        assert!(ctx.is_cancelled());

        let never = JobContext::new(0, Duration::ZERO, &cancel, None, None);
        std::thread::sleep(period + Duration::from_millis(10));
        assert!(!never.checkpoint());
        assert_eq!(WorkerPriority::Batch.yield_every(), Some(YIELD_EVERY));
        assert_eq!(WorkerPriority::Normal.yield_every(), None);
    }
}
