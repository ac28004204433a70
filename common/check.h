// TESSERA_CHECK: aborts on a broken internal invariant (never on user input, which
// gets an absl::Status). Debian's Abseil (20220623) predates absl/log's CHECK.
#pragma once

#include <cstdio>
#include <cstdlib>

#define TESSERA_CHECK(cond, message)                                                  \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "%s:%d: check failed: %s: %s\n", __FILE__, __LINE__, #cond, \
                   message);                                                          \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)
