#include "integration/daemon_harness.h"

#include <cstdlib>

#include "nlohmann/json.hpp"

namespace nvdp::testing {

std::vector<NodeGpu> ReadNodeGpus(const std::string& node_file) {
  std::ifstream in(node_file);
  auto json = nlohmann::json::parse(in);
  std::vector<NodeGpu> gpus;
  for (const auto& gpu : json.at("gpus")) {
    gpus.push_back({gpu.at("uuid").get<std::string>(), gpu.at("minor").get<unsigned>()});
  }
  return gpus;
}

DaemonHarness::DaemonHarness() {
  char pattern[] = "/tmp/nvdp-it-XXXXXX";
  const char* dir = ::mkdtemp(pattern);
  EXPECT_NE(dir, nullptr);
  tmp_ = dir;
  std::filesystem::create_directories(plugin_dir());
  std::ofstream(tmp_ + "/events").close();
}

DaemonHarness::~DaemonHarness() {
  if (daemon_ && !daemon_->Poll()) daemon_->Terminate(absl::Seconds(5));
  daemon_.reset();
  kubelet_.reset();
  std::error_code ec;
  std::filesystem::remove_all(tmp_, ec);
}

void DaemonHarness::StartKubelet() {
  auto kubelet = TestKubelet::Start(plugin_dir());
  ASSERT_TRUE(kubelet.ok()) << kubelet.status();
  kubelet_ = std::move(*kubelet);
}

void DaemonHarness::WriteConfig(const std::string& yaml) {
  std::ofstream(config_path()) << yaml;
  has_config_ = true;
}

void DaemonHarness::StartDaemon(const std::string& node, const std::vector<std::string>& args,
                                const std::vector<std::string>& env) {
  mps::CommandSpec spec;
  spec.program = BinDir() + "/nvidia-device-plugin";
  spec.args = {"--nvml-library=" + FakeNvmlLibrary(),
               "--kubelet-socket=" + plugin_dir() + "/kubelet.sock"};
  if (has_config_) spec.args.push_back("--config-file=" + config_path());
  spec.args.insert(spec.args.end(), args.begin(), args.end());
  spec.env = mps::InheritedEnvironment();
  spec.env.push_back("FAKE_NVML_NODE=" + NodeFile(node));
  spec.env.push_back("FAKE_NVML_EVENTS=" + tmp_ + "/events");
  spec.env.push_back("NVDP_SYSFS_ROOT=" + SourceDir() + "/tests/fakes/nvml/nodes/a100-sysfs");
  spec.env.insert(spec.env.end(), env.begin(), env.end());
  auto child = mps::RealProcessRunner().Spawn(spec);
  ASSERT_TRUE(child.ok()) << child.status();
  daemon_ = std::move(*child);
}

void DaemonHarness::Signal(int sig) {
  ASSERT_NE(daemon_, nullptr);
  ::kill(daemon_->pid(), sig);
}

std::optional<mps::ExitStatus> DaemonHarness::WaitForExit(absl::Duration timeout) {
  return daemon_ ? daemon_->Wait(timeout) : std::nullopt;
}

void DaemonHarness::InjectEvent(const std::string& line) {
  std::ofstream(tmp_ + "/events", std::ios::app) << line << "\n";
}

}  // namespace nvdp::testing
