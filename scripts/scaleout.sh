#!/usr/bin/env bash
# shellcheck disable=SC2153 # W_*, FAILED and the like are set by common.sh's functions
# scripts/scaleout.sh — scale-out on one machine: several evloop hosts behind nginx, each host a
# network namespace of its own, with wrk as the clients. docs/SCALEOUT.md has the figure, the
# reasons for each nginx setting and the figures measured.
#
#   scripts/scaleout.sh         build the hosts, run the three checks, tear everything down
#                               (what `make scaleout` runs)
#   scripts/scaleout.sh clean   remove namespaces an earlier run left behind (after a
#                               `kill -9` of this script: every other exit cleans up itself)
#
# Topology: namespaces evl-so-h1 .. evl-so-hN (N = SCALEOUT_HOSTS, default 3), each holding one
# evloop on 10.77.0.1K:8888 (K = 1..N) behind a veth pair, and evl-so-lb holding the bridge the
# veths meet on (10.77.0.1/24), nginx (127.0.0.1:8080 inside that namespace, upstream = the
# hosts, scripts/nginx-scaleout.conf) and wrk. Nothing is reachable from outside the namespaces
# and no traffic leaves them.
#
#   1. spread: wrk -c64 GET /plaintext through nginx for SCALEOUT_SECONDS; each host's share
#      of the requests, from its own GET /metrics (evloop_requests_total, route /plaintext,
#      2xx) and from nginx's access log. A host below SCALEOUT_MIN_SHARE % (default 15 with 3
#      hosts) fails the run.
#   2. rolling restart: while wrk runs, restart each host in turn, the next one only when the
#      last is serving again. SCALEOUT_ROLLING picks how:
#        sighup   hosts run with --workers 2; SIGHUP makes the supervisor replace its worker
#                 processes one at a time, the listening socket never closed;
#        restart  hosts run one process; SIGTERM (the graceful drain: /readyz 503, in-flight
#                 requests answered, the listener closed), then a new process on the same
#                 address; nginx's passive checks and retries cover the gap;
#        auto     sighup when this evloop accepts --workers 2, else restart (the default).
#      Any non-2xx answer or socket error seen by wrk fails the run, and so does a
#      GET /sleep?ms=500 sent straight to the host (no nginx retry to hide its loss), in flight
#      when its restart begins, that is not answered 200.
#   3. SIGKILL: while wrk runs, kill every process of the last host with SIGKILL. wrk's errors
#      must not exceed the connections nginx had open to that host at that moment (an upper
#      bound on the requests in flight to it; with retries on, nginx re-sends those, so the
#      expected figure is 0), and after the kill the other hosts must answer every request.
#      Beside it, a second wrk sends GET /sleep?ms=100 through /noretry/ (the same upstream
#      with proxy_next_upstream off): its failures show what the retries hide. Reported, not
#      checked.
#
# At the end: a table of figures and the checks; the exit status is 1 when a check failed, 2
# when the run could not start. Everything the run created (processes, namespaces with their
# veths and bridge, temp files) is removed on any exit, Ctrl-C included.
#
# Needs root (network namespaces), ip (iproute2), ss, nginx, wrk, curl, flock.
#
# Environment: EVLOOP (the binary, default ./evloop), SCALEOUT_SECONDS (seconds of load in steps
# 1 and 3, default 10: about 35 s in all; 5: about 25 s), SCALEOUT_HOSTS (2 to 9, default 3),
# SCALEOUT_MIN_SHARE (percent, default 45 / hosts), SCALEOUT_ROLLING (auto, sighup or restart),
# SCALEOUT_CONNECTIONS (wrk's connections, default 64), NGINX (default: the one on PATH).

set -euo pipefail

NAME=scaleout.sh
PREFIX=evl-so            # every namespace this script creates is named $PREFIX-...
LB_NS=$PREFIX-lb
SUBNET=10.77.0           # the hosts' network, private to the namespaces
LB_ADDR=$SUBNET.1        # the bridge, in the lb namespace
PORT=8888                # each host's evloop, on its own address
LB_LISTEN=127.0.0.1:8080 # nginx, inside the lb namespace (wrk runs there too)
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")

# ours: the namespaces named like ours that exist now.
ours() {
  ip netns list 2>/dev/null | awk '{ print $1 }' | grep -E "^$PREFIX-(lb|h[0-9]+)\$" || true
}

# kill_in_ns NS SIGNAL: send SIGNAL to every process in namespace NS.
kill_in_ns() {
  local pid
  for pid in $(ip netns pids "$1" 2>/dev/null); do
    kill "-$2" "$pid" 2>/dev/null || true
  done
}

# remove_ns NS...: kill what still runs in each namespace, then delete it (its veths and the
# bridge go with it).
remove_ns() {
  local ns _i
  for ns in "$@"; do
    kill_in_ns "$ns" KILL
    for _i in $(seq 50); do
      [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break
      sleep 0.1
    done
    ip netns del "$ns" 2>/dev/null || echo "$NAME: could not delete namespace $ns" >&2
  done
}

if [ "$(id -u)" != 0 ]; then
  echo "$NAME: needs root (it creates network namespaces)" >&2
  exit 2
fi
for tool in ip ss flock; do
  if ! command -v "$tool" >/dev/null; then
    echo "$NAME: $tool is not installed (apt-get install iproute2 util-linux)" >&2
    exit 2
  fi
done

# One run at a time: the lock is this file itself, held (fd 9) until the script exits. The
# processes it starts in the background do not inherit fd 9, so that after a `kill -9` of the
# script, `clean` can take the lock while what it left still runs (its foreground commands do,
# a sleep for example: `clean` waits for them).
exec 9<"$SELF"
case "${1:-run}" in
  run)
    if ! flock -n 9; then
      echo "$NAME: another run of $SELF is in progress" >&2
      exit 2
    fi
    ;;
  clean)
    if ! flock -w 15 9; then
      echo "$NAME: another run of $SELF is in progress" >&2
      exit 2
    fi
    stale=$(ours)
    if [ -n "$stale" ]; then
      echo "$NAME: removing $(echo "$stale" | tr '\n' ' ')"
      # shellcheck disable=SC2086 # a list of names
      remove_ns $stale
    fi
    # The scratch directories of runs that could not remove their own (common.sh names them).
    for dir in "${TMPDIR:-/tmp}"/"$NAME".*; do
      if [ -d "$dir" ]; then
        echo "$NAME: removing $dir"
        rm -rf "$dir"
      fi
    done
    exit 0
    ;;
  *)
    echo "usage: $0 [run|clean]" >&2
    exit 2
    ;;
esac

stale=$(ours)
if [ -n "$stale" ]; then
  echo "$NAME: namespaces from an earlier run exist: $(echo "$stale" | tr '\n' ' ')" >&2
  echo "$NAME: \`$0 clean\` removes them" >&2
  exit 2
fi

# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"
need wrk curl
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
if [ ! -x "$NGINX" ]; then
  echo "$NAME: nginx is not installed (apt-get install nginx-light)" >&2
  exit 2
fi

SECS=${SCALEOUT_SECONDS:-10}
HOSTS=${SCALEOUT_HOSTS:-3}
CONNS=${SCALEOUT_CONNECTIONS:-64}
ROLLING=${SCALEOUT_ROLLING:-auto}
if ! [[ $SECS =~ ^[0-9]+$ && $SECS -ge 2 ]]; then
  echo "$NAME: SCALEOUT_SECONDS=$SECS: a whole number of seconds, 2 or more" >&2
  exit 2
fi
if ! [[ $HOSTS =~ ^[2-9]$ ]]; then
  echo "$NAME: SCALEOUT_HOSTS=$HOSTS: 2 to 9" >&2
  exit 2
fi
if ! [[ $CONNS =~ ^[0-9]+$ && $CONNS -ge 1 ]]; then
  echo "$NAME: SCALEOUT_CONNECTIONS=$CONNS: a positive number" >&2
  exit 2
fi
MIN_SHARE=${SCALEOUT_MIN_SHARE:-$(calc "%.1f" "45 / $HOSTS" 1)}

# Whether this evloop runs --workers 2 (a supervisor and two worker processes): it refuses the
# value at parse time when not, which --version lets us ask without starting a server.
SIGHUP_OK=0
if "$EVLOOP" --workers 2 --version >/dev/null 2>&1; then
  SIGHUP_OK=1
fi
case "$ROLLING" in
  auto) if [ "$SIGHUP_OK" = 1 ]; then ROLLING=sighup; else ROLLING=restart; fi ;;
  sighup)
    if [ "$SIGHUP_OK" = 0 ]; then
      echo "$NAME: SCALEOUT_ROLLING=sighup, but $EVLOOP does not accept --workers 2" >&2
      exit 2
    fi
    ;;
  restart) ;;
  *)
    echo "$NAME: SCALEOUT_ROLLING=$ROLLING: auto, sighup or restart" >&2
    exit 2
    ;;
esac
WORKERS=1
if [ "$ROLLING" = sighup ]; then
  WORKERS=2
fi

# Keep-alive on the hosts' side, and nginx's for its idle upstream connections: nginx must
# close an idle connection before evloop does (scripts/nginx-scaleout.conf says why).
EV_KEEPALIVE_S=5
NG_KEEPALIVE_S=4
# Passive health checks (scripts/nginx-scaleout.conf says why these values).
MAX_FAILS=1
FAIL_TIMEOUT_S=2

# --- cleanup ---------------------------------------------------------------------------------

CREATED_NS=() # the namespaces this run created, and only those, are deleted on exit

scaleout_cleanup() {
  set +e
  trap '' INT TERM # a second Ctrl-C must not cut the cleanup short
  local ns
  # Every process in our namespaces gets SIGTERM at once (worker processes of a supervisor
  # included), then common.sh's cleanup reaps the ones we started (SIGKILL after 5 s) and
  # removes $WORK; whatever is left in the namespaces is killed with them.
  for ns in "${CREATED_NS[@]}"; do
    kill_in_ns "$ns" TERM
  done
  cleanup
  if [ "${#CREATED_NS[@]}" -gt 0 ]; then
    remove_ns "${CREATED_NS[@]}"
  fi
}
trap scaleout_cleanup EXIT

# --- the network -----------------------------------------------------------------------------

ADDR=() # ADDR[K]: host K's address
for k in $(seq "$HOSTS"); do
  ADDR[k]=$SUBNET.$((10 + k))
done

# new_ns NS: create namespace NS with its loopback up. `ip netns add` fails if NS exists, so
# a run that lost a race with another never deletes what it did not create.
new_ns() {
  ip netns add "$1"
  CREATED_NS+=("$1")
  ip -n "$1" link set lo up
}

# in_lb COMMAND...: run COMMAND in the load balancer's namespace.
in_lb() { ip netns exec "$LB_NS" "$@"; }

build_network() {
  local k
  new_ns "$LB_NS"
  ip -n "$LB_NS" link add br0 type bridge
  ip -n "$LB_NS" addr add "$LB_ADDR/24" dev br0
  ip -n "$LB_NS" link set br0 up
  for k in $(seq "$HOSTS"); do
    new_ns "$PREFIX-h$k"
    # One veth pair per host: "hK" on the bridge in the lb namespace, "eth0" in the host's.
    # Both ends are created inside our namespaces, never in the machine's own.
    ip -n "$LB_NS" link add "h$k" type veth peer name eth0 netns "$PREFIX-h$k"
    ip -n "$LB_NS" link set "h$k" master br0 up
    ip -n "$PREFIX-h$k" addr add "${ADDR[k]}/24" dev eth0
    ip -n "$PREFIX-h$k" link set eth0 up
  done
}

# --- the hosts -------------------------------------------------------------------------------

HOST_PID=() # HOST_PID[K]: host K's evloop (the supervisor, with --workers 2)

# host_get K PATH: GET PATH from host K, from the lb namespace (empty when it fails).
host_get() {
  in_lb curl -s --max-time 2 "http://${ADDR[$1]}:$PORT$2" || true
}

# host_status K PATH: the status of GET PATH on host K (000 when nothing answered).
host_status() {
  in_lb curl -s -o /dev/null --max-time 2 -w '%{http_code}' "http://${ADDR[$1]}:$PORT$2" || true
}

# host_metric K PATTERN: the sum of the samples in host K's /metrics whose line matches the
# awk pattern PATTERN. With --workers 2 any process's /metrics shows every process's series,
# each with a pid label (the others' as they were up to a second ago), so the sum is the host's.
host_metric() {
  host_get "$1" /metrics | awk "$2"' { n += $NF } END { printf "%d\n", n }'
}

# host_served K: the /plaintext 2xx answers host K counted.
host_served() {
  host_metric "$1" '/^evloop_requests_total\{/ && /route="\/plaintext"/ && /status="2xx"/'
}

# host_accepted K: the connections host K accepted.
host_accepted() {
  host_metric "$1" '/^evloop_connections_accepted_total[{ ]/'
}

# start_host K: start host K's evloop (its output appended to $WORK/hK.out and .log, so a
# restarted host keeps one log) and wait until it says it is ready (its start-up hooks done:
# "evloop ready on http://...", once all its processes are, with --workers 2) and answers
# /readyz 200.
start_host() {
  local k=$1 ns=$PREFIX-h$1 before _i
  before=$(grep -c 'ready on http' "$WORK/h$k.out" 2>/dev/null || true)
  ip netns exec "$ns" "$EVLOOP" --host "${ADDR[k]}" --port "$PORT" --pool 1 \
    --keep-alive-timeout "$EV_KEEPALIVE_S" --workers "$WORKERS" \
    >>"$WORK/h$k.out" 2>>"$WORK/h$k.log" 9<&- &
  HOST_PID[k]=$!
  PIDS+=("${HOST_PID[k]}")
  for _i in $(seq 200); do
    if [ "$(grep -c 'ready on http' "$WORK/h$k.out" 2>/dev/null || true)" -gt "${before:-0}" ] &&
      [ "$(host_status "$k" /readyz)" = 200 ]; then
      return 0
    fi
    alive "${HOST_PID[k]}" || break
    sleep 0.05
  done
  echo "$NAME: evloop on host $k did not start:" >&2
  tail -5 "$WORK/h$k.out" "$WORK/h$k.log" >&2
  exit 1
}

# wait_serving K SECONDS: wait until host K's new process (or, with --workers 2, the new worker
# answering the scrape) has answered a /plaintext: a fresh process counts from 0, so a count
# above 0 means nginx sends it requests. Sets ROTATION_S, the seconds that took, or "never".
wait_serving() {
  local k=$1 t0=$EPOCHREALTIME _i
  for _i in $(seq $(($2 * 10))); do
    if [ "$(host_served "$k")" -gt 0 ]; then
      ROTATION_S=$(calc "%.1f" "$EPOCHREALTIME - $t0" 1)
      return 0
    fi
    sleep 0.1
  done
  ROTATION_S=never
  return 1
}

# --- nginx -----------------------------------------------------------------------------------

NG_DIR=$WORK/nginx

start_nginx() {
  local conf user_line='' extra='' module servers='' k _i
  mkdir -p "$NG_DIR"
  if [ "$(id -u)" = 0 ]; then
    user_line="user root;"
  fi
  for module in scgi uwsgi; do
    "$NGINX" -V 2>&1 | grep -q -- "--without-http_${module}_module" ||
      extra+="${module}_temp_path $NG_DIR/$module; "
  done
  for k in $(seq "$HOSTS"); do
    servers+="server ${ADDR[k]}:$PORT max_fails=$MAX_FAILS fail_timeout=${FAIL_TIMEOUT_S}s;"$'\n        '
  done
  conf=$(<"$SCRIPTS/nginx-scaleout.conf")
  conf=${conf//@USER@/$user_line}
  conf=${conf//@DIR@/$NG_DIR}
  conf=${conf//@EXTRA_TEMP_PATHS@/$extra}
  conf=${conf//@LISTEN@/$LB_LISTEN}
  conf=${conf//@SERVERS@/$servers}
  conf=${conf//@UPSTREAM_KEEPALIVE_TIMEOUT@/${NG_KEEPALIVE_S}s}
  conf=${conf//@TRIES@/$HOSTS}
  printf '%s\n' "$conf" >"$NG_DIR/nginx.conf"
  if ! in_lb "$NGINX" -t -q -p "$NG_DIR" -c "$NG_DIR/nginx.conf" -e "$NG_DIR/nginx-error.log" 2>"$NG_DIR/test.txt"; then
    echo "$NAME: nginx rejects $NG_DIR/nginx.conf:" >&2
    cat "$NG_DIR/test.txt" >&2
    exit 1
  fi
  ip netns exec "$LB_NS" "$NGINX" -p "$NG_DIR" -c "$NG_DIR/nginx.conf" -e "$NG_DIR/nginx-error.log" \
    >"$NG_DIR/stdout" 2>&1 9<&- &
  NG_PID=$!
  PIDS+=("$NG_PID")
  for _i in $(seq 100); do
    alive "$NG_PID" || break
    if [ "$(in_lb curl -s -o /dev/null --max-time 2 -w '%{http_code}' "http://$LB_LISTEN/plaintext" || true)" = 200 ]; then
      return 0
    fi
    sleep 0.05
  done
  echo "$NAME: nginx did not start:" >&2
  cat "$NG_DIR/stdout" "$NG_DIR/nginx-error.log" >&2 2>/dev/null
  exit 1
}

# flush_access_log: nginx writes its buffered access log a second after the last write; wait
# for that, so that what we read is complete.
flush_access_log() {
  sleep 1.5
}

# tally FROM TO URI: from nginx's access log, the requests for URI that ended between the
# epoch times FROM and TO. Sets T (an associative array): total, ok (200), failed (any other
# status), retried (tried on more than one host), gone (499: the client closed its connection
# first, as wrk does with the requests it has in flight when it stops; not counted in the
# others), and per host K: served_K (answered 200 by host K), tried_K (attempts sent to K),
# failed_K (attempts at K that failed).
declare -A T
tally() {
  local key value
  T=()
  while read -r key value; do
    T[$key]=$value
  done < <(awk -F'|' -v from="$1" -v to="$2" -v uri="$3" -v subnet="$SUBNET." -v hosts="$HOSTS" '
    function host(a) { sub(/:.*/, "", a); sub(subnet, "", a); return a - 10 }
    $1 >= from && $1 < to && $5 == uri && $2 == 499 { gone++ }
    $1 >= from && $1 < to && $5 == uri && $2 != 499 {
      total++
      if ($2 == 200) ok++; else failed++
      n = split($3, addr, ", "); split($4, st, ", ")
      if (n > 1) retried++
      for (i = 1; i <= n; i++) {
        h = host(addr[i]); tried[h]++
        if (st[i] !~ /^2/) fail[h]++
      }
      if ($2 == 200) served[host(addr[n])]++
    }
    END {
      printf "total %d\nok %d\nfailed %d\nretried %d\ngone %d\n", total, ok, failed, retried, gone
      for (k = 1; k <= hosts; k++)
        printf "served_%d %d\ntried_%d %d\nfailed_%d %d\n", k, served[k], k, tried[k], k, fail[k]
    }' "$NG_DIR/access.log")
}

# --- wrk -------------------------------------------------------------------------------------

# start_wrk TAG CONNECTIONS PATH: wrk in the lb namespace against nginx, until stop_wrk (or an
# hour); its output in $WORK/wrk-TAG.txt. Sets WRK_PID.
start_wrk() {
  spawn ip netns exec "$LB_NS" wrk -t1 -c"$2" -d3600s "http://$LB_LISTEN$3" >"$WORK/wrk-$1.txt" 2>&1 9<&-
  WRK_PID=$SPAWNED
}

# stop_wrk PID TAG: SIGINT makes wrk stop and print its summary as for a run of that length;
# then parse it (common.sh's parse_wrk: W_REQS W_RPS W_NON2XX W_ERRS), and W_MAX (the largest
# latency, as wrk prints it).
stop_wrk() {
  kill -INT "$1" 2>/dev/null || true
  wait_exit "$1" 10
  parse_wrk "$WORK/wrk-$2.txt"
  W_MAX=$(awk '$1 == "Latency" { print $4 }' "$WORK/wrk-$2.txt")
  W_MAX=${W_MAX:-n/a}
}

# --- the report ------------------------------------------------------------------------------

ROWS=() # "step|measure|value"
row() { ROWS+=("$1|$2|$3"); }

# shares PREFIX: "a% / b% / c%" of T[PREFIX_K] over the hosts.
shares() {
  local k sum=0 out=''
  for k in $(seq "$HOSTS"); do sum=$((sum + ${T[${1}_$k]:-0})); done
  for k in $(seq "$HOSTS"); do
    out+="${out:+ / }$(calc "%.1f%%" "${T[${1}_$k]:-0} * 100 / $sum" "$sum")"
  done
  echo "$out"
}

# --- start -----------------------------------------------------------------------------------

echo "evloop scale-out: $("$EVLOOP" --version 2>/dev/null || echo evloop), $HOSTS hosts behind $("$NGINX" -v 2>&1 | sed 's|.*: ||'), $(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }'), $(nproc) cores shared by everything"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); ${SECS}s of load per step; rolling restart: $ROLLING"

build_network
for k in $(seq "$HOSTS"); do
  start_host "$k"
done
start_nginx
echo "hosts: $(for k in $(seq "$HOSTS"); do printf '%s-h%s %s:%s (pid %s)  ' "$PREFIX" "$k" "${ADDR[k]}" "$PORT" "${HOST_PID[k]}"; done)"
echo "nginx: $LB_NS $LB_LISTEN (pid $NG_PID); evloop --pool 1 --workers $WORKERS --keep-alive-timeout $EV_KEEPALIVE_S; upstream keepalive_timeout ${NG_KEEPALIVE_S}s, max_fails=$MAX_FAILS fail_timeout=${FAIL_TIMEOUT_S}s"
check "$(ok "$NG_KEEPALIVE_S" -lt "$EV_KEEPALIVE_S")" "nginx closes idle upstream connections before evloop" \
  "keepalive_timeout ${NG_KEEPALIVE_S}s < --keep-alive-timeout ${EV_KEEPALIVE_S}s"

# --- 1. spread -------------------------------------------------------------------------------

section "1. spread: wrk -t1 -c$CONNS GET /plaintext through nginx for ${SECS}s"
declare -a M0 M1 A0 A1
for k in $(seq "$HOSTS"); do M0[k]=$(host_served "$k") A0[k]=$(host_accepted "$k"); done
t0=$EPOCHREALTIME
start_wrk spread "$CONNS" /plaintext
sleep "$SECS"
stop_wrk "$WRK_PID" spread
t1=$EPOCHREALTIME
# (after the access log's flush: with --workers 2, a scrape shows the other processes' counts
# as they were up to a second ago)
flush_access_log
for k in $(seq "$HOSTS"); do M1[k]=$(host_served "$k") A1[k]=$(host_accepted "$k"); done
tally "$t0" "$t1" /plaintext
SPREAD_RPS=$W_RPS
printf '  wrk: %s requests, %s req/s, %s non-2xx, %s socket errors, max latency %s\n' \
  "$W_REQS" "$W_RPS" "$W_NON2XX" "$W_ERRS" "$W_MAX"
m_sum=0 a_sum=0
for k in $(seq "$HOSTS"); do
  m_sum=$((m_sum + M1[k] - M0[k]))
  a_sum=$((a_sum + A1[k] - A0[k] - 1)) # less the scrape's own connection
done
SHARES_SPREAD='' PCTS=''
for k in $(seq "$HOSTS"); do
  n=$((M1[k] - M0[k]))
  share=$(calc "%.1f" "$n * 100 / $m_sum" "$m_sum")
  printf '  %s-h%s: %7s answered (its /metrics), %7s (nginx log): %5s%%\n' "$PREFIX" "$k" "$n" \
    "${T[served_$k]}" "$share"
  SHARES_SPREAD+="${SHARES_SPREAD:+ / }$share%"
  PCTS+=" $share"
done
PER_CONN=$(calc "%.0f" "$m_sum / $a_sum" "$a_sum")
CONN_ROW="$a_sum ($PER_CONN)"
printf '  connections nginx opened to the hosts meanwhile: %s (%s requests per connection)\n' \
  "$a_sum" "$PER_CONN"
# The smallest share ("n/a", when nothing was counted, as 0).
SHARE_MIN=$(echo "$PCTS" | awk '{ m = 100; for (i = 1; i <= NF; i++) if ($i + 0 < m) m = $i + 0; print m }')
row 1 "req/s through nginx (wrk -c$CONNS /plaintext)" "$SPREAD_RPS"
row 1 "share per host (h1 / h2 / ...)" "$SHARES_SPREAD"
row 1 "connections opened to the hosts (requests each)" "$CONN_ROW"
check "$(ok "$W_REQS" -gt 0 -a "$W_NON2XX" = 0 -a "$W_ERRS" = 0)" "1. spread: every request answered 2xx" \
  "$W_REQS requests, $W_NON2XX non-2xx, $W_ERRS socket errors"
check "$(awk -v a="$SHARE_MIN" -v b="$MIN_SHARE" 'BEGIN { print (a + 0 >= b + 0) ? 1 : 0 }')" \
  "1. spread: every host got at least $MIN_SHARE% of the requests" "smallest share $SHARE_MIN%"

# --- 2. rolling restart ----------------------------------------------------------------------

# roll_sighup K: SIGHUP to host K's supervisor; wait until every worker process it had is
# gone and WORKERS new ones run and the host answers /readyz 200. Sets RESTART_S and RESTART_OK.
roll_sighup() {
  local k=$1 sup=${HOST_PID[$1]} old new p t0=$EPOCHREALTIME _i gone
  old=$(pgrep -P "$sup" | sort || true)
  RESTART_OK=0
  kill -HUP "$sup"
  for _i in $(seq 600); do
    sleep 0.1
    alive "$sup" || break
    gone=1
    for p in $old; do
      if alive "$p"; then gone=0; fi
    done
    new=$(pgrep -P "$sup" | wc -l)
    if [ "$gone" = 1 ] && [ "$new" -ge "$WORKERS" ] && [ "$(host_status "$k" /readyz)" = 200 ]; then
      RESTART_OK=1
      break
    fi
  done
  RESTART_S=$(calc "%.1f" "$EPOCHREALTIME - $t0" 1)
  RESTART_WHAT="workers $(echo "$old" | tr '\n' , | sed 's/,$//') -> $(pgrep -P "$sup" | sort | tr '\n' ',' | sed 's/,$//')"
}

# roll_restart K: SIGTERM to host K's evloop (the drain), wait for its exit, start a new one.
# Sets RESTART_S (from SIGTERM to the new process answering /readyz), RESTART_OK (the old one
# exited 0) and RESTART_WHAT.
roll_restart() {
  local k=$1 old=${HOST_PID[$1]} t0=$EPOCHREALTIME
  kill -TERM "$old"
  wait_exit "$old" 35
  RESTART_OK=$(ok "$EXIT_STATUS" = 0)
  start_host "$k"
  RESTART_S=$(calc "%.1f" "$EPOCHREALTIME - $t0" 1)
  RESTART_WHAT="pid $old (exit $EXIT_STATUS) -> ${HOST_PID[k]}"
}

if [ "$ROLLING" = sighup ]; then
  section "2. rolling restart under load: SIGHUP to each host's supervisor in turn (--workers $WORKERS)"
else
  section "2. rolling restart under load: each host in turn drained (SIGTERM) and started again"
fi
t0=$EPOCHREALTIME
start_wrk rolling "$CONNS" /plaintext
sleep 1
RESTARTS_OK=1 RESTART_TIMES='' PROBES='' PROBES_OK=1
for k in $(seq "$HOSTS"); do
  # A request in flight when the restart begins, sent straight to the host (not through nginx,
  # whose retries would hide its loss): the drain must answer it.
  spawn ip netns exec "$LB_NS" curl -s -o /dev/null -D "$WORK/probe-h$k.head" -w '%{http_code}' \
    --max-time 10 "http://${ADDR[k]}:$PORT/sleep?ms=500" >"$WORK/probe-h$k.code" 9<&-
  probe=$SPAWNED
  sleep 0.2
  "roll_$ROLLING" "$k"
  wait_exit "$probe" 10
  probe_code=$(cat "$WORK/probe-h$k.code" 2>/dev/null || true)
  probe_close=''
  if grep -qi '^connection: *close' "$WORK/probe-h$k.head" 2>/dev/null; then
    probe_close=' with Connection: close'
  fi
  [ "$probe_code" = 200 ] || PROBES_OK=0
  PROBES+="${PROBES:+ / }${probe_code:-none}"
  wait_serving "$k" $((FAIL_TIMEOUT_S + 8)) || RESTART_OK=0
  printf '  %s-h%s: %s; %ss to restart, serving requests from nginx %ss later; the /sleep?ms=500 in flight: %s%s\n' \
    "$PREFIX" "$k" "$RESTART_WHAT" "$RESTART_S" "$ROTATION_S" "${probe_code:-none}" "$probe_close"
  RESTART_TIMES+="${RESTART_TIMES:+ / }${RESTART_S}s"
  [ "$RESTART_OK" = 1 ] || RESTARTS_OK=0
done
sleep 1
stop_wrk "$WRK_PID" rolling
t1=$EPOCHREALTIME
flush_access_log
tally "$t0" "$t1" /plaintext
ROLL_ERRS=$((W_NON2XX + W_ERRS))
printf '  wrk: %s requests, %s req/s, %s non-2xx, %s socket errors, max latency %s\n' \
  "$W_REQS" "$W_RPS" "$W_NON2XX" "$W_ERRS" "$W_MAX"
printf '  nginx: %s requests, %s retried on another host, %s failed; failed attempts per host: %s\n' \
  "${T[total]}" "${T[retried]}" "${T[failed]}" \
  "$(for k in $(seq "$HOSTS"); do printf '%s ' "${T[failed_$k]}"; done)"
row 2 "rolling restart ($ROLLING): errors seen by wrk" "$ROLL_ERRS of $W_REQS"
row 2 "  retried by nginx on another host" "${T[retried]}"
row 2 "  req/s meanwhile; max latency" "$W_RPS; $W_MAX"
row 2 "  time per host to restart" "$RESTART_TIMES"
check "$RESTARTS_OK" "2. every host restarted and back in rotation" "$RESTART_TIMES"
check "$PROBES_OK" "2. each host answered the request in flight at its restart" "$PROBES"
check "$(ok "$W_REQS" -gt 0 -a "$ROLL_ERRS" = 0)" "2. rolling restart: no request failed" \
  "$W_REQS requests, $W_NON2XX non-2xx, $W_ERRS socket errors"

# --- 3. SIGKILL ------------------------------------------------------------------------------

V=$HOSTS # the victim: the last host
section "3. SIGKILL of every process of $PREFIX-h$V under load; beside it /noretry/sleep?ms=100 (no retries)"
t0=$EPOCHREALTIME
start_wrk kill "$CONNS" /plaintext
WRK_A=$WRK_PID
start_wrk noretry 12 "/noretry/sleep?ms=100"
WRK_B=$WRK_PID
sleep "$(calc "%.1f" "$SECS / 2" 1)"
# What nginx had open to the victim just before the kill (idle keep-alive connections included:
# an upper bound on the requests in flight there), and what the victim itself had in hand: its
# connections waiting for an answer (the /sleep timers) or writing one.
CONNS_OPEN=$(in_lb ss -Htn state established dst "${ADDR[V]}:$PORT" | wc -l)
IN_HAND=$(host_metric "$V" '/^evloop_connections\{/ && /state="(waiting|writing)"/')
# Out of the shell's job table first, so that its death is not announced ("Killed") in the
# middle of the output; the shell still reaps it.
disown "${HOST_PID[V]}" 2>/dev/null || true
forget_pid "${HOST_PID[V]}"
t_kill=$EPOCHREALTIME
kill_in_ns "$PREFIX-h$V" KILL
for _i in $(seq 50); do
  alive "${HOST_PID[V]}" || break
  sleep 0.1
done
sleep "$(calc "%.1f" "$SECS / 2" 1)"
stop_wrk "$WRK_B" noretry
B_REQS=$W_REQS B_NON2XX=$W_NON2XX B_ERRS=$W_ERRS
stop_wrk "$WRK_A" kill
t1=$EPOCHREALTIME
KILL_ERRS=$((W_NON2XX + W_ERRS))
flush_access_log
tally "$t0" "$t_kill" /plaintext
SHARES_BEFORE=$(shares served)
BEFORE_RPS=$(calc "%.0f" "${T[total]} / ($t_kill - $t0)" 1)
# The requests retried elsewhere from the kill on: those in flight at the victim, those nginx
# sent on its connections before it saw them close, and its probes of the dead host.
tally "$t_kill" "$t1" /plaintext
KILL_RETRIED=${T[retried]}
# Requests that ended after the kill (one the victim answered just before it died can be logged
# a moment later: 50 ms of margin).
tally "$(calc "%.3f" "$t_kill + 0.05" 1)" "$t1" /plaintext
SHARES_AFTER=$(shares served)
AFTER_TOTAL=${T[total]} AFTER_OK=${T[ok]}
AFTER_VICTIM=${T[served_$V]} AFTER_VICTIM_TRIED=${T[tried_$V]}
AFTER_RPS=$(calc "%.0f" "$AFTER_TOTAL / ($t1 - $t_kill - 0.05)" 1)
tally "$t0" "$t1" /sleep
B_FAILED=${T[failed]}
printf '  nginx had %s connections open to %s-h%s when it was killed; the host had %s requests in hand\n' \
  "$CONNS_OPEN" "$PREFIX" "$V" "$IN_HAND"
printf '  wrk /plaintext: %s requests, %s req/s, %s non-2xx, %s socket errors, max latency %s\n' \
  "$W_REQS" "$W_RPS" "$W_NON2XX" "$W_ERRS" "$W_MAX"
printf '  nginx retried %s requests on another host from the kill on\n' "$KILL_RETRIED"
printf '  before the kill: %s req/s, shares %s\n' "$BEFORE_RPS" "$SHARES_BEFORE"
printf '  after the kill:  %s req/s, shares %s; %s of %s answered 200; %s attempts still sent to h%s (retried)\n' \
  "$AFTER_RPS" "$SHARES_AFTER" "$AFTER_OK" "$AFTER_TOTAL" "$AFTER_VICTIM_TRIED" "$V"
printf '  wrk /noretry/sleep?ms=100: %s requests, %s non-2xx, %s socket errors (nginx: %s failed)\n' \
  "$B_REQS" "$B_NON2XX" "$B_ERRS" "$B_FAILED"
row 3 "SIGKILL h$V: errors seen by wrk (/plaintext)" "$KILL_ERRS of $W_REQS"
row 3 "  connections nginx had open to h$V" "$CONNS_OPEN ($IN_HAND requests in hand at h$V)"
row 3 "  retried by nginx on another host" "$KILL_RETRIED"
row 3 "  shares before the kill" "$SHARES_BEFORE"
row 3 "  shares after the kill" "$SHARES_AFTER"
row 3 "  req/s before / after the kill" "$BEFORE_RPS / $AFTER_RPS"
row 3 "  without retries (/noretry/sleep): failed" "$((B_NON2XX + B_ERRS)) of $B_REQS"
check "$(ok "$W_REQS" -gt 0 -a "$KILL_ERRS" -le "$CONNS_OPEN")" \
  "3. SIGKILL: errors at most the connections open to it" "$KILL_ERRS errors, $CONNS_OPEN connections"
check "$(ok "$AFTER_TOTAL" -gt 0 -a "$AFTER_OK" = "$AFTER_TOTAL" -a "$AFTER_VICTIM" = 0)" \
  "3. after the kill the other hosts answered every request" \
  "$AFTER_OK of $AFTER_TOTAL answered 200, $AFTER_VICTIM by h$V"

# --- the end ---------------------------------------------------------------------------------

# The surviving hosts drain; their exit status is reported, not checked.
for k in $(seq "$((HOSTS - 1))"); do
  stop "${HOST_PID[k]}"
  [ "$EXIT_STATUS" = 0 ] || echo "  ($PREFIX-h$k exited with status $EXIT_STATUS)"
done
stop "$NG_PID"

section "figures: $HOSTS hosts on $(nproc) shared cores (spread, not total throughput, is the point); load average now $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-2s %-48s %s\n' "" "measure" "value"
for line in "${ROWS[@]}"; do
  IFS='|' read -r s m v <<<"$line"
  printf '%-2s %-48s %s\n' "$s" "$m" "$v"
done

print_checks
print_logged
NG_LOGGED=$(sed -n 's/^[0-9/]* [0-9:]* \[\([a-z]*\)\] [0-9#]*: \*[0-9]* \([^,]*\).*/\1 \2/p' "$NG_DIR/nginx-error.log" 2>/dev/null |
  sed 's/[0-9][0-9]*/N/g' | sort | uniq -c | sort -rn | head -8 || true)
if [ -n "$NG_LOGGED" ]; then
  section "nginx error log, whole run (count, message)"
  echo "$NG_LOGGED"
fi

echo
if [ "$FAILED" = 1 ]; then
  echo "$NAME: FAILED (a check above)"
  exit 1
fi
echo "$NAME: passed"
