// The test kubelet's pod-level accounting against a scripted device plugin: kubelet's reuse of
// init containers' devices, what List reports, lazy freeing of deleted pods, refusals, and the
// scheduler's view.
#include "fakes/kubelet/test_kubelet.h"

#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kubelet/registrar.h"
#include "podresources/lister.h"
#include "podresources/v1/api.grpc.pb.h"

namespace nvdp::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::IsSubsetOf;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAreArray;

constexpr char kResource[] = "example.com/dev";
constexpr auto kWaitFor = std::chrono::seconds(20);

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/nvdp-tk-XXXXXX";
    path_ = ::mkdtemp(pattern);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::set<std::string> AsSet(const std::vector<std::string>& ids) {
  return std::set<std::string>(ids.begin(), ids.end());
}

// A device plugin whose answers the test controls. Devices d0..d7, d0-d3 on NUMA node 0 and
// d4-d7 on node 1. Prefers must_include, then available in sorted order; records every call.
class ScriptedPlugin final : public v1beta1::DevicePlugin::Service {
 public:
  struct PreferredCall {
    std::set<std::string> available, must_include;
    int size;
  };

  explicit ScriptedPlugin(bool preferred_allocation = true) : preferred_(preferred_allocation) {
    for (int i = 0; i < 8; ++i) devices_.push_back({"d" + std::to_string(i), true});
  }

  grpc::Status GetDevicePluginOptions(grpc::ServerContext*, const v1beta1::Empty*,
                                      v1beta1::DevicePluginOptions* options) override {
    options->set_get_preferred_allocation_available(preferred_);
    return grpc::Status::OK;
  }

  grpc::Status ListAndWatch(grpc::ServerContext* context, const v1beta1::Empty*,
                            grpc::ServerWriter<v1beta1::ListAndWatchResponse>* writer) override {
    int sent = -1;
    while (!context->IsCancelled()) {
      v1beta1::ListAndWatchResponse response;
      {
        absl::MutexLock lock(&mu_);
        auto changed = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return version_ != sent; };
        if (!mu_.AwaitWithTimeout(absl::Condition(&changed), absl::Milliseconds(50))) continue;
        sent = version_;
        for (size_t i = 0; i < devices_.size(); ++i) {
          auto* device = response.add_devices();
          device->set_id(devices_[i].first);
          device->set_health(devices_[i].second ? "Healthy" : "Unhealthy");
          device->mutable_topology()->add_nodes()->set_id(i < 4 ? 0 : 1);
        }
      }
      if (!writer->Write(response)) break;
    }
    return grpc::Status::OK;
  }

  grpc::Status GetPreferredAllocation(grpc::ServerContext*,
                                      const v1beta1::PreferredAllocationRequest* request,
                                      v1beta1::PreferredAllocationResponse* response) override {
    const auto& container = request->container_requests(0);
    PreferredCall call{
        {container.available_deviceids().begin(), container.available_deviceids().end()},
        {container.must_include_deviceids().begin(), container.must_include_deviceids().end()},
        container.allocation_size()};
    std::vector<std::string> chosen(call.must_include.begin(), call.must_include.end());
    for (const auto& id : call.available) {
      if (static_cast<int>(chosen.size()) >= call.size) break;
      if (!call.must_include.contains(id)) chosen.push_back(id);
    }
    auto* answer = response->add_container_responses();
    for (const auto& id : chosen) answer->add_deviceids(id);
    absl::MutexLock lock(&mu_);
    preferred_calls_.push_back(std::move(call));
    return grpc::Status::OK;
  }

  grpc::Status Allocate(grpc::ServerContext*, const v1beta1::AllocateRequest* request,
                        v1beta1::AllocateResponse* response) override {
    const auto& ids = request->container_requests(0).devices_ids();
    std::vector<std::string> got(ids.begin(), ids.end());
    absl::MutexLock lock(&mu_);
    allocate_calls_.push_back(got);
    for (const auto& id : got) {
      if (refuse_.contains(id)) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "refusing " + id);
      }
    }
    (*response->add_container_responses()->mutable_envs())["IDS"] = absl::StrJoin(got, ",");
    return grpc::Status::OK;
  }

  void SetHealthy(int device, bool healthy) {
    absl::MutexLock lock(&mu_);
    devices_[static_cast<size_t>(device)].second = healthy;
    ++version_;
  }
  void Refuse(const std::string& id) {
    absl::MutexLock lock(&mu_);
    refuse_.insert(id);
  }
  std::vector<PreferredCall> preferred_calls() {
    absl::MutexLock lock(&mu_);
    return preferred_calls_;
  }
  std::vector<std::vector<std::string>> allocate_calls() {
    absl::MutexLock lock(&mu_);
    return allocate_calls_;
  }

 private:
  const bool preferred_;
  absl::Mutex mu_;
  std::vector<std::pair<std::string, bool>> devices_ ABSL_GUARDED_BY(mu_);
  int version_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<std::string> refuse_ ABSL_GUARDED_BY(mu_);
  std::vector<PreferredCall> preferred_calls_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<std::string>> allocate_calls_ ABSL_GUARDED_BY(mu_);
};

class TestKubeletPodsTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(true); }
  void TearDown() override {
    kubelet_.reset();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }

  void Start(bool preferred_allocation) {
    plugin_ = std::make_unique<ScriptedPlugin>(preferred_allocation);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + dir_.path() + "/dev.sock",
                             grpc::InsecureServerCredentials());
    builder.RegisterService(plugin_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    auto kubelet = TestKubelet::Start(dir_.path());
    ASSERT_TRUE(kubelet.ok()) << kubelet.status();
    kubelet_ = *std::move(kubelet);
    ASSERT_TRUE(kubelet_->StartPodResources(dir_.path() + "/pod-resources.sock").ok());
    ASSERT_TRUE(kubelet::Register(kubelet_->socket_path(), {"dev.sock", kResource}, kWaitFor).ok());
    ASSERT_TRUE(kubelet_->WaitForDevices(
        kResource, [](const auto& devices) { return devices.size() == 8; }, kWaitFor));
  }
  void Restart(bool preferred_allocation) {
    kubelet_.reset();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    Start(preferred_allocation);
  }

  static PodSpec Pod(const std::string& name, std::vector<int> init, std::vector<int> app) {
    PodSpec pod{name, {}, {}};
    for (size_t i = 0; i < init.size(); ++i) {
      pod.init_containers.push_back({"init" + std::to_string(i), {{kResource, init[i]}}});
    }
    for (size_t i = 0; i < app.size(); ++i) {
      pod.containers.push_back({"app" + std::to_string(i), {{kResource, app[i]}}});
    }
    return pod;
  }

  std::vector<podresources::ContainerDevices> List() {
    auto listed = podresources::MakeGrpcLister(kubelet_->pod_resources_socket())->List();
    EXPECT_TRUE(listed.ok()) << listed.status();
    return listed.ok() ? *listed : std::vector<podresources::ContainerDevices>{};
  }

  TempDir dir_;
  std::unique_ptr<ScriptedPlugin> plugin_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<TestKubelet> kubelet_;
};

TEST_F(TestKubeletPodsTest, AnAppContainerGetsThePreferredDevices) {
  auto admitted = kubelet_->AdmitPod(Pod("p", {}, {3}));
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  const Admission& got = admitted->containers.at(0).resources.at(kResource);
  EXPECT_THAT(AsSet(got.device_ids), (std::set<std::string>{"d0", "d1", "d2"}));
  EXPECT_TRUE(got.asked_preference);
  EXPECT_THAT(got.reused, IsEmpty());
  EXPECT_EQ(got.response.envs().at("IDS"), absl::StrJoin(got.device_ids, ","));

  auto calls = plugin_->preferred_calls();
  ASSERT_THAT(calls, SizeIs(1));
  EXPECT_THAT(calls[0].available, SizeIs(8));
  EXPECT_THAT(calls[0].must_include, IsEmpty());
  EXPECT_EQ(calls[0].size, 3);
  EXPECT_THAT(List(), ElementsAre(podresources::ContainerDevices{"default", "p", "app0", kResource,
                                                                 got.device_ids}));
}

TEST_F(TestKubeletPodsTest, ReuseThatCoversTheRequestSkipsThePreference) {
  auto admitted = kubelet_->AdmitPod(Pod("p", {4}, {2}));
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  const auto& init = admitted->init_containers.at(0).resources.at(kResource);
  const auto& app = admitted->containers.at(0).resources.at(kResource);
  EXPECT_THAT(init.device_ids, SizeIs(4));
  EXPECT_THAT(app.device_ids, SizeIs(2));
  EXPECT_THAT(app.device_ids, IsSubsetOf(init.device_ids));
  EXPECT_THAT(app.reused, UnorderedElementsAreArray(app.device_ids));
  EXPECT_FALSE(app.asked_preference);
  EXPECT_THAT(plugin_->preferred_calls(), SizeIs(1));  // the init container's only
  EXPECT_THAT(plugin_->allocate_calls(), SizeIs(2));

  // List: the app container only; the init container's devices stay allocated.
  EXPECT_THAT(List(), ElementsAre(podresources::ContainerDevices{"default", "p", "app0", kResource,
                                                                 app.device_ids}));
  EXPECT_EQ(kubelet_->Allocated(kResource), AsSet(init.device_ids));
  EXPECT_EQ(kubelet_->Requested(kResource), 4);
}

TEST_F(TestKubeletPodsTest, PartialReuseIsAMustIncludeOfThePreference) {
  auto admitted = kubelet_->AdmitPod(Pod("p", {2}, {3}));
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  const auto& init = admitted->init_containers.at(0).resources.at(kResource);
  const auto& app = admitted->containers.at(0).resources.at(kResource);
  EXPECT_TRUE(app.asked_preference);
  EXPECT_THAT(app.reused, UnorderedElementsAreArray(init.device_ids));
  auto calls = plugin_->preferred_calls();
  ASSERT_THAT(calls, SizeIs(2));
  EXPECT_EQ(calls[1].must_include, AsSet(init.device_ids));
  EXPECT_EQ(calls[1].size, 3);
  // Available: the healthy devices nobody holds, and the reused ones.
  EXPECT_THAT(calls[1].available, SizeIs(8));
  EXPECT_THAT(init.device_ids, IsSubsetOf(app.device_ids));
  EXPECT_EQ(kubelet_->Allocated(kResource).size(), 3u);
}

TEST_F(TestKubeletPodsTest, LaterAppContainersReuseWhatEarlierOnesLeft) {
  auto admitted = kubelet_->AdmitPod(Pod("p", {4}, {2, 2}));
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  const auto& init = admitted->init_containers.at(0).resources.at(kResource);
  const auto& a = admitted->containers.at(0).resources.at(kResource);
  const auto& b = admitted->containers.at(1).resources.at(kResource);
  std::vector<std::string> both = a.device_ids;
  both.insert(both.end(), b.device_ids.begin(), b.device_ids.end());
  EXPECT_THAT(both, UnorderedElementsAreArray(init.device_ids));
  EXPECT_THAT(List(), SizeIs(2));
}

TEST_F(TestKubeletPodsTest, ReuseOrderIsRandomButSeeded) {
  auto reused = [&](uint32_t seed) {
    kubelet_->SetSeed(seed);
    auto admitted = kubelet_->AdmitPod(Pod("p", {4}, {1}));
    EXPECT_TRUE(admitted.ok()) << admitted.status();
    std::string id =
        admitted.ok() ? admitted->containers.at(0).resources.at(kResource).reused[0] : "";
    kubelet_->DeletePod("p");
    return id;
  };
  EXPECT_EQ(reused(7), reused(7));
  std::set<std::string> seen;
  for (uint32_t seed = 0; seed < 20; ++seed) seen.insert(reused(seed));
  EXPECT_GT(seen.size(), 1u);
}

TEST_F(TestKubeletPodsTest, ADeletedPodLeavesListAtOnceAndIsFreedLazily) {
  ASSERT_TRUE(kubelet_->AdmitPod(Pod("p", {}, {3})).ok());
  ASSERT_TRUE(kubelet_->AdmitPod(Pod("q", {}, {2})).ok());
  EXPECT_EQ(kubelet_->Requested(kResource), 5);
  EXPECT_TRUE(kubelet_->DeletePod("p"));
  EXPECT_FALSE(kubelet_->DeletePod("p"));
  EXPECT_THAT(kubelet_->LivePods(), ElementsAre("q"));
  EXPECT_EQ(kubelet_->Requested(kResource), 2);
  EXPECT_THAT(kubelet_->ListedDevices(), SizeIs(1));
  EXPECT_EQ(kubelet_->Allocated(kResource).size(), 5u);  // not freed yet

  const int calls = kubelet_->ListCalls();
  auto listed = List();  // List frees first
  ASSERT_THAT(listed, SizeIs(1));
  EXPECT_EQ(listed[0].pod_name, "q");
  EXPECT_EQ(kubelet_->ListCalls(), calls + 1);
  EXPECT_EQ(kubelet_->Allocated(kResource), AsSet(listed[0].device_ids));
  EXPECT_EQ(kubelet_->ListedDevices(), listed);
}

TEST_F(TestKubeletPodsTest, TheNextAllocationFreesDeletedPods) {
  ASSERT_TRUE(kubelet_->AdmitPod(Pod("p", {}, {8})).ok());
  EXPECT_TRUE(kubelet_->DeletePod("p"));
  auto admitted = kubelet_->AdmitPod(Pod("q", {}, {8}));
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  EXPECT_EQ(kubelet_->Allocated(kResource).size(), 8u);
  // A pod of the same name again is a new pod.
  EXPECT_TRUE(kubelet_->DeletePod("q"));
  EXPECT_TRUE(kubelet_->AdmitPod(Pod("q", {}, {1})).ok());
  EXPECT_EQ(kubelet_->AdmitPod(Pod("q", {}, {1})).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_F(TestKubeletPodsTest, AnAllocateErrorFailsThePodAndFreesItsDevices) {
  plugin_->Refuse("d3");
  // init takes d0-d1; app0 reuses them and adds d2, d3 (refused).
  auto admitted = kubelet_->AdmitPod(Pod("p", {2}, {4}));
  ASSERT_FALSE(admitted.ok());
  EXPECT_EQ(admitted.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(admitted.status().message(),
            "Allocate failed due to rpc error: code = InvalidArgument desc = refusing d3, which is "
            "unexpected");
  EXPECT_THAT(kubelet_->LivePods(), IsEmpty());
  EXPECT_THAT(kubelet_->Allocated(kResource), IsEmpty());
  EXPECT_EQ(kubelet_->Requested(kResource), 0);
}

TEST_F(TestKubeletPodsTest, TooFewDevicesIsKubeletsMessage) {
  ASSERT_TRUE(kubelet_->AdmitPod(Pod("p", {}, {6})).ok());
  auto admitted = kubelet_->AdmitPod(Pod("q", {}, {3}));
  ASSERT_FALSE(admitted.ok());
  EXPECT_EQ(admitted.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(admitted.status().message(),
            "Allocate failed due to requested number of devices unavailable for example.com/dev. "
            "Requested: 3, Available: 2, which is unexpected");
  auto other = kubelet_->AdmitPod({"r", {}, {{"c", {{"example.com/none", 1}}}}});
  ASSERT_FALSE(other.ok());
  EXPECT_THAT(other.status().message(), HasSubstr("Node didn't have enough resource"));
}

TEST_F(TestKubeletPodsTest, TheSchedulerCountsEffectiveRequestsAgainstHealthyDevices) {
  EXPECT_EQ(kubelet_->Allocatable(kResource), 8);
  plugin_->SetHealthy(7, false);
  ASSERT_TRUE(kubelet_->WaitForDevices(
      kResource,
      [](const auto& devices) {
        return std::count_if(devices.begin(), devices.end(),
                             [](const auto& d) { return d.healthy; }) == 7;
      },
      kWaitFor));
  EXPECT_EQ(kubelet_->Allocatable(kResource), 7);

  EXPECT_EQ(EffectiveRequests(Pod("x", {5, 2}, {1, 3})),
            (std::map<std::string, int64_t>{{kResource, 5}}));
  EXPECT_EQ(EffectiveRequests(Pod("x", {2}, {1, 3})),
            (std::map<std::string, int64_t>{{kResource, 4}}));
  ASSERT_TRUE(kubelet_->AdmitPod(Pod("p", {5}, {1})).ok());  // counts 5
  EXPECT_EQ(kubelet_->Requested(kResource), 5);
  EXPECT_TRUE(kubelet_->SchedulerFits(Pod("q", {}, {2})));
  EXPECT_FALSE(kubelet_->SchedulerFits(Pod("q", {}, {3})));
  EXPECT_FALSE(kubelet_->SchedulerFits(Pod("q", {3}, {1})));
  kubelet_->DeletePod("p");  // the scheduler sees the deletion at once
  EXPECT_TRUE(kubelet_->SchedulerFits(Pod("q", {}, {7})));
  EXPECT_FALSE(kubelet_->SchedulerFits(Pod("q", {}, {8})));
}

TEST_F(TestKubeletPodsTest, AdmitAndReleaseArePodsToo) {
  auto a = kubelet_->Admit(kResource, 2);
  ASSERT_TRUE(a.ok()) << a.status();
  auto listed = List();
  ASSERT_THAT(listed, SizeIs(1));
  EXPECT_EQ(listed[0].pod_name, "admit-1");
  EXPECT_EQ(kubelet_->Requested(kResource), 2);
  kubelet_->Release(kResource, a->device_ids);  // freed at once
  EXPECT_THAT(kubelet_->LivePods(), IsEmpty());
  EXPECT_THAT(kubelet_->Allocated(kResource), IsEmpty());
  EXPECT_THAT(List(), IsEmpty());
}

TEST_F(TestKubeletPodsTest, ListReportsOneEntryPerNumaNodeAndAllocatableTheHealthyDevices) {
  ASSERT_TRUE(kubelet_->AdmitPod(Pod("p", {}, {6})).ok());  // d0-d5: NUMA 0 and 1
  auto channel = grpc::CreateChannel("unix:" + kubelet_->pod_resources_socket(),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::PodResourcesLister::NewStub(channel);
  grpc::ClientContext context;
  v1::ListPodResourcesResponse response;
  ASSERT_TRUE(stub->List(&context, v1::ListPodResourcesRequest(), &response).ok());
  ASSERT_EQ(response.pod_resources_size(), 1);
  const auto& pod = response.pod_resources(0);
  EXPECT_EQ(pod.namespace_(), "default");
  ASSERT_EQ(pod.containers_size(), 1);
  ASSERT_EQ(pod.containers(0).devices_size(), 2);
  EXPECT_EQ(pod.containers(0).devices(0).topology().nodes(0).id(), 0);
  EXPECT_EQ(pod.containers(0).devices(0).device_ids_size(), 4);
  EXPECT_EQ(pod.containers(0).devices(1).topology().nodes(0).id(), 1);
  EXPECT_EQ(pod.containers(0).devices(1).device_ids_size(), 2);

  grpc::ClientContext allocatable_context;
  v1::AllocatableResourcesResponse allocatable;
  ASSERT_TRUE(stub->GetAllocatableResources(&allocatable_context, v1::AllocatableResourcesRequest(),
                                            &allocatable)
                  .ok());
  EXPECT_EQ(allocatable.devices_size(), 8);
}

TEST_F(TestKubeletPodsTest, WithoutPreferenceSupportNoPreferenceIsAsked) {
  Restart(/*preferred_allocation=*/false);
  auto admitted = kubelet_->AdmitPod(Pod("p", {}, {3}));
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  EXPECT_FALSE(admitted->containers.at(0).resources.at(kResource).asked_preference);
  EXPECT_THAT(plugin_->preferred_calls(), IsEmpty());
}

TEST_F(TestKubeletPodsTest, PodsSurviveAKubeletRestartAndListIsServedAgain) {
  ASSERT_TRUE(kubelet_->AdmitPod(Pod("p", {}, {3})).ok());
  ASSERT_TRUE(kubelet_->Restart().ok());
  auto listed = List();
  ASSERT_THAT(listed, SizeIs(1));
  EXPECT_EQ(listed[0].pod_name, "p");
}

}  // namespace
}  // namespace nvdp::testing
