#!/usr/bin/env bash
# bench/mobility/mtu.sh: a path MTU drop mid-transfer, for tern and for TCP, on the same lab in
# the same run. Prints each peer's wall time from the start of the transfer to its verified end
# (tern send exits once the receiver stored the file and confirmed its SHA-256; the TCP receiver
# has read to EOF and the file compares equal), and the ratio tern / TCP.
#
#   bench/mobility/mtu.sh [--size MB] [--rate MBIT] [--rtt MS] [--drop-after S] [--mtu BYTES]
#                         [--peers "tern tcp tcp-noprobe"] [--timeout S] [--seed N] [--baseline]
#
# The lab: hosts a (10.77.0.1) and b (10.77.0.2) joined by one tern-linkem link of RATE Mbit/s
# (default 20) and RTT/2 one-way delay each way (default 40 ms RTT), every interface at MTU 1500.
# DROP-AFTER seconds (default 2) into each transfer the MTU of the emulator's veth towards b is
# set to BYTES (default 1300) with `ip -n NS link set dev b mtu BYTES`: frames a sends that are
# larger die there silently (no ICMP; the emulator counts them as transmit errors); the next
# transfer starts with the MTU back at 1500. The file is SIZE MB of random bytes (default 20),
# sent a -> b.
#
# Peers: tern (`tern send` / `tern recv`; TERN = a built tern binary, default the newest
# build*/src/tools/tern), tcp (a plain TCP transfer by perl, CUBIC, with Linux's black-hole
# detection on: net.ipv4.tcp_mtu_probing=1 in both namespaces, RFC 4821), tcp-noprobe (the same
# with the kernel's default tcp_mtu_probing=0: no detection, so it usually stalls until the
# timeout). A transfer not over after TIMEOUT seconds (default 120) is cut and reported as such.
# --baseline: each peer also runs once without the drop first ("PEER (no drop): ..."), so that
# the cost of the event is the difference.
# Needs root and a built tern-linkem (netlab/README.md). Output, one line per peer:
#   PEER: verified|FAILED|cut bytes=N ms=WALL drop_at_ms=T dropped_frames=N
# then "ratio tern/tcp=R" when both ran.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../netlab/lib.sh"

size_mb=20
rate=20
rtt=40
drop_after=2
mtu=1300
peers="tern tcp"
timeout_s=120
seed=1
baseline=0
while [ $# -gt 0 ]; do
	case $1 in
	--size) size_mb=$2; shift 2 ;;
	--rate) rate=$2; shift 2 ;;
	--rtt) rtt=$2; shift 2 ;;
	--drop-after) drop_after=$2; shift 2 ;;
	--mtu) mtu=$2; shift 2 ;;
	--peers) peers=$2; shift 2 ;;
	--timeout) timeout_s=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	--baseline) baseline=1; shift ;;
	*) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "bench/mobility/mtu.sh: needs root" >&2; exit 1; }
if [[ " $peers " == *" tern "* ]] && [ -z "${TERN:-}" ]; then
	TERN=$(ls -t "$here"/../../build*/src/tools/tern 2>/dev/null | head -1 || true)
	[ -n "$TERN" ] || { echo "bench/mobility/mtu.sh: set TERN to a built tern binary" >&2; exit 1; }
fi

NL_SEED=$seed
nl_init
nl_trap
work=$(mktemp -d "${TMPDIR:-/tmp}/mtu-bench.XXXXXX")
trap 'rm -rf "$work"; nl_down' EXIT
half=$(awk -v r="$rtt" 'BEGIN { printf "%gms", r / 2 }')
queue=$(awk -v r="$rate" -v t="$rtt" 'BEGIN { b = r * 1e6 * t / 1000 / 8; if (b < 16384) b = 16384; printf "%d", b }')
spec="delay=$half rate=${rate}mbit queue=$queue"
nl_ns a
nl_ns b
nl_link a eth0 10.77.0.1/24 b eth0 10.77.0.2/24 "$spec" "$spec" >/dev/null
lns=$(nl_nsname "$(nl_linkid a)")
head -c $((size_mb * 1000000)) /dev/urandom >"$work/file.bin"
bytes=$(stat -c %s "$work/file.bin")
mkdir -p "$work/rx"
echo "mtu: $bytes bytes a -> b, ${rate} Mbit/s, RTT ${rtt} ms, MTU 1500 -> $mtu after ${drop_after} s" \
	"(emulator veth $lns/b), seed $seed"

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# The plain TCP peer: the receiver writes what it reads until EOF, then closes; the sender
# writes the file, shuts its side down and waits for the receiver's close.
tcp_recv() {
	perl -MIO::Socket::INET -e '
		my $s = IO::Socket::INET->new(LocalAddr => $ARGV[0], LocalPort => $ARGV[1], Listen => 1,
			ReuseAddr => 1) or die "listen: $!";
		my $c = $s->accept or die "accept: $!";
		open(my $f, ">", $ARGV[2]) or die; binmode $f;
		while ((my $n = sysread($c, my $b, 1 << 16)) > 0) { print $f $b or die }
		close $f or die; close $c' "$@"
}
tcp_send() {
	perl -MIO::Socket::INET -e '
		my $c = IO::Socket::INET->new(PeerAddr => $ARGV[0], PeerPort => $ARGV[1]) or die "connect: $!";
		open(my $f, "<", $ARGV[2]) or die; binmode $f;
		while ((my $n = sysread($f, my $b, 1 << 16)) > 0) {
			my $o = 0; while ($o < $n) { my $w = syswrite($c, $b, $n - $o, $o); die "write: $!" unless defined $w; $o += $w }
		}
		shutdown($c, 1); 1 while sysread($c, my $x, 1);' "$@"
}

declare -A wall
run_peer() { # PEER [LABEL: set for a run without the drop]
	local peer=$1 label=${2:-} rpid spid rc=0 t0 t1 tdrop txerr0 txerr1 state
	ip -n "$lns" link set dev b mtu 1500
	rm -f "$work/rx/file.bin"
	case $peer in
	tern)
		"$TERN" keygen --out "$work/tern.key" --force >"$work/tern.pub" 2>/dev/null
		nl_bg b "$TERN" recv --listen 10.77.0.2:4433 --key "$work/tern.key" --out "$work/rx/file.bin" \
			--force --quiet >"$work/recv.log" 2>&1
		rpid=$NL_BGPID
		for _ in $(seq 50); do nl_exec b ss -Huln 'sport = :4433' | grep -q . && break; sleep 0.1; done
		;;
	tcp | tcp-noprobe)
		local probe=1
		[ "$peer" = tcp-noprobe ] && probe=0
		nl_exec a sysctl -qw net.ipv4.tcp_mtu_probing=$probe
		nl_exec b sysctl -qw net.ipv4.tcp_mtu_probing=$probe
		nl_bg b bash -c "$(declare -f tcp_recv); tcp_recv 10.77.0.2 5001 '$work/rx/file.bin'"
		rpid=$NL_BGPID
		for _ in $(seq 50); do nl_exec b ss -Hltn 'sport = :5001' | grep -q . && break; sleep 0.1; done
		;;
	*) echo "unknown peer $peer" >&2; return 1 ;;
	esac
	txerr0=$(nl_stats a ab txerr)
	t0=$(now_ms)
	if [ "$peer" = tern ]; then
		nl_bg a timeout "$timeout_s" "$TERN" send "$work/file.bin" --to 10.77.0.2:4433 \
			--server-key "$(cat "$work/tern.pub")" --quiet --verbose >"$work/send.log" 2>&1
	else
		nl_bg a timeout "$timeout_s" bash -c "$(declare -f tcp_send); tcp_send 10.77.0.2 5001 '$work/file.bin'"
	fi
	spid=$NL_BGPID
	tdrop=-
	if [ -z "$label" ]; then
		sleep "$drop_after"
		ip -n "$lns" link set dev b mtu "$mtu"
		tdrop=$(($(now_ms) - t0))
	fi
	wait "$spid" || rc=$?
	# the receiver is done once the sender is (tern: it confirmed; TCP: it closed first)
	for _ in $(seq 100); do kill -0 "$rpid" 2>/dev/null || break; sleep 0.05; done
	kill "$rpid" 2>/dev/null || true
	wait "$rpid" 2>/dev/null || true
	state=verified
	cmp -s "$work/file.bin" "$work/rx/file.bin" || state=FAILED
	t1=$(now_ms)
	[ "$rc" = 124 ] && state=cut
	[ "$rc" != 0 ] && [ "$state" = verified ] && state=FAILED
	txerr1=$(nl_stats a ab txerr)
	if [ -z "$label" ]; then
		wall[$peer]=$((t1 - t0))
		[ "$state" = verified ] || wall[$peer]=""
	fi
	local extra=""
	if [ "$peer" = tern ]; then
		# the sender's path MTU counters (tern send --verbose)
		extra=$(sed -n 's/.*conn: pmtu_size \([0-9]*\) pmtu_suspicions \([0-9]*\) pmtu_black_holes \([0-9]*\).*/ pmtu_size_end=\1 pmtu_suspicions=\2 pmtu_black_holes=\3/p' \
			"$work/send.log" | tail -1)
		[ "$state" = verified ] || { cat "$work/send.log" "$work/recv.log" >&2 || true; }
	fi
	echo "$peer$label: $state bytes=$bytes ms=$((t1 - t0)) drop_at_ms=$tdrop dropped_frames=$((txerr1 - txerr0))$extra"
}

for p in $peers; do
	[ "$baseline" = 1 ] && run_peer "$p" " (no drop)"
	run_peer "$p"
done
if [ -n "${wall[tern]:-}" ] && [ -n "${wall[tcp]:-}" ]; then
	awk -v a="${wall[tern]}" -v b="${wall[tcp]}" 'BEGIN { printf "ratio tern/tcp=%.2f\n", a / b }'
fi
