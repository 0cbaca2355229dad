# netlab/lib.sh: build small networks out of network namespaces. Source it from bash.
#
# A lab is a set of namespaces named "$NL_LAB-<node>", so several labs run side by side. Nodes are
# joined either by plain veth pairs or through tern-linkem, a user-space link emulator that runs in
# a namespace of its own between the two ends ("$NL_LAB-l<N>"). A segment is a namespace holding a
# Linux bridge that any number of nodes attach to. Nothing is created in the caller's namespace:
# veths are made directly inside the namespaces they belong to.
#
#   source netlab/lib.sh
#   nl_init            # fresh lab name, state in $NL_DIR
#   nl_trap            # tear everything down on exit, error or signal
#   nl_segment pub
#   nl_host srv pub 203.0.113.2/24
#   nl_host cli pub 203.0.113.9/24 - "delay=50ms rate=10mbit" "delay=50ms loss=1%"
#   nl_exec cli ping -c3 203.0.113.2
#
# Emulated link specs are tern-linkem specs (see netlab/README.md) plus "mtu=N", which netlab
# applies to the interfaces of that link.

NL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NL_RUNDIR=${NETLAB_RUNDIR:-/run/netlab}

nl_die() {
	echo "netlab: $*" >&2
	return 1
}

# Finds tern-linkem: $NETLAB_LINKEM, then PATH, then the newest build under the source tree.
nl_find_linkem() {
	if [ -n "${NETLAB_LINKEM:-}" ]; then
		echo "$NETLAB_LINKEM"
		return 0
	fi
	local f best=""
	for f in "$NL_ROOT"/build*/netlab/tern-linkem; do
		[ -x "$f" ] || continue
		if [ -z "$best" ] || [ "$f" -nt "$best" ]; then best=$f; fi
	done
	if [ -n "$best" ]; then
		echo "$best"
		return 0
	fi
	command -v tern-linkem && return 0
	nl_die "tern-linkem not found: build it (cmake --build build --target tern-linkem) or set NETLAB_LINKEM"
}

# nl_init [LAB]: starts (or, with LAB, adopts) a lab. Sets NL_LAB and NL_DIR.
nl_init() {
	if [ -n "${1:-}" ]; then
		NL_LAB=$1
	else
		NL_LAB=nl-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
	fi
	case $NL_LAB in *[!a-zA-Z0-9_-]* | "") nl_die "bad lab name '$NL_LAB'" || return 1 ;; esac
	NL_LINKEM=$(nl_find_linkem) || return 1
	NL_DIR=$NL_RUNDIR/$NL_LAB
	mkdir -p "$NL_DIR"
	[ -f "$NL_DIR/owner" ] || echo "$$" >"$NL_DIR/owner"
	NL_SEED=${NL_SEED:-1}
	export NL_LAB NL_DIR NL_LINKEM
}

# nl_trap: tear the lab down when the shell exits, fails under set -e, or is interrupted.
nl_trap() {
	trap 'nl_down' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
}

nl_nsname() { echo "$NL_LAB-$1"; }

nl_exists() { [ -e "/run/netns/$NL_LAB-$1" ]; }

# nl_ns NAME: an empty node (loopback up, IPv6 off unless NL_IPV6=1).
nl_ns() {
	local ns
	ns=$(nl_nsname "$1")
	ip netns add "$ns" || return 1
	echo "$1" >>"$NL_DIR/nodes"
	ip -n "$ns" link set lo up
	if [ "${NL_IPV6:-0}" != 1 ]; then
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	fi
}

# nl_exec NODE CMD...: runs CMD inside NODE.
nl_exec() {
	local n=$1
	shift
	ip netns exec "$(nl_nsname "$n")" "$@"
}

# nl_bg NODE CMD...: starts CMD in the background inside NODE; it is killed by nl_down. Prints
# nothing; the pid is in $NL_BGPID.
nl_bg() {
	local n=$1
	shift
	ip netns exec "$(nl_nsname "$n")" "$@" &
	NL_BGPID=$!
	echo "$NL_BGPID" >>"$NL_DIR/pids"
}

# nl_segment NAME: a namespace holding bridge br0; nodes attach to it with nl_attach.
nl_segment() {
	nl_ns "$1" || return 1
	ip -n "$(nl_nsname "$1")" link add br0 type bridge
	ip -n "$(nl_nsname "$1")" link set dev br0 up
	echo 0 >"$NL_DIR/seg-$1.ports"
}

nl_offloads_off() { # NS IFNAME
	ip netns exec "$1" ethtool -K "$2" tso off gso off gro off lro off tx off rx off >/dev/null 2>&1 || true
}

# Splits "mtu=N" out of a spec: sets NL_SPEC_MTU and NL_SPEC_REST.
nl_split_mtu() {
	local w
	NL_SPEC_MTU=""
	NL_SPEC_REST=""
	for w in ${1//,/ }; do
		case $w in
		mtu=*) NL_SPEC_MTU=${w#mtu=} ;;
		*) NL_SPEC_REST="$NL_SPEC_REST $w" ;;
		esac
	done
}

# nl_wire NS_A IF_A NS_B IF_B [SPEC_AB [SPEC_BA]]: joins two interfaces (full namespace names).
# With no spec (or "-" for both) it is a plain veth pair; otherwise tern-linkem carries the
# traffic, SPEC_AB applying from A to B and SPEC_BA back. Prints the link's id (l<N>) or "-".
nl_wire() {
	local nsa=$1 ifa=$2 nsb=$3 ifb=$4 ab=${5:--} ba=${6:--}
	[ "$ab" = - ] && ab=""
	[ "$ba" = - ] && ba=""
	if [ -z "$ab" ] && [ -z "$ba" ]; then
		ip link add name "$ifa" netns "$nsa" type veth peer name "$ifb" netns "$nsb" || return 1
		ip -n "$nsa" link set dev "$ifa" up
		ip -n "$nsb" link set dev "$ifb" up
		echo -
		return 0
	fi
	local mtu="" spec_ab spec_ba
	nl_split_mtu "$ab"
	spec_ab=$NL_SPEC_REST
	mtu=$NL_SPEC_MTU
	nl_split_mtu "$ba"
	spec_ba=$NL_SPEC_REST
	[ -n "$NL_SPEC_MTU" ] && mtu=$NL_SPEC_MTU
	local n id lns
	n=$(($(cat "$NL_DIR/links" 2>/dev/null | wc -l) + 1))
	id=l$n
	echo "$id" >>"$NL_DIR/links"
	nl_ns "$id" >/dev/null || return 1
	lns=$(nl_nsname "$id")
	ip link add name "$ifa" netns "$nsa" type veth peer name a netns "$lns" || return 1
	ip link add name b netns "$lns" type veth peer name "$ifb" netns "$nsb" || return 1
	local pair
	for pair in "$nsa $ifa" "$lns a" "$lns b" "$nsb $ifb"; do
		set -- $pair
		nl_offloads_off "$1" "$2"
		[ -n "$mtu" ] && ip -n "$1" link set dev "$2" mtu "$mtu"
		ip -n "$1" link set dev "$2" up
	done
	local seed=$((NL_SEED * 1000 + n))
	ip netns exec "$lns" "$NL_LINKEM" -a a -b b --seed "$seed" \
		--ab "$spec_ab" --ba "$spec_ba" \
		--stats "$NL_DIR/$id.stats" --pidfile "$NL_DIR/$id.pid" \
		</dev/null >>"$NL_DIR/$id.log" 2>&1 &
	local i
	for i in $(seq 100); do
		[ -s "$NL_DIR/$id.pid" ] && break
		if ! kill -0 $! 2>/dev/null; then
			cat "$NL_DIR/$id.log" >&2
			nl_die "tern-linkem for $id did not start"
			return 1
		fi
		sleep 0.02
	done
	echo "$id"
}

# nl_attach NODE IFNAME ADDR SEGMENT [SPEC_UP [SPEC_DOWN]]: gives NODE an interface on SEGMENT,
# optionally through an emulated link (UP: node to segment, DOWN: segment to node). ADDR may be
# "-" for none. Prints the link id as nl_wire does.
nl_attach() {
	local node=$1 ifn=$2 addr=$3 seg=$4 up=${5:--} down=${6:--}
	local segns port k id
	segns=$(nl_nsname "$seg")
	k=$(($(cat "$NL_DIR/seg-$seg.ports") + 1))
	echo "$k" >"$NL_DIR/seg-$seg.ports"
	port=p$k
	id=$(nl_wire "$(nl_nsname "$node")" "$ifn" "$segns" "$port" "$up" "$down") || return 1
	ip -n "$segns" link set dev "$port" master br0
	[ "$addr" != - ] && ip -n "$(nl_nsname "$node")" addr add "$addr" dev "$ifn"
	echo "$node $ifn $seg $id" >>"$NL_DIR/attachments"
	echo "$id"
}

# nl_mobile_lab RATE RTT LOSS [KIND [LEAVE]]: the benchmarks' mobile-link lab, afresh (the
# lab before is taken down): nodes c (10.80.0.1) and s (10.80.0.2) joined by one link of RATE
# Mbit/s both ways, RTT/2 delay each way, a drop-tail queue of one BDP (6000 bytes at least),
# and LOSS percent on the c -> s direction only: independent (KIND random, the default) or
# Gilbert-Elliott (KIND bursty: the bad state loses every packet and is left with LEAVE percent
# chance per packet, 25 by default: bursts of 100/LEAVE packets on average; the good state is
# left with LEAVE x LOSS / (100 - LOSS) percent, so that the mean loss is LOSS). Seeded
# with $seed when set. Waits until c reaches s.
nl_mobile_lab() {
	local half q spec
	half=$(awk -v r="$2" 'BEGIN { printf "%gms", r / 2 }')
	q=$(awk -v r="$1" -v t="$2" 'BEGIN { b = r * 1e6 * t / 1000 / 8; if (b < 6000) b = 6000; printf "%d", b }')
	spec="delay=$half rate=${1}mbit queue=$q"
	if [ "$3" != 0 ]; then
		if [ "${4:-random}" = bursty ]; then
			spec="$spec $(awk -v l="$3" -v r="${5:-25}" 'BEGIN { printf "ge=%.4f/%g", l * r / (100 - l), r }')"
		else
			spec="$spec loss=$3%"
		fi
	fi
	nl_down
	nl_init
	NL_SEED=${seed:-${NL_SEED:-1}}
	nl_ns c
	nl_ns s
	nl_link c eth0 10.80.0.1/24 s eth0 10.80.0.2/24 "$spec" "delay=$half rate=${1}mbit queue=$q" >/dev/null
	nl_exec c ping -c 1 -W 3 -q 10.80.0.2 >/dev/null
}

# nl_link NODE_A IF_A ADDR_A NODE_B IF_B ADDR_B [SPEC_AB [SPEC_BA]]: a point-to-point link.
nl_link() {
	local id
	id=$(nl_wire "$(nl_nsname "$1")" "$2" "$(nl_nsname "$4")" "$5" "${7:--}" "${8:--}") || return 1
	[ "$3" != - ] && ip -n "$(nl_nsname "$1")" addr add "$3" dev "$2"
	[ "$6" != - ] && ip -n "$(nl_nsname "$4")" addr add "$6" dev "$5"
	echo "$1 $2 $4 $id" >>"$NL_DIR/attachments"
	echo "$4 $5 $1 $id" >>"$NL_DIR/attachments"
	echo "$id"
}

# nl_host NAME SEGMENT ADDR [GATEWAY|-] [SPEC_UP [SPEC_DOWN]]: a node with eth0 on SEGMENT.
nl_host() {
	local name=$1 seg=$2 addr=$3 gw=${4:--}
	nl_ns "$name" || return 1
	nl_attach "$name" eth0 "$addr" "$seg" "${5:--}" "${6:--}" >/dev/null || return 1
	[ "$gw" != - ] && ip -n "$(nl_nsname "$name")" route add default via "$gw"
	return 0
}

# nl_addr NODE ADDR [IF]: adds another address (default on eth0).
nl_addr() {
	ip -n "$(nl_nsname "$1")" addr add "$2" dev "${3:-eth0}"
}

# nl_route NODE ROUTE...: "nl_route cli default via 10.0.0.1".
nl_route() {
	local n=$1
	shift
	ip -n "$(nl_nsname "$n")" route add "$@"
}

# nl_nat NAME TYPE OUT_SEG OUT_ADDR IN_SEG IN_ADDR [hairpin=on|off] [timeout=SECONDS] [gw=ADDR]
#        [up=SPEC] [down=SPEC]
# A NAT box: eth0 on OUT_SEG, eth1 on IN_SEG. TYPE is one of full-cone, restricted-cone,
# port-restricted-cone, symmetric, udp-blocked (RFC 4787 behaviours; see README.md).
nl_nat() {
	local name=$1 type=$2 oseg=$3 oaddr=$4 iseg=$5 iaddr=$6
	shift 6
	local hairpin=off timeout=120 gw=- up=- down=- o
	for o in "$@"; do
		case $o in
		hairpin=*) hairpin=${o#hairpin=} ;;
		timeout=*) timeout=${o#timeout=} ;;
		gw=*) gw=${o#gw=} ;;
		up=*) up=${o#up=} ;;
		down=*) down=${o#down=} ;;
		*) nl_die "nl_nat: unknown option '$o'" || return 1 ;;
		esac
	done
	nl_ns "$name" || return 1
	nl_attach "$name" eth0 "$oaddr" "$oseg" "$up" "$down" >/dev/null || return 1
	nl_attach "$name" eth1 "$iaddr" "$iseg" >/dev/null || return 1
	[ "$gw" != - ] && nl_route "$name" default via "$gw"
	nl_exec "$name" sysctl -qw net.ipv4.ip_forward=1
	nl_nat_rules "$name" "$type" eth0 eth1 "${oaddr%/*}" "$hairpin" "$timeout"
}

# nl_nat_rules NODE TYPE OUT_IF IN_IF PUBLIC_ADDR HAIRPIN TIMEOUT: the nftables ruleset of a NAT.
#
# Mapping: Linux keeps the inside source port when it is free, so plain masquerade is
# endpoint-independent mapping; "fully-random" picks a fresh port per 5-tuple (symmetric).
# Every mapping is learned after translation into @learned (public port -> inside address and
# port), which endpoint-independent filtering and hairpinning read. Filtering:
#   full-cone            anything to a mapped port is let in (DNAT through @learned)
#   restricted-cone      only from addresses the mapping has sent to (@contacted)
#   port-restricted-cone only replies conntrack knows (address and port)
#   symmetric            same as port-restricted
#   udp-blocked          port-restricted for TCP; UDP from inside is dropped
# Unsolicited UDP from outside that nothing lets in would otherwise be delivered to the NAT box
# itself, and conntrack would keep its tuple (remote -> public address:port): the next outbound
# packet from that mapping to that remote would then clash with it and masquerade would pick
# another port, turning an endpoint-independent mapping into a port-dependent one exactly when
# two peers punch holes at each other at the same time. filter_in drops such packets before
# conntrack confirms them, as a real NAT would (no entry, no ICMP).
nl_nat_rules() {
	local node=$1 type=$2 out=$3 in=$4 pub=$5 hairpin=$6 timeout=$7
	local masq="masquerade" inbound="" block=""
	case $type in
	full-cone) inbound="iifname \"$out\" meta l4proto udp dnat ip to udp dport map @learned" ;;
	restricted-cone) inbound="iifname \"$out\" meta l4proto udp ip saddr . udp dport @contacted dnat ip to udp dport map @learned" ;;
	port-restricted-cone) ;;
	symmetric) masq="masquerade fully-random" ;;
	udp-blocked) block="iifname \"$in\" meta l4proto udp drop" ;;
	*) nl_die "unknown NAT type '$type'" || return 1 ;;
	esac
	local hp_pre="" hp_post=""
	if [ "$hairpin" = on ]; then
		hp_pre="iifname \"$in\" ip daddr $pub meta l4proto udp dnat ip to udp dport map @learned"
		hp_post="iifname \"$in\" oifname \"$in\" ct status dnat snat ip to $pub"
	fi
	nl_exec "$node" nft -f - <<EOF || return 1
table ip netlab {
	map learned {
		type inet_service : ipv4_addr . inet_service
		flags dynamic,timeout
		timeout ${timeout}s
	}
	set contacted {
		type ipv4_addr . inet_service
		flags dynamic,timeout
		timeout ${timeout}s
	}
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		$inbound
		$hp_pre
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		$hp_post
		oifname "$out" $masq
	}
	chain learn {
		type filter hook postrouting priority 200; policy accept;
		oifname "$out" meta l4proto udp ct direction original ct status snat update @learned { udp sport : ct original ip saddr . ct original proto-src }
		oifname "$out" meta l4proto udp ct direction original ct status snat update @contacted { ip daddr . udp sport }
	}
	chain filter_fwd {
		type filter hook forward priority filter; policy accept;
		$block
		iifname "$out" ct state established,related accept
		iifname "$out" ct status dnat accept
		iifname "$out" drop
	}
	chain filter_in {
		type filter hook input priority filter; policy accept;
		iifname "$out" meta l4proto udp ct state new drop
	}
}
EOF
	# The mapping lifetime: conntrack's UDP timeouts (per namespace) and the learned sets.
	nl_exec "$node" sysctl -qw net.netfilter.nf_conntrack_udp_timeout="$timeout" \
		net.netfilter.nf_conntrack_udp_timeout_stream="$timeout" || true
	echo "$node $type hairpin=$hairpin timeout=$timeout" >>"$NL_DIR/nats"
}

# nl_linkem NODE-OR-LINK-ID: the link id of a node's first emulated attachment (or the id itself).
nl_linkid() {
	case $1 in
	l[0-9]*) echo "$1" ;;
	*) awk -v n="$1" '$1 == n && $4 != "-" { print $4; exit }' "$NL_DIR/attachments" ;;
	esac
}

# nl_signal LINK SIG: USR1 toggles a blackhole both ways, USR2 refreshes the counters.
nl_signal() {
	local id
	id=$(nl_linkid "$1")
	kill -"$2" "$(cat "$NL_DIR/$id.pid")"
}

# nl_stats LINK [DIR [FIELD]]: the emulator's counters ("ab rx=... tx=..." lines), or one number.
nl_stats() {
	local id pid i
	id=$(nl_linkid "$1")
	pid=$(cat "$NL_DIR/$id.pid")
	rm -f "$NL_DIR/$id.stats"
	kill -USR2 "$pid" 2>/dev/null
	for i in $(seq 100); do
		[ -s "$NL_DIR/$id.stats" ] && break
		sleep 0.01
	done
	if [ -n "${3:-}" ]; then
		awk -v d="$2" -v f="$3" '$1 == d { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) print kv[2] } }' "$NL_DIR/$id.stats"
	elif [ -n "${2:-}" ]; then
		grep "^$2 " "$NL_DIR/$id.stats"
	else
		cat "$NL_DIR/$id.stats"
	fi
}

# nl_down [LAB]: kills everything that runs in the lab's namespaces and deletes them.
nl_down() {
	local - # errexit off here only: teardown must go on past processes that are already gone
	set +e
	local lab=${1:-${NL_LAB:-}} dir ns pid
	[ -n "$lab" ] || return 0
	dir=$NL_RUNDIR/$lab
	if [ -f "$dir/pids" ]; then
		while read -r pid; do kill "$pid" 2>/dev/null; done <"$dir/pids"
	fi
	for ns in $(ip netns list 2>/dev/null | awk -v p="$lab-" 'index($1, p) == 1 { print $1 }'); do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null; done
	done
	# Up to a second for them to stop (ternd takes about 0.1 s), then SIGKILL what is left.
	local _ left
	for _ in $(seq 50); do
		left=0
		for ns in $(ip netns list 2>/dev/null | awk -v p="$lab-" 'index($1, p) == 1 { print $1 }'); do
			if [ -n "$(ip netns pids "$ns" 2>/dev/null)" ]; then
				left=1
				break
			fi
		done
		[ "$left" = 0 ] && break
		sleep 0.02
	done
	for ns in $(ip netns list 2>/dev/null | awk -v p="$lab-" 'index($1, p) == 1 { print $1 }'); do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
		ip netns del "$ns" 2>/dev/null
	done
	rm -rf "$dir"
	[ "$lab" = "${NL_LAB:-}" ] && unset NL_LAB
	return 0
}

# nl_gc: removes labs whose owning process is gone.
nl_gc() {
	local d owner
	for d in "$NL_RUNDIR"/*/; do
		[ -d "$d" ] || continue
		owner=$(cat "$d/owner" 2>/dev/null || echo 0)
		if ! kill -0 "$owner" 2>/dev/null; then
			nl_down "$(basename "$d")"
		fi
	done
}

# nl_load FILE|-: runs a topology: each line is a netlab command ("segment pub", "host ...",
# "nat ...", "link ...", "route ...", "addr ...", "exec ...", "bg ...") with shell quoting;
# "#" starts a comment.
nl_load() {
	local line cmd
	while IFS= read -r line || [ -n "$line" ]; do
		line=${line%%#*}
		line=${line#"${line%%[![:space:]]*}"}
		[ -n "$line" ] || continue
		cmd=${line%%[[:space:]]*}
		case $cmd in
		segment | host | nat | link | route | addr | exec | bg | ns | attach) ;;
		*) nl_die "unknown topology command '$cmd'" || return 1 ;;
		esac
		eval "nl_$line" >/dev/null || { nl_die "failed: $line"; return 1; }
	done <"${1:-/dev/stdin}"
}
