#include "config/config.h"

#include <array>
#include <utility>

#include "config/messages.h"

namespace nvdp::config {
namespace {

template <typename E, size_t N>
std::optional<E> Lookup(const std::array<std::pair<E, std::string_view>, N>& table,
                        std::string_view text) {
  for (const auto& [value, name] : table) {
    if (name == text) return value;
  }
  return std::nullopt;
}

template <typename E, size_t N>
std::string_view Name(const std::array<std::pair<E, std::string_view>, N>& table, E value) {
  for (const auto& [v, name] : table) {
    if (v == value) return name;
  }
  return "?";
}

constexpr std::array<std::pair<MigStrategy, std::string_view>, 3> kMigStrategies = {{
    {MigStrategy::kNone, "none"},
    {MigStrategy::kSingle, "single"},
    {MigStrategy::kMixed, "mixed"},
}};
constexpr std::array<std::pair<DeviceListStrategy, std::string_view>, 4> kDeviceListStrategies = {{
    {DeviceListStrategy::kEnvvar, "envvar"},
    {DeviceListStrategy::kVolumeMounts, "volume-mounts"},
    {DeviceListStrategy::kCdiAnnotations, "cdi-annotations"},
    {DeviceListStrategy::kCdiCri, "cdi-cri"},
}};
constexpr std::array<std::pair<DeviceIdStrategy, std::string_view>, 2> kDeviceIdStrategies = {{
    {DeviceIdStrategy::kUuid, "uuid"},
    {DeviceIdStrategy::kIndex, "index"},
}};
constexpr std::array<std::pair<AllocationPolicy, std::string_view>, 2> kAllocationPolicies = {{
    {AllocationPolicy::kDistributed, "distributed"},
    {AllocationPolicy::kPacked, "packed"},
}};
constexpr std::array<std::pair<MemoryLimit, std::string_view>, 2> kMemoryLimits = {{
    {MemoryLimit::kProportional, "proportional"},
    {MemoryLimit::kNone, "none"},
}};
constexpr std::array<std::pair<DeviceDiscoveryStrategy, std::string_view>, 3>
    kDeviceDiscoveryStrategies = {{
        {DeviceDiscoveryStrategy::kAuto, "auto"},
        {DeviceDiscoveryStrategy::kNvml, "nvml"},
        {DeviceDiscoveryStrategy::kTegra, "tegra"},
    }};

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

bool IsDnsLabel(std::string_view label) {
  if (label.empty() || !IsLowerAlnum(label.front()) || !IsLowerAlnum(label.back())) return false;
  for (char c : label) {
    if (!IsLowerAlnum(c) && c != '-') return false;
  }
  return true;
}

}  // namespace

std::string_view ToString(MigStrategy value) { return Name(kMigStrategies, value); }
std::string_view ToString(DeviceListStrategy value) { return Name(kDeviceListStrategies, value); }
std::string_view ToString(DeviceIdStrategy value) { return Name(kDeviceIdStrategies, value); }
std::string_view ToString(AllocationPolicy value) { return Name(kAllocationPolicies, value); }
std::string_view ToString(MemoryLimit value) { return Name(kMemoryLimits, value); }
std::string_view ToString(DeviceDiscoveryStrategy value) {
  return Name(kDeviceDiscoveryStrategies, value);
}

std::optional<MigStrategy> ParseMigStrategy(std::string_view text) {
  return Lookup(kMigStrategies, text);
}
std::optional<DeviceListStrategy> ParseDeviceListStrategy(std::string_view text) {
  return Lookup(kDeviceListStrategies, text);
}
std::optional<DeviceIdStrategy> ParseDeviceIdStrategy(std::string_view text) {
  return Lookup(kDeviceIdStrategies, text);
}
std::optional<AllocationPolicy> ParseAllocationPolicy(std::string_view text) {
  return Lookup(kAllocationPolicies, text);
}
std::optional<MemoryLimit> ParseMemoryLimit(std::string_view text) {
  return Lookup(kMemoryLimits, text);
}
std::optional<DeviceDiscoveryStrategy> ParseDeviceDiscoveryStrategy(std::string_view text) {
  return Lookup(kDeviceDiscoveryStrategies, text);
}

std::string PluginSocketName(std::string_view short_name) {
  std::string name = "nvidia-";
  for (char c : short_name) name += c == '/' ? '-' : c;
  return name + ".sock";
}

std::string StripResourcePrefix(std::string_view name) {
  const std::string_view prefix = kResourcePrefix;
  if (name.starts_with(prefix)) name.remove_prefix(prefix.size());
  return std::string(name);
}

bool IsValidResourceName(std::string_view name) {
  if (name.empty() || name.size() > static_cast<size_t>(kMaxResourceNameLength)) return false;
  for (std::string_view label : internal::Split(name, '.')) {
    if (!IsDnsLabel(label)) return false;
  }
  return true;
}

std::string SharedResourceName(const ReplicatedResources& section, const ReplicatedResource& r) {
  if (!r.rename.empty()) return r.rename;
  if (section.rename_by_default) return internal::Cat(r.name, ".shared");
  return r.name;
}

bool FailRequestsGreaterThanOne(const ReplicatedResources& section, bool is_mps,
                                bool per_container_limits) {
  if (section.fail_requests_greater_than_one.has_value()) {
    return *section.fail_requests_greater_than_one;
  }
  return is_mps && !per_container_limits;
}

bool FailRequestsGreaterThanOne(const MpsSharing& mps) {
  return FailRequestsGreaterThanOne(mps, /*is_mps=*/true, mps.per_container_limits);
}

}  // namespace nvdp::config
