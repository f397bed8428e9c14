#!/usr/bin/env bash
# scripts/load.sh MODE — real clients (wrk, ab, small Python programs) against ./evloop, with
# nginx as the peer.
#
#   scripts/load.sh smoke   every scenario briefly (about a minute): what CI runs (`make smoke`)
#   scripts/load.sh full    the figures (about 5 minutes): what `make load` runs
#
# Both modes exit non-zero on a CORRECTNESS failure only: non-2xx answers or socket errors in the
# plaintext run, ab failures or connections not kept alive, a /sleep request not answered, a
# request lost in the graceful drain or a drain that did not exit 0, a reading stream client
# that did not get a whole, well-framed event stream ending in its result (or a stream client
# that could not connect), a /fanout not answered 200 with the number of calls asked for, a
# non-2xx answer or socket error in the /fanout wrk run. A speed figure never fails a run: the
# machine is shared and small, so throughput is reported as a ratio against nginx measured in
# the same run, and CPU as server CPU time per request.
#
# Server CPU per request: utime + stime of the server process (all its threads; nginx: master +
# worker) from /proc/PID/stat, fields 14 and 15 in clock ticks, read before and after a run and
# divided by the requests wrk completed. Every wrk run uses one client thread (-t1).
#
# Scenarios (each one says below what it demonstrates):
#   a. GET /plaintext, 64 keep-alive connections       evloop vs nginx: req/s, CPU us/request
#   b. the same, pipelined 16 deep                      evloop vs nginx: req/s, CPU us/request
#   c. GET /cpu?ms=5 on a pool of 2                      req/s against the ideal 400
#   d. GET /plaintext p99 while the pool is saturated   (and with the burn inline, for contrast)
#   e. 1000 concurrent GET /sleep?ms=1000                all answered, in about 1 s
#   f. ab -k -c 50                                       no failures, every request kept alive
#   g. 10 000 idle keep-alive connections                KB per connection; a new client served
#   h. SIGTERM under a mixed load                        no request lost, exit status 0
#   i. a 10 s WAV to each audio endpoint                 single-job times, /analyze's fan-out,
#                                                        pool throughput, /plaintext p99 meanwhile
#   j. 200 GET /cpu/stream at once, half never reading  the readers' pace and the server's RSS
#                                                        against a run where all 200 read; the
#                                                        same with streams too long for the
#                                                        kernel's buffers
#   k. GET /fanout: 200 calls to an upstream's         wall time and /plaintext p50/p99/max
#      /sleep?ms=200, mode await, pool and inline       meanwhile, threads that made the calls;
#                                                        then wrk -c64 on 4 calls a request:
#                                                        calls/s, CPU us/call, connection reuse
#
# Environment: EVLOOP (binary, default ./evloop at the repository root), NGINX (default: the one
# on PATH, or /usr/sbin/nginx), SCENARIOS (the letters of the scenarios to run, SCENARIOS=k or
# SCENARIOS=a,k; default all). Without nginx the nginx columns read n/a.

set -euo pipefail

MODE=${1:-}
case "$MODE" in
  smoke)
    DUR=2          # seconds per wrk run (a and b: per server, in ROUNDS alternating rounds)
    AB_N=5000      # ab requests
    IDLE_N=1000    # idle connections held in g
    DRAIN_LOAD=1   # seconds of load before SIGTERM in h
    STREAMS=40     # streams at once in j's runs A and B (half of them not reading in B)
    STREAM_MS=50   # ms of burn per stream in A and B (one progress event per ms)
    STREAMS_C=4    # streams at once in j's runs C0 and C (half of them not reading in C)
    STREAM_MS_C=1500
    FAN_N=20       # calls per /fanout in k's await and pool runs
    FAN_N_INLINE=4 # calls per /fanout in k's inline run (K x FAN_MS on the reactor)
    FAN_MS=50      # the upstream's sleep per call in k
    FAN_IDLE=0.5   # seconds of k's probe alone
    ;;
  full)
    DUR=10
    AB_N=100000
    IDLE_N=10000
    DRAIN_LOAD=3
    STREAMS=200
    STREAM_MS=100
    STREAMS_C=8
    STREAM_MS_C=2500
    FAN_N=200
    FAN_N_INLINE=200
    FAN_MS=200
    FAN_IDLE=2
    ;;
  *)
    echo "usage: [SCENARIOS=letters] $0 smoke|full" >&2
    exit 2
    ;;
esac

# SCENARIOS: the letters of the scenarios to run (SCENARIOS=k, SCENARIOS=a,k); all by default.
SCENARIOS=${SCENARIOS:-abcdefghijk}
if [[ ! $SCENARIOS =~ ^[a-k,\ ]+$ ]]; then
  echo "load.sh: SCENARIOS=$SCENARIOS: letters a to k only" >&2
  exit 2
fi
want() { [[ $SCENARIOS == *$1* ]]; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCRIPTS=$ROOT/scripts
EVLOOP=${EVLOOP:-$ROOT/evloop}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
HOST=127.0.0.1
ROUNDS=2
ROUND_S=$((DUR / ROUNDS))
CLK_TCK=$(getconf CLK_TCK)

if [ ! -x "$EVLOOP" ]; then
  echo "load.sh: no $EVLOOP; run \`make\` first" >&2
  exit 2
fi
for tool in wrk ab curl python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "load.sh: $tool is not installed (apt-get install wrk apache2-utils curl python3)" >&2
    exit 2
  fi
done

# Our own scratch directory (logs, wrk outputs, the nginx prefix); removed on exit.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/loadsh.XXXXXXXX")
PIDS=() # every background process this script started and has not reaped yet

# --- processes -------------------------------------------------------------------------------

forget_pid() {
  local pid=$1 kept=() p
  for p in "${PIDS[@]}"; do
    [ "$p" = "$pid" ] || kept+=("$p")
  done
  PIDS=("${kept[@]}")
}

# True while PID is running (a zombie, exited but not yet reaped, counts as gone).
alive() {
  local state
  state=$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# wait_exit PID SECONDS: wait for PID to exit, SIGKILL it after SECONDS; sets EXIT_STATUS.
wait_exit() {
  local pid=$1 limit=$2 waited=0
  while alive "$pid" && [ "$waited" -lt $((limit * 20)) ]; do
    sleep 0.05
    waited=$((waited + 1))
  done
  if alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  EXIT_STATUS=0
  wait "$pid" 2>/dev/null || EXIT_STATUS=$?
  forget_pid "$pid"
}

# stop PID: SIGTERM, then wait (SIGKILL after 15 s).
stop() {
  kill -TERM "$1" 2>/dev/null || true
  wait_exit "$1" 15
}

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait_exit "$pid" 5
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_evloop NAME ARGS...: start ./evloop on a free port; sets EV_PID and EV_PORT.
start_evloop() {
  local name=$1 _i
  shift
  "$EVLOOP" --host "$HOST" --port 0 "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  EV_PID=$!
  PIDS+=("$EV_PID")
  EV_PORT=
  for _i in $(seq 100); do
    EV_PORT=$(sed -n 's|.*ready on http://[^:]*:\([0-9]*\).*|\1|p' "$WORK/$name.out" 2>/dev/null || true)
    [ -n "$EV_PORT" ] && return 0
    alive "$EV_PID" || break
    sleep 0.05
  done
  echo "load.sh: evloop ($name) did not start:" >&2
  cat "$WORK/$name.out" "$WORK/$name.log" >&2
  exit 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_nginx: the peer (scripts/nginx.conf) on a free port; sets NG_PORT, NG_PIDS (master and
# worker) and NG_OK. A missing or failing nginx is reported, not fatal: its columns read n/a.
NG_OK=0
NG_PIDS=
start_nginx() {
  local dir=$WORK/nginx user_line='' extra='' module _i _attempt
  if [ ! -x "$NGINX" ]; then
    echo "  (nginx not found: nginx columns will read n/a)"
    return 0
  fi
  mkdir -p "$dir"
  # As root, nginx would switch its worker to an unprivileged user that cannot use our private
  # directory; stay root instead. Not root: the directive is not wanted (nginx would warn).
  if [ "$(id -u)" = 0 ]; then
    user_line="user root;"
  fi
  for module in scgi uwsgi; do
    "$NGINX" -V 2>&1 | grep -q -- "--without-http_${module}_module" ||
      extra+="${module}_temp_path $dir/$module; "
  done
  # A free port can be taken by someone else before nginx binds it: try a few.
  for _attempt in 1 2 3; do
    NG_PORT=$(free_port)
    sed -e "s|@USER@|$user_line|" -e "s|@DIR@|$dir|g" -e "s|@PORT@|$NG_PORT|" \
      -e "s|@EXTRA_TEMP_PATHS@|$extra|" "$SCRIPTS/nginx.conf" >"$dir/nginx.conf"
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx-error.log" >"$dir/stdout" 2>&1 &
    NG_MASTER=$!
    PIDS+=("$NG_MASTER")
    for _i in $(seq 100); do
      alive "$NG_MASTER" || break
      # Our nginx, not another server that happens to answer on this port.
      if curl -s -D - -o /dev/null "http://$HOST:$NG_PORT/plaintext" | grep -qi '^server: nginx'; then
        NG_PIDS="$NG_MASTER $(pgrep -P "$NG_MASTER" | tr '\n' ' ')"
        NG_OK=1
        return 0
      fi
      sleep 0.05
    done
    stop "$NG_MASTER"
  done
  echo "  (nginx did not start: nginx columns will read n/a)"
  cat "$dir/stdout" "$dir/nginx-error.log" 2>/dev/null | sed 's/^/    /' | tail -5
}

# --- measuring -------------------------------------------------------------------------------

# cpu_ticks PID...: utime + stime summed over the processes, in clock ticks. Fields 14 and 15 of
# /proc/PID/stat, counted after the ")" that ends the command name (which may hold spaces).
cpu_ticks() {
  local pid total=0 fields
  for pid in "$@"; do
    read -r -a fields <<<"$(sed 's/.*) //' "/proc/$pid/stat")"
    total=$((total + fields[11] + fields[12])) # fields 14, 15 are the 12th and 13th after ")"
  done
  echo "$total"
}

# rss_kb PID...: VmRSS summed over the processes, in KB.
rss_kb() {
  local pid total=0 kb
  for pid in "$@"; do
    kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
    total=$((total + kb))
  done
  echo "$total"
}

# calc FORMAT EXPRESSION: floating-point arithmetic; "n/a" when it divides by zero.
calc() {
  awk "BEGIN { if ($3 == 0) print \"n/a\"; else printf \"$1\", $2 }" </dev/null
}

# run_wrk NAME "PIDS" WRK-ARGS...: one wrk run, its output kept in $WORK/wrk-NAME.txt. Sets
# W_REQS (responses completed), W_SECS (its duration), W_RPS, W_NON2XX, W_ERRS (socket errors
# of every kind), W_P50, W_P99 (with --latency; "-" otherwise) and W_TICKS (the server
# processes' CPU time during the run, in clock ticks).
run_wrk() {
  local name=$1 pids=$2 out=$WORK/wrk-$1.txt before after
  shift 2
  # shellcheck disable=SC2086 # $pids is a list
  before=$(cpu_ticks $pids)
  wrk "$@" >"$out" 2>&1 || echo "  (wrk $name exited with status $?)" >>"$out"
  # shellcheck disable=SC2086
  after=$(cpu_ticks $pids)
  read -r W_REQS W_SECS W_RPS W_NON2XX W_ERRS W_P50 W_P99 < <(awk '
    / requests in / { reqs = $1; secs = $4; sub(/s,?$/, "", secs) }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ { gsub(",", ""); errs = $4 + $6 + $8 + $10 }
    $1 == "50%" { p50 = $2 }
    $1 == "99%" { p99 = $2 }
    END {
      printf "%d %.2f %.0f %d %d %s %s\n", reqs, secs, rps, non2xx, errs,
        (p50 == "" ? "-" : p50), (p99 == "" ? "-" : p99)
    }' "$out")
  W_TICKS=$((after - before))
}

# wrk_pair NAME WRK-ARGS...: the same wrk run against evloop (main) and against nginx, in
# ROUNDS alternating rounds of ROUND_S seconds each (evloop, nginx, evloop, nginx), the rounds
# summed: a burst of other work on the machine then weighs on both servers, not on one. An
# argument "{}/path" stands for the server's URL. Sets E_REQS E_RPS E_NON2XX E_ERRS E_CPU_US for
# evloop, N_RPS N_CPU_US for nginx ("n/a" without nginx).
wrk_pair() {
  local name=$1 arg round ev_args=() ng_args=()
  local e_secs=0 e_ticks=0 n_reqs=0 n_secs=0 n_ticks=0
  shift
  for arg in "$@"; do
    ev_args+=("${arg/#\{\}/$MAIN_URL}")
    ng_args+=("${arg/#\{\}/http://$HOST:${NG_PORT:-0}}")
  done
  E_REQS=0 E_NON2XX=0 E_ERRS=0
  for round in $(seq "$ROUNDS"); do
    run_wrk "$name-evloop-$round" "$MAIN_PID" -d"${ROUND_S}s" "${ev_args[@]}"
    E_REQS=$((E_REQS + W_REQS)) E_NON2XX=$((E_NON2XX + W_NON2XX)) E_ERRS=$((E_ERRS + W_ERRS))
    e_secs=$(calc "%.2f" "$e_secs + $W_SECS" 1) e_ticks=$((e_ticks + W_TICKS))
    if [ "$NG_OK" = 1 ]; then
      run_wrk "$name-nginx-$round" "$NG_PIDS" -d"${ROUND_S}s" "${ng_args[@]}"
      n_reqs=$((n_reqs + W_REQS))
      n_secs=$(calc "%.2f" "$n_secs + $W_SECS" 1) n_ticks=$((n_ticks + W_TICKS))
    fi
  done
  E_RPS=$(calc "%.0f" "$E_REQS / $e_secs" "$e_secs")
  E_CPU_US=$(calc "%.2f" "$e_ticks * 1000000 / $CLK_TCK / $E_REQS" "$E_REQS")
  N_RPS=n/a N_CPU_US=n/a
  if [ "$NG_OK" = 1 ]; then
    N_RPS=$(calc "%.0f" "$n_reqs / $n_secs" "$n_secs")
    N_CPU_US=$(calc "%.2f" "$n_ticks * 1000000 / $CLK_TCK / $n_reqs" "$n_reqs")
  fi
  printf '  evloop %8s req/s, %6s us CPU/request (%s requests, %s non-2xx, %s socket errors)\n' \
    "$E_RPS" "$E_CPU_US" "$E_REQS" "$E_NON2XX" "$E_ERRS"
  printf '  nginx  %8s req/s, %6s us CPU/request\n' "$N_RPS" "$N_CPU_US"
}

# ratio A B: A/B to two decimals, or n/a.
ratio() {
  if [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]]; then
    calc "%.2fx" "$1 / $2" "$2"
  else
    echo n/a
  fi
}

# --- the report ------------------------------------------------------------------------------

ROWS=()   # summary table rows: "scenario|measure|evloop|nginx|evloop/nginx"
CHECKS=() # "verdict|what|value": PASS/FAIL (correctness), ok/slow (speed), WARN (worth a look)
FAILED=0

row() { ROWS+=("$1|$2|$3|$4|$5"); }

# check OK WHAT VALUE: a correctness check (OK is 1 or 0); a 0 fails the run.
check() {
  if [ "$1" = 1 ]; then
    CHECKS+=("PASS|$2|$3")
  else
    CHECKS+=("FAIL|$2|$3")
    FAILED=1
  fi
}

# note OK WHAT VALUE: a speed expectation, reported but never failing the run.
note() {
  if [ "$1" = 1 ]; then CHECKS+=("ok|$2|$3"); else CHECKS+=("slow|$2|$3"); fi
}

section() { printf '\n== %s\n' "$*"; }

# result FILE KEY: the value of KEY=... on the RESULT line a Python script printed.
result() {
  awk -v key="$2" '/^RESULT / { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == key) print kv[2] } }' "$1" | tail -1
}

# wait_for_line FILE PATTERN SECONDS: wait until FILE has a line matching PATTERN.
wait_for_line() {
  local _i
  for _i in $(seq $(($3 * 20))); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# --- start -----------------------------------------------------------------------------------

echo "evloop load ($MODE): $("$EVLOOP" --version 2>/dev/null || echo evloop) vs $("$NGINX" -v 2>&1 | sed 's|.*: ||'), $(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }'), $(nproc) cores"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine makes every figure noisy; read the ratios)"

# The main evloop serves a-f: a pool of 2, as on this 2-core machine. nginx is the peer in a, b,
# f and g.
MAIN_PID=
if want a || want b || want c || want d || want e || want f; then
  start_evloop main --pool 2
  MAIN_PID=$EV_PID
  MAIN_PORT=$EV_PORT
  MAIN_URL=http://$HOST:$MAIN_PORT
  echo "evloop on $MAIN_PORT (pid $MAIN_PID)"
fi
if want a || want b || want f || want g; then
  start_nginx
  if [ "$NG_OK" = 1 ]; then
    echo "nginx on $NG_PORT (pids $NG_PIDS)"
  fi
fi

# --- a. plaintext ----------------------------------------------------------------------------
# The reactor's raw speed: the cheapest handler, keep-alive connections, nothing but read,
# parse, route, encode, write. nginx does the same job with one worker process.
if want a; then
  section "a. GET /plaintext, wrk -t1 -c64, ${DUR}s per server ($ROUNDS alternating rounds of ${ROUND_S}s)"
  wrk_pair a -t1 -c64 "{}/plaintext"
  row a "GET /plaintext -c64: req/s" "$E_RPS" "$N_RPS" "$(ratio "$E_RPS" "$N_RPS")"
  row a "  server CPU us/request" "$E_CPU_US" "$N_CPU_US" "$(ratio "$E_CPU_US" "$N_CPU_US")"
  check "$([ "$E_REQS" -gt 0 ] && [ "$E_NON2XX" = 0 ] && [ "$E_ERRS" = 0 ] && echo 1 || echo 0)" \
    "a. wrk /plaintext: only 2xx, no socket errors" \
    "$E_REQS requests, $E_NON2XX non-2xx, $E_ERRS socket errors"
fi

# --- b. pipelined ----------------------------------------------------------------------------
# Pipelining: 16 requests per write (scripts/pipeline.lua), so one read brings 16 requests and
# the 16 answers leave in one write. Shows the per-request cost once syscalls are amortised.
if want b; then
  section "b. GET /plaintext pipelined 16 deep, wrk -t1 -c64, ${DUR}s per server ($ROUNDS alternating rounds of ${ROUND_S}s)"
  wrk_pair b -t1 -c64 -s "$SCRIPTS/pipeline.lua" "{}/plaintext" -- 16
  row b "pipelined x16 -c64: req/s" "$E_RPS" "$N_RPS" "$(ratio "$E_RPS" "$N_RPS")"
  row b "  server CPU us/request" "$E_CPU_US" "$N_CPU_US" "$(ratio "$E_CPU_US" "$N_CPU_US")"
  if [ "$E_NON2XX" != 0 ] || [ "$E_ERRS" != 0 ] || [ "$E_REQS" = 0 ]; then
    # Not one of the failing checks (see the top), but worth seeing.
    CHECKS+=("WARN|b. pipelined run: only 2xx, no socket errors|$E_REQS requests, $E_NON2XX non-2xx, $E_ERRS socket errors")
  fi
fi

# --- c. the pool -----------------------------------------------------------------------------
# Offloading: each /cpu?ms=5 burns 5 ms on one of 2 workers, so 2 workers can finish at most
# 2 x 1000 / 5 = 400 requests a second. How close evloop gets shows the cost of the queue, the
# completion channel and the waker (on 2 cores shared with wrk and with whatever else runs).
if want c; then
  section "c. GET /cpu?ms=5, --pool 2, wrk -t1 -c8 -d${DUR}s"
  run_wrk c "$MAIN_PID" -t1 -c8 -d"${DUR}s" "$MAIN_URL/cpu?ms=5"
  C_PCT=$(calc "%.0f%%" "$W_RPS * 100 / 400" 1)
  printf '  %s req/s = %s of the ideal 400 (%s non-2xx, %s socket errors)\n' \
    "$W_RPS" "$C_PCT" "$W_NON2XX" "$W_ERRS"
  row c "GET /cpu?ms=5 pool 2 -c8: req/s" "$W_RPS" "" "$C_PCT of 400"
  if [ "$W_NON2XX" != 0 ] || [ "$W_ERRS" != 0 ]; then
    CHECKS+=("WARN|c. /cpu run: only 2xx, no socket errors|$W_NON2XX non-2xx, $W_ERRS socket errors")
  fi
fi

# --- d. the reactor stays responsive ---------------------------------------------------------
# While both workers are busy with /cpu?ms=20 (a second wrk, 8 connections), /plaintext is still
# answered on the reactor: its p99 should stay near the idle figure. For contrast, the same burn
# with mode=inline runs ON the reactor, and every /plaintext waits behind it (the blocking
# anti-pattern: what a sync call inside `async def` does to uvicorn).
if want d; then
  section "d. GET /plaintext p99 (wrk -t1 -c16 --latency -d${DUR}s), idle and with the pool saturated"
  run_wrk d-idle "$MAIN_PID" -t1 -c16 -d"${DUR}s" --latency "$MAIN_URL/plaintext"
  D_IDLE_P50=$W_P50 D_IDLE_P99=$W_P99 D_IDLE_RPS=$W_RPS
  # d_loaded NAME TARGET: the plaintext latency run while a second wrk hammers TARGET.
  d_loaded() {
    local bg
    wrk -t1 -c8 -d"$((DUR + 2))s" "$MAIN_URL$2" >"$WORK/wrk-$1-background.txt" 2>&1 &
    bg=$!
    PIDS+=("$bg")
    sleep 1
    run_wrk "$1" "$MAIN_PID" -t1 -c16 -d"${DUR}s" --latency "$MAIN_URL/plaintext"
    wait_exit "$bg" $((DUR + 10))
    D_BG_RPS=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$WORK/wrk-$1-background.txt")
  }
  d_loaded d-pool "/cpu?ms=20"
  D_POOL_P50=$W_P50 D_POOL_P99=$W_P99 D_POOL_RPS=$W_RPS D_POOL_BG=$D_BG_RPS D_POOL_ERRS=$W_ERRS
  d_loaded d-inline "/cpu?ms=20&mode=inline"
  D_INL_P50=$W_P50 D_INL_P99=$W_P99 D_INL_RPS=$W_RPS D_INL_BG=$D_BG_RPS
  printf '  idle:                     p50 %8s  p99 %8s  %s req/s\n' "$D_IDLE_P50" "$D_IDLE_P99" "$D_IDLE_RPS"
  printf '  pool busy (/cpu?ms=20):   p50 %8s  p99 %8s  %s req/s (and %s /cpu req/s, ideal 100; %s socket errors)\n' \
    "$D_POOL_P50" "$D_POOL_P99" "$D_POOL_RPS" "$D_POOL_BG" "$D_POOL_ERRS"
  printf '  burn inline (contrast):   p50 %8s  p99 %8s  %s req/s (and %s inline /cpu req/s)\n' \
    "$D_INL_P50" "$D_INL_P99" "$D_INL_RPS" "$D_INL_BG"
  row d "/plaintext p99, idle" "$D_IDLE_P99" "" ""
  row d "/plaintext p99, pool saturated" "$D_POOL_P99" "" "/cpu $D_POOL_BG req/s"
  row d "/plaintext p99, burn inline (contrast)" "$D_INL_P99" "" "/cpu $D_INL_BG req/s"
fi

# --- e. timers -------------------------------------------------------------------------------
# A sleeping request is only a deadline in the timer heap: 1000 of them at once all finish about
# 1 s after they started, on one thread (scripts/sleep_burst.py, 1000 sockets, one selector).
if want e; then
  section "e. 1000 concurrent GET /sleep?ms=1000"
  python3 "$SCRIPTS/sleep_burst.py" --host "$HOST" --port "$MAIN_PORT" --count 1000 --ms 1000 \
    >"$WORK/sleep_burst.txt" 2>&1 || true
  grep -v '^RESULT' "$WORK/sleep_burst.txt" | sed 's/^/  /'
  E_OK=$(result "$WORK/sleep_burst.txt" ok)
  E_WALL=$(result "$WORK/sleep_burst.txt" wall_s)
  row e "1000 x /sleep?ms=1000: answered, wall" "${E_OK:-0}/1000 OK" "" "${E_WALL:-?} s"
  check "$([ "${E_OK:-0}" = 1000 ] && echo 1 || echo 0)" "e. 1000 concurrent /sleep: all answered 200" \
    "${E_OK:-0}/1000"
  note "$(awk -v wall="${E_WALL:-99}" 'BEGIN { print ((wall + 0 <= 1.1) ? 1 : 0) }')" \
    "e. 1000 concurrent /sleep: wall <= ~1.1 s" "${E_WALL:-?} s"
fi

# --- f. ab -----------------------------------------------------------------------------------
# ab speaks HTTP/1.0 with `Connection: Keep-Alive` and counts a request as kept alive only if
# the answer says `Connection: keep-alive`: this checks the HTTP/1.0 keep-alive rules.
if want f; then
  section "f. ab -k -c 50 -n $AB_N /plaintext"
  # run_ab NAME "PIDS" URL: sets AB_DONE AB_FAILED AB_KA AB_NON2XX AB_RPS AB_CPU_US.
  run_ab() {
    local out=$WORK/ab-$1.txt before after
    # shellcheck disable=SC2086
    before=$(cpu_ticks $2)
    ab -k -c 50 -n "$AB_N" "$3" >"$out" 2>&1 || echo "(ab exited with status $?)" >>"$out"
    # shellcheck disable=SC2086
    after=$(cpu_ticks $2)
    read -r AB_DONE AB_FAILED AB_KA AB_NON2XX AB_RPS < <(awk '
      /^Complete requests:/ { done = $3 }
      /^Failed requests:/ { failed = $3 }
      /^Keep-Alive requests:/ { ka = $3 }
      /^Non-2xx responses:/ { non2xx = $3 }
      /^Requests per second:/ { rps = $4 }
      END { printf "%d %s %d %d %.0f\n", done, (failed == "" ? "none" : failed), ka, non2xx, rps }' "$out")
    AB_CPU_US=$(calc "%.2f" "($after - $before) * 1000000 / $CLK_TCK / $AB_DONE" "$AB_DONE")
  }
  run_ab evloop "$MAIN_PID" "$MAIN_URL/plaintext"
  F_DONE=$AB_DONE F_FAILED=$AB_FAILED F_KA=$AB_KA F_NON2XX=$AB_NON2XX F_RPS=$AB_RPS F_CPU=$AB_CPU_US
  printf '  evloop: %s complete, %s failed, %s keep-alive, %s non-2xx; %s req/s, %s us CPU/request\n' \
    "$F_DONE" "$F_FAILED" "$F_KA" "$F_NON2XX" "$F_RPS" "$F_CPU"
  NF_RPS=n/a NF_CPU=n/a NF_KA=n/a NF_FAILED=-
  if [ "$NG_OK" = 1 ]; then
    run_ab nginx "$NG_PIDS" "http://$HOST:$NG_PORT/plaintext"
    NF_RPS=$AB_RPS NF_CPU=$AB_CPU_US NF_KA=$AB_KA NF_FAILED=$AB_FAILED
    printf '  nginx:  %s complete, %s failed, %s keep-alive, %s non-2xx; %s req/s, %s us CPU/request\n' \
      "$AB_DONE" "$AB_FAILED" "$AB_KA" "$AB_NON2XX" "$AB_RPS" "$AB_CPU_US"
  fi
  if [ "$F_FAILED" = none ]; then
    sed 's/^/  ab: /' "$WORK/ab-evloop.txt" | grep -iv '^  ab: *$' | tail -5
  fi
  row f "ab -k -c50: req/s" "$F_RPS" "$NF_RPS" "$(ratio "$F_RPS" "$NF_RPS")"
  row f "  server CPU us/request" "$F_CPU" "$NF_CPU" "$(ratio "$F_CPU" "$NF_CPU")"
  row f "  failed / keep-alive requests" "$F_FAILED / $F_KA" "$NF_FAILED / $NF_KA" "of $AB_N"
  check "$([ "$F_FAILED" = 0 ] && [ "$F_DONE" = "$AB_N" ] && echo 1 || echo 0)" "f. ab: no failed requests" \
    "$F_DONE complete, $F_FAILED failed, $F_NON2XX non-2xx"
  check "$([ "$F_KA" = "$AB_N" ] && echo 1 || echo 0)" "f. ab: every request kept alive" "$F_KA of $AB_N"
fi

# --- g. idle connections ---------------------------------------------------------------------
# What an idle keep-alive connection costs: each of IDLE_N connections has been through one
# request and now waits (--keep-alive-timeout 60). VmRSS before and after, divided by IDLE_N.
# Meanwhile a new client must still be answered at once: idle connections cost no work per turn.
if want g; then
  section "g. $IDLE_N idle keep-alive connections (each after one GET /plaintext)"
  # idle_measure NAME "PIDS" PORT: sets G_KB G_PER G_CURL G_OPEN G_HELD.
  idle_measure() {
    local name=$1 pids=$2 port=$3 out=$WORK/idle-$1.txt before after client curl_out
    curl -s -o /dev/null "http://$HOST:$port/plaintext" || true
    # shellcheck disable=SC2086
    before=$(rss_kb $pids)
    python3 "$SCRIPTS/idle_conns.py" --host "$HOST" --port "$port" --count "$IDLE_N" >"$out" 2>&1 &
    client=$!
    PIDS+=("$client")
    G_KB=n/a G_PER=n/a G_CURL=n/a G_OPEN=0 G_HELD=0
    if wait_for_line "$out" '^READY' 180; then
      sleep 0.5
      # shellcheck disable=SC2086
      after=$(rss_kb $pids)
      G_KB="$before -> $after KB"
      G_PER=$(calc "%.2f" "($after - $before) / $IDLE_N" 1)
      curl_out=$(curl -s -o /dev/null --max-time 10 -w '%{http_code} %{time_total}' \
        "http://$HOST:$port/plaintext" || true)
      G_CURL=$(echo "$curl_out" | awk '{ if ($1 == 200) printf "%.1f ms", $2 * 1000; else print "failed (" $1 ")" }')
    fi
    stop "$client"
    G_OPEN=$(result "$out" ok)
    G_HELD=$(result "$out" still_open)
    printf '  %-6s %s idle connections open (%s still open at the end); VmRSS %s = %s KB/connection; new curl: %s\n' \
      "$name" "${G_OPEN:-0}" "${G_HELD:-0}" "$G_KB" "$G_PER" "$G_CURL"
    grep -v '^READY\|^RESULT' "$out" | sed 's/^/    /' | tail -5 || true
  }
  start_evloop idle --pool 2 --keep-alive-timeout 60 --max-connections $((IDLE_N + 1000))
  IDLE_PID=$EV_PID
  idle_measure evloop "$IDLE_PID" "$EV_PORT"
  EG_PER=$G_PER EG_CURL=$G_CURL EG_OPEN=${G_OPEN:-0} EG_HELD=${G_HELD:-0}
  stop "$IDLE_PID"
  NG_PER=n/a NG_CURL=n/a
  if [ "$NG_OK" = 1 ]; then
    idle_measure nginx "$NG_PIDS" "$NG_PORT"
    NG_PER=$G_PER NG_CURL=$G_CURL
  fi
  row g "$IDLE_N idle conns: KB/connection" "$EG_PER" "$NG_PER" "$(ratio "$EG_PER" "$NG_PER")"
  row g "  new curl while they idle" "$EG_CURL" "$NG_CURL" ""
  if [ "$EG_OPEN" != "$IDLE_N" ] || [ "$EG_HELD" != "$IDLE_N" ]; then
    CHECKS+=("WARN|g. idle: every connection opened and held|$EG_OPEN opened, $EG_HELD still open at the end")
  fi
  case "$EG_CURL" in *ms) ;; *) CHECKS+=("WARN|g. idle: a new client is answered|$EG_CURL") ;; esac
fi

# --- h. graceful drain -----------------------------------------------------------------------
# SIGTERM in the middle of a mixed load (/sleep?ms=50 on the timer, /cpu?ms=5 on the pool, 64
# keep-alive connections, half of them pipelining 2): every request the server received is
# answered (the last with `Connection: close`), then it exits 0. scripts/drain_check.py counts.
if want h; then
  section "h. SIGTERM under load: 64 connections of /sleep?ms=50 and /cpu?ms=5, ${DRAIN_LOAD}s of load first"
  start_evloop drain --pool 2 --shutdown-timeout 10
  DRAIN_PID=$EV_PID
  python3 "$SCRIPTS/drain_check.py" --host "$HOST" --port "$EV_PORT" --conns 64 \
    --warmup "$DRAIN_LOAD" --timeout 40 >"$WORK/drain.txt" 2>&1 &
  DRAIN_CLIENT=$!
  PIDS+=("$DRAIN_CLIENT")
  H_EXIT=none
  H_TIME=n/a
  if wait_for_line "$WORK/drain.txt" '^LOADED' 30; then
    T0=$EPOCHREALTIME
    kill -TERM "$DRAIN_PID"
    wait_exit "$DRAIN_PID" 20
    H_EXIT=$EXIT_STATUS
    H_TIME=$(calc "%.3f s" "$EPOCHREALTIME - $T0" 1)
  else
    stop "$DRAIN_PID"
  fi
  wait_exit "$DRAIN_CLIENT" 45
  grep -v '^RESULT\|^LOADED' "$WORK/drain.txt" | sed 's/^/  /'
  H_LOST=$(result "$WORK/drain.txt" lost)
  H_UNANSWERED=$(result "$WORK/drain.txt" unanswered)
  H_SENT=$(result "$WORK/drain.txt" sent)
  H_ANSWERED=$(result "$WORK/drain.txt" answered)
  H_NON200=$(result "$WORK/drain.txt" non200)
  echo "  evloop exit status $H_EXIT, $H_TIME from SIGTERM to exit"
  sed -n 's/^\[[^ ]* *\([A-Z]*\) *[^]]*\] /  log: \1 /p' "$WORK/drain.log" | tail -5
  row h "SIGTERM under load: lost / exit status" "${H_LOST:-?} / $H_EXIT" "" "${H_ANSWERED:-?}/${H_SENT:-?} answered"
  row h "  SIGTERM to exit" "$H_TIME" "" ""
  check "$([ "${H_LOST:-x}" = 0 ] && [ "${H_UNANSWERED:-x}" = 0 ] && echo 1 || echo 0)" \
    "h. drain: no request lost" "${H_LOST:-?} lost, ${H_UNANSWERED:-?} unanswered, ${H_ANSWERED:-?}/${H_SENT:-?} answered"
  check "$([ "$H_EXIT" = 0 ] && echo 1 || echo 0)" "h. drain: exit status 0" "$H_EXIT"
  if [ "${H_NON200:-0}" != 0 ]; then
    CHECKS+=("WARN|h. drain: every answer a 200|$H_NON200 were not")
  fi
fi

# --- i. audio on the pool ---------------------------------------------------------------------
# The CPU-heavy jobs: a 10 s WAV POSTed to each audio endpoint (scripts/post_wav.lua). First one
# request at a time on an idle pool, for the single-job time; /analyze decodes once, then runs
# its analysis as one part per worker (2 here) at once and finishes in one more job, so it
# should take well under the sum of the other two. Then wrk keeps 8
# uploads in flight: with 2 workers the ideal is 2 / (single-job time) requests a second. And
# /plaintext is timed meanwhile, as in d: the reactor must not notice the pool is full.
if want i; then
  section "i. audio: a 10 s WAV to /snr-detect, /speaker-count, /analyze (--pool 2)"
  CLIP=$WORK/clip10s.wav
  FIXTURES=$ROOT/tests/fixtures/audio
  python3 "$SCRIPTS/make_clip.py" --seconds 10 --out "$CLIP" \
    "$FIXTURES/spk_k4_r0_clean.wav" "$FIXTURES/spk_k2_r0_clean.wav"
  start_evloop audio --pool 2
  AUDIO_PID=$EV_PID
  AUDIO_URL=http://$HOST:$EV_PORT
  SINGLE_N=$([ "$MODE" = full ] && echo 15 || echo 3)
  # single PATH: the median time (ms) of SINGLE_N sequential POSTs of the clip to PATH.
  single() {
    local i
    for i in $(seq "$SINGLE_N"); do
      curl -s -o /dev/null -w '%{time_total}\n' --data-binary @"$CLIP" "$AUDIO_URL$1"
    done | sort -n | awk '{ t[NR] = $1 } END { printf "%.1f", t[int((NR + 1) / 2)] * 1000 }'
  }
  I_SNR_MS=$(single /snr-detect)
  I_SPK_MS=$(single /speaker-count)
  I_AN_MS=$(single /analyze)
  I_FANOUT=$(calc "%.2f" "$I_AN_MS / ($I_SNR_MS + $I_SPK_MS)" 1)
  printf '  one request at a time: /snr-detect %s ms, /speaker-count %s ms, /analyze %s ms (%s of the sum)\n' \
    "$I_SNR_MS" "$I_SPK_MS" "$I_AN_MS" "$I_FANOUT"
  I_ERRS=0
  for endpoint in snr-detect speaker-count analyze; do
    run_wrk "i-$endpoint" "$AUDIO_PID" -t1 -c8 -d"${DUR}s" --timeout 10s -s "$SCRIPTS/post_wav.lua" \
      "$AUDIO_URL/$endpoint" -- "$CLIP"
    printf '  /%s: %s req/s (%s non-2xx, %s socket errors)\n' "$endpoint" "$W_RPS" "$W_NON2XX" "$W_ERRS"
    I_ERRS=$((I_ERRS + W_NON2XX + W_ERRS))
    case $endpoint in
      snr-detect) I_SNR_RPS=$W_RPS ;;
      speaker-count) I_SPK_RPS=$W_RPS ;;
      analyze) I_AN_RPS=$W_RPS ;;
    esac
  done
  I_SNR_PCT=$(calc "%.0f%%" "$I_SNR_RPS * 100 / (2000 / $I_SNR_MS)" 1)
  # /plaintext p99 while 8 uploads keep both workers busy.
  wrk -t1 -c8 -d"$((DUR + 2))s" --timeout 10s -s "$SCRIPTS/post_wav.lua" "$AUDIO_URL/snr-detect" -- "$CLIP" \
    >"$WORK/wrk-i-background.txt" 2>&1 &
  I_BG=$!
  PIDS+=("$I_BG")
  sleep 1
  run_wrk i-plaintext "$AUDIO_PID" -t1 -c16 -d"${DUR}s" --latency "$AUDIO_URL/plaintext"
  wait_exit "$I_BG" $((DUR + 15))
  I_P99=$W_P99
  I_BG_RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$WORK/wrk-i-background.txt")
  printf '  /plaintext while /snr-detect saturates the pool: p50 %s p99 %s (%s /snr-detect req/s meanwhile)\n' \
    "$W_P50" "$W_P99" "${I_BG_RPS:-?}"
  stop "$AUDIO_PID"
  row i "10 s WAV, one at a time: /snr-detect" "$I_SNR_MS ms" "" ""
  row i "  /speaker-count" "$I_SPK_MS ms" "" ""
  row i "  /analyze (2 parts at once)" "$I_AN_MS ms" "" "$I_FANOUT of snr + speakers"
  row i "/snr-detect -c8: req/s" "$I_SNR_RPS" "" "$I_SNR_PCT of 2 / single-job time"
  row i "/speaker-count, /analyze -c8: req/s" "$I_SPK_RPS, $I_AN_RPS" "" ""
  row i "/plaintext p99, audio saturating the pool" "$I_P99" "" ""
  check "$([ "$I_ERRS" = 0 ] && echo 1 || echo 0)" "i. audio uploads: only 2xx, no socket errors" \
    "$I_ERRS non-2xx or socket errors"
fi

# --- j. streams nobody reads ----------------------------------------------------------------
# GET /cpu/stream?ms=N&every=1 burns N ms on a worker and sends a Server-Sent Event, one chunk of
# about 60 bytes, after every ms of it: N - 1 progress events, then the result. STREAMS clients
# ask at once, on a fresh server with a pool of 2 for each run, so every run starts from the
# same RSS; scripts/stream_load.py drives them from one selector loop and reads the server's
# VmRSS every 50 ms. every=1 is the densest stream the endpoint makes: the most events for the
# reactor to carry per ms of burn, so a reactor that falls behind shows at once as a long gap
# between two events. ms=100 (full) gives each stream 99 gaps to measure and each of A and B
# 200 x 100 ms / 2 workers = 10 s of pool time; C0 and C have 8 x 2500 ms / 2 = 10 s each.
# With the waits after each run that makes about 45 s (full mode); on a busy machine the pool
# gets less than its two cores and j takes longer (about 75 s at a load average of 6 to 7).
#   A. every client reads every event as it comes.
#   B. every second client never reads a byte and holds its connection open until the readers
#      are done. Its job runs all the same (a worker never waits for a reader), so the readers
#      should keep A's pace: the same time from request to result (mostly their place in the
#      queue), the same longest gap between two events. But a 100 ms stream is about 6 KB and
#      sits whole in the kernel's socket buffers: B shows that the server does not wait for a
#      client that does not read, not what it does with output it cannot send.
#   C0, C. streams too long for the kernel: STREAMS_C clients, STREAM_MS_C ms each (about 150 KB in
#      full mode, 90 KB in smoke); in C0 all read, in C every second one never reads. C's
#      non-readers announce the smallest receive buffer (SO_RCVBUF 1024, which the kernel raises to
#      2304) and 88-byte segments: with loopback's 64 KB segments the server's send buffer grows to
#      megabytes and holds a whole stream anyway, and with a 4 KB receive buffer the kernel still
#      held 28 to 216 KB of a stream (see stream_load.py); this way it holds about 53 KB of each.
#      Of the rest the server keeps only the newest progress event, so its RSS should not grow by
#      the bytes it did not write, and C's readers should keep C0's pace. (The longest gap of a
#      2.5 s stream is not comparable with a 100 ms one's: the longer the stream, the more chances
#      it has to meet a hiccup.)
if want j; then
  section "j. $STREAMS x GET /cpu/stream?ms=$STREAM_MS&every=1 (--pool 2): A all read, B half never read; C0, C: $STREAMS_C x ms=$STREAM_MS_C, all read, half never read (small windows)"
  # stream_run NAME CLIENTS NON-READERS MS [stream_load.py options...]: one run against a fresh
  # server; its output is kept in $WORK/stream-NAME.txt. Sets S_OK (1 when stream_load.py
  # passed: every reader got its whole stream, every client connected) and S_CPU (the server's
  # CPU seconds during the run, workers included).
  stream_run() {
    local name=$1 clients=$2 non_readers=$3 ms=$4 out=$WORK/stream-$1.txt before
    shift 4
    start_evloop "stream-$name" --pool 2 --queue 512
    before=$(cpu_ticks "$EV_PID")
    S_OK=1
    python3 "$SCRIPTS/stream_load.py" --host "$HOST" --port "$EV_PORT" --server-pid "$EV_PID" \
      --pool 2 --clients "$clients" --non-readers "$non_readers" --ms "$ms" --every 1 "$@" \
      >"$out" 2>&1 || S_OK=0
    S_CPU=$(calc "%.1f" "($(cpu_ticks "$EV_PID") - $before) / $CLK_TCK" 1)
    stop "$EV_PID"
    echo "  $name:"
    grep -v '^RESULT' "$out" | sed 's/^/  /'
    echo "    server CPU ${S_CPU} s"
  }
  # jr NAME KEY: KEY from the RESULT line of run NAME.
  jr() { result "$WORK/stream-$1.txt" "$2"; }
  # rss_rise NAME: peak minus before VmRSS of run NAME in KB (n/a without both).
  rss_rise() {
    awk -v p="$(jr "$1" rss_peak)" -v b="$(jr "$1" rss_before)" \
      'BEGIN { if (p !~ /^[0-9]+$/ || b !~ /^[0-9]+$/) print "n/a"; else print p - b }'
  }
  # seconds MS: milliseconds as seconds, two decimals.
  seconds() { awk -v ms="$1" 'BEGIN { if (ms ~ /^[0-9.]+$/) printf "%.2f", ms / 1000; else print "?" }'; }
  # stream_rows NAME MEASURE: the summary rows of run NAME.
  stream_rows() {
    row j "$2" "$(seconds "$(jr "$1" ttr_p50)")/$(seconds "$(jr "$1" ttr_p99)")/$(seconds "$(jr "$1" ttr_max)") s" "" \
      "request to result p50/p99/max; $(jr "$1" complete)/$(jr "$1" readers) readers complete"
    row j "  longest gap between two events" "$(jr "$1" gap_p50)/$(jr "$1" gap_p99)/$(jr "$1" gap_max) ms" "" \
      "p50/p99/max over the readers' streams"
    row j "  server VmRSS before/peak/after" "$(jr "$1" rss_before)/$(jr "$1" rss_peak)/$(jr "$1" rss_after) KB" "" \
      "server CPU $S_CPU s; last result at $(jr "$1" wall_s) s, ideal $(jr "$1" ideal_s) s"
    check "$S_OK" "j. $1: every reader's stream whole, to its result" \
      "$(jr "$1" complete)/$(jr "$1" readers) complete, $(jr "$1" nr_failed) non-readers failed"
  }
  stream_run A "$STREAMS" 0 "$STREAM_MS"
  stream_rows A "A: $STREAMS streams, all read"
  stream_run B "$STREAMS" $((STREAMS / 2)) "$STREAM_MS"
  stream_rows B "B: $((STREAMS / 2)) of $STREAMS never read"
  stream_run C0 "$STREAMS_C" 0 "$STREAM_MS_C"
  stream_rows C0 "C0: $STREAMS_C streams of ${STREAM_MS_C} ms, all read"
  stream_run C "$STREAMS_C" $((STREAMS_C / 2)) "$STREAM_MS_C" --rcvbuf 1024 --maxseg 88
  stream_rows C "C: $((STREAMS_C / 2)) of $STREAMS_C never read, small windows"
  row j "  bytes per stream: A and B; C0 and C" "$(jr A stream_bytes); $(jr C stream_bytes)" "" \
    "whole in the kernel: B $(jr B nr_whole)/$((STREAMS / 2)), C $(jr C nr_whole)/$((STREAMS_C / 2)); C never written: $(jr C nr_unwritten_kb) KB"
  J_RISE_A=$(rss_rise A) J_RISE_B=$(rss_rise B) J_RISE_C=$(rss_rise C)
  # keeps_pace X Y: 1 when run Y's readers' p50 to result is within 20% (and 100 ms) of run X's.
  keeps_pace() {
    awk -v x="$(jr "$1" ttr_p50)" -v y="$(jr "$2" ttr_p50)" \
      'BEGIN { print ((x ~ /^[0-9.]+$/ && y ~ /^[0-9.]+$/ && y <= x * 1.2 + 100) ? 1 : 0) }'
  }
  note "$(keeps_pace A B)" "j. B: readers' p50 to result within 20% of A's" \
    "A $(jr A ttr_p50) ms, B $(jr B ttr_p50) ms"
  note "$(keeps_pace C0 C)" "j. C: readers' p50 to result within 20% of C0's" \
    "C0 $(jr C0 ttr_p50) ms, C $(jr C ttr_p50) ms"
  note "$(awk -v a="$J_RISE_A" -v b="$J_RISE_B" 'BEGIN { print ((a ~ /^-?[0-9]+$/ && b ~ /^-?[0-9]+$/ && b <= a + 1024) ? 1 : 0) }')" \
    "j. B: RSS rise within 1 MB of A's" "A +$J_RISE_A KB, B +$J_RISE_B KB"
  note "$(awk -v c="$J_RISE_C" -v u="$(jr C nr_unwritten_kb)" 'BEGIN { print ((c ~ /^-?[0-9]+$/ && c < u + 0) ? 1 : 0) }')" \
    "j. C: RSS rise below the bytes never written" "+$J_RISE_C KB, $(jr C nr_unwritten_kb) KB never written"
  if [ "$(jr C nr_whole)" != 0 ]; then
    CHECKS+=("WARN|j. C: no non-reader's stream whole in the kernel|$(jr C nr_whole) of $((STREAMS_C / 2)) were: C did not overflow them")
  fi
fi

# --- k. calls to an upstream -----------------------------------------------------------------
# GET /fanout?n=K&ms=M&mode=MODE makes K calls to the upstream's GET /sleep?ms=M. The upstream
# is a second evloop (--pool 1: there a /sleep is only a timer, so it answers K calls at once and
# is not what is measured). The same K calls, three places to wait:
#   await   the reactor's own non-blocking sockets: all K at once, so about M; no thread waits;
#   pool    a blocking call in each of K pool jobs: 2 at a time (--pool 2), so about K / 2 x M,
#           and the reactor serves everyone else meanwhile;
#   inline  blocking calls on the reactor thread, one after another: K x M, and no one else is
#           served meanwhile (the reactor logs a slow turn).
# scripts/fanout_probe.py sends the fan-out and, on another connection, a GET /plaintext every
# 2 ms without waiting for the previous answer (open loop), each timed from when it was due; its
# p50/p99/max over the requests due while the fan-out ran are what clients arriving meanwhile
# waited. (A closed loop such as wrk -c1 would send one request into the inline stall and count
# one slow sample.) A run of the probe alone shows its floor on this machine. "threads" is the
# answer's count of the threads that made the calls; the server's OS threads (Threads: in
# /proc/PID/status) are the reactor and the pool, the same in every mode.
# Then the outbound path's throughput, on a fresh server: wrk -c64 on /fanout?n=4&ms=0 (await),
# 4 calls a request on at most 256 kept-alive connections (--upstream-max-connections): req/s,
# calls/s, the server's and the upstream's CPU per call, and from the line the drain logs after
# SIGTERM how many calls reused a connection (one run, not alternating rounds as in a: the
# server closes an upstream connection idle for 4 s, so each round would open its connections
# again; and a call cancelled because its client left closes its connection). The peer, once
# that server has drained: wrk -c64 on the upstream's /sleep?ms=0 directly. A fan-out request
# is 4 upstream requests, so the fan-out cannot pass a quarter of that figure (nor reach it:
# the server, the upstream and wrk then share the 2 cores).
if want k; then
  section "k. GET /fanout: $FAN_N calls to /sleep?ms=$FAN_MS each way (inline: $FAN_N_INLINE), /plaintext probed meanwhile; then wrk -t1 -c64 -d${DUR}s /fanout?n=4&ms=0, and the upstream alone"
  start_evloop k-upstream --pool 1
  K_UP_PID=$EV_PID
  K_UP_URL=http://$HOST:$EV_PORT
  start_evloop k-fanout --pool 2 --queue 1024 --upstream "$K_UP_URL"
  K_PID=$EV_PID
  K_PORT=$EV_PORT
  K_THREADS=$(awk '/^Threads:/ { print $2 }' "/proc/$K_PID/status")
  # fanout_run NAME fanout_probe.py-OPTIONS...: one run, its output kept in $WORK/fanout-NAME.txt.
  fanout_run() {
    local out=$WORK/fanout-$1.txt
    shift
    python3 "$SCRIPTS/fanout_probe.py" --host "$HOST" --port "$K_PORT" "$@" >"$out" 2>&1 || true
    grep -v '^RESULT' "$out" | sed 's/^/  /'
  }
  # kr NAME KEY: KEY from the RESULT line of run NAME.
  kr() { result "$WORK/fanout-$1.txt" "$2"; }
  # probe_lat NAME: the probe's p50/p99/max in run NAME, three significant digits; in s when the
  # max is 1 s or more (the probe's own line has them to the hundredth of a ms).
  probe_lat() {
    awk -v a="$(kr "$1" p50_ms)" -v b="$(kr "$1" p99_ms)" -v c="$(kr "$1" max_ms)" '
      function f(x) { return sprintf(x < 10 ? "%.2f" : x < 100 ? "%.1f" : "%.0f", x) }
      BEGIN {
        if (c !~ /^[0-9.]+$/) print "n/a"
        else if (c >= 1000) print f(a / 1000) "/" f(b / 1000) "/" f(c / 1000) " s"
        else print f(a) "/" f(b) "/" f(c) " ms"
      }'
  }
  fanout_run idle --idle-s "$FAN_IDLE"
  row k "/plaintext probe alone: p50/p99/max" "$(probe_lat idle)" "" \
    "$(kr idle samples) requests, one due every 2 ms"
  for mode in await pool inline; do
    n=$FAN_N
    case $mode in
      await) ideal=$FAN_MS ;;
      pool) ideal=$(((n + 1) / 2)) ideal=$((ideal * FAN_MS)) ;; # 2 calls at a time
      inline) n=$FAN_N_INLINE ideal=$((FAN_N_INLINE * FAN_MS)) ;;
    esac
    fanout_run "$mode" --target "/fanout?n=$n&ms=$FAN_MS&mode=$mode"
    row k "/fanout?n=$n&ms=$FAN_MS&mode=$mode: wall" "$(kr "$mode" wall_ms) ms" "" \
      "elapsed_ms $(kr "$mode" elapsed_ms), threads $(kr "$mode" threads); ideal $ideal ms"
    row k "  /plaintext meanwhile: p50/p99/max" "$(probe_lat "$mode")" "" \
      "$(kr "$mode" samples) requests due meanwhile"
    check "$([ "$(kr "$mode" status)" = 200 ] && [ "$(kr "$mode" mode)" = "$mode" ] &&
      [ "$(kr "$mode" n)" = "$n" ] && echo 1 || echo 0)" "k. /fanout mode=$mode: a 200 for n=$n" \
      "status $(kr "$mode" status), mode $(kr "$mode" mode), n $(kr "$mode" n)"
    if [ "$(kr "$mode" lost)" != 0 ] || [ "$(kr "$mode" non200)" != 0 ]; then
      CHECKS+=("WARN|k. $mode: every /plaintext probe answered 200|$(kr "$mode" lost) lost, $(kr "$mode" non200) not 200")
    fi
  done
  K_THREADS_AFTER=$(awk '/^Threads:/ { print $2 }' "/proc/$K_PID/status")
  row k "  server OS threads, before/after" "$K_THREADS/$K_THREADS_AFTER" "" "the reactor and --pool 2 workers"
  stop "$K_PID"

  # Throughput: a fresh server, so that the drain's counts are this run's alone.
  start_evloop k-tput --pool 2 --queue 1024 --upstream "$K_UP_URL"
  KT_PID=$EV_PID
  KT_URL=http://$HOST:$EV_PORT
  up_before=$(cpu_ticks "$K_UP_PID")
  run_wrk k-fanout "$KT_PID" -t1 -c64 -d"${DUR}s" "$KT_URL/fanout?n=4&ms=0"
  kt_up_ticks=$(($(cpu_ticks "$K_UP_PID") - up_before))
  kt_reqs=$W_REQS kt_secs=$W_SECS kt_ticks=$W_TICKS kt_non2xx=$W_NON2XX kt_errs=$W_ERRS
  stop "$KT_PID"
  KT_EXIT=$EXIT_STATUS
  run_wrk k-upstream "$K_UP_PID" -t1 -c64 -d"${DUR}s" "$K_UP_URL/sleep?ms=0"
  up_reqs=$W_REQS up_secs=$W_SECS up_ticks=$W_TICKS up_non2xx=$W_NON2XX up_errs=$W_ERRS
  KT_RPS=$(calc "%.0f" "$kt_reqs / $kt_secs" "$kt_secs")
  KT_CALLS=$(calc "%.0f" "4 * $kt_reqs / $kt_secs" "$kt_secs")
  KT_CPU=$(calc "%.2f" "$kt_ticks * 1000000 / $CLK_TCK / (4 * $kt_reqs)" "$kt_reqs")
  KT_UP_CPU=$(calc "%.2f" "$kt_up_ticks * 1000000 / $CLK_TCK / (4 * $kt_reqs)" "$kt_reqs")
  UP_RPS=$(calc "%.0f" "$up_reqs / $up_secs" "$up_secs")
  UP_CPU=$(calc "%.2f" "$up_ticks * 1000000 / $CLK_TCK / $up_reqs" "$up_reqs")
  KT_OF_CEILING=$(calc "%.0f%%" "$kt_reqs / $kt_secs * 100 / ($up_reqs / $up_secs / 4)" "$up_reqs")
  # "drained: every connection closed (J jobs ended cancelled since start; C calls upstream on X
  # connections, R of them reused, F failed, Z cancelled)": C X R F Z.
  read -r KT_C KT_X KT_R KT_F KT_Z < <(sed -n \
    's/.*drained: .*; \([0-9]*\) calls upstream on \([0-9]*\) connections, \([0-9]*\) of them reused, \([0-9]*\) failed, \([0-9]*\) cancelled).*/\1 \2 \3 \4 \5/p' \
    "$WORK/k-tput.log" | tail -1) || true
  KT_REUSE=$(calc "%.2f%%" "${KT_R:-0} * 100 / ${KT_C:-0}" "${KT_C:-0}")
  printf '  /fanout?n=4&ms=0: %s req/s = %s calls/s (%s requests, %s non-2xx, %s socket errors); CPU per call: server %s us, upstream %s us\n' \
    "$KT_RPS" "$KT_CALLS" "$kt_reqs" "$kt_non2xx" "$kt_errs" "$KT_CPU" "$KT_UP_CPU"
  printf '  upstream alone, /sleep?ms=0: %s req/s, %s us CPU/request (%s non-2xx, %s socket errors)\n' \
    "$UP_RPS" "$UP_CPU" "$up_non2xx" "$up_errs"
  sed -n 's/^\[[^ ]* *\([A-Z]*\) *[^]]*\] \(drained: .*\)/  log: \1 \2/p' "$WORK/k-tput.log"
  echo "  evloop exit status $KT_EXIT"
  stop "$K_UP_PID"
  row k "wrk -c64 /fanout?n=4&ms=0: req/s" "$KT_RPS" "" \
    "$KT_CALLS calls/s; $KT_OF_CEILING of a quarter of the upstream alone"
  row k "  server CPU us per upstream call" "$KT_CPU" "" "upstream's: $KT_UP_CPU us per call"
  row k "  calls on a reused connection" "$KT_REUSE" "" \
    "${KT_R:-?} of ${KT_C:-?} calls on ${KT_X:-?} connections; ${KT_F:-?} failed, ${KT_Z:-?} cancelled"
  row k "upstream alone -c64 /sleep?ms=0: req/s" "$UP_RPS" "" "$UP_CPU us CPU/request"
  check "$([ "$kt_reqs" -gt 0 ] && [ "$kt_non2xx" = 0 ] && [ "$kt_errs" = 0 ] && echo 1 || echo 0)" \
    "k. wrk /fanout?n=4: only 2xx, no socket errors" \
    "$kt_reqs requests, $kt_non2xx non-2xx, $kt_errs socket errors"
  if [ -z "${KT_C:-}" ] || [ "$KT_EXIT" != 0 ] || [ "${KT_F:-0}" != 0 ]; then
    CHECKS+=("WARN|k. drain after the /fanout run: exit 0, no call failed|exit status $KT_EXIT, ${KT_F:-?} calls failed")
  fi
fi

# --- the end ---------------------------------------------------------------------------------

if [ -n "$MAIN_PID" ]; then
  stop "$MAIN_PID"
fi
if [ "$NG_OK" = 1 ]; then
  stop "$NG_MASTER"
fi

section "summary ($MODE): wrk -t1 on $(nproc) cores; load average now $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-2s %-40s %18s %14s  %s\n' "" "measure" "evloop" "nginx" "evloop/nginx, or note"
for line in "${ROWS[@]}"; do
  IFS='|' read -r s m e n r <<<"$line"
  printf '%-2s %-40s %18s %14s  %s\n' "$s" "$m" "$e" "$n" "$r"
done

section "checks (only FAIL fails the run; ok/slow are speed notes, WARN is worth a look)"
for line in "${CHECKS[@]}"; do
  IFS='|' read -r verdict what value <<<"$line"
  printf '%-5s %-48s %s\n' "$verdict" "$what" "$value"
done

# Anything the servers logged at WARN or ERROR (slow turns are expected from mode=inline in d and
# k). Numbers are replaced by N so that lines differing only in a figure are counted together.
LOGGED=$(grep -h ' WARN \| ERROR ' "$WORK"/*.log 2>/dev/null | sed -e 's/^\[[^ ]* */  /' -e 's/[0-9][0-9]*/N/g' |
  sort | uniq -c | sort -rn | head -8 || true)
if [ -n "$LOGGED" ]; then
  section "evloop log lines at WARN/ERROR (count, message)"
  echo "$LOGGED"
fi

echo
if [ "$FAILED" = 1 ]; then
  echo "load.sh $MODE: FAILED (a correctness check above)"
  exit 1
fi
echo "load.sh $MODE: passed"
