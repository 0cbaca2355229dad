#!/usr/bin/env bash
# Two peers behind one NAT (hairpin off, so their public addresses cannot reach each other)
# connect directly on their local addresses: B (10.0.1.3) runs `tern recv --via`, A (10.0.1.2)
# `tern ping B --via -c 3`; the connection must be direct and its remote address B's inside one.
# Run for a port-restricted cone NAT and for a symmetric one (where the relay would otherwise be
# the only way).
#   p2p_samenat.sh [NAT-TYPE...]   (default: port-restricted-cone symmetric)
source "$(dirname "$0")/common.sh"
need ethtool nft stdbuf
source "$(dirname "$0")/p2p_common.sh"

types=("$@")
[ ${#types[@]} -gt 0 ] || types=(port-restricted-cone symmetric)
for type in "${types[@]}"; do
	p2p_lab
	p2p_side a "$type" 1
	nl_host b lan_a 10.0.1.3/24 10.0.1.1
	p2p_ternd
	p2p_recv b "$NL_DIR/recv.log" -o "$NL_DIR"
	echo "$type: B registered as $PEER_ID, public $PEER_PUBLIC"
	check "$type: the server sees B at the NAT's address ($PEER_PUBLIC)" "\"${PEER_PUBLIC%:*}\" == \"$(p2p_public_ip 1)\""
	rc=0
	nl_exec a timeout 20 stdbuf -oL -eL "$TERN" ping "$PEER_ID" --via "$P2P_VIA" --server-key "$KEY" \
		-c 3 -i 200 >"$NL_DIR/ping.log" 2>&1 || rc=$?
	read -r path addr ms <<<"$(p2p_connected "$NL_DIR/ping.log")" || true
	replies=$(grep -c 'reply from .*rtt=' "$NL_DIR/ping.log" || true)
	echo "$type: connected: path ${path:-none} ${addr:--} in ${ms:--} ms; $replies replies; first byte after $(p2p_first_byte "$NL_DIR/ping.log") ms"
	check "$type: tern ping exits 0 (rc $rc)" "$rc == 0"
	check "$type: path direct (${path:-none})" "\"$path\" == \"direct\""
	check "$type: on B's local address 10.0.1.3 (${addr:-none})" "\"${addr%:*}\" == \"10.0.1.3\""
	check "$type: 3 replies ($replies)" "$replies == 3"
	if [ "$t_fail" != 0 ]; then
		p2p_show "tern ping (A)" "$NL_DIR/ping.log"
		p2p_show "tern recv (B)" "$NL_DIR/recv.log"
		p2p_show ternd "$NL_DIR/ternd.log"
	fi
	nl_down
done
finish
