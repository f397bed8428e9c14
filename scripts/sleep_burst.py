#!/usr/bin/env python3
"""1000 concurrent `GET /sleep?ms=1000`: a timer does not hold a thread.

Opens COUNT connections at once (non-blocking connects, one `selectors` loop), sends one
`GET /sleep?ms=MS` on each as soon as it is connected, and reads every response. On an event
loop each sleeping request is only a deadline in the timer heap, so all of them finish together
about MS after the burst started; a thread-per-request server with a small pool would need
COUNT / threads rounds instead.

Prints a summary and a final machine-readable line:

    RESULT ok=1000 total=1000 wall_s=1.012 connect_s=0.034 first_s=1.001 last_s=1.012 errors=0

`wall_s` runs from the first connect to the last response. Exit status 0 only if every request
got a 200.

    scripts/sleep_burst.py --port 8888 [--count 1000] [--ms 1000]
"""

import argparse
import errno
import selectors
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts in the work tree
from http_wire import get_request, parse_response, raise_nofile_limit


class Probe:
    """One connection carrying one request, and what became of it."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.sent_at = None
        self.done_at = None
        self.status = None
        self.error = None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--ms", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=15.0, help="give up after this many s")
    args = parser.parse_args()

    raise_nofile_limit(args.count + 16)
    request = get_request(args.host, args.port, f"/sleep?ms={args.ms}", close=True)
    selector = selectors.DefaultSelector()
    probes = []

    start = time.monotonic()
    for _ in range(args.count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        probe = Probe(sock)
        probes.append(probe)
        err = sock.connect_ex((args.host, args.port))
        if err not in (0, errno.EINPROGRESS):
            probe.error = f"connect: {errno.errorcode.get(err, err)}"
            sock.close()
            continue
        # Writable means connected (or failed: SO_ERROR tells which).
        selector.register(sock, selectors.EVENT_WRITE, probe)
    connected_by = None

    pending = len(selector.get_map())
    deadline = start + args.timeout
    while pending and time.monotonic() < deadline:
        for key, _events in selector.select(timeout=0.5):
            probe = key.data
            finished = False
            if probe.sent_at is None:
                err = probe.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    probe.error = f"connect: {errno.errorcode.get(err, err)}"
                    finished = True
                else:
                    # A request this small always fits in an empty socket buffer.
                    probe.sock.send(request)
                    probe.sent_at = time.monotonic()
                    selector.modify(probe.sock, selectors.EVENT_READ, probe)
            else:
                try:
                    data = probe.sock.recv(65536)
                except OSError as exc:
                    data, probe.error = b"", f"recv: {exc.strerror}"
                if not data:
                    probe.error = probe.error or "closed before a complete response"
                    finished = True
                else:
                    probe.buf += data
                    try:
                        parsed = parse_response(probe.buf)
                    except ValueError as exc:
                        probe.error, parsed, finished = str(exc), None, True
                    if parsed is not None:
                        probe.status = parsed[1]
                        probe.done_at = time.monotonic()
                        finished = True
            if finished:
                selector.unregister(probe.sock)
                probe.sock.close()
                pending -= 1
        if connected_by is None and all(p.sent_at or p.error for p in probes):
            connected_by = time.monotonic()
    for key in list(selector.get_map().values()):
        key.data.error = key.data.error or f"no response within {args.timeout} s"
        key.fileobj.close()

    ok = [p for p in probes if p.status == 200]
    errors = [p for p in probes if p.status != 200]
    finished = [p.done_at for p in probes if p.done_at is not None]
    first = (min(finished) - start) if finished else float("nan")
    last = (max(finished) - start) if finished else float("nan")
    wall = last if len(ok) == len(probes) else time.monotonic() - start
    connect = (connected_by or time.monotonic()) - start

    print(f"sleep burst: {len(ok)}/{len(probes)} x GET /sleep?ms={args.ms} answered 200")
    print(f"  all requests sent after {connect:.3f} s; first answer at {first:.3f} s, "
          f"last at {last:.3f} s")
    latencies = sorted(p.done_at - p.sent_at for p in ok)
    if latencies:
        print(f"  per request, send to answer: min {latencies[0]:.3f} s, "
              f"median {latencies[len(latencies) // 2]:.3f} s, max {latencies[-1]:.3f} s")
    reasons = {}
    for probe in errors:
        reason = probe.error or f"status {probe.status}"
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, n in sorted(reasons.items(), key=lambda item: -item[1]):
        print(f"  {n} failed: {reason}")
    slowest = latencies[-1] if latencies else float("nan")
    print(f"RESULT ok={len(ok)} total={len(probes)} wall_s={wall:.3f} connect_s={connect:.3f} "
          f"first_s={first:.3f} last_s={last:.3f} max_latency_s={slowest:.3f} "
          f"errors={len(errors)}")
    sys.stdout.flush()
    return 0 if len(ok) == len(probes) else 1


if __name__ == "__main__":
    sys.exit(main())
