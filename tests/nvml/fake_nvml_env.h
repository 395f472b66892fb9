// Test helpers for the fake libnvidia-ml.so.1 (tests/fakes/nvml): where it and
// its node descriptions are, and a scoped environment for it.
//
// Thread-safety: the helpers change process environment variables; use them
// from the test's main thread before starting other threads.
#pragma once

#include <stdlib.h>

#include <cstdlib>
#include <string>

namespace nvdp::testutil {

inline std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

// The build and source trees: from the environment nvdp_test sets, else from
// the compile definitions tests/nvml/CMakeLists.txt adds (NVDP_TEST_BIN_DIR,
// NVDP_TEST_SOURCE_DIR).
inline std::string BinDir() {
#ifdef NVDP_TEST_BIN_DIR
  return EnvOr("NVDP_BIN_DIR", NVDP_TEST_BIN_DIR);
#else
  return EnvOr("NVDP_BIN_DIR", ".");
#endif
}
inline std::string SourceDir() {
#ifdef NVDP_TEST_SOURCE_DIR
  return EnvOr("NVDP_SOURCE_DIR", NVDP_TEST_SOURCE_DIR);
#else
  return EnvOr("NVDP_SOURCE_DIR", ".");
#endif
}

// <build>/lib/fake-nvml/libnvidia-ml.so.1 (NVDP_BIN_DIR is <build>/bin).
inline std::string FakeNvmlLibrary() { return BinDir() + "/../lib/fake-nvml/libnvidia-ml.so.1"; }

// tests/fakes/nvml/nodes/<name> in the source tree, e.g.
// "a100-sxm4-40gb-x8.json", "a100-sysfs".
inline std::string FakeNvmlNode(const std::string& name) {
  return SourceDir() + "/tests/fakes/nvml/nodes/" + name;
}

// Sets the FAKE_NVML_* variables for one test and clears them all again on
// destruction.
class ScopedFakeNvmlEnv {
 public:
  explicit ScopedFakeNvmlEnv(const std::string& node_file) {
    Clear();
    Set("FAKE_NVML_NODE", node_file);
  }
  ~ScopedFakeNvmlEnv() { Clear(); }
  ScopedFakeNvmlEnv(const ScopedFakeNvmlEnv&) = delete;
  ScopedFakeNvmlEnv& operator=(const ScopedFakeNvmlEnv&) = delete;

  static void Set(const char* name, const std::string& value) { ::setenv(name, value.c_str(), 1); }
  static void Unset(const char* name) { ::unsetenv(name); }

 private:
  static void Clear() {
    for (const char* name :
         {"FAKE_NVML_NODE", "FAKE_NVML_EVENTS", "FAKE_NVML_FAIL", "FAKE_NVML_LOG"}) {
      ::unsetenv(name);
    }
  }
};

}  // namespace nvdp::testutil
