#!/usr/bin/env bash
# Loopback benchmark: one file of SIZE MB from one process to another over 127.0.0.1, receiver
# pinned to core 0 and sender to core 1 (taskset), for
#   tern with AES-256-GCM, tern with ChaCha20-Poly1305, tern integrity-only (tern send/tern recv,
#     file to file, the receiver checks the SHA-256 of the whole file),
#   SRT in file mode with AES-256 (Debian's srt-file-transmit, transtype=file, a passphrase),
#   TCP (iperf3 -n SIZE, memory to memory: the kernel's own reference);
# and tern bench --bytes SIZE (AES, memory to memory: the transport without file I/O and hashing);
# then 64-byte request/response latency: tern bench --latency (AES) next to TCP with TCP_NODELAY
# (tern bench --tcp). Each configuration runs RUNS times, interleaved; the table shows medians.
#
# usage: bench/loopback/run.sh [RUNS] [SIZE_MB]        (defaults: 3 runs, 1024 MB)
#   BUILD_DIR   where tern was built (default: build); this script builds and installs nothing
#   WORK        scratch directory for the files (default: a fresh one in /dev/shm, so that the
#               disk is not what is measured)
#   LAT_SECS    seconds per latency measurement (default 3)
#   TERN_FLAGS  extra tern send flags for every tern row (e.g. "--cc cubic")
#   PAYLOAD     tern send --payload: the datagram size before path MTU discovery (default: the
#               core's 1200; on loopback discovery then probes up to 1472 either way)
#
# Goodput: file bytes x 8 / wall time from starting the sender until both sides exited (for tern
# that includes the handshake and the receiver's hash check and verdict; for SRT until the
# receiver exited; every received file is compared with cmp and a short one fails the cell; SRT's
# exit code is not trusted, as srt-file-transmit exits 0 even when the connection was rejected).
# iperf3's own receiver figure for TCP. CPU: user + system seconds of each process (/usr/bin/time)
# over the same wall time, in % of one core.
set -u
runs=${1:-3}
size_mb=${2:-1024}
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$here/build}
TERN=$build/src/tools/tern
lat_secs=${LAT_SECS:-3}
payload_flag=${PAYLOAD:+--payload $PAYLOAD}
[ -x "$TERN" ] || { echo "missing $TERN: build first (cmake -S . -B build -G Ninja && ninja -C build)" >&2; exit 1; }
for t in iperf3 srt-file-transmit taskset /usr/bin/time cmp; do
  command -v "$t" >/dev/null || { echo "missing $t (scripts/deps.sh installs it)" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores" >&2; exit 1; }
RCPU=0
SCPU=1
work=${WORK:-$(mktemp -d /dev/shm/tern-bench.XXXXXX)}
mkdir -p "$work/rx"
pids=()
main_pid=$BASHPID
cleanup() {
  [ "$BASHPID" = "$main_pid" ] || return 0 # not from the $(...) subshells
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  [ -z "${WORK:-}" ] && rm -rf "$work"
}
trap cleanup EXIT INT TERM

bytes=$((size_mb * 1000000))
echo "# bench/loopback: $size_mb MB, $runs runs, receiver on core $RCPU, sender on core $SCPU, first UDP payload ${PAYLOAD:-1200 (default)} then path MTU discovery, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
head -c "$bytes" /dev/urandom >"$work/in.bin" || exit 1

now_ns() { date +%s%N; }
# cpu_pct TIMEFILE NS: (user + sys) of a /usr/bin/time -f "%U %S" file over NS nanoseconds
cpu_pct() { awk -v ns="$2" '{ printf "%.0f", 100 * ($1 + $2) / (ns / 1e9) }' "$1" 2>/dev/null || echo 0; }
gbps() { awk -v b="$1" -v ns="$2" 'BEGIN { printf "%.3f", b * 8 / ns }'; }

# run_tern LABEL SEND_ARGS...: prints "gbps snd_cpu rcv_cpu" (0 0 0 on failure)
run_tern() {
  # recv.out goes first: the receiver below truncates it only once it runs, and the wait for its
  # key must not read the previous run's (an empty or stale key, then a sender that fails)
  rm -f "$work/rx/"* "$work/rx/".in.bin* "$work/recv.out" 2>/dev/null
  taskset -c $RCPU /usr/bin/time -f "%U %S" -o "$work/rtime" \
    "$TERN" recv --listen 127.0.0.1:0 --dir "$work/rx" --allow-integrity-only --quiet \
    >"$work/recv.out" 2>"$work/recv.err" &
  local rpid=$! port key i=0 t0 t1 src
  pids+=("$rpid")
  # the whole key line (a partly written line would give a short key, and the wait below hang)
  until grep -q '^tern recv: public key [0-9a-f]\{64\}$' "$work/recv.out" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "  tern recv did not start" >&2; echo "0 0 0"; return; }
    sleep 0.05
  done
  port=$(sed -n 's/^tern recv: listening on udp 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/recv.out")
  key=$(sed -n 's/^tern recv: public key \([0-9a-f]*\)$/\1/p' "$work/recv.out")
  t0=$(now_ns)
  taskset -c $SCPU /usr/bin/time -f "%U %S" -o "$work/stime" \
    "$TERN" send "$work/in.bin" --to "127.0.0.1:$port" --server-key "$key" --quiet $payload_flag ${TERN_FLAGS:-} "$@" \
    >"$work/send.out" 2>"$work/send.err"
  src=$?
  [ $src -ne 0 ] && kill "$rpid" 2>/dev/null # it would wait for a sender that never comes
  wait "$rpid"
  local rrc=$?
  t1=$(now_ns)
  if [ $src -ne 0 ] || [ $rrc -ne 0 ] || ! cmp -s "$work/in.bin" "$work/rx/in.bin"; then
    echo "  tern $*: FAILED (send $src, recv $rrc): $(tail -1 "$work/send.err")" >&2
    echo "0 0 0"
    return
  fi
  echo "$(gbps "$bytes" $((t1 - t0))) $(cpu_pct "$work/stime" $((t1 - t0))) $(cpu_pct "$work/rtime" $((t1 - t0)))"
}

# tern bench: the transport alone, memory to memory, SIZE bytes, AES; its own figures
run_tbench() {
  local port key i=0 out
  rm -f "$work/tb.out"
  taskset -c $RCPU "$TERN" bench --listen 127.0.0.1:0 >"$work/tb.out" 2>/dev/null &
  local bpid=$!
  pids+=("$bpid")
  until grep -q '^tern bench: public key [0-9a-f]\{64\}$' "$work/tb.out" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 100 ] && break
    sleep 0.05
  done
  port=$(sed -n 's/^tern bench: listening on udp 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/tb.out")
  key=$(sed -n 's/^tern bench: public key \([0-9a-f]*\)$/\1/p' "$work/tb.out")
  out=$(taskset -c $SCPU "$TERN" bench --to "127.0.0.1:$port" --server-key "$key" --aead aes \
        --bytes "$bytes" ${TERN_FLAGS:-} 2>&1 | grep '^bench:')
  kill "$bpid" 2>/dev/null
  wait "$bpid" 2>/dev/null
  echo "$out" | awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END { printf "%s %s %s\n", v["gbps"] + 0, v["snd_cpu"] + 0, v["rcv_cpu"] + 0 }'
}

run_srt() {
  rm -f "$work/rx/"* 2>/dev/null
  local port=$((30000 + RANDOM % 20000)) pass="tern-bench-passphrase" t0 t1 i=0
  taskset -c $RCPU /usr/bin/time -f "%U %S" -o "$work/rtime" \
    srt-file-transmit -q "srt://:$port?mode=listener&transtype=file&passphrase=$pass&pbkeylen=32" \
    "file://$work/rx/" >"$work/srtr.log" 2>&1 &
  local rpid=$!
  pids+=("$rpid")
  sleep 0.3
  t0=$(now_ns)
  taskset -c $SCPU /usr/bin/time -f "%U %S" -o "$work/stime" \
    srt-file-transmit -q "file://$work/in.bin" \
    "srt://127.0.0.1:$port?transtype=file&passphrase=$pass&pbkeylen=32" >"$work/srts.log" 2>&1
  # the listener exits once the file is written; give it at most 60 s more
  while kill -0 "$rpid" 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
  kill "$rpid" 2>/dev/null
  wait "$rpid" 2>/dev/null
  t1=$(now_ns)
  if ! cmp -s "$work/in.bin" "$work/rx/in.bin"; then
    echo "  srt: FAILED: received $(stat -c %s "$work/rx/in.bin" 2>/dev/null || echo 0) of $bytes bytes" >&2
    echo "0 0 0"
    return
  fi
  echo "$(gbps "$bytes" $((t1 - t0))) $(cpu_pct "$work/stime" $((t1 - t0))) $(cpu_pct "$work/rtime" $((t1 - t0)))"
}

run_tcp() {
  local port=$((30000 + RANDOM % 20000)) t0 t1 g
  taskset -c $RCPU /usr/bin/time -f "%U %S" -o "$work/rtime" iperf3 -s -1 -p "$port" >/dev/null 2>&1 &
  local rpid=$!
  pids+=("$rpid")
  sleep 0.3
  t0=$(now_ns)
  taskset -c $SCPU /usr/bin/time -f "%U %S" -o "$work/stime" \
    iperf3 -c 127.0.0.1 -p "$port" -n "$bytes" -J >"$work/iperf.json" 2>/dev/null
  wait "$rpid" 2>/dev/null
  t1=$(now_ns)
  g=$(awk -F'[:,]' '/"sum_received"/ { r = 1 } r && /"bits_per_second"/ { printf "%.3f\n", $2 / 1e9; exit }' "$work/iperf.json")
  echo "${g:-0} $(cpu_pct "$work/stime" $((t1 - t0))) $(cpu_pct "$work/rtime" $((t1 - t0)))"
}

# latency: tern bench --latency over AES vs TCP_NODELAY; prints "p50 p99" in microseconds
run_lat() { # tern|tcp
  local out port key args
  rm -f "$work/bl.out"
  if [ "$1" = tern ]; then
    taskset -c $RCPU "$TERN" bench --listen 127.0.0.1:0 >"$work/bl.out" 2>/dev/null &
  else
    taskset -c $RCPU "$TERN" bench --listen 127.0.0.1:0 --tcp >"$work/bl.out" 2>/dev/null &
  fi
  local bpid=$! i=0
  pids+=("$bpid")
  until grep -q 'listening on' "$work/bl.out" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 100 ] && break
    sleep 0.05
  done
  port=$(sed -n 's/^tern bench: listening on [a-z]* 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/bl.out")
  key=$(sed -n 's/^tern bench: public key \([0-9a-f]*\)$/\1/p' "$work/bl.out")
  if [ "$1" = tern ]; then args="--server-key $key --aead aes"; else args="--tcp"; fi
  out=$(taskset -c $SCPU "$TERN" bench --to "127.0.0.1:$port" $args --latency --size 64 \
        --seconds "$lat_secs" 2>&1 | grep '^bench:')
  kill "$bpid" 2>/dev/null
  wait "$bpid" 2>/dev/null
  echo "$out" | awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } } END { printf "%s %s\n", v["p50_us"] + 0, v["p99_us"] + 0 }'
}

configs="tern-aes tern-chacha tern-integrity tern-mem srt-aes tcp"
declare -A res
for r in $(seq 1 "$runs"); do
  for c in $configs; do
    case $c in
    tern-aes) out=$(run_tern --aead aes) ;;
    tern-chacha) out=$(run_tern --aead chacha) ;;
    tern-integrity) out=$(run_tern --integrity-only) ;;
    tern-mem) out=$(run_tbench) ;;
    srt-aes) out=$(run_srt) ;;
    tcp) out=$(run_tcp) ;;
    esac
    echo "  run $r $c: Gbit/s, sender CPU %, receiver CPU %: $out" >&2
    res[$c]="${res[$c]:-} $out"
  done
  for l in tern tcp; do
    out=$(run_lat $l)
    echo "  run $r latency $l: p50 p99 us: $out" >&2
    res[lat-$l]="${res[lat-$l]:-} $out"
  done
done

# median COLUMN NCOLS VALUES...: the median of every NCOLS-th value starting at COLUMN
median() {
  local col=$1 n=$2
  shift 2
  echo "$@" | tr ' ' '\n' | grep -v '^$' | awk -v c="$col" -v n="$n" 'NR % n == c % n' | sort -g |
    awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

srt_g=$(median 1 3 ${res[srt-aes]})
echo
echo "| $size_mb MB over loopback, median of $runs, tern --payload ${PAYLOAD:-1200} then PMTUD | goodput Gbit/s | sender CPU % | receiver CPU % | x SRT |"
echo "|---|---:|---:|---:|---:|"
for c in $configs; do
  g=$(median 1 3 ${res[$c]})
  s=$(median 2 3 ${res[$c]})
  rc=$(median 3 3 ${res[$c]})
  ratio=$(awk -v a="$g" -v b="$srt_g" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
  case $c in
  tern-aes) name="tern AES-256-GCM" ;; tern-chacha) name="tern ChaCha20-Poly1305" ;;
  tern-integrity) name="tern integrity-only" ;;
  tern-mem) name="tern AES, transport only (tern bench)" ;; srt-aes) name="SRT file mode, AES-256" ;;
  tcp) name="TCP (iperf3)" ;;
  esac
  echo "| $name | $g | $s | $rc | $ratio |"
done
echo
echo "| 64-byte request/response, median of $runs x ${lat_secs} s | p50 us | p99 us |"
echo "|---|---:|---:|"
echo "| tern (AES-256-GCM) | $(median 1 2 ${res[lat-tern]}) | $(median 2 2 ${res[lat-tern]}) |"
echo "| TCP, TCP_NODELAY | $(median 1 2 ${res[lat-tcp]}) | $(median 2 2 ${res[lat-tcp]}) |"
ta=$(median 1 3 ${res[tern-aes]})
tc=$(median 1 3 ${res[tcp]})
echo
awk -v a="$ta" -v s="$srt_g" -v t="$tc" 'BEGIN {
  if (s > 0) printf "tern AES / SRT = %.2fx (target 1.5x): %s\n", a / s, ((a / s >= 1.5) ? "TARGET MET" : "target not met");
  if (t > 0) printf "tern AES / TCP = %.2fx\n", a / t }'
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
