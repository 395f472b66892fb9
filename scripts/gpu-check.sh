#!/usr/bin/env bash
# gpu-check.sh: the checks that need a real NVIDIA GPU, in one run of under 8 minutes.
#
#   1. inventory: our discovery (nvdp-inventory, through the real libnvidia-ml.so.1) against
#      `nvidia-smi --query-gpu` (UUID, memory, PCI bus ID, per GPU);
#   2. raw MPS: `nvidia-cuda-mps-control -d` in a temporary pipe directory (compute mode is NOT
#      changed), then a small CUDA probe as an MPS client: without limits, and with exactly the
#      environment our Allocate emits (CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=30,
#      CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=2048M, then the G form 0=2G, CUDA_VISIBLE_DEVICES=<uuid>):
#      how many SMs its blocks ran on, whether an allocation above the limit fails;
#   3. our mps-control-daemon with the real nvidia-cuda-mps-control: per-container mode (-f),
#      a killed daemon restarted, clean stop; uniform mode (-d) with upstream's defaults;
#   4. the machine is left as found (compute modes, no MPS daemon of ours left running).
# It prints a table of expected vs observed values and exits 1 if any check failed.
#
# Usage:
#   scripts/gpu-check.sh [--prebuilt DIR] [--build-dir DIR]
#       DIR/bin/{nvdp-inventory,mps-control-daemon}, DIR/lib/ (extra shared libraries) from
#       --bundle; without --prebuilt, binaries in --build-dir (default build-gpucheck) are used,
#       or built there when cmake finds the project's dependencies. Checks that need them are
#       reported SKIP when neither works.
#   scripts/gpu-check.sh --bundle BUILD_DIR OUT_DIR
#       (on the build machine) copies the two binaries, stripped, and the shared libraries they
#       need beyond libc/libstdc++ into OUT_DIR, for --prebuilt. Put OUT_DIR under the repo with
#       a name that git ignores (e.g. build-gpucheck-bundle) so that it can be carried.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREBUILT=""
BUILD_DIR="$ROOT/build-gpucheck"
START_S=$(date +%s)
BUDGET_S=450 # stop starting new steps after this many seconds (the hard limit is 480)

die() { echo "gpu-check: $*" >&2; exit 2; }

bundle() {
  local build="$1" out="$2"
  mkdir -p "$out/bin" "$out/lib"
  local bin lib
  for bin in nvdp-inventory mps-control-daemon; do
    [[ -x "$build/bin/$bin" ]] || die "$build/bin/$bin not built"
    cp "$build/bin/$bin" "$out/bin/"
    strip --strip-debug "$out/bin/$bin" 2>/dev/null || true
    while read -r lib; do
      case "$(basename "$lib")" in
        libc.so* | libm.so* | libdl.so* | librt.so* | libpthread.so* | ld-linux* | libgcc_s.so* | libstdc++.so*) ;;
        *) cp -L "$lib" "$out/lib/" ;;
      esac
    done < <(ldd "$build/bin/$bin" | awk '$3 ~ /^\// {print $3}')
  done
  du -sh "$out"
  exit 0
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --prebuilt) PREBUILT="$(cd "$2" && pwd)"; shift 2 ;;
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --bundle) [[ $# -ge 3 ]] || die "--bundle BUILD_DIR OUT_DIR"; bundle "$2" "$3" ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

for tool in nvidia-smi nvidia-cuda-mps-control nvcc python3 timeout; do
  command -v "$tool" >/dev/null || die "$tool not found in PATH"
done

WORK="$(mktemp -d /tmp/nvdp-gpucheck.XXXXXX)"
PIPE="$WORK/pipe"
MPSLOG="$WORK/log"
RAW_DAEMON=0
MPSD_PID=""

# The table.
NAMES=() EXPECTS=() OBSERVES=() VERDICTS=()
FAILED=0
record() { # name expected observed verdict(PASS|FAIL|SKIP|INFO)
  NAMES+=("$1") EXPECTS+=("$2") OBSERVES+=("$3") VERDICTS+=("$4")
  [[ "$4" == FAIL ]] && FAILED=1
  printf '[%s] %s: expected %s, observed %s\n' "$4" "$1" "$2" "$3"
}
check() { # name expected observed: PASS when equal
  if [[ "$2" == "$3" ]]; then record "$1" "$2" "$3" PASS; else record "$1" "$2" "$3" FAIL; fi
}
elapsed() { echo $(($(date +%s) - START_S)); }
time_left() { (($(elapsed) < BUDGET_S)); }
kv() { # key file: the value of key=value in a probe's output
  sed -n "s/^$1=//p" "$2" | head -n1
}
pct() { # normalises a percentage answer ("100", "100.0") to one decimal
  awk 'NF {printf "%.1f", $1; exit}'
}
raw_control() { # command: through the control client of the raw daemon
  echo "$1" | CUDA_MPS_PIPE_DIRECTORY="$PIPE" CUDA_MPS_LOG_DIRECTORY="$MPSLOG" \
    timeout 10 nvidia-cuda-mps-control
}
control_at() { # pipe_dir log_dir command
  echo "$3" | CUDA_MPS_PIPE_DIRECTORY="$1" CUDA_MPS_LOG_DIRECTORY="$2" timeout 10 nvidia-cuda-mps-control
}

# shellcheck disable=SC2317  # (invoked by the trap)
cleanup() {
  set +e
  if [[ -n "$MPSD_PID" ]] && kill -0 "$MPSD_PID" 2>/dev/null; then
    kill -TERM "$MPSD_PID"
    for _ in $(seq 1 30); do kill -0 "$MPSD_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$MPSD_PID" 2>/dev/null
  fi
  # Daemons our mps-control-daemon may have left (only in our temp dir).
  for pipe in "$WORK"/mpsroot*/nvidia.com/gpu/pipe; do
    [[ -d "$pipe" ]] && control_at "$pipe" "${pipe%/pipe}/log" quit >/dev/null 2>&1
  done
  if [[ "$RAW_DAEMON" == 1 ]]; then raw_control quit >/dev/null 2>&1; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== machine"
nvidia-smi -L
DRIVER="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n1)"
echo "driver $DRIVER; nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
nvidia-smi --query-gpu=index,uuid,compute_mode --format=csv,noheader >"$WORK/compute-before.csv"
UUID0="$(nvidia-smi --query-gpu=uuid --format=csv,noheader | head -n1 | tr -d ' ')"
MEM0_MIB="$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -n1 | tr -d ' ')"
mps_procs() { pgrep -c -f 'nvidia-cuda-mps-(control|server)' || true; }
MPS_PROCS_BEFORE="$(mps_procs)"

# ---------------------------------------------------------------------------------------------
echo "== our binaries"
LIBS=""
INV=""
MPSD=""
if [[ -n "$PREBUILT" ]]; then
  INV="$PREBUILT/bin/nvdp-inventory"
  MPSD="$PREBUILT/bin/mps-control-daemon"
  LIBS="$PREBUILT/lib"
elif [[ -x "$BUILD_DIR/bin/nvdp-inventory" && -x "$BUILD_DIR/bin/mps-control-daemon" ]]; then
  INV="$BUILD_DIR/bin/nvdp-inventory"
  MPSD="$BUILD_DIR/bin/mps-control-daemon"
elif command -v cmake >/dev/null; then
  echo "building nvdp-inventory and mps-control-daemon in $BUILD_DIR"
  # shellcheck disable=SC2016  # expanded by the inner bash
  if timeout 200 bash -c 'cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DNVDP_BUILD_TESTS=OFF -DNVDP_BUILD_BENCH=OFF &&
      cmake --build "$2" -j "$(nproc)" --target nvdp-inventory mps-control-daemon' \
    _ "$ROOT" "$BUILD_DIR" >"$WORK/cmake.log" 2>&1; then
    INV="$BUILD_DIR/bin/nvdp-inventory"
    MPSD="$BUILD_DIR/bin/mps-control-daemon"
  else
    echo "build failed (missing dependencies?); last lines:"
    tail -n 5 "$WORK/cmake.log"
  fi
fi
# Only our binaries get the bundled libraries (nvcc and NVIDIA's tools keep their own).
OURS_ENV=()
[[ -n "$LIBS" ]] && OURS_ENV=("LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
ours() { env "${OURS_ENV[@]}" "$@"; }

# ---------------------------------------------------------------------------------------------
echo "== 1. inventory vs nvidia-smi"
if [[ -n "$INV" ]] && ours "$INV" >"$WORK/inventory.json" 2>"$WORK/inventory.err"; then
  nvidia-smi --query-gpu=index,uuid,memory.total,pci.bus_id --format=csv,noheader,nounits \
    >"$WORK/smi.csv"
  python3 - "$WORK/inventory.json" "$WORK/smi.csv" >"$WORK/compare.txt" <<'EOF'
import json, sys
inv = {g["index"]: g for g in json.load(open(sys.argv[1]))["gpus"]}
rows = [[f.strip() for f in line.split(",")] for line in open(sys.argv[2]) if line.strip()]
def sysfs(bus):  # nvidia-smi "00000000:1B:00.0" -> "0000:1b:00.0"
    dom, rest = bus.split(":", 1)
    return (dom[-4:] + ":" + rest).lower()
print(f"count|{len(rows)}|{len(inv)}")
for index, uuid, mem, bus in rows:
    g = inv.get(int(index), {})
    print(f"gpu{index} uuid|{uuid}|{g.get('uuid')}")
    print(f"gpu{index} memory MiB|{mem}|{g.get('memory_mib')}")
    print(f"gpu{index} pci bus|{sysfs(bus)}|{g.get('pci_bus_id')}")
EOF
  while IFS='|' read -r name expected observed; do
    check "inventory: $name" "$expected" "$observed"
  done <"$WORK/compare.txt"
else
  record "inventory vs nvidia-smi" "our discovery = nvidia-smi" \
    "$([[ -n "$INV" ]] && head -c 200 "$WORK/inventory.err" || echo 'no nvdp-inventory')" \
    "$([[ -n "$INV" ]] && echo FAIL || echo SKIP)"
fi

# ---------------------------------------------------------------------------------------------
echo "== 2. raw MPS daemon and the CUDA probe"
PROBE="$WORK/gpu-probe"
if ! timeout 180 nvcc -O2 -arch=native -o "$PROBE" "$ROOT/scripts/gpu-probe.cu" 2>"$WORK/nvcc.err"; then
  timeout 180 nvcc -O2 -o "$PROBE" "$ROOT/scripts/gpu-probe.cu" || die "cannot build the probe"
fi
timeout 60 "$PROBE" >"$WORK/probe-direct.txt" 2>&1 || true
TOTAL_SMS="$(kv sm_count "$WORK/probe-direct.txt")"
[[ -n "$TOTAL_SMS" ]] || { cat "$WORK/probe-direct.txt"; die "the probe cannot use the GPU"; }
record "probe without MPS: SMs used" "all $TOTAL_SMS" "$(kv distinct_sms "$WORK/probe-direct.txt")" \
  "$([[ "$(kv distinct_sms "$WORK/probe-direct.txt")" == "$TOTAL_SMS" ]] && echo PASS || echo INFO)"
EXPECT30=$(((TOTAL_SMS * 30 + 99) / 100))
# Pass band for a 30% limit: MPS rounds to its own granularity (TPCs), so allow a margin.
LOW=$((TOTAL_SMS * 20 / 100))
HIGH=$((TOTAL_SMS * 40 / 100))

mkdir -p "$PIPE" "$MPSLOG"
if CUDA_MPS_PIPE_DIRECTORY="$PIPE" CUDA_MPS_LOG_DIRECTORY="$MPSLOG" CUDA_VISIBLE_DEVICES="$UUID0" \
  timeout 30 nvidia-cuda-mps-control -d; then
  RAW_DAEMON=1
  record "raw: nvidia-cuda-mps-control -d" "exit 0" "exit 0" PASS
else
  record "raw: nvidia-cuda-mps-control -d" "exit 0" "failed" FAIL
fi
if [[ "$RAW_DAEMON" == 1 ]]; then
  check "raw: get_default_active_thread_percentage" "100.0" "$(raw_control get_default_active_thread_percentage | pct || true)"

  run_probe() { # label file env...: one client run through the raw daemon
    local label="$1" file="$2"
    shift 2
    env CUDA_MPS_PIPE_DIRECTORY="$PIPE" CUDA_MPS_LOG_DIRECTORY="$MPSLOG" "$@" \
      timeout 60 "$PROBE" --alloc-mib 1024 --alloc-mib 3072 >"$file" 2>&1 || true
    echo "-- $label"; cat "$file"
  }
  run_probe "MPS client, no limits" "$WORK/probe-mps.txt"
  err="$(kv error "$WORK/probe-mps.txt")"
  check "MPS client: runs (context created)" "no error" "${err:-no error}"
  SERVERS="$(raw_control get_server_list | tr -d ' \n' || true)"
  record "MPS client: an MPS server serves it" "a server pid" "${SERVERS:-none}" \
    "$([[ -n "$SERVERS" ]] && echo PASS || echo FAIL)"
  check "MPS client, no limits: 3072 MiB" "ok" "$(kv alloc_3072_mib "$WORK/probe-mps.txt")"

  for form in 2048M 2G; do
    f="$WORK/probe-limit-$form.txt"
    run_probe "limits 30% and 0=$form (our Allocate's env)" "$f" \
      CUDA_VISIBLE_DEVICES="$UUID0" CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=30 \
      CUDA_MPS_PINNED_DEVICE_MEM_LIMIT="0=$form"
    sms="$(kv distinct_sms "$f")"
    record "30% threads (0=$form run): SMs used" "~$EXPECT30 of $TOTAL_SMS ($LOW..$HIGH)" "${sms:-?}" \
      "$([[ -n "$sms" && "$sms" -ge "$LOW" && "$sms" -le "$HIGH" ]] && echo PASS || echo FAIL)"
    record "30% threads (0=$form run): sm_count seen" "info" "$(kv sm_count "$f")" INFO
    check "limit 0=$form: 1024 MiB allocation" "ok" "$(kv alloc_1024_mib "$f")"
    obs="$(kv alloc_3072_mib "$f")"
    record "limit 0=$form: 3072 MiB allocation" "fail" "${obs:-?}" \
      "$([[ "$obs" == fail* ]] && echo PASS || echo FAIL)"
  done

  raw_control quit >/dev/null || true
  gone=no
  for _ in $(seq 1 20); do
    if ! raw_control get_default_active_thread_percentage >/dev/null 2>&1; then gone=yes; break; fi
    sleep 0.5
  done
  RAW_DAEMON=0
  check "raw: daemon gone after quit" "yes" "$gone"
fi

# ---------------------------------------------------------------------------------------------
echo "== 3. our mps-control-daemon with the real nvidia-cuda-mps-control"
run_mpsd() { # root yaml-sharing-section args...: starts it in the background, sets MPSD_PID
  local root="$1" sharing="$2"
  shift 2
  mkdir -p "$root"
  printf 'version: v1\nflags:\n  mpsRoot: %s\n%s' "$root" "$sharing" >"$root.yaml"
  # `env` execs the daemon, so $! is the daemon itself (SIGTERM reaches it).
  env "${OURS_ENV[@]}" "$MPSD" --config-file "$root.yaml" --set-compute-mode=false "$@" \
    >"$root.log" 2>&1 &
  MPSD_PID=$!
}
wait_for() { # seconds command...: polls until the command succeeds
  local deadline=$(($(date +%s) + $1))
  shift
  until "$@"; do
    (($(date +%s) < deadline)) || return 1
    sleep 0.5
  done
}
stop_mpsd() { # root: SIGTERM, wait, report
  local root="$1" rc=0
  kill -TERM "$MPSD_PID"
  wait_for 30 bash -c "! kill -0 $MPSD_PID 2>/dev/null" || kill -KILL "$MPSD_PID"
  wait "$MPSD_PID" || rc=$?
  MPSD_PID=""
  check "mpsd: exit status after SIGTERM" "0" "$rc"
  check "mpsd: .ready removed" "no" "$([[ -e "$root/.ready" ]] && echo yes || echo no)"
  check "mpsd: control daemon quit" "no answer" \
    "$(control_at "$root/nvidia.com/gpu/pipe" "$root/nvidia.com/gpu/log" get_default_active_thread_percentage >/dev/null 2>&1 && echo answers || echo 'no answer')"
}

if [[ -z "$MPSD" ]]; then
  record "mps-control-daemon checks" "run" "no binary" SKIP
elif ! time_left; then
  record "mps-control-daemon checks" "run" "out of time" SKIP
else
  R="$WORK/mpsroot-pc"
  run_mpsd "$R" $'sharing:\n  mps:\n    perContainerLimits: true\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 10\n' \
    --liveness-period=1
  if wait_for 60 test -e "$R/.ready"; then
    record "mpsd per-container (-f): .ready" "within 60s" "yes" PASS
    check "mpsd per-container: default thread %" "100.0" \
      "$(control_at "$R/nvidia.com/gpu/pipe" "$R/nvidia.com/gpu/log" get_default_active_thread_percentage | pct || true)"
    f="$WORK/probe-mpsd.txt"
    env CUDA_MPS_PIPE_DIRECTORY="$R/nvidia.com/gpu/pipe" CUDA_VISIBLE_DEVICES="$UUID0" \
      CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=30 CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=2048M \
      timeout 60 "$PROBE" --alloc-mib 3072 >"$f" 2>&1 || true
    cat "$f"
    sms="$(kv distinct_sms "$f")"
    record "mpsd client 30%: SMs used" "$LOW..$HIGH" "${sms:-?}" \
      "$([[ -n "$sms" && "$sms" -ge "$LOW" && "$sms" -le "$HIGH" ]] && echo PASS || echo FAIL)"
    obs="$(kv alloc_3072_mib "$f")"
    record "mpsd client 0=2048M: 3072 MiB" "fail" "${obs:-?}" \
      "$([[ "$obs" == fail* ]] && echo PASS || echo FAIL)"
    # Kill the control daemon; the supervisor must notice and restart it.
    pid="$(sed -n "s/.*MPS control daemon for resource 'gpu' is up (pid \([0-9]*\)).*/\1/p" "$R.log" | tail -n1)"
    if [[ -n "$pid" ]]; then
      kill -KILL "$pid"
      if wait_for 60 grep -q "is back up" "$R.log"; then
        record "mpsd: killed daemon restarted" "within 60s" "yes" PASS
      else
        record "mpsd: killed daemon restarted" "within 60s" "no" FAIL
      fi
    else
      record "mpsd: daemon pid in log" "found" "not found" FAIL
    fi
  else
    record "mpsd per-container (-f): .ready" "within 60s" "no (see log below)" FAIL
    tail -n 20 "$R.log"
  fi
  stop_mpsd "$R"
  echo "-- mps-control-daemon log (per-container)"; tail -n 30 "$R.log"

  if time_left; then
    R="$WORK/mpsroot-uni"
    run_mpsd "$R" $'sharing:\n  mps:\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 4\n' \
      --launch-mode=background
    if wait_for 60 test -e "$R/.ready"; then
      record "mpsd uniform (-d): .ready" "within 60s" "yes" PASS
      check "mpsd uniform: default thread %" "25.0" \
        "$(control_at "$R/nvidia.com/gpu/pipe" "$R/nvidia.com/gpu/log" get_default_active_thread_percentage | pct || true)"
      record "mpsd uniform: default pinned mem limit dev 0" "$((MEM0_MIB / 4))M (approx.)" \
        "$(control_at "$R/nvidia.com/gpu/pipe" "$R/nvidia.com/gpu/log" 'get_default_device_pinned_mem_limit 0' | tr -d '\n' || true)" INFO
    else
      record "mpsd uniform (-d): .ready" "within 60s" "no" FAIL
      tail -n 20 "$R.log"
    fi
    stop_mpsd "$R"
  fi
fi

# ---------------------------------------------------------------------------------------------
echo "== 4. machine left as found"
nvidia-smi --query-gpu=index,uuid,compute_mode --format=csv,noheader >"$WORK/compute-after.csv"
check "compute modes unchanged" "$(tr '\n' ';' <"$WORK/compute-before.csv")" \
  "$(tr '\n' ';' <"$WORK/compute-after.csv")"
wait_for 15 bash -c "[[ \$(pgrep -c -f 'nvidia-cuda-mps-(control|server)' || true) == $MPS_PROCS_BEFORE ]]" || true
check "MPS control/server processes" "$MPS_PROCS_BEFORE" "$(mps_procs)"

# ---------------------------------------------------------------------------------------------
echo
echo "== summary ($(elapsed)s; driver $DRIVER; $TOTAL_SMS SMs)"
printf '%-46s %-44s %-44s %s\n' CHECK EXPECTED OBSERVED RESULT
for i in "${!NAMES[@]}"; do
  printf '%-46s %-44s %-44s %s\n' "${NAMES[$i]:0:46}" "${EXPECTS[$i]:0:44}" "${OBSERVES[$i]:0:44}" "${VERDICTS[$i]}"
done
exit "$FAILED"
