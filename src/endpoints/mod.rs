//! The built-in endpoints, registered on a [`Router`].
//!
//! Each handler shows one way of answering, and the table in `router.rs` says which asyncio idiom
//! it stands for:
//!
//! - `/plaintext`, `/json`, `/healthz`, `/readyz`, `/`: answered on the reactor, instantly;
//! - `/metrics`: the Prometheus text the reactor renders from what it counted ([`crate::metrics`]);
//! - `/events/loop`, `/dashboard`: the loop's vital signs, streamed four times a second, and a
//!   page that draws them ([`dashboard`]);
//! - `/sleep?ms=N`: a reactor timer — waiting without blocking anyone;
//! - `/cpu?ms=N`: real arithmetic on a pool worker — the reactor stays free;
//! - `/cpu?ms=N&mode=inline`: the same arithmetic on the reactor — every other client waits;
//! - `/cpu/stream?ms=N&every=M`: the same arithmetic, its progress streamed as Server-Sent
//!   Events;
//! - `/fanout?n=K&ms=M[&mode=await|pool|inline]`: K calls to the `--upstream`, awaited on the
//!   reactor, blocking on the pool, or blocking the reactor ([`fanout`]);
//! - `POST /snr-detect`, `/speaker-count`, `/analyze`: audio analysis on the pool ([`audio`]).
//!
//! # Start-up
//!
//! [`app_for`] is what the binary runs: these routes, and a start-up hook that builds the audio
//! model ([`audio::Model::load`]) off the reactor thread. Until it has finished, `/healthz` and
//! `/metrics` are served and every other route, `/readyz` included, answers 503 `starting`
//! with `Retry-After: 1` (`crate::router`, "While the server starts"). [`router`] and
//! [`router_for`] build the model at once instead, on the calling thread, for a server run
//! without hooks (tests, benchmarks).
//!
//! # Caching
//!
//! A `200` to a `GET` with no freshness information may be stored and reused by any cache on the
//! way (RFC 9111 §4.2.2, "heuristic freshness"). That is right for the fixed answers
//! (`/plaintext`, `/json`, `/`, `/healthz`) and wrong for the ones computed for one request: a
//! timing, a worker number, a readiness that flips during a drain, the analysis of an upload.
//! Those handlers are registered through `no_store`, so every answer they give, errors
//! included and wherever it is produced (reactor, timer, worker, gather), says
//! `Cache-Control: no-store` (RFC 9111 §5.2.2.5).

pub mod audio;
pub mod dashboard;
pub mod fanout;

use std::time::{Duration, Instant};

use serde_json::json;

use crate::config::Config;
use crate::error::Error;
use crate::http::{sse, Body, Method, Request, Response};
use crate::lifespan::App;
use crate::pool::JobContext;
use crate::router::{Context, Reply, Router, Stream};

/// The `Cache-Control` value of every answer computed for one request.
const NO_STORE: &str = "no-store";

/// Longest `/sleep` (ms).
pub const MAX_SLEEP_MS: u64 = 60_000;
/// Longest `/cpu` burn (ms).
pub const MAX_CPU_MS: u64 = 10_000;

/// A router with every built-in endpoint and the default settings, its audio model built now.
pub fn router() -> Router {
    router_for(&Config::default())
}

/// A router with every built-in endpoint, its audio model built now, on the calling thread;
/// `/fanout` calls `config.upstream`. For a server run without start-up hooks: the binary runs
/// [`app_for`].
pub fn router_for(config: &Config) -> Router {
    routes_on(config, audio::Model::loaded())
}

/// Every built-in endpoint, and a start-up hook, `audio model`, that builds the audio model:
/// once per process, off the reactor thread, shared by every worker. The audio endpoints answer
/// 503 until it has run. `/fanout` calls `config.upstream`.
pub fn app_for(config: &Config) -> App {
    let model = audio::Model::new();
    let router = routes_on(config, model.clone());
    App::new(router).on_startup("audio model", move || {
        model.load();
        Ok(())
    })
}

/// Every built-in endpoint, the audio ones running on `model`.
fn routes_on(config: &Config, model: audio::Model) -> Router {
    audio::routes(
        fanout::routes(dashboard::routes(basic_routes()), config),
        model,
        config.max_audio_seconds,
        config.pool,
    )
}

/// The endpoints that need no model. Liveness and the metrics need nothing a start-up hook
/// builds, so they are served while the server starts; readiness is not, so it answers 503
/// until the start-up hooks have finished.
fn basic_routes() -> Router {
    Router::new()
        .route(Method::Get, "/", index)
        .route(Method::Get, "/plaintext", |_, _| {
            Response::text(200, "Hello, World!").into()
        })
        .route(Method::Get, "/json", |_, _| {
            Response::json_static(200, r#"{"message":"Hello, World!"}"#).into()
        })
        .route(Method::Get, "/sleep", no_store(sleep))
        .route(Method::Get, "/cpu", no_store(cpu))
        .route(Method::Get, "/cpu/stream", no_store(cpu_stream))
        .route_while_starting(Method::Get, "/healthz", |_, _| {
            Response::json_static(200, r#"{"status":"ok"}"#).into()
        })
        .route(Method::Get, "/readyz", no_store(readyz))
        .route_while_starting(Method::Get, "/metrics", no_store(metrics))
}

/// `GET /metrics`: every metric, in the Prometheus text format 0.0.4.
///
/// An ordinary route, so it is counted, answers `HEAD` and 405 like the others, and a router
/// built without it has no `/metrics`. What it renders comes from [`Context::metrics`], which
/// the reactor lends for the call: rendering runs on the loop's thread (where the counters
/// live, so they need no lock) and reads the pool's and the upstreams' levels at that moment.
/// A scrape renders some kilobytes in microseconds; the body is allocated per scrape, since
/// the response owns it. Outside a running server (`ctx.metrics` is `None`) it is a 404.
fn metrics(_req: &mut Request<'_>, ctx: &Context<'_>) -> Reply {
    let Some(metrics) = ctx.metrics else {
        return Error::NotFound.into();
    };
    let mut body = Vec::new();
    metrics.render(&mut body);
    let mut response = Response::text(200, "");
    response.content_type = crate::metrics::CONTENT_TYPE;
    response.body = Body::Owned(body);
    response.into()
}

/// `GET /readyz`: 200 while serving, 503 once a drain has begun, so that a load balancer stops
/// sending new work here. While the start-up hooks run, the router answers for it: 503
/// `starting` with `Retry-After: 1`, the handler not called.
fn readyz(_req: &mut Request<'_>, ctx: &Context) -> Reply {
    if ctx.draining {
        Response::json_static(503, r#"{"status":"draining"}"#).into()
    } else {
        Response::json_static(200, r#"{"status":"ready"}"#).into()
    }
}

/// `handler`, with `Cache-Control: no-store` on every answer it gives (see the module's
/// "Caching" section).
pub(crate) fn no_store<F>(handler: F) -> impl Fn(&mut Request<'_>, &Context) -> Reply
where
    F: Fn(&mut Request<'_>, &Context) -> Reply,
{
    move |req, ctx| mark_no_store(handler(req, ctx))
}

/// Put `Cache-Control: no-store` on the response `reply` ends in. A job's reply is only known
/// once it has run, so the job is wrapped to mark its reply in turn; a gather's parts' values
/// are intermediate, so what is marked is what its join returns, and the error a failed part
/// answers with. A call's continuation is wrapped like a job. A stream's head keeps its own
/// `Cache-Control`; the response its job ends with is marked, for when it fails before the
/// head is sent and is answered as an ordinary response.
fn mark_no_store(reply: Reply) -> Reply {
    match reply {
        Reply::Now(response) => Reply::Now(with_no_store(response)),
        Reply::After(delay, response) => Reply::After(delay, with_no_store(response)),
        Reply::Offload(work) => Reply::Offload(Box::new(move |job| mark_no_store(work(job)))),
        Reply::Gather(gather) => {
            Reply::Gather(gather.map_failures(with_no_store).then(mark_no_store))
        }
        Reply::Stream(mut stream) => {
            let work = stream.work;
            stream.work = Box::new(move |job| with_no_store(work(job)));
            Reply::Stream(stream)
        }
        Reply::Call(calls) => Reply::Call(calls.then(mark_no_store)),
    }
}

fn with_no_store(mut response: Response) -> Response {
    response
        .headers
        .push(("Cache-Control", NO_STORE.to_string()));
    response
}

/// `GET /`: what is here and how to call it.
fn index(req: &mut Request<'_>, _ctx: &Context) -> Reply {
    let host = req
        .header("host")
        .and_then(|h| std::str::from_utf8(h).ok())
        .unwrap_or("127.0.0.1:8888");
    let mut text = String::from("evloop: an event-loop HTTP/1.1 server\n\n");
    for (what, path) in [
        ("plain text, answered on the reactor", "/plaintext"),
        ("JSON, answered on the reactor", "/json"),
        (
            "wait 100 ms on a reactor timer (asyncio.sleep)",
            "/sleep?ms=100",
        ),
        (
            "burn 50 ms of CPU on a pool worker (run_in_threadpool)",
            "/cpu?ms=50",
        ),
        (
            "burn 50 ms on the reactor itself: blocks everyone (the anti-pattern)",
            "/cpu?ms=50&mode=inline",
        ),
        (
            "burn 1 s on a worker, its progress streamed as Server-Sent Events (StreamingResponse)",
            "/cpu/stream?ms=1000&every=100",
        ),
        (
            "10 calls to the --upstream's /sleep, awaited on the reactor (asyncio.gather); \
             &mode=pool or &mode=inline to block instead",
            "/fanout?n=10&ms=100",
        ),
        ("liveness", "/healthz"),
        ("readiness: 503 while starting or draining", "/readyz"),
        (
            "the loop's vital signs, 4 times a second (open /dashboard in a browser to see them drawn)",
            "/events/loop",
        ),
    ] {
        let stream = if path.contains("/stream") || path.starts_with("/events") {
            "N"
        } else {
            ""
        };
        text.push_str(&format!(
            "# {what}\ncurl -s{stream} 'http://{host}{path}'\n"
        ));
    }
    for (what, path) in [
        (
            "SNR and voice activity of a WAV file, on the pool",
            "/snr-detect?vad_hop_size=256&vad_threshold=0.5",
        ),
        (
            "estimated number of speakers in a WAV file",
            "/speaker-count",
        ),
        (
            "both at once: decode once, a part per worker in parallel (asyncio.gather)",
            "/analyze",
        ),
        (
            "the same, its progress streamed as Server-Sent Events, window by window",
            "/analyze/stream",
        ),
    ] {
        let stream = if path.contains("/stream") { "N" } else { "" };
        text.push_str(&format!(
            "# {what}\ncurl -s{stream} --data-binary @clip.wav 'http://{host}{path}'\n"
        ));
    }
    Response::text_owned(200, text).into()
}

/// Parse the required integer query parameter `name` in `0..=max`.
fn query_ms(req: &Request<'_>, name: &str, max: u64) -> Result<u64, Error> {
    let value = req.query_param(name).ok_or_else(|| {
        Error::BadQuery(format!("query parameter `{name}` is required (0–{max})"))
    })?;
    value
        .parse::<u64>()
        .ok()
        .filter(|ms| *ms <= max)
        .ok_or_else(|| {
            Error::BadQuery(format!(
                "query parameter `{name}` must be an integer from 0 to {max}, got `{value}`"
            ))
        })
}

/// `GET /sleep?ms=N`: answer after N ms. The reactor arms a timer and goes on serving everyone
/// else — `await asyncio.sleep(N / 1000)`.
fn sleep(req: &mut Request<'_>, _ctx: &Context) -> Reply {
    match query_ms(req, "ms", MAX_SLEEP_MS) {
        Ok(ms) => Reply::After(
            Duration::from_millis(ms),
            Response::json_value(200, &json!({ "slept_ms": ms })),
        ),
        Err(err) => err.into(),
    }
}

/// `GET /cpu?ms=N[&mode=inline]`: burn N ms of CPU on a worker (or, with `mode=inline`, on the
/// reactor — the blocking mistake, on purpose).
fn cpu(req: &mut Request<'_>, _ctx: &Context) -> Reply {
    let ms = match query_ms(req, "ms", MAX_CPU_MS) {
        Ok(ms) => ms,
        Err(err) => return err.into(),
    };
    let budget = Duration::from_millis(ms);
    match req.query_param("mode") {
        None | Some("pool") => Reply::offload(move |job| {
            let started = Instant::now();
            burn(budget, || job.is_cancelled());
            burned(ms, job, started)
        }),
        Some("inline") => {
            // Deliberately blocking: nothing else on this reactor runs until this returns.
            let started = Instant::now();
            burn(budget, || false);
            Response::json_value(
                200,
                &json!({
                    "ms": ms,
                    "worker": null,
                    "mode": "inline",
                    "queued_us": 0,
                    "run_us": started.elapsed().as_micros() as u64,
                }),
            )
            .into()
        }
        Some(other) => Error::BadQuery(format!(
            "query parameter `mode` must be `pool` or `inline`, got `{other}`"
        ))
        .into(),
    }
}

/// What `/cpu` (and the last event of `/cpu/stream`) answers for a burn of `ms` that `job`
/// started at `started`.
fn burned(ms: u64, job: &JobContext<'_>, started: Instant) -> Response {
    Response::json_value(
        200,
        &json!({
            "ms": ms,
            "worker": job.worker,
            "queued_us": job.queued.as_micros() as u64,
            "run_us": started.elapsed().as_micros() as u64,
        }),
    )
}

/// Default interval between two progress events of `/cpu/stream` (ms).
pub const DEFAULT_EVERY_MS: u64 = 100;

/// `GET /cpu/stream?ms=N[&every=M]`: burn N ms on a worker as `/cpu` does, sending an
/// `event: progress` (`{"done_ms":…,"total_ms":…}`) after every M ms of it but the last, then an
/// `event: result` with what `/cpu` would answer. The simplest stream: a browser can follow it
/// with `new EventSource("/cpu/stream?ms=3000")` (and should `close()` it on `result`, or the
/// browser reconnects and starts another burn).
fn cpu_stream(req: &mut Request<'_>, _ctx: &Context) -> Reply {
    let ms = match query_ms(req, "ms", MAX_CPU_MS) {
        Ok(ms) => ms,
        Err(err) => return err.into(),
    };
    let every = match req.query_param("every") {
        None => DEFAULT_EVERY_MS,
        Some(_) => match query_ms(req, "every", MAX_CPU_MS) {
            Ok(0) => {
                return Error::BadQuery("query parameter `every` must be at least 1".into()).into()
            }
            Ok(every) => every,
            Err(err) => return err.into(),
        },
    };
    Reply::Stream(Stream::events(move |job| {
        let started = Instant::now();
        let mut done = 0;
        while done < ms && !job.is_cancelled() {
            let step = every.min(ms - done);
            burn(Duration::from_millis(step), || job.is_cancelled());
            done += step;
            if done < ms {
                let progress = json!({ "done_ms": done, "total_ms": ms }).to_string();
                job.emit(sse::event("progress", progress.as_bytes()));
            }
        }
        if job.is_cancelled() {
            // Nobody is listening any more; the reactor drops whatever this says.
            return Error::Unavailable.into_response();
        }
        burned(ms, job, started)
    }))
}

/// Do real arithmetic for `budget` of wall time, checking `cancelled` about every 50 µs so a
/// job whose client left stops promptly. Returns the arithmetic's result so the optimiser cannot
/// remove it.
pub fn burn(budget: Duration, cancelled: impl Fn() -> bool) -> u64 {
    let started = Instant::now();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    loop {
        for _ in 0..20_000 {
            // A 64-bit LCG step plus a xorshift: cheap, serial, impossible to vectorise away.
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            x ^= x >> 29;
        }
        x = std::hint::black_box(x);
        if started.elapsed() >= budget || cancelled() {
            return x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Version;

    fn request(path: &str) -> Request<'_> {
        Request {
            method: Method::Get,
            path,
            query: "",
            version: Version::Http11,
            headers: &[],
            body: Vec::new(),
        }
    }

    fn cache_control(response: &Response) -> Vec<&str> {
        response
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("cache-control"))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// `/readyz` says `no-store` in both of its states, ready and draining; `/healthz` does not.
    #[test]
    fn readiness_is_never_stored() {
        let router = router();
        for (draining, status) in [(false, 200), (true, 503)] {
            let reply = router.dispatch(&mut request("/readyz"), &Context::detached(draining));
            let Reply::Now(response) = reply else {
                panic!("/readyz answers at once")
            };
            assert_eq!(response.status, status);
            assert_eq!(
                cache_control(&response),
                ["no-store"],
                "draining {draining}"
            );
        }
        let Reply::Now(health) =
            router.dispatch(&mut request("/healthz"), &Context::detached(false))
        else {
            panic!("/healthz answers at once")
        };
        assert!(cache_control(&health).is_empty());
    }

    /// While the start-up hooks run, liveness and the metrics are served and readiness is not;
    /// the audio endpoints wait for the model the hook builds.
    #[test]
    fn while_starting_liveness_is_served_and_readiness_is_not() {
        let mut router = app_for(&Config::default()).router;
        router.set_phase(crate::router::Phase::Starting);
        let status = |router: &Router, method, path| {
            let mut req = Request {
                method,
                ..request(path)
            };
            match router.dispatch(&mut req, &Context::detached(false)) {
                Reply::Now(response) => response.status,
                _ => panic!("{path} answers at once"),
            }
        };
        assert_eq!(status(&router, Method::Get, "/healthz"), 200);
        assert_eq!(status(&router, Method::Get, "/readyz"), 503);
        // No reactor lends metrics here: a 404 from the handler, which did run.
        assert_eq!(status(&router, Method::Get, "/metrics"), 404);
        assert_eq!(status(&router, Method::Post, "/analyze"), 503);
        router.set_phase(crate::router::Phase::Started);
        assert_eq!(status(&router, Method::Get, "/readyz"), 200);
        // Started, but the hook never ran: the handler itself says the model is not there.
        assert_eq!(status(&router, Method::Post, "/analyze"), 503);
    }

    /// The mark reaches the response whatever the reply's shape: now, after a timer, or the
    /// joined answer of a gather (pool jobs are checked over a socket in tests/endpoints.rs).
    #[test]
    fn no_store_marks_every_reply_shape() {
        let now = mark_no_store(Response::text(200, "x").into());
        let Reply::Now(response) = now else {
            panic!("still Now")
        };
        assert_eq!(cache_control(&response), ["no-store"]);

        let after = mark_no_store(Reply::After(
            Duration::from_millis(1),
            Response::text(200, "x"),
        ));
        let Reply::After(_, response) = after else {
            panic!("still After")
        };
        assert_eq!(cache_control(&response), ["no-store"]);

        let gather = mark_no_store(Reply::gather(
            Vec::<crate::pool::Work<Result<(), Response>>>::new(),
            |_| Response::text(200, "x"),
        ));
        let Reply::Gather(gather) = gather else {
            panic!("still Gather")
        };
        let (parts, join) = gather.into_parts();
        assert!(parts.is_empty());
        let Reply::Now(joined) = join(Vec::new()) else {
            panic!("the join answers at once")
        };
        assert_eq!(cache_control(&joined), ["no-store"]);
    }

    /// A burn lasts about as long as asked, and stops early when cancelled.
    #[test]
    fn burn_respects_budget_and_cancel() {
        let started = Instant::now();
        burn(Duration::from_millis(20), || false);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(20) && took < Duration::from_millis(500));
        let started = Instant::now();
        burn(Duration::from_secs(10), || true);
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
