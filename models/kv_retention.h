// What a sequence keeps of its KV cache, and so what its tokens attend to: every token
// (the default), the last `window` tokens (a sliding window), or those and its first
// `sink_tokens` tokens: the attention sinks of StreamingLLM (Xiao et al. 2023,
// "Efficient Streaming Language Models with Attention Sinks"). The blocks between the
// sinks and the window are released while the sequence runs, so it runs past the
// model's context in a fixed number of blocks. The sinks are seen from the position a
// query has in that cache (kernels/attention.h), as the paper assigns positions.
// docs/serving.md ("Bounded long context") is the user's view.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace tessera::models {

// StreamingLLM's sinks: four initial tokens suffice for the models the paper tried.
inline constexpr int kDefaultSinkTokens = 4;

struct KvRetention {
  int window = 0;       // keys a token reads, itself included; 0: every one
  int sink_tokens = 0;  // with a window: the first tokens, kept and read too

  bool bounded() const { return window > 0; }
  // The narrower of this and a model's own window (ModelSpec::kv_window; 0: none).
  KvRetention Within(int model_window) const;
  // The first window token that tokens from `pos` on read (0 without a window).
  int64_t FirstWindowToken(int64_t pos) const;
  // Blocks at the front of a sequence's table that hold its sinks.
  int64_t SinkBlocks(int block_size) const;
  // Blocks a sequence holds at the least while it computes one more token: the sinks',
  // and the window's plus one token.
  int64_t MinBlocks(int block_size) const;

  bool operator==(const KvRetention&) const = default;
};

// The flags' and the APIs' form: `policy` full, window or sink-window, with the window
// (required by both windowed policies) and the sinks (sink-window only).
// INVALID_ARGUMENT naming what is wrong.
absl::StatusOr<KvRetention> ParseKvPolicy(std::string_view policy, int sink_tokens, int window);
// "full", "window" or "sink-window".
std::string_view KvPolicyName(const KvRetention& retention);

}  // namespace tessera::models
