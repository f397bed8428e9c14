//! The operating-system calls that the standard library, mio, socket2 and signal-hook do not
//! offer.
//!
//! Every `unsafe` block of evloop lives in this file, each with a `// SAFETY:` line. The rest of the
//! crate sees only safe functions:
//!
//! - [`bind_listener`]: a listening socket with *our* backlog (mio's `TcpListener::bind` asks for
//!   128, which overflows when `wrk -c1000` connects at once and costs each dropped SYN a 1 s
//!   retry). socket2 builds it; no `unsafe` is needed for that one;
//! - [`raise_nofile_limit`]: lift the soft `RLIMIT_NOFILE` to the hard limit, as redis and nginx do;
//! - [`thread_cpu_time`]: the CPU time of the calling thread (for the reactor's turn statistics);
//! - [`ignore_sigpipe`]: a peer that resets mid-write gives `EPIPE`, not the death of the process;
//! - thread scheduling for the workers, which `docs/SCHEDULING.md` explains:
//!   [`set_thread_policy`] (`SCHED_BATCH` or `SCHED_IDLE`), [`thread_nice`] and
//!   [`set_thread_nice`] (nice +19 in `--worker-priority low`).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Turn a `-1` return value into the `errno` it stands for.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Create a non-blocking, close-on-exec TCP listener bound to `addr` (IPv4 or IPv6) with a listen
/// backlog of `backlog` (the kernel caps it at `net.core.somaxconn`).
///
/// `SO_REUSEADDR` lets a restarted server bind while old connections sit in TIME_WAIT, which is
/// what every production server does.
pub fn bind_listener(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    // `Socket::new` sets close-on-exec itself (atomically, with `SOCK_CLOEXEC`), so a child
    // process never inherits the listener.
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Raise the soft limit on open files to the hard limit and return the new soft limit.
///
/// Each connection is one file descriptor; the usual soft default of 1024 would make
/// `--max-connections 10000` a lie. Failure is not fatal: the accept loop handles `EMFILE`.
pub fn raise_nofile_limit() -> io::Result<u64> {
    // SAFETY: `rlimit` is plain old data.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a valid, writable rlimit.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    if lim.rlim_cur < lim.rlim_max {
        let wanted = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `wanted` is a valid rlimit that only raises the soft limit up to the hard one.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
            lim = wanted;
        }
    }
    Ok(lim.rlim_cur as u64)
}

/// Ignore SIGPIPE. Rust's runtime already does this for binaries; a library user embedding the
/// reactor in another program may not have.
pub fn ignore_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// The kernel's id of the calling thread. Linux threads have their own nice value and policy,
/// and `setpriority(PRIO_PROCESS, tid)` addresses one thread, not the process.
fn thread_id() -> libc::id_t {
    // SAFETY: `gettid` has no preconditions and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::id_t }
}

/// The nice value of the calling thread (-20, most favoured, to 19).
pub fn thread_nice() -> io::Result<i32> {
    let tid = thread_id();
    // SAFETY: reading our own thread's priority. -1 is also a valid nice value, so errno is
    // cleared first and checked after, as getpriority(2) prescribes.
    unsafe {
        *libc::__errno_location() = 0;
        let value = libc::getpriority(libc::PRIO_PROCESS, tid);
        if value == -1 && *libc::__errno_location() != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(value)
    }
}

/// Set the nice value of the calling thread. Raising it (a lower priority) is always allowed;
/// lowering it needs `CAP_SYS_NICE` or an `RLIMIT_NICE` that permits the value, else `EACCES`.
pub fn set_thread_nice(nice: i32) -> io::Result<()> {
    let tid = thread_id();
    // SAFETY: plain syscall on our own thread; the result is checked.
    check(unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice.clamp(-20, 19)) }).map(|_| ())
}

/// A scheduling policy of the normal (non-real-time) scheduler, other than the default
/// `SCHED_OTHER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `SCHED_BATCH`: time-sharing at the thread's nice weight, like `SCHED_OTHER`, but a
    /// waking thread never preempts the running one; it waits for the next tick.
    Batch,
    /// `SCHED_IDLE`: runs only when no other thread of the CPU wants to run.
    Idle,
}

/// Put the calling thread in `policy` (`Batch` keeps the thread's nice; `Idle` has none).
/// Unprivileged threads may always move to either.
pub fn set_thread_policy(policy: Policy) -> io::Result<()> {
    let policy = match policy {
        Policy::Batch => libc::SCHED_BATCH,
        Policy::Idle => libc::SCHED_IDLE,
    };
    // SAFETY: `sched_param` is plain old data; these policies require priority 0.
    let param: libc::sched_param = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; `param` is valid for the call.
    check(unsafe { libc::sched_setscheduler(0, policy, &param) }).map(|_| ())
}

/// CPU time the *calling thread* has used so far. The reactor reads it around a turn (only while
/// its turn statistics are logged) to tell a long turn that worked from one that waited for a
/// CPU.
pub fn thread_cpu_time() -> Duration {
    // SAFETY: `timespec` is plain old data.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// The listener is bound, listening, non-blocking, close-on-exec and `SO_REUSEADDR`, for
    /// IPv4 and (where the machine has it) IPv6.
    #[test]
    fn listener_has_the_options_we_ask_for() {
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let listener = match bind_listener(addr, 16) {
                Ok(listener) => listener,
                Err(err) if addr.is_ipv6() => {
                    eprintln!("no IPv6 here ({err}); skipping {addr}");
                    continue;
                }
                Err(err) => panic!("bind {addr}: {err}"),
            };
            assert_eq!(listener.local_addr().unwrap().ip(), addr.ip());
            assert_ne!(listener.local_addr().unwrap().port(), 0);
            let err = listener.accept().expect_err("nobody connected");
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{addr}: blocking");
            let socket = socket2::SockRef::from(&listener);
            assert!(socket.reuse_address().unwrap(), "{addr}: no SO_REUSEADDR");
            // SAFETY: F_GETFD on a descriptor we own has no other effect.
            let flags = unsafe { libc::fcntl(listener.as_raw_fd(), libc::F_GETFD) };
            assert!(flags & libc::FD_CLOEXEC != 0, "{addr}: not close-on-exec");
        }
    }
}
