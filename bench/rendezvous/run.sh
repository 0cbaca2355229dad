#!/usr/bin/env bash
# Rendezvous load on the simulator: registrations/s, introductions/s and memory per registered
# peer with PEERS peers (default 10000) and INTROS introductions (default 50000).
#
# usage: bench/rendezvous/run.sh [PEERS] [INTROS]
#   BUILD_DIR  where rdv_load was built (default: build-rdv; configure with the default
#              RelWithDebInfo and TERN_TESTS=ON, e.g. cmake -S . -B build-rdv && make -C build-rdv rdv_load)
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$here/build-rdv}
bin=$build/bench/rendezvous/rdv_load
[ -x "$bin" ] || { echo "missing $bin: build first (cmake -S . -B build-rdv && make -C build-rdv -j2 rdv_load)" >&2; exit 1; }
echo "host: $(uname -m), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
exec "$bin" "${1:-10000}" "${2:-50000}"
