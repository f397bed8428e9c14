#!/usr/bin/env python3
"""Pipelining flood: clients that send without ever reading cannot monopolise the loop.

Starts `./evloop` (or uses --port), opens COUNT connections that each write pipelined
`GET /plaintext` requests as fast as the socket takes them and never read a byte, and meanwhile
times one well-behaved client doing a request every 20 ms on its own connection. The server runs
with `RUST_LOG=evloop::turns=debug`, so its log has one line a second with the longest reactor
turn; the script reports the longest of them.

    scripts/flood.py [--count 50] [--seconds 10] [--binary ./evloop]

Final machine-readable line:

    RESULT clients=50 seconds=10 max_turn_us=… probe_p50_ms=… probe_max_ms=… probe_errors=0

Exit status 0 when the probe got every answer (the limits, in ms of turn time, are reported,
not asserted: they depend on the machine).
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True

REQUEST = b"GET /plaintext HTTP/1.1\r\nHost: flood\r\n\r\n"


def start_server(binary):
    env = dict(os.environ, RUST_LOG="warn,evloop::turns=debug")
    proc = subprocess.Popen(
        [binary, "--port", "0", "--pool", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    line = proc.stdout.readline()
    match = re.search(r"http://[^:]+:(\d+)", line)
    if not match:
        proc.kill()
        sys.exit(f"could not read the port from: {line!r}")
    log = []
    threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True).start()
    return proc, int(match.group(1)), log


def flooder(port, stop):
    """Write pipelined requests until the socket takes no more, forever; never read."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    batch = REQUEST * 1024
    while not stop.is_set():
        try:
            sock.send(batch)
        except BlockingIOError:
            time.sleep(0.001)
        except OSError:
            return
    sock.close()


def probe(port, stop, latencies, errors):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(5)
    while not stop.is_set():
        started = time.monotonic()
        try:
            sock.sendall(REQUEST)
            data = b""
            while b"Hello, World!" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    raise OSError("closed")
                data += chunk
            latencies.append(time.monotonic() - started)
        except OSError:
            errors.append(1)
            sock = socket.create_connection(("127.0.0.1", port))
            sock.settimeout(5)
        time.sleep(0.02)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--binary", default="./evloop")
    args = parser.parse_args()

    proc, port, log = start_server(args.binary)
    stop = threading.Event()
    latencies, errors = [], []
    try:
        threads = [
            threading.Thread(target=flooder, args=(port, stop), daemon=True)
            for _ in range(args.count)
        ]
        threads.append(
            threading.Thread(target=probe, args=(port, stop, latencies, errors), daemon=True)
        )
        for t in threads:
            t.start()
        time.sleep(args.seconds)
        stop.set()
        time.sleep(1.2)  # one more turn-statistics line
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
    turns = [int(m.group(1)) for line in log for m in [re.search(r"longest (\d+) us", line)] if m]
    cpus = [int(m.group(1)) for line in log for m in [re.search(r"CPU in one turn (\d+) us", line)] if m]
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000 if latencies else float("nan")
    worst = latencies[-1] * 1000 if latencies else float("nan")
    print(f"turn-statistics lines: {len(turns)}; longest turns (us): {sorted(turns)[-5:]}; "
          f"most CPU in one turn (us): {sorted(cpus)[-5:]}")
    print(
        f"RESULT clients={args.count} seconds={args.seconds:g} max_turn_us={max(turns, default=-1)} "
        f"max_turn_cpu_us={max(cpus, default=-1)} "
        f"probe_p50_ms={p50:.2f} probe_max_ms={worst:.2f} probe_requests={len(latencies)} "
        f"probe_errors={len(errors)}"
    )
    return 0 if latencies and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
