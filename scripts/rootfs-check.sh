#!/usr/bin/env bash
# Proves the container image's files are enough, without Docker: builds the image's root
# filesystem with deployments/container/make-rootfs.sh (the script and file list the Dockerfile
# uses) from the binaries in BIN_DIR, then runs them chrooted into it against the fake NVML,
# injected at /driver-root the way the NVIDIA container toolkit injects the driver:
#   - nvidia-device-plugin --version and mps-control-daemon --version,
#   - nvidia-device-plugin validate on examples/time-slicing.yaml and examples/mps-per-container.yaml,
#   - the plugin serving on the fake 8x A100 node: it registers nvidia.com/gpu with a kubelet
#     stand-in (build/bin/nvdp-kubelet-standin, on the host, serving kubelet.sock in the rootfs's
#     /var/lib/kubelet/device-plugins), advertises 8 healthy GPUs, answers Allocate, and exits 0
#     on SIGTERM.
# Usage: scripts/rootfs-check.sh [BIN_DIR] (default build-static/bin). The fake NVML and the kubelet
# stand-in come from TOOLS_BUILD (default build), the normal build with tests. Needs root (chroot)
# or unprivileged user namespaces (unshare --user --map-root-user). Exit status 0 only if all pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir=${1:-build-static/bin}
tools_build=${TOOLS_BUILD:-build}
standin="$tools_build/bin/nvdp-kubelet-standin"
fake_nvml="$tools_build/lib/fake-nvml/libnvidia-ml.so.1"
node=tests/fakes/nvml/nodes/a100-sxm4-40gb-x8.json
for file in "$bin_dir/nvidia-device-plugin" "$bin_dir/mps-control-daemon" "$standin" "$fake_nvml"; do
  [ -e "$file" ] || {
    echo "rootfs-check: $file missing (build it first)" >&2
    exit 1
  }
done

work=$(mktemp -d /tmp/nvdp-rootfs-check.XXXXXX)
rootfs=$work/rootfs
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

failed=0
fail() {
  echo "rootfs-check: FAIL: $*" >&2
  failed=1
}
pass() { echo "rootfs-check: ok: $*"; }

deployments/container/make-rootfs.sh "$bin_dir" "$rootfs"

# The driver, as the toolkit would inject it. The real libnvidia-ml.so.1 needs only glibc, which
# must already be in the image. The fake is C++ and also needs libstdc++ and libgcc_s, which the
# image no longer holds (the binaries link them statically): those are injected next to it, as
# part of the fake driver, and found through LD_LIBRARY_PATH in the plugin's run below.
driver_dir=/driver-root/usr/lib/x86_64-linux-gnu
driver_lib=$driver_dir/libnvidia-ml.so.1
mkdir -p "$rootfs$driver_dir"
cp -L "$fake_nvml" "$rootfs$driver_lib"
while read -r soname path; do
  case "$soname" in
    libstdc++.so.* | libgcc_s.so.*) cp -L "$path" "$rootfs$driver_dir/$soname" ;;
    *)
      [ -e "$rootfs/usr/lib/x86_64-linux-gnu/$soname" ] ||
        fail "the fake NVML needs $soname, which is not in the image"
      ;;
  esac
done < <(ldd "$fake_nvml" | awk '$2 == "=>" {print $1, $3}')
mkdir -p "$rootfs/fake" "$rootfs/etc/nvdp" "$rootfs/var/lib/kubelet/device-plugins"
cp "$node" "$rootfs/fake/node.json"
cp examples/time-slicing.yaml examples/mps-per-container.yaml "$rootfs/etc/nvdp/"

# Runs a command chrooted into the rootfs with a clean environment: the image's ENV (Dockerfile)
# plus the fake node description.
chroot_bin=$(PATH="$PATH:/usr/sbin:/sbin" command -v chroot)
run_in=("$chroot_bin" "$rootfs")
[ "$(id -u)" -eq 0 ] || run_in=("$(command -v unshare)" --user --map-root-user --mount "${run_in[@]}")
run_in=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
  FAKE_NVML_NODE=/fake/node.json "${run_in[@]}")
in_rootfs() { "${run_in[@]}" "$@"; }

for binary in nvidia-device-plugin mps-control-daemon; do
  if out=$(in_rootfs "/usr/bin/$binary" --version 2>&1) && [[ "$out" == "$binary "* ]]; then
    pass "$binary --version: $out"
  else
    fail "$binary --version: $out"
  fi
done

for config in time-slicing.yaml mps-per-container.yaml; do
  if out=$(in_rootfs /usr/bin/nvidia-device-plugin validate \
    --config-file="/etc/nvdp/$config" 2>&1); then
    pass "validate $config: $out"
  else
    fail "validate $config: $out"
  fi
done

# Serving: the stand-in kubelet on the host, the plugin in the rootfs, one directory between them.
"$standin" --dir "$rootfs/var/lib/kubelet/device-plugins" --resource nvidia.com/gpu --devices 8 \
  --timeout 30 >"$work/standin.log" 2>&1 &
standin_pid=$!
pids+=("$standin_pid")
for _ in $(seq 100); do
  [ -S "$rootfs/var/lib/kubelet/device-plugins/kubelet.sock" ] && break
  sleep 0.1
done
# Started directly, not through a function, so that $! is the plugin (env and chroot exec it).
"${run_in[@]:0:2}" LD_LIBRARY_PATH="$driver_dir" "${run_in[@]:2}" /usr/bin/nvidia-device-plugin \
  --nvml-library="$driver_lib" >"$work/plugin.log" 2>&1 &
plugin_pid=$!
pids+=("$plugin_pid")
if wait "$standin_pid"; then
  pass "plugin registered and served in the rootfs:"
  sed 's/^/    /' "$work/standin.log"
else
  fail "plugin did not register/serve in the rootfs; kubelet stand-in said:"
  sed 's/^/    /' "$work/standin.log" >&2
fi
if kill -0 "$plugin_pid" 2>/dev/null; then
  kill -TERM "$plugin_pid"
  rc=0
  for _ in $(seq 100); do
    kill -0 "$plugin_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$plugin_pid" 2>/dev/null; then
    fail "plugin still running 10 s after SIGTERM"
  else
    wait "$plugin_pid" || rc=$?
    if ((rc == 0)); then pass "plugin exited 0 on SIGTERM"; else fail "plugin exited $rc on SIGTERM"; fi
  fi
else
  rc=0
  wait "$plugin_pid" || rc=$?
  fail "plugin exited early with status $rc"
fi
if ((failed)); then
  echo "rootfs-check: plugin log:" >&2
  sed 's/^/    /' "$work/plugin.log" >&2
  echo "rootfs-check: FAILED" >&2
  exit 1
fi
echo "rootfs-check: all passed ($(du -sh "$rootfs" | cut -f1) rootfs)"
