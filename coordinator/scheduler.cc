#include "coordinator/scheduler.h"

#include <algorithm>
#include <map>
#include <optional>
#include <string>

#include "common/log.h"

namespace tessera::coordinator {

Scheduler::Scheduler(const SchedulerOptions& options) : options_(options), cache_(options.cache) {}

void Scheduler::Enqueue(std::shared_ptr<Request> request) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiting_.Push(std::move(request));
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

int64_t Scheduler::outstanding_work() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t work = running_work_;
  waiting_.ForEach([&work](const std::shared_ptr<Request>& r) { work += r->remaining_work(); });
  return work;
}

std::vector<kvstore::BlockHash> Scheduler::PrefixHashes(const Request& request) const {
  std::vector<int32_t> tokens = request.prompt();
  tokens.insert(tokens.end(), request.generated().begin(), request.generated().end());
  return cache_.PrefixHashes(tokens, request.cache_salt());
}

void Scheduler::FetchRemotePrefix(Sequence& seq, std::span<const kvstore::BlockHash> rest, StepPlan* plan) {
  std::optional<kvstore::KvCacheManager::FetchPlan> fetch = cache_.PlanFetch(seq.kv, rest);
  if (fetch) plan->fetches.push_back({seq.id, std::move(*fetch)});
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
  const int64_t cached = cache_.FinishFetch(seq.kv, ok);
  if (ok) seq.cached = seq.computed = cached;  // the sequence starts after the fetched blocks
  seq.request->set_cached_tokens(static_cast<int32_t>(std::min<int64_t>(seq.cached, seq.prompt_len)));
}

void Scheduler::AdoptHostBlocks(std::span<const std::pair<int32_t, kvstore::BlockHash>> blocks) {
  cache_.AdoptHostBlocks(blocks);
}

void Scheduler::PublishCounters() {
  int64_t work = 0;
  for (const Sequence& seq : running_) work += seq.request->remaining_work();
  running_work_ = work;
  running_count_ = static_cast<int>(running_.size());
}

int64_t Scheduler::ChunkLimit(const Sequence& seq, int64_t budget) const {
  const int64_t chunk = std::min(static_cast<int64_t>(seq.tokens.size()) - seq.computed, budget);
  if (!seq.kept.bounded()) return chunk;
  // The blocks from the window's first one on: the pool's worth of them, less the sinks'.
  const int bs = cache_.block_size();
  const int64_t blocks = cache_.num_blocks() - seq.kept.SinkBlocks(bs);
  const int64_t end = (seq.kept.FirstWindowToken(seq.computed) / bs + blocks) * bs;
  return std::min(chunk, end - seq.computed);
}

void Scheduler::ReleasePassed(Sequence& seq) {
  cache_.ReleaseBefore(seq.kv, seq.kept.FirstWindowToken(seq.computed), seq.kept.sink_tokens);
}

void Scheduler::Release(Sequence& seq) {
  cache_.Free(seq.kv);
  if (seq.worker_knows) finished_.push_back(seq.id);
}

void Scheduler::Preempt(size_t index) {
  ++preemptions_;
  Sequence& seq = running_[index];
  Release(seq);
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiting_.PushFront(seq.request);  // recomputed first among its tenant's
  }
  running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(index));
}

bool Scheduler::Reserve(size_t index, int64_t tokens) {
  while (!cache_.EnsureCapacity(running_[index].kv, tokens).ok()) {
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

bool Scheduler::MakeRoomFor(const Request& request) {
  // A running request of a higher priority value gives way: the newest of the worst.
  std::optional<size_t> victim;
  for (size_t i = 0; i < running_.size(); ++i) {
    const int32_t p = running_[i].request->priority();
    if (p > request.priority() && (!victim || p >= running_[*victim].request->priority())) victim = i;
  }
  if (!victim) {
    // Equal priorities: the tenants with work here (running or waiting) share the batch's
    // slots by weight. Under its share, `request` takes the slot of the newest sequence
    // of the tenant furthest over its own.
    std::map<std::string, int> running;
    std::map<std::string, double> weight;
    for (const Sequence& seq : running_) {
      ++running[seq.request->tenant()];
      weight[seq.request->tenant()] = seq.request->share_weight();
    }
    std::vector<std::string> waiting_tenants;
    {
      std::lock_guard<std::mutex> lock(mu_);
      waiting_tenants = waiting_.Tenants();
    }
    weight[request.tenant()] = request.share_weight();
    for (const std::string& t : waiting_tenants) weight.try_emplace(t, 1.0);
    double total = 0;
    for (const auto& [t, w] : weight) total += w;
    const auto share = [&](const std::string& t) { return options_.max_running * weight[t] / total; };
    if (running[request.tenant()] + 1 > std::max(1.0, share(request.tenant()))) return false;
    std::string over;
    double most = 0;
    for (const auto& [t, n] : running) {
      const double excess = n / weight[t];
      if (t != request.tenant() && n > share(t) && excess > most) {
        over = t;
        most = excess;
      }
    }
    if (most == 0) return false;
    for (size_t i = running_.size(); i-- > 0;) {
      const Request& r = *running_[i].request;
      if (r.tenant() == over && r.priority() == request.priority()) {
        victim = i;
        break;
      }
    }
  }
  if (!victim) return false;
  Preempt(*victim);
  return true;
}

bool Scheduler::BuildStep(StepPlan* plan) {
  *plan = StepPlan();
  int budget = options_.max_step_tokens;

  // Aborted requests, and those whose consumer found a stop string, leave first.
  for (size_t i = 0; i < running_.size();) {
    if (running_[i].request->leaving()) {
      running_[i].request->Leave();
      Release(running_[i]);
      running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiting_.RemoveIf([](const std::shared_ptr<Request>& r) {
      if (r->leaving()) r->Leave();
      return r->leaving();
    });
  }

  // Running sequences: a decode token, or the next prefill chunk.
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Sequence& seq = running_[i];
    const int64_t chunk = ChunkLimit(seq, budget);
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

  // Admissions in the waiting queue's order (priority, then tenants' fair share), while
  // the whole sequence fits.
  while (budget > 0) {
    std::shared_ptr<Request> request;
    {
      std::lock_guard<std::mutex> lock(mu_);
      request = waiting_.Next();
    }
    if (request == nullptr) break;
    if (static_cast<int>(running_.size()) >= options_.max_running && !MakeRoomFor(*request)) break;
    Sequence seq;
    seq.request = request;
    seq.tokens = request->prompt();
    seq.tokens.insert(seq.tokens.end(), request->generated().begin(), request->generated().end());
    seq.prompt_len = static_cast<int32_t>(request->prompt().size());
    seq.kv.salt = request->cache_salt();
    seq.kept = request->kv_retention().Within(options_.kv_window);
    const int bs = cache_.block_size();
    const int64_t blocks_needed = (static_cast<int64_t>(seq.tokens.size()) + bs) / bs;
    const bool windowed = seq.kept.bounded();
    // With a window the pool must hold the sinks', the window's blocks and one token
    // more (then ChunkLimit is never 0); without one, the whole sequence.
    if ((windowed ? seq.kept.MinBlocks(bs) : blocks_needed) > cache_.num_blocks()) {
      // Grown past the whole pool while it ran (then was preempted): it can never run
      // again here, and must not block the queue.
      request->FinishOutOfCache();
      std::lock_guard<std::mutex> lock(mu_);
      waiting_.PopNext();
      continue;
    }
    // Hashed once by the router, unless the request has grown since (a preemption).
    // A mean-pooled embedding computes every token (it sums their states): no prefix.
    const std::vector<kvstore::BlockHash> prefix =
        request->pooling() == models::Pooling::kMean ? std::vector<kvstore::BlockHash>()
        : request->prefix_hashes_tokens() == seq.tokens.size() ? request->prefix_hashes()
                                                                : cache_.PrefixHashes(seq.tokens, seq.kv.salt);
    seq.cached = seq.computed = cache_.TakeCachedPrefix(seq.kv, prefix);
    // The whole sequence and its next token; with a window, what its first chunk reads.
    ReleasePassed(seq);
    const int64_t first_chunk = ChunkLimit(seq, budget);
    const int64_t hold = windowed ? seq.cached + first_chunk : static_cast<int64_t>(seq.tokens.size()) + 1;
    if (!cache_.EnsureCapacity(seq.kv, hold).ok()) {
      cache_.Free(seq.kv);  // not enough free blocks yet: in order, later requests wait too
      break;
    }
    {
      // Its work moves from the queue to the running count at once, so routing (which
      // reads both under mu_) never sees it in neither.
      std::lock_guard<std::mutex> lock(mu_);
      waiting_.PopNext();
      running_work_ += request->remaining_work();
    }
    seq.id = next_seq_id_++;
    // Fetched blocks land in the sequence's next blocks, which a window does not hold
    // ahead: windowed sequences compute what they miss.
    if (!windowed) FetchRemotePrefix(seq, std::span(prefix).subspan(seq.kv.hashes.size()), plan);
    if (seq.kv.fetching.empty()) {
      request->set_cached_tokens(static_cast<int32_t>(std::min<int64_t>(seq.cached, seq.prompt_len)));
    }
    // A sequence whose prefix is being fetched is computed from the next step on.
    seq.planned = seq.kv.fetching.empty() ? first_chunk : 0;
    budget -= static_cast<int>(seq.planned);
    running_.push_back(std::move(seq));
  }

  // The diff: tier moves first (the worker copies before computing), then sequences.
  plan->moves = cache_.TakeMoves();
  plan->finished = std::exchange(finished_, {});
  for (Sequence& seq : running_) {
    if (seq.planned == 0) continue;
    const std::span<const int32_t> tokens(seq.tokens);
    const std::span<const int32_t> blocks(seq.kv.table.blocks());
    const bool sample = seq.computed + seq.planned == static_cast<int64_t>(seq.tokens.size());
    if (!seq.worker_knows) {
      plan->new_sequences.push_back({seq.id, tokens.subspan(seq.computed, seq.planned), blocks,
                                     tokens.first(seq.computed), &seq.request->sampling(), seq.prompt_len,
                                     seq.request->seed(), sample, seq.request->pooling(),
                                     seq.request->kv_retention()});
      seq.worker_knows = true;
    } else {
      plan->continued.push_back({seq.id, tokens.subspan(seq.computed, seq.planned), blocks.subspan(seq.blocks_sent),
                                 sample});
    }
    seq.blocks_sent = blocks.size();
  }
  PublishCounters();
  return !plan->empty();
}

void Scheduler::ApplyStep(std::span<const v1::internal::StepResponse> responses) {
  for (Sequence& seq : running_) {
    if (!seq.kv.fetching.empty()) FinishFetch(seq, responses);
    seq.computed += seq.planned;
    seq.planned = 0;
    cache_.RegisterFullBlocks(seq.kv, seq.tokens, seq.computed);
    ReleasePassed(seq);
  }
  const auto running = [&](uint64_t id) {
    return std::find_if(running_.begin(), running_.end(), [&](const Sequence& s) { return s.id == id; });
  };
  for (const auto& sampled : responses[0].sampled()) {
    auto it = running(sampled.seq_id());
    if (it == running_.end()) continue;
    it->tokens.push_back(sampled.token_id());
    const bool done = it->request->OnToken(sampled.token_id(), sampled.has_logprob() ? &sampled.logprob() : nullptr);
    if (done) {
      Release(*it);
      running_.erase(it);
    }
  }
  // An embedding ends its request: its blocks stay in the prefix cache like any other's.
  for (const auto& embedded : responses[0].embeddings()) {
    auto it = running(embedded.seq_id());
    if (it == running_.end()) continue;
    it->request->OnEmbedding({embedded.values().begin(), embedded.values().end()});
    Release(*it);
    running_.erase(it);
  }
  PublishCounters();
}

std::vector<std::shared_ptr<Request>> Scheduler::TakeAll() {
  std::vector<std::shared_ptr<Request>> all;
  for (Sequence& seq : running_) {
    cache_.Free(seq.kv);
    all.push_back(seq.request);
  }
  running_.clear();
  finished_.clear();
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::shared_ptr<Request>> waiting = waiting_.TakeAll();
    all.insert(all.end(), waiting.begin(), waiting.end());
  }
  PublishCounters();
  return all;
}

}  // namespace tessera::coordinator
