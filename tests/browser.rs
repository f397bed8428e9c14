//! `GET /dashboard` in a real browser: headless Chromium, driven over WebDriver by chromedriver,
//! opens the page served by the `evloop` binary; the test reads the numbers the page shows, puts
//! load on the server (a client hammering `/plaintext`, then `/cpu?ms=300&mode=inline`, which
//! blocks the loop), reads them again, and checks that they moved and that the browser's console
//! holds no error.
//!
//! The WebDriver client is a few lines of HTTP/1.1 over a `TcpStream` with JSON bodies.
//!
//! Where chromium or chromedriver is not installed the test is skipped with a note on stderr —
//! unless `EVLOOP_REQUIRE_BROWSER` is set (CI installs both and sets it), then it fails. With
//! `EVLOOP_SCREENSHOTS=1` it also saves docs/dashboard-idle.png, docs/dashboard-inline.png and
//! docs/dashboard-workers.png (and waits a few seconds more, so that the charts have a history).

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{get, spawn_binary, Client, Stopped};

/// The first of `names` found on `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// chromedriver and the browser it drives, or `None` (after a loud note) when either is missing
/// and the browser is not required.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let driver = on_path(&["chromedriver"]);
    let browser = on_path(&["chromium", "chromium-browser", "google-chrome"]);
    match (driver, browser) {
        (Some(driver), Some(browser)) => Some((driver, browser)),
        (driver, browser) => {
            let missing = format!(
                "chromedriver: {}, chromium: {}",
                driver.map_or("missing".into(), |p| p.display().to_string()),
                browser.map_or("missing".into(), |p| p.display().to_string()),
            );
            if std::env::var_os("EVLOOP_REQUIRE_BROWSER").is_some() {
                panic!("EVLOOP_REQUIRE_BROWSER is set but the browser is missing ({missing})");
            }
            // Straight to the process's stderr, not `eprintln!`, which the test harness
            // captures and hides for a test that passes: a skip should be seen.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED browser test dashboard_moves_in_a_real_browser: {missing}; \
                 apt-get install chromium chromium-driver (set EVLOOP_REQUIRE_BROWSER=1 to \
                 make this a failure) ***\n"
            );
            None
        }
    }
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("bind port 0")
        .port()
}

/// One HTTP/1.1 request to chromedriver (`Connection: close`), its JSON `value` back.
fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{method} {path}: {e}"))?;
    // chromedriver keeps the connection open whatever the request says: read the head, then
    // exactly `Content-Length` bytes (it writes `Content-Length:251`, no space).
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let (head, body_start, length) = loop {
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if n == 0 {
            return Err(format!("{method} {path}: closed after {raw:?}"));
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_string();
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .ok_or_else(|| format!("{method} {path}: no Content-Length in {head:?}"))?;
            break (head, end + 4, length);
        }
    };
    while raw.len() < body_start + length {
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if n == 0 {
            return Err(format!("{method} {path}: closed mid-body"));
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let status = head.split(' ').nth(1).unwrap_or("").to_string();
    let body = String::from_utf8_lossy(&raw[body_start..body_start + length]).to_string();
    let json: Value =
        serde_json::from_str(&body).map_err(|e| format!("{method} {path}: {e} in {body:?}"))?;
    if status != "200" {
        return Err(format!("{method} {path}: {status} {json}"));
    }
    Ok(json["value"].clone())
}

/// chromedriver with one headless Chromium session; quits the session and kills the process
/// group (chromedriver and every browser process it started) on drop.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    fn start(driver: &Path, browser: &Path) -> Browser {
        let port = free_port();
        let mut child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if call(addr, "GET", "/status", None).is_ok_and(|s| s["ready"] == true) {
                break;
            }
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromedriver did not come up on {addr}");
            }
            thread::sleep(Duration::from_millis(50));
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser.display().to_string(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1100,760"],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        }}});
        let mut browser = Browser {
            driver: child,
            addr,
            session: String::new(),
        };
        let session = browser
            .call("POST", "/session", Some(&capabilities))
            .unwrap_or_else(|e| panic!("new WebDriver session: {e}"));
        browser.session = session["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        call(self.addr, method, path, body)
    }

    /// A command on this session: `path` is what follows `/session/{id}`.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        self.call(method, &full, body.as_ref())
            .unwrap_or_else(|e| panic!("WebDriver: {e}"))
    }

    fn open(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })));
    }

    /// The rendered text of the element with this id.
    fn text(&self, id: &str) -> String {
        let found = self.command(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": format!("#{id}") })),
        );
        let element = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element #{id}: {found}"))
            .to_string();
        self.command("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Poll the text of `#id` for up to `within` until `wanted` accepts it; return it, or fail
    /// naming the last text seen.
    fn text_where(&self, id: &str, within: Duration, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = self.text(id);
            if wanted(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "#{id} never became what was wanted within {within:?}; it says {text:?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The browser's console and network log since the last call (chromedriver's extension).
    fn console(&self) -> Vec<Value> {
        match self.command("POST", "/se/log", Some(json!({ "type": "browser" }))) {
            Value::Array(entries) => entries,
            other => panic!("the browser log is not a list: {other}"),
        }
    }

    /// A PNG of the page.
    fn screenshot(&self) -> Vec<u8> {
        let encoded = self.command("GET", "/screenshot", None);
        base64_decode(encoded.as_str().expect("a base64 string"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        // SAFETY: kill(2) on the process group this test created for chromedriver (its pid);
        // it signals nothing else.
        unsafe {
            libc::kill(-(self.driver.id() as i32), libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}

/// Standard base64 (as WebDriver sends screenshots), padding and whitespace ignored.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for six in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(six);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Save a screenshot under docs/ when `EVLOOP_SCREENSHOTS` is set.
fn maybe_screenshot(browser: &Browser, name: &str) {
    if std::env::var_os("EVLOOP_SCREENSHOTS").is_none() {
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    std::fs::write(&path, browser.screenshot()).expect("write the screenshot");
    eprintln!("saved {}", path.display());
}

/// A number of milliseconds as the page writes it: `"0.04 ms"`, `"301 ms"`.
fn millis(text: &str) -> f64 {
    text.trim_end_matches(" ms")
        .parse()
        .unwrap_or_else(|_| panic!("not a time in ms: {text:?}"))
}

/// Console entries that are errors.
fn errors(entries: &[Value]) -> Vec<&Value> {
    entries
        .iter()
        .filter(|entry| entry["level"] == "SEVERE")
        .collect()
}

#[test]
fn dashboard_moves_in_a_real_browser() {
    let Some((driver, chromium)) = browser_tools() else {
        return;
    };
    let started = Instant::now();
    // A pool of 4: the viewer's stream holds one worker, which leaves room for /cpu.
    let server = spawn_binary(&["--pool", "4"]);
    let addr = server.addr();
    let browser = Browser::start(&driver, &chromium);
    browser.open(&format!("http://{addr}/dashboard"));

    // Idle: the stream is live and frames arrive.
    browser.text_where("status", Duration::from_secs(10), |t| t.starts_with("live"));
    let pid = browser.text_where("pid", Duration::from_secs(5), |t| t != "–");
    assert_eq!(
        pid,
        server.pid().to_string(),
        "the page shows the server's pid"
    );
    // Screenshots want some history on the page's charts; the test alone does not.
    let screenshots = std::env::var_os("EVLOOP_SCREENSHOTS").is_some();
    if screenshots {
        thread::sleep(Duration::from_secs(5));
    }
    let idle_peak = millis(&browser.text_where("peak", Duration::from_secs(5), |t| t != "–"));
    assert!(idle_peak < 100.0, "an idle loop peaks at {idle_peak} ms");
    let idle_requests = browser.text("requests");
    maybe_screenshot(&browser, "dashboard-idle.png");

    // A client asking for /plaintext as fast as it can: the page's requests table shows the route.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        thread::spawn(move || {
            let mut client = Client::connect(addr);
            while !stop.load(Ordering::Relaxed) {
                let response = client.request(get("/plaintext"));
                assert_eq!(response.status, 200);
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let requests = browser.text_where("requests", Duration::from_secs(5), |t| {
        t.lines().any(|line| line.contains("/plaintext"))
    });
    assert_ne!(requests, idle_requests);

    // A handler that blocks the loop for 300 ms: the longest turn and the peak jump to ≥ 300 ms,
    // and the slow-turn table names the handler.
    let mut client = Client::connect(addr);
    let response = client.request(get("/cpu?ms=300&mode=inline"));
    assert_eq!(response.status, 200, "{}", response.text());
    let peak = browser.text_where("peak", Duration::from_secs(5), |t| {
        t != "–" && millis(t) >= 290.0
    });
    let slow = browser.text_where("slow", Duration::from_secs(5), |t| t.contains("/cpu"));
    if screenshots {
        for ms in [150, 450, 300] {
            thread::sleep(Duration::from_millis(1500));
            let response = client.request(get(&format!("/cpu?ms={ms}&mode=inline")));
            assert_eq!(response.status, 200, "{}", response.text());
        }
        thread::sleep(Duration::from_secs(1));
    }
    maybe_screenshot(&browser, "dashboard-inline.png");
    stop.store(true, Ordering::Relaxed);
    load.join().expect("the load thread");
    assert!(sent.load(Ordering::Relaxed) > 0);

    // Nothing went wrong in the page.
    let console = browser.console();
    let errors = errors(&console);
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    eprintln!(
        "dashboard in chromium: idle peak {idle_peak} ms, loaded peak {peak}, slow turns {slow:?}; \
         {} /plaintext requests; {:?}",
        sent.load(Ordering::Relaxed),
        started.elapsed()
    );
}

/// With `--workers 2`, the page lists both processes, each with its own sparkline, and marks one
/// whose loop stops (SIGSTOP, as a long turn would) as stalled, then no longer once it runs.
#[test]
fn with_workers_the_page_shows_every_process() {
    let Some((driver, chromium)) = browser_tools() else {
        return;
    };
    let server = spawn_binary(&["--workers", "2", "--pool", "2"]);
    server.wait_for_log_line(
        &["all 2 worker processes are ready"],
        Duration::from_secs(20),
    );
    let addr = server.addr();
    let browser = Browser::start(&driver, &chromium);
    browser.open(&format!("http://{addr}/dashboard"));
    browser.text_where("status", Duration::from_secs(10), |t| t.starts_with("live"));
    // For a screenshot: clients on both processes for a few seconds, so that the rows move.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    if std::env::var_os("EVLOOP_SCREENSHOTS").is_some() {
        for _ in 0..4 {
            let stop = Arc::clone(&stop);
            load.push(thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut client = Client::connect(addr);
                    for _ in 0..200 {
                        let _ = client.request(get("/plaintext"));
                    }
                }
            }));
        }
        thread::sleep(Duration::from_secs(6));
    }
    let own: u32 = browser
        .text_where("pid", Duration::from_secs(5), |t| t != "–")
        .parse()
        .expect("a pid");
    // Both processes, each in a row of the table: "PID (this page) …" and the other's "PID …".
    let table = browser.text_where("processes", Duration::from_secs(10), |t| {
        t.lines().filter(|line| line.contains("turning")).count() == 2
    });
    let other: u32 = table
        .lines()
        .filter(|line| line.contains("turning"))
        .filter_map(|line| line.split_whitespace().next()?.parse().ok())
        .find(|&pid| pid != own)
        .unwrap_or_else(|| panic!("no other process in {table:?}"));

    let stopped = Stopped::new(other);
    let stalled = browser.text_where("processes", Duration::from_secs(5), |t| {
        t.lines()
            .any(|line| line.starts_with(&other.to_string()) && line.contains("stalled"))
    });
    if !load.is_empty() {
        thread::sleep(Duration::from_millis(1500));
    }
    maybe_screenshot(&browser, "dashboard-workers.png");
    stop.store(true, Ordering::Relaxed);
    drop(stopped);
    browser.text_where("processes", Duration::from_secs(5), |t| {
        t.lines().filter(|line| line.contains("turning")).count() == 2
    });

    for thread in load {
        thread.join().expect("a load thread");
    }
    let console = browser.console();
    let errors = errors(&console);
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    eprintln!("dashboard in chromium, --workers 2: {stalled:?}");
}
