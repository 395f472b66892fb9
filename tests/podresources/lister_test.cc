// The PodResources client against a small in-test server on a real unix socket: flattening of
// kubelet's answer, and errors that stay clear and bounded whatever the peer does.
#include "podresources/lister.h"

#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "podresources/v1/api.grpc.pb.h"

namespace nvdp::podresources {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/nvdp-pr-XXXXXX";
    path_ = ::mkdtemp(pattern);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Answers List with whatever `handler` says.
class FakeKubelet final : public v1::PodResourcesLister::Service {
 public:
  using Handler = std::function<grpc::Status(grpc::ServerContext*, v1::ListPodResourcesResponse*)>;

  FakeKubelet(const std::string& socket_path, Handler handler) : handler_(std::move(handler)) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + socket_path, grpc::InsecureServerCredentials());
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~FakeKubelet() override { Stop(); }
  void Stop() {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server_.reset();
  }
  bool ok() const { return server_ != nullptr; }
  int calls() const { return calls_; }

  grpc::Status List(grpc::ServerContext* context, const v1::ListPodResourcesRequest*,
                    v1::ListPodResourcesResponse* response) override {
    ++calls_;
    return handler_(context, response);
  }

 private:
  Handler handler_;
  std::atomic<int> calls_{0};
  std::unique_ptr<grpc::Server> server_;
};

void AddDevices(v1::ContainerResources* container, const std::string& resource,
                const std::vector<std::string>& ids, int64_t numa) {
  auto* devices = container->add_devices();
  devices->set_resource_name(resource);
  for (const auto& id : ids) devices->add_device_ids(id);
  devices->mutable_topology()->add_nodes()->set_id(numa);
}

grpc::Status TwoPods(grpc::ServerContext*, v1::ListPodResourcesResponse* response) {
  auto* a = response->add_pod_resources();
  a->set_name("a");
  a->set_namespace_("ns1");
  auto* main = a->add_containers();
  main->set_name("main");
  // Kubelet splits one container's devices of one resource by NUMA node.
  AddDevices(main, "nvidia.com/gpu.shared", {"G0::0", "G0::1"}, 0);
  AddDevices(main, "nvidia.com/gpu.shared", {"G4::0", "G0::1"}, 1);
  AddDevices(main, "nvidia.com/gpu", {"G7"}, 1);
  auto* sidecar = a->add_containers();  // no devices: left out
  sidecar->set_name("sidecar");
  AddDevices(sidecar, "nvidia.com/gpu", {}, 0);
  auto* b = response->add_pod_resources();
  b->set_name("b");
  b->set_namespace_("ns2");
  auto* only = b->add_containers();
  only->set_name("main");
  AddDevices(only, "nvidia.com/gpu.shared", {"G1::5"}, 0);
  response->add_pod_resources()->set_name("empty");
  return grpc::Status::OK;
}

TEST(ListerTest, TheMethodPathIsKubeletsExactly) {
  const auto* method = google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
      "v1.PodResourcesLister.List");
  ASSERT_NE(method, nullptr);
  EXPECT_EQ(method->input_type()->full_name(), "v1.ListPodResourcesRequest");
  EXPECT_EQ(method->output_type()->full_name(), "v1.ListPodResourcesResponse");
  EXPECT_NE(google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
                "v1.PodResourcesLister.GetAllocatableResources"),
            nullptr);
}

TEST(ListerTest, FlattensToOneEntryPerContainerAndResource) {
  TempDir dir;
  const std::string socket = dir.path() + "/kubelet.sock";
  FakeKubelet kubelet(socket, TwoPods);
  ASSERT_TRUE(kubelet.ok());
  auto lister = MakeGrpcLister(socket);
  auto listed = lister->List();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_THAT(*listed,
              ElementsAre(
                  ContainerDevices{
                      "ns1", "a", "main", "nvidia.com/gpu.shared", {"G0::0", "G0::1", "G4::0"}},
                  ContainerDevices{"ns1", "a", "main", "nvidia.com/gpu", {"G7"}},
                  ContainerDevices{"ns2", "b", "main", "nvidia.com/gpu.shared", {"G1::5"}}));
}

TEST(ListerTest, AMissingSocketIsNotFound) {
  TempDir dir;
  auto listed = MakeGrpcLister(dir.path() + "/kubelet.sock")->List();
  ASSERT_FALSE(listed.ok());
  EXPECT_EQ(listed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(listed.status().message(),
            "pod-resources socket " + dir.path() + "/kubelet.sock: not found");
}

TEST(ListerTest, AFileThatIsNoSocketIsSaidSo) {
  TempDir dir;
  std::ofstream(dir.path() + "/kubelet.sock") << "x";
  auto listed = MakeGrpcLister(dir.path() + "/kubelet.sock")->List();
  ASSERT_FALSE(listed.ok());
  EXPECT_EQ(listed.status().message(),
            "pod-resources socket " + dir.path() + "/kubelet.sock: not a socket");
}

TEST(ListerTest, AStaleSocketFailsFastAsUnavailable) {
  TempDir dir;
  const std::string socket = dir.path() + "/kubelet.sock";
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", socket.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0);
  ::close(fd);  // bound, never listened on: what a killed kubelet leaves

  const auto start = absl::Now();
  auto listed = MakeGrpcLister(socket, absl::Seconds(10))->List();
  ASSERT_FALSE(listed.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(listed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(listed.status().message(),
              HasSubstr("pod-resources socket " + socket + ": List: unavailable: "));
}

TEST(ListerTest, AHangingKubeletTimesOut) {
  TempDir dir;
  const std::string socket = dir.path() + "/kubelet.sock";
  FakeKubelet kubelet(socket, [](grpc::ServerContext* context, v1::ListPodResourcesResponse*) {
    while (!context->IsCancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return grpc::Status::CANCELLED;
  });
  ASSERT_TRUE(kubelet.ok());
  auto listed = MakeGrpcLister(socket, absl::Milliseconds(200))->List();
  ASSERT_FALSE(listed.ok());
  EXPECT_EQ(listed.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(listed.status().message(),
            "pod-resources socket " + socket + ": List: no answer within 200ms");
}

TEST(ListerTest, KubeletsErrorIsPassedOnWithItsCodeAndCut) {
  TempDir dir;
  const std::string socket = dir.path() + "/kubelet.sock";
  FakeKubelet kubelet(socket, [](grpc::ServerContext*, v1::ListPodResourcesResponse*) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, std::string(5000, 'x'));
  });
  ASSERT_TRUE(kubelet.ok());
  auto listed = MakeGrpcLister(socket)->List();
  ASSERT_FALSE(listed.ok());
  EXPECT_EQ(listed.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(listed.status().message(),
              HasSubstr("pod-resources socket " + socket + ": List: permission denied: xxx"));
  EXPECT_THAT(listed.status().message(), HasSubstr("(5000 bytes)"));
  EXPECT_LT(listed.status().message().size(), 1000u);
}

TEST(ListerTest, AHugeAnswerIsRefused) {
  TempDir dir;
  const std::string socket = dir.path() + "/kubelet.sock";
  FakeKubelet kubelet(socket, [](grpc::ServerContext*, v1::ListPodResourcesResponse* response) {
    auto* container = response->add_pod_resources()->add_containers();
    auto* devices = container->add_devices();
    devices->set_resource_name("nvidia.com/gpu");
    for (int i = 0; i < 300; ++i) devices->add_device_ids(std::string(64 << 10, 'g'));
    return grpc::Status::OK;  // ~19 MiB
  });
  ASSERT_TRUE(kubelet.ok());
  auto listed = MakeGrpcLister(socket)->List();
  ASSERT_FALSE(listed.ok());
  EXPECT_EQ(listed.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(listed.status().message(), HasSubstr("pod-resources socket " + socket +
                                                   ": List: response over the 16 MiB limit"));
}

TEST(ListerTest, AnAnswerJustUnderTheLimitIsTaken) {
  TempDir dir;
  const std::string socket = dir.path() + "/kubelet.sock";
  FakeKubelet kubelet(socket, [](grpc::ServerContext*, v1::ListPodResourcesResponse* response) {
    auto* pod = response->add_pod_resources();
    pod->set_name("p");
    auto* container = pod->add_containers();
    container->set_name("c");
    auto* devices = container->add_devices();
    devices->set_resource_name("nvidia.com/gpu");
    for (int i = 0; i < 200; ++i) {
      devices->add_device_ids(std::to_string(i) + std::string(64 << 10, 'g'));
    }
    return grpc::Status::OK;  // ~12.5 MiB
  });
  ASSERT_TRUE(kubelet.ok());
  auto listed = MakeGrpcLister(socket)->List();
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_THAT(*listed, SizeIs(1));
  EXPECT_THAT(listed->at(0).device_ids, SizeIs(200));
}

TEST(ListerTest, ReachesARestartedKubeletAtOnce) {
  TempDir dir;
  const std::string socket = dir.path() + "/kubelet.sock";
  auto lister = MakeGrpcLister(socket);
  auto first = std::make_unique<FakeKubelet>(socket, TwoPods);
  ASSERT_TRUE(first->ok());
  ASSERT_TRUE(lister->List().ok());

  first.reset();  // kubelet stops: its socket stays behind, nobody answers
  auto down = lister->List();
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable) << down.status();
  down = lister->List();  // a second failure while down, so a channel would be in backoff
  ASSERT_FALSE(down.ok());

  std::filesystem::remove(socket);
  FakeKubelet second(socket, TwoPods);
  ASSERT_TRUE(second.ok());
  auto listed = lister->List();  // the first call after the restart already answers
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_THAT(*listed, SizeIs(3));
  EXPECT_EQ(second.calls(), 1);
}

TEST(ListerTest, ConcurrentCallsAllSucceed) {
  TempDir dir;
  const std::string socket = dir.path() + "/kubelet.sock";
  FakeKubelet kubelet(socket, TwoPods);
  ASSERT_TRUE(kubelet.ok());
  auto lister = MakeGrpcLister(socket);
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        auto listed = lister->List();
        if (listed.ok() && listed->size() == 3) ++ok;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(ok, 100);
}

}  // namespace
}  // namespace nvdp::podresources
