// Interchangeability with upstream's MPS deployment, through the real binaries:
//  (a) our nvidia-device-plugin against a control daemon, markers and pipes laid out the way
//      upstream's mps-control-daemon does (the test plays that daemon, driving fake-mps-control
//      with only CUDA_MPS_PIPE_DIRECTORY and CUDA_MPS_LOG_DIRECTORY in its environment);
//  (b) our mps-control-daemon and our plugin on one upstream config file (sharing.mps, replicas
//      4, no perContainerLimits): upstream's daemon defaults, markers and paths.
// In both, Allocate must return upstream's environment and mounts exactly.
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "integration/daemon_harness.h"
#include "mps/control.h"
#include "mps/temp_dir.h"
#include "plugin/response_fields.h"

namespace nvdp::testing {
namespace {

using mps::testing::Exists;
using mps::testing::ReadFile;
using Lines = std::vector<std::string>;

constexpr char kGpu[] = "nvidia.com/gpu";

std::string UpstreamConfig(const std::string& mps_root) {
  return absl::StrCat(
      "version: v1\n"
      "flags:\n"
      "  mpsRoot: ",
      mps_root,
      "\n"
      "sharing:\n"
      "  mps:\n"
      "    resources:\n"
      "    - name: nvidia.com/gpu\n"
      "      replicas: 4\n");
}

// What upstream v0.20 answers for one replica of GPU `uuid` under MPS with mpsRoot `root`.
Lines UpstreamMpsResponse(const std::string& root, const std::string& uuid) {
  return {"env CUDA_MPS_PIPE_DIRECTORY=/mps/nvidia.com/gpu/pipe",
          "env NVIDIA_VISIBLE_DEVICES=" + uuid,
          "mount " + root + "/nvidia.com/gpu/pipe -> /mps/nvidia.com/gpu/pipe rw",
          "mount " + root + "/shm -> /dev/shm rw"};
}

size_t CountHealthy(const std::vector<DeviceState>& devices) {
  return std::count_if(devices.begin(), devices.end(), [](const auto& d) { return d.healthy; });
}

class UpstreamMpsTest : public ::testing::Test {
 protected:
  ~UpstreamMpsTest() override {
    // A daemon we launched with -d is not our child: ask it to quit (it also exits once its
    // socket goes away with the harness's directory).
    if (upstream_daemon_started_) {
      mps::RunControlCommand(mps::RealProcessRunner(), Target(), "quit", absl::Seconds(5))
          .IgnoreError();
    }
  }

  std::string Root() const { return h_.mps_root(); }
  std::string ResourceDir() const { return Root() + "/nvidia.com/gpu"; }

  mps::ControlTarget Target() const {
    mps::ControlTarget target;
    target.control_binary = BinDir() + "/fake-mps-control";
    target.pipe_dir = ResourceDir() + "/pipe";
    target.log_dir = ResourceDir() + "/log";
    return target;  // base_env empty: only the two MPS directories, as upstream
  }

  // Does what upstream's mps-control-daemon does for nvidia.com/gpu with 4 replicas on the fake
  // 8x A100-40GB node (compute modes aside).
  void RunUpstreamStyleDaemon() {
    std::filesystem::create_directories(ResourceDir() + "/pipe");
    std::filesystem::create_directories(ResourceDir() + "/log");
    mps::CommandSpec launch;
    launch.program = BinDir() + "/fake-mps-control";
    launch.args = {"-d"};
    launch.env = {"CUDA_MPS_PIPE_DIRECTORY=" + ResourceDir() + "/pipe",
                  "CUDA_MPS_LOG_DIRECTORY=" + ResourceDir() + "/log"};
    launch.timeout = absl::Seconds(15);
    auto launched = mps::RealProcessRunner().Run(launch);
    ASSERT_TRUE(launched.ok()) << launched.status();
    ASSERT_TRUE(launched->status.Success()) << launched->status.ToString();
    upstream_daemon_started_ = true;
    for (int index = 0; index < 8; ++index) {
      auto set = mps::RunControlCommand(
          mps::RealProcessRunner(), Target(),
          absl::StrCat("set_default_device_pinned_mem_limit ", index, " 10240M"), absl::Seconds(5));
      ASSERT_TRUE(set.ok()) << set.status();
    }
    auto set = mps::RunControlCommand(mps::RealProcessRunner(), Target(),
                                      "set_default_active_thread_percentage 25", absl::Seconds(5));
    ASSERT_TRUE(set.ok()) << set.status();
    mps::testing::WriteFile(ResourceDir() + "/.started", "");
    mps::testing::WriteFile(Root() + "/.ready", "");
  }

  // The commands our fake control daemon received that set something.
  Lines SetCommands() const {
    Lines set;
    for (absl::string_view line :
         absl::StrSplit(ReadFile(ResourceDir() + "/log/fake-commands.log"), '\n')) {
      if (absl::StartsWith(line, "set_")) set.emplace_back(line);
    }
    return set;
  }

  void ExpectRegisteredWithUpstreamAllocate() {
    ASSERT_TRUE(h_.kubelet().WaitForRegistrations(kGpu, 1, kWait));
    ASSERT_TRUE(h_.kubelet().WaitForDevices(
        kGpu, [](const auto& d) { return d.size() == 32 && CountHealthy(d) == 32; }, kWait));
    auto response = h_.kubelet().Allocate(kGpu, {{node_[2].uuid + "::3"}});
    ASSERT_TRUE(response.ok()) << response.status();
    ASSERT_EQ(response->container_responses_size(), 1);
    EXPECT_EQ(ResponseFields(response->container_responses(0)),
              UpstreamMpsResponse(Root(), node_[2].uuid));
    // Upstream's uniform mode: one replica per container.
    auto two = h_.kubelet().Allocate(kGpu, {{node_[0].uuid + "::0", node_[1].uuid + "::0"}});
    EXPECT_FALSE(two.ok());
  }

  DaemonHarness h_;
  std::vector<NodeGpu> node_ = ReadNodeGpus(NodeFile("a100-sxm4-40gb-x8.json"));
  bool upstream_daemon_started_ = false;
};

TEST_F(UpstreamMpsTest, OurPluginWorksWithAnUpstreamStyleDaemon) {
  h_.StartKubelet();
  ASSERT_NO_FATAL_FAILURE(RunUpstreamStyleDaemon());
  h_.WriteConfig(UpstreamConfig(Root()));
  h_.StartDaemon();
  ExpectRegisteredWithUpstreamAllocate();
  // The daemon got exactly upstream's defaults (we sent them), and the plugin's probes went to
  // upstream's pipe directory: the daemon saw them there.
  EXPECT_EQ(SetCommands().size(), 9u);
  EXPECT_THAT(ReadFile(ResourceDir() + "/log/fake-commands.log"),
              ::testing::HasSubstr(mps::kProbeCommand));
}

TEST_F(UpstreamMpsTest, OurDaemonAndPluginOnAnUpstreamConfig) {
  h_.StartKubelet();
  h_.WriteConfig(UpstreamConfig(Root()));
  h_.StartMpsDaemon();
  h_.StartDaemon();
  ASSERT_TRUE(WaitUntil([&] { return Exists(Root() + "/.ready"); }));
  EXPECT_TRUE(Exists(ResourceDir() + "/.started"));
  EXPECT_TRUE(std::filesystem::is_directory(ResourceDir() + "/pipe"));
  EXPECT_TRUE(std::filesystem::is_directory(ResourceDir() + "/log"));
  Lines expected;
  for (int ordinal = 0; ordinal < 8; ++ordinal) {
    expected.push_back(absl::StrCat("set_default_device_pinned_mem_limit ", ordinal, " 10240M"));
  }
  expected.push_back("set_default_active_thread_percentage 25");
  EXPECT_EQ(SetCommands(), expected);
  ExpectRegisteredWithUpstreamAllocate();
}

}  // namespace
}  // namespace nvdp::testing
