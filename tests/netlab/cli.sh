#!/usr/bin/env bash
# The netlab command: up from a topology given on the command line, exec on a named node, two
# labs side by side with the same node names, down; "run" cleans up when its command fails; a
# script using lib.sh cleans up when it is interrupted.
source "$(dirname "$0")/common.sh"
need ping ethtool
NETLAB=$(dirname "$0")/../../netlab/netlab
topo='segment lan; host a lan 10.78.0.1/24; host b lan 10.78.0.2/24 - "delay=20ms" "delay=20ms"'
own=()
cleanup() { for l in "${own[@]}"; do "$NETLAB" down "$l"; done; }
trap cleanup EXIT

count_ns() { ip netns list | awk -v p="$1-" 'index($1, p) == 1' | wc -l; }

l1=$("$NETLAB" up -e "$topo")
own+=("$l1")
l2=$("$NETLAB" up -e "$topo")
own+=("$l2")
check "two labs get different names ($l1, $l2)" "\"$l1\" != \"$l2\""
for l in "$l1" "$l2"; do
	rtt=$("$NETLAB" exec "$l" a ping -c 4 -i 0.2 -q 10.78.0.2 | awk -F"[/ =]+" "/^rtt/ { print \$6 }")
	check "$l: ping over the emulated link, min RTT $rtt ms ~ 40 ms" "$rtt >= 39.9 && $rtt <= 45"
done
"$NETLAB" stats "$l1" b | grep -q '^ab rx=' && echo "ok   stats" || { echo "FAIL stats"; t_fail=1; }
"$NETLAB" down "$l1"
check "down removes every namespace of $l1" "$(count_ns "$l1") == 0"
check "and leaves $l2 alone" "$(count_ns "$l2") == 4"
"$NETLAB" down "$l2"
check "down removes $l2" "$(count_ns "$l2") == 0"

# run: the command fails, the lab goes anyway.
"$NETLAB" run -n nlt-run-$$ -e "$topo" -- bash -c '"$0" exec "$NETLAB_LAB" a ping -c1 -W1 10.78.0.99' "$NETLAB" >/dev/null 2>&1 && rc=0 || rc=$?
check "run passes the command's failure on (rc $rc)" "$rc != 0"
check "run cleans up after a failure" "$(count_ns nlt-run-$$) == 0"

# A lib.sh script interrupted with SIGTERM while its lab is up.
NL_LAB_NAME=nlt-int-$$ bash -c 'source "$0"; nl_init "$NL_LAB_NAME"; nl_trap; nl_ns x; nl_ns y;
	nl_link x e0 10.79.0.1/24 y e0 10.79.0.2/24 "delay=1ms" "delay=1ms" >/dev/null; sleep 30' \
	"$(dirname "$0")/../../netlab/lib.sh" &
pid=$!
for i in $(seq 50); do [ "$(count_ns nlt-int-$$)" = 3 ] && break; sleep 0.1; done
check "interrupted script had its lab up" "$(count_ns nlt-int-$$) == 3"
kill -TERM $pid
wait $pid 2>/dev/null || true
check "SIGTERM tears the lab down" "$(count_ns nlt-int-$$) == 0"
check "no emulator left running" "$(pgrep -f -c "tern-linkem.*nlt-int-$$" || true) == 0"
finish
