#include "config/loader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <map>
#include <memory>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "config/messages.h"

namespace nvdp::config {
namespace {

using internal::Cat;
using internal::Child;
using internal::EqualsIgnoreCase;
using internal::Escape;
using internal::Index;
using internal::kMissing;
using internal::Note;
using internal::Problem;
using internal::Quote;
using internal::Split;
using internal::Trim;

// ---------------------------------------------------------------------------------------------
// Scalars
// ---------------------------------------------------------------------------------------------

constexpr std::string_view kPlainTag = "?";
constexpr std::string_view kIntTag = "tag:yaml.org,2002:int";
constexpr std::string_view kBoolTag = "tag:yaml.org,2002:bool";

// YAML 1.1 booleans, as the Go YAML library behind upstream's loader reads
// them.
std::optional<bool> YamlBool(std::string_view s) {
  static constexpr std::string_view kTrue[] = {"true", "True", "TRUE", "yes", "Yes", "YES",
                                               "on",   "On",   "ON",   "y",   "Y"};
  static constexpr std::string_view kFalse[] = {"false", "False", "FALSE", "no", "No", "NO",
                                                "off",   "Off",   "OFF",   "n",  "N"};
  for (std::string_view t : kTrue) {
    if (s == t) return true;
  }
  for (std::string_view f : kFalse) {
    if (s == f) return false;
  }
  return std::nullopt;
}

// Go's strconv.ParseBool, which upstream uses for flags and environment
// variables.
std::optional<bool> GoBool(std::string_view s) {
  static constexpr std::string_view kTrue[] = {"1", "t", "T", "TRUE", "true", "True"};
  static constexpr std::string_view kFalse[] = {"0", "f", "F", "FALSE", "false", "False"};
  for (std::string_view t : kTrue) {
    if (s == t) return true;
  }
  for (std::string_view f : kFalse) {
    if (s == f) return false;
  }
  return std::nullopt;
}

enum class IntResult { kOk, kNotInteger, kOutOfRange };

// A decimal integer with an optional sign, nothing else.
IntResult ParseInt(std::string_view s, int* out) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return IntResult::kNotInteger;
  const bool negative = s.front() == '-';
  std::string_view digits = negative ? s.substr(1) : s;
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c));
      })) {
    return IntResult::kNotInteger;
  }
  int value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec == std::errc::result_out_of_range) return IntResult::kOutOfRange;
  if (ec != std::errc() || ptr != s.data() + s.size()) return IntResult::kNotInteger;
  *out = value;
  return IntResult::kOk;
}

bool LooksNumeric(std::string_view s) {
  if (!s.empty() && (s.front() == '-' || s.front() == '+')) s.remove_prefix(1);
  if (s.empty()) return false;
  int dots = 0;
  for (char c : s) {
    if (c == '.') {
      ++dots;
    } else if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return dots <= 1 && s != ".";
}

// ---------------------------------------------------------------------------------------------
// Rendering a YAML value in a message: bounded in length and depth (aliases can
// make cycles).
// ---------------------------------------------------------------------------------------------

constexpr size_t kRenderBudget = 100;
constexpr int kRenderDepth = 3;

bool IsPlain(const YAML::Node& n) { return n.Tag() == kPlainTag; }

void RenderInto(const YAML::Node& n, int depth, std::string& out) {
  switch (n.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      out += "null";
      return;
    case YAML::NodeType::Scalar: {
      const std::string& s = n.Scalar();
      if (IsPlain(n) && (LooksNumeric(s) || YamlBool(s).has_value())) {
        out += s;
      } else {
        out += Quote(s);
      }
      return;
    }
    case YAML::NodeType::Sequence:
    case YAML::NodeType::Map:
      break;
  }
  const bool is_map = n.IsMap();
  if (depth >= kRenderDepth) {
    out += is_map ? "{...}" : "[...]";
    return;
  }
  out += is_map ? "{" : "[";
  bool first = true;
  for (auto it = n.begin(); it != n.end(); ++it) {
    if (!first) out += ", ";
    first = false;
    if (out.size() > kRenderBudget) {
      out += "...";
      break;
    }
    if (is_map) {
      RenderInto(it->first, depth + 1, out);
      out += ": ";
      RenderInto(it->second, depth + 1, out);
    } else {
      RenderInto(*it, depth + 1, out);
    }
  }
  out += is_map ? "}" : "]";
}

std::string Render(const YAML::Node& n) {
  std::string out;
  RenderInto(n, 0, out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The file parser
// ---------------------------------------------------------------------------------------------

constexpr std::string_view kDevicesAllowed = "must be all, a positive count, or a list of devices";
constexpr std::string_view kDeviceAllowed =
    "must be a GPU index (0, 1, ...), a MIG index \"<gpu>:<mig>\", or a UUID "
    "(GPU-... or MIG-...)";
constexpr std::string_view kMigStrategies = "must be one of none, single, mixed";
constexpr std::string_view kDeviceListStrategies =
    "must be one of envvar, volume-mounts, cdi-annotations, cdi-cri";
constexpr std::string_view kDeviceIdStrategies = "must be one of uuid, index";
constexpr std::string_view kAllocationPolicies = "must be one of distributed, packed";
constexpr std::string_view kMemoryLimits = "must be one of proportional, none";
constexpr std::string_view kDiscoveryStrategies = "must be one of auto, nvml, tegra";

// An empty value unsets an optional setting (flags.mpsRoot, flags.nvidiaDevRoot).
void SetOptional(std::optional<std::string>& out, const std::string& value) {
  if (value.empty()) {
    out.reset();
  } else {
    out = value;
  }
}

class Parser;

// The keys of one mapping, checked against the schema: unknown keys are warned
// about (and ignored), keys spelled in another case are read with a warning
// (upstream's Go decoder matches keys case-insensitively), a key given twice is
// an error.
class MapReader {
 public:
  struct Keys {
    std::initializer_list<std::string_view> known;
    // Upstream keys this plugin does not implement: warned about, ignored.
    std::initializer_list<std::string_view> upstream_only = {};
    // Keys that belong to other upstream components sharing the file: ignored
    // quietly.
    std::initializer_list<std::string_view> quiet = {};
  };

  MapReader(Parser& parser, const YAML::Node& node, std::string path, const Keys& keys);

  // The value of `key` when present and not null.
  std::optional<YAML::Node> Get(std::string_view key) const {
    auto it = values_.find(key);
    if (it == values_.end() || it->second.IsNull()) return std::nullopt;
    return it->second;
  }
  bool Present(std::string_view key) const { return values_.count(key) > 0; }
  std::string PathOf(std::string_view key) const { return Child(path_, key); }

 private:
  std::string path_;
  std::map<std::string_view, YAML::Node, std::less<>> values_;  // canonical key -> value
};

class Parser {
 public:
  explicit Parser(std::string_view source) : source_(Escape(source)) {}

  Report Run(std::string_view text) {
    const std::string input(text);
    YAML::Node root;
    try {
      const size_t count = CountDocuments(input);
      if (count == 0) return std::move(report_);
      if (count > 1) {
        Error(Problem(source_, Cat(count, " YAML documents"), "must hold exactly one document"));
      }
      root = YAML::Load(input);
    } catch (const YAML::Exception& e) {
      SyntaxError(e.mark, e.msg);
      return std::move(report_);
    } catch (const std::exception& e) {
      Error(Cat(source_, ": ", Escape(e.what())));
      return std::move(report_);
    }
    try {
      ReadRoot(root);
    } catch (const std::exception& e) {
      // yaml-cpp should not throw while reading a loaded tree; never let it
      // escape.
      Error(Cat(source_, ": ", Escape(e.what())));
    }
    return std::move(report_);
  }

  void Error(std::string message) { report_.errors.push_back(std::move(message)); }
  void Warn(std::string message) { report_.warnings.push_back(std::move(message)); }

 private:
  void SyntaxError(const YAML::Mark& mark, std::string_view message) {
    if (mark.is_null()) {
      Error(Cat(source_, ": ", Escape(message)));
    } else {
      Error(Cat(source_, ":", mark.line + 1, ":", mark.column + 1, ": ", Escape(message)));
    }
  }

  // Counts the documents in `input` with yaml-cpp's event parser. yaml-cpp 0.7
  // neither consumes nor rejects a ',' where a document's top node should be:
  // YAML::Load quietly returns null and YAML::LoadAll loops for ever. A
  // document that starts where the previous one did is that case, reported here
  // as a syntax error (thrown as a ParserException). Throws on malformed input.
  static size_t CountDocuments(const std::string& input) {
    class Starts : public YAML::EventHandler {
     public:
      void OnDocumentStart(const YAML::Mark& mark) override { marks.push_back(mark); }
      void OnDocumentEnd() override {}
      void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
      void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
      void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                    const std::string&) override {}
      void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                           YAML::EmitterStyle::value) override {}
      void OnSequenceEnd() override {}
      void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                      YAML::EmitterStyle::value) override {}
      void OnMapEnd() override {}
      std::vector<YAML::Mark> marks;
    };
    std::istringstream in(input);
    YAML::Parser parser(in);
    Starts starts;
    while (parser.HandleNextDocument(starts)) {
      const auto& m = starts.marks;
      if (m.size() >= 2 && m[m.size() - 1].pos == m[m.size() - 2].pos) {
        const YAML::Mark at = m.back();
        const char c = at.pos >= 0 && static_cast<size_t>(at.pos) < input.size()
                           ? input[static_cast<size_t>(at.pos)]
                           : '?';
        throw YAML::ParserException(at, Cat("unexpected '", std::string_view(&c, 1), "'"));
      }
    }
    return starts.marks.size();
  }

  bool ExpectMap(const YAML::Node& n, const std::string& path) {
    if (n.IsMap()) return true;
    Error(Problem(path, Render(n), "must be a mapping"));
    return false;
  }

  bool ExpectList(const YAML::Node& n, const std::string& path) {
    if (n.IsSequence()) return true;
    Error(Problem(path, Render(n), "must be a list"));
    return false;
  }

  std::optional<std::string> String(const YAML::Node& n, const std::string& path) {
    if (n.IsScalar()) return n.Scalar();
    Error(Problem(path, Render(n), "must be a string"));
    return std::nullopt;
  }

  std::optional<bool> Bool(const YAML::Node& n, const std::string& path) {
    if (n.IsScalar() && (n.Tag() == kPlainTag || n.Tag() == kBoolTag)) {
      if (auto b = YamlBool(n.Scalar())) return b;
    }
    Error(Problem(path, Render(n), "must be true or false"));
    return std::nullopt;
  }

  // `out_of_range` explains the bounds when the number does not fit an int.
  std::optional<int> Int(const YAML::Node& n, const std::string& path, std::string_view not_integer,
                         std::string_view out_of_range) {
    if (n.IsScalar() && (n.Tag() == kPlainTag || n.Tag() == kIntTag)) {
      int value = 0;
      switch (ParseInt(n.Scalar(), &value)) {
        case IntResult::kOk:
          return value;
        case IntResult::kOutOfRange:
          Error(Problem(path, Render(n), out_of_range));
          return std::nullopt;
        case IntResult::kNotInteger:
          break;
      }
    }
    Error(Problem(path, Render(n), not_integer));
    return std::nullopt;
  }

  template <typename E>
  std::optional<E> Enum(const YAML::Node& n, const std::string& path,
                        std::optional<E> (*parse)(std::string_view), std::string_view allowed) {
    if (n.IsScalar()) {
      if (auto v = parse(n.Scalar())) return v;
    }
    Error(Problem(path, Render(n), allowed));
    return std::nullopt;
  }

  std::optional<std::string> ResourceName(const MapReader& m, std::string_view key,
                                          std::string_view required) {
    auto n = m.Get(key);
    if (!n.has_value()) {
      if (!required.empty()) Error(Problem(m.PathOf(key), kMissing, required));
      return std::nullopt;
    }
    auto s = String(*n, m.PathOf(key));
    if (!s.has_value()) return std::nullopt;
    return StripResourcePrefix(*s);
  }

  void ReadRoot(const YAML::Node& root) {
    if (root.IsNull()) return;  // an empty document: all defaults
    if (!root.IsMap()) {
      Error(Problem(source_, Render(root),
                    "must be a mapping with version, flags, resources and sharing"));
      return;
    }
    MapReader m(*this, root, "", {.known = {"version", "flags", "resources", "sharing", "imex"}});
    Config& c = report_.config;
    if (auto n = m.Get("version")) {
      if (auto s = String(*n, "version")) c.version = *s;
    }
    if (auto n = m.Get("flags")) ReadFlags(*n);
    if (auto n = m.Get("resources")) ReadResources(*n);
    if (auto n = m.Get("sharing")) ReadSharing(*n);
    if (auto n = m.Get("imex")) ReadImex(*n);
  }

  // Upstream's `imex: {channelIDs: [...], required: bool}`. Read so that validation can say what
  // happens to it (this plugin injects no IMEX channels).
  void ReadImex(const YAML::Node& node) {
    if (!ExpectMap(node, "imex")) return;
    MapReader m(*this, node, "imex", {.known = {"channelIDs", "required"}});
    Imex& imex = report_.config.imex;
    if (auto n = m.Get("channelIDs")) {
      if (auto v = StringList(*n, m.PathOf("channelIDs"))) imex.channel_ids = std::move(*v);
    }
    if (auto n = m.Get("required")) {
      if (auto v = Bool(*n, m.PathOf("required"))) imex.required = *v;
    }
  }

  // A list of scalars (numbers read as their text), or one scalar.
  std::optional<std::vector<std::string>> StringList(const YAML::Node& n, const std::string& path) {
    std::vector<std::string> out;
    if (n.IsScalar()) {
      out.push_back(n.Scalar());
      return out;
    }
    if (!n.IsSequence()) {
      Error(Problem(path, Render(n), "must be a list of strings"));
      return std::nullopt;
    }
    bool ok = true;
    size_t i = 0;
    for (const YAML::Node& item : n) {
      const std::string item_path = Index(path, i++);
      if (!item.IsScalar()) {
        Error(Problem(item_path, Render(item), "must be a string"));
        ok = false;
        continue;
      }
      out.push_back(item.Scalar());
    }
    if (!ok) return std::nullopt;
    return out;
  }

  void ReadFlags(const YAML::Node& node) {
    if (!ExpectMap(node, "flags")) return;
    MapReader m(*this, node, "flags",
                {.known = {"migStrategy", "failOnInitError", "mpsRoot", "nvidiaDriverRoot",
                           "nvidiaDevRoot", "gdrcopyEnabled", "gdsEnabled", "mofedEnabled",
                           "deviceDiscoveryStrategy", "plugin"},
                 // gpu-feature-discovery's, from the same file.
                 .quiet = {"gfd", "useNodeFeatureAPI"}});
    Flags& f = report_.config.flags;
    if (auto n = m.Get("migStrategy")) {
      if (auto v = Enum(*n, m.PathOf("migStrategy"), &ParseMigStrategy, kMigStrategies)) {
        f.mig_strategy = *v;
      }
    }
    if (auto n = m.Get("failOnInitError")) {
      if (auto v = Bool(*n, m.PathOf("failOnInitError"))) f.fail_on_init_error = *v;
    }
    if (auto n = m.Get("mpsRoot")) {
      // An explicit "" unsets the default; validation then refuses MPS sharing.
      if (auto v = String(*n, m.PathOf("mpsRoot"))) SetOptional(f.mps_root, *v);
    }
    if (auto n = m.Get("nvidiaDriverRoot")) {
      if (auto v = String(*n, m.PathOf("nvidiaDriverRoot"))) f.nvidia_driver_root = *v;
    }
    if (auto n = m.Get("nvidiaDevRoot")) {
      if (auto v = String(*n, m.PathOf("nvidiaDevRoot")); v.has_value() && !v->empty()) {
        f.nvidia_dev_root = *v;
      }
    }
    for (auto [key, out] :
         {std::pair<std::string_view, bool*>{"gdrcopyEnabled", &f.gdrcopy_enabled},
          {"gdsEnabled", &f.gds_enabled},
          {"mofedEnabled", &f.mofed_enabled}}) {
      if (auto n = m.Get(key)) {
        if (auto v = Bool(*n, m.PathOf(key))) *out = *v;
      }
    }
    if (auto n = m.Get("deviceDiscoveryStrategy")) {
      if (auto v = Enum(*n, m.PathOf("deviceDiscoveryStrategy"), &ParseDeviceDiscoveryStrategy,
                        kDiscoveryStrategies)) {
        f.device_discovery_strategy = *v;
      }
    }
    if (auto n = m.Get("plugin")) ReadPluginFlags(*n, m.PathOf("plugin"));
  }

  void ReadPluginFlags(const YAML::Node& node, const std::string& path) {
    if (!ExpectMap(node, path)) return;
    MapReader m(
        *this, node, path,
        {.known = {"passDeviceSpecs", "deviceListStrategy", "deviceIDStrategy",
                   "cdiAnnotationPrefix", "containerDriverRoot", "sharedDevicesAllocationPolicy",
                   "nvidiaCDIHookPath", "nvidiaCTKPath", "cdiFeatureFlags"}});
    PluginFlags& p = report_.config.flags.plugin;
    if (auto n = m.Get("passDeviceSpecs")) {
      if (auto v = Bool(*n, m.PathOf("passDeviceSpecs"))) p.pass_device_specs = *v;
    }
    if (auto n = m.Get("deviceListStrategy")) {
      ReadDeviceListStrategy(*n, m.PathOf("deviceListStrategy"));
    }
    if (auto n = m.Get("deviceIDStrategy")) {
      if (auto v =
              Enum(*n, m.PathOf("deviceIDStrategy"), &ParseDeviceIdStrategy, kDeviceIdStrategies)) {
        p.device_id_strategy = *v;
      }
    }
    if (auto n = m.Get("cdiAnnotationPrefix")) {
      if (auto v = String(*n, m.PathOf("cdiAnnotationPrefix"))) p.cdi_annotation_prefix = *v;
    }
    if (auto n = m.Get("containerDriverRoot")) {
      if (auto v = String(*n, m.PathOf("containerDriverRoot"))) p.container_driver_root = *v;
    }
    // nvidiaCTKPath is the older name of nvidiaCDIHookPath; the newer one wins when both are given.
    if (auto n = m.Get("nvidiaCTKPath")) {
      if (m.Present("nvidiaCDIHookPath")) {
        Warn(Problem(m.PathOf("nvidiaCTKPath"), Render(*n),
                     "older name of nvidiaCDIHookPath, which is also given and wins (ignored)"));
      } else if (auto v = String(*n, m.PathOf("nvidiaCTKPath"))) {
        p.nvidia_cdi_hook_path = *v;
      }
    }
    if (auto n = m.Get("nvidiaCDIHookPath")) {
      if (auto v = String(*n, m.PathOf("nvidiaCDIHookPath"))) p.nvidia_cdi_hook_path = *v;
    }
    if (auto n = m.Get("cdiFeatureFlags")) {
      if (auto v = StringList(*n, m.PathOf("cdiFeatureFlags"))) p.cdi_feature_flags = std::move(*v);
    }
    if (auto n = m.Get("sharedDevicesAllocationPolicy")) {
      if (auto v = Enum(*n, m.PathOf("sharedDevicesAllocationPolicy"), &ParseAllocationPolicy,
                        kAllocationPolicies)) {
        p.shared_devices_allocation_policy = *v;
      }
    }
  }

  // A string (one strategy, or a comma-separated list) or a list of strings.
  void ReadDeviceListStrategy(const YAML::Node& node, const std::string& path) {
    std::vector<DeviceListStrategy> out;
    bool ok = true;
    auto add = [&](std::string_view item, const std::string& item_path) {
      auto v = ParseDeviceListStrategy(Trim(item));
      if (!v.has_value()) {
        Error(Problem(item_path, Quote(item), kDeviceListStrategies));
        ok = false;
      } else if (std::find(out.begin(), out.end(), *v) == out.end()) {
        out.push_back(*v);
      }
    };
    if (node.IsScalar()) {
      for (std::string_view item : Split(node.Scalar(), ',')) add(item, path);
    } else if (node.IsSequence()) {
      size_t i = 0;
      for (const YAML::Node& item : node) {
        const std::string item_path = Index(path, i++);
        if (!item.IsScalar()) {
          Error(Problem(item_path, Render(item), kDeviceListStrategies));
          ok = false;
          continue;
        }
        add(item.Scalar(), item_path);
      }
    } else {
      Error(Problem(path, Render(node), "must be a strategy name or a list of them"));
      return;
    }
    if (ok) report_.config.flags.plugin.device_list_strategy = std::move(out);
  }

  void ReadResources(const YAML::Node& node) {
    if (!ExpectMap(node, "resources")) return;
    MapReader m(*this, node, "resources", {.known = {"gpus", "mig"}});
    if (auto n = m.Get("gpus")) ReadPatterns(*n, m.PathOf("gpus"), report_.config.resources.gpus);
    if (auto n = m.Get("mig")) ReadPatterns(*n, m.PathOf("mig"), report_.config.resources.mig);
  }

  void ReadPatterns(const YAML::Node& node, const std::string& path,
                    std::vector<ResourcePattern>& out) {
    if (!ExpectList(node, path)) return;
    size_t i = 0;
    for (const YAML::Node& item : node) {
      const std::string item_path = Index(path, i++);
      ResourcePattern& r = out.emplace_back();  // keeps indices aligned with the file
      if (!ExpectMap(item, item_path)) continue;
      MapReader m(*this, item, item_path, {.known = {"pattern", "name"}});
      if (auto n = m.Get("pattern")) {
        if (auto s = String(*n, m.PathOf("pattern"))) r.pattern = *s;
      } else {
        Error(Problem(m.PathOf("pattern"), kMissing, "required: a product name pattern, e.g. '*'"));
      }
      if (auto s = ResourceName(m, "name", "required: the resource name, e.g. gpu")) r.name = *s;
    }
  }

  void ReadSharing(const YAML::Node& node) {
    if (!ExpectMap(node, "sharing")) return;
    MapReader m(*this, node, "sharing", {.known = {"timeSlicing", "mps"}});
    Sharing& s = report_.config.sharing;
    if (auto n = m.Get("timeSlicing")) {
      ReadSection(*n, m.PathOf("timeSlicing"), s.time_slicing, nullptr);
    }
    if (auto n = m.Get("mps")) ReadSection(*n, m.PathOf("mps"), s.mps, &s.mps);
  }

  // One of sharing.timeSlicing / sharing.mps (`mps` set for the latter). A
  // section that is present (even `{}`) must list resources, as upstream
  // requires.
  void ReadSection(const YAML::Node& node, const std::string& path, ReplicatedResources& out,
                   MpsSharing* mps) {
    if (!ExpectMap(node, path)) return;
    MapReader m =
        mps != nullptr
            ? MapReader(*this, node, path,
                        {.known = {"renameByDefault", "failRequestsGreaterThanOne", "resources",
                                   "perContainerLimits", "memoryLimit", "capacityShaping"}})
            : MapReader(*this, node, path,
                        {.known = {"renameByDefault", "failRequestsGreaterThanOne", "resources"}});
    if (auto n = m.Get("renameByDefault")) {
      if (auto v = Bool(*n, m.PathOf("renameByDefault"))) out.rename_by_default = *v;
    }
    if (auto n = m.Get("failRequestsGreaterThanOne")) {
      if (auto v = Bool(*n, m.PathOf("failRequestsGreaterThanOne"))) {
        out.fail_requests_greater_than_one = *v;
      }
    }
    if (mps != nullptr) {
      if (auto n = m.Get("perContainerLimits")) {
        if (auto v = Bool(*n, m.PathOf("perContainerLimits"))) mps->per_container_limits = *v;
      }
      if (auto n = m.Get("memoryLimit")) {
        if (auto v = Enum(*n, m.PathOf("memoryLimit"), &ParseMemoryLimit, kMemoryLimits)) {
          mps->memory_limit = *v;
        }
      }
      if (auto n = m.Get("capacityShaping")) {
        if (auto v = Bool(*n, m.PathOf("capacityShaping"))) mps->capacity_shaping = *v;
      }
    }
    const std::string list_path = m.PathOf("resources");
    constexpr std::string_view kNeedOne = "at least one resource is required";
    auto list = m.Get("resources");
    if (!list.has_value()) {
      Error(Problem(list_path, kMissing, kNeedOne));
      return;
    }
    if (!ExpectList(*list, list_path)) return;
    if (list->size() == 0) {
      Error(Problem(list_path, "[]", kNeedOne));
      return;
    }
    size_t i = 0;
    for (const YAML::Node& item : *list) {
      const std::string item_path = Index(list_path, i++);
      ReplicatedResource& r = out.resources.emplace_back();  // keeps indices aligned
      if (!ExpectMap(item, item_path)) continue;
      ReadReplicatedResource(item, item_path, r);
    }
  }

  void ReadReplicatedResource(const YAML::Node& node, const std::string& path,
                              ReplicatedResource& r) {
    MapReader m(*this, node, path, {.known = {"name", "rename", "devices", "replicas"}});
    if (auto s = ResourceName(m, "name", "required: the resource to share, e.g. gpu")) {
      r.name = *s;
    }
    if (auto s = ResourceName(m, "rename", "")) r.rename = *s;
    if (auto n = m.Get("replicas")) {
      if (auto v = Int(*n, m.PathOf("replicas"), "must be an integer of at least 2",
                       Cat("must be at most ", kMaxReplicas))) {
        r.replicas = *v;
      }
    } else {
      Error(Problem(m.PathOf("replicas"), kMissing, "required: an integer of at least 2"));
    }
    if (auto n = m.Get("devices")) r.devices = ReadDevices(*n, m.PathOf("devices"));
  }

  DeviceSelector ReadDevices(const YAML::Node& node, const std::string& path) {
    DeviceSelector out;
    if (node.IsScalar()) {
      if (node.Scalar() == "all") return out;
      if (IsPlain(node) || node.Tag() == kIntTag) {
        int count = 0;
        switch (ParseInt(node.Scalar(), &count)) {
          case IntResult::kOk:
            out.kind = DeviceSelector::Kind::kCount;
            out.count = count;  // Validate checks it is positive
            return out;
          case IntResult::kOutOfRange:
          case IntResult::kNotInteger:
            break;
        }
      }
      Error(Problem(path, Render(node), kDevicesAllowed));
      return out;
    }
    if (!node.IsSequence()) {
      Error(Problem(path, Render(node), kDevicesAllowed));
      return out;
    }
    out.kind = DeviceSelector::Kind::kList;
    size_t i = 0;
    for (const YAML::Node& item : node) {
      const std::string item_path = Index(path, i++);
      if (!item.IsScalar()) {
        Error(Problem(item_path, Render(item), kDeviceAllowed));
        out.ids.emplace_back();  // keeps indices aligned; Validate's report on
                                 // it is dropped
        continue;
      }
      out.ids.push_back(item.Scalar());
    }
    return out;
  }

  std::string source_;
  Report report_;
};

MapReader::MapReader(Parser& parser, const YAML::Node& node, std::string path, const Keys& keys)
    : path_(std::move(path)) {
  for (auto it = node.begin(); it != node.end(); ++it) {
    const std::string key = it->first.IsScalar() ? it->first.Scalar() : Render(it->first);
    const std::string key_path = Child(path_, internal::KeyText(key));
    std::optional<std::string_view> canonical;
    for (std::string_view k : keys.known) {
      if (k == key) canonical = k;
    }
    if (!canonical.has_value()) {
      for (std::string_view k : keys.known) {
        if (EqualsIgnoreCase(k, key)) {
          canonical = k;
          parser.Warn(Note(
              key_path, Cat("read as ", k, " (keys are case-sensitive here; fix the spelling)")));
          break;
        }
      }
    }
    if (!canonical.has_value()) {
      if (std::any_of(keys.upstream_only.begin(), keys.upstream_only.end(),
                      [&](std::string_view k) { return EqualsIgnoreCase(k, key); })) {
        parser.Warn(Note(key_path, "upstream key not supported by this plugin (ignored)"));
      } else if (std::none_of(keys.quiet.begin(), keys.quiet.end(),
                              [&](std::string_view k) { return EqualsIgnoreCase(k, key); })) {
        parser.Warn(Note(key_path, "unknown key (ignored)"));
      }
      continue;
    }
    if (!values_.emplace(*canonical, it->second).second) {
      parser.Error(
          Problem(key_path, Render(it->second), "given more than once; each key may appear once"));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Flags and environment
// ---------------------------------------------------------------------------------------------

using Member = std::optional<std::string> FlagOverrides::*;

// Applies one raw value to the config; `name` is the flag or variable it came
// from. An invalid value leaves the config as it was and adds an error.
using ApplyFn = void (*)(Config& config, const std::string& value, const std::string& name,
                         std::vector<std::string>& errors);

// How a setting's flag takes its value.
enum class Shape {
  kString,  // one value; the last one given wins; may be empty (`--x=`)
  kBool,    // `--x` (true) or `--x=<bool>`
  kList,    // comma lists; repeated flags accumulate
};

// One setting given by flag or environment. Upstream names several settings more than one way
// (aliases): every name is accepted, the primary (first) one is shown first in help and used in
// messages when the value came from elsewhere.
struct Setting {
  Member member;
  std::vector<std::string_view> flags;  // without the leading "--"; primary first
  std::vector<std::string_view> envs;   // primary first; the first one set wins
  std::string_view key;  // the key path Validate uses for it ("--x" when there is no file key)
  Shape shape;
  std::string_view help;
  ApplyFn apply;
  // An empty variable counts as set (KUBELET_SOCKET=""); for the others it counts as unset.
  bool empty_env_is_a_value = false;
};

template <typename E>
void SetEnum(E& out, const std::string& value, const std::string& name,
             std::optional<E> (*parse)(std::string_view), std::string_view allowed,
             std::vector<std::string>& errors) {
  if (auto v = parse(value)) {
    out = *v;
  } else {
    errors.push_back(Problem(name, Quote(value), allowed));
  }
}

void SetBool(bool& out, const std::string& value, const std::string& name,
             std::vector<std::string>& errors) {
  if (auto v = GoBool(value)) {
    out = *v;
  } else {
    errors.push_back(Problem(name, Quote(value), "must be true or false"));
  }
}

// A comma list as upstream's string-slice flags read it: items trimmed, empty ones dropped.
std::vector<std::string> SplitList(std::string_view value) {
  std::vector<std::string> out;
  for (std::string_view item : Split(value, ',')) {
    item = Trim(item);
    if (!item.empty()) out.emplace_back(item);
  }
  return out;
}

const std::vector<Setting>& Settings() {
  static const auto* settings = new std::vector<Setting>{
      {&FlagOverrides::mig_strategy,
       {"mig-strategy"},
       {"MIG_STRATEGY"},
       "flags.migStrategy",
       Shape::kString,
       "MIG strategy: none, single or mixed (default none)",
       [](Config& c, const std::string& v, const std::string& n, std::vector<std::string>& e) {
         SetEnum(c.flags.mig_strategy, v, n, &ParseMigStrategy, kMigStrategies, e);
       }},
      {&FlagOverrides::fail_on_init_error,
       {"fail-on-init-error"},
       {"FAIL_ON_INIT_ERROR"},
       "flags.failOnInitError",
       Shape::kBool,
       "exit when NVML cannot be initialised; false idles instead (default true)",
       [](Config& c, const std::string& v, const std::string& n, std::vector<std::string>& e) {
         SetBool(c.flags.fail_on_init_error, v, n, e);
       }},
      {&FlagOverrides::mps_root,
       {"mps-root"},
       {"MPS_ROOT"},
       "flags.mpsRoot",
       Shape::kString,
       "host directory of the MPS pipes, logs and shm (default /run/nvidia/mps; an empty value "
       "unsets it)",
       [](Config& c, const std::string& v, const std::string&, std::vector<std::string>&) {
         SetOptional(c.flags.mps_root, v);
       }},
      {&FlagOverrides::nvidia_driver_root,
       {"driver-root", "nvidia-driver-root"},
       {"NVIDIA_DRIVER_ROOT"},
       "flags.nvidiaDriverRoot",
       Shape::kString,
       "host path of the NVIDIA driver installation (default /)",
       [](Config& c, const std::string& v, const std::string&, std::vector<std::string>&) {
         c.flags.nvidia_driver_root = v;
       }},
      {&FlagOverrides::nvidia_dev_root,
       {"dev-root", "nvidia-dev-root"},
       {"NVIDIA_DEV_ROOT"},
       "flags.nvidiaDevRoot",
       Shape::kString,
       "host path under which the NVIDIA device nodes are (default: the driver root)",
       [](Config& c, const std::string& v, const std::string&, std::vector<std::string>&) {
         SetOptional(c.flags.nvidia_dev_root, v);
       }},
      {&FlagOverrides::pass_device_specs,
       {"pass-device-specs"},
       {"PASS_DEVICE_SPECS"},
       "flags.plugin.passDeviceSpecs",
       Shape::kBool,
       "pass the device nodes to the container runtime in Allocate (default false)",
       [](Config& c, const std::string& v, const std::string& n, std::vector<std::string>& e) {
         SetBool(c.flags.plugin.pass_device_specs, v, n, e);
       }},
      {&FlagOverrides::device_list_strategy,
       {"device-list-strategy"},
       {"DEVICE_LIST_STRATEGY"},
       "flags.plugin.deviceListStrategy",
       Shape::kList,
       "how devices reach the container: envvar, volume-mounts, cdi-annotations, cdi-cri "
       "(comma list; default envvar)",
       [](Config& c, const std::string& v, const std::string& n, std::vector<std::string>& e) {
         std::vector<DeviceListStrategy> out;
         bool ok = true;
         for (const std::string& item : SplitList(v)) {
           if (auto s = ParseDeviceListStrategy(item)) {
             if (std::find(out.begin(), out.end(), *s) == out.end()) out.push_back(*s);
           } else {
             e.push_back(Problem(n, Quote(item), kDeviceListStrategies));
             ok = false;
           }
         }
         if (ok) c.flags.plugin.device_list_strategy = std::move(out);
       }},
      {&FlagOverrides::device_id_strategy,
       {"device-id-strategy"},
       {"DEVICE_ID_STRATEGY"},
       "flags.plugin.deviceIDStrategy",
       Shape::kString,
       "device IDs passed to containers: uuid or index (default uuid)",
       [](Config& c, const std::string& v, const std::string& n, std::vector<std::string>& e) {
         SetEnum(c.flags.plugin.device_id_strategy, v, n, &ParseDeviceIdStrategy,
                 kDeviceIdStrategies, e);
       }},
      {&FlagOverrides::gdrcopy_enabled,
       {"gdrcopy-enabled"},
       {"GDRCOPY_ENABLED"},
       "flags.gdrcopyEnabled",
       Shape::kBool,
       "add NVIDIA_GDRCOPY=enabled to containers (default false)",
       [](Config& c, const std::string& v, const std::string& n, std::vector<std::string>& e) {
         SetBool(c.flags.gdrcopy_enabled, v, n, e);
       }},
      {&FlagOverrides::gds_enabled,
       {"gds-enabled"},
       {"GDS_ENABLED"},
       "flags.gdsEnabled",
       Shape::kBool,
       "add NVIDIA_GDS=enabled to containers (default false)",
       [](Config& c, const std::string& v, const std::string& n, std::vector<std::string>& e) {
         SetBool(c.flags.gds_enabled, v, n, e);
       }},
      {&FlagOverrides::mofed_enabled,
       {"mofed-enabled"},
       {"MOFED_ENABLED"},
       "flags.mofedEnabled",
       Shape::kBool,
       "add NVIDIA_MOFED=enabled to containers (default false)",
       [](Config& c, const std::string& v, const std::string& n, std::vector<std::string>& e) {
         SetBool(c.flags.mofed_enabled, v, n, e);
       }},
      {&FlagOverrides::cdi_annotation_prefix,
       {"cdi-annotation-prefix"},
       {"CDI_ANNOTATION_PREFIX"},
       "flags.plugin.cdiAnnotationPrefix",
       Shape::kString,
       "prefix of CDI annotations (default cdi.k8s.io/)",
       [](Config& c, const std::string& v, const std::string&, std::vector<std::string>&) {
         c.flags.plugin.cdi_annotation_prefix = v;
       }},
      {&FlagOverrides::nvidia_cdi_hook_path,
       {"nvidia-cdi-hook-path", "nvidia-ctk-path"},
       {"NVIDIA_CDI_HOOK_PATH", "NVIDIA_CTK_PATH"},
       "flags.plugin.nvidiaCDIHookPath",
       Shape::kString,
       "accepted for compatibility; ignored: this plugin writes no CDI spec (default "
       "/usr/bin/nvidia-ctk)",
       [](Config& c, const std::string& v, const std::string&, std::vector<std::string>&) {
         c.flags.plugin.nvidia_cdi_hook_path = v;
       }},
      {&FlagOverrides::container_driver_root,
       {"driver-root-ctr-path", "container-driver-root"},
       {"DRIVER_ROOT_CTR_PATH", "CONTAINER_DRIVER_ROOT"},
       "flags.plugin.containerDriverRoot",
       Shape::kString,
       "where the driver root is mounted in the plugin's container (default /driver-root)",
       [](Config& c, const std::string& v, const std::string&, std::vector<std::string>&) {
         c.flags.plugin.container_driver_root = v;
       }},
      {&FlagOverrides::shared_devices_allocation_policy,
       {"shared-devices-allocation-policy"},
       {"SHARED_DEVICES_ALLOCATION_POLICY"},
       "flags.plugin.sharedDevicesAllocationPolicy",
       Shape::kString,
       "which GPUs replicas come from: distributed or packed (default distributed)",
       [](Config& c, const std::string& v, const std::string& n, std::vector<std::string>& e) {
         SetEnum(c.flags.plugin.shared_devices_allocation_policy, v, n, &ParseAllocationPolicy,
                 kAllocationPolicies, e);
       }},
      {&FlagOverrides::device_discovery_strategy,
       {"device-discovery-strategy"},
       {"DEVICE_DISCOVERY_STRATEGY"},
       "flags.deviceDiscoveryStrategy",
       Shape::kString,
       "auto or nvml (both use NVML); tegra is not supported (default auto)",
       [](Config& c, const std::string& v, const std::string& n, std::vector<std::string>& e) {
         SetEnum(c.flags.device_discovery_strategy, v, n, &ParseDeviceDiscoveryStrategy,
                 kDiscoveryStrategies, e);
       }},
      {&FlagOverrides::imex_channel_ids,
       {"imex-channel-ids"},
       {"IMEX_CHANNEL_IDS"},
       "imex.channelIDs",
       Shape::kList,
       "accepted for compatibility; ignored with a warning: no IMEX channels are injected",
       [](Config& c, const std::string& v, const std::string&, std::vector<std::string>&) {
         c.imex.channel_ids = SplitList(v);
       }},
      {&FlagOverrides::imex_required,
       {"imex-required"},
       {"IMEX_REQUIRED"},
       "imex.required",
       Shape::kBool,
       "accepted for compatibility; ignored with a warning: no IMEX channels are injected",
       [](Config& c, const std::string& v, const std::string& n, std::vector<std::string>& e) {
         SetBool(c.imex.required, v, n, e);
       }},
      {&FlagOverrides::kubelet_socket,
       {"kubelet-socket"},
       {"KUBELET_SOCKET"},
       "--kubelet-socket",
       Shape::kString,
       "kubelet's registration socket; empty: serve the resources without registering them "
       "(default /var/lib/kubelet/device-plugins/kubelet.sock)",
       [](Config& c, const std::string& v, const std::string&, std::vector<std::string>&) {
         c.flags.kubelet_socket = v;
       },
       /*empty_env_is_a_value=*/true},
      {&FlagOverrides::config_file,
       {"config-file"},
       {"CONFIG_FILE"},
       "--config-file",
       Shape::kString,
       "the config file (YAML or JSON)",
       nullptr},
      {&FlagOverrides::cdi_feature_flags,
       {"cdi-feature-flags"},
       {"CDI_FEATURE_FLAGS"},
       "flags.plugin.cdiFeatureFlags",
       Shape::kList,
       "accepted for compatibility; ignored with a warning: this plugin writes no CDI spec",
       [](Config& c, const std::string& v, const std::string&, std::vector<std::string>&) {
         c.flags.plugin.cdi_feature_flags = SplitList(v);
       }},
      {&FlagOverrides::cdi_disable_hooks,
       {"cdi-disable-hooks"},
       {"CDI_DISABLE_HOOKS"},
       "--cdi-disable-hooks",
       Shape::kList,
       "accepted for compatibility; ignored with a warning: this plugin writes no CDI spec",
       [](Config& c, const std::string& v, const std::string&, std::vector<std::string>&) {
         c.flags.plugin.cdi_disable_hooks = SplitList(v);
       }},
      {&FlagOverrides::nvml_library,
       {"nvml-library"},
       {"NVML_LIBRARY"},
       "--nvml-library",
       Shape::kString,
       "path of libnvidia-ml.so.1 (ours; default: searched under the driver root)",
       [](Config& c, const std::string& v, const std::string& n, std::vector<std::string>& e) {
         if (v.empty()) {
           e.push_back(Problem(n, Quote(v), "must not be empty"));
         } else {
           c.flags.nvml_library = v;
         }
       }},
  };
  return *settings;
}

struct Origin {
  const Setting* setting;
  std::string name;  // "--mig-strategy" or "MIG_STRATEGY"
};

// The name a given value is reported under: what FlagOverrides recorded, else the setting's
// primary flag (prefixed) or variable.
std::string GivenAs(const Setting& s, const FlagOverrides& given, bool is_flag) {
  if (auto it = given.given_as.find(s.flags.front()); it != given.given_as.end()) {
    return it->second;
  }
  return is_flag ? Cat("--", s.flags.front()) : std::string(s.envs.front());
}

// The command-line value of a setting if given, else the environment's.
std::optional<Origin> Winner(const Setting& s, const FlagOverrides& cli, const FlagOverrides& env,
                             const std::string** value) {
  if ((cli.*s.member).has_value()) {
    *value = &*(cli.*s.member);
    return Origin{&s, GivenAs(s, cli, /*is_flag=*/true)};
  }
  if ((env.*s.member).has_value()) {
    *value = &*(env.*s.member);
    return Origin{&s, GivenAs(s, env, /*is_flag=*/false)};
  }
  return std::nullopt;
}

absl::Status ToStatus(const std::vector<std::string>& errors) {
  return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
}

// Reads the whole file, at most kMaxConfigFileBytes. Only a regular file (or a link to one): a
// FIFO or device would block the caller in open or read (a SIGTERM could then not stop the daemon),
// so the file is opened non-blocking and checked before anything is read.
std::optional<std::string> ReadFile(const std::string& path, std::string* error) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    *error = std::strerror(errno);
    return std::nullopt;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    *error = S_ISDIR(st.st_mode) ? std::strerror(EISDIR)
                                 : "not a regular file (a FIFO, socket or device is never read)";
    return std::nullopt;
  }
  std::unique_ptr<FILE, int (*)(FILE*)> file(::fdopen(fd, "rb"), &std::fclose);
  if (file == nullptr) {
    *error = std::strerror(errno);
    ::close(fd);
    return std::nullopt;
  }
  std::string text;
  char buffer[1 << 14];
  while (true) {
    const size_t n = std::fread(buffer, 1, sizeof(buffer), file.get());
    text.append(buffer, n);
    if (text.size() > kMaxConfigFileBytes) {
      *error = Cat("larger than ", kMaxConfigFileBytes, " bytes");
      return std::nullopt;
    }
    if (n < sizeof(buffer)) {
      if (std::ferror(file.get()) != 0) {
        *error = std::strerror(errno);
        return std::nullopt;
      }
      return text;
    }
  }
}

}  // namespace

void AddFlags(CLI::App& app, FlagOverrides& out) {
  for (const Setting& s : Settings()) {
    std::optional<std::string>* target = &(out.*s.member);
    auto* given_as = &out.given_as;
    const std::string primary(s.flags.front());
    std::vector<std::string> aliases;
    for (size_t i = 1; i < s.flags.size(); ++i) aliases.push_back(Cat("--", s.flags[i]));
    std::string description(s.help);
    if (!aliases.empty()) description += Cat(" [alias ", absl::StrJoin(aliases, ", "), "]");
    std::vector<std::string> envs(s.envs.begin(), s.envs.end());
    description += Cat(" [env ", absl::StrJoin(envs, ", "), "]");
    // Each name is its own option (aliases hidden from the help, which lists them under the
    // primary) so that the value records the name it was given under. Callbacks run as each
    // occurrence is parsed, so the last one on the command line wins across names.
    for (std::string_view flag : s.flags) {
      const std::string name = Cat("--", flag);
      auto record = [target, given_as, primary, name](const std::string& v) {
        *target = v;
        (*given_as)[primary] = name;
      };
      CLI::Option* option = nullptr;
      switch (s.shape) {
        case Shape::kBool:
          option = app.add_flag(name)->each(record);
          break;
        case Shape::kList:
          option =
              app.add_option_function<std::vector<std::string>>(
                     name,
                     [target, given_as, primary, name](const std::vector<std::string>& values) {
                       std::string joined = absl::StrJoin(values, ",");
                       if (target->has_value() && !(*target)->empty()) {
                         joined = Cat(**target, ",", joined);
                       }
                       *target = std::move(joined);
                       (*given_as)[primary] = name;
                     })
                  ->expected(1)
                  ->allow_extra_args(false)
                  ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
          break;
        case Shape::kString:
          // expected(0, 1): `--x=` (and `--x ""`) give an empty value, as with upstream's flags,
          // instead of taking the next argument.
          option = app.add_option_function<std::string>(name, record)
                       ->expected(0, 1)
                       ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
          break;
      }
      option->trigger_on_parse();
      if (flag == s.flags.front()) {
        option->description(description);
      } else {
        option->group("");  // hidden; listed in the primary's description
      }
    }
  }
}

FlagOverrides FlagsFromEnv(const std::function<std::optional<std::string>(const char*)>& getenv) {
  FlagOverrides out;
  for (const Setting& s : Settings()) {
    for (std::string_view env_name : s.envs) {
      const std::string env(env_name);
      auto v = getenv(env.c_str());
      if (!v.has_value() || (v->empty() && !s.empty_env_is_a_value)) continue;
      out.*s.member = *v;
      out.given_as[std::string(s.flags.front())] = env;
      break;
    }
  }
  return out;
}

Report ParseConfigReport(std::string_view text, std::string_view source) {
  return Parser(source).Run(text);
}

absl::StatusOr<Loaded> ParseConfig(std::string_view text, std::string_view source) {
  Report report = ParseConfigReport(text, source);
  if (!report.ok()) return ToStatus(report.errors);
  return Loaded{std::move(report.config), std::move(report.warnings)};
}

Report LoadConfigReport(const FlagOverrides& command_line, const FlagOverrides& env) {
  Report report;
  std::vector<std::string> override_errors;

  // 1. The file.
  const Setting* file_setting = nullptr;
  for (const Setting& s : Settings()) {
    if (s.member == &FlagOverrides::config_file) file_setting = &s;
  }
  const std::string* file = nullptr;
  std::optional<Origin> file_origin = Winner(*file_setting, command_line, env, &file);
  if (file_origin.has_value() && !file->empty()) {
    std::string error;
    if (auto text = ReadFile(*file, &error)) {
      report = ParseConfigReport(*text, *file);
    } else {
      override_errors.push_back(
          Problem(file_origin->name, Quote(*file), Cat("cannot be read: ", error)));
    }
    report.config.flags.config_file = *file;
  }

  // 2. Environment, then flags over it (only the winning value of each setting
  // is used).
  std::map<std::string, std::string, std::less<>> origin_by_key;
  for (const Setting& s : Settings()) {
    if (s.apply == nullptr) continue;
    const std::string* value = nullptr;
    std::optional<Origin> origin = Winner(s, command_line, env, &value);
    if (!origin.has_value()) continue;
    s.apply(report.config, *value, origin->name, override_errors);
    origin_by_key[std::string(s.key)] = origin->name;
  }

  // 3. Validation. A problem already reported while reading a key is not
  // reported again.
  std::vector<std::string> reported_paths;
  for (const auto& e : report.errors) {
    reported_paths.emplace_back(internal::PathOf(e));
  }
  for (const auto& e : override_errors) {
    reported_paths.emplace_back(internal::PathOf(e));
  }
  auto rename_origin = [&](std::string message) {
    const std::string_view path = internal::PathOf(message);
    if (auto it = origin_by_key.find(path); it != origin_by_key.end()) {
      message = Cat(it->second, message.substr(path.size()));
    }
    return message;
  };
  report.errors.insert(report.errors.end(), override_errors.begin(), override_errors.end());
  Problems problems = CheckAndNormalize(report.config);
  for (auto& e : problems.errors) {
    const std::string_view path = internal::PathOf(e);
    const bool already =
        std::any_of(reported_paths.begin(), reported_paths.end(),
                    [&](const std::string& p) { return internal::IsWithin(path, p); });
    if (!already) report.errors.push_back(rename_origin(std::move(e)));
  }
  for (auto& w : problems.warnings) {
    report.warnings.push_back(rename_origin(std::move(w)));
  }
  return report;
}

absl::StatusOr<Loaded> LoadConfig(const FlagOverrides& command_line, const FlagOverrides& env) {
  Report report = LoadConfigReport(command_line, env);
  if (!report.ok()) return ToStatus(report.errors);
  return Loaded{std::move(report.config), std::move(report.warnings)};
}

}  // namespace nvdp::config
