# tests/netlab/uplinks_common.sh: the two-uplink lab of uplink_switch.sh and
# bench/mobility/switch.sh (sourced after netlab/lib.sh, with a lab started by nl_init):
#
#   cli eth0 10.81.1.2 ==(UP1)== r 10.81.1.1    default route, metric 100
#   cli eth1 10.81.2.2 ==(UP2)== r 10.81.2.1    default route, metric 200
#   r 10.81.0.1 -------------------- srv 10.81.0.2
#
# uplinks_lab UP1 UP2: builds it, each uplink a tern-linkem link with that spec both ways.
uplinks_lab() {
	nl_ns cli
	nl_ns r
	nl_ns srv
	nl_link cli eth0 10.81.1.2/24 r eth1 10.81.1.1/24 "$1" "$1" >/dev/null
	nl_link cli eth1 10.81.2.2/24 r eth2 10.81.2.1/24 "$2" "$2" >/dev/null
	nl_link r eth0 10.81.0.1/24 srv eth0 10.81.0.2/24 >/dev/null
	nl_exec r sysctl -qw net.ipv4.ip_forward=1
	local n
	for n in cli r srv; do
		nl_exec "$n" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
	done
	nl_route cli default via 10.81.1.1 dev eth0 metric 100
	nl_route cli default via 10.81.2.1 dev eth1 metric 200
	nl_route srv default via 10.81.0.1
	nl_exec cli ping -c 1 -W 2 10.81.0.2 >/dev/null
}

# uplinks_cut HOW: the first uplink goes: link (ip link set eth0 down) or addr (its address
# deleted).
uplinks_cut() {
	case $1 in
	link) nl_exec cli ip link set eth0 down ;;
	addr) nl_exec cli ip addr del 10.81.1.2/24 dev eth0 ;;
	*) echo "unknown cut $1" >&2; return 1 ;;
	esac
}

# uplinks_restore: uplink 1 comes back (link up, its default route again, metric 100).
uplinks_restore() {
	nl_exec cli ip link set eth0 up
	nl_exec cli ip addr replace 10.81.1.2/24 dev eth0
	nl_exec cli ip route replace default via 10.81.1.1 dev eth0 metric 100
}

# uplinks_poll DIR LOG: starts, in the background (its pid in UPLINKS_POLL_PID), a poller that
# every 10 ms sums the bytes of the files in DIR (hidden ones too: tern recv writes into a
# temporary file renamed once verified) and appends one "ms bytes" line to LOG per change,
# until killed. The receiver's progress, from which uplinks_gap measures a switch.
uplinks_poll() {
	perl -e '
		use Time::HiRes qw(time sleep);
		my ($dir, $last) = ($ARGV[0], -1);
		$| = 1;
		while (opendir(my $d, $dir)) {
			my $n = 0;
			for (readdir $d) { next if $_ eq "." || $_ eq ".."; my @s = stat("$dir/$_"); $n += $s[7] if @s }
			closedir $d;
			if ($n != $last) { printf "%d %d\n", time * 1000, $n; $last = $n }
			sleep 0.01;
		}' "$1" >"$2" &
	UPLINKS_POLL_PID=$!
}

# uplinks_gap LOG END_MS TOTAL: the longest time in ms the receiver's bytes (uplinks_poll's LOG)
# did not grow, from the first byte (not the handshake before it) to the last, or to END_MS (ms
# since the epoch) when they stopped short of TOTAL. Printed as one integer.
uplinks_gap() {
	awk -v end="$2" -v total="$3" '
		$2 == 0 { next }
		{ if (prev != "" && $1 - prev > m) m = $1 - prev; prev = $1; last = $2 }
		END { if (last < total && end - prev > m) m = end - prev; printf "%d", m }' "$1"
}
