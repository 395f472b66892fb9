// The fake libnvidia-ml.so.1 at the C ABI level: dlopen it and call the symbols
// directly, checking the behaviour the fake promises to share with real NVML
// (README.md in tests/fakes/nvml).
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "nvml/fake_nvml_env.h"
#include "nvml/nvml_abi.h"

namespace nvdp::testutil {
namespace {

class FakeNvmlAbiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    handle_ = dlopen(FakeNvmlLibrary().c_str(), RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(handle_, nullptr) << dlerror();
  }
  void TearDown() override {
    if (handle_ != nullptr) dlclose(handle_);
  }

  template <typename Fn>
  Fn Sym(const char* name) {
    void* sym = dlsym(handle_, name);
    EXPECT_NE(sym, nullptr) << name;
    Fn fn;
    std::memcpy(&fn, &sym, sizeof(fn));
    return fn;
  }

  ScopedFakeNvmlEnv env_{FakeNvmlNode("a100-sxm4-40gb-x8.json")};
  void* handle_ = nullptr;
};

TEST_F(FakeNvmlAbiTest, BehavesLikeNvml) {
  auto init = Sym<nvmlInit_v2_fn>("nvmlInit_v2");
  auto shutdown = Sym<nvmlShutdown_fn>("nvmlShutdown");
  auto by_index = Sym<nvmlDeviceGetHandleByIndex_v2_fn>("nvmlDeviceGetHandleByIndex_v2");
  auto by_uuid = Sym<nvmlDeviceGetHandleByUUID_fn>("nvmlDeviceGetHandleByUUID");
  auto get_uuid = Sym<nvmlDeviceGetUUID_fn>("nvmlDeviceGetUUID");
  auto get_pci = Sym<nvmlDeviceGetPciInfo_v3_fn>("nvmlDeviceGetPciInfo_v3");
  auto get_mem = Sym<nvmlDeviceGetMemoryInfo_fn>("nvmlDeviceGetMemoryInfo");
  auto get_mem2 = Sym<nvmlDeviceGetMemoryInfo_v2_fn>("nvmlDeviceGetMemoryInfo_v2");
  auto cuda = Sym<nvmlSystemGetCudaDriverVersion_v2_fn>("nvmlSystemGetCudaDriverVersion_v2");
  auto error_string = Sym<nvmlErrorString_fn>("nvmlErrorString");
  ASSERT_FALSE(HasFailure());

  nvmlDevice_t dev = nullptr;
  EXPECT_EQ(by_index(0, &dev), NVML_ERROR_UNINITIALIZED);
  EXPECT_STREQ(error_string(NVML_ERROR_NOT_FOUND), "Not Found");

  ASSERT_EQ(init(), NVML_SUCCESS);
  ASSERT_EQ(by_index(2, &dev), NVML_SUCCESS);
  nvmlDevice_t again = nullptr;
  ASSERT_EQ(by_uuid("GPU-a100a100-0000-4000-8000-000000000002", &again), NVML_SUCCESS);
  EXPECT_EQ(dev, again) << "handles are stable per GPU";
  EXPECT_EQ(by_uuid("GPU-nope", &again), NVML_ERROR_NOT_FOUND);
  EXPECT_EQ(by_index(8, &again), NVML_ERROR_INVALID_ARGUMENT);

  char small[8];
  EXPECT_EQ(get_uuid(dev, small, sizeof(small)), NVML_ERROR_INSUFFICIENT_SIZE);
  char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
  ASSERT_EQ(get_uuid(dev, uuid, sizeof(uuid)), NVML_SUCCESS);
  EXPECT_STREQ(uuid, "GPU-a100a100-0000-4000-8000-000000000002");

  nvmlPciInfo_t pci{};
  ASSERT_EQ(get_pci(dev, &pci), NVML_SUCCESS);
  EXPECT_STREQ(pci.busId, "00000000:47:00.0");
  EXPECT_STREQ(pci.busIdLegacy, "0000:47:00.0");
  EXPECT_EQ(pci.bus, 0x47u);
  EXPECT_EQ(pci.pciDeviceId, 0x20B010DEu);

  nvmlMemory_t mem{};
  ASSERT_EQ(get_mem(dev, &mem), NVML_SUCCESS);
  EXPECT_EQ(mem.total, 42949672960ull);
  EXPECT_EQ(mem.free, mem.total - mem.used);

  nvmlMemory_v2_t mem2{};
  mem2.version = 2;  // the classic mistake: not NVML_STRUCT_VERSION
  EXPECT_EQ(get_mem2(dev, &mem2), NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
  mem2.version = nvmlMemory_v2;
  ASSERT_EQ(get_mem2(dev, &mem2), NVML_SUCCESS);
  EXPECT_EQ(mem2.total, 42949672960ull);

  int cuda_version = 0;
  ASSERT_EQ(cuda(&cuda_version), NVML_SUCCESS);
  EXPECT_EQ(cuda_version, 12040);

  // Ref-counted: a second init needs a second shutdown.
  ASSERT_EQ(init(), NVML_SUCCESS);
  ASSERT_EQ(shutdown(), NVML_SUCCESS);
  EXPECT_EQ(by_index(0, &again), NVML_SUCCESS);
  ASSERT_EQ(shutdown(), NVML_SUCCESS);
  EXPECT_EQ(by_index(0, &again), NVML_ERROR_UNINITIALIZED);
  EXPECT_EQ(shutdown(), NVML_ERROR_UNINITIALIZED);
}

TEST_F(FakeNvmlAbiTest, ExportsOnlyVersionedSymbols) {
  EXPECT_NE(dlsym(handle_, "nvmlEventSetWait_v2"), nullptr);
  // The old ABIs are deliberately absent, so nothing can bind to them by
  // accident.
  EXPECT_EQ(dlsym(handle_, "nvmlInit"), nullptr);
  EXPECT_EQ(dlsym(handle_, "nvmlEventSetWait"), nullptr);
}

TEST_F(FakeNvmlAbiTest, MalformedNodeFailsInit) {
  const std::string bad = ::testing::TempDir() + "/fake-nvml-malformed-node.json";
  std::ofstream(bad) << R"({"gpus": [{"uuid": "GPU-x"}]})";  // no name, no pci_bus_id
  ScopedFakeNvmlEnv::Set("FAKE_NVML_NODE", bad);
  auto init = Sym<nvmlInit_v2_fn>("nvmlInit_v2");
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(init(), NVML_ERROR_UNKNOWN);
  std::remove(bad.c_str());
  ScopedFakeNvmlEnv::Set("FAKE_NVML_NODE", "/nonexistent/node.json");
  EXPECT_EQ(init(), NVML_ERROR_DRIVER_NOT_LOADED);
}

}  // namespace
}  // namespace nvdp::testutil
