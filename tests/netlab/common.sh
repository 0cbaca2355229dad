# tests/netlab/common.sh: shared by the lab tests. Each test builds its own lab (unique
# namespace names) and nl_trap removes it on exit, failure or interrupt.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../netlab/lib.sh"

SKIP=77
t_fail=0

skip() {
	echo "SKIP: $*"
	exit $SKIP
}

need() {
	[ "$(id -u)" = 0 ] || skip "needs root"
	local c
	for c in "$@"; do command -v "$c" >/dev/null || skip "$c not installed"; done
}

# check DESCRIPTION CONDITION: prints the verdict, remembers a failure. CONDITION is an awk
# expression, so that numbers with decimals compare properly.
check() {
	if awk "BEGIN { exit !($2) }"; then
		echo "ok   $1"
	else
		echo "FAIL $1   ($2)"
		t_fail=1
	fi
}

finish() {
	if [ "$t_fail" != 0 ]; then
		echo "FAILED"
		exit 1
	fi
	echo "PASSED"
}

# binomial_interval N P: the 99.9% interval of a Binomial(N, P) count (normal approximation,
# z = 3.29, widened by one for rounding), as "LO HI".
binomial_interval() {
	awk -v n="$1" -v p="$2" 'BEGIN { m = n * p; s = sqrt(n * p * (1 - p)); z = 3.2905;
		lo = m - z * s - 1; if (lo < 0) lo = 0; printf "%d %d\n", lo, m + z * s + 1 }'
}

# two_hosts SPEC_AB SPEC_BA: hosts a (10.77.0.1) and b (10.77.0.2) joined by one emulated link.
two_hosts() {
	nl_init
	nl_trap
	nl_ns a
	nl_ns b
	nl_link a eth0 10.77.0.1/24 b eth0 10.77.0.2/24 "$1" "$2" >/dev/null
}

# A STUN server with two addresses (RFC 5780 needs them) on node stun.
start_stun() {
	nl_bg stun turnserver -n --stun-only -L "$1" -L "$2" --no-cli --no-tls --no-dtls \
		--log-file stdout --simple-log >"$NL_DIR/turnserver.log" 2>&1
	local i
	for i in $(seq 50); do
		nl_exec stun ss -lun 2>/dev/null | grep -q ":3479 " && return 0
		sleep 0.1
	done
	echo "turnserver did not start"
	cat "$NL_DIR/turnserver.log"
	return 1
}
