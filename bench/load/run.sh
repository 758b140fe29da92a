#!/usr/bin/env bash
# Load harness (DESIGN §10): real Envoy in front of a small upstream, with, in
# turn, (a) a no-op ext_proc server (bench/src/bin/noop_extproc.rs: every
# message answered CONTINUE, the ceiling of any ext_proc engine), (b)
# policy-kernel with the agent core embedded (`--embedded-agent`, no socket
# hop), (c) policy-kernel + policy-agent over a Unix socket (the split mode
# of deploy/) with no decision journal, and (d) the split mode with every
# decision recorded: the agent's local log and
# policy-journal (sled) over mutual TLS, as `policyctl up` runs it. wrk drives
# `/api/v1/users` with a valid demo API key through the same Envoy config; the
# script prints req/s, p50, p99 and the peak RSS of the ext_proc side for each
# setup (the journal's RSS not included), and the ratios to the no-op measured
# in the same run; then the machine's CPU per request split into the ext_proc
# side and the rest, and what the throughput targets leave the ext_proc side
# on this machine.
#
#   bench/load/run.sh [--duration 10s] [--warmup 3s] [--connections 32]
#                     [--threads 2] [--rounds 1] [--envoy-concurrency N]
#                     [--setups "noop embedded kernel journal"]
#                     [--pin] [--no-build] [--keep]
#
# --setups runs only the listed setups (the no-op is always measured first:
# every ratio is to it). --pin gives the ext_proc side (no-op server, kernel,
# agent, journal) the last core and wrk, Envoy and the upstream the others,
# as a sidecar with a CPU of its own runs (Envoy's --concurrency defaults to
# the cores it gets). With a long --duration it is the memory-leak soak:
# the report adds each process's RSS at the start and the end of the run.
#
# Everything listens on 127.0.0.1 on free ports (except the kernel's
# /metrics + /health listener, which always binds all interfaces); every
# process started here is stopped on exit (trap). Needs envoy (ENVOY_BIN to override), wrk, curl,
# python3. See bench/README.md, "Load harness".
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL="$ROOT/deploy/local"
ROUTE=/api/v1/users
API_KEY=demo-key-alice            # deploy/local/data (stored there as SHA-256)
BIG=1000000000                    # rate limit for the run: 10^9/s, burst 10^9

DURATION=10s
WARMUP=3s
CONNECTIONS=32
THREADS=2
ROUNDS=1
ENVOY_CONCURRENCY=""
PIN=0
SETUPS="noop embedded kernel journal"
BUILD=1
KEEP=0

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --envoy-concurrency) ENVOY_CONCURRENCY=$2; shift 2 ;;
    --setups) SETUPS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    --pin) PIN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done

# CPU placement: with --pin, the ext_proc side on the last core, the rest on
# the others (taskset execs the command, so the recorded pids stay right).
SIDE=()
REST=()
if ((PIN)); then
  NCPU=$(nproc)
  ((NCPU >= 2)) || { echo "run.sh: --pin needs at least 2 cores" >&2; exit 2; }
  command -v taskset >/dev/null || { echo "run.sh: --pin needs taskset (util-linux)" >&2; exit 2; }
  SIDE=(taskset -c "$((NCPU - 1))")
  REST=(taskset -c "0-$((NCPU - 2))")
  ENVOY_CONCURRENCY=${ENVOY_CONCURRENCY:-$((NCPU - 1))}
fi
ENVOY_CONCURRENCY=${ENVOY_CONCURRENCY:-$(nproc)}
if ((PIN)); then
  PLACEMENT="the ext_proc side pinned to core $((NCPU - 1)), wrk, Envoy and the upstream to cores 0-$((NCPU - 2))"
else
  PLACEMENT="$(nproc) cores shared by wrk, Envoy, the upstream and the ext_proc side"
fi

ENVOY=${ENVOY_BIN:-envoy}
for tool in "$ENVOY" wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool not found" >&2; exit 2; }
done

log() { printf '%s\n' "$*" >&2; }
die() { log "run.sh: $*"; exit 1; }

# ---------------------------------------------------------------- processes
PIDS=()          # every process started here, in start order
WORK=$(mktemp -d "${TMPDIR:-/tmp}/policy-load.XXXXXX")

stop_pid() {     # stop_pid PID: SIGTERM, then SIGKILL after 5 s
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
  if [[ $KEEP == 1 ]]; then log "kept configs and logs in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() {        # start NAME CMD...: runs CMD in the background, logs in $WORK/NAME.log
  local name=$1; shift
  "$@" >"$WORK/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

free_ports() {   # free_ports N: N distinct free TCP ports on 127.0.0.1
  # Below the kernel's ephemeral range: during a long run the many outgoing
  # connections could otherwise take a port chosen here before its server
  # binds it.
  python3 - "$1" <<'EOF'
import random, socket, sys
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except OSError:
    low = 32768
candidates = list(range(11000, max(low, 11001)))  # not the ports of deploy/local
random.shuffle(candidates)
socks = []
for port in candidates:
    if len(socks) == int(sys.argv[1]):
        break
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        continue
    socks.append(s)
if len(socks) < int(sys.argv[1]):
    sys.exit("no free ports below the ephemeral range")
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

wait_for() {     # wait_for WHAT PID CMD...: until CMD succeeds (20 s) while PID lives
  local what=$1 pid=$2 i; shift 2
  for i in $(seq 200); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || die "$what exited during start-up (see $WORK)"
    sleep 0.1
  done
  die "$what not ready after 20 s"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

vm_hwm_kb() {    # peak resident set of PID, in kB
  awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

vm_rss_kb() {    # current resident set of PID, in kB
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

machine_ticks() { # busy CPU time of the whole machine (all cores), in clock ticks
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

cpu_ticks() {    # user + system CPU time of PID, in clock ticks
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# ---------------------------------------------------------------- build
if [[ $BUILD == 1 ]]; then
  log "building (release): policy-kernel policy-agent policy-journal policyctl policy-bench"
  (cd "$ROOT" && cargo build --release -p policy-kernel -p policy-agent -p policy-journal -p policyctl -p policy-bench) >&2
fi
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
# Run the servers as deployed (supervisord sets no RUST_BACKTRACE): with it
# set, every error value that captures a backtrace walks the stack.
if [[ -n ${RUST_BACKTRACE:-}${RUST_LIB_BACKTRACE:-} ]]; then
  log "note: RUST_BACKTRACE/RUST_LIB_BACKTRACE unset for the processes started here"
  unset RUST_BACKTRACE RUST_LIB_BACKTRACE
fi
NEED_JOURNAL=0
[[ " $SETUPS " == *" journal "* ]] && NEED_JOURNAL=1
BINS=(policy-kernel policy-agent noop_extproc upstream)
((NEED_JOURNAL)) && BINS+=(policy-journal policyctl)
for b in "${BINS[@]}"; do
  [[ -x $BIN/$b ]] || die "$BIN/$b missing (build with cargo build --release -p policy-kernel -p policy-agent -p policy-journal -p policyctl -p policy-bench)"
done

# ---------------------------------------------------------------- configs
read -r P_UPSTREAM P_LISTEN P_ADMIN P_NOOP P_KERNEL P_METRICS P_JOURNAL <<<"$(free_ports 7)"
SOCKET="$WORK/agent.sock"

# Envoy: deploy/local/envoy.yaml with the ports rewritten (ext_proc cluster →
# the server under test) and the per-request stdout access log dropped (the
# same for both setups). Routes, filters and processing modes are unchanged,
# including response_body_mode: BUFFERED on /api/v1/users.
envoy_config() { # envoy_config EXTPROC_PORT OUT
  awk -v listen="$P_LISTEN" -v admin="$P_ADMIN" -v extproc="$1" -v upstream="$P_UPSTREAM" '
    /^ *access_log:/ { skip = 1; indent = match($0, /[^ ]/); next }
    skip { if (match($0, /[^ ]/) > indent) next; skip = 0 }
    { sub(/port_value: 10000 /, "port_value: " listen " ")
      sub(/port_value: 9901 /, "port_value: " admin " ")
      sub(/port_value: 9001 /, "port_value: " extproc " ")
      sub(/port_value: 10080 /, "port_value: " upstream " ")
      print }' "$LOCAL/envoy.yaml" >"$2"
  local p
  for p in 10000 9901 9001 10080; do
    ! grep -q "port_value: $p " "$2" || die "envoy config: port $p not rewritten"
  done
  ! grep -q access_log "$2" || die "envoy config: access_log not removed"
  grep -q 'response_body_mode: BUFFERED' "$2" || die "envoy config: /api/v1/users no longer buffers the response body"
}
envoy_config "$P_NOOP" "$WORK/envoy-noop.yaml"
envoy_config "$P_KERNEL" "$WORK/envoy-kernel.yaml"
"$ENVOY" --mode validate -c "$WORK/envoy-kernel.yaml" >"$WORK/envoy-validate.log" 2>&1 \
  || die "derived Envoy config invalid (see $WORK/envoy-validate.log)"

# Kernel: deploy/local/kernel-config.yaml on 127.0.0.1, free ports, the
# agent's socket in $WORK, and /api/v1/users's rateLimit raised so it never
# denies under load (the other policies and routes are unchanged).
sed -e 's/address: "0.0.0.0"/address: "127.0.0.1"/' \
    -e "s/port: 9001\$/port: $P_KERNEL/" \
    -e "s/metrics_port: 9090\$/metrics_port: $P_METRICS/" \
    -e "s#socket_path: \"run/default.sock\"#socket_path: \"$SOCKET\"#" \
    -e "s/requests_per_second: 100\$/requests_per_second: $BIG/" \
    -e "s/burst: 20\$/burst: $BIG/" \
    "$LOCAL/kernel-config.yaml" >"$WORK/kernel-config.yaml"
for want in "port: $P_KERNEL" "metrics_port: $P_METRICS" "socket_path: \"$SOCKET\"" \
            "requests_per_second: $BIG" "burst: $BIG" 'address: "127.0.0.1"'; do
  grep -qF "$want" "$WORK/kernel-config.yaml" || die "kernel config: '$want' not set"
done
# Agent: deploy/local/agent-config.yaml with the same socket and the demo
# data; its journal section (local log, certificates and journal under
# $WORK/run, the journal on a free port) is kept only for the `journal` setup.
sed -e "s#socket_path: \"run/default.sock\"#socket_path: \"$SOCKET\"#" \
    -e "s#^    - data\$#    - \"$LOCAL/data\"#" \
    -e "s#https://127.0.0.1:7443#https://127.0.0.1:$P_JOURNAL#" \
    "$LOCAL/agent-config.yaml" >"$WORK/agent-config-journal.yaml"
awk '/^  journal:$/ { exit } { print }' "$WORK/agent-config-journal.yaml" >"$WORK/agent-config.yaml"
for f in agent-config.yaml agent-config-journal.yaml; do
  grep -qF "socket_path: \"$SOCKET\"" "$WORK/$f" || die "$f: socket not set"
  grep -qF "\"$LOCAL/data\"" "$WORK/$f" || die "$f: data not set"
done
grep -qF "https://127.0.0.1:$P_JOURNAL" "$WORK/agent-config-journal.yaml" || die "agent config: journal endpoint not set"
! grep -q '^  journal:' "$WORK/agent-config.yaml" || die "agent config: journal section not removed"
# Journal: deploy/local/journal-config.yaml on the free port, store and
# certificates in $WORK/run (paths are relative to the config file).
sed -e "s#listen: \"127.0.0.1:7443\"#listen: \"127.0.0.1:$P_JOURNAL\"#" \
    "$LOCAL/journal-config.yaml" >"$WORK/journal-config.yaml"
grep -qF "127.0.0.1:$P_JOURNAL" "$WORK/journal-config.yaml" || die "journal config: port not set"
if ((NEED_JOURNAL)); then
  "$BIN/policyctl" journal certs --out "$WORK/run/certs" --agent default-agent >&2
fi

URL="http://127.0.0.1:$P_LISTEN$ROUTE"

# ---------------------------------------------------------------- pieces
start upstream "${REST[@]}" "$BIN/upstream" --listen "127.0.0.1:$P_UPSTREAM"
UPSTREAM_PID=$LAST_PID
wait_for upstream "$UPSTREAM_PID" port_open "$P_UPSTREAM"

start_envoy() {  # start_envoy CONFIG NAME
  start "$2" "${REST[@]}" "$ENVOY" -c "$1" --concurrency "$ENVOY_CONCURRENCY" \
    --disable-hot-restart --log-level warn
  ENVOY_PID=$LAST_PID
  wait_for Envoy "$ENVOY_PID" curl -sf "http://127.0.0.1:$P_ADMIN/ready"
  wait_for "Envoy listener" "$ENVOY_PID" port_open "$P_LISTEN"
}

SERVER_PIDS=()   # the ext_proc side of the current setup
SERVER_NAMES=()
JOURNAL_PID=""
start_setup() {  # start_setup noop|embedded|kernel|journal
  SERVER_PIDS=()
  local agent_config="$WORK/agent-config.yaml"
  if [[ $1 == journal ]]; then
    rm -rf "$WORK/run/agent-log" "$WORK/run/journal-data"
    start journal "${SIDE[@]}" "$BIN/policy-journal" --config "$WORK/journal-config.yaml"
    JOURNAL_PID=$LAST_PID
    wait_for policy-journal "$JOURNAL_PID" port_open "$P_JOURNAL"
    agent_config="$WORK/agent-config-journal.yaml"
  fi
  if [[ $1 == noop ]]; then
    start noop "${SIDE[@]}" "$BIN/noop_extproc" --listen "127.0.0.1:$P_NOOP"
    SERVER_PIDS=("$LAST_PID") SERVER_NAMES=(noop)
    wait_for noop_extproc "$LAST_PID" port_open "$P_NOOP"
    start_envoy "$WORK/envoy-noop.yaml" envoy-noop
  elif [[ $1 == embedded ]]; then
    start kernel "${SIDE[@]}" "$BIN/policy-kernel" --config "$WORK/kernel-config.yaml" --embedded-agent "$agent_config"
    SERVER_PIDS=("$LAST_PID") SERVER_NAMES=(kernel)
    wait_for "policy-kernel --embedded-agent" "$LAST_PID" curl -sf "http://127.0.0.1:$P_METRICS/health/ready"
    start_envoy "$WORK/envoy-kernel.yaml" envoy-kernel
  else
    rm -f "$SOCKET"
    start agent "${SIDE[@]}" "$BIN/policy-agent" --config "$agent_config" --log-format json
    SERVER_PIDS=("$LAST_PID") SERVER_NAMES=(agent)
    wait_for policy-agent "$LAST_PID" test -S "$SOCKET"
    start kernel "${SIDE[@]}" "$BIN/policy-kernel" --config "$WORK/kernel-config.yaml"
    SERVER_PIDS+=("$LAST_PID") SERVER_NAMES+=(kernel)
    wait_for policy-kernel "$LAST_PID" curl -sf "http://127.0.0.1:$P_METRICS/health/ready"
    start_envoy "$WORK/envoy-kernel.yaml" envoy-kernel
  fi
}

stop_setup() {
  local pid
  stop_pid "$ENVOY_PID"
  for ((i = ${#SERVER_PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${SERVER_PIDS[i]}"; done
  if [[ -n $JOURNAL_PID ]]; then stop_pid "$JOURNAL_PID"; JOURNAL_PID=""; fi
}

journal_records() { # records in the journal of the `journal` setup
  "$BIN/policyctl" journal verify --journal "https://127.0.0.1:$P_JOURNAL" --certs "$WORK/run/certs" 2>&1 \
    | head -n 3
}

request() {      # request [CURL ARGS...]: prints "STATUS", headers in $WORK/h, body in $WORK/b
  curl -s -o "$WORK/b" -D "$WORK/h" -w '%{http_code}' "$@" "$URL" || true
}

sanity() {       # sanity noop|kernel: the path does what it should, before any load
  local s
  if [[ $1 == noop ]]; then
    s=$(request -H "X-API-Key: $API_KEY")
    [[ $s == 200 ]] || die "no-op path: with a key got $s, want 200"
    grep -q internal_id "$WORK/b" || die "no-op path: the upstream body was changed"
    s=$(request)
    [[ $s == 200 ]] || die "no-op path: without a key got $s, want 200 (the no-op passes everything)"
    log "sanity (no-op): with key 200, without key 200, body untouched: passes everything"
  else
    s=$(request)
    [[ $s == 401 ]] || die "policy path: without a key got $s, want 401"
    s=$(request -H 'X-API-Key: not-a-demo-key')
    [[ $s == 403 ]] || die "policy path: with an unknown key got $s, want 403"
    s=$(request -H "X-API-Key: $API_KEY")
    [[ $s == 200 ]] || die "policy path: with $API_KEY got $s, want 200"
    ! grep -q internal_id "$WORK/b" || die "policy path: internal_id not removed (responseBodyTransform)"
    grep -qi '^x-frame-options: DENY' "$WORK/h" || die "policy path: X-Frame-Options missing (addSecurityHeaders)"
    log "sanity (kernel+agent): without key 401, unknown key 403, $API_KEY 200 with internal_id removed and X-Frame-Options: DENY"
  fi
}

kernel_decisions() { # "allowed=N" and every other status's count for /api/v1/users from the kernel's /metrics
  curl -sf "http://127.0.0.1:$P_METRICS/metrics" | awk '
    /^policy_kernel_requests_total\{/ && /route="\/api\/v1\/users"/ {
      match($0, /status="[^"]*"/); st = substr($0, RSTART + 8, RLENGTH - 9); n[st] += $NF }
    END { printf "allowed=%d", n["allowed"]; for (k in n) if (k != "allowed") printf " %s=%d", k, n[k]; printf "\n" }'
}

envoy_extproc_stats() { # Envoy's non-zero ext_proc counters
  curl -sf "http://127.0.0.1:$P_ADMIN/stats?filter=ext_proc" | awk -F': ' '$2 != 0 { printf "%s%s=%s", sep, $1, $2; sep = " " } END { print "" }'
}

to_ms() { awk -v v="$1" 'BEGIN {
  if (v ~ /us$/) printf "%.3f", v / 1000; else if (v ~ /ms$/) printf "%.3f", v + 0
  else if (v ~ /m$/) printf "%.3f", v * 60000; else if (v ~ /s$/) printf "%.3f", v * 1000
  else printf "nan" }'; }

# ---------------------------------------------------------------- measure
# wrk prints p50/75/90/99 only; the tail's shape (a wide distribution or a
# few stalls) shows in the percentiles between and beyond.
cat >"$WORK/tail.lua" <<'LUA'
done = function(summary, latency, requests)
  io.write("tail")
  for _, p in ipairs({90, 95, 99, 99.9}) do
    io.write(string.format(" p%g %.2f", p, latency:percentile(p) / 1000))
  end
  io.write(string.format(" max %.2f\n", latency.max / 1000))
end
LUA
declare -A RPS P50 P99 RSS RSS_DETAIL CPU CPU_DETAIL MCPU ERRS NAMES GROWTH
CLK_TCK=$(getconf CLK_TCK)

measure() {      # measure noop|kernel ROUND
  local setup=$1 round=$2 out pid k0="" k1 rss=0 detail=""
  start_setup "$setup"
  sanity "$setup"
  "${REST[@]}" wrk -t "$THREADS" -c "$CONNECTIONS" -d "$WARMUP" -H "X-API-Key: $API_KEY" "$URL" >"$WORK/warmup-$setup-$round.txt" 2>&1 \
    || die "wrk warm-up failed: $(cat "$WORK/warmup-$setup-$round.txt")"
  [[ $setup != noop ]] && k0=$(kernel_decisions)
  local -a t0=() t1=()
  for pid in "${SERVER_PIDS[@]}"; do t0+=("$(cpu_ticks "$pid")"); done
  local m0 m1
  m0=$(machine_ticks)
  out="$WORK/wrk-$setup-$round.txt"
  # Resident set of each process every 5 s during the run (the leak check).
  local samples="$WORK/rss-$setup-$round.txt"
  ( while :; do
      for i in "${!SERVER_PIDS[@]}"; do echo "${SERVER_NAMES[i]} $(vm_rss_kb "${SERVER_PIDS[i]}")"; done
      sleep 5
    done ) >"$samples" &
  local sampler=$!
  "${REST[@]}" wrk -t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" --latency -s "$WORK/tail.lua" -H "X-API-Key: $API_KEY" "$URL" >"$out" 2>&1 \
    || die "wrk failed: $(cat "$out")"
  m1=$(machine_ticks)
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  for i in "${!SERVER_PIDS[@]}"; do echo "${SERVER_NAMES[i]} $(vm_rss_kb "${SERVER_PIDS[i]}")"; done >>"$samples"
  GROWTH[$setup/$round]=$(awk '{ if (!($1 in first)) first[$1] = $2; last[$1] = $2; if ($2 > max[$1]) max[$1] = $2 }
    END { for (p in first) { printf "%s%s %.1f -> %.1f MB (max %.1f)", sep, p, first[p] / 1024, last[p] / 1024, max[p] / 1024; sep = "; " } }' "$samples")
  for pid in "${SERVER_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || die "$setup: a server died under load (see $WORK)"
    t1+=("$(cpu_ticks "$pid")")
  done
  local key="$setup/$round"
  local requests non2xx sockerr
  RPS[$key]=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
  P50[$key]=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
  P99[$key]=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
  requests=$(awk '/ requests in / { print $1 }' "$out")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
  sockerr=$(awk '/Socket errors:/ { sub(/.*Socket errors: /, ""); print }' "$out")
  ERRS[$key]="non-2xx=${non2xx:-0}${sockerr:+ socket: $sockerr}"
  local i us cpu=0 cpu_detail=""
  for i in "${!t0[@]}"; do
    us=$(awk -v t=$((t1[i] - t0[i])) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.0f", n ? t / hz * 1e6 / n : 0 }')
    cpu=$((cpu + us))
    cpu_detail+="${cpu_detail:+ + }${SERVER_NAMES[i]} $us"
  done
  CPU[$key]=$cpu
  CPU_DETAIL[$key]=$cpu_detail
  MCPU[$key]=$(awk -v t=$((m1 - m0)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.0f", n ? t / hz * 1e6 / n : 0 }')
  for i in "${!SERVER_PIDS[@]}"; do
    local kb; kb=$(vm_hwm_kb "${SERVER_PIDS[i]}")
    rss=$((rss + kb))
    detail+="${detail:+ + }${SERVER_NAMES[i]} $(awk -v k="$kb" 'BEGIN { printf "%.1f", k / 1024 }')"
  done
  RSS[$key]=$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')
  RSS_DETAIL[$key]=$detail
  log "$setup round $round: $requests requests, ${RPS[$key]} req/s, p50 ${P50[$key]} ms, p99 ${P99[$key]} ms, ${ERRS[$key]}"
  log "  latency tail (ms): $(awk '/^tail / { sub(/^tail /, ""); print }' "$out")"
  log "  Envoy ext_proc counters: $(envoy_extproc_stats)"
  log "  RSS during the run (first sample -> last): ${GROWTH[$key]}"
  if [[ $setup == journal ]]; then
    # Every decision recorded: give the local log a moment to drain.
    sleep 2
    log "  journal: $(journal_records | tr '\n' ' ')"
  fi
  if [[ $setup != noop ]]; then
    k1=$(kernel_decisions)
    log "  kernel /api/v1/users decisions (one per phase): before $k0, after $k1"
    INTERP=$(cat "$WORK/agent.log" "$WORK/kernel.log" 2>/dev/null | grep -o '"chain runs on the interpreter"[^}]*' | sed 's/"chain":"[^"]*",//' | sort -u || true)
  fi
  [[ ${non2xx:-0} == 0 ]] || log "  WARNING: $non2xx non-2xx answers under load"
  stop_setup
}

log "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); Envoy --concurrency $ENVOY_CONCURRENCY; $PLACEMENT"
log "route $ROUTE, X-API-Key: $API_KEY; kernel config: rateLimit raised to $BIG/s, burst $BIG (deploy/local: 100/s, burst 20) so it never denies under load"
RUN=(noop)
for s in $SETUPS; do
  case $s in
    noop) ;;
    embedded|kernel|journal) RUN+=("$s") ;;
    *) die "--setups: unknown setup $s (noop, embedded, kernel, journal)" ;;
  esac
done
for ((r = 1; r <= ROUNDS; r++)); do
  for s in "${RUN[@]}"; do measure "$s" "$r"; done
done

# ---------------------------------------------------------------- report
median() {       # median FORMAT VALUES...
  local f=$1; shift
  printf '%s\n' "$@" | sort -g | awk -v f="$f" '{ v[NR] = $1 }
    END { printf f "\n", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }

echo
echo "Load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION (after a $WARMUP warm-up) GET $ROUTE with X-API-Key: $API_KEY"
echo "through Envoy $("$ENVOY" --version 2>/dev/null | sed -n 's/.*version: [^/]*\/\([^/]*\)\/.*/\1/p') (--concurrency $ENVOY_CONCURRENCY, deploy/local/envoy.yaml: same routes and processing modes, response body BUFFERED on $ROUTE);"
echo "$PLACEMENT. Kernel rateLimit raised to 10^9/s, burst 10^9 (never denies)."
echo "RSS = peak resident set (VmHWM) of the ext_proc side: noop_extproc, policy-kernel (embedded agent), or policy-kernel + policy-agent; CPU = its CPU time per request."
echo
fmt='%-6s %-15s %8s %8s %8s %30s %28s  %s\n'
printf "$fmt" round setup req/s "p50 ms" "p99 ms" "peak RSS MB" "CPU us/req" errors
NAMES=([noop]=no-op [embedded]=embedded [kernel]=kernel+agent [journal]="+ journal")
for ((r = 1; r <= ROUNDS; r++)); do
  n="noop/$r"
  printf "$fmt" "$r" no-op "${RPS[$n]}" "${P50[$n]}" "${P99[$n]}" "${RSS[$n]}" "${CPU[$n]}" "${ERRS[$n]}"
  for s in "${RUN[@]:1}"; do
    k="$s/$r"
    printf "$fmt" "$r" "${NAMES[$s]}" "${RPS[$k]}" "${P50[$k]}" "${P99[$k]}" "${RSS[$k]} (${RSS_DETAIL[$k]})" "${CPU[$k]} (${CPU_DETAIL[$k]})" "${ERRS[$k]}"
    printf "$fmt" "$r" "ratio to no-op" "$(ratio "${RPS[$k]}" "${RPS[$n]}")" "$(ratio "${P50[$k]}" "${P50[$n]}")" \
      "$(ratio "${P99[$k]}" "${P99[$n]}")" "$(ratio "${RSS[$k]}" "${RSS[$n]}")" "$(ratio "${CPU[$k]}" "${CPU[$n]}")" ""
  done
  if [[ -n ${RPS[journal/$r]:-} && -n ${RPS[kernel/$r]:-} ]]; then
    printf "$fmt" "$r" "journal/kernel" "$(ratio "${RPS[journal/$r]}" "${RPS[kernel/$r]}")" "$(ratio "${P50[journal/$r]}" "${P50[kernel/$r]}")" \
      "$(ratio "${P99[journal/$r]}" "${P99[kernel/$r]}")" "$(ratio "${RSS[journal/$r]}" "${RSS[kernel/$r]}")" "$(ratio "${CPU[journal/$r]}" "${CPU[kernel/$r]}")" ""
  fi
done
if ((ROUNDS > 1)); then
  collect() { local -n m=$1; local s=$2 r; for ((r = 1; r <= ROUNDS; r++)); do echo "${m[$s/$r]}"; done; }
  for s in "${RUN[@]}"; do
    declare "M_RPS_$s=$(median %.0f $(collect RPS $s))" "M_P50_$s=$(median %.3f $(collect P50 $s))" \
            "M_P99_$s=$(median %.3f $(collect P99 $s))" "M_RSS_$s=$(collect RSS $s | sort -g | tail -1)" \
            "M_CPU_$s=$(median %.0f $(collect CPU $s))"
  done
  printf "$fmt" median no-op "$M_RPS_noop" "$M_P50_noop" "$M_P99_noop" "$M_RSS_noop (max)" "$M_CPU_noop" ""
  for s in "${RUN[@]:1}"; do
    rps="M_RPS_$s" p50="M_P50_$s" p99="M_P99_$s" rss="M_RSS_$s" cpu="M_CPU_$s"
    printf "$fmt" median "${NAMES[$s]}" "${!rps}" "${!p50}" "${!p99}" "${!rss} (max)" "${!cpu}" ""
    printf "$fmt" median "ratio to no-op" "$(ratio "${!rps}" "$M_RPS_noop")" "$(ratio "${!p50}" "$M_P50_noop")" \
      "$(ratio "${!p99}" "$M_P99_noop")" "$(ratio "${!rss}" "$M_RSS_noop")" "$(ratio "${!cpu}" "$M_CPU_noop")" ""
  done
fi
echo
echo "Resident set during each run (first 5-second sample -> last; a leak shows as growth over a long --duration):"
for ((r = 1; r <= ROUNDS; r++)); do
  for s in "${RUN[@]}"; do printf '  %-6s %-13s %s\n' "$r" "${NAMES[$s]}" "${GROWTH[$s/$r]}"; done
done
echo
echo "CPU per request of the whole machine (all processes, /proc/stat) = the ext_proc side + the rest (wrk, Envoy, upstream):"
for ((r = 1; r <= ROUNDS; r++)); do
  for s in "${RUN[@]}"; do
    k="$s/$r"
    printf '  %-6s %-13s %5s us = %5s + %5s\n' "$r" "${NAMES[$s]}" "${MCPU[$k]}" "${CPU[$k]}" "$((MCPU[$k] - CPU[$k]))"
  done
done
# The throughput targets as a CPU budget: with every core busy, req/s is
# cores / (machine CPU per request). At the target ratio the machine has
# MCPU(no-op) / ratio per request; what the rest takes (more than with the
# no-op: Envoy applies the header and body changes) leaves the ext_proc side
# the difference.
if ((PIN)); then
  echo "(--pin: the ext_proc side has a core to itself, the rest the others; req/s is set by whichever saturates first)"
else
echo "What the req/s targets leave the ext_proc side (round 1; with the rest as measured):"
for s in "${RUN[@]:1}"; do
  target=0.70; [[ $s == embedded ]] && target=0.90
  awk -v name="${NAMES[$s]}" -v t="$target" -v mn="${MCPU[noop/1]}" -v cn="${CPU[noop/1]}" -v m="${MCPU[$s/1]}" -v c="${CPU[$s/1]}" 'BEGIN {
    if (mn <= 0) exit
    budget = mn / t; left = budget - (m - c)
    printf "  %-13s at %.2fx the no-op'"'"'s req/s: %.0f us per request in all, the rest takes %.0f: <= %.0f us for the ext_proc side (measured %.0f; the no-op server itself %.0f)\n", name, t, budget, m - c, left, c, cn }'
done
fi

if [[ -n ${INTERP:-} ]]; then
  echo
  echo "policy-agent logged (a chain not on the VM costs more per decision):"
  printf '  %s\n' "$INTERP"
fi
echo
echo "DESIGN §10 targets: req/s ratio >= 0.90x embedded, >= 0.70x split (kernel+agent); p99 ratio <= 1.3x; kernel + agent RSS < 64 MB."
