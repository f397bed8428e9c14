# shellcheck shell=bash disable=SC2034,SC2153 # variables set here are read by the sourcing script, which sets NAME
# scripts/common.sh — what scripts/attack.sh and scripts/soak.sh share: the processes they start
# (each one remembered and stopped on exit), what they read in /proc about the server, and the
# verdict table they end with. Sourced, not run; the caller sets NAME (its name in messages)
# and has `set -euo pipefail` in force.
#
# Environment: EVLOOP (the binary, default ./evloop at the repository root).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPTS=$ROOT/scripts
EVLOOP=${EVLOOP:-$ROOT/evloop}
HOST=127.0.0.1
CLK_TCK=$(getconf CLK_TCK)

if [ ! -x "$EVLOOP" ]; then
  echo "$NAME: no $EVLOOP; run \`make\` first" >&2
  exit 2
fi

# need TOOL... : fail early, with the install line, when a client is missing.
need() {
  local tool
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null; then
      echo "$NAME: $tool is not installed (apt-get install wrk apache2-utils curl python3 slowhttptest)" >&2
      exit 2
    fi
  done
}

# Our own scratch directory (server logs, client outputs); removed on exit.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/$NAME.XXXXXXXX")
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

# stop PID: SIGTERM, then wait (SIGKILL after 15 s); sets EXIT_STATUS.
stop() {
  kill -TERM "$1" 2>/dev/null || true
  wait_exit "$1" 15
}

# spawn COMMAND...: run COMMAND in the background and remember it; sets SPAWNED (its pid).
spawn() {
  "$@" &
  SPAWNED=$!
  PIDS+=("$SPAWNED")
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

# start_evloop NAME NOFILE ARGS...: start ./evloop on a free port, with its open-file limit
# (soft and hard) set to NOFILE, or left as it is when NOFILE is "-". Sets EV_PID, EV_PORT and
# EV_URL. The port is the one the server prints once its start-up hooks are done
# ("evloop ready on http://127.0.0.1:PORT"), so no request meets a 503 `starting`.
start_evloop() {
  local name=$1 nofile=$2 _i
  shift 2
  # The subshell sets the limit for itself, then becomes the server (exec), so $! is the
  # server's pid. Both limits: the server raises its soft limit to the hard one at start-up.
  (
    if [ "$nofile" != - ]; then ulimit -n "$nofile"; fi
    exec "$EVLOOP" --host "$HOST" --port 0 "$@"
  ) >"$WORK/$name.out" 2>"$WORK/$name.log" &
  EV_PID=$!
  PIDS+=("$EV_PID")
  EV_PORT=
  for _i in $(seq 100); do
    EV_PORT=$(sed -n 's|.*ready on http://[^:]*:\([0-9]*\).*|\1|p' "$WORK/$name.out" 2>/dev/null || true)
    [ -n "$EV_PORT" ] && break
    alive "$EV_PID" || break
    sleep 0.05
  done
  if [ -z "$EV_PORT" ]; then
    echo "$NAME: evloop ($name) did not start:" >&2
    cat "$WORK/$name.out" "$WORK/$name.log" >&2
    exit 1
  fi
  EV_URL=http://$HOST:$EV_PORT
}

# --- measuring -------------------------------------------------------------------------------

# cpu_ticks PID: utime + stime of the process (all its threads), in clock ticks: fields 14 and
# 15 of /proc/PID/stat, counted after the ")" that ends the command name.
cpu_ticks() {
  local fields
  read -r -a fields <<<"$(sed 's/.*) //' "/proc/$1/stat")"
  echo $((fields[11] + fields[12]))
}

# rss_kb PID: VmRSS in KB.
rss_kb() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# fd_count PID: open file descriptors.
fd_count() {
  find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l
}

# start_sampler PID FILE SECONDS: every second, append "ELAPSED_S RSS_KB FDS" for PID to FILE,
# for at most SECONDS or until PID exits; sets SAMPLER.
start_sampler() {
  local pid=$1 file=$2 limit=$3
  (
    t0=$EPOCHREALTIME
    for _i in $(seq "$limit"); do
      alive "$pid" || break
      printf '%s %s %s\n' "$(calc "%.0f" "$EPOCHREALTIME - $t0" 1)" "$(rss_kb "$pid")" \
        "$(fd_count "$pid")" >>"$file" 2>/dev/null || break
      sleep 1
    done
  ) &
  SAMPLER=$!
  PIDS+=("$SAMPLER")
}

# column_max FILE N: the largest value in column N of FILE (0 when empty).
column_max() {
  awk -v n="$2" 'BEGIN { m = 0 } $n + 0 > m { m = $n + 0 } END { print m }' "$1" 2>/dev/null || echo 0
}

# wait_fds_at_most PID LIMIT SECONDS: wait until PID has at most LIMIT open fds (or SECONDS
# pass): the server closes connections by its deadlines, so this is how long that takes.
wait_fds_at_most() {
  local _i
  for _i in $(seq $(($3 * 10))); do
    [ "$(fd_count "$1")" -le "$2" ] && return 0
    sleep 0.1
  done
  return 1
}

# calc FORMAT EXPRESSION: floating-point arithmetic; "n/a" when it divides by zero.
calc() {
  awk "BEGIN { if ($3 == 0) print \"n/a\"; else printf \"$1\", $2 }" </dev/null
}

# parse_wrk FILE: from a wrk output, W_REQS (responses completed), W_RPS, W_NON2XX and W_ERRS
# (socket errors of every kind: connect, read, write, timeout).
parse_wrk() {
  read -r W_REQS W_RPS W_NON2XX W_ERRS < <(awk '
    / requests in / { reqs = $1 }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ { gsub(",", ""); errs = $4 + $6 + $8 + $10 }
    END { printf "%d %.0f %d %d\n", reqs, rps, non2xx, errs }' "$1")
}

# http_status URL: the status of one GET (000 when nothing answered within 5 s).
http_status() {
  curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$1" || true
}

# --- the verdict -----------------------------------------------------------------------------

CHECKS=() # "PASS|what|value" or "FAIL|what|value"
FAILED=0

# check OK WHAT VALUE: OK is 1 or 0; a 0 fails the run.
check() {
  if [ "$1" = 1 ]; then
    CHECKS+=("PASS|$2|$3")
  else
    CHECKS+=("FAIL|$2|$3")
    FAILED=1
  fi
}

# ok CONDITION...: 1 when the `test` condition holds, else 0 (for check's first argument).
ok() {
  if [ "$@" ]; then echo 1; else echo 0; fi
}

section() { printf '\n== %s\n' "$*"; }

print_checks() {
  local line verdict what value
  section "checks"
  for line in "${CHECKS[@]}"; do
    IFS='|' read -r verdict what value <<<"$line"
    printf '%-5s %-58s %s\n' "$verdict" "$what" "$value"
  done
}

# print_logged: what the servers logged at WARN or ERROR, grouped by message with numbers
# replaced by N (lines differing only in a figure count together); each group shows its count,
# the message and its largest first figure (how slow the slowest turn was, for example).
print_logged() {
  local logged
  logged=$(grep -h ' WARN \| ERROR ' "$WORK"/*.log 2>/dev/null | sed 's/^\[[^ ]* *//' | awk '
    {
      key = $0; gsub(/[0-9]+/, "N", key)
      n = 0; if (match($0, /[0-9]+/)) n = substr($0, RSTART, RLENGTH) + 0
      count[key]++
      if (!(key in top) || n > top[key]) top[key] = n
    }
    END { for (k in count) printf "%7d  %s  (largest N: %d)\n", count[k], k, top[k] }' |
    sort -rn | head -8 || true)
  if [ -n "$logged" ]; then
    section "evloop log lines at WARN/ERROR (count, message)"
    echo "$logged"
  fi
}
