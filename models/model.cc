#include "models/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/bf16.h"
#include "common/status.h"
#include "kernels/ops.h"

namespace tessera::models {
namespace {

int DefaultThreads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

int64_t TotalTokens(std::span<const SequenceInput> batch) {
  int64_t t = 0;
  for (const auto& s : batch) t += static_cast<int64_t>(s.tokens.size());
  return t;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& model_dir,
                                                   const ModelOptions& options) {
  ASSIGN_OR_RETURN(ModelSpec spec, LoadModelSpec(model_dir));
  ASSIGN_OR_RETURN(auto checkpoint, Checkpoint::Open(model_dir));
  absl::StatusOr<std::unique_ptr<Model>> model = Create(spec, *checkpoint, options);
  if (!model.ok()) {
    return absl::Status(model.status().code(), absl::StrCat(model_dir, ": ", model.status().message()));
  }
  return model;
}

absl::StatusOr<std::unique_ptr<Model>> Model::Create(const ModelSpec& spec, const TensorSource& source,
                                                     const ModelOptions& options) {
  if (options.tp.size > 1 && (options.communicator == nullptr || options.communicator->size() != options.tp.size ||
                              options.communicator->rank() != options.tp.rank)) {
    return absl::InvalidArgumentError("tensor parallelism needs a communicator of the same rank and size");
  }
  if (options.ep.size > 1 &&
      (options.moe_communicator == nullptr || options.moe_communicator->size() != options.tp.size * options.ep.size)) {
    return absl::InvalidArgumentError("expert parallelism needs a communicator over all tp x ep ranks");
  }
  ASSIGN_OR_RETURN(ShardLayout shard, ShardLayout::For(spec, options.tp, options.ep));
  ASSIGN_OR_RETURN(ModelWeights weights, LoadWeights(spec, source, shard));
  return std::unique_ptr<Model>(new Model(spec, shard, std::move(weights), options));
}

Model::Model(ModelSpec spec, ShardLayout shard, ModelWeights weights, const ModelOptions& options)
    : spec_(std::move(spec)),
      shard_(shard),
      weights_(std::move(weights)),
      options_(options),
      rotary_(spec_),
      pool_(std::make_unique<ThreadPool>(options.num_threads > 0 ? options.num_threads : DefaultThreads())) {
  ctx_.pool = pool_.get();
  ctx_.matmul = options_.matmul;
  ctx_.tp = options_.communicator;
  ctx_.moe = options_.moe_communicator;
}

size_t Model::decode_bytes_per_token() const {
  size_t bytes = weights_.lm_head.linear.weight.bytes();
  for (const LayerWeights& l : weights_.layers) {
    bytes += l.qkv.linear.weight.bytes() + l.o.linear.weight.bytes();
    if (spec_.is_moe()) {
      bytes += l.moe.router.weight.bytes();
      for (size_t e = 0; e < l.moe.held.size(); ++e) {  // the top-k experts, if held here
        if (l.moe.held[e]) {
          bytes += (l.moe.gate_up[e].weight.bytes() + l.moe.down[e].weight.bytes()) * spec_.experts_per_token /
                   spec_.num_experts;
        }
      }
    } else {
      bytes += l.gate_up.linear.weight.bytes() + l.down.linear.weight.bytes();
    }
  }
  return bytes;
}

kvstore::KvLayout Model::KvLayoutFor(int block_size) const {
  kvstore::KvLayout layout;
  layout.num_layers = spec_.num_layers;
  layout.num_kv_heads = shard_.kv_heads;
  layout.head_dim = spec_.head_dim;
  layout.block_size = block_size;
  return layout;
}

kernels::PagedKvView LayerKvView(const kvstore::KvLayout& layout, float* pool, int layer) {
  kernels::PagedKvView view;
  view.k_base = pool + layout.k_offset(layer);
  view.v_base = pool + layout.v_offset(layer);
  view.block_stride = layout.block_elems();
  view.head_stride = layout.head_elems();
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

// Token embeddings (vocabulary-parallel), then learned positions.
absl::Status Model::Embed(std::span<const SequenceInput> batch, float* x) {
  batch_tokens_.clear();
  for (const SequenceInput& s : batch) batch_tokens_.insert(batch_tokens_.end(), s.tokens.begin(), s.tokens.end());
  RETURN_IF_ERROR(weights_.embedding.Lookup(batch_tokens_, x, ctx_));
  if (spec_.positions != PositionKind::kLearned) return absl::OkStatus();
  const int64_t hidden = spec_.hidden_size;
  int64_t row = 0;
  for (const SequenceInput& s : batch) {
    for (size_t i = 0; i < s.tokens.size(); ++i, ++row) {
      const float* p = weights_.position_embedding.data() + (s.context_len + i) * hidden;
      float* xr = x + row * hidden;
      for (int64_t j = 0; j < hidden; ++j) xr[j] += p[j];
    }
  }
  return absl::OkStatus();
}

void Model::PrepareRotary(std::span<const SequenceInput> batch) {
  if (spec_.positions != PositionKind::kRope) return;
  const int half = spec_.head_dim / 2;
  const int64_t total = TotalTokens(batch);
  float* cos = rope_cos_.ReserveFor<float>(total * half);
  float* sin = rope_sin_.ReserveFor<float>(total * half);
  std::vector<float> scratch;
  int64_t row = 0;
  for (const SequenceInput& s : batch) {
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    const std::vector<float>& inv_freq = rotary_.InverseFrequencies(s.context_len + n, &scratch);
    for (int64_t i = 0; i < n; ++i, ++row) {
      rotary_.CosSin(inv_freq, s.context_len + i, cos + row * half, sin + row * half);
    }
  }
}

void Model::Normalize(const Norm& norm, const float* x, int64_t rows, float* out) {
  const int64_t hidden = spec_.hidden_size;
  const int tasks = static_cast<int>(std::min<int64_t>(rows, pool_->num_threads()));
  const int64_t per = (rows + tasks - 1) / tasks;
  pool_->Run(tasks, [&](int t) {
    const int64_t r0 = t * per, n = std::min(rows, r0 + per) - r0;
    if (n <= 0) return;
    if (spec_.norm == NormKind::kRmsNorm) {
      kernels::RmsNorm(x + r0 * hidden, n, hidden, hidden, norm.weight.data(), spec_.norm_eps,
                       out + r0 * hidden, hidden);
    } else {
      kernels::LayerNorm(x + r0 * hidden, n, hidden, hidden, norm.weight.data(), norm.bias.data(),
                         spec_.norm_eps, out + r0 * hidden, hidden);
    }
  });
}

absl::Status Model::Attention(int layer, kvstore::CpuKvStorage& kv, int64_t rows) {
  const LayerWeights& w = weights_.layers[layer];
  const int hd = spec_.head_dim;
  const int64_t q_size = w.qkv.q_size, kv_size = w.qkv.kv_size;
  const int64_t qkv_width = w.qkv.out_features();
  float* qkv = qkv_.ReserveFor<float>(rows * qkv_width);
  float* attn = attn_.ReserveFor<float>(rows * q_size);
  w.qkv.Forward(h_.as<float>(), rows, spec_.hidden_size, qkv, qkv_width, ctx_);

  if (spec_.positions == PositionKind::kRope) {
    const int half = hd / 2;
    const int heads = shard_.q_heads + shard_.kv_heads;  // q and k heads are adjacent
    for (int64_t r = 0; r < rows; ++r) {
      const float* cos = rope_cos_.as<float>() + r * half;
      const float* sin = rope_sin_.as<float>() + r * half;
      for (int head = 0; head < heads; ++head) kernels::ApplyRotary(qkv + r * qkv_width + head * hd, cos, sin, hd);
    }
  }

  const kvstore::KvLayout& layout = kv.layout();
  const kernels::PagedKvView view = LayerKvView(layout, kv.data(), layer);
  kernels::WriteKv(qkv + q_size, qkv + q_size + kv_size, qkv_width, view, shard_.kv_heads, attn_seqs_);

  kernels::AttentionShape shape;
  shape.num_heads = shard_.q_heads;
  shape.num_kv_heads = shard_.kv_heads;
  shape.head_dim = hd;
  shape.window = spec_.sliding_window[layer];
  shape.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  kernels::PagedAttention(qkv, qkv_width, view, shape, attn_seqs_, attn, q_size, pool_.get());
  return w.o.AddInto(x_.as<float>(), attn, rows, q_size, ctx_, scratch_);
}

absl::Status Model::DenseMlp(const LayerWeights& w, int64_t rows) {
  const int64_t inner = shard_.inner;
  const int64_t width = w.gate_up.out_features();  // 2*inner gated, inner otherwise
  float* mlp = mlp_.ReserveFor<float>(rows * width);
  w.gate_up.Forward(h_.as<float>(), rows, spec_.hidden_size, mlp, width, ctx_);
  float* act = mlp;
  if (spec_.gated_mlp) {
    act = act_.ReserveFor<float>(rows * inner);
    kernels::GatedActivation(mlp, rows, inner, spec_.activation, act, pool_.get());
  } else {
    kernels::ApplyActivation(mlp, rows, inner, spec_.activation, pool_.get());
  }
  return w.down.AddInto(x_.as<float>(), act, rows, inner, ctx_, scratch_);
}

absl::Status Model::Forward(std::span<const SequenceInput> batch, kvstore::CpuKvStorage& kv,
                            std::vector<float>* logits) {
  RETURN_IF_ERROR(ValidateBatch(spec_, KvLayoutFor(kv.layout().block_size), kv.layout(), kv.num_blocks(), batch));
  const int64_t rows = TotalTokens(batch);
  const int64_t hidden = spec_.hidden_size;

  attn_seqs_.clear();
  int64_t first_row = 0;
  for (const SequenceInput& s : batch) {
    kernels::AttentionSequence a;
    a.first_row = first_row;
    a.num_new = static_cast<int64_t>(s.tokens.size());
    a.context_len = s.context_len;
    a.block_table = s.block_table.data();
    attn_seqs_.push_back(a);
    first_row += a.num_new;
  }

  float* x = x_.ReserveFor<float>(rows * hidden);
  float* h = h_.ReserveFor<float>(rows * hidden);
  RETURN_IF_ERROR(Embed(batch, x));
  PrepareRotary(batch);
  for (int l = 0; l < spec_.num_layers; ++l) {
    const LayerWeights& w = weights_.layers[l];
    Normalize(w.attn_norm, x, rows, h);
    RETURN_IF_ERROR(Attention(l, kv, rows));
    Normalize(w.mlp_norm, x, rows, h);
    RETURN_IF_ERROR(spec_.is_moe() ? w.moe.AddInto(x, h, rows, hidden, ctx_, scratch_) : DenseMlp(w, rows));
  }

  // Gather the rows that need logits, normalise only those.
  int64_t out_rows = 0;
  int64_t row = 0;
  for (const SequenceInput& s : batch) {
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    const int64_t keep = s.all_logits ? n : 1;
    const int64_t from = row + n - keep;
    if (out_rows != from) std::memmove(x + out_rows * hidden, x + from * hidden, keep * hidden * sizeof(float));
    out_rows += keep;
    row += n;
  }
  Normalize(weights_.final_norm, x, out_rows, h);
  return weights_.lm_head.Forward(h, out_rows, hidden, logits, ctx_, scratch_);
}

}  // namespace tessera::models
