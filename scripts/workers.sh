#!/usr/bin/env bash
# scripts/workers.sh — `--workers 2` under real wrk: a SIGHUP reload fails no request, and a
# worker process killed with SIGKILL is replaced, at the cost of at most the requests in flight
# on its connections (counted and reported).
#
#   1. SIGHUP: `wrk -t1 -c64 /plaintext` for SECONDS; a SIGHUP to the supervisor a third of the
#      way in (the processes are replaced one at a time). Check: no socket error, no non-2xx,
#      both processes new.
#   2. SIGKILL: the same load; a third of the way in, one worker process gets SIGKILL. Checks:
#      a new process takes its place; wrk's errors are at most its 64 connections (each has one
#      request in flight at most). The errors are reported whatever they are.
#
# Usage: scripts/workers.sh [smoke|full] (smoke: 3 s of load each, full: 10 s).
# Environment: EVLOOP (the binary, default ./evloop).
set -euo pipefail
NAME=workers.sh
# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"
need wrk curl

MODE=${1:-smoke}
case $MODE in
  smoke) SECS=3 ;;
  full) SECS=10 ;;
  *)
    echo "usage: $0 [smoke|full]" >&2
    exit 2
    ;;
esac

# children PID: the supervisor's processes, sorted.
children() {
  tr ' ' '\n' <"/proc/$1/task/$1/children" | grep . | sort
}

# wait_new_children SUP OLD...: wait up to 20 s until SUP has two processes, none of them in OLD.
wait_new_children() {
  local sup=$1 _i now
  shift
  for _i in $(seq 200); do
    now=$(children "$sup")
    if [ "$(echo "$now" | grep -c .)" = 2 ] && ! echo "$now" | grep -qxF -f <(printf '%s\n' "$@"); then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# A supervisor's log says when both processes are ready; start_evloop waits for its ready line.
start_evloop workers - --workers 2 --pool 1
SUP=$EV_PID

section "1. SIGHUP during wrk -t1 -c64 -d${SECS}s /plaintext (--workers 2 --pool 1)"
mapfile -t before < <(children "$SUP")
spawn wrk -t1 -c64 -d"${SECS}s" "$EV_URL/plaintext" >"$WORK/wrk-hup.txt" 2>&1
wrk_pid=$SPAWNED
sleep "$(calc "%.1f" "$SECS / 3" 1)"
kill -HUP "$SUP"
replaced=0
wait_new_children "$SUP" "${before[@]}" && replaced=1
wait_exit "$wrk_pid" $((SECS + 15))
parse_wrk "$WORK/wrk-hup.txt"
echo "  wrk: $W_REQS requests, $W_RPS req/s, $W_NON2XX non-2xx, $W_ERRS socket errors"
echo "  processes: ${before[*]} -> $(children "$SUP" | tr '\n' ' ')"
check "$(ok "$W_ERRS" -eq 0 -a "$W_NON2XX" -eq 0 -a "$W_REQS" -gt 0)" \
  "1. SIGHUP under load: no request failed" "$W_REQS requests, $W_NON2XX non-2xx, $W_ERRS socket errors"
check "$replaced" "1. SIGHUP: both processes replaced" "$(children "$SUP" | tr '\n' ' ')"

section "2. SIGKILL of one worker process during wrk -t1 -c64 -d${SECS}s /plaintext"
mapfile -t before < <(children "$SUP")
victim=${before[0]}
spawn wrk -t1 -c64 -d"${SECS}s" "$EV_URL/plaintext" >"$WORK/wrk-kill.txt" 2>&1
wrk_pid=$SPAWNED
sleep "$(calc "%.1f" "$SECS / 3" 1)"
held=$(ss -tnpH state established "( sport = :$EV_PORT )" 2>/dev/null | grep -c "pid=$victim," || true)
kill -KILL "$victim"
replaced=0
for _i in $(seq 100); do
  if [ "$(children "$SUP" | grep -c .)" = 2 ] && ! children "$SUP" | grep -qx "$victim"; then
    replaced=1
    break
  fi
  sleep 0.1
done
wait_exit "$wrk_pid" $((SECS + 15))
parse_wrk "$WORK/wrk-kill.txt"
echo "  killed pid $victim ($held of wrk's 64 connections were on it)"
echo "  wrk: $W_REQS requests, $W_RPS req/s, $W_NON2XX non-2xx, $W_ERRS socket errors"
echo "  processes: ${before[*]} -> $(children "$SUP" | tr '\n' ' ')"
check "$replaced" "2. SIGKILL: the killed process replaced" "$(children "$SUP" | tr '\n' ' ')"
check "$(ok $((W_ERRS + W_NON2XX)) -le 64 -a "$W_REQS" -gt 0)" \
  "2. SIGKILL: errors at most the 64 requests in flight" \
  "$W_ERRS socket errors, $W_NON2XX non-2xx of $W_REQS ($held connections were on it)"
check "$(ok "$(http_status "$EV_URL/plaintext")" = 200)" "2. SIGKILL: a fresh request answered" "GET /plaintext"

stop "$SUP"
check "$(ok "$EXIT_STATUS" -eq 0)" "SIGTERM: the supervisor exits 0" "status $EXIT_STATUS"

print_checks
print_logged
if [ "$FAILED" = 1 ]; then
  echo "$NAME $MODE: FAILED"
  exit 1
fi
echo "$NAME $MODE: passed"
