#!/usr/bin/env bash
# Builds tern and runs every test, the way CI does:
#   1. installs the Debian packages it needs (scripts/deps.sh; a no-op when present);
#   2. gcc build: the whole suite (unit, simulated network, STUN interop, netlab namespaces);
#   3. clang build: -Werror clean, unit tests;
#   4. clang ASan+UBSan build: the whole suite again (leaks fail it too);
#   5. libFuzzer: every fuzz target for TERN_FUZZ_SECONDS (default 20) from its seed corpus.
# Tests that need root (netlab) are skipped with a note when not run as root.
# ctest runs as many tests at once as there are CPUs (-j); the tests that measure time, RSS or
# throughput are RUN_SERIAL, and those that need one fixed port a RESOURCE_LOCK (tests/*/CMakeLists.txt).
# Labels (README, "Tests"): unit (seconds), sim (longer simulations), e2e (real sockets and
# processes), root (network namespaces; with netlab), interop (other STUN implementations).
# Usage: scripts/test.sh [--quick]   (--quick: gcc build and the unit label only, in parallel)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

./scripts/deps.sh

jobs=$(nproc 2>/dev/null || echo 2)
fuzz_seconds=${TERN_FUZZ_SECONDS:-20}
exclude=""
if [ "$(id -u)" -ne 0 ]; then
  echo "test: not root: skipping the tests labelled 'root' (network namespaces)" >&2
  exclude="-LE root"
fi

configure_build() {
  local dir=$1; shift
  echo "==> build $dir ($*)"
  cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
}

run_ctest() {
  local dir=$1; shift
  echo "==> test $dir $*"
  ctest --test-dir "$dir" --output-on-failure -j"$jobs" "$@"
}

configure_build build/gcc -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [ "${1:-}" = "--quick" ]; then
  run_ctest build/gcc -L unit
  exit 0
fi
configure_build build/clang -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo
configure_build build/asan -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DTERN_SANITIZE=ON
configure_build build/fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTERN_FUZZ=ON -DTERN_SANITIZE=ON -DTERN_TESTS=OFF -DTERN_BENCH=OFF

echo "==> fuzz (${fuzz_seconds}s per target)"
for f in build/fuzz/fuzz/fuzz_*; do
  [ -x "$f" ] || continue
  name=$(basename "$f"); name=${name#fuzz_}
  work=$(mktemp -d)
  [ -d "fuzz/corpus/$name" ] && cp -r "fuzz/corpus/$name/." "$work/"
  echo "fuzz $name"
  (cd "$work" && "$root/$f" -max_total_time="$fuzz_seconds" -print_final_stats=0 "$work" 2>&1 | tail -n 2)
  rm -rf "$work"
done

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_ctest build/clang -L unit
# shellcheck disable=SC2086
run_ctest build/asan $exclude
# shellcheck disable=SC2086
run_ctest build/gcc $exclude
