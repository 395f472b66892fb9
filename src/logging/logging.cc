#include "logging/logging.h"

#include <pthread.h>

#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace nvdp::logging {

void Setup(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("nvdp");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::flush_on(spdlog::level::info);
}

void NameThisThread(std::string_view name) {
  char buffer[16] = {};  // the kernel keeps 15 characters and the terminator
  name.copy(buffer, sizeof(buffer) - 1);
  pthread_setname_np(pthread_self(), buffer);
}

}  // namespace nvdp::logging
