// Validation of a resolved configuration (file + environment + flags already
// merged): every rule of docs/configuration.md, reporting every problem at
// once, one message per problem in the form
//   `<key path>: <value> — <what is allowed>`.
//
// Pure functions of their argument; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace nvdp::config {

struct Problems {
  std::vector<std::string> errors;    // the config must not be used
  std::vector<std::string> warnings;  // usable, but probably not what was meant
};

// All problems with a resolved config, in a stable order (flags, resources,
// sharing).
Problems Check(const Config& config);

// Check(config).errors: empty when the config is valid.
std::vector<std::string> Validate(const Config& config);

}  // namespace nvdp::config
