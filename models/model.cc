#include "models/model.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/cpu_limit.h"
#include "common/status.h"
#include "kernels/cpu_backend.h"
#include "kernels/cuda_backend.h"
#include "models/model_identity.h"

namespace tessera::models {

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& model_dir,
                                                   const ModelOptions& options) {
  ASSIGN_OR_RETURN(ModelSpec spec, LoadModelSpec(model_dir));
  ASSIGN_OR_RETURN(auto checkpoint, Checkpoint::Open(model_dir));
  WeightCacheRequest cache{options.weight_cache_dir, model_dir, "", options.on_weight_cache_written};
  if (!cache.dir.empty()) {
    ASSIGN_OR_RETURN(cache.model_identity, ModelIdentity(model_dir));
  }
  absl::StatusOr<std::unique_ptr<Model>> model = Build(spec, *checkpoint, options, cache.dir.empty() ? nullptr : &cache);
  if (!model.ok()) {
    return absl::Status(model.status().code(), absl::StrCat(model_dir, ": ", model.status().message()));
  }
  return model;
}

absl::StatusOr<std::unique_ptr<Model>> Model::Create(const ModelSpec& spec, const TensorSource& source,
                                                     const ModelOptions& options) {
  return Build(spec, source, options, nullptr);
}

absl::StatusOr<std::unique_ptr<Model>> Model::Build(const ModelSpec& spec, const TensorSource& source,
                                                    const ModelOptions& options, const WeightCacheRequest* cache) {
  if (options.tp.size > 1 && (options.communicator == nullptr || options.communicator->size() != options.tp.size ||
                              options.communicator->rank() != options.tp.rank)) {
    return absl::InvalidArgumentError("tensor parallelism needs a communicator of the same rank and size");
  }
  if (options.ep.size > 1 &&
      (options.moe_communicator == nullptr || options.moe_communicator->size() != options.tp.size * options.ep.size)) {
    return absl::InvalidArgumentError("expert parallelism needs a communicator over all tp x ep ranks");
  }
  ASSIGN_OR_RETURN(ShardLayout shard, ShardLayout::For(spec, options.tp, options.ep));
  const int threads = options.num_threads > 0 ? options.num_threads : UsableCpus();
  std::unique_ptr<kernels::Backend> backend;
  if (options.cuda_device >= 0) {
    ASSIGN_OR_RETURN(backend, kernels::MakeCudaBackend(options.cuda_device));
  } else {
    backend = kernels::MakeCpuBackend(threads, options.matmul);
  }
  WeightCacheUse use;
  absl::StatusOr<ModelWeights> weights =
      cache != nullptr ? LoadWeightsCached(*cache, spec, source, shard, *backend, options.on_load_progress, &use)
                       : LoadWeights(spec, source, shard, *backend, options.on_load_progress);
  if (!weights.ok()) return weights.status();
  std::unique_ptr<Model> model(new Model(spec, shard, std::move(backend), *std::move(weights), options, threads));
  model->weight_cache_ = std::move(use);
  return model;
}

Model::Model(ModelSpec spec, ShardLayout shard, std::unique_ptr<kernels::Backend> backend, ModelWeights weights,
             const ModelOptions& options, int num_threads)
    : spec_(std::move(spec)),
      shard_(shard),
      backend_(std::move(backend)),
      weights_(std::move(weights)),
      rotary_(spec_),
      num_threads_(num_threads),
      scratch_(*backend_) {
  ctx_.backend = backend_.get();
  ctx_.tp = options.tp.size > 1 ? options.communicator : nullptr;
  ctx_.moe = options.ep.size > 1 ? options.moe_communicator : nullptr;
  for (auto* buffer : {&x_, &h_, &qkv_, &attn_, &mlp_, &act_, &pos_, &selected_, &tokens_, &positions_, &keep_}) {
    *buffer = backend_->NewBuffer();
  }
}

Model::~Model() = default;

size_t Model::decode_bytes_per_token() const {
  size_t bytes = weights_.lm_head.linear.weight->bytes();
  for (const LayerWeights& l : weights_.layers) {
    bytes += l.qkv.linear.weight->bytes() + l.o.linear.weight->bytes();
    if (spec_.is_moe()) {
      bytes += l.moe.router.weight->bytes();
      for (size_t e = 0; e < l.moe.held.size(); ++e) {  // the top-k experts, if held here
        if (l.moe.held[e]) {
          bytes += (l.moe.gate_up[e].weight->bytes() + l.moe.down[e].weight->bytes()) * spec_.experts_per_token /
                   spec_.num_experts;
        }
      }
    } else {
      bytes += l.gate_up.linear.weight->bytes() + l.down.linear.weight->bytes();
    }
  }
  return bytes;
}

kvstore::KvLayout Model::KvLayoutFor(int block_size, KvDtype dtype) const {
  kvstore::KvLayout layout;
  layout.dtype = dtype;
  layout.num_layers = spec_.num_layers;
  layout.num_kv_heads = shard_.kv_heads;
  layout.head_dim = spec_.head_dim;
  layout.block_size = block_size;
  return layout;
}

kernels::PagedKvView LayerKvView(const kvstore::KvLayout& layout, std::byte* pool, int layer) {
  kernels::PagedKvView view;
  view.k_base = pool + layout.k_offset(layer);
  view.v_base = pool + layout.v_offset(layer);
  view.block_stride = layout.block_bytes();
  view.head_stride = layout.head_bytes();
  view.dtype = layout.dtype;
  view.scales_offset = KvValuesBytes(layout.dtype, layout.block_size, layout.head_dim);
  view.block_size = layout.block_size;
  view.head_dim = layout.head_dim;
  return view;
}

absl::Status ValidateBatch(const ModelSpec& spec, const kvstore::KvLayout& model_layout,
                           const kvstore::KvLayout& layout, int32_t num_blocks,
                           std::span<const SequenceInput> batch) {
  if (!(layout == model_layout) || layout.block_size <= 0) {
    return absl::InvalidArgumentError("KV cache layout does not match the model");
  }
  if (batch.empty()) return absl::InvalidArgumentError("empty batch");
  for (size_t i = 0; i < batch.size(); ++i) {
    const SequenceInput& s = batch[i];
    if (s.tokens.empty()) return absl::InvalidArgumentError(absl::StrCat("sequence ", i, " has no new tokens"));
    if (s.context_len < 0) return absl::InvalidArgumentError("negative context length");
    for (int32_t t : s.tokens) {
      if (t < 0 || t >= spec.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", t, " is outside the vocabulary [0, ", spec.vocab_size, ")"));
      }
    }
    const KvRetention& r = s.retention;
    if (r.window < 0 || r.sink_tokens < 0 || (r.sink_tokens > 0 && r.window == 0)) {
      return absl::InvalidArgumentError("a KV retention needs a window >= 1 and sink tokens >= 0");
    }
    if (r.bounded() && spec.positions != PositionKind::kRope) {
      return absl::InvalidArgumentError("a KV window or sinks need a rotary-position model");
    }
    const int64_t end = s.context_len + static_cast<int64_t>(s.tokens.size());
    if (spec.positions == PositionKind::kLearned && end > spec.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat("sequence of ", end, " tokens exceeds the model's ",
                                                     spec.max_position_embeddings, " positions"));
    }
    const int64_t needed = (end + layout.block_size - 1) / layout.block_size;
    if (static_cast<int64_t>(s.block_table.size()) < needed) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", i, " needs ", needed, " blocks, its table has ",
                                                     s.block_table.size()));
    }
    for (int64_t b = 0; b < needed; ++b) {
      if (s.block_table[b] < 0 || s.block_table[b] >= num_blocks) {
        return absl::InvalidArgumentError(absl::StrCat("block id ", s.block_table[b], " outside the pool"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Model::BeginStep(std::span<const SequenceInput> batch) {
  const bool rope = spec_.positions == PositionKind::kRope;
  const bool dynamic = rope && spec_.rope.scaling == RopeScaling::kDynamic;
  sequences_.clear();
  host_tokens_.clear();
  host_positions_.clear();
  host_keep_.clear();
  pooled_rows_.clear();
  inv_freq_.clear();
  std::vector<int32_t> pooled;  // rows whose states are pooled, after the logits rows
  for (const SequenceInput& s : batch) {
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    kernels::AttentionSequence a;
    a.first_row = static_cast<int64_t>(host_tokens_.size());
    a.num_new = n;
    a.context_len = s.context_len;
    a.block_table = s.block_table.data();
    a.table_len = static_cast<int64_t>(s.block_table.size());
    a.window = s.retention.window;
    a.sink_tokens = s.retention.sink_tokens;
    sequences_.push_back(a);
    // Only dynamic NTK scaling gives each sequence its own frequencies.
    const std::vector<float>* inv_freq =
        rope ? &rotary_.InverseFrequencies(s.context_len + n, &freq_scratch_) : nullptr;
    for (int64_t i = 0; i < n; ++i) {
      host_tokens_.push_back(s.tokens[i]);
      host_positions_.push_back(static_cast<int32_t>(s.context_len + i));
      if (dynamic) inv_freq_.insert(inv_freq_.end(), inv_freq->begin(), inv_freq->end());
      const auto row = static_cast<int32_t>(host_tokens_.size() - 1);
      if (s.pooling == Pooling::kNone) {
        if (s.all_logits || i == n - 1) host_keep_.push_back(row);
      } else if (s.pooling == Pooling::kMean || i == n - 1) {
        pooled.push_back(row);
      }
    }
    if (s.pooling != Pooling::kNone) pooled_rows_.push_back(s.pooling == Pooling::kMean ? n : 1);
    if (rope && !dynamic && inv_freq_.empty()) inv_freq_ = *inv_freq;
  }
  if (rope) {
    // The sinks' view of a query rotates it with the sequence's frequencies (its first
    // row's: every row of a sequence has the same), now that inv_freq_ has stopped growing.
    for (kernels::AttentionSequence& a : sequences_) {
      a.inv_freq = inv_freq_.data() + (dynamic ? a.first_row * (spec_.head_dim / 2) : 0);
      if (spec_.xpos_scale_base > 0) {
        a.xpos_zeta = rotary_.xpos_zeta().data();
        a.xpos_scale_base = spec_.xpos_scale_base;
      }
    }
  }
  logit_rows_ = static_cast<int64_t>(host_keep_.size());
  host_keep_.insert(host_keep_.end(), pooled.begin(), pooled.end());
  kernels::StepRows rows;
  rows.sequences = sequences_;
  rows.positions = host_positions_;
  rows.inv_freq = inv_freq_;
  rows.inv_freq_stride = dynamic ? spec_.head_dim / 2 : 0;
  rows.rotary_scale = rotary_.attention_scale();
  if (spec_.xpos_scale_base > 0) {
    rows.xpos_zeta = rotary_.xpos_zeta();
    rows.xpos_scale_base = spec_.xpos_scale_base;
  }
  RETURN_IF_ERROR(backend_->BeginStep(rows));
  RETURN_IF_ERROR(tokens_->Upload(std::span<const int32_t>(host_tokens_)));
  RETURN_IF_ERROR(keep_->Upload(std::span<const int32_t>(host_keep_)));
  if (spec_.positions == PositionKind::kLearned) {
    RETURN_IF_ERROR(positions_->Upload(std::span<const int32_t>(host_positions_)));
  }
  return absl::OkStatus();
}

kernels::NormParams Model::NormOf(const Norm& norm) const {
  return {spec_.norm, norm.weight->as<float>(), norm.bias ? norm.bias->as<float>() : nullptr, spec_.norm_eps};
}

absl::Status Model::Attention(int layer, kvstore::KvPool& kv, int64_t rows) {
  const LayerWeights& w = weights_.layers[layer];
  const int hd = spec_.head_dim;
  const int64_t q_size = w.qkv.q_size, kv_size = w.qkv.kv_size;
  const int64_t qkv_width = w.qkv.out_features();
  ASSIGN_OR_RETURN(float* qkv, qkv_->ReserveFor<float>(rows * qkv_width));
  ASSIGN_OR_RETURN(float* attn, attn_->ReserveFor<float>(rows * q_size));
  RETURN_IF_ERROR(w.qkv.Forward(h_->as<float>(), rows, qkv, ctx_));
  if (spec_.positions == PositionKind::kRope) {
    // q and k heads are adjacent
    RETURN_IF_ERROR(backend_->Rotary(qkv, qkv_width, shard_.q_heads, shard_.kv_heads, hd));
  }
  const kernels::PagedKvView view = LayerKvView(kv.layout(), kv.data(), layer);
  RETURN_IF_ERROR(backend_->WriteKv(qkv + q_size, qkv + q_size + kv_size, qkv_width, view, shard_.kv_heads));

  kernels::AttentionShape shape;
  shape.num_heads = shard_.q_heads;
  shape.num_kv_heads = shard_.kv_heads;
  shape.head_dim = hd;
  shape.window = spec_.sliding_window[layer];
  shape.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  RETURN_IF_ERROR(backend_->PagedAttention(qkv, qkv_width, view, shape, attn, q_size));
  return w.o.AddInto(x_->as<float>(), attn, rows, ctx_, scratch_);
}

absl::Status Model::CopyRows(float* dst, const float* src, int64_t rows) {
  const size_t row_bytes = static_cast<size_t>(spec_.hidden_size) * sizeof(float);
  return backend_->Copy2D(dst, row_bytes, src, row_bytes, row_bytes, rows);
}

absl::Status Model::PostNorm(const Norm& norm, int64_t rows, const std::function<absl::Status()>& sublayer) {
  float* x = x_->as<float>();
  float* h = h_->as<float>();
  if (spec_.residual_scale != 1.0f) {
    RETURN_IF_ERROR(backend_->Scale(x, rows * spec_.hidden_size, spec_.residual_scale));
  }
  RETURN_IF_ERROR(sublayer());  // x += f(h)
  RETURN_IF_ERROR(backend_->NormResidual(NormOf(norm), x, nullptr, h, rows, spec_.hidden_size));
  return CopyRows(x, h, rows);
}

absl::Status Model::DenseMlp(const LayerWeights& w, int64_t rows) {
  const int64_t inner = shard_.inner;
  const int64_t width = w.gate_up.out_features();  // 2*inner gated, inner otherwise
  ASSIGN_OR_RETURN(float* mlp, mlp_->ReserveFor<float>(rows * width));
  RETURN_IF_ERROR(w.gate_up.Forward(h_->as<float>(), rows, mlp, ctx_));
  float* act = mlp;
  if (spec_.gated_mlp) {
    ASSIGN_OR_RETURN(act, act_->ReserveFor<float>(rows * inner));
    RETURN_IF_ERROR(backend_->GatedActivation(mlp, rows, inner, spec_.activation, act));
  } else {
    RETURN_IF_ERROR(backend_->ActivationInPlace(mlp, rows, inner, spec_.activation));
  }
  return w.down.AddInto(x_->as<float>(), act, rows, ctx_, scratch_);
}

absl::StatusOr<float*> Model::ForwardOnDevice(std::span<const SequenceInput> batch, kvstore::KvPool& kv,
                                              std::vector<float>* pooled) {
  if (kv.host_memory() != backend_->host_memory()) {
    return absl::InvalidArgumentError("the KV pool is on another device than the model");
  }
  if (pooled == nullptr &&
      std::any_of(batch.begin(), batch.end(), [](const SequenceInput& s) { return s.pooling != Pooling::kNone; })) {
    return absl::InvalidArgumentError("a pooling sequence needs somewhere to put its state");
  }
  RETURN_IF_ERROR(ValidateBatch(spec_, KvLayoutFor(kv.layout().block_size, kv.layout().dtype), kv.layout(), kv.num_blocks(), batch));
  RETURN_IF_ERROR(BeginStep(batch));
  const int64_t rows = static_cast<int64_t>(host_tokens_.size());
  const int64_t out_rows = static_cast<int64_t>(host_keep_.size());
  const int64_t hidden = spec_.hidden_size;

  ASSIGN_OR_RETURN(float* x, x_->ReserveFor<float>(rows * hidden));
  ASSIGN_OR_RETURN(float* h, h_->ReserveFor<float>(rows * hidden));
  RETURN_IF_ERROR(weights_.embedding.Lookup(tokens_->as<int32_t>(), rows, x, ctx_, scratch_));
  const float* delta = nullptr;  // learned positions join the residual in the first norm
  if (spec_.positions == PositionKind::kLearned) {
    ASSIGN_OR_RETURN(float* pos, pos_->ReserveFor<float>(rows * hidden));
    RETURN_IF_ERROR(backend_->Embedding(*weights_.position_embedding, 0, positions_->as<int32_t>(), rows, pos));
    delta = pos;
  }
  if (spec_.norm_position == NormPosition::kPre) {
    for (int l = 0; l < spec_.num_layers; ++l) {
      const LayerWeights& w = weights_.layers[l];
      RETURN_IF_ERROR(backend_->NormResidual(NormOf(w.attn_norm), x, delta, h, rows, hidden));
      delta = nullptr;
      RETURN_IF_ERROR(Attention(l, kv, rows));
      RETURN_IF_ERROR(backend_->NormResidual(NormOf(w.mlp_norm), x, nullptr, h, rows, hidden));
      RETURN_IF_ERROR(spec_.is_moe() ? w.moe.AddInto(x, h, rows, hidden, ctx_, scratch_) : DenseMlp(w, rows));
    }
  } else {
    // Post-norm: each sub-layer reads the residual stream itself (h, a copy of x) and
    // x = Norm(alpha * x + f(h)) follows it.
    if (delta != nullptr) RETURN_IF_ERROR(backend_->AddResidual(x, delta, nullptr, rows, hidden));
    RETURN_IF_ERROR(CopyRows(h, x, rows));
    for (int l = 0; l < spec_.num_layers; ++l) {
      const LayerWeights& w = weights_.layers[l];
      RETURN_IF_ERROR(PostNorm(w.attn_norm, rows, [&] { return Attention(l, kv, rows); }));
      RETURN_IF_ERROR(PostNorm(w.mlp_norm, rows, [&] {
        return spec_.is_moe() ? w.moe.AddInto(x, h, rows, hidden, ctx_, scratch_) : DenseMlp(w, rows);
      }));
    }
  }

  // The rows that need logits or are pooled: gathered, normalised (pre-norm models);
  // then the pooled ones go to the host and the others through the LM head.
  if (weights_.final_norm.weight) {
    ASSIGN_OR_RETURN(float* selected, selected_->ReserveFor<float>(out_rows * hidden));
    RETURN_IF_ERROR(backend_->GatherRows(x, keep_->as<int32_t>(), out_rows, hidden, selected));
    RETURN_IF_ERROR(backend_->NormResidual(NormOf(weights_.final_norm), selected, nullptr, h, out_rows, hidden));
  } else {
    RETURN_IF_ERROR(backend_->GatherRows(x, keep_->as<int32_t>(), out_rows, hidden, h));
  }
  if (pooled != nullptr) RETURN_IF_ERROR(PoolStates(h + logit_rows_ * hidden, pooled));
  if (logit_rows_ == 0) return nullptr;
  return weights_.lm_head.Forward(h, logit_rows_, ctx_, scratch_);
}

absl::Status Model::PoolStates(const float* states, std::vector<float>* pooled) {
  pooled->clear();
  if (pooled_rows_.empty()) return absl::OkStatus();  // no copy (a GPU sync) on steps that pool nothing
  const int64_t hidden = spec_.hidden_size;
  const int64_t rows = static_cast<int64_t>(host_keep_.size()) - logit_rows_;
  pooled_states_.resize(static_cast<size_t>(rows * hidden));
  RETURN_IF_ERROR(backend_->ToHost(states, pooled_states_.data(), pooled_states_.size() * sizeof(float)));
  pooled->assign(pooled_rows_.size() * static_cast<size_t>(hidden), 0.0f);
  const float* row = pooled_states_.data();
  for (size_t s = 0; s < pooled_rows_.size(); ++s) {
    float* out = pooled->data() + s * hidden;
    for (int64_t r = 0; r < pooled_rows_[s]; ++r, row += hidden) {
      for (int64_t j = 0; j < hidden; ++j) out[j] += row[j];
    }
  }
  return absl::OkStatus();
}

absl::Status Model::Forward(std::span<const SequenceInput> batch, kvstore::KvPool& kv, std::vector<float>* logits,
                            std::vector<float>* pooled) {
  ASSIGN_OR_RETURN(const float* device_logits, ForwardOnDevice(batch, kv, pooled));
  logits->resize(static_cast<size_t>(logit_rows_) * static_cast<size_t>(spec_.vocab_size));
  if (logits->empty()) return absl::OkStatus();
  return backend_->ToHost(device_logits, logits->data(), logits->size() * sizeof(float));
}

}  // namespace tessera::models
