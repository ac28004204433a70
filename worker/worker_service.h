// The worker's gRPC service: LoadModel, then one Steps stream at a time.
#pragma once

#include <atomic>

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "common/progress.h"
#include "common/tls.h"
#include "parallel/communicator.h"
#include "tessera/v1/internal/worker.grpc.pb.h"
#include "kvstore/host_tier.h"
#include "models/weight_cache.h"
#include "worker/step_executor.h"

namespace tessera::worker {

struct WorkerOptions {
  int threads = 0;  // kernel threads; 0 = every core this process may use
  int cuda_device = -1;  // >= 0: run on that CUDA device (--device cuda:N); else the CPU
  // A GPU worker's tensor/expert-parallel collectives go over Gloo (TCP, staged through
  // host memory) instead of NCCL (--gpu-collectives gloo): GPUs NCCL cannot join, or
  // several ranks sharing one GPU.
  bool gloo_on_gpu = false;
  std::string coordinator_address;  // its rendezvous store joins tensor-parallel ranks
  std::string host = "127.0.0.1";   // address peers reach this worker's collectives at
  // Small all-reduces spin instead of sleeping (parallel::GlooOptions::busy_poll):
  // much faster tensor parallelism, for workers that have a core to themselves.
  bool busy_poll = false;
  // Testing and demos: sleep this long before every step, so that tests can act while
  // requests are in flight (kill a worker mid-stream, drain under load).
  int step_delay_ms = 0;
  // No log lines about loading the weights (progress every few seconds, time and rate).
  bool quiet = false;
  // When set, LoadModel takes only model folders inside this directory (symbolic
  // links resolved): whoever reaches the worker cannot make it read other files.
  std::string model_root;
  // The packed-weight cache's folder (models/weight_cache.h; CPU workers); empty: none.
  std::string weight_cache_dir;
  // Mutual TLS on the internal plane (common/tls.h): the channel to the coordinator's
  // rendezvous store, and the connections to peers' block servers. Null: plaintext.
  std::shared_ptr<const tls::Material> internal_tls;
  std::shared_ptr<const tls::SocketTls> data_plane_tls;
};

// OK when `model_dir` (after resolving symbolic links and "..") lies inside `root`, or
// `root` is empty; PERMISSION_DENIED naming both otherwise.
absl::Status CheckModelRoot(const std::string& root, const std::string& model_dir);

class WorkerService final : public v1::internal::Worker::Service {
 public:
  explicit WorkerService(const WorkerOptions& options) : options_(options) {}

  grpc::Status LoadModel(grpc::ServerContext* context, const v1::internal::LoadModelRequest* request,
                         v1::internal::LoadModelResponse* response) override;
  grpc::Status Steps(grpc::ServerContext* context,
                     grpc::ServerReaderWriter<v1::internal::StepResponse, v1::internal::StepRequest>* stream) override;

  // The host tier outlives reloads; the block server serves it and heartbeats report it.
  kvstore::HostTier& host_tier() { return host_tier_; }
  // Block bytes this worker fetched from peers over the KV data plane.
  int64_t kv_bytes_fetched() const { return kv_bytes_fetched_; }

  // Set when a LoadModel failed in a way no retry can fix (this worker cannot run the
  // model it was given: no such device, a build without CUDA, a folder outside its
  // --model-root): the worker should exit with it rather than rejoin and fail again.
  std::optional<std::string> fatal_error() const;

 private:
  // The model and KV pool the request asks for, on this worker's device; the
  // communicators of a sharded group first (CPU).
  // `progress` is told as the weights load.
  absl::StatusOr<std::unique_ptr<Engine>> LoadEngine(const v1::internal::LoadModelRequest& request,
                                                     ByteProgress* progress,
                                                     models::WeightCacheUse* weight_cache);

  WorkerOptions options_;
  std::mutex mu_;  // one LoadModel or Steps stream at a time
  mutable std::mutex fatal_mu_;
  std::optional<std::string> fatal_error_;  // guarded by fatal_mu_
  kvstore::HostTier host_tier_;
  std::atomic<int64_t> kv_bytes_fetched_{0};  // the executors' fetches from peers
  // The group's collectives (null when the group is one worker); the model in
  // executor_ uses them, so they are declared first and destroyed last.
  std::unique_ptr<parallel::Communicator> tp_comm_;
  std::unique_ptr<parallel::Communicator> all_comm_;
  std::unique_ptr<StepExecutor> executor_;
};

}  // namespace tessera::worker
