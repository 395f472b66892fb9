// DevicePluginServer over a real unix socket, driven by a plain gRPC client.
#include "plugin/device_plugin_server.h"

#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace nvdp::plugin {
namespace {

using ::testing::HasSubstr;

class DevicePluginServerTest : public ::testing::Test {
 protected:
  DevicePluginServerTest() {
    char pattern[] = "/tmp/nvdp-ps-XXXXXX";
    dir_ = ::mkdtemp(pattern);
    spec_.name = "nvidia.com/gpu";
    for (unsigned i = 0; i < 2; ++i) {
      device::Gpu gpu;
      gpu.uuid = "GPU-" + std::to_string(i);
      gpu.index = i;
      gpu.numa_node = static_cast<int>(i);
      spec_.gpus.push_back(gpu);
    }
  }
  ~DevicePluginServerTest() override { std::filesystem::remove_all(dir_); }

  std::string socket() const { return dir_ + "/nvidia-gpu.sock"; }

  std::unique_ptr<v1beta1::DevicePlugin::Stub> Stub() {
    return v1beta1::DevicePlugin::NewStub(
        grpc::CreateChannel("unix:" + socket(), grpc::InsecureChannelCredentials()));
  }

  std::string dir_;
  sharing::ResourceSpec spec_;
};

std::vector<std::string> Health(const v1beta1::ListAndWatchResponse& response) {
  std::vector<std::string> health;
  for (const auto& d : response.devices()) health.push_back(d.id() + "=" + d.health());
  return health;
}

TEST_F(DevicePluginServerTest, ServesOptionsAndRemovesAStaleSocket) {
  std::ofstream(socket()) << "stale";
  DevicePluginServer server(spec_, {}, socket());
  ASSERT_TRUE(server.Start().ok());
  grpc::ClientContext context;
  v1beta1::DevicePluginOptions options;
  ASSERT_TRUE(Stub()->GetDevicePluginOptions(&context, v1beta1::Empty(), &options).ok());
  EXPECT_TRUE(options.get_preferred_allocation_available());
  EXPECT_FALSE(options.pre_start_required());
  server.Stop();
  EXPECT_FALSE(std::filesystem::exists(socket()));
}

TEST_F(DevicePluginServerTest, ListAndWatchResendsTheListOnEveryHealthChange) {
  DevicePluginServer server(spec_, {}, socket());
  ASSERT_TRUE(server.Start().ok());
  auto stub = Stub();
  grpc::ClientContext context;
  auto reader = stub->ListAndWatch(&context, v1beta1::Empty());
  v1beta1::ListAndWatchResponse response;

  ASSERT_TRUE(reader->Read(&response));
  EXPECT_THAT(Health(response), ::testing::ElementsAre("GPU-0=Healthy", "GPU-1=Healthy"));
  EXPECT_EQ(response.devices(1).topology().nodes(0).id(), 1);

  server.SetGpuHealthy("GPU-1", false);
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_THAT(Health(response), ::testing::ElementsAre("GPU-0=Healthy", "GPU-1=Unhealthy"));

  server.SetResourceAvailable(false);
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_THAT(Health(response), ::testing::ElementsAre("GPU-0=Unhealthy", "GPU-1=Unhealthy"));

  server.SetResourceAvailable(true);
  server.SetGpuHealthy("GPU-1", true);
  // Either one or two more lists arrive; the last one is all healthy.
  do {
    ASSERT_TRUE(reader->Read(&response));
  } while (Health(response) != std::vector<std::string>{"GPU-0=Healthy", "GPU-1=Healthy"});

  server.Stop();  // ends the stream with OK
  EXPECT_FALSE(reader->Read(&response));
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(DevicePluginServerTest, ReportsAStreamCancelledByKubelet) {
  absl::Notification lost;
  DevicePluginServer server(spec_, {}, socket(), [&] { lost.Notify(); });
  ASSERT_TRUE(server.Start().ok());
  auto stub = Stub();
  grpc::ClientContext context;
  auto reader = stub->ListAndWatch(&context, v1beta1::Empty());
  v1beta1::ListAndWatchResponse response;
  ASSERT_TRUE(reader->Read(&response));
  context.TryCancel();
  EXPECT_TRUE(lost.WaitForNotificationWithTimeout(absl::Seconds(20)));
}

TEST_F(DevicePluginServerTest, StoppingDoesNotReportLostStreams) {
  bool lost = false;
  {
    DevicePluginServer server(spec_, {}, socket(), [&] { lost = true; });
    ASSERT_TRUE(server.Start().ok());
    auto stub = Stub();
    grpc::ClientContext context;
    auto reader = stub->ListAndWatch(&context, v1beta1::Empty());
    v1beta1::ListAndWatchResponse response;
    ASSERT_TRUE(reader->Read(&response));
    server.Stop();
    EXPECT_FALSE(reader->Read(&response));
  }
  EXPECT_FALSE(lost);
}

TEST_F(DevicePluginServerTest, AllocateErrorsNameTheResourceAndTheIds) {
  DevicePluginServer server(spec_, {}, socket());
  ASSERT_TRUE(server.Start().ok());
  v1beta1::AllocateRequest request;
  request.add_container_requests()->add_devices_ids("GPU-7");
  grpc::ClientContext context;
  v1beta1::AllocateResponse response;
  auto status = Stub()->Allocate(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("nvidia.com/gpu"));
  EXPECT_THAT(status.error_message(), HasSubstr("GPU-7"));
}

TEST_F(DevicePluginServerTest, AllocateAnswersEveryContainer) {
  DevicePluginServer server(spec_, {}, socket());
  ASSERT_TRUE(server.Start().ok());
  v1beta1::AllocateRequest request;
  request.add_container_requests()->add_devices_ids("GPU-0");
  request.add_container_requests()->add_devices_ids("GPU-1");
  grpc::ClientContext context;
  v1beta1::AllocateResponse response;
  ASSERT_TRUE(Stub()->Allocate(&context, request, &response).ok());
  ASSERT_EQ(response.container_responses_size(), 2);
  EXPECT_EQ(response.container_responses(1).envs().at("NVIDIA_VISIBLE_DEVICES"), "GPU-1");
}

TEST_F(DevicePluginServerTest, KnowsWhenItsSocketWasReplaced) {
  DevicePluginServer server(spec_, {}, socket());
  EXPECT_FALSE(server.SocketIsOurs());  // not started
  ASSERT_TRUE(server.Start().ok());
  EXPECT_TRUE(server.SocketIsOurs());
  std::filesystem::remove(socket());  // kubelet wiping the directory
  EXPECT_FALSE(server.SocketIsOurs());
  std::ofstream(socket()) << "someone else's";
  EXPECT_FALSE(server.SocketIsOurs());
}

TEST_F(DevicePluginServerTest, RefusesASocketPathTooLongForUnixSockets) {
  DevicePluginServer server(spec_, {}, dir_ + "/" + std::string(120, 'x') + ".sock");
  auto status = server.Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("too long"));
}

}  // namespace
}  // namespace nvdp::plugin
