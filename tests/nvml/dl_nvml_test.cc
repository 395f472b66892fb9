// Tests for DlNvml / LoadNvml, loading the fake libnvidia-ml.so.1 through the
// real dlopen path.
#include "nvml/dl_nvml.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "nvml/fake_nvml_env.h"

namespace nvdp::nvml {
namespace {

using ::nvdp::testutil::FakeNvmlLibrary;
using ::nvdp::testutil::FakeNvmlNode;
using ::nvdp::testutil::ScopedFakeNvmlEnv;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint64_t kHealthEvents = kEventXidCritical | kEventDoubleBitEcc | kEventSingleBitEcc;

std::string A100Uuid(int i) {
  return "GPU-a100a100-0000-4000-8000-00000000000" + std::to_string(i);
}

// A fresh temp directory, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "nvdp-nvml-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data()) != nullptr ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void Append(const std::string& file, const std::string& line) {
  std::ofstream out(file, std::ios::app);
  out << line << "\n";
}

// Initialises on construction, shuts down on destruction, so the fake's ref
// count returns to 0.
class ScopedInit {
 public:
  explicit ScopedInit(Nvml& nvml) : nvml_(nvml) { status_ = nvml_.Init(); }
  ~ScopedInit() {
    if (status_.ok()) (void)nvml_.Shutdown();
  }
  const absl::Status& status() const { return status_; }

 private:
  Nvml& nvml_;
  absl::Status status_;
};

class DlNvmlTest : public ::testing::Test {
 protected:
  std::unique_ptr<Nvml> LoadFake() {
    auto nvml = LoadNvml({FakeNvmlLibrary()});
    EXPECT_TRUE(nvml.ok()) << nvml.status();
    return nvml.ok() ? *std::move(nvml) : nullptr;
  }

  ScopedFakeNvmlEnv env_{FakeNvmlNode("a100-sxm4-40gb-x8.json")};
};

TEST(NvmlLibraryCandidatesTest, HostRootEndsWithBareSoname) {
  EXPECT_THAT(
      NvmlLibraryCandidates("/"),
      ElementsAre("/usr/lib64/libnvidia-ml.so.1", "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
                  "/usr/lib/aarch64-linux-gnu/libnvidia-ml.so.1", "/usr/lib/libnvidia-ml.so.1",
                  "libnvidia-ml.so.1"));
  EXPECT_EQ(NvmlLibraryCandidates(""), NvmlLibraryCandidates("/"));
}

TEST(NvmlLibraryCandidatesTest, DriverRootIsPrefixed) {
  const std::vector<std::string> expected = {
      "/run/nvidia/driver/usr/lib64/libnvidia-ml.so.1",
      "/run/nvidia/driver/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
      "/run/nvidia/driver/usr/lib/aarch64-linux-gnu/libnvidia-ml.so.1",
      "/run/nvidia/driver/usr/lib/libnvidia-ml.so.1", "libnvidia-ml.so.1"};
  EXPECT_EQ(NvmlLibraryCandidates("/run/nvidia/driver"), expected);
  EXPECT_EQ(NvmlLibraryCandidates("/run/nvidia/driver/"), expected);
}

TEST_F(DlNvmlTest, LoadsFakeThroughDlopenAndReadsA100Node) {
  auto nvml = LoadFake();
  ASSERT_NE(nvml, nullptr);
  ScopedInit init(*nvml);
  ASSERT_TRUE(init.status().ok()) << init.status();

  EXPECT_EQ(nvml->DriverVersion().value_or(""), "550.54.15");
  ASSERT_EQ(nvml->GpuCount().value_or(0), 8u);
  const char* buses[] = {"07", "0F", "47", "4E", "87", "90", "B7", "BD"};
  for (unsigned i = 0; i < 8; ++i) {
    auto gpu = nvml->GpuByIndex(i);
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    EXPECT_EQ(gpu->uuid, A100Uuid(static_cast<int>(i)));
    EXPECT_EQ(gpu->index, i);
    EXPECT_EQ(gpu->minor, i);
    EXPECT_EQ(gpu->name, "NVIDIA A100-SXM4-40GB");
    EXPECT_EQ(gpu->memory_bytes, 40960ull << 20);
    EXPECT_EQ(gpu->cc_major, 8);
    EXPECT_EQ(gpu->cc_minor, 0);
    EXPECT_EQ(gpu->pci_bus_id, std::string("00000000:") + buses[i] + ":00.0");
    EXPECT_EQ(gpu->pci_device_id, 0x20B010DEu);
  }
}

TEST_F(DlNvmlTest, ReadsH100Node) {
  ScopedFakeNvmlEnv::Set("FAKE_NVML_NODE", FakeNvmlNode("h100-80gb-x1.json"));
  auto nvml = LoadFake();
  ASSERT_NE(nvml, nullptr);
  ScopedInit init(*nvml);
  ASSERT_TRUE(init.status().ok()) << init.status();
  ASSERT_EQ(nvml->GpuCount().value_or(0), 1u);
  auto gpu = nvml->GpuByIndex(0);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_EQ(gpu->name, "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(gpu->memory_bytes, 81559ull << 20);
  EXPECT_EQ(gpu->cc_major, 9);
  EXPECT_EQ(gpu->pci_device_id, 0x233010DEu);
}

TEST_F(DlNvmlTest, ReportsMigModePerGpu) {
  ScopedFakeNvmlEnv::Set("FAKE_NVML_NODE", FakeNvmlNode("a100-40gb-x2-mig-on-gpu1.json"));
  auto nvml = LoadFake();
  ASSERT_NE(nvml, nullptr);
  ScopedInit init(*nvml);
  ASSERT_TRUE(init.status().ok()) << init.status();
  auto off = nvml->GpuByIndex(0);
  auto on = nvml->GpuByIndex(1);
  ASSERT_TRUE(off.ok() && on.ok());
  EXPECT_TRUE(off->mig_capable);
  EXPECT_FALSE(off->mig_enabled);
  EXPECT_TRUE(on->mig_capable);
  EXPECT_TRUE(on->mig_enabled);
}

TEST_F(DlNvmlTest, GpuWithoutMigSupportIsNotMigCapable) {
  ScopedFakeNvmlEnv::Set("FAKE_NVML_FAIL", "nvmlDeviceGetMigMode@2=3");  // NOT_SUPPORTED
  auto nvml = LoadFake();
  ASSERT_NE(nvml, nullptr);
  ScopedInit init(*nvml);
  ASSERT_TRUE(init.status().ok()) << init.status();
  auto gpu = nvml->GpuByIndex(2);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_FALSE(gpu->mig_capable);
  EXPECT_FALSE(gpu->mig_enabled);
}

// Upstream logs a memory query failure and still advertises the GPU.
TEST_F(DlNvmlTest, MemoryInfoFailureIsReportedNotFatal) {
  ScopedFakeNvmlEnv::Set("FAKE_NVML_FAIL",
                         "nvmlDeviceGetMemoryInfo_v2@1,nvmlDeviceGetMemoryInfo@1");
  auto nvml = LoadFake();
  ASSERT_NE(nvml, nullptr);
  ScopedInit init(*nvml);
  ASSERT_TRUE(init.status().ok()) << init.status();
  auto broken = nvml->GpuByIndex(1);
  ASSERT_TRUE(broken.ok()) << broken.status();
  EXPECT_EQ(broken->memory_bytes, 0u);
  EXPECT_THAT(broken->memory_error, HasSubstr("nvmlDeviceGetMemoryInfo"));
  auto fine = nvml->GpuByIndex(0);
  ASSERT_TRUE(fine.ok()) << fine.status();
  EXPECT_EQ(fine->memory_bytes, 40960ull << 20);
  EXPECT_EQ(fine->memory_error, "");
}

TEST_F(DlNvmlTest, GpuByUuidFindsKnownGpu) {
  auto nvml = LoadFake();
  ASSERT_NE(nvml, nullptr);
  ScopedInit init(*nvml);
  ASSERT_TRUE(init.status().ok()) << init.status();
  auto gpu = nvml->GpuByUuid(A100Uuid(5));
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_EQ(gpu->index, 5u);
  EXPECT_EQ(gpu->pci_bus_id, "00000000:90:00.0");
}

TEST_F(DlNvmlTest, UnknownUuidIsNotFoundAndNamesTheCall) {
  auto nvml = LoadFake();
  ASSERT_NE(nvml, nullptr);
  ScopedInit init(*nvml);
  ASSERT_TRUE(init.status().ok()) << init.status();
  auto gpu = nvml->GpuByUuid("GPU-00000000-dead-beef-0000-000000000000");
  EXPECT_EQ(gpu.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(gpu.status().message(),
              HasSubstr("nvmlDeviceGetHandleByUUID(GPU-00000000-dead-beef-0000-"
                        "000000000000)"));
  EXPECT_THAT(gpu.status().message(), HasSubstr("(6)"));
}

TEST_F(DlNvmlTest, BadIndexIsInvalidArgument) {
  auto nvml = LoadFake();
  ASSERT_NE(nvml, nullptr);
  ScopedInit init(*nvml);
  ASSERT_TRUE(init.status().ok()) << init.status();
  auto gpu = nvml->GpuByIndex(8);
  EXPECT_EQ(gpu.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(gpu.status().message(), HasSubstr("nvmlDeviceGetHandleByIndex_v2(8)"));
}

TEST_F(DlNvmlTest, MissingLibraryErrorNamesThePath) {
  auto nvml = LoadNvml({"/nonexistent/nvdp/libnvidia-ml.so.1"});
  ASSERT_FALSE(nvml.ok());
  EXPECT_EQ(nvml.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(nvml.status().message(), HasSubstr("/nonexistent/nvdp/libnvidia-ml.so.1"));
}

TEST_F(DlNvmlTest, FallsBackToLaterCandidate) {
  auto nvml = LoadNvml({"/nonexistent/nvdp/libnvidia-ml.so.1", FakeNvmlLibrary()});
  ASSERT_TRUE(nvml.ok()) << nvml.status();
}

TEST_F(DlNvmlTest, LibraryWithoutNvmlSymbolsIsRejected) {
  auto nvml = LoadNvml({"libc.so.6"});
  ASSERT_FALSE(nvml.ok());
  EXPECT_EQ(nvml.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(nvml.status().message(), HasSubstr("libc.so.6"));
  EXPECT_THAT(nvml.status().message(), HasSubstr("nvmlInit_v2"));
}

TEST_F(DlNvmlTest, PartialLibraryErrorNamesMissingSymbol) {
  const std::string partial = testutil::BinDir() + "/../lib/partial-nvml/libnvidia-ml.so.1";
  auto nvml = LoadNvml({partial});
  ASSERT_FALSE(nvml.ok());
  EXPECT_THAT(nvml.status().message(), HasSubstr(partial));
  EXPECT_THAT(nvml.status().message(), HasSubstr("nvmlSystemGetDriverVersion"));
  EXPECT_THAT(nvml.status().message(), HasSubstr("nvmlEventSetWait_v2"));
  EXPECT_THAT(nvml.status().message(), ::testing::Not(HasSubstr("nvmlShutdown")));
}

TEST_F(DlNvmlTest, InitFailsWithoutNodeDescription) {
  ScopedFakeNvmlEnv::Unset("FAKE_NVML_NODE");
  auto nvml = LoadFake();
  ASSERT_NE(nvml, nullptr);
  absl::Status s = nvml->Init();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("nvmlInit_v2"));
  EXPECT_THAT(s.message(), HasSubstr("(9)"));
}

TEST_F(DlNvmlTest, InitFailsWhenInjected) {
  ScopedFakeNvmlEnv::Set("FAKE_NVML_FAIL", "init");
  auto nvml = LoadFake();
  ASSERT_NE(nvml, nullptr);
  EXPECT_EQ(nvml->Init().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(DlNvmlTest, InjectedPerGpuFailureSurfaces) {
  ScopedFakeNvmlEnv::Set("FAKE_NVML_FAIL", "nvmlDeviceGetHandleByIndex_v2@3=15");
  auto nvml = LoadFake();
  ASSERT_NE(nvml, nullptr);
  ScopedInit init(*nvml);
  ASSERT_TRUE(init.status().ok()) << init.status();
  EXPECT_TRUE(nvml->GpuByIndex(2).ok());
  auto gpu = nvml->GpuByIndex(3);
  EXPECT_EQ(gpu.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(gpu.status().message(), HasSubstr("(15)"));
}

TEST_F(DlNvmlTest, CallsBeforeInitAreFailedPrecondition) {
  auto nvml = LoadFake();
  ASSERT_NE(nvml, nullptr);
  EXPECT_EQ(nvml->GpuCount().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(nvml->Shutdown().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(DlNvmlTest, InitIsReferenceCounted) {
  auto nvml = LoadFake();
  ASSERT_NE(nvml, nullptr);
  ASSERT_TRUE(nvml->Init().ok());
  ASSERT_TRUE(nvml->Init().ok());
  ASSERT_TRUE(nvml->Shutdown().ok());
  EXPECT_EQ(nvml->GpuCount().value_or(0), 8u);
  ASSERT_TRUE(nvml->Shutdown().ok());
  EXPECT_FALSE(nvml->GpuCount().ok());
}

TEST_F(DlNvmlTest, TwoInstancesShareTheLibrary) {
  auto a = LoadFake();
  auto b = LoadFake();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ScopedInit init_a(*a);
  ASSERT_TRUE(init_a.status().ok());
  {
    ScopedInit init_b(*b);
    ASSERT_TRUE(init_b.status().ok());
  }
  b.reset();  // dlclose of one instance leaves the other working
  EXPECT_EQ(a->GpuCount().value_or(0), 8u);
}

class DlNvmlEventsTest : public DlNvmlTest {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    events_ = dir_.path() + "/events";
    std::ofstream(events_).flush();
    ScopedFakeNvmlEnv::Set("FAKE_NVML_EVENTS", events_);
    nvml_ = LoadFake();
    ASSERT_NE(nvml_, nullptr);
    ASSERT_TRUE(nvml_->Init().ok());
  }
  void TearDown() override {
    if (nvml_ != nullptr) (void)nvml_->Shutdown();
  }

  TempDir dir_;
  std::string events_;
  std::unique_ptr<Nvml> nvml_;
};

TEST_F(DlNvmlEventsTest, XidIsDelivered) {
  std::vector<std::string> all;
  for (int i = 0; i < 8; ++i) all.push_back(A100Uuid(i));
  ASSERT_TRUE(nvml_->WatchEvents(all, kHealthEvents).ok());
  Append(events_, "xid " + A100Uuid(3) + " 79");
  auto event = nvml_->WaitForEvent(std::chrono::seconds(10));
  ASSERT_TRUE(event.ok()) << event.status();
  ASSERT_TRUE(event->has_value());
  EXPECT_EQ((*event)->gpu_uuid, A100Uuid(3));
  EXPECT_EQ((*event)->type, kEventXidCritical);
  EXPECT_EQ((*event)->xid, 79u);
}

TEST_F(DlNvmlEventsTest, TimeoutReturnsNullopt) {
  ASSERT_TRUE(nvml_->WatchEvents({A100Uuid(0)}, kHealthEvents).ok());
  auto event = nvml_->WaitForEvent(std::chrono::milliseconds(50));
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_FALSE(event->has_value());
}

TEST_F(DlNvmlEventsTest, OnlyRegisteredGpusAndTypesAreDelivered) {
  ASSERT_TRUE(nvml_->WatchEvents({A100Uuid(0)}, kEventXidCritical).ok());
  Append(events_, "xid " + A100Uuid(1) + " 48");  // not registered
  Append(events_, "ecc-dbe " + A100Uuid(0));      // type not registered
  Append(events_, "xid " + A100Uuid(0) + " 63");
  auto event = nvml_->WaitForEvent(std::chrono::seconds(10));
  ASSERT_TRUE(event.ok() && event->has_value()) << event.status();
  EXPECT_EQ((*event)->gpu_uuid, A100Uuid(0));
  EXPECT_EQ((*event)->xid, 63u);
  auto none = nvml_->WaitForEvent(std::chrono::milliseconds(0));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_F(DlNvmlEventsTest, EccEventCarriesNoXid) {
  ASSERT_TRUE(nvml_->WatchEvents({A100Uuid(7)}, kHealthEvents).ok());
  Append(events_, "ecc-dbe " + A100Uuid(7));
  auto event = nvml_->WaitForEvent(std::chrono::seconds(10));
  ASSERT_TRUE(event.ok() && event->has_value()) << event.status();
  EXPECT_EQ((*event)->type, kEventDoubleBitEcc);
  EXPECT_EQ((*event)->xid, 0u);
}

TEST_F(DlNvmlEventsTest, EventsBeforeWatchAreNotDelivered) {
  Append(events_, "xid " + A100Uuid(0) + " 79");
  ASSERT_TRUE(nvml_->WatchEvents({A100Uuid(0)}, kHealthEvents).ok());
  auto event = nvml_->WaitForEvent(std::chrono::milliseconds(50));
  ASSERT_TRUE(event.ok());
  EXPECT_FALSE(event->has_value());
}

TEST_F(DlNvmlEventsTest, WaiterWakesForEventWrittenLater) {
  ASSERT_TRUE(nvml_->WatchEvents({A100Uuid(2)}, kHealthEvents).ok());
  std::thread writer([&] { Append(events_, "xid " + A100Uuid(2) + " 94"); });
  auto event = nvml_->WaitForEvent(std::chrono::seconds(10));
  writer.join();
  ASSERT_TRUE(event.ok() && event->has_value()) << event.status();
  EXPECT_EQ((*event)->xid, 94u);
}

// Times this thread was put on a CPU (the third field of its schedstat): a blocked thread that
// polls shows one per poll.
long long ScheduledCount() {
  std::ifstream in("/proc/thread-self/schedstat");
  long long run_ns = 0, wait_ns = 0, count = -1;
  in >> run_ns >> wait_ns >> count;
  return count;
}

// The fake blocks like NVML: a wait with nothing to deliver sleeps through its timeout instead of
// polling the file (the old fake woke every 20 ms), and writes to other files in the folder do not
// wake it.
TEST_F(DlNvmlEventsTest, WaitBlocksWithoutPolling) {
  ASSERT_TRUE(nvml_->WatchEvents({A100Uuid(0)}, kHealthEvents).ok());
  std::atomic<bool> done{false};
  std::thread other_writer([&] {
    for (int i = 0; i < 5 && !done; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      Append(dir_.path() + "/other", "noise");
    }
  });
  const long long before = ScheduledCount();
  const auto start = std::chrono::steady_clock::now();
  auto event = nvml_->WaitForEvent(std::chrono::milliseconds(600));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  const long long after = ScheduledCount();
  done = true;
  other_writer.join();
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_FALSE(event->has_value());
  EXPECT_GE(elapsed, std::chrono::milliseconds(600));
  ASSERT_GE(before, 0) << "no /proc/thread-self/schedstat";
  EXPECT_LE(after - before, 5) << "the wait woke " << after - before << " times";
}

TEST_F(DlNvmlEventsTest, WaiterWakesForAnEventsFileCreatedLater) {
  std::filesystem::remove(events_);
  ASSERT_TRUE(nvml_->WatchEvents({A100Uuid(1)}, kHealthEvents).ok());
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    Append(events_, "xid " + A100Uuid(1) + " 79");
  });
  const auto start = std::chrono::steady_clock::now();
  auto event = nvml_->WaitForEvent(std::chrono::seconds(60));
  writer.join();
  ASSERT_TRUE(event.ok() && event->has_value()) << event.status();
  EXPECT_EQ((*event)->xid, 79u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

TEST_F(DlNvmlEventsTest, WaitErrorIsReported) {
  ASSERT_TRUE(nvml_->WatchEvents({A100Uuid(0)}, kHealthEvents).ok());
  Append(events_, "error 15");
  auto event = nvml_->WaitForEvent(std::chrono::seconds(10));
  EXPECT_EQ(event.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(event.status().message(), HasSubstr("nvmlEventSetWait_v2"));
}

TEST_F(DlNvmlEventsTest, UnsupportedTypesAreMaskedNotFatal) {
  // The fake A100s support 0xf; 0x100 (MIG config change) is not supported and
  // is masked off.
  ASSERT_TRUE(nvml_->WatchEvents({A100Uuid(0)}, kEventXidCritical | 0x100).ok());
  // Nothing requested is supported: a warning, not an error.
  ASSERT_TRUE(nvml_->WatchEvents({A100Uuid(0)}, 0x100).ok());
}

TEST_F(DlNvmlEventsTest, WatchUnknownGpuIsNotFound) {
  absl::Status s = nvml_->WatchEvents({A100Uuid(0), "GPU-unknown"}, kHealthEvents);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("GPU-unknown"));
  EXPECT_EQ(nvml_->WaitForEvent(std::chrono::milliseconds(0)).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(DlNvmlEventsTest, WaitWithoutWatchIsFailedPrecondition) {
  EXPECT_EQ(nvml_->WaitForEvent(std::chrono::milliseconds(0)).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(DlNvmlEventsTest, QueriesRunWhileAnotherThreadWaits) {
  ASSERT_TRUE(nvml_->WatchEvents({A100Uuid(1)}, kHealthEvents).ok());
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    auto event = nvml_->WaitForEvent(std::chrono::seconds(10));
    EXPECT_TRUE(event.ok() && event->has_value());
    done = true;
  });
  for (int round = 0; round < 20; ++round) {
    for (unsigned i = 0; i < 8; ++i) ASSERT_TRUE(nvml_->GpuByIndex(i).ok());
  }
  Append(events_, "xid " + A100Uuid(1) + " 79");
  waiter.join();
  EXPECT_TRUE(done);
}

// A health monitor replaced on reload (a new MIG layout) watches anew while the old monitor's
// thread is still blocked in its wait: WatchEvents does not wait for that wait to end (it used to,
// holding up the daemon's reload and its signals for a whole wait period).
TEST_F(DlNvmlEventsTest, WatchEventsDoesNotWaitForAWaitOnTheSetItReplaces) {
  const std::string log = dir_.path() + "/nvml.log";
  ScopedFakeNvmlEnv::Set("FAKE_NVML_LOG", log);
  ASSERT_TRUE(nvml_->WatchEvents({A100Uuid(0)}, kHealthEvents).ok());
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    auto event = nvml_->WaitForEvent(std::chrono::seconds(20));
    EXPECT_TRUE(event.ok() && event->has_value()) << "the wait ran into its timeout";
    done = true;
  });
  // Until the waiter blocks in NVML (polled: the fake offers nothing to wait on).
  const auto blocked = [&] {
    std::ifstream in(log);
    return std::string(std::istreambuf_iterator<char>(in), {}).find("nvmlEventSetWait_v2 blocks") !=
           std::string::npos;
  };
  for (int i = 0; i < 2000 && !blocked(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(blocked());
  EXPECT_TRUE(nvml_->WatchEvents({A100Uuid(1)}, kHealthEvents).ok());
  EXPECT_FALSE(done);
  // Wakes the waiter on the replaced set (GPU 0); the new set (GPU 1) gets its own.
  Append(events_, "xid " + A100Uuid(0) + " 79");
  Append(events_, "xid " + A100Uuid(1) + " 79");
  waiter.join();
  ScopedFakeNvmlEnv::Unset("FAKE_NVML_LOG");
}

}  // namespace
}  // namespace nvdp::nvml
