#!/usr/bin/env bash
# Rendezvous load over real sockets: ternd as a process on loopback UDP, PEERS tern peers
# (default 10000, each its own key and endpoint) from `tern loadgen rdv` register, then keep
# WINDOW introductions in flight for SECONDS; RUNS times against a fresh ternd, medians printed.
#
# usage: bench/rendezvous/real.sh [PEERS] [SECONDS] [RUNS]     (defaults 10000, 10, 3)
#   BUILD_DIR  where ternd and tern were built (default: build-rdv, as run.sh; a release
#              build: cmake -S . -B build-rdv && make -C build-rdv -j2 ternd tern_cli rdv_load)
#   WINDOW     introductions in flight (default 64); LG_FLAGS: more `tern loadgen rdv` flags
#   NO_SIM=1   skip the simulator row (bench/rendezvous/run.sh's rdv_load, if it was built)
# ternd runs pinned to core 0 (`taskset -c 0`, its STUN service on one idle worker), the load
# generator on core 1. ternd's CPU time and memory come from /proc/PID: VmRSS before the first
# peer connects and once all are registered (their difference over the peers is the bytes per
# registered peer: the tern connection and the rendezvous record together), VmHWM at the end.
# This builds nothing and changes no system setting.
set -u
peers=${1:-10000}
secs=${2:-10}
runs=${3:-3}
window=${WINDOW:-64}
lg_flags=${LG_FLAGS:-}
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$here/build-rdv}
TERND=$build/src/server/ternd
TERN=$build/src/tools/tern
SIM=$build/bench/rendezvous/rdv_load
for b in "$TERND" "$TERN"; do
  [ -x "$b" ] || { echo "missing $b: build first (cmake -S . -B build-rdv && make -C build-rdv -j2 ternd tern_cli rdv_load)" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores (ternd on core 0, the load generator on core 1)" >&2; exit 1; }
tmp=$(mktemp -d)
tpid=
cleanup() { [ -n "$tpid" ] && kill "$tpid" 2>/dev/null && wait "$tpid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
key=$("$TERN" keygen --out "$tmp/server.key" | tail -1)

source "$here/bench/lib.sh"
bench_host
echo "ternd on core 0, tern loadgen rdv on core 1; $peers peers, $window introductions in flight, $secs s, $runs runs; $(date -u '+%Y-%m-%d %H:%MZ')"
echo "commit $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "a busy loop gets $(bench_share 0) of core 0 and $(bench_share 1) of core 1"
declare -a R_RELAY R_REG R_REGRATE R_RATE R_P50 R_P99 R_SCPU R_CCPU R_PERCPU R_BPP R_RSS0 R_RSS1 R_HWM R_OK
fail=0
for r in $(seq "$runs"); do
  port=$((20000 + (($$ + r * 7) % 4000) * 8))
  bench_ternd_start "$TERND" "$tmp/server.key" "$port" "$tmp/ternd.$r.err" || exit 1
  out=$(taskset -c 1 "$TERN" loadgen rdv "127.0.0.1:$port" --server-key "$key" --peers "$peers" \
        --duration "$secs" --window "$window" --server-pid "$tpid" $lg_flags 2>"$tmp/lg.$r.err")
  lrc=$?
  kill -TERM "$tpid"; wait "$tpid" 2>/dev/null; tpid=
  echo "run $r (loadgen exit $lrc):"; echo "$out" | sed 's/^/  /'
  sed 's/^/  loadgen: /' "$tmp/lg.$r.err"
  grep -E '^tern (endpoint|accepted)|^rendezvous|^relay' "$tmp/ternd.$r.err" | sed 's/^/  ternd: /'
  [ "$lrc" = 0 ] || fail=1
  reg=$(echo "$out" | grep '^register'); intro=$(echo "$out" | grep '^introduce'); srv=$(echo "$out" | grep '^server')
  R_REG+=("$(val "$reg" registered)"); R_REGRATE+=("$(val "$reg" rate)")
  R_RELAY+=("$(awk -v w="$(val "$intro" with_relay)" -v o="$(val "$intro" ok)" 'BEGIN { if (o > 0) printf "%.0f", w * 100 / o; else print 0 }')")
  R_RATE+=("$(val "$intro" rate)"); R_P50+=("$(val "$intro" p50_us)"); R_P99+=("$(val "$intro" p99_us)")
  R_SCPU+=("$(val "$intro" server_cpu)"); R_CCPU+=("$(val "$intro" client_cpu)")
  R_PERCPU+=("$(awk -v r="$(val "$intro" rate)" -v c="$(val "$intro" server_cpu)" 'BEGIN { if (c > 0) printf "%.0f", r * 100 / c; else print 0 }')")
  R_BPP+=("$(val "$srv" bytes_per_peer)"); R_RSS0+=("$(val "$srv" rss_before_kb)")
  R_RSS1+=("$(val "$srv" rss_registered_kb)"); R_HWM+=("$(val "$srv" hwm_end_kb)")
done

median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
row() { # label reg regrate rate p50 p99 scpu ccpu percpu rss0 rss1 hwm bpp relay%
  printf '| %s | %s | %s | %s | %s | %.2f | %.2f | %s | %s | %s | %s | %s / %s / %s | %s |\n' "$1" "$2" "$3" "$4" \
    "$(awk -v r="$4" 'BEGIN { printf "%.1fx", r / 1000 }')" "$(awk -v u="$5" 'BEGIN { print u / 1000 }')" \
    "$(awk -v u="$6" 'BEGIN { print u / 1000 }')" "${14}" "$7" "$8" "$9" "$(mib "${10}")" "$(mib "${11}")" "$(mib "${12}")" "${13}"
}
echo
echo "| run | peers registered | registrations/s | introductions/s | vs 1,000/s target | p50 ms | p99 ms | with a relay session % | ternd CPU % | loadgen CPU % | introductions per ternd CPU-s | ternd RSS before / registered / peak MiB | ternd bytes per registered peer |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for i in $(seq 0 $((runs - 1))); do
  row "$((i + 1))" "${R_REG[$i]}" "${R_REGRATE[$i]}" "${R_RATE[$i]}" "${R_P50[$i]}" "${R_P99[$i]}" "${R_SCPU[$i]}" \
    "${R_CCPU[$i]}" "${R_PERCPU[$i]}" "${R_RSS0[$i]}" "${R_RSS1[$i]}" "${R_HWM[$i]}" "${R_BPP[$i]}" "${R_RELAY[$i]}"
done
row "**median**" "$(median "${R_REG[@]}")" "$(median "${R_REGRATE[@]}")" "$(median "${R_RATE[@]}")" \
  "$(median "${R_P50[@]}")" "$(median "${R_P99[@]}")" "$(median "${R_SCPU[@]}")" "$(median "${R_CCPU[@]}")" \
  "$(median "${R_PERCPU[@]}")" "$(median "${R_RSS0[@]}")" "$(median "${R_RSS1[@]}")" "$(median "${R_HWM[@]}")" \
  "$(median "${R_BPP[@]}")" "$(median "${R_RELAY[@]}")"

if [ -z "${NO_SIM:-}" ] && [ -x "$SIM" ]; then
  echo
  echo "simulator, same run (bench/rendezvous/run.sh: one process, no sockets, $peers peers, 50000 introductions):"
  "$SIM" "$peers" 50000 | sed 's/^/  /'
fi
echo
med_reg=$(median "${R_REG[@]}"); med_rate=$(median "${R_RATE[@]}")
if [ "$fail" = 0 ] && [ "${med_reg%.*}" -ge "$peers" ] && [ "${med_rate%.*}" -ge 1000 ] && [ "$peers" -ge 10000 ]; then
  echo "TARGET MET: $med_reg peers registered, $med_rate introductions/s (>= 1,000/s with >= 10,000 peers)"
else
  echo "TARGET NOT MET (median registered $med_reg of $peers, $med_rate introductions/s; a run failed: $fail)"
fi
