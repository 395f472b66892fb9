// Validation of a resolved configuration (file + environment + flags already
// merged): every rule of docs/configuration.md, reporting every problem at
// once, one message per problem in the form
//   `<key path>: <value> — <what is allowed>`,
// and the normalisation of upstream-valid forms this plugin reads differently.
//
// No global state; thread-safe (CheckAndNormalize writes only its argument).
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace nvdp::config {

struct Problems {
  std::vector<std::string> errors;    // the config must not be used
  std::vector<std::string> warnings;  // usable, but probably not what was meant
};

// Checks a resolved config and rewrites, in place, the upstream-valid forms this plugin reads
// differently, with a warning that says what happens instead:
//  - `sharing.mps.resources[i].devices` without `rename`: upstream ignores it, so do we (cleared
//    to all); with `rename` it is honoured (ours).
//  - a resource under both `sharing.timeSlicing` and `sharing.mps`: MPS wins; the time-slicing
//    entry is removed.
// Returns every problem, in a stable order (flags, resources, sharing). Idempotent: a config it
// has rewritten gives no such warning again. LoadConfig uses it, so the Config it returns is
// normalised.
Problems CheckAndNormalize(Config& config);

// CheckAndNormalize on a copy: the same problems, `config` untouched.
Problems Check(const Config& config);

// Check(config).errors: empty when the config is valid.
std::vector<std::string> Validate(const Config& config);

}  // namespace nvdp::config
