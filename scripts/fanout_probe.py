#!/usr/bin/env python3
"""One `GET /fanout` and, on another connection meanwhile, `GET /plaintext` on a fixed schedule.

    scripts/fanout_probe.py --port 8888 --target '/fanout?n=200&ms=200&mode=inline'
    scripts/fanout_probe.py --port 8888 --idle-s 2      # the probe alone, for its floor

The probe sends one `GET /plaintext` every INTERVAL ms on one keep-alive connection, whether or
not the answers to the earlier ones have come (open loop: they pipeline behind one another when
the server stalls), and times each from the moment it was *due* to the end of its answer. A
closed-loop probe (wrk -c1, or a loop that sends the next request when the last is answered)
would send one request into a 40 s stall, count one slow sample and go on as if nothing had
happened; this one counts every user who would have arrived meanwhile, each with the wait that
user would have had. A late send (this program descheduled on a busy machine) is timed from when
it was due as well, so the probe's own floor shows in an --idle-s run.

The fan-out goes out LEAD ms after the probe starts, on its own connection. The samples counted
are the probe requests due between the fan-out's send and the end of its answer; the probe then
stops and waits for its outstanding answers. Prints a summary and a final machine-readable line:

    RESULT status=200 mode=inline n=200 ms=200 elapsed_ms=40213.4 threads=1 wall_ms=40215.0
           samples=20107 p50_ms=20104.1 p99_ms=39812.6 max_ms=40212.9 lost=0 non200=0

(one line). `lost` counts probe requests that a closed connection left unanswered (the probe
then reconnects); `non200` probe answers other than 200. Exit status 0 only if the fan-out (when
there is one) was answered 200 and every probe request counted was answered 200.
"""

import argparse
import collections
import json
import selectors
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts in the work tree
from http_wire import get_request, parse_response, percentile


class Conn:
    """A non-blocking connection with a receive buffer and bytes still to send."""

    def __init__(self, selector, host, port, data):
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.selector = selector
        self.buf = bytearray()  # deleting from the front of a bytearray does not copy the rest
        self.out = b""
        self.selector.register(self.sock, selectors.EVENT_READ, data)

    def send(self, data):
        """Queue `data` and write as much as the socket takes now."""
        self.out += data
        self.flush()

    def flush(self):
        if self.out:
            try:
                sent = self.sock.send(self.out)
                self.out = self.out[sent:]
            except BlockingIOError:
                pass
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.out else 0)
        key = self.selector.get_key(self.sock)
        if key.events != events:
            self.selector.modify(self.sock, events, key.data)

    def receive(self):
        """Read what is there; False once the peer has closed (or reset) the connection."""
        try:
            data = self.sock.recv(262144)
        except BlockingIOError:
            return True
        except OSError:
            return False
        self.buf += data
        return bool(data)

    def close(self):
        self.selector.unregister(self.sock)
        self.sock.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", help="the fan-out's path and query (none: --idle-s)")
    parser.add_argument("--idle-s", type=float, default=2.0, help="window without a fan-out")
    parser.add_argument("--probe", default="/plaintext")
    parser.add_argument("--interval-ms", type=float, default=2.0)
    parser.add_argument("--lead-ms", type=float, default=200.0)
    parser.add_argument("--timeout", type=float, default=150.0, help="give up after this many s")
    args = parser.parse_args()

    selector = selectors.DefaultSelector()
    probe_request = get_request(args.host, args.port, args.probe)
    interval = args.interval_ms / 1000.0
    probe = Conn(selector, args.host, args.port, "probe")
    due_times = collections.deque()  # when each request sent and not yet answered was due
    samples = []  # (due, latency) of every answered probe request
    lost = []  # due times of requests a closed connection left unanswered
    non200 = 0
    reconnects = 0

    start = time.monotonic()
    next_due = start
    fan_at = start + args.lead_ms / 1000.0
    fan = None
    fan_sent = fan_done = None
    fan_status = None
    fan_body = b""
    window_end = None if args.target else fan_at + args.idle_s
    deadline = start + args.timeout

    while True:
        now = time.monotonic()
        if now > deadline:
            break
        if args.target and fan is None and now >= fan_at:
            fan = Conn(selector, args.host, args.port, "fanout")
            fan_sent = time.monotonic()
            fan.send(get_request(args.host, args.port, args.target, close=True))
        # Every request due by now, in one write if several are (a late loop pipelines them).
        batch = 0
        while next_due <= now and (window_end is None or next_due <= window_end):
            due_times.append(next_due)
            next_due += interval
            batch += 1
        if batch:
            probe.send(probe_request * batch)
        scheduling = window_end is None or next_due <= window_end
        if not scheduling and not due_times and (fan is None or fan_done is not None):
            break
        wait = max(0.0, next_due - time.monotonic()) if scheduling else 0.5
        for key, events in selector.select(timeout=min(wait, 0.5)):
            conn = probe if key.data == "probe" else fan
            if events & selectors.EVENT_WRITE:
                conn.flush()
            if not events & selectors.EVENT_READ:
                continue
            alive = conn.receive()
            if conn is fan:
                if fan_status is None:
                    try:
                        parsed = parse_response(fan.buf)
                    except ValueError as exc:
                        parsed, fan_status = None, f"unparsable ({exc})"
                    if parsed is not None:
                        fan_done = time.monotonic()
                        length, fan_status, _headers = parsed
                        head_end = fan.buf.find(b"\r\n\r\n") + 4
                        fan_body = bytes(fan.buf[head_end:length])
                if fan_status is None and not alive:
                    fan_status = "closed before a complete response"
                if fan_status is not None:
                    fan_done = fan_done or time.monotonic()
                    fan.close()
                    window_end = fan_done
                    fan = False  # done: never reopened
                continue
            done_at = time.monotonic()
            while True:
                try:
                    parsed = parse_response(probe.buf)
                except ValueError:
                    parsed, alive = None, False
                if parsed is None or not due_times:
                    break
                length, status, _headers = parsed
                del probe.buf[:length]
                due = due_times.popleft()
                samples.append((due, done_at - due))
                if status != 200:
                    non200 += 1
            if not alive:
                # Whatever was sent (or queued) and not answered is lost; start again.
                lost.extend(due_times)
                due_times.clear()
                probe.close()
                probe = Conn(selector, args.host, args.port, "probe")
                reconnects += 1

    # Anything still outstanding at the deadline counts as lost.
    lost.extend(due_times)
    if args.target and fan_status is None:
        fan_status = f"no answer within {args.timeout} s"
        fan_done = time.monotonic()
        window_end = fan_done
    lo = fan_sent if args.target else fan_at
    hi = window_end if window_end is not None else time.monotonic()
    counted = sorted(lat for due, lat in samples if lo <= due <= hi)
    lost_counted = sum(1 for due in lost if lo <= due <= hi)

    fields = {"status": fan_status if args.target else "idle"}
    if args.target:
        answer = {}
        try:
            answer = json.loads(fan_body.decode("utf-8"))
        except ValueError:
            pass
        for key in ("mode", "n", "ms", "elapsed_ms", "threads"):
            fields[key] = answer.get(key, "?") if isinstance(answer, dict) else "?"
        fields["wall_ms"] = f"{(fan_done - fan_sent) * 1000:.1f}"
        print(f"GET {args.target}: {fan_status} in {fields['wall_ms']} ms: "
              f"{fan_body.decode('utf-8', 'replace').strip()[:300]}")
    else:
        print(f"probe alone for {args.idle_s} s")
    ms = [lat * 1000 for lat in counted]
    fields.update(
        samples=len(ms),
        p50_ms=f"{percentile(ms, 0.50):.2f}",
        p99_ms=f"{percentile(ms, 0.99):.2f}",
        max_ms=f"{(ms[-1] if ms else float('nan')):.2f}",
        lost=lost_counted,
        non200=non200,
    )
    print(f"  GET {args.probe} every {args.interval_ms} ms meanwhile: {len(ms)} answered, "
          f"p50 {fields['p50_ms']} ms, p99 {fields['p99_ms']} ms, max {fields['max_ms']} ms; "
          f"{lost_counted} lost, {non200} not 200, {reconnects} reconnects")
    print("RESULT " + " ".join(f"{key}={value}" for key, value in fields.items()))
    sys.stdout.flush()
    ok = (not args.target or fan_status == 200) and lost_counted == 0 and non200 == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
