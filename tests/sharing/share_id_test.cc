// Share IDs, advertised devices and resource names.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sharing/test_node.h"

namespace nvdp::sharing {
namespace {

TEST(ShareId, FormatAndParseRoundTrip) {
  const std::string id = FormatShareId("GPU-abc", 42);
  EXPECT_EQ(id, "GPU-abc::42");
  auto parsed = ParseShareId(id);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->gpu_uuid, "GPU-abc");
  EXPECT_EQ(parsed->replica, 42);
}

TEST(ShareId, BareUuidHasNoReplica) {
  auto parsed = ParseShareId("GPU-a100a100-0000-4000-8000-000000000003");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->gpu_uuid, "GPU-a100a100-0000-4000-8000-000000000003");
  EXPECT_FALSE(parsed->replica.has_value());
  auto zero = ParseShareId("GPU-x::0");
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(zero->replica, 0);
  EXPECT_TRUE(ParseShareId("GPU-x::999999999").ok());
}

TEST(ShareId, RejectsMalformedIds) {
  for (const char* bad :
       {"", "::1", "GPU-x::", "GPU-x::-1", "GPU-x::+1", "GPU-x::01", "GPU-x::1a", "GPU-x:: 1",
        "GPU-x::1::2", "GPU-x:1", "GPU x::1", "GPU-x\n", "GPU-x::1234567890", ":GPU-x"}) {
    auto parsed = ParseShareId(bad);
    EXPECT_FALSE(parsed.ok()) << "accepted \"" << bad << "\"";
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
      std::string shown = bad;  // control characters are not echoed
      for (char& c : shown) c = c == '\n' ? '?' : c;
      EXPECT_EQ(parsed.status().message(), "malformed device ID \"" + shown + "\"");
    }
  }
}

TEST(AdvertisedDevices, ExclusiveAdvertisesBareUuids) {
  auto devices = AdvertisedDevices(testing::Spec(Mode::kExclusive, 1));
  ASSERT_EQ(devices.size(), 8u);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(devices[i].id, testing::A100Uuid(i));
    EXPECT_EQ(devices[i].gpu_uuid, testing::A100Uuid(i));
    EXPECT_EQ(devices[i].numa_node, i < 4 ? 0 : 1);
  }
}

TEST(AdvertisedDevices, SharesCarryTheirGpu) {
  for (Mode mode : {Mode::kMps, Mode::kTimeSlicing}) {
    auto devices = AdvertisedDevices(testing::Spec(mode, 100));
    ASSERT_EQ(devices.size(), 800u);
    for (size_t i = 0; i < devices.size(); ++i) {
      const int gpu = static_cast<int>(i / 100);
      const int replica = static_cast<int>(i % 100);
      EXPECT_EQ(devices[i].id, testing::Share(gpu, replica));
      EXPECT_EQ(devices[i].gpu_uuid, testing::A100Uuid(gpu));
      EXPECT_EQ(devices[i].numa_node, gpu < 4 ? 0 : 1);
    }
  }
}

TEST(AdvertisedIndex, FindsEveryAdvertisedIdAtItsPosition) {
  for (auto [mode, replicas] : {std::pair(Mode::kExclusive, 1), std::pair(Mode::kMps, 100),
                                std::pair(Mode::kTimeSlicing, 3)}) {
    const ResourceSpec spec = testing::Spec(mode, replicas);
    const auto devices = AdvertisedDevices(spec);
    AdvertisedIndex index(spec);
    // In order, in reverse (the hint is wrong every time), and again.
    for (size_t i = 0; i < devices.size(); ++i) EXPECT_EQ(index.Find(devices[i].id), i);
    for (size_t i = devices.size(); i-- > 0;) EXPECT_EQ(index.Find(devices[i].id), i);
  }
}

TEST(AdvertisedIndex, IdsTheResourceDoesNotAdvertiseAreNotFound) {
  const ResourceSpec shared = testing::Spec(Mode::kMps, 100);
  AdvertisedIndex index(shared);
  for (const std::string& id :
       {testing::Share(0, 100), testing::A100Uuid(0), std::string("GPU-nope::1"), std::string(""),
        testing::Share(7, 99) + "x", testing::A100Uuid(1) + "::-1"}) {
    EXPECT_FALSE(index.Find(id).has_value()) << id;
  }
  const ResourceSpec whole = testing::Spec(Mode::kExclusive, 1);
  AdvertisedIndex exclusive(whole);
  EXPECT_FALSE(exclusive.Find(testing::Share(0, 0)).has_value());
}

TEST(ResourceSpec, ShortName) {
  ResourceSpec spec;
  spec.name = "nvidia.com/gpu.shared";
  EXPECT_EQ(spec.ShortName(), "gpu.shared");
  spec.name = "example.com/gpu";
  EXPECT_EQ(spec.ShortName(), "example.com/gpu");
}

TEST(Mode, Names) {
  EXPECT_EQ(ModeName(Mode::kExclusive), "exclusive");
  EXPECT_EQ(ModeName(Mode::kTimeSlicing), "time-slicing");
  EXPECT_EQ(ModeName(Mode::kMps), "mps");
}

}  // namespace
}  // namespace nvdp::sharing
