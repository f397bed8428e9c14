#!/usr/bin/env python3
"""The timing half of scripts/demo.sh (standard library only): jobs with a probe, or a load.

    demo_probe.py jobs --port P --job 'POST /speaker-count?mode=inline clip.wav' [--job ...]
    demo_probe.py load --port P --path '/cpu?ms=20' [--body clip.wav] --conns 8 --seconds 2

`jobs` sends every --job at once, each on a connection of its own, LEAD ms after a probe thread
has started sending `GET /plaintext` every INTERVAL ms on one keep-alive connection. The probe
times each request from when it was *due*, so when the server stalls, the requests that would
have been sent meanwhile count with the wait they would have had (not one slow sample). Only
probe requests due while the jobs were out count. When the server has `/metrics` (evloop),
it is read before and after: how many pool jobs ended, and the longest reactor turn since start.
One line:

    RESULT wall_ms=1234.5 status=200,200 p50_ms=0.3 p99_ms=1100.2 max_ms=1180.0 samples=250
           pool_jobs=2 turn_max_ms=1.2

`load` keeps CONNS keep-alive connections busy with GET PATH (POST of BODY with --body) for SECONDS (closed loop: each sends
its next request when the last is answered) and prints `RESULT rps=... p50_ms=... p99_ms=...
errors=...`.
"""

import argparse
import re
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts in the work tree
from http_wire import get_request, parse_response, percentile


class Client:
    """One blocking keep-alive connection."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def exchange(self, data):
        """Send `data`, return (status, body) of the response."""
        self.sock.sendall(data)
        while True:
            parsed = parse_response(self.buf)
            if parsed is not None:
                length, status, _headers = parsed
                head_end = self.buf.find(b"\r\n\r\n") + 4
                body = bytes(self.buf[head_end:length])
                del self.buf[:length]
                return status, body
            chunk = self.sock.recv(262144)
            if not chunk:
                raise ConnectionError("closed before a complete response")
            self.buf += chunk

    def close(self):
        self.sock.close()


def request_bytes(host, port, method, target, body):
    if method == "GET":
        return get_request(host, port, target)
    return (f"{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: audio/wav\r\nContent-Length: {len(body)}\r\n\r\n").encode("ascii") + body


def metrics(host, port):
    """(pool jobs ended, longest reactor turn in ms) from evloop's /metrics; None elsewhere."""
    try:
        client = Client(host, port)
        status, body = client.exchange(get_request(host, port, "/metrics", close=True))
        client.close()
    except OSError:
        return None
    if status != 200:
        return None
    text = body.decode("utf-8", "replace")
    jobs = sum(float(m) for m in re.findall(r"^evloop_pool_jobs_total\{[^}]*\} (\S+)$", text, re.M))
    turn = re.search(r"^evloop_reactor_turn_max_seconds (\S+)$", text, re.M)
    return jobs, (float(turn.group(1)) * 1000 if turn else float("nan"))


def jobs(args):
    host, port = args.host, args.port
    specs = []
    for job in args.job:
        parts = job.split()
        body = b""
        if len(parts) > 2:
            with open(parts[2], "rb") as f:
                body = f.read()
        specs.append(request_bytes(host, port, parts[0], parts[1], body))
    before = metrics(host, port)

    samples = []  # (due, latency)
    stop = threading.Event()
    probe_errors = []

    def probe():
        client = Client(host, port)
        req = get_request(host, port, args.probe)
        interval = args.interval_ms / 1000
        due = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            try:
                status, _ = client.exchange(req)
            except OSError as exc:
                probe_errors.append(str(exc))
                return
            samples.append((due, time.monotonic() - due))
            if status != 200:
                probe_errors.append(f"status {status}")
            due += interval

    results = [None] * len(specs)

    def run(i):
        t0 = time.monotonic()
        try:
            client = Client(host, port)
            status, body = client.exchange(specs[i])
            client.close()
        except OSError as exc:
            status, body = f"error({exc})", b""
        results[i] = (t0, time.monotonic(), status, body)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    time.sleep(args.lead_ms / 1000)
    sent = time.monotonic()
    runners = [threading.Thread(target=run, args=(i,)) for i in range(len(specs))]
    for t in runners:
        t.start()
    for t in runners:
        t.join()
    done = max(r[1] for r in results)
    time.sleep(args.interval_ms / 1000 * 3)  # the probe's last requests due in the window
    stop.set()
    prober.join(timeout=args.timeout)
    after = metrics(host, port)

    lat = sorted(l * 1000 for due, l in samples if sent <= due <= done)
    fields = {
        "wall_ms": f"{(done - sent) * 1000:.0f}",
        "each_ms": ",".join(f"{(r[1] - r[0]) * 1000:.0f}" for r in results),
        "status": ",".join(str(r[2]) for r in results),
        "p50_ms": f"{percentile(lat, 0.5):.1f}",
        "p99_ms": f"{percentile(lat, 0.99):.1f}",
        "max_ms": f"{(lat[-1] if lat else float('nan')):.1f}",
        "samples": len(lat),
        "probe_errors": len(probe_errors),
    }
    if before and after:
        fields["pool_jobs"] = f"{after[0] - before[0]:.0f}"
        fields["turn_max_ms"] = f"{after[1]:.0f}"
    if args.show_body:
        for r in results:
            print(r[3].decode("utf-8", "replace").strip()[:300])
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))
    return 0 if all(r[2] == 200 for r in results) and not probe_errors else 1


def load(args):
    host, port = args.host, args.port
    body = b""
    if args.body:
        with open(args.body, "rb") as f:
            body = f.read()
    req = request_bytes(host, port, "POST" if args.body else "GET", args.path, body)
    lat, errors = [], [0]
    lock = threading.Lock()
    end = time.monotonic() + args.seconds

    def worker():
        mine, bad = [], 0
        try:
            client = Client(host, port)
        except OSError:
            with lock:
                errors[0] += 1
            return
        while True:
            t0 = time.monotonic()
            if t0 >= end:
                break
            try:
                status, _ = client.exchange(req)
            except OSError:
                bad += 1
                try:
                    client = Client(host, port)
                except OSError:
                    break
                continue
            mine.append((time.monotonic() - t0) * 1000)
            if status != 200:
                bad += 1
        with lock:
            lat.extend(mine)
            errors[0] += bad

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    lat.sort()
    print(f"RESULT rps={len(lat) / took:.0f} p50_ms={percentile(lat, 0.5):.1f} "
          f"p99_ms={percentile(lat, 0.99):.1f} errors={errors[0]}")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    sub = parser.add_subparsers(dest="cmd", required=True)
    j = sub.add_parser("jobs")
    j.add_argument("--job", action="append", required=True, help="'METHOD TARGET [BODYFILE]'")
    j.add_argument("--probe", default="/plaintext")
    j.add_argument("--interval-ms", type=float, default=5.0)
    j.add_argument("--lead-ms", type=float, default=150.0)
    j.add_argument("--show-body", action="store_true")
    l = sub.add_parser("load")
    l.add_argument("--path", required=True)
    l.add_argument("--body", help="a file to POST (default: GET)")
    l.add_argument("--conns", type=int, default=8)
    l.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    return jobs(args) if args.cmd == "jobs" else load(args)


if __name__ == "__main__":
    sys.exit(main())
