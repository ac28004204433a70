// StepExecutor: the worker's half of a step. Applies the coordinator's diff (new
// sequences, continued ones, finished ids) to its per-sequence state, runs one forward
// pass over the flattened batch against its KV block storage, and samples a token for
// every sequence that asked for one, or, for an embedding sequence, pools its final
// hidden states and sends its embedding after its last chunk.
//
// The coordinator owns block allocation; a worker only stores bytes in the blocks it
// is told to use, moves them between its device pool and its host tier, and fetches
// the blocks peers hold into its device pool (the KV data plane). Thread-safety: one
// step at a time (the Steps stream is sequential).
#pragma once

#include <atomic>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "kernels/sampling.h"
#include "models/model.h"
#include "tessera/v1/internal/worker.pb.h"
#include "kvstore/block_fetcher.h"
#include "kvstore/host_tier.h"
#include "worker/engine.h"

namespace tessera::worker {

class StepExecutor {
 public:
  // `host` (the host tier, sized by the caller) and `kv_bytes_fetched` (counts the
  // block bytes fetched from peers) must outlive the executor; `data_plane_tls` (null:
  // plain TCP) secures the fetches from peers.
  StepExecutor(std::unique_ptr<Engine> engine, kvstore::HostTier* host, std::atomic<int64_t>* kv_bytes_fetched,
               std::shared_ptr<const tls::SocketTls> data_plane_tls = nullptr);

  int32_t num_blocks() const { return engine_->num_blocks(); }
  size_t num_sequences() const { return sequences_.size(); }
  // Forgets every sequence (a new Steps stream starts from nothing).
  void Reset() { sequences_.clear(); }

  // Errors (INVALID_ARGUMENT / FAILED_PRECONDITION) mean the coordinator and worker
  // disagree: the stream ends and the coordinator recomputes the group's requests.
  absl::StatusOr<v1::internal::StepResponse> Run(const v1::internal::StepRequest& step);

 private:
  struct Sequence {
    std::vector<int32_t> block_table;
    int64_t computed = 0;  // tokens whose K/V are in the cache
    int32_t prompt_len = 0;
    uint64_t seed = 0;
    kernels::SamplingConfig sampling;
    kernels::TokenHistory history;
    models::Pooling pooling = models::Pooling::kNone;  // an embedding sequence's
    std::vector<float> pooled;                          // its chunks' pooled states so far
    models::KvRetention retention;                      // what its tokens read of the cache

    // Counts tokens whose K/V are now cached, in order, into the penalties' history
    // (prompt tokens first, then generated ones).
    void Computed(std::span<const int32_t> tokens) {
      for (int32_t t : tokens) {
        if (computed++ < prompt_len) {
          history.prompt_tokens[t] = true;
        } else {
          ++history.output_counts[t];
        }
      }
    }
  };

  // A sequence of the step's flattened batch, as the diff named it.
  struct Item {
    uint64_t id;
    const google::protobuf::RepeatedField<int32_t>* tokens;
    bool sample;  // its last chunk: sample a token, or send its embedding
  };

  // Adds the step's pooled states (pooled_) to their sequences, and sends the
  // embeddings of those whose last chunk this was.
  void PoolEmbeddings(std::span<const Item> items, v1::internal::StepResponse* response);
  // Runs the step's fetches from peers; one result per fetch.
  void Fetch(const v1::internal::StepRequest& step, v1::internal::StepResponse* response);

  std::unique_ptr<Engine> engine_;  // the model and the device tier (its KV pool)
  kvstore::HostTier* host_;
  std::atomic<int64_t>* const kv_bytes_fetched_;
  kvstore::BlockFetcher fetcher_;  // connections to peers' block servers, kept between fetches
  absl::flat_hash_map<uint64_t, Sequence> sequences_;
  std::vector<kernels::SampledToken> sampled_;
  std::vector<float> pooled_;  // the step's pooled states
};

// The sampling knobs of a request, as the coordinator resolved them (its frontend fills
// every default in before the request is queued).
kernels::SamplingConfig ToSamplingConfig(const v1::SamplingParams& params);
// The pooling an embedding sequence asks for (kNone: a generating one).
models::Pooling ToPooling(v1::internal::Pooling pooling);

}  // namespace tessera::worker
