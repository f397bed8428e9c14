//! The command line: help and version, bad arguments (exit 2, with the usage), a port in use
//! (exit 1), the start-up line, and the `EVLOOP_*` environment variables that stand in for
//! options not given on the command line.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::Output;
use std::time::Duration;

use common::{binary_command, get, spawn_binary, spawn_binary_with, Client, Spawn};

/// Run the binary to completion with `args` (it must exit by itself).
fn run(args: &[&str]) -> Output {
    binary_command()
        .args(args)
        .output()
        .expect("run the evloop binary")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `--help` prints usage with the options and exits 0.
#[test]
fn help_prints_usage_and_exits_0() {
    let output = run(&["--help"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("Usage: evloop"), "{text}");
    for option in [
        "--port",
        "--pool",
        "--queue",
        "--keep-alive-timeout",
        "--max-body",
        "--shutdown-timeout",
        "--upstream",
        "--upstream-timeout",
    ] {
        assert!(text.contains(option), "--help does not mention {option}");
    }
}

/// `--help` shows each default once, as the server applies it, and lists the choices of the
/// enumerated options.
#[test]
fn help_shows_defaults_and_choices() {
    let text = stdout(&run(&["--help"]));
    for expected in [
        "[default: 8888]",
        "[default: 5]",
        "[default: 16777216]",
        "[default: 64 × pool]",
        "[default: batch]",
        "[default: info]",
        "batch:",
        "normal:",
        "low:",
        "idle:",
        "[possible values: error, warn, info, debug, trace, off]",
    ] {
        assert!(
            text.contains(expected),
            "--help lacks {expected:?}:\n{text}"
        );
    }
}

/// `--log-level` sets the level: at `warn`, the info line a SIGHUP produces is not logged;
/// at the default `info`, it is. The whole log is read once the server has exited, so a line
/// still on its way through the pipe is neither missed nor taken for absent.
#[test]
fn log_level_filters_the_log() {
    for (args, logged) in [(&["--log-level", "warn"][..], false), (&[][..], true)] {
        let mut server = spawn_binary(&[&["--pool", "1"][..], args].concat());
        server.signal(libc::SIGHUP);
        // A turn of the reactor takes the signal; a request answered after it proves the
        // server is still up.
        std::thread::sleep(Duration::from_millis(100));
        let mut client = Client::connect(server.addr());
        assert_eq!(client.request(get("/plaintext")).status, 200);
        drop(client);
        server.signal(libc::SIGTERM);
        assert_eq!(server.exit_code_within(Duration::from_secs(5)), 0);
        let log = server.final_stderr(Duration::from_secs(5));
        assert_eq!(log.contains("received SIGHUP"), logged, "{args:?}: {log}");
    }
}

/// `--version` prints the crate version and exits 0.
#[test]
fn version_prints_the_version() {
    let output = run(&["--version"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stdout(&output).trim(),
        format!("evloop {}", env!("CARGO_PKG_VERSION"))
    );
}

/// Bad arguments exit 2 with a one-line error naming the problem on stderr.
#[test]
fn bad_arguments_exit_2() {
    for (args, mention) in BAD_ARGUMENTS {
        let output = run(args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        let first = err.lines().next().unwrap_or_default();
        assert!(first.starts_with("error:"), "{args:?}: {err}");
        assert!(
            first.contains(mention),
            "{args:?}: {first:?} does not mention {mention}"
        );
        assert!(stdout(&output).is_empty(), "{args:?} printed to stdout");
    }
}

/// Every bad argument is followed by the usage line (a one-line error, the usage, exit code 2),
/// invalid values as well as unknown flags.
#[test]
fn bad_arguments_print_usage() {
    for (args, _) in BAD_ARGUMENTS {
        let err = stderr(&run(args));
        assert!(err.contains("Usage: evloop"), "{args:?}: no usage in {err}");
    }
}

/// Bad command lines and a word the error must mention.
const BAD_ARGUMENTS: [(&[&str], &str); 10] = [
    (&["--pool", "0"], "--pool"),
    (&["--worker-priority", "urgent"], "--worker-priority"),
    (&["--log-level", "loud"], "--log-level"),
    (&["--port", "abc"], "--port"),
    (&["--port", "70000"], "--port"),
    (&["--frobnicate"], "--frobnicate"),
    (&["--keep-alive-timeout", "soon"], "--keep-alive-timeout"),
    (&["--header-timeout", "0"], "--header-timeout"),
    (&["--upstream", "https://127.0.0.1"], "--upstream"),
    (
        &["--upstream-max-connections", "0"],
        "--upstream-max-connections",
    ),
];

/// A port already in use exits 1 with a message saying so.
#[test]
fn port_in_use_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = taken.local_addr().unwrap().port().to_string();
    let output = run(&["--port", &port, "--pool", "1"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("in use"), "{err}");
    assert!(
        err.contains(&port),
        "the message does not name the port: {err}"
    );
}

/// The start-up line names the version, the address, the pool and queue sizes and the workers.
#[test]
fn start_line_reports_the_settings() {
    let server = spawn_binary(&["--pool", "2", "--queue", "5"]);
    assert_eq!(
        server.start_line,
        format!(
            "evloop {} listening on http://127.0.0.1:{} (pool 2, queue 5, workers 1)",
            env!("CARGO_PKG_VERSION"),
            server.port
        )
    );
}

/// With `--upstream`, the start-up line names it too.
#[test]
fn start_line_names_the_upstream() {
    let server = spawn_binary(&["--pool", "1", "--upstream", "http://127.0.0.1:9/api"]);
    assert!(
        server
            .start_line
            .ends_with("(pool 1, queue 64, workers 1, upstream http://127.0.0.1:9/api)"),
        "{}",
        server.start_line
    );
}

/// The queue defaults to 64 × pool.
#[test]
fn queue_defaults_to_64_per_worker() {
    let server = spawn_binary(&["--pool", "3"]);
    assert!(
        server.start_line.contains("(pool 3, queue 192, workers 1)"),
        "{}",
        server.start_line
    );
}

/// `EVLOOP_POOL` is read when `--pool` is absent, and `--pool` wins over it.
#[test]
fn environment_variables_are_a_fallback() {
    let from_env = spawn_binary_with(
        &[],
        Spawn {
            env: &[("EVLOOP_POOL", "3")],
            ..Spawn::default()
        },
    );
    assert!(
        from_env.start_line.contains("pool 3,"),
        "{}",
        from_env.start_line
    );

    let flag_wins = spawn_binary_with(
        &["--pool", "2"],
        Spawn {
            env: &[("EVLOOP_POOL", "3")],
            ..Spawn::default()
        },
    );
    assert!(
        flag_wins.start_line.contains("pool 2,"),
        "{}",
        flag_wins.start_line
    );
}

/// An environment variable sets behaviour, not just the banner: `EVLOOP_MAX_BODY=10` makes an
/// 11-byte body a 413.
#[test]
fn environment_variable_sets_a_limit() {
    let server = spawn_binary_with(
        &["--pool", "1"],
        Spawn {
            env: &[("EVLOOP_MAX_BODY", "10")],
            ..Spawn::default()
        },
    );
    let mut client = Client::connect(server.addr());
    client.send("POST /plaintext HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n");
    let responses = client.responses_until_close(Duration::from_secs(3));
    assert_eq!(responses.len(), 1);
    responses[0].assert_json_error(413);
}

/// A bad value in an environment variable is a bad argument too: exit 2.
#[test]
fn bad_environment_value_exits_2() {
    let output = binary_command()
        .env("EVLOOP_POOL", "zero")
        .output()
        .expect("run the evloop binary");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

/// `--host localhost` resolves, and the server answers on the address its start-up line names.
#[test]
fn host_name_is_resolved() {
    let server = spawn_binary(&["--pool", "1", "--host", "localhost"]);
    let (_, rest) = server
        .start_line
        .split_once("listening on http://")
        .expect("start-up line");
    let addr: SocketAddr = rest
        .split(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {:?}", server.start_line));
    assert!(addr.ip().is_loopback(), "{addr}");
    let mut client = Client::connect(addr);
    assert_eq!(client.request(get("/plaintext")).status, 200);
}
