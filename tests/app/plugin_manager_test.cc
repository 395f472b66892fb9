// PluginManager with real unix sockets and the test kubelet: what it serves and whether it
// registers.
#include "app/plugin_manager.h"

#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "fakes/kubelet/test_kubelet.h"
#include "gtest/gtest.h"
#include "rpc/unix_channel.h"

namespace nvdp::app {
namespace {

sharing::ResourceSpec TwoGpus() {
  sharing::ResourceSpec spec;
  spec.name = "nvidia.com/gpu";
  for (unsigned i = 0; i < 2; ++i) {
    device::Gpu gpu;
    gpu.uuid = "GPU-" + std::to_string(i);
    gpu.index = i;
    spec.gpus.push_back(gpu);
  }
  return spec;
}

// Polls for a file (the plugin socket offers nothing to wait on) with a deadline.
bool WaitForFile(const std::string& path) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    if (std::filesystem::exists(path)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

class PluginManagerTest : public ::testing::Test {
 protected:
  PluginManagerTest() {
    char pattern[] = "/tmp/nvdp-pm-XXXXXX";
    dir_ = ::mkdtemp(pattern);
  }
  ~PluginManagerTest() override { std::filesystem::remove_all(dir_); }

  std::string dir_;
};

// Upstream's KUBELET_SOCKET="": the resources are served, and nothing registers with kubelet.
TEST_F(PluginManagerTest, EmptyKubeletSocketServesWithoutRegistering) {
  auto kubelet = testing::TestKubelet::Start(dir_);
  ASSERT_TRUE(kubelet.ok()) << kubelet.status();
  ManagerOptions options;
  options.kubelet_socket = "";
  options.plugin_dir = dir_;
  PluginManager manager(options);
  ASSERT_TRUE(manager.Start({TwoGpus()}).ok());

  const std::string socket = dir_ + "/nvidia-gpu.sock";
  ASSERT_TRUE(WaitForFile(socket));
  auto stub = v1beta1::DevicePlugin::NewStub(rpc::UnixChannel(socket));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto reader = stub->ListAndWatch(&context, v1beta1::Empty());
  v1beta1::ListAndWatchResponse response;
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.devices_size(), 2);
  context.TryCancel();
  (void)reader->Finish();

  manager.Stop();  // joins the worker: a registration would have completed by now
  EXPECT_EQ((*kubelet)->Registrations("nvidia.com/gpu"), 0);
}

TEST_F(PluginManagerTest, KubeletSocketGivenRegisters) {
  auto kubelet = testing::TestKubelet::Start(dir_);
  ASSERT_TRUE(kubelet.ok()) << kubelet.status();
  ManagerOptions options;
  options.kubelet_socket = (*kubelet)->socket_path();
  PluginManager manager(options);
  ASSERT_TRUE(manager.Start({TwoGpus()}).ok());
  EXPECT_TRUE((*kubelet)->WaitForRegistrations("nvidia.com/gpu", 1, std::chrono::seconds(20)));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/nvidia-gpu.sock"));
  manager.Stop();
}

}  // namespace
}  // namespace nvdp::app
