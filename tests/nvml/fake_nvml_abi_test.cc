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

class FakeNvmlMigAbiTest : public FakeNvmlAbiTest {
 protected:
  void SetUp() override {
    FakeNvmlAbiTest::SetUp();
    ScopedFakeNvmlEnv::Set("FAKE_NVML_NODE", FakeNvmlNode("a100-sxm4-40gb-x8-mig-mixed.json"));
    ASSERT_FALSE(HasFailure());
    ASSERT_EQ(Sym<nvmlInit_v2_fn>("nvmlInit_v2")(), NVML_SUCCESS);
  }
  void TearDown() override {
    if (handle_ != nullptr) Sym<nvmlShutdown_fn>("nvmlShutdown")();
    FakeNvmlAbiTest::TearDown();
  }
  nvmlDevice_t Gpu(unsigned index) {
    nvmlDevice_t device = nullptr;
    EXPECT_EQ(
        Sym<nvmlDeviceGetHandleByIndex_v2_fn>("nvmlDeviceGetHandleByIndex_v2")(index, &device),
        NVML_SUCCESS);
    return device;
  }
  nvmlDevice_t Mig(nvmlDevice_t gpu, unsigned slot) {
    nvmlDevice_t mig = nullptr;
    EXPECT_EQ(Sym<nvmlDeviceGetMigDeviceHandleByIndex_fn>("nvmlDeviceGetMigDeviceHandleByIndex")(
                  gpu, slot, &mig),
              NVML_SUCCESS);
    return mig;
  }
};

TEST_F(FakeNvmlMigAbiTest, MigSlotsAndHandles) {
  auto max_count = Sym<nvmlDeviceGetMaxMigDeviceCount_fn>("nvmlDeviceGetMaxMigDeviceCount");
  auto by_slot = Sym<nvmlDeviceGetMigDeviceHandleByIndex_fn>("nvmlDeviceGetMigDeviceHandleByIndex");
  auto parent_of = Sym<nvmlDeviceGetDeviceHandleFromMigDeviceHandle_fn>(
      "nvmlDeviceGetDeviceHandleFromMigDeviceHandle");
  auto is_mig = Sym<nvmlDeviceIsMigDeviceHandle_fn>("nvmlDeviceIsMigDeviceHandle");
  auto by_uuid = Sym<nvmlDeviceGetHandleByUUID_fn>("nvmlDeviceGetHandleByUUID");
  auto get_uuid = Sym<nvmlDeviceGetUUID_fn>("nvmlDeviceGetUUID");
  auto get_name = Sym<nvmlDeviceGetName_fn>("nvmlDeviceGetName");
  auto get_mem = Sym<nvmlDeviceGetMemoryInfo_fn>("nvmlDeviceGetMemoryInfo");
  ASSERT_FALSE(HasFailure());

  nvmlDevice_t gpu0 = Gpu(0);
  unsigned count = 99;
  ASSERT_EQ(max_count(gpu0, &count), NVML_SUCCESS);
  EXPECT_EQ(count, 7u);
  ASSERT_EQ(max_count(Gpu(6), &count), NVML_SUCCESS);
  EXPECT_EQ(count, 0u) << "MIG off";

  nvmlDevice_t mig = nullptr;
  EXPECT_EQ(by_slot(gpu0, 4, &mig), NVML_ERROR_NOT_FOUND) << "empty slot";
  EXPECT_EQ(by_slot(gpu0, 7, &mig), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(by_slot(Gpu(6), 0, &mig), NVML_ERROR_INVALID_ARGUMENT);
  mig = Mig(gpu0, 2);
  ASSERT_NE(mig, nullptr);
  EXPECT_NE(mig, gpu0);

  char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
  ASSERT_EQ(get_uuid(mig, uuid, sizeof(uuid)), NVML_SUCCESS);
  EXPECT_STREQ(uuid, "MIG-a100a100-0000-5000-8000-000000000002");
  nvmlDevice_t again = nullptr;
  ASSERT_EQ(by_uuid(uuid, &again), NVML_SUCCESS);
  EXPECT_EQ(again, mig) << "a MIG UUID gives the same MIG handle";
  char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE];
  ASSERT_EQ(get_name(mig, name, sizeof(name)), NVML_SUCCESS);
  EXPECT_STREQ(name, "NVIDIA A100-SXM4-40GB MIG 1g.5gb");
  nvmlMemory_t mem{};
  ASSERT_EQ(get_mem(mig, &mem), NVML_SUCCESS);
  EXPECT_EQ(mem.total, 4864ull << 20);

  unsigned flag = 9;
  ASSERT_EQ(is_mig(mig, &flag), NVML_SUCCESS);
  EXPECT_EQ(flag, 1u);
  ASSERT_EQ(is_mig(gpu0, &flag), NVML_SUCCESS);
  EXPECT_EQ(flag, 0u);
  nvmlDevice_t parent = nullptr;
  ASSERT_EQ(parent_of(mig, &parent), NVML_SUCCESS);
  EXPECT_EQ(parent, gpu0);
  EXPECT_EQ(parent_of(gpu0, &parent), NVML_ERROR_INVALID_ARGUMENT);
}

TEST_F(FakeNvmlMigAbiTest, CallsRefuseTheWrongKindOfHandle) {
  auto gi_id = Sym<nvmlDeviceGetGpuInstanceId_fn>("nvmlDeviceGetGpuInstanceId");
  auto ci_id = Sym<nvmlDeviceGetComputeInstanceId_fn>("nvmlDeviceGetComputeInstanceId");
  auto attrs = Sym<nvmlDeviceGetAttributes_v2_fn>("nvmlDeviceGetAttributes_v2");
  auto mig_mode = Sym<nvmlDeviceGetMigMode_fn>("nvmlDeviceGetMigMode");
  auto register_events = Sym<nvmlDeviceRegisterEvents_fn>("nvmlDeviceRegisterEvents");
  auto supported = Sym<nvmlDeviceGetSupportedEventTypes_fn>("nvmlDeviceGetSupportedEventTypes");
  auto create_set = Sym<nvmlEventSetCreate_fn>("nvmlEventSetCreate");
  auto free_set = Sym<nvmlEventSetFree_fn>("nvmlEventSetFree");
  auto pci = Sym<nvmlDeviceGetPciInfo_v3_fn>("nvmlDeviceGetPciInfo_v3");
  ASSERT_FALSE(HasFailure());
  nvmlDevice_t gpu = Gpu(0);
  nvmlDevice_t mig = Mig(gpu, 0);

  unsigned id = 0;
  EXPECT_EQ(gi_id(gpu, &id), NVML_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(ci_id(gpu, &id), NVML_ERROR_INVALID_ARGUMENT);
  nvmlDeviceAttributes_t a{};
  EXPECT_EQ(attrs(gpu, &a), NVML_ERROR_INVALID_ARGUMENT);

  unsigned current = 0, pending = 0;
  EXPECT_EQ(mig_mode(mig, &current, &pending), NVML_ERROR_NOT_SUPPORTED);
  unsigned long long types = 0;
  EXPECT_EQ(supported(mig, &types), NVML_ERROR_NOT_SUPPORTED);
  nvmlPciInfo_t p{};
  EXPECT_EQ(pci(mig, &p), NVML_ERROR_NOT_SUPPORTED);
  nvmlEventSet_t set = nullptr;
  ASSERT_EQ(create_set(&set), NVML_SUCCESS);
  EXPECT_EQ(register_events(mig, nvmlEventTypeXidCriticalError, set), NVML_ERROR_NOT_SUPPORTED);
  EXPECT_EQ(register_events(gpu, nvmlEventTypeXidCriticalError, set), NVML_SUCCESS);
  EXPECT_EQ(free_set(set), NVML_SUCCESS);
}

TEST_F(FakeNvmlMigAbiTest, GpuAndComputeInstances) {
  auto gi_id = Sym<nvmlDeviceGetGpuInstanceId_fn>("nvmlDeviceGetGpuInstanceId");
  auto ci_id = Sym<nvmlDeviceGetComputeInstanceId_fn>("nvmlDeviceGetComputeInstanceId");
  auto attrs = Sym<nvmlDeviceGetAttributes_v2_fn>("nvmlDeviceGetAttributes_v2");
  auto gi_by_id = Sym<nvmlDeviceGetGpuInstanceById_fn>("nvmlDeviceGetGpuInstanceById");
  auto gi_info = Sym<nvmlGpuInstanceGetInfo_fn>("nvmlGpuInstanceGetInfo");
  auto ci_by_id =
      Sym<nvmlGpuInstanceGetComputeInstanceById_fn>("nvmlGpuInstanceGetComputeInstanceById");
  auto ci_info = Sym<nvmlComputeInstanceGetInfo_v2_fn>("nvmlComputeInstanceGetInfo_v2");
  auto gi_profile =
      Sym<nvmlDeviceGetGpuInstanceProfileInfo_fn>("nvmlDeviceGetGpuInstanceProfileInfo");
  auto ci_profile = Sym<nvmlGpuInstanceGetComputeInstanceProfileInfo_fn>(
      "nvmlGpuInstanceGetComputeInstanceProfileInfo");
  ASSERT_FALSE(HasFailure());

  // GPU 3, slot 1: CI 1 (2 slices) of the 3g.20gb GPU instance 1 at placement 0.
  nvmlDevice_t gpu = Gpu(3);
  nvmlDevice_t mig = Mig(gpu, 1);
  unsigned gi = 0, ci = 0;
  ASSERT_EQ(gi_id(mig, &gi), NVML_SUCCESS);
  ASSERT_EQ(ci_id(mig, &ci), NVML_SUCCESS);
  EXPECT_EQ(gi, 1u);
  EXPECT_EQ(ci, 1u);
  nvmlDeviceAttributes_t a{};
  ASSERT_EQ(attrs(mig, &a), NVML_SUCCESS);
  EXPECT_EQ(a.multiprocessorCount, 28u);
  EXPECT_EQ(a.gpuInstanceSliceCount, 3u);
  EXPECT_EQ(a.computeInstanceSliceCount, 2u);
  EXPECT_EQ(a.sharedCopyEngineCount, 3u);
  EXPECT_EQ(a.sharedDecoderCount, 2u);
  EXPECT_EQ(a.memorySizeMB, 19968u);

  nvmlGpuInstance_t gih = nullptr;
  EXPECT_EQ(gi_by_id(gpu, 2, &gih), NVML_ERROR_NOT_FOUND);
  EXPECT_EQ(gi_by_id(mig, 1, &gih), NVML_ERROR_NOT_SUPPORTED);
  ASSERT_EQ(gi_by_id(gpu, 1, &gih), NVML_SUCCESS);
  nvmlGpuInstanceInfo_t info{};
  ASSERT_EQ(gi_info(gih, &info), NVML_SUCCESS);
  EXPECT_EQ(info.device, gpu);
  EXPECT_EQ(info.id, 1u);
  EXPECT_EQ(info.profileId, 9u) << "the driver's id of the 3-slice profile, not its index";
  EXPECT_EQ(info.placement.start, 0u);
  EXPECT_EQ(info.placement.size, 4u);

  nvmlComputeInstance_t cih = nullptr;
  EXPECT_EQ(ci_by_id(gih, 5, &cih), NVML_ERROR_NOT_FOUND);
  ASSERT_EQ(ci_by_id(gih, 1, &cih), NVML_SUCCESS);
  nvmlComputeInstanceInfo_t cinfo{};
  ASSERT_EQ(ci_info(cih, &cinfo), NVML_SUCCESS);
  EXPECT_EQ(cinfo.device, gpu);
  EXPECT_EQ(cinfo.gpuInstance, gih);
  EXPECT_EQ(cinfo.id, 1u);
  EXPECT_EQ(cinfo.profileId, static_cast<unsigned>(NVML_COMPUTE_INSTANCE_PROFILE_2_SLICE));
  EXPECT_EQ(cinfo.placement.start, 1u);
  EXPECT_EQ(cinfo.placement.size, 2u);

  nvmlGpuInstanceProfileInfo_t gp{};
  ASSERT_EQ(gi_profile(gpu, NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1, &gp), NVML_SUCCESS);
  EXPECT_EQ(gp.id, 20u);
  EXPECT_EQ(gp.sliceCount, 1u);
  EXPECT_EQ(gp.instanceCount, 1u);
  EXPECT_EQ(gp.jpegCount, 1u);
  EXPECT_EQ(gp.memorySizeMB, 4864u);
  EXPECT_EQ(gi_profile(gpu, NVML_GPU_INSTANCE_PROFILE_3_SLICE_GFX, &gp), NVML_ERROR_NOT_SUPPORTED);
  EXPECT_EQ(gi_profile(gpu, NVML_GPU_INSTANCE_PROFILE_COUNT, &gp), NVML_ERROR_INVALID_ARGUMENT);

  nvmlComputeInstanceProfileInfo_t cp{};
  ASSERT_EQ(ci_profile(gih, NVML_COMPUTE_INSTANCE_PROFILE_3_SLICE,
                       NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED, &cp),
            NVML_SUCCESS);
  EXPECT_EQ(cp.sliceCount, 3u);
  EXPECT_EQ(cp.multiprocessorCount, 42u);
  EXPECT_EQ(ci_profile(gih, NVML_COMPUTE_INSTANCE_PROFILE_4_SLICE,
                       NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED, &cp),
            NVML_ERROR_NOT_SUPPORTED)
      << "a 3-slice GI offers no 4-slice CI";
}

TEST_F(FakeNvmlMigAbiTest, InvalidMigLayoutsFailInit) {
  const std::string bad = ::testing::TempDir() + "/fake-nvml-bad-mig-node.json";
  auto init = Sym<nvmlInit_v2_fn>("nvmlInit_v2");
  auto shutdown = Sym<nvmlShutdown_fn>("nvmlShutdown");
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(shutdown(), NVML_SUCCESS);  // SetUp's init: the next init reads the node again
  auto gpu = [](const std::string& mig) {
    return R"({"gpus": [{"uuid": "GPU-x", "name": "NVIDIA A100-SXM4-40GB", "memory_mib": 40960,
               "pci_bus_id": "0:7:0.0", "mig_mode": 1, "mig_devices": [)" +
           mig + "]}]}";
  };
  const std::string overlapping = gpu(
      R"({"uuid": "MIG-1", "profile": "3g.20gb", "placement": 0, "gi": 1},
         {"uuid": "MIG-2", "profile": "2g.10gb", "placement": 2, "gi": 2})");
  const std::string bad_placement =
      gpu(R"({"uuid": "MIG-1", "profile": "2g.10gb", "placement": 6, "gi": 1})");
  const std::string unknown_profile =
      gpu(R"({"uuid": "MIG-1", "profile": "5g.25gb", "placement": 0, "gi": 1})");
  const std::string valid =
      gpu(R"({"uuid": "MIG-1", "profile": "7g.40gb", "placement": 0, "gi": 0})");
  for (const std::string& node : {overlapping, bad_placement, unknown_profile}) {
    std::ofstream(bad) << node;
    ScopedFakeNvmlEnv::Set("FAKE_NVML_NODE", bad);
    EXPECT_EQ(init(), NVML_ERROR_UNKNOWN) << node;
  }
  std::ofstream(bad) << valid;
  ScopedFakeNvmlEnv::Set("FAKE_NVML_NODE", bad);
  EXPECT_EQ(init(), NVML_SUCCESS);
  std::remove(bad.c_str());
}

}  // namespace
}  // namespace nvdp::testutil
