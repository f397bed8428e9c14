#!/usr/bin/env bash
# scripts/load.sh MODE — real clients (wrk, ab, small Python programs) against ./evloop, with
# nginx as the peer.
#
#   scripts/load.sh smoke   scenarios a to k briefly, and a short check of --workers 2 (about a
#                           minute): what CI runs (`make smoke`); checks that the report can
#                           be written
#   scripts/load.sh full    the figures (about 9 minutes, and 2 more the first time o builds its
#                           baseline, half a minute the first time the FastAPI twin is
#                           installed): what `make load` runs; writes docs/BENCHMARKS.md
#
# Both modes exit non-zero on a CORRECTNESS failure only: non-2xx answers or socket errors in the
# plaintext run, ab failures or connections not kept alive, a /sleep request not answered, a
# request lost in the graceful drain or a drain that did not exit 0, a reading stream client
# that did not get a whole, well-framed event stream ending in its result (or a stream client
# that could not connect), a /fanout not answered 200 with the number of calls asked for, a
# non-2xx answer or socket error in the /fanout wrk run, a non-2xx answer or socket error in
# l's plaintext runs (either config). A speed figure never fails a run: the
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
#   l. --workers 2 --pool 1 vs --workers 1 --pool 2:     req/s, p99, CPU us/request of each, and
#      plaintext, pipelined, /cpu?ms=5, /snr-detect      how the requests spread over the 2 processes
#   m. the same two, memory                              VmRSS and PSS: idle, after the audio
#                                                        endpoints one at a time (each process
#                                                        builds its model), after 8 at a time
#   n. --workers 2, one shared socket vs --reuse-port   per-process shares under wrk -c64; ab -c8
#                                                        of new connections while one process is
#                                                        stalled 3 s: time taken, failed, split
#   o. metrics on vs off: this build against 81afeea,   plaintext req/s and CPU us/request in
#      the last revision before metrics                 alternating rounds (built once, cached)
#   p. POST /speaker-count, --pool 1, 2, 4, 8            req/s against --pool 1's req/s x
#                                                        min(pool, cores); /plaintext p99 meanwhile;
#                                                        /cpu?ms=5, a burn of wall time, beside
#
# In full mode a and c also run against the FastAPI twin (benches/peers/fastapi/app.py, uvicorn,
# one worker) when fastapi and uvicorn can be installed into a venv (the one scripts/demo.sh
# makes, scripts/fastapi_twin.sh): its req/s and server CPU per request, in the note column.
#
# The report: every run also writes BENCHMARKS.md and its SVG plots (scripts/bench_report.py,
# from the figures this script records in its scratch directory as it goes). A full run of every
# scenario writes docs/BENCHMARKS.md and docs/bench/; a run of some scenarios, or a smoke run,
# writes to load-report/ under $CARGO_TARGET_DIR (or target/), so that a partial run never
# replaces the committed report. A report that cannot be written, or an SVG that is not
# well-formed XML, fails the run (it is this project's own code).
#
# The spread over processes (l, m, n) comes from GET /metrics: any process shows every
# process's evloop_requests_total labelled by pid, each process posting its series at most about
# 1 s apart, so a scrape is taken at least 1.5 s after the load on that server ended, and two
# scrapes are subtracted (the counters are cumulative since start). /metrics requests themselves
# are left out.
#
# Environment: EVLOOP (binary, default ./evloop at the repository root), NGINX (default: the one
# on PATH, or /usr/sbin/nginx), SCENARIOS (the letters of the scenarios to run, SCENARIOS=k or
# SCENARIOS=a,k; default all in full mode; in smoke mode a to k and, of l, only the plaintext
# pair: a short check of --workers 2; named in SCENARIOS, l to p run briefly in smoke mode too),
# LOAD_BASELINE_DIR (where o builds and keeps 81afeea; default load-baseline/ under
# $CARGO_TARGET_DIR, or under target/), LOAD_KEEP (set: keep the scratch directory, with every
# wrk and ab output and the servers' logs, and say where it is), LOAD_FASTAPI=0 (no FastAPI
# twin), DEMO_VENV (where its venv is, as for scripts/demo.sh; default demo-venv/ under
# $CARGO_TARGET_DIR, or under target/), LOAD_REPORT (the directory the report is written to,
# whatever was run). Without nginx the nginx columns read n/a.

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
    L_ROUNDS=1     # alternating rounds per workload in l (each config once a round)
    L_ROUND_S=1    # seconds per wrk run in l
    M_SEQ=3        # uploads one at a time to each audio endpoint in m
    M_S=1          # seconds of wrk on each audio endpoint in m
    N_ROUNDS=1     # balance rounds in n (each socket mode once a round)
    N_S=1          # seconds per balance run in n
    STALL_MS=1000  # how long n's inline /cpu stalls one process
    STALL_AB_N=500 # ab requests while it is stalled
    STALL_ROUNDS=1 # stalls per socket mode
    O_ROUNDS=2     # rounds per build in o
    O_ROUND_S=1    # seconds per wrk run in o
    P_ROUNDS=1     # alternating rounds over the pool sizes in p
    P_S=1          # seconds of wrk per pool size and round in p (the audio job)
    P_CPU_S=1      # and of /cpu?ms=5 on each server, once
    FA_S=1         # seconds of each wrk run against the FastAPI twin (full mode only)
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
    L_ROUNDS=3
    L_ROUND_S=3
    M_SEQ=6
    M_S=2
    N_ROUNDS=3
    N_S=5
    STALL_MS=3000
    STALL_AB_N=2000
    STALL_ROUNDS=2
    O_ROUNDS=6
    O_ROUND_S=2
    P_ROUNDS=2
    P_S=3
    P_CPU_S=3
    FA_S=5
    ;;
  *)
    echo "usage: [SCENARIOS=letters] $0 smoke|full" >&2
    exit 2
    ;;
esac

# SCENARIOS: the letters of the scenarios to run (SCENARIOS=k, SCENARIOS=a,k); all by default.
# smoke's default keeps CI short: a to k, and of l only the plaintext pair (L_WORKLOADS).
L_WORKLOADS="plaintext pipelined cpu audio"
# Every scenario, in full mode with SCENARIOS unset: the run whose report replaces docs/'s.
ALL_SCENARIOS=0
if [ -z "${SCENARIOS:-}" ] && [ "$MODE" = full ]; then ALL_SCENARIOS=1; fi
SCENARIOS_ASKED=${SCENARIOS:-}
if [ -z "${SCENARIOS:-}" ] && [ "$MODE" = smoke ]; then
  SCENARIOS=abcdefghijkl
  L_WORKLOADS=plaintext
fi
SCENARIOS=${SCENARIOS:-abcdefghijklmnop}
if [[ ! $SCENARIOS =~ ^[a-p,\ ]+$ ]]; then
  echo "load.sh: SCENARIOS=$SCENARIOS: letters a to p only" >&2
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

# datum KEY VALUE: one figure for the report (scripts/bench_report.py), a "KEY<TAB>VALUE" line
# in $WORK/data.tsv. Keys are "scenario.what", e.g. a.evloop.rps; the last value of a key wins.
DATA=$WORK/data.tsv
: >"$DATA"
datum() {
  printf '%s\t%s\n' "$1" "${2//$'\t'/ }" >>"$DATA"
}

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
  if [ -n "${LOAD_KEEP:-}" ]; then
    echo "load.sh: the clients' outputs and the servers' logs are kept in $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_evloop NAME ARGS...: start ./evloop on a free port, and wait until it says it is
# "ready on http://…" (EV_READY_WORD=listening for a build older than the start-up hooks, which
# said only "listening on"); sets EV_PID and EV_PORT.
start_evloop() {
  local name=$1 word=${EV_READY_WORD:-ready} _i
  shift
  "$EVLOOP" --host "$HOST" --port 0 "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  EV_PID=$!
  PIDS+=("$EV_PID")
  EV_PORT=
  for _i in $(seq 100); do
    EV_PORT=$(sed -n "s|.*$word on http://[^:]*:\\([0-9]*\\).*|\\1|p" "$WORK/$name.out" 2>/dev/null || true)
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
# of every kind), W_P50, W_P75, W_P90, W_P99 (with --latency; "-" otherwise) and W_TICKS (the
# server processes' CPU time during the run, in clock ticks).
run_wrk() {
  local name=$1 pids=$2 out=$WORK/wrk-$1.txt before after
  shift 2
  # shellcheck disable=SC2086 # $pids is a list
  before=$(cpu_ticks $pids)
  wrk "$@" >"$out" 2>&1 || echo "  (wrk $name exited with status $?)" >>"$out"
  # shellcheck disable=SC2086
  after=$(cpu_ticks $pids)
  read -r W_REQS W_SECS W_RPS W_NON2XX W_ERRS W_P50 W_P75 W_P90 W_P99 < <(awk '
    / requests in / { reqs = $1; secs = $4; sub(/s,?$/, "", secs) }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ { gsub(",", ""); errs = $4 + $6 + $8 + $10 }
    $1 == "50%" { p50 = $2 }
    $1 == "75%" { p75 = $2 }
    $1 == "90%" { p90 = $2 }
    $1 == "99%" { p99 = $2 }
    END {
      printf "%d %.2f %.0f %d %d %s %s %s %s\n", reqs, secs, rps, non2xx, errs, (p50 == "" ? "-" : p50),
        (p75 == "" ? "-" : p75), (p90 == "" ? "-" : p90), (p99 == "" ? "-" : p99)
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

# to_ms LATENCY: a wrk latency ("850.00us", "1.23ms", "2.01s") in ms, or "-".
to_ms() {
  awk -v x="$1" 'BEGIN {
    if (x ~ /us$/) printf "%.3f", x / 1000
    else if (x ~ /ms$/) printf "%.3f", x + 0
    else if (x ~ /[0-9]s$/) printf "%.3f", x * 1000
    else if (x ~ /m$/) printf "%.3f", x * 60000
    else print "-"
  }'
}

# stats VALUE...: "mean min max median" of the numeric values (a "-" is skipped), or "n/a".
stats() {
  printf '%s\n' "$@" | awk '$1 ~ /^[0-9.]+$/ { v[++n] = $1 + 0; sum += $1 }
    END {
      if (n == 0) { print "n/a n/a n/a n/a"; exit }
      for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
      med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
      printf "%g %g %g %g\n", sum / n, v[1], v[n], med
    }'
}

# children PID: the pids of PID's child processes (a supervisor's reactor processes).
children() {
  cat "/proc/$1/task/$1/children" 2>/dev/null || true
}

# start_workers NAME ARGS...: start_evloop, which returns once the server says "ready on" (a
# supervisor says it only when all its processes are). Sets EV_PID (the supervisor, or the lone
# server), EV_PORT, EV_URL and EV_PIDS (the supervisor and its processes, or the server).
start_workers() {
  start_evloop "$@"
  EV_URL=http://$HOST:$EV_PORT
  EV_PIDS="$EV_PID $(children "$EV_PID")"
  EV_PIDS=${EV_PIDS% }
}

# The spread over processes, from GET /metrics. Each process posts its series for the others'
# /metrics at most about 1 s apart, so a scrape waits until 1.5 s after the last load on that
# server ended (loaded KEY marks the end; settle KEY waits).
declare -A LOAD_END=()
loaded() { LOAD_END[$1]=$EPOCHREALTIME; }
settle() {
  local left
  left=$(awk -v e="${LOAD_END[$1]:-0}" -v n="$EPOCHREALTIME" 'BEGIN { l = e + 1.5 - n; printf "%.2f", (l > 0 ? l : 0) }')
  if [ "$left" != 0.00 ]; then sleep "$left"; fi
}

# snap KEY URL FILE: settle KEY, then scrape URL/metrics into FILE as "PID ROUTE COUNT" lines:
# evloop_requests_total summed over status classes, by process and route; and the connections
# each process accepted, as ROUTE "#accepted" (each scrape's own connection among them).
snap() {
  settle "$1"
  curl -s --max-time 10 "$2/metrics" | awk -F'[{}]' '/^evloop_requests_total\{/ {
      pid = "-"; route = "-"
      if (match($2, /pid="[0-9]+"/)) pid = substr($2, RSTART + 5, RLENGTH - 6)
      if (match($2, /route="[^"]*"/)) route = substr($2, RSTART + 7, RLENGTH - 8)
      n[pid " " route] += $3
    }
    /^evloop_connections_accepted_total\{/ {
      pid = "-"
      if (match($2, /pid="[0-9]+"/)) pid = substr($2, RSTART + 5, RLENGTH - 6)
      n[pid " #accepted"] += $3
    }
    END { for (k in n) print k, n[k] }' | sort >"$3" || true
}

# spread BEFORE AFTER ROUTES: the requests each process answered between two snaps, on the routes
# matching the regular expression ROUTES (GET /metrics itself never counts). Sets SPREAD_SUM (all
# processes), SPREAD_N (processes that answered any), SPREAD_SHARES ("58/42", largest first)
# and SPREAD_COUNTS ("pid 123: 40211, pid 124: 29000", largest first).
spread() {
  local line
  local out pid count
  out=$(awk -v routes="$3" '
    $2 == "/metrics" || $2 !~ routes { next }
    FNR == NR { before[$1] += $3; next }
    { after[$1] += $3 }
    END {
      for (p in after) { d = after[p] - before[p]; if (d < 0) d = after[p]; pid[++n] = p; c[n] = d; sum += d }
      for (i = 2; i <= n; i++) for (j = i; j > 1 && c[j - 1] < c[j]; j--) {
        t = c[j]; c[j] = c[j - 1]; c[j - 1] = t; t = pid[j]; pid[j] = pid[j - 1]; pid[j - 1] = t
      }
      shares = ""; counts = ""; busy = 0
      for (i = 1; i <= n; i++) {
        if (c[i] > 0) busy++
        shares = shares (i > 1 ? "/" : "") (sum > 0 ? sprintf("%.0f", c[i] * 100 / sum) : "-")
        counts = counts (i > 1 ? ",_" : "") "pid_" pid[i] ":_" c[i]
      }
      printf "%d %d %s %s\n", sum, busy, (shares == "" ? "-" : shares), (counts == "" ? "-" : counts)
      for (i = 1; i <= n; i++) print pid[i], c[i]
    }' "$1" "$2")
  read -r SPREAD_SUM SPREAD_N SPREAD_SHARES SPREAD_COUNTS <<<"$(head -1 <<<"$out")"
  SPREAD_COUNTS=${SPREAD_COUNTS//_/ }
  SPREAD_OF=() # pid -> count
  while read -r pid count; do
    SPREAD_OF[$pid]=$count
  done < <(tail -n +2 <<<"$out")
}
declare -A SPREAD_OF=()

# mem_of PID...: VmRSS and PSS (smaps_rollup; "n/a" where the kernel has none) summed over the
# processes, in KB. Sets MEM_RSS, MEM_PSS, MEM_EACH ("RSS/PSS" of each, in order, "+" between)
# and MEM_RSS_EACH (the RSS of each).
mem_of() {
  local pid rss pss
  MEM_RSS=0 MEM_PSS=0 MEM_EACH='' MEM_RSS_EACH=''
  for pid in "$@"; do
    rss=$(rss_kb "$pid")
    pss=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || true)
    MEM_RSS=$((MEM_RSS + rss))
    if [[ ! $pss =~ ^[0-9]+$ ]]; then
      pss=n/a MEM_PSS=n/a
    elif [ "$MEM_PSS" != n/a ]; then
      MEM_PSS=$((MEM_PSS + pss))
    fi
    MEM_EACH+="${MEM_EACH:+ + }$rss/$pss"
    MEM_RSS_EACH+="${MEM_RSS_EACH:+ + }$rss"
  done
}

# ensure_clip: the 10 s WAV the audio endpoints are sent (i, l, m), made once; sets CLIP.
CLIP=$WORK/clip10s.wav
ensure_clip() {
  if [ ! -s "$CLIP" ]; then
    python3 "$SCRIPTS/make_clip.py" --seconds 10 --out "$CLIP" \
      "$ROOT/tests/fixtures/audio/spk_k4_r0_clean.wav" "$ROOT/tests/fixtures/audio/spk_k2_r0_clean.wav"
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

EV_VERSION=$("$EVLOOP" --version 2>/dev/null || echo evloop)
NG_VERSION=$("$NGINX" -v 2>&1 | sed 's|.*: ||') || NG_VERSION=n/a
WRK_VERSION=$(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }') || true
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "evloop load ($MODE): $EV_VERSION vs $NG_VERSION, $WRK_VERSION, $(nproc) cores"
echo "load average at start: $LOAD_START (other work on the machine makes every figure noisy; read the ratios)"
# The run, for the report's first lines: the command (make load is scripts/load.sh full), when,
# which commit (-dirty: tracked files differ from it), what ran, on what.
if [ "$ALL_SCENARIOS" = 1 ]; then
  datum meta.command "make load"
elif [ -n "$SCENARIOS_ASKED" ]; then
  datum meta.command "SCENARIOS=$SCENARIOS_ASKED scripts/load.sh $MODE"
else
  datum meta.command "scripts/load.sh $MODE"
fi
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$COMMIT" != unknown ] && ! git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null; then
  COMMIT+=-dirty
fi
datum meta.mode "$MODE"
datum meta.date "$(date -u '+%Y-%m-%d %H:%M UTC')"
datum meta.commit "$COMMIT"
datum meta.evloop "$EV_VERSION"
datum meta.nginx "$NG_VERSION"
datum meta.wrk "$WRK_VERSION"
datum meta.cores "$(nproc)"
datum meta.cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
datum meta.load_start "$LOAD_START"
datum meta.scenarios "${SCENARIOS//[, ]/}"
datum meta.dur "$DUR"
datum meta.rounds "$ROUNDS"
datum meta.round_s "$ROUND_S"

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

# The FastAPI twin (benches/peers/fastapi/app.py) under uvicorn with one worker, a single
# process: a third column in a and c, full mode only. Its venv is scripts/demo.sh's (DEMO_VENV),
# so one install serves both. FA_SKIP says why it did not run; sets FA_PID, FA_URL and FA_T0.
FA_PID='' FA_URL='' FA_SKIP=''
# shellcheck source=scripts/fastapi_twin.sh
. "$SCRIPTS/fastapi_twin.sh"
start_fastapi() {
  local port _i
  if [ "${LOAD_FASTAPI:-1}" = 0 ]; then
    FA_SKIP="LOAD_FASTAPI=0"
  elif [ "$MODE" != full ]; then
    FA_SKIP="only in full mode"
  else
    fastapi_venv
  fi
  [ -z "$FA_SKIP" ] || return 0
  FA_T0=$EPOCHREALTIME # the twin's time counts from here: a first install is not the run's
  port=$(free_port)
  "$FA_VENV/bin/python" -m uvicorn --app-dir "$ROOT/benches/peers/fastapi" app:app --host "$HOST" \
    --port "$port" --workers 1 --log-level warning >"$WORK/fastapi.out" 2>&1 &
  FA_PID=$!
  PIDS+=("$FA_PID")
  # The app calibrates its CPU job at import (a fraction of a second) before it listens.
  for _i in $(seq 200); do
    if [ "$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://$HOST:$port/plaintext")" = 200 ]; then
      FA_URL=http://$HOST:$port
      return 0
    fi
    alive "$FA_PID" || break
    sleep 0.1
  done
  FA_SKIP="uvicorn did not start: $(tail -1 "$WORK/fastapi.out")"
  stop "$FA_PID"
  FA_PID=
}
FA_T0=$EPOCHREALTIME
if want a || want c; then
  start_fastapi
  if [ -n "$FA_PID" ]; then
    echo "FastAPI twin (uvicorn, 1 worker) on ${FA_URL##*:} (pid $FA_PID)"
  elif [ "$MODE" = full ]; then
    echo "FastAPI twin skipped: $FA_SKIP"
  fi
  datum fastapi.skip "$FA_SKIP"
fi
FA_SECS=$(calc "%.1f" "$EPOCHREALTIME - $FA_T0" 1)

# fastapi_run NAME WRK-ARGS... PATH: wrk -t1 -dFA_S against the twin; sets FA_RPS, FA_CPU_US
# (server CPU per request), FA_BAD (non-2xx and socket errors). The time it took counts in
# FA_SECS.
fastapi_run() {
  local name=$1 t0=$EPOCHREALTIME path
  shift
  path=${*: -1}
  run_wrk "$name-fastapi" "$FA_PID" -d"${FA_S}s" "${@:1:$#-1}" "$FA_URL$path"
  FA_RPS=$W_RPS FA_BAD=$((W_NON2XX + W_ERRS))
  FA_CPU_US=$(calc "%.2f" "$W_TICKS * 1000000 / $CLK_TCK / $W_REQS" "$W_REQS")
  FA_SECS=$(calc "%.1f" "$FA_SECS + $EPOCHREALTIME - $t0" 1)
  printf '  FastAPI %7s req/s, %6s us CPU/request (%s requests, %s non-2xx or socket errors)\n' \
    "$FA_RPS" "$FA_CPU_US" "$W_REQS" "$FA_BAD"
}

# --- a. plaintext ----------------------------------------------------------------------------
# The reactor's raw speed: the cheapest handler, keep-alive connections, nothing but read,
# parse, route, encode, write. nginx does the same job with one worker process.
if want a; then
  section "a. GET /plaintext, wrk -t1 -c64, ${DUR}s per server ($ROUNDS alternating rounds of ${ROUND_S}s)"
  wrk_pair a -t1 -c64 "{}/plaintext"
  row a "GET /plaintext -c64: req/s" "$E_RPS" "$N_RPS" "$(ratio "$E_RPS" "$N_RPS")"
  row a "  server CPU us/request" "$E_CPU_US" "$N_CPU_US" "$(ratio "$E_CPU_US" "$N_CPU_US")"
  datum a.evloop.rps "$E_RPS"
  datum a.evloop.cpu_us "$E_CPU_US"
  datum a.nginx.rps "$N_RPS"
  datum a.nginx.cpu_us "$N_CPU_US"
  if [ -n "$FA_PID" ]; then
    # One run after the pair, not alternating rounds: the twin is an order of magnitude slower,
    # so the ratio's noise matters less.
    fastapi_run a -t1 -c64 /plaintext
    row a "  FastAPI twin: req/s, CPU us/request" "" "" \
      "$FA_RPS req/s, $FA_CPU_US us; evloop/FastAPI $(ratio "$E_RPS" "$FA_RPS") req/s"
    datum a.fastapi.rps "$FA_RPS"
    datum a.fastapi.cpu_us "$FA_CPU_US"
    if [ "$FA_BAD" != 0 ]; then
      CHECKS+=("WARN|a. FastAPI twin /plaintext: only 2xx|$FA_BAD non-2xx or socket errors")
    fi
  fi
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
  datum b.evloop.rps "$E_RPS"
  datum b.evloop.cpu_us "$E_CPU_US"
  datum b.nginx.rps "$N_RPS"
  datum b.nginx.cpu_us "$N_CPU_US"
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
  datum c.evloop.rps "$W_RPS"
  datum c.evloop.cpu_us "$(calc "%.2f" "$W_TICKS * 1000000 / $CLK_TCK / $W_REQS" "$W_REQS")"
  datum c.ideal 400
  if [ "$W_NON2XX" != 0 ] || [ "$W_ERRS" != 0 ]; then
    CHECKS+=("WARN|c. /cpu run: only 2xx, no socket errors|$W_NON2XX non-2xx, $W_ERRS socket errors")
  fi
  if [ -n "$FA_PID" ]; then
    # The twin's /cpu?ms=5 is a fixed amount of pure-Python work (about 5 ms, calibrated when
    # the app starts) run with run_in_threadpool: its threads take turns holding the GIL, so it
    # can use one core at most, whatever its thread pool's size: 1 s / its CPU per request.
    fastapi_run c -t1 -c8 "/cpu?ms=5"
    row c "  FastAPI twin: req/s, CPU us/request" "" "" \
      "$FA_RPS req/s, $FA_CPU_US us; one core (the GIL) allows $(calc "%.0f" "1000000 / $FA_CPU_US" "$FA_CPU_US")"
    datum c.fastapi.rps "$FA_RPS"
    datum c.fastapi.cpu_us "$FA_CPU_US"
    if [ "$FA_BAD" != 0 ]; then
      CHECKS+=("WARN|c. FastAPI twin /cpu: only 2xx|$FA_BAD non-2xx or socket errors")
    fi
  fi
fi
if [ -n "$FA_PID" ]; then
  stop "$FA_PID"
  FA_PID=
fi

# --- d. the reactor stays responsive ---------------------------------------------------------
# While both workers are busy with /cpu?ms=20 (a second wrk, 8 connections), /plaintext is still
# answered on the reactor: its p99 should stay near the idle figure. For contrast, the same burn
# with mode=inline runs ON the reactor, and every /plaintext waits behind it (the blocking
# anti-pattern: what a sync call inside `async def` does to uvicorn).
if want d; then
  section "d. GET /plaintext p99 (wrk -t1 -c16 --latency -d${DUR}s), idle and with the pool saturated"
  # d_datum STATE: the run's percentiles in ms and req/s, for the report.
  d_datum() {
    datum "d.$1.p50" "$(to_ms "$W_P50")"
    datum "d.$1.p75" "$(to_ms "$W_P75")"
    datum "d.$1.p90" "$(to_ms "$W_P90")"
    datum "d.$1.p99" "$(to_ms "$W_P99")"
    datum "d.$1.rps" "$W_RPS"
  }
  run_wrk d-idle "$MAIN_PID" -t1 -c16 -d"${DUR}s" --latency "$MAIN_URL/plaintext"
  D_IDLE_P50=$W_P50 D_IDLE_P99=$W_P99 D_IDLE_RPS=$W_RPS
  d_datum idle
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
  d_datum pool
  datum d.pool.cpu_rps "$D_BG_RPS"
  d_loaded d-inline "/cpu?ms=20&mode=inline"
  D_INL_P50=$W_P50 D_INL_P99=$W_P99 D_INL_RPS=$W_RPS D_INL_BG=$D_BG_RPS
  d_datum inline
  datum d.inline.cpu_rps "$D_BG_RPS"
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
  datum e.ok "${E_OK:-0}"
  datum e.wall_s "${E_WALL:-}"
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
  datum f.evloop.rps "$F_RPS"
  datum f.evloop.cpu_us "$F_CPU"
  datum f.nginx.rps "$NF_RPS"
  datum f.nginx.cpu_us "$NF_CPU"
  datum f.evloop.keepalive "$F_KA"
  datum f.n "$AB_N"
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
  datum g.n "$IDLE_N"
  datum g.evloop.kb_per_conn "$EG_PER"
  datum g.nginx.kb_per_conn "$NG_PER"
  datum g.evloop.new_client "$EG_CURL"
  datum g.nginx.new_client "$NG_CURL"
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
  datum h.lost "${H_LOST:-}"
  datum h.exit "$H_EXIT"
  datum h.answered "${H_ANSWERED:-}"
  datum h.sent "${H_SENT:-}"
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
  ensure_clip
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
  datum i.snr_ms "$I_SNR_MS"
  datum i.speaker_ms "$I_SPK_MS"
  datum i.analyze_ms "$I_AN_MS"
  datum i.snr_rps "$I_SNR_RPS"
  datum i.speaker_rps "$I_SPK_RPS"
  datum i.analyze_rps "$I_AN_RPS"
  datum i.plaintext_p99_ms "$(to_ms "$I_P99")"
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
    datum "k.$mode.wall_ms" "$(kr "$mode" wall_ms)"
    datum "k.$mode.ideal_ms" "$ideal"
    datum "k.$mode.probe_p99_ms" "$(kr "$mode" p99_ms)"
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
  datum k.probe_idle_p99_ms "$(kr idle p99_ms)"
  datum k.fanout.rps "$KT_RPS"
  datum k.fanout.calls_per_s "$KT_CALLS"
  datum k.fanout.cpu_us_per_call "$KT_CPU"
  datum k.fanout.reuse "$KT_REUSE"
  check "$([ "$kt_reqs" -gt 0 ] && [ "$kt_non2xx" = 0 ] && [ "$kt_errs" = 0 ] && echo 1 || echo 0)" \
    "k. wrk /fanout?n=4: only 2xx, no socket errors" \
    "$kt_reqs requests, $kt_non2xx non-2xx, $kt_errs socket errors"
  if [ -z "${KT_C:-}" ] || [ "$KT_EXIT" != 0 ] || [ "${KT_F:-0}" != 0 ]; then
    CHECKS+=("WARN|k. drain after the /fanout run: exit 0, no call failed|exit status $KT_EXIT, ${KT_F:-?} calls failed")
  fi
fi

# --- l. processes or threads -----------------------------------------------------------------
# The same two workers for CPU-heavy jobs, arranged two ways: P is --workers 2 --pool 1 (a
# supervisor and two reactor processes on its one shared socket, one worker thread each), T is
# --workers 1 --pool 2 (one reactor, two worker threads). Both run at once, each idle while the
# other is measured; each workload runs L_ROUNDS rounds of L_ROUND_S seconds per config, the
# order swapped every round (P T, T P, P T), the rounds summed as in a. p99 is the median of the
# rounds' p99s. Server CPU covers all of P's processes (the supervisor included, which idles).
# P's spread over its processes comes from a /metrics scrape before each of its rounds and one
# after the last. wrk opens its connections at once when it starts and keeps them alive, so the
# spread is how those connections fell to the two processes, drawn anew each round.
#   plaintext   wrk -t2 -c64 /plaintext: only the reactor works; P has two reactors for 2 cores
#   pipelined   the same, 16 deep (scripts/pipeline.lua)
#   cpu         wrk -t2 -c8 /cpu?ms=5: 2 workers either way, so the ideal is 400 req/s for both
#   audio       wrk -t2 -c8 POST /snr-detect of a 10 s WAV (scripts/post_wav.lua)
if want l; then
  section "l. processes or threads: P = --workers 2 --pool 1, T = --workers 1 --pool 2; $L_ROUNDS alternating rounds of ${L_ROUND_S}s per workload ($L_WORKLOADS)"
  ensure_clip
  start_workers l-procs --workers 2 --pool 1
  LP_PID=$EV_PID LP_PIDS=$EV_PIDS LP_URL=$EV_URL
  start_workers l-threads --workers 1 --pool 2
  LT_PID=$EV_PID LT_URL=$EV_URL
  echo "  P: supervisor $LP_PID, processes $(children "$LP_PID" | xargs); T: pid $LT_PID"
  # l_pair NAME LABEL ROUTES WRK-ARGS...: workload NAME on P and on T, "{}/path" standing for the
  # server's URL; ROUTES (a regular expression) picks the requests P's spread counts, from a
  # scrape before each of P's rounds and one after the last. Sets LP_BAD, LT_BAD (non-2xx and
  # socket errors), LP_REQS, LT_REQS (responses wrk counted) and the spread over all rounds.
  l_pair() {
    local name=$1 label=$2 routes=$3 arg round cfg order p_args=() t_args=()
    local p_reqs=0 p_secs=0 p_ticks=0 p_bad=0 p_p99=() t_reqs=0 t_secs=0 t_ticks=0 t_bad=0 t_p99=()
    local p_rps t_rps p_cpu t_cpu p_min p_max p_med t_min t_max t_med p99_row p99_note
    local p_round_rps=() t_round_rps=() splits=''
    shift 3
    for arg in "$@"; do
      p_args+=("${arg/#\{\}/$LP_URL}")
      t_args+=("${arg/#\{\}/$LT_URL}")
    done
    for round in $(seq "$L_ROUNDS"); do
      order="p t"
      if [ $((round % 2)) = 0 ]; then order="t p"; fi
      for cfg in $order; do
        if [ "$cfg" = p ]; then
          snap lp "$LP_URL" "$WORK/snap-l-$name-$((round - 1)).txt"
          run_wrk "l-$name-procs-$round" "$LP_PIDS" -d"${L_ROUND_S}s" --latency "${p_args[@]}"
          loaded lp
          p_reqs=$((p_reqs + W_REQS)) p_ticks=$((p_ticks + W_TICKS)) p_bad=$((p_bad + W_NON2XX + W_ERRS))
          p_secs=$(calc "%.2f" "$p_secs + $W_SECS" 1)
          p_p99+=("$(to_ms "$W_P99")")
          p_round_rps+=("$W_RPS")
        else
          run_wrk "l-$name-threads-$round" "$LT_PID" -d"${L_ROUND_S}s" --latency "${t_args[@]}"
          t_reqs=$((t_reqs + W_REQS)) t_ticks=$((t_ticks + W_TICKS)) t_bad=$((t_bad + W_NON2XX + W_ERRS))
          t_secs=$(calc "%.2f" "$t_secs + $W_SECS" 1)
          t_p99+=("$(to_ms "$W_P99")")
          t_round_rps+=("$W_RPS")
        fi
      done
    done
    snap lp "$LP_URL" "$WORK/snap-l-$name-$L_ROUNDS.txt"
    for round in $(seq "$L_ROUNDS"); do
      spread "$WORK/snap-l-$name-$((round - 1)).txt" "$WORK/snap-l-$name-$round.txt" "$routes"
      splits+="${splits:+, }$SPREAD_SHARES"
      printf '  %-10s round %s: P %7s req/s, p99 %s ms, by process %s (%s); T %7s req/s, p99 %s ms\n' \
        "$name" "$round" "${p_round_rps[round - 1]}" "${p_p99[round - 1]}" "$SPREAD_SHARES" \
        "$SPREAD_COUNTS" "${t_round_rps[round - 1]}" "${t_p99[round - 1]}"
    done
    spread "$WORK/snap-l-$name-0.txt" "$WORK/snap-l-$name-$L_ROUNDS.txt" "$routes"
    p_rps=$(calc "%.0f" "$p_reqs / $p_secs" "$p_secs")
    t_rps=$(calc "%.0f" "$t_reqs / $t_secs" "$t_secs")
    p_cpu=$(calc "%.2f" "$p_ticks * 1000000 / $CLK_TCK / $p_reqs" "$p_reqs")
    t_cpu=$(calc "%.2f" "$t_ticks * 1000000 / $CLK_TCK / $t_reqs" "$t_reqs")
    read -r _ p_min p_max p_med <<<"$(stats "${p_p99[@]}")"
    read -r _ t_min t_max t_med <<<"$(stats "${t_p99[@]}")"
    p99_row="$p_med / $t_med" p99_note="P/T $(ratio "$p_med" "$t_med"); median of $L_ROUNDS rounds, P $p_min-$p_max, T $t_min-$t_max"
    if [ "$name" = pipelined ]; then
      # wrk times a pipelined batch, not each request, and its percentiles of such runs are
      # wrong (a p99 of 0.00us next to a p90 of 3 ms): no p99 here.
      p99_row="n/a" p99_note="wrk's percentiles of pipelined runs are not meaningful"
    fi
    printf '  %-10s P %7s req/s, %s us CPU/request, %s errors; T %7s req/s, %s us CPU/request, %s errors\n' \
      "$name" "$p_rps" "$p_cpu" "$p_bad" "$t_rps" "$t_cpu" "$t_bad"
    printf '  %-10s P/T %s req/s, %s CPU/request; p99 ms P / T %s (%s); P by process %s (%s; servers counted %s, wrk %s)\n' \
      "" "$(ratio "$p_rps" "$t_rps")" "$(ratio "$p_cpu" "$t_cpu")" "$p99_row" "$p99_note" \
      "$SPREAD_SHARES" "$SPREAD_COUNTS" "$SPREAD_SUM" "$p_reqs"
    row l "$label: req/s P / T" "$p_rps / $t_rps" "" "P/T $(ratio "$p_rps" "$t_rps")"
    row l "  p99 ms P / T" "$p99_row" "" "$p99_note"
    row l "  CPU us/request P / T" "$p_cpu / $t_cpu" "" "P/T $(ratio "$p_cpu" "$t_cpu")"
    row l "  P's requests by process" "$SPREAD_SHARES" "" "rounds $splits; $SPREAD_COUNTS"
    LP_BAD=$p_bad LT_BAD=$t_bad LP_REQS=$p_reqs LT_REQS=$t_reqs
    datum "l.$name.procs.rps" "$p_rps"
    datum "l.$name.threads.rps" "$t_rps"
    datum "l.$name.procs.cpu_us" "$p_cpu"
    datum "l.$name.threads.cpu_us" "$t_cpu"
  }
  for workload in $L_WORKLOADS; do
    case $workload in
      plaintext)
        l_pair plaintext "plaintext -t2 -c64" '^/plaintext$' -t2 -c64 "{}/plaintext"
        check "$([ "$LP_REQS" -gt 0 ] && [ "$LT_REQS" -gt 0 ] && [ "$LP_BAD" = 0 ] && [ "$LT_BAD" = 0 ] && echo 1 || echo 0)" \
          "l. wrk /plaintext, --workers 2 and 1: only 2xx" \
          "P $LP_REQS requests, $LP_BAD errors; T $LT_REQS, $LT_BAD"
        if [ "$SPREAD_N" -lt 2 ]; then
          CHECKS+=("WARN|l. /plaintext: both of P's processes served|$SPREAD_COUNTS")
        fi
        ;;
      pipelined) l_pair pipelined "pipelined x16 -t2 -c64" '^/plaintext$' -t2 -c64 -s "$SCRIPTS/pipeline.lua" "{}/plaintext" -- 16 ;;
      cpu) l_pair cpu "/cpu?ms=5 -t2 -c8" '^/cpu$' -t2 -c8 "{}/cpu?ms=5" ;;
      audio) l_pair audio "/snr-detect 10 s WAV -c8" '^/snr-detect$' -t2 -c8 --timeout 10s -s "$SCRIPTS/post_wav.lua" "{}/snr-detect" -- "$CLIP" ;;
    esac
    if [ "$workload" != plaintext ] && [ $((LP_BAD + LT_BAD)) != 0 ]; then
      CHECKS+=("WARN|l. $workload: only 2xx, no socket errors|P $LP_BAD, T $LT_BAD non-2xx or socket errors")
    fi
  done
  stop "$LP_PID"
  stop "$LT_PID"
fi

# --- m. memory -------------------------------------------------------------------------------
# What a second process costs: VmRSS (/proc/PID/status) of P (the supervisor and both processes,
# from /proc/SUP/task/SUP/children) and of T, at three points: 0.5 s after they are ready (idle);
# after M_SEQ POSTs of the 10 s WAV to each audio endpoint, one at a time (each process builds its
# own audio model, FFT plans and filter banks, on first use, so P holds two, plus what one job
# leaves allocated); and after M_S seconds of wrk -t2 -c8 on each endpoint (8 uploads in flight:
# bodies, decoded samples and the allocator's arenas of every thread that ran a job, which the
# allocator keeps). PSS (/proc/PID/smaps_rollup) counts a page that n processes share as 1/n in
# each, so the binary's text, mapped by all three of P's processes, counts once in P's sum. P's
# scrapes show that both processes served audio in each phase (one that served none has no model).
if want m; then
  section "m. memory: P = --workers 2 --pool 1 (supervisor + 2 processes), T = --workers 1 --pool 2; idle, after $M_SEQ uploads one at a time to each audio endpoint, after ${M_S}s of wrk -t2 -c8 on each"
  ensure_clip
  declare -A M_RSS=() M_PSS=() M_RSS_EACH=()
  M_PHASES="idle seq conc"
  for cfg in procs threads; do
    if [ "$cfg" = procs ]; then
      start_workers m-procs --workers 2 --pool 1
    else
      start_workers m-threads --workers 1 --pool 2
    fi
    M_PID=$EV_PID M_URL=$EV_URL
    m_bad=0
    for phase in $M_PHASES; do
      case $phase in
        idle) sleep 0.5 ;;
        seq)
          for endpoint in snr-detect speaker-count analyze; do
            for _i in $(seq "$M_SEQ"); do
              code=$(curl -s -o /dev/null --max-time 30 -w '%{http_code}' --data-binary @"$CLIP" "$M_URL/$endpoint" || true)
              [ "$code" = 200 ] || m_bad=$((m_bad + 1))
            done
          done
          ;;
        conc)
          for endpoint in snr-detect speaker-count analyze; do
            run_wrk "m-$cfg-$endpoint" "$EV_PIDS" -t2 -c8 -d"${M_S}s" --timeout 10s -s "$SCRIPTS/post_wav.lua" \
              "$M_URL/$endpoint" -- "$CLIP"
            m_bad=$((m_bad + W_NON2XX + W_ERRS))
          done
          ;;
      esac
      loaded "m-$cfg"
      snap "m-$cfg" "$M_URL" "$WORK/snap-m-$cfg-$phase.txt"
      # shellcheck disable=SC2046,SC2086 # a list; read again, in case a process was replaced
      mem_of $M_PID $(children "$M_PID")
      M_RSS[$cfg-$phase]=$MEM_RSS M_PSS[$cfg-$phase]=$MEM_PSS M_RSS_EACH[$cfg-$phase]=$MEM_RSS_EACH
      datum "m.$cfg.$phase.rss_kb" "$MEM_RSS"
      datum "m.$cfg.$phase.pss_kb" "$MEM_PSS"
      served=
      if [ "$phase" != idle ]; then
        spread "$WORK/snap-m-$cfg-$prev_phase.txt" "$WORK/snap-m-$cfg-$phase.txt" '^/(snr-detect|speaker-count|analyze)$'
        served="; $SPREAD_SUM uploads answered ($SPREAD_COUNTS)"
        if [ "$cfg" = procs ] && [ "$SPREAD_N" -lt 2 ]; then
          CHECKS+=("WARN|m. $phase: both of P's processes served audio|$SPREAD_COUNTS")
        fi
      fi
      printf '  %-7s %-4s VmRSS %6s KB, PSS %6s KB (RSS/PSS of each: %s)%s\n' "$cfg" "$phase" \
        "$MEM_RSS" "$MEM_PSS" "$MEM_EACH" "$served"
      prev_phase=$phase
    done
    if [ "$m_bad" != 0 ]; then
      CHECKS+=("WARN|m. $cfg: audio uploads only 2xx|$m_bad non-2xx or socket errors")
    fi
    stop "$M_PID"
  done
  for phase in $M_PHASES; do
    case $phase in
      idle) what="idle" ;;
      seq) what="after one at a time" ;;
      conc) what="after 8 at a time" ;;
    esac
    row m "VmRSS KB $what: P / T" "${M_RSS[procs-$phase]} / ${M_RSS[threads-$phase]}" "" \
      "P/T $(ratio "${M_RSS[procs-$phase]}" "${M_RSS[threads-$phase]}"); P = ${M_RSS_EACH[procs-$phase]} (supervisor first)"
    row m "  PSS KB: P / T" "${M_PSS[procs-$phase]} / ${M_PSS[threads-$phase]}" "" \
      "P/T $(ratio "${M_PSS[procs-$phase]}" "${M_PSS[threads-$phase]}")"
  done
fi

# --- n. one shared socket or one each --------------------------------------------------------
# P (--workers 2 --pool 1) twice: S with the supervisor's one listening socket, shared by both
# processes (a connection goes to whichever reactor accepts it first), R with --reuse-port (each
# process its own SO_REUSEPORT socket; the kernel hashes each new connection to one of them,
# whether that process is accepting or not).
#   balance  wrk -t2 -c64 -dN_S /plaintext, N_ROUNDS rounds on each (S then R): each process's
#            share of the requests, and of the connections it accepted (keep-alive: how the 64
#            connections split when wrk opened them decides the shares).
#   stall    GET /cpu?ms=STALL_MS&mode=inline burns on one process's reactor thread, which then
#            accepts and answers nothing; 0.3 s later ab -c8 -n STALL_AB_N /json, a new connection
#            per request. With S the other process takes every connection; with R the kernel
#            queues about half of them for the stalled process, where they wait for it.
if want n; then
  section "n. --workers 2 --pool 1, one shared socket (S) or --reuse-port (R): wrk -t2 -c64 -d${N_S}s /plaintext x $N_ROUNDS; then one process stalled ${STALL_MS} ms under ab -c8 -n $STALL_AB_N /json"
  start_workers n-shared --workers 2 --pool 1
  declare -A N_SUP=([shared]=$EV_PID) N_PIDS=([shared]=$EV_PIDS) N_URL=([shared]=$EV_URL)
  start_workers n-reuse --workers 2 --pool 1 --reuse-port
  N_SUP[reuse]=$EV_PID N_PIDS[reuse]=$EV_PIDS N_URL[reuse]=$EV_URL
  declare -A N_SHARES=() N_CONNS=() N_RPS=() N_BAD=()
  for mode in shared reuse; do
    snap "$mode" "${N_URL[$mode]}" "$WORK/snap-n-$mode-0.txt"
    N_BAD[$mode]=0
  done
  for round in $(seq "$N_ROUNDS"); do
    for mode in shared reuse; do
      [ "$round" = 1 ] || snap "$mode" "${N_URL[$mode]}" "$WORK/snap-n-$mode-$((round - 1)).txt"
      run_wrk "n-$mode-$round" "${N_PIDS[$mode]}" -t2 -c64 -d"${N_S}s" "${N_URL[$mode]}/plaintext"
      loaded "$mode"
      N_RPS[$mode]+="${N_RPS[$mode]:+, }$W_RPS"
      N_BAD[$mode]=$((N_BAD[$mode] + W_NON2XX + W_ERRS))
    done
  done
  for mode in shared reuse; do
    snap "$mode" "${N_URL[$mode]}" "$WORK/snap-n-$mode-$N_ROUNDS.txt"
    for round in $(seq "$N_ROUNDS"); do
      spread "$WORK/snap-n-$mode-$((round - 1)).txt" "$WORK/snap-n-$mode-$round.txt" '^/plaintext$'
      N_SHARES[$mode]+="${N_SHARES[$mode]:+, }$SPREAD_SHARES"
      req_counts=$SPREAD_COUNTS
      spread "$WORK/snap-n-$mode-$((round - 1)).txt" "$WORK/snap-n-$mode-$round.txt" '^#accepted$'
      N_CONNS[$mode]+="${N_CONNS[$mode]:+, }$SPREAD_SHARES"
      printf '  %-6s round %s: requests %s (%s), connections accepted %s (%s)\n' "$mode" "$round" \
        "${N_SHARES[$mode]##*, }" "$req_counts" "$SPREAD_SHARES" "$SPREAD_COUNTS"
    done
    if [ "${N_BAD[$mode]}" != 0 ]; then
      CHECKS+=("WARN|n. $mode: wrk /plaintext only 2xx|${N_BAD[$mode]} non-2xx or socket errors")
    fi
  done
  row n "wrk -c64 shares, one shared socket" "${N_SHARES[shared]}" "" \
    "by round, largest first; connections ${N_CONNS[shared]}; req/s ${N_RPS[shared]}"
  row n "  --reuse-port" "${N_SHARES[reuse]}" "" \
    "connections ${N_CONNS[reuse]}; req/s ${N_RPS[reuse]}"

  # The stall: one curl that blocks a reactor, then ab while it does.
  for round in $(seq "$STALL_ROUNDS"); do
    for mode in shared reuse; do
      url=${N_URL[$mode]} tag=n-stall-$mode-$round
      snap "$mode" "$url" "$WORK/snap-$tag-0.txt"
      curl -s -o /dev/null --max-time $((STALL_MS / 1000 + 30)) -w '%{http_code} %{time_total}' \
        "$url/cpu?ms=$STALL_MS&mode=inline" >"$WORK/$tag-curl.txt" 2>&1 &
      stall_curl=$!
      PIDS+=("$stall_curl")
      sleep 0.3
      ab -c8 -n "$STALL_AB_N" "$url/json" >"$WORK/ab-$tag.txt" 2>&1 || echo "(ab exited with status $?)" >>"$WORK/ab-$tag.txt"
      wait_exit "$stall_curl" $((STALL_MS / 1000 + 30))
      loaded "$mode"
      snap "$mode" "$url" "$WORK/snap-$tag-1.txt"
      read -r s_took s_done s_failed s_p99 s_max < <(awk '
        /^Time taken for tests:/ { took = $5 }
        /^Complete requests:/ { done = $3 }
        /^Failed requests:/ { failed = $3 }
        $1 == "99%" { p99 = $2 }
        $1 == "100%" { max = $2 }
        END { printf "%s %d %s %s %s\n", (took == "" ? "?" : took), done, (failed == "" ? "?" : failed),
          (p99 == "" ? "?" : p99), (max == "" ? "?" : max) }' "$WORK/ab-$tag.txt")
      spread "$WORK/snap-$tag-0.txt" "$WORK/snap-$tag-1.txt" '^/cpu$'
      stalled=$(awk 'NR == 1 { sub(/^pid /, "", $0); sub(/:.*/, "", $0); print }' <<<"$SPREAD_COUNTS")
      spread "$WORK/snap-$tag-0.txt" "$WORK/snap-$tag-1.txt" '^/json$'
      on_stalled=${SPREAD_OF[$stalled]:-0}
      printf '  %-6s stall %s: ab %s s, %s complete, %s failed, p99 %s ms, longest %s ms; the stalled process (pid %s) answered %s of them (%s); the stall: %s\n' \
        "$mode" "$round" "$s_took" "$s_done" "$s_failed" "$s_p99" "$s_max" "$stalled" "$on_stalled" \
        "$SPREAD_COUNTS" "$(cat "$WORK/$tag-curl.txt")"
      label="stall ${STALL_MS} ms, ab -c8 -n $STALL_AB_N: $mode"
      if [ "$mode" = reuse ]; then label="  --reuse-port"; elif [ "$round" -gt 1 ]; then label="stall again: shared"; fi
      if [ "$mode" = shared ]; then label=${label/: shared/: one shared socket}; fi
      row n "$label" "$s_took s" "" \
        "$s_failed failed of $s_done; stalled process answered $on_stalled; p99 $s_p99 ms, longest $s_max ms"
      if [ "$s_failed" != 0 ] || [ "$s_done" != "$STALL_AB_N" ]; then
        CHECKS+=("WARN|n. $mode stall: ab completed all, none failed|$s_done complete, $s_failed failed")
      fi
    done
  done
  stop "${N_SUP[shared]}"
  stop "${N_SUP[reuse]}"
fi

# --- o. the cost of counting -----------------------------------------------------------------
# There is no switch that turns the metrics off, so "off" is the last revision before they
# existed, 81afeea: it differs from this build by the metrics and by --workers, which a single
# process (the default) does not use. It is built once, from `git archive`, with its own target
# directory in LOAD_BASELINE_DIR; only the binary is kept there, for later runs. Both serve --pool 2
# at once; wrk -t1 -c64 /plaintext as in a, O_ROUNDS rounds of O_ROUND_S seconds each, the order
# swapped every round; each round's req/s and server CPU per request, then the ratio of the
# means and the range of the rounds' own on/off ratios (the spread a 2-core box gives).
if want o; then
  O_REV=81afeea
  section "o. metrics on (this build) vs off ($O_REV): wrk -t1 -c64 /plaintext, --pool 2, $O_ROUNDS alternating rounds of ${O_ROUND_S}s each"
  O_DIR=${LOAD_BASELINE_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/load-baseline}/$O_REV
  O_BIN=$O_DIR/evloop
  O_SKIP=
  if [ ! -x "$O_BIN" ]; then
    if ! command -v git >/dev/null; then
      O_SKIP="git is not installed"
    elif ! git -C "$ROOT" rev-parse -q --verify "$O_REV^{commit}" >/dev/null 2>&1; then
      O_SKIP="commit $O_REV is not in this clone (shallow? git fetch --unshallow)"
    elif ! command -v "${CARGO:-cargo}" >/dev/null; then
      O_SKIP="cargo is not installed"
    else
      echo "  building $O_REV once into $O_DIR (kept for later runs; a few minutes)"
      rm -rf "$O_DIR/src"
      mkdir -p "$O_DIR/src"
      if git -C "$ROOT" archive "$O_REV" | tar -x -C "$O_DIR/src" &&
        (cd "$O_DIR/src" && CARGO_TARGET_DIR=$O_DIR/target "${CARGO:-cargo}" build --release --locked) \
          >"$O_DIR/build.log" 2>&1; then
        cp "$O_DIR/target/release/evloop" "$O_BIN.tmp"
        mv -f "$O_BIN.tmp" "$O_BIN"
        rm -rf "$O_DIR/src" "$O_DIR/target" # only the binary is kept
      else
        O_SKIP="building $O_REV failed (see $O_DIR/build.log)"
      fi
    fi
  fi
  if [ -n "$O_SKIP" ]; then
    echo "  skipped: $O_SKIP"
    row o "metrics on vs off" "skipped" "" "$O_SKIP"
    CHECKS+=("WARN|o. metrics on vs off measured|skipped: $O_SKIP")
  else
    start_workers o-on --pool 2
    O_ON_PID=$EV_PID O_ON_URL=$EV_URL
    O_EVLOOP=$EVLOOP
    EVLOOP=$O_BIN EV_READY_WORD=listening
    start_workers o-off --pool 2
    EVLOOP=$O_EVLOOP EV_READY_WORD=ready
    O_OFF_PID=$EV_PID O_OFF_URL=$EV_URL
    O_ON_RPS=() O_OFF_RPS=() O_ON_CPU=() O_OFF_CPU=() O_R_RPS=() O_R_CPU=() O_BAD=0
    for round in $(seq "$O_ROUNDS"); do
      order="on off"
      if [ $((round % 2)) = 0 ]; then order="off on"; fi
      for which in $order; do
        if [ "$which" = on ]; then pid=$O_ON_PID url=$O_ON_URL; else pid=$O_OFF_PID url=$O_OFF_URL; fi
        run_wrk "o-$which-$round" "$pid" -t1 -c64 -d"${O_ROUND_S}s" "$url/plaintext"
        O_BAD=$((O_BAD + W_NON2XX + W_ERRS))
        cpu=$(calc "%.3f" "$W_TICKS * 1000000 / $CLK_TCK / $W_REQS" "$W_REQS")
        if [ "$which" = on ]; then O_ON_RPS+=("$W_RPS") O_ON_CPU+=("$cpu"); else O_OFF_RPS+=("$W_RPS") O_OFF_CPU+=("$cpu"); fi
      done
      i=$((round - 1))
      O_R_RPS+=("$(calc "%.3f" "${O_ON_RPS[i]} / ${O_OFF_RPS[i]}" "${O_OFF_RPS[i]}")")
      O_R_CPU+=("$(calc "%.3f" "${O_ON_CPU[i]} / ${O_OFF_CPU[i]}" "${O_OFF_CPU[i]}")")
      printf '  round %s (%s first): on %7s req/s %6s us CPU/request; off %7s req/s %6s us; on/off %s, %s\n' \
        "$round" "${order%% *}" "${O_ON_RPS[i]}" "${O_ON_CPU[i]}" "${O_OFF_RPS[i]}" "${O_OFF_CPU[i]}" \
        "${O_R_RPS[i]}" "${O_R_CPU[i]}"
    done
    stop "$O_ON_PID"
    stop "$O_OFF_PID"
    read -r on_rps on_rps_min on_rps_max _ <<<"$(stats "${O_ON_RPS[@]}")"
    read -r off_rps off_rps_min off_rps_max _ <<<"$(stats "${O_OFF_RPS[@]}")"
    read -r on_cpu on_cpu_min on_cpu_max _ <<<"$(stats "${O_ON_CPU[@]}")"
    read -r off_cpu off_cpu_min off_cpu_max _ <<<"$(stats "${O_OFF_CPU[@]}")"
    read -r _ r_rps_min r_rps_max r_rps_med <<<"$(stats "${O_R_RPS[@]}")"
    read -r _ r_cpu_min r_cpu_max r_cpu_med <<<"$(stats "${O_R_CPU[@]}")"
    on_rps=$(calc "%.0f" "$on_rps" 1) off_rps=$(calc "%.0f" "$off_rps" 1)
    on_cpu=$(calc "%.2f" "$on_cpu" 1) off_cpu=$(calc "%.2f" "$off_cpu" 1)
    printf '  mean: on %s req/s, %s us CPU/request; off %s req/s, %s us; on/off %s req/s (rounds %s to %s), %s CPU/request (rounds %s to %s)\n' \
      "$on_rps" "$on_cpu" "$off_rps" "$off_cpu" "$(ratio "$on_rps" "$off_rps")" "$r_rps_min" "$r_rps_max" \
      "$(ratio "$on_cpu" "$off_cpu")" "$r_cpu_min" "$r_cpu_max"
    datum o.on.rps "$on_rps"
    datum o.off.rps "$off_rps"
    datum o.on.cpu_us "$on_cpu"
    datum o.off.cpu_us "$off_cpu"
    row o "plaintext req/s: metrics on / off" "$on_rps / $off_rps" "" \
      "on/off $(ratio "$on_rps" "$off_rps"); rounds' ratios $r_rps_min-$r_rps_max (median $r_rps_med); on $on_rps_min-$on_rps_max, off $off_rps_min-$off_rps_max"
    row o "  CPU us/request: on / off" "$on_cpu / $off_cpu" "" \
      "on/off $(ratio "$on_cpu" "$off_cpu"); rounds' ratios $r_cpu_min-$r_cpu_max (median $r_cpu_med); on $on_cpu_min-$on_cpu_max, off $off_cpu_min-$off_cpu_max"
    if [ "$O_BAD" != 0 ]; then
      CHECKS+=("WARN|o. wrk /plaintext, on and off: only 2xx|$O_BAD non-2xx or socket errors")
    fi
  fi
fi

# --- p. pool scaling -------------------------------------------------------------------------
# How many worker threads a CPU-bound pool wants. The job: POST /speaker-count of a 5 s WAV, a
# fixed amount of arithmetic (a few ms). A worker makes progress only while it holds a core, so
# the most a pool can do is --pool 1's req/s times min(pool, cores): past the core count, more
# threads take turns on the same cores (and take them from the reactor and from wrk) and add
# nothing. A server per size, all started at once (an idle one costs nothing), wrk -t1 -c16
# (enough to keep 8 workers busy) on each in P_ROUNDS rounds of P_S seconds, the order reversed
# every round (1 2 4 8, 8 4 2 1), the rounds summed as in a: a burst of other work then weighs
# on every size, not on one. Meanwhile scripts/fanout_probe.py sends a GET /plaintext every 5 ms,
# open loop, each timed from when it was due: what the reactor's clients wait while the workers
# compete with it for the cores (the worse of the rounds' p99s).
# Then, as a warning, GET /cpu?ms=5 on each server for P_CPU_S seconds: /cpu burns 5 ms of wall
# time, not a fixed amount of work, so a thread that shares its core still finishes after 5 ms,
# having done less: its req/s grows with the pool as pool x 200 while the CPU per request falls.
# A benchmark of a time-based burn cannot show what a pool's size does to real work.
if want p; then
  section "p. POST /speaker-count of a 5 s WAV, wrk -t1 -c16 on --pool 1, 2, 4, 8 (a server each), $P_ROUNDS alternating rounds of ${P_S}s, /plaintext every 5 ms meanwhile; then /cpu?ms=5 for ${P_CPU_S}s each"
  P_T0=$EPOCHREALTIME
  P_CORES=$(nproc)
  P_BAD=0 P_PROBE_BAD=0
  P_CLIP=$WORK/clip5s.wav
  python3 "$SCRIPTS/make_clip.py" --seconds 5 --out "$P_CLIP" \
    "$ROOT/tests/fixtures/audio/spk_k4_r0_clean.wav" "$ROOT/tests/fixtures/audio/spk_k2_r0_clean.wav"
  declare -A P_PID=() P_URL=() P_REQS=() P_SECS_OF=() P_TICKS=() P_P99=()
  for size in 1 2 4 8; do
    start_evloop "p-$size" --pool "$size"
    P_PID[$size]=$EV_PID P_URL[$size]=http://$HOST:$EV_PORT
    P_REQS[$size]=0 P_SECS_OF[$size]=0 P_TICKS[$size]=0 P_P99[$size]=
    # A few jobs first: the audio model is built on first use, not in a timed run.
    for _i in 1 2 3; do
      curl -s -o /dev/null --max-time 30 --data-binary @"$P_CLIP" "${P_URL[$size]}/speaker-count" || true
    done
  done
  for round in $(seq "$P_ROUNDS"); do
    order="1 2 4 8"
    if [ $((round % 2)) = 0 ]; then order="8 4 2 1"; fi
    for size in $order; do
      probe_out=$WORK/p-probe-$size-$round.txt
      python3 "$SCRIPTS/fanout_probe.py" --host "$HOST" --port "${P_URL[$size]##*:}" \
        --idle-s "$(calc "%.1f" "$P_S - 0.8" 1)" --lead-ms 500 --interval-ms 5 >"$probe_out" 2>&1 &
      p_probe=$!
      PIDS+=("$p_probe")
      run_wrk "p-$size-$round" "${P_PID[$size]}" -t1 -c16 -d"${P_S}s" --timeout 10s -s "$SCRIPTS/post_wav.lua" \
        "${P_URL[$size]}/speaker-count" -- "$P_CLIP"
      wait_exit "$p_probe" 30
      if [ "$EXIT_STATUS" != 0 ]; then P_PROBE_BAD=$((P_PROBE_BAD + 1)); fi
      P_BAD=$((P_BAD + W_NON2XX + W_ERRS))
      P_REQS[$size]=$((P_REQS[$size] + W_REQS)) P_TICKS[$size]=$((P_TICKS[$size] + W_TICKS))
      P_SECS_OF[$size]=$(calc "%.2f" "${P_SECS_OF[$size]} + $W_SECS" 1)
      P_P99[$size]=$(awk -v a="${P_P99[$size]}" -v b="$(result "$probe_out" p99_ms)" \
        'BEGIN { if (b !~ /^[0-9.]+$/) print a; else if (a == "" || b + 0 > a + 0) print b; else print a }')
      printf '  round %s, --pool %s: %s req/s; /plaintext meanwhile p99 %s ms\n' "$round" "$size" "$W_RPS" \
        "$(result "$probe_out" p99_ms)"
    done
  done
  P_ONE=$(calc "%.0f" "${P_REQS[1]} / ${P_SECS_OF[1]}" "${P_SECS_OF[1]}") # one worker's rate
  for size in 1 2 4 8; do
    p_rps=$(calc "%.0f" "${P_REQS[$size]} / ${P_SECS_OF[$size]}" "${P_SECS_OF[$size]}")
    ideal=$(calc "%.0f" "($size < $P_CORES ? $size : $P_CORES) * $P_ONE" 1)
    p_cpu=$(calc "%.0f" "${P_TICKS[$size]} * 1000000 / $CLK_TCK / ${P_REQS[$size]}" "${P_REQS[$size]}")
    # The time-based burn, for contrast (see above).
    run_wrk "p-cpu-$size" "${P_PID[$size]}" -t1 -c16 -d"${P_CPU_S}s" "${P_URL[$size]}/cpu?ms=5"
    P_BAD=$((P_BAD + W_NON2XX + W_ERRS))
    c_cpu=$(calc "%.0f" "$W_TICKS * 1000000 / $CLK_TCK / $W_REQS" "$W_REQS")
    stop "${P_PID[$size]}"
    printf '  --pool %s: %5s req/s = %s of the ideal %s; %s us CPU/request; /plaintext p99 %s ms; /cpu?ms=5 %s req/s, %s us CPU/request\n' \
      "$size" "$p_rps" "$(ratio "$p_rps" "$ideal")" "$ideal" "$p_cpu" "${P_P99[$size]:-?}" "$W_RPS" "$c_cpu"
    row p "/speaker-count 5 s -c16 --pool $size: req/s" "$p_rps" "" \
      "$(ratio "$p_rps" "$ideal") of $ideal; $p_cpu us CPU/request; /plaintext p99 ${P_P99[$size]:-?} ms meanwhile"
    row p "  /cpu?ms=5 (a burn of wall time): req/s" "$W_RPS" "" "$c_cpu us CPU/request"
    datum "p.$size.rps" "$p_rps"
    datum "p.$size.ideal" "$ideal"
    datum "p.$size.cpu_us" "$p_cpu"
    datum "p.$size.p99_ms" "${P_P99[$size]}"
    datum "p.$size.burn_rps" "$W_RPS"
    datum "p.$size.burn_cpu_us" "$c_cpu"
  done
  datum p.cores "$P_CORES"
  datum p.one "$P_ONE"
  datum p.rounds "$P_ROUNDS"
  datum p.round_s "$P_S"
  if [ "$P_PROBE_BAD" != 0 ]; then
    CHECKS+=("WARN|p. /plaintext probe: every answer a 200|$P_PROBE_BAD probe runs lost requests or got other answers")
  fi
  if [ "$P_BAD" != 0 ]; then
    CHECKS+=("WARN|p. every pool size: only 2xx, no socket errors|$P_BAD non-2xx or socket errors")
  fi
  P_SECS=$(calc "%.1f" "$EPOCHREALTIME - $P_T0" 1)
  echo "  (p took $P_SECS s)"
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
if want l || want m || want n || want o; then
  echo "(l to o have no nginx column: the evloop column holds both configurations, in the order the measure names them)"
fi

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

# The report: the summary rows and the checks as they were printed, then bench_report.py. A full
# run of every scenario, with no failed check and nothing skipped (nginx, the FastAPI twin, o's
# baseline), replaces docs/BENCHMARKS.md and docs/bench/; anything less goes to load-report/
# under the build directory, and says why (LOAD_REPORT: wherever it says).
datum meta.load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "$FA_URL" ]; then datum fastapi.secs "$FA_SECS"; fi
if [ -n "${P_SECS:-}" ]; then datum p.secs "$P_SECS"; fi
for line in "${ROWS[@]}"; do datum row "$line"; done
for line in "${CHECKS[@]}"; do datum check "$line"; done
if [ -n "${LOAD_REPORT:-}" ]; then
  REPORT=$LOAD_REPORT
else
  NOT_DOCS=
  if [ "$ALL_SCENARIOS" != 1 ]; then
    NOT_DOCS="not every scenario ran"
  elif [ "$FAILED" != 0 ]; then
    NOT_DOCS="a check failed"
  elif [ "$NG_OK" != 1 ]; then
    NOT_DOCS="nginx did not run"
  elif [ -n "$FA_SKIP" ]; then
    NOT_DOCS="the FastAPI twin did not run"
  elif [ -n "${O_SKIP:-}" ]; then
    NOT_DOCS="o's baseline did not run"
  fi
  if [ -z "$NOT_DOCS" ]; then
    REPORT=$ROOT/docs
  else
    REPORT=${CARGO_TARGET_DIR:-$ROOT/target}/load-report
    [ "$ALL_SCENARIOS" != 1 ] || echo "(the report does not replace docs/: $NOT_DOCS)"
  fi
fi
section "report"
if python3 "$SCRIPTS/bench_report.py" --data "$DATA" --out "$REPORT" >"$WORK/report.txt" 2>&1 &&
  python3 - "$REPORT" <<'PY' >>"$WORK/report.txt" 2>&1; then
# BENCHMARKS.md is there and not empty; every plot it embeds exists; there is at least one plot,
# and every plot in bench/ parses as SVG.
import glob, os, re, sys
import xml.etree.ElementTree as ET
out = sys.argv[1]
md = open(os.path.join(out, "BENCHMARKS.md"), encoding="utf-8").read()
assert md.strip(), "BENCHMARKS.md is empty"
for rel in re.findall(r"\(bench/[^)]+\.svg\)", md):
    assert os.path.exists(os.path.join(out, rel[1:-1])), f"{rel[1:-1]} is embedded but missing"
plots = sorted(glob.glob(os.path.join(out, "bench", "*.svg")))
assert plots, "no plot in bench/"
for path in plots:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg"), f"{path}: root is {root.tag}"
print(f"checked: BENCHMARKS.md and {len(plots)} plots, each well-formed SVG")
PY
  sed 's/^/  /' "$WORK/report.txt"
  echo "  written: $REPORT/BENCHMARKS.md and its plots in $REPORT/bench/"
else
  sed 's/^/  /' "$WORK/report.txt"
  echo "FAIL  the report (scripts/bench_report.py) could not be written or is not well-formed"
  FAILED=1
fi

echo
if [ "$FAILED" = 1 ]; then
  echo "load.sh $MODE: FAILED (a correctness check above)"
  exit 1
fi
echo "load.sh $MODE: passed"
