//! `Reply::Gather` and job continuations, the shape of `/analyze` (decode once, then two jobs in
//! parallel, joined on the reactor): an offloaded job may return more work, a gather's parts run
//! at once on different workers, the join sees the parts in order, and every failure is one
//! clean answer — a failed part answers at once and cancels its siblings.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use evloop::config::Config;
use evloop::http::{Method, Response};
use evloop::pool::Work;
use evloop::router::{Reply, Router};

use common::{get, spawn_in_process, test_config, Client};

/// Set by the long part of `/error-part` once it runs.
static SIBLING_STARTED: AtomicBool = AtomicBool::new(false);
/// Set by the long part of `/error-part` when it sees its cancel flag.
static SIBLING_SAW_CANCEL: AtomicBool = AtomicBool::new(false);
/// Set by `/hold` once it runs.
static HOLD_STARTED: AtomicBool = AtomicBool::new(false);
/// Set by the test to let `/hold` answer.
static HOLD_RELEASED: AtomicBool = AtomicBool::new(false);
/// Set by a part of `/refused-pair` if it ever runs (it must not: its gather is refused).
static REFUSED_PART_RAN: AtomicBool = AtomicBool::new(false);

/// A part: a value, or the response that answers the request instead.
type Part = Work<Result<String, Response>>;

/// A part that sleeps `ms` on its worker and returns its name and worker number.
fn part(name: &'static str, ms: u64) -> Part {
    Box::new(move |job| {
        sleep(Duration::from_millis(ms));
        Ok(format!("{name}@{}", job.worker))
    })
}

/// Wait up to 10 s for `flag`; fail (the test, or the job) if it is not set by then.
fn wait_for(flag: &AtomicBool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !flag.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "{what} did not come within 10 s");
        sleep(Duration::from_millis(1));
    }
}

/// A part that waits up to 10 s for every part sharing `arrived` (of `count`) to have started,
/// and returns its name and worker number, with ` alone` if the others never came.
fn meeting_part(name: &'static str, arrived: Arc<AtomicUsize>, count: usize) -> Part {
    Box::new(move |job| {
        arrived.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while arrived.load(Ordering::SeqCst) < count && Instant::now() < deadline {
            sleep(Duration::from_millis(1));
        }
        let met = arrived.load(Ordering::SeqCst) >= count;
        Ok(format!(
            "{name}@{}{}",
            job.worker,
            if met { "" } else { " alone" }
        ))
    })
}

/// Join the parts' values with `+`.
fn join_bodies(parts: Vec<String>) -> Response {
    Response::text_owned(200, parts.join("+"))
}

fn server(pool: usize, queue: usize) -> SocketAddr {
    let router = Router::new()
        .route(Method::Get, "/both", |_, _| {
            Reply::gather(vec![part("a", 300), part("b", 300)], join_bodies)
        })
        .route(Method::Get, "/meet", |_, _| {
            let arrived = Arc::new(AtomicUsize::new(0));
            let parts = vec![
                meeting_part("a", Arc::clone(&arrived), 2),
                meeting_part("b", arrived, 2),
            ];
            Reply::gather(parts, join_bodies)
        })
        .route(Method::Get, "/refused-pair", |_, _| {
            let runs = || -> Part {
                Box::new(|_| {
                    REFUSED_PART_RAN.store(true, Ordering::SeqCst);
                    Ok("ran".to_string())
                })
            };
            Reply::gather(vec![runs(), runs()], join_bodies)
        })
        .route(Method::Get, "/chain", |_, _| {
            // decode-then-fan-out, as /analyze does: the first job's reply is a gather.
            Reply::offload(|_| Reply::gather(vec![part("x", 100), part("y", 100)], join_bodies))
        })
        .route(Method::Get, "/failing-part", |_, _| {
            let fails: Part = Box::new(|_| panic!("this part fails on purpose"));
            Reply::gather(vec![part("ok", 10), fails], join_bodies)
        })
        .route(Method::Get, "/failing-join", |_, _| {
            Reply::gather(vec![part("ok", 10)], |_| -> Response {
                panic!("this join fails on purpose")
            })
        })
        .route(Method::Get, "/error-part", |_, _| {
            // The refusal waits until its sibling runs, so the sibling is cancelled while it
            // runs (and must notice), not while it still waits in the queue (and is skipped).
            let refuses: Part = Box::new(|_| {
                let deadline = Instant::now() + Duration::from_secs(1);
                while !SIBLING_STARTED.load(Ordering::SeqCst) && Instant::now() < deadline {
                    sleep(Duration::from_millis(1));
                }
                Err(Response::text(422, "cannot"))
            });
            let long: Part = Box::new(|job| {
                SIBLING_STARTED.store(true, Ordering::SeqCst);
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(2) {
                    if job.is_cancelled() {
                        SIBLING_SAW_CANCEL.store(true, Ordering::SeqCst);
                        return Ok("stopped early".to_string());
                    }
                    sleep(Duration::from_millis(5));
                }
                Ok("ran to the end".to_string())
            });
            Reply::gather(vec![refuses, long], join_bodies)
        })
        .route(Method::Get, "/one", |_, _| {
            Reply::gather(vec![part("solo", 300)], join_bodies)
        })
        .route(Method::Get, "/hold", |_, _| {
            Reply::offload(|_| {
                HOLD_STARTED.store(true, Ordering::SeqCst);
                wait_for(&HOLD_RELEASED, "the release of /hold");
                Response::text(200, "held")
            })
        })
        .route(Method::Get, "/plaintext", |_, _| {
            Response::text(200, "Hello, World!").into()
        });
    spawn_in_process(
        Config {
            pool,
            queue,
            ..test_config()
        },
        router,
    )
}

/// The parts of a gather on a pool of two run at once, on different workers, and the join sees
/// them in the order given: each part waits for the other to start, which it only sees if they
/// run at the same time (one after the other, the first would wait out its 10 s alone).
#[test]
fn parts_run_in_parallel_and_join_in_order() {
    let addr = server(2, 8);
    let mut client = Client::connect(addr);
    let response = client.request(get("/meet"));
    let text = response.text();
    let (a, b) = text.split_once('+').expect("two parts");
    assert!(a.starts_with("a@") && b.starts_with("b@"), "{text}");
    assert!(
        !text.contains("alone"),
        "the parts did not run at once: {text}"
    );
    assert_ne!(a[2..], b[2..], "both parts ran on the same worker: {text}");
}

/// A job may continue with more work: its reply (a gather) is filed like a handler's, and the
/// request is answered once the last part is in; the connection is served in order meanwhile.
#[test]
fn a_job_can_continue_with_a_gather() {
    let addr = server(2, 8);
    let mut client = Client::connect(addr);
    client.send(format!("{}{}", get("/chain"), get("/plaintext")));
    let first = client.read_response();
    let second = client.read_response();
    assert!(
        first.text().starts_with("x@") && first.text().contains("+y@"),
        "{first:?}"
    );
    assert_eq!(second.text(), "Hello, World!");
}

/// A panicking part makes the whole request one 500; the join never sees half a result, and
/// the workers and the connection carry on.
#[test]
fn a_failed_part_is_one_500_and_the_server_carries_on() {
    let addr = server(2, 8);
    let mut client = Client::connect(addr);
    let response = client.request(get("/failing-part"));
    assert_eq!(response.status, 500, "{response:?}");
    let response = client.request(get("/both"));
    assert_eq!(response.status, 200);
}

/// A join runs on the reactor; if it panics the request gets a 500 and the reactor lives on.
#[test]
fn a_panicking_join_is_a_500_not_a_dead_reactor() {
    let addr = server(1, 8);
    let mut client = Client::connect(addr);
    assert_eq!(client.request(get("/failing-join")).status, 500);
    assert_eq!(client.request(get("/plaintext")).text(), "Hello, World!");
}

/// When the queue cannot take every part, the request is refused at once with 503 and the
/// parts that were queued are cancelled: the single worker skips them instead of running them
/// for nobody.
#[test]
fn a_gather_that_does_not_fit_the_queue_is_503() {
    let addr = server(1, 1);
    let mut busy = Client::connect(addr);
    busy.send(get("/hold"));
    // Once the only worker runs it (until it is released), the queue (1) is empty again.
    wait_for(&HOLD_STARTED, "the start of /hold");
    let mut client = Client::connect(addr);
    let response = client.request(get("/refused-pair"));
    assert_eq!(response.status, 503, "{response:?}");
    assert!(response.header("retry-after").is_some());
    HOLD_RELEASED.store(true, Ordering::SeqCst);
    assert_eq!(busy.read_response().text(), "held");
    // The worker takes jobs in order: once a later job has run, it has taken the cancelled part
    // off the queue, and skipped it. Until then the one-job queue may still hold that part, and
    // the later job is refused 503 like any job that finds the queue full.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = client.request(get("/one"));
        if response.status == 200 {
            break;
        }
        assert_eq!(response.status, 503, "{response:?}");
        assert!(Instant::now() < deadline, "the queue stayed full for 10 s");
        sleep(Duration::from_millis(20));
    }
    assert!(
        !REFUSED_PART_RAN.load(Ordering::SeqCst),
        "a part of the refused gather ran"
    );
}

/// A part that answers with an error (any 4xx/5xx, not only a panic) is the request's answer at
/// once, and its sibling is cancelled instead of running to the end for nobody.
#[test]
fn an_error_part_answers_at_once_and_cancels_its_sibling() {
    let addr = server(2, 8);
    let mut client = Client::connect(addr);
    let started = Instant::now();
    let response = client.request(get("/error-part"));
    assert_eq!(response.status, 422);
    assert_eq!(response.text(), "cannot");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "answered after {:?}: the failure waited for its sibling",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while !SIBLING_SAW_CANCEL.load(Ordering::SeqCst) && Instant::now() < deadline {
        sleep(Duration::from_millis(10));
    }
    assert!(
        SIBLING_SAW_CANCEL.load(Ordering::SeqCst),
        "the sibling was cancelled"
    );
    assert_eq!(client.request(get("/plaintext")).status, 200);
}
