// Helpers shared by the sharing .cc files: device-ID parsing without
// allocation, resolving IDs against a resource, and the error messages more
// than one file produces. Not part of the API.
//
// Pure: no I/O, no state beyond a Resolver's lookup hint. A Resolver is not
// thread-safe (create one per call); everything else is safe to call
// concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "sharing/sharing.h"

namespace nvdp::sharing::internal {

// Splits "<uuid>" or "<uuid>::<i>". False for malformed IDs: empty, an empty
// UUID, a ':' that does not start "::", a suffix that is not a canonical
// non-negative decimal (digits only, no sign, no leading zero, at most 9
// digits) and, with `check_uuid`, a UUID with blanks or control characters.
bool SplitDeviceId(std::string_view id, std::string_view* uuid, std::optional<int>* replica,
                   bool check_uuid);

// A device ID resolved against a resource: the position of its GPU in spec.gpus
// and its share (0 for the bare-UUID IDs of exclusive resources).
struct Slot {
  int gpu = 0;
  int replica = 0;
};

// Shares per GPU as advertised: spec.replicas for shared resources, 1 (the bare
// UUID) otherwise.
int SlotsPerGpu(const ResourceSpec& spec);

// The advertised ID of a slot.
std::string IdOf(const ResourceSpec& spec, Slot slot);

// True when the allocation rules of SHARING.md (per-container MPS limits)
// apply.
inline bool PerContainerMps(const ResourceSpec& spec) {
  return spec.mode == Mode::kMps && spec.per_container_limits;
}

// Resolves device IDs against one resource. IDs of one GPU tend to come
// together, so it remembers the last GPU matched.
class Resolver {
 public:
  explicit Resolver(const ResourceSpec& spec) : spec_(spec), slots_(SlotsPerGpu(spec)) {}
  // nullopt when `id` is malformed or not advertised by the resource.
  std::optional<Slot> Resolve(std::string_view id);

 private:
  const ResourceSpec& spec_;
  const int slots_;
  size_t hint_ = 0;
};

// Messages echo what a client sent, so they are bounded: at most kMaxListedItems items, each at
// most kMaxItemChars characters, non-printable bytes shown as '?'. A hostile request with
// thousands of long IDs then still gets a short INVALID_ARGUMENT (gRPC puts the message in a
// header, whose size is limited) and a short log line.
inline constexpr size_t kMaxListedItems = 5;
inline constexpr size_t kMaxItemChars = 80;
std::string ClipForMessage(std::string_view text);
// "a", "a and b", "a, b and c"; "a, b, c, d, e and 7 more" past kMaxListedItems.
std::string JoinAnd(const std::vector<std::string>& items);
// "\"a\", \"b\""; "\"a\", ..., \"e\" and 7 more" past kMaxListedItems.
std::string QuoteAll(const std::vector<std::string>& ids);

// "GPU 0 (GPU-...)" or "MIG device 0:3 (MIG-...)", for messages.
std::string Describe(const device::Gpu& device);
// The order resources list their devices in: by GPU index, MIG devices of one GPU by MIG slot.
bool DeviceBefore(const device::Gpu& a, const device::Gpu& b);

// InvalidArgument "<resource>: unknown device IDs: \"x\", \"y\"".
absl::Status UnknownIdsError(const ResourceSpec& spec, const std::vector<std::string>& ids);
// InvalidArgument "<resource>: maximum request size for shared resources is 1;
// found N" (upstream).
absl::Status TooManyError(const ResourceSpec& spec, size_t found);
// InvalidArgument for a per-container MPS request above one GPU that is not a
// whole multiple.
absl::Status UnevenRequestError(const ResourceSpec& spec, int64_t k);

// floor(total_bytes * k / n / 2^20) without overflow, for 0 <= k <= n.
uint64_t ShareMiB(uint64_t total_bytes, int64_t k, int64_t n);

}  // namespace nvdp::sharing::internal
