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

work=$(mktemp -d "${TMPDIR:-/tmp}/p2p-fallback.XXXXXX")
p2p_atexit() { rm -rf "$work"; }
head -c 16000000 /dev/urandom >"$work/file.bin"
size=$(stat -c %s "$work/file.bin")
mkdir "$work/rx"
A=$(p2p_public_ip 1)
B=$(p2p_public_ip 2)

p2p_lab
p2p_side a port-restricted-cone 1 "rate=16mbit" "rate=16mbit"
p2p_side b port-restricted-cone 2
nl_exec pub nft -f - <<EOF
table bridge p2p_count {
	counter a_srv {}
	counter a_b {}
	chain on_bridge {
		type filter hook forward priority 10; policy accept;
		ip saddr $A ip daddr $P2P_SRV counter name a_srv
		ip saddr $A ip daddr $B counter name a_b
	}
}
EOF
counter() { # NAME: bytes so far
	nl_exec pub nft list counter bridge p2p_count "$1" | sed -n 's/.*packets [0-9]* bytes \([0-9]*\).*/\1/p'
}

p2p_ternd
p2p_recv b "$NL_DIR/recv.log" -o "$work/rx" --count 1
nl_bg a stdbuf -oL -eL "$TERN" send "$work/file.bin" --to "$PEER_ID" --via "$P2P_VIA" \
	--server-key "$KEY" >"$NL_DIR/send.log" 2>&1
send_pid=$NL_BGPID
t0=$(date +%s%N)
elapsed() { echo $((($(date +%s%N) - t0) / 1000000)); }

if p2p_wait "$NL_DIR/send.log" 'connected to [0-9a-f]+ path ' 10 "$send_pid"; then
	read -r path addr cms <<<"$(p2p_connected "$NL_DIR/send.log")" || true
	echo "connected: path $path $addr in $cms ms"
	check "the connection starts direct ($path)" "\"$path\" == \"direct\""
	sleep 2
	still_running=0
	kill -0 "$send_pid" 2>/dev/null && still_running=1
	nl_exec pub nft -f - <<EOF
table bridge p2p_block {
	chain on_bridge {
		type filter hook forward priority 0; policy accept;
		ip saddr $A ip daddr $B drop
		ip saddr $B ip daddr $A drop
	}
}
EOF
	block_ms=$(elapsed)
	relayed_at_block=$(counter a_srv)
	echo "direct path blocked at $block_ms ms; A had sent $(counter a_b) bytes to B, $relayed_at_block to the server"
	check "the transfer was still running at the block" "$still_running == 1"
	if p2p_wait "$NL_DIR/send.log" 'path now relayed' 3 "$send_pid"; then
		fell_ms=$(elapsed)
		echo "on the relay $((fell_ms - block_ms)) ms after the block"
		sleep 3
		relayed=$(($(counter a_srv) - relayed_at_block))
		echo "A's NAT sent $relayed bytes to the server while the block stood"
		check "the relay carried part of the file ($relayed >= 1000000 bytes from A to the server)" \
			"$relayed >= 1000000"
		nl_exec pub nft delete table bridge p2p_block
		unblock_ms=$(elapsed)
		if p2p_wait "$NL_DIR/send.log" 'path now direct' 15 "$send_pid"; then
			echo "back on the direct path $(($(elapsed) - unblock_ms)) ms after the unblock"
		else
			echo "FAIL no 'path now direct' line within 15 s of the unblock"
			t_fail=1
		fi
	else
		echo "FAIL no 'path now relayed' line within 3 s of the block"
		t_fail=1
		nl_exec pub nft delete table bridge p2p_block || true
	fi
else
	echo "FAIL tern send printed no 'connected to' line"
	t_fail=1
fi
for _ in $(seq 600); do kill -0 "$send_pid" 2>/dev/null || break; sleep 0.1; done
rc=0
if kill -0 "$send_pid" 2>/dev/null; then rc=timeout; else wait "$send_pid" || rc=$?; fi
for _ in $(seq 100); do kill -0 "$RECV_PID" 2>/dev/null || break; sleep 0.05; done
rrc=0
if kill -0 "$RECV_PID" 2>/dev/null; then rrc=timeout; else wait "$RECV_PID" || rrc=$?; fi
echo "transfer ended after $(elapsed) ms"
final=$(grep 'stored and verified by the receiver' "$NL_DIR/send.log" | tail -n 1 || true)
echo "     send: $final"
grep 'received ' "$NL_DIR/recv.log" | sed 's/^/     recv: /'
check "tern send exits 0 ($rc)" "\"$rc\" == \"0\""
check "tern recv exits 0 ($rrc)" "\"$rrc\" == \"0\""
if cmp "$work/file.bin" "$work/rx/file.bin"; then echo "ok   the file arrived byte-exact"; else
	echo "FAIL the received file differs"
	t_fail=1
fi
rline=$(grep -E "received file\.bin $size bytes hash ok" "$NL_DIR/recv.log" || true)
check "the receiver reports file.bin, $size bytes, hash ok" "\"$rline\" != \"\""
read -r fpath moves <<<"$(sed -n 's/.*; path \([a-z]*\) [^ ]*, \([0-9]*\) path moves.*/\1 \2/p' <<<"$final")" || true
check "tern send's final line: path direct after at least two moves (${fpath:-none}, ${moves:-?} moves)" \
	"\"$fpath\" == \"direct\" && \"${moves:-0}\" + 0 >= 2"
if [ "$t_fail" != 0 ]; then
	p2p_show "tern send (A)" "$NL_DIR/send.log"
	p2p_show "tern recv (B)" "$NL_DIR/recv.log"
	p2p_show ternd "$NL_DIR/ternd.log"
fi
finish
