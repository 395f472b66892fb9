// The nvidia-device-plugin daemon's top level: builds the real objects (config, NVML, inventory,
// resources, plugin manager, health monitor, MPS readiness gate), then waits for signals:
// SIGHUP reloads the config (a bad one is rejected and the running one kept), SIGTERM, SIGINT and
// SIGQUIT stop cleanly (sockets removed).
//
// REQUIRES: BlockDaemonSignals() was called before any thread was started.
#pragma once

#include <string>

#include "absl/time/time.h"
#include "config/loader.h"

namespace nvdp::app {

// Settings of this binary that are not part of the upstream config.
struct DaemonOptions {
  // The MPS control client used to probe MPS daemons (--mps-control-binary). Empty: found under
  // the container driver root, then in PATH.
  std::string mps_control_binary;
  // How often a ready MPS daemon is probed again (--mps-probe-period).
  absl::Duration mps_probe_period = absl::Seconds(10);
  // Kubelet's PodResources socket (--pod-resources-socket), read to see which containers hold
  // which shares; empty: not used (capacity shaping off).
  std::string pod_resources_socket = "/var/lib/kubelet/pod-resources/kubelet.sock";
  // How often it is read when nothing else asks (--pod-resources-period).
  absl::Duration pod_resources_period = absl::Seconds(5);
};

// Blocks the daemon's signals in the calling thread (and so in every thread it starts later);
// they are then taken synchronously by RunDaemon's loop.
void BlockDaemonSignals();

// Runs until a stop signal. Returns the process exit status.
int RunDaemon(const config::FlagOverrides& command_line, const config::FlagOverrides& env,
              const DaemonOptions& options);

// `validate`: loads and validates the configuration, prints every problem. 0 valid, 1 invalid.
int RunValidate(const config::FlagOverrides& command_line, const config::FlagOverrides& env);

}  // namespace nvdp::app
