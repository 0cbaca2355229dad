#!/usr/bin/env bash
# The NAT matrix: peer A behind each of {public, full cone, restricted cone, port-restricted
# cone, symmetric} pings peer B behind each of the same, introduced by ternd. Every pair must
# connect directly, except symmetric with port-restricted or symmetric (either order), which must
# connect through ternd's relay within 3 s. One fresh lab per cell: srv (ternd) on the public
# segment, A's NAT at 203.0.113.11 over 10.0.1.0/24, B's at 203.0.113.12 over 10.0.2.0/24.
# B runs `tern recv --via`, A `tern ping B --via -c 3`. The table (path, time to first byte) is
# written to docs/nat-matrix.md ($NAT_MATRIX_MD) after every full run; the test fails if any cell
# is not as expected.
#   p2p_matrix.sh                 the whole matrix
#   p2p_matrix.sh A-TYPE B-TYPE   one cell (nothing written to docs/)
source "$(dirname "$0")/common.sh"
need ethtool nft stdbuf
source "$(dirname "$0")/p2p_common.sh"

TYPES=(public full-cone restricted-cone port-restricted-cone symmetric)
declare -A LABEL=([public]=public [full-cone]="full cone" [restricted-cone]="restricted cone"
	[port-restricted-cone]="port-restricted cone" [symmetric]=symmetric)
RELAY_DEADLINE_MS=3000
# Each side's link to the public segment: 10 ms one way (A to the server 20 ms RTT, A to B 40 ms).
WAN_DELAY_MS=10
export P2P_WAN="delay=${WAN_DELAY_MS}ms"
PINGS=3

if [ $# -eq 2 ]; then
	rows=("$1")
	cols=("$2")
	full=0
else
	rows=("${TYPES[@]}")
	cols=("${TYPES[@]}")
	full=1
fi

expected() { # TYPE-A TYPE-B: direct or relayed
	case "$1/$2" in
	symmetric/port-restricted-cone | port-restricted-cone/symmetric | symmetric/symmetric) echo relayed ;;
	*) echo direct ;;
	esac
}

human_ms() { # MS: "45 ms" below a second, "2.1 s" from there
	awk -v t="$1" 'BEGIN { if (t < 1000) printf "%d ms", t + 0.5; else printf "%.1f s", t / 1000 }'
}

declare -A CELL DETAIL
logs=$(mktemp -d "${TMPDIR:-/tmp}/p2p-matrix.XXXXXX")
keep_logs=0
p2p_atexit() { [ "$keep_logs" = 1 ] || rm -rf "$logs"; }

# cell A-TYPE B-TYPE: one lab, one ping; sets CELL and DETAIL, and t_fail when unexpected.
cell() {
	local ta=$1 tb=$2 want got addr conn fb replies on_path rc why="" log
	want=$(expected "$ta" "$tb")
	log=$logs/$ta.$tb
	p2p_lab
	p2p_side a "$ta" 1
	p2p_side b "$tb" 2
	if ! p2p_ternd >"$log.setup" || ! p2p_recv b "$log.recv" -o "$NL_DIR" >>"$log.setup"; then
		CELL[$ta/$tb]="**FAIL** no start"
		DETAIL[$ta/$tb]="setup failed: $(tr '\n' ' ' <"$log.setup" | cut -c1-200)"
		echo "FAIL $ta x $tb: setup"
		cat "$log.setup"
		t_fail=1
		keep_logs=1
		nl_down
		return
	fi
	rc=0
	nl_exec a timeout 20 stdbuf -oL -eL "$TERN" ping "$PEER_ID" --via "$P2P_VIA" --server-key "$KEY" \
		-c "$PINGS" -i 200 >"$log.ping" 2>&1 || rc=$?
	read -r got addr conn <<<"$(p2p_connected "$log.ping")" || true
	fb=$(p2p_first_byte "$log.ping")
	replies=$(grep -c 'reply from .*rtt=' "$log.ping" || true)
	on_path=$(grep -c "reply from .*rtt=.* path=$want" "$log.ping" || true)
	# The remote address the connection uses: B's public address when direct, the server's when
	# relayed.
	local want_ip
	if [ "$want" = direct ]; then want_ip=$(p2p_public_ip 2); else want_ip=$P2P_SRV; fi
	if [ "${PEER_PUBLIC%:*}" != "$(p2p_public_ip 2)" ]; then
		why="the server saw B at $PEER_PUBLIC, not at $(p2p_public_ip 2)"
	fi
	if [ "$rc" != 0 ]; then why="${why:+$why; }ping exited $rc"; fi
	if [ -z "$got" ]; then why="${why:+$why; }no 'connected to' line"; fi
	if [ -n "$got" ] && [ "$got" != "$want" ]; then why="${why:+$why; }path $got, expected $want"; fi
	if [ -n "$got" ] && [ "${addr%:*}" != "$want_ip" ]; then
		why="${why:+$why; }remote address $addr, expected $want_ip:*"
	fi
	if [ "$want" = relayed ] && [ -n "$conn" ] &&
		! awk -v c="$conn" -v d="$RELAY_DEADLINE_MS" 'BEGIN { exit !(c <= d) }'; then
		why="${why:+$why; }connected after $conn ms (deadline $RELAY_DEADLINE_MS ms)"
	fi
	if [ -z "$fb" ]; then why="${why:+$why; }no 'first byte' line"; fi
	if [ "$replies" != "$PINGS" ]; then why="${why:+$why; }$replies of $PINGS replies"; fi
	if [ "$on_path" != "$replies" ]; then why="${why:+$why; }$((replies - on_path)) replies not on the $want path"; fi
	local shown=${got:-none}
	[ "$shown" = relayed ] && shown=relay
	local txt="$shown"
	[ -n "$fb" ] && txt="$txt $(human_ms "$fb")"
	DETAIL[$ta/$tb]="A ${LABEL[$ta]}, B ${LABEL[$tb]}: path ${got:-none} ${addr:--}, connected in ${conn:--} ms, first byte after ${fb:--} ms, $replies/$PINGS replies"
	if [ -z "$why" ]; then
		CELL[$ta/$tb]=$txt
		echo "ok   $ta x $tb: $txt (connected in $conn ms via $addr)"
	else
		CELL[$ta/$tb]="**FAIL** $txt"
		DETAIL[$ta/$tb]="${DETAIL[$ta/$tb]} -- FAIL: $why"
		echo "FAIL $ta x $tb: $why"
		p2p_show "tern ping (A, $ta)" "$log.ping"
		p2p_show "tern recv (B, $tb)" "$log.recv"
		p2p_show ternd "$NL_DIR/ternd.log"
		t_fail=1
		keep_logs=1
	fi
	nl_down
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
t0=$(date +%s)
for ta in "${rows[@]}"; do
	for tb in "${cols[@]}"; do
		cell "$ta" "$tb"
	done
done
secs=$(($(date +%s) - t0))
echo "matrix: ${#rows[@]}x${#cols[@]} cells in $secs s"
[ "$keep_logs" = 1 ] && echo "logs kept in $logs"

if [ "$full" = 1 ]; then
	out=${NAT_MATRIX_MD:-$NL_ROOT/docs/nat-matrix.md}
	build="plain"
	[ "${NETLAB_SANITIZED:-0}" = 1 ] && build="ASan/UBSan (timings inflated by the sanitizers)"
	{
		echo "# NAT matrix: peer-to-peer connections through ternd"
		echo
		echo "Written by \`tests/netlab/p2p_matrix.sh\` on every run (ctest: \`sudo ctest --test-dir build -R netlab_p2p_matrix\`)."
		echo "Last run: $started, $secs s for the matrix, result **$([ "$t_fail" = 0 ] && echo PASSED || echo FAILED)**, build: $build."
		echo "Binaries: \`${TERN#"$NL_ROOT"/}\`, \`${TERND#"$NL_ROOT"/}\`."
		echo
		echo "Each cell is a fresh netlab lab: ternd (defaults: STUN 3478, tern, rendezvous and relay on UDP 4433)"
		echo "at 203.0.113.2 on a public segment; peer A behind the row's NAT (outside 203.0.113.11, inside"
		echo "10.0.1.0/24), peer B behind the column's (203.0.113.12, 10.0.2.0/24); \"public\" is a host"
		echo "directly on the public segment. NAT types as in \`netlab/README.md\` (nftables, hairpin off)."
		echo "Each side's link to the public segment (the NAT's outside link, or the public peer's own) delays"
		echo "packets by $WAN_DELAY_MS ms each way (tern-linkem): A to the server is a $((4 * WAN_DELAY_MS / 2)) ms round trip, A to B $((4 * WAN_DELAY_MS)) ms."
		echo "B runs \`tern recv --via 203.0.113.2:4433\`; A runs \`tern ping <B's id> --via 203.0.113.2:4433 -c $PINGS -i 200\`."
		echo "A cell shows the path the connection took (\`direct\` or \`relay\`) and the time to the first byte:"
		echo "from A's INTRODUCE to the server until B's first reply (\`tern ping\`'s \`first byte after\` line:"
		echo "introduction, hole punching or the relay fallback, handshake, one round trip)."
		echo
		echo "Expected: a direct path for every pair except symmetric with port-restricted cone or symmetric"
		echo "(either order), where hole punching cannot work; those connect through the relay within"
		echo "$((RELAY_DEADLINE_MS / 1000)) s. A direct connection must use B's public address, a relayed one the server's."
		echo
		printf '| A \\\\ B |'
		for tb in "${cols[@]}"; do printf ' %s |' "${LABEL[$tb]}"; done
		echo
		printf '|---|'
		for tb in "${cols[@]}"; do printf -- '---|'; done
		echo
		for ta in "${rows[@]}"; do
			printf '| **%s** |' "${LABEL[$ta]}"
			for tb in "${cols[@]}"; do printf ' %s |' "${CELL[$ta/$tb]}"; done
			echo
		done
		echo
		echo "Details (\`connected in\`: from INTRODUCE to the connection established, \`tern ping\`'s \`connected to\` line):"
		echo
		for ta in "${rows[@]}"; do
			for tb in "${cols[@]}"; do echo "- ${DETAIL[$ta/$tb]}"; done
		done
	} >"$out.tmp.$$"
	mv "$out.tmp.$$" "$out"
	echo "matrix written to $out"
	sed -n '/^| A/,/^$/p' "$out"
fi
finish
