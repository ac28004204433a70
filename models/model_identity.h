// What a model is, independent of where it is mounted: the root of every KV block
// hash (docs/kv-blocks.md), so that two nodes mounting the same model at different
// paths share cached blocks and two different models at the same path never do.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace tessera::models {

// "sha256:<hex>" over config.json's bytes, then, for every tensor of the checkpoint in
// name order, its name, dtype, shape and byte length, and a sample of its values: up
// to 4 KiB at its start, middle and end (a fine-tune changes every weight, so the
// samples tell it from its base model without reading gigabytes).
absl::StatusOr<std::string> ModelIdentity(const std::string& model_dir);

}  // namespace tessera::models
