// Process-wide logging setup shared by the project's binaries: spdlog to stderr (where container
// runtimes and kubectl logs expect it), one timestamped line per event.
//
// Call Setup once from main() before starting threads; NameThisThread from any thread.
#pragma once

#include <string>
#include <string_view>

namespace nvdp::logging {

// `level`: trace, debug, info, warn or error.
void Setup(const std::string& level);

// Names the calling thread (what `ps -L`, /proc/<pid>/task/*/comm and debuggers show), cut to the
// kernel's 15 characters. Every thread the project starts names itself "nvdp-<role>".
void NameThisThread(std::string_view name);

}  // namespace nvdp::logging
