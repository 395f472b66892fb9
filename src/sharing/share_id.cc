// Device IDs: the bare UUIDs of exclusive resources and the "<uuid>::<i>"
// shares of shared ones, their parsing and resolution, and the messages the
// other sharing files share.
//
// Pure functions; a Resolver is per call (see internal.h).
#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sharing/internal.h"
#include "sharing/sharing.h"

namespace nvdp::sharing {

std::string_view ModeName(Mode mode) {
  switch (mode) {
    case Mode::kExclusive:
      return "exclusive";
    case Mode::kTimeSlicing:
      return "time-slicing";
    case Mode::kMps:
      return "mps";
  }
  return "unknown";
}

namespace internal {

std::string Describe(const device::Gpu& device) {
  return device.IsMig() ? absl::StrCat("MIG device ", device.IndexId(), " (", device.uuid, ")")
                        : absl::StrCat("GPU ", device.index, " (", device.uuid, ")");
}

bool DeviceBefore(const device::Gpu& a, const device::Gpu& b) {
  const auto key = [](const device::Gpu& d) {
    return std::make_pair(d.index, d.mig ? static_cast<int64_t>(d.mig->mig_index) : int64_t{-1});
  };
  return key(a) < key(b);
}

}  // namespace internal

std::string ResourceSpec::ShortName() const {
  std::string_view prefix = config::kResourcePrefix;
  return std::string_view(name).starts_with(prefix) ? name.substr(prefix.size()) : name;
}

std::string FormatShareId(const std::string& gpu_uuid, int replica) {
  return absl::StrCat(gpu_uuid, "::", replica);
}

absl::StatusOr<ShareId> ParseShareId(const std::string& id) {
  std::string_view uuid;
  std::optional<int> replica;
  if (!internal::SplitDeviceId(id, &uuid, &replica, /*check_uuid=*/true)) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed device ID \"", internal::ClipForMessage(id), "\""));
  }
  return ShareId{std::string(uuid), replica};
}

std::vector<AdvertisedDevice> AdvertisedDevices(const ResourceSpec& spec) {
  std::vector<AdvertisedDevice> out;
  out.reserve(spec.gpus.size() * static_cast<size_t>(internal::SlotsPerGpu(spec)));
  for (const auto& gpu : spec.gpus) {
    if (spec.mode == Mode::kExclusive) {
      out.push_back({gpu.uuid, gpu.uuid, gpu.numa_node});
    } else {
      for (int i = 0; i < spec.replicas; ++i) {
        out.push_back({FormatShareId(gpu.uuid, i), gpu.uuid, gpu.numa_node});
      }
    }
  }
  return out;
}

namespace internal {

bool SplitDeviceId(std::string_view id, std::string_view* uuid, std::optional<int>* replica,
                   bool check_uuid) {
  // The UUID runs up to the first ':', which must start "::".
  const size_t pos = id.find(':');
  if (pos == 0 || id.empty()) return false;
  *uuid = id.substr(0, pos);
  if (check_uuid) {
    for (char c : *uuid) {
      const auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u == 0x7f) return false;
    }
  }
  if (pos == std::string_view::npos) {
    *replica = std::nullopt;
    return true;
  }
  if (pos + 1 >= id.size() || id[pos + 1] != ':') return false;
  const std::string_view digits = id.substr(pos + 2);
  if (digits.empty() || digits.size() > 9 || (digits.size() > 1 && digits[0] == '0')) {
    return false;
  }
  int value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  *replica = value;
  return true;
}

int SlotsPerGpu(const ResourceSpec& spec) {
  return spec.mode == Mode::kExclusive ? 1 : std::max(spec.replicas, 0);
}

std::string IdOf(const ResourceSpec& spec, Slot slot) {
  const std::string& uuid = spec.gpus[static_cast<size_t>(slot.gpu)].uuid;
  return spec.mode == Mode::kExclusive ? uuid : FormatShareId(uuid, slot.replica);
}

std::optional<Slot> Resolver::Resolve(std::string_view id) {
  std::string_view uuid;
  std::optional<int> replica;
  // The UUID is compared with the resource's own, so its characters need no
  // separate check.
  if (!SplitDeviceId(id, &uuid, &replica, /*check_uuid=*/false)) {
    return std::nullopt;
  }
  if (spec_.mode == Mode::kExclusive) {
    if (replica.has_value()) return std::nullopt;
  } else if (!replica.has_value() || *replica >= slots_) {
    return std::nullopt;
  }
  const size_t count = spec_.gpus.size();
  for (size_t step = 0; step < count; ++step) {
    const size_t i = (hint_ + step) % count;
    const std::string& candidate = spec_.gpus[i].uuid;
    // The last character rules most mismatches out without a full compare.
    if (candidate.size() == uuid.size() && candidate.back() == uuid.back() && candidate == uuid) {
      hint_ = i;
      return Slot{static_cast<int>(i), replica.value_or(0)};
    }
  }
  return std::nullopt;
}

std::string ClipForMessage(std::string_view text) {
  std::string out;
  const bool clip = text.size() > kMaxItemChars;
  if (clip) text = text.substr(0, kMaxItemChars - 3);
  out.reserve(text.size() + 3);
  for (char c : text) out += absl::ascii_isprint(static_cast<unsigned char>(c)) ? c : '?';
  if (clip) out += "...";
  return out;
}

std::string JoinAnd(const std::vector<std::string>& items) {
  if (items.size() <= 1) return items.empty() ? std::string() : ClipForMessage(items.front());
  std::vector<std::string> shown;
  const size_t count = std::min(items.size(), kMaxListedItems);
  for (size_t i = 0; i < count; ++i) shown.push_back(ClipForMessage(items[i]));
  if (items.size() > kMaxListedItems) {
    return absl::StrCat(absl::StrJoin(shown, ", "), " and ", items.size() - count, " more");
  }
  const std::string last = std::move(shown.back());
  shown.pop_back();
  return absl::StrCat(absl::StrJoin(shown, ", "), " and ", last);
}

std::string QuoteAll(const std::vector<std::string>& ids) {
  const size_t count = std::min(ids.size(), kMaxListedItems);
  std::string out = absl::StrJoin(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(count), ", ",
                                  [](std::string* o, const std::string& id) {
                                    absl::StrAppend(o, "\"", ClipForMessage(id), "\"");
                                  });
  if (ids.size() > count) absl::StrAppend(&out, " and ", ids.size() - count, " more");
  return out;
}

absl::Status UnknownIdsError(const ResourceSpec& spec, const std::vector<std::string>& ids) {
  return absl::InvalidArgumentError(
      absl::StrCat(spec.name, ": unknown device IDs: ", QuoteAll(ids)));
}

absl::Status TooManyError(const ResourceSpec& spec, size_t found) {
  return absl::InvalidArgumentError(
      absl::StrCat(spec.name, ": maximum request size for shared resources is 1; found ", found));
}

absl::Status UnevenRequestError(const ResourceSpec& spec, int64_t k) {
  const int64_t n = spec.replicas;
  const int64_t lower = k / n * n;
  return absl::InvalidArgumentError(
      absl::StrCat(spec.name, ": request for ", k, " shares cannot be satisfied: shares are ", n,
                   " per GPU, so a request must be below ", n, " (one GPU) or a multiple of ", n,
                   " (whole GPUs); ask for ", lower, " or ", lower + n));
}

uint64_t ShareMiB(uint64_t total_bytes, int64_t k, int64_t n) {
  // total*k/n = (q*n + r)*k/n = q*k + r*k/n, with q*k <= total and r*k < n*n <
  // 2^62.
  const auto uk = static_cast<uint64_t>(k);
  const auto un = static_cast<uint64_t>(n);
  const uint64_t q = total_bytes / un;
  const uint64_t r = total_bytes % un;
  return (q * uk + r * uk / un) >> 20;
}

}  // namespace internal
struct AdvertisedIndex::State {
  explicit State(const ResourceSpec& spec) : resolver(spec), slots(internal::SlotsPerGpu(spec)) {}
  internal::Resolver resolver;
  const int slots;
};

AdvertisedIndex::AdvertisedIndex(const ResourceSpec& spec)
    : state_(std::make_unique<State>(spec)) {}

AdvertisedIndex::~AdvertisedIndex() = default;

std::optional<size_t> AdvertisedIndex::Find(std::string_view id) {
  const auto slot = state_->resolver.Resolve(id);
  if (!slot) return std::nullopt;
  return static_cast<size_t>(slot->gpu) * static_cast<size_t>(state_->slots) +
         static_cast<size_t>(slot->replica);
}

}  // namespace nvdp::sharing
