//! The pipeline without sockets: every interleaving of completions, timers and deadlines,
//! driven by hand.

use super::*;
use crate::pool::JobContext;

/// A scheduler that records what it was asked to do.
#[derive(Default)]
struct Recorder {
    /// `(seq, part, cancel flag)` of every job submitted.
    jobs: Vec<(u64, usize, Arc<AtomicBool>)>,
    /// `(at, seq)` of every timer armed.
    timers: Vec<(Instant, u64)>,
    /// Refuse submissions after this many (a full queue).
    capacity: Option<usize>,
}

impl Scheduler for Recorder {
    fn submit(
        &mut self,
        seq: u64,
        part: usize,
        _work: Work<Reply>,
    ) -> Result<Arc<AtomicBool>, SubmitError> {
        if self.capacity.is_some_and(|cap| self.jobs.len() >= cap) {
            return Err(SubmitError::Full);
        }
        let flag = Arc::new(AtomicBool::new(false));
        self.jobs.push((seq, part, Arc::clone(&flag)));
        Ok(flag)
    }

    fn wake_at(&mut self, at: Instant, seq: u64) {
        self.timers.push((at, seq));
    }
}

fn meta(now: Instant) -> ResponseMeta {
    ResponseMeta {
        head_only: false,
        http10_keep_alive: false,
        close: false,
        started: now,
        queued: Duration::ZERO,
        log: None,
    }
}

fn text(body: &'static str) -> Response {
    Response::text(200, body)
}

fn offload() -> Reply {
    Reply::offload(|_: &JobContext<'_>| text("job"))
}

fn gather(parts: usize) -> Reply {
    let works = (0..parts)
        .map(|_| -> Work<Response> { Box::new(|_| text("part")) })
        .collect();
    Reply::gather(works, |parts: Vec<Response>| {
        let bodies: Vec<&[u8]> = parts.iter().map(|p| p.body.as_bytes()).collect();
        Response::text_owned(200, String::from_utf8_lossy(&bodies.concat()).into_owned())
    })
}

/// Pop every ready response and return its body (or `100` for a Continue).
fn drain_bodies(pipeline: &mut Pipeline) -> Vec<String> {
    let mut out = Vec::new();
    while let Some((answer, _)) = pipeline.pop_ready() {
        out.push(match answer {
            Answer::Continue => "100".to_string(),
            Answer::Final(r) => format!(
                "{} {}",
                r.status,
                String::from_utf8_lossy(r.body.as_bytes())
            ),
        });
    }
    out
}

const DEADLINE: Duration = Duration::from_secs(60);

/// Jobs that finish in reverse order are still answered in request order, each as soon as
/// everything before it is.
#[test]
fn completions_out_of_order_are_answered_in_order() {
    let t0 = Instant::now();
    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    for _ in 0..3 {
        p.begin(offload(), meta(t0), t0 + DEADLINE, t0, &mut sched);
    }
    let done = |body| Ok(Reply::Now(text(body)));
    p.complete(2, 0, done("c"), Duration::ZERO, t0, &mut sched);
    p.complete(1, 0, done("b"), Duration::ZERO, t0, &mut sched);
    assert!(
        drain_bodies(&mut p).is_empty(),
        "the first is not ready yet"
    );
    p.complete(0, 0, done("a"), Duration::ZERO, t0, &mut sched);
    assert_eq!(drain_bodies(&mut p), ["200 a", "200 b", "200 c"]);
    assert!(p.is_empty());
}

/// A `/sleep` slot waits for its timer; the deadline covers it too.
#[test]
fn sleeping_slots_wait_for_their_timer_and_their_deadline() {
    let t0 = Instant::now();
    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    let reply = Reply::After(Duration::from_millis(50), text("slept"));
    p.begin(reply, meta(t0), t0 + DEADLINE, t0, &mut sched);
    assert_eq!(sched.timers, vec![(t0 + Duration::from_millis(50), 0)]);
    assert!(p.is_sleeping(0));
    assert_eq!(p.next_deadline(), Some(t0 + DEADLINE));
    p.on_timer(7); // someone else's timer: nothing happens
    assert!(drain_bodies(&mut p).is_empty());
    p.on_timer(0);
    assert!(!p.is_sleeping(0));
    assert_eq!(drain_bodies(&mut p), ["200 slept"]);

    // A sleep longer than the request deadline is answered 504 at the deadline.
    p.begin(
        Reply::After(Duration::from_secs(90), text("late")),
        meta(t0),
        t0 + DEADLINE,
        t0,
        &mut sched,
    );
    assert_eq!(p.expire(t0 + DEADLINE), 1);
    assert_eq!(drain_bodies(&mut p)[0].split(' ').next(), Some("504"));
}

/// A deadline answers 504, cancels the job, and a late completion is dropped.
#[test]
fn expired_jobs_get_504_and_late_results_are_dropped() {
    let t0 = Instant::now();
    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    p.begin(offload(), meta(t0), t0 + DEADLINE, t0, &mut sched);
    assert_eq!(p.expire(t0 + DEADLINE - Duration::from_millis(1)), 0);
    assert_eq!(p.expire(t0 + DEADLINE), 1);
    assert!(
        sched.jobs[0].2.load(Ordering::Relaxed),
        "the job was cancelled"
    );
    p.complete(
        0,
        0,
        Ok(Reply::Now(text("late"))),
        Duration::ZERO,
        t0,
        &mut sched,
    );
    let bodies = drain_bodies(&mut p);
    assert_eq!(bodies.len(), 1);
    assert!(bodies[0].starts_with("504 "), "{bodies:?}");
}

/// A job that returns more work stays in place and keeps its deadline.
#[test]
fn a_job_may_continue_with_more_work() {
    let t0 = Instant::now();
    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    p.begin(offload(), meta(t0), t0 + DEADLINE, t0, &mut sched);
    p.complete(0, 0, Ok(gather(2)), Duration::ZERO, t0, &mut sched);
    assert_eq!(sched.jobs.len(), 3, "the continuation queued two parts");
    assert_eq!(p.next_deadline(), Some(t0 + DEADLINE));
    p.complete(
        0,
        1,
        Ok(Reply::Now(text("y"))),
        Duration::ZERO,
        t0,
        &mut sched,
    );
    p.complete(
        0,
        0,
        Ok(Reply::Now(text("x"))),
        Duration::ZERO,
        t0,
        &mut sched,
    );
    assert_eq!(drain_bodies(&mut p), ["200 xy"], "joined in part order");
}

/// Any failed part — an error response, a panic, a skipped job — is the answer, and cancels
/// its siblings; the join never runs on a partial set.
#[test]
fn a_failed_part_cancels_its_siblings() {
    let t0 = Instant::now();
    let failures: Vec<Result<Reply, Error>> = vec![
        Ok(Reply::Now(Error::BadQuery("bad".into()).into_response())),
        Err(Error::JobPanicked),
        Err(Error::Unavailable),
    ];
    for failure in failures {
        let mut sched = Recorder::default();
        let mut p = Pipeline::new();
        p.begin(gather(3), meta(t0), t0 + DEADLINE, t0, &mut sched);
        p.complete(0, 1, failure, Duration::ZERO, t0, &mut sched);
        for (_, part, flag) in &sched.jobs {
            assert!(flag.load(Ordering::Relaxed), "part {part} cancelled");
        }
        // The siblings' late results change nothing.
        for part in [0, 2] {
            let late = Ok(Reply::Now(text("late")));
            p.complete(0, part, late, Duration::ZERO, t0, &mut sched);
        }
        let bodies = drain_bodies(&mut p);
        assert_eq!(bodies.len(), 1);
        assert!(!bodies[0].starts_with("200"), "{bodies:?}");
        assert!(p.is_empty());
    }
}

/// A gather that cannot queue all its parts is answered 503 at once, and the parts already
/// queued are cancelled.
#[test]
fn a_full_queue_answers_503_and_cancels_queued_parts() {
    let t0 = Instant::now();
    let mut sched = Recorder {
        capacity: Some(1),
        ..Recorder::default()
    };
    let mut p = Pipeline::new();
    p.begin(gather(2), meta(t0), t0 + DEADLINE, t0, &mut sched);
    assert!(sched.jobs[0].2.load(Ordering::Relaxed));
    let bodies = drain_bodies(&mut p);
    assert!(bodies[0].starts_with("503 "), "{bodies:?}");
}

/// A panicking join costs its request a 500, nothing more.
#[test]
fn a_panicking_join_is_a_500() {
    let t0 = Instant::now();
    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    let reply = Reply::gather(vec![Box::new(|_| text("a"))], |_| panic!("join fails"));
    p.begin(reply, meta(t0), t0 + DEADLINE, t0, &mut sched);
    p.complete(
        0,
        0,
        Ok(Reply::Now(text("a"))),
        Duration::ZERO,
        t0,
        &mut sched,
    );
    let bodies = drain_bodies(&mut p);
    assert!(bodies[0].starts_with("500 "), "{bodies:?}");
}

/// `100 Continue` and ready responses queue behind a running job, never overtaking it.
#[test]
fn nothing_overtakes_an_earlier_request() {
    let t0 = Instant::now();
    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    p.begin(offload(), meta(t0), t0 + DEADLINE, t0, &mut sched);
    p.push_continue(meta(t0));
    p.push_ready(text("ready"), meta(t0));
    assert!(drain_bodies(&mut p).is_empty());
    p.complete(
        0,
        0,
        Ok(Reply::Now(text("job"))),
        Duration::ZERO,
        t0,
        &mut sched,
    );
    assert_eq!(drain_bodies(&mut p), ["200 job", "100", "200 ready"]);
}

/// Closing the connection cancels every job still running, and only those: a job whose request
/// was already answered (here by its deadline) is not touched again.
#[test]
fn cancel_all_sets_every_running_jobs_flag() {
    let t0 = Instant::now();
    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    let soon = t0 + Duration::from_secs(1);
    p.begin(offload(), meta(t0), soon, t0, &mut sched);
    p.begin(offload(), meta(t0), t0 + DEADLINE, t0, &mut sched);
    p.begin(gather(2), meta(t0), t0 + DEADLINE, t0, &mut sched);
    assert_eq!(p.expire(soon), 1);
    sched.jobs[0].2.store(false, Ordering::Relaxed); // forget the cancel the 504 made
    assert!(p.has_work_outstanding());
    p.cancel_all();
    assert!(
        !sched.jobs[0].2.load(Ordering::Relaxed),
        "answered: not running"
    );
    assert!(sched.jobs[1..]
        .iter()
        .all(|(_, _, f)| f.load(Ordering::Relaxed)));
}

/// A delay past the end of time is answered 500 instead of panicking the reactor.
#[test]
fn an_impossible_delay_is_a_500() {
    let t0 = Instant::now();
    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    let reply = Reply::After(Duration::MAX, text("never"));
    p.begin(reply, meta(t0), t0 + DEADLINE, t0, &mut sched);
    let bodies = drain_bodies(&mut p);
    assert!(bodies[0].starts_with("500 "), "{bodies:?}");
}
