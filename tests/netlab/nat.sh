#!/usr/bin/env bash
# NAT boxes behave as named: RFC 5780 discovery (coturn's turnutils_natdiscovery) against coturn
# with two addresses on the public segment.
#   nat.sh TYPE       full-cone | restricted-cone | port-restricted-cone | symmetric | udp-blocked
#   nat.sh cgn        two port-restricted NATs in a row (carrier-grade NAT in 100.64.0.0/10)
#   nat.sh hairpin    hairpinning on, and off
#   nat.sh timeout    a full-cone mapping outlives 4 s idle with timeout=30 and not with timeout=2
#   nat.sh simopen    restricted and port-restricted cones keep their endpoint-independent mapping
#                     when a remote's packet reaches the mapped port before the inside host has
#                     sent to that remote (as when two peers punch holes at each other)
source "$(dirname "$0")/common.sh"
need turnserver turnutils_natdiscovery stun ethtool nft
case=${1:?usage: nat.sh TYPE|cgn|hairpin|timeout|simopen}

# lab TYPE [NAT OPTIONS...]: stun (203.0.113.2 and .3) on pub; nat1 203.0.113.10; cli 10.0.1.2.
lab() {
	local type=$1
	shift
	nl_init
	nl_trap
	nl_segment pub
	nl_host stun pub 203.0.113.2/24
	nl_addr stun 203.0.113.3/24
	start_stun 203.0.113.2 203.0.113.3
	nl_segment home
	if [ "$type" = cgn ]; then
		nl_segment carrier
		nl_nat cgn port-restricted-cone pub 203.0.113.20/24 carrier 100.64.0.1/10 "$@"
		nl_nat nat1 port-restricted-cone carrier 100.64.0.2/10 home 10.0.1.1/24 gw=100.64.0.1 "$@"
	else
		nl_nat nat1 "$type" pub 203.0.113.10/24 home 10.0.1.1/24 "$@"
	fi
	nl_host cli home 10.0.1.2/24 10.0.1.1
}

discover() { # FLAGS...: natdiscovery's verdicts, one per line
	nl_exec cli timeout 60 turnutils_natdiscovery "$@" 203.0.113.2 2>&1 | tee -a "$NL_DIR/natdiscovery.log" |
		grep -E '^NAT (with|without)|hairpinning|receive timeout|reflexive' || true
}

expect() { # DESCRIPTION PATTERN OUTPUT
	if grep -q "$2" <<<"$3"; then echo "ok   $1"; else
		echo "FAIL $1: no '$2' in:"
		echo "$3" | sed 's/^/     /'
		t_fail=1
	fi
}

case $case in
full-cone | restricted-cone | port-restricted-cone | symmetric)
	lab "$case"
	out=$(discover -m -f)
	echo "$out" | grep '^NAT'
	case $case in
	full-cone) m="Endpoint Independent Mapping" f="Endpoint Independent Filtering" ;;
	restricted-cone) m="Endpoint Independent Mapping" f="with Address Dependent Filtering" ;;
	port-restricted-cone) m="Endpoint Independent Mapping" f="Address and Port Dependent Filtering" ;;
	symmetric) m="Address and Port Dependent Mapping" f="Address and Port Dependent Filtering" ;;
	esac
	expect "$case: mapping" "NAT with $m" "$out"
	expect "$case: filtering" "$f" "$out"
	expect "$case: reflexive address is the NAT's" "reflexive addr: 203.0.113.10:" "$out"
	;;
udp-blocked)
	lab udp-blocked
	out=$(discover -m)
	n=$(grep -c 'reflexive' <<<"$out" || true)
	echo "udp-blocked: $n STUN responses over UDP"
	check "udp-blocked: no UDP response" "$n == 0"
	if nl_exec cli timeout 5 bash -c 'exec 3<>/dev/tcp/203.0.113.2/3478' 2>/dev/null; then
		echo "ok   udp-blocked: TCP still passes"
	else
		echo "FAIL udp-blocked: TCP connection to the STUN server failed"
		t_fail=1
	fi
	;;
cgn)
	lab cgn
	out=$(discover -m -f)
	echo "$out" | grep '^NAT'
	expect "cgn: mapping" "NAT with Endpoint Independent Mapping" "$out"
	expect "cgn: filtering" "Address and Port Dependent Filtering" "$out"
	expect "cgn: reflexive address is the outer NAT's" "reflexive addr: 203.0.113.20:" "$out"
	;;
hairpin)
	lab full-cone hairpin=on
	out=$(discover -H)
	expect "hairpin=on: hairpinning works" "successful hairpinning" "$out"
	nl_down
	lab full-cone hairpin=off
	out=$(discover -H)
	if grep -q "successful hairpinning" <<<"$out"; then
		echo "FAIL hairpin=off: hairpinning still works"
		t_fail=1
	else
		echo "ok   hairpin=off: no hairpinning"
	fi
	;;
timeout)
	lab full-cone timeout=30
	out=$(discover -t -T 4)
	n=$(grep -c 'reflexive' <<<"$out" || true)
	check "timeout=30: mapping alive after 4 s idle ($n responses)" "$n == 2"
	nl_down
	lab full-cone timeout=2
	out=$(discover -t -T 4)
	n=$(grep -c 'reflexive' <<<"$out" || true)
	check "timeout=2: mapping gone after 4 s idle ($n responses)" "$n == 1"
	;;
simopen)
	mapped() { # NODE SERVER[:PORT]: the mapped address seen by a STUN request from port 40000
		nl_exec cli timeout 5 stun "$1" 1 -p 40000 -v 2>&1 | sed -n 's/.*mappedAddr=\([0-9.:]*\).*/\1/p' | head -1 || true
	}
	for type in restricted-cone port-restricted-cone; do
		lab "$type"
		nl_host x pub 203.0.113.4/24
		m1=$(mapped 203.0.113.2)
		# x's packet from 203.0.113.4:5000 reaches the mapping before cli has sent to x: dropped.
		nl_exec x timeout 2 stun 203.0.113.10:40000 1 -p 5000 >/dev/null 2>&1 || true
		nl_bg x turnserver -n --stun-only -L 203.0.113.4 -p 5000 --no-cli --no-tls --no-dtls \
			--log-file stdout --simple-log >"$NL_DIR/turnserver-x.log" 2>&1
		for _ in $(seq 50); do
			nl_exec x ss -lun 2>/dev/null | grep -q "203.0.113.4:5000 " && break
			sleep 0.1
		done
		m2=$(mapped 203.0.113.4:5000)
		check "$type: mapping of 10.0.1.2:40000 is 203.0.113.10:40000 ($m1)" "\"$m1\" == \"203.0.113.10:40000\""
		check "$type: the same mapping to x after x's early packet ($m2)" "\"$m2\" == \"$m1\""
		nl_down
	done
	;;
*)
	echo "unknown case $case"
	exit 2
	;;
esac
finish
