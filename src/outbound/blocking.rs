//! A blocking HTTP/1.1 client: the `requests.get(url)` of the Python notes, kept to show what
//! *not* to do on an event loop, and what it costs on a pool.
//!
//! [`call_blocking`] opens a new connection, writes the request, and sits in `read` until the
//! whole response is there. It is the simplest client there is, and correct; the problem is
//! only *where* it runs:
//!
//! - **On the reactor** (`requests.get` inside an `async def`): the thread that should be
//!   polling every socket is parked in `read` on one of them. For as long as the upstream takes
//!   to answer, no other connection is read, written, accepted or timed out: every client
//!   waits for this one call. The reactor's slow-turn warning names the handler afterwards.
//!   `/fanout?mode=inline` does this on purpose.
//! - **In a pool job** (`await run_in_threadpool(requests.get, url)`): the reactor stays free,
//!   but each call holds a worker thread for its whole duration, doing nothing but waiting. A
//!   pool of 8 makes at most 8 calls at once; the 9th waits in the queue, and so does every
//!   CPU job behind it. `/fanout?mode=pool` does this.
//!
//! The reactor's own calls ([`crate::router::Reply::call`]) need no thread at all: the socket is
//! non-blocking, the reactor goes on serving everyone while the upstream thinks, and thousands
//! of calls can wait at once (`await client.get(url)` with an `httpx.AsyncClient`). The
//! encoding and decoding are the same as here ([`crate::http::client`]); only the waiting
//! differs.
//!
//! # What a call does
//!
//! 1. encode the request (a bad one is [`CallError::BadRequest`], before any socket exists);
//! 2. connect, within [`CallLimits::connect_timeout`];
//! 3. write the request and read the response, all within [`CallLimits::response_timeout`]
//!    counted from the start of the write: the timeout of each `write` and `read` is set to
//!    whatever is left, so an upstream that trickles a byte every second cannot stretch the
//!    call past the limit (a per-read timeout alone would let it);
//! 4. feed every read to a [`ResponseDecoder`] until it has a complete response, or the
//!    upstream closes;
//! 5. close the connection. Nothing is kept for the next call, as `requests.get` without a
//!    `Session` keeps nothing: every call pays for a new TCP handshake.
//!
//! Not implemented: connection reuse, retries, redirects, TLS.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::{CallError, CallLimits, CallRequest};
use crate::http::client::{Progress, ResponseDecoder, ResponseLimits, UpstreamResponse};
use crate::http::Method;

/// Bytes asked for by each `read`: most responses arrive whole in one.
const READ_CHUNK: usize = 16 * 1024;

/// Send `request` and wait for its response, blocking the calling thread throughout (see the
/// module's notes for why that matters). The connection is opened for this call and closed
/// after it.
///
/// An upstream's 4xx or 5xx is a response, not an error: only a call that produced no valid
/// response fails.
pub fn call_blocking(
    request: &CallRequest,
    limits: &CallLimits,
) -> Result<UpstreamResponse, CallError> {
    call_blocking_before(request, limits, None)
}

/// [`call_blocking`], over by `deadline` at the latest, whatever the limits allow: connecting
/// and answering together may not outlast it. A timeout it cuts short is reported as the
/// timeout of the phase it cut (`ConnectTimeout`, `ResponseTimeout`).
pub fn call_blocking_before(
    request: &CallRequest,
    limits: &CallLimits,
    deadline: Option<Instant>,
) -> Result<UpstreamResponse, CallError> {
    let mut bytes = Vec::new();
    request.encode(&mut bytes).map_err(CallError::BadRequest)?;

    let left = |now: Instant| deadline.map(|at| at.saturating_duration_since(now));
    let connect_timeout = match left(Instant::now()) {
        Some(left) if left.is_zero() => return Err(CallError::ConnectTimeout),
        Some(left) => limits.connect_timeout.min(left),
        None => limits.connect_timeout,
    };
    let addr = request.upstream.addr;
    let mut stream = TcpStream::connect_timeout(&addr, connect_timeout)
        .map_err(|err| CallError::from_connect(&err))?;
    log::trace!("blocking call: connected to {addr}");

    let now = Instant::now();
    let answered_by = crate::timer::later(now, limits.response_timeout);
    let deadline = deadline.map_or(answered_by, |at| at.min(answered_by));
    send(&mut stream, &bytes, deadline)?;
    let response = receive(
        &mut stream,
        request.method == Method::Head,
        request.response_limits(limits.response),
        deadline,
    )?;
    log::trace!(
        "blocking call: {} {} answered {}",
        request.method.as_str(),
        request.path,
        response.status
    );
    // Dropping the stream closes the connection: no reuse, by design.
    Ok(response)
}

/// Write all of `bytes` before `deadline`.
fn send(stream: &mut TcpStream, bytes: &[u8], deadline: Instant) -> Result<(), CallError> {
    let mut written = 0;
    while written < bytes.len() {
        stream
            .set_write_timeout(Some(time_left(deadline)?))
            .map_err(io_error)?;
        match stream.write(&bytes[written..]) {
            // A write of nothing means the socket can take no more, ever.
            Ok(0) => return Err(CallError::Reset),
            Ok(n) => written += n,
            // A signal arrived before anything was written, or the socket's timeout passed:
            // try again with what is left, if anything is (`time_left` above decides).
            Err(err) if retry(&err) => {}
            Err(err) => return Err(io_error(err)),
        }
    }
    Ok(())
}

/// Read until `decoder` has a complete response, before `deadline`.
fn receive(
    stream: &mut TcpStream,
    method_was_head: bool,
    limits: ResponseLimits,
    deadline: Instant,
) -> Result<UpstreamResponse, CallError> {
    let mut decoder = ResponseDecoder::new(method_was_head, limits);
    // The bytes read but not yet consumed by the decoder: a head still arriving.
    let mut buffer = Vec::new();
    let mut chunk = vec![0; READ_CHUNK];
    loop {
        stream
            .set_read_timeout(Some(time_left(deadline)?))
            .map_err(io_error)?;
        match stream.read(&mut chunk) {
            // The upstream closed its side: that ends a body without a length, and is an
            // error anywhere else.
            Ok(0) => return decoder.on_eof().map_err(CallError::Protocol),
            Ok(n) => {
                buffer.extend_from_slice(&chunk[..n]);
                match decoder.decode(&buffer)? {
                    Progress::Incomplete { consumed } => {
                        buffer.drain(..consumed);
                    }
                    // Bytes after the response would be an answer to a request never sent;
                    // they are dropped with the connection.
                    Progress::Complete { response, .. } => return Ok(response),
                }
            }
            // A signal arrived before any byte did, or the socket's timeout passed: read again
            // with what is left, if anything is (`time_left` above decides).
            Err(err) if retry(&err) => {}
            Err(err) => return Err(io_error(err)),
        }
    }
}

/// Whether a failed read or write is worth another try once the time left is checked: a
/// signal interrupted it, or the socket's timeout passed (EAGAIN on Linux). The timeout is the
/// time left when it was set, but the deadline is what counts: the call gives up when
/// [`time_left`] says the deadline has passed by the clock, never on the socket's word alone.
/// (ETIMEDOUT is not a socket timeout on Linux but TCP giving up on the connection: no retry.)
fn retry(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    )
}

/// What is left until `deadline`, as a socket timeout; none left is the call's timeout. (A
/// socket timeout of zero would mean "no timeout" to the OS, and std refuses it.)
fn time_left(deadline: Instant) -> Result<Duration, CallError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(CallError::ResponseTimeout)
    } else {
        Ok(left)
    }
}

/// The error for an I/O failure after the connection was made.
fn io_error(err: io::Error) -> CallError {
    match err.kind() {
        // A timeout: reads and writes retry a socket timeout (`retry`) until the clock says
        // the deadline passed, so what arrives here is TCP giving up (ETIMEDOUT), or a timeout
        // where nothing retries.
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => CallError::ResponseTimeout,
        // ConnectionReset, BrokenPipe (the upstream closed while we wrote), and anything else
        // the OS can say about a connection that no longer works.
        _ => CallError::Reset,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, TcpListener};
    use std::sync::Arc;
    use std::thread;

    use super::*;
    use crate::http::client::ResponseError;
    use crate::outbound::Upstream;

    /// Limits with a short response timeout, so a test of it stays quick.
    fn limits(response_timeout: Duration) -> CallLimits {
        CallLimits {
            response_timeout,
            ..CallLimits::default()
        }
    }

    fn upstream(addr: SocketAddr) -> Arc<Upstream> {
        Arc::new(Upstream::parse(&format!("http://{addr}")).unwrap())
    }

    /// A one-connection server on a thread: accept, read the request head, then let `serve`
    /// write whatever it likes. Returns the address and the thread, which yields the request
    /// head as received and whether the client then closed the connection.
    fn serve_once<F>(serve: F) -> (SocketAddr, thread::JoinHandle<(String, bool)>)
    where
        F: FnOnce(&mut TcpStream) + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            serve(&mut stream);
            let closed = matches!(stream.read(&mut byte), Ok(0));
            (String::from_utf8(head).unwrap(), closed)
        });
        (addr, server)
    }

    /// A good response comes back whole; the request on the wire is the encoder's, and the
    /// client closes the connection after the response (no reuse).
    #[test]
    fn returns_the_response_and_closes() {
        let (addr, server) = serve_once(|stream| {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"slept_ms\":5}\n")
                .unwrap();
        });
        let request = CallRequest::get(&upstream(addr), "/sleep?ms=5");
        let response = call_blocking(&request, &CallLimits::default()).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"{\"slept_ms\":5}\n");
        let (head, closed) = server.join().unwrap();
        assert_eq!(
            head,
            format!("GET /sleep?ms=5 HTTP/1.1\r\nHost: {addr}\r\n\r\n")
        );
        assert!(
            closed,
            "the client closes the connection after the response"
        );
    }

    /// A response that arrives in pieces, with pauses shorter than the timeout, is put together.
    #[test]
    fn reads_a_response_in_pieces() {
        let (addr, server) = serve_once(|stream| {
            for piece in [
                &b"HTTP/1.1 200 OK\r\nTransfer-"[..],
                b"Encoding: chunked\r\n\r\n2\r\nok",
            ] {
                stream.write_all(piece).unwrap();
                thread::sleep(Duration::from_millis(20));
            }
            stream.write_all(b"\r\n0\r\n\r\n").unwrap();
        });
        let request = CallRequest::get(&upstream(addr), "/");
        let response = call_blocking(&request, &limits(Duration::from_secs(5))).unwrap();
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, &b"ok"[..])
        );
        server.join().unwrap();
    }

    /// Nothing listens on the port: `Refused`, at once.
    #[test]
    fn refused_port_is_refused() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // The listener is dropped: connecting to its port is refused.
        let request = CallRequest::get(&upstream(addr), "/");
        assert_eq!(
            call_blocking(&request, &CallLimits::default()),
            Err(CallError::Refused)
        );
    }

    /// An upstream that reads the request and never answers: `ResponseTimeout` once the
    /// response timeout has passed, not before and not much after.
    #[test]
    fn silent_upstream_times_out() {
        let (addr, server) = serve_once(|_| thread::sleep(Duration::from_millis(600)));
        let request = CallRequest::get(&upstream(addr), "/");
        let started = Instant::now();
        let result = call_blocking(&request, &limits(Duration::from_millis(150)));
        let took = started.elapsed();
        assert_eq!(result, Err(CallError::ResponseTimeout));
        assert!(
            took >= Duration::from_millis(150) && took < Duration::from_millis(500),
            "took {took:?}"
        );
        server.join().unwrap();
    }

    /// The timeout bounds the whole response, not each read: an upstream that sends a byte
    /// every 40 ms never leaves a read waiting for long, and still times out at 200 ms.
    #[test]
    fn trickling_upstream_times_out() {
        let (addr, server) = serve_once(|stream| {
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" {
                if stream.write_all(&[*byte]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(40));
            }
        });
        let request = CallRequest::get(&upstream(addr), "/");
        let started = Instant::now();
        let result = call_blocking(&request, &limits(Duration::from_millis(200)));
        let took = started.elapsed();
        assert_eq!(result, Err(CallError::ResponseTimeout));
        assert!(took < Duration::from_millis(500), "took {took:?}");
        server.join().unwrap();
    }

    /// Bytes that are not HTTP: `Protocol`, without waiting for the timeout.
    #[test]
    fn garbage_is_a_protocol_error() {
        let (addr, server) = serve_once(|stream| {
            stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").unwrap();
        });
        let request = CallRequest::get(&upstream(addr), "/");
        assert_eq!(
            call_blocking(&request, &limits(Duration::from_secs(5))),
            Err(CallError::Protocol(ResponseError::MalformedStatusLine))
        );
        server.join().unwrap();
    }

    /// The upstream closes half-way through the body: `Protocol(ClosedMidResponse)`.
    #[test]
    fn close_mid_response_is_a_protocol_error() {
        let (addr, _server) = serve_once(|stream| {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
                .unwrap();
            stream.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let request = CallRequest::get(&upstream(addr), "/");
        assert_eq!(
            call_blocking(&request, &limits(Duration::from_secs(5))),
            Err(CallError::Protocol(ResponseError::ClosedMidResponse))
        );
    }

    /// A request that cannot be encoded fails before any connection is tried.
    #[test]
    fn bad_request_fails_before_connecting() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let request = CallRequest::get(&upstream(addr), "no-leading-slash");
        assert!(matches!(
            call_blocking(&request, &CallLimits::default()),
            Err(CallError::BadRequest(_))
        ));
    }
}
