#!/usr/bin/env bash
# A relayed connection moves to the direct path when the blocked direct path opens, with no data
# lost. A and B are behind port-restricted cone NATs (203.0.113.11 and .12); A's own link is
# limited to 16 Mbit/s so that a 16 MB file takes about 8 s. On the public segment's bridge, an
# nftables table drops everything between the two NATs' public addresses (the server stays
# reachable), and another counts the bytes A's NAT sends to the server and to B's NAT. A runs
# `tern send` to B (`tern recv --via --count 1`); the connection must start relayed; 2 s into the
# relayed transfer the block goes; `tern send` must then print "path now direct <B's public
# address>", the file must arrive byte-exact, and both the relay and the direct path must have
# carried a share of it (at least 1 MB each, from the bridge's counters).
source "$(dirname "$0")/common.sh"
need ethtool nft stdbuf cmp perl
source "$(dirname "$0")/p2p_common.sh"

p2p_xfer_lab
p2p_block
p2p_xfer_send

if p2p_wait "$NL_DIR/send.log" 'connected to [0-9a-f]+ path ' 10 "$SEND_PID"; then
	read -r path addr cms <<<"$(p2p_connected "$NL_DIR/send.log")" || true
	echo "connected: path $path $addr in $cms ms"
	check "the connection starts relayed while the direct path is blocked ($path)" "\"$path\" == \"relayed\""
	sleep 2
	relayed_at_unblock=$(p2p_counter a_srv)
	direct_at_unblock=$(p2p_counter a_b)
	still_running=0
	kill -0 "$SEND_PID" 2>/dev/null && still_running=1
	p2p_unblock
	unblock_ms=$(p2p_elapsed)
	echo "direct path unblocked at $unblock_ms ms; A had sent $relayed_at_unblock bytes to the server, $direct_at_unblock to B"
	check "the transfer was still running at the unblock" "$still_running == 1"
	check "the relay carried the start of the file ($relayed_at_unblock >= 1000000 bytes from A to the server)" \
		"$relayed_at_unblock >= 1000000"
	check "nothing crossed the blocked path ($direct_at_unblock bytes)" "$direct_at_unblock == 0"
	if p2p_wait "$NL_DIR/send.log" 'path now direct' 15 "$SEND_PID"; then
		move_ms=$(p2p_elapsed)
		now=$(sed -n 's/.*path now direct \([^ ]*\).*/\1/p' "$NL_DIR/send.log" | head -1)
		echo "moved to the direct path $now $((move_ms - unblock_ms)) ms after the unblock"
		check "the direct path is B's public address ($now)" "\"${now%:*}\" == \"$B\""
	else
		echo "FAIL no 'path now direct' line within 15 s of the unblock"
		t_fail=1
	fi
else
	echo "FAIL tern send printed no 'connected to' line"
	t_fail=1
fi
p2p_xfer_end 1
relayed=$(p2p_counter a_srv)
direct=$(p2p_counter a_b)
echo "A's NAT sent $relayed bytes to the server and $direct bytes to B's NAT"
check "the direct path carried the rest of the file ($direct >= 1000000 bytes from A to B)" "$direct >= 1000000"
p2p_xfer_show
finish
