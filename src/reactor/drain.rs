//! The graceful drain: how a running server stops without dropping a request.
//!
//! A drain begins on SIGINT/SIGTERM or [`ShutdownHandle::shutdown`]. From then on:
//!
//! 1. `/readyz` answers 503, so a load balancer stops sending new clients;
//! 2. connections already waiting in the backlog are accepted (unless accepting is paused at the
//!    connection cap or for lack of file descriptors), then the listener closes (new
//!    ones are refused by the kernel);
//! 3. every request already received is answered, the last on each connection with
//!    `Connection: close`;
//! 4. idle connections get a short grace period ([`DRAIN_IDLE_GRACE`]) to deliver a request
//!    already on the wire, then close;
//! 5. the run ends when no connection is left, and the pool's workers are joined;
//! 6. the shutdown hooks run, the last registered first (`hooks.rs`), if every start-up hook
//!    had finished;
//! 7. whatever is still running at `--shutdown-timeout` (connections, a job, a shutdown hook)
//!    is abandoned and the process exits 1.
//!
//! A start-up hook that fails begins the same drain: what was already accepted is answered,
//! and the run ends with [`Exit::StartupFailed`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::Waker;

/// How long idle keep-alive connections stay open once a drain begins, so a request already on
/// its way is answered (with `Connection: close`) instead of meeting a closed socket.
pub const DRAIN_IDLE_GRACE: Duration = Duration::from_millis(250);

/// How a server run ended; [`Exit::code`] is the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Drained: every request answered; the pool's workers are joined after (a job cancelled
    /// for a client that left may still be finishing).
    Graceful,
    /// `--shutdown-timeout` passed with connections still open (they were aborted), with a
    /// worker still running a job, or with a shutdown hook still running (they were
    /// abandoned).
    TimedOut,
    /// A start-up hook returned an error or panicked: the server never turned ready. What it
    /// had accepted was drained; no shutdown hook ran.
    StartupFailed,
}

impl Exit {
    /// The process exit status: 0 for a graceful exit, 1 when the shutdown timed out, 3 when a
    /// start-up hook failed. (The binary exits 2 for bad arguments, and 130 on a second
    /// SIGINT or SIGTERM.) A supervisor can tell 3 apart: the process never became ready, so
    /// it must not take the place of one that is serving.
    pub fn code(self) -> i32 {
        match self {
            Exit::Graceful => 0,
            Exit::TimedOut => 1,
            Exit::StartupFailed => 3,
        }
    }
}

/// Asks a running server to drain and stop, from any thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    pub(super) requested: Arc<AtomicBool>,
    pub(super) waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Begin the graceful drain (like SIGTERM).
    pub fn shutdown(&self) {
        // Store, then wake: the reactor reads the flag after the wake-up it causes.
        self.requested.store(true, Ordering::Release);
        if let Err(err) = self.waker.wake() {
            log::error!("shutdown: waking the reactor failed: {err}");
        }
    }
}
