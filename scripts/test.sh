#!/usr/bin/env bash
# Sets up, builds and runs every test: the normal build, the container image's files (the static
# Release build run from its root filesystem, scripts/rootfs-check.sh), the address+undefined
# sanitizer build, and a short fuzz run of the config loader. Exit status 0 only if all passed.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}

scripts/setup.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNVDP_BUILD_BENCH=ON
scripts/check-format.sh
cmake --build build -j"$jobs"
(cd build && ctest -j"$jobs" --output-on-failure --timeout 300)

# The image's binaries (deployments/container/Dockerfile builds them the same way).
scripts/setup.sh build-static -DCMAKE_BUILD_TYPE=Release -DNVDP_STATIC_DEPS=ON \
  -DNVDP_BUILD_TESTS=OFF -DNVDP_BUILD_BENCH=OFF
cmake --build build-static -j"$jobs"
scripts/rootfs-check.sh build-static/bin

scripts/setup.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DNVDP_SANITIZE=address,undefined \
  -DNVDP_BUILD_BENCH=OFF
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest -j"$jobs" --output-on-failure --timeout 600)

FUZZ_SECONDS=${FUZZ_SECONDS:-30} scripts/fuzz-config.sh
echo "all tests passed"
