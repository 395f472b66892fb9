#include "app/daemon.h"

#include <signal.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "app/mps_gates.h"
#include "app/node_health.h"
#include "app/plugin_manager.h"
#include "device/inventory.h"
#include "health/health_monitor.h"
#include "ledger/book.h"
#include "mps/control.h"
#include "mps/process.h"
#include "nvml/dl_nvml.h"
#include "podresources/lister.h"
#include "sharing/sharing.h"
#include "spdlog/spdlog.h"

namespace nvdp::app {
namespace {

sigset_t DaemonSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP}) sigaddset(&set, sig);
  return set;
}

std::optional<std::string> GetEnv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

// Waits for the next daemon signal.
int WaitForSignal() {
  sigset_t set = DaemonSignals();
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig;
}

plugin::ResponseOptions ResponseOptionsFrom(const config::Config& config) {
  plugin::ResponseOptions options;
  options.plugin = config.flags.plugin;
  options.dev_root = config.flags.DevRoot();
  options.mps_root = config.flags.mps_root;
  options.gdrcopy_enabled = config.flags.gdrcopy_enabled;
  options.gds_enabled = config.flags.gds_enabled;
  options.mofed_enabled = config.flags.mofed_enabled;
  return options;
}

// CDI spec generation is not part of this plugin yet: say so rather than hand out names that the
// runtime may not resolve.
void WarnAboutCdi(const config::Config& config) {
  for (auto strategy : config.flags.plugin.device_list_strategy) {
    if (strategy == config::DeviceListStrategy::kCdiAnnotations ||
        strategy == config::DeviceListStrategy::kCdiCri) {
      spdlog::warn(
          "deviceListStrategy {}: this plugin does not write a CDI spec yet; containers get CDI "
          "names k8s.device-plugin.nvidia.com/gpu=<id>, which need a spec from elsewhere "
          "(e.g. nvidia-ctk cdi generate) under /var/run/cdi",
          config::ToString(strategy));
      return;
    }
  }
}

// Set before the SIGHUP the plugin manager sends when kubelet restarts (see RunDaemon).
std::atomic<bool> g_kubelet_restarted{false};

// The node's GPUs and MIG devices, logged with any warnings.
absl::StatusOr<device::Inventory> DiscoverNode(nvml::Nvml& nvml) {
  auto inventory =
      device::DiscoverInventory(nvml, {.sysfs_root = GetEnv("NVDP_SYSFS_ROOT").value_or("/sys"),
                                       .driver_root = GetEnv("NVDP_DRIVER_ROOT").value_or("/")});
  if (!inventory.ok()) return inventory;
  spdlog::info("driver {}; {} GPU(s), {} MIG device(s)", inventory->driver_version,
               inventory->gpus.size(), inventory->mig_devices.size());
  for (const auto& warning : inventory->warnings) spdlog::warn("{}", warning);
  return inventory;
}

void LogResources(const std::vector<sharing::ResourceSpec>& resources) {
  for (const auto& spec : resources) {
    std::vector<std::string> gpus;
    for (const auto& gpu : spec.gpus) gpus.push_back(gpu.IndexId());  // "0", or MIG "0:3"
    spdlog::info("resource {}: {} GPU(s) [{}], {} device ID(s)", spec.name, spec.gpus.size(),
                 absl::StrJoin(gpus, ","), sharing::AdvertisedDevices(spec).size());
  }
}

// The MPS control client the readiness probes run: as given, else found under the container driver
// root, then in PATH. Not found: one error naming every path tried (the MPS resources then stay
// unregistered, their probes failing), and the bare name.
std::string ControlBinary(const DaemonOptions& options, const config::Config& config,
                          const std::vector<sharing::ResourceSpec>& resources) {
  if (!options.mps_control_binary.empty()) return options.mps_control_binary;
  const char* path = std::getenv("PATH");
  auto found = mps::FindDriverProgram(mps::kDefaultControlBinary,
                                      config.flags.plugin.container_driver_root, path ? path : "");
  if (found.ok()) return *found;
  if (std::any_of(resources.begin(), resources.end(),
                  [](const auto& spec) { return spec.mode == sharing::Mode::kMps; })) {
    spdlog::error(
        "MPS resources cannot be probed: {} (set --mps-control-binary / "
        "MPS_CONTROL_BINARY, or mount the driver root at --driver-root-ctr-path)",
        std::string(found.status().message()));
  }
  return mps::kDefaultControlBinary;
}

// Idles until a stop signal (failOnInitError: false, or nothing to serve).
int IdleUntilStopped() {
  while (true) {
    int sig = WaitForSignal();
    if (sig != SIGHUP) return 0;
    spdlog::info("SIGHUP ignored while idle; restart the plugin to retry");
  }
}

// Ends the process at once: logs flushed, no atexit handlers, no static destructors. Under
// LeakSanitizer the leak check that exit would have run runs first.
[[noreturn]] void ExitWithoutStaticDestructors(int code) {
  spdlog::default_logger()->flush();
  std::fflush(nullptr);
#if defined(__SANITIZE_ADDRESS__)
  __lsan_do_leak_check();
#endif
  std::_Exit(code);
}

}  // namespace

void BlockDaemonSignals() {
  sigset_t set = DaemonSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int RunValidate(const config::FlagOverrides& command_line, const config::FlagOverrides& env) {
  const config::Report report = config::LoadConfigReport(command_line, env);
  for (const auto& warning : report.warnings)
    std::fprintf(stderr, "warning: %s\n", warning.c_str());
  for (const auto& error : report.errors) std::fprintf(stderr, "error: %s\n", error.c_str());
  if (!report.ok()) {
    std::fprintf(stderr, "configuration is invalid (%zu error(s))\n", report.errors.size());
    return 1;
  }
  std::printf("configuration is valid\n");
  return 0;
}

int RunDaemon(const config::FlagOverrides& command_line, const config::FlagOverrides& env,
              const DaemonOptions& daemon_options) {
  auto loaded = config::LoadConfig(command_line, env);
  if (!loaded.ok()) {
    spdlog::error("invalid configuration:\n{}", std::string(loaded.status().message()));
    return 1;
  }
  for (const auto& warning : loaded->warnings) spdlog::warn("config: {}", warning);
  config::Config config = loaded->config;
  WarnAboutCdi(config);
  const bool fail_on_init_error = config.flags.fail_on_init_error;

  auto init_failed = [&](const std::string& what) {
    if (fail_on_init_error) {
      spdlog::error("{}; exiting (failOnInitError: true)", what);
      return 1;
    }
    spdlog::error("{}; idling (failOnInitError: false)", what);
    return IdleUntilStopped();
  };

  const auto candidates =
      config.flags.nvml_library
          ? std::vector<std::string>{*config.flags.nvml_library}
          : nvml::NvmlLibraryCandidates(config.flags.plugin.container_driver_root);
  auto nvml = nvml::LoadNvml(candidates);
  if (!nvml.ok()) return init_failed("cannot load NVML: " + std::string(nvml.status().message()));
  if (auto status = (*nvml)->Init(); !status.ok()) {
    return init_failed("NVML init failed: " + std::string(status.message()));
  }
  auto inventory = DiscoverNode(**nvml);
  if (!inventory.ok()) {
    (*nvml)->Shutdown().IgnoreError();
    return init_failed("GPU discovery failed: " + std::string(inventory.status().message()));
  }

  if (auto status = sharing::CheckMigStrategy(config.flags.mig_strategy, *inventory);
      !status.ok()) {
    (*nvml)->Shutdown().IgnoreError();
    return init_failed(std::string(status.message()));
  }
  auto resources = sharing::BuildResources(config, *inventory);
  if (!resources.ok()) {
    spdlog::error("cannot apply the configuration to this node: {}",
                  std::string(resources.status().message()));
    return 1;
  }
  LogResources(*resources);

  ledger::LedgerBook ledgers(
      daemon_options.pod_resources_socket.empty()
          ? nullptr
          : podresources::MakeGrpcLister(daemon_options.pod_resources_socket),
      daemon_options.pod_resources_socket, daemon_options.pod_resources_period);
  if (daemon_options.pod_resources_socket.empty()) {
    spdlog::info("--pod-resources-socket is empty: capacity shaping is off");
  }
  ledgers.Start();

  ManagerOptions options;
  options.ledgers = &ledgers;
  options.kubelet_socket = config.flags.kubelet_socket;
  options.response = ResponseOptionsFrom(config);
  options.gate_mps_resources = true;
  // A kubelet restart is also when a changed MIG layout is picked up: the main loop reloads.
  options.on_kubelet_restart = [] {
    g_kubelet_restarted = true;
    ::kill(::getpid(), SIGHUP);
  };
  PluginManager manager(options);
  MpsGates gates(manager, {ControlBinary(daemon_options, config, *resources),
                           daemon_options.mps_probe_period});
  gates.Sync(*resources, config.flags.mps_root);
  if (auto status = manager.Start(*resources); !status.ok()) {
    spdlog::error("cannot start: {}", std::string(status.message()));
    return 1;
  }

  NodeHealth health(
      **nvml,
      health::ParseHealthSettings(GetEnv("DP_DISABLE_HEALTHCHECKS"),
                                  GetEnv("DP_ENABLE_HEALTHCHECKS")),
      [&manager](const std::string& uuid, bool healthy) { manager.SetGpuHealthy(uuid, healthy); });
  health.Watch(*inventory);

  while (true) {
    int sig = WaitForSignal();
    if (sig != SIGHUP) {
      spdlog::info("signal {}: stopping", sig);
      break;
    }
    if (g_kubelet_restarted.exchange(false)) {
      spdlog::info("kubelet restarted: reloading the configuration and reading the devices again");
    } else {
      spdlog::info("SIGHUP: reloading the configuration and reading the devices again");
    }
    auto reloaded = config::LoadConfig(command_line, env);
    if (!reloaded.ok()) {
      spdlog::error("reload rejected, keeping the running configuration:\n{}",
                    std::string(reloaded.status().message()));
      continue;
    }
    for (const auto& warning : reloaded->warnings) spdlog::warn("config: {}", warning);
    // MIG layouts change while a node runs: the devices are read again too.
    auto rediscovered = DiscoverNode(**nvml);
    if (!rediscovered.ok()) {
      spdlog::error("reload rejected, keeping the running configuration: GPU discovery failed: {}",
                    std::string(rediscovered.status().message()));
      continue;
    }
    if (auto status = sharing::CheckMigStrategy(reloaded->config.flags.mig_strategy, *rediscovered);
        !status.ok()) {
      spdlog::error("reload rejected, keeping the running configuration: {}",
                    std::string(status.message()));
      continue;
    }
    auto new_resources = sharing::BuildResources(reloaded->config, *rediscovered);
    if (!new_resources.ok()) {
      spdlog::error("reload rejected, keeping the running configuration: {}",
                    std::string(new_resources.status().message()));
      continue;
    }
    LogResources(*new_resources);
    gates.Sync(*new_resources, reloaded->config.flags.mps_root);
    manager.Update(*new_resources, ResponseOptionsFrom(reloaded->config));
    health.Watch(*rediscovered);
    config = reloaded->config;
    inventory = std::move(rediscovered);
  }

  // Does not wait for the health thread's NVML event wait (up to 5 s); see HealthMonitor::Stop.
  const bool nvml_idle = health.Stop();
  gates.Sync({}, std::nullopt);
  manager.Stop();
  ledgers.Stop();
  if (nvml_idle) {
    (*nvml)->Shutdown().IgnoreError();
    spdlog::info("stopped");
    return 0;
  }
  // The health thread is still blocked in nvmlEventSetWait_v2: shutting NVML down or unloading it
  // under that wait is undefined, and so is running the libraries' static destructors (NVML's
  // among them) under it. The process is done: leave NVML, the thread and the rest to the kernel.
  static_cast<void>(nvml->release());
  spdlog::info("stopped");
  ExitWithoutStaticDestructors(0);
}

}  // namespace nvdp::app
