// Process-wide logging setup shared by the project's binaries: spdlog to stderr (where container
// runtimes and kubectl logs expect it), one timestamped line per event.
//
// Call once from main() before starting threads.
#pragma once

#include <string>

namespace nvdp::logging {

// `level`: trace, debug, info, warn or error.
void Setup(const std::string& level);

}  // namespace nvdp::logging
