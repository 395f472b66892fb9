// mps-control-daemon: starts and supervises one NVIDIA MPS control daemon per
// MPS resource of the plugin's configuration (same config file, flags and
// environment as the plugin), until SIGTERM / SIGINT / SIGQUIT. SIGHUP reloads
// the configuration as the plugin does: a bad one is rejected and the running
// daemons are kept; a good one restarts only the daemons whose resource
// changed. SIGCHLD wakes the supervisor, so a daemon that dies is marked down
// (its .started removed) at once. One instance per MPS root (a lock on
// <mpsRoot>/.lock): a second one waits, saying who holds the root.
//
//   mps-control-daemon [run]      the supervisor (default)
//   mps-control-daemon mount-shm  mounts the tmpfs at <mpsRoot>/shm, then exits
//
// The work is done by the nvdp_mps library (mps/supervisor.h, mps/shm.h); this
// file only wires config, NVML and signals to it.
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "config/loader.h"
#include "config/version.h"
#include "device/inventory.h"
#include "logging/logging.h"
#include "mps/clock.h"
#include "mps/process.h"
#include "mps/root_lock.h"
#include "mps/shm.h"
#include "mps/supervisor.h"
#include "mpsd/daemon_specs.h"
#include "nvml/dl_nvml.h"
#include "sharing/sharing.h"
#include "spdlog/spdlog.h"

namespace {

using nvdp::mps::Supervisor;

std::optional<std::string> GetEnv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

sigset_t HandledSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGCHLD}) sigaddset(&set, sig);
  return set;
}

// Our own options (the config's are registered by config::AddFlags).
struct MpsdFlags {
  // Empty: found under the container driver root, then in PATH (FindDriverProgram).
  std::string control_binary;
  std::string nvidia_smi;
  bool set_compute_mode = true;
  std::string launch_mode = "foreground";
  double liveness_period_s = 30;
  double ready_timeout_s = 60;
  std::string log_level = "info";
};

// Routes signals (taken synchronously on a dedicated thread) to the main loop, and
// stop signals to the supervisor of the moment too, so a start in progress is cut
// short. SIGCHLD only wakes the supervisor (a foreground daemon may have died).
class SignalRouter {
 public:
  void Attach(Supervisor* supervisor) {
    absl::MutexLock lock(&mu_);
    supervisor_ = supervisor;
    if (supervisor_ != nullptr && stop_pending_) supervisor_->RequestStop();
  }
  void Deliver(int sig) {
    absl::MutexLock lock(&mu_);
    if (sig == SIGCHLD) {
      if (supervisor_ != nullptr) supervisor_->Wake();
      return;
    }
    signals_.push_back(sig);
    if (sig != SIGHUP) {
      stop_pending_ = true;
      if (supervisor_ != nullptr) supervisor_->RequestStop();
    }
  }
  // The next signal, in order of arrival; nullopt after `timeout`.
  std::optional<int> Next(absl::Duration timeout = absl::InfiniteDuration()) {
    absl::MutexLock lock(&mu_);
    auto any = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !signals_.empty(); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&any), timeout)) return std::nullopt;
    const int sig = signals_.front();
    signals_.pop_front();
    return sig;
  }

 private:
  absl::Mutex mu_;
  Supervisor* supervisor_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<int> signals_ ABSL_GUARDED_BY(mu_);
  bool stop_pending_ ABSL_GUARDED_BY(mu_) = false;
};

int MountShm(const nvdp::config::Config& config) {
  // flags.mpsRoot defaults to /run/nvidia/mps; it is unset only when set to "" explicitly.
  if (!config.flags.mps_root.has_value() || config.flags.mps_root->empty()) {
    spdlog::error(
        "mount-shm: the MPS root was set to \"\" (--mps-root / MPS_ROOT / flags.mpsRoot)");
    return 1;
  }
  auto mounted = nvdp::mps::MountShm(*config.flags.mps_root);
  if (!mounted.ok()) {
    spdlog::error("mount-shm: {}", std::string(mounted.status().message()));
    return 1;
  }
  if (mounted->already_mounted) {
    spdlog::info("mount-shm: a tmpfs is already mounted at {}; leaving it", mounted->path);
  } else {
    spdlog::info("mount-shm: mounted a tmpfs of {} at {}", mounted->size, mounted->path);
  }
  return 0;
}

// Loads config + NVML + inventory and returns the daemons to run (possibly
// none).
// What one load of the configuration asks for.
struct Loaded {
  std::vector<nvdp::mps::DaemonSpec> specs;  // possibly none
  std::optional<std::string> mps_root;       // "" or nullopt only when explicitly emptied
  std::string container_driver_root;         // where driver programs are looked for first
};

absl::StatusOr<Loaded> LoadSpecs(const nvdp::config::FlagOverrides& command_line,
                                 const nvdp::config::FlagOverrides& env) {
  auto loaded = nvdp::config::LoadConfig(command_line, env);
  if (!loaded.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid configuration:\n", loaded.status().message()));
  }
  for (const auto& warning : loaded->warnings) spdlog::warn("config: {}", warning);
  const nvdp::config::Config& config = loaded->config;
  Loaded out;
  out.mps_root = config.flags.mps_root;
  out.container_driver_root = config.flags.plugin.container_driver_root;
  if (config.sharing.mps.resources.empty()) return out;

  const auto candidates =
      config.flags.nvml_library
          ? std::vector<std::string>{*config.flags.nvml_library}
          : nvdp::nvml::NvmlLibraryCandidates(config.flags.plugin.container_driver_root);
  auto nvml = nvdp::nvml::LoadNvml(candidates);
  if (!nvml.ok())
    return absl::Status(nvml.status().code(),
                        absl::StrCat("cannot load NVML: ", nvml.status().message()));
  if (absl::Status s = (*nvml)->Init(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("NVML init failed: ", s.message()));
  }
  auto inventory = nvdp::device::DiscoverInventory(
      **nvml, {.sysfs_root = GetEnv("NVDP_SYSFS_ROOT").value_or("/sys"),
               .driver_root = GetEnv("NVDP_DRIVER_ROOT").value_or("/")});
  (*nvml)->Shutdown().IgnoreError();
  if (!inventory.ok()) {
    return absl::Status(inventory.status().code(),
                        absl::StrCat("GPU discovery failed: ", inventory.status().message()));
  }
  auto resources = nvdp::sharing::BuildResources(config, *inventory);
  if (!resources.ok()) {
    return absl::Status(resources.status().code(),
                        absl::StrCat("cannot apply the configuration to this node: ",
                                     resources.status().message()));
  }
  out.specs = nvdp::mpsd::MpsDaemonSpecs(*resources);
  return out;
}

// The driver programs the daemons run: given by flag (a path, or a name searched in PATH), else
// found under the container driver root, then in PATH.
struct DriverPrograms {
  std::string control_binary;
  std::string nvidia_smi;  // empty when compute modes are left alone
};

absl::StatusOr<DriverPrograms> FindDriverPrograms(const MpsdFlags& flags,
                                                  const std::string& container_driver_root) {
  const char* env_path = std::getenv("PATH");
  const std::string path = env_path != nullptr ? env_path : "";
  auto find = [&](const std::string& given, const char* name) -> absl::StatusOr<std::string> {
    if (!given.empty()) return nvdp::mps::ResolveProgram(given, path);
    return nvdp::mps::FindDriverProgram(name, container_driver_root, path);
  };
  DriverPrograms programs;
  auto control = find(flags.control_binary, nvdp::mps::kDefaultControlBinary);
  if (!control.ok()) {
    return absl::NotFoundError(
        absl::StrCat("cannot find the MPS control binary: ", control.status().message(),
                     " (set --mps-control-binary / MPS_CONTROL_BINARY, or mount the driver root "
                     "at --driver-root-ctr-path)"));
  }
  programs.control_binary = *control;
  if (flags.set_compute_mode) {
    auto smi = find(flags.nvidia_smi, "nvidia-smi");
    if (!smi.ok()) {
      return absl::NotFoundError(
          absl::StrCat("cannot find nvidia-smi to set compute modes with: ", smi.status().message(),
                       " (set --nvidia-smi / NVIDIA_SMI, or --set-compute-mode=false)"));
    }
    programs.nvidia_smi = *smi;
  }
  return programs;
}

nvdp::mps::SupervisorOptions SupervisorOptionsFor(const std::string& mps_root,
                                                  const MpsdFlags& flags,
                                                  const DriverPrograms& programs) {
  nvdp::mps::SupervisorOptions options;
  options.mps_root = mps_root;
  options.control_binary = programs.control_binary;
  if (!programs.nvidia_smi.empty()) options.nvidia_smi = programs.nvidia_smi;
  options.set_compute_mode = flags.set_compute_mode;
  options.launch_mode = flags.launch_mode == "background" ? nvdp::mps::LaunchMode::kBackground
                                                          : nvdp::mps::LaunchMode::kForeground;
  options.base_env = nvdp::mps::InheritedEnvironment();
  options.liveness_period = absl::Seconds(flags.liveness_period_s);
  options.ready_timeout = absl::Seconds(flags.ready_timeout_s);
  return options;
}

// Takes the MPS root's lock, waiting (and saying why) while another live instance holds it.
// nullptr when a stop signal came first, or on an error that waiting cannot cure.
std::unique_ptr<nvdp::mps::RootLock> LockRoot(const std::string& mps_root, SignalRouter& signals,
                                              bool* stopped) {
  bool said = false;
  while (true) {
    auto lock = nvdp::mps::RootLock::TryAcquire(mps_root);
    if (lock.ok()) {
      if (said) spdlog::info("the other instance released {}; starting", mps_root);
      return *std::move(lock);
    }
    if (lock.status().code() != absl::StatusCode::kFailedPrecondition) {
      spdlog::error("{}", std::string(lock.status().message()));
      return nullptr;
    }
    if (!said) spdlog::warn("{}; waiting for it to exit", std::string(lock.status().message()));
    said = true;
    if (auto sig = signals.Next(absl::Seconds(1)); sig.has_value() && *sig != SIGHUP) {
      *stopped = true;
      return nullptr;
    }
  }
}

// The MPS root to use, or an error naming the setting when it was emptied.
absl::StatusOr<std::string> RootOf(const std::optional<std::string>& mps_root) {
  if (mps_root.has_value() && !mps_root->empty()) return *mps_root;
  return absl::InvalidArgumentError(
      absl::StrCat("MPS sharing needs an MPS root, and it was set to \"\" (--mps-root / MPS_ROOT / "
                   "flags.mpsRoot; default ",
                   nvdp::config::kDefaultMpsRoot, ")"));
}

// Whether a loaded config can be run: an MPS root when there is anything to run, and the driver
// programs found. The programs found, when it can.
absl::StatusOr<DriverPrograms> CheckUsable(const Loaded& loaded, const MpsdFlags& flags) {
  if (loaded.specs.empty()) return DriverPrograms{};
  if (auto root = RootOf(loaded.mps_root); !root.ok()) return root.status();
  return FindDriverPrograms(flags, loaded.container_driver_root);
}

int Run(const nvdp::config::FlagOverrides& command_line, const nvdp::config::FlagOverrides& env,
        const MpsdFlags& flags, SignalRouter& signals) {
  auto loaded = LoadSpecs(command_line, env);
  if (!loaded.ok()) {
    spdlog::error("{}", std::string(loaded.status().message()));
    return 1;
  }
  // Each round runs one supervisor on one MPS root; a reload that moves the root starts a new one.
  while (true) {
    auto programs = CheckUsable(*loaded, flags);
    if (!programs.ok()) {
      spdlog::error("{}", std::string(programs.status().message()));
      return 1;
    }
    const std::string mps_root = RootOf(loaded->mps_root).value_or(nvdp::config::kDefaultMpsRoot);
    bool stopped = false;
    auto lock = LockRoot(mps_root, signals, &stopped);
    if (lock == nullptr) return stopped ? 0 : 1;
    if (loaded->specs.empty()) {
      spdlog::info(
          "no MPS sharing configured (sharing.mps.resources is empty); idling until stopped or "
          "reconfigured (SIGHUP)");
    }

    Supervisor supervisor(std::move(loaded->specs),
                          SupervisorOptionsFor(mps_root, flags, *programs),
                          nvdp::mps::RealProcessRunner(), nvdp::mps::RealClock());
    signals.Attach(&supervisor);
    if (absl::Status s = supervisor.StartAll(); !s.ok()) {
      spdlog::error("{}", std::string(s.message()));  // failed daemons are retried by Run
    }
    std::thread supervising([&supervisor] {
      nvdp::logging::NameThisThread("nvdp-supervisor");
      supervisor.Run();
    });
    bool next_round = false;
    while (!next_round) {
      const int sig = *signals.Next();
      if (sig != SIGHUP) break;
      spdlog::info("SIGHUP: reloading the configuration");
      auto reloaded = LoadSpecs(command_line, env);
      absl::Status usable = reloaded.status();
      if (usable.ok()) usable = CheckUsable(*reloaded, flags).status();
      if (!usable.ok()) {
        spdlog::error("reload rejected, keeping the running MPS control daemons: {}",
                      std::string(usable.message()));
        continue;
      }
      if (RootOf(reloaded->mps_root).value_or(mps_root) != mps_root ||
          (programs->control_binary.empty() && !reloaded->specs.empty())) {
        // A moved root, or the first MPS resources of a round started without any.
        spdlog::info("reload: starting the MPS control daemons anew");
        loaded = std::move(reloaded);
        next_round = true;
        continue;
      }
      if (absl::Status s = supervisor.Update(std::move(reloaded->specs)); !s.ok()) {
        spdlog::error("{}", std::string(s.message()));
      }
    }
    supervisor.RequestStop();
    supervising.join();
    signals.Attach(nullptr);
    spdlog::info("stopping the MPS control daemons");
    if (absl::Status s = supervisor.StopAll(); !s.ok()) {
      spdlog::error("while stopping: {}", std::string(s.message()));
    }
    if (!next_round) return 0;
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Before any thread exists, so every thread inherits the mask; children get
  // an empty mask.
  sigset_t handled = HandledSignals();
  pthread_sigmask(SIG_BLOCK, &handled, nullptr);

  CLI::App cli{"Runs one supervised NVIDIA MPS control daemon per MPS resource"};
  cli.set_version_flag("--version",
                       std::string("mps-control-daemon ") + nvdp::config::kPluginVersion);
  nvdp::config::FlagOverrides command_line;
  nvdp::config::AddFlags(cli, command_line);
  MpsdFlags flags;
  cli.add_option("--mps-control-binary", flags.control_binary,
                 "nvidia-cuda-mps-control to run: a path, or a name searched in PATH (default: "
                 "found under --driver-root-ctr-path's usr/bin, usr/sbin, bin, sbin, then PATH)")
      ->envname("MPS_CONTROL_BINARY")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cli.add_option("--nvidia-smi", flags.nvidia_smi,
                 "nvidia-smi to set compute modes with (default: found as the control binary is)")
      ->envname("NVIDIA_SMI")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cli.add_option("--set-compute-mode", flags.set_compute_mode,
                 "set the GPUs to EXCLUSIVE_PROCESS while their daemon runs "
                 "(DEFAULT after)")
      ->envname("MPS_SET_COMPUTE_MODE")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cli.add_option("--launch-mode", flags.launch_mode,
                 "foreground: run `-f` as our child (default); background: "
                 "`-d` as upstream")
      ->envname("MPS_LAUNCH_MODE")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->check(CLI::IsMember({"foreground", "background"}));
  cli.add_option("--liveness-period", flags.liveness_period_s, "seconds between liveness probes")
      ->envname("MPS_LIVENESS_PERIOD")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->check(CLI::PositiveNumber);
  cli.add_option("--ready-timeout", flags.ready_timeout_s, "seconds a started daemon has to answer")
      ->envname("MPS_READY_TIMEOUT")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->check(CLI::PositiveNumber);
  cli.add_option("--log-level", flags.log_level, "trace, debug, info, warn, error")
      ->envname("LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  CLI::App* run = cli.add_subcommand("run", "start and supervise the daemons (the default)");
  CLI::App* mount_shm =
      cli.add_subcommand("mount-shm", "mount the tmpfs at <mpsRoot>/shm (half of MemTotal)");
  cli.require_subcommand(0, 1);
  run->fallthrough();
  mount_shm->fallthrough();
  CLI11_PARSE(cli, argc, argv);

  nvdp::logging::Setup(flags.log_level);

  const nvdp::config::FlagOverrides env = nvdp::config::FlagsFromEnv(GetEnv);
  if (mount_shm->parsed()) {
    auto loaded = nvdp::config::LoadConfig(command_line, env);
    if (!loaded.ok()) {
      spdlog::error("invalid configuration:\n{}", std::string(loaded.status().message()));
      return 1;
    }
    return MountShm(loaded->config);
  }

  // Never destroyed: the signal thread may still use it while the process
  // exits.
  static SignalRouter* const signals = new SignalRouter();
  std::thread([handled] {
    nvdp::logging::NameThisThread("nvdp-signals");
    while (true) {
      int sig = 0;
      if (sigwait(&handled, &sig) != 0) continue;
      if (sig != SIGCHLD) spdlog::info("received signal {}", sig);
      signals->Deliver(sig);
    }
  }).detach();
  return Run(command_line, env, flags, *signals);
}
