// partial_nvml.cc: a libnvidia-ml.so.1 that exports only a few NVML symbols, so
// tests can check that LoadNvml names the missing ones. Never initialises
// anything.
#include "nvml/nvml_abi.h"

#define PARTIAL_NVML_EXPORT extern "C" __attribute__((visibility("default")))

PARTIAL_NVML_EXPORT nvmlReturn_t nvmlInit_v2(void) { return NVML_ERROR_DRIVER_NOT_LOADED; }
PARTIAL_NVML_EXPORT nvmlReturn_t nvmlShutdown(void) { return NVML_ERROR_UNINITIALIZED; }
PARTIAL_NVML_EXPORT const char* nvmlErrorString(nvmlReturn_t /*result*/) { return "partial"; }
