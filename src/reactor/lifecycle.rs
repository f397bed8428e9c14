//! Where the server is in its life, as one enum with its transitions.
//!
//! ```text
//!                 hooks done                  SIGTERM, ShutdownHandle
//!   Starting ──────────────────▶ Running ──────────────────────────────▶ Draining { hooks: Finished }
//!      │
//!      ├── a hook failed ─────────────────────────────────────────────▶ Draining { hooks: Failed }
//!      └── SIGTERM, ShutdownHandle ───────────────────────────────────▶ Draining { hooks: Running }
//!                                                                          │ the hooks' report
//!                                                                          ▼ arrives later
//!                                                                       Draining { Finished | Failed }
//! ```
//!
//! | state | routes served | `/readyz` | the listener |
//! |---|---|---|---|
//! | `Starting` | only those registered with `Router::route_while_starting`; the others 503 `starting` | 503 | accepting, unless `Server::accept_after_ready` holds it back |
//! | `Running` | all | 200 | accepting |
//! | `Draining` | all if the start-up hooks finished, else as while starting | 503 | closed |
//!
//! A drain remembers how the start-up hooks stand, because that decides how the run ends: the
//! shutdown hooks run only after a start-up that finished, and a start-up that failed ends the
//! run with [`Exit::StartupFailed`](super::Exit::StartupFailed) whatever else happened.
//! `Reactor::enter` makes every transition, and logs it at `trace!`.

use std::time::Instant;

use crate::router::Phase;

/// Where the server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// The start-up hooks have been running since `since` (when `Server::run` began). With no
    /// hooks, the server leaves this state before its first turn.
    Starting { since: Instant },
    /// Serving: every start-up hook has finished.
    Running,
    /// Draining: idle connections close at `grace`; everything is aborted at `deadline`.
    /// `hooks` is how the start-up hooks stand.
    Draining {
        grace: Instant,
        deadline: Instant,
        hooks: StartupHooks,
    },
}

/// How the start-up hooks stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupHooks {
    /// Still running on the start-up thread.
    Running,
    /// Every one returned `Ok`.
    Finished,
    /// One returned `Err` or panicked; those after it did not run.
    Failed,
}

impl Lifecycle {
    /// The shutdown deadline, once draining.
    pub fn deadline(self) -> Option<Instant> {
        match self {
            Lifecycle::Starting { .. } | Lifecycle::Running => None,
            Lifecycle::Draining { deadline, .. } => Some(deadline),
        }
    }

    /// The idle grace deadline, once draining.
    pub fn grace(self) -> Option<Instant> {
        match self {
            Lifecycle::Starting { .. } | Lifecycle::Running => None,
            Lifecycle::Draining { grace, .. } => Some(grace),
        }
    }

    /// True once a drain has begun.
    pub fn is_draining(self) -> bool {
        matches!(self, Lifecycle::Draining { .. })
    }

    /// How the start-up hooks stand in this state.
    pub fn hooks(self) -> StartupHooks {
        match self {
            Lifecycle::Starting { .. } => StartupHooks::Running,
            Lifecycle::Running => StartupHooks::Finished,
            Lifecycle::Draining { hooks, .. } => hooks,
        }
    }

    /// What the router is told: whether the routes that need the start-up hooks may run.
    pub fn phase(self) -> Phase {
        match self.hooks() {
            StartupHooks::Finished => Phase::Started,
            StartupHooks::Running | StartupHooks::Failed => Phase::Starting,
        }
    }

    /// The state a drain begun now, with these deadlines, moves to.
    pub fn drain(self, grace: Instant, deadline: Instant) -> Lifecycle {
        Lifecycle::Draining {
            grace,
            deadline,
            hooks: self.hooks(),
        }
    }

    /// The same state, with the start-up hooks standing as `hooks` (their report arrived during
    /// a drain).
    pub fn with_hooks(self, hooks: StartupHooks) -> Lifecycle {
        match self {
            Lifecycle::Draining {
                grace, deadline, ..
            } => Lifecycle::Draining {
                grace,
                deadline,
                hooks,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A drain keeps what it knew of the start-up hooks, and the routes that need them stay
    /// refused unless the hooks finished.
    #[test]
    fn a_drain_remembers_the_start_up() {
        let now = Instant::now();
        let (grace, deadline) = (now, now + Duration::from_secs(1));

        let early = Lifecycle::Starting { since: now }.drain(grace, deadline);
        assert_eq!(early.hooks(), StartupHooks::Running);
        assert_eq!(early.phase(), Phase::Starting);
        assert_eq!(early.deadline(), Some(deadline));

        let late = early.with_hooks(StartupHooks::Finished);
        assert_eq!(late.phase(), Phase::Started);

        let failed = early.with_hooks(StartupHooks::Failed);
        assert_eq!(failed.phase(), Phase::Starting);

        let normal = Lifecycle::Running.drain(grace, deadline);
        assert_eq!(normal.hooks(), StartupHooks::Finished);
        assert!(normal.is_draining());
        assert!(!Lifecycle::Running.is_draining());
    }
}
