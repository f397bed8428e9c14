#!/usr/bin/env python3
"""Write the seed corpus of the request_path fuzz target: fuzz/corpus/request_path/.

Each seed is `[n: u16 LE][n control bytes][request stream]` (see the target's header). Every
stream is written twice: with no control bytes (the stream arrives in one read, every request
is answered at once), and with a fixed control section that keeps the default limits and then
lets pseudo-random bytes choose reads, replies and completions. A few streams come with a
control section written by hand, to reach paths a mutation rarely finds on its own. The fuzzer
mutates both halves.

    python3 fuzz/seeds.py
"""

import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "request_path")

GET = b"GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n"

STREAMS = {
    # Well-formed requests.
    "get": GET,
    "head": b"HEAD /json HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
    "get-query-absolute-form": b"GET http://a:8080/cpu?ms=5&mode=pool HTTP/1.1\r\nHost: a:8080\r\n\r\n",
    "http10-keep-alive": b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /a HTTP/1.0\r\n\r\n",
    "post-content-length": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
    "post-chunked": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: yes\r\n\r\n",
    "pipelined-gets": GET * 12,
    "pipelined-mixed": GET
    + b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
    + b"POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"
    + b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"
    + GET,
    "expect-continue": b"POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 8\r\n\r\n"
    b"12345678" + GET,
    "expect-continue-chunked": b"PUT /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
    "crlf-between-requests": b"\r\n" + GET + b"\r\n\r\n" + GET,
    "connection-close-then-more": b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + GET,
    # Shapes that must be refused, and what follows them must never be decoded.
    "smuggle-cl-te": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\n" + GET,
    "smuggle-te-te": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"
    b"0\r\n\r\n" + GET,
    "smuggle-cl-cl": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc" + GET,
    "bare-lf": b"GET / HTTP/1.1\nHost: a\n\n" + GET,
    "bare-cr": b"GET / HTTP/1.1\rHost: a\r\n\r\n" + GET,
    "obs-fold": b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n" + GET,
    "chunk-size-garbage": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"1x\r\na\r\n0\r\n\r\n" + GET,
    "trailer-bare-lf": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"1\r\na\r\n0\r\nX: y\n\r\n" + GET,
    "host-missing-or-twice": b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "version-and-method": b"BREW /pot HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/2.0\r\nHost: a\r\n\r\n",
    "expect-other": b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx",
}

# Default limits, a 30 ms request timeout, an unbounded queue; then the choices.
CONTROL_PREFIX = bytes([0, 29, 0])

EXPECT_POST = b"POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 8\r\n\r\n"

EVENTS = b"GET /cpu/stream HTTP/1.1\r\nHost: a\r\n\r\n"

# Streams behind a control section written by hand, for paths a mutation rarely finds alone.
# The choices are read in this order: limits, timeout, queue; then per read its length; per
# request its reply (0 now, 1 timer + delay, 2 job, 3 gather + parts + whether its join
# continues, 4 stream + head status) and whether to pause; after decoding, whether pieces are
# wanted; per read the number of things that happen next, each an action (0 a job ends, 1 a
# timer fires, 3 time passes, 4 progress) and its arguments, then whether pieces are wanted.
# A choice among fewer than two options takes no byte (one live job, one running stream).
CRAFTED = {
    # A job for the GET, then a POST whose body has not all arrived: its 100 Continue must
    # queue behind the GET's response.
    "continue-behind-a-job": (
        CONTROL_PREFIX + bytes([len(GET) + len(EXPECT_POST) + 3, 2, 0, 0, 0, 0]),
        GET + EXPECT_POST + b"12345678",
    ),
    # Six requests in one read, answered now, after a timer, by a job, by a gather of two
    # parts, by a job, and now; then completions in reverse order.
    "pipelined-every-reply": (
        CONTROL_PREFIX
        + bytes([0, 0, 0, 1, 5, 0, 2, 0, 3, 2, 0, 0, 2, 0, 0, 0, 0])
        + bytes([4, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0]),
        GET * 6,
    ),
    # A stream: its head; a piece; a progress message the client does not take, replaced by
    # a newer one before it does; then the end.
    "stream-pieces-coalesced": (
        CONTROL_PREFIX
        + bytes([0, 4, 0, 0, 0])
        + bytes([4, 4, 0, 0, 4, 0, 1, 4, 0, 0, 0, 0, 0]),
        EVENTS,
    ),
    # A HEAD stream behind a job, with progress before its head: head, empty end, its job
    # cancelled; the job's late end changes nothing.
    "stream-head-request": (
        CONTROL_PREFIX
        + bytes([0, 2, 0, 4, 0, 0, 0])
        + bytes([3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        GET + b"HEAD /cpu/stream HTTP/1.1\r\nHost: a\r\n\r\n",
    ),
    # An HTTP/1.0 stream with a job and a ready response behind it: its head drops both; a
    # piece; the dropped job's late end; the stream's job fails after its head (an error event).
    "stream-http10-drops-what-follows": (
        CONTROL_PREFIX
        + bytes([0, 4, 0, 0, 2, 0, 0, 0, 0])
        + bytes([3, 4, 0, 0, 0, 1, 0, 0, 0, 1, 2, 0]),
        b"GET /cpu/stream HTTP/1.0\r\n\r\n" + GET + GET,
    ),
    # A stream's deadline after its head (its end is a 504 error event), then another's
    # before its head (an ordinary 504), behind a job that times out with it.
    "stream-deadlines": (
        CONTROL_PREFIX
        + bytes([len(EVENTS), 4, 0, 0, 0])
        + bytes([2, 4, 0, 0, 3, 20, 0])
        + bytes([0, 2, 0, 4, 0, 0, 0])
        + bytes([3, 3, 10, 0, 4, 0, 0, 3, 20, 0]),
        EVENTS + GET + EVENTS,
    ),
    # Two gathers whose joins continue, with a stream and with a job: parts end out of order,
    # the stream sends a piece, the rest ends in submission order.
    "gather-join-continues": (
        CONTROL_PREFIX
        + bytes([0, 3, 2, 1, 3, 0, 0, 3, 1, 1, 1, 0, 0])
        + bytes([4, 0, 1, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0]),
        GET * 2,
    ),
}


def seed(control: bytes, stream: bytes) -> bytes:
    return struct.pack("<H", len(control)) + control + stream


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    rng = random.Random(6)
    for name, stream in STREAMS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(seed(b"", stream))
        control = CONTROL_PREFIX + bytes(rng.randrange(256) for _ in range(48))
        with open(os.path.join(OUT, name + "-split"), "wb") as f:
            f.write(seed(control, stream))
    for name, (control, stream) in CRAFTED.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(seed(control, stream))


if __name__ == "__main__":
    main()
