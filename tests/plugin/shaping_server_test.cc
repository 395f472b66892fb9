// DevicePluginServer with a ledger, over a real unix socket: capacity shaping of the device list,
// grants recorded, init-container reuse granted per GPU, and the MPS client cap.
#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugin/device_plugin_server.h"
#include "sharing/test_node.h"

namespace nvdp::plugin {
namespace {

using sharing::testing::Shares;
using ::testing::HasSubstr;

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

class ShapingServerTest : public ::testing::Test {
 protected:
  ShapingServerTest() {
    char pattern[] = "/tmp/nvdp-sh-XXXXXX";
    dir_ = ::mkdtemp(pattern);
    spec_ = sharing::testing::MpsSpec(100, 3);
    spec_.capacity_shaping = true;
    ledger_ = std::make_shared<ledger::Ledger>(spec_);
  }
  ~ShapingServerTest() override {
    if (server_) server_->Stop();
    std::filesystem::remove_all(dir_);
  }

  void Start(Accounting accounting) {
    server_ = std::make_unique<DevicePluginServer>(
        spec_, ResponseOptions{}, dir_ + "/nvidia-gpu.sock", std::move(accounting));
    ASSERT_TRUE(server_->Start().ok());
    stub_ = v1beta1::DevicePlugin::NewStub(
        grpc::CreateChannel("unix:" + server_->socket_path(), grpc::InsecureChannelCredentials()));
  }
  void Start() { Start({.ledger = ledger_, .refresh_now = {}, .refresh_soon = {}}); }

  // Healthy shares per GPU in the current device list.
  std::vector<int> HealthyPerGpu() const {
    std::vector<int> healthy(spec_.gpus.size(), 0);
    const auto list = server_->DeviceList();
    for (int i = 0; i < list.devices_size(); ++i) {
      if (list.devices(i).health() == kHealthy) healthy[static_cast<size_t>(i / 100)]++;
    }
    return healthy;
  }

  grpc::Status Allocate(const std::vector<std::string>& ids, v1beta1::AllocateResponse* response) {
    v1beta1::AllocateRequest request;
    auto* container = request.add_container_requests();
    for (const auto& id : ids) container->add_devices_ids(id);
    grpc::ClientContext context;
    return stub_->Allocate(&context, request, response);
  }

  std::string Env(const v1beta1::AllocateResponse& response, const std::string& key) {
    const auto& envs = response.container_responses(0).envs();
    auto it = envs.find(key);
    return it == envs.end() ? "" : it->second;
  }

  std::string dir_;
  sharing::ResourceSpec spec_;
  std::shared_ptr<ledger::Ledger> ledger_;
  std::unique_ptr<DevicePluginServer> server_;
  std::unique_ptr<v1beta1::DevicePlugin::Stub> stub_;
};

TEST_F(ShapingServerTest, UnshapedUntilPodResourcesHasBeenRead) {
  Start();
  v1beta1::AllocateResponse response;
  ASSERT_TRUE(Allocate(Shares(0, 0, 30), &response).ok());
  ASSERT_TRUE(Allocate(Shares(1, 0, 30), &response).ok());
  EXPECT_THAT(HealthyPerGpu(), ::testing::ElementsAre(100, 100, 100));
}

TEST_F(ShapingServerTest, ShowsAllocatedSharesFreeGpusAndTheLargestHoleOnly) {
  ledger_->ApplyList({});
  Start();
  v1beta1::AllocateResponse response;
  ASSERT_TRUE(Allocate(Shares(0, 0, 30), &response).ok());
  EXPECT_THAT(HealthyPerGpu(), ::testing::ElementsAre(100, 100, 100));
  ASSERT_TRUE(Allocate(Shares(1, 0, 50), &response).ok());
  // GPU 0 has the largest hole (70); GPU 1 shows only its 50 allocated shares.
  EXPECT_THAT(HealthyPerGpu(), ::testing::ElementsAre(100, 50, 100));
  // Kubelet frees GPU 0's shares (the pod left): GPU 0 is free again, GPU 1 becomes the hole.
  ledger_->RecordAvailable(Shares(0, 0, 100), {});
  EXPECT_THAT(HealthyPerGpu(), ::testing::ElementsAre(100, 100, 100));
}

TEST_F(ShapingServerTest, FaultsStillMarkEverythingAndMoveTheHole) {
  ledger_->ApplyList({});
  Start();
  v1beta1::AllocateResponse response;
  ASSERT_TRUE(Allocate(Shares(0, 0, 30), &response).ok());
  ASSERT_TRUE(Allocate(Shares(1, 0, 50), &response).ok());
  server_->SetGpuHealthy(spec_.gpus[0].uuid, false);
  EXPECT_THAT(HealthyPerGpu(), ::testing::ElementsAre(0, 100, 100));
}

TEST_F(ShapingServerTest, ShapingOffInTheConfigLeavesTheListAlone) {
  spec_.capacity_shaping = false;
  ledger_->ApplyList({});
  Start();
  v1beta1::AllocateResponse response;
  ASSERT_TRUE(Allocate(Shares(0, 0, 30), &response).ok());
  ASSERT_TRUE(Allocate(Shares(1, 0, 50), &response).ok());
  EXPECT_THAT(HealthyPerGpu(), ::testing::ElementsAre(100, 100, 100));
}

TEST_F(ShapingServerTest, AppReusingItsInitContainersSharesAcrossGpusIsGranted) {
  Start();
  v1beta1::AllocateResponse init, app;
  ASSERT_TRUE(Allocate(Concat(Shares(0, 0, 100), Shares(2, 0, 100)), &init).ok());
  // Kubelet picked the app's 80 at random out of the init container's 200.
  ASSERT_TRUE(Allocate(Concat(Shares(0, 0, 45), Shares(2, 0, 35)), &app).ok());
  EXPECT_EQ(Env(app, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"), "45");
  EXPECT_EQ(Env(app, "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"), "0=18432M,1=14336M");
}

TEST_F(ShapingServerTest, SpanningSetThatIsNotAReuseIsRefused) {
  Start();
  v1beta1::AllocateResponse response;
  auto status = Allocate(Concat(Shares(0, 0, 45), Shares(2, 0, 35)), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("must come from one GPU"));
}

TEST_F(ShapingServerTest, TheFortyNinthClientOnAGpuIsRefused) {
  int refreshes = 0;
  Start({.ledger = ledger_, .refresh_now = [&] { ++refreshes; }, .refresh_soon = {}});
  v1beta1::AllocateResponse response;
  for (int i = 0; i < sharing::kMpsClientCapVolta; ++i) {
    ASSERT_TRUE(Allocate(Shares(0, i, i + 1), &response).ok()) << i;
  }
  EXPECT_EQ(refreshes, 0);
  auto status = Allocate(Shares(0, 60, 61), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("already serves 48 MPS clients"));
  EXPECT_EQ(refreshes, 1) << "looks again before refusing";
  // A whole free GPU is no one else's client count.
  EXPECT_TRUE(Allocate(Shares(1, 0, 100), &response).ok());
  // GetPreferredAllocation passes over the full GPU.
  v1beta1::PreferredAllocationRequest request;
  auto* container = request.add_container_requests();
  for (const auto& id : Concat(Shares(0, 48, 100), Shares(2, 0, 100))) {
    container->add_available_deviceids(id);
  }
  container->set_allocation_size(10);
  grpc::ClientContext context;
  v1beta1::PreferredAllocationResponse preferred;
  ASSERT_TRUE(stub_->GetPreferredAllocation(&context, request, &preferred).ok());
  EXPECT_EQ(preferred.container_responses(0).deviceids(0), Shares(2, 0, 1)[0]);
}

TEST_F(ShapingServerTest, PreferredAllocationTeachesTheLedgerWhatIsFree) {
  ledger_->ApplyList({});
  Start();
  v1beta1::AllocateResponse response;
  ASSERT_TRUE(Allocate(Shares(0, 0, 30), &response).ok());
  ASSERT_TRUE(Allocate(Shares(1, 0, 50), &response).ok());
  EXPECT_THAT(HealthyPerGpu(), ::testing::ElementsAre(100, 50, 100));
  // The pod on GPU 1 left; kubelet offers its shares with the next request.
  v1beta1::PreferredAllocationRequest request;
  auto* container = request.add_container_requests();
  for (const auto& id : Concat(Shares(0, 30, 100), Concat(Shares(1, 0, 50), Shares(2, 0, 100)))) {
    container->add_available_deviceids(id);
  }
  container->set_allocation_size(10);
  grpc::ClientContext context;
  v1beta1::PreferredAllocationResponse preferred;
  ASSERT_TRUE(stub_->GetPreferredAllocation(&context, request, &preferred).ok());
  EXPECT_THAT(HealthyPerGpu(), ::testing::ElementsAre(100, 100, 100));
}

}  // namespace
}  // namespace nvdp::plugin
