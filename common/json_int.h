// Integers read from JSON files we do not control (config.json, tokenizer.json,
// safetensors headers): a value is taken only when it is a JSON integer within the
// range the caller can use, so that no float, huge or negative value reaches a cast or
// sizes an allocation.
#pragma once

#include <cstdint>
#include <optional>

#include "nlohmann/json.hpp"

namespace tessera {

// `v` when it is an integer in [lo, hi]; nullopt for anything else (a float such as
// 1e10, a string, a value out of range).
inline std::optional<int64_t> JsonInt(const nlohmann::json& v, int64_t lo, int64_t hi) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (hi < 0 || u > static_cast<uint64_t>(hi)) return std::nullopt;
    const auto i = static_cast<int64_t>(u);
    return i >= lo ? std::optional<int64_t>(i) : std::nullopt;
  }
  if (!v.is_number_integer()) return std::nullopt;
  const int64_t i = v.get<int64_t>();
  return i >= lo && i <= hi ? std::optional<int64_t>(i) : std::nullopt;
}

}  // namespace tessera
