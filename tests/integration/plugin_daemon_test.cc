// The real nvidia-device-plugin binary against the fake NVML and the test kubelet, over real unix
// sockets: registration, device list, allocation, bad requests, kubelet restarts, signals.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "integration/daemon_harness.h"
#include "plugin/response_fields.h"
#include "rpc/unix_channel.h"

namespace nvdp::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kGpu[] = "nvidia.com/gpu";

bool AllHealthy(const std::vector<DeviceState>& devices, size_t count) {
  return devices.size() == count &&
         std::all_of(devices.begin(), devices.end(), [](const auto& d) { return d.healthy; });
}

class PluginDaemonTest : public ::testing::Test {
 protected:
  void StartAndRegister(const std::vector<std::string>& args = {}) {
    h_.StartKubelet();
    h_.StartDaemon("a100-sxm4-40gb-x8.json", args);
    ASSERT_TRUE(h_.kubelet().WaitForRegistrations(kGpu, 1, kWait));
    ASSERT_TRUE(h_.kubelet().WaitForDevices(
        kGpu, [](const auto& d) { return AllHealthy(d, 8); }, kWait));
  }

  DaemonHarness h_;
  std::vector<NodeGpu> node_ = ReadNodeGpus(NodeFile("a100-sxm4-40gb-x8.json"));
};

TEST_F(PluginDaemonTest, RegistersWithKubeletAsUpstreamDoes) {
  StartAndRegister();
  auto request = h_.kubelet().LastRegistration(kGpu);
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->version(), "v1beta1");
  EXPECT_EQ(request->endpoint(), "nvidia-gpu.sock");
  EXPECT_TRUE(request->options().get_preferred_allocation_available());
  EXPECT_FALSE(request->options().pre_start_required());
  EXPECT_TRUE(std::filesystem::exists(h_.plugin_dir() + "/nvidia-gpu.sock"));
}

TEST_F(PluginDaemonTest, DeviceListMatchesTheNodeDescription) {
  StartAndRegister();
  std::vector<std::string> expected;
  for (const auto& gpu : node_) expected.push_back(gpu.uuid);
  std::vector<std::string> ids;
  std::vector<int64_t> numa;
  for (const auto& device : h_.kubelet().Devices(kGpu)) {
    ids.push_back(device.id);
    ASSERT_TRUE(device.numa_node.has_value()) << device.id;
    numa.push_back(*device.numa_node);
  }
  EXPECT_EQ(ids, expected);
  EXPECT_EQ(numa, (std::vector<int64_t>{0, 0, 0, 0, 1, 1, 1, 1}));
}

TEST_F(PluginDaemonTest, AllocateGivesVisibleDevicesAndDeviceSpecs) {
  // A fake dev root with two of the four optional control nodes: only those are passed.
  const std::string dev_root = h_.tmp() + "/devroot";
  std::filesystem::create_directories(dev_root + "/dev");
  std::ofstream(dev_root + "/dev/nvidiactl").close();
  std::ofstream(dev_root + "/dev/nvidia-uvm").close();
  StartAndRegister({"--pass-device-specs", "--dev-root=" + dev_root});
  auto admission = h_.kubelet().Admit(kGpu, 2);
  ASSERT_TRUE(admission.ok()) << admission.status();
  ASSERT_EQ(admission->device_ids.size(), 2u);
  const auto& envs = admission->response.envs();
  ASSERT_TRUE(envs.contains("NVIDIA_VISIBLE_DEVICES"));
  EXPECT_EQ(envs.at("NVIDIA_VISIBLE_DEVICES"),
            admission->device_ids[0] + "," + admission->device_ids[1]);

  std::vector<std::string> specs;
  for (const auto& spec : admission->response.devices()) {
    specs.push_back(spec.container_path() + " <- " + spec.host_path() + " " + spec.permissions());
  }
  std::vector<std::string> expected = {"/dev/nvidiactl <- " + dev_root + "/dev/nvidiactl rw",
                                       "/dev/nvidia-uvm <- " + dev_root + "/dev/nvidia-uvm rw"};
  for (const auto& id : admission->device_ids) {
    for (const auto& gpu : node_) {
      if (gpu.uuid != id) continue;
      const std::string node = "/dev/nvidia" + std::to_string(gpu.minor);
      expected.push_back(node + " <- " + dev_root + node + " rw");
    }
  }
  EXPECT_EQ(specs, expected);
}

// flags.gdrcopyEnabled / gdsEnabled / mofedEnabled reach Allocate (here from upstream's env vars).
TEST_F(PluginDaemonTest, GdrcopyGdsAndMofedFromTheEnvironment) {
  h_.StartKubelet();
  h_.StartDaemon("a100-sxm4-40gb-x8.json", {},
                 {"GDRCOPY_ENABLED=true", "GDS_ENABLED=true", "MOFED_ENABLED=true"});
  ASSERT_TRUE(h_.kubelet().WaitForRegistrations(kGpu, 1, kWait));
  auto response = h_.kubelet().Allocate(kGpu, {{node_[3].uuid}});
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(ResponseFields(response->container_responses(0)),
            (std::vector<std::string>{"env NVIDIA_GDRCOPY=enabled", "env NVIDIA_GDS=enabled",
                                      "env NVIDIA_MOFED=enabled",
                                      "env NVIDIA_VISIBLE_DEVICES=" + node_[3].uuid}));
}

TEST_F(PluginDaemonTest, IndexDeviceIdStrategyNamesIndices) {
  StartAndRegister({"--device-id-strategy=index"});
  auto response = h_.kubelet().Allocate(kGpu, {{node_[3].uuid}});
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->container_responses(0).envs().at("NVIDIA_VISIBLE_DEVICES"), "3");
  EXPECT_EQ(response->container_responses(0).devices_size(), 0);  // passDeviceSpecs off
}

TEST_F(PluginDaemonTest, PreferredAllocationHonoursMustInclude) {
  StartAndRegister();
  std::vector<std::string> available;
  for (const auto& gpu : node_) available.push_back(gpu.uuid);
  auto picked = h_.kubelet().GetPreferredAllocation(kGpu, available, {node_[5].uuid}, 2);
  ASSERT_TRUE(picked.ok()) << picked.status();
  ASSERT_EQ(picked->size(), 2u);
  EXPECT_NE(std::find(picked->begin(), picked->end(), node_[5].uuid), picked->end());
}

TEST_F(PluginDaemonTest, BadRequestsGetClearErrorsAndTheDaemonKeepsServing) {
  StartAndRegister();
  auto unknown = h_.kubelet().Allocate(kGpu, {{node_[0].uuid, "GPU-does-not-exist"}});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.status().message(), HasSubstr(kGpu));
  EXPECT_THAT(unknown.status().message(), HasSubstr("GPU-does-not-exist"));

  auto no_containers = h_.kubelet().Allocate(kGpu, {});
  ASSERT_FALSE(no_containers.ok());
  EXPECT_EQ(no_containers.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(no_containers.status().message(), HasSubstr(kGpu));

  auto empty_container = h_.kubelet().Allocate(kGpu, {{}});
  ASSERT_FALSE(empty_container.ok());
  EXPECT_EQ(empty_container.status().code(), absl::StatusCode::kInvalidArgument);

  auto malformed = h_.kubelet().Allocate(kGpu, {{node_[0].uuid + "::x"}});
  ASSERT_FALSE(malformed.ok());
  EXPECT_THAT(malformed.status().message(), HasSubstr(node_[0].uuid + "::x"));

  auto bad_preference = h_.kubelet().GetPreferredAllocation(kGpu, {node_[0].uuid}, {}, 0);
  EXPECT_FALSE(bad_preference.ok());

  auto admission = h_.kubelet().Admit(kGpu, 1);
  EXPECT_TRUE(admission.ok()) << admission.status();
  EXPECT_EQ(h_.kubelet().Registrations(kGpu), 1);
}

TEST_F(PluginDaemonTest, ReRegistersAfterKubeletRestart) {
  StartAndRegister();
  ASSERT_TRUE(h_.kubelet().Restart().ok());  // wipes the directory, re-creates kubelet.sock
  ASSERT_TRUE(h_.kubelet().WaitForRegistrations(kGpu, 2, kWait));
  ASSERT_TRUE(h_.kubelet().WaitForDevices(
      kGpu, [](const auto& d) { return AllHealthy(d, 8); }, kWait));
  EXPECT_TRUE(std::filesystem::exists(h_.plugin_dir() + "/nvidia-gpu.sock"));
  auto admission = h_.kubelet().Admit(kGpu, 1);
  EXPECT_TRUE(admission.ok()) << admission.status();
}

// Any local client can open and cancel ListAndWatch streams. That must not restart the server or
// re-register it: kubelet's own stream and its Allocate calls carry on undisturbed.
TEST_F(PluginDaemonTest, StreamChurnFromAnotherClientDoesNotDisturbKubelet) {
  StartAndRegister();
  auto stub =
      v1beta1::DevicePlugin::NewStub(rpc::UnixChannel(h_.plugin_dir() + "/nvidia-gpu.sock"));
  for (int i = 0; i < 50; ++i) {
    grpc::ClientContext context;
    auto reader = stub->ListAndWatch(&context, v1beta1::Empty());
    v1beta1::ListAndWatchResponse response;
    ASSERT_TRUE(reader->Read(&response)) << i;
    context.TryCancel();
    (void)reader->Finish();
  }
  for (int i = 0; i < 8; ++i) {
    auto admitted = h_.kubelet().Admit(kGpu, 1);
    ASSERT_TRUE(admitted.ok()) << admitted.status();
    h_.kubelet().Release(kGpu, admitted->device_ids);
  }
  EXPECT_EQ(h_.kubelet().Registrations(kGpu), 1);
  EXPECT_THAT(h_.DaemonLog(), Not(HasSubstr("registering again")));
}

TEST_F(PluginDaemonTest, ReRegistersWhenItsSocketIsRemoved) {
  StartAndRegister();
  std::filesystem::remove(h_.plugin_dir() + "/nvidia-gpu.sock");
  ASSERT_TRUE(h_.kubelet().WaitForRegistrations(kGpu, 2, kWait));
  EXPECT_TRUE(std::filesystem::exists(h_.plugin_dir() + "/nvidia-gpu.sock"));
}

TEST_F(PluginDaemonTest, RegistersOnceKubeletAppears) {
  h_.StartDaemon();  // kubelet not there yet: the daemon serves and keeps retrying
  h_.StartKubelet();
  ASSERT_TRUE(h_.kubelet().WaitForRegistrations(kGpu, 1, kWait));
  ASSERT_TRUE(h_.kubelet().WaitForDevices(
      kGpu, [](const auto& d) { return AllHealthy(d, 8); }, kWait));
}

TEST_F(PluginDaemonTest, CriticalXidMarksTheGpuUnhealthy) {
  StartAndRegister();
  h_.InjectEvent("xid " + node_[2].uuid + " 43");  // application error: ignored
  h_.InjectEvent("xid " + node_[2].uuid + " 79");  // fallen off the bus
  ASSERT_TRUE(h_.kubelet().WaitForDevices(
      kGpu,
      [&](const auto& devices) {
        return std::count_if(devices.begin(), devices.end(),
                             [&](const auto& d) { return !d.healthy; }) == 1 &&
               std::any_of(devices.begin(), devices.end(),
                           [&](const auto& d) { return d.id == node_[2].uuid && !d.healthy; });
      },
      kWait));
}

TEST_F(PluginDaemonTest, SigtermStopsCleanlyAndRemovesTheSocket) {
  StartAndRegister();
  h_.Signal(SIGTERM);
  auto status = h_.WaitForExit();
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->Success()) << status->ToString();
  EXPECT_FALSE(std::filesystem::exists(h_.plugin_dir() + "/nvidia-gpu.sock"));
}

// The health thread blocks in NVML's event wait 5 s at a time (the fake NVML blocks like the real
// one); SIGTERM does not wait for that wait to end.
TEST_F(PluginDaemonTest, SigtermDoesNotWaitForTheHealthEventWait) {
  StartAndRegister();
  absl::SleepFor(absl::Milliseconds(300));  // the health thread is in its wait by now
  const absl::Time start = absl::Now();
  h_.Signal(SIGTERM);
  auto status = h_.WaitForExit();
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->Success()) << status->ToString();
  EXPECT_LT(took, absl::Seconds(3)) << "SIGTERM to exit took " << took;
  EXPECT_THAT(h_.DaemonLog(), HasSubstr("stopped"));
}

TEST_F(PluginDaemonTest, NvmlInitFailureExitsWhenFailOnInitErrorIsTrue) {
  h_.StartKubelet();
  h_.StartDaemon("a100-sxm4-40gb-x8.json", {}, {"FAKE_NVML_FAIL=init"});
  auto status = h_.WaitForExit();
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->exit_code, 1);
  EXPECT_EQ(h_.kubelet().Registrations(kGpu), 0);
}

TEST_F(PluginDaemonTest, NvmlInitFailureIdlesWhenFailOnInitErrorIsFalse) {
  h_.StartKubelet();
  h_.StartDaemon("a100-sxm4-40gb-x8.json", {"--fail-on-init-error=false"}, {"FAKE_NVML_FAIL=init"});
  // Idling: it does not exit by itself (exit status 1 would show here), and stops on SIGTERM
  // with status 0.
  EXPECT_FALSE(h_.WaitForExit(absl::Milliseconds(300)).has_value());
  h_.Signal(SIGTERM);
  auto status = h_.WaitForExit();
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->Success()) << status->ToString();
  EXPECT_EQ(h_.kubelet().Registrations(kGpu), 0);
}

// A FIFO as the config file used to block the daemon in open(): it never started, and SIGTERM
// could not stop it. Now it is refused at once.
TEST_F(PluginDaemonTest, FifoConfigFileIsRefusedAtOnce) {
  h_.StartKubelet();
  ASSERT_EQ(::mkfifo(h_.config_path().c_str(), 0600), 0);
  h_.StartDaemon("a100-sxm4-40gb-x8.json", {"--config-file=" + h_.config_path()});
  auto status = h_.WaitForExit();
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->exit_code, 1);
  EXPECT_THAT(h_.DaemonLog(), HasSubstr("cannot be read: not a regular file"));
}

// The same FIFO swapped in before a reload: the reload is rejected and the daemon still stops.
TEST_F(PluginDaemonTest, FifoConfigFileOnReloadIsRejectedAndStopStillWorks) {
  h_.WriteConfig("version: v1\n");
  StartAndRegister();
  std::filesystem::remove(h_.config_path());
  ASSERT_EQ(::mkfifo(h_.config_path().c_str(), 0600), 0);
  h_.Signal(SIGHUP);
  ASSERT_TRUE(
      WaitUntil([&] { return h_.DaemonLog().find("reload rejected") != std::string::npos; }));
  h_.Signal(SIGTERM);
  auto status = h_.WaitForExit();
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(status->Success()) << status->ToString();
}

// Kubelet answers Register only after dialling the plugin back (up to 10 s when the socket is
// gone). A stop signal during that wait ends the daemon at once: the registration is cancelled.
// (The held call never returns by itself; without the cancellation the daemon would sit out its
// own 10 s registration deadline, longer than this test waits.)
TEST_F(PluginDaemonTest, SigtermWhileRegisterHangsStopsTheDaemon) {
  h_.StartKubelet();
  h_.kubelet().HoldRegistrations();
  h_.StartDaemon();
  ASSERT_TRUE(h_.kubelet().WaitForRegisterCallsInFlight(1, kWait));
  h_.Signal(SIGTERM);
  auto status = h_.WaitForExit(absl::Seconds(5));
  ASSERT_TRUE(status.has_value()) << "the daemon did not stop while its Register hung";
  EXPECT_TRUE(status->Success()) << status->ToString();
}

// A device-plugin directory that does not exist yet (kubelet not installed or not started) is
// waited for, as kubelet.sock is, not a fatal error.
TEST_F(PluginDaemonTest, WaitsForAMissingDevicePluginDirectory) {
  const std::string dir = h_.tmp() + "/later";
  h_.StartDaemon("a100-sxm4-40gb-x8.json", {"--kubelet-socket=" + dir + "/kubelet.sock"});
  ASSERT_TRUE(WaitUntil([&] {
    return h_.DaemonLog().find("waiting for the device-plugin directory") != std::string::npos;
  }));
  EXPECT_FALSE(h_.WaitForExit(absl::Milliseconds(0)).has_value());
  std::filesystem::create_directories(dir);
  auto kubelet = TestKubelet::Start(dir);
  ASSERT_TRUE(kubelet.ok()) << kubelet.status();
  EXPECT_TRUE((*kubelet)->WaitForRegistrations(kGpu, 1, kWait));
}

}  // namespace
}  // namespace nvdp::testing
