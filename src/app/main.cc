// nvidia-device-plugin: the Kubernetes device plugin for NVIDIA GPUs with flexible MPS sharing.
#include <malloc.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/time/time.h"
#include "app/daemon.h"
#include "config/loader.h"
#include "config/version.h"
#include "logging/logging.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  nvdp::app::BlockDaemonSignals();
  // Buffers of 256 KiB and more (a serialized device list at thousands of IDs, gRPC's write
  // buffers) are mapped and unmapped on their own, so memory a stuck or hostile stream held goes
  // back to the system when the stream ends. A fixed threshold also stops glibc from raising it
  // after the first such free, which would keep the next ones in the heap.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);

  CLI::App cli{"Kubernetes device plugin for NVIDIA GPUs, with per-container MPS limits"};
  nvdp::config::FlagOverrides flags;
  nvdp::config::AddFlags(cli, flags);
  std::string log_level = "info";
  cli.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->envname("LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  nvdp::app::DaemonOptions daemon_options;
  cli.add_option("--mps-control-binary", daemon_options.mps_control_binary,
                 "nvidia-cuda-mps-control used to probe MPS control daemons: a path, or a name "
                 "searched in PATH (default: found under --driver-root-ctr-path's usr/bin, "
                 "usr/sbin, bin, sbin, then PATH)")
      ->envname("MPS_CONTROL_BINARY");
  double probe_period_s = 10;
  cli.add_option("--mps-probe-period", probe_period_s,
                 "seconds between liveness probes of a ready MPS control daemon")
      ->envname("MPS_PROBE_PERIOD")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cli.add_option("--pod-resources-socket", daemon_options.pod_resources_socket,
                 "kubelet's PodResources socket, read to see which containers hold which shares "
                 "(capacity shaping, MPS client cap); empty: not used (default "
                 "/var/lib/kubelet/pod-resources/kubelet.sock)")
      ->envname("POD_RESOURCES_SOCKET")
      ->expected(0, 1)  // `--pod-resources-socket=` turns it off
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::string pod_resources_period = "5s";
  cli.add_option("--pod-resources-period", pod_resources_period,
                 "how often the PodResources socket is read for releases, e.g. 500ms (default 5s)")
      ->envname("POD_RESOURCES_PERIOD")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->check([](const std::string& text) -> std::string {
        absl::Duration d;
        if (!absl::ParseDuration(text, &d) || d <= absl::ZeroDuration()) {
          return "must be a positive duration such as 5s or 500ms; got \"" + text + "\"";
        }
        return "";
      });
  // Upstream's --version: prints "nvidia-device-plugin <version>" and exits 0.
  cli.set_version_flag("--version",
                       std::string("nvidia-device-plugin ") + nvdp::config::kPluginVersion);
  auto* validate = cli.add_subcommand(
      "validate", "Check the configuration (file, env, flags) and exit: 0 valid, 1 invalid");
  validate->fallthrough();
  CLI11_PARSE(cli, argc, argv);

  nvdp::logging::Setup(log_level);

  auto env = nvdp::config::FlagsFromEnv([](const char* name) -> std::optional<std::string> {
    const char* value = std::getenv(name);
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  });
  if (validate->parsed()) return nvdp::app::RunValidate(flags, env);
  daemon_options.mps_probe_period = absl::Seconds(probe_period_s);
  absl::ParseDuration(pod_resources_period, &daemon_options.pod_resources_period);
  return nvdp::app::RunDaemon(flags, env, daemon_options);
}
