//! The worker pool as a client sees it: a full queue sheds load with 503, a panicking job costs
//! one 500 and not the worker, a job whose client left is skipped, a job that runs past
//! `--request-timeout` is answered 504, a completion for a closed connection never reaches the
//! next connection in the same slot, and `--worker-priority` puts the workers in the scheduling
//! class it names.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use evloop::config::Config;
use evloop::endpoints;
use evloop::http::{Method, Response};
use evloop::router::{Reply, Router};

use common::{get, spawn_binary, spawn_in_process, test_config, Client};

/// An in-process server with a single worker.
fn one_worker(router: Router) -> SocketAddr {
    spawn_in_process(
        Config {
            pool: 1,
            queue: 8,
            ..test_config()
        },
        router,
    )
}

/// With one worker busy and the one queue slot taken, the next job is refused at once with 503
/// and `Retry-After`; the jobs already accepted still complete.
#[test]
fn full_queue_is_503_with_retry_after() {
    let server = spawn_binary(&["--pool", "1", "--queue", "1"]);
    let mut busy = Client::connect(server.addr());
    busy.send(get("/cpu?ms=1500"));
    sleep(Duration::from_millis(250)); // the worker takes the job, the queue is empty again
    let mut queued = Client::connect(server.addr());
    queued.send(get("/cpu?ms=10"));
    sleep(Duration::from_millis(50));

    let mut refused = Client::connect(server.addr());
    let started = Instant::now();
    let response = refused.request(get("/cpu?ms=10"));
    let waited = started.elapsed();
    response.assert_json_error(503);
    assert!(
        response
            .header("retry-after")
            .is_some_and(|v| !v.is_empty()),
        "{response:?}"
    );
    assert!(
        waited < Duration::from_millis(700),
        "the 503 took {waited:?}: it waited for the pool"
    );
    // Load shedding is not a protocol error: the connection stays usable.
    assert_eq!(refused.request(get("/plaintext")).status, 200);

    assert_eq!(busy.read_response().json()["ms"], 1500);
    assert_eq!(queued.read_response().json()["ms"], 10);
}

/// The built-in routes plus `/panic` (an offloaded job that panics) and `/work` (an offloaded job
/// that answers with its worker number).
fn panicky_router() -> Router {
    endpoints::router()
        .route(Method::Get, "/panic", |_, _| {
            Reply::offload(|_| -> Response { panic!("this job fails on purpose") })
        })
        .route(Method::Get, "/work", |_, _| {
            Reply::offload(|job| Response::text_owned(200, format!("worker {}", job.worker)))
        })
}

/// A panicking job is answered 500 with a JSON error, and the pool's single worker survives to
/// run the next jobs — twice over, so the same worker really came back.
#[test]
fn panicking_job_is_500_and_the_worker_survives() {
    let addr = one_worker(panicky_router());
    let mut client = Client::connect(addr);
    for _ in 0..2 {
        let response = client.request(get("/panic"));
        let message = response.assert_json_error(500);
        assert!(
            !message.contains("on purpose"),
            "the panic message leaked to the client: {message:?}"
        );
        assert!(!response.says_close());
        assert_eq!(client.request(get("/work")).text(), "worker 0");
    }
    // And from another connection too.
    assert_eq!(
        Client::connect(addr).request(get("/work")).text(),
        "worker 0"
    );
}

/// A queued job whose client disconnects is skipped: it never runs.
#[test]
fn job_of_a_departed_client_is_skipped() {
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&ran);
    let router = endpoints::router()
        .route(Method::Get, "/hold", |_, _| {
            Reply::offload(|_| {
                sleep(Duration::from_millis(400));
                Response::text(200, "held")
            })
        })
        .route(Method::Get, "/count", move |_, _| {
            let counter = Arc::clone(&counter);
            Reply::offload(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
                Response::text(200, "counted")
            })
        });
    let addr = one_worker(router);

    let mut holder = Client::connect(addr);
    holder.send(get("/hold"));
    sleep(Duration::from_millis(100)); // the only worker is now busy

    let mut leaver = Client::connect(addr);
    leaver.send(get("/count"));
    drop(leaver); // gone while its job waits in the queue

    assert_eq!(holder.read_response().text(), "held");
    sleep(Duration::from_millis(300));
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "the departed client's job ran"
    );

    // Control: the same route does run for a client that stays.
    assert_eq!(
        Client::connect(addr).request(get("/count")).text(),
        "counted"
    );
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

/// A job still running at `--request-timeout` is answered 504 at the deadline, and the
/// connection stays usable.
#[test]
fn request_timeout_is_504() {
    let server = spawn_binary(&["--pool", "1", "--request-timeout", "0.3"]);
    let mut client = Client::connect(server.addr());
    let started = Instant::now();
    let response = client.request(get("/cpu?ms=2000"));
    let waited = started.elapsed();
    response.assert_json_error(504);
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(1500),
        "504 after {waited:?}"
    );
    assert_eq!(client.request(get("/plaintext")).status, 200);
}

/// The timed-out job is cancelled, so the worker is free again long before the job's 2 s would
/// have run out.
#[test]
fn timed_out_job_frees_its_worker() {
    let server = spawn_binary(&["--pool", "1", "--request-timeout", "0.3"]);
    let mut client = Client::connect(server.addr());
    client.request(get("/cpu?ms=2000")).assert_json_error(504);
    let started = Instant::now();
    let response = client.request(get("/cpu?ms=10"));
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "the next job waited {:?} for the cancelled one",
        started.elapsed()
    );
}

/// A job finishing for a connection that has closed is dropped, even when a new connection has
/// taken the same slot and is waiting for a job with the same sequence number.
#[test]
fn completion_for_a_closed_connection_never_reaches_its_successor() {
    // Both jobs ignore their cancel flag, so the stale one really finishes while its
    // successor waits.
    let router = endpoints::router()
        .route(Method::Get, "/stale", |_, _| {
            Reply::offload(|_| {
                sleep(Duration::from_millis(300));
                Response::text(200, "stale")
            })
        })
        .route(Method::Get, "/fresh", |_, _| {
            Reply::offload(|_| {
                sleep(Duration::from_millis(600));
                Response::text(200, "fresh")
            })
        });
    let addr = spawn_in_process(test_config(), router);
    let mut gone = Client::connect(addr);
    gone.send(get("/stale"));
    sleep(Duration::from_millis(50));
    drop(gone);
    sleep(Duration::from_millis(50)); // the server notices and frees the slot

    let mut next = Client::connect(addr);
    let response = next.request(get("/fresh"));
    assert_eq!(response.text(), "fresh");
}

/// Pool jobs run off the reactor: while a 1 s job runs, other connections are answered at once.
#[test]
fn pool_job_does_not_block_other_connections() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut heavy = Client::connect(server.addr());
    let started = Instant::now();
    heavy.send(get("/cpu?ms=1000"));
    sleep(Duration::from_millis(50));
    let mut light = Client::connect(server.addr());
    assert_eq!(light.request(get("/plaintext")).status, 200);
    let light_done = started.elapsed();
    assert!(
        light_done < Duration::from_millis(600),
        "plaintext waited {light_done:?} behind a pool job"
    );
    assert_eq!(heavy.read_response().json()["ms"], 1000);
}

/// `mode=inline` runs the burn on the reactor itself: a request on another connection waits until
/// it is over (the anti-pattern, kept on purpose).
#[test]
fn inline_job_blocks_other_connections() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut heavy = Client::connect(server.addr());
    let started = Instant::now();
    heavy.send(get("/cpu?ms=400&mode=inline"));
    sleep(Duration::from_millis(50));
    let mut light = Client::connect(server.addr());
    assert_eq!(light.request(get("/plaintext")).status, 200);
    let light_done = started.elapsed();
    assert!(
        light_done >= Duration::from_millis(390),
        "plaintext answered after {light_done:?}, while the reactor should have been blocked"
    );
    assert_eq!(heavy.read_response().json()["mode"], "inline");
}

/// Ordinary busy processes (`sh -c 'while :; do :; done'`), one per CPU, killed on drop: the
/// compile, log shipper or browser that shares a real machine with the server.
struct BusyLoops(Vec<std::process::Child>);

impl BusyLoops {
    fn one_per_cpu() -> BusyLoops {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        BusyLoops(
            (0..cpus)
                .map(|_| {
                    std::process::Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("spawn a busy loop")
                })
                .collect(),
        )
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// With the default priority, the pool keeps working while every CPU also runs an ordinary
/// busy process: ten 20 ms jobs, one after another, finish within a few seconds (well under
/// one on a quiet machine). With `SCHED_IDLE` workers, the former default, a worker waits
/// about a second for each chance to run, and this took over ten.
#[test]
fn the_pool_keeps_working_beside_busy_processes() {
    let server = spawn_binary(&["--pool", "1"]);
    let mut client = Client::connect(server.addr());
    assert_eq!(client.request(get("/cpu?ms=1")).status, 200);
    let _busy = BusyLoops::one_per_cpu();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    for _ in 0..10 {
        assert_eq!(client.request(get("/cpu?ms=20")).status, 200);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "ten 20 ms jobs took {took:?} beside busy processes"
    );
}

/// One thread of a process, as `/proc/PID/task/TID/stat` describes it.
#[derive(Debug)]
struct ThreadSched {
    tid: i32,
    name: String,
    /// `SCHED_OTHER` 0, `SCHED_BATCH` 3, `SCHED_IDLE` 5.
    policy: u32,
    nice: i32,
}

/// Every thread of process `pid` with its scheduling policy and nice value.
fn threads_of(pid: i32) -> Vec<ThreadSched> {
    let mut threads = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc/PID/task") {
        let path = entry.expect("task entry").path();
        // A thread may end between the listing and the read (the start-up hooks' thread does,
        // once they are done): it is not one of those we look for.
        let (Ok(stat), Ok(name)) = (
            std::fs::read_to_string(path.join("stat")),
            std::fs::read_to_string(path.join("comm")),
        ) else {
            continue;
        };
        // Fields after `(comm) `: state is field 3 of stat(5), so field N is index N - 3.
        let after = &stat[stat.rfind(')').expect("comm field") + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        threads.push(ThreadSched {
            tid: stat
                .split(' ')
                .next()
                .and_then(|t| t.parse().ok())
                .expect("tid"),
            name: name.trim().to_string(),
            nice: fields[19 - 3].parse().expect("nice"),
            policy: fields[41 - 3].parse().expect("policy"),
        });
    }
    threads
}

const SCHED_OTHER: u32 = 0;
const SCHED_BATCH: u32 = 3;
const SCHED_IDLE: u32 = 5;

/// The reactor (the main thread) and the two workers of a server started with `args`, once
/// both workers are up and `settled` holds for each (a worker applies its priority as it
/// starts, an instant after it takes its name). After 5 s, whatever they are.
fn reactor_and_workers(
    args: &[&str],
    settled: impl Fn(&ThreadSched) -> bool,
) -> (ThreadSched, Vec<ThreadSched>) {
    let server = spawn_binary(args);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (reactor, workers): (Vec<_>, Vec<_>) = threads_of(server.pid())
            .into_iter()
            .filter(|t| t.tid == server.pid() || t.name.starts_with("evloop-worker-"))
            .partition(|t| t.tid == server.pid());
        let done = workers.len() == 2 && workers.iter().all(&settled);
        if done || Instant::now() >= deadline {
            let reactor = reactor.into_iter().next().expect("the reactor thread");
            return (reactor, workers);
        }
        sleep(Duration::from_millis(10));
    }
}

/// By default the workers run in `SCHED_BATCH` at the process's nice: a fair share of the CPU
/// beside other busy processes (`SCHED_IDLE` workers stopped entirely beside any), while a
/// waking worker never preempts the reactor. The reactor itself is left as it was.
#[test]
fn default_workers_run_in_sched_batch() {
    let (reactor, workers) = reactor_and_workers(&["--pool", "2"], |t| t.policy == SCHED_BATCH);
    assert_eq!(workers.len(), 2, "{workers:?}");
    for worker in &workers {
        assert_eq!((worker.policy, worker.nice), (SCHED_BATCH, 0), "{worker:?}");
    }
    assert_eq!(
        (reactor.policy, reactor.nice),
        (SCHED_OTHER, 0),
        "{reactor:?}"
    );
}

/// The opt-in modes: `normal` changes nothing, `low` is nice +19, `idle` is `SCHED_IDLE`; in
/// none of them is the reactor touched.
#[test]
fn opt_in_worker_priorities() {
    for (mode, policy, nice) in [
        ("normal", SCHED_OTHER, 0),
        ("low", SCHED_OTHER, 19),
        ("idle", SCHED_IDLE, 0),
    ] {
        let args = ["--pool", "2", "--worker-priority", mode];
        let (reactor, workers) =
            reactor_and_workers(&args, |t| (t.policy, t.nice) == (policy, nice));
        assert_eq!(workers.len(), 2, "{mode}: {workers:?}");
        for worker in &workers {
            assert_eq!(
                (worker.policy, worker.nice),
                (policy, nice),
                "{mode}: {worker:?}"
            );
        }
        assert_eq!(
            (reactor.policy, reactor.nice),
            (SCHED_OTHER, 0),
            "{mode}: {reactor:?}"
        );
    }
}
