#include "models/pooling.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace tessera::models {

absl::StatusOr<Pooling> ParsePooling(std::string_view name) {
  if (name == "last") return Pooling::kLast;
  if (name == "mean") return Pooling::kMean;
  return absl::InvalidArgumentError(absl::StrCat("unknown pooling '", std::string(name), "' (last or mean)"));
}

std::string_view PoolingName(Pooling pooling) {
  switch (pooling) {
    case Pooling::kLast: return "last";
    case Pooling::kMean: return "mean";
    case Pooling::kNone: break;
  }
  return "none";
}

}  // namespace tessera::models
