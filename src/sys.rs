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
//! - [`set_thread_batch_scheduling`], [`set_thread_idle_scheduling`], [`lower_thread_priority`]:
//!   how workers are scheduled against the reactor (`docs/SCHEDULING.md`).

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

/// Lower the scheduling priority of the *calling thread* by `steps` nice levels (Linux threads
/// have their own nice value; the result is capped at 19). Workers call this so the reactor wins
/// the CPU whenever both want it.
pub fn lower_thread_priority(steps: i32) {
    // SAFETY: `gettid` has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
    // SAFETY: reading our own thread's priority. -1 is also a valid nice value, so errno is
    // cleared first and checked after, as getpriority(2) prescribes.
    let current = unsafe {
        *libc::__errno_location() = 0;
        let value = libc::getpriority(libc::PRIO_PROCESS, tid);
        if value == -1 && *libc::__errno_location() != 0 {
            0
        } else {
            value
        }
    };
    // SAFETY: adjusting our own thread's priority; failure (e.g. a seccomp filter) is harmless.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, tid, (current + steps).min(19));
    }
}

/// Put the *calling thread* in the `SCHED_BATCH` class: time-sharing at its normal weight (so
/// a busy machine cannot starve it), but the kernel treats it as CPU-bound batch work, and a
/// batch thread that wakes does not preempt the running thread. Workers use it by default.
pub fn set_thread_batch_scheduling() -> io::Result<()> {
    // SAFETY: `sched_param` is plain old data; SCHED_BATCH requires priority 0.
    let param: libc::sched_param = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; `param` is valid for the call.
    check(unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) }).map(|_| ())
}

/// Put the *calling thread* in the `SCHED_IDLE` class: it runs only when no normally scheduled
/// thread of the machine wants the CPU. Workers use it so the reactor is never kept waiting by
/// them; an idle reactor still leaves them every core.
pub fn set_thread_idle_scheduling() -> io::Result<()> {
    // SAFETY: `sched_param` is plain old data; SCHED_IDLE requires priority 0.
    let param: libc::sched_param = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; `param` is valid for the call.
    check(unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) }).map(|_| ())
}

/// Ignore SIGPIPE. Rust's runtime already does this for binaries; a library user embedding the
/// reactor in another program may not have.
pub fn ignore_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
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
