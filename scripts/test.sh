#!/usr/bin/env bash
# Sets up, builds and runs every test: the normal build, the address+undefined sanitizer build,
# and a short fuzz run of the config loader. Exit status 0 only if everything passed.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}

scripts/setup.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNVDP_BUILD_BENCH=ON
scripts/check-format.sh
cmake --build build -j"$jobs"
(cd build && ctest -j"$jobs" --output-on-failure --timeout 300)

scripts/setup.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DNVDP_SANITIZE=address,undefined \
  -DNVDP_BUILD_BENCH=OFF
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest -j"$jobs" --output-on-failure --timeout 600)

FUZZ_SECONDS=${FUZZ_SECONDS:-30} scripts/fuzz-config.sh
echo "all tests passed"
