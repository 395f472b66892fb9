// nvdp-demo: the plugin's main job on a simulated node, end to end.
//
// Starts, in a temp directory: a kubelet stand-in (tests/fakes/kubelet), mps-control-daemon
// driving the fake nvidia-cuda-mps-control, and nvidia-device-plugin on the fake NVML's
// 8x A100-SXM4-40GB node, configured with GPUs 0-3 shared through MPS as 100 shares each
// (nvidia.com/gpu.shared) and GPUs 4-7 whole (nvidia.com/gpu). Then admits a few containers the
// way kubelet does and prints what each would receive.
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
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"Runs the device plugin on a simulated 8x A100-40GB node and admits containers"};
  std::string node = NVDP_DEMO_NODE;
  bool verbose = false;
  cli.add_option("--node", node, "fake NVML node description (JSON)")->capture_default_str();
  cli.add_flag("--verbose", verbose, "show the daemons' logs");
  CLI11_PARSE(cli, argc, argv);

  char pattern[] = "/tmp/nvdp-demo-XXXXXX";
  const std::string tmp = ::mkdtemp(pattern);
  const std::string plugin_dir = tmp + "/dp";
  const std::string mps_root = tmp + "/mps";
  std::filesystem::create_directories(plugin_dir);
  std::filesystem::create_directories(mps_root);
  const std::string config_path = tmp + "/config.yaml";
  std::ofstream(config_path) << "version: v1\n"
                                "flags:\n"
                                "  mpsRoot: "
                             << mps_root
                             << "\n"
                                "sharing:\n"
                                "  mps:\n"
                                "    perContainerLimits: true\n"
                                "    resources:\n"
                                "    - name: gpu\n"
                                "      rename: gpu.shared\n"
                                "      devices: [0, 1, 2, 3]\n"
                                "      replicas: 100\n";

  const std::string bin = SelfDir();
  const std::string level = verbose ? "--log-level=info" : "--log-level=warn";
  std::vector<std::string> env = nvdp::mps::InheritedEnvironment();
  env.push_back("FAKE_NVML_NODE=" + node);
  const std::vector<std::string> common = {
      "--config-file=" + config_path,
      "--nvml-library=" + bin + "/../lib/fake-nvml/libnvidia-ml.so.1",
      "--mps-control-binary=" + bin + "/fake-mps-control", level};

  Print("nvdp demo: simulated node " + std::filesystem::path(node).filename().string() +
        ", work dir " + tmp);
  Print("config: GPUs 0-3 shared with MPS as 100 shares each (" + std::string(kShared) +
        "), GPUs 4-7 whole (" + kWhole + ")");

  auto kubelet = TestKubelet::Start(plugin_dir);
  if (!kubelet.ok()) {
    std::fprintf(stderr, "kubelet stand-in: %s\n", std::string(kubelet.status().message()).c_str());
    return 1;
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
  // The stand-in serves kubelet's PodResources API too: the plugin reads it for capacity shaping.
  const std::string pod_resources = tmp + "/pod-resources/kubelet.sock";
  std::filesystem::create_directories(tmp + "/pod-resources");
  if (auto status = (*kubelet)->StartPodResources(pod_resources); !status.ok()) {
    std::fprintf(stderr, "PodResources stand-in: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  plugin.args.push_back("--pod-resources-socket=" + pod_resources);
  plugin.args.push_back("--pod-resources-period=200ms");

  auto daemon = nvdp::mps::RealProcessRunner().Spawn(mpsd);
  auto device_plugin = nvdp::mps::RealProcessRunner().Spawn(plugin);
  int exit_code = 0;
  if (!daemon.ok() || !device_plugin.ok()) {
    std::fprintf(stderr, "cannot start the daemons\n");
    exit_code = 1;
  } else if (!(*kubelet)->WaitForRegistrations(kWhole, 1, kWait) ||
             !(*kubelet)->WaitForRegistrations(kShared, 1, kWait) ||
             !(*kubelet)->WaitForDevices(
                 kShared, [](const auto& d) { return d.size() == 400 && d[0].healthy; }, kWait)) {
    std::fprintf(stderr, "the plugin did not register both resources in time\n");
    exit_code = 1;
  } else {
    for (const char* resource : {kWhole, kShared}) {
      auto devices = (*kubelet)->Devices(resource);
      auto request = (*kubelet)->LastRegistration(resource);
      Print(absl::StrCat("kubelet: ", resource, " registered (endpoint ", request->endpoint(),
                         "), ", devices.size(), " healthy devices"));
    }
    Show("container A asks for nvidia.com/gpu.shared: 30", (*kubelet)->Admit(kShared, 30));
    Show("container B asks for nvidia.com/gpu.shared: 70 (best fit: same GPU as A)",
         (*kubelet)->Admit(kShared, 70));
    Show("container C asks for nvidia.com/gpu.shared: 50", (*kubelet)->Admit(kShared, 50));
    Show("container D asks for nvidia.com/gpu.shared: 150 (would span GPUs unevenly)",
         (*kubelet)->Admit(kShared, 150));
    Show("container E asks for nvidia.com/gpu.shared: 60 (does not fit next to C: a free GPU)",
         (*kubelet)->Admit(kShared, 60));
    // Two partly used GPUs now: 50 free next to C, 40 next to E. Only the larger hole is
    // advertised, so the scheduler's count never admits a pod that fits nowhere.
    const bool shaped = (*kubelet)->WaitForDevices(
        kShared, [](const auto& d) { return CountHealthy(d) == 360; }, kWait);
    Print(absl::StrCat("kubelet: ", kShared, " allocatable ", (*kubelet)->Allocatable(kShared),
                       " of 400",
                       shaped ? " (capacity shaping hides E's GPU's 40 free shares: "
                                "the largest hole, 50 next to C, stays advertised)"
                              : ""));
    Show("container G asks for nvidia.com/gpu.shared: 100 (one whole GPU)",
         (*kubelet)->Admit(kShared, 100));
    Show("container F asks for nvidia.com/gpu: 1", (*kubelet)->Admit(kWhole, 1));
  }

  for (auto* child : {&device_plugin, &daemon}) {
    if (child->ok()) (**child)->Terminate(absl::Seconds(10));
  }
  kubelet->reset();
  std::filesystem::remove_all(tmp);
  Print("");
  Print(exit_code == 0 ? "demo finished: both daemons stopped cleanly" : "demo failed");
  return exit_code;
}
