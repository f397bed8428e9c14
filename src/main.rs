//! The `evloop` binary: parse the command line, bind, print one line, run until drained.
//!
//! It prints `evloop <version> listening on http://ADDR (…)` once bound, then
//! `evloop ready on http://ADDR` once its start-up hooks (the audio model) have finished. The
//! exit status is [`evloop::reactor::Exit::code`]: 0 drained, 1 shut down late (or could not
//! start), 3 a start-up hook failed; 2 for bad arguments, 130 on a second SIGINT or SIGTERM.
//!
//! # For tests only
//!
//! Two environment variables add a start-up hook after the real ones, so that the tests can
//! watch the binary start slowly or fail to start; nothing else reads them:
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
use evloop::endpoints;
use evloop::lifespan::App;
use evloop::reactor::Server;

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
    init_logging(cli.log_level);
    let config = cli.config();

    let mut server = match Server::bind(config.clone()) {
        Ok(server) => server,
        Err(err) => {
            let why = if err.kind() == io::ErrorKind::AddrInUse {
                "address already in use (is another server running on that port?)".to_string()
            } else {
                err.to_string()
            };
            eprintln!(
                "evloop: cannot listen on {}:{}: {why}",
                config.host, config.port
            );
            return ExitCode::from(1);
        }
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
        "evloop {} listening on http://{} (pool {}, queue {}, workers {}{upstream})",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
        config.pool,
        config.queue,
        config.workers
    );
    // Tests and scripts wait for this line; make sure it leaves the process now.
    let _ = io::stdout().flush();
    let addr = server.local_addr();
    server.on_ready(move || {
        println!("evloop ready on http://{addr}");
        let _ = io::stdout().flush();
    });

    match server.run(test_hooks(endpoints::app_for(&config))) {
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

/// `--log-level` sets the default; `RUST_LOG`, when set, overrides it.
fn init_logging(level: log::LevelFilter) {
    let env = env_logger::Env::default().default_filter_or(level.as_str());
    env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .init();
}
