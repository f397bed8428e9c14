#!/usr/bin/env python3
"""Many `GET /cpu/stream` clients at once, some of which never read: do the readers keep pace?

Opens --clients connections at once (non-blocking connects, one `selectors` loop, one thread)
and sends one `GET /cpu/stream?ms=MS&every=EVERY` on each. --non-readers of them, spread evenly
among the others (with half, every second client), never read: once the request is sent they
leave the selector and hold the connection open until the end of the run. The others read every
event as it arrives and check the stream's framing:

- the head is `200` with `Transfer-Encoding: chunked` and `Content-Type: text/event-stream`;
- every chunk is exactly one event, `event: NAME\ndata: JSON\n\n`;
- `progress` events carry `{"done_ms", "total_ms"}` with `done_ms` rising and below MS (the
  server may coalesce progress, so a reader need not see every one);
- then one `result` event whose `ms` is MS, then the last chunk (`0\r\n\r\n`).

The run ends when every reader is done (or --timeout). It then waits --settle seconds, so that
the non-readers' jobs, queued among the readers', finish too, and measures what the kernel holds
of each non-reader's stream: the client's receive queue, looked at with MSG_PEEK (the bytes stay
there, no window opens, the server sees nothing) and checked as the readers' streams are, plus
the server's send queue (`tx_queue` in /proc/net/tcp). A stream sat whole in the kernel, so the
server never had to hold any of it back for want of room, when its last chunk is in the
client's receive queue, or when the kernel holds at least as many bytes of it as the smallest
stream a reader received (complete streams differ by some bytes: the numbers in the result,
progress the server coalesced even for a reader). Then the non-readers close (with unread data,
so the kernel resets the connection) and, --after seconds later, the server's RSS is read a
last time.

With --server-pid, the server's VmRSS (/proc/PID/status) is read before the first connect,
every --sample-ms during the run, and at the end: before, peak and after.

A stream the kernel cannot hold makes the server coalesce: it keeps the newest unsent progress
event, not every one. Two options make that happen on loopback, both set on the non-readers' sockets
before they connect, since the handshake settles what they govern: --rcvbuf sets SO_RCVBUF (the
kernel doubles the value, raises it to its minimum, and sizes the TCP window from it), and --maxseg
sets TCP_MAXSEG, the segment size they announce. Both are needed: Linux sizes the server's send
buffer from the connection's congestion window times its segment size, and the congestion window
grows as the client acknowledges segments. Measured on a 2-core machine (Linux, BBR): with
loopback's 64 KB segments the send buffer grew to nearly 4 MB (net.ipv4.tcp_wmem's maximum there)
even behind a 4 KB SO_RCVBUF, more than the longest stream (10 s, about 600 KB); with 88-byte
segments and a 4 KB SO_RCVBUF the kernel held 28 to 216 KB of a stream, varying from one connection
to the next; with 88-byte segments and SO_RCVBUF 1024 (raised to 2304) it held about 53 KB of each
in every trial.

Prints a summary and a final machine-readable line (times in ms, sizes in bytes, RSS in KB):

    RESULT readers=100 complete=100 failed=0 non_readers=100 nr_failed=0 ttr_p50=5012.3
    ttr_p99=9950.1 ttr_max=10040.2 gap_p50=2.1 gap_p99=6.3 gap_max=8.0 progress_min=97
    progress_max=99 stream_bytes=6081 reader_bytes_min=5960 nr_kernel_min=5960
    nr_kernel_max=6081 nr_whole=100 nr_unwritten_kb=0 wall_s=10.1 ideal_s=10.0 rss_before=4700
    rss_peak=5040 rss_after=5040 rss_samples=203 rss_max_interval=55.2

(on one line). `ttr` is the time from sending the request to receiving the `result` event;
`gap` is, per stream, the longest time between two consecutive events; both are summarised over
the readers whose stream completed. `ideal_s` is when the last stream would end if the --pool
workers did nothing but burn, one stream after another (clients x MS / pool); `wall_s` is when
the last reader's did. `stream_bytes` is a whole stream on the wire, head and chunk framing
included, with every progress event; `reader_bytes_min` is the smallest stream a reader
received (the server may coalesce progress even for a reader). `nr_kernel_*` is what the kernel
held of a non-reader's stream at the end (-1 without non-readers), `nr_whole` counts the
non-readers whose whole stream was there, and `nr_unwritten_kb` adds up, over the others, how
far each was from `reader_bytes_min`: at least what a server that kept every event it could not
send would hold for them.

Exit status 0 only if every reader got a complete, well-framed stream with a 200 and no socket
error, and every non-reader connected, sent its request and holds nothing malformed.

    scripts/stream_load.py --port 8888 --clients 200 --non-readers 100 --ms 100 --every 1 \\
        --server-pid 1234 [--rcvbuf 1024 --maxseg 88]
"""

import argparse
import errno
import json
import math
import re
import selectors
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts in the work tree
from http_wire import get_request, raise_nofile_limit

EVENT = re.compile(rb"event: ([a-z]+)\ndata: ([^\n]*)\n\n\Z")


class Client:
    """One connection carrying one stream request, and what became of it."""

    def __init__(self, sock, reads):
        self.sock = sock
        self.reads = reads  # False: a non-reader
        self.port = None  # our local port, to find the connection in /proc/net/tcp
        self.sent_at = None
        self.buf = b""
        self.received = 0  # bytes read, head and chunk framing included
        self.status = None
        self.in_body = False  # past the head, reading chunks
        self.last_done = 0  # the latest progress `done_ms`
        self.progress = 0  # progress events received
        self.last_event_at = None
        self.max_gap = 0.0  # s between two consecutive events
        self.result_at = None
        self.complete = False  # the last chunk arrived after the result
        self.error = None
        self.kernel = None  # a non-reader: bytes of its stream in the kernel at the end
        self.head_bytes = 0  # the response head, blank line included
        self.result_bytes = 0  # the result event's chunk, framing included


def parse(client, now, ms):
    """Consume what `client.buf` holds: the head, then whole chunks. Sets `client.error` on a
    framing fault; returns when more bytes are needed or the stream is complete."""
    if not client.in_body:
        end = client.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = client.buf[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            client.error = f"not an HTTP/1.x status line: {lines[0]!r}"
            return
        client.status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        if client.status != 200:
            client.error = f"status {client.status}"
            return
        if headers.get("transfer-encoding") != "chunked":
            client.error = "a 200 that is not chunked"
            return
        if not headers.get("content-type", "").startswith("text/event-stream"):
            client.error = f"content-type {headers.get('content-type')!r}"
            return
        client.buf = client.buf[end + 4 :]
        client.head_bytes = end + 4
        client.in_body = True
    while not client.complete and client.error is None:
        line_end = client.buf.find(b"\r\n")
        if line_end < 0:
            return
        try:
            size = int(client.buf[:line_end], 16)
        except ValueError:
            client.error = f"bad chunk size line {client.buf[:line_end][:40]!r}"
            return
        if len(client.buf) < line_end + 2 + size + 2:
            return
        data = client.buf[line_end + 2 : line_end + 2 + size]
        if client.buf[line_end + 2 + size : line_end + 4 + size] != b"\r\n":
            client.error = "a chunk not followed by CRLF"
            return
        client.buf = client.buf[line_end + 4 + size :]
        if size == 0:
            # The last chunk: no trailers, so it must end the response.
            if client.result_at is None:
                client.error = "the last chunk before any result event"
            elif client.buf:
                client.error = f"{len(client.buf)} bytes after the last chunk"
            else:
                client.complete = True
            return
        if client.result_at is not None:
            client.error = "a chunk after the result event"
            return
        event(client, data, now, ms)


def event(client, data, now, ms):
    """Check one chunk's event and time it."""
    match = EVENT.match(data)
    if match is None:
        client.error = f"a chunk that is not one event: {data[:60]!r}"
        return
    name, payload = match.group(1), match.group(2)
    try:
        fields = json.loads(payload)
    except ValueError:
        client.error = f"event data that is not JSON: {payload[:60]!r}"
        return
    if name == b"progress":
        done = fields.get("done_ms")
        if fields.get("total_ms") != ms or not isinstance(done, int):
            client.error = f"a progress event for another stream: {payload!r}"
            return
        if not client.last_done < done < ms:
            client.error = f"progress done_ms {done} after {client.last_done} (of {ms})"
            return
        client.last_done = done
        client.progress += 1
    elif name == b"result":
        if fields.get("ms") != ms:
            client.error = f"a result for another stream: {payload!r}"
            return
        client.result_at = now
        client.result_bytes = chunk_bytes(data)
    else:
        client.error = f"an unexpected event {name!r}"
        return
    if client.last_event_at is not None:
        client.max_gap = max(client.max_gap, now - client.last_event_at)
    client.last_event_at = now


def chunk_bytes(data):
    """The size on the wire of `data` sent as one chunk: hex size, CRLF, data, CRLF."""
    return len(f"{len(data):x}\r\n") + len(data) + 2


def whole_stream_bytes(client, ms, every):
    """A whole stream on the wire, every progress event in it, from the head and the result
    `client` received (the numbers in the result vary in length)."""
    progress = sum(
        chunk_bytes(f'event: progress\ndata: {{"done_ms":{done},"total_ms":{ms}}}\n\n'.encode())
        for done in range(every, ms, every)
    )
    return client.head_bytes + progress + client.result_bytes + len(b"0\r\n\r\n")


def rss_kb(pid):
    """VmRSS of `pid` in KB, or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def tcp_queues():
    """(local port, remote port) -> (tx_queue, rx_queue) for the IPv4 TCP sockets on loopback
    (/proc/net/tcp: `local_address rem_address st tx_queue:rx_queue ...`, ports in hex)."""
    queues = {}
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote, queue = fields[1], fields[2], fields[4]
            tx, rx = (int(n, 16) for n in queue.split(":"))
            queues[(int(local.split(":")[1], 16), int(remote.split(":")[1], 16))] = (tx, rx)
    return queues


def percentile(sorted_values, p):
    """The nearest-rank percentile of an ascending list (nan when empty)."""
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--non-readers", type=int, default=0)
    parser.add_argument("--ms", type=int, default=100, help="burn per stream")
    parser.add_argument("--every", type=int, default=1, help="ms between progress events")
    parser.add_argument("--rcvbuf", type=int, default=0, help="SO_RCVBUF of the non-readers")
    parser.add_argument("--maxseg", type=int, default=0, help="TCP_MAXSEG of the non-readers")
    parser.add_argument("--pool", type=int, default=2, help="the server's workers (for ideal_s)")
    parser.add_argument("--server-pid", type=int, help="sample this process's VmRSS")
    parser.add_argument("--sample-ms", type=float, default=50.0)
    parser.add_argument("--settle", type=float, default=None,
                        help="s to wait after the last reader before the non-readers close "
                             "(default: ms + 0.5 s, when there are non-readers)")
    parser.add_argument("--after", type=float, default=0.5,
                        help="s after the non-readers closed before the last RSS reading")
    parser.add_argument("--timeout", type=float, default=50.0, help="give up after this many s")
    args = parser.parse_args()
    if not 0 <= args.non_readers <= args.clients:
        parser.error("--non-readers must be between 0 and --clients")
    settle = args.settle
    if settle is None:
        # Jobs start in request order, so the last non-reader's began by the time the last
        # reader's ended: one stream's time (and some slack) sees it finish.
        settle = args.ms / 1000 + 0.5 if args.non_readers else 0.0

    raise_nofile_limit(args.clients + 16)
    request = get_request(args.host, args.port, f"/cpu/stream?ms={args.ms}&every={args.every}")
    selector = selectors.DefaultSelector()
    clients = []
    rss = {"before": None, "peak": None, "after": None, "samples": 0, "max_interval": 0.0}
    last_sample = None

    def sample():
        nonlocal last_sample
        if args.server_pid is None:
            return
        value = rss_kb(args.server_pid)
        now = time.monotonic()
        if value is not None:
            rss["peak"] = value if rss["peak"] is None else max(rss["peak"], value)
            rss["samples"] += 1
        if last_sample is not None:
            rss["max_interval"] = max(rss["max_interval"], now - last_sample)
        last_sample = now

    if args.server_pid is not None:
        rss["before"] = rss_kb(args.server_pid)
    sample()

    start = time.monotonic()
    for i in range(args.clients):
        # Non-readers spread evenly: client i is one when the running count steps up at i.
        reads = (i + 1) * args.non_readers // args.clients == i * args.non_readers // args.clients
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        # Both before connect: the window scale and the segment size are agreed in the handshake.
        if not reads and args.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
        if not reads and args.maxseg:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, args.maxseg)
        client = Client(sock, reads)
        clients.append(client)
        err = sock.connect_ex((args.host, args.port))
        if err not in (0, errno.EINPROGRESS):
            client.error = f"connect: {errno.errorcode.get(err, err)}"
            sock.close()
            continue
        # Writable means connected (or failed: SO_ERROR tells which).
        selector.register(sock, selectors.EVENT_WRITE, client)

    readers_left = sum(1 for c in clients if c.reads and c.error is None)
    deadline = start + args.timeout
    last_result = None
    while (readers_left or any(c.sent_at is None and c.error is None for c in clients)) \
            and time.monotonic() < deadline:
        wait = args.sample_ms / 1000 - (time.monotonic() - last_sample) if last_sample else 0.05
        for key, _events in selector.select(timeout=max(0.0, wait)):
            client = key.data
            finished = False
            if client.sent_at is None:
                err = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if not err:
                    try:
                        # A request this small always fits in an empty socket buffer.
                        client.sock.send(request)
                    except OSError as exc:
                        err = exc.errno
                if err:
                    client.error = f"connect or send: {errno.errorcode.get(err, err)}"
                    finished = True
                else:
                    client.sent_at = time.monotonic()
                    client.port = client.sock.getsockname()[1]
                    if client.reads:
                        selector.modify(client.sock, selectors.EVENT_READ, client)
                    else:
                        # From here on this client is only an open socket nobody reads.
                        selector.unregister(client.sock)
                        continue
            else:
                try:
                    data = client.sock.recv(65536)
                except OSError as exc:
                    data, client.error = b"", f"recv: {exc.strerror}"
                now = time.monotonic()
                if not data:
                    client.error = client.error or "closed before the end of the stream"
                    finished = True
                else:
                    client.received += len(data)
                    client.buf += data
                    parse(client, now, args.ms)
                    finished = client.complete or client.error is not None
                    if client.complete:
                        last_result = max(last_result or now, client.result_at)
            if finished:
                selector.unregister(client.sock)
                client.sock.close()
                if client.reads:
                    readers_left -= 1
        if last_sample is None or time.monotonic() - last_sample >= args.sample_ms / 1000:
            sample()
    for key in list(selector.get_map().values()):
        key.data.error = key.data.error or f"not done within {args.timeout} s"
        selector.unregister(key.fileobj)
        key.fileobj.close()
    wall = (last_result or time.monotonic()) - start

    # Let the non-readers' jobs finish, still sampling, then see what the kernel holds of them.
    settle_until = time.monotonic() + settle
    while time.monotonic() < settle_until:
        time.sleep(min(args.sample_ms / 1000, max(0.0, settle_until - time.monotonic())))
        sample()
    non_readers = [c for c in clients if not c.reads]
    queues = tcp_queues() if non_readers else {}
    for client in non_readers:
        if client.port is None:
            client.error = client.error or "request never sent"
            continue
        try:
            # Bytes left where they are: the server sees no read and no window opening.
            held = client.sock.recv(1 << 22, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            held = b""
        except OSError as exc:
            held, client.error = b"", f"peek: {exc.strerror}"
        client.buf = held
        parse(client, time.monotonic(), args.ms)
        if client.error is None and client.buf and not client.in_body:
            client.error = "no complete head in the receive queue"
        server = queues.get((args.port, client.port), (0, 0))[0]
        client.kernel = len(held) + server
    for client in non_readers:
        client.sock.close()  # closing twice is harmless
    after_until = time.monotonic() + args.after
    while time.monotonic() < after_until:
        time.sleep(min(args.sample_ms / 1000, max(0.0, after_until - time.monotonic())))
        sample()
    if args.server_pid is not None:
        rss["after"] = rss_kb(args.server_pid)

    readers = [c for c in clients if c.reads]
    good = [c for c in readers if c.complete and c.error is None]
    failed = [c for c in readers if not (c.complete and c.error is None)]
    nr_failed = [c for c in non_readers if c.error is not None]
    ttr = sorted((c.result_at - c.sent_at) * 1000 for c in good)
    gaps = sorted(c.max_gap * 1000 for c in good)
    progress = sorted(c.progress for c in good)
    expected = math.ceil(args.ms / args.every) - 1
    stream_bytes = max((whole_stream_bytes(c, args.ms, args.every) for c in good), default=0)
    # The smallest stream a reader received: progress the server coalesced for a reader, and
    # the numbers of the result, make complete streams differ by some bytes.
    smallest = min((c.received for c in good), default=0)
    kernel = [c.kernel for c in non_readers if c.kernel is not None]
    ended = [c for c in non_readers if c.kernel is not None and
             (c.complete or (smallest and c.kernel >= smallest))]
    # Without a whole reader's stream to compare with, only a last chunk seen says "whole".
    cut = [c for c in non_readers if c.kernel is not None and c not in ended and smallest]
    unwritten = sum(max(0, smallest - c.kernel) for c in cut)
    ideal = args.clients * args.ms / args.pool / 1000

    print(f"stream load: {len(clients)} x GET /cpu/stream?ms={args.ms}&every={args.every}, "
          f"{len(non_readers)} never reading"
          + (f" (SO_RCVBUF {args.rcvbuf})" if args.rcvbuf and non_readers else "")
          + (f" (TCP_MAXSEG {args.maxseg})" if args.maxseg and non_readers else ""))
    print(f"  readers: {len(good)}/{len(readers)} complete streams ending in a result event"
          + (f"; last result {wall:.2f} s after the first connect (ideal {ideal:.2f} s)"
             if good else ""))
    if ttr:
        print(f"  request to result, ms: p50 {percentile(ttr, 50):.1f}  p99 "
              f"{percentile(ttr, 99):.1f}  max {ttr[-1]:.1f}")
        print(f"  longest gap between two events of a stream, ms: p50 {percentile(gaps, 50):.1f}"
              f"  p99 {percentile(gaps, 99):.1f}  max {gaps[-1]:.1f}")
        print(f"  progress events per stream: {progress[0]}..{progress[-1]} of {expected} "
              f"(fewer when the server coalesced some); a whole stream is {stream_bytes} bytes "
              f"on the wire, the readers received {smallest}..{max(c.received for c in good)}")
    if kernel:
        print(f"  non-readers: the kernel held {min(kernel)}..{max(kernel)} bytes of a stream at "
              f"the end (client receive queue + server send queue); {len(ended)} of "
              f"{len(non_readers)} streams were there whole")
        if cut:
            short = [smallest - c.kernel for c in cut]
            print(f"  the other {len(cut)} were {min(short)}..{max(short)} bytes short of the "
                  f"smallest stream a reader received: {unwritten / 1024:.0f} KB in all, that a "
                  f"server keeping every event it could not send would hold")
    if args.server_pid is not None:
        print(f"  server VmRSS, KB: before {rss['before']}, peak {rss['peak']}, after "
              f"{rss['after']} ({rss['samples']} samples, at most "
              f"{rss['max_interval'] * 1000:.0f} ms apart)")
    reasons = {}
    for client in failed + nr_failed:
        reason = ("reader: " if client.reads else "non-reader: ") + (client.error or "incomplete")
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, n in sorted(reasons.items(), key=lambda item: -item[1]):
        print(f"  {n} failed: {reason}")

    def fmt(values, p):
        return f"{percentile(values, p):.1f}" if values else "nan"

    print(f"RESULT readers={len(readers)} complete={len(good)} failed={len(failed)} "
          f"non_readers={len(non_readers)} nr_failed={len(nr_failed)} "
          f"ttr_p50={fmt(ttr, 50)} ttr_p99={fmt(ttr, 99)} ttr_max={fmt(ttr, 100)} "
          f"gap_p50={fmt(gaps, 50)} gap_p99={fmt(gaps, 99)} gap_max={fmt(gaps, 100)} "
          f"progress_min={progress[0] if progress else 0} "
          f"progress_max={progress[-1] if progress else 0} stream_bytes={stream_bytes} "
          f"reader_bytes_min={smallest} "
          f"nr_kernel_min={min(kernel) if kernel else -1} "
          f"nr_kernel_max={max(kernel) if kernel else -1} nr_whole={len(ended)} "
          f"nr_unwritten_kb={unwritten / 1024:.0f} wall_s={wall:.2f} ideal_s={ideal:.2f} "
          f"rss_before={rss['before']} rss_peak={rss['peak']} rss_after={rss['after']} "
          f"rss_samples={rss['samples']} rss_max_interval={rss['max_interval'] * 1000:.1f}")
    sys.stdout.flush()
    return 0 if not failed and not nr_failed and len(good) == len(readers) else 1


if __name__ == "__main__":
    sys.exit(main())
