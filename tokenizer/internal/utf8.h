// UTF-8 helpers for the tokenizer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace tessera::tokenizer::internal {

// Debian's Abseil has its own string_view type; hash-map lookups need it.
inline absl::string_view AsAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Length of the UTF-8 sequence starting with byte `lead` (1 for invalid leads).
inline int Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xe) return 3;
  if ((lead >> 3) == 0x1e) return 4;
  return 1;
}

inline void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out->push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

// Decodes the well-formed sequence at s[i] (REQUIRES: valid UTF-8); advances i.
inline uint32_t NextCodepoint(std::string_view s, size_t* i) {
  const unsigned char c = static_cast<unsigned char>(s[*i]);
  const int n = Utf8Length(c);
  uint32_t cp = n == 1 ? c : c & (0x7f >> n);
  for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[*i + k]) & 0x3f);
  *i += n;
  return cp;
}

// Length of a well-formed UTF-8 sequence at s[i], or 0 when it is not well formed
// (bad lead, truncated, bad continuation, overlong, surrogate, > U+10FFFF).
size_t ValidSequenceLength(std::string_view s, size_t i);

bool IsValidUtf8(std::string_view s);

// Bytes to text as Rust's String::from_utf8_lossy does: every maximal invalid
// subsequence becomes one U+FFFD.
std::string Utf8Lossy(std::string_view bytes);

inline constexpr std::string_view kReplacementChar = "\xef\xbf\xbd";  // U+FFFD

}  // namespace tessera::tokenizer::internal
