# shellcheck shell=bash
# bench/lib.sh: shared by the benchmarks that run ternd as a process on loopback
# (bench/rendezvous/real.sh, bench/relay/run.sh). Sourced; defines functions only.

# bench_host: the host line (architecture, cores, CPU model, kernel).
bench_host() {
  echo "host: $(uname -m), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
}

# bench_share CORE: what a busy loop gets of CORE right now, e.g. "97%" (a VM's vCPUs may be
# shared with other guests: the guest sees that only as a loop that gets less than 100%).
bench_share() {
  command -v /usr/bin/time >/dev/null || { echo "?"; return; }
  /usr/bin/time -f "%U %S %e" taskset -c "$1" timeout 1 sh -c 'while :; do :; done' 2>&1 >/dev/null |
    tail -1 | awk '{ if ($3 > 0) printf "%.0f%%", ($1 + $2) * 100 / $3; else print "?" }'
}

# val LINE KEY: the value of KEY=value in a line of key=value fields (a trailing % dropped).
val() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | tr -d '%' | head -1; }

# bench_port_up PORT: waits up to 5 s for a UDP socket bound to PORT; fails after that.
bench_port_up() {
  for _ in $(seq 50); do
    ss -Huln "sport = :$1" 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  return 1
}

# bench_ternd_start TERND KEYFILE PORT ERRFILE: ternd pinned to core 0, its tern listener (with
# the rendezvous service and the relay) on 127.0.0.1:PORT, STUN on PORT+1 with one worker and no
# TCP, quiet; sets tpid; fails when the port does not come up within 5 s (ERRFILE printed).
bench_ternd_start() {
  taskset -c 0 "$1" --key "$2" --tern-listen "127.0.0.1:$3" \
    --listen "127.0.0.1:$(($3 + 1))" --no-tcp --workers 1 --quiet 2>"$4" &
  tpid=$!
  bench_port_up "$3" && return 0
  echo "ternd did not start:"
  cat "$4"
  return 1
}
