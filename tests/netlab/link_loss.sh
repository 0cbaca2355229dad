#!/usr/bin/env bash
# The link emulator's random impairments, measured end to end with ping: random loss, bursty
# (Gilbert-Elliott) loss, duplication, corruption (caught by the ICMP checksum, so it shows as
# loss) and reordering. Counts must fall in the 99.9% binomial interval of the configured rate.
source "$(dirname "$0")/common.sh"
need ping ethtool
N=2000

# run_ping: N echo requests at 1 ms; sets sent, got, dups and keeps the output in $out.
run_ping() {
	nl_exec a ping -c 2 -q 10.77.0.2 >/dev/null || true # ARP
	out=$(nl_exec a timeout 30 ping -c $N -i 0.001 -W 1 10.77.0.2 2>/dev/null || true)
	got=$(echo "$out" | awk '/packets transmitted/ { print $4 }')
	dups=$(echo "$out" | awk '/packets transmitted/ { for (i = 1; i <= NF; i++) if ($i ~ /^\+/) print substr($i, 2) + 0 }')
	dups=${dups:-0}
}

# Random loss of 3% on the requests.
two_hosts "loss=3%" "rate=1gbit"
run_ping
read -r lo hi <<<"$(binomial_interval $N 0.03)"
echo "loss 3%: $((N - got)) of $N lost, 99.9% interval [$lo, $hi]"
check "random loss within the binomial interval" "$((N - got)) >= $lo && $((N - got)) <= $hi"
nl_down

# Gilbert-Elliott: enter the bad state with 1%, leave it with 25% -> 1/26 = 3.8% lost, in bursts
# of 4 on average (random loss of the same rate would give bursts of 1.04).
two_hosts "ge=1/25" "rate=1gbit"
run_ping
bursts=$(echo "$out" | awk -F'icmp_seq=' -v n=$N 'NF > 1 { split($2, f, " "); seen[f[1] + 0] = 1 }
	END { for (i = 1; i <= n; i++) { if (!seen[i] && run == 0) b++; run = seen[i] ? 0 : run + 1 } print b + 0 }')
lost=$((N - got))
echo "Gilbert-Elliott: $lost lost in $bursts bursts"
check "GE loss rate near 3.8% (1.5%..7%)" "$lost >= $N * 0.015 && $lost <= $N * 0.07"
check "GE mean burst length 2.5..7" "$bursts > 0 && $lost / $bursts >= 2.5 && $lost / $bursts <= 7"
nl_down

# Duplication of 5% of the requests.
two_hosts "dup=5%" "rate=1gbit"
run_ping
read -r lo hi <<<"$(binomial_interval $N 0.05)"
echo "dup 5%: $dups duplicates, interval [$lo, $hi]"
check "duplicates within the binomial interval" "$dups >= $lo && $dups <= $hi"
check "duplication loses nothing" "$got == $N"
nl_down

# Corruption of 4% of the replies. ping runs unprivileged here so that it uses an ICMP datagram
# socket, behind the kernel's checksum check: each corrupted reply is discarded and shows as lost.
two_hosts "rate=1gbit" "corrupt=4%"
nl_exec a sysctl -qw net.ipv4.ping_group_range="0 2147483647"
nl_exec a ping -c 2 -q 10.77.0.2 >/dev/null || true
M=2000
got=$(nl_exec a timeout 30 setpriv --reuid=65534 --regid=65534 --clear-groups \
	ping -c $M -i 0.002 -W 1 -q 10.77.0.2 2>/dev/null | awk '/packets transmitted/ { print $4 }')
read -r lo hi <<<"$(binomial_interval $M 0.04)"
c=$(nl_stats a ba corrupt)
echo "corrupt 4%: $((M - got)) replies discarded, emulator corrupted $c, interval [$lo, $hi]"
check "corrupted packets within the binomial interval" "$((M - got)) >= $lo && $((M - got)) <= $hi"
check "every corrupted packet was caught" "$((M - got)) == $c"
nl_down

# Reordering of 5% of the requests, each held back 20 ms (about 20 later packets overtake it).
two_hosts "reorder=5%/20ms" "rate=1gbit"
run_ping
late=$(echo "$out" | awk -F'icmp_seq=' 'NF > 1 { split($2, f, " "); s = f[1] + 0; if (s < top) late++; if (s > top) top = s } END { print late + 0 }')
read -r lo hi <<<"$(binomial_interval $N 0.05)"
echo "reorder 5%: $late replies arrived after a later one, interval [$lo, $hi]"
check "reordered packets within the binomial interval" "$late >= $lo && $late <= $hi"
check "reordering loses nothing" "$got == $N"
finish
