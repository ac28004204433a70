#include "coordinator/scheduler.h"

#include <algorithm>

#include "common/log.h"

namespace tessera::coordinator {

Scheduler::Scheduler(const SchedulerOptions& options)
    : options_(options),
      allocator_(options.num_blocks),
      host_allocator_(options.num_host_blocks),
      free_blocks_(options.num_blocks) {}

void Scheduler::Enqueue(std::shared_ptr<Request> request) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiting_.push_back(std::move(request));
  }
  cv_.notify_all();
}

void Scheduler::WaitForWork(const std::atomic<bool>& stop) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(100),
               [&] { return stop || !waiting_.empty() || !running_.empty() || !finished_.empty(); });
}

int Scheduler::num_waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(waiting_.size());
}

int Scheduler::num_running() const { return running_count_; }
int32_t Scheduler::num_free_blocks() const { return free_blocks_; }

int64_t Scheduler::outstanding_work() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t work = running_work_;
  for (const auto& r : waiting_) work += r->remaining_work();
  return work;
}

Scheduler::CacheCounters Scheduler::cache_counters() const {
  return {cache_lookups_,          cache_hits_,           cache_evictions_,
          cached_blocks_,          swapped_out_published_, swapped_in_published_,
          remote_fetched_published_, remote_fetch_failures_published_};
}

kvstore::BlockHash Scheduler::Root(const Request& request) const {
  return kvstore::RootHash(options_.model_identity, options_.kv_dtype, request.cache_salt());
}

std::vector<kvstore::BlockHash> Scheduler::PrefixHashes(const Request& request) const {
  if (options_.model_identity.empty()) return {};
  const int bs = options_.block_size;
  std::vector<int32_t> tokens = request.prompt();
  tokens.insert(tokens.end(), request.generated().begin(), request.generated().end());
  // The last token is always computed (it yields the logits to sample from), so the
  // block holding it is never taken from the cache.
  std::vector<kvstore::BlockHash> hashes;
  kvstore::BlockHash parent = Root(request);
  for (int64_t b = 0; b < (static_cast<int64_t>(tokens.size()) - 1) / bs; ++b) {
    parent = kvstore::ChainHash(parent, std::span<const int32_t>(tokens).subspan(b * bs, bs));
    hashes.push_back(parent);
  }
  return hashes;
}

int64_t Scheduler::CachedTokens(std::span<const kvstore::BlockHash> hashes) const {
  std::lock_guard<std::mutex> lock(cache_mu_);
  int64_t cached = 0;
  for (const kvstore::BlockHash& h : hashes) {
    if (!allocator_.Contains(h) && !host_allocator_.Contains(h)) break;
    cached += options_.block_size;
  }
  return cached;
}

int64_t Scheduler::TakeCachedPrefix(Sequence& seq, std::span<const kvstore::BlockHash> prefix) {
  for (const kvstore::BlockHash& h : prefix) {
    std::optional<int32_t> block = allocator_.Lookup(h);
    if (!block && options_.num_host_blocks > 0) {
      // A hit in the host tier moves the block back up: a device block, a copy.
      if (std::optional<int32_t> host = host_allocator_.Lookup(h)) {
        absl::StatusOr<int32_t> device = allocator_.Allocate();
        SwapOutEvicted();  // what that allocation evicted is on the host before the next lookup
        if (device.ok()) {
          allocator_.Register(*device, h);
          swap_in_.push_back({*device, *host, h});  // the host reference goes once the step is built
          ++swapped_in_;
          block = *device;
        } else {
          host_allocator_.Release(*host);
        }
      }
    }
    if (!block) break;
    seq.table.Append(*block);
    seq.hashes.push_back(h);
  }
  return static_cast<int64_t>(seq.hashes.size()) * options_.block_size;
}

void Scheduler::FetchRemotePrefix(Sequence& seq, std::span<const kvstore::BlockHash> rest,
                                  v1::internal::StepRequest* step) {
  if (options_.block_index == nullptr || rest.empty()) return;
  const kvstore::BlockIndex::Found found = options_.block_index->LongestPrefix(rest);
  if (found.blocks == 0) return;
  auto* fetch = step->add_fetches();
  fetch->set_fetch_id(seq.id);
  for (int64_t i = 0; i < found.blocks; ++i) {
    fetch->add_hashes(rest[i].data(), rest[i].size());
    fetch->add_blocks(seq.table.blocks()[seq.hashes.size() + i]);
    seq.fetching.push_back(rest[i]);
  }
  for (const kvstore::BlockPeer& p : found.peers) {
    auto* peer = fetch->add_peers();
    peer->set_address(p.address);
    peer->set_head_begin(p.heads.begin);
    peer->set_head_end(p.heads.end);
  }
}

void Scheduler::FinishFetch(Sequence& seq, std::span<const v1::internal::StepResponse> responses) {
  bool ok = !responses.empty();
  for (const auto& r : responses) {
    auto it = std::find_if(r.fetched().begin(), r.fetched().end(),
                           [&](const v1::internal::FetchResult& f) { return f.fetch_id() == seq.id; });
    if (it == r.fetched().end() || !it->ok()) {
      if (it != r.fetched().end()) log::Warning() << "KV fetch failed, recomputing: " << it->error();
      ok = false;
    }
  }
  if (ok) {
    // The blocks hold their content now: cached, and the sequence starts after them.
    for (const kvstore::BlockHash& h : seq.fetching) {
      allocator_.Register(seq.table.blocks()[seq.hashes.size()], h);
      seq.hashes.push_back(h);
    }
    seq.cached = static_cast<int64_t>(seq.hashes.size()) * options_.block_size;
    seq.computed = seq.cached;
    remote_fetched_ += static_cast<int64_t>(seq.fetching.size());
  } else {
    ++remote_fetch_failures_;  // the blocks stay allocated and are computed instead
  }
  seq.request->set_cached_tokens(static_cast<int32_t>(std::min<int64_t>(seq.cached, seq.prompt_len)));
  seq.fetching.clear();
}

void Scheduler::AdoptHostBlocks(std::span<const std::pair<int32_t, kvstore::BlockHash>> blocks) {
  std::lock_guard<std::mutex> cache_lock(cache_mu_);
  if (options_.num_host_blocks > 0) host_allocator_.AdoptCached(blocks);
}

void Scheduler::RegisterFullBlocks(Sequence& seq) {
  if (options_.model_identity.empty()) return;
  const int bs = options_.block_size;
  const int64_t full = seq.computed / bs;
  for (int64_t b = static_cast<int64_t>(seq.hashes.size()); b < full; ++b) {
    const kvstore::BlockHash parent = b == 0 ? Root(*seq.request) : seq.hashes.back();
    seq.hashes.push_back(kvstore::ChainHash(parent, std::span<const int32_t>(seq.tokens).subspan(b * bs, bs)));
    allocator_.Register(seq.table.blocks()[b], seq.hashes.back());
    CopyToHost(seq.table.blocks()[b], seq.hashes.back());  // written through
  }
}

void Scheduler::CopyToHost(int32_t block, const kvstore::BlockHash& hash) {
  if (options_.num_host_blocks == 0 || host_allocator_.Contains(hash)) return;
  absl::StatusOr<int32_t> host = host_allocator_.Allocate();  // may drop the host's oldest
  (void)host_allocator_.TakeEvicted();  // the host tier is the last: its evictions are dropped
  if (!host.ok()) return;  // every host block is being swapped in this step
  host_allocator_.Register(*host, hash);
  host_allocator_.Release(*host);  // cached there, unreferenced
  swap_out_.push_back({block, *host, hash});
  ++swapped_out_;
}

void Scheduler::PublishCounters() {
  int64_t work = 0;
  for (const Sequence& seq : running_) work += seq.request->remaining_work();
  running_work_ = work;
  running_count_ = static_cast<int>(running_.size());
  free_blocks_ = allocator_.num_free();
  cache_lookups_ = allocator_.lookups();
  cache_hits_ = allocator_.hits();
  cache_evictions_ = allocator_.evictions();
  cached_blocks_ = allocator_.num_cached();
  swapped_out_published_ = swapped_out_;
  swapped_in_published_ = swapped_in_;
  remote_fetched_published_ = remote_fetched_;
  remote_fetch_failures_published_ = remote_fetch_failures_;
}

void Scheduler::SwapOutEvicted() {
  for (const auto& [block, hash] : allocator_.TakeEvicted()) CopyToHost(block, hash);
}

void Scheduler::Release(Sequence& seq) {
  seq.table.Free(allocator_);
  if (seq.worker_knows) finished_.push_back(seq.id);
}

void Scheduler::Preempt(size_t index) {
  ++preemptions_;
  Sequence& seq = running_[index];
  Release(seq);
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiting_.push_front(seq.request);  // recomputed first, before newer arrivals
  }
  running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(index));
}

bool Scheduler::Reserve(size_t index, int64_t tokens) {
  while (!running_[index].table.EnsureCapacity(tokens, options_.block_size, allocator_).ok()) {
    const size_t newest = running_.size() - 1;
    if (newest == index) {
      if (running_.size() == 1) {
        // Alone and still out of blocks: the pool cannot hold this sequence.
        running_[index].request->FinishOutOfCache();
        Release(running_[index]);
        running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(index));
      } else {
        Preempt(index);
      }
      return false;
    }
    Preempt(newest);
  }
  return true;
}

bool Scheduler::BuildStep(v1::internal::StepRequest* step) {
  std::lock_guard<std::mutex> cache_lock(cache_mu_);
  step->Clear();
  int budget = options_.max_step_tokens;

  // Aborted requests leave first.
  for (size_t i = 0; i < running_.size();) {
    if (running_[i].request->aborted()) {
      running_[i].request->FinishAborted();
      Release(running_[i]);
      running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if ((*it)->aborted()) {
        (*it)->FinishAborted();
        it = waiting_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Running sequences: a decode token, or the next prefill chunk.
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Sequence& seq = running_[i];
    const int64_t remaining = static_cast<int64_t>(seq.tokens.size()) - seq.computed;
    const int64_t chunk = std::min<int64_t>(remaining, budget);
    seq.planned = 0;
    if (chunk <= 0) {
      ++i;
      continue;
    }
    if (!Reserve(i, seq.computed + chunk)) continue;  // running_[i] is another sequence now
    running_[i].planned = chunk;
    budget -= static_cast<int>(chunk);
    ++i;
  }

  // Admissions, first come first served, while the whole sequence fits.
  while (budget > 0 && static_cast<int>(running_.size()) < options_.max_running) {
    std::shared_ptr<Request> request;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (waiting_.empty()) break;
      request = waiting_.front();
    }
    Sequence seq;
    seq.request = request;
    seq.tokens = request->prompt();
    seq.tokens.insert(seq.tokens.end(), request->generated().begin(), request->generated().end());
    seq.prompt_len = static_cast<int32_t>(request->prompt().size());
    const int64_t blocks_needed = (static_cast<int64_t>(seq.tokens.size()) + options_.block_size) / options_.block_size;
    if (blocks_needed > allocator_.num_blocks()) {
      // Grown past the whole pool while it ran (then was preempted): it can never run
      // again here, and must not block the queue.
      request->FinishOutOfCache();
      std::lock_guard<std::mutex> lock(mu_);
      waiting_.pop_front();
      continue;
    }
    const std::vector<kvstore::BlockHash> prefix = PrefixHashes(*request);
    seq.cached = TakeCachedPrefix(seq, prefix);
    if (!seq.table.EnsureCapacity(static_cast<int64_t>(seq.tokens.size()) + 1, options_.block_size, allocator_).ok()) {
      seq.table.Free(allocator_);  // not enough free blocks yet: FCFS, later requests wait too
      break;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      waiting_.pop_front();
    }
    seq.computed = seq.cached;
    seq.id = next_seq_id_++;
    FetchRemotePrefix(seq, std::span(prefix).subspan(seq.hashes.size()), step);
    if (seq.fetching.empty()) {
      request->set_cached_tokens(static_cast<int32_t>(std::min<int64_t>(seq.cached, seq.prompt_len)));
    }
    // A sequence whose prefix is being fetched is computed from the next step on.
    seq.planned = seq.fetching.empty()
                      ? std::min<int64_t>(static_cast<int64_t>(seq.tokens.size()) - seq.computed, budget)
                      : 0;
    budget -= static_cast<int>(seq.planned);
    running_.push_back(std::move(seq));
  }

  // The diff: tier moves first (the worker copies before computing), then sequences.
  SwapOutEvicted();
  for (const HostCopy& copy : swap_out_) {
    auto* c = step->add_swap_out();
    c->set_from(copy.device);
    c->set_to(copy.host);
    c->set_hash(copy.hash.data(), copy.hash.size());
  }
  for (const HostCopy& copy : swap_in_) {
    auto* c = step->add_swap_in();
    c->set_from(copy.host);
    c->set_to(copy.device);
    host_allocator_.Release(copy.host);
  }
  swap_out_.clear();
  swap_in_.clear();
  step->mutable_finished()->Add(finished_.begin(), finished_.end());
  finished_.clear();
  for (Sequence& seq : running_) {
    if (seq.planned == 0) continue;
    const auto first = seq.tokens.begin() + seq.computed;
    const bool sample = seq.computed + seq.planned == static_cast<int64_t>(seq.tokens.size());
    const auto& blocks = seq.table.blocks();
    if (!seq.worker_knows) {
      auto* s = step->add_new_sequences();
      s->set_seq_id(seq.id);
      s->mutable_tokens()->Add(first, first + seq.planned);
      s->mutable_block_table()->Add(blocks.begin(), blocks.end());
      *s->mutable_sampling() = seq.request->sampling();
      s->set_prompt_len(seq.prompt_len);
      s->set_seed(seq.request->seed());
      s->set_sample(sample);
      s->set_context_len(seq.computed);
      s->mutable_prefix_tokens()->Add(seq.tokens.begin(), first);
      seq.worker_knows = true;
    } else {
      auto* c = step->add_continued();
      c->set_seq_id(seq.id);
      c->mutable_tokens()->Add(first, first + seq.planned);
      c->mutable_new_blocks()->Add(blocks.begin() + static_cast<std::ptrdiff_t>(seq.blocks_sent), blocks.end());
      c->set_sample(sample);
    }
    seq.blocks_sent = blocks.size();
  }
  PublishCounters();
  return step->new_sequences_size() + step->continued_size() + step->finished_size() + step->swap_out_size() +
             step->swap_in_size() + step->fetches_size() >
         0;
}

void Scheduler::ApplyStep(std::span<const v1::internal::StepResponse> responses) {
  std::lock_guard<std::mutex> cache_lock(cache_mu_);
  for (Sequence& seq : running_) {
    if (!seq.fetching.empty()) FinishFetch(seq, responses);
    seq.computed += seq.planned;
    seq.planned = 0;
    RegisterFullBlocks(seq);
  }
  for (const auto& sampled : responses[0].sampled()) {
    auto it = std::find_if(running_.begin(), running_.end(), [&](const Sequence& s) { return s.id == sampled.seq_id(); });
    if (it == running_.end()) continue;
    it->tokens.push_back(sampled.token_id());
    const bool done = it->request->OnToken(sampled.token_id(), sampled.has_logprob() ? &sampled.logprob() : nullptr);
    if (done) {
      Release(*it);
      running_.erase(it);
    }
  }
  PublishCounters();
}

std::vector<std::shared_ptr<Request>> Scheduler::TakeAll() {
  std::lock_guard<std::mutex> cache_lock(cache_mu_);
  std::vector<std::shared_ptr<Request>> all;
  for (Sequence& seq : running_) {
    seq.table.Free(allocator_);
    all.push_back(seq.request);
  }
  running_.clear();
  finished_.clear();
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.insert(all.end(), waiting_.begin(), waiting_.end());
    waiting_.clear();
  }
  PublishCounters();
  return all;
}

}  // namespace tessera::coordinator
