#!/usr/bin/env bash
# scripts/soak.sh MODE — a long mixed load against one ./evloop: does anything accumulate?
#
#   scripts/soak.sh full    SOAK_SECONDS (default 600) of load: what `make soak` runs
#   scripts/soak.sh smoke   20 s of the same load (about 40 s in all): what CI runs
#
# The load, all at once and for the whole time, against one server (--pool 2, the other
# settings at their defaults):
#
#   keep-alive      wrk -t1 -c16 GET /plaintext
#   close           ab -c4 GET /plaintext without -k: HTTP/1.0, one request per connection, so
#                   connections are accepted and closed thousands of times a second
#   sleep           wrk -t1 -c32 GET /sleep?ms=50: a timer per request
#   cpu             wrk -t1 -c4 GET /cpu?ms=5: a job on the pool per request
#   audio           wrk -t1 -c2 POST /snr-detect with a 4 s WAV (scripts/post_wav.lua)
#   abandon         scripts/abandon.py: clients that close (or reset) half-way through a head,
#                   half-way through an upload, or while their /cpu?ms=200 job is queued
#
# First a warm-up of the same mix (so the baseline holds what a busy server holds: buffers, the
# pool's threads, the allocator's arenas), then a quiet moment, then the baseline: VmRSS and open
# fds. During the load both are sampled every SAMPLE_EVERY seconds and printed as they come. At
# the end, after a quiet period (idle connections reach --keep-alive-timeout, lingering closes
# end), they are read once more.
#
# Checks (any FAIL exits non-zero): every client saw only the answers it asked for: no non-2xx,
# no socket error, no failed ab request, no error in the abandoning client and every one of its
# control GETs answered 200. A 503 (queue full) is NOT expected and counts as an error: at most
# 4 + 2 jobs (and one abandoned) are ever waiting against a queue of 128. Open fds return to the
# baseline; VmRSS at the end is within RSS_SLACK_MB of the baseline, and did not grow by more
# than RSS_GROWTH_MB from the first third of the load to the last (a leak grows steadily; the
# allocator's high-water mark does not); the server is alive throughout and exits 0 on SIGTERM.
#
# Environment: EVLOOP (binary, default ./evloop), SOAK_SECONDS (full mode, default 600),
# RSS_SLACK_MB (default 16), RSS_GROWTH_MB (default 8), SERVER_ARGS (extra server flags).

set -euo pipefail

MODE=${1:-}
case "$MODE" in
  full)
    LOAD_S=${SOAK_SECONDS:-600}
    WARMUP_S=20
    SAMPLE_EVERY=10
    ;;
  smoke)
    LOAD_S=20
    WARMUP_S=4
    SAMPLE_EVERY=5
    ;;
  *)
    echo "usage: $0 full|smoke   (full: SOAK_SECONDS=600 by default)" >&2
    exit 2
    ;;
esac

NAME=soak.sh
# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"
need wrk ab curl python3

RSS_SLACK_MB=${RSS_SLACK_MB:-16}
RSS_GROWTH_MB=${RSS_GROWTH_MB:-8}
KEEP_ALIVE_S=5 # the server's default --keep-alive-timeout
QUIET_MAX=$((KEEP_ALIVE_S + 10))
WAV=$ROOT/tests/fixtures/audio/snr_v1_pink_20db.wav

echo "evloop soak ($MODE): $("$EVLOOP" --version 2>/dev/null || echo evloop), ${LOAD_S}s of mixed load, $(nproc) cores"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

# shellcheck disable=SC2086 # SERVER_ARGS is a list of flags
start_evloop soak - --pool 2 ${SERVER_ARGS:-}
SOAK_PID=$EV_PID
URL=$EV_URL
echo "evloop on $EV_PORT (pid $SOAK_PID): --pool 2 ${SERVER_ARGS:-}"

# start_load TAG SECONDS: start every client of the mix for SECONDS, outputs in
# $WORK/TAG-*.txt; sets LOAD_PIDS.
start_load() {
  local tag=$1 secs=$2
  LOAD_PIDS=()
  spawn wrk -t1 -c16 -d"${secs}s" "$URL/plaintext" >"$WORK/$tag-keepalive.txt" 2>&1
  LOAD_PIDS+=("$SPAWNED")
  # -n after -t: -t alone would stop after 50 000 requests.
  spawn ab -c 4 -t "$secs" -n 100000000 "$URL/plaintext" >"$WORK/$tag-close.txt" 2>&1
  LOAD_PIDS+=("$SPAWNED")
  spawn wrk -t1 -c32 -d"${secs}s" "$URL/sleep?ms=50" >"$WORK/$tag-sleep.txt" 2>&1
  LOAD_PIDS+=("$SPAWNED")
  spawn wrk -t1 -c4 -d"${secs}s" --timeout 10s "$URL/cpu?ms=5" >"$WORK/$tag-cpu.txt" 2>&1
  LOAD_PIDS+=("$SPAWNED")
  spawn wrk -t1 -c2 -d"${secs}s" --timeout 10s -s "$SCRIPTS/post_wav.lua" "$URL/snr-detect" -- "$WAV" \
    >"$WORK/$tag-audio.txt" 2>&1
  LOAD_PIDS+=("$SPAWNED")
  spawn python3 "$SCRIPTS/abandon.py" --host "$HOST" --port "$EV_PORT" --seconds "$secs" \
    --wav "$WAV" >"$WORK/$tag-abandon.txt" 2>&1
  LOAD_PIDS+=("$SPAWNED")
}

# wait_load SECONDS: wait for every client of the mix (SIGKILL after SECONDS more).
wait_load() {
  local pid
  for pid in "${LOAD_PIDS[@]}"; do
    wait_exit "$pid" "$1"
  done
}

# quiet: wait until the server holds no more fds than LIMIT (at most QUIET_MAX s), then 1 s.
quiet() {
  wait_fds_at_most "$SOAK_PID" "$1" "$QUIET_MAX" || true
  sleep 1
}

# --- warm-up and baseline --------------------------------------------------------------------

IDLE_FDS=$(fd_count "$SOAK_PID")
IDLE_RSS=$(rss_kb "$SOAK_PID")
section "warm-up: the whole mix for ${WARMUP_S}s, then quiet"
start_load warmup "$WARMUP_S"
wait_load 30
quiet "$IDLE_FDS"
BASE_RSS=$(rss_kb "$SOAK_PID")
BASE_FDS=$(fd_count "$SOAK_PID")
echo "  baseline: VmRSS $BASE_RSS KB, $BASE_FDS open fds (fresh server before the warm-up: $IDLE_RSS KB, $IDLE_FDS fds)"

# --- the load --------------------------------------------------------------------------------

section "load: ${LOAD_S}s; a sample every ${SAMPLE_EVERY}s"
printf '  %6s %10s %6s %8s\n' "t (s)" "VmRSS KB" fds "CPU %"
SAMPLES=() # "t rss fds"
T0=$EPOCHREALTIME
TICKS_START=$(cpu_ticks "$SOAK_PID")
start_load soak "$LOAD_S"
LAST_TICKS=$TICKS_START
LAST_T=0
ALIVE_THROUGHOUT=1
for _i in $(seq $((LOAD_S / SAMPLE_EVERY))); do
  next=$((LAST_T + SAMPLE_EVERY))
  sleep "$(calc "%.2f" "$next - ($EPOCHREALTIME - $T0)" 1 | sed 's/^-.*/0/')"
  if ! alive "$SOAK_PID"; then
    ALIVE_THROUGHOUT=0
    echo "  the server has exited"
    break
  fi
  ticks=$(cpu_ticks "$SOAK_PID")
  rss=$(rss_kb "$SOAK_PID")
  fds=$(fd_count "$SOAK_PID")
  cpu=$(calc "%.0f" "($ticks - $LAST_TICKS) * 100 / $CLK_TCK / $SAMPLE_EVERY" 1)
  printf '  %6s %10s %6s %8s\n' "$next" "$rss" "$fds" "$cpu"
  SAMPLES+=("$next $rss $fds")
  LAST_TICKS=$ticks
  LAST_T=$next
done
wait_load 30
LOAD_WALL=$(calc "%.0f" "$EPOCHREALTIME - $T0" 1)
CPU_AVG=$(calc "%.0f" "($(cpu_ticks "$SOAK_PID") - $TICKS_START) * 100 / $CLK_TCK / $LOAD_WALL" "$LOAD_WALL")

# --- the end ---------------------------------------------------------------------------------

quiet "$BASE_FDS"
END_RSS=$(rss_kb "$SOAK_PID")
END_FDS=$(fd_count "$SOAK_PID")
END_STATUS=$(http_status "$URL/plaintext")
printf '  %6s %10s %6s   (after the load and %s s of quiet)\n' end "$END_RSS" "$END_FDS" "up to $QUIET_MAX"

# RSS growth: the highest sample in the last third of the load against the highest in the
# first third. Peak over the whole load, for the table.
read -r RSS_FIRST RSS_LAST RSS_PEAK FDS_PEAK < <(printf '%s\n' "${SAMPLES[@]}" | awk '
  { t[NR] = $1; r[NR] = $2; f[NR] = $3 }
  END {
    third = int(NR / 3); if (third < 1) third = 1
    for (i = 1; i <= NR; i++) {
      if (i <= third && r[i] > first) first = r[i]
      if (i > NR - third && r[i] > last) last = r[i]
      if (r[i] > peak) peak = r[i]
      if (f[i] > fpeak) fpeak = f[i]
    }
    printf "%d %d %d %d\n", first, last, peak, fpeak
  }')

# --- what the clients saw ----------------------------------------------------------------------

ROWS=() # "client|requests|req/s|errors"
for kind in keepalive sleep cpu audio; do
  parse_wrk "$WORK/soak-$kind.txt"
  ROWS+=("$kind|$W_REQS|$W_RPS|$W_NON2XX non-2xx, $W_ERRS socket errors")
  check "$(ok "$W_REQS" -gt 0 -a "$W_NON2XX" = 0 -a "$W_ERRS" = 0)" "$kind (wrk): only 2xx, no socket errors" \
    "$W_REQS requests, $W_NON2XX non-2xx, $W_ERRS socket errors"
done
read -r AB_DONE AB_FAILED AB_NON2XX AB_RPS < <(awk '
  /^Complete requests:/ { done = $3 }
  /^Failed requests:/ { failed = $3 }
  /^Non-2xx responses:/ { non2xx = $3 }
  /^Requests per second:/ { rps = $4 }
  END { printf "%d %s %d %.0f\n", done, (failed == "" ? "none" : failed), non2xx, rps }' "$WORK/soak-close.txt")
ROWS+=("close (ab, no -k)|$AB_DONE|$AB_RPS|$AB_FAILED failed, $AB_NON2XX non-2xx")
check "$(ok "$AB_DONE" -gt 0 -a "$AB_FAILED" = 0 -a "$AB_NON2XX" = 0)" "close (ab, no keep-alive): no failed request" \
  "$AB_DONE complete, $AB_FAILED failed, $AB_NON2XX non-2xx"
if [ "$AB_FAILED" != 0 ]; then
  grep -i 'apr_\|error\|failed' "$WORK/soak-close.txt" | sed 's/^/  ab: /' | head -5 || true
fi
AB_RESULT=$(grep '^RESULT' "$WORK/soak-abandon.txt" | tail -1)
abandon() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$AB_RESULT"; }
ROWS+=("abandon (python)|$(abandon rounds)|$(calc "%.0f" "$(abandon rounds) / $LOAD_S" 1)|$(abandon errors) errors, $(abandon control_failed) of $(($(abandon control_ok) + $(abandon control_failed))) controls failed")
check "$(ok -n "$AB_RESULT" -a "$(abandon errors)" = 0 -a "$(abandon control_failed)" = 0)" \
  "abandon: no client error, every control GET answered 200" \
  "$(abandon half_head) half heads, $(abandon half_body) half bodies, $(abandon abandoned_job) abandoned jobs ($(abandon resets) by RST); $(abandon control_ok) controls OK, $(abandon control_failed) failed, $(abandon errors) errors"
grep -v '^RESULT' "$WORK/soak-abandon.txt" | sed 's/^/  abandon: /' | head -5 || true

check "$(ok "$END_FDS" -le $((BASE_FDS + 2)))" "open fds back to the baseline" \
  "$BASE_FDS baseline, $FDS_PEAK peak, $END_FDS at the end"
check "$(ok "$END_RSS" -le $((BASE_RSS + RSS_SLACK_MB * 1024)))" "VmRSS at the end <= baseline + $RSS_SLACK_MB MB" \
  "$BASE_RSS KB baseline, $RSS_PEAK peak, $END_RSS at the end"
check "$(ok "$RSS_LAST" -le $((RSS_FIRST + RSS_GROWTH_MB * 1024)))" \
  "VmRSS growth, first third to last third <= $RSS_GROWTH_MB MB" "$RSS_FIRST KB -> $RSS_LAST KB"
check "$(ok "$ALIVE_THROUGHOUT" = 1 -a "$END_STATUS" = 200)" "alive throughout, and a new curl answered 200" "$END_STATUS"
stop "$SOAK_PID"
check "$(ok "$EXIT_STATUS" = 0)" "server exit status 0 after SIGTERM" "$EXIT_STATUS"

# --- the report ------------------------------------------------------------------------------

section "summary ($MODE): ${LOAD_S}s of load on --pool 2, $(nproc) cores; load average now $(cut -d' ' -f1-3 /proc/loadavg)"
printf '  %-20s %12s %8s  %s\n' client requests "req/s" "errors"
for line in "${ROWS[@]}"; do
  IFS='|' read -r a b c d <<<"$line"
  printf '  %-20s %12s %8s  %s\n' "$a" "$b" "$c" "$d"
done
printf '\n  %-20s %12s %8s\n' server "VmRSS KB" fds
printf '  %-20s %12s %8s\n' "baseline" "$BASE_RSS" "$BASE_FDS"
printf '  %-20s %12s %8s\n' "peak during the load" "$RSS_PEAK" "$FDS_PEAK"
printf '  %-20s %12s %8s\n' "end, after quiet" "$END_RSS" "$END_FDS"
printf '  server CPU over the load: %s%% of a core on average\n' "$CPU_AVG"
print_checks
print_logged

echo
if [ "$FAILED" = 1 ]; then
  echo "soak.sh $MODE: FAILED (a check above)"
  exit 1
fi
echo "soak.sh $MODE: passed"
