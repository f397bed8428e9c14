//! evloop's own metric families: what the reactor and the workers will count, and the one
//! function that renders them all.
//!
//! The reactor says *what happened* (`turn_done`, `request_done`, `job_done`); this file knows
//! which family and which series that is counted in, so the reactor never handles label ids.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::encode::{Encoder, Kind, Number};
use super::family::{Family, Label, LabelValue};
use super::histogram::{Histogram, LocalHistogram, Unit, LATENCY_BOUNDS, TURN_BOUNDS};
use super::local::{nanos, LocalCounter, LocalGauge, LocalMax};
use super::merge::merge;
use super::shared::{Other, Scoreboard};
use super::vitals::{self, Levels, Vitals, Window};
use super::{Counter, Gauge};
use crate::sys;

/// Declares an enum of label values: its variants, the label's name, and each value's text.
macro_rules! label_values {
    (
        $(#[$doc:meta])*
        $name:ident, $label:literal {
            $( $(#[$vdoc:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$vdoc])* $variant, )+
        }

        impl LabelValue for $name {
            const NAME: &'static str = $label;
            const ALL: &'static [Self] = &[$($name::$variant),+];

            fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }

            fn id(self) -> usize {
                self as usize
            }
        }
    };
}

label_values! {
    /// The first digit of a status code, the `status` label of `evloop_requests_total`.
    StatusClass, "status" {
        /// 1xx.
        Informational = "1xx",
        /// 2xx.
        Success = "2xx",
        /// 3xx.
        Redirection = "3xx",
        /// 4xx: the client's mistake (or its request refused).
        ClientError = "4xx",
        /// 5xx: the server's failure, or overload (503).
        ServerError = "5xx",
    }
}

impl StatusClass {
    /// The class of `status`; anything outside 100..=599 counts as a server error, since the
    /// server sent it.
    pub fn of(status: u16) -> StatusClass {
        match status {
            100..=199 => StatusClass::Informational,
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirection,
            400..=499 => StatusClass::ClientError,
            _ => StatusClass::ServerError,
        }
    }
}

label_values! {
    /// Where a client connection is in its life: the `state` label of `evloop_connections`.
    ConnectionState, "state" {
        /// Waiting for (the rest of) a request head. Many here, for long: slowloris.
        ReadingHead = "reading_head",
        /// Reading a request body.
        ReadingBody = "reading_body",
        /// A request is with a handler: queued or running on the pool, on a timer, or calling
        /// upstream.
        Waiting = "waiting",
        /// Writing a response the client is slow to take.
        Writing = "writing",
        /// Kept alive between requests.
        Idle = "idle",
        /// Closing: draining what the client still sends before the socket closes.
        Lingering = "lingering",
    }
}

label_values! {
    /// Why a client connection closed: the `reason` label of `evloop_connections_closed_total`.
    CloseReason, "reason" {
        /// The client closed it (or asked to, with `Connection: close`).
        Client = "client",
        /// Idle past the keep-alive timeout.
        KeepAliveTimeout = "keepalive_timeout",
        /// The request head did not arrive in time.
        HeaderTimeout = "header_timeout",
        /// The request body did not arrive in time.
        BodyTimeout = "body_timeout",
        /// Idle, and closed to make room for a new connection at the connection cap.
        Evicted = "evicted",
        /// Closed by the graceful drain.
        Shutdown = "shutdown",
        /// A protocol or socket error.
        Error = "error",
    }
}

label_values! {
    /// Why the reactor stopped accepting: the `reason` label of
    /// `evloop_connections_refused_total`, counted once per pause.
    Refusal, "reason" {
        /// At `--max-connections` with no idle connection to evict.
        MaxConnections = "max_connections",
        /// `accept` failed with `EMFILE`/`ENFILE`: out of file descriptors.
        FileLimit = "file_limit",
    }
}

label_values! {
    /// Why a request was answered with an error before (or instead of) its handler: the
    /// `reason` label of `evloop_requests_rejected_total`.
    Rejection, "reason" {
        /// The pool's queue was full: 503 with `Retry-After`.
        QueueFull = "queue_full",
        /// 413.
        BodyTooLarge = "body_too_large",
        /// 431.
        HeaderTooLarge = "header_too_large",
        /// 414.
        UriTooLong = "uri_too_long",
        /// 400.
        BadRequest = "bad_request",
        /// 408: the request did not arrive in time.
        Timeout = "timeout",
        /// 504: the answer did not come in time.
        Deadline = "deadline",
    }
}

label_values! {
    /// How a pool job ended: the `outcome` label of `evloop_pool_jobs_total`.
    JobEnd, "outcome" {
        /// Ran and returned.
        Done = "done",
        /// Panicked (the worker survived; the request got a 500).
        Panicked = "panicked",
        /// Its client left first: skipped in the queue, or stopped or finished in vain.
        Cancelled = "cancelled",
    }
}

label_values! {
    /// How a call upstream ended: the `outcome` label of `evloop_outbound_calls_total`.
    CallOutcome, "outcome" {
        /// A response came (whatever its status).
        Response = "response",
        /// The connection could not be made.
        ConnectFailed = "connect_failed",
        /// No response within the call's deadline.
        Timeout = "timeout",
        /// The connection broke or the response was malformed.
        Failed = "failed",
        /// Nobody wanted the answer any more.
        Cancelled = "cancelled",
    }
}

label_values! {
    /// The `state` label of `evloop_outbound_connections`.
    UpstreamState, "state" {
        /// Carrying a call.
        Active = "active",
        /// Kept alive for the next call.
        Idle = "idle",
    }
}

/// The value of the `route` label for requests no route matched (404, 405): their raw paths
/// would make the series count unbounded.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The value of the `upstream` label for calls to an address not named at start-up.
pub const OTHER_UPSTREAM: &str = "other";

/// `evloop_outbound_calls_total`'s table: one `upstream` per address, then
/// [`OTHER_UPSTREAM`], by outcome.
fn calls_family(upstreams: &[SocketAddr]) -> Family<LocalCounter, 2> {
    let mut names: Vec<String> = upstreams.iter().map(ToString::to_string).collect();
    names.push(OTHER_UPSTREAM.to_owned());
    Family::new(
        [Label::new("upstream", names), Label::of::<CallOutcome>()],
        LocalCounter::new,
    )
}

/// What the reactor thread counts: owned by it, updated through `&mut self`, no atomics.
#[derive(Debug)]
pub struct ReactorMetrics {
    turns: LocalHistogram,
    longest_turn: LocalMax,
    wakeups: LocalCounter,
    connections: Family<LocalGauge, 1>,
    accepted: LocalCounter,
    refused: Family<LocalCounter, 1>,
    closed: Family<LocalCounter, 1>,
    /// route × status class.
    requests: Family<LocalCounter, 2>,
    /// By route, from the turn that dispatched the request to the turn that wrote its
    /// response's last byte (see [`ReactorMetrics::request_done`]).
    request_duration: Family<LocalHistogram, 1>,
    rejected: Family<LocalCounter, 1>,
    received_bytes: LocalCounter,
    sent_bytes: LocalCounter,
    access_log_dropped: LocalCounter,
    /// upstream × outcome.
    calls: Family<LocalCounter, 2>,
    /// The upstreams the `upstream` label names, in its order; any other address is counted
    /// under [`OTHER_UPSTREAM`], the label's last value.
    upstreams: Vec<SocketAddr>,
    /// A level read from `Outbound` at render time, when only `&self` is at hand: an atomic,
    /// though only the reactor thread writes it.
    upstream_connections: Family<Gauge, 1>,
    /// Index of [`UNMATCHED_ROUTE`] in the `route` label: after the router's routes.
    unmatched: usize,
    /// What happened since the last frame of `GET /events/loop` ([`super::vitals`]).
    window: Window,
}

impl ReactorMetrics {
    /// Metrics for a server whose router has these routes (paths, each once), in the order
    /// the router will name them by index. Allocates every table here.
    pub fn new<I, S>(routes: I) -> ReactorMetrics
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut routes: Vec<String> = routes.into_iter().map(Into::into).collect();
        let unmatched = routes.len();
        routes.push(UNMATCHED_ROUTE.to_owned());
        let window = Window::new(routes.clone(), Instant::now());
        let route = Label::new("route", routes);
        ReactorMetrics {
            turns: LocalHistogram::new(TURN_BOUNDS, Unit::Seconds),
            longest_turn: LocalMax::new(),
            wakeups: LocalCounter::new(),
            connections: Family::new([Label::of::<ConnectionState>()], LocalGauge::new),
            accepted: LocalCounter::new(),
            refused: Family::new([Label::of::<Refusal>()], LocalCounter::new),
            closed: Family::new([Label::of::<CloseReason>()], LocalCounter::new),
            requests: Family::new(
                [route.clone(), Label::of::<StatusClass>()],
                LocalCounter::new,
            ),
            request_duration: Family::new([route], || {
                LocalHistogram::new(LATENCY_BOUNDS, Unit::Seconds)
            }),
            rejected: Family::new([Label::of::<Rejection>()], LocalCounter::new),
            received_bytes: LocalCounter::new(),
            sent_bytes: LocalCounter::new(),
            access_log_dropped: LocalCounter::new(),
            calls: calls_family(&[]),
            upstreams: Vec::new(),
            upstream_connections: Family::new([Label::of::<UpstreamState>()], Gauge::new),
            unmatched,
            window,
        }
    }

    /// A turn of the reactor took `elapsed` (from `poll` returning to the start of
    /// housekeeping, step 9).
    pub fn turn_done(&mut self, elapsed: Duration) {
        self.turns.observe(elapsed);
        self.longest_turn.observe(elapsed);
        self.window.turn(elapsed);
    }

    /// The first viewer of the vital signs arrived: their window starts now.
    pub fn restart_window(&mut self, now: Instant) {
        self.window.restart(now);
    }

    /// A turn that ended at `now` took `elapsed`, at least [`super::vitals::SLOW_TURN`]; `handler`
    /// (`GET /path`) is the one that ran longest on the reactor in it, if any did for over 1 ms.
    pub fn slow_turn(&mut self, now: Instant, elapsed: Duration, handler: Option<&str>) {
        self.window.slow_turn(now, elapsed, handler);
    }

    /// The pool's waker woke the reactor.
    pub fn woken(&mut self) {
        self.wakeups.inc();
        self.window.woken();
    }

    /// A connection was accepted; it starts in `ReadingHead`.
    pub fn accepted(&mut self) {
        self.accepted.inc();
        self.connections
            .get_mut([ConnectionState::ReadingHead.id()])
            .inc();
    }

    /// A connection moved from one state to another.
    pub fn connection_moved(&mut self, from: ConnectionState, to: ConnectionState) {
        self.connections.get_mut([from.id()]).dec();
        self.connections.get_mut([to.id()]).inc();
    }

    /// A connection in state `from` closed, for `reason`.
    pub fn closed(&mut self, from: ConnectionState, reason: CloseReason) {
        self.connections.get_mut([from.id()]).dec();
        self.closed.get_mut([reason.id()]).inc();
    }

    /// Accepting paused, for `reason`.
    pub fn refused(&mut self, reason: Refusal) {
        self.refused.get_mut([reason.id()]).inc();
    }

    /// A request was answered with an error for `reason` (also counted by `request_done`).
    pub fn rejected(&mut self, reason: Rejection) {
        self.rejected.get_mut([reason.id()]).inc();
    }

    /// A response's last byte was handed to the socket: `route` is the router's index of the
    /// route that took it (`None`: no route matched), `elapsed` since its dispatch, both read
    /// on the turns' clocks (one clock read a turn): a response made and sent within the turn
    /// of its request counts as 0 s, one that waited for a job, a timer or a call counts the
    /// turns it waited.
    pub fn request_done(&mut self, route: Option<usize>, status: u16, elapsed: Duration) {
        let route = route
            .filter(|&index| index < self.unmatched)
            .unwrap_or(self.unmatched);
        let class = StatusClass::of(status);
        self.requests.get_mut([route, class.id()]).inc();
        self.request_duration.get_mut([route]).observe(elapsed);
        self.window.request(route);
    }

    /// Bytes read from clients.
    pub fn received(&mut self, bytes: usize) {
        self.received_bytes.add(bytes as u64);
    }

    /// Bytes written to clients.
    pub fn sent(&mut self, bytes: usize) {
        self.sent_bytes.add(bytes as u64);
    }

    /// Access-log lines dropped because its writer was behind.
    pub fn access_log_dropped(&mut self, lines: u64) {
        self.access_log_dropped.add(lines);
    }

    /// Name these upstreams (the ones configured at start-up) in the `upstream` label of
    /// `evloop_outbound_calls_total`; calls to any other address count as `other`
    /// (`OTHER_UPSTREAM`). Resets the calls counted so far: call it before serving.
    pub fn name_upstreams(&mut self, upstreams: &[SocketAddr]) {
        self.calls = calls_family(upstreams);
        self.upstreams = upstreams.to_vec();
    }

    /// A call to `upstream` ended.
    pub fn call_done(&mut self, upstream: SocketAddr, outcome: CallOutcome) {
        let index = self
            .upstreams
            .iter()
            .position(|&known| known == upstream)
            .unwrap_or(self.upstreams.len());
        self.calls.get_mut([index, outcome.id()]).inc();
    }

    /// The reactor's connections to upstreams, read from `Outbound` just before rendering.
    pub fn set_upstream_connections(&self, active: usize, idle: usize) {
        let level = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let active_id = UpstreamState::Active.id();
        self.upstream_connections
            .get([active_id])
            .set(level(active));
        let idle_id = UpstreamState::Idle.id();
        self.upstream_connections.get([idle_id]).set(level(idle));
    }

    fn encode(&self, enc: &mut Encoder<'_>) {
        enc.metric(
            "evloop_reactor_turn_seconds",
            "How long each reactor turn took, from poll returning to its housekeeping.",
            &self.turns,
        );
        enc.metric(
            "evloop_reactor_turn_max_seconds",
            "The longest reactor turn since start: every connection waited this long.",
            &self.longest_turn,
        );
        enc.metric(
            "evloop_reactor_wakeups_total",
            "Times worker threads woke the reactor (completions coalesce into one wake-up).",
            &self.wakeups,
        );
        enc.family(
            "evloop_connections",
            "Open client connections, by state.",
            &self.connections,
        );
        enc.metric(
            "evloop_connections_accepted_total",
            "Client connections accepted.",
            &self.accepted,
        );
        enc.family(
            "evloop_connections_refused_total",
            "Times accepting paused, by reason; clients wait in the kernel's backlog meanwhile.",
            &self.refused,
        );
        enc.family(
            "evloop_connections_closed_total",
            "Client connections closed, by reason.",
            &self.closed,
        );
        enc.family(
            "evloop_requests_total",
            "Responses written, by route and status class.",
            &self.requests,
        );
        enc.family(
            "evloop_request_duration_seconds",
            "From a request's dispatch to its response's last byte handed to the socket, on the \
             reactor's per-turn clock (0 within one turn), by route.",
            &self.request_duration,
        );
        enc.family(
            "evloop_requests_rejected_total",
            "Requests answered with an error before or instead of their handler, by reason.",
            &self.rejected,
        );
        enc.metric(
            "evloop_received_bytes_total",
            "Bytes read from clients.",
            &self.received_bytes,
        );
        enc.metric(
            "evloop_sent_bytes_total",
            "Bytes written to clients.",
            &self.sent_bytes,
        );
        enc.metric(
            "evloop_access_log_dropped_lines_total",
            "Access-log lines dropped because the log's writer was behind.",
            &self.access_log_dropped,
        );
        enc.family(
            "evloop_outbound_calls_total",
            "Calls to upstream services, by upstream and outcome.",
            &self.calls,
        );
        enc.family(
            "evloop_outbound_connections",
            "The reactor's connections to upstream services, by state.",
            &self.upstream_connections,
        );
    }
}

/// The pool's figures. Jobs are counted by the reactor as their completions arrive (each
/// [`crate::pool::Completion`] carries its queue wait and run time), so the workers do no
/// bookkeeping of their own; the levels (busy workers, queue depth) are read from the pool at
/// render time. Atomics, updated through `&self` with `Relaxed`, so that the render (which has
/// only `&Registry`) can set those levels; the `Arc` lets a worker-side count be added later
/// without changing the type.
#[derive(Debug)]
pub struct PoolMetrics {
    workers: Gauge,
    busy: Gauge,
    queue_depth: Gauge,
    queue_wait: Histogram,
    run: Histogram,
    jobs: Family<Counter, 1>,
}

impl PoolMetrics {
    /// Metrics for a pool of `workers` threads. Allocates every table here.
    pub fn new(workers: usize) -> PoolMetrics {
        let metrics = PoolMetrics {
            workers: Gauge::new(),
            busy: Gauge::new(),
            queue_depth: Gauge::new(),
            queue_wait: Histogram::new(LATENCY_BOUNDS, Unit::Seconds),
            run: Histogram::new(LATENCY_BOUNDS, Unit::Seconds),
            jobs: Family::new([Label::of::<JobEnd>()], Counter::new),
        };
        metrics
            .workers
            .set(i64::try_from(workers).unwrap_or(i64::MAX));
        metrics
    }

    /// A job's completion arrived: it waited `queued` for a worker and ran for `run`
    /// (`None`: it never ran, skipped in the queue because its client had left).
    pub fn job_done(&self, end: JobEnd, queued: Duration, run: Option<Duration>) {
        self.queue_wait.observe(queued);
        if let Some(run) = run {
            self.run.observe(run);
        }
        self.jobs.get([end.id()]).inc();
    }

    /// Worker threads running a job, read from the pool just before rendering.
    pub fn set_busy(&self, workers: usize) {
        self.busy.set(i64::try_from(workers).unwrap_or(i64::MAX));
    }

    /// Jobs waiting for a worker, read from the pool's queue just before rendering.
    pub fn set_queue_depth(&self, jobs: usize) {
        self.queue_depth
            .set(i64::try_from(jobs).unwrap_or(i64::MAX));
    }

    fn encode(&self, enc: &mut Encoder<'_>) {
        enc.metric(
            "evloop_pool_workers",
            "Worker threads in the pool.",
            &self.workers,
        );
        enc.metric(
            "evloop_pool_busy_workers",
            "Worker threads running a job now.",
            &self.busy,
        );
        enc.metric(
            "evloop_pool_queue_depth",
            "Jobs waiting for a worker.",
            &self.queue_depth,
        );
        enc.metric(
            "evloop_pool_queue_wait_seconds",
            "How long jobs waited in the queue before a worker took them.",
            &self.queue_wait,
        );
        enc.metric(
            "evloop_pool_job_run_seconds",
            "How long jobs ran on a worker.",
            &self.run,
        );
        enc.family(
            "evloop_pool_jobs_total",
            "Jobs ended, by outcome.",
            &self.jobs,
        );
    }
}

/// `own` (this process's frame) with a `processes` list, by pid: `own` and every other process
/// on the scoreboard, each with `age_ms`, how long ago it last posted anything. A process that
/// posts frames is its latest frame; one that does not (it has not heard the request yet, or
/// its loop is stuck) is only `pid` and `age_ms`, as is one whose frame does not parse.
fn with_processes(mut own: Value, others: Vec<Other>) -> Value {
    let mut processes = vec![own.clone()];
    processes[0]["age_ms"] = 0.into();
    processes.extend(others.into_iter().map(|other| {
        let mut frame = other
            .frame
            .and_then(|text| serde_json::from_slice::<Value>(&text).ok())
            .filter(|frame| frame.get("pid").and_then(Value::as_u64) == Some(other.pid.into()))
            .unwrap_or_else(|| json!({ "pid": other.pid }));
        frame["age_ms"] = other.quiet_ms.into();
        frame
    }));
    processes.sort_by_key(|frame| frame["pid"].as_u64());
    own["processes"] = Value::Array(processes);
    own
}

/// What renders the server's metrics at the moment of a scrape: lent to the `/metrics` handler
/// through [`crate::router::Context`]. The reactor's implementation first reads into the
/// registry the levels it keeps elsewhere (the pool's queue, the upstream connections); a bare
/// [`Registry`] renders what it holds.
pub trait Scrape {
    /// Render every family into `out`, replacing what it held.
    fn render(&self, out: &mut Vec<u8>);

    /// Where the reactor publishes the frames of `GET /events/loop` ([`super::vitals`]).
    fn vitals(&self) -> &Arc<Vitals>;
}

impl Scrape for Registry {
    fn render(&self, out: &mut Vec<u8>) {
        Registry::render(self, out);
    }

    fn vitals(&self) -> &Arc<Vitals> {
        Registry::vitals(self)
    }
}

/// Every metric of one server, and the render of `/metrics`.
#[derive(Debug)]
pub struct Registry {
    /// Counted by the reactor thread, which also renders.
    pub reactor: ReactorMetrics,
    /// The pool's jobs and levels.
    pub pool: Arc<PoolMetrics>,
    /// When the process started, in nanoseconds since the Unix epoch.
    started: u64,
    /// With several processes: where this one posts its numbers and reads the others'.
    shared: Option<Shared>,
    /// Where the frames of `GET /events/loop` are published for its viewers.
    vitals: Arc<Vitals>,
}

/// A registry's place among the processes of `--workers N`.
#[derive(Debug)]
struct Shared {
    board: Scoreboard,
    pid: u32,
    /// `pid` as text: every series of this process carries it as its `pid` label.
    label: String,
    /// Where the periodic post is rendered, kept from post to post.
    scratch: Vec<u8>,
    /// True once a vitals frame did not fit the scoreboard (warned once).
    frame_too_big: bool,
}

impl Registry {
    /// A registry for a server with these routes and `workers` pool threads, started at
    /// `started` (take it as early as possible in `main`).
    pub fn new<I, S>(routes: I, workers: usize, started: SystemTime) -> Registry
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Registry {
            reactor: ReactorMetrics::new(routes),
            pool: Arc::new(PoolMetrics::new(workers)),
            // A clock set before 1970 is not worth a failure: report the epoch.
            started: started.duration_since(UNIX_EPOCH).map_or(0, nanos),
            shared: None,
            vitals: Arc::new(Vitals::new(workers)),
        }
    }

    /// Where the frames of `GET /events/loop` are published; a viewer's job keeps a clone.
    pub fn vitals(&self) -> &Arc<Vitals> {
        &self.vitals
    }

    /// Publish a frame of the loop's vital signs over the window that ends `now`, with the
    /// pool's levels as they are (`busy` workers, `queued` jobs), and start a new window.
    /// The reactor calls it every [`super::vitals::VITALS_EVERY`] while someone watches, here
    /// or (with `--workers N`) in another process: see [`super::vitals`].
    pub fn publish_vitals(&mut self, now: Instant, busy: usize, queued: usize) {
        let reactor = &mut self.reactor;
        let connections = ConnectionState::ALL
            .iter()
            .map(|state| {
                let open = reactor.connections.get([state.id()]).get();
                (state.as_str().to_owned(), open.into())
            })
            .collect();
        let levels = Levels {
            workers: usize::try_from(self.pool.workers.get()).unwrap_or(0),
            busy,
            queued,
            connections,
        };
        let window = &mut reactor.window;
        let Some(shared) = &mut self.shared else {
            self.vitals
                .publish(|| window.frame(now, &levels).to_string());
            return;
        };
        let now_ms = sys::monotonic_ms();
        let own = window.frame(now, &levels);
        if !shared.board.post_vitals(now_ms, own.to_string().as_bytes()) {
            // An old frame left there would make this process look stalled.
            shared.board.clear_own_vitals();
            if !shared.frame_too_big {
                log::warn!(
                    "this process's vitals frame does not fit its scoreboard slot; \
                     the other processes' dashboards show it without numbers"
                );
            }
            shared.frame_too_big = true;
        }
        if self.vitals.viewers() == 0 {
            return;
        }
        shared
            .board
            .watch_until(now_ms + vitals::WATCH_AHEAD.as_millis() as u64);
        let others = shared.board.others_vitals(now_ms);
        self.vitals
            .publish(|| with_processes(own, others).to_string());
    }

    /// True if another process of `--workers N` has dashboard viewers and asks this one for
    /// vitals frames.
    pub fn vitals_watched(&self) -> bool {
        self.shared
            .as_ref()
            .is_some_and(|shared| shared.board.watched(sys::monotonic_ms()))
    }

    /// This process stops posting vitals frames: take its last one off the scoreboard, so
    /// that the next viewer does not see it as a frame from a stalled process.
    pub fn vitals_stopped(&self) {
        if let Some(shared) = &self.shared {
            shared.board.clear_own_vitals();
        }
    }

    /// Share this process's numbers with the other processes of `--workers N` through
    /// `board`: from now on every series carries a `pid` label, [`Registry::post`] publishes
    /// them, and [`Registry::render`] answers every process's. See [`super::shared`].
    pub fn share(&mut self, board: Scoreboard) {
        let pid = std::process::id();
        self.shared = Some(Shared {
            board,
            pid,
            label: pid.to_string(),
            scratch: Vec::new(),
            frame_too_big: false,
        });
    }

    /// Publish the current numbers for the other processes (nothing without [`Registry::share`]).
    /// The reactor calls it once a second.
    pub fn post(&mut self) {
        let Some(mut shared) = self.shared.take() else {
            return;
        };
        self.render_own(&mut shared.scratch, Some(&shared.label));
        shared.board.post(shared.pid, &shared.scratch);
        self.shared = Some(shared);
    }

    /// Take this process off the scoreboard (it is stopping).
    pub fn withdraw(&self) {
        if let Some(shared) = &self.shared {
            shared.board.clear_own();
        }
    }

    /// Render every family into `out`, replacing what it held (its capacity is kept, so a
    /// buffer reused from scrape to scrape stops allocating after the first). With
    /// [`Registry::share`], that is this process's numbers, fresh, posted as well, merged with
    /// every other process's latest post.
    pub fn render(&self, out: &mut Vec<u8>) {
        let Some(shared) = &self.shared else {
            self.render_own(out, None);
            return;
        };
        let mut own = Vec::new();
        self.render_own(&mut own, Some(&shared.label));
        if !shared.board.post(shared.pid, &own) {
            log::warn!("this process's metrics do not fit its scoreboard slot; not posted");
        }
        let others = shared.board.others();
        let mut inputs: Vec<&[u8]> = vec![&own];
        inputs.extend(others.iter().map(|(_, text)| &text[..]));
        out.clear();
        merge(&inputs, out);
    }

    /// This process's families into `out`, each series labelled `pid="…"` if `pid` is given.
    fn render_own(&self, out: &mut Vec<u8>, pid: Option<&str>) {
        out.clear();
        let mut enc = match pid {
            Some(pid) => Encoder::with_label(out, "pid", pid),
            None => Encoder::new(out),
        };
        enc.header(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
            Kind::Gauge,
        );
        enc.sample(
            "process_start_time_seconds",
            "",
            &[],
            None,
            Number::Nanos(self.started),
        );
        self.reactor.encode(&mut enc);
        self.pool.encode(&mut enc);
    }
}
