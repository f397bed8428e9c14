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
# the table in docs/SCHEDULING.md gives the range over the repeats.
#
# The machine may be shared, and somebody else's build in the middle of a run would be measured
# as if it were evloop. So each measurement also counts the CPU time the machine spent on
# processes that are not ours: user CPU time from /proc/stat (user + nice), minus the user time
# of evloop, wrk and the busy loops (/proc/PID/stat and bash's `times`), as a percentage of the
# machine over the run ("foreign%", (a)'s idle run / (b)). User time only: the kernel's work for
# our own loopback traffic runs partly in kernel threads, which would count as foreign, while
# the builds and tests that share a machine spend their time in user space. A measurement with
# more than FOREIGN_MAX % foreign CPU is thrown away and taken again, up to TRIES times; the
# last try is kept and flagged with `!`.
#
# Environment: EVLOOP (binary, default ./evloop at the repository root), REPEATS (default 3),
# DUR (seconds per wrk run, default 10), FOREIGN_MAX (default 3), TRIES (default 5), AS_USER
# (run evloop as this user, e.g. nobody, through setpriv with no capabilities: no mode needs
# privileges, and this checks that none quietly uses them).

set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
EVLOOP=${EVLOOP:-$ROOT/evloop}
REPEATS=${REPEATS:-3}
DUR=${DUR:-10}
FOREIGN_MAX=${FOREIGN_MAX:-3}
TRIES=${TRIES:-5}
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)
AS_USER=${AS_USER:-}
HOST=127.0.0.1
MODES=("$@")
[ ${#MODES[@]} -gt 0 ] || MODES=(batch normal low idle)

if [ ! -x "$EVLOOP" ]; then
  echo "scheduling.sh: no $EVLOOP; run \`make\` first" >&2
  exit 2
fi
if ! command -v wrk >/dev/null; then
  echo "scheduling.sh: wrk is not installed (apt-get install wrk)" >&2
  exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/scheduling.XXXXXXXX")
PIDS=() # background processes this script started and has not stopped yet

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
  local pid=$1 kept=() p
  for p in "${PIDS[@]}"; do
    [ "$p" = "$pid" ] || kept+=("$p")
  done
  PIDS=("${kept[@]}")
}

# stop PID: SIGTERM, wait for it, forget it.
stop() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget_pid "$1"
}

# start_evloop MODE: ./evloop --pool 2 on a free port; sets EV_PID and EV_PORT.
start_evloop() {
  local mode=$1 _i
  local cmd=("$EVLOOP" --host "$HOST" --port 0 --pool 2 --worker-priority "$mode")
  if [ -n "$AS_USER" ]; then
    cmd=(setpriv --reuid="$AS_USER" --regid="$(id -g "$AS_USER")" --clear-groups --inh-caps=-all
      --bounding-set=-all "${cmd[@]}")
  fi
  "${cmd[@]}" >"$WORK/evloop.out" 2>"$WORK/evloop.log" &
  EV_PID=$!
  PIDS+=("$EV_PID")
  EV_PORT=
  for _i in $(seq 200); do
    EV_PORT=$(sed -n 's|.*ready on http://[^:]*:\([0-9]*\).*|\1|p' "$WORK/evloop.out")
    [ -n "$EV_PORT" ] && return 0
    sleep 0.05
  done
  echo "scheduling.sh: evloop did not start:" >&2
  cat "$WORK/evloop.out" "$WORK/evloop.log" >&2
  exit 1
}

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

# machine_ticks: user CPU time of the whole machine so far (user + nice), in clock ticks.
machine_ticks() {
  awk '/^cpu / { print $2 + $3 }' /proc/stat
}

# pid_ticks PID...: user CPU time of the processes (utime, field 14 of /proc/PID/stat, counted
# after the ")" that ends the command name).
pid_ticks() {
  local total=0 pid t
  for pid in "$@"; do
    t=$(awk '{ sub(/.*\) /, ""); print $12 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo "$total"
}

# children_ticks: user time of the finished children of this (sub)shell, from `times`.
children_ticks() {
  times | awk -v hz="$CLK_TCK" 'NR == 2 { split($1, u, /[ms]/); printf "%d", (u[1] * 60 + u[2]) * hz }'
}

# measure NAME COMMAND...: run COMMAND (which runs wrk) in a subshell, retrying while other
# processes used more than FOREIGN_MAX % of the machine meanwhile. Sets FOREIGN (the % of the
# kept try, with `!` if it was still too high). COMMAND writes its results to files.
measure() {
  local name=$1 try m0 m1 e0 e1 w t0 t1 mine
  shift
  for try in $(seq "$TRIES"); do
    m0=$(machine_ticks)
    e0=$(pid_ticks "$EV_PID" "${LOOPS[@]}")
    t0=$(date +%s%N)
    w=$( ("$@" >/dev/null; children_ticks) )
    t1=$(date +%s%N)
    m1=$(machine_ticks)
    e1=$(pid_ticks "$EV_PID" "${LOOPS[@]}")
    mine=$((e1 - e0 + w))
    FOREIGN=$(awk -v m=$((m1 - m0)) -v mine="$mine" -v ns=$((t1 - t0)) -v hz="$CLK_TCK" \
      -v n="$NCPU" 'BEGIN { f = 100 * (m - mine) / (ns / 1e9 * hz * n); if (f < 0) f = 0; printf "%.0f", f }')
    if [ "$FOREIGN" -le "$FOREIGN_MAX" ]; then
      return 0
    fi
    echo "  ($name: ${FOREIGN}% foreign CPU, try $try of $TRIES)" >&2
  done
  FOREIGN="$FOREIGN!"
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
  "user $(if [ -n "$AS_USER" ]; then echo "$AS_USER"; else id -un; fi), wrk -t1, ${DUR} s per run"
printf '%-7s %3s  %9s  %9s %9s %6s  %8s %9s\n' \
  mode rep foreign% "idle r/s" "busy r/s" ratio "p99 ms" "cpu r/s"

# The three runs, each writing its wrk output(s) to $WORK.
run_idle() { wrk -t1 -c8 -d"${DUR}s" "$URL/cpu?ms=5" >"$WORK/idle.txt"; }
run_busy() { wrk -t1 -c8 -d"${DUR}s" "$URL/cpu?ms=5" >"$WORK/busy.txt"; }
run_saturated() {
  wrk -t1 -c8 -d"$((DUR + 2))s" "$URL/cpu?ms=20" >"$WORK/cpu.txt" &
  sleep 1
  wrk --latency -t1 -c16 -d"${DUR}s" "$URL/plaintext" >"$WORK/plain.txt"
  wait
}

LOOPS=()
for mode in "${MODES[@]}"; do
  for rep in $(seq "$REPEATS"); do
    start_evloop "$mode"
    URL=http://$HOST:$EV_PORT
    wrk -t1 -c8 -d2s "$URL/cpu?ms=5" >/dev/null # warm-up

    # (a) /cpu throughput on an idle machine, then beside two busy loops (which are ours, so
    # they are not counted as foreign).
    measure "(a) idle" run_idle
    foreign_a=$FOREIGN
    busy_loops 2
    sleep 1
    measure "(a) busy" run_busy
    for pid in "${LOOPS[@]}"; do
      stop "$pid"
    done
    LOOPS=()
    idle=$(rps "$WORK/idle.txt")
    busy=$(rps "$WORK/busy.txt")
    ratio=$(awk -v a="$busy" -v b="$idle" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')

    # (b) /plaintext p99 while /cpu?ms=20 saturates the pool.
    sleep 1
    measure "(b)" run_saturated
    p99=$(p99_ms "$WORK/plain.txt")
    cpu_rps=$(rps "$WORK/cpu.txt")

    stop "$EV_PID"
    printf '%-7s %3s  %9s  %9s %9s %6s  %8s %9s\n' \
      "$mode" "$rep" "$foreign_a/$FOREIGN" "$idle" "$busy" "$ratio" "$p99" "$cpu_rps"
  done
done
