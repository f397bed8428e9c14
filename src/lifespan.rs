//! The lifespan: code that runs once when the server starts, and once when it stops.
//!
//! This is FastAPI's `lifespan`, split into its two halves:
//!
//! ```python
//! @asynccontextmanager
//! async def lifespan(app):
//!     app.state.model = load_model()      # start-up: before the first request is served
//!     yield
//!     app.state.db.close()                # shutdown: after the last request is answered
//! ```
//!
//! A [`Lifespan`] holds named start-up and shutdown hooks; an [`App`] is what a server runs: a
//! [`Router`] and its lifespan. [`crate::reactor::Server::run`] takes either (a router alone
//! has an empty lifespan).
//!
//! # When the hooks run
//!
//! - **Start-up hooks** run one after the other, in the order they were registered, on a thread
//!   of their own (`evloop-startup`): a hook may take seconds (loading a model, warming a
//!   cache), and the reactor never waits. Meanwhile the server already answers: the routes
//!   registered with [`Router::route_while_starting`] (liveness, metrics) are served, and every
//!   other route, `/readyz` included, answers `503` with `Retry-After: 1`, because its handler
//!   may need what the hooks build. When the last hook returns, the server turns ready.
//! - **A failing start-up hook** (it returns `Err`, or panics) stops the server: the hooks after
//!   it do not run, the error is logged with the hook's name, what was accepted is drained, and
//!   the run ends with [`crate::reactor::Exit::StartupFailed`] (status 3).
//! - **Shutdown hooks** run after the drain, once every connection is closed and the pool's
//!   workers are joined, in the *reverse* order of registration (what started last stops
//!   first), on a thread of their own (`evloop-shutdown`), within what is left of
//!   `--shutdown-timeout`. A failing one is logged and the others still run. They run only if
//!   every start-up hook finished: like the code after FastAPI's `yield`, which runs only if
//!   the code before it did.
//!
//! A hook is a closure that runs once. What it builds reaches the handlers the way any shared
//! state does: the handler holds an `Arc` of a cell (`std::sync::OnceLock`) that the hook fills,
//! and answers 503 if it is still empty. The audio model is built this way
//! (`crate::endpoints::app_for`).
//!
//! ```
//! use std::sync::{Arc, OnceLock};
//!
//! use evloop::http::{Method, Response};
//! use evloop::lifespan::App;
//! use evloop::router::Router;
//!
//! let table: Arc<OnceLock<Vec<u32>>> = Arc::default();
//! let filled = Arc::clone(&table);
//! let router = Router::new().route(Method::Get, "/size", move |_req, _ctx| {
//!     match table.get() {
//!         Some(table) => Response::text_owned(200, table.len().to_string()).into(),
//!         None => Response::text(503, "not loaded").into(),
//!     }
//! });
//! let app = App::new(router)
//!     .on_startup("lookup table", move || {
//!         let _ = filled.set((0..1000).collect());
//!         Ok(())
//!     })
//!     .on_shutdown("flush", || Ok(()));
//! # let _ = app;
//! ```

use crate::pool::panic_message;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::router::Router;

/// What a hook returns: `Ok(())`, or why it failed (any error type converts with `?` or
/// `.into()`, a `String` too).
pub type HookResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// One start-up or shutdown hook: a name for the log, and the code to run once.
pub struct Hook {
    /// Names the hook in the log lines about it ("start-up hook `audio model` failed: …").
    pub name: String,
    /// The code. Taken by [`Hook::run`].
    run: Box<dyn FnOnce() -> HookResult + Send>,
}

impl Hook {
    /// A hook called `name` that runs `run`.
    pub fn new<F>(name: impl Into<String>, run: F) -> Hook
    where
        F: FnOnce() -> HookResult + Send + 'static,
    {
        Hook {
            name: name.into(),
            run: Box::new(run),
        }
    }

    /// Run the hook on the calling thread. A panic is caught and returned as an error, so a
    /// hook that panics is a failing hook like one that returns `Err`, never a lost thread.
    pub fn run(self) -> Result<(), String> {
        match catch_unwind(AssertUnwindSafe(self.run)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(payload) => Err(format!(
                "panicked: {}",
                panic_message(payload.as_ref(), "a hook panicked")
            )),
        }
    }
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook").field("name", &self.name).finish()
    }
}

/// The start-up and shutdown hooks of an application, in the order they were registered.
#[derive(Debug, Default)]
pub struct Lifespan {
    /// Run in this order before the server turns ready.
    startup: Vec<Hook>,
    /// Run in the reverse order after the drain.
    shutdown: Vec<Hook>,
}

impl Lifespan {
    /// A lifespan with no hooks: the server is ready as soon as it runs.
    pub fn new() -> Lifespan {
        Lifespan::default()
    }

    /// Add a start-up hook, to run after those added before it.
    pub fn on_startup<F>(mut self, name: impl Into<String>, hook: F) -> Lifespan
    where
        F: FnOnce() -> HookResult + Send + 'static,
    {
        self.startup.push(Hook::new(name, hook));
        self
    }

    /// Add a shutdown hook, to run *before* those added before it.
    pub fn on_shutdown<F>(mut self, name: impl Into<String>, hook: F) -> Lifespan
    where
        F: FnOnce() -> HookResult + Send + 'static,
    {
        self.shutdown.push(Hook::new(name, hook));
        self
    }

    /// Split into the start-up hooks, in the order to run them, and the shutdown hooks, in the
    /// order to run them (the reverse of their registration).
    pub fn into_hooks(self) -> (Vec<Hook>, Vec<Hook>) {
        let mut shutdown = self.shutdown;
        shutdown.reverse();
        (self.startup, shutdown)
    }
}

/// What a server runs: its routes and its lifespan.
///
/// A [`Router`] converts into an `App` with no hooks, so `Server::run(router)` still works.
pub struct App {
    /// The routes.
    pub router: Router,
    /// The hooks around the server's life.
    pub lifespan: Lifespan,
}

impl App {
    /// An application with `router` and no hooks yet.
    pub fn new(router: Router) -> App {
        App {
            router,
            lifespan: Lifespan::new(),
        }
    }

    /// Add a start-up hook ([`Lifespan::on_startup`]).
    pub fn on_startup<F>(mut self, name: impl Into<String>, hook: F) -> App
    where
        F: FnOnce() -> HookResult + Send + 'static,
    {
        self.lifespan = self.lifespan.on_startup(name, hook);
        self
    }

    /// Add a shutdown hook ([`Lifespan::on_shutdown`]).
    pub fn on_shutdown<F>(mut self, name: impl Into<String>, hook: F) -> App
    where
        F: FnOnce() -> HookResult + Send + 'static,
    {
        self.lifespan = self.lifespan.on_shutdown(name, hook);
        self
    }
}

impl From<Router> for App {
    fn from(router: Router) -> App {
        App::new(router)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hook's error, and its panic, both come back as the text the log will show.
    #[test]
    fn a_hook_fails_by_error_or_by_panic() {
        assert_eq!(Hook::new("fine", || Ok(())).run(), Ok(()));
        assert_eq!(
            Hook::new("err", || Err("no such file".into())).run(),
            Err("no such file".to_string())
        );
        assert_eq!(
            Hook::new("boom", || panic!("out of {}", "memory")).run(),
            Err("panicked: out of memory".to_string())
        );
    }

    /// Start-up hooks keep their order; shutdown hooks come out reversed.
    #[test]
    fn shutdown_hooks_run_in_reverse() {
        let lifespan = Lifespan::new()
            .on_startup("a", || Ok(()))
            .on_startup("b", || Ok(()))
            .on_shutdown("c", || Ok(()))
            .on_shutdown("d", || Ok(()));
        let (startup, shutdown) = lifespan.into_hooks();
        let names = |hooks: &[Hook]| hooks.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&startup), ["a", "b"]);
        assert_eq!(names(&shutdown), ["d", "c"]);
    }
}
