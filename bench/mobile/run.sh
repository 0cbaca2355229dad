#!/usr/bin/env bash
# bench/mobile: goodput as a percentage of the link rate over the links mobile users see, for
# TCP (CUBIC, iperf3), SRT (srt-file-transmit, file mode) and, once it exists, tern.
#
#   bench/mobile/run.sh [--quick] [--time S] [--rates "1.1 10"] [--rtts "300 600"]
#                       [--losses "0.1 1 3"] [--peers "tcp srt tern"] [--seed N]
#
# Each cell: two hosts joined by one tern-linkem link; RATE Mbit/s both ways, RTT/2 one-way delay
# each way, a drop-tail queue of one BDP, random loss on the data direction only. TCP runs iperf3
# for S seconds (slow start included); SRT sends a file of RATE x S bytes and its goodput is the
# bytes received over the time from the first byte to the last (a transfer that is not over after
# 3 x S seconds is cut there and counts what arrived). Needs root and a built tern-linkem.
#
# tern: set TERN to a built tern binary (tern send / tern recv are then used), or set TERN_RECV
# and TERN_SEND to commands (run on the server and the client) in which {addr}, {port}, {file},
# {dir}, {key} (a private key file made with tern keygen) and {pub} (its public key) are replaced:
# the receiver stores the file in {dir}. tern's goodput is the receiver's own figure (first
# message to last; tern recv writes through a temporary file that is renamed only once verified,
# so the file cannot be polled), or, when the cell is cut, the share its last progress line shows.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../netlab/lib.sh"

T=15
rates="1.1 10"
rtts="300 600"
losses="0.1 1 3"
peers="tcp srt tern"
seed=1
while [ $# -gt 0 ]; do
	case $1 in
	--quick) T=6; rates="10"; rtts="300"; losses="0.1 1"; shift ;;
	--time) T=$2; shift 2 ;;
	--rates) rates=$2; shift 2 ;;
	--rtts) rtts=$2; shift 2 ;;
	--losses) losses=$2; shift 2 ;;
	--peers) peers=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	*) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "bench/mobile: needs root" >&2; exit 1; }
if [ -n "${TERN:-}" ]; then
	[ -n "${TERN_RECV:-}" ] || TERN_RECV="$TERN"' recv --listen {addr}:{port} --key {key} --dir {dir}'
	[ -n "${TERN_SEND:-}" ] || TERN_SEND="$TERN"' send {file} --to {addr}:{port} --server-key {pub} --quiet'
fi
if [[ " $peers " == *" tern "* ]] && { [ -z "${TERN_SEND:-}" ] || [ -z "${TERN_RECV:-}" ]; }; then
	peers=${peers/tern/}
	tern_note="tern: not measured (set TERN_SEND and TERN_RECV; see the header of this script)"
fi

nl_init
nl_trap

cell_lab() { nl_mobile_lab "$1" "$2" "$3"; } # RATE RTT LOSS (random)

run_tcp() { # RATE: prints Mbit/s
	nl_bg s iperf3 -s -1 >/dev/null 2>&1
	sleep 0.3
	nl_exec c iperf3 -c 10.80.0.2 -t "$T" -C cubic -J 2>/dev/null |
		awk -F'[:,]' '/"sum_received"/ { r = 1 } r && /"bits_per_second"/ { printf "%.3f\n", $2 / 1e6; exit }'
}

# wait_file FILE SIZE PID: polls FILE until it holds SIZE bytes, PID exits or 3 x T seconds pass;
# prints Mbit/s from the first byte to the last.
wait_file() {
	local f=$1 size=$2 pid=$3 t0="" t1 now n last=0 deadline
	deadline=$(awk -v t="$(date +%s.%N)" -v T="$T" 'BEGIN { printf "%.3f", t + 3 * T + 5 }')
	while :; do
		now=$(date +%s.%N)
		n=$(stat -c %s "$f" 2>/dev/null || echo 0)
		if [ "$n" -gt 0 ] && [ -z "$t0" ]; then t0=$now; fi
		if [ "$n" != "$last" ]; then t1=$now; last=$n; fi
		[ "$n" -ge "$size" ] && break
		kill -0 "$pid" 2>/dev/null || break
		awk -v a="$now" -v b="$deadline" 'BEGIN { exit !(a > b) }' && break
		sleep 0.05
	done
	if [ -z "$t0" ]; then echo 0; return; fi
	awk -v n="$last" -v a="$t0" -v b="$t1" 'BEGIN { d = b - a; if (d <= 0) d = 0.05; printf "%.3f\n", n * 8 / d / 1e6 }'
}

make_file() { # RATE -> path of a file of RATE x T bytes
	local bytes
	bytes=$(awk -v r="$1" -v t="$T" 'BEGIN { printf "%d", r * 1e6 * t / 8 }')
	head -c "$bytes" /dev/urandom >"$NL_DIR/in.bin"
	echo "$bytes"
}

run_srt() { # RATE
	local bytes spid
	bytes=$(make_file "$1")
	mkdir -p "$NL_DIR/rx"
	nl_bg s srt-file-transmit -q "srt://:9000?mode=listener&transtype=file" "file://$NL_DIR/rx/" >/dev/null 2>&1
	spid=$NL_BGPID
	sleep 0.3
	nl_bg c srt-file-transmit -q "file://$NL_DIR/in.bin" "srt://10.80.0.2:9000?transtype=file" >/dev/null 2>&1
	wait_file "$NL_DIR/rx/in.bin" "$bytes" "$spid"
	kill "$NL_BGPID" "$spid" 2>/dev/null || true
}

run_tern() { # RATE
	local bytes rpid r s t0 deadline now n
	bytes=$(make_file "$1")
	rm -rf "$NL_DIR/rx"
	mkdir -p "$NL_DIR/rx"
	if [ ! -f "$NL_DIR/tern.key" ] && [ -n "${TERN:-}" ]; then
		"$TERN" keygen --out "$NL_DIR/tern.key" >"$NL_DIR/tern.pub" 2>/dev/null
	fi
	sub() {
		local x=$1
		x=${x//\{addr\}/10.80.0.2}; x=${x//\{port\}/9100}; x=${x//\{file\}/$NL_DIR/in.bin}
		x=${x//\{key\}/$NL_DIR/tern.key}; x=${x//\{pub\}/$(cat "$NL_DIR/tern.pub" 2>/dev/null)}
		echo "${x//\{dir\}/$NL_DIR/rx}"
	}
	r=$(sub "$TERN_RECV")
	s=$(sub "$TERN_SEND")
	nl_bg s bash -c "exec $r >$NL_DIR/tern-recv.log 2>&1"
	rpid=$NL_BGPID
	sleep 0.3
	nl_bg c bash -c "$s" >/dev/null 2>&1
	t0=$(date +%s.%N)
	deadline=$(awk -v t="$t0" -v T="$T" 'BEGIN { printf "%.3f", t + 3 * T + 5 }')
	while kill -0 "$rpid" 2>/dev/null; do
		now=$(date +%s.%N)
		awk -v a="$now" -v b="$deadline" 'BEGIN { exit !(a > b) }' && break
		sleep 0.05
	done
	if kill -0 "$rpid" 2>/dev/null; then # cut: the receiver's last progress line (every 2 s)
		n=$(sed -n 's/^tern recv: in\.bin: \([0-9.]*\)%,.*/\1/p' "$NL_DIR/tern-recv.log" | tail -1)
		awk -v p="${n:-0}" -v s="$bytes" -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f\n", p / 100 * s * 8 / (b - a) / 1e6 }'
	else
		sed -n 's/.* bytes in [0-9.]* s, \([0-9.]*\) Mbit\/s.*/\1/p' "$NL_DIR/tern-recv.log" | head -1 | grep . || echo 0
	fi
	kill "$NL_BGPID" "$rpid" 2>/dev/null || true
}

printf '# bench/mobile: goodput, %% of the link rate (%s s per cell, seed %s, %s)\n' "$T" "$seed" "$(date -u +%Y-%m-%dT%H:%MZ)"
hdr="| rate Mbit/s | RTT ms | loss % |"
sep="|---:|---:|---:|"
for p in $peers; do
	case $p in tcp) hdr="$hdr TCP CUBIC |" ;; srt) hdr="$hdr SRT file |" ;; tern) hdr="$hdr tern |" ;; esac
	sep="$sep---:|"
done
echo "$hdr"
echo "$sep"
for rate in $rates; do
	for rtt in $rtts; do
		for loss in $losses; do
			row="| $rate | $rtt | $loss |"
			for p in $peers; do
				cell_lab "$rate" "$rtt" "$loss"
				mbit=$(run_"$p" "$rate" || echo 0)
				pct=$(awk -v m="${mbit:-0}" -v r="$rate" 'BEGIN { printf "%.0f", 100 * m / r }')
				row="$row $pct |"
			done
			echo "$row"
		done
	done
done
[ -n "${tern_note:-}" ] && echo "# $tern_note"
true
