// DlNvml's MIG support against the fake libnvidia-ml.so.1: MIG enumeration and profile names on
// the shipped MIG nodes, and health events attributed to a MIG device.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "health/health_monitor.h"
#include "nvml/dl_nvml.h"
#include "nvml/fake_nvml_env.h"
#include "nvml/nvml_abi.h"

namespace nvdp::nvml {
namespace {

using ::nvdp::testutil::FakeNvmlLibrary;
using ::nvdp::testutil::FakeNvmlNode;
using ::nvdp::testutil::ScopedFakeNvmlEnv;
using ::testing::HasSubstr;

constexpr uint64_t kA100Total = 40960ull << 20;
constexpr uint64_t kH100Total = 81559ull << 20;

std::string A100Uuid(unsigned i) {
  return "GPU-a100a100-0000-4000-8000-00000000000" + std::to_string(i);
}
std::string A100MigUuid(unsigned gpu, unsigned slot) {
  return "MIG-a100a100-000" + std::to_string(gpu) + "-5000-8000-00000000000" + std::to_string(slot);
}

std::string Name(unsigned gi, unsigned ci, uint64_t mib, uint64_t total) {
  auto name = MigProfileName(gi, ci, mib, total);
  return name.ok() ? *name : std::string(name.status().message());
}

TEST(MigProfileNameTest, A100FortyGigabyteProfiles) {
  EXPECT_EQ(Name(NVML_GPU_INSTANCE_PROFILE_1_SLICE, 0, 4864, kA100Total), "1g.5gb");
  EXPECT_EQ(Name(NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1, 0, 4864, kA100Total), "1g.5gb+me");
  EXPECT_EQ(Name(NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2, 0, 9856, kA100Total), "1g.10gb");
  EXPECT_EQ(Name(NVML_GPU_INSTANCE_PROFILE_2_SLICE, 1, 9856, kA100Total), "2g.10gb");
  EXPECT_EQ(Name(NVML_GPU_INSTANCE_PROFILE_3_SLICE, 2, 19968, kA100Total), "3g.20gb");
  EXPECT_EQ(Name(NVML_GPU_INSTANCE_PROFILE_4_SLICE, 3, 19968, kA100Total), "4g.20gb");
  EXPECT_EQ(Name(NVML_GPU_INSTANCE_PROFILE_7_SLICE, 4, 40192, kA100Total), "7g.40gb");
}

TEST(MigProfileNameTest, H100EightyGigabyteProfiles) {
  EXPECT_EQ(Name(NVML_GPU_INSTANCE_PROFILE_1_SLICE, 0, 9856, kH100Total), "1g.10gb");
  EXPECT_EQ(Name(NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1, 0, 9856, kH100Total), "1g.10gb+me");
  EXPECT_EQ(Name(NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2, 0, 19968, kH100Total), "1g.20gb");
  EXPECT_EQ(Name(NVML_GPU_INSTANCE_PROFILE_2_SLICE, 1, 19968, kH100Total), "2g.20gb");
  EXPECT_EQ(Name(NVML_GPU_INSTANCE_PROFILE_3_SLICE, 2, 40192, kH100Total), "3g.40gb");
  EXPECT_EQ(Name(NVML_GPU_INSTANCE_PROFILE_4_SLICE, 3, 40192, kH100Total), "4g.40gb");
  EXPECT_EQ(Name(NVML_GPU_INSTANCE_PROFILE_7_SLICE, 4, 80384, kH100Total), "7g.80gb");
}

TEST(MigProfileNameTest, ComputeInstanceSmallerThanItsGpuInstance) {
  EXPECT_EQ(Name(NVML_GPU_INSTANCE_PROFILE_3_SLICE, NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE, 19968,
                 kA100Total),
            "1c.3g.20gb");
  EXPECT_EQ(Name(NVML_GPU_INSTANCE_PROFILE_7_SLICE, NVML_COMPUTE_INSTANCE_PROFILE_4_SLICE, 40192,
                 kA100Total),
            "4c.7g.40gb");
}

TEST(MigProfileNameTest, SuffixesAndUnknownProfiles) {
  EXPECT_EQ(Name(NVML_GPU_INSTANCE_PROFILE_1_SLICE_ALL_ME, 0, 4864, kA100Total), "1g.5gb+me.all");
  EXPECT_EQ(Name(NVML_GPU_INSTANCE_PROFILE_2_SLICE_NO_ME, 1, 9856, kA100Total), "2g.10gb-me");
  EXPECT_EQ(Name(NVML_GPU_INSTANCE_PROFILE_4_SLICE_GFX, 3, 19968, kA100Total), "4g.20gb+gfx");
  EXPECT_FALSE(MigProfileName(NVML_GPU_INSTANCE_PROFILE_3_SLICE_GFX, 2, 19968, kA100Total).ok());
  EXPECT_FALSE(MigProfileName(NVML_GPU_INSTANCE_PROFILE_3_SLICE, 99, 19968, kA100Total).ok());
  EXPECT_FALSE(MigProfileName(NVML_GPU_INSTANCE_PROFILE_3_SLICE, 2, 19968, 0).ok());
}

class DlNvmlMigTest : public ::testing::Test {
 protected:
  // Loads the fake on `node` (with `failures` in FAKE_NVML_FAIL) and initialises it; `library`
  // selects a build of it with fewer exports.
  void Load(const std::string& node, const std::string& failures = "",
            const std::string& library = FakeNvmlLibrary()) {
    if (nvml_ != nullptr) (void)nvml_->Shutdown();  // the fake reads the node at the first init
    ScopedFakeNvmlEnv::Set("FAKE_NVML_NODE", FakeNvmlNode(node));
    if (!failures.empty()) ScopedFakeNvmlEnv::Set("FAKE_NVML_FAIL", failures);
    auto nvml = LoadNvml({library});
    ASSERT_TRUE(nvml.ok()) << nvml.status();
    nvml_ = *std::move(nvml);
    ASSERT_TRUE(nvml_->Init().ok());
  }
  void TearDown() override {
    if (nvml_ != nullptr) (void)nvml_->Shutdown();
  }

  std::vector<MigDeviceInfo> Devices(unsigned index) {
    auto devices = nvml_->MigDevices(index);
    EXPECT_TRUE(devices.ok()) << devices.status();
    return devices.ok() ? *devices : std::vector<MigDeviceInfo>{};
  }

  ScopedFakeNvmlEnv env_{FakeNvmlNode("a100-sxm4-40gb-x8-mig-mixed.json")};
  std::unique_ptr<Nvml> nvml_;
};

TEST_F(DlNvmlMigTest, A100MixedLayout) {
  Load("a100-sxm4-40gb-x8-mig-mixed.json");
  auto gpu0 = nvml_->GpuByIndex(0);
  ASSERT_TRUE(gpu0.ok()) << gpu0.status();
  EXPECT_TRUE(gpu0->mig_enabled);

  const std::vector<MigDeviceInfo> d = Devices(0);
  ASSERT_EQ(d.size(), 4u);
  const char* profiles[] = {"3g.20gb", "2g.10gb", "1g.5gb", "1g.5gb"};
  const unsigned gis[] = {2, 3, 9, 10};
  const uint64_t mib[] = {19968, 9856, 4864, 4864};
  const unsigned slices[] = {3, 2, 1, 1};
  for (unsigned i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(d[i].uuid, A100MigUuid(0, i));
    EXPECT_EQ(d[i].mig_index, i);
    EXPECT_EQ(d[i].gi_id, gis[i]);
    EXPECT_EQ(d[i].ci_id, 0u);
    EXPECT_EQ(d[i].profile, profiles[i]);
    EXPECT_EQ(d[i].memory_bytes, mib[i] << 20);
    EXPECT_EQ(d[i].gi_slice_count, slices[i]);
    EXPECT_EQ(d[i].ci_slice_count, slices[i]);
    EXPECT_EQ(d[i].multiprocessor_count, 14 * slices[i]);
    EXPECT_EQ(d[i].shared_copy_engines, slices[i]);
  }
  EXPECT_EQ(d[0].shared_decoders, 2u);
  // The two 1g.5gb devices have identical attributes (what the single strategy compares).
  EXPECT_EQ(d[2].shared_decoders, d[3].shared_decoders);
}

TEST_F(DlNvmlMigTest, ComputeInstancesSmallerThanTheirGpuInstanceAndMediaExtensions) {
  Load("a100-sxm4-40gb-x8-mig-mixed.json");
  const std::vector<MigDeviceInfo> d = Devices(3);
  ASSERT_EQ(d.size(), 4u);
  EXPECT_EQ(d[0].profile, "1c.3g.20gb");
  EXPECT_EQ(d[0].gi_id, 1u);
  EXPECT_EQ(d[0].ci_id, 0u);
  EXPECT_EQ(d[0].gi_slice_count, 3u);
  EXPECT_EQ(d[0].ci_slice_count, 1u);
  EXPECT_EQ(d[0].multiprocessor_count, 14u);
  EXPECT_EQ(d[0].memory_bytes, 19968ull << 20) << "a CI shares its GI's memory";
  EXPECT_EQ(d[1].profile, "2c.3g.20gb");
  EXPECT_EQ(d[1].gi_id, 1u);
  EXPECT_EQ(d[1].ci_id, 1u);
  EXPECT_EQ(d[2].profile, "2g.10gb");
  EXPECT_EQ(d[3].profile, "1g.5gb+me");
  EXPECT_EQ(d[3].uuid, A100MigUuid(3, 3));
  EXPECT_EQ(d[3].shared_jpegs, 1u);
  EXPECT_EQ(d[3].shared_ofas, 1u);
}

TEST_F(DlNvmlMigTest, SevenOneSliceDevicesAndMigOffGpus) {
  Load("a100-sxm4-40gb-x8-mig-mixed.json");
  for (unsigned gpu : {4u, 5u}) {
    const std::vector<MigDeviceInfo> d = Devices(gpu);
    ASSERT_EQ(d.size(), 7u);
    for (unsigned i = 0; i < 7; ++i) {
      EXPECT_EQ(d[i].uuid, A100MigUuid(gpu, i));
      EXPECT_EQ(d[i].profile, "1g.5gb");
      EXPECT_EQ(d[i].gi_id, 7 + i);
      EXPECT_EQ(d[i].memory_bytes, 4864ull << 20);
    }
  }
  for (unsigned gpu : {6u, 7u}) {
    auto info = nvml_->GpuByIndex(gpu);
    ASSERT_TRUE(info.ok());
    EXPECT_TRUE(info->mig_capable);
    EXPECT_FALSE(info->mig_enabled);
    EXPECT_TRUE(Devices(gpu).empty());
  }
}

TEST_F(DlNvmlMigTest, H100SevenTenGigabyteDevices) {
  Load("h100-80gb-x1-mig-1g10gb.json");
  const std::vector<MigDeviceInfo> d = Devices(0);
  ASSERT_EQ(d.size(), 7u);
  for (unsigned i = 0; i < 7; ++i) {
    EXPECT_EQ(d[i].uuid, "MIG-h100h100-0000-5000-8000-00000000000" + std::to_string(i));
    EXPECT_EQ(d[i].profile, "1g.10gb");
    EXPECT_EQ(d[i].memory_bytes, 9856ull << 20);
    EXPECT_EQ(d[i].gi_id, 7 + i);
    EXPECT_EQ(d[i].ci_id, 0u);
  }
}

TEST_F(DlNvmlMigTest, GpuWithoutMigHasNoMigDevices) {
  Load("a100-sxm4-40gb-x8.json");
  EXPECT_TRUE(Devices(0).empty());
  Load("a100-sxm4-40gb-x8-mig-mixed.json", "nvmlDeviceGetMigMode@0=3");  // not MIG-capable
  EXPECT_TRUE(Devices(0).empty());
}

TEST_F(DlNvmlMigTest, FailingMigQueryNamesTheCallAndTheDevice) {
  Load("a100-sxm4-40gb-x8-mig-mixed.json", "nvmlDeviceGetAttributes_v2@1=15");
  auto broken = nvml_->MigDevices(1);
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(broken.status().message(), HasSubstr("nvmlDeviceGetAttributes_v2"));
  EXPECT_THAT(broken.status().message(), HasSubstr(A100MigUuid(1, 0)));
  EXPECT_EQ(Devices(0).size(), 4u);
}

TEST_F(DlNvmlMigTest, GpuByUuidRefusesAMigDevice) {
  Load("a100-sxm4-40gb-x8-mig-mixed.json");
  auto mig = nvml_->GpuByUuid(A100MigUuid(0, 1));
  EXPECT_EQ(mig.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mig.status().message(), HasSubstr("is a MIG device"));
  auto gpu = nvml_->GpuByUuid(A100Uuid(0));
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_TRUE(gpu->mig_enabled);
}

std::string FakeNvmlVariant(const std::string& dir) {
  return testutil::BinDir() + "/../lib/" + dir + "/libnvidia-ml.so.1";
}

// A driver without nvmlDeviceGetMigMode has no MIG: GPUs are not MIG-capable, none has MIG devices.
TEST_F(DlNvmlMigTest, DriverWithoutMigSymbolsHasNoMig) {
  Load("a100-sxm4-40gb-x8-mig-mixed.json", "", FakeNvmlVariant("fake-nvml-no-mig"));
  auto gpu = nvml_->GpuByIndex(0);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_FALSE(gpu->mig_capable);
  EXPECT_FALSE(gpu->mig_enabled);
  EXPECT_TRUE(Devices(0).empty());
}

// MIG reported on but the enumeration entry points missing: an error naming them, not silence.
TEST_F(DlNvmlMigTest, MigEnabledWithoutEnumerationSymbolsFails) {
  Load("a100-sxm4-40gb-x8-mig-mixed.json", "", FakeNvmlVariant("fake-nvml-mig-mode-only"));
  auto gpu = nvml_->GpuByIndex(0);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_TRUE(gpu->mig_enabled);
  auto devices = nvml_->MigDevices(0);
  EXPECT_EQ(devices.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(devices.status().message(), HasSubstr("nvmlDeviceGetMaxMigDeviceCount"));
  EXPECT_THAT(devices.status().message(), HasSubstr("GPU 0"));
  // MIG off: nothing to enumerate, nothing missing.
  auto off = nvml_->MigDevices(6);
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_TRUE(off->empty());
}

class DlNvmlMigEventsTest : public DlNvmlMigTest {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "nvdp-mig-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    events_ = dir_ + "/events";
    std::ofstream(events_).flush();
    ScopedFakeNvmlEnv::Set("FAKE_NVML_EVENTS", events_);
    Load("a100-sxm4-40gb-x8-mig-mixed.json");
  }
  void TearDown() override {
    DlNvmlMigTest::TearDown();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  void Append(const std::string& line) { std::ofstream(events_, std::ios::app) << line << "\n"; }
  Event Next() {
    auto event = nvml_->WaitForEvent(std::chrono::seconds(10));
    EXPECT_TRUE(event.ok() && event->has_value()) << event.status();
    return event.ok() && event->has_value() ? **event : Event{};
  }

  std::string dir_;
  std::string events_;
};

TEST_F(DlNvmlMigEventsTest, EventsCarryTheirGpuAndComputeInstance) {
  ASSERT_TRUE(nvml_->WatchEvents({A100Uuid(0)}, kEventXidCritical).ok());
  Append("xid " + A100Uuid(0) + " 79 9 0");  // GI 9 / CI 0: the first 1g.5gb
  Event e = Next();
  EXPECT_EQ(e.gpu_uuid, A100Uuid(0));
  EXPECT_EQ(e.xid, 79u);
  EXPECT_EQ(e.gi_id, std::optional<unsigned>(9));
  EXPECT_EQ(e.ci_id, std::optional<unsigned>(0));

  Append("xid " + A100MigUuid(0, 0) + " 48");  // named by MIG UUID: the parent, GI 2 / CI 0
  e = Next();
  EXPECT_EQ(e.gpu_uuid, A100Uuid(0));
  EXPECT_EQ(e.gi_id, std::optional<unsigned>(2));
  EXPECT_EQ(e.ci_id, std::optional<unsigned>(0));

  Append("xid " + A100Uuid(0) + " 79");  // the whole GPU
  e = Next();
  EXPECT_EQ(e.gi_id, std::nullopt);
  EXPECT_EQ(e.ci_id, std::nullopt);
}

// End to end: the health monitor on DlNvml and the fake, with the MIG devices DlNvml enumerated.
TEST_F(DlNvmlMigEventsTest, HealthMonitorReportsTheMigDeviceAnXidIsAttributedTo) {
  std::vector<health::MigDeviceRef> refs;
  for (const MigDeviceInfo& d : Devices(0)) {
    refs.push_back(
        {.parent_uuid = A100Uuid(0), .gi_id = d.gi_id, .ci_id = d.ci_id, .uuid = d.uuid});
  }
  absl::Mutex mu;
  std::vector<std::string> unhealthy;
  health::HealthMonitor monitor(
      *nvml_, {A100Uuid(6)}, refs, {},
      [&](const std::string& uuid, bool healthy) {
        absl::MutexLock lock(&mu);
        if (!healthy) unhealthy.push_back(uuid);
      },
      std::chrono::milliseconds(20));
  ASSERT_TRUE(monitor.Start().ok());
  Append("xid " + A100Uuid(0) + " 79 3 0");  // GI 3: the 2g.10gb in slot 1
  Append("xid " + A100Uuid(6) + " 79");
  {
    absl::MutexLock lock(&mu);
    auto two = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu) { return unhealthy.size() >= 2; };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&two), absl::Seconds(20)));
    EXPECT_THAT(unhealthy, ::testing::ElementsAre(A100MigUuid(0, 1), A100Uuid(6)));
  }
  monitor.Stop();
  EXPECT_TRUE(monitor.AwaitThreadExit(std::chrono::seconds(20)));
}

// NVML registers events on full GPUs only.
TEST_F(DlNvmlMigEventsTest, WatchingAMigDeviceIsRefused) {
  absl::Status s = nvml_->WatchEvents({A100MigUuid(0, 1)}, kEventXidCritical);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr(A100MigUuid(0, 1)));
}

}  // namespace
}  // namespace nvdp::nvml
