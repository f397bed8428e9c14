#!/usr/bin/env python3
"""Clients that give up in the middle of a request, for --seconds, at a bounded rate.

Each round opens one connection and abandons it in one of three ways, in turn:

- `half_head`: half of a `GET /plaintext` head, then close;
- `half_body`: the head of `POST /snr-detect` with the WAV's Content-Length and half of the WAV,
  then close (the server holds a partial body it must free);
- `abandoned_job`: `GET /cpu?ms=200`, then close before the answer (the job must be cancelled,
  or at least its answer dropped). At most one every --job-every seconds, so abandoned jobs
  never take more than a tenth of a pool of 2.

Every other close is a reset (SO_LINGER 0: RST instead of FIN), the way a crashed client or a
proxy that gives up goes away. Every --control-every rounds a fresh connection sends a whole
`GET /plaintext` and must get a 200: the server still serves honest clients.

Prints a machine-readable last line:

    RESULT rounds=1200 half_head=400 half_body=400 abandoned_job=400 resets=600 control_ok=120 control_failed=0 errors=0

`errors` counts what should not happen (a connect refused or timed out, a write failing before
we chose to give up). Exit status 0 only if errors and control_failed are both 0.

    scripts/abandon.py --port 8888 --seconds 60 --wav tests/fixtures/audio/snr_v1_pink_20db.wav
"""

import argparse
import socket
import struct
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts in the work tree
from http_wire import get_request, parse_response


def connect(args):
    sock = socket.create_connection((args.host, args.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def close(sock, reset):
    """Close with FIN, or with RST when `reset` (SO_LINGER on, timeout 0)."""
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def control(args):
    """One whole GET /plaintext on a fresh connection: True if answered 200."""
    try:
        with connect(args) as sock:
            sock.sendall(get_request(args.host, args.port, "/plaintext", close=True))
            buf = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                data = sock.recv(65536)
                if not data:
                    break
                buf += data
                parsed = parse_response(buf)
                if parsed is not None:
                    return parsed[1] == 200
    except (OSError, ValueError):
        pass
    return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True, help="stop after this long")
    parser.add_argument("--wav", required=True, help="the body half-sent to /snr-detect")
    parser.add_argument("--rate", type=float, default=20.0, help="rounds per second, at most")
    parser.add_argument("--job-every", type=float, default=1.0, help="s between abandoned jobs")
    parser.add_argument("--control-every", type=int, default=10, help="rounds per control GET")
    parser.add_argument("--max-rounds", type=int, default=100000, help="a bound on the loop")
    args = parser.parse_args()

    with open(args.wav, "rb") as f:
        wav = f.read()
    head = get_request(args.host, args.port, "/plaintext")
    post_head = (
        f"POST /snr-detect HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
        f"Content-Type: audio/wav\r\nContent-Length: {len(wav)}\r\n\r\n"
    ).encode("ascii")
    job = get_request(args.host, args.port, "/cpu?ms=200")

    counts = dict(half_head=0, half_body=0, abandoned_job=0, resets=0,
                  control_ok=0, control_failed=0, errors=0)
    kinds = ["half_head", "half_body", "abandoned_job"]
    start = time.monotonic()
    last_job = -args.job_every
    rounds = 0
    while time.monotonic() - start < args.seconds and rounds < args.max_rounds:
        round_start = time.monotonic()
        kind = kinds[rounds % len(kinds)]
        if kind == "abandoned_job" and round_start - last_job < args.job_every:
            kind = "half_head"
        reset = rounds % 2 == 1
        try:
            sock = connect(args)
            try:
                if kind == "half_head":
                    sock.sendall(head[: len(head) // 2])
                elif kind == "half_body":
                    sock.sendall(post_head + wav[: len(wav) // 2])
                else:
                    sock.sendall(job)
                    last_job = round_start
                    time.sleep(0.02)  # long enough for the job to be queued or running
            finally:
                close(sock, reset)
            counts[kind] += 1
            counts["resets"] += reset
        except OSError as err:
            counts["errors"] += 1
            print(f"{kind}: {err}", file=sys.stderr)
        rounds += 1
        if rounds % args.control_every == 0:
            counts["control_ok" if control(args) else "control_failed"] += 1
        pause = 1.0 / args.rate - (time.monotonic() - round_start)
        if pause > 0:
            time.sleep(pause)

    print(f"RESULT rounds={rounds} " + " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
    return 0 if counts["errors"] == 0 and counts["control_failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
