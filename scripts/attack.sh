#!/usr/bin/env bash
# scripts/attack.sh MODE — hostile clients against ./evloop: slowhttptest's three slow attacks
# while wrk measures whether honest clients are still served, then a server short of file
# descriptors facing more clients than it can hold.
#
#   scripts/attack.sh full    1000 slow connections per attack, 30 s each (about 2 minutes):
#                             what `make attack` runs
#   scripts/attack.sh smoke   100 slow connections, 8 s each; U with `ulimit -n 64` and 150
#                             clients (under a minute): what CI runs
#
# The server runs with short deadlines (--header-timeout, --body-timeout, --keep-alive-timeout
# all 3 s, --pool 2) so that a 30 s attack sees many of them fire.
#
#   H. slow headers (Slowloris, slowhttptest -H): a request head sent one header line every
#      10 s. --header-timeout bounds the whole head: 408, close.
#   B. slow body (R-U-Dead-Yet, slowhttptest -B): POST /snr-detect with Content-Length 4096 and
#      the body sent a few bytes every 10 s. --body-timeout bounds each pause: 408, close.
#      (A body trickled faster than --body-timeout is progress, and is allowed to go on.)
#   X. slow read (slowhttptest -X): ten pipelined GETs, then the answers read 5 bytes a second
#      through a receive window of at most 512 bytes. evloop's answers fit in the kernel's send
#      buffer, so the server is done writing at once and --keep-alive-timeout closes its end;
#      the client goes on reading what the kernel holds and still counts the connection open.
#      So for X the figure is the server's open fds just before the client lets go.
#
# slowhttptest stops as soon as every one of its connections is closed, so for H and B it runs
# in waves of N connections (all opened within about a second) until the attack's time is up;
# X runs in waves of fixed length. During each attack `wrk -t1 -c16 /plaintext` runs for the
# whole time: the target is zero non-2xx answers and zero socket errors.
#
#   U. `ulimit -n 256` (soft and hard, so the server cannot raise it) and 1000 clients that each
#      send `GET /plaintext`, read the answer and keep the connection
#      (scripts/idle_conns.py): the server runs out of descriptors, accept fails with EMFILE and
#      must back off rather than spin; as --keep-alive-timeout closes idle connections it
#      accepts the next ones. Checks: every client answered in the end, no busy loop (server
#      CPU over the period), alive, and a fresh curl answered 200.
#
# Measured for each: the server's VmRSS (every second, from /proc/PID/status) before, at its
# peak and after; its open fds (/proc/PID/fd) before, at peak and after a quiet period; its CPU
# (utime + stime from /proc/PID/stat) over the attack. The run exits non-zero when a check
# fails: wrk saw an error, a slow connection outlived its deadline, the server died or stopped
# answering, VmRSS passed RSS_LIMIT_MB, the fds did not come back to the baseline, or the
# server used more than CPU_LIMIT_PCT of a core while out of descriptors.
#
# Environment: EVLOOP (binary, default ./evloop), RSS_LIMIT_MB (default 64: 1000 slow
# connections holding a partial head or body need a few MB; a 64 KiB buffer per connection
# would pass 64 MB), CPU_LIMIT_PCT (default 25). slowhttptest is installed with apt-get when
# missing and this runs as root.

set -euo pipefail

MODE=${1:-}
case "$MODE" in
  full)
    CONNS=1000      # slow connections per wave
    SECS=30         # seconds per attack (and of the wrk run beside it)
    X_WAVE=10       # seconds per slow-read wave
    U_NOFILE=256    # the server's open-file limit in U
    U_CLIENTS=1000  # clients in U
    ;;
  smoke)
    CONNS=100
    SECS=8
    X_WAVE=8
    U_NOFILE=64
    U_CLIENTS=150
    ;;
  *)
    echo "usage: $0 full|smoke" >&2
    exit 2
    ;;
esac

NAME=attack.sh
# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"

TIMEOUT=3 # the server's header, body and keep-alive timeouts, in seconds
WRK_CONNS=16
RSS_LIMIT_MB=${RSS_LIMIT_MB:-64}
CPU_LIMIT_PCT=${CPU_LIMIT_PCT:-25}
# A wave of H or B lasts about TIMEOUT + 2 s (opening, then the deadline, then the next turn):
# one is started only if that much of the attack is left, and one that hits WAVE_LIMIT means
# connections outlived their deadline.
WAVE_MIN=$((TIMEOUT + 3))
WAVE_LIMIT=$((TIMEOUT * 4 + 5))

if ! command -v slowhttptest >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing slowhttptest"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slowhttptest >/dev/null
fi
need slowhttptest wrk curl python3

# The clients need a descriptor per connection: lift our own soft limit (up to the hard one).
HARD_NOFILE=$(ulimit -Hn)
if [ "$HARD_NOFILE" = unlimited ] || [ "$HARD_NOFILE" -gt 8192 ]; then HARD_NOFILE=8192; fi
if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt "$HARD_NOFILE" ]; then
  ulimit -Sn "$HARD_NOFILE"
fi

ROWS=() # "mode|slow connections|closed by server|wrk|rss|fds|cpu"

echo "evloop attack ($MODE): $("$EVLOOP" --version 2>/dev/null || echo evloop), $(slowhttptest -h 2>&1 |
  sed -n 's/.*\(version [0-9.]*\).*/slowhttptest \1/p' | head -1), $(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }'), $(nproc) cores"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- the slow attacks ------------------------------------------------------------------------

start_evloop slow - --pool 2 --header-timeout "$TIMEOUT" --body-timeout "$TIMEOUT" \
  --keep-alive-timeout "$TIMEOUT"
SLOW_PID=$EV_PID
SLOW_URL=$EV_URL
echo "evloop on $EV_PORT (pid $SLOW_PID): --pool 2, header/body/keep-alive timeouts ${TIMEOUT}s"
# Warm up, so that the baseline already holds what any busy server holds (buffers, the pool).
wrk -t1 -c"$WRK_CONNS" -d1s "$SLOW_URL/plaintext" >/dev/null 2>&1 || true
curl -s -o /dev/null --data-binary @"$ROOT/tests/fixtures/audio/fmt_8k.wav" "$SLOW_URL/snr-detect" || true
sleep 0.5

# parse_wave PREFIX: from one slowhttptest run (PREFIX.txt, PREFIX.csv), set S_PEAK (most
# connections open at once), S_LEFT (still open when it stopped: 0 when it stopped because the
# server had closed them all), S_FIRST (the second of the first close, "-" for none), S_DOWN
# (seconds the probe found the service unavailable) and S_EXIT (its exit status line).
parse_wave() {
  local csv=$1.csv txt=$1.txt
  S_EXIT=$(sed 's/\x1b\[[0-9;]*m//g' "$txt" | sed -n 's/^Exit status: *//p' | tail -1)
  [ -n "$S_EXIT" ] || S_EXIT="no exit status (see $(basename "$txt"))"
  read -r S_PEAK S_LAST_CONNECTED S_FIRST S_DOWN < <(awk -F, '
    NR > 1 {
      if ($4 + 0 > peak) peak = $4 + 0
      last = $4 + 0
      if (first == "" && $2 + 0 > 0) first = $1
      if ($5 + 0 == 0) down++
    }
    END { printf "%d %d %s %d\n", peak, last, (first == "" ? "-" : first), down }' "$csv" 2>/dev/null ||
    echo "0 0 - 0")
  # The CSV's last row can be a second old: "No open connections left" is the final word.
  case "$S_EXIT" in
    "No open connections left"*) S_LEFT=0 ;;
    *) S_LEFT=$S_LAST_CONNECTED ;;
  esac
}

# slow_attack LETTER NAME: one attack (H, B or X) with wrk beside it; adds a row and checks.
slow_attack() {
  local letter=$1 name=$2 url=$SLOW_URL/plaintext args=() wave=0 t0 elapsed
  local base_fds base_rss ticks0 ticks1 wrk_pid prefix during_fds=0 wave_fds=0 held=0
  local opened=0 left=0 first=- down=0 exits=() after_fds after_rss peak_rss peak_fds
  case $letter in
    H) args=(-H -i 10) ;;
    B) args=(-B -i 10 -s 4096) url=$SLOW_URL/snr-detect ;;
    X) args=(-X -k 10 -n 1 -z 5 -w 1 -y 512) ;;
  esac
  section "$letter. $name: slowhttptest -$letter -c $CONNS in waves for ${SECS}s, wrk -t1 -c$WRK_CONNS /plaintext beside it"
  base_fds=$(fd_count "$SLOW_PID")
  base_rss=$(rss_kb "$SLOW_PID")
  ticks0=$(cpu_ticks "$SLOW_PID")
  : >"$WORK/samples-$letter.txt"
  start_sampler "$SLOW_PID" "$WORK/samples-$letter.txt" $((SECS + WAVE_LIMIT + 10))
  spawn wrk -t1 -c"$WRK_CONNS" -d"${SECS}s" "$SLOW_URL/plaintext" >"$WORK/wrk-$letter.txt" 2>&1
  wrk_pid=$SPAWNED
  t0=$EPOCHREALTIME
  while :; do
    elapsed=$(calc "%.0f" "$EPOCHREALTIME - $t0" 1)
    if [ "$letter" = X ]; then
      [ $((elapsed + X_WAVE / 2)) -le "$SECS" ] || break
    else
      [ $((elapsed + WAVE_MIN)) -le "$SECS" ] || break
    fi
    wave=$((wave + 1))
    prefix=$WORK/sht-$letter-$wave
    if [ "$letter" = X ]; then
      # Fixed length; just before the client lets go, count the server's connections.
      spawn timeout $((X_WAVE + 10)) slowhttptest "${args[@]}" -c "$CONNS" -r "$CONNS" -l "$X_WAVE" \
        -p 3 -u "$url" -g -o "$prefix" >"$prefix.txt" 2>&1
      sleep $((X_WAVE - 2))
      wave_fds=$(fd_count "$SLOW_PID")
      [ "$wave_fds" -gt "$during_fds" ] && during_fds=$wave_fds
      held=$(awk -F, 'NR > 1 { last = $4 } END { print last + 0 }' "$prefix.csv" 2>/dev/null || echo 0)
      wait_exit "$SPAWNED" $((X_WAVE + 15))
    else
      spawn timeout $((WAVE_LIMIT + 10)) slowhttptest "${args[@]}" -c "$CONNS" -r "$CONNS" -l "$WAVE_LIMIT" \
        -p 3 -u "$url" -g -o "$prefix" >"$prefix.txt" 2>&1
      wait_exit "$SPAWNED" $((WAVE_LIMIT + 15))
    fi
    parse_wave "$prefix"
    opened=$((opened + S_PEAK))
    left=$((left + S_LEFT))
    down=$((down + S_DOWN))
    [ "$first" = - ] && first=$S_FIRST
    exits+=("$S_EXIT")
    if [ "$letter" = X ]; then
      printf '  wave %d: %d connections at peak, %d still held by the client after %ss; server fds then: %d\n' \
        "$wave" "$S_PEAK" "$held" "$((X_WAVE - 2))" "$wave_fds"
    else
      printf '  wave %d: %d connections at peak, %s; first closed in second %s\n' \
        "$wave" "$S_PEAK" "$S_EXIT" "$S_FIRST"
    fi
  done
  wait_exit "$wrk_pid" $((SECS + 15))
  ticks1=$(cpu_ticks "$SLOW_PID")
  # Quiet: the server closes what is left by its deadlines (the linger after a 408 included).
  wait_fds_at_most "$SLOW_PID" "$base_fds" $((TIMEOUT + 8)) || true
  sleep 1
  kill "$SAMPLER" 2>/dev/null || true
  wait_exit "$SAMPLER" 2
  after_fds=$(fd_count "$SLOW_PID")
  after_rss=$(rss_kb "$SLOW_PID")
  peak_rss=$(column_max "$WORK/samples-$letter.txt" 2)
  peak_fds=$(column_max "$WORK/samples-$letter.txt" 3)
  [ "$after_rss" -gt "$peak_rss" ] && peak_rss=$after_rss
  parse_wrk "$WORK/wrk-$letter.txt"
  local cpu_pct status
  cpu_pct=$(calc "%.0f" "($ticks1 - $ticks0) * 100 / $CLK_TCK / $SECS" 1)
  status=$(http_status "$SLOW_URL/plaintext")
  printf '  wrk: %s req/s, %s requests, %s non-2xx, %s socket errors\n' "$W_RPS" "$W_REQS" "$W_NON2XX" "$W_ERRS"
  printf '  server: VmRSS %s / %s / %s KB (before / peak / after), fds %s / %s / %s, CPU %s%% of a core\n' \
    "$base_rss" "$peak_rss" "$after_rss" "$base_fds" "$peak_fds" "$after_fds" "$cpu_pct"
  [ "$down" = 0 ] || echo "  slowhttptest's probe found the service unavailable for $down s"

  local closed
  if [ "$letter" = X ]; then
    closed="client held $held; srv fds $during_fds"
    check "$(ok "$during_fds" -le $((base_fds + WRK_CONNS + 4)))" \
      "$letter. server closed slow readers by its keep-alive deadline" \
      "$during_fds fds (baseline $base_fds + $WRK_CONNS wrk) while slowhttptest held $held"
  else
    closed="$((opened - left)) of $opened, from s ${first}"
    check "$(ok "$left" = 0 -a "$opened" -gt 0)" "$letter. every slow connection closed by its deadline" \
      "$((opened - left)) of $opened closed by the server; $(printf '%s\n' "${exits[@]}" | sort | uniq -c | awk '{ $1 = $1 "x"; print }' | paste -sd';' -)"
  fi
  check "$(ok "$W_REQS" -gt 0 -a "$W_NON2XX" = 0 -a "$W_ERRS" = 0)" "$letter. wrk /plaintext meanwhile: no errors" \
    "$W_REQS requests, $W_NON2XX non-2xx, $W_ERRS socket errors"
  check "$(ok "$peak_rss" -le $((RSS_LIMIT_MB * 1024)))" "$letter. VmRSS peak <= $RSS_LIMIT_MB MB" "$peak_rss KB"
  check "$(ok "$after_fds" -le $((base_fds + 2)))" "$letter. open fds back to the baseline" \
    "$base_fds before, $peak_fds peak, $after_fds after"
  check "$(ok "$status" = 200)" "$letter. alive, and a new curl answered 200" "$status"
  ROWS+=("$letter $name|$wave x $CONNS|$closed|$W_RPS req/s, $W_NON2XX non-2xx, $W_ERRS err|$base_rss/$peak_rss/$after_rss|$base_fds/$peak_fds/$after_fds|$cpu_pct%")
}

slow_attack H "slow headers"
slow_attack B "slow body"
slow_attack X "slow read"
stop "$SLOW_PID"
check "$(ok "$EXIT_STATUS" = 0)" "server exit status 0 after SIGTERM" "$EXIT_STATUS"

# --- U. out of file descriptors ----------------------------------------------------------------

section "U. ulimit -n $U_NOFILE, $U_CLIENTS clients that each send GET /plaintext and keep the connection"
start_evloop nofile "$U_NOFILE" --pool 2 --header-timeout "$TIMEOUT" --body-timeout "$TIMEOUT" \
  --keep-alive-timeout "$TIMEOUT"
U_PID=$EV_PID
U_LIMIT=$(awk '/^Max open files/ { print $4 "/" $5 }' "/proc/$U_PID/limits")
echo "evloop on $EV_PORT (pid $U_PID), open files limit (soft/hard) $U_LIMIT"
U_BASE_FDS=$(fd_count "$U_PID")
U_BASE_RSS=$(rss_kb "$U_PID")
U_TICKS0=$(cpu_ticks "$U_PID")
: >"$WORK/samples-U.txt"
start_sampler "$U_PID" "$WORK/samples-U.txt" 120
U_T0=$EPOCHREALTIME
# --hold 0: once every client has its answer, report and close. The server has been closing the
# earlier ones all along (keep-alive timeout), which is what let the later ones in.
spawn python3 "$SCRIPTS/idle_conns.py" --host "$HOST" --port "$EV_PORT" --count "$U_CLIENTS" \
  --timeout 90 --hold 0 >"$WORK/nofile-clients.txt" 2>&1
wait_exit "$SPAWNED" 100
U_SECS=$(calc "%.1f" "$EPOCHREALTIME - $U_T0" 1)
U_TICKS1=$(cpu_ticks "$U_PID")
U_CPU=$(calc "%.1f" "($U_TICKS1 - $U_TICKS0) * 100 / $CLK_TCK / ($EPOCHREALTIME - $U_T0)" 1)
U_OK=$(sed -n 's/^READY.* ok=\([0-9]*\).*/\1/p' "$WORK/nofile-clients.txt")
U_FAILED=$(sed -n 's/^READY.* failed=\([0-9]*\).*/\1/p' "$WORK/nofile-clients.txt")
U_STATUS=$(http_status "$EV_URL/plaintext")
wait_fds_at_most "$U_PID" "$U_BASE_FDS" $((TIMEOUT + 8)) || true
sleep 1
kill "$SAMPLER" 2>/dev/null || true
wait_exit "$SAMPLER" 2
U_AFTER_FDS=$(fd_count "$U_PID")
U_AFTER_RSS=$(rss_kb "$U_PID")
U_PEAK_FDS=$(column_max "$WORK/samples-U.txt" 3)
U_PEAK_RSS=$(column_max "$WORK/samples-U.txt" 2)
U_EMFILE=$(grep -c 'accept failed' "$WORK/nofile.log" || true)
U_ALIVE=$(alive "$U_PID" && echo 1 || echo 0)
grep -v '^READY\|^RESULT' "$WORK/nofile-clients.txt" | sed 's/^/  /' | tail -5 || true
printf '  %s of %s clients answered (%s failed) in %s s; server CPU %s%% of a core meanwhile\n' \
  "${U_OK:-0}" "$U_CLIENTS" "${U_FAILED:-?}" "$U_SECS" "$U_CPU"
printf '  server: fds %s / %s / %s, VmRSS %s / %s / %s KB; %s "accept failed" log lines; curl after: %s\n' \
  "$U_BASE_FDS" "$U_PEAK_FDS" "$U_AFTER_FDS" "$U_BASE_RSS" "$U_PEAK_RSS" "$U_AFTER_RSS" "$U_EMFILE" "$U_STATUS"
stop "$U_PID"
U_EXIT=$EXIT_STATUS
check "$(ok "$U_EMFILE" -gt 0)" "U. the descriptor limit was reached (EMFILE logged)" "$U_EMFILE lines"
check "$(ok "${U_OK:-0}" = "$U_CLIENTS")" "U. every client answered in the end" "${U_OK:-0} of $U_CLIENTS in $U_SECS s"
check "$(awk -v c="$U_CPU" -v l="$CPU_LIMIT_PCT" 'BEGIN { print (c + 0 <= l) ? 1 : 0 }')" \
  "U. no busy loop: server CPU <= $CPU_LIMIT_PCT% of a core" "$U_CPU%"
check "$(ok "$U_ALIVE" = 1 -a "$U_STATUS" = 200)" "U. alive, and a new curl answered 200" "$U_STATUS"
check "$(ok "$U_AFTER_FDS" -le $((U_BASE_FDS + 2)))" "U. open fds back to the baseline" \
  "$U_BASE_FDS before, $U_PEAK_FDS peak, $U_AFTER_FDS after"
check "$(ok "$U_EXIT" = 0)" "U. server exit status 0 after SIGTERM" "$U_EXIT"
ROWS+=("U ulimit -n $U_NOFILE|$U_CLIENTS clients|${U_OK:-0} answered in ${U_SECS}s|curl after: $U_STATUS|$U_BASE_RSS/$U_PEAK_RSS/$U_AFTER_RSS|$U_BASE_FDS/$U_PEAK_FDS/$U_AFTER_FDS|$U_CPU%")

# --- the report ------------------------------------------------------------------------------

section "summary ($MODE): timeouts ${TIMEOUT}s, --pool 2, $(nproc) cores; load average now $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-18s %-12s %-28s %-32s %-22s %-12s %s\n' attack "slow conns" "closed by the server" \
  "wrk -t1 -c$WRK_CONNS /plaintext" "VmRSS KB bef/peak/aft" "fds b/p/a" CPU
for line in "${ROWS[@]}"; do
  IFS='|' read -r a b c d e f g <<<"$line"
  printf '%-18s %-12s %-28s %-32s %-22s %-12s %s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g"
done
print_checks
print_logged

echo
if [ "$FAILED" = 1 ]; then
  echo "attack.sh $MODE: FAILED (a check above)"
  exit 1
fi
echo "attack.sh $MODE: passed"
