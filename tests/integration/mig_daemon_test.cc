// MIG through the real binaries: the plugin (and mps-control-daemon) on the fake NVML's MIG nodes
// with the test kubelet. Strategies and resource names, Allocate's IDs and capability nodes,
// preferred allocation, health events per MIG device or per GPU, a MIG layout change picked up by
// SIGHUP, and flexible MPS with one control daemon per MIG device. Expected values come from the
// node descriptions and the driver-root trees next to them, not from the plugin.
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "integration/daemon_harness.h"
#include "nlohmann/json.hpp"
#include "plugin/response_fields.h"

namespace nvdp::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kGpu[] = "nvidia.com/gpu";
constexpr char kMixedNode[] = "a100-sxm4-40gb-x8-mig-mixed.json";
constexpr char kH100Node[] = "h100-80gb-x1-mig-1g10gb.json";
constexpr char k1g5gb[] = "nvidia.com/mig-1g.5gb";
// The fake's memory of a 1g.5gb GPU instance on a 40 GB A100 (its profile table, README).
constexpr int k1g5gbMib = 4864;

struct MigDev {
  std::string uuid;
  std::string profile;  // the GI profile, e.g. "3g.20gb", "1g.5gb+me"
  unsigned gi = 0, ci = 0;
  bool whole_gi = true;  // its CI spans the GI (no ci_profile, or "<g>c" of a "<g>g..." GI)
  unsigned slot = 0;
};

struct Gpu {
  std::string uuid;
  unsigned index = 0, minor = 0;
  bool mig = false;
  std::vector<MigDev> migs;
};

std::vector<Gpu> ReadNode(const std::string& node_file) {
  std::ifstream in(node_file);
  const auto json = nlohmann::json::parse(in);
  std::vector<Gpu> gpus;
  for (const auto& g : json.at("gpus")) {
    Gpu gpu{.uuid = g.at("uuid").get<std::string>(),
            .index = static_cast<unsigned>(gpus.size()),
            .minor = g.at("minor").get<unsigned>(),
            .mig = g.value("mig_mode", 0) == 1,
            .migs = {}};
    for (const auto& m : g.value("mig_devices", nlohmann::json::array())) {
      MigDev dev{.uuid = m.at("uuid").get<std::string>(),
                 .profile = m.at("profile").get<std::string>(),
                 .gi = m.at("gi").get<unsigned>(),
                 .ci = m.value("ci", 0u)};
      const std::string ci_profile = m.value("ci_profile", std::string());
      dev.whole_gi = ci_profile.empty() || ci_profile.front() == dev.profile.front();
      dev.slot = static_cast<unsigned>(gpu.migs.size());
      gpu.migs.push_back(dev);
    }
    gpus.push_back(gpu);
  }
  return gpus;
}

// mixed's resource name for a MIG profile: mig-<profile>, '+' written '.'.
std::string MixedResource(const std::string& profile) {
  return absl::StrCat("nvidia.com/mig-", absl::StrReplaceAll(profile, {{"+", "."}}));
}

// What mixed should advertise: resource -> device IDs (sorted).
std::map<std::string, std::vector<std::string>> MixedResources(const std::vector<Gpu>& node) {
  std::map<std::string, std::vector<std::string>> resources;
  for (const auto& gpu : node) {
    if (!gpu.mig) resources[kGpu].push_back(gpu.uuid);
    for (const auto& m : gpu.migs) {
      if (m.whole_gi) resources[MixedResource(m.profile)].push_back(m.uuid);
    }
  }
  for (auto& [name, ids] : resources) std::sort(ids.begin(), ids.end());
  return resources;
}

std::vector<std::string> SortedIds(const std::vector<DeviceState>& devices) {
  std::vector<std::string> ids;
  for (const auto& d : devices) ids.push_back(d.id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

size_t CountHealthy(const std::vector<DeviceState>& devices) {
  return std::count_if(devices.begin(), devices.end(), [](const auto& d) { return d.healthy; });
}

// The part of a resource name after "nvidia.com/".
std::string ShortName(const std::string& resource) {
  return resource.substr(resource.find('/') + 1);
}

// The driver root shipped next to a MIG node description.
std::string DriverRoot(const std::string& node) {
  return NodeFile(node.substr(0, node.size() - std::string(".json").size()) + "-proc");
}

// "/dev/nvidia-caps/nvidia-cap<N>" for a line "<key> <N>" of the driver root's mig-minors.
std::string CapNode(const std::string& driver_root, const std::string& key) {
  std::ifstream in(driver_root + "/proc/driver/nvidia-caps/mig-minors");
  std::string name;
  int minor = 0;
  while (in >> name >> minor) {
    if (name == key) return absl::StrCat("/dev/nvidia-caps/nvidia-cap", minor);
  }
  ADD_FAILURE() << "no " << key << " in mig-minors";
  return "";
}

std::vector<std::string> DeviceSpecs(const v1beta1::ContainerAllocateResponse& response) {
  std::vector<std::string> specs;
  for (const auto& spec : response.devices()) {
    specs.push_back(spec.container_path() + " <- " + spec.host_path() + " " + spec.permissions());
  }
  return specs;
}

class MigDaemonTest : public ::testing::Test {
 protected:
  // Starts the kubelet and the plugin on `node` (a shipped name or a path) with its driver root.
  void Start(const std::string& node, const std::vector<std::string>& args) {
    h_.StartKubelet();
    h_.StartDaemon(node, args, {"NVDP_DRIVER_ROOT=" + driver_root_, "FAKE_NVML_LOG=" + NvmlLog()});
  }
  // The fake NVML's call log (FAKE_NVML_LOG) of the plugin started by Start.
  std::string NvmlLog() const { return h_.tmp() + "/nvml.log"; }
  // How many event sets the plugin has created so far (one per health monitor started).
  int EventSetsCreated() const {
    std::ifstream in(NvmlLog());
    int count = 0;
    for (std::string line; std::getline(in, line);) count += line == "nvmlEventSetCreate";
    return count;
  }
  std::vector<std::string> StartFlexibleMpsOn1g5gb();
  // Start under mixed on the A100 mixed node, waiting until every expected resource is served
  // with all its devices healthy.
  void StartMixed(std::vector<std::string> args = {}, const std::string& node = kMixedNode) {
    args.push_back("--mig-strategy=mixed");
    Start(node, args);
    WaitForResources(MixedResources(node_));
  }
  void WaitForResources(const std::map<std::string, std::vector<std::string>>& expected) {
    for (const auto& [name, ids] : expected) {
      ASSERT_TRUE(h_.kubelet().WaitForRegistrations(name, 1, kWait)) << name;
      ASSERT_TRUE(h_.kubelet().WaitForDevices(
          name, [&](const auto& d) { return SortedIds(d) == ids && CountHealthy(d) == ids.size(); },
          kWait))
          << name;
    }
  }
  // Waits until exactly the MIG devices `bad` (UUIDs) of `resource` are unhealthy.
  bool WaitForUnhealthy(const std::string& resource, const std::set<std::string>& bad) {
    return h_.kubelet().WaitForDevices(
        resource,
        [&](const auto& devices) {
          return std::all_of(devices.begin(), devices.end(),
                             [&](const auto& d) { return d.healthy != bad.contains(d.id); });
        },
        kWait);
  }
  // Starts the plugin with `config` on `node` and expects it to exit non-zero saying `message`.
  void ExpectStartRefused(const std::string& node, const std::string& config,
                          const std::string& message) {
    if (!config.empty()) h_.WriteConfig(config);
    Start(node, {});
    auto status = h_.WaitForExit();
    ASSERT_TRUE(status.has_value());
    EXPECT_NE(status->exit_code, 0);
    EXPECT_THAT(h_.DaemonLog(), HasSubstr(message));
  }

  std::map<std::string, std::vector<std::string>> StartAndChangeTheLayout();

  DaemonHarness h_;
  std::vector<Gpu> node_ = ReadNode(NodeFile(kMixedNode));
  std::string driver_root_ = DriverRoot(kMixedNode);
};

TEST_F(MigDaemonTest, MixedRegistersOneResourcePerProfileWithMigUuids) {
  const auto expected = MixedResources(node_);
  // The node has full GPUs, and every profile the README names (1c.3g.20gb is not advertised).
  for (const char* name : {"nvidia.com/gpu", "nvidia.com/mig-3g.20gb", "nvidia.com/mig-2g.10gb",
                           "nvidia.com/mig-1g.5gb", "nvidia.com/mig-1g.5gb.me"}) {
    ASSERT_TRUE(expected.contains(name)) << name;
  }
  StartMixed();
  std::set<std::string> sockets, expected_sockets = {"kubelet.sock"};
  for (const auto& [name, ids] : expected) {
    const std::string socket = "nvidia-" + ShortName(name) + ".sock";
    expected_sockets.insert(socket);
    auto request = h_.kubelet().LastRegistration(name);
    ASSERT_TRUE(request.has_value());
    EXPECT_EQ(request->endpoint(), socket);
    EXPECT_EQ(h_.kubelet().Registrations(name), 1) << name;
  }
  for (const auto& entry : std::filesystem::directory_iterator(h_.plugin_dir())) {
    sockets.insert(entry.path().filename());
  }
  EXPECT_EQ(sockets, expected_sockets);
  EXPECT_EQ(h_.kubelet().Registrations("nvidia.com/mig-1c.3g.20gb"), 0);
}

TEST_F(MigDaemonTest, SingleAdvertisesEveryMigDeviceAsAGpu) {
  const auto h100 = ReadNode(NodeFile(kH100Node));
  driver_root_ = DriverRoot(kH100Node);
  Start(kH100Node, {"--mig-strategy=single"});
  std::vector<std::string> ids;
  for (const auto& m : h100.at(0).migs) ids.push_back(m.uuid);
  std::sort(ids.begin(), ids.end());
  ASSERT_EQ(ids.size(), 7u);
  WaitForResources({{kGpu, ids}});
}

TEST_F(MigDaemonTest, SingleOnAMixedNodeExitsNamingTheRule) {
  ExpectStartRefused(kMixedNode, "version: v1\nflags:\n  migStrategy: single\n",
                     "every GPU must have MIG enabled, or none");
}

TEST_F(MigDaemonTest, NoneAdvertisesFullGpus) {
  Start(kMixedNode, {"--mig-strategy=none"});
  std::vector<std::string> ids;
  for (const auto& gpu : node_) ids.push_back(gpu.uuid);
  std::sort(ids.begin(), ids.end());
  WaitForResources({{kGpu, ids}});
}

TEST_F(MigDaemonTest, AllocatePassesTheParentAndTheCapabilityNodes) {
  const std::string dev_root = h_.tmp() + "/devroot";
  std::filesystem::create_directories(dev_root + "/dev");
  std::ofstream(dev_root + "/dev/nvidiactl").close();
  StartMixed({"--pass-device-specs", "--dev-root=" + dev_root});

  // Two 1g.5gb devices of GPU 4: its node once, then each device's GI and CI capability nodes.
  const Gpu& gpu = node_.at(4);
  const MigDev& a = gpu.migs.at(2);
  const MigDev& b = gpu.migs.at(3);
  auto response = h_.kubelet().Allocate(k1g5gb, {{a.uuid, b.uuid}});
  ASSERT_TRUE(response.ok()) << response.status();
  const auto& container = response->container_responses(0);
  EXPECT_EQ(container.envs().at("NVIDIA_VISIBLE_DEVICES"), a.uuid + "," + b.uuid);
  std::vector<std::string> expected = {"/dev/nvidiactl <- " + dev_root + "/dev/nvidiactl rw"};
  const auto add = [&](const std::string& path) {
    expected.push_back(path + " <- " + dev_root + path + " rw");
  };
  add(absl::StrCat("/dev/nvidia", gpu.minor));
  for (const MigDev* m : {&a, &b}) {
    const std::string gi = absl::StrCat("gpu", gpu.minor, "/gi", m->gi);
    add(CapNode(driver_root_, gi + "/access"));
    add(CapNode(driver_root_, absl::StrCat(gi, "/ci", m->ci, "/access")));
  }
  EXPECT_EQ(DeviceSpecs(container), expected);
}

TEST_F(MigDaemonTest, IndexStrategyNamesGpuAndMigSlot) {
  StartMixed({"--device-id-strategy=index"});
  const Gpu& gpu = node_.at(5);
  const MigDev& m = gpu.migs.at(6);
  auto response = h_.kubelet().Allocate(k1g5gb, {{m.uuid}});
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->container_responses(0).envs().at("NVIDIA_VISIBLE_DEVICES"),
            absl::StrCat(gpu.index, ":", m.slot));
}

TEST_F(MigDaemonTest, PreferredAllocationKeepsToOneParentGpu) {
  StartMixed();
  // Free: one 1g.5gb on GPU 1, two on GPU 0, all seven of GPU 4.
  std::vector<std::string> available = {node_[1].migs[2].uuid, node_[0].migs[2].uuid,
                                        node_[0].migs[3].uuid};
  for (const auto& m : node_[4].migs) available.push_back(m.uuid);
  const auto parents = [&](const std::vector<std::string>& ids) {
    std::set<std::string> gpus;
    for (const auto& gpu : node_) {
      for (const auto& m : gpu.migs) {
        if (std::find(ids.begin(), ids.end(), m.uuid) != ids.end()) gpus.insert(gpu.uuid);
      }
    }
    return gpus;
  };
  auto fits = h_.kubelet().GetPreferredAllocation(k1g5gb, available, {}, 2);
  ASSERT_TRUE(fits.ok()) << fits.status();
  ASSERT_EQ(fits->size(), 2u);
  EXPECT_EQ(parents(*fits), std::set<std::string>{node_[0].uuid});  // fits with none to spare

  auto required =
      h_.kubelet().GetPreferredAllocation(k1g5gb, available, {node_[4].migs[5].uuid}, 2);
  ASSERT_TRUE(required.ok()) << required.status();
  ASSERT_EQ(required->size(), 2u);
  EXPECT_EQ(parents(*required), std::set<std::string>{node_[4].uuid});
}

TEST_F(MigDaemonTest, XidWithGiAndCiMarksOnlyThatMigDevice) {
  StartMixed();
  const Gpu& gpu = node_.at(4);
  const MigDev& m = gpu.migs.at(3);
  h_.InjectEvent(absl::StrCat("xid ", gpu.uuid, " 79 ", m.gi, " ", m.ci));
  ASSERT_TRUE(WaitForUnhealthy(k1g5gb, {m.uuid}));
  EXPECT_EQ(CountHealthy(h_.kubelet().Devices(kGpu)), 2u);
}

TEST_F(MigDaemonTest, XidWithoutGiAndCiMarksEveryMigDeviceOfTheGpu) {
  StartMixed();
  const Gpu& gpu = node_.at(0);
  h_.InjectEvent("xid " + gpu.uuid + " 79");
  // Every resource with a MIG device of GPU 0 (3g.20gb, 2g.10gb, 1g.5gb) loses exactly those.
  for (const auto& [name, ids] : MixedResources(node_)) {
    std::set<std::string> bad;
    for (const auto& m : gpu.migs) {
      if (std::find(ids.begin(), ids.end(), m.uuid) != ids.end()) bad.insert(m.uuid);
    }
    if (!bad.empty()) {
      EXPECT_TRUE(WaitForUnhealthy(name, bad)) << name;
    }
  }
  EXPECT_EQ(CountHealthy(h_.kubelet().Devices("nvidia.com/mig-1g.5gb.me")), 1u);
}

// Writes `json` to `path` as a new file renamed into place (the fake NVML reads it again).
void ReplaceNodeFile(const std::string& path, const nlohmann::json& json) {
  std::ofstream(path + ".new") << json.dump(2);
  std::filesystem::rename(path + ".new", path);
}

// Starts mixed on a copy of the A100 MIG node, then rewrites it: GPU 3 (the only 1g.5gb+me) turns
// MIG off, GPU 4's seven 1g.5gb become one 7g.40gb. Returns the resources expected after.
std::map<std::string, std::vector<std::string>> MigDaemonTest::StartAndChangeTheLayout() {
  const std::string node_file = h_.tmp() + "/node.json";
  std::filesystem::copy_file(NodeFile(kMixedNode), node_file);
  StartMixed({}, node_file);
  const auto before = MixedResources(node_);

  std::ifstream in(node_file);
  auto json = nlohmann::json::parse(in);
  auto& gpus = json.at("gpus");
  gpus[3]["mig_mode"] = 0;
  gpus[3].erase("mig_devices");
  gpus[4]["mig_devices"] =
      nlohmann::json::array({{{"uuid", "MIG-a100a100-0004-5000-8000-0000000000f0"},
                              {"profile", "7g.40gb"},
                              {"placement", 0},
                              {"gi", 0}}});
  ReplaceNodeFile(node_file, json);
  node_ = ReadNode(node_file);
  auto after = MixedResources(node_);
  EXPECT_TRUE(after.contains("nvidia.com/mig-7g.40gb"));
  EXPECT_FALSE(after.contains("nvidia.com/mig-1g.5gb.me"));
  EXPECT_EQ(after.at("nvidia.com/mig-3g.20gb"), before.at("nvidia.com/mig-3g.20gb"));
  return after;
}

TEST_F(MigDaemonTest, SighupPicksUpANewMigLayout) {
  const auto after = StartAndChangeTheLayout();
  ASSERT_FALSE(HasFailure());
  h_.Signal(SIGHUP);
  WaitForResources(after);
  EXPECT_TRUE(WaitUntil(
      [&] { return !std::filesystem::exists(h_.plugin_dir() + "/nvidia-mig-1g.5gb.me.sock"); }));
  EXPECT_EQ(h_.kubelet().Registrations("nvidia.com/mig-1g.5gb.me"), 1);
  EXPECT_EQ(h_.kubelet().Registrations("nvidia.com/mig-7g.40gb"), 1);
  EXPECT_EQ(h_.kubelet().Registrations("nvidia.com/mig-3g.20gb"), 1);  // unchanged: kept
  EXPECT_EQ(h_.kubelet().Registrations(k1g5gb), 2);                    // changed: served again
  EXPECT_EQ(h_.kubelet().Registrations(kGpu), 2);

  // Health follows the new layout: once the new monitor watches, an Xid on the new MIG device's
  // GI/CI marks it.
  ASSERT_TRUE(WaitUntil([&] { return EventSetsCreated() == 2; }));
  const MigDev& big = node_.at(4).migs.at(0);
  h_.InjectEvent(absl::StrCat("xid ", node_.at(4).uuid, " 79 ", big.gi, " ", big.ci));
  EXPECT_TRUE(WaitForUnhealthy("nvidia.com/mig-7g.40gb", {big.uuid}));
}

// A kubelet restart reads the devices again too: every resource of the new layout registers
// with the new kubelet, the vanished one does not.
TEST_F(MigDaemonTest, KubeletRestartPicksUpANewMigLayout) {
  const auto after = StartAndChangeTheLayout();
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(h_.kubelet().Restart().ok());
  for (const auto& [name, ids] : after) {
    const int expected = name == "nvidia.com/mig-7g.40gb" ? 1 : 2;
    EXPECT_TRUE(h_.kubelet().WaitForRegistrations(name, expected, kWait)) << name;
  }
  WaitForResources(after);
  // The resource that vanished is stopped. (Kubelet's wipe may have had it served and registered
  // once more just before the reload that follows the restart: the socket's removal comes
  // first, kubelet.sock's creation second, so its registration count is not fixed.)
  EXPECT_TRUE(WaitUntil(
      [&] { return !std::filesystem::exists(h_.plugin_dir() + "/nvidia-mig-1g.5gb.me.sock"); }));
  const int registrations = h_.kubelet().Registrations("nvidia.com/mig-1g.5gb.me");
  EXPECT_LE(registrations, 2);
}

// Flexible MPS on mig-1g.5gb at 10 replicas, through mps-control-daemon; returns once kubelet
// sees every share Healthy. The MIG devices of the resource, from the node file.
std::vector<std::string> MigDaemonTest::StartFlexibleMpsOn1g5gb() {
  h_.WriteConfig(
      absl::StrCat("version: v1\nflags:\n  migStrategy: mixed\n  mpsRoot: ", h_.mps_root(),
                   "\nsharing:\n  mps:\n    perContainerLimits: true\n    resources:\n"
                   "    - name: mig-1g.5gb\n      replicas: 10\n"));
  h_.StartKubelet();
  h_.StartMpsDaemon({}, kMixedNode, {"NVDP_DRIVER_ROOT=" + driver_root_});
  h_.StartDaemon(kMixedNode, {}, {"NVDP_DRIVER_ROOT=" + driver_root_});
  auto devices = MixedResources(node_).at(k1g5gb);
  EXPECT_TRUE(h_.kubelet().WaitForRegistrations(k1g5gb, 1, kWait));
  EXPECT_TRUE(h_.kubelet().WaitForDevices(
      k1g5gb, [&](const auto& d) { return CountHealthy(d) == 10 * devices.size(); }, kWait));
  return devices;
}

TEST_F(MigDaemonTest, FlexibleMpsRunsOneControlDaemonPerMigDevice) {
  const auto devices = StartFlexibleMpsOn1g5gb();
  ASSERT_FALSE(HasFailure());

  const std::string root = h_.mps_root() + "/" + k1g5gb;
  for (const auto& uuid : devices) {
    std::ifstream log(root + "/" + uuid + "/log/fake-daemon.log");
    const std::string text(std::istreambuf_iterator<char>(log), {});
    EXPECT_THAT(text, HasSubstr("CUDA_VISIBLE_DEVICES=" + uuid + " ")) << uuid;
  }

  auto admission = h_.kubelet().Admit(k1g5gb, 3);
  ASSERT_TRUE(admission.ok()) << admission.status();
  const std::string& id = admission->device_ids.at(0);
  const std::string uuid = id.substr(0, id.find("::"));
  const std::string pipe = "/mps/nvidia.com/mig-1g.5gb/pipe";
  EXPECT_EQ(ResponseFields(admission->response),
            (std::vector<std::string>{
                "env CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=30",
                absl::StrCat("env CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=", k1g5gbMib * 3 / 10, "M"),
                "env CUDA_MPS_PIPE_DIRECTORY=" + pipe, "env CUDA_VISIBLE_DEVICES=" + uuid,
                "env NVIDIA_VISIBLE_DEVICES=" + uuid,
                "mount " + root + "/" + uuid + "/pipe -> " + pipe + " rw",
                "mount " + h_.mps_root() + "/shm -> /dev/shm rw"}));
}

TEST_F(MigDaemonTest, AMigDevicesDaemonDownMarksOnlyItsShares) {
  const auto devices = StartFlexibleMpsOn1g5gb();
  ASSERT_FALSE(HasFailure());
  ASSERT_GE(devices.size(), 2u);
  const std::string& victim = devices.front();
  const auto pid = h_.FakeMpsControlPid(absl::StrCat(k1g5gb, "/", victim));
  ASSERT_TRUE(pid.has_value());
  ASSERT_EQ(::kill(*pid, SIGKILL), 0);
  // Exactly the victim's 10 shares go Unhealthy; the other MIG devices keep serving.
  auto only_victim_down = [&](const std::vector<DeviceState>& d) {
    for (const auto& device : d) {
      if (device.healthy == device.id.starts_with(victim + "::")) return false;
    }
    return true;
  };
  EXPECT_TRUE(h_.kubelet().WaitForDevices(k1g5gb, only_victim_down, kWait));
  // mps-control-daemon restarts it; its shares come back.
  EXPECT_TRUE(h_.kubelet().WaitForDevices(
      k1g5gb, [&](const auto& d) { return CountHealthy(d) == 10 * devices.size(); }, kWait));
  EXPECT_EQ(h_.kubelet().Registrations(k1g5gb), 1);
}

TEST_F(MigDaemonTest, UniformMpsOnMigDevicesIsRefused) {
  driver_root_ = DriverRoot(kH100Node);
  ExpectStartRefused(
      kH100Node,
      absl::StrCat("version: v1\nflags:\n  migStrategy: single\n  mpsRoot: ", h_.mps_root(),
                   "\nsharing:\n  mps:\n    resources:\n    - name: gpu\n"
                   "      replicas: 2\n"),
      "MPS with uniform limits is not supported on MIG devices (as upstream)");
}

TEST_F(MigDaemonTest, UniformMpsUnderMixedIsRefusedAsUpstreamDoes) {
  ExpectStartRefused(
      kMixedNode,
      absl::StrCat("version: v1\nflags:\n  migStrategy: mixed\n  mpsRoot: ", h_.mps_root(),
                   "\nsharing:\n  mps:\n    resources:\n    - name: mig-1g.5gb\n"
                   "      replicas: 2\n"),
      "upstream's rule: MPS with uniform limits does not support MIG devices");
}

}  // namespace
}  // namespace nvdp::testing
