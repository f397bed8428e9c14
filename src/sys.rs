//! The operating-system calls that the standard library, mio and signal-hook do not offer.
//!
//! Every `unsafe` block of evloop lives in this file, each with a `// SAFETY:` line. The rest of the
//! crate sees only safe functions:
//!
//! - [`bind_listener`]: a listening socket with *our* backlog (mio's `TcpListener::bind` asks for
//!   128, which overflows when `wrk -c1000` connects at once and costs each dropped SYN a 1 s retry);
//! - [`raise_nofile_limit`]: lift the soft `RLIMIT_NOFILE` to the hard limit, as redis and nginx do;
//! - [`ignore_sigpipe`]: a peer that resets mid-write gives `EPIPE`, not the death of the process;
//! - [`set_thread_idle_scheduling`], [`lower_thread_priority`]: workers yield the CPU to the
//!   reactor, so a saturated pool never delays the thread that owns every socket.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::FromRawFd;

/// Turn a `-1` return value into the `errno` it stands for.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Create a non-blocking, close-on-exec TCP listener bound to `addr` with a listen backlog of
/// `backlog` (the kernel caps it at `net.core.somaxconn`).
///
/// `SO_REUSEADDR` lets a restarted server bind while old connections sit in TIME_WAIT, which is
/// what every production server does.
pub fn bind_listener(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain syscall with constant arguments; the result is checked.
    let fd = check(unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: `fd` is a socket we just created and own; from here on the `TcpListener` closes it
    // on every path, including the error returns below.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };

    let one: libc::c_int = 1;
    // SAFETY: `one` outlives the call and its size is passed alongside.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;

    let (storage, len) = sockaddr_of(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes for the socket's family.
    check(unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) })?;
    // SAFETY: plain syscall on a socket we own.
    check(unsafe { libc::listen(fd, backlog) })?;
    Ok(listener)
}

/// Encode a `SocketAddr` as the C `sockaddr_*` structure `bind(2)` expects.
fn sockaddr_of(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: `sockaddr_storage` is plain old data; all-zero is a valid (unspecified) value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sockaddr_storage` is larger than and aligned for `sockaddr_in`.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: `sockaddr_storage` is larger than and aligned for `sockaddr_in6`.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
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
