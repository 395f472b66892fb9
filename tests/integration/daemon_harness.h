// DaemonHarness: runs the real nvidia-device-plugin binary against the fake NVML library and the
// test kubelet, in a private temp directory (short, so socket paths stay under 108 bytes).
//
// Not thread-safe; one per test.
#pragma once

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fakes/kubelet/test_kubelet.h"
#include "gtest/gtest.h"
#include "mps/process.h"
#include "nvml/fake_nvml_env.h"

namespace nvdp::testing {

inline constexpr milliseconds kWait{20000};  // upper bound for awaited events, never slept

using testutil::BinDir;
using testutil::FakeNvmlLibrary;
using testutil::SourceDir;
// A shipped node description by name, or `name` itself when it is an absolute path (a node file
// a test wrote).
inline std::string NodeFile(const std::string& name) {
  return name.starts_with('/') ? name : testutil::FakeNvmlNode(name);
}

struct NodeGpu {
  std::string uuid;
  unsigned minor;
};
// The GPUs of a fake node description (UUIDs and minors, by index).
std::vector<NodeGpu> ReadNodeGpus(const std::string& node_file);

// Polls `predicate` every 10 ms until it holds or `timeout` passes; for state that offers nothing
// to wait on (files, logs). Returns whether it held.
bool WaitUntil(const std::function<bool()>& predicate, milliseconds timeout = kWait);

class DaemonHarness {
 public:
  DaemonHarness();
  ~DaemonHarness();

  // Starts the test kubelet on <tmp>/dp/kubelet.sock.
  void StartKubelet();
  TestKubelet& kubelet() { return *kubelet_; }

  void WriteConfig(const std::string& yaml);
  // A per-container MPS config under mps_root(): GPUs `devices` (a YAML list such as "[0, 1]";
  // empty: all) shared as nvidia.com/gpu.shared with `replicas` shares each; the rest stay
  // nvidia.com/gpu.
  void WriteSharedMpsConfig(int replicas, const std::string& devices = "");
  // Starts the daemon. Flags: --nvml-library (fake), --kubelet-socket, --config-file if a config
  // was written, plus `args`. Env: FAKE_NVML_NODE=<node>, FAKE_NVML_EVENTS, NVDP_SYSFS_ROOT, plus
  // `env` ("K=V").
  void StartDaemon(const std::string& node = "a100-sxm4-40gb-x8.json",
                   const std::vector<std::string>& args = {},
                   const std::vector<std::string>& env = {});
  // Another plugin process as StartDaemon would start it, logging to `log`; owned by the caller.
  std::unique_ptr<mps::ChildProcess> SpawnDaemon(const std::string& node,
                                                 const std::vector<std::string>& args,
                                                 const std::vector<std::string>& env,
                                                 const std::string& log);
  // Off: the plugin gets no --nvml-library and finds NVML as in production (under
  // --driver-root-ctr-path, then the bare soname).
  void set_pass_nvml_library(bool pass) { pass_nvml_library_ = pass; }
  // The plugin's --mps-probe-period (seconds; default "0.2").
  void set_mps_probe_period(const std::string& seconds) { mps_probe_period_ = seconds; }
  int daemon_pid() const;      // -1 when not started
  int mps_daemon_pid() const;  // -1 when not started
  // The pid of the fake nvidia-cuda-mps-control daemon serving `resource` (full name) under
  // mps-control-daemon, as it wrote it in its log directory; nullopt when none was written (or it
  // exited cleanly). It may be stale after the daemon was killed.
  std::optional<int> FakeMpsControlPid(const std::string& resource) const;
  // Starts mps-control-daemon (the real binary) on the same config, driving the fake
  // nvidia-cuda-mps-control, without touching compute modes; on `node` (as for StartDaemon), with
  // `env` ("K=V") added.
  void StartMpsDaemon(const std::vector<std::string>& args = {},
                      const std::string& node = "a100-sxm4-40gb-x8.json",
                      const std::vector<std::string>& env = {});
  void StopMpsDaemon();
  void Signal(int sig);
  // The daemon's log so far (its stderr goes to a file).
  std::string DaemonLog() const;
  // Waits for the daemon to exit (after a signal), returning its status.
  std::optional<mps::ExitStatus> WaitForExit(absl::Duration timeout = absl::Seconds(20));
  // Appends a line to the fake NVML's event file ("xid <uuid> <n>").
  void InjectEvent(const std::string& line);

  std::string tmp() const { return tmp_; }
  std::string plugin_dir() const { return tmp_ + "/dp"; }
  // Passed as --pod-resources-socket (a later --pod-resources-socket in `args` wins).
  std::string pod_resources_socket() const { return tmp_ + "/pod-resources/kubelet.sock"; }
  std::string config_path() const { return tmp_ + "/config.yaml"; }
  std::string mps_root() const { return tmp_ + "/mps"; }

 private:
  std::string tmp_;
  std::unique_ptr<TestKubelet> kubelet_;
  std::unique_ptr<mps::ChildProcess> daemon_;
  std::unique_ptr<mps::ChildProcess> mps_daemon_;
  bool has_config_ = false;
  bool pass_nvml_library_ = true;
  std::string mps_probe_period_ = "0.2";
};

}  // namespace nvdp::testing
