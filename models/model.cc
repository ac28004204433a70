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

float* Floats(AlignedBuffer& b, int64_t count) {
  b.Reserve(static_cast<size_t>(count) * sizeof(float));
  return b.as<float>();
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
      pool_(std::make_unique<ThreadPool>(options.num_threads > 0 ? options.num_threads : DefaultThreads())) {}

size_t Model::decode_bytes_per_token() const {
  size_t bytes = weights_.lm_head.weight.bytes();
  for (const LayerWeights& l : weights_.layers) {
    bytes += l.qkv.weight.bytes() + l.o.weight.bytes();
    if (spec_.is_moe()) {
      bytes += l.router.weight.bytes();
      for (size_t e = 0; e < l.expert_gate_up.size(); ++e) {  // the top-k experts, if held here
        if (shard_.OwnsExpert(static_cast<int>(e))) {
          bytes += (l.expert_gate_up[e].weight.bytes() + l.expert_down[e].weight.bytes()) * spec_.experts_per_token /
                   spec_.num_experts;
        }
      }
    } else {
      bytes += l.gate_up.weight.bytes() + l.down.weight.bytes();
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

absl::Status Model::Validate(std::span<const SequenceInput> batch, const kvstore::CpuKvStorage& kv) const {
  const kvstore::KvLayout& layout = kv.layout();
  if (layout.num_layers != spec_.num_layers || layout.num_kv_heads != shard_.kv_heads ||
      layout.head_dim != spec_.head_dim || layout.block_size <= 0) {
    return absl::InvalidArgumentError("KV cache layout does not match the model");
  }
  if (batch.empty()) return absl::InvalidArgumentError("empty batch");
  for (size_t i = 0; i < batch.size(); ++i) {
    const SequenceInput& s = batch[i];
    if (s.tokens.empty()) return absl::InvalidArgumentError(absl::StrCat("sequence ", i, " has no new tokens"));
    if (s.context_len < 0) return absl::InvalidArgumentError("negative context length");
    for (int32_t t : s.tokens) {
      if (t < 0 || t >= spec_.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", t, " is outside the vocabulary [0, ", spec_.vocab_size, ")"));
      }
    }
    const int64_t end = s.context_len + static_cast<int64_t>(s.tokens.size());
    if (spec_.positions == PositionKind::kLearned && end > spec_.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat("sequence of ", end, " tokens exceeds the model's ",
                                                     spec_.max_position_embeddings, " positions"));
    }
    const int64_t needed = (end + layout.block_size - 1) / layout.block_size;
    if (static_cast<int64_t>(s.block_table.size()) < needed) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", i, " needs ", needed, " blocks, its table has ",
                                                     s.block_table.size()));
    }
    for (int64_t b = 0; b < needed; ++b) {
      if (s.block_table[b] < 0 || s.block_table[b] >= kv.num_blocks()) {
        return absl::InvalidArgumentError(absl::StrCat("block id ", s.block_table[b], " outside the pool"));
      }
    }
  }
  return absl::OkStatus();
}

// Token embeddings (this rank's vocabulary slice; other tokens add zeros, the
// all-reduce completes them), then learned positions.
absl::Status Model::Embed(std::span<const SequenceInput> batch, float* x) {
  const int64_t hidden = spec_.hidden_size;
  int64_t row = 0;
  for (const SequenceInput& s : batch) {
    for (size_t i = 0; i < s.tokens.size(); ++i, ++row) {
      float* xr = x + row * hidden;
      const int64_t local = s.tokens[i] - weights_.embedding_row0;
      if (local < 0 || local >= weights_.embedding_rows) {
        std::memset(xr, 0, hidden * sizeof(float));
      } else if (weights_.embedding_dtype == DType::kBF16) {
        const uint16_t* e = weights_.token_embedding.as<uint16_t>() + local * hidden;
        for (int64_t j = 0; j < hidden; ++j) xr[j] = Bf16ToFloat(e[j]);
      } else {
        std::memcpy(xr, weights_.token_embedding.as<float>() + local * hidden, hidden * sizeof(float));
      }
    }
  }
  if (options_.communicator != nullptr) {
    RETURN_IF_ERROR(options_.communicator->AllReduceSum({x, static_cast<size_t>(row * hidden)}));
  }
  if (spec_.positions == PositionKind::kLearned) {
    row = 0;
    for (const SequenceInput& s : batch) {
      for (size_t i = 0; i < s.tokens.size(); ++i, ++row) {
        const float* p = weights_.position_embedding.data() + (s.context_len + i) * hidden;
        float* xr = x + row * hidden;
        for (int64_t j = 0; j < hidden; ++j) xr[j] += p[j];
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Model::AddReduced(float* partial, int64_t rows, const float* bias, parallel::Communicator* comm) {
  const int64_t hidden = spec_.hidden_size;
  if (comm != nullptr) RETURN_IF_ERROR(comm->AllReduceSum({partial, static_cast<size_t>(rows * hidden)}));
  float* x = x_.as<float>();
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * hidden;
    const float* pr = partial + r * hidden;
    if (bias != nullptr) {
      for (int64_t j = 0; j < hidden; ++j) xr[j] += pr[j] + bias[j];
    } else {
      for (int64_t j = 0; j < hidden; ++j) xr[j] += pr[j];
    }
  }
  return absl::OkStatus();
}

void Model::PrepareRotary(std::span<const SequenceInput> batch) {
  if (spec_.positions != PositionKind::kRope) return;
  const int half = spec_.head_dim / 2;
  const int64_t total = TotalTokens(batch);
  float* cos = Floats(rope_cos_, total * half);
  float* sin = Floats(rope_sin_, total * half);
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
  const int64_t q_size = static_cast<int64_t>(shard_.q_heads) * hd, kv_size = static_cast<int64_t>(shard_.kv_heads) * hd;
  const int64_t qkv_width = q_size + 2 * kv_size;
  float* h = h_.as<float>();
  float* qkv = Floats(qkv_, rows * qkv_width);
  float* attn = Floats(attn_, rows * q_size);
  kernels::Matmul(h, rows, spec_.hidden_size, w.qkv.weight, w.qkv.bias_or_null(), qkv, qkv_width, pool_.get(),
                  options_.matmul);

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
  kernels::PagedKvView view;
  view.k_base = kv.data() + layout.k_offset(layer);
  view.v_base = kv.data() + layout.v_offset(layer);
  view.block_stride = layout.block_elems();
  view.head_stride = layout.head_elems();
  view.block_size = layout.block_size;
  view.head_dim = hd;
  kernels::WriteKv(qkv + q_size, qkv + q_size + kv_size, qkv_width, view, shard_.kv_heads, attn_seqs_);

  kernels::AttentionShape shape;
  shape.num_heads = shard_.q_heads;
  shape.num_kv_heads = shard_.kv_heads;
  shape.head_dim = hd;
  shape.window = spec_.sliding_window[layer];
  shape.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  kernels::PagedAttention(qkv, qkv_width, view, shape, attn_seqs_, attn, q_size, pool_.get());
  return RowParallel(w.o, attn, rows, q_size);
}

absl::Status Model::RowParallel(const Linear& linear, const float* in, int64_t rows, int64_t in_width) {
  const int64_t hidden = spec_.hidden_size;
  if (options_.communicator == nullptr) {  // unsharded: add straight into the residual
    kernels::MatmulOptions residual = options_.matmul;
    residual.accumulate = true;
    kernels::Matmul(in, rows, in_width, linear.weight, linear.bias_or_null(), x_.as<float>(), hidden, pool_.get(),
                    residual);
    return absl::OkStatus();
  }
  float* partial = Floats(partial_, rows * hidden);
  kernels::Matmul(in, rows, in_width, linear.weight, nullptr, partial, hidden, pool_.get(), options_.matmul);
  return AddReduced(partial, rows, linear.bias_or_null(), options_.communicator);
}

absl::Status Model::DenseMlp(const LayerWeights& w, int64_t rows) {
  const int64_t inner = shard_.inner, hidden = spec_.hidden_size;
  const int64_t width = w.gate_up.weight.rows;  // 2*inner gated, inner otherwise
  float* mlp = Floats(mlp_, rows * width);
  kernels::Matmul(h_.as<float>(), rows, hidden, w.gate_up.weight, w.gate_up.bias_or_null(), mlp, width, pool_.get(),
                  options_.matmul);
  float* act = mlp;
  if (spec_.gated_mlp) {
    act = Floats(act_, rows * inner);
    kernels::GatedActivation(mlp, rows, inner, spec_.activation, act, pool_.get());
  } else {
    kernels::ApplyActivation(mlp, rows, inner, spec_.activation, pool_.get());
  }
  return RowParallel(w.down, act, rows, inner);
}

// Mixtral's sparse MoE: softmax over all experts, keep the top k, renormalise them,
// and add each chosen expert's output weighted by its gate. Every rank computes the
// router; each runs its slice (tensor parallelism) of the experts it holds (expert
// parallelism) on the tokens routed to them, and one all-reduce over the replica sums
// the weighted outputs.
absl::Status Model::MoeMlp(const LayerWeights& w, int64_t rows) {
  const int experts = spec_.num_experts, k = spec_.experts_per_token;
  const int64_t inner = shard_.inner, hidden = spec_.hidden_size;
  router_logits_.resize(static_cast<size_t>(rows) * experts);
  kernels::MatmulOptions exact = options_.matmul;
  exact.bf16_activation_min_rows = 0;  // routing decisions stay exact
  kernels::Matmul(h_.as<float>(), rows, hidden, w.router.weight, w.router.bias_or_null(), router_logits_.data(),
                  experts, pool_.get(), exact);

  // gates[r][e]: the renormalised weight of expert e for row r (0 when not chosen).
  moe_gates_.assign(static_cast<size_t>(rows) * experts, 0.0f);
  std::vector<int> order(experts);
  for (int64_t r = 0; r < rows; ++r) {
    float* p = router_logits_.data() + r * experts;
    kernels::Softmax(p, experts);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    float sum = 0.0f;
    for (int j = 0; j < k; ++j) sum += p[order[j]];
    for (int j = 0; j < k; ++j) moe_gates_[r * experts + order[j]] = p[order[j]] / sum;
  }

  float* in = Floats(moe_in_, rows * hidden);
  float* out = Floats(moe_out_, rows * hidden);
  float* mlp = Floats(mlp_, rows * 2 * inner);
  float* act = Floats(act_, rows * inner);
  float* combined = Floats(partial_, rows * hidden);
  std::memset(combined, 0, rows * hidden * sizeof(float));
  const float* h = h_.as<float>();
  for (int e = 0; e < experts; ++e) {
    if (!shard_.OwnsExpert(e)) continue;
    moe_rows_.clear();
    for (int64_t r = 0; r < rows; ++r) {
      if (moe_gates_[r * experts + e] != 0.0f) moe_rows_.push_back(static_cast<int32_t>(r));
    }
    if (moe_rows_.empty()) continue;
    const int64_t n = static_cast<int64_t>(moe_rows_.size());
    for (int64_t i = 0; i < n; ++i) std::memcpy(in + i * hidden, h + moe_rows_[i] * hidden, hidden * sizeof(float));
    const Linear& gate_up = w.expert_gate_up[e];
    const Linear& down = w.expert_down[e];
    kernels::Matmul(in, n, hidden, gate_up.weight, gate_up.bias_or_null(), mlp, 2 * inner, pool_.get(),
                    options_.matmul);
    kernels::GatedActivation(mlp, n, inner, spec_.activation, act, pool_.get());
    kernels::Matmul(act, n, inner, down.weight, nullptr, out, hidden, pool_.get(), options_.matmul);
    for (int64_t i = 0; i < n; ++i) {
      const float gate = moe_gates_[moe_rows_[i] * experts + e];
      float* cr = combined + moe_rows_[i] * hidden;
      const float* o = out + i * hidden;
      for (int64_t j = 0; j < hidden; ++j) cr[j] += gate * o[j];
    }
  }
  return AddReduced(combined, rows, nullptr,
                    options_.moe_communicator != nullptr ? options_.moe_communicator : options_.communicator);
}

// This rank's vocabulary slice of the logits, gathered from every rank into full rows.
absl::Status Model::LmHead(const float* h, int64_t rows, std::vector<float>* logits) {
  const int64_t vocab = spec_.vocab_size, slice = weights_.lm_head.weight.rows;
  logits->resize(static_cast<size_t>(rows) * vocab);
  if (options_.communicator == nullptr) {
    kernels::Matmul(h, rows, spec_.hidden_size, weights_.lm_head.weight, weights_.lm_head.bias_or_null(),
                    logits->data(), vocab, pool_.get(), options_.matmul);
    return absl::OkStatus();
  }
  const int ranks = shard_.tp.size;
  local_logits_.resize(static_cast<size_t>(rows) * slice);
  gathered_logits_.resize(local_logits_.size() * ranks);
  kernels::Matmul(h, rows, spec_.hidden_size, weights_.lm_head.weight, weights_.lm_head.bias_or_null(),
                  local_logits_.data(), slice, pool_.get(), options_.matmul);
  RETURN_IF_ERROR(options_.communicator->AllGather(local_logits_, gathered_logits_));
  for (int rank = 0; rank < ranks; ++rank) {
    const int64_t v0 = rank * slice, count = std::min(slice, vocab - v0);
    if (count <= 0) continue;
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(logits->data() + r * vocab + v0, gathered_logits_.data() + (rank * rows + r) * slice,
                  count * sizeof(float));
    }
  }
  return absl::OkStatus();
}

absl::Status Model::Forward(std::span<const SequenceInput> batch, kvstore::CpuKvStorage& kv,
                            std::vector<float>* logits) {
  RETURN_IF_ERROR(Validate(batch, kv));
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

  float* x = Floats(x_, rows * hidden);
  float* h = Floats(h_, rows * hidden);
  RETURN_IF_ERROR(Embed(batch, x));
  PrepareRotary(batch);
  for (int l = 0; l < spec_.num_layers; ++l) {
    const LayerWeights& w = weights_.layers[l];
    Normalize(w.attn_norm, x, rows, h);
    RETURN_IF_ERROR(Attention(l, kv, rows));
    Normalize(w.mlp_norm, x, rows, h);
    RETURN_IF_ERROR(spec_.is_moe() ? MoeMlp(w, rows) : DenseMlp(w, rows));
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
  return LmHead(h, out_rows, logits);
}

}  // namespace tessera::models
