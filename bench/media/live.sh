#!/usr/bin/env bash
# bench/media/live.sh: live video over an emulated mobile link, tern stream against SRT live
# mode (srt-live-transmit), the same frames in the same run, measured by the same receiver code.
#
#   bench/media/live.sh [--quick] [--duration S] [--rates "1.1 10"] [--rtts "300 600"]
#                       [--losses "1 3"] [--kinds "random bursty"] [--peers "tern srt srt-fec"]
#                       [--load F] [--seed N] [--keep DIR] [--tern-args "ARGS"]
#
# Each cell: two namespaces joined by one tern-linkem link; RATE Mbit/s both ways, RTT/2 delay
# each way, a drop-tail queue of one BDP (6000 bytes at least), loss on the media direction only:
# random (loss=PCT) or bursty (Gilbert-Elliott, ge=P/25: bursts of 4 packets on average, P set so
# that the mean loss is PCT). Every peer runs in a fresh lab with the same seed.
#
# The frames: tern stream's synthetic encoder (same --seed, so the same sizes and bytes for every
# peer): 25 fps, a keyframe (5x a P-frame) every 50 frames, at LOAD x RATE (default 0.35) for S
# seconds (default 60: 1500 frames). The receiver stamps each frame when its last byte arrives
# and compares with the capture time the sender wrote in it (CLOCK_REALTIME, one host: the
# clocks agree). A frame is on time when it arrives intact within the playout budget, the same
# for every peer: one-way delay + 100 ms (RTT/2 + 100). "delivered" counts frames that arrived at
# all, on time or late. One decoding rule for every peer (stream_stats_summary): a P-frame is
# shown only when it and every frame back to its keyframe arrived by its display time (a late
# frame is not shown but still serves as a reference), so a transport that loses a frame pays
# for the rest of that group of pictures, unless a keyframe comes sooner (tern's sender sends
# one when asked).
#
# Peers:
#   tern      tern stream send/recv: a PARTIAL ordered flow, one message per frame with a
#             deadline (--latency auto: 1.25 x RTT + time on the wire + 100 ms), GOP dependencies, FEC
#             adaptive, the bitrate following the target rate (down to 1/8 of LOAD x RATE).
#   srt       srt-live-transmit caller -> listener, live mode, latency = max(4 x RTT, 120 ms)
#             (SRT's rule of thumb; 120 ms is its default); tern stream send --udp-out feeds
#             its UDP input, tern stream recv --udp-in reads its UDP output.
#   srt-fec   the same with SRT's FEC packet filter (packetfilter=fec,cols:10,rows:5) on both
#             sides.
#   srt-budget  (not in the default set) SRT with latency = 80 ms: it delivers at about one-way
#             delay + latency + 8 ms here, so this keeps it inside the playout budget tern gets.
# SRT delivers every packet at capture + latency (TSBPD) and drops what is later, so with its
# multi-RTT latency nearly every frame is "late" for the common budget; its "delivered" column
# is what it achieves within its own latency.
#
# Output: a markdown table (one row per cell and peer), then "ratio" lines per cell: tern's
# frames on time over each SRT peer's, and the p99 latencies. --keep DIR keeps every process's
# log there (with each receiver's --frames-log); --tern-args adds options to tern stream send
# (e.g. "--fec fixed"). Needs root, srt-live-transmit (srt-tools), a built tern and tern-linkem
# (the newest build*/ under the source tree, or TERN / NETLAB_LINKEM).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/netlab/lib.sh"

duration=60
rates="1.1 10"
rtts="300 600"
losses="1 3"
kinds="random bursty"
peers="tern srt srt-fec"
load=0.35
seed=1
keep=""
tern_args=""
while [ $# -gt 0 ]; do
	case $1 in
	--quick) duration=20; rates="1.1"; rtts="300"; losses="1"; kinds="random"; shift ;;
	--duration) duration=$2; shift 2 ;;
	--rates) rates=$2; shift 2 ;;
	--rtts) rtts=$2; shift 2 ;;
	--losses) losses=$2; shift 2 ;;
	--kinds) kinds=$2; shift 2 ;;
	--peers) peers=$2; shift 2 ;;
	--load) load=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	--keep) keep=$2; shift 2 ;;
	--tern-args) tern_args=$2; shift 2 ;;
	*) sed -n '2,/^set -e/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "bench/media/live.sh: needs root" >&2; exit 1; }
command -v srt-live-transmit >/dev/null || { echo "bench/media/live.sh: srt-live-transmit not installed (srt-tools)" >&2; exit 1; }
if [ -z "${TERN:-}" ]; then
	for f in "$root"/build*/src/tools/tern "$root"/build*/*/src/tools/tern; do
		[ -x "$f" ] || continue
		if [ -z "${TERN:-}" ] || [ "$f" -nt "$TERN" ]; then TERN=$f; fi
	done
fi
[ -x "${TERN:-}" ] || { echo "bench/media/live.sh: no tern binary (build it or set TERN)" >&2; exit 1; }
[ -n "$keep" ] && mkdir -p "$keep"

if [ -z "${NETLAB_LINKEM:-}" ]; then
	for f in "$root"/build*/netlab/tern-linkem "$root"/build*/*/netlab/tern-linkem; do
		[ -x "$f" ] || continue
		if [ -z "${NETLAB_LINKEM:-}" ] || [ "$f" -nt "$NETLAB_LINKEM" ]; then NETLAB_LINKEM=$f; fi
	done
	[ -n "${NETLAB_LINKEM:-}" ] && export NETLAB_LINKEM
fi

nl_init
nl_trap
work=$(mktemp -d) # the key outlives each cell's lab
trap 'nl_down; rm -rf "$work"' EXIT
"$TERN" keygen --out "$work/tern.key" >"$work/tern.pub" 2>/dev/null
pub=$(grep -o '[0-9a-f]\{64\}' "$work/tern.pub" | head -1)

cell_lab() { nl_mobile_lab "$1" "$2" "$3" "$4" 25; } # RATE RTT LOSS KIND: bursts of 4

# wait_pid PID SECONDS: waits for PID to exit, at most SECONDS; kills it after that.
wait_pid() {
	local i
	for i in $(seq $(($2 * 10))); do
		kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null || true; return 0; }
		sleep 0.1
	done
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# run_PEER RATE RTT: runs one peer in the current lab; the receiver's result line goes to
# $NL_DIR/PEER.recv (and the rest of the logs beside it).
run_tern() {
	local bitrate=$1 rtt=$2 playout=$3 rpid
	nl_bg s "$TERN" stream recv --listen 10.80.0.2:9100 --key "$work/tern.key" \
		--playout "$playout" --idle-timeout 10000 --frames-log "$NL_DIR/tern.frames" >"$NL_DIR/tern.recv" 2>&1
	rpid=$NL_BGPID
	sleep 0.3
	nl_exec c "$TERN" stream send --to 10.80.0.2:9100 --server-key "$pub" --bitrate "$bitrate" \
		--duration "$duration" --seed "$seed" --fec adaptive $tern_args >"$NL_DIR/tern.send" 2>&1 || true
	wait_pid "$rpid" 15
}

run_srt_variant() { # NAME BITRATE RTT PLAYOUT SRT_LATENCY EXTRA_URI
	local name=$1 bitrate=$2 playout=$4 lat=$5 extra=$6 rpid spid1 spid2
	nl_bg s "$TERN" stream recv --udp-in 127.0.0.1:9001 --playout "$playout" --frames-log "$NL_DIR/$name.frames" \
		--idle-timeout 5000 >"$NL_DIR/$name.recv" 2>&1
	rpid=$NL_BGPID
	nl_bg s srt-live-transmit -q "srt://:9000?mode=listener&latency=$lat$extra" \
		udp://127.0.0.1:9001 >"$NL_DIR/$name.srt-rx" 2>&1
	spid2=$NL_BGPID
	sleep 0.3
	nl_bg c srt-live-transmit -q "udp://127.0.0.1:9002" \
		"srt://10.80.0.2:9000?latency=$lat$extra" >"$NL_DIR/$name.srt-tx" 2>&1
	spid1=$NL_BGPID
	sleep 1 # the SRT handshake (1.5 RTT) before the first frame
	nl_exec c "$TERN" stream send --udp-out 127.0.0.1:9002 --bitrate "$bitrate" \
		--duration "$duration" --seed "$seed" >"$NL_DIR/$name.send" 2>&1 || true
	wait_pid "$rpid" $((lat / 1000 + 8))
	kill "$spid1" "$spid2" 2>/dev/null || true
	wait "$spid1" "$spid2" 2>/dev/null || true
}

srt_latency() { awk -v r="$1" 'BEGIN { l = 4 * r; if (l < 120) l = 120; printf "%d", l }'; }

run_srt() { run_srt_variant srt "$1" "$2" "$3" "$(srt_latency "$2")" ""; }
run_srt-fec() { run_srt_variant srt-fec "$1" "$2" "$3" "$(srt_latency "$2")" "&packetfilter=fec,cols:10,rows:5"; }
run_srt-budget() { run_srt_variant srt-budget "$1" "$2" "$3" 80 ""; }

val() { sed -n 's/.* result .*/&/p' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }

host=$(uname -r)
printf '# bench/media/live.sh: %s s of 25 fps video at %s x the link rate, GOP 50, playout one-way delay + 100 ms (seed %s, %s, kernel %s)\n' \
	"$duration" "$load" "$seed" "$(date -u +%Y-%m-%dT%H:%MZ)" "$host"
echo "| rate Mbit/s | RTT ms | loss % | loss | peer | on time % | late | lost | delivered % | p50 ms | p99 ms | max ms | stall ms |"
echo "|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
ratios=()
for rate in $rates; do
	for rtt in $rtts; do
		for loss in $losses; do
			for kind in $kinds; do
				bitrate=$(awk -v r="$rate" -v l="$load" 'BEGIN { printf "%d", r * l * 1e6 }')
				playout=$(awk -v r="$rtt" 'BEGIN { printf "%d", r / 2 + 100 }')
				declare -A on=() p99=()
				for p in $peers; do
					cell_lab "$rate" "$rtt" "$loss" "$kind"
					"run_$p" "$bitrate" "$rtt" "$playout"
					f="$NL_DIR/$p.recv"
					if [ -n "$keep" ]; then
						for g in "$NL_DIR"/"$p".*; do cp "$g" "$keep/$rate-$rtt-$loss-$kind-$(basename "$g")"; done
					fi
					if ! grep -q ' result ' "$f" 2>/dev/null; then
						echo "| $rate | $rtt | $loss | $kind | $p | failed | | | | | | | |"
						on[$p]=0
						continue
					fi
					frames=$(val "$f" frames)
					late=$(val "$f" late)
					lost=$(val "$f" lost)
					on[$p]=$(val "$f" ontime_pct)
					p99[$p]=$(val "$f" p99_ms)
					deliv=$(awk -v f="$frames" -v l="$lost" 'BEGIN { printf "%.2f", f ? 100 * (f - l) / f : 0 }')
					printf '| %s | %s | %s | %s | %s | %.2f | %s | %s | %s | %s | %s | %s | %s |\n' \
						"$rate" "$rtt" "$loss" "$kind" "$p" "${on[$p]}" "$late" "$lost" "$deliv" \
						"$(val "$f" p50_ms)" "${p99[$p]}" "$(val "$f" max_ms)" "$(val "$f" stall_ms)"
				done
				if [ -n "${on[tern]:-}" ]; then
					for p in $peers; do
						[ "$p" = tern ] && continue
						ratios+=("$(awk -v c="$rate/$rtt/$loss/$kind" -v p="$p" -v a="${on[tern]}" -v b="${on[$p]:-0}" \
							-v x="${p99[tern]:-0}" -v y="${p99[$p]:-0}" 'BEGIN {
								printf "ratio %s tern/%s: on time %.2f%% vs %.2f%% (%s), p99 %.0f vs %.0f ms (%.2fx)",
									c, p, a, b, (b > 0 ? sprintf("%.2fx", a / b) : "n/a"), x, y, (y > 0 ? x / y : 0) }')")
					done
				fi
				unset on p99
			done
		done
	done
done
for r in "${ratios[@]}"; do echo "$r"; done
