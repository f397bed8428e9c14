"""The little HTTP/1.1 client-side framing the load scripts share (standard library only).

The scripts in this directory drive hundreds or thousands of sockets from one thread with
`selectors`, so they cannot use `http.client` (one blocking connection at a time). All they need
is to build a GET request and to cut complete responses off the front of a receive buffer; the
servers under test answer with `Content-Length`, never chunked, to these requests.
"""

import math
import resource


def get_request(host, port, target, close=False):
    """The bytes of one `GET target` request, like the ones wrk and ab send."""
    connection = "Connection: close\r\n" if close else ""
    return (f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n{connection}\r\n").encode("ascii")


def parse_response(buf):
    """Cut the first complete response off the front of `buf`.

    Returns `(length, status, headers)` -- `length` bytes of `buf` belong to the response,
    `headers` is a dict with lower-case names -- or None while the response is incomplete.
    Raises ValueError for something that is not an HTTP/1.x response with a length.
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x status line: {lines[0]!r}")
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "transfer-encoding" in headers:
        raise ValueError("a chunked response, which these scripts do not expect")
    total = end + 4 + int(headers.get("content-length", "0"))
    if len(buf) < total:
        return None
    return total, status, headers


def wants_close(headers):
    """True when the response says it is the last one on its connection."""
    return "close" in headers.get("connection", "").lower()


def raise_nofile_limit(needed):
    """Lift the soft RLIMIT_NOFILE towards the hard limit so `needed` sockets fit.

    Returns the soft limit now in force; raises SystemExit when even the hard limit is too low.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed + 64  # stdio, the selector's own descriptor, and some slack
        if hard != resource.RLIM_INFINITY:
            target = min(hard, target)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} is below the {needed} sockets needed")
    return soft


def percentile(sorted_values, q):
    """Nearest-rank percentile of an ascending list (q in 0..1); NaN when empty."""
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]
