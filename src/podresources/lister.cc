#include "podresources/lister.h"

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <string_view>
#include <tuple>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "podresources/v1/api.grpc.pb.h"
#include "rpc/unix_channel.h"

namespace nvdp::podresources {
namespace {

// Text from the peer (error messages) is cut to this many bytes.
constexpr size_t kMaxPeerText = 256;

std::string Bounded(absl::string_view text) {
  if (text.size() <= kMaxPeerText) return std::string(text);
  return absl::StrCat(text.substr(0, kMaxPeerText), "... (", text.size(), " bytes)");
}

// "UNAVAILABLE" -> "unavailable", "DEADLINE_EXCEEDED" -> "deadline exceeded".
std::string CodeName(absl::StatusCode code) {
  return absl::StrReplaceAll(absl::AsciiStrToLower(absl::StatusCodeToString(code)), {{"_", " "}});
}

// A channel of our own to the socket, dialled at once and without connection sharing, with a
// bound on what it accepts.
std::shared_ptr<grpc::Channel> Dial(const std::string& socket_path) {
  return rpc::UnixChannel(socket_path, kMaxResponseBytes);
}

std::vector<ContainerDevices> Flatten(const v1::ListPodResourcesResponse& response) {
  std::vector<ContainerDevices> entries;
  using Key = std::tuple<std::string_view, std::string_view, std::string_view, std::string_view>;
  std::map<Key, size_t> index;  // views into `response`, which outlives the map
  std::vector<std::set<std::string_view>> seen;
  for (const auto& pod : response.pod_resources()) {
    for (const auto& container : pod.containers()) {
      for (const auto& devices : container.devices()) {
        if (devices.device_ids_size() == 0) continue;
        Key key{pod.namespace_(), pod.name(), container.name(), devices.resource_name()};
        auto [it, inserted] = index.try_emplace(key, entries.size());
        if (inserted) {
          entries.push_back(
              {pod.namespace_(), pod.name(), container.name(), devices.resource_name(), {}});
          seen.emplace_back();
        }
        for (const auto& id : devices.device_ids()) {
          if (seen[it->second].insert(id).second) entries[it->second].device_ids.push_back(id);
        }
      }
    }
  }
  return entries;
}

class GrpcLister final : public Lister {
 public:
  GrpcLister(std::string socket_path, absl::Duration timeout)
      : socket_path_(std::move(socket_path)), timeout_(timeout) {}

  absl::StatusOr<std::vector<ContainerDevices>> List() override {
    if (auto status = CheckSocket(); !status.ok()) {
      Forget();
      return status;
    }
    auto stub = Stub();
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
    v1::ListPodResourcesResponse response;
    grpc::Status status = stub->List(&context, v1::ListPodResourcesRequest(), &response);
    if (!status.ok()) {
      Forget();
      return Error(status);
    }
    return Flatten(response);
  }

 private:
  absl::Status CheckSocket() const {
    struct stat st {};
    if (::stat(socket_path_.c_str(), &st) != 0) {
      const int error = errno;
      return absl::UnavailableError(
          absl::StrCat("pod-resources socket ", socket_path_, ": ",
                       error == ENOENT ? "not found" : std::strerror(error)));
    }
    if (!S_ISSOCK(st.st_mode)) {
      return absl::UnavailableError(
          absl::StrCat("pod-resources socket ", socket_path_, ": not a socket"));
    }
    return absl::OkStatus();
  }

  std::shared_ptr<v1::PodResourcesLister::Stub> Stub() {
    absl::MutexLock lock(&mu_);
    if (!stub_) stub_ = v1::PodResourcesLister::NewStub(Dial(socket_path_));
    return stub_;
  }

  // After a failure the next call dials afresh instead of waiting out the channel's backoff.
  void Forget() {
    absl::MutexLock lock(&mu_);
    stub_.reset();
  }

  absl::Status Error(const grpc::Status& status) const {
    const auto code = static_cast<absl::StatusCode>(status.error_code());
    std::string what;
    switch (code) {
      case absl::StatusCode::kDeadlineExceeded:
        what = absl::StrCat("no answer within ", absl::FormatDuration(timeout_));
        break;
      case absl::StatusCode::kResourceExhausted:
        what = absl::StrCat("response over the ", kMaxResponseBytes >> 20, " MiB limit (",
                            Bounded(status.error_message()), ")");
        break;
      default:
        what = absl::StrCat(CodeName(code), ": ", Bounded(status.error_message()));
    }
    return absl::Status(code,
                        absl::StrCat("pod-resources socket ", socket_path_, ": List: ", what));
  }

  const std::string socket_path_;
  const absl::Duration timeout_;
  absl::Mutex mu_;
  std::shared_ptr<v1::PodResourcesLister::Stub> stub_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<Lister> MakeGrpcLister(std::string socket_path, absl::Duration timeout) {
  return std::make_unique<GrpcLister>(std::move(socket_path), timeout);
}

}  // namespace nvdp::podresources
