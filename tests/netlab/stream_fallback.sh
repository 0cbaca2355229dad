#!/usr/bin/env bash
# tern over TCP and TLS from a network that drops UDP (issue 14): client A (node a) sits behind
# netlab's udp-blocked NAT (UDP from inside dropped, TCP NATed; 203.0.113.11 outside), the
# server host srv is 203.0.113.2 on the public segment. Each case moves a 20 MB random file and
# checks it byte-exact (cmp, and the receiver's SHA-256 verdict):
#   stream_fallback.sh tcp    `tern send` (--transport auto: UDP raced with TCP) to a
#                             `tern recv --tcp-listen` on srv: the connection must say
#                             "transport tcp 203.0.113.2:5000/tcp"
#   stream_fallback.sh tls    the same with --stream 203.0.113.2:5443/tls (UDP raced with TLS
#                             1.3, the receiver's self-signed certificate): "transport tls ..."
#   stream_fallback.sh relay  both peers behind udp-blocked NATs register with ternd (on its
#                             defaults: TCP 4433, TLS 443) over TCP and meet through the relay
#                             over their streams: "path relayed 203.0.113.2:4433/tcp"; ternd's
#                             report counts the frames its relay took from and put on streams
#   stream_fallback.sh mixed  A behind udp-blocked reaches ternd over TLS (--transport tls), B
#                             behind a port-restricted cone NAT over UDP: the relay joins A's
#                             TLS stream and B's UDP ("path relayed 203.0.113.2:443/tls")
#   stream_fallback.sh back   as tcp, on a 12 Mbit/s link (about 14 s for the file); 2 s into
#                             the transfer the NAT stops dropping UDP: tern send must print
#                             "transport now udp 203.0.113.2:5000" within 15 s (the background
#                             UDP probes of a stream connection back off to 30 s at most) and
#                             end on UDP, byte-exact
# Time to connect: each connection over a stream (to the receiver, or the peers' connections to
# ternd) must be up within 1 s of the UDP attempt plus the race delay: the command's "connected N
# ms after the first attempt (UDP first, the stream after a race delay of R ms)" with N <= 1000 +
# R (R the core's default, 250 ms; 0 for a stream alone, --transport tls).
source "$(dirname "$0")/common.sh"
need ethtool nft stdbuf cmp
source "$(dirname "$0")/p2p_common.sh"
case=${1:?usage: stream_fallback.sh tcp|tls|relay|mixed|back}

work=$(mktemp -d "${TMPDIR:-/tmp}/stream-fallback.XXXXXX")
p2p_atexit() { rm -rf "$work"; }
head -c 20000000 /dev/urandom >"$work/file.bin"
size=$(stat -c %s "$work/file.bin")
mkdir "$work/rx"

# connect_ms LOG LABEL TRANSPORT: checks LOG's "LABEL: transport TRANSPORT ..., connected N ms
# after the first attempt[ (... race delay of R ms)]" line: the transport, and N <= 1000 + R.
connect_ms() {
	local log=$1 label=$2 want=$3 line tr ms race
	line=$(grep -m1 "$label: transport [a-z]* .*, connected [0-9.]* ms after the first attempt" "$log" || true)
	tr=$(sed -n 's/.*: transport \([a-z]*\) .*/\1/p' <<<"$line")
	ms=$(sed -n 's/.*, connected \([0-9.]*\) ms after.*/\1/p' <<<"$line")
	race=$(sed -n 's/.*race delay of \([0-9]*\) ms.*/\1/p' <<<"$line")
	echo "$case: ${line:-$label: no transport line}"
	check "$case: $label: transport $want (${tr:-none})" "\"$tr\" == \"$want\""
	check "$case: $label: connected within 1 s + the race delay (${ms:-none} ms <= 1000 + ${race:-0} ms)" \
		"\"${ms:-x}\" != \"x\" && ${ms:-0} <= 1000 + ${race:-0}"
}

# byte_exact DIR: the received copy equals the file.
byte_exact() {
	if cmp "$work/file.bin" "$1/file.bin"; then echo "ok   $case: the file arrived byte-exact"; else
		echo "FAIL $case: the received file differs (or is missing)"
		t_fail=1
	fi
}

# send_start ARGS...: `tern send FILE ARGS...` in A in the background (send.log); sets SEND_PID
# and T0. send_end: waits for it (120 s at most), then (10 s at most) for the receiver RECV_PID;
# sets rc, rrc (the exit codes) and ms (the send's wall time). send_file ARGS...: both.
send_start() {
	nl_bg a stdbuf -oL -eL "$TERN" send "$work/file.bin" "$@" >"$NL_DIR/send.log" 2>&1
	SEND_PID=$NL_BGPID
	T0=$(date +%s%N)
}
send_end() {
	local _
	for _ in $(seq 1200); do kill -0 "$SEND_PID" 2>/dev/null || break; sleep 0.1; done
	rc=0
	if kill -0 "$SEND_PID" 2>/dev/null; then rc=timeout; else wait "$SEND_PID" || rc=$?; fi
	ms=$((($(date +%s%N) - T0) / 1000000))
	for _ in $(seq 200); do kill -0 "$RECV_PID" 2>/dev/null || break; sleep 0.05; done
	rrc=0
	if kill -0 "$RECV_PID" 2>/dev/null; then rrc=timeout; else wait "$RECV_PID" || rrc=$?; fi
}
send_file() {
	send_start "$@"
	send_end
}

# both_exit_ok RECV_PATTERN: shows the sender's final line and the receiver's lines matching
# RECV_PATTERN, and checks both exit codes.
both_exit_ok() {
	grep 'stored and verified' "$NL_DIR/send.log" | sed 's/^/     send: /' || true
	grep "$1" "$NL_DIR/recv.log" | sed 's/^/     recv: /' || true
	check "$case: tern send exits 0 (rc $rc)" "$rc == 0"
	check "$case: tern recv exits 0 (rc $rrc)" "\"$rrc\" == \"0\""
}

# udp_unblock: the udp-blocked NAT of A stops dropping UDP from inside (netlab/lib.sh's rule).
udp_unblock() {
	local h
	h=$(nl_exec nat_a nft -a list chain ip netlab filter_fwd |
		sed -n 's/.*meta l4proto udp drop # handle \([0-9]*\).*/\1/p')
	nl_exec nat_a nft delete rule ip netlab filter_fwd handle "$h"
}

p2p_lab
if [ "$case" = back ]; then p2p_side a udp-blocked 1 "rate=12mbit" "rate=12mbit"; else
	p2p_side a udp-blocked 1
fi
case $case in
tcp | tls | back)
	if [ "$case" != tls ]; then stream=203.0.113.2:5000/tcp; else stream=203.0.113.2:5443/tls; fi
	nl_bg srv stdbuf -oL -eL "$TERN" recv --listen "$P2P_SRV:5000" --tcp-listen "$P2P_SRV:5000" \
		--tls-listen "$P2P_SRV:5443" --dir "$work/rx" >"$NL_DIR/recv.log" 2>&1
	RECV_PID=$NL_BGPID
	if ! p2p_wait "$NL_DIR/recv.log" '^tern recv: listening on tls ' 5 "$RECV_PID"; then
		p2p_show "tern recv did not start" "$NL_DIR/recv.log"
		exit 1
	fi
	KEY=$(sed -n 's/^tern recv: public key \([0-9a-f]\{64\}\)$/\1/p' "$NL_DIR/recv.log")
	if [ "$case" = back ]; then
		send_start --to "$P2P_SRV:5000" --server-key "$KEY" --stream "$stream" --verbose
		if p2p_wait "$NL_DIR/send.log" 'tern send: transport tcp ' 10 "$SEND_PID"; then
			sleep 2
			udp_unblock
			t_unblock=$(date +%s%N)
			if p2p_wait "$NL_DIR/send.log" 'tern send: transport now udp 203\.0\.113\.2:5000$' 15 "$SEND_PID"; then
				echo "$case: on UDP $((($(date +%s%N) - t_unblock) / 1000000)) ms after the NAT let UDP through"
			else
				echo "FAIL $case: no 'transport now udp' within 15 s of the unblock"
				t_fail=1
			fi
		fi
		send_end
		want_end=udp end_addr=203.0.113.2:5000
	else
		send_file --to "$P2P_SRV:5000" --server-key "$KEY" --stream "$stream" --verbose
		want_end=$case end_addr=$stream
	fi
	echo "$case: $size bytes sent in $ms ms (the command's start to its verified end)"
	both_exit_ok 'receiving '
	want=$case
	[ "$case" = back ] && want=tcp
	connect_ms "$NL_DIR/send.log" "tern send" "$want"
	final=$(grep 'stored and verified by the receiver' "$NL_DIR/send.log" | tail -n 1 || true)
	check "$case: tern send's final line: stored and verified over $want_end $end_addr" \
		"\"$(grep -c "; transport $want_end $end_addr; stored" <<<"$final" || true)\" == \"1\""
	rline=$(grep -E "receiving file\.bin \($size bytes\) from 203\.0\.113\.11:[0-9]+/$want over $want" "$NL_DIR/recv.log" || true)
	check "$case: the receiver saw the sender's NAT over $want" "\"$rline\" != \"\""
	byte_exact "$work/rx"
	logs=("tern send (A)" "$NL_DIR/send.log" "tern recv (srv)" "$NL_DIR/recv.log")
	;;
relay | mixed)
	if [ "$case" = relay ]; then
		p2p_side b udp-blocked 2
		a_args=()
		want_a=tcp want_b=tcp relay_addr=203.0.113.2:4433/tcp
	else
		p2p_side b port-restricted-cone 2
		a_args=(--transport tls)
		want_a=tls want_b=udp relay_addr=203.0.113.2:443/tls
	fi
	p2p_ternd
	TERND_PID=$NL_BGPID
	p2p_recv b "$NL_DIR/recv.log" -o "$work/rx" --count 1
	send_file --to "$PEER_ID" --via "$P2P_VIA" --server-key "$KEY" "${a_args[@]}"
	kill -TERM "$TERND_PID" 2>/dev/null || true
	p2p_wait "$NL_DIR/ternd.log" '^relay sessions=' 5 || true
	read -r path addr cms <<<"$(p2p_connected "$NL_DIR/send.log")" || true
	echo "$case: send: connected path ${path:-none} ${addr:--} in ${cms:--} ms; $size bytes in $ms ms"
	both_exit_ok 'received \|receiving '
	connect_ms "$NL_DIR/send.log" "tern send: rendezvous server" "$want_a"
	if [ "$want_b" != udp ]; then
		connect_ms "$NL_DIR/recv.log" "tern recv: rendezvous server" "$want_b"
	fi
	check "$case: A's connection to B goes through the relay over A's stream ($path $addr, want relayed $relay_addr)" \
		"\"$path\" == \"relayed\" && \"$addr\" == \"$relay_addr\""
	rline=$(grep -E "received file\.bin $size bytes hash ok path relayed" "$NL_DIR/recv.log" || true)
	check "$case: the receiver reports file.bin, $size bytes, hash ok, path relayed" "\"$rline\" != \"\""
	byte_exact "$work/rx"
	streams=$(grep '^tern streams listen=' "$NL_DIR/ternd.log" || true)
	from=$(sed -n 's/.* relay_from_stream=\([0-9]*\).*/\1/p' <<<"$streams")
	to=$(sed -n 's/.* relay_to_stream=\([0-9]*\).*/\1/p' <<<"$streams")
	echo "$case: ternd: ${streams:-no streams line}"
	# the file alone is 20 MB in frames of at most ~1.4 KB: at least 10,000 of them from A's stream
	check "$case: ternd's relay took the file from A's stream (relay_from_stream ${from:-?} >= 10000)" \
		"${from:-0} >= 10000"
	if [ "$case" = relay ]; then
		check "$case: and put it on B's stream (relay_to_stream ${to:-?} >= 10000)" "${to:-0} >= 10000"
	fi
	logs=("tern send (A)" "$NL_DIR/send.log" "tern recv (B)" "$NL_DIR/recv.log" ternd "$NL_DIR/ternd.log")
	;;
*)
	echo "unknown case $case"
	exit 2
	;;
esac
if [ "$t_fail" != 0 ]; then
	for ((i = 0; i < ${#logs[@]}; i += 2)); do p2p_show "${logs[i]}" "${logs[i + 1]}"; done
fi
finish
