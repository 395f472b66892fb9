#!/usr/bin/env bash
# Builds the benchmarks in a Release build dir (build-bench, or $BUILD_DIR) and prints two
# markdown tables: the sharing logic (name, time/op, CPU/op, iterations, from Google Benchmark's
# JSON output), then the real daemon's start-up time, RSS and RPC latency (daemon_footprint), then
# how fast a killed MPS control daemon shows at kubelet, Unhealthy and Healthy again
# (mps_health_latency), then how lean and quiet both daemons are (lean_bench: RSS, threads and
# their names, idle wake-ups and CPU, start-up, --help, RPC ratios to an empty call, first
# ListAndWatch), then what a bare gRPC async server costs (grpc_floor, the floor under the
# plugin's threads and wake-ups), then stop and re-registration times (stop_latency, where that target exists),
# and last one table of every figure with its target: figure | target | measured | pass/miss
# (docs/performance.md).
# Extra arguments go to the sharing benchmark binary, e.g.
#   bench/run.sh --benchmark_filter=Grant --benchmark_min_time=0.2
# LEAN_ARGS and STOP_ARGS go to lean_bench and stop_latency, e.g. LEAN_ARGS="--runs 3".
# A bench binary that prints lines "FIGURE<TAB>figure<TAB>target<TAB>measured<TAB>pass|miss|info"
# has them folded into the final table (and not printed with its details).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build-bench}"
jobs="${JOBS:-2}"

generator=()
if [[ ! -f "$build/CMakeCache.txt" ]] && command -v ninja >/dev/null; then
  generator=(-G Ninja)
fi
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DNVDP_BUILD_TESTS=ON -DNVDP_BUILD_BENCH=ON -DNVDP_SANITIZE= >/dev/null
targets=(sharing_bench daemon_footprint mps_health_latency lean_bench grpc_floor)
# stop_latency is optional: built and run only where the tree has it.
if grep -q '/stop_latency\.dir$' "$build/CMakeFiles/TargetDirectories.txt" 2>/dev/null; then
  targets+=(stop_latency)
fi
cmake --build "$build" -j "$jobs" --target "${targets[@]}" >"$build/build.log" ||
  { tail -30 "$build/build.log"; exit 1; }

json="$build/sharing_bench.json"
"$build/bin/sharing_bench" --benchmark_format=json "$@" >"$json"

python3 - "$json" <<'PY'
import json
import sys

with open(sys.argv[1]) as f:
    data = json.load(f)

def per_op(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"

to_ns = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
ctx = data.get("context", {})
print(f"{ctx.get('host_name', '?')}: {ctx.get('num_cpus', '?')} CPUs @ "
      f"{ctx.get('mhz_per_cpu', '?')} MHz\n")
print("| name | time/op | CPU/op | iterations |")
print("|---|---:|---:|---:|")
for b in data["benchmarks"]:
    if "error_message" in b:
        print(f"| {b['name']} | error: {b['error_message']} | | |")
        continue
    scale = to_ns[b.get("time_unit", "ns")]
    print(f"| {b['name']} | {per_op(b['real_time'] * scale)} | "
          f"{per_op(b['cpu_time'] * scale)} | {b['iterations']} |")
PY

echo
echo "Daemon footprint (8x A100-40GB fake node, test kubelet):"
echo
"$build/bin/daemon_footprint" 2>/dev/null | grep -v "^fake-mps-control"

echo
echo "MPS daemon health at kubelet (fake control daemon SIGKILLed under mps-control-daemon):"
echo
"$build/bin/mps_health_latency" 2>/dev/null | grep -v "^fake-mps-control"

figures="$build/figures.tsv"
: >"$figures"
# Runs a bench binary: its FIGURE lines go to the final table, the rest is printed as is.
run_figures() {
  local out="$build/$1.out"
  if ! "$build/bin/$1" "${@:2}" 2>"$build/$1.err" >"$out"; then
    echo "$1 failed (its figures are missing below):"
    tail -20 "$build/$1.err"
  fi
  grep -v -e '^FIGURE	' -e '^fake-mps-control' "$out" || true
  grep '^FIGURE	' "$out" >>"$figures" || true
}

echo
echo "How lean and quiet (8x A100-40GB fake node, test kubelet, Release):"
echo
# shellcheck disable=SC2086
run_figures lean_bench ${LEAN_ARGS:-}

echo
echo "What gRPC alone costs (grpc_floor):"
echo
run_figures grpc_floor

if [[ " ${targets[*]} " == *" stop_latency "* ]]; then
  echo
  echo "Stop and re-registration times (stop_latency):"
  echo
  # shellcheck disable=SC2086
  run_figures stop_latency ${STOP_ARGS:-}
fi

echo
echo "Every figure against its target ($(date -u +%Y-%m-%d), $(nproc) CPUs, $(uname -m)):"
echo
echo "| figure | target | measured | pass/miss |"
echo "|---|---|---:|---|"
while IFS=$'\t' read -r _ figure target measured verdict; do
  echo "| $figure | $target | $measured | $verdict |"
done <"$figures"
