// StepPlan: what a replica group's next step does, as the scheduler planned it, in plain
// types; coordinator/step_codec.h turns it into the StepRequest sent to every rank.
// Spans point into the scheduler's sequences and stay valid until its next BuildStep,
// ApplyStep or TakeAll.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kvstore/kv_cache_manager.h"
#include "models/kv_retention.h"
#include "models/pooling.h"
#include "tessera/v1/tessera.pb.h"

namespace tessera::coordinator {

struct StepPlan {
  // A sequence the workers have not seen: its first tokens (after a cached prefix of
  // prefix_tokens, whose K/V are already in the first blocks) and its whole table.
  struct NewSequence {
    uint64_t id = 0;
    std::span<const int32_t> tokens;
    std::span<const int32_t> block_table;
    std::span<const int32_t> prefix_tokens;
    const v1::SamplingParams* sampling = nullptr;
    int32_t prompt_len = 0;
    uint64_t seed = 0;
    bool sample = false;  // its last token's logits are sampled (or it is pooled) this step
    models::Pooling pooling = models::Pooling::kNone;  // an embedding sequence's
    models::KvRetention retention;                      // its request's KV policy
  };
  // A running sequence's delta: its next tokens and the blocks added to its table.
  struct Continued {
    uint64_t id = 0;
    std::span<const int32_t> tokens;
    std::span<const int32_t> new_blocks;
    bool sample = false;
  };
  // Blocks a sequence fetches from peers before it is computed (next step).
  struct Fetch {
    uint64_t id = 0;
    kvstore::KvCacheManager::FetchPlan blocks;
  };

  kvstore::KvCacheManager::TierMoves moves;  // done before computing
  std::vector<Fetch> fetches;
  std::vector<uint64_t> finished;  // sequences the workers drop
  std::vector<NewSequence> new_sequences;
  std::vector<Continued> continued;

  bool empty() const {
    return moves.swap_out.empty() && moves.swap_in.empty() && fetches.empty() && finished.empty() &&
           new_sequences.empty() && continued.empty();
  }
};

}  // namespace tessera::coordinator
