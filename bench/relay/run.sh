#!/usr/bin/env bash
# Relay forwarding: ternd's relay (docs/rendezvous.md section 8) against coturn's TURN relay, on
# loopback, compared on relayed datagrams per relay-server CPU-second.
#
# usage: bench/relay/run.sh [SECONDS] [RUNS]       (defaults 10, 3)
#   BUILD_DIR  where ternd and tern were built (default: build/rel; a release build:
#              cmake -S . -B build/rel -G Ninja -DCMAKE_BUILD_TYPE=Release && cmake --build build/rel)
#   SIZE       payload bytes per datagram (1200): tern's relay datagram is SIZE + 9 (0x81, channel,
#              then SIZE bytes of inner packet); coturn's is a ChannelData message of SIZE bytes
#              (4-byte header) inside which uclient puts its SIZE-byte message
#   PAIRS      tern: relay pairs (100); WINDOW: tern datagrams in flight per pair (8)
#   CLIENTS    coturn: turnutils_uclient clients in all (100: 50 client-to-client pairs)
#   UCLIENTS   coturn: turnutils_uclient processes run at once, CLIENTS / UCLIENTS clients each
#              (-m; 4: one alone paces itself well below what turnserver can take)
#   MSGS       coturn: messages each client sends (-n; default 800 x SECONDS)
#   INTERVAL   coturn: uclient's per-session packet interval in ms (-z, 0: as fast as it goes)
#   PERF=1     record ternd with `perf record -g` during the first tern run and print where its
#              time goes (needs perf; the figures then carry perf's overhead for that run)
# Per run: (a) a fresh ternd pinned to core 0 (`--workers 1 --no-tcp --quiet`) and `tern loadgen
# rdv --relay SECONDS` on core 1: 2 x PAIRS peers register, each pair is introduced once (ternd
# opens a relay session), then a closed loop of WINDOW datagrams per pair runs through the relay
# for SECONDS; ternd's CPU time over the relay phase comes from /proc/PID/stat (the load generator
# reads it). (b) a fresh turnserver (coturn) pinned to core 0 with one relay thread, UDP only,
# long-term credentials, and turnutils_uclient on core 1 in client-to-client mode (-y): each client
# allocates a relay address, binds a channel to its partner's relay address and sends MSGS
# messages of SIZE bytes, every INTERVAL ms; turnserver's CPU time comes from /proc/PID/stat over
# the whole uclient run (allocation included; it idles otherwise). In TURN client-to-client mode
# each delivered message crosses turnserver twice (client A -> A's allocation -> B's allocation ->
# client B: two receives and two sends), where ternd's relay forwards it once; the table gives
# coturn both per delivered message and per forwarding leg. This builds nothing and changes no
# system setting.
set -u
secs=${1:-10}
runs=${2:-3}
size=${SIZE:-1200}
pairs=${PAIRS:-100}
window=${WINDOW:-8}
clients=${CLIENTS:-100}
msgs=${MSGS:-$((800 * secs))}
interval=${INTERVAL:-0}
uclients=${UCLIENTS:-4}
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$here/build/rel}
TERND=$build/src/server/ternd
TERN=$build/src/tools/tern
for b in "$TERND" "$TERN"; do
  [ -x "$b" ] || { echo "missing $b: build first (cmake -S . -B build/rel -G Ninja -DCMAKE_BUILD_TYPE=Release && cmake --build build/rel)" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores (the relay on core 0, the load generator on core 1)" >&2; exit 1; }
have_coturn=1
for b in turnserver turnutils_uclient; do
  command -v "$b" >/dev/null || { have_coturn=0; echo "coturn: $b not found (Debian package coturn; scripts/deps.sh installs it): no coturn row"; }
done
tmp=$(mktemp -d)
tpid=
cpid=
cleanup() {
  [ -n "$tpid" ] && kill "$tpid" 2>/dev/null && wait "$tpid" 2>/dev/null
  [ -n "$cpid" ] && kill "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
key=$("$TERN" keygen --out "$tmp/server.key" | tail -1)

source "$here/bench/lib.sh"
bench_host
echo "relay on core 0, load generator on core 1; $size-byte payloads, $secs s, $runs runs; $(date -u '+%Y-%m-%d %H:%MZ')"
echo "commit $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$here" diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
[ "$have_coturn" = 1 ] && echo "coturn $(dpkg-query -W -f '${Version}' coturn 2>/dev/null || turnserver --version 2>/dev/null | head -1)"
echo "a busy loop gets $(bench_share 0) of core 0 and $(bench_share 1) of core 1"
echo "net.core.rmem_max=$(cat /proc/sys/net/core/rmem_max) wmem_max=$(cat /proc/sys/net/core/wmem_max) (ternd and the generator ask for 4 MiB socket buffers)"
cpu_ns() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.0f", ($12 + $13) * 1e9 / hz }' "/proc/$1/stat"; }

declare -a T_RATE T_GBPS T_LOST T_SCPU T_PERCPU C_PCT C_RATE C_LOST C_SCPU C_PERCPU C_LEGCPU RATIO RATIO_LEG
fail=0
for r in $(seq "$runs"); do
  port=$((20000 + (($$ + r * 7) % 4000) * 8))
  # (a) ternd's relay
  bench_ternd_start "$TERND" "$tmp/server.key" "$port" "$tmp/ternd.$r.err" || exit 1
  perf_pid=
  if [ "${PERF:-}" = 1 ] && [ "$r" = 1 ] && command -v perf >/dev/null; then
    # the relay phase starts about a second after the generator (registration, introductions)
    (sleep 1.5; exec perf record -g -o "$tmp/perf.data" -p "$tpid" -- sleep "$((secs - 1))") >"$tmp/perf.log" 2>&1 &
    perf_pid=$!
  fi
  out=$(taskset -c 1 "$TERN" loadgen rdv "127.0.0.1:$port" --server-key "$key" --peers $((2 * pairs)) \
        --sources $((2 * pairs)) --relay "$secs" --relay-pairs "$pairs" --relay-size $((size + 9)) \
        --relay-window "$window" --server-pid "$tpid" 2>"$tmp/lg.$r.err")
  lrc=$?
  [ -n "$perf_pid" ] && wait "$perf_pid"
  kill -TERM "$tpid"; wait "$tpid" 2>/dev/null; tpid=
  echo "run $r, ternd (loadgen exit $lrc):"; echo "$out" | grep -E '^(register|relay)' | sed 's/^/  /'
  sed 's/^/  loadgen: /' "$tmp/lg.$r.err"
  grep -E '^relay|^tern driver' "$tmp/ternd.$r.err" | sed 's/^/  ternd: /'
  [ "$lrc" = 0 ] || fail=1
  rl=$(echo "$out" | grep '^relay')
  T_RATE+=("$(val "$rl" rate)"); T_GBPS+=("$(val "$rl" gbps)"); T_LOST+=("$(val "$rl" lost)")
  T_SCPU+=("$(val "$rl" server_cpu)"); T_PERCPU+=("$(val "$rl" per_server_cpu_s)")
  if [ -n "$perf_pid" ] && [ -s "$tmp/perf.data" ]; then
    echo "  perf (ternd, relay phase): where its samples go, self time, top 25"
    perf report -i "$tmp/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
      grep -E '^ +[0-9]+\.[0-9]+%' | head -25 | sed 's/^/    /'
    echo "  perf: inclusive (children) shares: sendto per datagram, recvmmsg, the relay code, epoll"
    perf report -i "$tmp/perf.data" --children --sort symbol --stdio 2>/dev/null |
      grep -E '^ +[0-9]+\.[0-9]+% +[0-9]+\.[0-9]+%' |
      grep -E '__sys_sendto|do_recvmmsg|relay_rx|tern_relay_forward|do_epoll_wait|do_softirq|udp_sendmsg|udp_recvmsg' |
      head -12 | sed 's/^/    /'
  fi

  # (b) coturn
  if [ "$have_coturn" = 1 ]; then
    cport=$((port + 2))
    minp=$((40000 + (r % 4) * 5000))
    taskset -c 0 turnserver -n --no-tls --no-dtls --no-tcp --no-cli --listening-ip 127.0.0.1 \
      --listening-port "$cport" --relay-ip 127.0.0.1 --min-port "$minp" --max-port $((minp + 4000)) \
      --relay-threads 1 --lt-cred-mech --user u:p --realm tern.bench --allow-loopback-peers \
      --no-stun --log-file stdout --simple-log >"$tmp/turn.$r.log" 2>&1 &
    cpid=$!
    if ! bench_port_up "$cport"; then
      echo "run $r, coturn: turnserver did not start:"; tail -5 "$tmp/turn.$r.log" | sed 's/^/  /'
      kill "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null; cpid=; fail=1
    else
      c0=$(cpu_ns "$cpid")
      # UCLIENTS uclient processes at once (one alone paces itself well below what turnserver
      # can take), each with CLIENTS / UCLIENTS clients
      ucpids=
      for u in $(seq "$uclients"); do
        taskset -c 1 turnutils_uclient -y -c -l "$size" -m $((clients / uclients)) -n "$msgs" \
          -z "$interval" -u u -w p -p "$cport" 127.0.0.1 >"$tmp/uc.$r.$u.log" 2>&1 &
        ucpids="$ucpids $!"
      done
      urc=0
      for p in $ucpids; do wait "$p" || urc=$?; done
      c1=$(cpu_ns "$cpid")
      threads=$(ls "/proc/$cpid/task" | wc -l)
      kill -TERM "$cpid"; wait "$cpid" 2>/dev/null; cpid=
      sent=0; recv=0; act=0; lostline=
      for u in $(seq "$uclients"); do
        l="$tmp/uc.$r.$u.log"
        # per-second progress: "T: : start_mclient: msz=.., tot_send_msgs=S, tot_recv_msgs=R, ..."
        prog=$(sed -n 's/^\([0-9]*\): : start_mclient: msz=[0-9]*, tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\),.*/\1 \2 \3/p' "$l")
        s1=$(sed -n 's/.*: start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\)$/\1/p' "$l" | tail -1)
        r1=$(sed -n 's/.*: start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\)$/\2/p' "$l" | tail -1)
        sent=$((sent + ${s1:-0})); recv=$((recv + ${r1:-0}))
        lostline="$lostline [$u] $(grep -m1 'Total lost packets' "$l" | sed 's/^[0-9]*: : //')"
        # the active seconds: from the last progress line with nothing received to the first
        # with everything ever received (1-second resolution: the rate is approximate)
        a1=$(echo "$prog" | awk -v fin="${r1:-0}" '$3 == 0 { z = $1 } $3 == fin && f == "" { f = $1 } END { d = f - z; print (d > 0 ? d : 0) }')
        [ "$a1" -gt "$act" ] && act=$a1
      done
      cs=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
      echo "run $r, coturn ($uclients uclients, exit $urc; turnserver $threads threads):"
      echo "  sent=$sent received=$recv active_s=$act turnserver_cpu_s=$cs;$lostline"
      cat "$tmp"/uc.$r.*.log | grep -m3 -iE 'error|cannot|fail' | sed 's/^/  uclient: /'
      if [ -z "$recv" ] || [ "$recv" = 0 ]; then echo "  coturn relayed nothing"; fail=1; fi
      C_RATE+=("$(awk -v n="${recv:-0}" -v s="$act" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')")
      C_LOST+=("$(( ${sent:-0} - ${recv:-0} ))")
      C_SCPU+=("$cs")
      C_PCT+=("$(awk -v c="$cs" -v s="$act" 'BEGIN { printf "%.0f", (s > 0 ? 100 * c / s : 0) }')")
      C_PERCPU+=("$(awk -v n="${recv:-0}" -v c="$cs" 'BEGIN { printf "%.0f", (c > 0 ? n / c : 0) }')")
      C_LEGCPU+=("$(awk -v n="${recv:-0}" -v c="$cs" 'BEGIN { printf "%.0f", (c > 0 ? 2 * n / c : 0) }')")
      RATIO+=("$(awk -v t="${T_PERCPU[-1]}" -v c="${C_PERCPU[-1]}" 'BEGIN { printf "%.2f", (c > 0 ? t / c : 0) }')")
      RATIO_LEG+=("$(awk -v t="${T_PERCPU[-1]}" -v c="${C_LEGCPU[-1]}" 'BEGIN { printf "%.2f", (c > 0 ? t / c : 0) }')")
    fi
  fi
done

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo
echo "| run | ternd relayed datagrams/s | ternd payload Gbit/s | ternd lost | ternd CPU % | **ternd datagrams per CPU-s** | coturn delivered/s (approx.) | coturn lost | coturn CPU-s | coturn CPU % (approx.) | **coturn delivered per CPU-s** | coturn legs per CPU-s | **ratio tern/coturn** | ratio per leg |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for i in $(seq 0 $((runs - 1))); do
  echo "| $((i + 1)) | ${T_RATE[$i]:-} | ${T_GBPS[$i]:-} | ${T_LOST[$i]:-} | ${T_SCPU[$i]:-} | ${T_PERCPU[$i]:-} | ${C_RATE[$i]:-} | ${C_LOST[$i]:-} | ${C_SCPU[$i]:-} | ${C_PCT[$i]:-} | ${C_PERCPU[$i]:-} | ${C_LEGCPU[$i]:-} | ${RATIO[$i]:-} | ${RATIO_LEG[$i]:-} |"
done
echo "| **median** | $(median "${T_RATE[@]}") | $(median "${T_GBPS[@]}") | $(median "${T_LOST[@]}") | $(median "${T_SCPU[@]}") | **$(median "${T_PERCPU[@]}")** | $(median "${C_RATE[@]}") | $(median "${C_LOST[@]}") | $(median "${C_SCPU[@]}") | $(median "${C_PCT[@]}") | **$(median "${C_PERCPU[@]}")** | $(median "${C_LEGCPU[@]}") | **$(median "${RATIO[@]}")** | $(median "${RATIO_LEG[@]}") |"
echo
if [ "$have_coturn" = 1 ] && [ "${#C_PERCPU[@]}" -gt 0 ]; then
  echo "ratio of the medians (tern/coturn, per delivered datagram): $(awk -v t="$(median "${T_PERCPU[@]}")" -v c="$(median "${C_PERCPU[@]}")" 'BEGIN { printf "%.2f", (c > 0 ? t / c : 0) }')"
fi
[ "$fail" = 0 ] || { echo "A RUN FAILED (see above)"; exit 1; }
