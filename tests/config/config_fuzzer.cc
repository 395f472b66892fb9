// libFuzzer target for the config loader: any byte string through
// ParseConfigReport, ParseConfig and Validate must neither crash nor trip
// ASan/UBSan, and every message must be one line. Built only with
// -DNVDP_BUILD_FUZZ=ON and clang; run by scripts/fuzz-config.sh.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "config/loader.h"
#include "config/validate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const nvdp::config::Report report = nvdp::config::ParseConfigReport(text, "fuzz");
  const nvdp::config::Problems problems = nvdp::config::Check(report.config);
  for (const auto* list :
       {&report.errors, &report.warnings, &problems.errors, &problems.warnings}) {
    for (const auto& message : *list) {
      if (message.empty() || message.find('\n') != std::string::npos) std::abort();
    }
  }
  auto status = nvdp::config::ParseConfig(text, "fuzz");
  if (status.ok() != report.ok()) std::abort();
  if (status.ok()) (void)nvdp::config::Validate(status->config);
  return 0;
}
