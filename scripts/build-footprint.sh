#!/usr/bin/env bash
# Measures what docs/performance.md ("Builds") reports for the binaries in BIN_DIR: file sizes
# (as built and stripped), `--help` wall and CPU time (median of RUNS spawns), and the idle memory
# of nvidia-device-plugin registered with 8 fake GPUs (VmRSS/RssAnon/RssFile, median of 7 runs, with
# the largest mappings of the first run) and of mps-control-daemon serving 8 GPUs x 100 MPS shares
# (median of 5). With FOOTPRINT=1 also bench/daemon_footprint's start-to-registered time, run
# against BIN_DIR's binaries.
# Usage: scripts/build-footprint.sh BIN_DIR [RUNS]. The fake NVML, the kubelet stand-in and
# daemon_footprint come from TOOLS_BUILD (default build, the normal build with tests and benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir=$(realpath "$1")
runs=${2:-41}
tools=$(realpath "${TOOLS_BUILD:-build}")
node=$PWD/tests/fakes/nvml/nodes/a100-sxm4-40gb-x8.json
work=$(mktemp -d /tmp/nvdp-footprint.XXXXXX)
trap 'rm -rf "$work"' EXIT

# posix_spawn()s a command N times with stdout/stderr on /dev/null; median and minimum wall time and
# user+system CPU time of the child.
cat >"$work/spawntime.c" <<'C'
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
extern char** environ;
static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}
int main(int argc, char** argv) {
  int n = atoi(argv[1]);
  double* wall = calloc(n, sizeof(double));
  double* cpu = calloc(n, sizeof(double));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  for (int i = 0; i < n; ++i) {
    struct timespec a, b;
    struct rusage ru;
    pid_t pid;
    int status;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (posix_spawn(&pid, argv[2], &fa, NULL, argv + 2, environ) != 0) return 1;
    wait4(pid, &status, 0, &ru);
    clock_gettime(CLOCK_MONOTONIC, &b);
    wall[i] = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
    cpu[i] = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
             (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
  }
  qsort(wall, n, sizeof(double), cmp);
  qsort(cpu, n, sizeof(double), cmp);
  printf("wall median %.2f ms (min %.2f), cpu median %.2f ms (min %.2f), n=%d\n", wall[n / 2],
         wall[0], cpu[n / 2], cpu[0], n);
  return 0;
}
C
cc -O2 -o "$work/spawntime" "$work/spawntime.c"

echo "== sizes (bytes: file, stripped; text+data+bss)"
for name in nvidia-device-plugin mps-control-daemon config-manager; do
  [ -x "$bin_dir/$name" ] || continue
  strip -o "$work/stripped" "$bin_dir/$name"
  echo "$name: $(stat -c %s "$bin_dir/$name") $(stat -c %s "$work/stripped");" \
    "$(size "$bin_dir/$name" | awk 'NR == 2 {print $1 "+" $2 "+" $3}');" \
    "needs $(readelf -d "$bin_dir/$name" | awk '/NEEDED/ {gsub(/[][]/, "", $5); printf "%s ", $5}')"
done

echo "== --help ($runs runs)"
for name in nvidia-device-plugin mps-control-daemon; do
  echo "$name --help: $("$work/spawntime" "$runs" "$bin_dir/$name" --help)"
done

echo "== nvidia-device-plugin idle, registered with 8 fake GPUs (kB)"
sync  # freshly linked binaries: their page-cache pages would count as dirty
results=()
for run in 1 2 3 4 5 6 7; do
  dir=$work/run$run
  mkdir -p "$dir"
  # Asks for 9 devices of 8, so it keeps serving (registered, idle) until killed.
  stdbuf -oL "$tools/bin/nvdp-kubelet-standin" --dir "$dir" --devices 9 --timeout 30 >"$dir/standin.log" 2>&1 &
  standin=$!
  for _ in $(seq 100); do
    [ -S "$dir/kubelet.sock" ] && break
    sleep 0.05
  done
  FAKE_NVML_NODE=$node "$bin_dir/nvidia-device-plugin" \
    --nvml-library="$tools/lib/fake-nvml/libnvidia-ml.so.1" --kubelet-socket="$dir/kubelet.sock" \
    --pod-resources-socket= --log-level=error >"$dir/plugin.log" 2>&1 &
  plugin=$!
  sleep 2
  grep -q "registered nvidia.com/gpu" "$dir/standin.log" ||
    echo "run $run: not registered?" >&2
  # The fake NVML, and the C++ runtime it loads where the binary links libstdc++ statically (the
  # real libnvidia-ml.so.1 needs only glibc): not the plugin's own memory.
  fake=$(awk '/^[0-9a-f]+-[0-9a-f]+ / {name = $6} /^Rss:/ && name ~ /fake-nvml/ {kb += $2}
              END {print kb + 0}' "/proc/$plugin/smaps")
  cxx=0
  if ! readelf -d "$bin_dir/nvidia-device-plugin" | grep -q 'libstdc++'; then
    cxx=$(awk '/^[0-9a-f]+-[0-9a-f]+ / {name = $6} /^Rss:/ && name ~ /lib(stdc\+\+|gcc_s)\.so/ {kb += $2}
               END {print kb + 0}' "/proc/$plugin/smaps")
  fi
  status=$(awk '/^(VmRSS|RssAnon|RssFile):/ {printf "%s %s ", $1, $2}' "/proc/$plugin/status")
  results+=("$status fake-NVML: $fake its-libstdc++/libgcc_s: $cxx")
  if ((run == 1)); then
    echo "largest mappings (Rss kB, run 1):"
    awk '/^[0-9a-f]+-[0-9a-f]+ / {name = ($6 == "" ? "[anon]" : $6 " " $2)}
         /^Rss:/ {rss[name] += $2}
         END {for (n in rss) if (rss[n] > 0) printf "  %6d %s\n", rss[n], n}' \
      "/proc/$plugin/smaps" | sort -rn | head -12
  fi
  kill "$plugin" "$standin"
  wait "$plugin" "$standin" 2>/dev/null || true
done
printf '%s\n' "${results[@]}" | sort -n -k2 | sed -n 4p | sed 's/^/median (by VmRSS): /'

echo "== mps-control-daemon idle, 8 GPUs x 100 MPS shares, fake control daemon (kB)"
results=()
for run in 1 2 3 4 5; do
  dir=$work/mpsd$run
  mkdir -p "$dir"
  printf 'version: v1\nflags:\n  mpsRoot: %s/mps\nsharing:\n  mps:\n    perContainerLimits: true\n    resources:\n    - name: gpu\n      replicas: 100\n' \
    "$dir" >"$dir/config.yaml"
  FAKE_NVML_NODE=$node "$bin_dir/mps-control-daemon" \
    --nvml-library="$tools/lib/fake-nvml/libnvidia-ml.so.1" \
    --mps-control-binary="$tools/bin/fake-mps-control" --config-file="$dir/config.yaml" \
    --set-compute-mode=false --log-level=error >"$dir/mpsd.log" 2>&1 &
  mpsd=$!
  for _ in $(seq 100); do
    [ -e "$dir/mps/.ready" ] && break
    sleep 0.05
  done
  [ -e "$dir/mps/.ready" ] || echo "run $run: MPS daemons not ready?" >&2
  sleep 1.5
  cxx=0
  if ! readelf -d "$bin_dir/mps-control-daemon" | grep -q 'libstdc++'; then
    cxx=$(awk '/^[0-9a-f]+-[0-9a-f]+ / {name = $6} /^Rss:/ && name ~ /lib(stdc\+\+|gcc_s)\.so/ {kb += $2}
               END {print kb + 0}' "/proc/$mpsd/smaps")
  fi
  status=$(awk '/^(VmRSS|RssAnon|RssFile):/ {printf "%s %s ", $1, $2}' "/proc/$mpsd/status")
  results+=("$status fake-NVML's-libstdc++/libgcc_s: $cxx")
  kill "$mpsd"
  wait "$mpsd" 2>/dev/null || true
done
printf '%s\n' "${results[@]}" | sort -n -k2 | sed -n 3p | sed 's/^/median (by VmRSS): /'

if [ "${FOOTPRINT:-0}" = 1 ]; then
  echo "== bench/daemon_footprint against $bin_dir"
  mkdir -p "$work/fp/bin" "$work/fp/lib"
  cp "$tools/bin/daemon_footprint" "$work/fp/bin/"
  ln -s "$bin_dir/nvidia-device-plugin" "$bin_dir/mps-control-daemon" "$tools/bin/fake-mps-control" \
    "$work/fp/bin/"
  ln -s "$tools/lib/fake-nvml" "$work/fp/lib/fake-nvml"
  "$work/fp/bin/daemon_footprint" --runs 7 --calls 200
fi
