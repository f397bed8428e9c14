//! The loop's vital signs, a few times a second, for `GET /events/loop` and `GET /dashboard`.
//!
//! # The design: the reactor publishes, a viewer's job reads
//!
//! The numbers live on the reactor thread: [`super::ReactorMetrics`] is plain integers, owned
//! by the reactor and counted through `&mut`, with no lock (see "Why no locks" in
//! [`crate::metrics`]). A stream in evloop comes from a pool job ([`crate::router::Stream`]),
//! which cannot borrow them. So the two meet in the middle:
//!
//! 1. While someone watches, the reactor arms a timer (`TimerKind::PublishVitals`), every
//!    [`VITALS_EVERY`]. When it fires, the reactor renders one small JSON frame (a few hundred
//!    bytes, microseconds) from what it counted since the last frame (a [`Window`], which it
//!    owns and counts into alongside the Prometheus families) and hands it to [`Vitals`], an
//!    `Arc` shared with the viewers, then starts a new window.
//! 2. Handing it over is a `try_lock` of a mutex around `(sequence, Arc<str>)`: if a viewer
//!    holds the lock at that very moment (to clone an `Arc`, nanoseconds), the reactor makes no
//!    frame this time rather than wait (the window keeps counting, so the next frame, a quarter
//!    of a second later, covers both; with `--workers N`, see below). The reactor never blocks;
//!    a viewer never sees a torn frame, nor one made before it came.
//! 3. A viewer's stream job ([`Viewer`]) wakes every [`VIEWER_POLL`], sends the frame if its
//!    sequence is new, and checks its cancel flag, so it ends within that time once the client
//!    has left (the reactor sets the flag when the connection closes: docs/STREAMING.md, "What
//!    happens when the client leaves"). It also ends by itself after [`MAX_VIEW`] (the browser's
//!    `EventSource` reconnects on its own) and as soon as the server begins to drain.
//!
//! Why not a seqlock or atomics per number: the frame is text the viewer sends as it is, so one
//! pointer swap under an uncontended lock is the whole hand-over, and there is no `unsafe`.
//! Why not the scoreboard ([`super::shared`]) for this hand-over: it exists only with
//! `--workers N`, and within one process an `Arc` swap is all it takes. Frames do go through
//! the scoreboard to reach *other* processes (below).
//!
//! **What a viewer costs.** A viewer holds one pool worker for as long as it watches, asleep
//! almost all the time. That is a thread the CPU-bound routes cannot use, so the number of
//! viewers is capped at half the pool (none with a pool of one, [`Vitals::watch`]); a viewer
//! over the cap is answered 503. When nobody watches, no timer is armed and the window costs a few adds per
//! turn.
//!
//! **With `--workers N`.** Each process has its own reactor, counters, window and `Vitals`; a
//! viewer is served by the process whose accept took its connection. That process also shows
//! the others, through the scoreboard ([`super::shared`]):
//!
//! - while it has viewers, each of its frames asks the others for frames for
//!   [`WATCH_AHEAD`] more;
//! - the others notice within a second (at their next metrics post), then post a frame every
//!   [`VITALS_EVERY`] into their slot, until nobody has asked for [`WATCH_AHEAD`]; then they
//!   take their last frame off the scoreboard;
//! - each frame a viewer receives is its own process's frame with a `processes` list: every
//!   process on the scoreboard, its own among them, each with `age_ms`, how long ago that
//!   process last posted anything. A process that posts frames appears as its latest frame;
//!   one that does not (it has not heard the request yet, or its loop is stuck) only as its
//!   pid and age. A process whose reactor is stuck in a long turn posts nothing, so its age
//!   grows: the page shows it stalled while the others go on.
//!
//! Rendering those frames costs this reactor a parse of each other process's frame (a few
//! hundred bytes, at most [`super::shared::VITALS_BYTES`]) four times a second, while it has
//! viewers. With `--workers N` the window is emptied whether or not the frame can be handed to
//! this process's viewers, because it is posted for the others either way: if a viewer holds
//! the lock at that instant, this process's viewers miss that quarter of a second, rather than
//! the reactor rendering twice.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How often the reactor publishes a frame while someone watches.
pub const VITALS_EVERY: Duration = Duration::from_millis(250);
/// How often a viewer's job wakes to look for a new frame and at its cancel flag: at most this
/// long between a client leaving and its worker being free again.
pub const VIEWER_POLL: Duration = Duration::from_millis(50);
/// Longest a viewer's stream lasts; the browser reconnects. Keeps a forgotten tab from holding a
/// worker for days, and stays under the default `--request-timeout` (60 s), which would end the
/// stream with an error instead.
pub const MAX_VIEW: Duration = Duration::from_secs(30);
/// A turn at least this long is listed among the slow turns of the frame, with the handler
/// that took longest in it. Lower than the reactor's slow-turn warning (100 ms): on a
/// dashboard, a 10 ms stall is already worth seeing.
pub const SLOW_TURN: Duration = Duration::from_millis(10);
/// How far ahead a process with viewers asks the others for frames, renewed with each of its
/// own frames: they stop posting this long after its last viewer left.
pub const WATCH_AHEAD: Duration = Duration::from_secs(2);
/// Slow turns a frame lists (the latest).
pub const SLOW_TURNS_KEPT: usize = 8;
/// Upper bounds of the frame's small turn histogram, in microseconds; the last bucket takes the
/// rest.
pub const TURN_BUCKETS_US: [u64; 4] = [100, 1_000, 10_000, 100_000];
/// The buckets' names in a frame, the last one for the rest.
const TURN_BUCKET_NAMES: [&str; 5] = ["<100µs", "<1ms", "<10ms", "<100ms", "≥100ms"];

/// A turn that took at least [`SLOW_TURN`].
#[derive(Debug, Clone)]
struct SlowTurn {
    /// When it ended, since the server started.
    at: Duration,
    /// How long the turn took.
    took: Duration,
    /// The handler that ran longest on the reactor in that turn (`GET /path`), if one ran for
    /// more than a millisecond.
    handler: Option<String>,
}

/// What the reactor counted since the last frame. Reactor-owned, like the rest of
/// [`super::ReactorMetrics`]; emptied by each frame, except the slow turns, which stay until
/// newer ones push them out.
#[derive(Debug)]
pub struct Window {
    /// Where the window began (the last frame, or the server's start).
    began: Instant,
    /// When the server started, for the `at` of the slow turns.
    started: Instant,
    /// The longest turn of the window.
    turn_max: Duration,
    /// Turns of the window by length: one count per bound of [`TURN_BUCKETS_US`], then the rest.
    turns: [u64; TURN_BUCKETS_US.len() + 1],
    /// Wake-ups by the pool's waker in the window.
    wakeups: u64,
    /// Responses by route index, the last entry for requests no route matched.
    requests: Vec<u64>,
    /// The `route` label's values, in the same order.
    routes: Vec<String>,
    /// The latest [`SLOW_TURNS_KEPT`] slow turns, oldest first.
    slow: VecDeque<SlowTurn>,
}

impl Window {
    /// An empty window over these routes (the last one the unmatched requests), begun `now`.
    pub fn new(routes: Vec<String>, now: Instant) -> Window {
        Window {
            began: now,
            started: now,
            turn_max: Duration::ZERO,
            turns: [0; TURN_BUCKETS_US.len() + 1],
            wakeups: 0,
            requests: vec![0; routes.len()],
            routes,
            slow: VecDeque::with_capacity(SLOW_TURNS_KEPT),
        }
    }

    /// Start a fresh window at `now`, the slow turns kept: the first viewer after a quiet
    /// spell sees the last quarter second, not everything since the last frame was made.
    pub fn restart(&mut self, now: Instant) {
        self.began = now;
        self.turn_max = Duration::ZERO;
        self.turns = [0; TURN_BUCKETS_US.len() + 1];
        self.wakeups = 0;
        self.requests.iter_mut().for_each(|count| *count = 0);
    }

    /// A turn took `elapsed`.
    pub fn turn(&mut self, elapsed: Duration) {
        self.turn_max = self.turn_max.max(elapsed);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = TURN_BUCKETS_US
            .iter()
            .position(|&bound| us < bound)
            .unwrap_or(TURN_BUCKETS_US.len());
        self.turns[bucket] += 1;
    }

    /// A turn ended at `now` after `took`, [`SLOW_TURN`] or more; `handler` ran longest in it.
    pub fn slow_turn(&mut self, now: Instant, took: Duration, handler: Option<&str>) {
        if self.slow.len() == SLOW_TURNS_KEPT {
            self.slow.pop_front();
        }
        self.slow.push_back(SlowTurn {
            at: now.saturating_duration_since(self.started),
            took,
            handler: handler.map(str::to_owned),
        });
    }

    /// The pool's waker woke the reactor.
    pub fn woken(&mut self) {
        self.wakeups += 1;
    }

    /// A response to a request of route `index` went out.
    pub fn request(&mut self, index: usize) {
        if let Some(count) = self.requests.get_mut(index) {
            *count += 1;
        }
    }

    /// The frame for the window that ends `now`, with the levels read at this moment; the
    /// window starts again.
    pub fn frame(&mut self, now: Instant, levels: &Levels) -> Value {
        let seconds = now.saturating_duration_since(self.began).as_secs_f64();
        // Per second, one decimal; a window of no time (two frames in one turn) counts as none.
        let rate = |count: u64| {
            if seconds > 0.0 {
                (count as f64 / seconds * 10.0).round() / 10.0
            } else {
                0.0
            }
        };
        let histogram: serde_json::Map<String, Value> = TURN_BUCKET_NAMES
            .iter()
            .zip(self.turns)
            .map(|(name, count)| (name.to_string(), json!(count)))
            .collect();
        let requests: serde_json::Map<String, Value> = self
            .routes
            .iter()
            .zip(&self.requests)
            .map(|(route, &count)| (route.clone(), json!(rate(count))))
            .collect();
        let slow: Vec<Value> = self
            .slow
            .iter()
            .map(|turn| {
                json!({
                    "at_ms": turn.at.as_millis() as u64,
                    "took_ms": turn.took.as_millis() as u64,
                    "handler": turn.handler,
                })
            })
            .collect();
        let frame = json!({
            "pid": std::process::id(),
            "uptime_ms": now.saturating_duration_since(self.started).as_millis() as u64,
            "window_ms": now.saturating_duration_since(self.began).as_millis() as u64,
            "turn_max_us": self.turn_max.as_micros() as u64,
            "turns": histogram,
            "wakeups_per_s": rate(self.wakeups),
            "pool": {
                "workers": levels.workers,
                "busy": levels.busy,
                "queued": levels.queued,
            },
            "connections": levels.connections,
            "requests_per_s": requests,
            "slow_turns": slow,
        });
        self.restart(now);
        frame
    }
}

/// The levels a frame shows as they are at its moment, not counted over the window.
#[derive(Debug, Default)]
pub struct Levels {
    /// The pool's threads.
    pub workers: usize,
    /// Threads running a job (each viewer's among them).
    pub busy: usize,
    /// Jobs waiting for a thread.
    pub queued: usize,
    /// Open connections by state, in the order of the `state` label.
    pub connections: serde_json::Map<String, Value>,
}

/// The latest frame, shared between the reactor (which publishes) and the viewers (which
/// read). See the module docs.
#[derive(Debug)]
pub struct Vitals {
    /// The frame's sequence number (0: none yet) and its JSON text.
    latest: Mutex<(u64, Arc<str>)>,
    /// Viewers watching now; the reactor publishes only while there are some.
    viewers: AtomicUsize,
    /// At most this many viewers at once: half the pool (none with a pool of one).
    max_viewers: usize,
    /// Set when the server begins to drain: every viewer ends its stream.
    closing: AtomicBool,
}

impl Vitals {
    /// Vitals for a server whose pool has `workers` threads.
    pub fn new(workers: usize) -> Vitals {
        Vitals {
            latest: Mutex::new((0, Arc::from(""))),
            viewers: AtomicUsize::new(0),
            // Half the pool: with a pool of one, no viewer at all (it would hold every worker).
            max_viewers: workers / 2,
            closing: AtomicBool::new(false),
        }
    }

    /// A new viewer, or `None` if [`Vitals::max_viewers`] already watch or the server is
    /// draining.
    pub fn watch(vitals: &Arc<Vitals>) -> Option<Viewer> {
        if vitals.is_closing() {
            return None;
        }
        let admitted = vitals
            .viewers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |viewers| {
                (viewers < vitals.max_viewers).then_some(viewers + 1)
            })
            .is_ok();
        // Frames made before this viewer came are old news: it waits for the next one.
        let seen = vitals.latest().0;
        admitted.then(|| Viewer {
            vitals: Arc::clone(vitals),
            seen,
        })
    }

    /// Viewers watching now.
    pub fn viewers(&self) -> usize {
        self.viewers.load(Ordering::Relaxed)
    }

    /// The most viewers at once.
    pub fn max_viewers(&self) -> usize {
        self.max_viewers
    }

    /// Replace the latest frame with what `render` makes, unless a viewer holds the lock this
    /// instant: then nothing is rendered and the reactor does not wait (the caller decides
    /// whether its window keeps counting; see the module docs). Called on the reactor thread
    /// only.
    pub fn publish(&self, render: impl FnOnce() -> String) {
        let mut latest = match self.latest.try_lock() {
            Ok(latest) => latest,
            // A viewer panicked while cloning an `Arc`: the pair is still whole.
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        latest.0 += 1;
        latest.1 = Arc::from(render());
    }

    /// The server has begun to drain: viewers end their streams.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// True once [`Vitals::close`] was called.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    fn latest(&self) -> MutexGuard<'_, (u64, Arc<str>)> {
        self.latest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One viewer's hold on [`Vitals`], kept by its stream job; dropping it (the job ended, or was
/// skipped and dropped unrun) makes room for another viewer.
#[derive(Debug)]
pub struct Viewer {
    vitals: Arc<Vitals>,
    /// Sequence number of the last frame this viewer took.
    seen: u64,
}

impl Viewer {
    /// The latest frame if this viewer has not taken it yet.
    pub fn next_frame(&mut self) -> Option<Arc<str>> {
        let latest = self.vitals.latest();
        if latest.0 == self.seen {
            return None;
        }
        self.seen = latest.0;
        Some(Arc::clone(&latest.1))
    }

    /// True once the server has begun to drain.
    pub fn is_closing(&self) -> bool {
        self.vitals.is_closing()
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.vitals.viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame counts the window's turns and requests, then the window starts again; slow turns
    /// stay.
    #[test]
    fn a_frame_empties_its_window() {
        let start = Instant::now();
        let mut window = Window::new(vec!["/a".into(), "unmatched".into()], start);
        window.turn(Duration::from_micros(50));
        window.turn(Duration::from_millis(20));
        window.slow_turn(start, Duration::from_millis(20), Some("GET /a"));
        window.request(0);
        window.request(0);
        window.request(7); // no such route: ignored
        let frame = window.frame(start + Duration::from_secs(2), &Levels::default());
        assert_eq!(frame["turn_max_us"], 20_000);
        assert_eq!(frame["turns"]["<100µs"], 1);
        assert_eq!(frame["turns"]["<100ms"], 1);
        assert_eq!(frame["requests_per_s"]["/a"], 1.0);
        assert_eq!(frame["slow_turns"][0]["handler"], "GET /a");
        let next = window.frame(start + Duration::from_secs(3), &Levels::default());
        assert_eq!(next["turn_max_us"], 0);
        assert_eq!(next["requests_per_s"]["/a"], 0.0);
        assert_eq!(next["slow_turns"][0]["took_ms"], 20);
    }

    /// Viewers are capped; a viewer dropped makes room; each frame is taken once.
    #[test]
    fn viewers_are_capped_and_take_each_frame_once() {
        let vitals = Arc::new(Vitals::new(4));
        let mut first = Vitals::watch(&vitals).unwrap();
        let second = Vitals::watch(&vitals).unwrap();
        assert!(Vitals::watch(&vitals).is_none());
        drop(second);
        assert_eq!(vitals.viewers(), 1);
        assert!(first.next_frame().is_none());
        vitals.publish(|| "{}".into());
        assert_eq!(first.next_frame().as_deref(), Some("{}"));
        assert!(first.next_frame().is_none());
        vitals.close();
        assert!(first.is_closing());
        assert!(Vitals::watch(&vitals).is_none());
    }

    /// A pool of one admits no viewer: a viewer would hold every worker.
    #[test]
    fn a_pool_of_one_admits_no_viewer() {
        let vitals = Arc::new(Vitals::new(1));
        assert_eq!(vitals.max_viewers(), 0);
        assert!(Vitals::watch(&vitals).is_none());
    }

    /// A new viewer is not handed a frame made before it came; it waits for the next.
    #[test]
    fn a_new_viewer_waits_for_a_fresh_frame() {
        let vitals = Arc::new(Vitals::new(2));
        vitals.publish(|| "old".into());
        let mut viewer = Vitals::watch(&vitals).unwrap();
        assert!(viewer.next_frame().is_none());
        vitals.publish(|| "new".into());
        assert_eq!(viewer.next_frame().as_deref(), Some("new"));
    }

    /// A frame that cannot be published (a viewer holds the lock) is not rendered, so the
    /// window it would have emptied keeps its counts for the next frame.
    #[test]
    fn a_frame_not_published_is_not_rendered() {
        let vitals = Arc::new(Vitals::new(2));
        let held = vitals.latest();
        let mut rendered = false;
        vitals.publish(|| {
            rendered = true;
            "x".into()
        });
        drop(held);
        assert!(!rendered);
    }
}
