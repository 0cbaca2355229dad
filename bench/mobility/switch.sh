#!/usr/bin/env bash
# bench/mobility/switch.sh: a client loses its first uplink mid-transfer and has a second one,
# for tern and for TCP, on the same lab in the same run. Prints, per peer, the gap (the longest
# time the receiver's file did not grow, which is the switch) and the wall time from the start
# of the transfer to its verified end, then the ratios tern / TCP.
#
#   bench/mobility/switch.sh [--size MB] [--cut-after S] [--cut link|addr] [--stall S]
#                            [--peers "tern tcp tcp-reconnect"] [--timeout S] [--seed N]
#
# The lab (tests/netlab/uplinks_common.sh): the client has uplink 1 (20 Mbit/s, 10 ms each way,
# default route metric 100) and uplink 2 (10 Mbit/s, 25 ms, metric 200) to a router, the server
# sits behind the router. CUT-AFTER seconds (default 1.5) into each transfer uplink 1 goes
# (`ip link set eth0 down`, or its address deleted with --cut addr); each transfer runs in a
# fresh lab. The file is SIZE MB of random bytes (default 12), client -> server.
#
# Peers:
#   tern           tern send / tern recv (TERN = a built tern binary, default the newest
#                  build*/src/tools/tern): the client driver migrates by itself (netlink).
#   tcp            one TCP connection (perl, CUBIC): it is bound to uplink 1's address, the
#                  server's answers go to that address and die with the uplink, so it stalls;
#                  cut at TIMEOUT (default 20 s after the cut) and reported as such.
#   tcp-reconnect  what a TCP application must do instead: its sender gives a connection up
#                  after STALL seconds (default 2) without write progress, connects again (the
#                  kernel then picks uplink 2) and resumes from the offset the receiver reports.
# The gap is measured at the receiver by polling the size of what it has written every 10 ms
# (tern recv writes the file as it arrives, into a temporary file renamed once verified).
# Needs root, perl and a built tern-linkem (netlab/README.md). Output, one line per peer:
#   PEER: verified|FAILED|cut bytes=N ms=WALL gap_ms=G cut_at_ms=T [reconnects=N | moves...]
# then "ratio tern/tcp-reconnect gap=R wall=R".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../netlab/lib.sh"
source "$here/../../tests/netlab/uplinks_common.sh"

size_mb=12
cut_after=1.5
cut=link
stall=2
peers="tern tcp tcp-reconnect"
timeout_s=20
seed=1
while [ $# -gt 0 ]; do
	case $1 in
	--size) size_mb=$2; shift 2 ;;
	--cut-after) cut_after=$2; shift 2 ;;
	--cut) cut=$2; shift 2 ;;
	--stall) stall=$2; shift 2 ;;
	--peers) peers=$2; shift 2 ;;
	--timeout) timeout_s=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	*) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "bench/mobility/switch.sh: needs root" >&2; exit 1; }
if [[ " $peers " == *" tern "* ]] && [ -z "${TERN:-}" ]; then
	TERN=$(ls -t "$here"/../../build*/src/tools/tern 2>/dev/null | head -1 || true)
	[ -n "$TERN" ] || { echo "bench/mobility/switch.sh: set TERN to a built tern binary" >&2; exit 1; }
fi
UP1="delay=10ms rate=20mbit"
UP2="delay=25ms rate=10mbit"

NL_SEED=$seed
work=$(mktemp -d "${TMPDIR:-/tmp}/switch-bench.XXXXXX")
trap 'rm -rf "$work"; [ -n "${NL_LAB:-}" ] && nl_down' EXIT
head -c $((size_mb * 1000000)) /dev/urandom >"$work/file.bin"
bytes=$(stat -c %s "$work/file.bin")
echo "switch: $bytes bytes cli -> srv; uplink 1 ($UP1) goes ($cut) ${cut_after} s in," \
	"uplink 2 ($UP2) stays; seed $seed"

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# TCP with resume: the receiver tells each connection how much it has ("OFF n"), then appends
# what it reads; it exits once it has TOTAL bytes. The sender seeks there and writes; with
# STALL > 0 it gives a connection up after STALL seconds without write progress and connects
# again (counted on stderr as "reconnect").
tcp_recv() { # ADDR PORT FILE TOTAL
	perl -MIO::Socket::INET -MIO::Select -e '
		my ($a, $p, $file, $total) = @ARGV;
		my $s = IO::Socket::INET->new(LocalAddr => $a, LocalPort => $p, Listen => 4,
			ReuseAddr => 1) or die "listen: $!";
		open(my $f, ">", $file) or die; binmode $f; my $have = 0; my $c;
		# a new connection replaces the current one (whose sender gave it up)
		while ($have < $total || defined $c) {
			my @r = IO::Select->new($s, defined $c ? $c : ())->can_read(1);
			for my $h (@r) {
				if ($h == $s) {
					close $c if defined $c;
					$c = $s->accept or next;
					syswrite($c, "OFF $have\n");
				} else {
					my $n = sysread($c, my $b, 1 << 16);
					if (!$n) { close $c; undef $c; next }
					syswrite($f, $b) == $n or die; $have += $n;
				}
			}
		}
		close $f' "$@"
}
tcp_send() { # ADDR PORT FILE STALL
	perl -MIO::Socket::INET -MIO::Select -MTime::HiRes=time -e '
		my ($a, $p, $file, $stall) = @ARGV;
		open(my $f, "<", $file) or die; binmode $f; my $size = -s $file;
		while (1) {
			my $c = IO::Socket::INET->new(PeerAddr => $a, PeerPort => $p, Timeout => 2) or do {
				select(undef, undef, undef, 0.2); next };
			my $line = <$c>; defined $line && $line =~ /^OFF (\d+)/ or do { close $c; next };
			my $off = $1; seek($f, $off, 0); $c->blocking(0);
			my $sel = IO::Select->new($c); my $last = time; my ($buf, $o, $n) = ("", 0, 0);
			while ($off < $size) {
				if ($o == $n) { $n = sysread($f, $buf, 1 << 16); $o = 0 }
				if ($sel->can_write(0.1)) {
					my $w = syswrite($c, $buf, $n - $o, $o);
					if (defined $w && $w > 0) { $o += $w; $off += $w; $last = time; next }
				}
				last if $stall > 0 && time - $last > $stall;
			}
			if ($off >= $size) { $c->blocking(1); shutdown($c, 1); 1 while sysread($c, my $x, 1); exit 0 }
			print STDERR "reconnect at $off\n"; close $c;
		}' "$@"
}

declare -A wall gap
run_peer() { # PEER
	local peer=$1 rpid spid ppid rc=0 t0 t1 tcut state extra=""
	nl_init
	uplinks_lab "$UP1" "$UP2" || { echo "$peer: the lab did not come up" >&2; nl_down; return 1; }
	rm -rf "$work/rx"
	mkdir -p "$work/rx"
	case $peer in
	tern)
		"$TERN" keygen --out "$work/tern.key" --force >"$work/tern.pub" 2>/dev/null
		nl_bg srv "$TERN" recv --listen 10.81.0.2:4433 --key "$work/tern.key" --out "$work/rx/file.bin" \
			--force --quiet >"$work/recv.log" 2>&1
		rpid=$NL_BGPID
		for _ in $(seq 50); do nl_exec srv ss -Huln 'sport = :4433' | grep -q . && break; sleep 0.1; done
		;;
	tcp | tcp-reconnect)
		nl_bg srv bash -c "$(declare -f tcp_recv); tcp_recv 10.81.0.2 5001 '$work/rx/file.bin' $bytes"
		rpid=$NL_BGPID
		for _ in $(seq 50); do nl_exec srv ss -Hltn 'sport = :5001' | grep -q . && break; sleep 0.1; done
		;;
	*) echo "unknown peer $peer" >&2; return 1 ;;
	esac
	uplinks_poll "$work/rx" "$work/progress.log"
	ppid=$UPLINKS_POLL_PID
	t0=$(now_ms)
	local limit
	limit=$(awk -v a="$cut_after" -v t="$timeout_s" 'BEGIN { printf "%d", a + t + 0.5 }')
	case $peer in
	tern)
		nl_bg cli timeout "$limit" "$TERN" send "$work/file.bin" --to 10.81.0.2:4433 \
			--server-key "$(cat "$work/tern.pub")" --quiet --verbose >"$work/send.log" 2>&1
		;;
	tcp) nl_bg cli timeout "$limit" bash -c "$(declare -f tcp_send); tcp_send 10.81.0.2 5001 '$work/file.bin' 0" \
		2>"$work/send.log" ;;
	tcp-reconnect) nl_bg cli timeout "$limit" bash -c "$(declare -f tcp_send); tcp_send 10.81.0.2 5001 '$work/file.bin' $stall" \
		2>"$work/send.log" ;;
	esac
	spid=$NL_BGPID
	sleep "$cut_after"
	uplinks_cut "$cut"
	tcut=$(($(now_ms) - t0))
	wait "$spid" || rc=$?
	for _ in $(seq 100); do kill -0 "$rpid" 2>/dev/null || break; sleep 0.05; done
	kill "$rpid" 2>/dev/null || true
	wait "$rpid" 2>/dev/null || true
	t1=$(now_ms)
	sleep 0.05
	kill "$ppid" 2>/dev/null || true
	wait "$ppid" 2>/dev/null || true
	state=verified
	cmp -s "$work/file.bin" "$work/rx/file.bin" || state=FAILED
	[ "$rc" = 124 ] && state=cut
	[ "$rc" != 0 ] && [ "$state" = verified ] && state=FAILED
	# the gap: the longest time without growth from the first byte to the last (or to now)
	local g
	g=$(uplinks_gap "$work/progress.log" "$t1" "$bytes")
	case $peer in
	tern)
		extra=$(sed -n 's/.*driver moves \([0-9]*\) (auto_route_moves \([0-9]*\) auto_silent_moves \([0-9]*\).*/ moves=\1 route_moves=\2 silent_moves=\3/p' \
			"$work/send.log" | tail -1)
		[ "$state" = verified ] || { cat "$work/send.log" "$work/recv.log" >&2 || true; }
		;;
	*) extra=" reconnects=$(grep -c reconnect "$work/send.log" || true)" ;;
	esac
	nl_down
	NL_LAB=""
	if [ "$state" = verified ]; then
		wall[$peer]=$((t1 - t0))
		gap[$peer]=$g
	fi
	echo "$peer: $state bytes=$bytes ms=$((t1 - t0)) gap_ms=$g cut_at_ms=$tcut$extra"
}

for p in $peers; do run_peer "$p"; done
if [ -n "${wall[tern]:-}" ] && [ -n "${wall[tcp-reconnect]:-}" ]; then
	awk -v g1="${gap[tern]}" -v g2="${gap[tcp-reconnect]}" -v w1="${wall[tern]}" -v w2="${wall[tcp-reconnect]}" \
		'BEGIN { printf "ratio tern/tcp-reconnect gap=%.2f wall=%.2f\n", g1 / g2, w1 / w2 }'
fi
if [[ " $peers " == *" tcp "* ]] && [ -z "${wall[tcp]:-}" ]; then
	echo "tcp: one TCP connection does not survive the switch; the application must reconnect and resend"
fi
