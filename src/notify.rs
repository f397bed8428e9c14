//! Telling a service manager how the server is doing: systemd's `sd_notify` protocol, written
//! by hand (it is one datagram).
//!
//! A unit with `Type=notify` starts the server with `NOTIFY_SOCKET` in its environment, the
//! path of a Unix datagram socket (a leading `@` means Linux's abstract namespace). systemd
//! counts the service as started only when it receives `READY=1` there, so units ordered
//! after it (and `systemctl start`, which waits) see a server that answers, not one still
//! building its model. `STOPPING=1` says a graceful stop has begun, `RELOADING=1` that a reload
//! has (followed by `READY=1` when it is done). Without `NOTIFY_SOCKET` every call does
//! nothing, so the server runs the same anywhere else.
//!
//! Who sends what: a single process (`--workers 1`) says `READY=1` once its start-up hooks
//! have finished; a supervisor says it once every process is ready, and `RELOADING=1` and
//! `STOPPING=1` as it reloads and stops. The processes of a supervisor say nothing to systemd
//! (the variable is removed from their environment): they report to the supervisor instead.

use std::io;
use std::os::unix::net::UnixDatagram;

/// The variable systemd sets for a `Type=notify` service.
pub const NOTIFY_SOCKET_VAR: &str = "NOTIFY_SOCKET";

/// A state to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Serving.
    Ready,
    /// A reload began.
    Reloading,
    /// A graceful stop began.
    Stopping,
}

impl State {
    fn message(self) -> &'static [u8] {
        match self {
            State::Ready => b"READY=1",
            State::Reloading => b"RELOADING=1",
            State::Stopping => b"STOPPING=1",
        }
    }
}

/// Report `state` to the service manager, if there is one. A failure is logged, never fatal:
/// the server serves whether or not systemd hears about it.
pub fn notify(state: State) {
    let Some(path) = std::env::var_os(NOTIFY_SOCKET_VAR) else {
        return;
    };
    if let Err(err) = send(&path, state.message()) {
        log::warn!("could not notify the service manager ({path:?}): {err}");
    }
}

fn send(path: &std::ffi::OsStr, message: &[u8]) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(message, &addr)?;
        }
        None => {
            socket.send_to(message, path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The datagram arrives, on a path socket and on an abstract one.
    #[test]
    fn messages_reach_the_socket() {
        let dir = std::env::temp_dir().join(format!("evloop-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let listener = UnixDatagram::bind(&dir).unwrap();
        send(dir.as_os_str(), State::Ready.message()).unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_file(&dir);

        use std::os::linux::net::SocketAddrExt;
        let name = format!("evloop-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        send(format!("@{name}").as_ref(), State::Stopping.message()).unwrap();
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
