#!/usr/bin/env bash
# Sets up, builds and runs the demo: a simulated 8x A100-40GB node (fake NVML), the plugin and
# the MPS control daemon (against a fake nvidia-cuda-mps-control), and a local kubelet stand-in
# that registers them, lists devices and admits a few containers, printing what each receives.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$(nproc)" --target nvdp-demo nvidia-device-plugin mps-control-daemon \
  fake_nvml fake-mps-control
exec build/bin/nvdp-demo "$@"
