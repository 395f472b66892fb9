#!/usr/bin/env bash
# Installs the Debian 12 packages the project builds with (only those missing), then configures
# a build directory. Usage: scripts/setup.sh [build-dir] [extra cmake args...]
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libyaml-cpp-dev nlohmann-json3-dev libspdlog-dev libcli11-dev libcurl4-openssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang clang-format libclang-rt-14-dev python3 python3-yaml
)
# tests/deployments runs `kubectl kustomize`; Debian's kubectl only where none is installed.
command -v kubectl >/dev/null || PACKAGES+=(kubernetes-client)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if (($#)); then
  build_dir=$1
  shift
  cmake -S "$(dirname "$0")/.." -B "$build_dir" -G Ninja "$@" >/dev/null
fi
