#include "configmgr/curl_http_client.h"

#include <curl/curl.h>

#include <fstream>
#include <iterator>
#include <mutex>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace nvdp::configmgr {
namespace {

constexpr size_t kMaxErrorBody = 64 * 1024;
constexpr size_t kMaxGetBody = 64 * 1024 * 1024;
constexpr size_t kMaxLine = 64 * 1024 * 1024;

absl::Status InitCurlOnce() {
  static const CURLcode code = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (code != CURLE_OK) {
    return absl::InternalError(absl::StrCat("curl_global_init: ", curl_easy_strerror(code)));
  }
  return absl::OkStatus();
}

struct CurlDeleter {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

// What one transfer does with the body; owned by Perform's caller, passed to the callbacks.
struct Transfer {
  CURL* curl = nullptr;
  const absl::Notification* cancel = nullptr;
  // Stream mode: lines go to on_line (2xx) and the rest of a line waits in `pending`.
  const std::function<void(std::string_view)>* on_line = nullptr;
  std::string pending;
  std::string body;  // Get mode, or the error body of a stream
  bool too_large = false;

  bool Success() {
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    return code >= 200 && code < 300;
  }
};

size_t OnData(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  std::string_view chunk(data, n);
  if (t->on_line != nullptr && t->Success()) {
    while (!chunk.empty()) {
      const size_t nl = chunk.find('\n');
      if (nl == std::string_view::npos) {
        t->pending.append(chunk);
        if (t->pending.size() > kMaxLine) {
          t->too_large = true;
          return 0;  // aborts the transfer
        }
        break;
      }
      if (t->pending.empty()) {
        (*t->on_line)(chunk.substr(0, nl));
      } else {
        t->pending.append(chunk.substr(0, nl));
        (*t->on_line)(t->pending);
        t->pending.clear();
      }
      chunk.remove_prefix(nl + 1);
    }
    return n;
  }
  const size_t limit = t->on_line != nullptr ? kMaxErrorBody : kMaxGetBody;
  if (t->body.size() + n > limit) {
    if (t->on_line == nullptr) {
      t->too_large = true;
      return 0;
    }
    t->body.append(chunk.substr(0, limit - t->body.size()));
    return n;
  }
  t->body.append(chunk);
  return n;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  return t->cancel->HasBeenNotified() ? 1 : 0;  // non-zero aborts with CURLE_ABORTED_BY_CALLBACK
}

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::FailedPreconditionError(absl::StrCat("cannot read token file ", path));
  std::string token(std::istreambuf_iterator<char>(in), {});
  return std::string(absl::StripAsciiWhitespace(token));
}

}  // namespace

absl::StatusOr<std::unique_ptr<CurlHttpClient>> CurlHttpClient::Create(CurlOptions options) {
  if (absl::Status s = InitCurlOnce(); !s.ok()) return s;
  return std::unique_ptr<CurlHttpClient>(new CurlHttpClient(std::move(options)));
}

namespace {

struct MultiDeleter {
  void operator()(CURLM* multi) const { curl_multi_cleanup(multi); }
};

// curl_easy_perform, but through a multi handle polled in 50 ms steps, so that `cancel` ends a
// transfer that is waiting for data within about that long (the progress callback alone is
// called only about once a second while a stream is idle).
CURLcode PerformCancellable(CURL* c, const absl::Notification& cancel) {
  std::unique_ptr<CURLM, MultiDeleter> multi(curl_multi_init());
  if (multi == nullptr || curl_multi_add_handle(multi.get(), c) != CURLM_OK) {
    return curl_easy_perform(c);
  }
  CURLcode result = CURLE_ABORTED_BY_CALLBACK;
  for (int running = 1; running > 0 && !cancel.HasBeenNotified();) {
    if (curl_multi_perform(multi.get(), &running) != CURLM_OK) {
      result = CURLE_RECV_ERROR;
      break;
    }
    if (running == 0) {
      int left = 0;
      while (CURLMsg* msg = curl_multi_info_read(multi.get(), &left)) {
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == c) result = msg->data.result;
      }
      break;
    }
    curl_multi_poll(multi.get(), nullptr, 0, 50, nullptr);
  }
  curl_multi_remove_handle(multi.get(), c);
  return result;
}

// One GET with `transfer` receiving the body; returns the status code.
absl::StatusOr<int> Perform(const CurlOptions& options, const std::string& url,
                            absl::Duration timeout, Transfer& transfer) {
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  transfer.curl = curl.get();
  std::unique_ptr<curl_slist, SlistDeleter> headers;
  auto append_header = [&headers](const std::string& header) {
    curl_slist* list = curl_slist_append(headers.get(), header.c_str());
    if (list != nullptr) {
      (void)headers.release();
      headers.reset(list);
    }
  };
  append_header("Accept: application/json");
  if (!options.token_file.empty()) {
    auto token = ReadToken(options.token_file);
    if (!token.ok()) return token.status();
    append_header("Authorization: Bearer " + *token);
  }
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_USERAGENT, options.user_agent.c_str());
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(options.connect_timeout)));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(absl::ToInt64Milliseconds(timeout)));
  if (!options.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options.ca_file.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &OnData);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &OnProgress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &transfer);
  char error[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);

  const CURLcode code = PerformCancellable(c, *transfer.cancel);
  if (transfer.cancel->HasBeenNotified()) {
    return absl::CancelledError(absl::StrCat("GET ", url, ": cancelled"));
  }
  if (transfer.too_large) {
    return absl::ResourceExhaustedError(absl::StrCat("GET ", url, ": response too large"));
  }
  if (code != CURLE_OK) {
    const std::string what =
        absl::StrCat("GET ", url, ": ", error[0] != '\0' ? error : curl_easy_strerror(code));
    if (code == CURLE_OPERATION_TIMEDOUT) return absl::DeadlineExceededError(what);
    return absl::UnavailableError(what);
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  return static_cast<int>(status);
}

}  // namespace

absl::StatusOr<HttpResponse> CurlHttpClient::Get(const std::string& url, absl::Duration timeout,
                                                 const absl::Notification& cancel) {
  Transfer transfer;
  transfer.cancel = &cancel;
  auto status = Perform(options_, url, timeout, transfer);
  if (!status.ok()) return status.status();
  return HttpResponse{*status, std::move(transfer.body)};
}

absl::StatusOr<StreamEnd> CurlHttpClient::Stream(
    const std::string& url, const std::function<void(std::string_view)>& on_line,
    absl::Duration timeout, const absl::Notification& cancel) {
  Transfer transfer;
  transfer.cancel = &cancel;
  transfer.on_line = &on_line;
  auto status = Perform(options_, url, timeout, transfer);
  if (!status.ok()) return status.status();
  if (!transfer.pending.empty() && *status >= 200 && *status < 300) on_line(transfer.pending);
  return StreamEnd{*status, std::move(transfer.body)};
}

}  // namespace nvdp::configmgr
