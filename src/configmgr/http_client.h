// HttpClient: the HTTP GETs the config manager makes to the Kubernetes API server, behind a small
// interface so that the node watch (node_watch.h) can be tested against a scripted fake.
// CurlHttpClient (curl_http_client.h) is the real implementation.
//
// Both calls block until the response is complete (Get) or the stream ends (Stream), and return
// early, with a Cancelled status, once `cancel` is notified.
//
// Thread-safety: implementations must allow calls from several threads at once (each call is
// independent); the config manager itself makes one call at a time.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace nvdp::configmgr {

struct HttpResponse {
  int status = 0;    // the HTTP status code
  std::string body;  // the whole body
};

// How a stream ended.
struct StreamEnd {
  int status = 0;     // the HTTP status code
  std::string error;  // for a non-2xx status: the body (truncated to 64 KiB), for messages
};

class HttpClient {
 public:
  virtual ~HttpClient() = default;

  // GET `url`, the whole body. Errors: Unavailable for transport failures (connect, TLS, reset),
  // DeadlineExceeded past `timeout`, Cancelled once `cancel` is notified. A non-2xx status is not
  // an error: it is in the response.
  virtual absl::StatusOr<HttpResponse> Get(const std::string& url, absl::Duration timeout,
                                           const absl::Notification& cancel) = 0;

  // GET `url` as a stream of lines: for a 2xx response, `on_line` is called for every complete
  // line of the body as it arrives (without the '\n'; a last line without one is delivered when
  // the body ends). Returns when the server ends the body: the status code. Errors as for Get;
  // `timeout` bounds the whole stream.
  virtual absl::StatusOr<StreamEnd> Stream(const std::string& url,
                                           const std::function<void(std::string_view)>& on_line,
                                           absl::Duration timeout,
                                           const absl::Notification& cancel) = 0;
};

}  // namespace nvdp::configmgr
