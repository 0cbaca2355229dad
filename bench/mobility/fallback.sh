#!/usr/bin/env bash
# bench/mobility/fallback.sh: a client whose network drops UDP (netlab's udp-blocked NAT), on an
# emulated access link, sends a file to the server host over tern/TCP, tern/TLS and plain TCP in
# the same run on the same lab (issue 14).
#
#   bench/mobility/fallback.sh [--mb N] [--rate MBIT] [--rtt MS] [--runs N]
#
# Lab: srv 203.0.113.2 on the public segment; client a (10.0.1.2) behind a udp-blocked NAT
# (203.0.113.11), its link to the NAT emulated by tern-linkem: RATE Mbit/s and RTT/2 one-way
# delay each way (defaults 10 Mbit/s, 100 ms RTT, a 20 MB random file, 1 run).
#   tern/tcp  `tern send` (--transport auto: UDP first, TCP after the race delay) to a `tern recv
#             --tcp-listen` on srv
#   tern/tls  the same with --stream SRV:5443/tls (TLS 1.3, self-signed certificate)
#   tcp       a plain TCP copy (python3 sockets: the receiver reads to EOF, hashes with SHA-256 and
#             answers the digest; the sender compares it)
# Per transfer: time to connected (tern: "connected N ms after the first attempt", i.e. from the
# UDP attempt; tcp: connect() returning) and the wall time from the command's start to its
# verified end (the receiver's hash matched the sender's: tern send's exit 0, the digest for tcp),
# measured by this script around the sending command; goodput = file bits / wall time. Ratios are
# against plain TCP's figures of the same run. Needs root, a built tern and tern-linkem ($TERN,
# $NETLAB_LINKEM, or the newest build under the source tree) and python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/netlab/lib.sh"

mb=20
rate=10
rtt=100
runs=1
while [ $# -gt 0 ]; do
	case $1 in
	--mb) mb=$2; shift 2 ;;
	--rate) rate=$2; shift 2 ;;
	--rtt) rtt=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	*) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "bench/mobility/fallback.sh: needs root" >&2; exit 1; }
# the newest build, in build*/ or build/*/ (build/gcc), not a sanitized one (build/asan)
newest() { ls -t "$root"/build*/"$1" "$root"/build/*/"$1" 2>/dev/null | grep -v asan | head -1 || true; }
TERN=${TERN:-$(newest src/tools/tern)}
[ -n "${NETLAB_LINKEM:-}" ] || NETLAB_LINKEM=$(newest netlab/tern-linkem)
export NETLAB_LINKEM
[ -x "$TERN" ] || { echo "no tern binary (set TERN)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 needed for the TCP peer" >&2; exit 1; }

SRV=203.0.113.2
work=$(mktemp -d "${TMPDIR:-/tmp}/fallback-bench.XXXXXX")
trap 'nl_down; rm -rf "$work"' EXIT
head -c $((mb * 1000000)) /dev/urandom >"$work/file.bin"
size=$(stat -c %s "$work/file.bin")

# The plain TCP peer: "recv PORT DIR" stores one file and answers its SHA-256; "send ADDR PORT
# FILE" prints "connect_ms=X ok=1|0" once the answer is in.
cat >"$work/tcp_copy.py" <<'PY'
import hashlib, os, socket, sys, time
if sys.argv[1] == "recv":
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", int(sys.argv[2]))); ls.listen(1)
    print("listening", flush=True)
    c, _ = ls.accept(); h = hashlib.sha256()
    with open(os.path.join(sys.argv[3], "file.bin"), "wb") as f:
        while True:
            b = c.recv(1 << 20)
            if not b: break
            f.write(b); h.update(b)
    c.sendall(h.hexdigest().encode()); c.close()
else:
    t0 = time.monotonic(); s = socket.create_connection((sys.argv[2], int(sys.argv[3])))
    t1 = time.monotonic(); h = hashlib.sha256()
    with open(sys.argv[4], "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b: break
            s.sendall(b); h.update(b)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        b = s.recv(128)
        if not b: break
        got += b
    print("connect_ms=%.1f ok=%d" % ((t1 - t0) * 1e3, got.decode() == h.hexdigest()), flush=True)
PY

half=$(awk -v r="$rtt" 'BEGIN { printf "%gms", r / 2 }')
nl_init
nl_trap
trap 'nl_down; rm -rf "$work"' EXIT
nl_segment pub
nl_host srv pub "$SRV/24"
nl_segment lan_a
nl_nat nat_a udp-blocked pub 203.0.113.11/24 lan_a 10.0.1.1/24
nl_host a lan_a 10.0.1.2/24 10.0.1.1 "delay=$half rate=${rate}mbit" "delay=$half rate=${rate}mbit"
nl_exec a ping -c 1 -W 3 -q "$SRV" >/dev/null

wait_line() { # FILE PATTERN SECONDS
	local _
	for _ in $(seq $(($3 * 20))); do
		grep -Eq "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

# run_tern KIND (tcp|tls): prints "CONNECT_MS WALL_MS OK"
run_tern() {
	local kind=$1 stream rx=$work/rx_$1 key rc=0 t0 t1 cms
	rm -rf "$rx"; mkdir "$rx"
	[ "$kind" = tcp ] && stream=$SRV:5000/tcp || stream=$SRV:5443/tls
	nl_bg srv stdbuf -oL -eL "$TERN" recv --listen "$SRV:5000" --tcp-listen "$SRV:5000" \
		--tls-listen "$SRV:5443" --dir "$rx" --quiet >"$work/recv_$kind.log" 2>&1
	local rpid=$NL_BGPID
	wait_line "$work/recv_$kind.log" '^tern recv: listening on tls ' 5 || { echo "- - 0"; return; }
	key=$(sed -n 's/^tern recv: public key \([0-9a-f]\{64\}\)$/\1/p' "$work/recv_$kind.log")
	t0=$(date +%s%N)
	nl_exec a timeout 300 "$TERN" send "$work/file.bin" --to "$SRV:5000" --server-key "$key" \
		--stream "$stream" --quiet >"$work/send_$kind.log" 2>&1 || rc=$?
	t1=$(date +%s%N)
	wait "$rpid" 2>/dev/null || true
	cms=$(sed -n "s/^tern send: transport $kind .*, connected \([0-9.]*\) ms after.*/\1/p" "$work/send_$kind.log" | head -1)
	local ok=0
	[ "$rc" = 0 ] && [ -n "$cms" ] && cmp -s "$work/file.bin" "$rx/file.bin" && ok=1
	[ "$ok" = 1 ] || sed 's/^/    | /' "$work/send_$kind.log" >&2
	echo "${cms:--} $(((t1 - t0) / 1000000)) $ok"
}

# run_tcp: the same for the plain TCP copy
run_tcp() {
	local rx=$work/rx_tcp t0 t1 out cms ok
	rm -rf "$rx"; mkdir "$rx"
	nl_bg srv python3 "$work/tcp_copy.py" recv 6000 "$rx" >"$work/recv_tcp.log" 2>&1
	local rpid=$NL_BGPID
	wait_line "$work/recv_tcp.log" '^listening' 5 || { echo "- - 0"; return; }
	t0=$(date +%s%N)
	out=$(nl_exec a timeout 300 python3 "$work/tcp_copy.py" send "$SRV" 6000 "$work/file.bin" || true)
	t1=$(date +%s%N)
	wait "$rpid" 2>/dev/null || true
	cms=$(sed -n 's/.*connect_ms=\([0-9.]*\).*/\1/p' <<<"$out")
	ok=$(sed -n 's/.* ok=\([01]\).*/\1/p' <<<"$out")
	[ "${ok:-0}" = 1 ] && cmp -s "$work/file.bin" "$rx/file.bin" || ok=0
	echo "${cms:--} $(((t1 - t0) / 1000000)) ${ok:-0}"
}

echo "fallback: $(uname -m), $(nproc) cores, kernel $(uname -r); tern $TERN"
echo "fallback: client behind a udp-blocked NAT, access link ${rate} Mbit/s, ${rtt} ms RTT; file $size bytes; $runs run(s)"
printf '%-9s %4s %12s %10s %14s %11s %10s %3s\n' peer run connect_ms wall_s goodput_mbit conn_vs_tcp wall_vs_tcp ok
for r in $(seq "$runs"); do
	read -r tcp_c tcp_w tcp_ok <<<"$(run_tcp)"
	read -r ttcp_c ttcp_w ttcp_ok <<<"$(run_tern tcp)"
	read -r ttls_c ttls_w ttls_ok <<<"$(run_tern tls)"
	for p in tcp tern/tcp tern/tls; do
		case $p in
		tcp) c=$tcp_c w=$tcp_w ok=$tcp_ok ;;
		tern/tcp) c=$ttcp_c w=$ttcp_w ok=$ttcp_ok ;;
		tern/tls) c=$ttls_c w=$ttls_w ok=$ttls_ok ;;
		esac
		awk -v p="$p" -v r="$r" -v c="$c" -v w="$w" -v tc="$tcp_c" -v tw="$tcp_w" -v ok="$ok" -v size="$size" '
			function ratio(a, b) { return (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) ? sprintf("%.2f", a / b) : "-" }
			BEGIN { printf "%-9s %4d %12s %10.2f %14.2f %11s %10s %3d\n", p, r, c, w / 1000,
				(w > 0 ? size * 8 / (w / 1000) / 1e6 : 0), ratio(c, tc), ratio(w, tw), ok }'
	done
done
