# shellcheck shell=bash disable=SC2034
# tests/netlab/p2p_common.sh: shared by the peer-to-peer lab tests (p2p_*.sh). Sourced after
# common.sh. A lab is a public segment "pub" holding the server "srv" (203.0.113.2, ternd with
# STUN on 3478 and tern + rendezvous + relay on 4433) and, per peer, either a host directly on
# pub ("public") or a NAT box whose outside address is on pub with the peer behind it on a
# segment of its own. Each peer's inside subnet is distinct, so local candidates never work by
# accident across NATs.
#
# The binaries: $TERN and $TERND (set by tests/netlab/CMakeLists.txt), else the newest build
# under the source tree.

P2P_SRV=203.0.113.2
P2P_VIA=$P2P_SRV:4433

p2p_find_bin() { # RELATIVE-PATH: the newest build*/RELATIVE-PATH
	local f best=""
	for f in "$NL_ROOT"/build*/"$1" "$NL_ROOT"/build/*/"$1"; do
		[ -x "$f" ] || continue
		if [ -z "$best" ] || [ "$f" -nt "$best" ]; then best=$f; fi
	done
	[ -n "$best" ] && echo "$best"
}
TERN=${TERN:-$(p2p_find_bin src/tools/tern)}
TERND=${TERND:-$(p2p_find_bin src/server/ternd)}
[ -x "${TERN:-}" ] || skip "tern not built (set TERN)"
[ -x "${TERND:-}" ] || skip "ternd not built (set TERND)"
# Sanitized binaries: leaks in a peer killed at the end are not this test's subject.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}

# p2p_atexit: what a test adds to the teardown on exit (after the lab is down). The traps are set
# here, before the test makes anything, and again by p2p_lab after nl_trap.
p2p_atexit() { :; }
trap 'nl_down; p2p_atexit' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# p2p_lab: a new lab with the public segment and the server node (ternd not started yet). The lab
# goes down on every exit path (nl_trap), then p2p_atexit runs.
p2p_lab() {
	nl_init
	nl_trap
	trap 'nl_down; p2p_atexit' EXIT
	nl_segment pub
	nl_host srv pub "$P2P_SRV/24"
}

# p2p_side NAME TYPE N [HOST-LINK-UP [HOST-LINK-DOWN]]: peer NAME (node NAME) behind a NAT of
# TYPE ("public": directly on pub). Its public address is 203.0.113.(10+N); behind a NAT it is
# 10.0.N.2 on segment lan_NAME, with the NAT (node nat_NAME) at 10.0.N.1. The optional link specs
# put an emulated link between the peer and its segment (rate limits, delay). With $P2P_WAN set
# (a link spec, e.g. "delay=10ms"), the side's attachment to pub (the NAT's outside link, or a
# public peer's own link) is an emulated link with that spec both ways.
p2p_side() {
	local name=$1 type=$2 n=$3 up=${4:--} down=${5:--} wan=${P2P_WAN:-}
	if [ "$type" = public ]; then
		if [ -n "$wan" ]; then
			[ "$up" = - ] && up=$wan || up="$wan $up"
			[ "$down" = - ] && down=$wan || down="$wan $down"
		fi
		nl_host "$name" pub "203.0.113.$((10 + n))/24" - "$up" "$down"
	else
		nl_segment "lan_$name"
		nl_nat "nat_$name" "$type" pub "203.0.113.$((10 + n))/24" "lan_$name" "10.0.$n.1/24" \
			"up=${wan:--}" "down=${wan:--}"
		nl_host "$name" "lan_$name" "10.0.$n.2/24" "10.0.$n.1" "$up" "$down"
	fi
}

p2p_public_ip() { echo "203.0.113.$((10 + $1))"; } # N

# p2p_wait FILE PATTERN SECONDS [PID]: waits until FILE has a line matching PATTERN (grep -E);
# fails early when PID has exited.
p2p_wait() {
	local file=$1 pat=$2 secs=$3 pid=${4:-} _
	for _ in $(seq $((secs * 20))); do
		grep -Eq "$pat" "$file" 2>/dev/null && return 0
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			grep -Eq "$pat" "$file" 2>/dev/null && return 0
			return 1
		fi
		sleep 0.05
	done
	return 1
}

# p2p_ternd: starts ternd (no arguments: the defaults) in srv; sets KEY to its public key.
p2p_ternd() {
	nl_bg srv stdbuf -oL -eL "$TERND" >"$NL_DIR/ternd.log" 2>&1
	if ! p2p_wait "$NL_DIR/ternd.log" '^ternd: tern public key [0-9a-f]{64}$' 5 "$NL_BGPID"; then
		echo "ternd did not start:"
		sed 's/^/     /' "$NL_DIR/ternd.log"
		return 1
	fi
	KEY=$(sed -n 's/^ternd: tern public key \([0-9a-f]\{64\}\)$/\1/p' "$NL_DIR/ternd.log")
}

# p2p_recv NODE LOG ARGS...: starts `tern recv --via` in NODE, waits for its registration; sets
# PEER_ID, PEER_PUBLIC (the address the server saw) and RECV_PID.
p2p_recv() {
	local node=$1 log=$2
	shift 2
	nl_bg "$node" stdbuf -oL -eL "$TERN" recv --via "$P2P_VIA" --server-key "$KEY" "$@" >"$log" 2>&1
	RECV_PID=$NL_BGPID
	if ! p2p_wait "$log" 'registered as [0-9a-f]+ public ' 10 "$RECV_PID"; then
		echo "tern recv in $node did not register:"
		sed 's/^/     /' "$log"
		return 1
	fi
	PEER_ID=$(sed -n 's/.*registered as \([0-9a-f]*\) public \([^ ]*\).*/\1/p' "$log" | head -1)
	PEER_PUBLIC=$(sed -n 's/.*registered as \([0-9a-f]*\) public \([^ ]*\).*/\2/p' "$log" | head -1)
}

# p2p_connected LOG: the first "connected to ID path P ADDR in MS ms" line of a ping/send log, as
# "P ADDR MS" (empty when there is none).
p2p_connected() {
	sed -n 's/.*connected to [0-9a-f]* path \([a-z]*\) \([^ ]*\) in \([0-9.]*\) ms.*/\1 \2 \3/p' "$1" | head -1
}

# p2p_first_byte LOG: MS from "first byte after MS ms".
p2p_first_byte() {
	sed -n 's/.*first byte after \([0-9.]*\) ms.*/\1/p' "$1" | head -1
}

# p2p_show TITLE FILE: a log, indented, for failure reports.
p2p_show() {
	echo "     --- $1"
	sed 's/^/     /' "$2" 2>/dev/null | tail -n 30
}

# --- a 16 MB transfer between two port-restricted NATs whose direct path the test blocks and
# unblocks (p2p_migrate.sh, p2p_fallback.sh)

# p2p_xfer_lab: work dir with a 16 MB random file; A (203.0.113.11, its link limited to 16 Mbit/s
# so that the file takes about 8 s) and B (.12) behind port-restricted cone NATs; counters on the
# public bridge of the bytes A's NAT sends to the server (a_srv) and to B's NAT (a_b); ternd and
# `tern recv --via --count 1` in B. Sets work, size, A, B, KEY, PEER_ID, RECV_PID.
p2p_xfer_lab() {
	work=$(mktemp -d "${TMPDIR:-/tmp}/p2p-xfer.XXXXXX")
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
	p2p_ternd
	p2p_recv b "$NL_DIR/recv.log" -o "$work/rx" --count 1
}

# p2p_counter NAME: bytes counted so far by p2p_xfer_lab's counter NAME.
p2p_counter() {
	nl_exec pub nft list counter bridge p2p_count "$1" | sed -n 's/.*packets [0-9]* bytes \([0-9]*\).*/\1/p'
}

# p2p_block / p2p_unblock: drop everything between A's and B's NATs on the public bridge (the
# server stays reachable), and stop doing so.
p2p_block() {
	nl_exec pub nft -f - <<EOF
table bridge p2p_block {
	chain on_bridge {
		type filter hook forward priority 0; policy accept;
		ip saddr $A ip daddr $B drop
		ip saddr $B ip daddr $A drop
	}
}
EOF
}
p2p_unblock() { nl_exec pub nft delete table bridge p2p_block; }

# p2p_xfer_send: starts `tern send` of the file in A to B through ternd; sets SEND_PID and T0 (ns);
# p2p_elapsed prints the ms since.
p2p_xfer_send() {
	nl_bg a stdbuf -oL -eL "$TERN" send "$work/file.bin" --to "$PEER_ID" --via "$P2P_VIA" \
		--server-key "$KEY" >"$NL_DIR/send.log" 2>&1
	SEND_PID=$NL_BGPID
	T0=$(date +%s%N)
}
p2p_elapsed() { echo $((($(date +%s%N) - T0) / 1000000)); }

# p2p_xfer_end MIN_MOVES: waits for both sides (60 s), then checks their exit codes, the file
# byte-exact, the receiver's verdict, and tern send's final line: stored and verified, on the
# direct path after at least MIN_MOVES moves. Shows the logs when anything failed.
p2p_xfer_end() {
	local min_moves=$1 rc=0 rrc=0 final rline fpath moves _
	for _ in $(seq 600); do kill -0 "$SEND_PID" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$SEND_PID" 2>/dev/null; then rc=timeout; else wait "$SEND_PID" || rc=$?; fi
	for _ in $(seq 100); do kill -0 "$RECV_PID" 2>/dev/null || break; sleep 0.05; done
	if kill -0 "$RECV_PID" 2>/dev/null; then rrc=timeout; else wait "$RECV_PID" || rrc=$?; fi
	echo "transfer ended after $(p2p_elapsed) ms"
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
	check "tern send's final line: stored and verified, path direct after at least $min_moves move(s) (${fpath:-none}, ${moves:-?} moves)" \
		"\"$fpath\" == \"direct\" && \"${moves:-0}\" + 0 >= $min_moves"
}

# p2p_xfer_show: the three logs, when the test failed.
p2p_xfer_show() {
	if [ "$t_fail" != 0 ]; then
		p2p_show "tern send (A)" "$NL_DIR/send.log"
		p2p_show "tern recv (B)" "$NL_DIR/recv.log"
		p2p_show ternd "$NL_DIR/ternd.log"
	fi
}
