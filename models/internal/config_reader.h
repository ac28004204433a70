// Typed access to config.json keys with errors that name the key.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace tessera::models::internal {

// Reads `key` from `obj` (a config or a sub-object such as rope_scaling). A missing
// or null key gives `fallback` when one is given, INVALID_ARGUMENT otherwise; a value
// of the wrong type is always INVALID_ARGUMENT.
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
    ok = v.is_number_integer();
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

}  // namespace tessera::models::internal
