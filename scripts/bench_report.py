#!/usr/bin/env python3
"""BENCHMARKS.md and its SVG plots, from the figures one run of scripts/load.sh recorded.

    scripts/bench_report.py --data DATA.tsv --out DIR

writes DIR/BENCHMARKS.md and DIR/bench/*.svg. scripts/load.sh runs it at the end of every run,
on the file its `datum` lines fill: one "KEY<TAB>VALUE" line per figure ("a.evloop.rps",
"d.pool.p99", ...; the last value of a key wins), plus the summary table's rows ("row") and the
checks ("check") exactly as it printed them. Any scenario may be missing (a run of some of them):
its section then says it was not run, and its plot is left out.

Python's standard library only, and the SVG is written by hand: the same figures give the same
bytes, and nothing needs installing (gnuplot, matplotlib) on a machine that runs `make smoke`.
"""

import argparse
import math
import os
import sys
from xml.sax.saxutils import escape

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts in the work tree

# --- the data ---------------------------------------------------------------------------------


def load(path):
    """(figures, rows, checks) from a data file: rows and checks in the order they came."""
    figures, rows, checks = {}, [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or "\t" not in line:
                continue
            key, value = line.split("\t", 1)
            if key == "row":
                rows.append((value.split("|", 4) + [""] * 5)[:5])
            elif key == "check":
                checks.append((value.split("|", 2) + [""] * 3)[:3])
            else:
                figures[key] = value
    return figures, rows, checks


def num(figures, key):
    """The figure KEY as a float, or None (absent, "n/a", "-", empty)."""
    value = figures.get(key, "")
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def fmt(x):
    """A figure for a label: thousands separated, about three significant digits."""
    if x is None:
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 0.1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def tick(t):
    """An axis tick's label: 0, 0.1, 1, 20, 400, 5k, 1.5M."""
    if t >= 1e6:
        return f"{t / 1e6:g}M"
    if t >= 1000:
        return f"{t / 1000:g}k"
    return f"{t:g}"


# --- SVG ----------------------------------------------------------------------------------------

FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
WIDTH = 640
COLORS = {
    "evloop": "#2f6db5",
    "nginx": "#3b9a4f",
    "FastAPI": "#e08a1e",
    "idle": "#2f6db5",
    "pool saturated": "#e08a1e",
    "work inline": "#c23b3b",
    "p99": "#7a5195",
    "burn": "#8fb3e0",
}
GRID = "#dddddd"
AXIS = "#444444"


class Svg:
    """An SVG document built up element by element; str() gives the file."""

    def __init__(self, width, height, title):
        self.width, self.height = width, height
        self.parts = []
        self.rect(0, 0, width, height, "#ffffff")
        self.text(width / 2, 22, title, size=15, anchor="middle", weight="bold")

    def text(self, x, y, s, size=11, anchor="start", weight="normal", fill="#222222", rotate=None):
        transform = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
        self.parts.append(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{fill}"{transform}>{escape(str(s))}</text>')

    def rect(self, x, y, w, h, fill, stroke=None):
        extra = f' stroke="{stroke}"' if stroke else ""
        self.parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" '
                          f'height="{max(h, 0):.1f}" fill="{fill}"{extra}/>')

    def line(self, x1, y1, x2, y2, stroke=AXIS, width=1, dash=None):
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                          f'stroke="{stroke}" stroke-width="{width}"{extra}/>')

    def polyline(self, points, stroke, width=2, dash=None):
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        self.parts.append(f'<polyline points="{pts}" fill="none" stroke="{stroke}" '
                          f'stroke-width="{width}"{extra}/>')

    def circle(self, x, y, r, fill):
        self.parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{fill}"/>')

    def legend(self, y, entries):
        """Colour swatches and names, centred on one line at y. entries: (name, colour, dashed)."""
        widths = [18 + 7 * len(name) + 18 for name, _c, _d in entries]
        x = (self.width - sum(widths)) / 2
        for (name, colour, dashed), w in zip(entries, widths):
            if dashed:
                self.line(x, y - 4, x + 14, y - 4, colour, 2, "5,3")
            else:
                self.rect(x, y - 10, 12, 12, colour)
            self.text(x + 18, y, name, size=11)
            x += w

    def __str__(self):
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" '
                f'height="{self.height}" viewBox="0 0 {self.width} {self.height}" '
                f'font-family="{FONT}">\n' + "\n".join(self.parts) + "\n</svg>\n")


def nice_ticks(top):
    """Ticks from 0 to a round number at or above top: steps of 1, 2 or 5 x 10^k."""
    if top <= 0:
        top = 1
    raw = top / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    n = math.ceil(top / step - 1e-9)
    return [i * step for i in range(n + 1)]


class Panel:
    """A plot area inside an Svg: a y axis (linear from 0, or log) and x slots for categories."""

    def __init__(self, svg, x, y, w, h, title, ymax, ylabel, log=False, ymin=None):
        self.svg, self.x, self.y, self.w, self.h, self.log = svg, x, y, w, h, log
        if title:
            svg.text(x + w / 2, y - 8, title, size=12, anchor="middle", weight="bold")
        if log:
            lo = math.floor(math.log10(ymin if ymin and ymin > 0 else 0.01))
            hi = math.ceil(math.log10(ymax if ymax and ymax > 0 else 1))
            if hi <= lo:
                hi = lo + 1
            self.lo, self.hi = lo, hi
            ticks = [10 ** e for e in range(lo, hi + 1)]
        else:
            ticks = nice_ticks((ymax or 1) * 1.12)  # room above the tallest bar for its label
            self.top = ticks[-1]
        for t in ticks:
            ty = self.ypos(t)
            svg.line(x, ty, x + w, ty, GRID)
            svg.text(x - 5, ty + 4, tick(t), size=10, anchor="end")
        svg.line(x, y, x, y + h)
        svg.line(x, y + h, x + w, y + h)
        if ylabel:
            svg.text(x - 38, y + h / 2, ylabel, size=11, anchor="middle", rotate=-90)

    def ypos(self, v):
        if self.log:
            v = max(v, 10 ** self.lo)
            return self.y + self.h - (math.log10(v) - self.lo) / (self.hi - self.lo) * self.h
        return self.y + self.h - v / self.top * self.h

    def bars(self, categories, series, value):
        """Grouped bars: one group per category, one bar per series present in it, each labelled
        with its value. value(category, series) -> float or None (no bar; "n/a" if any bar)."""
        slot = self.w / len(categories)
        for i, cat in enumerate(categories):
            present = [s for s in series if value(cat, s) is not None]
            n = max(len(present), 1)
            bw = min(56, slot * 0.8 / n)
            x0 = self.x + i * slot + (slot - bw * n) / 2
            for j, s in enumerate(present):
                v = value(cat, s)
                bx = x0 + j * bw
                top = self.ypos(v)
                base = self.y + self.h
                self.svg.rect(bx + 1, top, bw - 2, base - top, COLORS.get(s, "#888888"))
                self.svg.text(bx + bw / 2, top - 4, fmt(v), size=10 if bw > 30 else 9,
                              anchor="middle")
            if not present:
                self.svg.text(self.x + (i + 0.5) * slot, self.y + self.h - 6, "not run", size=10,
                              anchor="middle", fill="#888888")
            self.svg.text(self.x + (i + 0.5) * slot, self.y + self.h + 15, cat, size=11,
                          anchor="middle")

    def hline(self, v, label, colour="#555555"):
        ty = self.ypos(v)
        self.svg.line(self.x, ty, self.x + self.w, ty, colour, 1.5, "6,4")
        self.svg.text(self.x + self.w - 2, ty - 4, label, size=10, anchor="end", fill=colour)


# --- the plots ----------------------------------------------------------------------------------

SERVERS = ["evloop", "nginx", "FastAPI"]
# (scenario, panel title) of the plots per scenario, in this order.
PER_SCENARIO = [
    ("a", "a. GET /plaintext, 64 connections"),
    ("b", "b. pipelined 16 deep"),
    ("f", "f. ab -k -c50 (HTTP/1.0)"),
    ("c", "c. GET /cpu?ms=5, pool of 2"),
]


def server_value(figures, scenario, server, what):
    """A server's figure in a scenario's panel; none for the twin in c, whose /cpu is other work
    (a fixed loop, where evloop's burns wall time)."""
    if scenario == "c" and server == "FastAPI":
        return None
    return num(figures, f"{scenario}.{'fastapi' if server == 'FastAPI' else server}.{what}")


def plot_per_scenario(figures, what, title, ylabel, ideal=False):
    """Small multiples, one panel per scenario that ran (its own scale), a bar per server."""
    panels = [(s, t) for s, t in PER_SCENARIO
              if any(server_value(figures, s, srv, what) is not None for srv in SERVERS)]
    if not panels:
        return None
    cols = 2
    rows = math.ceil(len(panels) / cols)
    ph, top = 170, 78
    svg = Svg(WIDTH, top + rows * (ph + 62) + 4, title)
    present = [s for s in SERVERS if any(server_value(figures, sc, s, what) is not None
                                         for sc, _t in panels)]
    legend = [(s, COLORS[s], False) for s in present]
    if ideal and what == "rps" and num(figures, "c.ideal") is not None and any(
            s == "c" for s, _t in panels):
        legend.append(("ideal (c)", "#555555", True))
    svg.legend(44, legend)
    pw = (WIDTH - 70 * cols - 20) / cols
    for k, (scenario, panel_title) in enumerate(panels):
        px = 70 + (k % cols) * (pw + 70)
        py = top + (k // cols) * (ph + 62)
        vals = {s: server_value(figures, scenario, s, what) for s in SERVERS}
        ymax = max([v for v in vals.values() if v is not None] + [0])
        if ideal and scenario == "c" and what == "rps":
            ymax = max(ymax, num(figures, "c.ideal") or 0)
        p = Panel(svg, px, py, pw, ph, panel_title, ymax, ylabel)
        p.bars([s for s in SERVERS if vals[s] is not None], SERVERS,
               lambda cat, s: vals[s] if cat == s else None)
        if ideal and scenario == "c" and what == "rps" and num(figures, "c.ideal") is not None:
            p.hline(num(figures, "c.ideal"), f"ideal {fmt(num(figures, 'c.ideal'))}")
    return svg


LAT_STATES = [("idle", "idle"), ("pool", "pool saturated"), ("inline", "work inline")]
PCTS = ["p50", "p75", "p90", "p99"]


def plot_latency(figures):
    """d: /plaintext latency percentiles, grouped by percentile, one bar per state, log y."""
    vals = {(p, name): num(figures, f"d.{key}.{p}") for key, name in LAT_STATES for p in PCTS}
    if all(v is None for v in vals.values()):
        return None
    present = [v for v in vals.values() if v is not None and v > 0]
    svg = Svg(WIDTH, 380, "d. GET /plaintext latency, wrk -c16 (ms, log scale)")
    states = [name for _k, name in LAT_STATES]
    svg.legend(46, [(s, COLORS[s], False) for s in states])
    p = Panel(svg, 70, 74, WIDTH - 100, 256, "", max(present) * 1.5, "latency (ms)", log=True,
              ymin=min(present))
    p.bars(PCTS, states, lambda pct, s: vals[(pct, s)])
    svg.text(WIDTH / 2, 370, "percentile of the requests wrk timed", size=11, anchor="middle")
    return svg


def plot_pool(figures):
    """p: small multiples against --pool: the fixed-work job's req/s with its ideal, the
    wall-time burn's req/s with pool x 200, and /plaintext's p99 meanwhile."""
    sizes = [s for s in ("1", "2", "4", "8") if num(figures, f"p.{s}.rps") is not None]
    if not sizes:
        return None
    get = {k: [num(figures, f"p.{s}.{k}") for s in sizes]
           for k in ("rps", "ideal", "burn_rps", "p99_ms")}
    cores = figures.get("p.cores", "?")
    svg = Svg(WIDTH, 340, f"p. throughput against --pool, on {cores} cores")
    svg.legend(46, [("measured req/s", COLORS["evloop"], False),
                    ("ideal", "#555555", True), ("/plaintext p99 meanwhile", COLORS["p99"], False)])
    top, h, w = 96, 180, 148

    def panel(x, title, values, ideal, ylabel, colour, log=False):
        vmax = max([v for v in values + (ideal or []) if v is not None] + [0])
        vmin = min([v for v in values if v is not None and v > 0] + [vmax or 1])
        p = Panel(svg, x, top, w, h, title, vmax * (1.5 if log else 1), ylabel, log=log,
                  ymin=vmin)
        p.bars(sizes, [colour], lambda cat, _s: values[sizes.index(cat)])
        if ideal and all(v is not None for v in ideal):
            slot = w / len(sizes)
            pts = [(x + (i + 0.5) * slot, p.ypos(v)) for i, v in enumerate(ideal)]
            svg.polyline(pts, "#555555", 1.5, "6,4")
            for px, py in pts:
                svg.circle(px, py, 2.5, "#555555")
        svg.text(x + w / 2, top + h + 32, "--pool", size=11, anchor="middle")

    panel(62, "/speaker-count", get["rps"], get["ideal"], "req/s", "evloop")
    svg.text(62 + w / 2, top + h + 48, "fixed work; ideal: pool 1 x min(pool, cores)", size=10,
             anchor="middle", fill="#555555")
    if any(v is not None for v in get["burn_rps"]):
        panel(272, "/cpu?ms=5", get["burn_rps"],
              [int(s) * 200 for s in sizes], "", "burn")
        svg.text(272 + w / 2, top + h + 48, "burns 5 ms of time; line: pool x 200", size=10,
                 anchor="middle", fill="#555555")
    if any(v is not None for v in get["p99_ms"]):
        svg.text(482 + w / 2, top + h + 48, "ms, log scale", size=10, anchor="middle",
                 fill="#555555")
        panel(482, "/plaintext p99", get["p99_ms"], None, "", "p99", log=True)
    return svg


def plot_idle(figures):
    """g: what an idle keep-alive connection costs in RSS, evloop against nginx."""
    vals = {s: num(figures, f"g.{s}.kb_per_conn") for s in ("evloop", "nginx")}
    if all(v is None for v in vals.values()):
        return None
    n = fmt(num(figures, "g.n")) if num(figures, "g.n") is not None else "?"
    svg = Svg(WIDTH, 290, f"g. memory per idle keep-alive connection ({n} held)")
    p = Panel(svg, 200, 60, 260, 190, "", max(v for v in vals.values() if v is not None),
              "KB of RSS per connection")
    p.bars([s for s in vals if vals[s] is not None], ["evloop", "nginx"],
           lambda cat, s: vals[s] if cat == s else None)
    return svg


# --- the text ------------------------------------------------------------------------------------

SCENARIOS = [
    ("a", "GET /plaintext, 64 keep-alive connections",
     "The reactor's raw speed: the cheapest handler on keep-alive connections, nothing but read, "
     "parse, route, answer, write. nginx does the same job with one worker process; where the "
     "FastAPI twin ran, it is the third bar (uvicorn, one worker)."),
    ("b", "The same, pipelined 16 deep",
     "Sixteen requests per write, so one read brings sixteen requests and their sixteen answers "
     "leave in one write: the cost per request once the system calls are shared out."),
    ("c", "GET /cpu?ms=5 on a pool of 2",
     "Each request burns 5 ms on one of two worker threads, so two workers can finish at most "
     "400 a second. How close evloop gets is the cost of the queue, the completion channel and "
     "the wake-up of the reactor. The FastAPI twin's /cpu is pure Python on a thread pool: its "
     "threads take turns holding the GIL, so it never uses more than one core: its ceiling is one "
     "second divided by its CPU per request. Its job is a fixed number of loop iterations where "
     "evloop's burns 5 ms of wall time, so the two are not the same work: the table compares "
     "each with its own ceiling, and the plots leave the twin out of c."),
    ("d", "GET /plaintext while the pool is saturated",
     "While both workers are busy with /cpu?ms=20, /plaintext is still answered on the reactor "
     "thread, so its latency stays near the idle figure. For contrast, the same burn with "
     "mode=inline runs on the reactor itself, and every /plaintext waits behind it: what a "
     "blocking call inside an `async def` does to an event loop. The scale is logarithmic."),
    ("e", "1000 concurrent GET /sleep?ms=1000",
     "A sleeping request is only a deadline in the timer heap: a thousand at once all finish "
     "about one second after they started, on one thread."),
    ("f", "ab -k -c 50",
     "ab speaks HTTP/1.0 and asks for keep-alive with a header; every request must succeed and "
     "stay on its connection, which checks the HTTP/1.0 keep-alive rules."),
    ("g", "Idle keep-alive connections",
     "What an idle connection costs: thousands of connections that each made one request and "
     "now wait. The growth of the server's resident memory, divided by their number; meanwhile "
     "a new client must still be answered at once."),
    ("h", "SIGTERM under a mixed load",
     "A graceful drain: every request the server received is answered, the last ones with "
     "`Connection: close`, then it exits with status 0."),
    ("i", "Audio jobs on the pool",
     "A 10 s WAV sent to each audio endpoint: the time of one job alone, /analyze running its "
     "parts on both workers at once, the pool's throughput with eight uploads in flight, and "
     "/plaintext timed meanwhile."),
    ("j", "Streams nobody reads",
     "Server-Sent Event streams from the pool, half of the clients never reading: the readers "
     "should keep their pace and the server should not hold the output it could not send."),
    ("k", "Calls to an upstream",
     "The same calls to an upstream made three ways: awaited on the reactor's own sockets (all "
     "at once), as blocking calls on the pool (two at a time), and blocking on the reactor (one "
     "at a time, nobody else served). Then the outbound path's throughput."),
    ("l", "Processes or threads",
     "The same two workers arranged as two processes of one thread (P: --workers 2 --pool 1) or "
     "one process of two threads (T: --workers 1 --pool 2), on four workloads."),
    ("m", "Memory of processes and threads",
     "What a second process costs in resident and proportional memory, idle and after the "
     "audio endpoints have each built their model."),
    ("n", "One shared socket or one each",
     "Two processes accepting from one shared socket or from one SO_REUSEPORT socket each: how "
     "the load spreads, and what happens to new connections while one process is stalled."),
    ("o", "The cost of counting",
     "This build against the last revision without metrics, in alternating rounds: what "
     "keeping the counters costs per request."),
    ("p", "Pool scaling",
     "A job of fixed CPU work (POST /speaker-count of a 5 s WAV) on pools of 1, 2, 4 and 8 "
     "worker threads, a server each, measured in alternating rounds. A worker gets on with a job only while it holds a "
     "core, so throughput can grow with the pool only up to the number of cores; the dashed "
     "line is that ceiling, one worker's rate (--pool 1) times min(pool, cores). Threads "
     "beyond the cores do not make the machine faster: they take turns on the same cores, and "
     "take time from the reactor and the load generator as well, so for CPU-bound work the "
     "pool is sized to the cores (wrk and the reactor share the cores with the workers, so the "
     "line is a ceiling, not a promise). On a machine busy with other "
     "work a bigger pool can seem to help: the kernel shares the cores out per thread, so more "
     "threads take a bigger share from the neighbours. That is taken, not gained, and it shows "
     "as a load average above the core count in the table at the top. Beside it, GET /cpu?ms=5 on the "
     "same servers, as a warning about benchmarks: /cpu burns 5 ms of wall time, not a fixed "
     "amount of work, so eight threads on two cores each still finish in 5 ms, having done a "
     "quarter of the work, and the req/s climbs as pool x 200 while the CPU per request falls. "
     "/plaintext's p99 is measured meanwhile by a probe sending one request every 5 ms."),
]

# The plots each scenario's section shows. The two per-scenario plots go under the first of a,
# b, c and f that ran (see write).
PLOTS = {
    "d": [("latency", "/plaintext latency percentiles")],
    "g": [("idle", "memory per idle connection")],
    "p": [("pool", "req/s against --pool")],
}


def md_cell(s):
    text = str(s).strip().replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return text or " "


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        out.append("| " + " | ".join(md_cell(c) for c in r) + " |")
    return out


def summary_block(rows):
    """The summary table as load.sh printed it."""
    lines = ["%-2s %-40s %18s %14s  %s" % ("", "measure", "evloop", "nginx",
                                           "evloop/nginx, or note")]
    for s, m, e, n, r in rows:
        lines.append(("%-2s %-40s %18s %14s  %s" % (s, m, e, n, r)).rstrip())
    return lines


def write(out, figures, rows, checks):
    os.makedirs(os.path.join(out, "bench"), exist_ok=True)
    plots = {
        "rps": plot_per_scenario(figures, "rps", "Requests per second (more is better)", "req/s",
                                 ideal=True),
        "cpu": plot_per_scenario(figures, "cpu_us",
                                 "Server CPU per request (less is better)", "CPU us/request"),
        "latency": plot_latency(figures),
        "pool": plot_pool(figures),
        "idle": plot_idle(figures),
    }
    for name, svg in plots.items():
        path = os.path.join(out, "bench", f"{name}.svg")
        if svg is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(str(svg))
        elif os.path.exists(path):
            os.remove(path)  # a stale plot from an earlier run would be mistaken for this one's

    ran = figures.get("meta.scenarios", "")
    f = figures.get
    md = ["# Benchmarks", ""]
    md.append("<!-- Generated by scripts/bench_report.py from one run of scripts/load.sh; "
              "not edited by hand. -->")
    md.append("")
    command = f"`{f('meta.command', 'scripts/load.sh')}`"
    if command == "`make load`":
        command += " (that is, `scripts/load.sh full`)"
    md.append(f"Generated by {command} on {f('meta.date', '?')}, "
              f"at commit `{f('meta.commit', '?')}`: every table and plot below comes from that "
              "one run. To make it again, run the same command on a quiet machine; it rewrites "
              "this file and the plots in `bench/`.")
    md.append("")
    md += table(["", ""], [
        ("evloop", f("meta.evloop", "?")),
        ("nginx (the peer)", f("meta.nginx", "n/a")),
        ("wrk", f("meta.wrk", "?")),
        ("machine", f"{f('meta.cores', '?')} cores ({f('meta.cpu', '?')})"),
        ("load average (1, 5, 15 min)",
         f"{f('meta.load_start', '?')} at the start, {f('meta.load_end', '?')} at the end"),
        ("scenarios run", ", ".join(ran) if ran else "?"),
        ("FastAPI twin", "ran (uvicorn, 1 worker)" if "fastapi.skip" in figures
         and not f("fastapi.skip") else
         f"not run: {f('fastapi.skip')}" if f("fastapi.skip") else "not run (neither a nor c ran)"),
    ])
    md.append("")
    if f("meta.mode") == "smoke":
        md += ["This is a smoke run: every measurement is a second or two long, so the figures "
               "only show that each scenario works, not how fast.", ""]
    md += [
        "## Method", "",
        f"- **Ratios, not absolute numbers.** The machine is small ({f('meta.cores', '?')} "
        "cores) and shared: wrk runs on the same cores as the server it measures, and whatever "
        "else runs on the machine takes its share too. An absolute req/s figure says as much "
        "about the machine's neighbours as about the server, so each figure is read against "
        "nginx measured in the same run. In a and b, evloop and nginx take turns "
        f"({f('meta.rounds', '?')} alternating rounds of {f('meta.round_s', '?')} s each, "
        "summed), so a burst of other work weighs on both rather than on one.",
        "- **Server CPU per request.** The server's user + system CPU time (all its threads; "
        "for nginx the master and its worker), read from `/proc/PID/stat` (fields 14 and 15) "
        "before and after a run, divided by the requests the client completed. Unlike req/s it "
        "does not depend on how much of the machine the client took.",
        "- **One client thread.** Every wrk run uses `-t1`, leaving the other core to the "
        "server, except in l, m and n, which load two or more processes and use `-t2`. "
        "Latency percentiles are wrk's `--latency` figures, or, where a probe is named, "
        "an open-loop probe's (one request due every few ms, timed from when it was due, so a "
        "stall counts every request that arrived during it).",
        "- **The load average** at the start and at the end is printed above: well above the "
        "core count means other work competed with the run, and every figure is noisier.",
        "- **Plots** are SVG written by scripts/bench_report.py with Python's standard library "
        "alone (no plotting package, and gnuplot is not used even where installed): the same "
        "figures always give the same files.",
        "",
    ]
    first = next((s for s in "abcf" if s in ran), None)
    if first:
        PLOTS[first] = [("rps", "req/s per scenario against nginx and the FastAPI twin"),
                        ("cpu", "server CPU per request per scenario")]
    by_scenario = {}
    for r in rows:
        by_scenario.setdefault(r[0], []).append(r)
    md += ["## Scenarios", ""]
    for letter, title, text in SCENARIOS:
        md += [f"### {letter}. {title}", "", text, ""]
        if letter not in ran:
            md += ["Not run in this run.", ""]
            continue
        rs = by_scenario.get(letter, [])
        if rs:
            has_nginx = any(r[3].strip() for r in rs)
            if has_nginx:
                md += table(["measure", "evloop", "nginx", "evloop/nginx, or note"],
                            [(m.strip(), e, n, r) for _s, m, e, n, r in rs])
            else:
                md += table(["measure", "evloop", "note"], [(m.strip(), e, r) for _s, m, e, _n, r
                                                            in rs])
            md.append("")
        if letter == "d" and any(num(figures, f"d.{k}.p99") is not None for k, _n in LAT_STATES):
            md += table(["/plaintext, wrk -c16", "p50 ms", "p75 ms", "p90 ms", "p99 ms", "req/s"],
                        [(name, *(fmt(num(figures, f"d.{k}.{p}")) for p in PCTS),
                          fmt(num(figures, f"d.{k}.rps"))) for k, name in LAT_STATES])
            md.append("")
        if letter == "p" and num(figures, "p.1.rps") is not None:
            md += [f"{f('p.rounds', '?')} rounds of {f('p.round_s', '?')} s per size. The "
                   f"ideal on {f('p.cores', '?')} cores is --pool 1's {f('p.one', '?')} req/s "
                   "times min(pool, cores); /plaintext's p99 is the worse of the rounds'.", ""]
            prow = []
            for size in ("1", "2", "4", "8"):
                if num(figures, f"p.{size}.rps") is None:
                    continue
                rps, ideal = num(figures, f"p.{size}.rps"), num(figures, f"p.{size}.ideal")
                prow.append((size, fmt(rps), fmt(ideal),
                             f"{rps / ideal * 100:.0f}%" if rps is not None and ideal else "n/a",
                             fmt(num(figures, f"p.{size}.cpu_us")),
                             fmt(num(figures, f"p.{size}.p99_ms")),
                             fmt(num(figures, f"p.{size}.burn_rps")),
                             fmt(num(figures, f"p.{size}.burn_cpu_us"))))
            md += table(["--pool", "req/s", "ideal", "of ideal", "CPU us/request",
                         "/plaintext p99 ms", "/cpu?ms=5 req/s", "/cpu CPU us/request"], prow)
            md.append("")
        if letter == "p" and f("p.secs"):
            md += [f"Scenario p took {f('p.secs')} s.", ""]
        if letter == "a" and f("fastapi.secs"):
            md += [f"Starting the FastAPI twin and its runs (in a and c, whichever ran) took "
                   f"{f('fastapi.secs')} s.", ""]
        for name, alt in PLOTS.get(letter, []):
            if plots.get(name) is not None:
                md += [f"![{alt}](bench/{name}.svg)", ""]
    md += ["## Summary", "",
           "The summary table as the run printed it. In l to o the evloop column holds both "
           "configurations, in the order the measure names them.", "", "```"]
    md += summary_block(rows) + ["```", ""]
    md += ["## Checks", "",
           "Only FAIL fails a run: it is a correctness check. ok and slow are notes on speed, "
           "WARN is worth a look.", ""]
    if checks:
        md += table(["verdict", "check", "value"], checks)
    else:
        md.append("No checks in this run.")
    md.append("")
    with open(os.path.join(out, "BENCHMARKS.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(md))
    return [name for name, svg in plots.items() if svg is not None]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the data file load.sh wrote")
    parser.add_argument("--out", required=True, help="directory for BENCHMARKS.md and bench/")
    args = parser.parse_args()
    figures, rows, checks = load(args.data)
    written = write(args.out, figures, rows, checks)
    print(f"bench_report.py: {os.path.join(args.out, 'BENCHMARKS.md')} and "
          f"{len(written)} plots ({', '.join(written) or 'none'})")


if __name__ == "__main__":
    main()
