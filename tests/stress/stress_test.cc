// The stress suite: the real binaries under the faults a busy node and hostile local clients
// produce. Each phase checks what users depend on (kubelet's registration and Allocate keep
// working, daemons keep running) and that the process's open files and RSS come back flat.
//
// Short form (the default, part of the normal test run): a few hundred operations per phase.
// Long form: NVDP_STRESS=long (see docs/operations.md), e.g.
//   NVDP_STRESS=long build/bin/stress_test
// Kubelet restart latencies are printed (min, median, p99, max); they are measurements, not
// assertions.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "integration/daemon_harness.h"
#include "rpc/unix_channel.h"

namespace nvdp::testing {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kGpu[] = "nvidia.com/gpu";
constexpr char kNode[] = "a100-sxm4-40gb-x8.json";

struct Scale {
  int stream_churn;      // ListAndWatch streams opened and cancelled by a stranger
  int admissions;        // kubelet admissions meanwhile
  int reloads;           // SIGHUPs, alternating good and bad configs
  int kubelet_restarts;  // with random gaps and kills
  milliseconds max_gap;  // the longest gap between a kubelet's stop and its successor
  int hostile_requests;  // oversized Allocate / GetPreferredAllocation calls
  int idle_streams;      // streams that never read
};

Scale CurrentScale() {
  const char* mode = std::getenv("NVDP_STRESS");
  if (mode != nullptr && std::string(mode) == "long") {
    return {.stream_churn = 5000,
            .admissions = 2000,
            .reloads = 100,
            .kubelet_restarts = 200,
            .max_gap = milliseconds(3000),
            .hostile_requests = 500,
            .idle_streams = 200};
  }
  return {.stream_churn = 200,
          .admissions = 100,
          .reloads = 20,
          .kubelet_restarts = 20,
          .max_gap = milliseconds(300),
          .hostile_requests = 20,
          .idle_streams = 40};
}

struct Footprint {
  long rss_kib = 0;
  int fds = 0;
};

Footprint Measure(int pid) {
  Footprint out;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) out.rss_kib = std::stol(line.substr(6));
  }
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++out.fds;
  }
  return out;
}

// Under AddressSanitizer or ThreadSanitizer the daemons' RSS says nothing about leaks (freed
// memory sits in quarantine, shadow memory grows with use): RSS is then printed, not checked.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kRssIsMeaningful = false;
#else
constexpr bool kRssIsMeaningful = true;
#endif

// Flat: no leaked descriptors (a little slack for gRPC's lazily opened ones) and RSS within
// `rss_slack_kib` of where the phase started.
void ExpectFlat(const Footprint& before, const Footprint& after, const char* phase,
                long rss_slack_kib = 8 * 1024) {
  EXPECT_LE(after.fds, before.fds + 2) << phase << ": fds " << before.fds << " -> " << after.fds;
  if (kRssIsMeaningful) {
    EXPECT_LE(after.rss_kib, before.rss_kib + rss_slack_kib)
        << phase << ": RSS " << before.rss_kib << " KiB -> " << after.rss_kib << " KiB";
  }
  std::printf("[ %s ] fds %d -> %d, RSS %ld -> %ld KiB\n", phase, before.fds, after.fds,
              before.rss_kib, after.rss_kib);
}

int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

bool AllHealthy(const std::vector<DeviceState>& devices, size_t count) {
  return devices.size() == count &&
         std::all_of(devices.begin(), devices.end(), [](const auto& d) { return d.healthy; });
}

// Replaces a file in one step, so a reload never reads half of it.
void WriteAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  std::ofstream(tmp) << text;
  std::filesystem::rename(tmp, path);
}

std::unique_ptr<v1beta1::DevicePlugin::Stub> PluginStub(const DaemonHarness& h) {
  return v1beta1::DevicePlugin::NewStub(rpc::UnixChannel(h.plugin_dir() + "/nvidia-gpu.sock"));
}

class StressTest : public ::testing::Test {
 protected:
  void StartRegistered(size_t devices = 8) {
    h_.StartKubelet();
    h_.StartDaemon(kNode);
    ASSERT_TRUE(h_.kubelet().WaitForRegistrations(kGpu, 1, kWait));
    ASSERT_TRUE(h_.kubelet().WaitForDevices(
        kGpu, [devices](const auto& d) { return AllHealthy(d, devices); }, kWait));
  }
  void AdmitAndRelease(int times) {
    for (int i = 0; i < times; ++i) {
      auto admitted = h_.kubelet().Admit(kGpu, 1);
      ASSERT_TRUE(admitted.ok()) << admitted.status();
      h_.kubelet().Release(kGpu, admitted->device_ids);
    }
  }

  Scale scale_ = CurrentScale();
  DaemonHarness h_;
};

// A stranger opening and cancelling ListAndWatch streams while kubelet allocates: no restart, no
// re-registration, no failed Allocate.
TEST_F(StressTest, StreamChurnWhileKubeletAllocates) {
  StartRegistered();
  AdmitAndRelease(5);
  const Footprint before = Measure(h_.daemon_pid());

  std::atomic<int> churn_failures = 0;
  std::thread churn([&] {
    auto stub = PluginStub(h_);
    for (int i = 0; i < scale_.stream_churn; ++i) {
      grpc::ClientContext context;
      auto reader = stub->ListAndWatch(&context, v1beta1::Empty());
      v1beta1::ListAndWatchResponse response;
      if (!reader->Read(&response)) ++churn_failures;
      context.TryCancel();
      (void)reader->Finish();
    }
  });
  int failed = 0;
  for (int i = 0; i < scale_.admissions; ++i) {
    auto admitted = h_.kubelet().Admit(kGpu, 1);
    if (!admitted.ok()) {
      ++failed;
      continue;
    }
    h_.kubelet().Release(kGpu, admitted->device_ids);
  }
  churn.join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(churn_failures, 0);
  EXPECT_EQ(h_.kubelet().Registrations(kGpu), 1);
  EXPECT_THAT(h_.DaemonLog(), Not(HasSubstr("registering again")));
  ExpectFlat(before, Measure(h_.daemon_pid()), "stream churn");
}

// Two plugin instances on one directory (a rolling update's overlap): the second waits for the
// first instead of deleting its socket, then takes over when it exits.
TEST_F(StressTest, TwoInstancesOnOneDirectoryDoNotFight) {
  StartRegistered();
  const std::string second_log = h_.tmp() + "/second.log";
  auto second = h_.SpawnDaemon(kNode, {}, {}, second_log);
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(WaitUntil([&] {
    std::ifstream in(second_log);
    return std::string(std::istreambuf_iterator<char>(in), {}).find("another process is serving") !=
           std::string::npos;
  }));
  AdmitAndRelease(10);  // the first still serves kubelet
  EXPECT_EQ(h_.kubelet().Registrations(kGpu), 1);

  h_.Signal(SIGTERM);
  ASSERT_TRUE(h_.WaitForExit().has_value());
  ASSERT_TRUE(h_.kubelet().WaitForRegistrations(kGpu, 2, kWait));
  ASSERT_TRUE(h_.kubelet().WaitForDevices(
      kGpu, [](const auto& d) { return AllHealthy(d, 8); }, kWait));
  AdmitAndRelease(3);
  EXPECT_EQ(h_.kubelet().Registrations(kGpu), 2);
  ::kill(second->pid(), SIGTERM);
  auto exit = second->Wait(absl::Seconds(20));
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->Success()) << exit->ToString();
}

constexpr char kGoodTimeSlicing[] = R"(version: v1
sharing:
  timeSlicing:
    resources:
    - name: nvidia.com/gpu
      replicas: 4
)";
constexpr char kBadTimeSlicing[] = R"(version: v1
sharing:
  timeSlicing:
    resources:
    - name: nvidia.com/gpu
      replicas: 1
)";

// SIGHUPs alternating good and bad configs: bad ones are rejected, the unchanged good one keeps its
// registration, and the daemon keeps serving.
TEST_F(StressTest, PluginReloadStorm) {
  h_.WriteConfig(kGoodTimeSlicing);
  StartRegistered(32);
  AdmitAndRelease(3);
  const Footprint before = Measure(h_.daemon_pid());
  for (int i = 0; i < scale_.reloads; ++i) {
    WriteAtomically(h_.config_path(), i % 2 == 0 ? kBadTimeSlicing : kGoodTimeSlicing);
    h_.Signal(SIGHUP);
    ASSERT_TRUE(WaitUntil(
        [&] { return Count(h_.DaemonLog(), "SIGHUP: reloading the configuration") >= i + 1; }));
  }
  WriteAtomically(h_.config_path(), kGoodTimeSlicing);
  h_.Signal(SIGHUP);
  ASSERT_TRUE(WaitUntil([&] {
    return Count(h_.DaemonLog(), "SIGHUP: reloading the configuration") >= scale_.reloads + 1;
  }));
  AdmitAndRelease(5);
  EXPECT_EQ(Count(h_.DaemonLog(), "reload rejected"), (scale_.reloads + 1) / 2);
  EXPECT_EQ(h_.kubelet().Registrations(kGpu), 1);
  ExpectFlat(before, Measure(h_.daemon_pid()), "plugin reload storm");
}

constexpr char kGoodMps[] = R"(version: v1
flags:
  mpsRoot: MPS_ROOT
sharing:
  mps:
    perContainerLimits: true
    resources:
    - name: nvidia.com/gpu
      replicas: 100
)";

std::string WithRoot(std::string text, const std::string& root) {
  text.replace(text.find("MPS_ROOT"), 8, root);
  return text;
}

// The same for mps-control-daemon: its MPS control daemon is never restarted by a storm of
// reloads that change nothing or are invalid.
TEST_F(StressTest, MpsDaemonReloadStorm) {
  const std::string good = WithRoot(kGoodMps, h_.mps_root());
  const std::string bad = good + "      devices: -3\n";
  h_.WriteConfig(good);
  h_.StartMpsDaemon({"--liveness-period=0.5"});
  ASSERT_TRUE(WaitUntil([&] { return std::filesystem::exists(h_.mps_root() + "/.ready"); }));
  const std::string pid_file = h_.mps_root() + "/nvidia.com/gpu/log/fake-daemon.pid";
  auto read = [](const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string daemon = read(pid_file);
  const std::string log = h_.tmp() + "/mpsd.log";
  const Footprint before = Measure(h_.mps_daemon_pid());
  for (int i = 0; i < scale_.reloads; ++i) {
    WriteAtomically(h_.config_path(), i % 2 == 0 ? bad : good);
    ::kill(h_.mps_daemon_pid(), SIGHUP);
    ASSERT_TRUE(WaitUntil([&] { return Count(read(log), "SIGHUP: reloading") >= i + 1; }));
  }
  ASSERT_TRUE(WaitUntil([&] {
    const std::string text = read(log);
    return Count(text, "reload rejected") + Count(text, "unchanged; kept running") >=
           scale_.reloads;
  }));
  EXPECT_EQ(read(pid_file), daemon);
  EXPECT_TRUE(std::filesystem::exists(h_.mps_root() + "/.ready"));
  ExpectFlat(before, Measure(h_.mps_daemon_pid()), "mps-control-daemon reload storm");
}

// Kubelet restarts with random gaps, a third of them by SIGKILL (a stale kubelet.sock left
// behind): every one ends with the resource registered and healthy again.
TEST_F(StressTest, KubeletRestartsWithRandomGapsAndKills) {
  StartRegistered();
  const Footprint before = Measure(h_.daemon_pid());
  std::mt19937 random(20261129);
  std::uniform_int_distribution<int> gap(0, static_cast<int>(scale_.max_gap.count()));
  std::vector<double> latencies_ms;
  for (int i = 0; i < scale_.kubelet_restarts; ++i) {
    const int registrations = h_.kubelet().Registrations(kGpu);
    ASSERT_TRUE(
        h_.kubelet().Restart({.gap = milliseconds(gap(random)), .killed = i % 3 == 0}).ok());
    ASSERT_TRUE(h_.kubelet().WaitForRegistrations(kGpu, registrations + 1, kWait)) << i;
    ASSERT_TRUE(h_.kubelet().WaitForDevices(
        kGpu, [](const auto& d) { return AllHealthy(d, 8); }, kWait))
        << i;
    const auto registered = h_.kubelet().LastRegistrationTime(kGpu);
    ASSERT_TRUE(registered.has_value());
    latencies_ms.push_back(
        std::chrono::duration<double, std::milli>(*registered - h_.kubelet().ServingSince())
            .count());
  }
  AdmitAndRelease(3);
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto at = [&](double q) {
    return latencies_ms[std::min(
        latencies_ms.size() - 1,
        static_cast<size_t>(q * static_cast<double>(latencies_ms.size())))];
  };
  std::printf(
      "[ kubelet restarts ] %zu restarts, kubelet accepting -> registered: min %.1f ms, median "
      "%.1f ms, p99 %.1f ms, max %.1f ms\n",
      latencies_ms.size(), latencies_ms.front(), at(0.5), at(0.99), latencies_ms.back());
  ExpectFlat(before, Measure(h_.daemon_pid()), "kubelet restarts");
}

constexpr char kManyReplicas[] = R"(version: v1
sharing:
  timeSlicing:
    resources:
    - name: nvidia.com/gpu
      replicas: 1024
)";

// Oversized and malformed requests get short INVALID_ARGUMENT answers (never a header-size
// failure that would tear down kubelet's connection), and streams that never read cannot grow the
// daemon without bound.
TEST_F(StressTest, HostileRequestsAreBounded) {
  h_.WriteConfig(kManyReplicas);
  StartRegistered(8 * 1024);
  const Footprint before = Measure(h_.daemon_pid());
  auto stub = PluginStub(h_);
  std::vector<std::string> unknown;
  for (int i = 0; i < 400; ++i)
    unknown.push_back("GPU-" + std::string(200, 'x') + "-" + std::to_string(i));
  for (int round = 0; round < scale_.hostile_requests; ++round) {
    v1beta1::AllocateRequest request;
    auto* container = request.add_container_requests();
    for (const auto& id : unknown) container->add_devices_ids(id);
    container->add_devices_ids(std::string("\x1b[2J\n", 5));
    grpc::ClientContext context;
    v1beta1::AllocateResponse response;
    auto status = stub->Allocate(&context, request, &response);
    ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_LT(status.error_message().size(), 1024u);
    EXPECT_THAT(status.error_message(), HasSubstr("and 396 more"));

    v1beta1::PreferredAllocationRequest preferred;
    auto* want = preferred.add_container_requests();
    for (const auto& id : unknown) want->add_available_deviceids(id);
    want->set_allocation_size(3);
    grpc::ClientContext preferred_context;
    v1beta1::PreferredAllocationResponse preferred_response;
    status = stub->GetPreferredAllocation(&preferred_context, preferred, &preferred_response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_LT(status.error_message().size(), 1024u);
  }

  // Streams that never read, then a health change that re-sends every list: bounded by the cap.
  struct Idle {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1beta1::ListAndWatchResponse>> reader;
  };
  std::vector<std::unique_ptr<Idle>> idle;
  for (int i = 0; i < scale_.idle_streams; ++i) {
    auto stream = std::make_unique<Idle>();
    stream->reader = stub->ListAndWatch(&stream->context, v1beta1::Empty());
    idle.push_back(std::move(stream));
  }
  h_.InjectEvent("xid " + ReadNodeGpus(NodeFile(kNode))[0].uuid + " 79");
  ASSERT_TRUE(h_.kubelet().WaitForDevices(
      kGpu,
      [](const auto& d) {
        return std::count_if(d.begin(), d.end(), [](const auto& x) { return !x.healthy; }) == 1024;
      },
      kWait));
  const Footprint loaded = Measure(h_.daemon_pid());
  if (kRssIsMeaningful) {
    EXPECT_LE(loaded.rss_kib, before.rss_kib + 64 * 1024)
        << "idle streams grew RSS to " << loaded.rss_kib << " KiB";
  }
  for (auto& stream : idle) stream->context.TryCancel();
  for (auto& stream : idle) (void)stream->reader->Finish();
  idle.clear();
  // Kubelet's own stream and Allocate are unaffected.
  AdmitAndRelease(3);
  EXPECT_EQ(h_.kubelet().Registrations(kGpu), 1);
  ASSERT_TRUE(WaitUntil([&] { return Measure(h_.daemon_pid()).fds <= before.fds + 2; }));
  ExpectFlat(before, Measure(h_.daemon_pid()), "hostile requests", 16 * 1024);
  const auto stopping = std::chrono::steady_clock::now();
  h_.Signal(SIGTERM);
  auto exit = h_.WaitForExit();
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->Success()) << exit->ToString();
  std::printf("[ hostile requests ] SIGTERM -> exit %.1f ms\n",
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - stopping)
                  .count());
}

}  // namespace
}  // namespace nvdp::testing
