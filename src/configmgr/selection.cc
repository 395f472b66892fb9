#include "configmgr/selection.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace nvdp::configmgr {
namespace {

bool Has(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::string Names(const std::vector<std::string>& names) {
  return names.empty() ? "none" : absl::StrJoin(names, ", ");
}

}  // namespace

absl::StatusOr<std::vector<Fallback>> ParseFallbacks(const std::string& list) {
  std::vector<Fallback> out;
  for (absl::string_view item : absl::StrSplit(list, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (item.empty()) continue;
    if (item == "named") {
      out.push_back(Fallback::kNamed);
    } else if (item == "single") {
      out.push_back(Fallback::kSingle);
    } else if (item == "empty") {
      out.push_back(Fallback::kEmpty);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown fallback strategy \"", item, "\" (want named, single or empty)"));
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> ListConfigs(const std::string& srcdir) {
  std::error_code ec;
  std::filesystem::directory_iterator it(srcdir, ec);
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat("cannot read the config directory ", srcdir, ": ", ec.message()));
  }
  std::vector<std::string> names;
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const std::string name = it->path().filename().string();
    if (name.empty() || name.front() == '.') continue;
    std::error_code stat_ec;
    if (std::filesystem::is_regular_file(it->path(), stat_ec)) names.push_back(name);
  }
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat("cannot read the config directory ", srcdir, ": ", ec.message()));
  }
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<Selection> SelectConfig(const std::optional<std::string>& label,
                                       const SelectionOptions& options,
                                       const std::vector<std::string>& available) {
  if (label.has_value() && !label->empty()) {
    if (Has(available, *label)) return Selection{*label, "label"};
    return absl::NotFoundError(
        absl::StrCat("the node label names config \"", *label,
                     "\", which does not exist (available: ", Names(available), ")"));
  }
  for (Fallback fallback : options.fallbacks) {
    switch (fallback) {
      case Fallback::kNamed:
        if (options.default_config.empty()) break;
        if (Has(available, options.default_config)) {
          return Selection{options.default_config, "default config"};
        }
        return absl::NotFoundError(absl::StrCat("the default config \"", options.default_config,
                                                "\" does not exist (available: ", Names(available),
                                                ")"));
      case Fallback::kSingle:
        if (available.size() == 1) return Selection{available.front(), "single config"};
        break;
      case Fallback::kEmpty:
        return Selection{std::nullopt, "empty fallback"};
    }
  }
  return absl::NotFoundError(
      absl::StrCat("the node label is unset and no fallback strategy applies (default config: ",
                   options.default_config.empty() ? "none" : "\"" + options.default_config + "\"",
                   "; available: ", Names(available), ")"));
}

}  // namespace nvdp::configmgr
