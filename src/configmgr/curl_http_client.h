// CurlHttpClient: HttpClient over libcurl (Debian's libcurl4-openssl), with what in-cluster access
// to the API server needs: a bearer token read from a file on every request (projected
// service-account tokens are rotated), a CA bundle for https, a connect timeout, and cancellation
// within about 50 ms (the transfer runs on a multi handle polled in short steps; the progress
// callback checks it too).
//
// Thread-safety: calls may run concurrently; each uses its own curl handle. Construct it with
// Create() (which also initialises libcurl once per process).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "configmgr/http_client.h"

namespace nvdp::configmgr {

struct CurlOptions {
  std::string token_file;  // "" sends no Authorization header
  std::string ca_file;     // "" uses the system CAs (https only)
  absl::Duration connect_timeout = absl::Seconds(10);
  std::string user_agent = "nvdp-config-manager";
};

class CurlHttpClient final : public HttpClient {
 public:
  // Errors: Internal when libcurl cannot be initialised.
  static absl::StatusOr<std::unique_ptr<CurlHttpClient>> Create(CurlOptions options);

  absl::StatusOr<HttpResponse> Get(const std::string& url, absl::Duration timeout,
                                   const absl::Notification& cancel) override;
  absl::StatusOr<StreamEnd> Stream(const std::string& url,
                                   const std::function<void(std::string_view)>& on_line,
                                   absl::Duration timeout,
                                   const absl::Notification& cancel) override;

 private:
  explicit CurlHttpClient(CurlOptions options) : options_(std::move(options)) {}

  CurlOptions options_;
};

}  // namespace nvdp::configmgr
