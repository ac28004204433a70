// Scheduler: continuous batching for one replica group.
//
// Owns the group's waiting queue (priority, then fair share between tenants:
// waiting_queue.h) and its running sequences; the group's KV cache
// (blocks, prefix cache, host tier, fetches) is a kvstore::KvCacheManager it asks. Each
// step it plans a batch under a token budget: running sequences first (one decode
// token each, or their next prefill chunk), then new requests admitted in the queue's
// order while their whole prompt fits in free blocks (a full batch gives a slot to a
// better-priority request, or to a tenant under its fair share: MakeRoomFor) (chunked prefill when a prompt
// exceeds the budget). A new sequence first takes every cached block of its prefix
// (prefix caching): from the device pool, else the host tier, else (with a
// cluster-wide block index) fetched from other workers' host tiers in one step before
// it is computed; only the rest is computed. When a running sequence needs a block
// and none is free,
// the newest sequence is preempted: its blocks are freed and it is recomputed later
// from its prompt and the tokens generated so far. With a sliding window over every
// layer (Mistral), or a request's bounded KV policy (window, sink-window:
// models/kv_retention.h), blocks the window has passed are released as the sequence
// runs (but a sink-window's first blocks, which hold its sinks).
// An embedding request runs as a sequence whose last prefill chunk returns its
// embedding instead of a token (mean pooling computes every token: no cached prefix).
// The step is a plain plan
// (step_plan.h; step_codec.h encodes it) and a diff: new sequences in full once,
// running ones as deltas, finished ids.
//
// Thread-safety: Enqueue, PrefixHashes, CachedTokens and the counters may be called from any
// thread; BuildStep, ApplyStep and TakeAll from the group's thread only.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "coordinator/request.h"
#include "coordinator/waiting_queue.h"
#include "coordinator/step_plan.h"
#include "kvstore/block_hash.h"
#include "kvstore/kv_cache_manager.h"
#include "kvstore/kv_layout.h"
#include "tessera/v1/internal/worker.pb.h"

namespace tessera::coordinator {

struct SchedulerOptions {
  kvstore::KvCacheOptions cache;  // the group's KV cache
  int max_step_tokens = 512;      // tokens computed per step, over all sequences
  int max_running = 256;          // sequences in the batch
  // The keys every layer reads back (models::ModelSpec::KvWindow; 0: some layer reads
  // the whole sequence). With a window, blocks it has passed are released while the
  // sequence runs and a step's chunk is kept to what the pool holds, so a sequence
  // longer than the pool runs to its end.
  int kv_window = 0;
};

class Scheduler {
 public:
  explicit Scheduler(const SchedulerOptions& options);

  void Enqueue(std::shared_ptr<Request> request);
  // Blocks until there is work, `stop` becomes true (on Notify()), or 100 ms pass.
  void WaitForWork(const std::atomic<bool>& stop);
  void Notify() { cv_.notify_all(); }

  // Plans the next step; false when there is nothing to run.
  // Spans in `plan` point into the scheduler's sequences (valid until the next call).
  bool BuildStep(StepPlan* plan);
  // Takes the workers' answers (one per rank) to the step BuildStep planned; rank 0's
  // sampled tokens and embeddings are used, a fetch counts only if every rank completed it.
  void ApplyStep(std::span<const v1::internal::StepResponse> responses);
  // Host-tier blocks the workers kept through a coordinator restart: cached again.
  void AdoptHostBlocks(std::span<const std::pair<int32_t, kvstore::BlockHash>> blocks);
  // Removes every request (waiting and running) and forgets their sequences; used
  // when the worker is lost, so the requests can be recomputed elsewhere.
  std::vector<std::shared_ptr<Request>> TakeAll();

  int num_waiting() const;
  int num_running() const;
  int32_t num_free_blocks() const { return cache_.counters().free_blocks; }
  int32_t num_blocks() const { return cache_.num_blocks(); }
  using CacheCounters = kvstore::KvCacheManager::Counters;
  CacheCounters cache_counters() const { return cache_.counters(); }
  int64_t outstanding_work() const;  // for routing
  // Sequences preempted so far (their blocks freed, to be recomputed).
  int64_t preemptions() const { return preemptions_; }
  // Block ids of the request's prefix that the cache could serve (its full blocks but
  // the one holding the last token). Depends only on the options and the request.
  std::vector<kvstore::BlockHash> PrefixHashes(const Request& request) const;
  // Tokens of the prefix with these block ids that this group holds in either tier
  // (for routing).
  int64_t CachedTokens(std::span<const kvstore::BlockHash> hashes) const { return cache_.CachedTokens(hashes); }

 private:
  struct Sequence {
    std::shared_ptr<Request> request;
    uint64_t id = 0;
    std::vector<int32_t> tokens;  // prompt, then generated tokens
    int32_t prompt_len = 0;
    int64_t computed = 0;         // tokens whose K/V are cached on the worker
    kvstore::SequenceBlocks kv;   // its blocks and their hashes
    size_t blocks_sent = 0;       // block ids the worker knows
    bool worker_knows = false;    // sent as NewSequence already
    int64_t planned = 0;          // tokens in the step in flight
    int64_t cached = 0;           // prefix tokens found in the cache at admission
    models::KvRetention kept;     // its request's KV policy within the model's window
  };

  // Asks peers for the blocks of `rest` (the prefix after the cached part) that the
  // block index knows of, into the sequence's next blocks; the sequence waits a step.
  void FetchRemotePrefix(Sequence& seq, std::span<const kvstore::BlockHash> rest, StepPlan* plan);
  // Takes the ranks' fetch results for `seq`.
  void FinishFetch(Sequence& seq, std::span<const v1::internal::StepResponse> responses);

  // Tokens from `seq.computed` on that one step may compute with `budget` to spend:
  // with a window, no more than the pool holds from the window's first block on
  // besides the sinks' (at least one once admission has checked the pool holds them).
  int64_t ChunkLimit(const Sequence& seq, int64_t budget) const;
  // Releases the blocks of `seq` that its window has passed (not its sinks').
  void ReleasePassed(Sequence& seq);
  // Frees the sequence's blocks, tells the worker to drop it.
  void Release(Sequence& seq);
  // Makes room for `seq` to hold `tokens` tokens, preempting newer sequences; false if
  // `seq` itself had to go.
  bool Reserve(size_t index, int64_t tokens);
  void Preempt(size_t index);
  // With every batch slot taken, frees one for `request` when it may have one: a
  // running request of a higher priority value, or else, if `request`'s tenant is
  // under its fair share of the slots, one of the tenant furthest over its share, is
  // preempted. False when `request` must wait.
  bool MakeRoomFor(const Request& request);
  // Updates the counters other threads read (routing, GetServerInfo).
  void PublishCounters();

  const SchedulerOptions options_;
  kvstore::KvCacheManager cache_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  WaitingQueue waiting_;                          // guarded by mu_
  std::vector<Sequence> running_;                 // admission order; group thread only
  std::vector<uint64_t> finished_;                // ids to send with the next step
  uint64_t next_seq_id_ = 1;
  std::atomic<int> running_count_{0};
  std::atomic<int64_t> running_work_{0};  // remaining tokens of the running requests
  std::atomic<int64_t> preemptions_{0};
};

}  // namespace tessera::coordinator
