// nvdp-demo: the plugin's main job on a simulated node, end to end.
//
// Starts, in a temp directory: a kubelet stand-in (tests/fakes/kubelet), mps-control-daemon
// driving the fake nvidia-cuda-mps-control, and nvidia-device-plugin on the fake NVML's
// 8x A100-SXM4-40GB node, configured with GPUs 0-3 shared through MPS as 100 shares each
// (nvidia.com/gpu.shared) and GPUs 4-7 whole (nvidia.com/gpu). Then admits a few containers the
// way kubelet does and prints what each would receive. A second scene runs the same daemons on the
// A100 node with MIG (mixed strategy) and flexible MPS on its 1g.5gb MIG devices.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "fakes/kubelet/test_kubelet.h"
#include "mps/process.h"

namespace {

using nvdp::testing::TestKubelet;
constexpr auto kWait = std::chrono::seconds(30);
constexpr char kShared[] = "nvidia.com/gpu.shared";
constexpr char kWhole[] = "nvidia.com/gpu";

std::string SelfDir() {
  return std::filesystem::read_symlink("/proc/self/exe").parent_path().string();
}

void Print(const std::string& line) { std::printf("%s\n", line.c_str()); }

size_t CountHealthy(const std::vector<nvdp::testing::DeviceState>& devices) {
  return static_cast<size_t>(
      std::count_if(devices.begin(), devices.end(), [](const auto& d) { return d.healthy; }));
}

// Which GPU (by its place in the advertised list) a set of share IDs lives on.
std::string GpuOf(const std::vector<std::string>& ids) {
  std::vector<std::string> uuids;
  for (const auto& id : ids) {
    std::string uuid = id.substr(0, id.find("::"));
    if (uuids.empty() || uuids.back() != uuid) uuids.push_back(uuid);
  }
  return absl::StrJoin(uuids, ",");
}

void Show(const std::string& title, const absl::StatusOr<nvdp::testing::Admission>& admission) {
  Print("");
  Print("== " + title);
  if (!admission.ok()) {
    Print("   refused: " + std::string(admission.status().message()));
    return;
  }
  Print(absl::StrCat("   devices : ", admission->device_ids.size(), " ID(s) on ",
                     GpuOf(admission->device_ids)));
  std::map<std::string, std::string> envs(admission->response.envs().begin(),
                                          admission->response.envs().end());
  for (const auto& [key, value] : envs) Print("   env     : " + key + "=" + value);
  for (const auto& mount : admission->response.mounts()) {
    Print("   mount   : " + mount.host_path() + " -> " + mount.container_path());
  }
  for (const auto& device : admission->response.devices()) {
    Print("   device  : " + device.host_path() + " -> " + device.container_path());
  }
}

// One simulated node in a temp directory: the kubelet stand-in (with PodResources),
// mps-control-daemon and nvidia-device-plugin on a fake NVML node. Stops everything and removes
// the directory on destruction.
class SimulatedNode {
 public:
  struct Options {
    std::string node;         // fake NVML node description
    std::string config;       // the config file; "<mps-root>" is replaced by the MPS root
    std::string driver_root;  // NVDP_DRIVER_ROOT; empty: not set
    std::vector<std::string> plugin_args;
    bool verbose = false;
  };

  explicit SimulatedNode(const Options& options) {
    char pattern[] = "/tmp/nvdp-demo-XXXXXX";
    tmp_ = ::mkdtemp(pattern);
    const std::string plugin_dir = tmp_ + "/dp";
    const std::string mps_root = tmp_ + "/mps";
    std::filesystem::create_directories(plugin_dir);
    std::filesystem::create_directories(mps_root);
    const std::string config_path = tmp_ + "/config.yaml";
    std::ofstream(config_path) << absl::StrReplaceAll(options.config, {{"<mps-root>", mps_root}});

    const std::string bin = SelfDir();
    std::vector<std::string> env = nvdp::mps::InheritedEnvironment();
    env.push_back("FAKE_NVML_NODE=" + options.node);
    if (!options.driver_root.empty()) env.push_back("NVDP_DRIVER_ROOT=" + options.driver_root);
    const std::vector<std::string> common = {
        "--config-file=" + config_path,
        "--nvml-library=" + bin + "/../lib/fake-nvml/libnvidia-ml.so.1",
        "--mps-control-binary=" + bin + "/fake-mps-control",
        options.verbose ? "--log-level=info" : "--log-level=warn"};
    Print("nvdp demo: simulated node " + std::filesystem::path(options.node).filename().string() +
          ", work dir " + tmp_);

    auto kubelet = TestKubelet::Start(plugin_dir);
    if (!kubelet.ok()) {
      std::fprintf(stderr, "kubelet stand-in: %s\n",
                   std::string(kubelet.status().message()).c_str());
      return;
    }
    kubelet_ = *std::move(kubelet);
    // The stand-in serves kubelet's PodResources API too: the plugin reads it for capacity
    // shaping.
    const std::string pod_resources = tmp_ + "/pod-resources/kubelet.sock";
    std::filesystem::create_directories(tmp_ + "/pod-resources");
    if (auto status = kubelet_->StartPodResources(pod_resources); !status.ok()) {
      std::fprintf(stderr, "PodResources stand-in: %s\n", std::string(status.message()).c_str());
      return;
    }

    nvdp::mps::CommandSpec mpsd;
    mpsd.program = bin + "/mps-control-daemon";
    mpsd.args = common;
    mpsd.env = env;
    mpsd.args.push_back("--set-compute-mode=false");
    nvdp::mps::CommandSpec plugin;
    plugin.program = bin + "/nvidia-device-plugin";
    plugin.args = common;
    plugin.env = env;
    plugin.args.push_back("--kubelet-socket=" + plugin_dir + "/kubelet.sock");
    plugin.args.push_back("--pod-resources-socket=" + pod_resources);
    plugin.args.push_back("--pod-resources-period=200ms");
    plugin.args.insert(plugin.args.end(), options.plugin_args.begin(), options.plugin_args.end());
    auto daemon = nvdp::mps::RealProcessRunner().Spawn(mpsd);
    auto device_plugin = nvdp::mps::RealProcessRunner().Spawn(plugin);
    if (!daemon.ok() || !device_plugin.ok()) std::fprintf(stderr, "cannot start the daemons\n");
    if (daemon.ok()) mps_daemon_ = *std::move(daemon);
    if (device_plugin.ok()) plugin_ = *std::move(device_plugin);
  }

  ~SimulatedNode() {
    for (auto* child : {&plugin_, &mps_daemon_}) {
      if (*child) (*child)->Terminate(absl::Seconds(10));
    }
    kubelet_.reset();
    std::filesystem::remove_all(tmp_);
  }

  SimulatedNode(const SimulatedNode&) = delete;
  SimulatedNode& operator=(const SimulatedNode&) = delete;

  bool started() const { return kubelet_ && mps_daemon_ && plugin_; }
  TestKubelet& kubelet() { return *kubelet_; }

  // Waits until each of `resources` registered, then prints what kubelet got for it.
  bool AwaitRegistrations(const std::vector<std::string>& resources) {
    for (const auto& resource : resources) {
      if (!kubelet_->WaitForRegistrations(resource, 1, kWait)) {
        std::fprintf(stderr, "the plugin did not register %s in time\n", resource.c_str());
        return false;
      }
    }
    return true;
  }
  void PrintRegistrations(const std::vector<std::string>& resources) {
    for (const auto& resource : resources) {
      auto devices = kubelet_->Devices(resource);
      auto request = kubelet_->LastRegistration(resource);
      Print(absl::StrCat("kubelet: ", resource, " registered (endpoint ", request->endpoint(),
                         "), ", CountHealthy(devices), " healthy devices"));
    }
  }
  // Waits until every device of `resource` is healthy (MPS shares: their daemons answer).
  bool AwaitAllHealthy(const std::string& resource) {
    return kubelet_->WaitForDevices(
        resource, [](const auto& d) { return !d.empty() && CountHealthy(d) == d.size(); }, kWait);
  }

 private:
  std::string tmp_;
  std::unique_ptr<TestKubelet> kubelet_;
  std::unique_ptr<nvdp::mps::ChildProcess> mps_daemon_, plugin_;
};

// Whole GPUs, and GPUs shared with flexible MPS. Returns whether it ran.
bool GpuScene(const std::string& node, bool verbose) {
  SimulatedNode sim({.node = node,
                     .config = "version: v1\n"
                               "flags:\n"
                               "  mpsRoot: <mps-root>\n"
                               "sharing:\n"
                               "  mps:\n"
                               "    perContainerLimits: true\n"
                               "    resources:\n"
                               "    - name: gpu\n"
                               "      rename: gpu.shared\n"
                               "      devices: [0, 1, 2, 3]\n"
                               "      replicas: 100\n",
                     .driver_root = "",
                     .plugin_args = {},
                     .verbose = verbose});
  Print("config: GPUs 0-3 shared with MPS as 100 shares each (" + std::string(kShared) +
        "), GPUs 4-7 whole (" + kWhole + ")");
  const std::vector<std::string> resources = {kWhole, kShared};
  if (!sim.started() || !sim.AwaitRegistrations(resources) || !sim.AwaitAllHealthy(kShared)) {
    return false;
  }
  sim.PrintRegistrations(resources);
  TestKubelet& kubelet = sim.kubelet();
  Show("container A asks for nvidia.com/gpu.shared: 30", kubelet.Admit(kShared, 30));
  Show("container B asks for nvidia.com/gpu.shared: 70 (best fit: same GPU as A)",
       kubelet.Admit(kShared, 70));
  Show("container C asks for nvidia.com/gpu.shared: 50", kubelet.Admit(kShared, 50));
  Show("container D asks for nvidia.com/gpu.shared: 150 (would span GPUs unevenly)",
       kubelet.Admit(kShared, 150));
  Show("container E asks for nvidia.com/gpu.shared: 60 (does not fit next to C: a free GPU)",
       kubelet.Admit(kShared, 60));
  // Two partly used GPUs now: 50 free next to C, 40 next to E. Only the larger hole is
  // advertised, so the scheduler's count never admits a pod that fits nowhere.
  const bool shaped = kubelet.WaitForDevices(
      kShared, [](const auto& d) { return CountHealthy(d) == 360; }, kWait);
  Print(absl::StrCat("kubelet: ", kShared, " allocatable ", kubelet.Allocatable(kShared), " of 400",
                     shaped ? " (capacity shaping hides E's GPU's 40 free shares: "
                              "the largest hole, 50 next to C, stays advertised)"
                            : ""));
  Show("container G asks for nvidia.com/gpu.shared: 100 (one whole GPU)",
       kubelet.Admit(kShared, 100));
  Show("container F asks for nvidia.com/gpu: 1", kubelet.Admit(kWhole, 1));
  return true;
}

// MIG on GPUs 0-5 of the A100 node under `mixed`, the 1g.5gb MIG devices shared with flexible MPS
// (one MPS daemon per MIG device), device nodes passed. Returns whether it ran.
bool MigScene(const std::string& nodes_dir, bool verbose) {
  constexpr char kMig1g[] = "nvidia.com/mig-1g.5gb";
  constexpr char kMig3g[] = "nvidia.com/mig-3g.20gb";
  Print("");
  Print("---- MIG: GPUs 0-5 partitioned (GPUs 6-7 whole), migStrategy: mixed");
  SimulatedNode sim({.node = nodes_dir + "/a100-sxm4-40gb-x8-mig-mixed.json",
                     .config = "version: v1\n"
                               "flags:\n"
                               "  migStrategy: mixed\n"
                               "  mpsRoot: <mps-root>\n"
                               "sharing:\n"
                               "  mps:\n"
                               "    perContainerLimits: true\n"
                               "    resources:\n"
                               "    - name: mig-1g.5gb\n"
                               "      replicas: 10\n",
                     .driver_root = nodes_dir + "/a100-sxm4-40gb-x8-mig-mixed-proc",
                     .plugin_args = {"--pass-device-specs"},
                     .verbose = verbose});
  Print(absl::StrCat("config: ", kMig1g, " shared with MPS as 10 shares per MIG device (one MPS ",
                     "daemon each); other MIG profiles whole"));
  const std::vector<std::string> resources = {kWhole, kMig3g, "nvidia.com/mig-2g.10gb",
                                              "nvidia.com/mig-1g.5gb.me", kMig1g};
  if (!sim.started() || !sim.AwaitRegistrations(resources) || !sim.AwaitAllHealthy(kMig1g)) {
    return false;
  }
  sim.PrintRegistrations(resources);
  TestKubelet& kubelet = sim.kubelet();
  Show("container M asks for nvidia.com/mig-1g.5gb: 3 (30% of one 1g.5gb MIG device)",
       kubelet.Admit(kMig1g, 3));
  Show("container N asks for nvidia.com/mig-3g.20gb: 1 (a whole MIG device)",
       kubelet.Admit(kMig3g, 1));
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"Runs the device plugin on a simulated 8x A100-40GB node and admits containers"};
  std::string node = NVDP_DEMO_NODE;
  bool verbose = false;
  cli.add_option("--node", node, "fake NVML node description (JSON)")->capture_default_str();
  cli.add_flag("--verbose", verbose, "show the daemons' logs");
  CLI11_PARSE(cli, argc, argv);

  // The MIG scene's node lies next to the default one.
  const std::string nodes_dir = std::filesystem::path(NVDP_DEMO_NODE).parent_path().string();
  const bool ok = GpuScene(node, verbose) && MigScene(nodes_dir, verbose);
  Print("");
  Print(ok ? "demo finished: the daemons stopped cleanly" : "demo failed");
  return ok ? 0 : 1;
}
