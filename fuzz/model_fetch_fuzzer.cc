// What tessera fetch-model reads from a source before it writes anything: a SHA256SUMS
// manifest (cli::ParseSha256Sums) or a Hub mirror's file list (cli::ParseHubFiles), on
// arbitrary bytes (the first byte picks which). A list or a status, never a crash; every
// accepted file stays inside the destination and has a checksum of its digest's length.
#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "cli/model_fetch.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  using tessera::cli::ExpectedFile;
  const auto files = data[0] % 2 == 0 ? tessera::cli::ParseSha256Sums(text)
                                      : tessera::cli::ParseHubFiles(text, {"*"});
  if (!files.ok()) return 0;
  for (const ExpectedFile& f : *files) {
    bool inside = !f.path.empty() && f.path[0] != '/';
    for (const absl::string_view part : absl::StrSplit(f.path, '/')) inside &= part != ".." && !part.empty();
    const size_t digest_length = f.digest == ExpectedFile::Digest::kSha256 ? 64 : 40;
    if (!inside || f.hex.size() != digest_length) __builtin_trap();
  }
  return 0;
}
