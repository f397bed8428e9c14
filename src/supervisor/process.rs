//! One process of `--workers N`, as the supervisor holds it: started, heard from, signalled,
//! reaped.
//!
//! Two descriptors per process go on the supervisor's poller, so the supervisor sleeps until
//! something happens and needs no SIGCHLD handler:
//!
//! - the read end of its **readiness pipe**, on which the process writes `READY=1` (see
//!   `inherit.rs`);
//! - a **pidfd** (`pidfd_open(2)`), which becomes readable when the process exits. Then its
//!   exit status is collected with a `waitpid` that cannot block.

use std::ffi::OsString;
use std::io::{self, Read};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus};

use mio::unix::pipe;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::inherit::{
    LISTEN_FD, LISTEN_FD_VAR, METRICS_FD, METRICS_FD_VAR, METRICS_SLOT_VAR, READY_FD, READY_FD_VAR,
    READY_LINE, WORKER_VAR,
};
use crate::sys;

/// A started process.
#[derive(Debug)]
pub struct Process {
    pid: u32,
    /// Its scoreboard slot, cleared by the supervisor once it has exited.
    pub metrics_slot: usize,
    exited: OwnedFd,
    ready: Option<pipe::Receiver>,
    heard: Vec<u8>,
}

impl Process {
    /// Start `exe args…` as the process of place `worker` (from 1), serving on `listener`,
    /// posting its metrics in the slot `metrics.1` of the scoreboard whose descriptor is
    /// `metrics.0`, and register its two descriptors under `tokens`: its exit's, then its
    /// readiness pipe's. It runs in its own process group, so a Ctrl-C at the terminal reaches
    /// only the supervisor, which then stops the processes itself (once each).
    pub fn start(
        exe: &Path,
        args: &[OsString],
        listener: &TcpListener,
        worker: usize,
        metrics: (RawFd, usize),
        registry: &Registry,
        [exit_token, ready_token]: [Token; 2],
    ) -> io::Result<Process> {
        let (ready_tx, mut ready_rx) = pipe::new()?;
        let mut command = Command::new(exe);
        command
            .args(args)
            .env(LISTEN_FD_VAR, LISTEN_FD.to_string())
            .env(READY_FD_VAR, READY_FD.to_string())
            .env(WORKER_VAR, worker.to_string())
            .env(METRICS_FD_VAR, METRICS_FD.to_string())
            .env(METRICS_SLOT_VAR, metrics.1.to_string())
            // The supervisor speaks to systemd for all of them.
            .env_remove(crate::notify::NOTIFY_SOCKET_VAR)
            .process_group(0);
        let child = sys::spawn_with_fds(
            &mut command,
            &[
                (listener.as_raw_fd(), LISTEN_FD),
                (ready_tx.as_raw_fd(), READY_FD),
                (metrics.0, METRICS_FD),
            ],
        )?;
        // Only the process keeps the write end: when it exits, the pipe reads end-of-file.
        drop(ready_tx);
        let pid = child.id();
        let exited = sys::pidfd_open(pid)?;
        registry.register(
            &mut SourceFd(&exited.as_raw_fd()),
            exit_token,
            Interest::READABLE,
        )?;
        registry.register(&mut ready_rx, ready_token, Interest::READABLE)?;
        Ok(Process {
            pid,
            metrics_slot: metrics.1,
            exited,
            ready: Some(ready_rx),
            heard: Vec::new(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The readiness pipe is readable: true once the process has said `READY=1`. Reads what is
    /// there and stops listening at end-of-file or once the line came.
    pub fn read_ready(&mut self, registry: &Registry) -> bool {
        let Some(pipe) = self.ready.as_mut() else {
            return false;
        };
        let mut buf = [0u8; 64];
        let done = loop {
            match pipe.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    self.heard.extend_from_slice(&buf[..n]);
                    if said_ready(&self.heard) || self.heard.len() > 1024 {
                        break true;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break true,
            }
        };
        if done {
            if let Some(mut pipe) = self.ready.take() {
                let _ = registry.deregister(&mut pipe);
            }
        }
        self.said_ready()
    }

    fn said_ready(&self) -> bool {
        said_ready(&self.heard)
    }

    /// The exit descriptor is readable: collect the exit status (`None` if, against the
    /// kernel's word, the process has not exited yet).
    pub fn reap(&mut self, registry: &Registry) -> io::Result<Option<ExitStatus>> {
        let status = sys::try_reap(self.pid)?;
        if status.is_some() {
            let _ = registry.deregister(&mut SourceFd(&self.exited.as_raw_fd()));
            if let Some(mut pipe) = self.ready.take() {
                let _ = registry.deregister(&mut pipe);
            }
        }
        Ok(status)
    }

    /// Send `signal`; a process that has already exited is not an error.
    pub fn signal(&self, signal: libc::c_int) {
        if let Err(err) = sys::send_signal(self.pid, signal) {
            if err.raw_os_error() != Some(libc::ESRCH) {
                log::warn!("could not signal process {}: {err}", self.pid);
            }
        }
    }
}

/// Does what a process wrote on its readiness pipe contain the ready line?
fn said_ready(heard: &[u8]) -> bool {
    heard
        .windows(READY_LINE.len())
        .any(|line| line == READY_LINE)
}

/// How a process ended, for the log: `status 0`, `status 3`, `signal 9 (SIGKILL)`.
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(signal)) => format!("signal {signal} ({})", signal_name(signal)),
        (None, None) => format!("{status}"),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGHUP => "SIGHUP",
        _ => "?",
    }
}
