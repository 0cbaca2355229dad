#!/usr/bin/env bash
# A direct connection falls back to the relay when its direct path dies, and returns when the
# path comes back, with no data lost. A and B are behind port-restricted cone NATs
# (203.0.113.11 and .12); A's own link is limited to 16 Mbit/s so that a 16 MB file takes about
# 8 s. A runs `tern send` to B (`tern recv --via --count 1`); the connection must start direct;
# 2 s into the transfer an nftables table on the public segment's bridge drops everything
# between the two NATs' public addresses (the server stays reachable); `tern send` must print
# "path now relayed" within 3 s; 3 s later the block goes and it must print "path now direct";
# the file must arrive byte-exact, and the relay must have carried a share of it (at least 1 MB
# from A's NAT to the server while the block stood).
source "$(dirname "$0")/common.sh"
need ethtool nft stdbuf cmp perl
source "$(dirname "$0")/p2p_common.sh"

p2p_xfer_lab
p2p_xfer_send

if p2p_wait "$NL_DIR/send.log" 'connected to [0-9a-f]+ path ' 10 "$SEND_PID"; then
	read -r path addr cms <<<"$(p2p_connected "$NL_DIR/send.log")" || true
	echo "connected: path $path $addr in $cms ms"
	check "the connection starts direct ($path)" "\"$path\" == \"direct\""
	sleep 2
	still_running=0
	kill -0 "$SEND_PID" 2>/dev/null && still_running=1
	p2p_block
	block_ms=$(p2p_elapsed)
	relayed_at_block=$(p2p_counter a_srv)
	echo "direct path blocked at $block_ms ms; A had sent $(p2p_counter a_b) bytes to B, $relayed_at_block to the server"
	check "the transfer was still running at the block" "$still_running == 1"
	if p2p_wait "$NL_DIR/send.log" 'path now relayed' 3 "$SEND_PID"; then
		echo "on the relay $(($(p2p_elapsed) - block_ms)) ms after the block"
		sleep 3
		relayed=$(($(p2p_counter a_srv) - relayed_at_block))
		echo "A's NAT sent $relayed bytes to the server while the block stood"
		check "the relay carried part of the file ($relayed >= 1000000 bytes from A to the server)" \
			"$relayed >= 1000000"
		p2p_unblock
		unblock_ms=$(p2p_elapsed)
		if p2p_wait "$NL_DIR/send.log" 'path now direct' 15 "$SEND_PID"; then
			echo "back on the direct path $(($(p2p_elapsed) - unblock_ms)) ms after the unblock"
		else
			echo "FAIL no 'path now direct' line within 15 s of the unblock"
			t_fail=1
		fi
	else
		echo "FAIL no 'path now relayed' line within 3 s of the block"
		t_fail=1
		p2p_unblock || true
	fi
else
	echo "FAIL tern send printed no 'connected to' line"
	t_fail=1
fi
p2p_xfer_end 2
p2p_xfer_show
finish
