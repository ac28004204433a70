// Typed access to config.json keys with errors that name the key.
#pragma once

#include <limits>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/json_int.h"
#include "nlohmann/json.hpp"

namespace tessera::models::internal {

// Reads `key` from `obj` (a config or a sub-object such as rope_scaling). A missing
// or null key gives `fallback` when one is given, INVALID_ARGUMENT otherwise; a value
// of the wrong type (an integer type: a float, or an integer T cannot hold) is always
// INVALID_ARGUMENT.
template <typename T>
absl::StatusOr<T> ReadKey(const nlohmann::json& obj, const std::string& key,
                          const T* fallback = nullptr) {
  if (!obj.contains(key) || obj[key].is_null()) {
    if (fallback) return *fallback;
    return absl::InvalidArgumentError(absl::StrCat("config.json: missing required key '", key, "'"));
  }
  const nlohmann::json& v = obj[key];
  bool ok;
  if constexpr (std::is_same_v<T, bool>) {
    ok = v.is_boolean();
  } else if constexpr (std::is_integral_v<T>) {
    ok = JsonInt(v, std::numeric_limits<T>::min(), std::numeric_limits<T>::max()).has_value();
  } else if constexpr (std::is_floating_point_v<T>) {
    ok = v.is_number();
  } else {
    ok = v.is_string();
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: key '", key, "' has the wrong type (", v.type_name(), ")"));
  }
  return v.get<T>();
}

template <typename T>
absl::StatusOr<T> ReadKeyOr(const nlohmann::json& obj, const std::string& key, T fallback) {
  return ReadKey<T>(obj, key, &fallback);
}

// Bounds on a config's sizes, checked as each is read, before any of them sizes
// anything: far above every released model, and low enough that no product of them
// (a weight matrix, q_size, 4 x hidden) overflows.
inline constexpr int kMaxLayers = 1024;
inline constexpr int kMaxHiddenSize = 1 << 18;
inline constexpr int kMaxHeads = 4096;
inline constexpr int kMaxHeadDim = 4096;
inline constexpr int kMaxIntermediateSize = 1 << 21;
inline constexpr int kMaxVocabSize = 1 << 24;
inline constexpr int kMaxPositions = 1 << 26;
inline constexpr int kMaxExperts = 4096;

// An integer size in [1, max]: INVALID_ARGUMENT naming the key and the range otherwise.
inline absl::StatusOr<int> ReadSize(const nlohmann::json& obj, const std::string& key, int max,
                                    std::optional<int> fallback = std::nullopt) {
  if (!obj.contains(key) || obj[key].is_null()) {
    if (fallback) return *fallback;
    return absl::InvalidArgumentError(absl::StrCat("config.json: missing required key '", key, "'"));
  }
  const nlohmann::json& value = obj[key];
  if (!value.is_number_integer()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: key '", key, "' has the wrong type (", value.dump(), " is not an integer)"));
  }
  const std::optional<int64_t> v = JsonInt(value, 1, max);
  if (!v) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: key '", key, "' must be in [1, ", max, "], got ", value.dump()));
  }
  return static_cast<int>(*v);
}

}  // namespace tessera::models::internal
