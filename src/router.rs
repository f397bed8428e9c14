//! The router: which handler answers which method and path, and *where* it runs.
//!
//! A handler is a plain function of the request. What it returns, a [`Reply`], says where the
//! answer comes from — this is the choice the notes make between a coroutine, `asyncio.sleep`,
//! and `await run_in_threadpool(...)`:
//!
//! | reply | runs | asyncio equivalent |
//! |---|---|---|
//! | [`Reply::Now`] | on the reactor, right away | a cheap `async def` that never awaits |
//! | [`Reply::After`] | reactor timer, nothing blocks | `await asyncio.sleep(n)` |
//! | [`Reply::Offload`] | a pool worker | `await run_in_threadpool(f)` |
//! | [`Reply::Gather`] | several pool workers at once, joined on the reactor | `await asyncio.gather(run_in_threadpool(f), run_in_threadpool(g))` |
//! | [`Reply::Stream`] | a pool worker, its progress sent as it goes | `StreamingResponse(agen())`, where the async generator `agen` yields pieces as a thread computes them |
//! | [`Reply::Call`] | the reactor's own sockets to an upstream, nothing blocks | `await client.get(url)`, or `await asyncio.gather(*(client.get(u) for u in urls))` with an `httpx.AsyncClient` |
//!
//! An offloaded job returns a [`Reply`] too, and so does a gather's join, so work can continue
//! where it left off: a job that decodes an upload can return a `Gather` of parts of the
//! analysis of the decoded data, whose join can return one more job to finish — the Python
//!
//! ```text
//! clip = await run_in_threadpool(decode, body)
//! parts = await asyncio.gather(*(run_in_threadpool(analyze_part, clip, i, n) for i in range(n)))
//! return await run_in_threadpool(finish, parts)
//! ```
//!
//! which is how `POST /analyze` runs (`src/endpoints/audio.rs`). A job may also return a
//! [`Reply::Stream`]: `POST /analyze/stream` decodes in one job, so that a bad upload is an
//! ordinary error response, and only then returns the stream that analyses the clip.
//!
//! A stream's job sends progress with [`JobContext::emit`]; each message becomes a piece of the
//! response body as soon as the client can take it, and what the job returns ends the body.
//! Messages are snapshots (the newest replaces an older one the client has not taken yet), so
//! a client that reads slowly never makes the server hold more, nor the worker wait.
//!
//! A call upstream is I/O, not computation, so it needs no thread at all: the reactor connects,
//! writes the request and reads the response on non-blocking sockets of its own, between
//! everything else it does, and runs the continuation on the loop when the response is whole.
//! Thousands of calls can wait at once on one thread. The continuation may return more work
//! (`Reply::offload` to parse a large body on the pool, another call).
//!
//! # While the server starts
//!
//! A server with start-up hooks (`crate::lifespan`) answers before they have finished, so
//! that a probe can tell it is alive, but its handlers may need what the hooks build (a model,
//! a connection pool). The router keeps them apart: until the reactor says the hooks are done
//! ([`Phase::Started`]), a route registered with [`Router::route`] is answered 503 with
//! `Retry-After: 1` and the JSON error `starting` ([`Error::Starting`]) without its handler
//! running; only the routes registered with [`Router::route_while_starting`] are served
//! (`/healthz`, `/metrics`). 404 and 405 are answered as always.
//!
//! A handler that does heavy work *itself* and returns [`Reply::Now`] blocks every connection
//! for as long as it runs — the classic mistake the notes warn about, kept on purpose as
//! `mode=inline`. Handlers never see mio, sockets or the pool: only the request and a
//! [`Context`].
//!
//! ```
//! use evloop::http::Response;
//! use evloop::router::{Reply, Router};
//! use evloop::http::Method;
//!
//! let router = Router::new()
//!     .route(Method::Get, "/hello", |_req, _ctx| Reply::Now(Response::text(200, "hi")))
//!     .route(Method::Get, "/heavy", |_req, _ctx| {
//!         Reply::offload(|job| Response::text_owned(200, format!("worker {}", job.worker)))
//!     });
//! # let _ = router;
//! ```

use std::any::Any;
use std::time::Duration;

use crate::error::Error;
use crate::http::client::UpstreamResponse;
use crate::http::{sse, Method, Request, Response};
use crate::metrics::Scrape;
use crate::outbound::{CallError, CallRequest};
use crate::pool::{JobContext, Work};

/// Whether the server's start-up hooks have finished, as far as routing is concerned. The
/// reactor sets it ([`Router::set_phase`]) at each change of its lifecycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Phase {
    /// The start-up hooks are still running (or failed): only the routes registered with
    /// [`Router::route_while_starting`] are served.
    Starting,
    /// Every start-up hook has finished (or there were none): every route is served.
    #[default]
    Started,
}

/// What the reactor tells a handler about the server, for the length of one call.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// True once a graceful shutdown has begun (`/readyz` answers 503).
    pub draining: bool,
    /// The server's metrics, ready to render (`GET /metrics`). The reactor lends them for the
    /// call, so a handler on the loop's thread renders what the loop counted, with no lock and
    /// no copy kept anywhere; `None` where no reactor runs (unit tests). A job on the pool
    /// cannot take them along: they are borrowed.
    pub metrics: Option<&'a dyn Scrape>,
}

impl Context<'_> {
    /// A context with no metrics: what a handler sees outside a running server.
    pub fn detached(draining: bool) -> Context<'static> {
        Context {
            draining,
            metrics: None,
        }
    }
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("draining", &self.draining)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

/// Where a handler's answer comes from.
pub enum Reply {
    /// The response is ready now.
    Now(Response),
    /// Send this response after a delay, without blocking anything: a reactor timer.
    After(Duration, Response),
    /// Run this closure on a pool worker; what it returns is the reply (usually
    /// [`Reply::Now`], but it may continue with more work).
    Offload(Work<Reply>),
    /// Run every part on the pool at once, then join their results on the reactor. Built with
    /// [`Reply::gather`].
    Gather(Gather),
    /// A response whose body a pool job produces piece by piece.
    Stream(Stream),
    /// Send requests to upstreams on the reactor's sockets, all at once; continue with the
    /// responses. Built with [`Reply::call`] or [`Reply::call_all`].
    Call(Calls),
}

/// The requests of a [`Reply::Call`] and what to do with their responses.
pub struct Calls {
    requests: Vec<CallRequest>,
    then: Then,
}

/// What runs on the reactor once every call of a [`Reply::Call`] has its response (in the
/// order of the requests), or once one of them has failed (the others are then cancelled).
pub type Then = Box<dyn FnOnce(Result<Vec<UpstreamResponse>, CallError>) -> Reply + Send>;

impl Calls {
    /// Split into the requests and the continuation.
    pub fn into_parts(self) -> (Vec<CallRequest>, Then) {
        (self.requests, self.then)
    }

    /// The same calls, with `then` applied to whatever the continuation returns.
    pub fn then<F>(self, then: F) -> Calls
    where
        F: FnOnce(Reply) -> Reply + Send + 'static,
    {
        let first = self.then;
        Calls {
            requests: self.requests,
            then: Box::new(move |responses| then(first(responses))),
        }
    }
}

/// What a part of a gather sends back: its value (of the type the join expects), or the
/// response that answers the whole request instead.
pub type PartResult = Result<Box<dyn Any + Send>, Response>;

/// The parts of a [`Reply::Gather`] and their join, with the parts' type erased (the pipeline
/// holds gathers of every type in one queue).
pub struct Gather {
    parts: Vec<Work<PartResult>>,
    join: Join,
}

impl Gather {
    /// Split into the parts, each to run on the pool, and the join, to run on the reactor with
    /// the parts' values in the order the parts were given.
    pub fn into_parts(self) -> (Vec<Work<PartResult>>, Join) {
        (self.parts, self.join)
    }

    /// The same gather, with `failed` applied to the response a part answers the request with
    /// instead of a value.
    pub fn map_failures<F>(self, failed: F) -> Gather
    where
        F: Fn(Response) -> Response + Send + Sync + 'static,
    {
        let failed = std::sync::Arc::new(failed);
        let parts = self
            .parts
            .into_iter()
            .map(|part| -> Work<PartResult> {
                let failed = std::sync::Arc::clone(&failed);
                Box::new(move |job| part(job).map_err(|response| failed(response)))
            })
            .collect();
        Gather {
            parts,
            join: self.join,
        }
    }

    /// The same gather, with `then` applied to whatever its join returns.
    pub fn then<F>(self, then: F) -> Gather
    where
        F: FnOnce(Reply) -> Reply + Send + 'static,
    {
        let join = self.join;
        Gather {
            parts: self.parts,
            join: Box::new(move |values| then(join(values))),
        }
    }
}

/// A gather's join, with the parts' type erased.
pub type Join = Box<dyn FnOnce(Vec<Box<dyn Any + Send>>) -> Reply + Send>;

/// A response streamed from a pool job: the head now, then a piece of the body for each
/// message the job emits ([`JobContext::emit`]), then a last piece made from what the job
/// returns. Sent with `Transfer-Encoding: chunked` to HTTP/1.1 clients; to HTTP/1.0 clients the
/// body ends when the connection closes.
pub struct Stream {
    /// Status, `Content-Type` and extra header fields; its body is not used.
    pub head: Response,
    /// The job. Each message it emits that reaches the client is one piece of the body (a
    /// message the client has not taken yet is replaced by the next: see
    /// [`JobContext::emit`]); what it returns is turned into the last piece by `end`.
    pub work: Work<Response>,
    /// The last piece of the body, from the response that ended the stream: the job's own
    /// (`status < 400` for success), or the error the server answers for it once the head is
    /// out (the job panicked or was skipped, `--request-timeout` passed). An error that comes
    /// before the head was sent (those, or a full queue) is answered as an ordinary error
    /// response instead, with its own status. It runs on the reactor: keep it cheap. If it
    /// panics, the stream ends without a last piece.
    pub end: fn(&Response) -> Vec<u8>,
}

impl Stream {
    /// A `text/event-stream` (Server-Sent Events) reply: `200`, `Cache-Control: no-cache`. The
    /// job emits events it frames with [`crate::http::sse::event`]; its response becomes the
    /// last event, `event: result` with the body as data, or `event: error` if it failed.
    pub fn events<F>(work: F) -> Stream
    where
        F: FnOnce(&JobContext<'_>) -> Response + Send + 'static,
    {
        let mut head = Response::text(200, "");
        head.content_type = "text/event-stream";
        head.headers.push(("Cache-Control", "no-cache".to_string()));
        Stream {
            head,
            work: Box::new(work),
            end: end_event,
        }
    }
}

/// The last event of an event stream: `result`, or `error` for a failure.
fn end_event(response: &Response) -> Vec<u8> {
    let name = if response.status < 400 {
        "result"
    } else {
        "error"
    };
    sse::event(name, response.body.as_bytes())
}

impl Reply {
    /// Offload `work` to the pool. It may return a [`Response`] or another [`Reply`].
    pub fn offload<F, R>(work: F) -> Reply
    where
        F: FnOnce(&JobContext<'_>) -> R + Send + 'static,
        R: Into<Reply>,
    {
        Reply::Offload(Box::new(move |job| work(job).into()))
    }

    /// Run `parts` in parallel on the pool; once each has returned `Ok(value)`, `join` their
    /// values (in the order of `parts`) on the reactor. The join should be cheap, since it
    /// runs on the loop, and may continue with more work. If a part returns `Err(response)`
    /// or panics, that is the answer: the other parts are cancelled and the join never runs.
    pub fn gather<T, J, R>(parts: Vec<Work<Result<T, Response>>>, join: J) -> Reply
    where
        T: Send + 'static,
        J: FnOnce(Vec<T>) -> R + Send + 'static,
        R: Into<Reply>,
    {
        let parts = parts
            .into_iter()
            .map(|part| -> Work<PartResult> {
                Box::new(move |job| part(job).map(|value| Box::new(value) as Box<dyn Any + Send>))
            })
            .collect();
        let join = Box::new(move |values: Vec<Box<dyn Any + Send>>| -> Reply {
            // Each value was boxed from a `T` just above: the downcast cannot fail.
            let values = values
                .into_iter()
                .filter_map(|value| value.downcast::<T>().ok().map(|value| *value))
                .collect();
            join(values).into()
        });
        Reply::Gather(Gather { parts, join })
    }
}

impl Reply {
    /// Send `request` upstream from the reactor and continue with `then` on the loop, given the
    /// response or the reason there is none (`CallError::into` gives the usual 502/503/504
    /// answer). No thread waits meanwhile. An upstream's 4xx or 5xx is a response, not an
    /// error: `then` decides what it means.
    pub fn call<F, R>(request: CallRequest, then: F) -> Reply
    where
        F: FnOnce(Result<UpstreamResponse, CallError>) -> R + Send + 'static,
        R: Into<Reply>,
    {
        Reply::Call(Calls {
            requests: vec![request],
            then: Box::new(move |result| {
                then(result.and_then(|mut responses| responses.pop().ok_or(CallError::Reset)))
                    .into()
            }),
        })
    }

    /// Send every request at once and `join` the responses (in the order of `requests`) on the
    /// reactor: `asyncio.gather`. If a call fails, its error is the answer (502, 503 or 504
    /// with a JSON body naming the cause), the other calls are cancelled and `join` never
    /// runs.
    pub fn call_all<F, R>(requests: Vec<CallRequest>, join: F) -> Reply
    where
        F: FnOnce(Vec<UpstreamResponse>) -> R + Send + 'static,
        R: Into<Reply>,
    {
        Reply::Call(Calls {
            requests,
            then: Box::new(move |result| match result {
                Ok(responses) => join(responses).into(),
                Err(err) => Error::from(err).into(),
            }),
        })
    }
}

impl From<Response> for Reply {
    fn from(response: Response) -> Reply {
        Reply::Now(response)
    }
}

impl From<Error> for Reply {
    fn from(error: Error) -> Reply {
        Reply::Now(error.into_response())
    }
}

/// A request handler.
pub type Handler = Box<dyn Fn(&mut Request<'_>, &Context) -> Reply + Send + Sync>;

/// A check that can refuse a request from its head alone (its body is empty when the check
/// runs): a bad query parameter, a missing header.
pub type Check = Box<dyn Fn(&Request<'_>) -> Result<(), Error> + Send + Sync>;

/// One registered route.
struct Route {
    method: Method,
    path: String,
    handler: Handler,
    /// Run before the body is read, for a client that waits for `100 Continue`.
    check: Option<Check>,
    /// Whether the route is served before the start-up hooks have finished.
    serves: Serves,
}

/// When a route's handler may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serves {
    /// Once the start-up hooks have finished ([`Router::route`]): the handler may need what
    /// they build.
    OnceStarted,
    /// From the first request on ([`Router::route_while_starting`]): the handler needs nothing
    /// the hooks build.
    WhileStarting,
}

/// Exact-path routing with 404 and 405 built in.
///
/// Routes are few, so a linear scan of exact paths is both the fastest and the clearest
/// structure; a server with hundreds of routes would use a radix tree (as `matchit` does).
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
    /// Each path once, in the order first registered: the `route` label of the metrics, whose
    /// index [`Router::route_index`] gives.
    paths: Vec<String>,
    /// Whether the start-up hooks have finished: set by the reactor, `Started` until it runs.
    phase: Phase,
}

impl Router {
    /// A router with no routes: everything is 404.
    pub fn new() -> Router {
        Router::default()
    }

    /// Register `handler` for `method` and `path`. A `GET` route also answers `HEAD` (the
    /// connection drops the body). Until the server's start-up hooks have finished, the route
    /// is answered 503 `starting` instead (see "While the server starts").
    pub fn route<F>(self, method: Method, path: &str, handler: F) -> Router
    where
        F: Fn(&mut Request<'_>, &Context) -> Reply + Send + Sync + 'static,
    {
        self.add(method, path, Box::new(handler), Serves::OnceStarted)
    }

    /// Register a route that is served while the start-up hooks run too: for a handler that
    /// needs nothing they build, such as a liveness probe or the metrics.
    pub fn route_while_starting<F>(self, method: Method, path: &str, handler: F) -> Router
    where
        F: Fn(&mut Request<'_>, &Context) -> Reply + Send + Sync + 'static,
    {
        self.add(method, path, Box::new(handler), Serves::WhileStarting)
    }

    fn add(mut self, method: Method, path: &str, handler: Handler, serves: Serves) -> Router {
        self.routes.push(Route {
            method,
            path: path.to_string(),
            handler,
            check: None,
            serves,
        });
        if !self.paths.iter().any(|known| known == path) {
            self.paths.push(path.to_string());
        }
        self
    }

    /// Tell the router whether the start-up hooks have finished. The reactor calls this at
    /// each change of its lifecycle; a unit test of a router can call it to see what a client
    /// gets while the server starts.
    pub fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
    }

    /// Whether the start-up hooks have finished, as the reactor last said.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// `Some(Error::Starting)` if `route` may not run yet.
    fn refuse_while_starting(&self, route: &Route) -> Option<Error> {
        (self.phase == Phase::Starting && route.serves == Serves::OnceStarted)
            .then_some(Error::Starting)
    }

    /// Every path with a route, each once, in the order first registered.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.paths.iter().map(String::as_str)
    }

    /// The path of the route at `index` in [`Router::paths`], or `unmatched` for `None`: a
    /// request named by its route, never by the raw text a client sent.
    pub fn route_name(&self, index: Option<usize>) -> &str {
        index
            .and_then(|index| self.paths.get(index))
            .map_or(crate::metrics::UNMATCHED_ROUTE, String::as_str)
    }

    /// The index in [`Router::paths`] of the route that takes `method path`, for the metrics;
    /// `None` when none does (404, 405). A scan of a few short strings, as `dispatch` makes.
    pub fn route_index(&self, method: Method, path: &str) -> Option<usize> {
        let takes = |route: &Route| {
            route.path == path
                && (route.method == method
                    || (route.method == Method::Get && method == Method::Head))
        };
        if !self.routes.iter().any(takes) {
            return None;
        }
        self.paths.iter().position(|known| known == path)
    }

    /// Give the route `method path` (registered before) a check of the request's head. A
    /// client that sends `Expect: 100-continue` waits for the server's go-ahead before sending
    /// its body; if the check refuses the head, the refusal is sent instead of the go-ahead and
    /// the body is never read (RFC 9110 §10.1.1). The handler still sees every request whole.
    pub fn check<F>(mut self, method: Method, path: &str, check: F) -> Router
    where
        F: Fn(&Request<'_>) -> Result<(), Error> + Send + Sync + 'static,
    {
        if let Some(route) = self
            .routes
            .iter_mut()
            .rev()
            .find(|route| route.method == method && route.path == path)
        {
            route.check = Some(Box::new(check));
        }
        self
    }

    /// What can already be said about a request from its head, before its body is read: 404,
    /// 405, 503 while the server starts, or the route's own check. `None`: the route will take
    /// it.
    pub fn refuse_early(&self, request: &Request<'_>) -> Option<Error> {
        let mut path_known = false;
        let mut get_route = None;
        let check = |route: &Route| {
            self.refuse_while_starting(route)
                .or_else(|| route.check.as_ref().and_then(|check| check(request).err()))
        };
        for route in self.routes.iter().filter(|r| r.path == request.path) {
            path_known = true;
            if route.method == request.method {
                return check(route);
            }
            if route.method == Method::Get && request.method == Method::Head {
                get_route = Some(route);
            }
        }
        if let Some(route) = get_route {
            return check(route);
        }
        if !path_known {
            return Some(Error::NotFound);
        }
        Some(Error::MethodNotAllowed {
            allow: self.allow(request.path),
        })
    }

    /// Find the handler for `request` and call it. Unknown path: 404. Known path, other method:
    /// 405 with `Allow` listing the methods that path has. A route that needs the start-up
    /// hooks, before they have finished: 503 `starting`, and the handler is not called.
    pub fn dispatch(&self, request: &mut Request<'_>, ctx: &Context) -> Reply {
        let mut path_known = false;
        let mut get_route = None;
        let call =
            |route: &Route, request: &mut Request<'_>| match self.refuse_while_starting(route) {
                Some(refusal) => refusal.into(),
                None => (route.handler)(request, ctx),
            };
        for route in &self.routes {
            if route.path != request.path {
                continue;
            }
            path_known = true;
            if route.method == request.method {
                return call(route, request);
            }
            if route.method == Method::Get && request.method == Method::Head {
                get_route = Some(route);
            }
        }
        if let Some(route) = get_route {
            return call(route, request);
        }
        if !path_known {
            return Error::NotFound.into();
        }
        Error::MethodNotAllowed {
            allow: self.allow(request.path),
        }
        .into()
    }

    /// The `Allow` value for `path`: its methods, plus `HEAD` wherever `GET` is.
    fn allow(&self, path: &str) -> String {
        let mut methods: Vec<&str> = Vec::new();
        for route in self.routes.iter().filter(|r| r.path == path) {
            methods.push(route.method.as_str());
            if route.method == Method::Get {
                methods.push(Method::Head.as_str());
            }
        }
        methods.dedup();
        methods.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Version;

    fn request(method: Method, path: &str) -> Request<'_> {
        Request {
            method,
            path,
            query: "",
            version: Version::Http11,
            headers: &[],
            body: Vec::new(),
        }
    }

    fn status(reply: Reply) -> (u16, Vec<(&'static str, String)>) {
        match reply {
            Reply::Now(r) => (r.status, r.headers),
            _ => panic!("expected an immediate reply"),
        }
    }

    /// 404 for unknown paths, 405 with Allow for known paths, HEAD served by GET.
    #[test]
    fn routes_by_path_then_method() {
        let router = Router::new()
            .route(Method::Get, "/a", |_, _| Response::text(200, "a").into())
            .route(Method::Post, "/a", |_, _| Response::text(201, "a").into());
        let ctx = Context::detached(false);
        assert_eq!(
            status(router.dispatch(&mut request(Method::Get, "/a"), &ctx)).0,
            200
        );
        assert_eq!(
            status(router.dispatch(&mut request(Method::Head, "/a"), &ctx)).0,
            200
        );
        assert_eq!(
            status(router.dispatch(&mut request(Method::Post, "/a"), &ctx)).0,
            201
        );
        assert_eq!(
            status(router.dispatch(&mut request(Method::Get, "/b"), &ctx)).0,
            404
        );
        let (code, headers) = status(router.dispatch(&mut request(Method::Delete, "/a"), &ctx));
        assert_eq!(code, 405);
        assert_eq!(headers, vec![("Allow", "GET, HEAD, POST".to_string())]);
    }

    /// The metrics name a route by its path's index: each path once, in the order first
    /// registered, HEAD under its GET, and no index for a 404 or a 405.
    #[test]
    fn a_route_index_is_its_paths_place() {
        let router = Router::new()
            .route(Method::Get, "/a", |_, _| Response::text(200, "a").into())
            .route(Method::Get, "/b", |_, _| Response::text(200, "b").into())
            .route(Method::Post, "/a", |_, _| Response::text(201, "a").into());
        assert_eq!(router.paths().collect::<Vec<_>>(), ["/a", "/b"]);
        assert_eq!(router.route_index(Method::Post, "/a"), Some(0));
        assert_eq!(router.route_index(Method::Head, "/b"), Some(1));
        assert_eq!(router.route_index(Method::Delete, "/a"), None);
        assert_eq!(router.route_index(Method::Get, "/c"), None);
    }

    /// While the start-up hooks run, only the routes registered to serve meanwhile run their
    /// handler; the others are 503 `starting` with `Retry-After`, from the head already, and
    /// 404 and 405 are unchanged. Once started, everything is served.
    #[test]
    fn routes_wait_for_the_start_up_unless_told_otherwise() {
        let mut router = Router::new()
            .route(Method::Get, "/app", |_, _| {
                Response::text(200, "app").into()
            })
            .route_while_starting(Method::Get, "/alive", |_, _| {
                Response::text(200, "alive").into()
            });
        let ctx = Context::detached(false);
        assert_eq!(
            router.phase(),
            Phase::Started,
            "a router starts out serving"
        );
        router.set_phase(Phase::Starting);

        let (code, headers) = status(router.dispatch(&mut request(Method::Get, "/app"), &ctx));
        assert_eq!(code, 503);
        assert!(headers.contains(&("Retry-After", "1".to_string())));
        assert_eq!(
            router.refuse_early(&request(Method::Head, "/app")),
            Some(Error::Starting)
        );
        assert_eq!(
            status(router.dispatch(&mut request(Method::Head, "/alive"), &ctx)).0,
            200
        );
        assert_eq!(router.refuse_early(&request(Method::Get, "/alive")), None);
        assert_eq!(
            status(router.dispatch(&mut request(Method::Get, "/none"), &ctx)).0,
            404
        );
        assert_eq!(
            status(router.dispatch(&mut request(Method::Post, "/app"), &ctx)).0,
            405
        );

        router.set_phase(Phase::Started);
        assert_eq!(
            status(router.dispatch(&mut request(Method::Get, "/app"), &ctx)).0,
            200
        );
    }

    /// From the head alone: 404, 405, a route's check, or nothing to say.
    #[test]
    fn refuses_early_what_the_head_already_decides() {
        let router = Router::new()
            .route(Method::Post, "/upload", |_, _| {
                Response::text(200, "ok").into()
            })
            .check(Method::Post, "/upload", |req| match req.query {
                "bad" => Err(Error::BadQuery("bad".into())),
                _ => Ok(()),
            })
            .route(Method::Post, "/plain", |_, _| {
                Response::text(200, "ok").into()
            });
        let status_of = |method, path, query| {
            let req = Request {
                query,
                ..request(method, path)
            };
            router.refuse_early(&req).map(|err| err.status())
        };
        assert_eq!(status_of(Method::Post, "/nope", ""), Some(404));
        assert_eq!(status_of(Method::Put, "/upload", ""), Some(405));
        assert_eq!(status_of(Method::Post, "/upload", "bad"), Some(400));
        assert_eq!(status_of(Method::Post, "/upload", "good"), None);
        assert_eq!(status_of(Method::Post, "/plain", ""), None);
        let with_get =
            Router::new().route(Method::Get, "/g", |_, _| Response::text(200, "").into());
        let head = request(Method::Head, "/g");
        assert!(
            with_get.refuse_early(&head).is_none(),
            "HEAD is served by GET"
        );
    }
}
