#include "coordinator/router.h"

namespace tessera::coordinator {

std::optional<size_t> Router::Pick(std::span<const GroupLoad> groups, int64_t tokens) {
  if (groups.empty()) return std::nullopt;
  const size_t start = routed_++ % groups.size();
  std::optional<size_t> best;
  int64_t best_score = 0;
  for (size_t k = 0; k < groups.size(); ++k) {
    const size_t i = (start + k) % groups.size();
    const GroupLoad& g = groups[i];
    if (tokens + 1 > g.max_sequence_tokens) continue;  // the next token needs a slot too
    const int64_t score = g.cached_tokens - g.queued_tokens;
    if (!best || score > best_score) {
      best = i;
      best_score = score;
    }
  }
  return best;
}

}  // namespace tessera::coordinator
