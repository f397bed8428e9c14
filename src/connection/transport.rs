//! The socket side of a connection: readiness, the bytes held in each direction, reads and
//! writes until `WouldBlock`, and the lingering close.
//!
//! Nothing here knows HTTP. The connection asks for one read at a time (into the buffer the
//! reactor lends it) and hands over encoded output to be written; the transport keeps only what
//! could not be handed on: the unfinished part of a request (`held`) and output the peer has
//! not taken yet (`unsent`). Both are empty and unallocated on an idle connection.
//!
//! **Readiness.** The socket is registered edge-triggered: the kernel reports "readable" once
//! per arrival of data, not once per `poll`. So `readable` is set by an event and cleared only
//! when a read says there is nothing more (`WouldBlock`, end of file, or a short read — see
//! [`Transport::read`]).
//! A connection that stops reading with `readable` still set (backpressure, fairness) must be
//! driven again by the reactor when the obstacle clears; no new event will come for bytes that
//! are already waiting.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use mio::net::TcpStream;

/// What one read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// `n` bytes were read into the buffer.
    Data(usize),
    /// Nothing to read right now.
    Empty,
    /// The peer closed its sending side.
    Eof,
}

/// A connection's socket and the bytes it holds.
#[derive(Debug)]
pub struct Transport {
    /// The socket, registered once for READABLE | WRITABLE.
    stream: TcpStream,
    /// The socket may have bytes for us: set by events (and by a lingering read that stopped for
    /// fairness), cleared only by a read that finds none.
    readable: bool,
    /// An event said the peer's FIN (or an error) is queued: read to the end, short reads or not.
    peer_closing: bool,
    /// Received bytes not yet decoded: the unfinished part of a request, or requests whose
    /// decoding was paused.
    held: Vec<u8>,
    /// Encoded output the peer has not taken yet, from `unsent_from`.
    unsent: Vec<u8>,
    /// How much of `unsent` is already written.
    unsent_from: usize,
    /// While output is unsent: when the peer last took any of it (the send timeout runs from
    /// there).
    stalled_since: Option<Instant>,
}

impl Transport {
    /// Wrap an accepted, registered socket.
    pub fn new(stream: TcpStream) -> Transport {
        Transport {
            stream,
            readable: false,
            peer_closing: false,
            held: Vec::new(),
            unsent: Vec::new(),
            unsent_from: 0,
            stalled_since: None,
        }
    }

    /// The socket, for (de)registration.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// An event said the socket is readable; `closing` is mio's `is_read_closed() ||
    /// is_error()`: the peer's FIN (or an error) is queued, so reading must go on to see it.
    pub fn set_readable(&mut self, closing: bool) {
        self.readable = true;
        self.peer_closing |= closing;
    }

    /// An event said the peer's FIN (or an error) is queued, whether or not we have read it.
    pub fn is_peer_closing(&self) -> bool {
        self.peer_closing
    }

    /// The socket may have bytes for us.
    pub fn is_readable(&self) -> bool {
        self.readable
    }

    /// One `read` into `buf`.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<ReadOutcome> {
        loop {
            return match self.stream.read(buf) {
                Ok(0) => {
                    self.readable = false;
                    Ok(ReadOutcome::Eof)
                }
                Ok(n) => {
                    // A short read means the receive queue is empty: on Linux the next read
                    // would only say WouldBlock, and new data raises a new edge. Skipping that
                    // read saves a syscall per request (mio#1131: "reading until it returns
                    // < buf.len() bytes is good enough"). Not when a FIN is pending: then we
                    // must read on to see the end.
                    if n < buf.len() && !self.peer_closing {
                        self.readable = false;
                    }
                    Ok(ReadOutcome::Data(n))
                }
                // The OS's way of saying there is nothing more to read right now.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    Ok(ReadOutcome::Empty)
                }
                // A signal interrupted the call: simply read again.
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => Err(err),
            };
        }
    }

    /// The bytes held from earlier reads.
    pub fn held(&self) -> &[u8] {
        &self.held
    }

    /// Take the held bytes out (to decode them without borrowing the transport); give back
    /// what is left with [`Transport::keep`].
    pub fn take_held(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }

    /// Hold `rest` (what decoding left over) for the next read. `buffer` is what
    /// [`Transport::take_held`] returned, so its allocation is reused.
    pub fn keep(&mut self, mut buffer: Vec<u8>, consumed: usize) {
        buffer.drain(..consumed);
        if buffer.is_empty() {
            self.held = Vec::new(); // give the memory back: most connections hold nothing
        } else {
            self.held = buffer;
        }
    }

    /// Hold a copy of `rest`, appended to what is already held.
    pub fn hold(&mut self, rest: &[u8]) {
        self.held.extend_from_slice(rest);
    }

    /// Forget everything held: nothing after a refused request is ever read.
    pub fn discard_held(&mut self) {
        self.held = Vec::new();
    }

    /// True while the peer has not taken all our output: reading stops until it has.
    pub fn is_blocked(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// When the peer last made progress taking our output, while some is unsent.
    pub fn stalled_since(&self) -> Option<Instant> {
        self.stalled_since
    }

    /// Write `out` (after anything unsent) until the socket takes no more; keep the rest.
    /// `out` is left empty. Returns true if bytes were written and nothing is left unsent.
    pub fn flush(&mut self, out: &mut Vec<u8>, now: Instant) -> io::Result<bool> {
        if self.unsent.is_empty() {
            if out.is_empty() {
                return Ok(false);
            }
            // The hot path: everything goes straight from the shared buffer to the socket.
            let written = write_until_blocked(&mut self.stream, out)?;
            if written < out.len() {
                self.unsent.extend_from_slice(&out[written..]);
                self.stalled_since = Some(now);
            }
            out.clear();
            return Ok(self.unsent.is_empty());
        }
        self.unsent.extend_from_slice(out);
        out.clear();
        let written = write_until_blocked(&mut self.stream, &self.unsent[self.unsent_from..])?;
        self.unsent_from += written;
        if written > 0 {
            // The peer is reading, if slowly: the send timeout counts from its last progress
            // (nginx's send_timeout is likewise measured between two successive writes).
            self.stalled_since = Some(now);
        }
        if self.unsent_from == self.unsent.len() {
            self.unsent = Vec::new();
            self.unsent_from = 0;
            self.stalled_since = None;
            return Ok(true);
        }
        Ok(false)
    }

    /// Shut down our sending side: the peer sees the end of our responses.
    pub fn shutdown_write(&mut self) {
        // ENOTCONN here means the peer is already gone; the next read will say so.
        let _ = self.stream.shutdown(Shutdown::Write);
        self.held = Vec::new();
    }

    /// Read and throw away at most `max_reads` buffers of input. Returns `Ok(true)` once the
    /// peer has closed, `Ok(false)` when there was nothing more to read or the reads ran out
    /// (then `is_readable` says which), and the number of bytes discarded.
    pub fn discard_input(&mut self, buf: &mut [u8], max_reads: usize) -> io::Result<(bool, usize)> {
        let mut discarded = 0;
        for _ in 0..max_reads {
            match self.stream.read(buf) {
                Ok(0) => return Ok((true, discarded)),
                Ok(n) => discarded += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Ok((false, discarded));
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        self.readable = true; // stopped for fairness, not because the socket is empty
        Ok((false, discarded))
    }
}

/// Write as much of `buf` as the socket takes; stop at `WouldBlock`. Returns bytes written.
fn write_until_blocked(stream: &mut TcpStream, buf: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < buf.len() {
        match stream.write(&buf[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            // The socket buffer is full: the WRITABLE event brings us back.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(written)
}
