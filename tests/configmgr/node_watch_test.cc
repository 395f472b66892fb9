#include "configmgr/node_watch.h"

#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace nvdp::configmgr {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Labels = std::vector<std::optional<std::string>>;

constexpr char kKey[] = "nvidia.com/device-plugin.config";

std::string NodeJson(const std::string& rv, const std::optional<std::string>& label,
                     const std::string& name = "node1") {
  std::string labels = R"("kubernetes.io/hostname":")" + name + "\"";
  if (label.has_value()) absl::StrAppend(&labels, ",\"", kKey, "\":\"", *label, "\"");
  return absl::StrCat(R"({"kind":"Node","metadata":{"name":")", name, R"(","resourceVersion":")",
                      rv, R"(","labels":{)", labels, "}}}");
}
std::string ListJson(const std::string& rv, const std::optional<std::string>& label) {
  return absl::StrCat(R"({"kind":"NodeList","metadata":{"resourceVersion":")", rv,
                      R"("},"items":[)", NodeJson("n" + rv, label), "]}");
}
std::string Event(const std::string& type, const std::string& object) {
  return absl::StrCat(R"({"type":")", type, R"(","object":)", object, "}");
}
std::string Bookmark(const std::string& rv) {
  return Event("BOOKMARK",
               absl::StrCat(R"({"kind":"Node","metadata":{"resourceVersion":")", rv, R"("}})"));
}
std::string Gone() {
  return Event(
      "ERROR",
      R"({"kind":"Status","status":"Failure","message":"too old resource version","reason":"Expired","code":410})");
}

// Answers Get and Stream from a script, recording the URLs; once a script runs out it notifies
// `stop` (ending the watcher's Run) and answers Cancelled.
class FakeHttp final : public HttpClient {
 public:
  struct StreamStep {
    std::vector<std::string> lines;
    absl::StatusOr<StreamEnd> end = StreamEnd{200, ""};
  };
  explicit FakeHttp(absl::Notification* stop) : stop_(stop) {}

  absl::StatusOr<HttpResponse> Get(const std::string& url, absl::Duration,
                                   const absl::Notification&) override {
    gets.push_back(url);
    if (get_script.empty()) return Exhausted();
    auto step = get_script.front();
    get_script.pop_front();
    return step;
  }
  absl::StatusOr<StreamEnd> Stream(const std::string& url,
                                   const std::function<void(std::string_view)>& on_line,
                                   absl::Duration timeout, const absl::Notification&) override {
    streams.push_back(url);
    stream_timeouts.push_back(timeout);
    if (stream_script.empty()) return Exhausted();
    auto step = stream_script.front();
    stream_script.pop_front();
    for (const auto& line : step.lines) on_line(line);
    return step.end;
  }

  void List(const std::string& rv, const std::optional<std::string>& label) {
    get_script.push_back(HttpResponse{200, ListJson(rv, label)});
  }
  void Watch(std::vector<std::string> lines, absl::StatusOr<StreamEnd> end = StreamEnd{200, ""}) {
    stream_script.push_back({std::move(lines), std::move(end)});
  }

  std::deque<absl::StatusOr<HttpResponse>> get_script;
  std::deque<StreamStep> stream_script;
  std::vector<std::string> gets;
  std::vector<std::string> streams;
  std::vector<absl::Duration> stream_timeouts;

 private:
  absl::Status Exhausted() {
    if (!stop_->HasBeenNotified()) stop_->Notify();
    return absl::CancelledError("script exhausted");
  }
  absl::Notification* stop_;
};

// A clock whose sleeps return at once, recording how long they were asked to be.
class RecordingClock final : public mps::Clock {
 public:
  absl::Time Now() override { return now_; }
  bool SleepUntil(absl::Time deadline, const absl::Notification* cancel) override {
    if (cancel != nullptr && cancel->HasBeenNotified()) return false;
    sleeps.push_back(deadline - now_);
    if (deadline > now_) now_ = deadline;
    return true;
  }
  std::vector<absl::Duration> sleeps;

 private:
  absl::Time now_ = absl::FromUnixSeconds(1'700'000'000);
};

class NodeWatcherTest : public ::testing::Test {
 protected:
  NodeWatcherTest() : http_(&stop_) {
    options_.api_server = "https://10.96.0.1:443/";
    options_.node_name = "node1";
    options_.max_backoff = absl::Milliseconds(700);
  }
  // Runs the watcher until the script runs out; returns the labels it reported.
  Labels Run(bool accept = true) {
    NodeWatcher watcher(http_, clock_, options_);
    Labels seen;
    watcher.Run(
        [&](const std::optional<std::string>& label) {
          seen.push_back(label);
          return accept;
        },
        stop_);
    lists_ = watcher.lists();
    watches_ = watcher.watches();
    return seen;
  }

  absl::Notification stop_;
  FakeHttp http_;
  RecordingClock clock_;
  WatchOptions options_;
  int lists_ = 0;
  int watches_ = 0;
};

TEST(NodeUrlsTest, SelectTheOwnNodeAndWatchFromAVersion) {
  WatchOptions options{.api_server = "https://10.96.0.1:443", .node_name = "gpu-node.example"};
  EXPECT_EQ(ListUrl(options),
            "https://10.96.0.1:443/api/v1/nodes?fieldSelector=metadata.name%3Dgpu-node.example");
  EXPECT_EQ(WatchUrl(options, "42"),
            "https://10.96.0.1:443/api/v1/nodes?fieldSelector=metadata.name%3Dgpu-node.example"
            "&watch=true&resourceVersion=42&allowWatchBookmarks=true&timeoutSeconds=300");
}

TEST(ParseTest, NodeListGivesTheListVersionAndTheLabel) {
  auto state = ParseNodeList(ListJson("7", "b"), "node1", kKey);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->resource_version, "7");
  EXPECT_EQ(state->label, "b");

  state = ParseNodeList(ListJson("7", std::nullopt), "node1", kKey);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->label, std::nullopt);
}

TEST(ParseTest, NodeListErrors) {
  EXPECT_EQ(ParseNodeList(R"({"items":[]})", "node1", kKey).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ParseNodeList("not json", "node1", kKey).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      ParseNodeList(R"({"items":[{"metadata":{"name":"other"}}]})", "node1", kKey).status().code(),
      absl::StatusCode::kNotFound);
  // Wrong types are not fatal: a label that is not a string is unset.
  auto state = ParseNodeList(
      R"({"items":[{"metadata":{"name":"node1","labels":{"nvidia.com/device-plugin.config":5}}}]})",
      "node1", kKey);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->label, std::nullopt);
}

TEST(ParseTest, WatchEvents) {
  auto e = ParseWatchEvent(Event("MODIFIED", NodeJson("9", "a")), kKey);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->type, WatchEvent::Type::kModified);
  EXPECT_EQ(e->name, "node1");
  EXPECT_EQ(e->node.resource_version, "9");
  EXPECT_EQ(e->node.label, "a");

  e = ParseWatchEvent(Bookmark("12"), kKey);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->type, WatchEvent::Type::kBookmark);
  EXPECT_EQ(e->node.resource_version, "12");

  e = ParseWatchEvent(Gone(), kKey);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->type, WatchEvent::Type::kError);
  EXPECT_EQ(e->error_code, 410);
  EXPECT_THAT(e->message, HasSubstr("too old"));

  EXPECT_FALSE(ParseWatchEvent("{", kKey).ok());
  EXPECT_FALSE(ParseWatchEvent(R"({"type":"ADDED"})", kKey).ok());
  EXPECT_FALSE(ParseWatchEvent(Event("SURPRISE", "{}"), kKey).ok());
}

TEST_F(NodeWatcherTest, ListsThenWatchesFromTheListVersion) {
  http_.List("100", "a");
  http_.Watch({});
  EXPECT_THAT(Run(), ElementsAre("a"));
  ASSERT_GE(http_.streams.size(), 1u);
  EXPECT_EQ(http_.gets[0],
            "https://10.96.0.1:443/api/v1/nodes?fieldSelector=metadata.name%3Dnode1");
  EXPECT_THAT(http_.streams[0], HasSubstr("&watch=true&resourceVersion=100&"));
  EXPECT_THAT(http_.streams[0], HasSubstr("allowWatchBookmarks=true"));
  EXPECT_EQ(http_.stream_timeouts[0], absl::Seconds(330));  // timeoutSeconds + 30 s
}

TEST_F(NodeWatcherTest, ReportsChangesOnlyFromAddedAndModified) {
  http_.List("100", "a");
  http_.Watch({Event("ADDED", NodeJson("100", "a")),     // same value: not reported again
               Event("MODIFIED", NodeJson("101", "b")),  // reported
               Bookmark("150"),                          // only the version moves
               Event("MODIFIED", NodeJson("151", "b")),  // another label changed: not reported
               Event("MODIFIED", NodeJson("152", std::nullopt)),  // label removed
               Event("DELETED", NodeJson("153", "zzz"))});        // logged only
  EXPECT_THAT(Run(), ElementsAre("a", "b", std::nullopt));
}

TEST_F(NodeWatcherTest, IgnoresOtherNodesAndMalformedLines) {
  http_.List("100", "a");
  http_.Watch({"", "garbage", Event("MODIFIED", NodeJson("101", "x", "node2")),
               Event("SURPRISE", "{}"), Event("MODIFIED", NodeJson("102", "b"))});
  EXPECT_THAT(Run(), ElementsAre("a", "b"));
}

TEST_F(NodeWatcherTest, TheStreamEndingMeansListingAgain) {
  http_.List("100", "a");
  http_.Watch({Bookmark("110")});
  http_.List("200", "b");  // changed while no watch was open: the list reports it
  http_.Watch({});
  EXPECT_THAT(Run(), ElementsAre("a", "b"));
  ASSERT_EQ(http_.streams.size(), 2u);  // the third list found the script exhausted
  EXPECT_THAT(http_.streams[1], HasSubstr("resourceVersion=200&"));
  EXPECT_EQ(lists_, 3);
  // A healthy watch resets the backoff: 100 ms before each re-list.
  EXPECT_THAT(clock_.sleeps, ElementsAre(absl::Milliseconds(100), absl::Milliseconds(100)));
}

TEST_F(NodeWatcherTest, AGoneErrorEventMeansListingAgain) {
  http_.List("100", "a");
  http_.Watch({Gone()});
  http_.List("300", "a");
  http_.Watch({Event("MODIFIED", NodeJson("301", "b"))});
  EXPECT_THAT(Run(), ElementsAre("a", "a", "b"));  // every list is reported
  ASSERT_GE(http_.streams.size(), 2u);
  EXPECT_THAT(http_.streams[1], HasSubstr("resourceVersion=300&"));
  EXPECT_EQ(clock_.sleeps.front(), absl::Milliseconds(100));
}

TEST_F(NodeWatcherTest, AGoneStatusMeansListingAgain) {
  http_.List("100", "a");
  http_.Watch({}, StreamEnd{410, R"({"kind":"Status","code":410})"});
  http_.List("300", "b");
  EXPECT_THAT(Run(), ElementsAre("a", "b"));
  EXPECT_EQ(clock_.sleeps.front(), absl::Milliseconds(100));
}

TEST_F(NodeWatcherTest, FailuresBackOffExponentiallyUpToTheCap) {
  http_.get_script.push_back(absl::UnavailableError("connection refused"));
  http_.get_script.push_back(HttpResponse{500, "oops"});
  http_.get_script.push_back(HttpResponse{200, "not json"});
  http_.List("100", "a");
  http_.Watch({}, StreamEnd{403, "forbidden"});  // watch refused
  http_.List("101", "a");
  http_.Watch({}, absl::UnavailableError("connection reset"));  // watch broke
  http_.List("102", "b");
  http_.Watch({Event("MODIFIED", NodeJson("103", "c"))});  // healthy: resets the backoff
  http_.List("104", "c");
  EXPECT_THAT(Run(), ElementsAre("a", "a", "b", "c", "c"));
  EXPECT_THAT(clock_.sleeps,
              ElementsAre(absl::Milliseconds(100), absl::Milliseconds(200), absl::Milliseconds(400),
                          absl::Milliseconds(700),  // capped
                          absl::Milliseconds(700), absl::Milliseconds(100)));
}

TEST_F(NodeWatcherTest, ARejectedValueIsOfferedAgain) {
  http_.List("100", "a");
  http_.Watch({});
  http_.List("101", "a");
  EXPECT_THAT(Run(/*accept=*/false), ElementsAre("a", "a"));
}

TEST_F(NodeWatcherTest, StopEndsRunWithoutAnotherRequest) {
  stop_.Notify();
  EXPECT_THAT(Run(), ElementsAre());
  EXPECT_TRUE(http_.gets.empty());
}

TEST_F(NodeWatcherTest, ListWithRetryGivesUpAfterTheAttempts) {
  for (int i = 0; i < 3; ++i) http_.get_script.push_back(HttpResponse{403, "forbidden"});
  http_.List("1", "a");
  NodeWatcher watcher(http_, clock_, options_);
  auto node = watcher.ListWithRetry(3, stop_);
  ASSERT_FALSE(node.ok());
  EXPECT_THAT(std::string(node.status().message()), HasSubstr("HTTP 403"));
  EXPECT_THAT(clock_.sleeps, ElementsAre(absl::Milliseconds(100), absl::Milliseconds(200)));
  node = watcher.ListWithRetry(3, stop_);
  ASSERT_TRUE(node.ok()) << node.status();
  EXPECT_EQ(node->label, "a");
}

}  // namespace
}  // namespace nvdp::configmgr
