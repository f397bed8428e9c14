//! Configuration: the command line, each option also read from an `EVLOOP_*` environment
//! variable, and the [`Config`] the server runs with.
//!
//! Every default is written once, in [`Config::default`] (and [`Limits::default`] for the size
//! limits). The command line takes its defaults from there, so `--help`, the binary and a library
//! user who starts from `Config::default()` can never disagree.

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Parser;
use log::LevelFilter;

use crate::http::Limits;
use crate::outbound::{CallLimits, Upstream};
use crate::pool::WorkerPriority;

/// Jobs that may wait per worker thread, unless `--queue` says otherwise.
pub const QUEUE_PER_WORKER: usize = 64;

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
    /// Reactor processes: 1 is this process alone; more are run by a supervisor
    /// ([`crate::supervisor`]).
    pub workers: usize,
    /// With several workers: one `SO_REUSEPORT` socket per process instead of one shared one.
    pub reuse_port: bool,
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
    /// The service that `/fanout` calls (`--upstream`); `None`: those endpoints answer 503.
    pub upstream: Option<Arc<Upstream>>,
    /// What bounds the calls the server makes to upstreams.
    pub calls: CallLimits,
}

impl Default for Config {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Config {
            host: "127.0.0.1".to_string(),
            port: 8888,
            pool: cpus,
            queue: QUEUE_PER_WORKER * cpus,
            workers: 1,
            reuse_port: false,
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
            worker_priority: WorkerPriority::default(),
            upstream: None,
            calls: CallLimits::default(),
        }
    }
}

/// The most reactor processes `--workers` accepts.
pub const MAX_WORKERS: usize = 64;

/// Calls that may wait for an upstream connection, per connection allowed (as `--queue` is per
/// worker).
pub const WAITING_PER_UPSTREAM_CONNECTION: usize = 64;

/// The defaults the command line shows and falls back to.
static DEFAULTS: LazyLock<Config> = LazyLock::new(Config::default);

/// `evloop` — an event-loop HTTP/1.1 server: one reactor thread, a pool for heavy jobs.
#[derive(Debug, Parser)]
#[command(name = "evloop", version, about, max_term_width = 100)]
pub struct Cli {
    /// Address to listen on.
    #[arg(long, env = "EVLOOP_HOST", default_value_t = DEFAULTS.host.clone())]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "EVLOOP_PORT", default_value_t = DEFAULTS.port)]
    pub port: u16,
    /// Worker threads for CPU-heavy jobs, per process [default: number of CPUs ÷ --workers].
    #[arg(long, env = "EVLOOP_POOL", value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub pool: Option<u64>,
    /// Jobs that may wait for a worker; beyond it requests get 503.
    #[arg(
        long,
        env = "EVLOOP_QUEUE",
        value_parser = clap::value_parser!(u64).range(1..=1_000_000),
        help = format!(
            "Jobs that may wait for a worker; beyond it requests get 503 \
             [default: {QUEUE_PER_WORKER} × pool]"
        )
    )]
    pub queue: Option<u64>,
    /// Reactor processes. Above 1, a supervisor process holds the listening socket and runs this
    /// many copies of the server, each with its own pool of --pool threads (docs/OPERATIONS.md).
    #[arg(long, env = "EVLOOP_WORKERS", default_value_t = DEFAULTS.workers as u64, value_parser = clap::value_parser!(u64).range(1..=MAX_WORKERS as u64))]
    pub workers: u64,
    /// With --workers above 1: give each process its own listening socket (SO_REUSEPORT), so
    /// the kernel spreads connections evenly, instead of one shared socket. A process that is
    /// stalled or being replaced then still receives its share (docs/OPERATIONS.md).
    #[arg(long, env = "EVLOOP_REUSE_PORT")]
    pub reuse_port: bool,
    /// Open connections at which accepting pauses.
    #[arg(long, env = "EVLOOP_MAX_CONNECTIONS", default_value_t = DEFAULTS.max_connections as u64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Seconds an idle keep-alive connection is kept.
    #[arg(long, env = "EVLOOP_KEEP_ALIVE_TIMEOUT", default_value_t = Seconds(DEFAULTS.keep_alive_timeout), value_parser = seconds)]
    pub keep_alive_timeout: Seconds,
    /// Seconds a client may take to send a request head (then 408).
    #[arg(long, env = "EVLOOP_HEADER_TIMEOUT", default_value_t = Seconds(DEFAULTS.header_timeout), value_parser = seconds)]
    pub header_timeout: Seconds,
    /// Seconds a client may pause while sending a body (then 408).
    #[arg(long, env = "EVLOOP_BODY_TIMEOUT", default_value_t = Seconds(DEFAULTS.body_timeout), value_parser = seconds)]
    pub body_timeout: Seconds,
    /// Seconds from request read to response start, queueing included (then 504).
    #[arg(long, env = "EVLOOP_REQUEST_TIMEOUT", default_value_t = Seconds(DEFAULTS.request_timeout), value_parser = seconds)]
    pub request_timeout: Seconds,
    /// Largest request body in bytes (then 413).
    #[arg(long, env = "EVLOOP_MAX_BODY", default_value_t = DEFAULTS.limits.max_body as u64, value_parser = clap::value_parser!(u64).range(0..=1 << 40))]
    pub max_body: u64,
    /// Most bytes of request bodies held in memory at once, over all connections; a body that
    /// would pass it gets 503 with Retry-After.
    #[arg(long, env = "EVLOOP_MAX_BODY_MEMORY", default_value_t = DEFAULTS.max_body_memory as u64, value_parser = clap::value_parser!(u64).range(1..=1 << 40))]
    pub max_body_memory: u64,
    /// Largest request head (request line + headers) in bytes (then 414/431).
    #[arg(long, env = "EVLOOP_MAX_HEADER_BYTES", default_value_t = DEFAULTS.limits.max_head_bytes as u64, value_parser = clap::value_parser!(u64).range(64..=1 << 20))]
    pub max_header_bytes: u64,
    /// Most header fields in a request (then 431).
    #[arg(long, env = "EVLOOP_MAX_HEADERS", default_value_t = DEFAULTS.limits.max_headers as u64, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub max_headers: u64,
    /// Seconds a graceful shutdown may take before the rest is aborted (exit 1).
    #[arg(long, env = "EVLOOP_SHUTDOWN_TIMEOUT", default_value_t = Seconds(DEFAULTS.shutdown_timeout), value_parser = seconds)]
    pub shutdown_timeout: Seconds,
    /// Log every request on target evloop::access.
    #[arg(long, env = "EVLOOP_ACCESS_LOG")]
    pub access_log: bool,
    /// Longest audio the audio endpoints analyse, in seconds (then 413).
    #[arg(long, env = "EVLOOP_MAX_AUDIO_SECONDS", default_value_t = Seconds(Duration::from_secs_f64(DEFAULTS.max_audio_seconds)), value_parser = seconds)]
    pub max_audio_seconds: Seconds,
    /// How workers are scheduled against the reactor (docs/SCHEDULING.md).
    #[arg(long, env = "EVLOOP_WORKER_PRIORITY", value_enum, default_value_t = DEFAULTS.worker_priority)]
    pub worker_priority: WorkerPriority,
    /// The HTTP service /fanout calls, as http://HOST:PORT/PATH (port and path optional),
    /// resolved once at start-up [default: none; /fanout answers 503].
    #[arg(long, env = "EVLOOP_UPSTREAM", value_name = "URL", value_parser = upstream_url)]
    pub upstream: Option<Arc<Upstream>>,
    /// Connections to the upstream open at once, idle ones included; more calls wait for one.
    #[arg(long, env = "EVLOOP_UPSTREAM_MAX_CONNECTIONS", default_value_t = DEFAULTS.calls.max_connections as u64, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub upstream_max_connections: u64,
    /// Seconds to connect to the upstream (then 504).
    #[arg(long, env = "EVLOOP_UPSTREAM_CONNECT_TIMEOUT", default_value_t = Seconds(DEFAULTS.calls.connect_timeout), value_parser = seconds)]
    pub upstream_connect_timeout: Seconds,
    /// Seconds from sending a request upstream to its whole response (then 504).
    #[arg(long, env = "EVLOOP_UPSTREAM_TIMEOUT", default_value_t = Seconds(DEFAULTS.calls.response_timeout), value_parser = seconds)]
    pub upstream_timeout: Seconds,
    /// Log level (RUST_LOG, when set, overrides it).
    #[arg(
        long,
        env = "EVLOOP_LOG_LEVEL",
        default_value = "info",
        value_parser = log_level()
    )]
    pub log_level: LevelFilter,
}

/// A number of seconds on the command line: `5`, `0.5`. Shown the same way in `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

/// Parse a positive number of seconds, fractions allowed (`0.5`).
fn seconds(text: &str) -> Result<Seconds, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(value > 0.0 && value <= 86_400.0) {
        return Err(format!(
            "`{text}` must be more than 0 and at most 86400 seconds"
        ));
    }
    Ok(Seconds(Duration::from_secs_f64(value)))
}

/// Parse and resolve `--upstream` (blocking name resolution is fine here: nothing else runs
/// yet). The error drops the URL [`Upstream::parse`] starts it with: clap names the value.
fn upstream_url(text: &str) -> Result<Arc<Upstream>, String> {
    Upstream::parse(text).map(Arc::new).map_err(|err| {
        err.strip_prefix(text)
            .and_then(|why| why.strip_prefix(": "))
            .map_or(err.clone(), str::to_string)
    })
}

/// The log levels, by the names `RUST_LOG` uses, listed in `--help` and in the error for a
/// level that is not one of them.
fn log_level() -> impl TypedValueParser<Value = LevelFilter> {
    PossibleValuesParser::new(["error", "warn", "info", "debug", "trace", "off"])
        .try_map(|name| name.parse::<LevelFilter>())
}

impl Cli {
    /// The [`Config`] these arguments describe.
    pub fn config(&self) -> Config {
        // Without --pool, the CPUs are shared out between the processes.
        let workers = self.workers as usize;
        let pool = self
            .pool
            .map_or((DEFAULTS.pool / workers).max(1), |n| n as usize);
        Config {
            host: self.host.clone(),
            port: self.port,
            pool,
            queue: self.queue.map_or(QUEUE_PER_WORKER * pool, |n| n as usize),
            workers: self.workers as usize,
            reuse_port: self.reuse_port,
            max_connections: self.max_connections as usize,
            keep_alive_timeout: self.keep_alive_timeout.0,
            header_timeout: self.header_timeout.0,
            body_timeout: self.body_timeout.0,
            request_timeout: self.request_timeout.0,
            limits: Limits {
                max_head_bytes: self.max_header_bytes as usize,
                max_headers: self.max_headers as usize,
                max_body: self.max_body as usize,
            },
            max_body_memory: self.max_body_memory as usize,
            shutdown_timeout: self.shutdown_timeout.0,
            access_log: self.access_log,
            max_audio_seconds: self.max_audio_seconds.0.as_secs_f64(),
            worker_priority: self.worker_priority,
            upstream: self.upstream.clone(),
            calls: CallLimits {
                max_connections: self.upstream_max_connections as usize,
                max_waiting: WAITING_PER_UPSTREAM_CONNECTION
                    * self.upstream_max_connections as usize,
                connect_timeout: self.upstream_connect_timeout.0,
                response_timeout: self.upstream_timeout.0,
                ..DEFAULTS.calls
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No argument at all gives exactly [`Config::default`]: the command line has no default
    /// of its own.
    #[test]
    fn command_line_defaults_are_the_config_defaults() {
        let cli = Cli::try_parse_from(["evloop"]).unwrap();
        assert_eq!(
            format!("{:?}", cli.config()),
            format!("{:?}", Config::default())
        );
        assert_eq!(cli.log_level, LevelFilter::Info);
    }

    /// The documented defaults, and the queue following the pool.
    #[test]
    fn documented_defaults() {
        let config = Cli::try_parse_from(["evloop", "--pool", "4"])
            .unwrap()
            .config();
        assert_eq!(config.port, 8888);
        assert_eq!(config.pool, 4);
        assert_eq!(config.queue, 256);
        assert_eq!(config.keep_alive_timeout, Duration::from_secs(5));
        assert_eq!(config.limits.max_body, 16 * 1024 * 1024);
        assert_eq!(config.limits.max_head_bytes, 16 * 1024);
        assert_eq!(config.worker_priority, WorkerPriority::Batch);
    }

    /// Values out of range, of the wrong kind, or not among the choices are refused.
    #[test]
    fn bad_values_are_rejected() {
        assert!(Cli::try_parse_from(["evloop", "--pool", "0"]).is_err());
        assert!(Cli::try_parse_from(["evloop", "--port", "70000"]).is_err());
        assert!(Cli::try_parse_from(["evloop", "--keep-alive-timeout", "-1"]).is_err());
        assert!(Cli::try_parse_from(["evloop", "--workers", "0"]).is_err());
        assert!(Cli::try_parse_from(["evloop", "--workers", "65"]).is_err());
        let cli = Cli::try_parse_from(["evloop", "--workers", "2"]).expect("2 workers");
        assert_eq!(cli.config().workers, 2);
        assert!(Cli::try_parse_from(["evloop", "--worker-priority", "urgent"]).is_err());
        assert!(Cli::try_parse_from(["evloop", "--log-level", "loud"]).is_err());
        let half = Cli::try_parse_from(["evloop", "--header-timeout", "0.5"]).unwrap();
        assert_eq!(half.config().header_timeout, Duration::from_millis(500));
    }

    /// The upstream options reach the config; the call limits they do not name keep their
    /// defaults.
    #[test]
    fn upstream_options_reach_the_config() {
        let config = Cli::try_parse_from([
            "evloop",
            "--upstream",
            "http://127.0.0.1:9000/api/",
            "--upstream-max-connections",
            "8",
            "--upstream-connect-timeout",
            "0.5",
            "--upstream-timeout",
            "2",
        ])
        .unwrap()
        .config();
        let upstream = config.upstream.expect("--upstream is set");
        assert_eq!(upstream.addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(upstream.base_path, "/api");
        assert_eq!(config.calls.max_connections, 8);
        assert_eq!(config.calls.connect_timeout, Duration::from_millis(500));
        assert_eq!(config.calls.response_timeout, Duration::from_secs(2));
        let defaults = CallLimits::default();
        assert_eq!(
            config.calls.max_waiting,
            64 * 8,
            "64 waiting calls per connection"
        );
        assert_eq!(config.calls.idle_timeout, defaults.idle_timeout);

        let without = Cli::try_parse_from(["evloop"]).unwrap().config();
        assert!(without.upstream.is_none());
        assert_eq!(without.calls.max_connections, 256);
        assert_eq!(without.calls.response_timeout, Duration::from_secs(30));
    }

    /// A URL that is not `http://host[:port][/path]`, or does not resolve, is a bad argument
    /// whose message says why once, without repeating the URL; so are limits out of range.
    #[test]
    fn bad_upstream_options_are_rejected() {
        let err = Cli::try_parse_from(["evloop", "--upstream", "https://127.0.0.1"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("https is not supported"), "{text}");
        assert_eq!(text.matches("https://127.0.0.1").count(), 1, "{text}");
        for args in [
            &["--upstream", "127.0.0.1:9000"][..],
            &["--upstream", "http://127.0.0.1:99999"],
            &["--upstream", "http://host.invalid"],
            &["--upstream-max-connections", "0"],
            &["--upstream-max-connections", "65537"],
            &["--upstream-connect-timeout", "0"],
            &["--upstream-timeout", "soon"],
        ] {
            let argv = [&["evloop"][..], args].concat();
            assert!(Cli::try_parse_from(argv).is_err(), "{args:?}");
        }
    }

    /// Every mode and every log level is accepted by its name.
    #[test]
    fn enums_are_accepted_by_name() {
        assert_eq!(
            Config::default().worker_priority,
            WorkerPriority::Batch,
            "the default never starves the pool beside busy processes"
        );
        for (name, mode) in [
            ("batch", WorkerPriority::Batch),
            ("normal", WorkerPriority::Normal),
            ("low", WorkerPriority::Low),
            ("idle", WorkerPriority::Idle),
        ] {
            let cli = Cli::try_parse_from(["evloop", "--worker-priority", name]).unwrap();
            assert_eq!(cli.worker_priority, mode);
        }
        for (name, level) in [
            ("off", LevelFilter::Off),
            ("error", LevelFilter::Error),
            ("warn", LevelFilter::Warn),
            ("info", LevelFilter::Info),
            ("debug", LevelFilter::Debug),
            ("trace", LevelFilter::Trace),
        ] {
            let cli = Cli::try_parse_from(["evloop", "--log-level", name]).unwrap();
            assert_eq!(cli.log_level, level);
        }
    }
}
