#!/usr/bin/env bash
# STUN benchmark: responses per second of ternd, coturn --stun-only, Debian's stund and a minimal
# recvmmsg/sendmmsg responder, each measured in the same run by the same closed-loop load
# generator (`tern loadgen stun`, which checks every XOR-MAPPED-ADDRESS it gets back).
#
# usage: bench/stun/run.sh [WORKERS] [SECONDS]      (defaults: 1 worker, 3 seconds per server)
#   BUILD_DIR   where ternd, tern and stun_min_responder were built (default: build-stun)
#   LG_SOCKETS  load generator sockets (default 4 x WORKERS), LG_WINDOW requests in flight per
#               socket (default 64)
# The servers get cores 0..WORKERS-1 and the load generator the cores after them (taskset).
# ternd runs WORKERS workers; the minimal responder, coturn (-m 1 relay thread, --no-tcp) and
# stund are single-threaded and get core 0 only; with WORKERS > 1 the table shows ternd's scaling.
#   LG_FLAGS    extra load generator flags (e.g. "--no-gso --no-gro --full-check" for the old
#               one-datagram-per-syscall generator that decodes every answer completely)
# Two reference rows are measured as well and are not part of the target: ternd-nogso (ternd with
# TERND_STUN_GSO=0: one datagram per answer, like the minimal responder) and minimal-gso (the
# minimal responder with --gso: answers to the same client in one UDP_SEGMENT send). The target
# compares ternd (GSO on, its default) with coturn and with the plain minimal responder.
set -u
workers=${1:-1}
secs=${2:-3}
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$here/build-stun}
TERND=$build/src/server/ternd
TERN=$build/src/tools/tern
MIN=$build/bench/stun/stun_min_responder
for b in "$TERND" "$TERN" "$MIN"; do
  [ -x "$b" ] || { echo "missing $b: build first (cmake -S . -B build-stun -G Ninja && ninja -C build-stun)" >&2; exit 1; }
done
ncpu=$(nproc)
if [ "$workers" -ge "$ncpu" ]; then
  echo "need more cores than workers ($workers workers, $ncpu cores)" >&2; exit 1
fi
srv_cpus="0-$((workers - 1))"
lg_cpus="$workers-$((ncpu - 1))"
sockets=${LG_SOCKETS:-$((4 * workers))}
window=${LG_WINDOW:-64}
lg_flags=${LG_FLAGS:-}
port=$((20000 + ($$ % 5000) * 8))
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; }
trap cleanup EXIT

declare -A rate cpu usr
measure() { # name port
  local out
  out=$(taskset -c "$lg_cpus" "$TERN" loadgen stun "127.0.0.1:$2" --duration "$secs" \
        --sockets "$sockets" --window "$window" $lg_flags 2>&1)
  echo "  $1: $out" >&2
  rate[$1]=$(echo "$out" | grep -o 'rate=[0-9]*' | cut -d= -f2)
  echo "$out" | grep -q ' bad=0 ' || { echo "  $1: WRONG ANSWERS" >&2; rate[$1]=0; }
}
run_one() { # name port command...
  local name=$1 p=$2; shift 2
  "$@" >/dev/null 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 50); do
    sleep 0.1
    "$TERN" stun "127.0.0.1:$p" --rto 50 --tries 2 >/dev/null 2>&1 && break
  done
  local target
  target=$(pgrep -n -P "$pid" 2>/dev/null || echo "$pid") # the server under taskset
  local t0 t1 u0 u1 hz
  hz=$(getconf CLK_TCK)
  t0=$(awk '{print $14 + $15}' "/proc/$target/stat" 2>/dev/null || echo 0)
  u0=$(awk '{print $14}' "/proc/$target/stat" 2>/dev/null || echo 0)
  measure "$name" "$p"
  t1=$(awk '{print $14 + $15}' "/proc/$target/stat" 2>/dev/null || echo 0)
  u1=$(awk '{print $14}' "/proc/$target/stat" 2>/dev/null || echo 0)
  cpu[$name]=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" 'BEGIN { printf "%.2f", (b - a) / hz }')
  usr[$name]=$(awk -v a="$u0" -v b="$u1" -v hz="$hz" 'BEGIN { printf "%.2f", (b - a) / hz }')
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
}

echo "STUN benchmark: $secs s per server, server cores $srv_cpus, load generator cores $lg_cpus," \
     "$sockets sockets x $window in flight, loadgen flags: ${lg_flags:-none}" >&2
run_one minimal $port taskset -c 0 "$MIN" 127.0.0.1 $port
run_one ternd $((port + 1)) taskset -c "$srv_cpus" "$TERND" --stun-only --no-tcp --quiet \
  --listen 127.0.0.1:$((port + 1)) --workers "$workers"
run_one minimal-gso $((port + 4)) taskset -c 0 "$MIN" 127.0.0.1 $((port + 4)) --gso
run_one ternd-nogso $((port + 5)) env TERND_STUN_GSO=0 taskset -c "$srv_cpus" "$TERND" \
  --stun-only --no-tcp --quiet --listen 127.0.0.1:$((port + 5)) --workers "$workers"
if command -v turnserver >/dev/null; then
  run_one coturn $((port + 2)) taskset -c 0 turnserver -c /dev/null --stun-only --no-cli --no-tls \
    --no-dtls --no-tcp -m 1 -L 127.0.0.1 -p $((port + 2)) --log-file /dev/null
else rate[coturn]=0; echo "  coturn: not installed" >&2; fi
if command -v stund >/dev/null; then
  run_one stund $((port + 3)) taskset -c 0 stund -h 127.0.0.1 -a 127.0.0.2 -p $((port + 3)) -o $((port + 40))
else rate[stund]=0; echo "  stund: not installed" >&2; fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
per_cpu() { awk -v r="$1" -v c="$2" -v s="$secs" 'BEGIN { if (c > 0) printf "%.0f", r * s / c; else printf "n/a" }'; }
printf '\n| server (workers) | responses/s | ternd / it | it / minimal | server CPU s (user) | responses per server CPU s | ternd / it per CPU s |\n'
printf '|---|---:|---:|---:|---:|---:|---:|\n'
declare -A pc
pc[ternd]=$(per_cpu "${rate[ternd]}" "${cpu[ternd]:-0}")
for s in ternd minimal coturn stund ternd-nogso minimal-gso; do
  w=1; case $s in ternd*) w=$workers ;; esac
  pc[$s]=$(per_cpu "${rate[$s]}" "${cpu[$s]:-0}")
  printf '| %s (%d) | %s | %s | %s | %s (%s) | %s | %s |\n' "$s" "$w" "${rate[$s]}" \
    "$(ratio "${rate[ternd]}" "${rate[$s]}")" "$(ratio "${rate[$s]}" "${rate[minimal]}")" \
    "${cpu[$s]:-0}" "${usr[$s]:-0}" "${pc[$s]}" "$(ratio "${pc[ternd]}" "${pc[$s]}")"
done
vc=$(ratio "${rate[ternd]}" "${rate[coturn]}"); vm=$(ratio "${rate[ternd]}" "${rate[minimal]}")
echo
echo "ternd vs coturn: ${vc}x (target >= 2.00); ternd vs minimal responder: ${vm} (target >= 0.90)"
echo "reference: ternd vs minimal-gso: $(ratio "${rate[ternd]}" "${rate[minimal-gso]}");" \
     "ternd-nogso vs coturn: $(ratio "${rate[ternd-nogso]}" "${rate[coturn]}")x," \
     "vs minimal: $(ratio "${rate[ternd-nogso]}" "${rate[minimal]}")"
awk -v c="$vc" -v m="$vm" 'BEGIN { exit !(c ~ /^[0-9.]+$/ && m ~ /^[0-9.]+$/ && c + 0 >= 2.0 && m + 0 >= 0.9) }' && echo "TARGET MET" || echo "TARGET NOT MET"
