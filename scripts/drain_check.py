#!/usr/bin/env python3
"""Keep a mixed load going across a graceful shutdown and count lost requests.

Drives CONNS keep-alive connections from one `selectors` loop, mixing `GET /sleep?ms=50` (a
reactor timer) and `GET /cpu?ms=5` (a pool job). Even-numbered connections send one request at
a time; odd-numbered ones pipeline two (a sleep and a cpu) in one write, so some requests are
always already pipelined behind another when the drain begins. Each connection sends its next
request the moment its last answer is complete.

After --warmup seconds it prints `LOADED ...`: the caller then sends SIGTERM to the server. The
client keeps going through the drain:

- a response with `Connection: close` is fine: the client closes that connection and connects
  again;
- a connect that is refused (the listener has closed) ends that connection's part: not a loss;
- a request written on a connection that was open, answered by EOF or RST instead of a response,
  is LOST. Before each write the client checks, without blocking, that the server has not
  already closed the idle connection; if it has, nothing is written (counted as `idle_closed`).

It stops when every connection has ended (or at --timeout, when whatever is still unanswered is
counted as `unanswered`), prints a summary and

    RESULT sent=N answered=N lost=0 unanswered=0 close_header=64 idle_closed=0 refused=64 ...

Exit status 0 only if nothing was lost or left unanswered.

    scripts/drain_check.py --port 8888 [--conns 64] [--warmup 2]
"""

import argparse
import errno
import selectors
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts in the work tree
from http_wire import get_request, parse_response, raise_nofile_limit, wants_close

SLEEP = "/sleep?ms=50"
CPU = "/cpu?ms=5"


class Slot:
    """One client connection's place in the load; it reconnects after `Connection: close`."""

    def __init__(self, index):
        self.index = index
        # Odd slots pipeline two requests per write.
        self.pipelined = index % 2 == 1
        self.batches = 0  # alternates which kind goes first
        self.sock = None
        self.connected = False
        self.buf = b""
        self.outstanding = []  # targets written and not answered yet, in order
        self.answered_here = 0  # responses on the current connection
        self.closing = False  # a response said Connection: close
        self.done = False


class DrainCheck:
    def __init__(self, args):
        self.args = args
        self.selector = selectors.DefaultSelector()
        self.requests = {t: get_request(args.host, args.port, t) for t in (SLEEP, CPU)}
        self.sent = 0
        self.answered = 0
        self.statuses = {}
        self.answered_after_signal = 0
        self.lost = 0
        self.lost_events = []
        self.close_header = 0
        self.idle_closed = 0
        self.refused = 0
        self.loaded_at = None
        self.last_answer_at = None

    # -- connections ------------------------------------------------------------------------

    def connect(self, slot):
        """Open (or reopen) the slot's connection; a refused connect ends the slot."""
        slot.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slot.sock.setblocking(False)
        slot.connected = False
        slot.buf, slot.outstanding, slot.answered_here, slot.closing = b"", [], 0, False
        err = slot.sock.connect_ex((self.args.host, self.args.port))
        if err in (0, errno.EINPROGRESS):
            self.selector.register(slot.sock, selectors.EVENT_WRITE, slot)
        else:
            self.end_refused(slot)

    def end_refused(self, slot):
        slot.sock.close()
        slot.done = True
        self.refused += 1

    def close(self, slot):
        self.selector.unregister(slot.sock)
        slot.sock.close()

    def peer_closed(self, slot):
        """True if the server already closed (or reset) this idle connection."""
        try:
            return slot.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def send_batch(self, slot):
        if self.peer_closed(slot):
            # Closed while idle, before we wrote anything: nothing was lost; connect again.
            self.idle_closed += 1
            self.close(slot)
            self.connect(slot)
            return
        first, second = (SLEEP, CPU) if slot.batches % 2 == 0 else (CPU, SLEEP)
        targets = [first, second] if slot.pipelined else [first]
        slot.batches += 1
        payload = b"".join(self.requests[t] for t in targets)
        try:
            # Under 200 bytes into an empty socket buffer: one send takes it all.
            written = slot.sock.send(payload)
        except OSError:
            written = 0
        if written != len(payload):
            # The write itself failed: the server was gone before the request was sent.
            self.idle_closed += 1
            self.close(slot)
            self.connect(slot)
            return
        slot.outstanding.extend(targets)
        self.sent += len(targets)

    # -- events -----------------------------------------------------------------------------

    def on_writable(self, slot):
        err = slot.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self.selector.unregister(slot.sock)
        if err:
            # ECONNREFUSED once the listener is closed: the expected end of this slot.
            self.end_refused(slot)
            return
        slot.connected = True
        self.selector.register(slot.sock, selectors.EVENT_READ, slot)
        self.send_batch(slot)

    def on_readable(self, slot):
        now = time.monotonic()
        try:
            data = slot.sock.recv(65536)
            how = "EOF"
        except OSError as exc:
            data, how = b"", errno.errorcode.get(exc.errno, str(exc.errno))
        if data:
            slot.buf += data
            while True:
                parsed = parse_response(slot.buf)
                if parsed is None:
                    break
                length, status, headers = parsed
                slot.buf = slot.buf[length:]
                if not slot.outstanding:
                    raise SystemExit(f"connection {slot.index}: a response nobody asked for")
                slot.outstanding.pop(0)
                slot.answered_here += 1
                self.answered += 1
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.last_answer_at = now
                if self.loaded_at is not None:
                    self.answered_after_signal += 1
                if wants_close(headers):
                    slot.closing = True
            if slot.outstanding:
                return  # more answers to come on this connection
            if slot.closing:
                # The server's last answer on this connection: connect again (refused once
                # the listener is closed).
                self.close_header += 1
                self.close(slot)
                self.connect(slot)
            else:
                self.send_batch(slot)
            return
        # EOF or RST.
        if slot.outstanding:
            self.lost += len(slot.outstanding)
            since = (now - self.loaded_at) if self.loaded_at else float("nan")
            said_close = ", the last of them with Connection: close" if slot.closing else ""
            self.lost_events.append(
                f"connection {slot.index}: {how} with {len(slot.outstanding)} unanswered "
                f"({', '.join(slot.outstanding)}) after {slot.answered_here} answers on it"
                f"{said_close}, {since:+.3f} s after LOADED"
            )
        else:
            self.idle_closed += 1
        self.close(slot)
        self.connect(slot)

    # -- the run ----------------------------------------------------------------------------

    def run(self):
        slots = [Slot(i) for i in range(self.args.conns)]
        for slot in slots:
            self.connect(slot)
        start = time.monotonic()
        deadline = start + self.args.timeout
        while time.monotonic() < deadline and not all(s.done for s in slots):
            for key, _events in self.selector.select(timeout=0.2):
                slot = key.data
                if slot.connected:
                    self.on_readable(slot)
                else:
                    self.on_writable(slot)
            if self.loaded_at is None and time.monotonic() - start >= self.args.warmup:
                self.loaded_at = time.monotonic()
                print(f"LOADED sent={self.sent} answered={self.answered}", flush=True)
        unanswered = sum(len(s.outstanding) for s in slots if not s.done)
        still_running = sum(1 for s in slots if not s.done)
        return unanswered, still_running


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=2.0, help="load before LOADED, in s")
    parser.add_argument("--timeout", type=float, default=30.0, help="give up after this many s")
    args = parser.parse_args()
    raise_nofile_limit(args.conns + 16)

    check = DrainCheck(args)
    unanswered, still_running = check.run()
    non200 = sum(n for status, n in check.statuses.items() if status != 200)
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(check.statuses.items()))
    tail = (check.last_answer_at - check.loaded_at) if check.loaded_at and check.last_answer_at \
        else float("nan")

    print(f"drain check: {args.conns} connections, {SLEEP} and {CPU}, odd ones pipelining 2")
    print(f"  sent {check.sent}, answered {check.answered} ({statuses}); "
          f"{check.answered_after_signal} answered after LOADED, the last {tail:.3f} s after it")
    print(f"  ended: {check.close_header} by a Connection: close answer, "
          f"{check.refused} connects refused, {check.idle_closed} idle connections closed; "
          f"{still_running} still running at the timeout")
    print(f"  lost {check.lost} (written on an open connection, then EOF/RST without an answer); "
          f"unanswered at the timeout {unanswered}")
    for event in check.lost_events[:10]:
        print(f"  LOST: {event}")
    print(f"RESULT sent={check.sent} answered={check.answered} lost={check.lost} "
          f"unanswered={unanswered} close_header={check.close_header} "
          f"idle_closed={check.idle_closed} refused={check.refused} non200={non200} "
          f"after_loaded={check.answered_after_signal} tail_s={tail:.3f}", flush=True)
    return 0 if check.lost == 0 and unanswered == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
