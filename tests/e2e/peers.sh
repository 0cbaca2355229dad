#!/bin/sh
# End-to-end tests of the peer commands through ternd's rendezvous service on 127.0.0.1 (ports
# the kernel picks): tern recv --via, tern ping PEER_ID --via, tern send FILE --to PEER_ID --via,
# tern chat GROUP --via. On loopback the peers reach each other directly on 127.0.0.1.
# Usage: peers.sh CASE TERND TERN. Cases: ping, send, chat, unknown, tokens (ternd
# --require-tokens: refusals in one line, valid tokens accepted), names (file names and texts
# from peers). Exit 0 pass, 1 fail.
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

start_ternd() { # [ternd args]; sets VIA, KEY and TERND_PID
  "$TERND" --no-tcp --listen 127.0.0.1:0 --workers 1 --tern-listen 127.0.0.1:0 "$@" \
    >"$work/ternd.log" 2>&1 &
  TERND_PID=$!
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

# expect_refusal LOG RC WANT_LINE WHAT: the command exited 1 with exactly that line on stderr
expect_refusal() {
  [ "$2" -eq 1 ] || fail "$4: exit $2, not 1"
  grep -qx "$3" "$1" || fail "$4: no line '$3'"
  grep -q '^registered as\|^joined' "$1" && [ "${3#*registration}" != "$3" ] &&
    fail "$4: registered although refused"
  return 0
}

case "$CASE" in
tokens) ;;
*) start_ternd ;;
esac
case "$CASE" in
tokens)
  # ternd --require-tokens all: every REGISTER and JOIN needs a token made with its secret
  "$TERN" token new-secret "$work/secret" 2>/dev/null || fail "tern token new-secret"
  [ "$(stat -c %a "$work/secret")" = 600 ] || fail "the secret file is not mode 0600"
  "$TERN" token new-secret "$work/other" 2>/dev/null || fail "tern token new-secret (other)"
  start_ternd --token-secret "$work/secret" --require-tokens all
  grep -q '^ternd: tokens required for register,join,offer' "$work/ternd.log" ||
    fail "no tokens line at ternd start"
  "$TERN" keygen --out "$work/r.key" >/dev/null 2>&1 || fail "keygen r"
  "$TERN" keygen --out "$work/a.key" >/dev/null 2>&1 || fail "keygen a"
  "$TERN" keygen --out "$work/b.key" >/dev/null 2>&1 || fail "keygen b"
  tok() { "$TERN" token "$@" || fail "tern token $*"; }
  r_tok=$(tok register --key "$work/r.key" --secret "$work/secret")
  a_tok=$(tok register --key "$work/a.key" --secret "$work/secret")
  b_tok=$(tok register --key "$work/b.key" --secret "$work/secret")
  room_tok=$(tok join room --secret "$work/secret" --lifetime 600)
  [ ${#r_tok} -eq 80 ] || fail "a token is not 80 hex characters: $r_tok"
  # 1. no token: refused at once, one clear line, exit 1
  t0=$(now_ms)
  "$TERN" recv --via "$VIA" --server-key "$KEY" --key "$work/r.key" --quiet \
    >"$work/recv-none.log" 2>&1
  rc=$?
  t=$(($(now_ms) - t0))
  expect_refusal "$work/recv-none.log" $rc "tern recv: ternd refused registration: token required" \
    "tokenless tern recv --via"
  [ $t -lt 2000 ] || fail "the refusal took $t ms"
  "$TERN" chat room --via "$VIA" --server-key "$KEY" --key "$work/a.key" </dev/null \
    >"$work/chat-none.log" 2>&1
  expect_refusal "$work/chat-none.log" $? "tern chat: ternd refused registration: token required" \
    "tokenless tern chat"
  # 2. forged: made with another secret, or for another peer; expired
  forged=$(tok register --key "$work/r.key" --secret "$work/other")
  "$TERN" recv --via "$VIA" --server-key "$KEY" --key "$work/r.key" --token "$forged" --quiet \
    >"$work/recv-forged.log" 2>&1
  expect_refusal "$work/recv-forged.log" $? "tern recv: ternd refused registration: token forged" \
    "tern recv with a token of another secret"
  "$TERN" recv --via "$VIA" --server-key "$KEY" --key "$work/r.key" --token "$a_tok" --quiet \
    >"$work/recv-other.log" 2>&1
  expect_refusal "$work/recv-other.log" $? "tern recv: ternd refused registration: token forged" \
    "tern recv with another peer's token"
  old=$(tok register --key "$work/r.key" --secret "$work/secret" --expires $(($(date +%s) - 10)))
  "$TERN" recv --via "$VIA" --server-key "$KEY" --key "$work/r.key" --token "$old" --quiet \
    >"$work/recv-expired.log" 2>&1
  expect_refusal "$work/recv-expired.log" $? "tern recv: ternd refused registration: token expired" \
    "tern recv with an expired token"
  "$TERN" recv --via "$VIA" --server-key "$KEY" --token 1234 >"$work/recv-bad.log" 2>&1
  [ $? -eq 2 ] || fail "a malformed --token is not a usage error"
  # 3. registered, but no group token: the join is refused in one line
  "$TERN" chat room --via "$VIA" --server-key "$KEY" --key "$work/a.key" --token "$a_tok" \
    </dev/null >"$work/chat-nojoin.log" 2>&1
  expect_refusal "$work/chat-nojoin.log" $? "tern chat: ternd refused to join room: token required" \
    "tern chat without a join token"
  grep -q '^registered as' "$work/chat-nojoin.log" || fail "tern chat with a token did not register"
  other_room=$(tok join other --secret "$work/secret")
  "$TERN" chat room --via "$VIA" --server-key "$KEY" --key "$work/a.key" --token "$a_tok" \
    --join-token "$other_room" </dev/null >"$work/chat-wrongroom.log" 2>&1
  expect_refusal "$work/chat-wrongroom.log" $? "tern chat: ternd refused to join room: token forged" \
    "tern chat with another group's token"
  # 4. valid tokens: tern recv --via registers, tern ping reaches it, two chat members talk
  mkdir "$work/rx"
  start_recv "$work/rx" --key "$work/r.key" --token "$r_tok"
  "$TERN" ping "$RID" --via "$VIA" --server-key "$KEY" --key "$work/a.key" --token "$a_tok" \
    -c 2 -i 50 >"$work/ping.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || fail "tern ping with a valid token exited with $rc"
  [ "$(grep -c "^reply from $RID: " "$work/ping.log")" -eq 2 ] || fail "not 2 replies"
  mkfifo "$work/b.in"
  "$TERN" chat room --via "$VIA" --server-key "$KEY" --key "$work/b.key" --token "$b_tok" \
    --join-token "$room_tok" <"$work/b.in" >"$work/b.log" 2>&1 &
  b_pid=$!
  pids="$pids $b_pid"
  exec 4>"$work/b.in"
  wait_for "$work/b.log" '^joined room members 1$' "join of b with tokens"
  echo "hello with tokens" | "$TERN" chat room --via "$VIA" --server-key "$KEY" \
    --key "$work/a.key" --token "$a_tok" --join-token "$room_tok" >"$work/a.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || fail "tern chat (a) with tokens exited with $rc"
  a8=$(sed -n 's/^registered as \([0-9a-f]\{8\}\).*/\1/p' "$work/a.log")
  wait_for "$work/b.log" "^$a8: hello with tokens$" "message of a at b"
  exec 4>&-
  wait "$b_pid"
  kill -TERM "$TERND_PID"
  wait "$TERND_PID"
  grep -q '^rendezvous tokens secret=1 register=1 join=1 offer=1 rejected=[0-9]*$' \
    "$work/ternd.log" || fail "no tokens counter line"
  rej=$(sed -n 's/^rendezvous tokens .* rejected=\([0-9]*\)$/\1/p' "$work/ternd.log")
  [ "$rej" -eq 7 ] || fail "ternd counted $rej rejected tokens, not 7"
  grep -h 'refused' "$work"/*.log
  echo "tokens: refusals in $t ms; $rej rejected"
  ;;
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
names)
  # file names and texts from peers: a name with a newline (a forged output line), one with a
  # terminal escape, a hidden one are refused, printed escaped and nothing is stored; a plain
  # UTF-8 name is stored; chat messages with control characters arrive escaped
  mkdir "$work/rx" "$work/tx"
  nl='
'
  esc=$(printf '\033')
  forged="x${nl}received evil.bin 1 bytes hash ok path direct"
  printf 1 >"$work/tx/$forged"
  printf 2 >"$work/tx/${esc}[2Jclear.txt"
  printf 3 >"$work/tx/.hidden"
  printf 4 >"$work/tx/ok-é.txt"
  start_recv "$work/rx" --count 4
  n=0
  for f in "$forged" "${esc}[2Jclear.txt" ".hidden"; do
    n=$((n + 1))
    "$TERN" send "$work/tx/$f" --to "$RID" --via "$VIA" --server-key "$KEY" --quiet \
      >"$work/send-$n.log" 2>&1
    rc=$?
    [ $rc -eq 6 ] || fail "tern send of bad name $n exited with $rc, not 6 (file refused)"
    grep -q 'refusing the file name' "$work/send-$n.log" || fail "no refusal for name $n"
  done
  grep -q 'refusing the file name "x\\nreceived evil.bin 1 bytes hash ok path direct": a control character in the name' \
    "$work/send-1.log" || fail "the newline is not shown escaped to the sender"
  grep -q 'refusing the file name "\\x1b\[2Jclear.txt"' "$work/send-2.log" ||
    fail "the escape is not shown escaped"
  grep -q "starts with '.'" "$work/send-3.log" || fail "no reason for .hidden"
  "$TERN" send "$work/tx/ok-é.txt" --to "$RID" --via "$VIA" --server-key "$KEY" --quiet \
    >"$work/send-ok.log" 2>&1 || fail "tern send of a plain UTF-8 name failed"
  wait "$RECV_PID"
  grep -q '^received evil' "$work/recv.log" && fail "a forged line reached tern recv's output"
  grep -q "$esc" "$work/recv.log" "$work"/send-*.log && fail "an ESC byte reached a terminal"
  grep -q '^received ok-é.txt 1 bytes hash ok path direct$' "$work/recv.log" ||
    fail "no received line for the plain name"
  [ "$(ls -A "$work/rx")" = "ok-é.txt" ] || fail "the target directory holds: $(ls -A "$work/rx")"
  # chat: control characters from a member are escaped at the other
  mkfifo "$work/b.in"
  "$TERN" chat room --via "$VIA" --server-key "$KEY" <"$work/b.in" >"$work/b.log" 2>&1 &
  b_pid=$!
  pids="$pids $b_pid"
  exec 4>"$work/b.in"
  wait_for "$work/b.log" '^joined room members 1$' "join of b"
  printf 'red \033[31mtext\033[0m\rforged\tcol \302\233 \342\200\256\n' |
    "$TERN" chat room --via "$VIA" --server-key "$KEY" >"$work/a.log" 2>&1 ||
    fail "tern chat (a) failed"
  a8=$(sed -n 's/^registered as \([0-9a-f]\{8\}\).*/\1/p' "$work/a.log")
  wait_for "$work/b.log" "^$a8: red " "message of a at b"
  exec 4>&-
  wait "$b_pid"
  grep -qF "$a8: red \x1b[31mtext\x1b[0m\rforged\tcol \u{009b} \u{202e}" "$work/b.log" ||
    fail "the message is not escaped: $(grep "^$a8: " "$work/b.log" | od -c | head -5)"
  grep -q "$esc" "$work/b.log" && fail "an ESC byte reached the chat output"
  cat "$work/recv.log"
  grep -h 'refusing' "$work"/send-*.log
  grep "^$a8: " "$work/b.log"
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
