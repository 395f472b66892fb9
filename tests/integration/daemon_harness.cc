#include "integration/daemon_harness.h"

#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <thread>

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

bool WaitUntil(const std::function<bool()>& predicate, milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!predicate()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

namespace {

// Runs `spec` with its stderr appended to `log` (through sh, which then execs the program).
mps::CommandSpec LoggedTo(mps::CommandSpec spec, const std::string& log) {
  std::vector<std::string> args = {"-c", "exec \"$0\" \"$@\" 2>>\"" + log + "\"", spec.program};
  args.insert(args.end(), spec.args.begin(), spec.args.end());
  spec.program = "/bin/sh";
  spec.args = std::move(args);
  return spec;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

DaemonHarness::DaemonHarness() {
  char pattern[] = "/tmp/nvdp-it-XXXXXX";
  const char* dir = ::mkdtemp(pattern);
  EXPECT_NE(dir, nullptr);
  tmp_ = dir;
  std::filesystem::create_directories(plugin_dir());
  std::filesystem::create_directories(mps_root());
  std::ofstream(tmp_ + "/events").close();
}

DaemonHarness::~DaemonHarness() {
  if (daemon_ && !daemon_->Poll()) daemon_->Terminate(absl::Seconds(5));
  daemon_.reset();
  StopMpsDaemon();
  if (::testing::Test::HasFailure()) {
    std::fprintf(stderr, "--- plugin log ---\n%s--- mps-control-daemon log ---\n%s",
                 DaemonLog().c_str(), ReadFile(tmp_ + "/mpsd.log").c_str());
  }
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

void DaemonHarness::WriteSharedMpsConfig(int replicas, const std::string& devices) {
  std::string yaml = "version: v1\nflags:\n  mpsRoot: " + mps_root() +
                     "\nsharing:\n  mps:\n    perContainerLimits: true\n    resources:\n"
                     "    - name: gpu\n      rename: gpu.shared\n";
  if (!devices.empty()) yaml += "      devices: " + devices + "\n";
  WriteConfig(yaml + "      replicas: " + std::to_string(replicas) + "\n");
}

void DaemonHarness::StartDaemon(const std::string& node, const std::vector<std::string>& args,
                                const std::vector<std::string>& env) {
  auto child = SpawnDaemon(node, args, env, tmp_ + "/plugin.log");
  ASSERT_NE(child, nullptr);
  daemon_ = std::move(child);
}

std::unique_ptr<mps::ChildProcess> DaemonHarness::SpawnDaemon(const std::string& node,
                                                              const std::vector<std::string>& args,
                                                              const std::vector<std::string>& env,
                                                              const std::string& log) {
  mps::CommandSpec spec;
  spec.program = BinDir() + "/nvidia-device-plugin";
  spec.args = {"--kubelet-socket=" + plugin_dir() + "/kubelet.sock",
               "--mps-control-binary=" + BinDir() + "/fake-mps-control",
               "--mps-probe-period=" + mps_probe_period_,
               // Never kubelet's real one; served when the test kubelet's PodResources server runs.
               "--pod-resources-socket=" + pod_resources_socket()};
  if (has_config_) spec.args.push_back("--config-file=" + config_path());
  if (pass_nvml_library_) spec.args.push_back("--nvml-library=" + FakeNvmlLibrary());
  spec.args.insert(spec.args.end(), args.begin(), args.end());
  spec.env = mps::InheritedEnvironment();
  spec.env.push_back("FAKE_NVML_NODE=" + NodeFile(node));
  spec.env.push_back("FAKE_NVML_EVENTS=" + tmp_ + "/events");
  spec.env.push_back("NVDP_SYSFS_ROOT=" + SourceDir() + "/tests/fakes/nvml/nodes/a100-sysfs");
  spec.env.insert(spec.env.end(), env.begin(), env.end());
  auto child = mps::RealProcessRunner().Spawn(LoggedTo(spec, log));
  EXPECT_TRUE(child.ok()) << child.status();
  return child.ok() ? *std::move(child) : nullptr;
}

int DaemonHarness::daemon_pid() const { return daemon_ ? daemon_->pid() : -1; }
int DaemonHarness::mps_daemon_pid() const { return mps_daemon_ ? mps_daemon_->pid() : -1; }

std::optional<int> DaemonHarness::FakeMpsControlPid(const std::string& resource) const {
  std::ifstream in(mps_root() + "/" + resource + "/log/fake-daemon.pid");
  int pid = 0;
  if (!(in >> pid) || pid <= 0) return std::nullopt;
  return pid;
}

void DaemonHarness::StartMpsDaemon(const std::vector<std::string>& args, const std::string& node,
                                   const std::vector<std::string>& env) {
  mps::CommandSpec spec;
  spec.program = BinDir() + "/mps-control-daemon";
  spec.args = {"--nvml-library=" + FakeNvmlLibrary(), "--config-file=" + config_path(),
               "--mps-control-binary=" + BinDir() + "/fake-mps-control",
               "--set-compute-mode=false"};
  spec.args.insert(spec.args.end(), args.begin(), args.end());
  spec.env = mps::InheritedEnvironment();
  spec.env.push_back("FAKE_NVML_NODE=" + NodeFile(node));
  spec.env.insert(spec.env.end(), env.begin(), env.end());
  auto child = mps::RealProcessRunner().Spawn(LoggedTo(spec, tmp_ + "/mpsd.log"));
  ASSERT_TRUE(child.ok()) << child.status();
  mps_daemon_ = std::move(*child);
}

void DaemonHarness::StopMpsDaemon() {
  if (mps_daemon_ && !mps_daemon_->Poll()) mps_daemon_->Terminate(absl::Seconds(10));
  mps_daemon_.reset();
}

std::string DaemonHarness::DaemonLog() const { return ReadFile(tmp_ + "/plugin.log"); }

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
