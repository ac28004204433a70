#include "worker/step_executor.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "models/generate.h"

namespace tessera::worker {

// The coordinator's frontend resolved every default before the request was queued.
kernels::SamplingConfig ToSamplingConfig(const v1::SamplingParams& p) {
  kernels::SamplingConfig c;
  c.temperature = p.temperature();
  c.top_p = p.top_p();
  c.top_k = p.top_k();
  c.min_p = p.min_p();
  c.repetition_penalty = p.repetition_penalty();
  c.presence_penalty = p.presence_penalty();
  c.frequency_penalty = p.frequency_penalty();
  c.logprobs = p.logprobs();
  c.top_logprobs = p.top_logprobs();
  return c;
}

StepExecutor::StepExecutor(std::unique_ptr<Engine> engine, kvstore::HostTier* host,
                           std::atomic<int64_t>* kv_bytes_fetched, std::shared_ptr<const tls::SocketTls> data_plane_tls)
    : engine_(std::move(engine)),
      host_(host),
      kv_bytes_fetched_(kv_bytes_fetched),
      fetcher_(std::move(data_plane_tls)) {}

void StepExecutor::Fetch(const v1::internal::StepRequest& step, v1::internal::StepResponse* response) {
  const kvstore::KvLayout& layout = engine_->kv_layout();
  std::vector<std::byte> staging;  // the blocks arrive in host memory, then go to the device pool
  for (const auto& f : step.fetches()) {
    std::vector<kvstore::BlockHash> hashes(f.hashes_size());
    staging.resize(static_cast<size_t>(f.hashes_size() * layout.block_bytes()));
    std::vector<std::byte*> blocks;
    for (int i = 0; i < f.hashes_size(); ++i) {
      std::memcpy(hashes[i].data(), f.hashes(i).data(), hashes[i].size());
      blocks.push_back(staging.data() + i * layout.block_bytes());
    }
    std::vector<kvstore::BlockPeer> peers;
    for (const auto& p : f.peers()) peers.push_back({p.address(), {p.head_begin(), p.head_end()}});
    absl::Status s = fetcher_.Fetch(peers, hashes, layout, engine_->kv_heads(), blocks);
    if (s.ok()) {
      *kv_bytes_fetched_ += static_cast<int64_t>(staging.size());
      std::vector<Engine::BlockIn> copies;
      for (int i = 0; i < f.hashes_size(); ++i) copies.push_back({blocks[i], f.blocks(i)});
      s = engine_->WriteBlocks(copies);
    }
    auto* result = response->add_fetched();
    result->set_fetch_id(f.fetch_id());
    result->set_ok(s.ok());
    if (!s.ok()) result->set_error(std::string(s.message()));
  }
}

models::Pooling ToPooling(v1::internal::Pooling pooling) {
  switch (pooling) {
    case v1::internal::POOLING_LAST: return models::Pooling::kLast;
    case v1::internal::POOLING_MEAN: return models::Pooling::kMean;
    default: return models::Pooling::kNone;
  }
}

void StepExecutor::PoolEmbeddings(std::span<const Item> items, v1::internal::StepResponse* response) {
  if (pooled_.empty()) return;  // no sequence of the step pools
  const int64_t hidden = engine_->spec().hidden_size;
  const float* row = pooled_.data();  // one per pooling sequence, in batch order
  for (const Item& it : items) {
    Sequence& seq = sequences_[it.id];
    if (seq.pooling == models::Pooling::kNone) continue;
    seq.pooled.resize(static_cast<size_t>(hidden), 0.0f);
    for (int64_t j = 0; j < hidden; ++j) {
      seq.pooled[j] = seq.pooling == models::Pooling::kMean ? seq.pooled[j] + row[j] : row[j];
    }
    row += hidden;
    if (!it.sample) continue;
    auto* out = response->add_embeddings();
    out->set_seq_id(it.id);
    const std::vector<float> embedding = models::FinishEmbedding(seq.pooled, seq.computed, seq.pooling);
    out->mutable_values()->Add(embedding.begin(), embedding.end());
  }
}

absl::StatusOr<v1::internal::StepResponse> StepExecutor::Run(const v1::internal::StepRequest& step) {
  // Check the whole diff before changing anything.
  for (const auto& s : step.new_sequences()) {
    if (sequences_.contains(s.seq_id())) {
      return absl::FailedPreconditionError(absl::StrCat("sequence ", s.seq_id(), " already exists"));
    }
    if (s.tokens().empty()) return absl::InvalidArgumentError("new sequence without tokens");
    if (s.context_len() != s.prefix_tokens_size()) {
      return absl::InvalidArgumentError("a cached prefix must list its tokens");
    }
    if (s.pooling() == v1::internal::POOLING_MEAN && s.context_len() != 0) {
      return absl::InvalidArgumentError("a mean-pooled sequence computes every token: no cached prefix");
    }
  }
  for (const auto& c : step.continued()) {
    if (!sequences_.contains(c.seq_id())) {
      return absl::FailedPreconditionError(absl::StrCat("unknown sequence ", c.seq_id()));
    }
    if (c.tokens().empty()) return absl::InvalidArgumentError("continued sequence without tokens");
  }

  auto device_block = [&](int32_t b) { return b >= 0 && b < engine_->num_blocks(); };
  const int32_t host_blocks = host_->num_blocks();
  for (const auto& copies : {&step.swap_out(), &step.swap_in()}) {
    const bool out = copies == &step.swap_out();
    for (const auto& c : *copies) {
      const int32_t device = out ? c.from() : c.to(), host = out ? c.to() : c.from();
      if (!device_block(device) || host < 0 || host >= host_blocks) {
        return absl::InvalidArgumentError("block copy outside the pools");
      }
      if (out && c.hash().size() != sizeof(kvstore::BlockHash)) {
        return absl::InvalidArgumentError("a copy to the host tier must name its block hash");
      }
    }
  }
  for (const auto& f : step.fetches()) {
    if (f.hashes_size() != f.blocks_size() || !std::all_of(f.blocks().begin(), f.blocks().end(), device_block) ||
        !std::all_of(f.hashes().begin(), f.hashes().end(),
                     [](const std::string& h) { return h.size() == sizeof(kvstore::BlockHash); })) {
      return absl::InvalidArgumentError("a fetch needs one device block per 32-byte block hash");
    }
  }

  // Tier moves and fetches come first: a block swapped out may be reused by this
  // step's compute, and a fetched one is read by the next step's. Each direction goes
  // as one batch of copies.
  std::vector<kvstore::HostTier::Stored> stored;
  std::vector<int32_t> from_device, to_device, from_host;
  for (const auto& c : step.swap_out()) {
    kvstore::HostTier::Stored s{c.to(), {}};
    std::memcpy(s.hash.data(), c.hash().data(), s.hash.size());
    stored.push_back(s);
    from_device.push_back(c.from());
  }
  for (const auto& c : step.swap_in()) {
    from_host.push_back(c.from());
    to_device.push_back(c.to());
  }
  if (!stored.empty()) {
    RETURN_IF_ERROR(host_->Store(stored, [&](std::span<std::byte* const> hosts) {
      std::vector<Engine::BlockOut> copies;
      for (size_t i = 0; i < hosts.size(); ++i) copies.push_back({from_device[i], hosts[i]});
      return engine_->ReadBlocks(copies);
    }));
  }
  if (!from_host.empty()) {
    RETURN_IF_ERROR(host_->Load(from_host, [&](std::span<const std::byte* const> hosts) {
      std::vector<Engine::BlockIn> copies;
      for (size_t i = 0; i < hosts.size(); ++i) copies.push_back({hosts[i], to_device[i]});
      return engine_->WriteBlocks(copies);
    }));
  }
  v1::internal::StepResponse response;
  response.set_step_id(step.step_id());
  Fetch(step, &response);
  for (uint64_t id : step.finished()) sequences_.erase(id);
  for (const auto& s : step.new_sequences()) {
    Sequence seq;
    seq.block_table.assign(s.block_table().begin(), s.block_table().end());
    seq.prompt_len = s.prompt_len();
    // A cached prefix: its K/V are already in the blocks.
    seq.Computed({s.prefix_tokens().data(), static_cast<size_t>(s.prefix_tokens_size())});
    seq.seed = s.seed();
    seq.sampling = ToSamplingConfig(s.sampling());
    seq.pooling = ToPooling(s.pooling());
    seq.retention = {s.kv_window(), s.sink_tokens()};
    sequences_.emplace(s.seq_id(), std::move(seq));
  }
  for (const auto& c : step.continued()) {
    auto& table = sequences_[c.seq_id()].block_table;
    table.insert(table.end(), c.new_blocks().begin(), c.new_blocks().end());
  }

  // The flattened batch, in message order: new sequences, then continued ones.
  std::vector<Item> items;
  for (const auto& s : step.new_sequences()) items.push_back({s.seq_id(), &s.tokens(), s.sample()});
  for (const auto& c : step.continued()) items.push_back({c.seq_id(), &c.tokens(), c.sample()});
  std::vector<models::SequenceInput> batch;
  for (const Item& it : items) {
    Sequence& seq = sequences_[it.id];
    batch.push_back({std::span<const int32_t>(it.tokens->data(), it.tokens->size()), seq.computed,
                     seq.block_table, /*all_logits=*/false, seq.pooling, seq.retention});
  }
  if (batch.empty()) return response;

  // The new tokens join each sequence's penalty history before its next token is drawn.
  std::vector<SampleSpec> samples;
  std::vector<uint64_t> sampled_ids;
  for (size_t i = 0; i < items.size(); ++i) {
    Sequence& seq = sequences_[items[i].id];
    seq.Computed({items[i].tokens->data(), static_cast<size_t>(items[i].tokens->size())});
    if (!items[i].sample || seq.pooling != models::Pooling::kNone) continue;
    // The draw depends on (seed, index of the token being generated) only.
    const uint64_t index = static_cast<uint64_t>(seq.computed - seq.prompt_len);
    samples.push_back({i, &seq.sampling, &seq.history, kernels::CounterUniform(seq.seed, index)});
    sampled_ids.push_back(items[i].id);
  }
  RETURN_IF_ERROR(engine_->Step(batch, samples, &sampled_, &pooled_));
  PoolEmbeddings(items, &response);

  for (size_t i = 0; i < samples.size(); ++i) {
    const kernels::SampledToken& s = sampled_[i];
    auto* out = response.add_sampled();
    out->set_seq_id(sampled_ids[i]);
    out->set_token_id(s.token);
    if (samples[i].config->logprobs) {
      auto* lp = out->mutable_logprob();
      lp->set_token_id(s.token);
      lp->set_logprob(s.logprob);
      for (const auto& [id, value] : s.top) {
        auto* top = lp->add_top();
        top->set_token_id(id);
        top->set_logprob(value);
      }
    }
  }
  return response;
}

}  // namespace tessera::worker
