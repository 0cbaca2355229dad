#!/usr/bin/env bash
# A 20 MB file sent peer to peer (`tern send FILE --to ID --via`, `tern recv --via --count 1`)
# arrives byte-exact, and the server's namespace never sees its plaintext:
#   p2p_file.sh direct   A and B behind full-cone NATs: the path is direct, and the server's
#                        interface carries less than a tenth of the file (it did not go through)
#   p2p_file.sh relay    A and B behind symmetric NATs: the path is the relay; tcpdump on the
#                        server's interface captures every UDP datagram during the transfer,
#                        at least twice the file's size (in and out of the relay), and neither
#                        the marker repeated through the file's plaintext nor 64-byte windows of
#                        the file at several offsets occur anywhere in the capture, while the
#                        same search finds all of them in the file itself.
source "$(dirname "$0")/common.sh"
need ethtool nft stdbuf tcpdump perl cmp
source "$(dirname "$0")/p2p_common.sh"
case=${1:?usage: p2p_file.sh direct|relay}
case $case in
direct) nat=full-cone want=direct ;;
relay) nat=symmetric want=relayed ;;
*)
	echo "unknown case $case"
	exit 2
	;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/p2p-file.XXXXXX")
p2p_atexit() { rm -rf "$work"; }
MARKER="tern-plaintext-marker:0123456789"

# The file: blocks of 4064 random bytes, each followed by the 32-byte marker (20,000,768 bytes).
perl -e 'open(my $r, "<", "/dev/urandom") or die; binmode $r; binmode STDOUT;
	for (1 .. 4883) { read($r, my $b, 4064) == 4064 or die; print $b, $ARGV[0] }' "$MARKER" \
	>"$work/file.bin"
size=$(stat -c %s "$work/file.bin")
mkdir "$work/rx"

p2p_lab
p2p_side a "$nat" 1
p2p_side b "$nat" 2
p2p_ternd
nl_bg srv tcpdump -i eth0 -nn -s 0 -B 65536 -U -w "$work/srv.pcap" udp 2>"$NL_DIR/tcpdump.log"
tcpdump_pid=$NL_BGPID
p2p_wait "$NL_DIR/tcpdump.log" 'listening on' 5 "$tcpdump_pid" || {
	cat "$NL_DIR/tcpdump.log"
	exit 1
}
p2p_recv b "$NL_DIR/recv.log" -o "$work/rx" --count 1
rc=0
t0=$(date +%s%N)
nl_exec a timeout 120 stdbuf -oL -eL "$TERN" send "$work/file.bin" --to "$PEER_ID" --via "$P2P_VIA" \
	--server-key "$KEY" >"$NL_DIR/send.log" 2>&1 || rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
# The receiver exits after its one file.
for _ in $(seq 200); do kill -0 "$RECV_PID" 2>/dev/null || break; sleep 0.05; done
rrc=0
if kill -0 "$RECV_PID" 2>/dev/null; then rrc=timeout; else wait "$RECV_PID" || rrc=$?; fi
sleep 1 # tcpdump drains its ring before it stops
kill -INT "$tcpdump_pid"
wait "$tcpdump_pid" || true

read -r path addr cms <<<"$(p2p_connected "$NL_DIR/send.log")" || true
echo "$case: send: connected path ${path:-none} ${addr:--} in ${cms:--} ms; $size bytes in $ms ms"
final=$(grep 'stored and verified by the receiver' "$NL_DIR/send.log" | tail -n 1 || true)
echo "     send: $final"
grep 'received ' "$NL_DIR/recv.log" | sed 's/^/     recv: /'
check "$case: tern send exits 0 (rc $rc)" "$rc == 0"
check "$case: tern recv exits 0 (rc $rrc)" "\"$rrc\" == \"0\""
check "$case: path $want (${path:-none})" "\"$path\" == \"$want\""
fpath=$(sed -n 's/.*; path \([a-z]*\) .*/\1/p' <<<"$final")
check "$case: tern send's final line: stored and verified, path $want (${fpath:-none})" "\"$fpath\" == \"$want\""
if cmp "$work/file.bin" "$work/rx/file.bin"; then echo "ok   $case: the file arrived byte-exact"; else
	echo "FAIL $case: the received file differs"
	t_fail=1
fi
rline=$(grep -E "received file\.bin $size bytes hash ok path $want" "$NL_DIR/recv.log" || true)
check "$case: the receiver reports file.bin, $size bytes, hash ok, path $want" "\"$rline\" != \"\""

# What the server's interface carried on the tern port during the transfer.
dropped=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$NL_DIR/tcpdump.log")
udp_bytes=$(tcpdump -nn -r "$work/srv.pcap" 'udp port 4433' 2>/dev/null |
	awk '{ for (i = 1; i < NF; i++) if ($i == "length") n += $(i + 1) } END { print n + 0 }')
echo "$case: the server's interface: $udp_bytes bytes of UDP payload on port 4433, capture $(stat -c %s "$work/srv.pcap") bytes, ${dropped:-?} packets dropped by the kernel"
if [ "$case" = direct ]; then
	check "$case: the file did not go through the server ($udp_bytes < $size / 10)" "$udp_bytes < $size / 10"
else
	check "$case: the capture is not trivial: it holds the relayed file in and out ($udp_bytes >= 2 x $size)" \
		"$udp_bytes >= 2 * $size"
	check "$case: tcpdump dropped nothing (${dropped:-?})" "\"${dropped:-x}\" == \"0\""
	# Search: the marker, and 64-byte windows of the file, in the file (must be found: the
	# search works) and in the capture (must not be).
	offs=(0 1048593 5243213 10489013 15000000 $((size - 64)))
	perl -e 'my ($cap, $plain, $marker, @offs) = @ARGV; local $/;
		open(my $c, "<", $cap) or die; binmode $c; my $C = <$c>;
		open(my $p, "<", $plain) or die; binmode $p; my $P = <$p>;
		sub count { my ($h, $n) = @_; my ($k, $i) = (0, 0); while (($i = index($h, $n, $i)) >= 0) { $k++; $i++ } $k }
		printf "marker %d %d\n", count($P, $marker), count($C, $marker);
		printf "window@%d %d %d\n", $_, count($P, substr($P, $_, 64)), count($C, substr($P, $_, 64)) for @offs;' \
		"$work/srv.pcap" "$work/file.bin" "$MARKER" "${offs[@]}" >"$work/search.txt"
	while read -r what in_plain in_cap; do
		check "$case: $what: found $in_plain times in the plaintext, $in_cap times in the capture" \
			"$in_plain >= 1 && $in_cap == 0"
	done <"$work/search.txt"
	check "$case: the search saw every marker of the plaintext ($(awk '$1 == "marker" { print $2 }' "$work/search.txt"))" \
		"$(awk '$1 == "marker" { print $2 }' "$work/search.txt") == 4883"
fi
if [ "$t_fail" != 0 ]; then
	p2p_show "tern send (A)" "$NL_DIR/send.log"
	p2p_show "tern recv (B)" "$NL_DIR/recv.log"
	p2p_show ternd "$NL_DIR/ternd.log"
fi
finish
