//! Configuration: the command line (SPEC §1), each option also read from an `EVLOOP_*`
//! environment variable, and the [`Config`] the server runs with.

use std::time::Duration;

use clap::Parser;

use crate::http::Limits;
use crate::pool::WorkerPriority;

/// The server's settings. [`Config::default`] gives the documented defaults, which is what a
/// library user starts from.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on (0: any free port, reported on the start-up line).
    pub port: u16,
    /// Worker threads in the pool.
    pub pool: usize,
    /// Jobs that may wait for a worker before new ones get 503.
    pub queue: usize,
    /// Reactor processes (SPEC §7); only 1 is implemented.
    pub workers: usize,
    /// Open connections at which accepting pauses.
    pub max_connections: usize,
    /// How long an idle keep-alive connection is kept.
    pub keep_alive_timeout: Duration,
    /// How long a client may take to send a complete request head (then 408).
    pub header_timeout: Duration,
    /// How long a client may pause while sending a body (then 408).
    pub body_timeout: Duration,
    /// From request fully read to response start, queueing and job included (then 504).
    pub request_timeout: Duration,
    /// Size limits for heads and bodies.
    pub limits: Limits,
    /// Most bytes of request bodies held in memory at once, over all connections.
    pub max_body_memory: usize,
    /// How long a graceful drain may take before what is left is aborted (exit 1).
    pub shutdown_timeout: Duration,
    /// Log one line per request on target `evloop::access`.
    pub access_log: bool,
    /// Longest audio (after decoding) the audio endpoints analyse; longer is 413.
    pub max_audio_seconds: f64,
    /// How worker threads are scheduled against the reactor.
    pub worker_priority: WorkerPriority,
}

impl Default for Config {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Config {
            host: "127.0.0.1".to_string(),
            port: 8888,
            pool: cpus,
            queue: 64 * cpus,
            workers: 1,
            max_connections: 10_000,
            keep_alive_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            limits: Limits::default(),
            max_body_memory: 1 << 30,
            shutdown_timeout: Duration::from_secs(30),
            access_log: false,
            max_audio_seconds: 600.0,
            worker_priority: WorkerPriority::Idle,
        }
    }
}

/// `evloop` — an event-loop HTTP/1.1 server: one reactor thread, a pool for heavy jobs.
#[derive(Debug, Parser)]
#[command(name = "evloop", version, about, max_term_width = 100)]
pub struct Cli {
    /// Address to listen on.
    #[arg(long, env = "EVLOOP_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "EVLOOP_PORT", default_value_t = 8888)]
    pub port: u16,
    /// Worker threads for CPU-heavy jobs [default: number of CPUs].
    #[arg(long, env = "EVLOOP_POOL", value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub pool: Option<u64>,
    /// Jobs that may wait for a worker; beyond it requests get 503 [default: 64 × pool].
    #[arg(long, env = "EVLOOP_QUEUE", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub queue: Option<u64>,
    /// Reactor processes (gunicorn-style); only 1 is implemented so far.
    #[arg(long, env = "EVLOOP_WORKERS", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1))]
    pub workers: u64,
    /// Open connections at which accepting pauses.
    #[arg(long, env = "EVLOOP_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Seconds an idle keep-alive connection is kept.
    #[arg(long, env = "EVLOOP_KEEP_ALIVE_TIMEOUT", default_value = "5", value_parser = seconds)]
    pub keep_alive_timeout: Duration,
    /// Seconds a client may take to send a request head (then 408).
    #[arg(long, env = "EVLOOP_HEADER_TIMEOUT", default_value = "10", value_parser = seconds)]
    pub header_timeout: Duration,
    /// Seconds a client may pause while sending a body (then 408).
    #[arg(long, env = "EVLOOP_BODY_TIMEOUT", default_value = "30", value_parser = seconds)]
    pub body_timeout: Duration,
    /// Seconds from request read to response start, queueing included (then 504).
    #[arg(long, env = "EVLOOP_REQUEST_TIMEOUT", default_value = "60", value_parser = seconds)]
    pub request_timeout: Duration,
    /// Largest request body in bytes (then 413).
    #[arg(long, env = "EVLOOP_MAX_BODY", default_value_t = 16 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(0..=1 << 40))]
    pub max_body: u64,
    /// Most bytes of request bodies held in memory at once, over all connections; a body that
    /// would pass it gets 503 with Retry-After.
    #[arg(long, env = "EVLOOP_MAX_BODY_MEMORY", default_value_t = 1 << 30, value_parser = clap::value_parser!(u64).range(1..=1 << 40))]
    pub max_body_memory: u64,
    /// Largest request head (request line + headers) in bytes (then 414/431).
    #[arg(long, env = "EVLOOP_MAX_HEADER_BYTES", default_value_t = 16 * 1024, value_parser = clap::value_parser!(u64).range(64..=1 << 20))]
    pub max_header_bytes: u64,
    /// Most header fields in a request (then 431).
    #[arg(long, env = "EVLOOP_MAX_HEADERS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub max_headers: u64,
    /// Seconds a graceful shutdown may take before the rest is aborted (exit 1).
    #[arg(long, env = "EVLOOP_SHUTDOWN_TIMEOUT", default_value = "30", value_parser = seconds)]
    pub shutdown_timeout: Duration,
    /// Log every request on target evloop::access.
    #[arg(long, env = "EVLOOP_ACCESS_LOG")]
    pub access_log: bool,
    /// Longest audio the audio endpoints analyse, in seconds (then 413).
    #[arg(long, env = "EVLOOP_MAX_AUDIO_SECONDS", default_value = "600", value_parser = seconds)]
    pub max_audio_seconds: Duration,
    /// How workers are scheduled: idle (SCHED_IDLE: only when the reactor does not need the
    /// CPU), low (nice +19) or normal.
    #[arg(long, env = "EVLOOP_WORKER_PRIORITY", default_value = "idle", value_parser = ["idle", "low", "normal"])]
    pub worker_priority: String,
    /// error, warn, info, debug or trace (RUST_LOG overrides).
    #[arg(long, env = "EVLOOP_LOG_LEVEL", default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace", "off"])]
    pub log_level: String,
}

/// Parse a positive number of seconds, fractions allowed (`0.5`).
fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(value > 0.0 && value <= 86_400.0) {
        return Err(format!(
            "`{text}` must be more than 0 and at most 86400 seconds"
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

impl Cli {
    /// The [`Config`] these arguments describe.
    pub fn config(&self) -> Config {
        let defaults = Config::default();
        let pool = self.pool.map_or(defaults.pool, |n| n as usize);
        Config {
            host: self.host.clone(),
            port: self.port,
            pool,
            queue: self.queue.map_or(64 * pool, |n| n as usize),
            workers: self.workers as usize,
            max_connections: self.max_connections as usize,
            keep_alive_timeout: self.keep_alive_timeout,
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            request_timeout: self.request_timeout,
            limits: Limits {
                max_head_bytes: self.max_header_bytes as usize,
                max_headers: self.max_headers as usize,
                max_body: self.max_body as usize,
            },
            max_body_memory: self.max_body_memory as usize,
            shutdown_timeout: self.shutdown_timeout,
            access_log: self.access_log,
            max_audio_seconds: self.max_audio_seconds.as_secs_f64(),
            worker_priority: match self.worker_priority.as_str() {
                "low" => WorkerPriority::Low,
                "normal" => WorkerPriority::Normal,
                _ => WorkerPriority::Idle,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_spec() {
        let cli = Cli::try_parse_from(["evloop", "--pool", "4"]).unwrap();
        let config = cli.config();
        assert_eq!(config.port, 8888);
        assert_eq!(config.pool, 4);
        assert_eq!(config.queue, 256);
        assert_eq!(config.keep_alive_timeout, Duration::from_secs(5));
        assert_eq!(config.limits.max_body, 16 * 1024 * 1024);
        assert_eq!(config.limits.max_head_bytes, 16 * 1024);
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Cli::try_parse_from(["evloop", "--pool", "0"]).is_err());
        assert!(Cli::try_parse_from(["evloop", "--port", "70000"]).is_err());
        assert!(Cli::try_parse_from(["evloop", "--keep-alive-timeout", "-1"]).is_err());
        assert!(Cli::try_parse_from(["evloop", "--workers", "2"]).is_err());
        let half = Cli::try_parse_from(["evloop", "--header-timeout", "0.5"]).unwrap();
        assert_eq!(half.config().header_timeout, Duration::from_millis(500));
    }
}
