#!/usr/bin/env bash
# ternd's stream listeners (tern over TCP and TLS) on 127.0.0.1, ports the kernel picks.
# Usage: ternd_streams.sh CASE TERND TERN. Exit 0 pass, 1 fail.
#   serve  ternd with --tcp-listen/--tls-listen 127.0.0.1:0 and --limit stream_per_ip=3 prints
#          where each listens (as bound); tern ping --transport tcp and --transport tls get every
#          answer and say "transport tcp|tls ADDR"; a fourth stream from one address is refused;
#          ternd's report shows the listeners, the limit as set and what it counted.
#   bind   an explicit --tls-listen on a port another socket holds fails the start at once (exit
#          1, the address named); the default TCP listener (the --tern-listen address over TCP)
#          on a port another socket holds is one warning, and ternd serves on without it; run as
#          root, the default TLS listener (port 443) of a ternd started as nobody is one warning
#          naming the privilege, and ternd serves on without TLS.
#   refused  tern ping --transport tcp to a port where nothing listens for TCP ends at once (exit
#          5, within 2 s, not the 5 s handshake timeout) with the driver's "Connection refused"
#          line; the same with --transport auto waits for UDP until the handshake timeout.
set -u
CASE=$1
TERND=$2
TERN=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/ternd-streams.XXXXXX")
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do { kill -9 "$p" && wait "$p"; } 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

fail() {
	echo "FAIL ($CASE): $*" >&2
	for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
	exit 1
}

wait_for() { # FILE PATTERN: up to 15 s (a sanitized build on a loaded machine starts slowly)
	local _
	for _ in $(seq 300); do
		grep -Eq "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

# hold_port KIND: a socket (tcp: listening, udp: bound) on 127.0.0.1 and a free port, kept by a
# background python (killed at exit); sets held to the port.
hold_port() {
	python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
if sys.argv[1] == "tcp": s.listen(1)
print(s.getsockname()[1], flush=True)
time.sleep(60)' "$1" >"$work/hold_$1.port" 2>/dev/null &
	pids+=($!)
	wait_for "$work/hold_$1.port" '^[0-9]+$' || fail "python could not hold a $1 port"
	held=$(cat "$work/hold_$1.port")
}

# timed LOG CMD...: runs CMD (output to LOG); sets rc (its exit code) and ms (how long it took).
timed() {
	local log=$1 t0
	shift
	t0=$(date +%s%3N)
	"$@" >"$log" 2>&1
	rc=$?
	ms=$(($(date +%s%3N) - t0))
}

common=(--no-tcp --listen 127.0.0.1:0 --workers 1)
case $CASE in
serve)
	"$TERND" "${common[@]}" --tern-listen 127.0.0.1:0 --tcp-listen 127.0.0.1:0 \
		--tls-listen 127.0.0.1:0 --limit stream_per_ip=3 >"$work/ternd.log" 2>&1 &
	ternd_pid=$!
	pids+=("$ternd_pid")
	wait_for "$work/ternd.log" '^ternd: tern public key' || fail "ternd did not start"
	udp=$(sed -n 's/^ternd: tern listening on udp \(127\.0\.0\.1:[0-9]*\)$/\1/p' "$work/ternd.log")
	tcp=$(sed -n 's/^ternd: tern listening on tcp \(127\.0\.0\.1:[0-9]*\)\/tcp$/\1/p' "$work/ternd.log")
	tls=$(sed -n 's/^ternd: tern listening on tls \(127\.0\.0\.1:[0-9]*\)\/tls (self-signed.*$/\1/p' "$work/ternd.log")
	key=$(sed -n 's/^ternd: tern public key \([0-9a-f]*\)$/\1/p' "$work/ternd.log")
	case "$tcp $tls" in *:0\ * | *:0) fail "a listener printed port 0, not the port it got" ;; esac
	[ -n "$udp" ] && [ -n "$tcp" ] && [ -n "$tls" ] || fail "ternd did not print its three listeners"
	for t in tcp tls; do
		s=$tcp
		[ $t = tls ] && s=$tls
		"$TERN" ping "$udp" --server-key "$key" --count 2 --interval 50 --transport $t \
			--stream "$s" >"$work/ping_$t.log" 2>&1 || fail "tern ping over $t failed"
		grep -q "^tern ping: transport $t $s/$t, connected [0-9.]* ms after the first attempt$" \
			"$work/ping_$t.log" || fail "tern ping did not say transport $t $s/$t"
		[ "$(grep -c '^seq=[0-9]* rtt=' "$work/ping_$t.log")" = 2 ] ||
			fail "tern ping over $t: not every ping answered"
	done
	# stream_per_ip=3: four raw TCP connections from 127.0.0.1 at once, the fourth refused
	python3 -c '
import socket, sys, time
c = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(4)]
time.sleep(0.5)' "${tcp##*:}" || fail "could not open four TCP connections"
	kill -TERM "$ternd_pid"
	wait_for "$work/ternd.log" '^tern streams open=' || fail "ternd printed no stream counters"
	sed -n '/^tern streams /p' "$work/ternd.log"
	grep -q "^tern streams listen=$tcp/tcp,$tls/tls max_streams=10000 max_per_ip=3 " "$work/ternd.log" ||
		fail "the report does not show the listeners and max_per_ip=3"
	acc=$(sed -n 's/^tern streams open=.* accepted=\([0-9]*\) .*/\1/p' "$work/ternd.log")
	per_ip=$(sed -n 's/^tern streams open=.* refused_per_ip=\([0-9]*\) .*/\1/p' "$work/ternd.log")
	tlsn=$(sed -n 's/^tern streams open=.* tls_handshakes=\([0-9]*\) .*/\1/p' "$work/ternd.log")
	[ "${acc:-0}" -ge 2 ] || fail "accepted=$acc, expected the two pings' streams at least"
	[ "${per_ip:-0}" -ge 1 ] || fail "refused_per_ip=$per_ip: the fourth stream from one address was not refused"
	[ "${tlsn:-0}" -ge 1 ] || fail "tls_handshakes=$tlsn"
	;;
bind)
	hold_port tcp
	timed "$work/explicit.log" "$TERND" "${common[@]}" --tern-listen 127.0.0.1:0 \
		--tls-listen "127.0.0.1:$held"
	[ $rc = 1 ] || fail "ternd with an explicit --tls-listen on a held port exited $rc, not 1"
	[ $ms -lt 5000 ] || fail "ternd took $ms ms to fail"
	grep -q "^ternd: tern: cannot listen for TLS on 127\.0\.0\.1:$held/tls (--tls-listen): " \
		"$work/explicit.log" || fail "no line naming the address that cannot be bound"
	# the default TCP listener follows --tern-listen: its port is held for TCP, free for UDP
	"$TERND" "${common[@]}" --tern-listen "127.0.0.1:$held" --tls-listen 127.0.0.1:0 \
		>"$work/default.log" 2>&1 &
	pids+=($!)
	wait_for "$work/default.log" '^ternd: tern public key' || fail "ternd did not start without its default TCP listener"
	grep -q "^ternd: tern: cannot listen for TCP on 127\.0\.0\.1:$held/tcp: .*; going on without TCP" \
		"$work/default.log" || fail "no warning about the default TCP listener"
	grep -q "^ternd: tern listening on udp 127\.0\.0\.1:$held$" "$work/default.log" ||
		fail "ternd does not serve UDP on 127.0.0.1:$held"
	grep -q '^ternd: tern listening on tcp ' "$work/default.log" &&
		fail "ternd claims a TCP listener it could not bind"
	grep -q '^ternd: tern listening on tls 127\.0\.0\.1:' "$work/default.log" || fail "no TLS listener"
	unpriv=$(sysctl -n net.ipv4.ip_unprivileged_port_start 2>/dev/null || echo 1024)
	as_nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
	if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && [ "$unpriv" -gt 443 ] &&
		"${as_nobody[@]}" "$TERND" --help >/dev/null 2>&1; then
		hold_port tcp # a port whose UDP side is free: the default TCP listener warns too
		"${as_nobody[@]}" "$TERND" "${common[@]}" \
			--tern-listen "127.0.0.1:$held" >"$work/nobody.log" 2>&1 &
		pids+=($!)
		wait_for "$work/nobody.log" '^ternd: tern public key' || fail "ternd as nobody did not start"
		grep -q "^ternd: tern: cannot listen for TLS on 127\.0\.0\.1:443/tls: Permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE); going on without TLS" \
			"$work/nobody.log" || fail "no one-line warning about port 443 without the privilege"
		grep -q '^ternd: tern listening on tls ' "$work/nobody.log" &&
			fail "ternd as nobody claims a TLS listener"
	else
		echo "(not root, no setpriv, port 443 unprivileged here, or ternd not runnable as nobody:"
		echo " the privilege case skipped)"
	fi
	;;
refused)
	hold_port udp # UDP bound (nothing answers it), TCP free: a connect is refused
	key=$(printf '%064d' 1)
	timed "$work/refused.log" "$TERN" ping "127.0.0.1:$held" --server-key "$key" --transport tcp \
		--timeout 5000
	[ $rc = 5 ] || fail "exit $rc, not 5 (refused)"
	[ $ms -lt 2000 ] || fail "it took $ms ms"
	grep -q "^tern ping: 127\.0\.0\.1:$held/tcp refused the connection: .*Connection refused" \
		"$work/refused.log" || fail "no line saying the stream was refused"
	timed "$work/auto.log" "$TERN" ping "127.0.0.1:$held" --server-key "$key" --timeout 1000
	[ $rc = 4 ] || fail "--transport auto: exit $rc, not 4 (no answer)"
	[ $ms -ge 900 ] || fail "--transport auto gave up after $ms ms, before the handshake timeout"
	;;
*)
	echo "unknown case $CASE" >&2
	exit 2
	;;
esac
echo "PASS ($CASE)"
