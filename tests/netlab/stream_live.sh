#!/usr/bin/env bash
# tern stream over an emulated lossy link (issue 15): 6 s of 25 fps synthetic video at 2 Mbit/s
# over 10 Mbit/s, 25 ms each way, 2% random loss on the media direction. The receiver must get
# the frames intact with latencies the link explains: nothing below the one-way delay (25 ms),
# the median within a round trip of it, the end message, no corrupt frame, and at least 90% of
# the frames on time within one-way delay + 150 ms (the loss costs some). Then the same frames
# in UDP mode straight over the link (no transport repairs anything): about 2% of the datagrams
# go, and every frame that lost one must count as lost, never as delivered.
source "$(dirname "$0")/common.sh"
need ping ethtool
[ -x "${TERN:-}" ] || skip "TERN (a built tern) not set"
two_hosts "delay=25ms rate=10mbit queue=62500 loss=2%" "delay=25ms rate=10mbit queue=62500"
nl_exec a ping -c 1 -W 3 -q 10.77.0.2 >/dev/null

"$TERN" keygen --out "$NL_DIR/k" >"$NL_DIR/k.pub" 2>/dev/null
pub=$(grep -o '[0-9a-f]\{64\}' "$NL_DIR/k.pub" | head -1)
nl_bg b "$TERN" stream recv --listen 10.77.0.2:9100 --key "$NL_DIR/k" --playout 175 \
	--idle-timeout 5000 >"$NL_DIR/recv.log" 2>&1
rpid=$NL_BGPID
sleep 0.2
nl_exec a timeout 20 "$TERN" stream send --to 10.77.0.2:9100 --server-key "$pub" --bitrate 2M \
	--duration 6 >"$NL_DIR/send.log" 2>&1 && src=0 || src=$?
for _ in $(seq 50); do kill -0 "$rpid" 2>/dev/null || break; sleep 0.1; done
r=$(grep ' result ' "$NL_DIR/recv.log" || true)
v() { echo "$r" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
echo "$r"
grep ' result ' "$NL_DIR/send.log" || cat "$NL_DIR/send.log"
check "sender exit 0" "$src == 0"
check "150 frames accounted for" "0$(v frames) == 150"
check "the end message arrived" "0$(v ended) == 1"
check "no corrupt frame" "0$(v corrupt) == 0"
check "no latency below the one-way delay (smallest $(v owd_ms) ms)" "0$(v owd_ms) >= 25 && 0$(v early) == 0"
check "median latency $(v p50_ms) ms within a round trip of it" "0$(v p50_ms) >= 25 && 0$(v p50_ms) <= 75"
check "on time within 175 ms: $(v ontime_pct)% >= 90%" "0$(v ontime_pct) >= 90"

# UDP mode over the bare link: losses show as lost frames
nl_bg b "$TERN" stream recv --udp-in 10.77.0.2:9200 --playout 175 --idle-timeout 2000 \
	>"$NL_DIR/urecv.log" 2>&1
rpid=$NL_BGPID
sleep 0.2
nl_exec a "$TERN" stream send --udp-out 10.77.0.2:9200 --bitrate 2M --duration 3 \
	>"$NL_DIR/usend.log" 2>&1
for _ in $(seq 50); do kill -0 "$rpid" 2>/dev/null || break; sleep 0.1; done
r=$(grep ' result ' "$NL_DIR/urecv.log" || true)
echo "$r"
sent=$(sed -n 's/.* datagrams=\([0-9]*\).*/\1/p' "$NL_DIR/usend.log")
got=$(v datagrams)
check "UDP mode: 75 frames, none corrupt" "0$(v frames) == 75 && 0$(v corrupt) == 0"
lost=$((sent + 5 - got)) # with the 5 end datagrams
check "UDP mode: $lost of $((sent + 5)) datagrams lost (2% loss)" "$lost >= 1 && $lost <= ($sent + 5) * 0.06"
check "UDP mode: frames lost ($(v lost)) >= 1 and delivered ones arrive after 25 ms" \
	"0$(v lost) >= 1 && 0$(v owd_ms) >= 25"
finish
