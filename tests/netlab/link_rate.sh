#!/usr/bin/env bash
# The link emulator's rate limit: TCP (iperf3, CUBIC) through a link of R Mbit/s with a 1-BDP
# queue gets within 10% of R, at 20 and at 100 Mbit/s (so the emulator is not the bottleneck).
source "$(dirname "$0")/common.sh"
need iperf3 ethtool

rate_case() { # MBIT QUEUE
	two_hosts "delay=10ms rate=$1mbit queue=$2" "delay=10ms rate=$1mbit queue=$2"
	nl_bg b iperf3 -s -1 >/dev/null
	sleep 0.3
	local bps got
	bps=$(nl_exec a iperf3 -c 10.77.0.2 -t 5 -O 1 -C cubic -J |
		awk -F'[:,]' '/"sum_received"/ { r = 1 } r && /"bits_per_second"/ { print $2; exit }')
	got=$(awk -v b="$bps" 'BEGIN { printf "%.2f", b / 1e6 }')
	echo "rate $1 Mbit/s: TCP got $got Mbit/s; emulator: $(nl_stats a ab | cut -d' ' -f1-6)"
	check "TCP at $1 Mbit/s within 10% ($got)" "$got >= $1 * 0.9 && $got <= $1 * 1.1"
	nl_down
}
rate_case 20 50kb
# A sanitizer build of the emulator is several times slower: its speed is not what it checks.
if [ "${NETLAB_SANITIZED:-0}" = 1 ]; then
	echo "skip 100 Mbit/s: sanitizer build"
else
	rate_case 100 250kb
fi
finish
