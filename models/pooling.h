// How an embedding is read off a sequence's final hidden states (after the final norm).
#pragma once

#include <string_view>

#include "absl/status/statusor.h"

namespace tessera::models {

enum class Pooling {
  kNone,  // a generating sequence: logits
  kLast,  // the state of its last token
  kMean,  // the mean over its tokens
};

// "last" or "mean" (INVALID_ARGUMENT otherwise); and back.
absl::StatusOr<Pooling> ParsePooling(std::string_view name);
std::string_view PoolingName(Pooling pooling);

}  // namespace tessera::models
