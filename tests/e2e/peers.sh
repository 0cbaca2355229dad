#!/bin/sh
# End-to-end tests of the peer commands through ternd's rendezvous service on 127.0.0.1 (ports
# the kernel picks): tern recv --via, tern ping PEER_ID --via, tern send FILE --to PEER_ID --via,
# tern chat GROUP --via. On loopback the peers reach each other directly on 127.0.0.1.
# Usage: peers.sh CASE TERND TERN. Cases: ping, send, chat, unknown. Exit 0 pass, 1 fail.
set -u
CASE=$1
TERND=$2
TERN=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/tern-peers.XXXXXX")
pids=""

cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null; done
  exec 3>&- 4>&- 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

fail() {
  echo "FAIL ($CASE): $*" >&2
  for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
  exit 1
}

now_ms() { date +%s%3N; }

# wait_for FILE REGEX WHAT: up to 5 s
wait_for() {
  i=0
  until grep -q "$2" "$1" 2>/dev/null; do
    [ $i -lt 100 ] || fail "no $3"
    sleep 0.05
    i=$((i + 1))
  done
}

start_ternd() { # sets VIA and KEY
  "$TERND" --no-tcp --listen 127.0.0.1:0 --workers 1 --tern-listen 127.0.0.1:0 \
    >"$work/ternd.log" 2>&1 &
  pids="$pids $!"
  wait_for "$work/ternd.log" '^ternd: tern public key' "ternd start"
  port=$(sed -n 's/^ternd: tern listening on udp 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/ternd.log" | head -1)
  KEY=$(sed -n 's/^ternd: tern public key \([0-9a-f]*\)$/\1/p' "$work/ternd.log")
  [ -n "$port" ] && [ ${#KEY} -eq 64 ] || fail "ternd printed no address or key"
  VIA="127.0.0.1:$port"
}

# start_recv DIR [args]: tern recv --via in the background; sets RECV_PID and RID (its peer ID)
start_recv() {
  d=$1
  shift
  "$TERN" recv --via "$VIA" --server-key "$KEY" -o "$d" --quiet "$@" >"$work/recv.log" 2>&1 &
  RECV_PID=$!
  pids="$pids $RECV_PID"
  wait_for "$work/recv.log" '^registered as [0-9a-f]\{64\} public 127\.0\.0\.1:[0-9]*$' \
    "registered line from tern recv"
  RID=$(sed -n 's/^registered as \([0-9a-f]*\) public .*/\1/p' "$work/recv.log")
}

start_ternd
case "$CASE" in
ping)
  mkdir "$work/rx"
  start_recv "$work/rx"
  "$TERN" ping "$RID" --via "$VIA" --server-key "$KEY" -c 3 -i 50 >"$work/ping.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || fail "tern ping exited with $rc"
  grep -q '^registered as [0-9a-f]\{64\} public 127\.0\.0\.1:[0-9]*$' "$work/ping.log" ||
    fail "no registered line"
  grep -q "^connected to $RID path direct 127\.0\.0\.1:[0-9]* in [0-9.]* ms$" "$work/ping.log" ||
    fail "no connected line (direct, on 127.0.0.1)"
  [ "$(grep -c "^reply from $RID: rtt=[0-9.]* ms path=direct$" "$work/ping.log")" -eq 3 ] ||
    fail "not 3 reply lines"
  grep -q '^first byte after [0-9.]* ms$' "$work/ping.log" || fail "no first-byte line"
  cat "$work/ping.log"
  ;;
send)
  # two files byte-exact through tern recv --via --count 2, both over a direct path
  mkdir "$work/rx"
  head -c 30000000 /dev/urandom >"$work/a.bin" || fail "cannot make a file"
  head -c 1 /dev/urandom >"$work/b.bin"
  start_recv "$work/rx" --count 2
  for f in a.bin b.bin; do
    "$TERN" send "$work/$f" --to "$RID" --via "$VIA" --server-key "$KEY" --quiet \
      >"$work/send-$f.log" 2>&1
    rc=$?
    [ $rc -eq 0 ] || fail "tern send $f exited with $rc"
    grep -q "^connected to $RID path direct 127\.0\.0\.1:[0-9]* in [0-9.]* ms$" \
      "$work/send-$f.log" || fail "no connected line for $f"
    grep -q "stored and verified by the receiver, sha-256 [0-9a-f]\{64\}; path direct 127\.0\.0\.1:[0-9]*, 0 path moves$" \
      "$work/send-$f.log" || fail "no final line with the path for $f"
  done
  wait "$RECV_PID"
  rc=$?
  [ $rc -eq 0 ] || fail "tern recv exited with $rc"
  cmp "$work/a.bin" "$work/rx/a.bin" || fail "a.bin differs"
  cmp "$work/b.bin" "$work/rx/b.bin" || fail "b.bin differs"
  grep -q '^received a.bin 30000000 bytes hash ok path direct$' "$work/recv.log" ||
    fail "no received line for a.bin"
  grep -q '^received b.bin 1 bytes hash ok path direct$' "$work/recv.log" ||
    fail "no received line for b.bin"
  [ "$(ls -A "$work/rx" | sort | tr '\n' ' ')" = "a.bin b.bin " ] ||
    fail "left-overs in the target directory: $(ls -A "$work/rx")"
  tail -1 "$work/send-a.bin.log"
  cat "$work/recv.log"
  ;;
chat)
  # two members: b is in the room; a joins, says hello, b answers, a leaves (end of input)
  mkfifo "$work/a.in" "$work/b.in"
  "$TERN" chat room --via "$VIA" --server-key "$KEY" <"$work/b.in" >"$work/b.log" 2>&1 &
  b_pid=$!
  pids="$pids $b_pid"
  exec 4>"$work/b.in"
  wait_for "$work/b.log" '^joined room members 1$' "join of b"
  "$TERN" chat room --via "$VIA" --server-key "$KEY" <"$work/a.in" >"$work/a.log" 2>&1 &
  a_pid=$!
  pids="$pids $a_pid"
  exec 3>"$work/a.in"
  wait_for "$work/a.log" '^joined room members 2$' "join of a (2 members)"
  a8=$(sed -n 's/^registered as \([0-9a-f]\{8\}\).*/\1/p' "$work/a.log")
  b8=$(sed -n 's/^registered as \([0-9a-f]\{8\}\).*/\1/p' "$work/b.log")
  wait_for "$work/b.log" "^\* $a8 joined$" "presence of a at b"
  echo "hello from a" >&3
  wait_for "$work/b.log" "^$a8: hello from a$" "message of a at b"
  echo "hi a" >&4
  wait_for "$work/a.log" "^$b8: hi a$" "message of b at a"
  exec 3>&-
  wait "$a_pid"
  rc=$?
  [ $rc -eq 0 ] || fail "tern chat (a) exited with $rc at end of input"
  wait_for "$work/b.log" "^\* $a8 left$" "presence (left) of a at b"
  grep -q "^$b8: " "$work/b.log" && fail "b got its own message back"
  exec 4>&-
  wait "$b_pid"
  rc=$?
  [ $rc -eq 0 ] || fail "tern chat (b) exited with $rc at end of input"
  cat "$work/a.log" "$work/b.log"
  ;;
unknown)
  # nobody registered with that ID: a clear error, exit 1, well within a second; the same for
  # tern send
  nobody=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  t0=$(now_ms)
  "$TERN" ping "$nobody" --via "$VIA" --server-key "$KEY" >"$work/ping.log" 2>&1
  rc=$?
  t=$(($(now_ms) - t0))
  [ $rc -eq 1 ] || fail "tern ping exited with $rc, not 1"
  grep -q "^error: unknown peer $nobody$" "$work/ping.log" || fail "no unknown-peer error"
  [ $t -lt 1500 ] || fail "took $t ms"
  echo x >"$work/x.txt"
  "$TERN" send "$work/x.txt" --to "$nobody" --via "$VIA" --server-key "$KEY" >"$work/send.log" 2>&1
  rc=$?
  [ $rc -eq 1 ] || fail "tern send exited with $rc, not 1"
  grep -q "^error: unknown peer $nobody$" "$work/send.log" || fail "no unknown-peer error (send)"
  # not a peer ID at all: usage
  "$TERN" ping 1234 --via "$VIA" --server-key "$KEY" >"$work/bad.log" 2>&1
  [ $? -eq 2 ] || fail "a malformed peer ID is not a usage error"
  echo "unknown peer: exit 1 in $t ms"
  ;;
*)
  fail "unknown case"
  ;;
esac
exit 0
