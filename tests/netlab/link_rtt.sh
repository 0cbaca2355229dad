#!/usr/bin/env bash
# The link emulator's delay: the RTT ping measures is within 2 ms of the configured one (and never
# below it), symmetric and asymmetric, and jitter spreads it without reordering it.
source "$(dirname "$0")/common.sh"
need ping ethtool

rtt_case() { # AB_MS BA_MS
	two_hosts "delay=$1ms" "delay=$2ms"
	local cfg=$(($1 + $2)) out min avg max
	nl_exec a ping -c 2 -q 10.77.0.2 >/dev/null # ARP first
	out=$(nl_exec a ping -c 40 -i 0.05 -q 10.77.0.2 | awk -F'[/ =]+' '/^rtt/ { print $6, $7, $8 }')
	read -r min avg max <<<"$out"
	echo "configured RTT $cfg ms: min $min avg $avg max $max ms"
	check "RTT $cfg ms: average within 2 ms" "$avg >= $cfg - 2 && $avg <= $cfg + 2"
	check "RTT $cfg ms: nothing early" "$min >= $cfg - 0.1"
	nl_down
}
rtt_case 50 50
rtt_case 20 280

# Jitter of +-20 ms each way keeps the order and stays within its bounds.
two_hosts "delay=50ms jitter=20ms" "delay=50ms"
nl_exec a ping -c 2 -q 10.77.0.2 >/dev/null
out=$(nl_exec a ping -c 100 -i 0.05 10.77.0.2)
read -r min avg max mdev <<<"$(echo "$out" | awk -F'[/ =]+' '/^rtt/ { print $6, $7, $8, $9 }')"
echo "jitter 20 ms: min $min avg $avg max $max mdev $mdev"
check "jitter: RTT within [80, 122] ms" "$min >= 79.9 && $max <= 122"
check "jitter: RTT spread (mdev >= 3 ms)" "$mdev >= 3"
inv=$(echo "$out" | awk -F'icmp_seq=' 'NF > 1 { split($2, f, " "); s = f[1] + 0; if (s < top) inv++; if (s > top) top = s } END { print inv + 0 }')
check "jitter: no reordering ($inv)" "$inv == 0"
finish
