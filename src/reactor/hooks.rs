//! Running the lifespan's hooks off the reactor thread.
//!
//! **Start-up.** The hooks may take seconds, and the reactor never waits, so `Server::run`
//! gives them a thread of their own, `evloop-startup`, which runs them in order and then
//! reports the way a pool worker reports a finished job: it puts one [`StartupReport`] on a
//! channel, *then* wakes the reactor through the same `mio::Waker` (send, then wake: the
//! reactor can never wake, find nothing, and sleep through the report). The reactor looks at
//! the channel in step 4 of its turn, when the waker's event arrives.
//!
//! **Shutdown.** The hooks run after the loop has ended, so nothing else is waiting for the
//! thread that called `Server::run`; it still runs them on a thread of their own,
//! `evloop-shutdown`, and waits for it only until the shutdown deadline: a hook that hangs can
//! be abandoned, not stopped, just as a pool job that ignores its cancel flag.

use std::io;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use mio::Waker;

use crate::lifespan::Hook;

/// What the start-up thread reports, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupReport {
    /// Every hook returned `Ok`.
    Finished,
    /// The hook `hook` failed with `error`; the hooks after it did not run.
    Failed { hook: String, error: String },
}

/// Start the `evloop-startup` thread: run `hooks` in order, stop at the first that fails, send
/// the report, wake the reactor. The reactor takes the report with [`take_report`].
pub fn spawn_startup(hooks: Vec<Hook>, waker: Arc<Waker>) -> io::Result<Receiver<StartupReport>> {
    // Room for the one report, so the thread never waits for the reactor.
    let (report, reports) = crossbeam_channel::bounded(1);
    thread::Builder::new()
        .name("evloop-startup".to_string())
        .spawn(move || {
            let outcome = run_startup(hooks);
            // The reactor may be gone (its run failed): then nobody needs the report.
            if report.send(outcome).is_ok() {
                if let Err(err) = waker.wake() {
                    log::error!("start-up: waking the reactor failed: {err}");
                }
            }
        })?;
    Ok(reports)
}

/// Run the start-up hooks in order, logging how long each took; stop at the first failure.
fn run_startup(hooks: Vec<Hook>) -> StartupReport {
    for hook in hooks {
        let name = hook.name.clone();
        let started = Instant::now();
        log::debug!("start-up hook `{name}` running");
        match hook.run() {
            Ok(()) => log::info!(
                "start-up hook `{name}` done in {} ms",
                started.elapsed().as_millis()
            ),
            Err(error) => return StartupReport::Failed { hook: name, error },
        }
    }
    StartupReport::Finished
}

/// The report, if the start-up thread has sent it. A thread that ended without one (it cannot,
/// since every hook runs under `catch_unwind`, but the channel would say so) counts as a
/// failure.
pub fn take_report(reports: &Receiver<StartupReport>) -> Option<StartupReport> {
    match reports.try_recv() {
        Ok(report) => Some(report),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Disconnected) => Some(StartupReport::Failed {
            hook: "(start-up thread)".to_string(),
            error: "ended without a report".to_string(),
        }),
    }
}

/// How the shutdown hooks ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShutdownEnd {
    /// Every hook returned, in time (a failing one was logged).
    Done,
    /// The deadline passed while `hook` was running; it was abandoned, and those after it
    /// never ran.
    TimedOut { hook: String },
}

/// What the shutdown thread says as it goes: which hook it is in, and when it is done.
enum ShutdownStep {
    Began(String),
    Done,
}

/// Run `hooks` in the order given on the `evloop-shutdown` thread, waiting for it no later
/// than `deadline`. A failing hook is logged and the next one runs.
pub fn run_shutdown(hooks: Vec<Hook>, deadline: Instant) -> io::Result<ShutdownEnd> {
    if hooks.is_empty() {
        return Ok(ShutdownEnd::Done);
    }
    let (step, steps) = crossbeam_channel::unbounded();
    thread::Builder::new()
        .name("evloop-shutdown".to_string())
        .spawn(move || {
            for hook in hooks {
                let name = hook.name.clone();
                // The waiter may have given up: then nobody is listening, and the process is
                // about to exit.
                let _ = step.send(ShutdownStep::Began(name.clone()));
                let started = Instant::now();
                match hook.run() {
                    Ok(()) => log::info!(
                        "shutdown hook `{name}` done in {} ms",
                        started.elapsed().as_millis()
                    ),
                    Err(error) => log::error!("shutdown hook `{name}` failed: {error}"),
                }
            }
            let _ = step.send(ShutdownStep::Done);
        })?;
    let mut running = String::new();
    loop {
        match steps.recv_deadline(deadline) {
            Ok(ShutdownStep::Began(name)) => running = name,
            Ok(ShutdownStep::Done) => return Ok(ShutdownEnd::Done),
            Err(RecvTimeoutError::Timeout) => return Ok(ShutdownEnd::TimedOut { hook: running }),
            // Every hook runs under catch_unwind, so the thread always says `Done` first.
            Err(RecvTimeoutError::Disconnected) => return Ok(ShutdownEnd::Done),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Start-up hooks run in order and stop at the first failure, which names the hook.
    #[test]
    fn start_up_stops_at_the_first_failure() {
        let ran = Arc::new(Mutex::new(Vec::new()));
        let hook = |name: &'static str, ok: bool| {
            let ran = Arc::clone(&ran);
            Hook::new(name, move || {
                ran.lock().unwrap().push(name);
                if ok {
                    Ok(())
                } else {
                    Err("broken".into())
                }
            })
        };
        let report = run_startup(vec![hook("a", true), hook("b", false), hook("c", true)]);
        assert_eq!(
            report,
            StartupReport::Failed {
                hook: "b".to_string(),
                error: "broken".to_string()
            }
        );
        assert_eq!(*ran.lock().unwrap(), ["a", "b"]);
        assert_eq!(run_startup(vec![hook("d", true)]), StartupReport::Finished);
    }

    /// A failing shutdown hook does not stop the others; a hanging one is abandoned at the
    /// deadline, and named.
    #[test]
    fn shutdown_runs_every_hook_within_the_deadline() {
        let ran = Arc::new(Mutex::new(Vec::new()));
        let (r1, r2) = (Arc::clone(&ran), Arc::clone(&ran));
        let end = run_shutdown(
            vec![
                Hook::new("fails", move || {
                    r1.lock().unwrap().push("fails");
                    Err("disk full".into())
                }),
                Hook::new("after", move || {
                    r2.lock().unwrap().push("after");
                    Ok(())
                }),
            ],
            Instant::now() + Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(end, ShutdownEnd::Done);
        assert_eq!(*ran.lock().unwrap(), ["fails", "after"]);

        let end = run_shutdown(
            vec![Hook::new("hangs", || {
                thread::sleep(Duration::from_secs(5));
                Ok(())
            })],
            Instant::now() + Duration::from_millis(50),
        )
        .unwrap();
        assert_eq!(
            end,
            ShutdownEnd::TimedOut {
                hook: "hangs".to_string()
            }
        );
    }
}
