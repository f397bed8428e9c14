//! # evloop — an event loop you can read
//!
//! evloop is an HTTP/1.1 server built the way asyncio and uvicorn work underneath, with every
//! part in view: **one reactor thread** owns the sockets — its clients', and those of the calls
//! it makes to other services — and never blocks; **a fixed pool of worker threads** runs the
//! CPU-heavy jobs; finished jobs come back over a channel whose sender wakes the reactor.
//!
//! ## One turn of the reactor
//!
//! 1. `poll` for readiness, sleeping at most until the next timer deadline (not at all if a
//!    connection yielded on the previous turn, or results are waiting to be filed);
//! 2. read the clock once for the turn (and refresh the cached `Date` header);
//! 3. for each ready socket, *drive* its connection: read, decode the complete requests (a
//!    bounded number per call, for fairness), dispatch each to its handler, write every response
//!    that is ready — in request order, in one `write`. An event for one of the reactor's own
//!    connections to an upstream goes to [`outbound::Outbound`], which connects, writes and
//!    reads it there;
//! 4. on the waker's event, take *every* finished job off the completion channel and file each
//!    result with its request; file the calls upstream that have ended the same way; take the
//!    start-up hooks' report (the server turns ready, or a failed hook begins the drain);
//! 5. on SIGINT/SIGTERM, begin the graceful drain;
//! 6. accept new connections (at the connection cap, close the longest-idle keep-alive one to
//!    make room);
//! 7. fire expired timers (`/sleep`, timeouts, upstream connections' deadlines);
//! 8. file the calls that 7 ended, then drive, once each, the connections that 4, 7 and 8
//!    touched and those that yielded last turn;
//! 9. housekeeping: the slow-turn warning, the turn's metrics (and, when the first viewer of
//!    `GET /events/loop` arrived, the timer of its frames), handing the turn's access-log
//!    lines to their writer thread, compacting the timer heap;
//! 10. exit once draining and no connection is left.
//!
//! A handler decides where its work runs by what it returns (see [`router`]): the answer now
//! (a plain `async def`), after a timer (`await asyncio.sleep`), from the pool
//! (`await run_in_threadpool(f)`), from several pool jobs at once
//! (`await asyncio.gather(...)`), streamed from a pool job (`StreamingResponse`), or from calls
//! to other HTTP services (`await client.get(url)`, or `asyncio.gather` of several). Calls are
//! I/O, so they take no thread: the reactor makes them on non-blocking sockets of its own and
//! runs the handler's continuation on the loop when the responses are in ([`outbound`]). A
//! job's result, and a continuation's, is a reply too, so work can continue.
//! `docs/ARCHITECTURE.md` and `src/reactor/mod.rs` number the turn the same way.
//!
//! ## Start-up and shutdown
//!
//! A server runs a [`lifespan::App`]: a router and its lifespan, FastAPI's start-up and
//! shutdown hooks. The start-up hooks (building the audio model, for the binary) run on a
//! thread of their own while the loop already turns: the server is *starting*, answers
//! `/healthz` and `/metrics`, and answers every other route 503 `starting` with
//! `Retry-After: 1`. When the last hook returns it turns *ready*: every route is served,
//! `/readyz` says 200, and [`reactor::Server::on_ready`] is called. A hook that fails stops the
//! server with exit status 3. After the drain and the pool, the shutdown hooks run, the last
//! registered first, within `--shutdown-timeout`.
//!
//! ## Layout
//!
//! - [`reactor`]: the loop — poll, the waker, timers, signals; the lifecycle (starting,
//!   running, draining), the threads that run the lifespan's hooks, admission of new
//!   connections (`accept`) and the graceful drain (`drain`);
//! - [`lifespan`]: start-up and shutdown hooks, and the `App` (a router and its hooks) that a
//!   server runs;
//! - [`connection`]: one HTTP/1.1 connection — its input state and `drive` loop, the socket and
//!   its buffers (`transport`), responses in request order (`pipeline`), timeouts (`deadline`);
//! - [`http`]: requests and responses without sockets — the incremental decoder, chunked
//!   bodies, response encoding, the cached `Date`, and the client side (the request encoder
//!   and the response decoder);
//! - [`router`]: handlers, and `Reply` — inline, timer, offloaded, gathered, streamed, or
//!   calling upstream; which routes wait for the start-up hooks;
//! - [`outbound`]: the reactor's calls to other HTTP services — their connections (tagged
//!   tokens, idle lists, the bound and its queue, deadlines, cancellation, one retry), the types
//!   a handler sees, and the blocking client kept to show the anti-patterns;
//! - [`metrics`]: what `GET /metrics` answers — lock-free counters, gauges and histograms, the
//!   Prometheus text encoder, and the shared scoreboard through which the processes of
//!   `--workers N` see each other's numbers; and the frames the reactor publishes for
//!   `GET /events/loop` (`metrics::vitals`);
//! - [`supervisor`]: `--workers N` — one process binds the socket and keeps N reactor
//!   processes serving on it: readiness, restarts with back-off, one-at-a-time replacement on
//!   SIGHUP, the stop (gunicorn's arbiter);
//! - [`access_log`]: a line per response, buffered per turn and written by a thread of its own;
//! - [`notify`]: systemd's `sd_notify` (`READY=1`, `RELOADING=1`, `STOPPING=1`);
//! - [`pool`]: the worker threads, the bounded job queue, completions and cancellation;
//! - [`timer`]: one heap of deadlines;
//! - [`slab`]: connection slots and generation-checked tokens, tagged by slab;
//! - [`endpoints`]: the built-in routes and the hook that builds the audio model, the audio
//!   endpoints' split of work into jobs, and `/fanout`'s calls upstream, awaited, on the pool or
//!   inline;
//! - [`audio`]: the audio analyses (WAV decode, SNR, voice activity, speaker count) — pure
//!   signal processing that knows nothing of HTTP;
//! - [`config`]: the command line and its defaults;
//! - [`error`]: every failure, mapped to a status code in one place;
//! - [`signals`]: SIGINT/SIGTERM and friends as events of the loop, through a self-pipe;
//! - [`sys`]: the listener (backlog, `SO_REUSEPORT`) and the few `libc` calls (file limit,
//!   thread scheduling, starting and reaping processes, shared memory) — the only `unsafe` in
//!   the crate.
//!
//! `docs/ARCHITECTURE.md` tells the same story at length, following one request from `accept`
//! to the last byte written.
//!
//! ## Using it as a library
//!
//! ```no_run
//! use evloop::{config::Config, endpoints, reactor::Server};
//!
//! let config = Config { port: 0, ..Config::default() };
//! let app = endpoints::app_for(&config)
//!     .on_startup("warm the cache", || Ok(()))
//!     .on_shutdown("flush the cache", || Ok(()));
//! let mut server = Server::bind(config)?;
//! println!("listening on {}", server.local_addr());
//! server.on_ready(|| println!("ready"));
//! let exit = server.run(app)?;
//! std::process::exit(exit.code()); // 0 drained, 1 timed out, 3 a start-up hook failed
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! A [`router::Router`] alone runs too (`server.run(endpoints::router())`): no hooks, ready at
//! once.
//!
//! ## Non-goals
//!
//! TLS, HTTP/2, WebSockets and compression belong to a production server, not to a reference
//! event loop: they would add code without adding a single new idea about the loop. The same
//! holds for calls upstream, which speak plain HTTP/1.1 (`docs/OUTBOUND.md`).

pub mod access_log;
pub mod audio;
pub mod config;
pub mod connection;
pub mod endpoints;
pub mod error;
pub mod http;
pub mod lifespan;
pub mod metrics;
pub mod notify;
pub mod outbound;
pub mod pool;
pub mod reactor;
pub mod router;
pub mod signals;
pub mod slab;
pub mod supervisor;
pub mod sys;
pub mod timer;
