#!/usr/bin/env bash
# bench/media/files.sh: one file over an emulated mobile link, wall time from the start of the
# sender to the receiver's verified end (handshake, startup and tail included), for tern
# send/recv, TCP BBR, TCP CUBIC (bench/media/tcpxfer) and SRT file mode (srt-file-transmit), one
# after the other on the same lab, same bytes, same loss seed.
#
#   bench/media/files.sh [--quick] [--rates "10 1.1"] [--rtts "300 600"] [--losses "0 1 3"]
#                        [--kinds "random bursty"] [--peers "tern bbr cubic srt"] [--seed N]
#                        [--logs DIR]
#
# Cells: RATE Mbit/s both ways, RTT/2 one-way delay each way, a drop-tail queue of one BDP
# (at least 6000 bytes), loss on the data direction only: "random" (independent, LOSS %) or
# "bursty" (Gilbert-Elliott, ge=P/R: the bad state loses every packet and lasts 1/R packets on
# average, 3.3 with R = 30%; P chosen so that the mean loss is LOSS %). The file is 30 MB at
# 10 Mbit/s and 3 MB at 1.1 Mbit/s (other rates: RATE x 24 s): random bytes, the same file for
# every peer.
# --quick: 10 Mbit/s, 300 ms, 1% random only.
#
# Figures: goodput as % of the link rate (file bytes x 8 / wall time / RATE), and each peer's
# wall time over tern's as tern/PEER (> 1: tern is faster). A transfer that is not over after
# 3 x the ideal time + 10 s is cut and shows "cut".
#
# Verification: tern recv renames its file into place only once its size and SHA-256 match (that
# is tern's end; it must then exit 0);
# tcpxfer recv compares every byte with the file; SRT's output is compared with cmp once it holds
# every byte (its end time is when the last byte landed).
#
# Needs root, a Release build of tern, tern-linkem and tcpxfer (BUILD_DIR, default build/rel;
# or set TERN, NETLAB_LINKEM, TCPXFER), and srt-file-transmit for the SRT column.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-$root/build/rel}
TERN=${TERN:-$BUILD_DIR/src/tools/tern}
TCPXFER=${TCPXFER:-$BUILD_DIR/bench/media/tcpxfer}
export NETLAB_LINKEM=${NETLAB_LINKEM:-$BUILD_DIR/netlab/tern-linkem}
source "$root/netlab/lib.sh"

rates="10 1.1"
rtts="300 600"
losses="0 1 3"
kinds="random bursty"
peers="tern bbr cubic srt"
seed=1
logs=${TMPDIR:-/tmp}/tern-bench-files
while [ $# -gt 0 ]; do
	case $1 in
	--quick) rates="10"; rtts="300"; losses="1"; kinds="random"; shift ;;
	--rates) rates=$2; shift 2 ;;
	--rtts) rtts=$2; shift 2 ;;
	--losses) losses=$2; shift 2 ;;
	--kinds) kinds=$2; shift 2 ;;
	--peers) peers=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	--logs) logs=$2; shift 2 ;;
	*) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "bench/media/files.sh: needs root" >&2; exit 1; }
for p in $peers; do
	case $p in
	tern) [ -x "$TERN" ] || { echo "files.sh: no tern at $TERN (build it or set TERN)" >&2; exit 1; } ;;
	bbr | cubic) [ -x "$TCPXFER" ] || { echo "files.sh: no tcpxfer at $TCPXFER (build target tcpxfer)" >&2; exit 1; } ;;
	srt) command -v srt-file-transmit >/dev/null || { echo "files.sh: srt-file-transmit not installed" >&2; exit 1; } ;;
	*) echo "files.sh: unknown peer $p" >&2; exit 2 ;;
	esac
done
mkdir -p "$logs"
work=$(mktemp -d "${TMPDIR:-/tmp}/files.XXXXXX")
nl_init
trap 'nl_down; rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { date +%s.%N; }
later() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; } # A later than B

cell_lab() { nl_mobile_lab "$1" "$2" "$3" "$4" 30; } # RATE RTT LOSS KIND: bursts of 3.3

# timed RPID CAP CHECK SEND...: starts SEND in c (the sender), then waits until the receiver
# RPID exits (or, when CHECK is a command, until it succeeds) or CAP seconds pass; prints the
# wall time in seconds, or "cut". The receiver's exit status must be 0 (verified).
timed() {
	local rpid=$1 cap=$2 check=$3 t0 t1 deadline spid rc=0
	shift 3
	t0=$(now)
	nl_bg c "$@" </dev/null >/dev/null 2>&1
	spid=$NL_BGPID
	deadline=$(awk -v t="$t0" -v c="$cap" 'BEGIN { printf "%.3f", t + c }')
	while :; do
		if [ "$check" != - ]; then
			$check && break
		elif ! kill -0 "$rpid" 2>/dev/null; then
			break
		fi
		later "$(now)" "$deadline" && break
		sleep 0.02
	done
	t1=$(now)
	if [ "$check" = - ] && ! kill -0 "$rpid" 2>/dev/null; then
		wait "$rpid" || rc=$?
	elif [ "$check" != - ] && $check; then
		rc=0
		if [ "$check" = tern_done ]; then # the receiver must still exit 0 (within 5 s)
			for _ in $(seq 100); do kill -0 "$rpid" 2>/dev/null || break; sleep 0.05; done
			kill -0 "$rpid" 2>/dev/null && kill "$rpid"
			wait "$rpid" || rc=$?
		fi
	else
		rc=124
	fi
	kill "$spid" "$rpid" 2>/dev/null || true
	wait "$spid" 2>/dev/null || true
	if [ "$rc" = 0 ]; then
		awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
	else
		echo cut
	fi
}

# tern recv renames its temporary file into rx/in.bin only once the size and SHA-256 match: that
# is its verified end (it then tells the sender and lingers until the sender closes, which is not
# counted, as tcpxfer's receiver exits at once). Its exit status is checked afterwards.
tern_done() { [ -e "$work/rx/in.bin" ]; }

run_tern() { # CAP LOG
	rm -rf "$work/rx" && mkdir -p "$work/rx"
	nl_bg s "$TERN" recv --listen 10.80.0.2:9100 --key "$work/tern.key" --dir "$work/rx" --quiet >>"$2" 2>&1
	local rpid=$NL_BGPID
	sleep 0.3
	timed "$rpid" "$1" tern_done bash -c "exec \"$TERN\" send \"$work/in.bin\" --to 10.80.0.2:9100 \
		--server-key $(cat "$work/tern.pub") --quiet --verbose ${TERN_SEND_ARGS:-} >>\"$2\" 2>&1"
}

run_tcp() { # CC CAP LOG
	nl_bg s "$TCPXFER" recv 9200 "$work/in.bin" >>"$3" 2>&1
	local rpid=$NL_BGPID
	sleep 0.2
	timed "$rpid" "$2" - bash -c "exec \"$TCPXFER\" send 10.80.0.2 9200 \"$work/in.bin\" $1 >>\"$3\" 2>&1"
}

srt_done() { # the SRT output holds every byte and matches
	[ "$(stat -c %s "$work/rx/in.bin" 2>/dev/null || echo 0)" -ge "$bytes" ] && cmp -s "$work/in.bin" "$work/rx/in.bin"
}

run_srt() { # CAP LOG
	rm -rf "$work/rx" && mkdir -p "$work/rx"
	nl_bg s srt-file-transmit -q "srt://:9000?mode=listener&transtype=file" "file://$work/rx/" >>"$2" 2>&1
	local rpid=$NL_BGPID
	sleep 0.3
	timed "$rpid" "$1" srt_done bash -c "exec srt-file-transmit -q \"file://$work/in.bin\" \
		\"srt://10.80.0.2:9000?transtype=file\" >>\"$2\" 2>&1"
}

"$TERN" keygen --out "$work/tern.key" >"$work/tern.pub" 2>/dev/null
printf '# bench/media/files.sh: %% of the link rate, wall time from the sender'"'"'s start to the verified end\n'
printf '# seed %s, %s, %s, logs in %s\n' "$seed" "$(date -u +%Y-%m-%dT%H:%MZ)" "$(uname -r)" "$logs"
hdr="| Mbit/s | MB | RTT ms | loss | kind |"
sep="|---:|---:|---:|---:|---|"
for p in $peers; do
	case $p in tern) n=tern ;; bbr) n="TCP BBR" ;; cubic) n="TCP CUBIC" ;; srt) n="SRT file" ;; esac
	hdr="$hdr $n |"
	sep="$sep---:|"
done
for p in $peers; do [ "$p" != tern ] && [[ " $peers " == *" tern "* ]] && hdr="$hdr tern/$p |" && sep="$sep---:|"; done
echo "$hdr"
echo "$sep"
for rate in $rates; do
	bytes=$(awk -v r="$rate" 'BEGIN { b = r * 1e6 * 24 / 8; if (r == 10) b = 30e6; if (r == 1.1) b = 3e6; printf "%d", b }')
	head -c "$bytes" /dev/urandom >"$work/in.bin"
	ideal=$(awk -v b="$bytes" -v r="$rate" 'BEGIN { printf "%.3f", b * 8 / (r * 1e6) }')
	cap=$(awk -v i="$ideal" 'BEGIN { printf "%.0f", 3 * i + 10 }')
	for rtt in $rtts; do
		for loss in $losses; do
			for kind in $kinds; do
				[ "$loss" = 0 ] && [ "$kind" != "${kinds%% *}" ] && continue # no loss: one kind
				k=$kind
				[ "$loss" = 0 ] && k=-
				row="| $rate | $(awk -v b="$bytes" 'BEGIN { printf "%g", b / 1e6 }') | $rtt | $loss% | $k |"
				declare -A wall=()
				for p in $peers; do
					cell_lab "$rate" "$rtt" "$loss" "$kind"
					log="$logs/$p-$rate-$rtt-$loss-$k.log"
					: >"$log"
					case $p in
					tern) w=$(run_tern "$cap" "$log") ;;
					bbr | cubic) w=$(run_tcp "$p" "$cap" "$log") ;;
					srt) w=$(run_srt "$cap" "$log") ;;
					esac
					wall[$p]=$w
					echo "wall $w s" >>"$log"
					if [ "$w" = cut ]; then
						row="$row cut |"
					else
						row="$row $(awk -v i="$ideal" -v w="$w" 'BEGIN { printf "%.1f%% (%.1f s)", 100 * i / w, w }') |"
					fi
				done
				for p in $peers; do
					[ "$p" = tern ] || [[ " $peers " != *" tern "* ]] && continue
					if [ "${wall[tern]}" = cut ] || [ "${wall[$p]}" = cut ]; then
						row="$row - |"
					else
						row="$row $(awk -v a="${wall[tern]}" -v b="${wall[$p]}" 'BEGIN { printf "%.3f", b / a }') |"
					fi
				done
				unset wall
				echo "$row"
			done
		done
	done
done
