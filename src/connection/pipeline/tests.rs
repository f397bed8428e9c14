//! The pipeline without sockets: every interleaving of completions, timers and deadlines,
//! driven by hand.

use super::*;
use crate::pool::JobContext;
use crate::router::Stream;

/// A scheduler that records what it was asked to do.
#[derive(Default)]
struct Recorder {
    /// `(seq, part, cancel flag)` of every job submitted.
    jobs: Vec<(u64, usize, Arc<AtomicBool>)>,
    /// `(at, seq)` of every timer armed.
    timers: Vec<(Instant, u64)>,
    /// Refuse submissions after this many (a full queue).
    capacity: Option<usize>,
    /// `(seq, part, id)` of every call started.
    calls: Vec<(u64, usize, CallId)>,
    /// Every call cancelled.
    cancelled_calls: Vec<CallId>,
    /// Refuse calls after this many.
    call_capacity: Option<usize>,
}

impl Scheduler for Recorder {
    fn submit(
        &mut self,
        seq: u64,
        part: usize,
        _work: Work<JobOutput>,
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

    fn call(&mut self, seq: u64, part: usize, _request: &CallRequest) -> Result<CallId, CallError> {
        if self
            .call_capacity
            .is_some_and(|cap| self.calls.len() >= cap)
        {
            return Err(CallError::TooManyWaiting);
        }
        let id = CallId(self.calls.len());
        self.calls.push((seq, part, id));
        Ok(id)
    }

    fn cancel_call(&mut self, id: CallId) {
        self.cancelled_calls.push(id);
    }
}

impl Recorder {
    /// The newest call started for part `part` of request `seq`.
    fn call_id(&self, seq: u64, part: usize) -> CallId {
        self.calls
            .iter()
            .rev()
            .find(|(s, p, _)| *s == seq && *p == part)
            .map(|(_, _, id)| *id)
            .expect("such a call was started")
    }
}

fn meta(now: Instant) -> ResponseMeta {
    ResponseMeta {
        head_only: false,
        http10: false,
        http10_keep_alive: false,
        close: false,
        started: now,
        route: None,
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

/// A gather of `parts` parts whose values are strings, joined by concatenation.
fn gather(parts: usize) -> Reply {
    let works = (0..parts)
        .map(|_| -> Work<Result<String, Response>> { Box::new(|_| Ok("part".to_string())) })
        .collect();
    Reply::gather(works, |parts: Vec<String>| {
        Response::text_owned(200, parts.concat())
    })
}

/// A single job's completion: it answers `body`.
fn done(body: &'static str) -> Result<JobOutput, Error> {
    Ok(JobOutput::Reply(Reply::Now(text(body))))
}

/// A gather part's completion with the value `value`.
fn part_done(value: &str) -> Result<JobOutput, Error> {
    Ok(JobOutput::Part(Ok(Box::new(value.to_string()))))
}

/// Take everything the front hands out, pieces included, and describe each: `200 body` for a
/// response, `100` for a Continue, `head 200`, `piece …` and `end …` for a stream.
fn drain_bodies(pipeline: &mut Pipeline) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(answer) = pipeline.next_answer(true) {
        out.push(describe(answer));
    }
    out
}

fn describe(answer: Answer) -> String {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    match answer {
        Answer::Continue(_) => "100".to_string(),
        Answer::Final(r, _) => format!("{} {}", r.status, text(r.body.as_bytes())),
        Answer::StreamHead(r, _, body) => format!("head {} {body:?}", r.status),
        Answer::Piece(piece, _) => format!("piece {}", text(&piece)),
        Answer::StreamEnd { last, .. } => format!("end {}", text(&last)),
    }
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
    assert_eq!(p.expire(t0 + DEADLINE, &mut sched), 1);
    assert_eq!(drain_bodies(&mut p)[0].split(' ').next(), Some("504"));
}

/// A deadline answers 504, cancels the job, and a late completion is dropped.
#[test]
fn expired_jobs_get_504_and_late_results_are_dropped() {
    let t0 = Instant::now();
    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    p.begin(offload(), meta(t0), t0 + DEADLINE, t0, &mut sched);
    assert_eq!(
        p.expire(t0 + DEADLINE - Duration::from_millis(1), &mut sched),
        0
    );
    assert_eq!(p.expire(t0 + DEADLINE, &mut sched), 1);
    assert!(
        sched.jobs[0].2.load(Ordering::Relaxed),
        "the job was cancelled"
    );
    p.complete(0, 0, done("late"), Duration::ZERO, t0, &mut sched);
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
    p.complete(
        0,
        0,
        Ok(JobOutput::Reply(gather(2))),
        Duration::ZERO,
        t0,
        &mut sched,
    );
    assert_eq!(sched.jobs.len(), 3, "the continuation queued two parts");
    assert_eq!(p.next_deadline(), Some(t0 + DEADLINE));
    p.complete(0, 1, part_done("y"), Duration::ZERO, t0, &mut sched);
    p.complete(0, 0, part_done("x"), Duration::ZERO, t0, &mut sched);
    assert_eq!(drain_bodies(&mut p), ["200 xy"], "joined in part order");
}

/// Any failed part — an error response, a panic, a skipped job — is the answer, and cancels
/// its siblings; the join never runs on a partial set.
#[test]
fn a_failed_part_cancels_its_siblings() {
    let t0 = Instant::now();
    let failures: Vec<Result<JobOutput, Error>> = vec![
        Ok(JobOutput::Part(Err(
            Error::BadQuery("bad".into()).into_response()
        ))),
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
            let late = part_done("late");
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
    let part: Work<Result<u8, Response>> = Box::new(|_| Ok(1));
    let reply = Reply::gather(vec![part], |_: Vec<u8>| -> Response {
        panic!("join fails")
    });
    p.begin(reply, meta(t0), t0 + DEADLINE, t0, &mut sched);
    p.complete(
        0,
        0,
        Ok(JobOutput::Part(Ok(Box::new(1u8)))),
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
    p.complete(0, 0, done("job"), Duration::ZERO, t0, &mut sched);
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
    assert_eq!(p.expire(soon, &mut sched), 1);
    sched.jobs[0].2.store(false, Ordering::Relaxed); // forget the cancel the 504 made
    assert!(p.has_work_outstanding());
    p.cancel_all(&mut |id| sched.cancel_call(id));
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

/// An event stream whose job's completion the test delivers by hand.
fn stream() -> Reply {
    Reply::Stream(Stream::events(|_| text("unused")))
}

/// A stream's job ended with `response`.
fn stream_done(response: Response) -> Result<JobOutput, Error> {
    Ok(JobOutput::StreamEnd(response))
}

/// A stream goes out as head, pieces, last piece; unsent progress keeps only the newest
/// message, and pieces wait while the client is not taking them.
#[test]
fn a_stream_goes_out_head_pieces_end_keeping_only_the_newest_progress() {
    let t0 = Instant::now();
    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    p.begin(stream(), meta(t0), t0 + DEADLINE, t0, &mut sched);
    assert!(p.has_work_outstanding());
    p.progress(0, b"one".to_vec());
    p.progress(0, b"two".to_vec());
    assert_eq!(drain_bodies(&mut p), ["head 200 Chunked", "piece two"]);
    p.progress(0, b"three".to_vec());
    assert!(
        p.next_answer(false).is_none(),
        "a piece went out while the client was not reading"
    );
    p.progress(0, b"four".to_vec());
    assert_eq!(drain_bodies(&mut p), ["piece four"]);
    p.progress(0, b"five".to_vec());
    p.complete(
        0,
        0,
        stream_done(text("42")),
        Duration::ZERO,
        t0,
        &mut sched,
    );
    assert!(!p.has_work_outstanding());
    assert_eq!(p.next_deadline(), None);
    p.progress(0, b"late".to_vec());
    // The result makes the unsent progress obsolete, and is never held back.
    let end = p.next_answer(false).map(describe);
    assert_eq!(end.as_deref(), Some("end event: result\ndata: 42\n\n"));
    assert!(p.is_empty());
}

/// A stream behind a running job sends nothing until that job's response is out, and a request
/// behind the stream waits for the stream's end.
#[test]
fn a_stream_keeps_its_place_in_the_response_order() {
    let t0 = Instant::now();
    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    p.begin(offload(), meta(t0), t0 + DEADLINE, t0, &mut sched);
    p.begin(stream(), meta(t0), t0 + DEADLINE, t0, &mut sched);
    p.push_ready(text("after"), meta(t0));
    p.progress(1, b"early".to_vec());
    assert!(drain_bodies(&mut p).is_empty());
    p.complete(0, 0, done("first"), Duration::ZERO, t0, &mut sched);
    assert_eq!(
        drain_bodies(&mut p),
        ["200 first", "head 200 Chunked", "piece early"]
    );
    p.complete(1, 0, stream_done(text("r")), Duration::ZERO, t0, &mut sched);
    assert_eq!(
        drain_bodies(&mut p),
        ["end event: result\ndata: r\n\n", "200 after"]
    );
}

/// Before its head is out, a failing stream is an ordinary error response; after, its last
/// piece is an error event. The request deadline works the same way.
#[test]
fn a_stream_fails_as_a_response_before_its_head_and_as_an_event_after() {
    let t0 = Instant::now();
    let refused = || Error::BadQuery("no".into()).into_response();

    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    p.begin(stream(), meta(t0), t0 + DEADLINE, t0, &mut sched);
    p.complete(0, 0, stream_done(refused()), Duration::ZERO, t0, &mut sched);
    let bodies = drain_bodies(&mut p);
    assert!(bodies[0].starts_with("400 {"), "{bodies:?}");

    let mut p = Pipeline::new();
    p.begin(stream(), meta(t0), t0 + DEADLINE, t0, &mut sched);
    assert_eq!(drain_bodies(&mut p), ["head 200 Chunked"]);
    p.complete(0, 0, stream_done(refused()), Duration::ZERO, t0, &mut sched);
    let bodies = drain_bodies(&mut p);
    assert!(
        bodies[0].starts_with("end event: error\ndata: {") && bodies[0].contains("400"),
        "{bodies:?}"
    );

    // Deadline before the head: a 504 response; after: an error event, and the job cancelled.
    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    p.begin(offload(), meta(t0), t0 + DEADLINE * 2, t0, &mut sched);
    p.begin(stream(), meta(t0), t0 + DEADLINE, t0, &mut sched);
    assert_eq!(p.expire(t0 + DEADLINE, &mut sched), 1);
    assert!(sched.jobs[1].2.load(Ordering::Relaxed));
    p.complete(0, 0, done("first"), Duration::ZERO, t0, &mut sched);
    let bodies = drain_bodies(&mut p);
    assert!(bodies[1].starts_with("504 "), "{bodies:?}");

    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    p.begin(stream(), meta(t0), t0 + DEADLINE, t0, &mut sched);
    assert_eq!(drain_bodies(&mut p), ["head 200 Chunked"]);
    p.progress(0, b"unsent".to_vec());
    assert_eq!(p.expire(t0 + DEADLINE, &mut sched), 1);
    assert!(sched.jobs[0].2.load(Ordering::Relaxed));
    let bodies = drain_bodies(&mut p);
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert!(bodies[0].starts_with("end event: error") && bodies[0].contains("504"));
    assert!(p.is_empty());
}

/// `HEAD` gets the stream's head and no body; its job is cancelled at once.
#[test]
fn a_head_request_ends_its_stream_at_the_head() {
    let t0 = Instant::now();
    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    let head = ResponseMeta {
        head_only: true,
        ..meta(t0)
    };
    p.begin(stream(), head, t0 + DEADLINE, t0, &mut sched);
    p.progress(0, b"unread".to_vec());
    assert_eq!(drain_bodies(&mut p), ["head 200 Omitted", "end "]);
    assert!(
        sched.jobs[0].2.load(Ordering::Relaxed),
        "the job was cancelled"
    );
    assert!(p.is_empty());
}

/// An HTTP/1.0 stream's body ends with the connection: the requests behind it are dropped and
/// their work cancelled.
#[test]
fn an_http10_stream_is_close_delimited_and_drops_what_follows() {
    let t0 = Instant::now();
    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    let old = ResponseMeta {
        http10: true,
        ..meta(t0)
    };
    p.begin(stream(), old, t0 + DEADLINE, t0, &mut sched);
    p.begin(offload(), meta(t0), t0 + DEADLINE, t0, &mut sched);
    p.push_ready(text("behind"), meta(t0));
    assert_eq!(
        p.next_answer(true).map(describe).as_deref(),
        Some("head 200 UntilClose")
    );
    p.abandon_behind_front(&mut |id| sched.cancel_call(id));
    assert_eq!(p.len(), 1);
    assert!(sched.jobs[1].2.load(Ordering::Relaxed));
    assert!(!sched.jobs[0].2.load(Ordering::Relaxed));
    p.cancel_all(&mut |id| sched.cancel_call(id));
    assert!(
        sched.jobs[0].2.load(Ordering::Relaxed),
        "closing cancels the stream"
    );
}

/// A stream that cannot be queued is a 503; one whose status has no body is a 500.
#[test]
fn a_stream_that_cannot_start_is_an_ordinary_error() {
    let t0 = Instant::now();
    let mut sched = Recorder {
        capacity: Some(0),
        ..Recorder::default()
    };
    let mut p = Pipeline::new();
    p.begin(stream(), meta(t0), t0 + DEADLINE, t0, &mut sched);
    assert!(drain_bodies(&mut p)[0].starts_with("503 "));
    let mut sched = Recorder::default();
    let mut no_body = Stream::events(|_| text("x"));
    no_body.head.status = 204;
    p.begin(
        Reply::Stream(no_body),
        meta(t0),
        t0 + DEADLINE,
        t0,
        &mut sched,
    );
    assert!(drain_bodies(&mut p)[0].starts_with("500 "));
    assert!(sched.jobs.is_empty());
}

/// A request for the call tests (never sent: the recorder only counts it).
fn call_request() -> CallRequest {
    let upstream =
        std::sync::Arc::new(crate::outbound::Upstream::parse("http://127.0.0.1:9").unwrap());
    CallRequest::get(&upstream, "/sleep?ms=1")
}

/// An upstream response with `body`.
fn upstream_response(body: &str) -> UpstreamResponse {
    UpstreamResponse {
        status: 200,
        version: crate::http::Version::Http11,
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
        keep_alive: true,
    }
}

/// `n` calls whose join concatenates the bodies.
fn calls(n: usize) -> Reply {
    Reply::call_all((0..n).map(|_| call_request()).collect(), |responses| {
        let bodies: Vec<String> = responses
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect();
        Response::text_owned(200, bodies.join("+"))
    })
}

/// Calls answered out of order are joined in request order, and the slot waits for its turn
/// behind an earlier request.
#[test]
fn calls_join_in_request_order_behind_earlier_requests() {
    let t0 = Instant::now();
    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    p.begin(offload(), meta(t0), t0 + DEADLINE, t0, &mut sched);
    p.begin(calls(3), meta(t0), t0 + DEADLINE, t0, &mut sched);
    assert_eq!(sched.calls.len(), 3);
    assert!(p.has_work_outstanding());
    p.call_done(
        1,
        2,
        sched.call_id(1, 2),
        Ok(upstream_response("c")),
        t0,
        &mut sched,
    );
    p.call_done(
        1,
        0,
        sched.call_id(1, 0),
        Ok(upstream_response("a")),
        t0,
        &mut sched,
    );
    assert!(
        p.next_answer(true).is_none(),
        "the first request is not answered"
    );
    p.call_done(
        1,
        1,
        sched.call_id(1, 1),
        Ok(upstream_response("b")),
        t0,
        &mut sched,
    );
    assert!(
        p.next_answer(true).is_none(),
        "still behind the first request"
    );
    p.complete(0, 0, done("first"), Duration::ZERO, t0, &mut sched);
    assert_eq!(drain_bodies(&mut p), vec!["200 first", "200 a+b+c"]);
    assert!(sched.cancelled_calls.is_empty());
}

/// A failed call is the answer at once (its status, a JSON error naming the cause), the
/// calls still under way are cancelled, and a result that comes later is dropped.
#[test]
fn a_failed_call_answers_at_once_and_cancels_the_others() {
    let t0 = Instant::now();
    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    p.begin(calls(3), meta(t0), t0 + DEADLINE, t0, &mut sched);
    p.call_done(
        0,
        0,
        sched.call_id(0, 0),
        Ok(upstream_response("a")),
        t0,
        &mut sched,
    );
    p.call_done(
        0,
        1,
        sched.call_id(0, 1),
        Err(CallError::ResponseTimeout),
        t0,
        &mut sched,
    );
    assert_eq!(sched.cancelled_calls, vec![sched.calls[2].2]);
    p.call_done(
        0,
        2,
        sched.call_id(0, 2),
        Ok(upstream_response("late")),
        t0,
        &mut sched,
    );
    let bodies = drain_bodies(&mut p);
    assert_eq!(bodies.len(), 1);
    assert!(bodies[0].starts_with("504 "), "{bodies:?}");
    assert!(
        bodies[0].contains("upstream did not answer in time"),
        "{bodies:?}"
    );
}

/// A call that cannot start cancels those started before it; the continuation sees the error.
#[test]
fn a_call_that_cannot_start_cancels_its_siblings() {
    let t0 = Instant::now();
    let mut sched = Recorder {
        call_capacity: Some(2),
        ..Recorder::default()
    };
    let mut p = Pipeline::new();
    p.begin(calls(3), meta(t0), t0 + DEADLINE, t0, &mut sched);
    assert_eq!(sched.cancelled_calls.len(), 2);
    let bodies = drain_bodies(&mut p);
    assert!(bodies[0].starts_with("503 "), "{bodies:?}");
}

/// The request deadline cancels the calls and answers 504; closing the connection cancels
/// the calls of every waiting request.
#[test]
fn deadlines_and_closing_cancel_calls() {
    let t0 = Instant::now();
    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    let soon = t0 + Duration::from_secs(1);
    p.begin(calls(2), meta(t0), soon, t0, &mut sched);
    p.begin(calls(1), meta(t0), t0 + DEADLINE, t0, &mut sched);
    assert_eq!(p.expire(soon, &mut sched), 1);
    assert_eq!(sched.cancelled_calls.len(), 2);
    p.cancel_all(&mut |id| sched.cancel_call(id));
    assert_eq!(sched.cancelled_calls.len(), 3);
    assert_eq!(sched.cancelled_calls[2], sched.calls[2].2);
}

/// A continuation may return more work (here a pool job), and a panicking one is a 500.
#[test]
fn a_continuation_continues_or_fails_cleanly() {
    let t0 = Instant::now();
    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    let more = Reply::call(call_request(), |_| Reply::offload(|_| text("parsed")));
    p.begin(more, meta(t0), t0 + DEADLINE, t0, &mut sched);
    p.call_done(
        0,
        0,
        sched.call_id(0, 0),
        Ok(upstream_response("x")),
        t0,
        &mut sched,
    );
    assert_eq!(sched.jobs.len(), 1, "the continuation offloaded a job");
    let panics = Reply::call(call_request(), |_| -> Response { panic!("on purpose") });
    p.begin(panics, meta(t0), t0 + DEADLINE, t0, &mut sched);
    p.call_done(
        1,
        0,
        sched.call_id(1, 0),
        Ok(upstream_response("y")),
        t0,
        &mut sched,
    );
    p.complete(0, 0, done("parsed"), Duration::ZERO, t0, &mut sched);
    let bodies = drain_bodies(&mut p);
    assert_eq!(bodies[0], "200 parsed");
    assert!(bodies[1].starts_with("500 "), "{bodies:?}");
}

/// A continuation that starts a second round of calls: a result of the first round that
/// arrives late (its call had ended before the cancel) is not taken for the second round's.
#[test]
fn a_late_result_never_lands_in_the_next_round() {
    let t0 = Instant::now();
    let mut sched = Recorder::default();
    let mut p = Pipeline::new();
    let two_rounds = Reply::call(call_request(), |_| calls(2));
    p.begin(two_rounds, meta(t0), t0 + DEADLINE, t0, &mut sched);
    let first = sched.call_id(0, 0);
    p.call_done(
        0,
        0,
        first,
        Ok(upstream_response("round one")),
        t0,
        &mut sched,
    );
    assert_eq!(sched.calls.len(), 3, "the second round started");
    // A stale result for part 0 (the first round's call) is dropped.
    p.call_done(0, 0, first, Ok(upstream_response("stale")), t0, &mut sched);
    let (a, b) = (sched.call_id(0, 0), sched.call_id(0, 1));
    p.call_done(0, 1, b, Ok(upstream_response("b")), t0, &mut sched);
    assert!(
        p.next_answer(true).is_none(),
        "part 0 of the second round is still awaited"
    );
    p.call_done(0, 0, a, Ok(upstream_response("a")), t0, &mut sched);
    assert_eq!(drain_bodies(&mut p), vec!["200 a+b"]);
}
