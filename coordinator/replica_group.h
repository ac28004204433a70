// ReplicaGroup: one full copy of the model, held by tp x ep workers (ranks), and the
// thread that drives it.
//
// Lifecycle: LOADING (every rank loads its shard, meeting its peers through the
// coordinator's store; Steps streams open) -> READY (takes requests) -> DRAINING
// (takes none, finishes its own) -> RELEASED, or DEAD when a rank is lost (stream
// broken, heartbeat timeout, step error). Every step goes to every rank; rank 0's
// sampled tokens are used (all ranks hold the same logits). On DEAD every request the
// group held is handed to `on_lost` to be recomputed elsewhere.
//
// Thread-safety: all public methods may be called from any thread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/tls.h"
#include "coordinator/router.h"
#include "coordinator/scheduler.h"
#include "kvstore/kv_layout.h"
#include "tessera/v1/tessera.pb.h"
#include "tessera/v1/internal/worker.grpc.pb.h"

namespace tessera::coordinator {

struct GroupOptions {
  std::string model_dir;       // where the workers load it from
  std::string model_identity;  // the root of its KV block hashes (models::ModelIdentity)
  int tp = 1;  // ranks per group: tp x ep workers
  int ep = 1;
  int collective_timeout_ms = 10000;
  int block_size = kvstore::kDefaultBlockSize;
  int32_t num_kv_blocks = 0;      // 0: from kv_memory_bytes
  int64_t kv_memory_bytes = kvstore::kDefaultKvMemoryBytes;
  std::string kv_cache_dtype = "auto";  // --kv-cache-dtype, which each worker resolves
  int max_step_tokens = 512;
  int max_running = 256;
  int kv_window = 0;           // the model's (models::ModelSpec::kv_window)
  bool prefix_caching = true;  // reuse cached KV blocks of equal prefixes
  bool batch_invariant = false;  // workers compute every row independently of the batch
  int32_t num_host_kv_blocks = 0;  // the host tier per worker (0: none)
  // The cluster-wide block index remote prefixes are fetched through (null: none).
  const kvstore::BlockIndex* block_index = nullptr;
  // Mutual TLS toward the workers (common/tls.h); null: plaintext.
  std::shared_ptr<const tls::Material> internal_tls;
};

class ReplicaGroup {
 public:
  enum class State { kLoading, kReady, kDraining, kReleased, kDead };

  using LostCallback = std::function<void(ReplicaGroup*, std::vector<std::shared_ptr<Request>>)>;

  struct Rank {
    std::string worker_id;
    std::string address;
  };

  // `ranks` in rank order (rank = ep_rank * tp + tp_rank).
  ReplicaGroup(std::string id, std::vector<Rank> ranks, GroupOptions options, LostCallback on_lost);
  ~ReplicaGroup();

  void Start();
  // Accepts a request when READY; false otherwise (route it elsewhere).
  bool Enqueue(std::shared_ptr<Request> request);
  // Stops taking requests; RELEASED once the running ones are done.
  void Drain();
  // The worker is gone: break the stream (the group thread then hands its requests on).
  void Kill();

  State state() const { return state_; }
  const std::string& id() const { return id_; }
  const std::vector<Rank>& ranks() const { return ranks_; }
  int num_waiting() const;
  // The request's prefix block hashes as this group's cache names them (empty until
  // loaded): see Scheduler::PrefixHashes.
  std::vector<kvstore::BlockHash> PrefixHashes(const Request& request) const;
  // What the router reads (all 0 until loaded): how much of the request's prefix
  // (its prefix_hashes) this group holds, the work queued there, and the longest
  // sequence of the request's KV policy its KV pool can hold (any length, for a bounded
  // one whose sinks and window fit).
  GroupLoad RoutingLoad(const Request& request) const;
  // Whether its workers run per-request KV policies (CPU workers; once loaded).
  bool RunsKvPolicies() const;
  v1::GroupInfo Info() const;

 private:
  void Run();
  bool Load();
  void Loop();

  const std::string id_;
  const std::vector<Rank> ranks_;
  const GroupOptions options_;
  const LostCallback on_lost_;
  std::atomic<State> state_{State::kLoading};
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> weight_bytes_{0};
  std::atomic<int64_t> kv_block_bytes_{0};  // per rank
  std::atomic<int64_t> steps_{0}, step_nanoseconds_{0};  // written by the step loop, read by Info()
  std::vector<std::string> worker_kernels_;  // per rank; written by Load before publishing
  std::vector<std::string> worker_weight_cache_;  // per rank, the same
  // The load (GroupInfo's load_seconds, weight_load_seconds, load_bytes); written by
  // Load before publishing.
  double load_seconds_ = 0, weight_load_seconds_ = 0;
  int64_t load_bytes_ = 0;
  std::string kv_cache_dtype_;  // the ranks' (written by Load before publishing)
  std::unique_ptr<Scheduler> scheduler_;  // set once loaded, by the group thread
  // scheduler_ as other threads may see it: null until it is fully built.
  std::atomic<Scheduler*> published_scheduler_{nullptr};
  std::mutex mu_;
  std::vector<std::unique_ptr<grpc::ClientContext>> stream_contexts_;  // one per rank; guarded by mu_
  std::thread thread_;
};

const char* StateName(ReplicaGroup::State s);

}  // namespace tessera::coordinator
