"""A small FastAPI twin of evloop's /plaintext, /cpu and /sleep, for scripts/demo.sh.

    uvicorn --app-dir benches/peers/fastapi app:app --port 8000 --workers 1

The CPU job is a pure-Python loop: a fixed number of iterations, calibrated once at import to
take about `ms` milliseconds on an idle interpreter. A fixed amount of *work* (not "burn until
`ms` have passed") so that two jobs at once show what the GIL does to them: each holds it while
it runs bytecode, so two threads take turns and together take about twice as long as one.

- `GET /cpu?ms=N&mode=inline`: the job called directly in an `async def`: it runs on the event
  loop's thread and every other request waits (the "blocking call" of the notes).
- `GET /cpu?ms=N` (or `mode=pool`): `await run_in_threadpool(job)`: on a worker thread, the loop
  stays free (the "non-blocking call").
- `GET /cpu/gather?ms=N&n=2`: `await asyncio.gather(*[run_in_threadpool(job)] * n)`: n jobs at
  once on the pool (the "concurrent call").
- `GET /sleep?ms=N`: `await asyncio.sleep(N / 1000)`.
- `GET /plaintext`: `Hello, World!`.
"""

import asyncio
import threading
import time

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

app = FastAPI()


def spin(iterations):
    """Pure-Python arithmetic: holds the GIL for as long as it runs."""
    x = 0x9E3779B9
    for _ in range(iterations):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 29
    return x


def _calibrate():
    """Iterations of `spin` per millisecond on this machine, measured once."""
    n = 20_000
    while True:
        t0 = time.perf_counter()
        spin(n)
        took = time.perf_counter() - t0
        if took > 0.05:
            return max(1, int(n / (took * 1000)))
        n *= 2


ITER_PER_MS = _calibrate()


def job(ms):
    t0 = time.perf_counter()
    spin(ms * ITER_PER_MS)
    return {"ms": ms, "ran_ms": round((time.perf_counter() - t0) * 1000, 1),
            "thread": threading.current_thread().name}


@app.get("/plaintext", response_class=PlainTextResponse)
async def plaintext():
    return "Hello, World!"


@app.get("/cpu")
async def cpu(ms: int, mode: str = "pool"):
    if mode == "inline":
        return dict(job(ms), mode="inline")  # blocks the event loop
    return dict(await run_in_threadpool(job, ms), mode="pool")


@app.get("/cpu/gather")
async def cpu_gather(ms: int, n: int = 2):
    t0 = time.perf_counter()
    parts = await asyncio.gather(*(run_in_threadpool(job, ms) for _ in range(n)))
    return {"parts": parts, "elapsed_ms": round((time.perf_counter() - t0) * 1000, 1)}


@app.get("/sleep")
async def sleep(ms: int):
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms}
