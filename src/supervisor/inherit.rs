//! What passes from the supervisor to each process it starts, and the process's side of it.
//!
//! A process of `--workers N` is the same `evloop` binary, started with the same arguments and
//! three more things in its environment:
//!
//! | variable | value | meaning |
//! |---|---|---|
//! | `EVLOOP_LISTEN_FD` | `3` | the listening socket, already bound: serve on it, do not bind |
//! | `EVLOOP_READY_FD` | `4` | the write end of a pipe: write `READY=1\n` once ready to serve |
//! | `EVLOOP_WORKER` | `1`…`N` | which place of the supervisor this process fills (for logs) |
//! | `EVLOOP_METRICS_FD` | `5` | the scoreboard's shared memory ([`crate::metrics::shared`]) |
//! | `EVLOOP_METRICS_SLOT` | `0`… | the scoreboard slot this process posts its metrics in |
//!
//! The readiness line borrows its words from systemd's `sd_notify` protocol. The supervisor
//! counts a process as started only once that line arrives: after its start-up hooks, when it
//! would answer `/readyz` with 200.

use std::fs::File;
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::fd::RawFd;

use crate::metrics::shared::Scoreboard;
use crate::sys::{self, SharedMemory};

/// The variable naming the inherited listening socket's descriptor.
pub const LISTEN_FD_VAR: &str = "EVLOOP_LISTEN_FD";
/// The variable naming the readiness pipe's descriptor.
pub const READY_FD_VAR: &str = "EVLOOP_READY_FD";
/// The variable naming the process's place, from 1.
pub const WORKER_VAR: &str = "EVLOOP_WORKER";
/// The variable naming the scoreboard's descriptor.
pub const METRICS_FD_VAR: &str = "EVLOOP_METRICS_FD";
/// The variable naming the process's scoreboard slot.
pub const METRICS_SLOT_VAR: &str = "EVLOOP_METRICS_SLOT";
/// The descriptor number the scoreboard is given in the new process.
pub const METRICS_FD: RawFd = 5;
/// The descriptor number the listening socket is given in the new process.
pub const LISTEN_FD: RawFd = 3;
/// The descriptor number the readiness pipe is given in the new process.
pub const READY_FD: RawFd = 4;
/// What a process writes to say it is ready.
pub const READY_LINE: &[u8] = b"READY=1\n";

/// What a process started by the supervisor inherited.
#[derive(Debug)]
pub struct Inherited {
    /// The listening socket to serve on.
    pub listener: TcpListener,
    /// Which place this process fills, from 1.
    pub worker: usize,
    /// How to tell the supervisor this process is ready.
    pub ready: Ready,
    /// Where this process posts its metrics and reads the others'.
    pub scoreboard: Scoreboard,
}

impl Inherited {
    /// `Some` when this process was started by a supervisor (its environment says so), `None`
    /// when it was started by hand. An environment that names descriptors this process does
    /// not have is an error.
    pub fn from_env() -> io::Result<Option<Inherited>> {
        let Some(listen) = std::env::var_os(LISTEN_FD_VAR) else {
            return Ok(None);
        };
        let number = |name: &str, value: Option<std::ffi::OsString>| -> io::Result<RawFd> {
            value
                .and_then(|v| v.to_str().and_then(|v| v.parse().ok()))
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{name} must be a descriptor number"),
                    )
                })
        };
        let listen = number(LISTEN_FD_VAR, Some(listen))?;
        let ready = number(READY_FD_VAR, std::env::var_os(READY_FD_VAR))?;
        let worker = number(WORKER_VAR, std::env::var_os(WORKER_VAR))?;
        let metrics = number(METRICS_FD_VAR, std::env::var_os(METRICS_FD_VAR))?;
        let slot = number(METRICS_SLOT_VAR, std::env::var_os(METRICS_SLOT_VAR))?;
        let listener = TcpListener::from(sys::adopt_fd(listen)?);
        // A listening socket answers local_addr; anything else here is a mistake.
        listener.local_addr()?;
        Ok(Some(Inherited {
            listener,
            worker: worker.max(0) as usize,
            ready: Ready(File::from(sys::adopt_fd(ready)?)),
            scoreboard: Scoreboard::join(
                SharedMemory::adopt(sys::adopt_fd(metrics)?)?,
                slot.max(0) as usize,
            )?,
        }))
    }
}

/// The readiness pipe, to be written once.
#[derive(Debug)]
pub struct Ready(File);

impl Ready {
    /// Tell the supervisor this process serves. A supervisor that has gone is not an error
    /// worth stopping for: the process is told to stop by other means.
    pub fn announce(mut self) {
        if let Err(err) = self.0.write_all(READY_LINE) {
            log::warn!("could not tell the supervisor this process is ready: {err}");
        }
    }
}
