#include "health/health_monitor.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "spdlog/spdlog.h"

namespace nvdp::health {

HealthSettings ParseHealthSettings(const std::optional<std::string>& disable,
                                   const std::optional<std::string>& enable) {
  HealthSettings settings;
  // Calls `word` for `all`/`xids` and `xid` for each number of a comma list; warns about the rest.
  auto for_each_item = [](const std::string& list, auto&& word, auto&& xid) {
    const std::string lower = absl::AsciiStrToLower(list);
    for (absl::string_view part : absl::StrSplit(lower, ',', absl::SkipWhitespace())) {
      part = absl::StripAsciiWhitespace(part);
      uint64_t number = 0;
      if (part == "all" || part == "xids") {
        word(part);
      } else if (absl::SimpleAtoi(part, &number)) {
        xid(number);
      } else {
        spdlog::warn("ignoring health-check setting '{}': not an Xid number", std::string(part));
      }
    }
  };
  if (disable) {
    // As upstream: `all` or `xids` anywhere in the list turns the checks off; numbers are extra
    // Xids to ignore.
    for_each_item(
        *disable, [&](absl::string_view) { settings.enabled = false; },
        [&](uint64_t xid) { settings.ignored_xids.insert(xid); });
  }
  if (enable) {
    for_each_item(
        *enable,
        [&](absl::string_view word) {
          if (word == "all") settings.ignored_xids.clear();
        },
        [&](uint64_t xid) { settings.ignored_xids.erase(xid); });
  }
  return settings;
}

bool IsCritical(const nvml::Event& event, const HealthSettings& settings) {
  return settings.enabled && event.type == nvml::kEventXidCritical &&
         !settings.ignored_xids.contains(event.xid);
}

HealthMonitor::HealthMonitor(nvml::Nvml& nvml, std::vector<std::string> gpu_uuids,
                             HealthSettings settings, Callback callback,
                             std::chrono::milliseconds wait_period)
    : nvml_(nvml),
      gpu_uuids_(std::move(gpu_uuids)),
      settings_(std::move(settings)),
      callback_(std::move(callback)),
      wait_period_(wait_period) {}

HealthMonitor::~HealthMonitor() { Stop(); }

absl::Status HealthMonitor::Start() {
  if (!settings_.enabled) {
    spdlog::info("health checks disabled (DP_DISABLE_HEALTHCHECKS)");
    return absl::OkStatus();
  }
  if (auto status =
          nvml_.WatchEvents(gpu_uuids_, nvml::kEventXidCritical | nvml::kEventDoubleBitEcc |
                                            nvml::kEventSingleBitEcc);
      !status.ok()) {
    return status;
  }
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void HealthMonitor::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void HealthMonitor::Run() {
  while (!stop_) {
    auto event = nvml_.WaitForEvent(wait_period_);
    if (!event.ok()) {
      spdlog::error("NVML event wait failed: {}; marking every GPU unhealthy",
                    std::string(event.status().message()));
      for (const auto& uuid : gpu_uuids_) callback_(uuid, false);
      return;
    }
    if (!event->has_value()) continue;
    const nvml::Event& e = **event;
    if (!IsCritical(e, settings_)) {
      spdlog::info("GPU {}: event type {:#x} Xid {} ignored", e.gpu_uuid, e.type, e.xid);
      continue;
    }
    spdlog::warn("GPU {}: critical Xid {}; marking it unhealthy", e.gpu_uuid, e.xid);
    callback_(e.gpu_uuid, false);
  }
}

}  // namespace nvdp::health
