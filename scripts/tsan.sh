#!/usr/bin/env bash
# ThreadSanitizer build of everything, then the unit, process, integration and stress tests under
# it. The daemons the tests start are TSan builds too and inherit TSAN_OPTIONS, so a race in a
# daemon fails its test. Not part of CI (a TSan build and run take several minutes on two cores).
# Usage: scripts/tsan.sh [ctest args...]   e.g. scripts/tsan.sh -R stress
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}
scripts/setup.sh build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNVDP_SANITIZE=thread \
  -DNVDP_BUILD_BENCH=OFF
cmake --build build-tsan -j"$jobs"
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/scripts/tsan.supp"
# Debian's absl::Mutex is not TSan-instrumented: tools/tsan/absl_mutex_annotations.cc annotates it,
# loaded into every process the tests start (the daemons included).
export LD_PRELOAD="$PWD/build-tsan/lib/libnvdp_tsan_absl.so"
cd build-tsan
ctest -j"$jobs" --output-on-failure --timeout 600 "$@"
