#include "models/kv_retention.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tessera::models {

KvRetention KvRetention::Within(int model_window) const {
  KvRetention kept = *this;
  if (model_window > 0 && (window == 0 || model_window < window)) kept.window = model_window;
  return kept;
}

int64_t KvRetention::FirstWindowToken(int64_t pos) const {
  return window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
}

int64_t KvRetention::SinkBlocks(int block_size) const { return (sink_tokens + block_size - 1) / block_size; }

int64_t KvRetention::MinBlocks(int block_size) const {
  // The window's first token may sit anywhere in its block: window - 1 tokens before
  // the newest span at most this many blocks, and the newest may open one more.
  return SinkBlocks(block_size) + (window - 1 + block_size - 1) / block_size + 1;
}

absl::StatusOr<KvRetention> ParseKvPolicy(std::string_view policy, int sink_tokens, int window) {
  if (window < 0 || sink_tokens < 0) return absl::InvalidArgumentError("the window and sink tokens must be >= 0");
  if (policy == "full") {
    if (window > 0 || sink_tokens > 0) {
      return absl::InvalidArgumentError("a window or sink tokens need the policy window or sink-window");
    }
    return KvRetention{};
  }
  if (policy != "window" && policy != "sink-window") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown KV policy '", std::string(policy), "' (full, window or sink-window)"));
  }
  if (window == 0) return absl::InvalidArgumentError(absl::StrCat("the ", std::string(policy), " policy needs a window"));
  if (policy == "window") {
    if (sink_tokens > 0) return absl::InvalidArgumentError("sink tokens need the policy sink-window");
    return KvRetention{window, 0};
  }
  if (sink_tokens == 0) return absl::InvalidArgumentError("the sink-window policy needs sink tokens (> 0)");
  return KvRetention{window, sink_tokens};
}

std::string_view KvPolicyName(const KvRetention& retention) {
  if (!retention.bounded()) return "full";
  return retention.sink_tokens > 0 ? "sink-window" : "window";
}

}  // namespace tessera::models
