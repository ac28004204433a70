// Reading a file region whole with pread(2): the loop every reader of a weights file
// needs (short reads, EINTR), in one place.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"

namespace tessera {

// Reads exactly `n` bytes at `offset` of `fd` into `dst`. DATA_LOSS saying why (the
// error, or that the file ends first) when it cannot; callers add which file.
absl::Status ReadAt(int fd, uint64_t offset, void* dst, size_t n);

}  // namespace tessera
