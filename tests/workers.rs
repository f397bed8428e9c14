//! `--workers N`: a supervisor and its reactor processes, seen from outside — the processes a
//! user would find in `ps`, the answers clients get while processes die and are replaced, the
//! exit statuses, and `/metrics` telling the truth about all of them.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::metrics::parse::parse;
use common::{get, parse_response, spawn_binary, Client, ServerProcess};

/// The supervisor's children, as the kernel lists them.
fn children(server: &ServerProcess) -> Vec<u32> {
    let pid = server.pid();
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Wait until the supervisor has `n` children that all differ from `not` (processes replaced),
/// and every one answers; returns them.
fn wait_for_children(server: &ServerProcess, n: usize, not: &[u32], within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    loop {
        let now = children(server);
        if now.len() == n && now.iter().all(|pid| !not.contains(pid)) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "children {now:?}, wanted {n} new ones (not {not:?}); log:\n{}",
            server.stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Start `--workers 2 --pool 1` plus `args` and wait until both processes are ready.
fn supervised(args: &[&str]) -> ServerProcess {
    let mut all = vec!["--workers", "2", "--pool", "1"];
    all.extend_from_slice(args);
    let server = spawn_binary(&all);
    server.wait_for_log_line(
        &["all 2 worker processes are ready"],
        Duration::from_secs(20),
    );
    server
}

/// Clients that send `GET /plaintext` back to back on keep-alive connections, each on its own
/// thread, reconnecting whenever the server closes: what a load generator sees, counted.
struct Hammer {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Hammer {
    fn start(addr: SocketAddr, clients: usize) -> Hammer {
        Hammer::start_with(addr, clients, true)
    }

    /// `keep_alive: false`: a new connection for every request (`Connection: close`), so
    /// that new connections keep arriving whatever the server does.
    fn start_with(addr: SocketAddr, clients: usize, keep_alive: bool) -> Hammer {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match keep_alive_run(addr, &stop, &ok, keep_alive) {
                            Ok(()) => {}
                            Err(why) => {
                                eprintln!("client error: {why}");
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        Hammer {
            stop,
            ok,
            failed,
            threads,
        }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stop; the requests answered 200, and the requests that failed (an error status, a reset,
    /// a connection closed before the answer, a refused connection).
    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("a client thread");
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// One connection's life: requests until the server says `Connection: close` (Ok) or until
/// something fails (Err).
fn keep_alive_run(
    addr: SocketAddr,
    stop: &AtomicBool,
    ok: &AtomicU64,
    keep_alive: bool,
) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let request = if keep_alive {
            get("/plaintext")
        } else {
            "GET /plaintext HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_string()
        };
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let response = loop {
            if let Some((response, used)) = parse_response(&buf, false)? {
                buf.drain(..used);
                break response;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => return Err("closed before the answer".into()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
        };
        if response.status != 200 {
            return Err(format!("status {}", response.status));
        }
        ok.fetch_add(1, Ordering::Relaxed);
        if response.says_close() {
            return Ok(());
        }
    }
    Ok(())
}

/// Wait until the hammer has had `more` requests answered beyond `from`.
fn wait_for_progress(hammer: &Hammer, from: u64, more: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while hammer.ok() < from + more {
        assert!(Instant::now() < deadline, "the clients stalled");
        thread::sleep(Duration::from_millis(10));
    }
}

/// The start-up line says how many processes and threads; `--workers 2` runs two processes
/// that serve on one port; `--workers 1` runs none (the server is the process itself).
#[test]
fn workers_2_runs_two_processes_on_one_port() {
    let server = supervised(&[]);
    assert!(
        server
            .start_line
            .contains("workers 2, each with pool 1 and queue"),
        "{}",
        server.start_line
    );
    let pids = children(&server);
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert_eq!(
        Client::connect(server.addr())
            .request(get("/plaintext"))
            .status,
        200
    );

    let single = spawn_binary(&["--pool", "1"]);
    assert!(
        children(&single).is_empty(),
        "--workers 1 started processes"
    );
    assert!(single.start_line.contains("workers 1"));
}

/// A process killed with SIGKILL is replaced; clients keep being served, and the requests the
/// kill cost are at most those in flight on its connections. The supervisor logs the death.
#[test]
fn a_killed_process_is_replaced() {
    let server = supervised(&[]);
    let before = children(&server);
    let hammer = Hammer::start(server.addr(), 8);
    wait_for_progress(&hammer, 0, 200);
    let victim = before[0];
    // SAFETY: sending a signal to a process of our own test's server.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);
    let after = wait_for_children(&server, 2, &[victim], Duration::from_secs(10));
    assert!(
        after.contains(&before[1]),
        "the other process was left alone"
    );
    let at_kill = hammer.ok();
    wait_for_progress(&hammer, at_kill, 500);
    let (ok, failed) = hammer.finish();
    eprintln!("SIGKILL of one of two processes: {ok} answered, {failed} failed");
    // Eight clients, one request in flight each: the kill can cost at most those.
    assert!(failed <= 8, "{failed} requests failed");
    server.wait_for_log_line(
        &[&format!("(pid {victim}) exited: signal 9 (SIGKILL)")],
        Duration::from_secs(5),
    );
    server.wait_for_log_line(
        &["died; starting a new one in 100 ms"],
        Duration::from_secs(5),
    );
}

/// SIGHUP replaces every process, one at a time, under load, and no request fails: the
/// listening socket stays open, the new process accepts before the old one drains.
#[test]
fn sighup_replaces_every_process_without_a_failed_request() {
    let server = supervised(&[]);
    let before = children(&server);
    let hammer = Hammer::start(server.addr(), 8);
    wait_for_progress(&hammer, 0, 200);
    server.signal(libc::SIGHUP);
    server.wait_for_log_line(&["reload done"], Duration::from_secs(20));
    wait_for_children(&server, 2, &before, Duration::from_secs(40));
    let at_reload = hammer.ok();
    wait_for_progress(&hammer, at_reload, 500);
    // Twice more, back to back: a reload during a reload.
    let middle = children(&server);
    server.signal(libc::SIGHUP);
    server.signal(libc::SIGHUP);
    wait_for_children(&server, 2, &middle, Duration::from_secs(40));
    let (ok, failed) = hammer.finish();
    eprintln!("three SIGHUPs under load: {ok} answered, {failed} failed");
    assert_eq!(failed, 0, "requests failed during the reload");
    assert!(children(&server).len() == 2);
}

/// SIGTERM stops every process (each drains) and the supervisor exits 0 after them; a request
/// in progress is answered first.
#[test]
fn sigterm_stops_every_process_and_exits_0() {
    let mut server = supervised(&[]);
    let pids = children(&server);
    let mut slow = Client::connect(server.addr());
    slow.send(get("/sleep?ms=500"));
    thread::sleep(Duration::from_millis(100));
    server.signal(libc::SIGTERM);
    assert_eq!(slow.read_response().status, 200);
    assert_eq!(server.exit_code_within(Duration::from_secs(20)), 0);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} outlived the supervisor"
        );
    }
}

/// A second SIGTERM ends the supervisor at once, and its processes follow without draining.
#[test]
fn a_second_sigterm_stops_at_once() {
    let mut server = supervised(&[]);
    let pids = children(&server);
    let mut slow = Client::connect(server.addr());
    slow.send(get("/sleep?ms=20000"));
    thread::sleep(Duration::from_millis(100));
    server.signal(libc::SIGTERM);
    thread::sleep(Duration::from_millis(200));
    server.signal(libc::SIGTERM);
    assert_eq!(server.exit_code_within(Duration::from_secs(5)), 130);
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids
        .iter()
        .any(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "a process outlived the supervisor"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A supervisor killed with SIGKILL leaves no process serving on its own: the kernel tells each
/// process its parent died, and each stops.
#[test]
fn processes_do_not_outlive_a_killed_supervisor() {
    let server = supervised(&[]);
    let pids = children(&server);
    server.signal(libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids
        .iter()
        .any(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "a process outlived the supervisor"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A scrape of any one process shows both processes' series, each under its `pid`, parses
/// strictly, and counts the other process's requests (posted at most a second ago).
#[test]
fn metrics_from_any_process_show_all_of_them() {
    let server = supervised(&[]);
    let pids = children(&server);
    // Enough connections that both processes serve some.
    let hammer = Hammer::start(server.addr(), 8);
    wait_for_progress(&hammer, 0, 2000);
    let (answered, failed) = hammer.finish();
    assert_eq!(failed, 0);
    thread::sleep(Duration::from_millis(1500));
    let response = Client::connect(server.addr()).request(get("/metrics"));
    assert_eq!(response.status, 200);
    let text = response.text().to_string();
    let exposition = parse(&text).unwrap_or_else(|why| panic!("{why}\n{text}"));
    let mut total = 0.0;
    for pid in &pids {
        let pid = pid.to_string();
        let series = [
            ("pid", pid.as_str()),
            ("route", "/plaintext"),
            ("status", "2xx"),
        ];
        total += exposition
            .value("evloop_requests_total", &series)
            .unwrap_or_else(|| panic!("no series for pid {pid}\n{text}"));
    }
    assert_eq!(total, answered as f64, "{text}");
    assert_eq!(text.matches("# TYPE evloop_requests_total ").count(), 1);
}

/// Under systemd (`Type=notify`), the supervisor says `READY=1` once, when both processes are
/// ready (the processes themselves say nothing to systemd), `RELOADING=1` and `READY=1` around
/// a reload, and `STOPPING=1` at SIGTERM.
#[test]
fn the_supervisor_notifies_systemd() {
    use std::os::unix::net::UnixDatagram;
    let path = std::env::temp_dir().join(format!("evloop-notify-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let path_text = path.to_str().expect("a UTF-8 path").to_string();
    let env = [("NOTIFY_SOCKET", path_text.as_str())];
    let spawn = common::Spawn {
        env: &env,
        ..Default::default()
    };
    let mut server = common::spawn_binary_with(&["--workers", "2", "--pool", "1"], spawn);
    let next = || {
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1");
    let before = children(&server);
    server.signal(libc::SIGHUP);
    assert_eq!(next(), "RELOADING=1");
    assert_eq!(next(), "READY=1");
    wait_for_children(&server, 2, &before, Duration::from_secs(20));
    server.signal(libc::SIGTERM);
    assert_eq!(next(), "STOPPING=1");
    assert_eq!(server.exit_code_within(Duration::from_secs(20)), 0);
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 256];
    assert!(socket.recv(&mut buf).is_err(), "a process spoke to systemd");
    let _ = std::fs::remove_file(&path);
}

/// `--reuse-port` gives each process a socket of its own on the same port: the kernel deals
/// new connections to both, and a reload replaces both processes too.
#[test]
fn reuse_port_spreads_connections_over_both_processes() {
    let server = supervised(&["--reuse-port"]);
    assert!(
        server.start_line.contains("SO_REUSEPORT"),
        "{}",
        server.start_line
    );
    let pids = children(&server);
    // The kernel picks a socket by a hash of the client's port: 64 connections all landing on
    // one of two sockets has odds of 2 in 2^64.
    for _ in 0..64 {
        assert_eq!(
            Client::connect(server.addr())
                .request(get("/plaintext"))
                .status,
            200
        );
    }
    thread::sleep(Duration::from_millis(1500));
    let text = Client::connect(server.addr())
        .request(get("/metrics"))
        .text()
        .to_string();
    let exposition = parse(&text).unwrap_or_else(|why| panic!("{why}\n{text}"));
    for pid in &pids {
        let pid = pid.to_string();
        let series = [
            ("pid", pid.as_str()),
            ("route", "/plaintext"),
            ("status", "2xx"),
        ];
        let served = exposition.value("evloop_requests_total", &series);
        assert!(
            served.is_some_and(|n| n > 0.0),
            "pid {pid} served none\n{text}"
        );
    }
    server.signal(libc::SIGHUP);
    wait_for_children(&server, 2, &pids, Duration::from_secs(20));
    assert_eq!(
        Client::connect(server.addr())
            .request(get("/plaintext"))
            .status,
        200
    );
}

/// SIGTERM sent to every process at once (`pkill evloop`, or a service manager that signals
/// the whole group) is still a graceful stop: each process gets a second SIGTERM from the
/// supervisor and keeps draining, so a request in progress is answered.
#[test]
fn sigterm_to_the_whole_group_still_drains() {
    let mut server = supervised(&[]);
    let mut slow: Vec<Client> = (0..4).map(|_| Client::connect(server.addr())).collect();
    for client in &mut slow {
        client.send(get("/sleep?ms=700"));
    }
    thread::sleep(Duration::from_millis(150));
    for pid in children(&server) {
        // SAFETY: signalling a process of our own test's server.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    server.signal(libc::SIGTERM);
    for client in &mut slow {
        assert_eq!(client.read_response().status, 200);
    }
    assert_eq!(server.exit_code_within(Duration::from_secs(20)), 0);
}

/// Processes whose start-up hook fails make the supervisor give up at once, with the start-up
/// status 3 and a line saying why, instead of restarting them in a loop.
#[test]
fn a_failing_start_up_makes_the_supervisor_give_up() {
    let env = [("EVLOOP_TEST_STARTUP_FAIL", "error")];
    let spawn = common::Spawn {
        env: &env,
        early: true,
        ..Default::default()
    };
    let mut server = common::spawn_binary_with(&["--workers", "2", "--pool", "1"], spawn);
    assert_eq!(server.exit_code_within(Duration::from_secs(20)), 3);
    let log = server.final_stderr(Duration::from_secs(10));
    assert!(
        log.contains("before every process was ready; giving up"),
        "{log}"
    );
    assert!(
        log.contains("test failure"),
        "the hook is not named:\n{log}"
    );
}

/// A reload whose new processes take a while to start (their start-up hooks run 800 ms)
/// refuses nothing and answers no 503, though new connections keep coming: a new process does
/// not accept until it is ready, and the old one serves until then.
#[test]
fn a_slow_start_up_during_a_reload_costs_no_request() {
    let env = [("EVLOOP_TEST_STARTUP_DELAY_MS", "800")];
    let spawn = common::Spawn {
        env: &env,
        ..Default::default()
    };
    let server = common::spawn_binary_with(&["--workers", "2", "--pool", "1"], spawn);
    server.wait_for_log_line(
        &["all 2 worker processes are ready"],
        Duration::from_secs(20),
    );
    let before = children(&server);
    let hammer = Hammer::start_with(server.addr(), 8, false);
    wait_for_progress(&hammer, 0, 200);
    server.signal(libc::SIGHUP);
    server.wait_for_log_line(&["reload done"], Duration::from_secs(30));
    wait_for_children(&server, 2, &before, Duration::from_secs(30));
    let at_reload = hammer.ok();
    wait_for_progress(&hammer, at_reload, 200);
    let (ok, failed) = hammer.finish();
    eprintln!("a slow reload under load: {ok} answered, {failed} failed");
    assert_eq!(failed, 0);
}
