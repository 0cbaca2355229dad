#!/usr/bin/env bash
# STUN interoperability and end-to-end tests. Usage: interop.sh CASE TERND TERN
# Every case starts its own servers on 127.0.0.x / ::1 ports derived from the PID, and the EXIT
# trap stops them (and removes the scratch directory) whether the case passes or fails.
set -u
case_name=$1
TERND=$2
TERN=$3
work=$(mktemp -d /tmp/tern-stun-interop.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL $case_name: $*" >&2; for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "SKIP: $1 not installed (scripts/deps.sh)"; exit 77; }; }
# 20000-31999: below the kernel's ephemeral range (32768-60999 on Linux), so that the ports the
# kernel picks for the e2e tests running beside this one (ctest -j) never take ours
port=$((20000 + ($$ % 3000) * 4))

start_ternd() { # args...
  "$TERND" --quiet "$@" >"$work/ternd.log" 2>&1 &
  ternd_pid=$!
  pids+=("$ternd_pid")
  for _ in $(seq 50); do
    sleep 0.05
    kill -0 "$ternd_pid" 2>/dev/null || fail "ternd exited at startup"
    "$TERN" stun "${STUN_TARGET:-127.0.0.1:$port}" --rto 50 --tries 2 >/dev/null 2>&1 && return 0
  done
  fail "ternd does not answer"
}
stop_ternd() { # checks a clean exit on SIGTERM
  kill -TERM "$ternd_pid"
  wait "$ternd_pid"
  local rc=$?
  [ $rc -eq 0 ] || fail "ternd exited with $rc on SIGTERM"
  grep -q '^stun rx=' "$work/ternd.log" || fail "ternd printed no counters"
}
start_coturn() { # args...
  need turnserver
  turnserver -c /dev/null --stun-only --no-cli --no-tls --no-dtls --log-file stdout "$@" \
    >"$work/coturn.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 60); do
    sleep 0.1
    "$TERN" stun "127.0.0.1:$port" --rto 50 --tries 2 >/dev/null 2>&1 && return 0
  done
  fail "coturn does not answer"
}
counter() { grep -o "$1=[0-9]*" "$work/ternd.log" | head -1 | cut -d= -f2; }

case "$case_name" in
stunclient_vs_ternd)
  need turnutils_stunclient
  start_ternd --listen "127.0.0.1:$port" --workers 2
  out=$(turnutils_stunclient -p "$port" 127.0.0.1 2>&1) || fail "turnutils_stunclient failed: $out"
  echo "$out" | grep -q "UDP reflexive addr: 127.0.0.1:" || fail "no reflexive address: $out"
  stop_ternd
  [ "$(counter tx_success)" -ge 2 ] || fail "ternd counted no answers"
  ;;
stun_client_vs_ternd)
  need stun
  start_ternd --listen "127.0.0.1:$port" --alt "127.0.0.2:$((port + 1))" --workers 1
  out=$(stun "127.0.0.1:$port" -v 2>&1)
  echo "$out" | grep -q "Primary: Open" || fail "Debian stun client: $out"
  echo "$out" | grep -q "MappedAddress = 127.0.0.1:" || fail "no MappedAddress: $out"
  stop_ternd
  [ "$(counter tx_rfc3489)" -ge 1 ] || fail "no RFC 3489 answers counted"
  [ "$(counter change_requests)" -ge 1 ] || fail "no CHANGE-REQUEST answered"
  ;;
natdiscovery_vs_ternd)
  need turnutils_natdiscovery
  start_ternd --listen "127.0.0.1:$port" --alt "127.0.0.2:$((port + 1))" --workers 2
  out=$(turnutils_natdiscovery -m -f -p "$port" 127.0.0.1 2>&1)
  echo "$out" | grep -q "NAT with Endpoint Independent Mapping" || fail "mapping: $out"
  echo "$out" | grep -q "NAT with Endpoint Independent Filtering" || fail "filtering: $out"
  stop_ternd
  ;;
natdiscovery_padding_vs_ternd)
  need turnutils_natdiscovery
  start_ternd --listen "127.0.0.1:$port" --alt "127.0.0.2:$((port + 1))" --workers 1
  out=$(turnutils_natdiscovery -f -P -p "$port" 127.0.0.1 2>&1)
  echo "$out" | grep -q "NAT with Endpoint Independent Filtering" || fail "padding filtering: $out"
  stop_ternd
  ;;
tern_vs_coturn)
  start_coturn -L 127.0.0.1 -p "$port"
  out=$("$TERN" stun "127.0.0.1:$port" -v) || fail "tern stun failed"
  echo "$out" | head -1 | grep -Eq '^127\.0\.0\.1:[0-9]+$' || fail "mapped address: $out"
  echo "$out" | grep -q "software: Coturn" || fail "not coturn: $out"
  ;;
nattype_vs_coturn)
  start_coturn -L 127.0.0.1 -L 127.0.0.2 -p "$port"
  out=$("$TERN" nat-type "127.0.0.1:$port") || fail "tern nat-type failed: $out"
  echo "$out" | grep -q "mapping: no NAT" || fail "$out"
  echo "$out" | grep -q "filtering: endpoint-independent" || fail "$out"
  ;;
nattype_vs_ternd)
  start_ternd --listen "127.0.0.1:$port" --alt "127.0.0.2:$((port + 1))" --workers 1
  out=$("$TERN" nat-type "127.0.0.1:$port") || fail "tern nat-type failed: $out"
  echo "$out" | grep -q "mapping: no NAT" || fail "$out"
  echo "$out" | grep -q "filtering: endpoint-independent" || fail "$out"
  stop_ternd
  [ "$(counter change_requests)" -ge 1 ] || fail "no CHANGE-REQUEST answered"
  ;;
nattype_without_5780)
  start_ternd --listen "127.0.0.1:$port" --workers 1
  out=$("$TERN" nat-type "127.0.0.1:$port" 2>&1) && fail "nat-type succeeded without RFC 5780"
  echo "$out" | grep -q "does not support RFC 5780" || fail "$out"
  stop_ternd
  ;;
ipv6)
  ip -6 addr show lo 2>/dev/null | grep -q '::1' || { echo "SKIP: no ::1"; exit 77; }
  STUN_TARGET="[::1]:$port" start_ternd --listen "[::1]:$port" --workers 2
  out=$("$TERN" stun "[::1]:$port") || fail "tern stun over IPv6"
  echo "$out" | grep -Eq '^\[::1\]:[0-9]+$' || fail "mapped: $out"
  out=$("$TERN" loadgen stun "[::1]:$port" --duration 0.5) || fail "loadgen over IPv6: $out"
  stop_ternd
  ;;
tcp)
  start_ternd --listen "127.0.0.1:$port" --workers 1
  # two Binding requests back to back in one write: two responses, each with XOR-MAPPED-ADDRESS
  req='\x00\x01\x00\x00\x21\x12\xa4\x42ABCDEFGHIJKL'
  exec 3<>"/dev/tcp/127.0.0.1/$port" || fail "tcp connect"
  printf "$req$req" >&3
  timeout 1 cat <&3 >"$work/tcp.bin"
  resp=$(od -An -tx1 "$work/tcp.bin" | tr -d ' \n')
  exec 3<&-
  n=$(echo "$resp" | grep -o '0101....2112a442' | wc -l)
  [ "$n" -eq 2 ] || fail "expected 2 TCP responses, got: $resp"
  echo "$resp" | grep -q '00200008' || fail "no XOR-MAPPED-ADDRESS: $resp"
  stop_ternd
  ;;
bad_input_on_the_wire)
  start_ternd --listen "127.0.0.1:$port" --workers 1
  send() { printf "$1" >"/dev/udp/127.0.0.1/$port"; }
  send '\x00\x01\x00'                                            # truncated
  send '\x00\x01\x00\x06\x21\x12\xa4\x42ABCDEFGHIJKL\x00\x00\x00\x00\x00\x00'  # length % 4
  send '\xc0\x01\x00\x00\x21\x12\xa4\x42ABCDEFGHIJKL'            # top bits
  send '\x00\x01\x00\x08\x21\x12\xa4\x42ABCDEFGHIJKL\x80\x28\x00\x04\x00\x00\x00\x00'  # bad FP
  send '\x00\x01\x00\x0c\x21\x12\xa4\x42ABCDEFGHIJKL\x00\x20\x00\x08\x00\x02\x00\x01\x01\x02\x03\x04' # v6 in v4
  send '\x01\x01\x00\x00\x21\x12\xa4\x42ABCDEFGHIJKL'            # a response: no loops
  sleep 0.3
  stop_ternd
  [ "$(counter truncated)" -eq 1 ] || fail "truncated=$(counter truncated)"
  [ "$(counter bad_header)" -eq 2 ] || fail "bad_header=$(counter bad_header)"
  [ "$(counter bad_fingerprint)" -eq 1 ] || fail "bad_fingerprint"
  [ "$(counter bad_attribute)" -eq 1 ] || fail "bad_attribute"
  [ "$(counter not_request)" -eq 1 ] || fail "not_request"
  [ "$(counter tx_error)" -eq 0 ] || fail "answered an error"
  ;;
defaults)
  if (exec 3<>/dev/tcp/127.0.0.1/3478) 2>/dev/null; then echo "SKIP: port 3478 busy"; exit 77; fi
  "$TERND" >"$work/ternd.log" 2>&1 &
  ternd_pid=$!
  pids+=("$ternd_pid")
  sleep 0.5
  grep -q "listening on udp 0.0.0.0:3478" "$work/ternd.log" || fail "no udp line"
  grep -q "listening on tcp 0.0.0.0:3478" "$work/ternd.log" || fail "no tcp line"
  out=$("$TERN" stun 127.0.0.1) || fail "tern stun on the default port"
  kill -INT "$ternd_pid"; wait "$ternd_pid" || fail "ternd exit status on SIGINT"
  ;;
*) echo "unknown case $case_name" >&2; exit 2 ;;
esac
echo "ok $case_name"
