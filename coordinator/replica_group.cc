#include "coordinator/replica_group.h"

#include <grpcpp/grpcpp.h>

#include <cstring>
#include <map>

#include "absl/strings/str_format.h"
#include "common/log.h"
#include "coordinator/step_codec.h"

namespace tessera::coordinator {

const char* StateName(ReplicaGroup::State s) {
  switch (s) {
    case ReplicaGroup::State::kLoading: return "LOADING";
    case ReplicaGroup::State::kReady: return "READY";
    case ReplicaGroup::State::kDraining: return "DRAINING";
    case ReplicaGroup::State::kReleased: return "RELEASED";
    case ReplicaGroup::State::kDead: return "DEAD";
  }
  return "?";
}

ReplicaGroup::ReplicaGroup(std::string id, std::vector<Rank> ranks, GroupOptions options, LostCallback on_lost)
    : id_(std::move(id)),
      ranks_(std::move(ranks)),
      options_(std::move(options)),
      on_lost_(std::move(on_lost)) {}

ReplicaGroup::~ReplicaGroup() {
  stop_ = true;
  Kill();
  if (thread_.joinable()) thread_.join();
}

void ReplicaGroup::Start() { thread_ = std::thread([this] { Run(); }); }

bool ReplicaGroup::Enqueue(std::shared_ptr<Request> request) {
  Scheduler* s = published_scheduler_.load(std::memory_order_acquire);
  if (state_ != State::kReady || s == nullptr) return false;
  s->Enqueue(std::move(request));
  return true;
}

void ReplicaGroup::Drain() {
  State expected = State::kReady;
  Scheduler* s = published_scheduler_.load(std::memory_order_acquire);
  if (state_.compare_exchange_strong(expected, State::kDraining) && s) s->Notify();
  expected = State::kLoading;
  state_.compare_exchange_strong(expected, State::kDraining);
}

void ReplicaGroup::Kill() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& ctx : stream_contexts_) ctx->TryCancel();
  }
  stop_ = true;
  if (Scheduler* s = published_scheduler_.load(std::memory_order_acquire)) s->Notify();
}

int ReplicaGroup::num_waiting() const {
  Scheduler* s = published_scheduler_.load(std::memory_order_acquire);
  return s ? s->num_waiting() : 0;
}

std::vector<kvstore::BlockHash> ReplicaGroup::PrefixHashes(const Request& request) const {
  Scheduler* s = published_scheduler_.load(std::memory_order_acquire);
  return s ? s->PrefixHashes(request) : std::vector<kvstore::BlockHash>{};
}

GroupLoad ReplicaGroup::RoutingLoad(const Request& request) const {
  Scheduler* s = published_scheduler_.load(std::memory_order_acquire);
  if (s == nullptr) return {};
  GroupLoad load{s->CachedTokens(request.prefix_hashes()), s->outstanding_work(),
                 static_cast<int64_t>(s->num_blocks()) * options_.block_size - 1};
  const models::KvRetention kept = request.kv_retention().Within(options_.kv_window);
  if (kept.bounded()) {
    load.max_sequence_tokens = kept.MinBlocks(options_.block_size) <= s->num_blocks() ? INT64_MAX - 1 : 0;
  }
  return load;
}

bool ReplicaGroup::RunsKvPolicies() const {
  if (published_scheduler_.load(std::memory_order_acquire) == nullptr) return false;
  return std::all_of(worker_kernels_.begin(), worker_kernels_.end(),
                     [](const std::string& k) { return k.starts_with("cpu/"); });
}

v1::GroupInfo ReplicaGroup::Info() const {
  v1::GroupInfo info;
  info.set_id(id_);
  info.set_state(StateName(state_));
  for (const Rank& r : ranks_) info.add_workers(r.worker_id);
  info.set_weight_bytes(weight_bytes_);
  if (Scheduler* s = published_scheduler_.load(std::memory_order_acquire)) {
    info.set_running_requests(s->num_running());
    info.set_waiting_requests(s->num_waiting());
    info.set_total_kv_blocks(s->num_blocks());
    info.set_free_kv_blocks(s->num_free_blocks());
    const Scheduler::CacheCounters cache = s->cache_counters();
    info.set_prefix_cache_lookups(cache.lookups);
    info.set_prefix_cache_hits(cache.hits);
    info.set_prefix_cache_evictions(cache.evictions);
    info.set_cached_blocks(cache.cached_blocks);
    info.set_swapped_out_blocks(cache.swapped_out);
    info.set_swapped_in_blocks(cache.swapped_in);
    info.set_remote_fetched_blocks(cache.remote_fetched);
    info.set_remote_fetch_failures(cache.remote_fetch_failures);
    info.set_preemptions(s->preemptions());
    info.set_steps(steps_);
    info.set_step_seconds(static_cast<double>(step_nanoseconds_) * 1e-9);
    for (const std::string& k : worker_kernels_) info.add_worker_kernels(k);
    for (const std::string& c : worker_weight_cache_) info.add_worker_weight_cache(c);
    info.set_load_seconds(load_seconds_);
    info.set_weight_load_seconds(weight_load_seconds_);
    info.set_load_bytes(load_bytes_);
    info.set_kv_cache_dtype(kv_cache_dtype_);
    info.set_kv_block_bytes(kv_block_bytes_);
  }
  return info;
}

bool ReplicaGroup::Load() {
  // Every rank loads at once: their rendezvous waits for all of them.
  const size_t n = ranks_.size();
  const auto start = std::chrono::steady_clock::now();
  std::vector<grpc::Status> statuses(n);
  std::vector<v1::internal::LoadModelResponse> responses(n);
  std::vector<std::thread> loaders;
  for (size_t i = 0; i < n; ++i) {
    loaders.emplace_back([&, i] {
      auto stub = v1::internal::Worker::NewStub(tls::Dial(ranks_[i].address, options_.internal_tls.get()));
      v1::internal::LoadModelRequest req;
      req.set_model_dir(options_.model_dir);
      req.set_block_size(options_.block_size);
      req.set_num_kv_blocks(options_.num_kv_blocks);
      req.set_kv_memory_bytes(options_.kv_memory_bytes);
      req.set_kv_cache_dtype(options_.kv_cache_dtype);
      req.set_tp_size(options_.tp);
      req.set_tp_rank(static_cast<int>(i) % options_.tp);
      req.set_ep_size(options_.ep);
      req.set_ep_rank(static_cast<int>(i) / options_.tp);
      req.set_group_key(id_);
      req.set_collective_timeout_ms(options_.collective_timeout_ms);
      req.set_num_host_blocks(options_.num_host_kv_blocks);
      req.set_batch_invariant(options_.batch_invariant);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
      statuses[i] = stub->LoadModel(&ctx, req, &responses[i]);
    });
  }
  for (auto& t : loaders) t.join();
  int32_t blocks = 0, host_blocks = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!statuses[i].ok()) {
      log::Info() << ranks_[i].worker_id << " failed to load: " << statuses[i].error_message();
      return false;
    }
    blocks = i == 0 ? responses[i].num_kv_blocks() : std::min(blocks, responses[i].num_kv_blocks());
    host_blocks = i == 0 ? responses[i].num_host_blocks() : std::min(host_blocks, responses[i].num_host_blocks());
    if (responses[i].kv_cache_dtype() != responses[0].kv_cache_dtype()) {  // a GPU and a CPU rank under auto
      log::Info() << id_ << " cannot serve: its ranks keep KV caches of " << responses[0].kv_cache_dtype() << " and "
                  << responses[i].kv_cache_dtype() << " (set --kv-cache-dtype)";
      return false;
    }
  }
  kv_cache_dtype_ = responses[0].kv_cache_dtype();
  SchedulerOptions so;
  so.cache.block_size = options_.block_size;
  so.cache.num_blocks = blocks;  // every rank must hold every block
  so.max_step_tokens = options_.max_step_tokens;
  so.max_running = options_.max_running;
  so.kv_window = options_.kv_window;
  if (options_.prefix_caching) so.cache.model_identity = options_.model_identity;
  so.cache.kv_dtype = kv_cache_dtype_;  // the hash root: blocks of two dtypes never mix
  so.cache.num_host_blocks = options_.prefix_caching ? host_blocks : 0;  // the host tier holds cached blocks
  if (options_.prefix_caching) so.cache.block_index = options_.block_index;
  scheduler_ = std::make_unique<Scheduler>(so);
  // Host-tier blocks every rank kept (a coordinator restart): cached again.
  std::map<std::pair<int32_t, std::string>, size_t> ranks_holding;
  for (const auto& r : responses) {
    for (const auto& b : r.host_blocks()) ++ranks_holding[{b.block(), b.hash()}];
  }
  std::vector<std::pair<int32_t, kvstore::BlockHash>> kept;
  for (const auto& [block_and_hash, count] : ranks_holding) {
    kvstore::BlockHash h;
    if (count != n || block_and_hash.second.size() != h.size()) continue;
    std::memcpy(h.data(), block_and_hash.second.data(), h.size());
    kept.emplace_back(block_and_hash.first, h);
  }
  scheduler_->AdoptHostBlocks(kept);
  weight_bytes_ = responses[0].weight_bytes();
  kv_block_bytes_ = responses[0].kv_block_bytes();
  for (const auto& r : responses) {
    worker_kernels_.push_back(r.kernels());
    worker_weight_cache_.push_back(r.weight_cache());
    weight_load_seconds_ = std::max(weight_load_seconds_, r.load_seconds());
    load_bytes_ += r.load_bytes();
  }
  load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log::Info() << id_ << " loaded in " << absl::StrFormat("%.2f", load_seconds_) << " s (weights "
              << absl::StrFormat("%.2f s, %.2f GB", weight_load_seconds_, static_cast<double>(load_bytes_) / 1e9)
              << "), KV cache " << kv_cache_dtype_ << ", " << blocks << " blocks";
  published_scheduler_.store(scheduler_.get(), std::memory_order_release);
  return true;
}

void ReplicaGroup::Run() {
  if (!Load()) {
    state_ = State::kDead;
    on_lost_(this, {});
    return;
  }
  State expected = State::kLoading;
  state_.compare_exchange_strong(expected, State::kReady);  // may be DRAINING already
  Loop();
}

void ReplicaGroup::Loop() {
  using Stream = grpc::ClientReaderWriter<v1::internal::StepRequest, v1::internal::StepResponse>;
  std::vector<std::unique_ptr<v1::internal::Worker::Stub>> stubs;
  std::vector<std::unique_ptr<Stream>> streams;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Rank& r : ranks_) {
      stubs.push_back(v1::internal::Worker::NewStub(tls::Dial(r.address, options_.internal_tls.get())));
      stream_contexts_.push_back(std::make_unique<grpc::ClientContext>());
      streams.push_back(stubs.back()->Steps(stream_contexts_.back().get()));
    }
  }
  StepPlan plan;
  v1::internal::StepRequest step;
  std::vector<v1::internal::StepResponse> responses(ranks_.size());
  uint64_t step_id = 0;
  bool lost = false;
  size_t broken = 0;  // the stream that failed, when lost
  while (!stop_ && !lost) {
    if (state_ == State::kDraining && scheduler_->num_running() == 0 && scheduler_->num_waiting() == 0) {
      state_ = State::kReleased;
      break;
    }
    if (!scheduler_->BuildStep(&plan)) {
      scheduler_->WaitForWork(stop_);
      continue;
    }
    EncodeStep(plan, ++step_id, &step);
    const auto sent = std::chrono::steady_clock::now();
    for (size_t i = 0; i < streams.size() && !lost; ++i) {
      lost = !streams[i]->Write(step);
      broken = i;
    }
    for (size_t i = 0; i < streams.size() && !lost; ++i) {
      lost = !streams[i]->Read(&responses[i]);
      broken = i;
    }
    if (lost) break;
    step_nanoseconds_ += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - sent).count();
    ++steps_;
    scheduler_->ApplyStep(responses);
  }
  if (state_ == State::kReleased) {
    for (auto& s : streams) {
      s->WritesDone();
      s->Finish();
    }
    return;
  }
  // A rank is gone (or the group was stopped: shutdown, a silent rank): cancel the
  // others' streams so no survivor waits on it. The broken stream's own status says
  // why (after the cancel every stream says "Cancelled").
  if (lost) {
    const grpc::Status status = streams[broken]->Finish();
    log::Warning() << "lost " << id_ << " (" << ranks_[broken].worker_id << ": "
                   << (status.ok() ? "its stream ended" : status.error_message()) << ")";
  } else {
    log::Info() << id_ << " stopped";
  }
  Kill();
  for (size_t i = 0; i < streams.size(); ++i) {
    if (!lost || i != broken) streams[i]->Finish();
  }
  state_ = State::kDead;
  on_lost_(this, scheduler_->TakeAll());
}

}  // namespace tessera::coordinator
