#!/usr/bin/env bash
# scripts/scheduling.sh [MODE...] — the two figures of docs/SCHEDULING.md for each
# `--worker-priority` mode (default: batch normal low idle), each repeated REPEATS times.
#
#   (a) shared machine: GET /cpu?ms=5 on --pool 2 with 8 connections, once on an otherwise idle
#       machine and once beside two ordinary busy loops (`sh -c 'while :; do :; done'`); the
#       figure is busy req/s ÷ idle req/s. Target: at least 0.5.
#   (b) reactor ahead of its workers: GET /plaintext p99 (16 connections) while a second wrk
#       keeps --pool 2 saturated with GET /cpu?ms=20 (8 connections), no busy loop. Target: at
#       most 2 ms.
#
# Every wrk run uses one client thread (-t1) for DUR seconds. Each line printed is one repeat;
# the table in docs/SCHEDULING.md gives the range over the repeats. The machine may be shared:
# before each figure the script waits (up to QUIET_WAIT seconds) until the CPUs have been at
# least 90 % idle for a second, and prints how busy they were then ("busy%", before (a)/(b))
# and the load average, so a repeat taken beside somebody else's build can be told apart.
#
# Environment: EVLOOP (binary, default ./evloop at the repository root), REPEATS (default 3),
# DUR (seconds per wrk run, default 10), QUIET_WAIT (default 120).

set -euo pipefail

NAME=scheduling.sh
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"

REPEATS=${REPEATS:-3}
DUR=${DUR:-10}
QUIET_WAIT=${QUIET_WAIT:-120}
MODES=("$@")
[ ${#MODES[@]} -gt 0 ] || MODES=(batch normal low idle)
need wrk

# rps FILE: the Requests/sec figure of a wrk output.
rps() {
  awk '/^Requests\/sec:/ { printf "%.1f", $2 }' "$1"
}

# p99_ms FILE: the 99th percentile of a `wrk --latency` output, in milliseconds.
p99_ms() {
  awk '$1 == "99%" {
    v = $2
    if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v) }
    else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }
    printf "%.2f", v
  }' "$1"
}

# cpu_busy_pct: how busy the CPUs were over the next second, from /proc/stat.
cpu_busy_pct() {
  local a b
  a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat)
  sleep 1
  b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat)
  echo "$a $b" | awk '{ busy = $3 - $1; idle = $4 - $2; printf "%d", 100 * busy / (busy + idle + 0.001) }'
}

# wait_quiet: until the CPUs are at least 90 % idle (or QUIET_WAIT seconds passed); sets BUSY.
wait_quiet() {
  local waited=0
  BUSY=$(cpu_busy_pct)
  while [ "$BUSY" -gt 10 ] && [ "$waited" -lt "$QUIET_WAIT" ]; do
    BUSY=$(cpu_busy_pct)
    waited=$((waited + 1))
  done
}

# busy_loops N: start N ordinary busy loops (the "something else on the machine").
busy_loops() {
  local _i
  LOOPS=()
  for _i in $(seq "$1"); do
    sh -c 'while :; do :; done' &
    LOOPS+=("$!")
    PIDS+=("$!")
  done
}

echo "# evloop $("$EVLOOP" --version | awk '{print $2}'), $(nproc) CPUs, kernel $(uname -r)," \
  "user $(id -un), wrk -t1, ${DUR} s per run"
printf '%-7s %3s  %7s %-16s  %9s %9s %6s  %8s %9s\n' \
  mode rep busy% "load (1/5/15)" "idle r/s" "busy r/s" ratio "p99 ms" "cpu r/s"

for mode in "${MODES[@]}"; do
  for rep in $(seq "$REPEATS"); do
    wait_quiet
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    start_evloop "$mode" - --pool 2 --worker-priority "$mode"
    url=http://$HOST:$EV_PORT

    # (a) /cpu throughput, idle machine then beside two busy loops.
    wrk -t1 -c8 -d2s "$url/cpu?ms=5" >/dev/null # warm-up
    wrk -t1 -c8 -d"${DUR}s" "$url/cpu?ms=5" >"$WORK/idle.txt"
    busy_loops 2
    sleep 1
    wrk -t1 -c8 -d"${DUR}s" "$url/cpu?ms=5" >"$WORK/busy.txt"
    for pid in "${LOOPS[@]}"; do
      stop "$pid"
    done
    idle=$(rps "$WORK/idle.txt")
    busy=$(rps "$WORK/busy.txt")
    ratio=$(awk -v a="$busy" -v b="$idle" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')

    # (b) /plaintext p99 while /cpu?ms=20 saturates the pool.
    busy_a=$BUSY
    wait_quiet
    wrk -t1 -c8 -d"$((DUR + 3))s" "$url/cpu?ms=20" >"$WORK/cpu.txt" &
    cpu_wrk=$!
    PIDS+=("$cpu_wrk")
    sleep 1
    wrk --latency -t1 -c16 -d"${DUR}s" "$url/plaintext" >"$WORK/plain.txt"
    wait "$cpu_wrk" 2>/dev/null || true
    forget_pid "$cpu_wrk"
    p99=$(p99_ms "$WORK/plain.txt")
    cpu_rps=$(rps "$WORK/cpu.txt")

    stop "$EV_PID"
    printf '%-7s %3s  %7s %-16s  %9s %9s %6s  %8s %9s\n' \
      "$mode" "$rep" "$busy_a/$BUSY" "$load" "$idle" "$busy" "$ratio" "$p99" "$cpu_rps"
  done
done
