// The router: which replica group takes a request, decided over a snapshot of the
// ready groups' load (the prefix each already holds, the work queued there, the longest
// sequence it can hold), so routing reads each group once and decides in one place.
//
// The best group saves the most work: the request's prefix it holds (tokens it will
// not compute) minus the tokens queued there (remaining prompt and output of its
// waiting and running requests). Ties (idle groups, no prefix anywhere) go round robin.
//
// Thread-safety: not thread-safe; the cluster calls it under its lock.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

namespace tessera::coordinator {

// One ready group's load, as the router sees it.
struct GroupLoad {
  int64_t cached_tokens = 0;     // of this request's prefix
  int64_t queued_tokens = 0;     // work waiting or running there
  int64_t max_sequence_tokens = 0;
};

class Router {
 public:
  // The index in `groups` of the group for a request of `tokens` tokens (prompt and
  // generated so far); nullopt when no group can hold it.
  std::optional<size_t> Pick(std::span<const GroupLoad> groups, int64_t tokens);

 private:
  uint64_t routed_ = 0;  // where the next tie-breaking scan starts
};

}  // namespace tessera::coordinator
