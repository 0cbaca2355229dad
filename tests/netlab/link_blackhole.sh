#!/usr/bin/env bash
# Blackholes: while the link is down nothing crosses it in either direction (ping and the
# emulator's own transmit counters), it comes back afterwards, and a scheduled on/off cycle
# (up 300 ms, down 200 ms) passes the expected share of a steady ping stream.
source "$(dirname "$0")/common.sh"
need ping ethtool

two_hosts "delay=5ms" "delay=5ms"
pings() { # COUNT: prints the number of replies
	nl_exec a ping -c "$1" -i 0.01 -W 1 -q 10.77.0.2 2>/dev/null | awk '/packets transmitted/ { print $4 }' || true
}
got=$(pings 50)
check "link up: 50 of 50 replies ($got)" "$got == 50"
nl_signal a USR1
sleep 0.1
tx_ab=$(nl_stats a ab tx)
tx_ba=$(nl_stats a ba tx)
got=$(pings 200)
d_ab=$(($(nl_stats a ab tx) - tx_ab))
d_ba=$(($(nl_stats a ba tx) - tx_ba))
echo "blackhole: $got replies, emulator sent $d_ab a->b and $d_ba b->a, dropped $(nl_stats a ab bhdrop)"
check "blackhole: no reply" "$got == 0"
check "blackhole: nothing sent either way" "$d_ab == 0 && $d_ba == 0"
nl_signal a USR1
got=$(pings 50)
check "link back: 50 of 50 replies ($got)" "$got == 50"
nl_down

# Scheduled: up 300 ms, down 200 ms, both directions. With no delay a ping survives when the
# link is up as it passes, so about 60% get through.
two_hosts "onoff=300ms/200ms" "onoff=300ms/200ms"
got=$(pings 500)
echo "on/off 300/200 ms: $got of 500 replies"
check "on/off passes 50..70% ($got)" "$got >= 250 && $got <= 350"
drop=$(nl_stats a ab bhdrop)
check "on/off drops counted by the emulator ($drop)" "$drop >= 150"
finish
