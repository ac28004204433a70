#include "coordinator/step_codec.h"

namespace tessera::coordinator {

namespace {

v1::internal::Pooling ToProto(models::Pooling pooling) {
  switch (pooling) {
    case models::Pooling::kLast: return v1::internal::POOLING_LAST;
    case models::Pooling::kMean: return v1::internal::POOLING_MEAN;
    case models::Pooling::kNone: break;
  }
  return v1::internal::POOLING_UNSPECIFIED;
}

}  // namespace

void EncodeStep(const StepPlan& plan, uint64_t step_id, v1::internal::StepRequest* out) {
  out->Clear();
  out->set_step_id(step_id);
  for (const auto& copy : plan.moves.swap_out) {
    auto* c = out->add_swap_out();
    c->set_from(copy.device);
    c->set_to(copy.host);
    c->set_hash(copy.hash.data(), copy.hash.size());
  }
  for (const auto& copy : plan.moves.swap_in) {
    auto* c = out->add_swap_in();
    c->set_from(copy.host);
    c->set_to(copy.device);
  }
  for (const StepPlan::Fetch& f : plan.fetches) {
    auto* fetch = out->add_fetches();
    fetch->set_fetch_id(f.id);
    for (size_t i = 0; i < f.blocks.hashes.size(); ++i) {
      fetch->add_hashes(f.blocks.hashes[i].data(), f.blocks.hashes[i].size());
      fetch->add_blocks(f.blocks.blocks[i]);
    }
    for (const kvstore::BlockPeer& p : f.blocks.peers) {
      auto* peer = fetch->add_peers();
      peer->set_address(p.address);
      peer->set_head_begin(p.heads.begin);
      peer->set_head_end(p.heads.end);
    }
  }
  out->mutable_finished()->Add(plan.finished.begin(), plan.finished.end());
  for (const StepPlan::NewSequence& n : plan.new_sequences) {
    auto* s = out->add_new_sequences();
    s->set_seq_id(n.id);
    s->mutable_tokens()->Add(n.tokens.begin(), n.tokens.end());
    s->mutable_block_table()->Add(n.block_table.begin(), n.block_table.end());
    *s->mutable_sampling() = *n.sampling;
    s->set_prompt_len(n.prompt_len);
    s->set_seed(n.seed);
    s->set_sample(n.sample);
    s->set_pooling(ToProto(n.pooling));
    s->set_kv_window(n.retention.window);
    s->set_sink_tokens(n.retention.sink_tokens);
    s->set_context_len(static_cast<int64_t>(n.prefix_tokens.size()));
    s->mutable_prefix_tokens()->Add(n.prefix_tokens.begin(), n.prefix_tokens.end());
  }
  for (const StepPlan::Continued& c : plan.continued) {
    auto* s = out->add_continued();
    s->set_seq_id(c.id);
    s->mutable_tokens()->Add(c.tokens.begin(), c.tokens.end());
    s->mutable_new_blocks()->Add(c.new_blocks.begin(), c.new_blocks.end());
    s->set_sample(c.sample);
  }
}

}  // namespace tessera::coordinator
