#!/usr/bin/env bash
# tern stream on 127.0.0.1, no root (issue 15). Usage: stream.sh TERN
#   tern mode: 2 s of synthetic frames arrive, all on time and intact, with the end message;
#   UDP mode: the same frames straight from --udp-out to --udp-in;
#   MPEG-TS: a generated TS (PAT, PMT, an H.264 PID with a random access point every 25 frames,
#   an audio PID) through --ts comes out of --out byte for byte, as 50 frames, 2 of them
#   keyframes.
set -u
TERN=$1
work=$(mktemp -d "${TMPDIR:-/tmp}/tern-stream.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -5 "$f" >&2; }; done
	exit 1
}
v() { grep ' result ' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# start_recv LOG ARGS...: tern stream recv --listen 127.0.0.1:0; sets PORT, KEY
start_recv() {
	local log=$1 i
	shift
	"$TERN" stream recv --listen 127.0.0.1:0 --idle-timeout 5000 "$@" >"$log" 2>&1 &
	pids+=($!)
	rpid=$!
	for i in $(seq 100); do
		grep -q 'public key' "$log" 2>/dev/null && break
		sleep 0.05
	done
	PORT=$(sed -n 's/.*listening on udp 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$log")
	KEY=$(sed -n 's/.*public key \([0-9a-f]*\)$/\1/p' "$log")
	[ -n "$PORT" ] && [ ${#KEY} -eq 64 ] || fail "tern stream recv did not start"
}

# tern mode
start_recv "$work/recv.log" --playout 100
"$TERN" stream send --to "127.0.0.1:$PORT" --server-key "$KEY" --duration 2 --bitrate 2M \
	>"$work/send.log" 2>&1 || fail "tern stream send exited with $?"
wait "$rpid" || fail "tern stream recv exited with $?"
[ "$(v "$work/recv.log" frames)" = 50 ] || fail "tern mode: frames"
[ "$(v "$work/recv.log" ontime)" = 50 ] || fail "tern mode: not every frame on time"
[ "$(v "$work/recv.log" corrupt)" = 0 ] && [ "$(v "$work/recv.log" ended)" = 1 ] || fail "tern mode: corrupt or no end"
[ "$(v "$work/send.log" frames)" = 50 ] || fail "tern mode: sender's count"
grep ' result ' "$work/recv.log"

# UDP mode
port=$((20000 + RANDOM % 20000))
"$TERN" stream recv --udp-in "127.0.0.1:$port" --idle-timeout 3000 >"$work/urecv.log" 2>&1 &
rpid=$!
pids+=($rpid)
sleep 0.2
"$TERN" stream send --udp-out "127.0.0.1:$port" --duration 2 --bitrate 2M >"$work/usend.log" 2>&1 ||
	fail "UDP mode: sender exited with $?"
wait "$rpid" || fail "UDP mode: receiver exited with $?"
[ "$(v "$work/urecv.log" frames)" = 50 ] && [ "$(v "$work/urecv.log" lost)" = 0 ] ||
	fail "UDP mode: frames"
[ "$(v "$work/urecv.log" ended)" = 1 ] && [ "$(v "$work/urecv.log" corrupt)" = 0 ] || fail "UDP mode: end or corrupt"
grep ' result ' "$work/urecv.log"

# MPEG-TS
pkt() { # PID PUSI RAI BYTE: one 188-byte packet, payload filled with BYTE (octal)
	local b1=$(($2 * 64 + ($1 >> 8))) b2=$(($1 & 255))
	if [ "$3" = 1 ]; then
		printf "\\x47\\x$(printf %02x $b1)\\x$(printf %02x $b2)\\x30\\x01\\x40"
		head -c 182 /dev/zero | tr '\0' "\\$4"
	else
		printf "\\x47\\x$(printf %02x $b1)\\x$(printf %02x $b2)\\x10"
		head -c 184 /dev/zero | tr '\0' "\\$4"
	fi
}
psi() { # PID SECTION_HEX: one PSI packet
	printf "\\x47\\x$(printf %02x $((64 + ($1 >> 8))))\\x$(printf %02x $(($1 & 255)))\\x10\\x00"
	printf "$2"
	head -c $((183 - $(printf "$2" | wc -c))) /dev/zero | tr '\0' '\377'
}
{
	psi 0 '\x00\xb0\x0d\x00\x01\xc1\x00\x00\x00\x01\xe1\x00\x00\x00\x00\x00'
	psi 256 '\x02\xb0\x17\x00\x01\xc1\x00\x00\xe1\x01\xf0\x00\x0f\xe1\x02\xf0\x00\x1b\xe1\x01\xf0\x00\x00\x00\x00\x00'
	for f in $(seq 0 49); do
		pkt 257 1 $((f % 25 == 0 ? 1 : 0)) $(printf %o $((f % 200 + 20)))
		pkt 257 0 0 101
		pkt 257 0 0 102
		pkt 258 1 0 103
	done
} >"$work/in.ts"
[ "$(wc -c <"$work/in.ts")" = $((202 * 188)) ] || fail "the generated TS is $(wc -c <"$work/in.ts") bytes"
start_recv "$work/tsrecv.log" --out "$work/out.ts"
"$TERN" stream send --to "127.0.0.1:$PORT" --server-key "$KEY" --ts <"$work/in.ts" \
	>"$work/tssend.log" 2>&1 || fail "--ts: sender exited with $?"
wait "$rpid" || fail "--ts: receiver exited with $?"
cmp "$work/in.ts" "$work/out.ts" || fail "--ts: --out differs from the input"
[ "$(v "$work/tsrecv.log" frames)" = 50 ] && [ "$(v "$work/tsrecv.log" keyframes)" = 2 ] ||
	fail "--ts: frames or keyframes"
grep ' result ' "$work/tsrecv.log"
echo PASSED
