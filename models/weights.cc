#include "models/weights.h"

#include <cstring>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/bf16.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "models/internal/family.h"

namespace tessera::models {
namespace {

using internal::LinearNames;
using internal::NormNames;

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<const TensorView*> Require(const TensorSource& source, const std::string& name,
                                          const std::vector<int64_t>& shape) {
  const TensorView* view = source.Find(name);
  if (view == nullptr) return absl::InvalidArgumentError(absl::StrCat("checkpoint is missing tensor ", name));
  if (view->shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", name, " has shape ", ShapeString(view->shape),
                                                   ", expected ", ShapeString(shape)));
  }
  return view;
}

absl::StatusOr<std::vector<float>> ReadVector(const TensorSource& source, const std::string& name,
                                              int64_t size) {
  ASSIGN_OR_RETURN(const TensorView* view, Require(source, name, {size}));
  std::vector<float> v(size);
  RETURN_IF_ERROR(ReadAsFloat(name, *view, v.data()));
  return v;
}

// A vector of floats on the backend's device.
absl::StatusOr<std::unique_ptr<kernels::Buffer>> ToDevice(kernels::Backend& backend, const std::vector<float>& v) {
  std::unique_ptr<kernels::Buffer> buffer = backend.NewBuffer();
  RETURN_IF_ERROR(buffer->Upload(std::span<const float>(v)));
  return buffer;
}

absl::StatusOr<Norm> LoadNorm(kernels::Backend& backend, const TensorSource& source, const NormNames& names, int64_t dim) {
  Norm n;
  n.dim = dim;
  ASSIGN_OR_RETURN(std::vector<float> weight, ReadVector(source, names.weight, dim));
  ASSIGN_OR_RETURN(n.weight, ToDevice(backend, weight));
  if (!names.bias.empty()) {
    ASSIGN_OR_RETURN(std::vector<float> bias, ReadVector(source, names.bias, dim));
    ASSIGN_OR_RETURN(n.bias, ToDevice(backend, bias));
  }
  return n;
}

// Output rows [begin, begin + count) of a linear layer (in the concatenation of its
// parts): a tensor-parallel rank's slice of a column-parallel layer.
struct RowRange {
  int64_t begin, count;
};

// Loads a linear layer whose weight is the row concatenation of its parts, reading
// only this rank's shard: the output rows in `rows` (all when empty) and the input
// columns [col0, col0 + col_count) (all when col_count < 0). `part_rows` gives each
// part's output rows; a single fused part holds their sum. Rows past the end of the
// matrix (a padded vocabulary slice) are zero.
absl::StatusOr<Linear> LoadLinear(kernels::Backend& backend, const TensorSource& source, const LinearNames& names,
                                  std::vector<int64_t> part_rows, int64_t cols, std::vector<RowRange> rows = {},
                                  int64_t col0 = 0, int64_t col_count = -1,
                                  kernels::WeightUse use = kernels::WeightUse::kLinear) {
  int64_t total_rows = 0;
  for (int64_t r : part_rows) total_rows += r;
  if (names.weights.size() == 1 && part_rows.size() > 1) part_rows = {total_rows};
  if (rows.empty()) rows = {{0, total_rows}};
  if (col_count < 0) col_count = cols;
  int64_t out_rows = 0;
  for (const RowRange& r : rows) out_rows += r.count;

  std::vector<const TensorView*> views;
  for (size_t i = 0; i < names.weights.size(); ++i) {
    const auto& ref = names.weights[i];
    const int64_t r = part_rows[i];
    ASSIGN_OR_RETURN(const TensorView* view,
                     Require(source, ref.name, ref.transposed ? std::vector<int64_t>{cols, r}
                                                              : std::vector<int64_t>{r, cols}));
    RETURN_IF_ERROR(CheckFloatTensor(ref.name, *view));
    views.push_back(view);
  }
  kernels::HostMatrix matrix{out_rows, col_count, WeightDTypeOf(*views[0]), {}};
  std::vector<float>& dense = matrix.values;
  dense.assign(static_cast<size_t>(out_rows * col_count), 0.0f);
  int64_t out = 0;
  for (const RowRange& range : rows) {
    for (int64_t g = range.begin; g < range.begin + range.count; ++g, ++out) {
      if (g >= total_rows) continue;  // padding
      size_t part = 0;
      int64_t local = g;
      while (local >= part_rows[part]) local -= part_rows[part++];
      float* dst = dense.data() + out * col_count;
      if (names.weights[part].transposed) {  // stored [in, out]: a strided column
        for (int64_t c = 0; c < col_count; ++c) ReadFloatRun(*views[part], (col0 + c) * part_rows[part] + local, 1, dst + c);
      } else {
        ReadFloatRun(*views[part], local * cols + col0, col_count, dst);
      }
    }
  }
  Linear linear;
  ASSIGN_OR_RETURN(linear.weight, backend.Pack(matrix, use));
  if (!names.biases.empty()) {
    std::vector<float> full(static_cast<size_t>(total_rows));
    int64_t offset = 0;
    for (size_t i = 0; i < names.biases.size(); ++i) {
      ASSIGN_OR_RETURN(auto b, ReadVector(source, names.biases[i], part_rows[i]));
      std::copy(b.begin(), b.end(), full.begin() + offset);
      offset += part_rows[i];
    }
    std::vector<float> bias;
    for (const RowRange& range : rows) {
      for (int64_t g = range.begin; g < range.begin + range.count; ++g) bias.push_back(g < total_rows ? full[g] : 0.0f);
    }
    ASSIGN_OR_RETURN(linear.bias, ToDevice(backend, bias));
  }
  return linear;
}

size_t LinearBytes(const Linear& l) { return l.weight ? l.bytes() : 0; }

}  // namespace

size_t Norm::bytes() const { return static_cast<size_t>(dim) * sizeof(float) * (bias ? 2 : 1); }

size_t ModelWeights::bytes() const {
  size_t total = embedding.bytes() + (position_embedding ? position_embedding->bytes() : 0) + final_norm.bytes() +
                 lm_head.linear.bytes();
  for (const LayerWeights& l : layers) {
    total += l.attn_norm.bytes() + l.mlp_norm.bytes() + l.qkv.linear.bytes() + l.o.linear.bytes() +
             LinearBytes(l.gate_up.linear) + LinearBytes(l.down.linear) + LinearBytes(l.moe.router);
    for (const Linear& e : l.moe.gate_up) total += LinearBytes(e);
    for (const Linear& e : l.moe.down) total += LinearBytes(e);
  }
  return total;
}

absl::StatusOr<ModelWeights> LoadWeights(const ModelSpec& spec, const TensorSource& source, const ShardLayout& shard,
                                         kernels::Backend& backend) {
  const internal::Family* family = internal::FindFamily(spec.architecture);
  if (family == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported architecture ", spec.architecture));
  }
  const internal::CheckpointNames names =
      family->tensor_names(spec, [&](const std::string& n) { return source.Find(n) != nullptr; });
  const int64_t hidden = spec.hidden_size, vocab = spec.vocab_size, inner = spec.intermediate_size;
  const int64_t hd = spec.head_dim, q = spec.q_size(), kv = spec.kv_size();
  const std::vector<RowRange> vocab_rows = {{shard.vocab0, shard.vocab}};

  ModelWeights w;
  ASSIGN_OR_RETURN(const TensorView* embedding, Require(source, names.token_embedding, {vocab, hidden}));
  RETURN_IF_ERROR(CheckFloatTensor(names.token_embedding, *embedding));
  {
    // This rank's vocabulary slice, in its own precision, as a lookup table.
    kernels::HostMatrix table{shard.vocab, hidden, WeightDTypeOf(*embedding), {}};
    table.values.assign(static_cast<size_t>(shard.vocab * hidden), 0.0f);
    for (int64_t v = shard.vocab0; v < std::min<int64_t>(vocab, shard.vocab0 + shard.vocab); ++v) {
      ReadFloatRun(*embedding, v * hidden, hidden, table.values.data() + (v - shard.vocab0) * hidden);
    }
    ASSIGN_OR_RETURN(w.embedding.table, backend.Pack(table, kernels::WeightUse::kTable));
    w.embedding.row0 = shard.vocab0;
  }
  if (spec.positions == PositionKind::kLearned) {
    ASSIGN_OR_RETURN(const TensorView* pos,
                     Require(source, names.position_embedding, {spec.max_position_embeddings, hidden}));
    kernels::HostMatrix table{spec.max_position_embeddings, hidden, DType::kF32, {}};
    table.values.resize(static_cast<size_t>(spec.max_position_embeddings) * hidden);
    RETURN_IF_ERROR(ReadAsFloat(names.position_embedding, *pos, table.values.data()));
    ASSIGN_OR_RETURN(w.position_embedding, backend.Pack(table, kernels::WeightUse::kTable));
  }
  ASSIGN_OR_RETURN(w.final_norm, LoadNorm(backend, source, names.final_norm, hidden));
  w.lm_head.vocab = vocab;
  if (names.lm_head.weights.empty()) {  // tied: the embedding's vocabulary slice
    LinearNames embedding_names;
    embedding_names.weights.push_back({names.token_embedding, false});
    ASSIGN_OR_RETURN(w.lm_head.linear, LoadLinear(backend, source, embedding_names, {vocab}, hidden, vocab_rows));
  } else {
    ASSIGN_OR_RETURN(w.lm_head.linear, LoadLinear(backend, source, names.lm_head, {vocab}, hidden, vocab_rows));
  }

  // Column-parallel rows and row-parallel columns of this rank.
  const std::vector<RowRange> qkv_rows = {{shard.q_head0 * hd, shard.q_heads * hd},
                                          {q + shard.kv_head0 * hd, shard.kv_heads * hd},
                                          {q + kv + shard.kv_head0 * hd, shard.kv_heads * hd}};
  const std::vector<RowRange> gate_up_rows =
      spec.gated_mlp || spec.is_moe()
          ? std::vector<RowRange>{{shard.inner0, shard.inner}, {inner + shard.inner0, shard.inner}}
          : std::vector<RowRange>{{shard.inner0, shard.inner}};
  for (const internal::LayerNames& ln : names.layers) {
    LayerWeights l;
    ASSIGN_OR_RETURN(l.attn_norm, LoadNorm(backend, source, ln.attn_norm, hidden));
    ASSIGN_OR_RETURN(l.mlp_norm, LoadNorm(backend, source, ln.mlp_norm, hidden));
    ASSIGN_OR_RETURN(l.qkv.linear, LoadLinear(backend, source, ln.qkv, {q, kv, kv}, hidden, qkv_rows));
    l.qkv.q_size = shard.q_heads * hd;
    l.qkv.kv_size = shard.kv_heads * hd;
    ASSIGN_OR_RETURN(l.o.linear, LoadLinear(backend, source, ln.o, {hidden}, q, {}, shard.q_head0 * hd, shard.q_heads * hd));
    if (spec.is_moe()) {
      ExpertParallelMoe& moe = l.moe;
      ASSIGN_OR_RETURN(moe.router, LoadLinear(backend, source, ln.router, {spec.num_experts}, hidden, {}, 0, -1,
                                               kernels::WeightUse::kLinearExact));
      moe.experts_per_token = spec.experts_per_token;
      moe.inner = shard.inner;
      moe.activation = spec.activation;
      moe.gate_up.resize(spec.num_experts);
      moe.down.resize(spec.num_experts);
      moe.held.assign(spec.num_experts, false);
      for (int e = 0; e < spec.num_experts; ++e) {
        if (!shard.OwnsExpert(e)) continue;  // another expert-parallel rank holds it
        moe.held[e] = true;
        ASSIGN_OR_RETURN(moe.gate_up[e], LoadLinear(backend, source, ln.expert_gate_up[e], {inner, inner}, hidden, gate_up_rows));
        ASSIGN_OR_RETURN(moe.down[e], LoadLinear(backend, source, ln.expert_down[e], {hidden}, inner, {}, shard.inner0, shard.inner));
      }
    } else {
      std::vector<int64_t> gate_up_parts = spec.gated_mlp ? std::vector<int64_t>{inner, inner}
                                                          : std::vector<int64_t>{inner};
      ASSIGN_OR_RETURN(l.gate_up.linear, LoadLinear(backend, source, ln.gate_up, gate_up_parts, hidden, gate_up_rows));
      ASSIGN_OR_RETURN(l.down.linear, LoadLinear(backend, source, ln.down, {hidden}, inner, {}, shard.inner0, shard.inner));
    }
    w.layers.push_back(std::move(l));
  }
  return w;
}

}  // namespace tessera::models
