// The scheduler's plans, step by step, with the worker's answers simulated: chunked
// prefill under the token budget, FCFS admission by free blocks, decode deltas,
// preemption and recompute, and finishing.
#include <map>

#include <gtest/gtest.h>

#include "coordinator/scheduler.h"
#include "coordinator/step_codec.h"

namespace tessera::coordinator {
namespace {

// Plans the next step and encodes it as the replica group sends it.
bool Build(Scheduler& s, v1::internal::StepRequest* step) {
  StepPlan plan;
  const bool any = s.BuildStep(&plan);
  EncodeStep(plan, 0, step);
  return any;
}

SchedulerOptions Options(int block_size, int32_t num_blocks, int max_step_tokens, int max_running) {
  SchedulerOptions options;
  options.cache.block_size = block_size;
  options.cache.num_blocks = num_blocks;
  options.max_step_tokens = max_step_tokens;
  options.max_running = max_running;
  return options;
}

std::shared_ptr<Request> MakeRequest(const std::string& id, std::vector<int32_t> prompt, int max_tokens) {
  v1::SamplingParams p;
  p.set_max_tokens(max_tokens);
  p.set_temperature(0);
  return std::make_shared<Request>(id, std::move(prompt), p, /*seed=*/1, /*skip_special_tokens=*/true,
                                   /*tokenizer=*/nullptr, StopContext{4096, {}});
}

std::shared_ptr<Request> MakeRequest(const std::string& id, int prompt_len, int max_tokens) {
  return MakeRequest(id, std::vector<int32_t>(prompt_len, 7), max_tokens);
}

// Answers a step as a one-rank group would: token 42 for every sequence that asked to
// sample, and every fetch completed (or every one failed).
std::vector<v1::internal::StepResponse> Answer(const v1::internal::StepRequest& step, bool fetches_ok = true) {
  v1::internal::StepResponse r;
  for (const auto& f : step.fetches()) {
    auto* result = r.add_fetched();
    result->set_fetch_id(f.fetch_id());
    result->set_ok(fetches_ok);
  }
  auto sample = [&](uint64_t id) {
    auto* t = r.add_sampled();
    t->set_seq_id(id);
    t->set_token_id(42);
  };
  for (const auto& s : step.new_sequences()) {
    if (s.sample()) sample(s.seq_id());
  }
  for (const auto& c : step.continued()) {
    if (c.sample()) sample(c.seq_id());
  }
  return {r};
}

int TokensIn(const v1::internal::StepRequest& step) {
  int n = 0;
  for (const auto& s : step.new_sequences()) n += s.tokens_size();
  for (const auto& c : step.continued()) n += c.tokens_size();
  return n;
}

TEST(SchedulerTest, ChunkedPrefillThenDecodeDeltas) {
  Scheduler s(Options(/*block_size=*/4, /*num_blocks=*/64, /*max_step_tokens=*/8, /*max_running=*/8));
  auto r = MakeRequest("a", 10, 4);
  s.Enqueue(r);
  v1::internal::StepRequest step;
  ASSERT_TRUE(Build(s, &step));
  ASSERT_EQ(step.new_sequences_size(), 1);
  EXPECT_EQ(step.new_sequences(0).tokens_size(), 8);  // the budget
  EXPECT_FALSE(step.new_sequences(0).sample());
  EXPECT_EQ(step.new_sequences(0).block_table_size(), 3);  // 10 prompt tokens + 1, in blocks of 4
  s.ApplyStep(Answer(step));
  ASSERT_TRUE(Build(s, &step));
  ASSERT_EQ(step.continued_size(), 1);
  EXPECT_EQ(step.continued(0).tokens_size(), 2);  // the rest of the prompt
  EXPECT_TRUE(step.continued(0).sample());
  s.ApplyStep(Answer(step));
  EXPECT_EQ(r->generated(), std::vector<int32_t>{42});
  // Decode: one token per step (tokens 10, 11, 12); a new block only when one fills.
  std::vector<int> new_blocks;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Build(s, &step));
    ASSERT_EQ(step.continued_size(), 1);
    EXPECT_EQ(step.continued(0).tokens_size(), 1);
    EXPECT_EQ(step.continued(0).tokens(0), 42);
    new_blocks.push_back(step.continued(0).new_blocks_size());
    s.ApplyStep(Answer(step));
  }
  EXPECT_EQ(new_blocks, (std::vector<int>{0, 0, 1}));  // token 12 starts block 4
  EXPECT_TRUE(r->finished());  // max_tokens = 4
  EXPECT_EQ(s.num_running(), 0);
  EXPECT_EQ(s.num_free_blocks(), 64);
  ASSERT_TRUE(Build(s, &step));  // tells the worker to drop it
  EXPECT_EQ(step.finished_size(), 1);
}

TEST(SchedulerTest, AdmitsInArrivalOrderWhileBlocksLast) {
  Scheduler s(Options(4, /*num_blocks=*/5, /*max_step_tokens=*/64, 8));
  auto a = MakeRequest("a", 8, 4), b = MakeRequest("b", 8, 4), c = MakeRequest("c", 2, 4);
  s.Enqueue(a);
  s.Enqueue(b);
  s.Enqueue(c);
  v1::internal::StepRequest step;
  ASSERT_TRUE(Build(s, &step));
  // a takes 3 blocks (8 + 1 tokens); b needs 3 of the 2 left, and c must wait behind b.
  ASSERT_EQ(step.new_sequences_size(), 1);
  EXPECT_EQ(s.num_waiting(), 2);
  EXPECT_EQ(TokensIn(step), 8);
}

TEST(SchedulerTest, PreemptsTheNewestAndRecomputesItExactly) {
  Scheduler s(Options(4, /*num_blocks=*/8, /*max_step_tokens=*/64, 8));
  auto a = MakeRequest("a", 7, 20), b = MakeRequest("b", 7, 20);
  s.Enqueue(a);
  s.Enqueue(b);
  v1::internal::StepRequest step;
  ASSERT_TRUE(Build(s, &step));
  ASSERT_EQ(step.new_sequences_size(), 2);  // 2 blocks each
  s.ApplyStep(Answer(step));
  // Decoding fills the pool; b (the newest) is preempted, a goes on.
  bool preempted = false;
  for (int i = 0; i < 12 && !preempted; ++i) {
    ASSERT_TRUE(Build(s, &step));
    preempted = step.finished_size() > 0;
    s.ApplyStep(Answer(step));
  }
  ASSERT_TRUE(preempted);
  EXPECT_EQ(s.preemptions(), 1);
  EXPECT_EQ(s.num_waiting(), 1);
  EXPECT_FALSE(b->finished());
  const size_t b_generated = b->generated().size();
  // When a finishes, b comes back as a new sequence of its prompt plus its output.
  while (!a->finished()) {
    ASSERT_TRUE(Build(s, &step));
    s.ApplyStep(Answer(step));
  }
  bool readmitted = false;
  for (int i = 0; i < 4 && !readmitted; ++i) {
    ASSERT_TRUE(Build(s, &step));
    for (const auto& n : step.new_sequences()) {
      readmitted = true;
      EXPECT_EQ(n.tokens_size(), static_cast<int>(7 + b_generated));
      EXPECT_EQ(n.prompt_len(), 7);
    }
    s.ApplyStep(Answer(step));
  }
  EXPECT_TRUE(readmitted);
}

// A second request with the same 64-token prefix computes only its new tokens.
TEST(SchedulerTest, PrefixCacheServesRepeatedPrefixes) {
  SchedulerOptions options = Options(16, 64, 512, 8);
  options.cache.model_identity = "test-model";
  Scheduler s(options);
  std::vector<int32_t> prefix(64);
  for (int i = 0; i < 64; ++i) prefix[i] = 100 + i;
  std::vector<int32_t> a_prompt = prefix, b_prompt = prefix;
  a_prompt.insert(a_prompt.end(), {1, 2, 3});
  b_prompt.insert(b_prompt.end(), {4, 5, 6, 7, 8});
  auto a = MakeRequest("a", a_prompt, 2), b = MakeRequest("b", b_prompt, 2);
  s.Enqueue(a);
  v1::internal::StepRequest step;
  while (!a->finished()) {
    ASSERT_TRUE(Build(s, &step));
    s.ApplyStep(Answer(step));
  }
  s.Enqueue(b);
  ASSERT_TRUE(Build(s, &step));
  ASSERT_EQ(step.new_sequences_size(), 1);
  EXPECT_EQ(step.new_sequences(0).context_len(), 64);  // four cached blocks
  EXPECT_EQ(step.new_sequences(0).tokens_size(), 5);   // only the new tokens
  EXPECT_EQ(step.new_sequences(0).prefix_tokens_size(), 64);
  EXPECT_EQ(b->usage().cached_tokens(), 64);
  EXPECT_EQ(s.cache_counters().hits, 4);
  // A request whose whole prompt is cached still computes its last token.
  auto c = MakeRequest("c", prefix, 2);
  s.ApplyStep(Answer(step));
  s.Enqueue(c);
  bool admitted = false;
  for (int i = 0; i < 4 && !admitted; ++i) {
    ASSERT_TRUE(Build(s, &step));
    for (const auto& n : step.new_sequences()) {
      admitted = true;
      EXPECT_EQ(n.context_len(), 48);
      EXPECT_EQ(n.tokens_size(), 16);
    }
    s.ApplyStep(Answer(step));
  }
  EXPECT_TRUE(admitted);
}

// An embedding request's last chunk asks for its embedding, which ends it; a
// last-token one reuses a cached prefix, a mean-pooled one computes every token.
TEST(SchedulerTest, EmbeddingRequestsEndWithTheirEmbedding) {
  SchedulerOptions options = Options(16, 64, 40, 8);
  options.cache.model_identity = "test-model";
  Scheduler s(options);
  std::vector<int32_t> prompt(64);
  for (int i = 0; i < 64; ++i) prompt[i] = 100 + i;
  v1::internal::StepRequest step;
  auto embed = [&](models::Pooling pooling) {
    auto r = MakeRequest("e", prompt, 1);
    r->set_pooling(pooling);
    s.Enqueue(r);
    int computed = 0, steps = 0;
    for (; !r->finished() && steps < 8; ++steps) {
      EXPECT_TRUE(Build(s, &step));
      std::vector<v1::internal::StepResponse> answer = Answer(step);
      answer[0].clear_sampled();
      for (const auto& n : step.new_sequences()) {
        EXPECT_EQ(n.pooling(), pooling == models::Pooling::kMean ? v1::internal::POOLING_MEAN
                                                                 : v1::internal::POOLING_LAST);
        computed += n.tokens_size();
      }
      for (const auto& c : step.continued()) computed += c.tokens_size();
      const bool last = (step.new_sequences_size() > 0 && step.new_sequences(0).sample()) ||
                        (step.continued_size() > 0 && step.continued(0).sample());
      if (last) {
        auto* e = answer[0].add_embeddings();
        e->set_seq_id(step.new_sequences_size() > 0 ? step.new_sequences(0).seq_id() : step.continued(0).seq_id());
        e->add_values(0.6f);
        e->add_values(0.8f);
      }
      s.ApplyStep(answer);
    }
    std::vector<RequestEvent> events = r->WaitEvents(std::chrono::milliseconds(0));
    EXPECT_FALSE(events.empty());
    if (!events.empty()) {
      EXPECT_EQ(events.back().embedding, std::vector<float>({0.6f, 0.8f}));
      EXPECT_EQ(events.back().finish, v1::FINISH_REASON_STOP);
    }
    EXPECT_EQ(s.num_running(), 0);
    return computed;
  };
  EXPECT_EQ(embed(models::Pooling::kLast), 64);  // over two steps (a budget of 40)
  EXPECT_EQ(embed(models::Pooling::kLast), 16);  // the cached prefix but its last block
  EXPECT_EQ(embed(models::Pooling::kMean), 64);  // every token, though they are cached
  EXPECT_EQ(s.num_free_blocks(), 64);            // every block free or cached (evictable)
}

// With a host tier every full block is written through to it, so a device pool too
// small to keep a prefix cached loses nothing: the prefix comes back up (swap in).
TEST(SchedulerTest, HostTierKeepsEvictedPrefixes) {
  SchedulerOptions options = Options(16, /*num_blocks=*/8, 512, 8);
  options.cache.model_identity = "test-model";
  options.cache.num_host_blocks = 16;
  Scheduler s(options);
  std::vector<int32_t> prefix(64);
  for (int i = 0; i < 64; ++i) prefix[i] = 100 + i;
  std::vector<int32_t> with_tail = prefix;
  with_tail.push_back(1);
  auto run = [&](std::shared_ptr<Request> r, v1::internal::StepRequest* first_step) {
    s.Enqueue(r);
    bool first = true;
    v1::internal::StepRequest step;
    while (!r->finished()) {
      EXPECT_TRUE(Build(s, &step));
      if (first) *first_step = step;
      first = false;
      s.ApplyStep(Answer(step));
    }
  };
  v1::internal::StepRequest first;
  run(MakeRequest("a", with_tail, 2), &first);  // 4 full blocks, copied down once full
  EXPECT_EQ(s.cache_counters().swapped_out, 4);
  // A different 100-token prompt needs 7 of the 8 device blocks: the cached ones are
  // evicted there, with no copy (the host tier has them already).
  std::vector<int32_t> other(100, 3);
  run(MakeRequest("b", other, 2), &first);
  EXPECT_EQ(first.swap_out_size(), 0);
  // The prefix comes back up from the host tier.
  auto c = MakeRequest("c", with_tail, 2);
  run(c, &first);
  EXPECT_GE(first.swap_in_size(), 3);
  ASSERT_EQ(first.new_sequences_size(), 1);
  EXPECT_EQ(first.new_sequences(0).context_len(), 64);
  EXPECT_EQ(c->usage().cached_tokens(), 64);
  EXPECT_GE(s.cache_counters().swapped_in, 3);
}

// A prefix the cluster-wide index finds on another worker is fetched in one step (the
// sequence waits for it), then computed after it; a failed fetch is recomputed.
TEST(SchedulerTest, RemotePrefixesAreFetchedBeforeComputing) {
  for (bool fetch_ok : {true, false}) {
    SCOPED_TRACE(fetch_ok ? "fetch succeeds" : "fetch fails");
    kvstore::BlockIndex index;
    SchedulerOptions options = Options(16, /*num_blocks=*/16, 512, 8);
    options.cache.model_identity = "test-model";
    options.cache.block_index = &index;
    Scheduler s(options);
    std::vector<int32_t> prompt(65);
    for (int i = 0; i < 65; ++i) prompt[i] = 200 + i;
    auto r = MakeRequest("a", prompt, 1);
    const std::vector<kvstore::BlockHash> hashes = s.PrefixHashes(*r);
    ASSERT_EQ(hashes.size(), 4u);
    // Another worker, holding every KV head, has the first three blocks.
    v1::internal::KvEvents held;
    held.set_kv_address("10.0.0.9:7000");
    held.set_head_begin(0);
    held.set_head_end(2);
    held.set_num_kv_heads(2);
    held.set_snapshot(true);
    held.set_last_seq(3);
    for (int i = 0; i < 3; ++i) {
      auto* e = held.add_events();
      e->set_stored(true);
      e->set_hash(hashes[i].data(), hashes[i].size());
    }
    index.Apply("w9", held);

    s.Enqueue(r);
    v1::internal::StepRequest step;
    ASSERT_TRUE(Build(s, &step));
    ASSERT_EQ(step.fetches_size(), 1);
    EXPECT_EQ(step.fetches(0).hashes_size(), 3);
    ASSERT_EQ(step.fetches(0).peers_size(), 1);
    EXPECT_EQ(step.fetches(0).peers(0).address(), "10.0.0.9:7000");
    EXPECT_EQ(step.new_sequences_size(), 0);  // not computed before its prefix is there
    s.ApplyStep(Answer(step, fetch_ok));
    ASSERT_TRUE(Build(s, &step));
    ASSERT_EQ(step.new_sequences_size(), 1);
    EXPECT_EQ(step.new_sequences(0).context_len(), fetch_ok ? 48 : 0);
    EXPECT_EQ(step.new_sequences(0).tokens_size(), fetch_ok ? 17 : 65);
    EXPECT_EQ(s.cache_counters().remote_fetched, fetch_ok ? 3 : 0);
    EXPECT_EQ(s.cache_counters().remote_fetch_failures, fetch_ok ? 0 : 1);
    s.ApplyStep(Answer(step));
    EXPECT_EQ(r->usage().cached_tokens(), fetch_ok ? 48 : 0);
  }
}

TEST(SchedulerTest, AbortedRequestsLeaveAtTheNextStep) {
  Scheduler s(Options(4, 16, 64, 8));
  auto r = MakeRequest("a", 4, 100);
  s.Enqueue(r);
  v1::internal::StepRequest step;
  ASSERT_TRUE(Build(s, &step));
  s.ApplyStep(Answer(step));
  r->Abort();
  ASSERT_TRUE(Build(s, &step));
  EXPECT_EQ(step.finished_size(), 1);
  EXPECT_EQ(step.continued_size(), 0);
  EXPECT_TRUE(r->finished());
  EXPECT_EQ(s.num_free_blocks(), 16);
}

TEST(SchedulerTest, TakeAllReturnsEverythingForRecompute) {
  Scheduler s(Options(4, 16, 64, 8));
  s.Enqueue(MakeRequest("a", 4, 10));
  v1::internal::StepRequest step;
  ASSERT_TRUE(Build(s, &step));
  s.Enqueue(MakeRequest("b", 4, 10));
  EXPECT_EQ(s.TakeAll().size(), 2u);
  EXPECT_EQ(s.num_free_blocks(), 16);
  EXPECT_FALSE(Build(s, &step));
}

// A one-rank worker, simulated: each sequence's block table and tokens as the steps
// send them, and what every KV slot holds (the position and token written there).
// Running a step writes each computed token's slot and checks that every slot its
// attention reads (the window before it, and a sink-window's sinks) still holds that
// sequence's token: a block released too early and reused by another sequence shows as
// a wrong slot.
class SimulatedWorker {
 public:
  SimulatedWorker(int block_size, int window) : block_size_(block_size), window_(window) {}

  std::vector<v1::internal::StepResponse> Run(const v1::internal::StepRequest& step) {
    v1::internal::StepResponse r;
    for (uint64_t id : step.finished()) sequences_.erase(id);
    for (const auto& n : step.new_sequences()) {
      Sequence& s = sequences_[n.seq_id()];
      s.retention = {n.kv_window(), n.sink_tokens()};
      s.table.assign(n.block_table().begin(), n.block_table().end());
      s.tokens.assign(n.prefix_tokens().begin(), n.prefix_tokens().end());
      Compute(n.seq_id(), s, n.tokens(), n.sample(), r);
    }
    for (const auto& c : step.continued()) {
      Sequence& s = sequences_[c.seq_id()];
      s.table.insert(s.table.end(), c.new_blocks().begin(), c.new_blocks().end());
      Compute(c.seq_id(), s, c.tokens(), c.sample(), r);
    }
    return {r};
  }

 private:
  struct Sequence {
    std::vector<int32_t> table, tokens;
    models::KvRetention retention;  // its request's KV policy
  };
  using Slot = std::pair<int32_t, int64_t>;  // block, offset

  Slot SlotOf(const Sequence& s, int64_t pos) const {
    return {s.table.at(static_cast<size_t>(pos / block_size_)), pos % block_size_};
  }

  void Compute(uint64_t id, Sequence& s, const google::protobuf::RepeatedField<int32_t>& tokens, bool sample,
               v1::internal::StepResponse& r) {
    for (int32_t t : tokens) {
      const int64_t pos = static_cast<int64_t>(s.tokens.size());
      s.tokens.push_back(t);
      slots_[SlotOf(s, pos)] = {pos, t};
      const int64_t lo = s.retention.Within(window_).FirstWindowToken(pos);
      for (int64_t q = 0; q <= pos; ++q) {
        if (q >= s.retention.sink_tokens && q < lo) continue;  // neither a sink nor in the window
        const std::pair<int64_t, int32_t> want{q, s.tokens[static_cast<size_t>(q)]};
        EXPECT_EQ(slots_[SlotOf(s, q)], want) << "sequence " << id << " reading position " << q << " at " << pos;
      }
    }
    if (sample) {
      auto* t = r.add_sampled();
      t->set_seq_id(id);
      t->set_token_id(static_cast<int32_t>(1000 * id + s.tokens.size()));  // its own tokens, unlike others'
    }
  }

  const int block_size_, window_;
  std::map<uint64_t, Sequence> sequences_;
  std::map<Slot, std::pair<int64_t, int32_t>> slots_;
};

// Runs the scheduler against the simulated worker until nothing is left.
void RunToTheEnd(Scheduler& s, SimulatedWorker& worker) {
  v1::internal::StepRequest step;
  for (int i = 0; i < 10000 && Build(s, &step); ++i) s.ApplyStep(worker.Run(step));
}

// Mistral-like: every layer windowed. Sequences 4x longer than the whole pool run to
// their end, several at once, because the blocks the window has passed are released.
TEST(SchedulerTest, ASlidingWindowReleasesPassedBlocksSoSequencesOutrunThePool) {
  for (const bool prefix_caching : {false, true}) {
    SCOPED_TRACE(prefix_caching ? "with prefix caching" : "without prefix caching");
    SchedulerOptions options = Options(/*block_size=*/4, /*num_blocks=*/6, /*max_step_tokens=*/16, 8);
    options.kv_window = 6;
    if (prefix_caching) options.cache.model_identity = "test-model";
    Scheduler s(options);
    SimulatedWorker worker(4, options.kv_window);
    std::vector<std::shared_ptr<Request>> requests;
    for (int r = 0; r < 3; ++r) {
      std::vector<int32_t> prompt(18);
      for (int i = 0; i < 18; ++i) prompt[i] = prefix_caching ? i : 100 * r + i;  // shared prefixes, or none
      requests.push_back(MakeRequest(std::to_string(r), prompt, /*max_tokens=*/80));
      s.Enqueue(requests.back());
    }
    RunToTheEnd(s, worker);
    for (const auto& r : requests) {
      EXPECT_TRUE(r->finished());
      EXPECT_EQ(r->generated().size(), 80u);  // 98 tokens: 4x the pool's 24
    }
    EXPECT_EQ(s.num_free_blocks(), 6);
  }
}

// A request's sink-window policy on a model without a window: sequences 3x longer than
// the pool run to their end, the sinks' block kept (and read) all along; a plain window
// policy likewise. One sequence never holds more than its sinks', its window's and a
// step's blocks.
TEST(SchedulerTest, RequestKvPoliciesReleaseTheMiddleAndKeepTheSinks) {
  for (const models::KvRetention policy : {models::KvRetention{6, 3}, models::KvRetention{6, 0}}) {
    SCOPED_TRACE(models::KvPolicyName(policy));
    const int bs = 4, step_tokens = 4;
    SchedulerOptions options = Options(bs, /*num_blocks=*/16, step_tokens, 8);
    options.cache.model_identity = "test-model";
    Scheduler s(options);
    SimulatedWorker worker(bs, /*window=*/0);
    auto alone = MakeRequest("alone", 18, 200);
    alone->set_kv_retention(policy);
    s.Enqueue(alone);
    v1::internal::StepRequest step;
    int32_t least_free = s.num_blocks();
    for (int i = 0; i < 1000 && Build(s, &step); ++i) {
      least_free = std::min(least_free, s.num_free_blocks());  // the step's blocks are held now
      s.ApplyStep(worker.Run(step));
    }
    EXPECT_EQ(alone->generated().size(), 200u);  // 218 tokens: 3x the pool's 64
    EXPECT_GE(least_free, s.num_blocks() - (policy.SinkBlocks(bs) + (policy.window - 1 + step_tokens) / bs + 2));
    // Several at once, with shared prefixes.
    std::vector<std::shared_ptr<Request>> requests;
    for (int r = 0; r < 3; ++r) {
      requests.push_back(MakeRequest(std::to_string(r), 18, /*max_tokens=*/200));
      requests.back()->set_kv_retention(policy);
      s.Enqueue(requests.back());
    }
    RunToTheEnd(s, worker);
    for (const auto& r : requests) EXPECT_EQ(r->generated().size(), 200u);
    EXPECT_EQ(s.num_free_blocks(), s.num_blocks());
  }
}

// Without a window the same pool ends such a sequence early (out of cache).
TEST(SchedulerTest, WithoutAWindowASequenceEndsWhenThePoolIsFull) {
  Scheduler s(Options(4, 6, 16, 8));
  SimulatedWorker worker(4, /*window=*/1 << 20);
  auto r = MakeRequest("a", 18, 80);
  s.Enqueue(r);
  RunToTheEnd(s, worker);
  EXPECT_TRUE(r->finished());
  EXPECT_LE(r->generated().size(), 7u);  // 24 slots, 18 of them the prompt
  EXPECT_EQ(s.num_free_blocks(), 6);
}

// A window the pool cannot hold (with one more token) is refused at admission.
TEST(SchedulerTest, APoolSmallerThanTheWindowEndsTheRequest) {
  SchedulerOptions options = Options(4, 2, 16, 8);
  options.kv_window = 6;  // needs 3 blocks of 4
  Scheduler s(options);
  SimulatedWorker worker(4, options.kv_window);
  auto r = MakeRequest("a", 3, 10);
  s.Enqueue(r);
  RunToTheEnd(s, worker);
  EXPECT_TRUE(r->finished());
  EXPECT_TRUE(r->generated().empty());
  EXPECT_EQ(s.num_free_blocks(), 2);
}

}  // namespace
}  // namespace tessera::coordinator
