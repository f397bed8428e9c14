//! The `evloop` binary: parse the command line, bind, print one line, run until drained.
//!
//! It runs in one of three ways: alone (`--workers 1`, the default); as the supervisor of
//! `--workers N` processes ([`evloop::supervisor`]); or as one of those processes, which it
//! knows from what the supervisor put in its environment ([`Inherited::from_env`]).
//!
//! It prints `evloop <version> listening on http://ADDR (…)` once bound, then
//! `evloop ready on http://ADDR` once its start-up hooks (the audio model) have finished (a
//! supervisor: once every process has). The exit status is [`evloop::reactor::Exit::code`]: 0
//! drained, 1 shut down late (or could not start), 3 a start-up hook failed; 2 for bad
//! arguments, 130 on a second SIGINT or SIGTERM.
//!
//! # For tests only
//!
//! Two environment variables add a start-up hook after the real ones, so that the tests can
//! watch the binary start slowly or fail to start; nothing else reads them (a supervisor's
//! processes inherit them):
//!
//! - `EVLOOP_TEST_STARTUP_DELAY_MS=N`: a hook, `test delay`, that sleeps N ms;
//! - `EVLOOP_TEST_STARTUP_FAIL=error` or `=panic`: a hook, `test failure`, that returns an error
//!   or panics.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use evloop::config::Cli;
use evloop::config::Config;
use evloop::endpoints;
use evloop::lifespan::App;
use evloop::reactor::Server;
use evloop::supervisor::inherit::Inherited;
use evloop::supervisor::Supervisor;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            err.exit()
        }
        Err(err) => {
            // Bad arguments: the one-line error, the usage, status 2. clap only adds the usage
            // for some kinds of error; print it for all.
            let rendered = err.render().to_string();
            eprint!("{rendered}");
            if !rendered.contains("Usage:") {
                eprintln!("\n{}", Cli::command().render_usage());
            }
            return ExitCode::from(2);
        }
    };
    let inherited = match Inherited::from_env() {
        Ok(inherited) => inherited,
        Err(err) => {
            eprintln!("evloop: bad environment from the supervisor: {err}");
            return ExitCode::from(1);
        }
    };
    init_logging(cli.log_level, inherited.as_ref().map(|i| i.worker));
    let config = cli.config();
    match inherited {
        Some(inherited) => serve_for_supervisor(config, inherited),
        None if config.workers > 1 => supervise(config),
        None => serve_alone(config),
    }
}

/// `--workers 1`: this process binds and serves.
fn serve_alone(config: Config) -> ExitCode {
    let mut server = match Server::bind(config.clone()) {
        Ok(server) => server,
        Err(err) => return cannot_listen(&config, &err),
    };
    if let Err(err) = server.handle_signals() {
        eprintln!("evloop: cannot install signal handlers: {err}");
        return ExitCode::from(1);
    }
    let upstream = config
        .upstream
        .as_ref()
        .map_or(String::new(), |upstream| format!(", upstream {upstream}"));
    println!(
        "evloop {} listening on http://{} (pool {}, queue {}, workers 1{upstream})",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
        config.pool,
        config.queue,
    );
    // Tests and scripts wait for this line; make sure it leaves the process now.
    let _ = io::stdout().flush();
    let addr = server.local_addr();
    server.on_ready(move || {
        println!("evloop ready on http://{addr}");
        let _ = io::stdout().flush();
        evloop::notify::notify(evloop::notify::State::Ready);
    });
    run(server, &config)
}

/// `--workers N`: bind, then start and watch N processes that serve.
fn supervise(config: Config) -> ExitCode {
    let args = std::env::args_os().skip(1).collect();
    let supervisor = match Supervisor::bind(config.clone(), args) {
        Ok(supervisor) => supervisor,
        Err(err) => return cannot_listen(&config, &err),
    };
    let upstream = config
        .upstream
        .as_ref()
        .map_or(String::new(), |upstream| format!(", upstream {upstream}"));
    let socket = if config.reuse_port {
        "a socket each (SO_REUSEPORT)"
    } else {
        "one shared socket"
    };
    println!(
        "evloop {} listening on http://{} (workers {}, each with pool {} and queue {}, \
         {socket}{upstream}; supervisor pid {})",
        env!("CARGO_PKG_VERSION"),
        supervisor.local_addr(),
        config.workers,
        config.pool,
        config.queue,
        std::process::id()
    );
    let _ = io::stdout().flush();
    match supervisor.run() {
        Ok(status) => ExitCode::from(status as u8),
        Err(err) => {
            eprintln!("evloop: supervisor failed: {err}");
            ExitCode::from(1)
        }
    }
}

/// Connections a process of `--workers N` accepts from the shared socket per turn.
const ACCEPT_PER_TURN: usize = 4;

/// One of the supervisor's processes: serve on the socket it handed down, say when ready.
fn serve_for_supervisor(config: Config, inherited: Inherited) -> ExitCode {
    let mut server = match Server::with_listener(inherited.listener, config.clone()) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("evloop: cannot serve on the inherited socket: {err}");
            return ExitCode::from(1);
        }
    };
    if let Err(err) = server.handle_signals_supervised() {
        eprintln!("evloop: cannot install signal handlers: {err}");
        return ExitCode::from(1);
    }
    server.share_metrics(inherited.scoreboard);
    server.name_worker(inherited.worker);
    if !config.reuse_port {
        server.share_listener(ACCEPT_PER_TURN);
    }
    // Connections wait in the shared backlog for a process that is ready, rather than meet
    // this one's 503s while its start-up hooks run.
    server.accept_after_ready();
    let ready = inherited.ready;
    server.on_ready(move || ready.announce());
    run(server, &config)
}

fn run(server: Server, config: &Config) -> ExitCode {
    match server.run(test_hooks(endpoints::app_for(config))) {
        Ok(exit) => ExitCode::from(exit.code() as u8),
        Err(err) => {
            eprintln!("evloop: reactor failed: {err}");
            ExitCode::from(1)
        }
    }
}

/// The start-up hooks the tests ask for with `EVLOOP_TEST_STARTUP_*` (see the module's docs).
fn test_hooks(mut app: App) -> App {
    if let Some(ms) = std::env::var("EVLOOP_TEST_STARTUP_DELAY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        app = app.on_startup("test delay", move || {
            std::thread::sleep(Duration::from_millis(ms));
            Ok(())
        });
    }
    match std::env::var("EVLOOP_TEST_STARTUP_FAIL").as_deref() {
        Ok("error") => app.on_startup("test failure", || {
            Err("EVLOOP_TEST_STARTUP_FAIL=error".into())
        }),
        Ok("panic") => app.on_startup("test failure", || panic!("EVLOOP_TEST_STARTUP_FAIL=panic")),
        _ => app,
    }
}

fn cannot_listen(config: &Config, err: &io::Error) -> ExitCode {
    let why = if err.kind() == io::ErrorKind::AddrInUse {
        "address already in use (is another server running on that port?)".to_string()
    } else {
        err.to_string()
    };
    eprintln!(
        "evloop: cannot listen on {}:{}: {why}",
        config.host, config.port
    );
    ExitCode::from(1)
}

/// `--log-level` sets the default; `RUST_LOG`, when set, overrides it. A process of
/// `--workers N` says which one it is on every line (`worker 2`), since all of them write to
/// the same stream.
fn init_logging(level: log::LevelFilter, worker: Option<usize>) {
    let env = env_logger::Env::default().default_filter_or(level.as_str());
    let mut builder = env_logger::Builder::from_env(env);
    builder.format_timestamp_millis();
    if let Some(worker) = worker {
        builder.format(move |buf, record| {
            use std::io::Write as _;
            writeln!(
                buf,
                "[{} {:<5} {} worker {worker}] {}",
                buf.timestamp_millis(),
                record.level(),
                record.target(),
                record.args()
            )
        });
    }
    builder.init();
}
