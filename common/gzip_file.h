// Reads a whole gzip-compressed file (zlib): the tokenizer fixtures the tests, the
// benchmarks and the fuzzers load (tests/data/tokenizers/*/tokenizer.json.gz).
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace tessera {

// The file's uncompressed bytes; NOT_FOUND when it cannot be opened, DATA_LOSS when
// it is not valid gzip.
absl::StatusOr<std::string> ReadGzipFile(const std::string& path);

}  // namespace tessera
