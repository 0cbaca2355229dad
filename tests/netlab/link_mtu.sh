#!/usr/bin/env bash
# A path MTU drop mid-transfer with real processes: `tern send` moves an 8 MB file a -> b over a
# tern-linkem link (20 Mbit/s, 40 ms RTT, MTU 1500); 1 s in, the MTU of the emulator's veth
# towards b drops to 1300 (`ip -n NS link set dev b mtu 1300`: larger frames die silently, no
# ICMP). The file arrives byte-exact and verified, the drop did hit the transfer (frames lost
# to the MTU), the sender found the black hole and ends at a size that passes, and the event
# costs seconds, not the connection: the transfer is over within 20 s (3.2 s at the link rate).
# The measurement is bench/mobility/mtu.sh's (tern only here).
source "$(dirname "$0")/common.sh"
need ethtool perl cmp
[ -n "${TERN:-}" ] || skip "TERN (a built tern binary) not set"
out=$(bash "$(dirname "$0")/../../bench/mobility/mtu.sh" --peers tern --size 8 --rate 20 --rtt 40 \
	--drop-after 1 --mtu 1300 --timeout 60)
echo "$out"
line=$(grep '^tern: ' <<<"$out" || true)
field() { sed -n "s/.* $1=\([0-9-]*\).*/\1/p" <<<"$line"; }
check "the file arrived byte-exact, verified by the receiver" "\"$(awk '{ print $2 }' <<<"$line")\" == \"verified\""
check "the drop hit the transfer: $(field dropped_frames) frames lost to the MTU" "$(field dropped_frames) + 0 > 0"
check "the sender detected the black hole ($(field pmtu_black_holes))" "$(field pmtu_black_holes) + 0 >= 1"
check "and ends at a size that passes 1300 ($(field pmtu_size_end) bytes)" "$(field pmtu_size_end) + 0 > 0 && $(field pmtu_size_end) + 28 <= 1300"
check "over within 20 s ($(field ms) ms)" "$(field ms) + 0 > 0 && $(field ms) < 20000"
finish
