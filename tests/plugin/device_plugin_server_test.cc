// DevicePluginServer over a real unix socket, driven by a plain gRPC client.
#include "plugin/device_plugin_server.h"

#include <grpcpp/grpcpp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

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

// Any local client can open and cancel streams; the plugin cannot tell it from kubelet, so a
// cancelled stream changes nothing: the same socket keeps serving other clients.
TEST_F(DevicePluginServerTest, AStreamCancelledByAClientChangesNothing) {
  DevicePluginServer server(spec_, {}, socket());
  ASSERT_TRUE(server.Start().ok());
  auto stub = Stub();
  for (int i = 0; i < 20; ++i) {
    grpc::ClientContext context;
    auto reader = stub->ListAndWatch(&context, v1beta1::Empty());
    v1beta1::ListAndWatchResponse response;
    ASSERT_TRUE(reader->Read(&response));
    context.TryCancel();
    (void)reader->Finish();
  }
  EXPECT_TRUE(server.SocketIsOurs());
  v1beta1::AllocateRequest request;
  request.add_container_requests()->add_devices_ids("GPU-1");
  grpc::ClientContext context;
  v1beta1::AllocateResponse response;
  EXPECT_TRUE(stub->Allocate(&context, request, &response).ok());
}

// Streams are capped; one that ends frees its slot.
TEST_F(DevicePluginServerTest, RefusesStreamsPastTheCapAndFreesSlots) {
  DevicePluginServer server(spec_, {}, socket());
  ASSERT_TRUE(server.Start().ok());
  auto stub = Stub();
  struct Open {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1beta1::ListAndWatchResponse>> reader;
  };
  std::vector<std::unique_ptr<Open>> open;
  for (size_t i = 0; i < kMaxStreams; ++i) {
    auto stream = std::make_unique<Open>();
    stream->reader = stub->ListAndWatch(&stream->context, v1beta1::Empty());
    v1beta1::ListAndWatchResponse response;
    ASSERT_TRUE(stream->reader->Read(&response)) << i;
    open.push_back(std::move(stream));
  }
  EXPECT_EQ(server.StreamCount(), kMaxStreams);
  {
    grpc::ClientContext context;
    auto reader = stub->ListAndWatch(&context, v1beta1::Empty());
    v1beta1::ListAndWatchResponse response;
    EXPECT_FALSE(reader->Read(&response));
    auto status = reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_THAT(status.error_message(), HasSubstr("at most 64 ListAndWatch streams"));
  }
  open.back()->context.TryCancel();
  (void)open.back()->reader->Finish();
  open.pop_back();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (server.StreamCount() >= kMaxStreams && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  grpc::ClientContext context;
  auto reader = stub->ListAndWatch(&context, v1beta1::Empty());
  v1beta1::ListAndWatchResponse response;
  EXPECT_TRUE(reader->Read(&response));
  context.TryCancel();
  (void)reader->Finish();
  for (auto& stream : open) {
    stream->context.TryCancel();
    (void)stream->reader->Finish();
  }
}

TEST_F(DevicePluginServerTest, StoppingEndsOpenStreams) {
  DevicePluginServer server(spec_, {}, socket());
  ASSERT_TRUE(server.Start().ok());
  auto stub = Stub();
  grpc::ClientContext context;
  auto reader = stub->ListAndWatch(&context, v1beta1::Empty());
  v1beta1::ListAndWatchResponse response;
  ASSERT_TRUE(reader->Read(&response));
  server.Stop();
  EXPECT_FALSE(reader->Read(&response));
  EXPECT_FALSE(std::filesystem::exists(socket()));
}

// Only root (kubelet) may connect, whatever the umask.
TEST_F(DevicePluginServerTest, SocketIsOwnerOnlyWhateverTheUmask) {
  const mode_t old_umask = ::umask(0);
  DevicePluginServer server(spec_, {}, socket());
  auto status = server.Start();
  ::umask(old_umask);
  ASSERT_TRUE(status.ok()) << status;
  struct stat st {};
  ASSERT_EQ(::stat(socket().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

// A second instance on the same directory (a rolling update) waits instead of deleting the
// socket of the one still serving.
TEST_F(DevicePluginServerTest, LeavesASocketThatAnotherProcessServes) {
  DevicePluginServer first(spec_, {}, socket());
  ASSERT_TRUE(first.Start().ok());
  DevicePluginServer second(spec_, {}, socket());
  auto status = second.Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(status.message(), HasSubstr("another process is serving"));
  EXPECT_TRUE(first.SocketIsOurs());
  first.Stop();
  EXPECT_TRUE(second.Start().ok());
  EXPECT_TRUE(second.SocketIsOurs());
}

// A socket nobody listens on (its process was killed) is replaced.
TEST_F(DevicePluginServerTest, ReplacesAStaleSocket) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", socket().c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0);
  ::close(fd);  // bound, never listening, file left behind: what SIGKILL leaves
  DevicePluginServer server(spec_, {}, socket());
  auto status = server.Start();
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_TRUE(server.SocketIsOurs());
}

// Something that is not a socket under our name would block serving for ever: it is removed.
TEST_F(DevicePluginServerTest, RemovesADirectoryNamedLikeItsSocket) {
  std::filesystem::create_directories(socket() + "/inner");
  DevicePluginServer server(spec_, {}, socket());
  auto status = server.Start();
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_TRUE(server.SocketIsOurs());
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

// Stop() returns before gRPC's shutdown is done, and that shutdown removes the path the server
// bound: a server started at the same path meanwhile (kubelet restarting) must keep its socket.
TEST_F(DevicePluginServerTest, AnOldServerFinishingItsShutdownLeavesTheNewSocket) {
  auto old_server = std::make_unique<DevicePluginServer>(spec_, ResponseOptions{}, socket());
  ASSERT_TRUE(old_server->Start().ok());
  auto stub = Stub();
  grpc::ClientContext context;
  auto reader = stub->ListAndWatch(&context, v1beta1::Empty());
  v1beta1::ListAndWatchResponse response;
  ASSERT_TRUE(reader->Read(&response));
  old_server->Stop();
  EXPECT_FALSE(old_server->SocketIsOurs());
  EXPECT_FALSE(std::filesystem::exists(socket()));
  DevicePluginServer new_server(spec_, {}, socket());
  ASSERT_TRUE(new_server.Start().ok());
  old_server.reset();  // waits for the old shutdown
  EXPECT_FALSE(reader->Read(&response));
  EXPECT_TRUE(new_server.SocketIsOurs());
  grpc::ClientContext options_context;
  v1beta1::DevicePluginOptions options;
  EXPECT_TRUE(Stub()->GetDevicePluginOptions(&options_context, v1beta1::Empty(), &options).ok());
  // Nothing but the socket is left in kubelet's directory (no temporary names).
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    files.push_back(entry.path().filename().string());
  }
  EXPECT_THAT(files, ::testing::ElementsAre("nvidia-gpu.sock"));
  new_server.Stop();
  EXPECT_FALSE(std::filesystem::exists(socket()));
}

// A stopping server removes the socket only while it is its own.
TEST_F(DevicePluginServerTest, StopLeavesASocketThatIsNotItsOwn) {
  DevicePluginServer server(spec_, {}, socket());
  ASSERT_TRUE(server.Start().ok());
  std::filesystem::remove(socket());
  std::ofstream(socket()) << "someone else's";
  server.Stop();
  EXPECT_TRUE(std::filesystem::exists(socket()));
}

TEST_F(DevicePluginServerTest, RefusesASocketPathTooLongForUnixSockets) {
  DevicePluginServer server(spec_, {}, dir_ + "/" + std::string(120, 'x') + ".sock");
  auto status = server.Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("too long"));
}

}  // namespace
}  // namespace nvdp::plugin
