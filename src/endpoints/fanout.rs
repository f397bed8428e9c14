//! `GET /fanout?n=K&ms=M[&mode=await|pool|inline]`: make K calls to the upstream's
//! `/sleep?ms=M`, three ways. This is the I/O column of "blocking vs awaited": the same K
//! requests, the same upstream, and only *where the waiting happens* changes.
//!
//! | `mode` | where each call waits | Python | expected `elapsed_ms` |
//! |---|---|---|---|
//! | `await` (default) | on the reactor's own non-blocking sockets: no thread waits | `await asyncio.gather(*(client.get(url) for _ in range(k)))` with an `httpx.AsyncClient` | about M: all K wait at once |
//! | `pool` | a pool worker per call, parked in `read` | `await asyncio.gather(*(run_in_threadpool(requests.get, url) for _ in range(k)))` | about ⌈K / pool⌉ × M: only `--pool` calls at once |
//! | `inline` | the reactor thread itself, one call after another | `for _ in range(k): requests.get(url)` inside an `async def` | K × M, and every other client waits as long |
//!
//! The answer says which mode ran, how long the K calls took from dispatch to join, and how
//! many threads made them:
//!
//! ```text
//! {"mode":"pool","n":8,"ms":100,"elapsed_ms":203.417,"threads":4}
//! ```
//!
//! `threads` is 1 for `await` (the reactor, which never waited) and for `inline` (the reactor,
//! which did nothing else), and for `pool` the number of distinct workers that made calls.
//! If any upstream response is not `200`, the answer is `502` naming the first other status
//! and how many calls got it: `{"error":"upstream answered 404 to 8 of 8 calls","status":502}`.
//! A call that fails outright (refused, reset, timed out, not HTTP) is answered as that
//! failure, with the status [`CallError::status`](crate::outbound::CallError::status) gives it.
//!
//! # Trying it
//!
//! Any evloop is an upstream, since each call is a `/sleep`:
//!
//! ```text
//! evloop --port 9000 &
//! evloop --pool 4 --upstream http://127.0.0.1:9000 &
//! curl 'http://127.0.0.1:8888/fanout?n=100&ms=100'             # ~100 ms
//! curl 'http://127.0.0.1:8888/fanout?n=100&ms=100&mode=pool'   # ~2500 ms
//! curl 'http://127.0.0.1:8888/fanout?n=10&ms=100&mode=inline'  # ~1000 ms, everyone blocked
//! ```
//!
//! Pointing an evloop at *itself* shows the inline mistake at its worst: the reactor that
//! blocks in `read` is the one that should answer the `/sleep`, so it deadlocks: the first
//! call waits until `--upstream-timeout` (or `--request-timeout`, if sooner) and fails (504),
//! and the server answers nobody meanwhile. `await` and `pool` work either way.
//!
//! # What the blocking modes cost
//!
//! - `pool`: each part is a pool job that holds its worker from connect to the last byte, so
//!   at most `--pool` calls are in flight and CPU jobs queue behind them. The K parts must all
//!   fit in `--queue` (503 otherwise), and `--request-timeout` bounds the whole fan-out (504).
//!   A part checks for cancellation before it calls, but a call under way cannot be
//!   interrupted: a worker stays blocked until its response or `--upstream-timeout`.
//! - `inline`: the handler returns only when the K calls are done. Nothing is read, written,
//!   accepted or timed out meanwhile; the reactor's slow-turn warning names `GET /fanout`.
//!   The reactor's own deadlines cannot fire while it is blocked, so the handler holds the K
//!   calls to the request's `--request-timeout` itself (then 504), and stops at the first
//!   failure.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::no_store;
use crate::config::Config;
use crate::error::Error;
use crate::http::{Method, Request, Response};
use crate::outbound::{
    call_blocking, call_blocking_before, CallError, CallLimits, CallRequest, Upstream,
};
use crate::pool::Work;
use crate::router::{Reply, Router};

/// Most calls one `/fanout` makes.
pub const MAX_CALLS: u64 = 1000;
/// Calls made when `n` is not given.
pub const DEFAULT_CALLS: u64 = 10;
/// Longest `/sleep` asked of the upstream (ms): evloop's own limit.
pub const MAX_MS: u64 = super::MAX_SLEEP_MS;
/// The upstream's sleep when `ms` is not given.
pub const DEFAULT_MS: u64 = 100;
/// Largest body accepted from one call (each is held until the K calls are done).
pub const MAX_ANSWER: usize = 64 * 1024;

/// Register `GET /fanout`, calling `config.upstream` within `config.calls`.
pub fn routes(router: Router, config: &Config) -> Router {
    let upstream = config.upstream.clone();
    let limits = config.calls;
    let request_timeout = config.request_timeout;
    // Every answer is a timing of this one request: never to be stored by a cache.
    router.route(
        Method::Get,
        "/fanout",
        no_store(move |req, _| fanout(req, upstream.as_ref(), &limits, request_timeout)),
    )
}

/// Where the calls wait: the three rows of the module's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The reactor's sockets: `asyncio.gather` of `httpx.AsyncClient.get`.
    Await,
    /// A blocking call per pool job: `run_in_threadpool(requests.get)`.
    Pool,
    /// Blocking calls on the reactor: `requests.get` inside `async def`.
    Inline,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Await => "await",
            Mode::Pool => "pool",
            Mode::Inline => "inline",
        }
    }
}

/// What a request asked for.
#[derive(Debug, Clone, Copy)]
struct Fanout {
    /// Where the calls wait.
    mode: Mode,
    /// How many calls.
    n: u64,
    /// How long the upstream sleeps before answering each.
    ms: u64,
}

/// What one blocking call in a pool job reports to the join.
struct Called {
    /// The worker that made the call.
    worker: usize,
    /// The upstream's status.
    status: u16,
}

/// `GET /fanout`: check the query, then start the K calls in the mode asked for.
fn fanout(
    req: &Request<'_>,
    upstream: Option<&Arc<Upstream>>,
    limits: &CallLimits,
    request_timeout: Duration,
) -> Reply {
    let asked = match parse(req) {
        Ok(asked) => asked,
        Err(err) => return err.into(),
    };
    let Some(upstream) = upstream else {
        return Error::NoUpstream.into();
    };
    let started = Instant::now();
    let requests: Vec<CallRequest> = (0..asked.n)
        .map(|_| CallRequest {
            // A `/sleep` answers a few bytes of JSON: anything much larger is not it.
            max_body: Some(MAX_ANSWER),
            ..CallRequest::get(upstream, format!("/sleep?ms={}", asked.ms))
        })
        .collect();
    match asked.mode {
        Mode::Await => {
            // The reactor sends all K requests and goes back to serving everyone; the join
            // runs on the loop once the K responses are in. No thread waits meanwhile.
            Reply::call_all(requests, move |responses| {
                answer(asked, started, 1, responses.iter().map(|r| r.status))
            })
        }
        Mode::Pool => {
            // Each call takes a worker for as long as the upstream takes to answer.
            let limits = *limits;
            let parts = requests
                .into_iter()
                .map(|request| -> Work<Result<Called, Response>> {
                    Box::new(move |job| {
                        // Skip the call if the client left or a sibling failed while this
                        // part waited in the queue; once it has begun, it cannot be stopped.
                        if job.is_cancelled() {
                            return Err(part_failed(Error::Unavailable));
                        }
                        call_blocking(&request, &limits)
                            .map(|response| Called {
                                worker: job.worker,
                                status: response.status,
                            })
                            .map_err(|err| part_failed(Error::from(err)))
                    })
                })
                .collect();
            Reply::gather(parts, move |called: Vec<Called>| {
                let threads = called
                    .iter()
                    .map(|c| c.worker)
                    .collect::<HashSet<_>>()
                    .len();
                answer(asked, started, threads, called.iter().map(|c| c.status))
            })
        }
        Mode::Inline => {
            // Deliberately blocking, to show the mistake: this loop runs on the reactor
            // thread, so until the K calls are done no other connection is served.
            // The reactor cannot time this request out while it is blocked here, so the calls
            // share the request's deadline themselves.
            let deadline = crate::timer::later(started, request_timeout);
            let mut statuses = Vec::with_capacity(requests.len());
            for request in &requests {
                match call_blocking_before(request, limits, Some(deadline)) {
                    Ok(response) => statuses.push(response.status),
                    // Cut short by the request's deadline rather than the upstream's limits.
                    Err(CallError::ConnectTimeout | CallError::ResponseTimeout)
                        if Instant::now() >= deadline =>
                    {
                        return Error::GatewayTimeout.into()
                    }
                    Err(err) => return Error::from(err).into(),
                }
            }
            answer(asked, started, 1, statuses).into()
        }
    }
}

/// The response a failed part answers the whole request with (`no_store` marks it).
fn part_failed(err: Error) -> Response {
    err.into_response()
}

/// Read `n`, `ms` and `mode`, each optional.
fn parse(req: &Request<'_>) -> Result<Fanout, Error> {
    let n = optional(req, "n", DEFAULT_CALLS, 1, MAX_CALLS)?;
    let ms = optional(req, "ms", DEFAULT_MS, 0, MAX_MS)?;
    let mode = match req.query_param("mode") {
        None | Some("await") => Mode::Await,
        Some("pool") => Mode::Pool,
        Some("inline") => Mode::Inline,
        Some(other) => {
            return Err(Error::BadQuery(format!(
                "query parameter `mode` must be `await`, `pool` or `inline`, got `{other}`"
            )))
        }
    };
    Ok(Fanout { mode, n, ms })
}

/// The integer query parameter `name`, `default` when absent, else in `min..=max`.
fn optional(req: &Request<'_>, name: &str, default: u64, min: u64, max: u64) -> Result<u64, Error> {
    let Some(value) = req.query_param(name) else {
        return Ok(default);
    };
    value
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            Error::BadQuery(format!(
                "query parameter `{name}` must be an integer from {min} to {max}, got `{value}`"
            ))
        })
}

/// The answer once every call has its response: 200 with the timing if every status is 200,
/// else 502 naming the first other status and how many calls got it.
fn answer(
    fanout: Fanout,
    started: Instant,
    threads: usize,
    statuses: impl IntoIterator<Item = u16>,
) -> Response {
    let statuses: Vec<u16> = statuses.into_iter().collect();
    if let Some(&other) = statuses.iter().find(|&&status| status != 200) {
        let count = statuses.iter().filter(|&&status| status == other).count();
        let message = format!("upstream answered {other} to {count} of {} calls", fanout.n);
        return Response::json_value(502, &json!({ "error": message, "status": 502 }));
    }
    Response::json_value(
        200,
        &json!({
            "mode": fanout.mode.as_str(),
            "n": fanout.n,
            "ms": fanout.ms,
            "elapsed_ms": started.elapsed().as_micros() as f64 / 1000.0,
            "threads": threads,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::client::UpstreamResponse;
    use crate::http::Version;

    use crate::router::Context;

    fn dispatch(router: &Router, query: &str) -> Reply {
        let mut request = Request {
            method: Method::Get,
            path: "/fanout",
            query,
            version: Version::Http11,
            headers: &[],
            body: Vec::new(),
        };
        router.dispatch(&mut request, &Context::detached(false))
    }

    /// `/fanout` on a server whose upstream is `127.0.0.1:9`; nothing is called by these tests.
    fn router() -> Router {
        let config = Config {
            upstream: Some(Arc::new(Upstream::parse("http://127.0.0.1:9").unwrap())),
            ..Config::default()
        };
        routes(Router::new(), &config)
    }

    fn now(reply: Reply) -> Response {
        match reply {
            Reply::Now(response) => response,
            _ => panic!("expected an answer at once"),
        }
    }

    fn body(response: &Response) -> serde_json::Value {
        serde_json::from_slice(response.body.as_bytes()).unwrap()
    }

    fn upstream_response(status: u16) -> UpstreamResponse {
        UpstreamResponse {
            status,
            version: Version::Http11,
            headers: Vec::new(),
            body: b"{}".to_vec(),
            keep_alive: true,
        }
    }

    /// Out-of-range or malformed parameters are 400, whether or not there is an upstream, and
    /// every answer says `no-store`.
    #[test]
    fn bad_parameters_are_400() {
        let without = routes(Router::new(), &Config::default());
        for query in [
            "n=0",
            "n=1001",
            "n=ten",
            "ms=60001",
            "ms=-1",
            "mode=async",
            "mode=",
        ] {
            for router in [&router(), &without] {
                let response = now(dispatch(router, query));
                assert_eq!(response.status, 400, "{query}");
                assert!(response
                    .headers
                    .contains(&("Cache-Control", "no-store".to_string())));
            }
        }
    }

    /// Without `--upstream` the answer is 503, saying how to start the server.
    #[test]
    fn without_upstream_is_503() {
        let router = routes(Router::new(), &Config::default());
        let response = now(dispatch(&router, "n=2"));
        assert_eq!(response.status, 503);
        assert_eq!(
            body(&response)["error"],
            "no upstream: start evloop with --upstream URL"
        );
    }

    /// `mode=await` (the default) hands the reactor K requests for `/sleep?ms=M`, and joins
    /// their responses into the timing, with one thread: the reactor.
    #[test]
    fn await_mode_asks_the_reactor_for_every_call() {
        let Reply::Call(calls) = dispatch(&router(), "n=3&ms=25") else {
            panic!("mode=await is a Reply::Call")
        };
        let (requests, then) = calls.into_parts();
        assert_eq!(requests.len(), 3);
        let mut bytes = Vec::new();
        requests[0].encode(&mut bytes).unwrap();
        assert_eq!(
            bytes,
            b"GET /sleep?ms=25 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n"
        );
        let response = now(then(Ok(vec![upstream_response(200); 3])));
        assert_eq!(response.status, 200);
        let json = body(&response);
        assert_eq!(json["mode"], "await");
        assert_eq!(json["n"], 3);
        assert_eq!(json["ms"], 25);
        assert_eq!(json["threads"], 1);
        assert!(json["elapsed_ms"].is_f64(), "{json}");
        assert!(response
            .headers
            .contains(&("Cache-Control", "no-store".to_string())));
    }

    /// Defaults: 10 calls of 100 ms each.
    #[test]
    fn defaults_are_ten_calls_of_100_ms() {
        let Reply::Call(calls) = dispatch(&router(), "") else {
            panic!("mode=await is a Reply::Call")
        };
        let (requests, _) = calls.into_parts();
        assert_eq!(requests.len(), 10);
        assert_eq!(requests[9].path, "/sleep?ms=100");
    }

    /// An upstream status other than 200 is a 502 naming it; a failed call is its own error.
    #[test]
    fn other_statuses_and_failures_are_answered() {
        let Reply::Call(calls) = dispatch(&router(), "n=4&ms=0") else {
            panic!("mode=await is a Reply::Call")
        };
        let (_, then) = calls.into_parts();
        let statuses = [200, 500, 503, 500].map(upstream_response).to_vec();
        let response = now(then(Ok(statuses)));
        assert_eq!(response.status, 502);
        assert_eq!(
            body(&response),
            json!({"error": "upstream answered 500 to 2 of 4 calls", "status": 502})
        );

        let Reply::Call(calls) = dispatch(&router(), "n=4&ms=0") else {
            panic!("mode=await is a Reply::Call")
        };
        let (_, then) = calls.into_parts();
        let response = now(then(Err(CallError::ResponseTimeout)));
        assert_eq!(response.status, 504);
    }

    /// `mode=pool` is a gather of one part per call.
    #[test]
    fn pool_mode_is_a_gather_of_k_parts() {
        let Reply::Gather(gather) = dispatch(&router(), "n=7&mode=pool") else {
            panic!("mode=pool is a Reply::Gather")
        };
        let (parts, _) = gather.into_parts();
        assert_eq!(parts.len(), 7);
    }
}
