//! The access log, written off the reactor's critical path.
//!
//! One line per response, with `--access-log`:
//!
//! ```text
//! [2026-12-01T23:50:42.151Z INFO  evloop::access] 127.0.0.1:53422 GET /plaintext 200 13 85us queue=0us
//!  └ when the turn that sent it began  └ target       └ client       └ method, path, status, body bytes,
//!                                                                     µs from dispatch to the last byte,
//!                                                                     µs its jobs waited for a worker
//! ```
//!
//! Beside the Common Log Format (`host ident authuser [date] "request" status bytes`, what
//! nginx and Apache write by default), it drops the two identity fields nobody fills, splits the
//! request line into method and path (the query string is left out: it often carries tokens),
//! and adds the two durations a Python operator cannot get from uvicorn's log: total time and
//! time spent waiting for a worker thread. `docs/OPERATIONS.md` shows it side by side with CLF.
//!
//! # Why not `log::info!` per request
//!
//! A logger writes each line to stderr with a `write(2)` of its own, on the thread that logs:
//! here, the reactor. A system call per request is a measurable part of a plaintext request's
//! cost, and a terminal or a pipe that is slow to read makes each write *block*, stalling every
//! connection. So the reactor only appends the line to a buffer ([`AccessLog::line`]); once a
//! turn, if anything was logged, the buffer is handed to a writer thread over a bounded channel
//! ([`AccessLog::flush`]), and an empty one is taken back in exchange. The reactor never
//! waits: if the writer has fallen [`BACKLOG`] buffers behind, the turn's lines are dropped and
//! counted (`evloop_access_log_dropped_lines_total`), which is what nginx's `buffer=` and every
//! non-blocking logger do too. A lost log line is better than a stalled server.
//!
//! The writer writes each buffer in pieces of at most [`PIPE_ATOMIC`] bytes cut at line ends,
//! so that lines from several processes of `--workers N` sharing one stderr pipe never mix.

use std::io::{self, Write};
use std::thread;
use std::time::SystemTime;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

/// Buffers the writer may be behind before lines are dropped.
pub const BACKLOG: usize = 64;

/// Writes to a pipe of at most this many bytes are never interleaved with other writers'
/// (POSIX `PIPE_BUF` on Linux).
pub const PIPE_ATOMIC: usize = 4096;

/// The reactor's side of the access log.
#[derive(Debug)]
pub struct AccessLog {
    /// Lines of this turn.
    buf: Vec<u8>,
    /// The line prefix of this turn: `[timestamp INFO  evloop::access] `, made once a turn.
    prefix: Vec<u8>,
    /// Which process of `--workers N` this is, for the prefix.
    worker: Option<usize>,
    /// Lines in `buf`.
    lines: u64,
    full: Sender<Vec<u8>>,
    empty: Receiver<Vec<u8>>,
    /// Lines dropped because the writer was behind.
    dropped: u64,
    writer: Option<thread::JoinHandle<()>>,
}

impl AccessLog {
    /// Start the writer thread, writing to stderr. `worker` names the process in each line
    /// (`--workers N`).
    pub fn start(worker: Option<usize>) -> io::Result<AccessLog> {
        AccessLog::start_with(worker, io::stderr)
    }

    /// Start the writer thread, writing to what `open` returns (tests: a pipe or a buffer).
    pub fn start_with<W, F>(worker: Option<usize>, open: F) -> io::Result<AccessLog>
    where
        W: Write,
        F: FnOnce() -> W + Send + 'static,
    {
        let (full, full_rx) = bounded::<Vec<u8>>(BACKLOG);
        let (empty_tx, empty) = bounded::<Vec<u8>>(BACKLOG + 1);
        let writer = thread::Builder::new()
            .name("evloop-access-log".into())
            .spawn(move || {
                let mut out = open();
                for mut buf in full_rx {
                    write_lines(&mut out, &buf);
                    buf.clear();
                    let _ = empty_tx.try_send(buf);
                }
                let _ = out.flush();
            })?;
        Ok(AccessLog {
            buf: Vec::new(),
            prefix: Vec::new(),
            worker,
            lines: 0,
            full,
            empty,
            dropped: 0,
            writer: Some(writer),
        })
    }

    /// Append one line. `write` writes the fields after the prefix, without the newline.
    pub fn line(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        if self.prefix.is_empty() {
            self.prefix = prefix(SystemTime::now(), self.worker);
        }
        self.buf.extend_from_slice(&self.prefix);
        write(&mut self.buf);
        self.buf.push(b'\n');
        self.lines += 1;
    }

    /// End of a turn: hand this turn's lines to the writer. Never blocks. Returns how many
    /// lines were dropped instead (the writer was behind).
    pub fn flush(&mut self) -> u64 {
        self.prefix.clear();
        if self.buf.is_empty() {
            return 0;
        }
        let lines = std::mem::take(&mut self.lines);
        let next = self.empty.try_recv().unwrap_or_default();
        let full = std::mem::replace(&mut self.buf, next);
        match self.full.try_send(full) {
            Ok(()) => 0,
            // No warning in the log here: the writer is behind because stderr is slow, and a
            // log line from this thread would block on that same stderr.
            Err(TrySendError::Full(mut full) | TrySendError::Disconnected(mut full)) => {
                self.dropped += lines;
                full.clear();
                self.buf = full;
                lines
            }
        }
    }

    /// Lines dropped since start because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Hand over what is left and wait until the writer has written everything (at exit).
    pub fn finish(mut self) {
        let _ = self.flush();
        self.close();
    }

    fn close(&mut self) {
        // Closing the channel ends the writer's loop once it has written what it holds.
        let (closed, _) = bounded(0);
        drop(std::mem::replace(&mut self.full, closed));
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        let _ = self.flush();
        self.close();
    }
}

/// `[2026-12-01T23:50:42.151Z INFO  evloop::access] ` — the same shape as every other log line
/// of the server, so one reader reads both.
fn prefix(now: SystemTime, worker: Option<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(b'[');
    rfc3339_millis(&mut out, now);
    out.extend_from_slice(b" INFO  evloop::access");
    if let Some(worker) = worker {
        let _ = write!(out, " worker {worker}");
    }
    out.extend_from_slice(b"] ");
    out
}

/// `2026-12-01T23:50:42.151Z`, in UTC.
fn rfc3339_millis(out: &mut Vec<u8>, now: SystemTime) {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    );
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Write `buf` (whole lines) in pieces of at most [`PIPE_ATOMIC`] bytes that end at a line end
/// (a single longer line goes alone). An error (a closed stderr) loses the lines, nothing else.
fn write_lines(out: &mut impl Write, buf: &[u8]) {
    let mut rest = buf;
    while !rest.is_empty() {
        let window = &rest[..rest.len().min(PIPE_ATOMIC)];
        let cut = if window.len() == rest.len() {
            rest.len()
        } else {
            match window.iter().rposition(|&b| b == b'\n') {
                Some(end) => end + 1,
                // One line longer than the window: up to its end.
                None => rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |end| end + 1),
            }
        };
        if out.write_all(&rest[..cut]).is_err() {
            return;
        }
        rest = &rest[cut..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A writer that records each `write` call separately.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn dates_are_utc_rfc3339() {
        let mut out = Vec::new();
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_169_409_564);
        rfc3339_millis(&mut out, at);
        assert_eq!(String::from_utf8(out).unwrap(), "2026-12-01T23:56:49.564Z");
        let mut out = Vec::new();
        rfc3339_millis(
            &mut out,
            SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400),
        );
        assert_eq!(String::from_utf8(out).unwrap(), "2000-02-29T00:00:00.000Z");
    }

    /// Lines logged in a turn reach the writer after `flush`, prefixed and whole, in order.
    #[test]
    fn lines_arrive_whole_and_in_order() {
        let writes = Writes::default();
        let sink = writes.clone();
        let mut log = AccessLog::start_with(Some(2), move || sink).unwrap();
        for n in 0..3 {
            log.line(|out| out.extend_from_slice(format!("line {n}").as_bytes()));
        }
        assert_eq!(log.flush(), 0);
        log.line(|out| out.extend_from_slice(b"line 3"));
        log.finish();
        let text = String::from_utf8(writes.0.lock().unwrap().concat()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        for (n, line) in lines.iter().enumerate() {
            assert!(line.starts_with('['), "{line}");
            assert!(
                line.ends_with(&format!("INFO  evloop::access worker 2] line {n}")),
                "{line}"
            );
        }
    }

    /// A big buffer is written in pieces of at most PIPE_ATOMIC bytes, each ending a line.
    #[test]
    fn writes_are_pipe_atomic_and_line_aligned() {
        let line = vec![b'x'; 99];
        let mut buf = Vec::new();
        for _ in 0..200 {
            buf.extend_from_slice(&line);
            buf.push(b'\n');
        }
        let mut writes = Writes::default();
        write_lines(&mut writes, &buf);
        let pieces = writes.0.lock().unwrap().clone();
        assert!(pieces.len() >= 5);
        assert!(pieces
            .iter()
            .all(|p| p.len() <= PIPE_ATOMIC && p.ends_with(b"\n")));
        assert_eq!(pieces.concat(), buf);
    }

    /// A writer that never returns: the reactor's side keeps going, drops the lines it cannot
    /// hand over, and counts them.
    #[test]
    fn a_stuck_writer_costs_lines_not_time() {
        struct Stuck;
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                thread::sleep(Duration::from_secs(3600));
                Ok(0)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut log = AccessLog::start_with(None, || Stuck).unwrap();
        let started = std::time::Instant::now();
        for _ in 0..BACKLOG + 10 {
            log.line(|out| out.extend_from_slice(b"a"));
            let _ = log.flush();
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        // One buffer is with the writer, BACKLOG wait in the channel; the rest are dropped.
        assert!(log.dropped() >= 9, "{}", log.dropped());
        // Do not join the stuck writer.
        log.writer.take();
        std::mem::forget(log);
    }
}
