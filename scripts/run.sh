#!/usr/bin/env bash
# Builds tern (release) and runs ternd on its embedded defaults; arguments go to ternd.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=Release \
  -DTERN_TESTS=OFF -DTERN_BENCH=OFF >/dev/null
cmake --build build/release -j"$(nproc 2>/dev/null || echo 2)" --target ternd tern_cli >/dev/null
exec build/release/src/server/ternd "$@"
