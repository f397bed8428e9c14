#!/usr/bin/env python3
"""Hold COUNT idle keep-alive connections open, each after one real request.

Opens COUNT connections (at most --window connecting at a time, so the listen backlog is never
the limit), sends one `GET /plaintext` on each and reads its response, so every connection has
been through the server's whole request path and now sits idle with whatever buffers the
server keeps for it. Then it prints

    READY opened=10000 ok=10000 failed=0 open_s=2.345

and holds every connection until SIGTERM/SIGINT (or --hold seconds). Meanwhile the caller
measures the server's memory and checks that a new client is still served promptly. On the way
out it checks each connection without blocking -- still open, or closed by the server -- and
prints

    RESULT opened=10000 ok=10000 still_open=10000 closed_by_server=0

    scripts/idle_conns.py --port 8888 --count 10000 [--path /plaintext] [--hold 300]
"""

import argparse
import errno
import selectors
import signal
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts in the work tree
from http_wire import get_request, parse_response, raise_nofile_limit

stop_requested = False


def request_stop(_signum, _frame):
    global stop_requested
    stop_requested = True


def open_all(args, request):
    """Connect, request and read on COUNT sockets; return (open sockets, failure count)."""
    selector = selectors.DefaultSelector()
    held, failed, started = [], 0, 0
    buffers = {}
    deadline = time.monotonic() + args.timeout
    while (started < args.count or buffers) and time.monotonic() < deadline:
        # Keep --window connections in progress.
        while started < args.count and len(buffers) < args.window:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            started += 1
            err = sock.connect_ex((args.host, args.port))
            if err not in (0, errno.EINPROGRESS):
                failed += 1
                sock.close()
                continue
            buffers[sock] = None  # None: not sent yet
            selector.register(sock, selectors.EVENT_WRITE)
        for key, _events in selector.select(timeout=0.5):
            sock = key.fileobj
            done, ok = False, False
            if buffers[sock] is None:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    done = True
                else:
                    sock.send(request)
                    buffers[sock] = b""
                    selector.modify(sock, selectors.EVENT_READ)
            else:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    done = True
                else:
                    buffers[sock] += data
                    try:
                        parsed = parse_response(buffers[sock])
                    except ValueError:
                        parsed, done = None, True
                    if parsed is not None:
                        done, ok = True, parsed[1] == 200 and parsed[0] == len(buffers[sock])
            if done:
                selector.unregister(sock)
                del buffers[sock]
                if ok:
                    held.append(sock)
                else:
                    failed += 1
                    sock.close()
    for sock in buffers:
        failed += 1
        sock.close()
    failed += args.count - started
    selector.close()
    return held, failed


def still_open(sock):
    """True if the server has not closed or reset this connection (never blocks)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True  # nothing to read: open and idle, as it should be
    except OSError:
        return False  # reset


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--path", default="/plaintext")
    parser.add_argument("--window", type=int, default=500, help="connections opening at once")
    parser.add_argument("--timeout", type=float, default=120.0, help="limit for opening them")
    parser.add_argument("--hold", type=float, default=300.0, help="hold at most this many s")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    raise_nofile_limit(args.count + 64)
    request = get_request(args.host, args.port, args.path)

    start = time.monotonic()
    held, failed = open_all(args, request)
    print(f"READY opened={len(held)} ok={len(held)} failed={failed} "
          f"open_s={time.monotonic() - start:.3f}", flush=True)

    until = time.monotonic() + args.hold
    while not stop_requested and time.monotonic() < until:
        time.sleep(0.05)

    open_now = sum(1 for sock in held if still_open(sock))
    print(f"RESULT opened={len(held) + failed} ok={len(held)} still_open={open_now} "
          f"closed_by_server={len(held) - open_now}", flush=True)
    for sock in held:
        sock.close()
    return 0 if failed == 0 and open_now == len(held) else 1


if __name__ == "__main__":
    sys.exit(main())
