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
//!   [`set_thread_nice`] (nice +19 in `--worker-priority low`);
//! - processes for the supervisor of `--workers N` (`crate::supervisor`): [`reserve_port`] for
//!   one socket per process, [`spawn_with_fds`] to start a process
//!   that inherits chosen descriptors at chosen numbers (and dies with its parent),
//!   [`pidfd_open`] to hear of its exit on a poller, [`try_reap`] and [`send_signal`]; and in
//!   the started process, [`adopt_fd`] to take over what it inherited;
//! - [`SharedMemory`]: pages that several processes map at once, where each process of
//!   `--workers N` publishes its metrics for the others to read (`crate::metrics::shared`).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
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
    let socket = bound_socket(addr, false)?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// A socket bound to `addr` with `SO_REUSEPORT` but not listening, so the kernel deals it no
/// connection: the supervisor's hold on the port (which picks one, for port 0) with
/// `--reuse-port`, and each process's own socket on it, until the process calls listen(2)
/// once it is ready. Sockets bound this way to the same address share its connections, by a
/// hash of each client's address and port.
pub fn reserve_port(addr: SocketAddr) -> io::Result<TcpListener> {
    Ok(bound_socket(addr, true)?.into())
}

/// A non-blocking TCP socket bound to `addr` with `SO_REUSEADDR` (and `SO_REUSEPORT` if asked),
/// not yet listening. `Socket::new` sets close-on-exec itself (atomically, with
/// `SOCK_CLOEXEC`), so a child process inherits it only where `spawn_with_fds` hands it on.
fn bound_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// The lowest descriptor number [`spawn_with_fds`] copies from: above every number a child is
/// given, so that placing one inherited descriptor never overwrites another.
const HIGH_FD: RawFd = 64;

/// The highest descriptor number [`spawn_with_fds`] may give a child; every descriptor above it
/// is closed at `exec`.
const HIGHEST_GIVEN: RawFd = 9;

/// Start `command` so that the new process finds a copy of each `(ours, theirs)` pair's
/// descriptor `ours` at number `theirs`, open across `exec`; every other descriptor of ours
/// stays close-on-exec, as the standard library leaves them. The process is also sent SIGTERM
/// if this thread ends (`PR_SET_PDEATHSIG`), so that a supervisor that dies, even by SIGKILL,
/// takes its processes with it instead of leaving them serving unsupervised. Descriptors above
/// 9 (`HIGHEST_GIVEN`) that this process inherited without close-on-exec are not passed on.
pub fn spawn_with_fds(command: &mut Command, fds: &[(RawFd, RawFd)]) -> io::Result<Child> {
    // Copies above every target number, close-on-exec, so that `dup2` below can never close
    // one source while placing another.
    let mut copies = Vec::with_capacity(fds.len());
    for &(ours, theirs) in fds {
        assert!(
            theirs < HIGH_FD,
            "a target descriptor must be below {HIGH_FD}"
        );
        // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor, which we own from here on.
        let copy = check(unsafe { libc::fcntl(ours, libc::F_DUPFD_CLOEXEC, HIGH_FD) })?;
        // SAFETY: `copy` was just returned by the kernel and is owned by nobody else.
        copies.push((unsafe { OwnedFd::from_raw_fd(copy) }, theirs));
    }
    let pairs: Vec<(RawFd, RawFd)> = copies.iter().map(|(c, t)| (c.as_raw_fd(), *t)).collect();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe
    // calls are allowed: dup2, prctl, getppid and fcntl are; it allocates nothing (`pairs` was
    // built before the fork) and takes no lock.
    unsafe {
        command.pre_exec(move || {
            for &(from, to) in &pairs {
                // dup2 onto a different number clears close-on-exec on the copy.
                if libc::dup2(from, to) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the line above: then nobody will send SIGTERM.
            // (An error made from a number: nothing may allocate here.)
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            // Descriptors this process inherited without close-on-exec (from whoever started
            // the supervisor) go no further: mark every one above ours close-on-exec. An older
            // kernel without close_range(2) just leaves them.
            libc::syscall(
                libc::SYS_close_range,
                (HIGHEST_GIVEN + 1) as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
            );
            Ok(())
        });
    }
    let child = command.spawn();
    drop(copies);
    child
}

/// A descriptor that becomes readable when process `pid` (a child of ours) exits: its exit as
/// an event for a poller, with no SIGCHLD handler. Linux 5.3 and later.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor (close-on-exec), owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Restore SIGCHLD's default action. A supervisor started by a parent that ignores SIGCHLD
/// would inherit that, and then the kernel reaps its children itself: `waitpid` finds no
/// exit status, only `ECHILD`.
pub fn default_sigchld() {
    // SAFETY: setting a signal disposition to SIG_DFL has no preconditions.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
}

/// Collect child `pid`'s exit status if it has exited; `None` while it runs. Never blocks.
pub fn try_reap(pid: u32) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    // SAFETY: `status` is a valid, writable int; WNOHANG makes the call return at once.
    let reaped = check(unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) })?;
    Ok((reaped != 0).then(|| ExitStatus::from_raw(status)))
}

/// Send `signal` to process `pid`.
pub fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    check(unsafe { libc::kill(pid as libc::pid_t, signal) }).map(drop)
}

/// Take over descriptor `fd`, inherited from the process that started us: check it is open,
/// make it close-on-exec (so that it goes no further), and own it.
pub fn adopt_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only reads the flags; it fails with EBADF if `fd` is not open.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: as above, setting our own descriptor's flags.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) })?;
    // SAFETY: the descriptor is open, was handed to this process to own, and nothing else in
    // the process refers to it (it is taken once, at start-up).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Memory shared between processes: an anonymous file (`memfd_create`) mapped with
/// `MAP_SHARED`. The process that creates it passes the descriptor to the processes it
/// starts, which map the same pages with [`SharedMemory::adopt`]. It is seen only as a slice
/// of `AtomicU64`, so that every access is an atomic load or store: processes write to it
/// while others read, and atomics are what make that defined.
#[derive(Debug)]
pub struct SharedMemory {
    fd: OwnedFd,
    base: std::ptr::NonNull<std::sync::atomic::AtomicU64>,
    words: usize,
}

// SAFETY: the mapping is only ever accessed through atomics, from any thread.
unsafe impl Send for SharedMemory {}
// SAFETY: as above; `&SharedMemory` hands out only `&[AtomicU64]`.
unsafe impl Sync for SharedMemory {}

impl SharedMemory {
    /// `words` zeroed 64-bit words, in a new anonymous file.
    pub fn create(name: &str, words: usize) -> io::Result<SharedMemory> {
        let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
        // SAFETY: `name` is a valid C string; the flags are constants.
        let fd = check(unsafe {
            libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        })?;
        // SAFETY: the kernel just returned this descriptor; nobody else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let len = words
            .checked_mul(8)
            .and_then(|len| libc::off_t::try_from(len).ok())
            .ok_or_else(|| io::Error::other("shared memory too large"))?;
        // SAFETY: resizing a file we own; new bytes read as zero.
        check(unsafe { libc::ftruncate(fd.as_raw_fd(), len) })?;
        // Its size is final: a process that shrank it would make every other one's reads
        // fault (SIGBUS). Sealed, it cannot be resized by anyone.
        // SAFETY: F_ADD_SEALS on a memfd made with MFD_ALLOW_SEALING; the seals are constants.
        check(unsafe {
            libc::fcntl(
                fd.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
            )
        })?;
        SharedMemory::map(fd, words)
    }

    /// Map the shared memory behind `fd` (from [`SharedMemory::create`] in another process),
    /// all of it.
    pub fn adopt(fd: OwnedFd) -> io::Result<SharedMemory> {
        // SAFETY: `stat` is plain old data.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `stat` is valid and writable; fstat fails cleanly on a bad descriptor.
        check(unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) })?;
        let words = usize::try_from(stat.st_size).unwrap_or(0) / 8;
        SharedMemory::map(fd, words)
    }

    fn map(fd: OwnedFd, words: usize) -> io::Result<SharedMemory> {
        if words == 0 {
            return Err(io::Error::other("empty shared memory"));
        }
        // SAFETY: a fresh shared mapping of the whole file, which is at least `words * 8`
        // bytes long; the kernel picks the address.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                words * 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = std::ptr::NonNull::new(base.cast()).ok_or_else(io::Error::last_os_error)?;
        Ok(SharedMemory { fd, base, words })
    }

    /// The shared words.
    pub fn words(&self) -> &[std::sync::atomic::AtomicU64] {
        // SAFETY: the mapping is `words` 8-byte words, page-aligned (so aligned for AtomicU64),
        // lives as long as `self`, and is only ever accessed through atomics.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.words) }
    }

    /// The descriptor, to pass to a new process.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped; no reference into it outlives `self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.words * 8) };
    }
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

/// Milliseconds of `CLOCK_MONOTONIC`: one clock for every process of the machine (unlike an
/// `Instant`, which cannot leave its process), never set back. The processes of `--workers N`
/// date what they post on their scoreboard with it.
pub fn monotonic_ms() -> u64 {
    // SAFETY: `timespec` is plain old data.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
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
