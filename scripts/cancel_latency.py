#!/usr/bin/env python3
"""How long after a streaming client leaves is the worker free again?

    scripts/cancel_latency.py HOST:PORT [--wav FILE] [--trials 20]

Run it against a server with one worker (`evloop --pool 1`), so that the only way another job
can run is that the abandoned one stopped. Each trial:

1. opens a stream — `GET /cpu/stream?ms=10000&every=100`, or with `--wav`,
   `POST /analyze/stream` with that file — and reads until its first `progress` event, so the
   job is running;
2. closes the streaming connection (t0), and at once sends `GET /cpu?ms=1` on a second
   connection opened beforehand;
3. stops the clock when that answer has arrived (t1).

t1 - t0 is the time from the disconnect to a free worker, plus a 1 ms job and a round trip.
Prints every trial, then the median and the maximum, in milliseconds.
"""

import argparse
import socket
import statistics
import sys
import time


def read_until(sock, marker, limit=30.0):
    """Read until `marker` appears; return everything read."""
    sock.settimeout(limit)
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"connection closed before {marker!r}: {data[:200]!r}")
        data += chunk
    return data


def read_response(sock):
    """Read one Content-Length response; return its status."""
    data = read_until(sock, b"\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"connection closed {length - len(body)} bytes short")
        body += chunk
    return int(head.split(b" ")[1])


def trial(host, port, request):
    streamer = socket.create_connection((host, port))
    streamer.sendall(request)
    read_until(streamer, b"event: progress")
    other = socket.create_connection((host, port))
    other.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.perf_counter()
    streamer.close()
    other.sendall(b"GET /cpu?ms=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    status = read_response(other)
    t1 = time.perf_counter()
    other.close()
    if status != 200:
        raise RuntimeError(f"/cpu?ms=1 answered {status}")
    return (t1 - t0) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("address", help="HOST:PORT of an evloop started with --pool 1")
    parser.add_argument("--wav", help="stream POST /analyze/stream of this file instead")
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    host, _, port = args.address.rpartition(":")
    if args.wav:
        body = open(args.wav, "rb").read()
        request = (
            f"POST /analyze/stream HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
    else:
        request = b"GET /cpu/stream?ms=10000&every=100 HTTP/1.1\r\nHost: x\r\n\r\n"
    times = []
    for n in range(args.trials):
        ms = trial(host, int(port), request)
        times.append(ms)
        print(f"trial {n + 1:2}: {ms:7.2f} ms")
        time.sleep(0.05)
    print(
        f"disconnect to free worker, {len(times)} trials: "
        f"median {statistics.median(times):.2f} ms, max {max(times):.2f} ms"
    )


if __name__ == "__main__":
    sys.exit(main())
