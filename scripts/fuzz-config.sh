#!/usr/bin/env bash
# Fuzzes the config loader (tests/config/config_fuzzer.cc) with libFuzzer + ASan + UBSan.
#
#   scripts/fuzz-config.sh [SECONDS]      (default 30; or FUZZ_SECONDS)
#
# Configures a separate clang build dir (FUZZ_BUILD_DIR, default build-fuzz), builds only the
# fuzzer target (other parts need not compile with clang), seeds it with tests/config/cases and
# examples/, and runs it for SECONDS. Exits non-zero if the fuzzer finds a crash, a sanitizer
# report, a leak or a timeout; the input that caused it is kept under <build>/fuzz-artifacts/.
set -euo pipefail

seconds="${1:-${FUZZ_SECONDS:-30}}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
jobs="${JOBS:-2}"

command -v clang++ >/dev/null || { echo "fuzz-config: clang++ not found (apt-get install clang)" >&2; exit 2; }

CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DNVDP_BUILD_FUZZ=ON -DNVDP_BUILD_TESTS=ON -DNVDP_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target config_fuzzer -j "$jobs"

corpus="$build/fuzz-corpus/config"
artifacts="$build/fuzz-artifacts/"
mkdir -p "$corpus" "$artifacts"

# New inputs go to the first directory; the others only seed it.
"$build/bin/config_fuzzer" \
  -max_total_time="$seconds" \
  -timeout=10 \
  -rss_limit_mb=2048 \
  -max_len=4096 \
  -print_final_stats=1 \
  -dict="$root/tests/config/config_fuzzer.dict" \
  -artifact_prefix="$artifacts" \
  "$corpus" \
  "$root/tests/config/cases/valid" \
  "$root/tests/config/cases/invalid" \
  "$root/examples"
echo "fuzz-config: no crash in ${seconds}s"
