#include "models/weights.h"

#include <cstring>

#include <algorithm>
#include <cmath>
#include <functional>

#include "absl/strings/str_cat.h"
#include "common/bf16.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "models/internal/family.h"
#include "models/packed_weight_file.h"
#include "models/weight_cache.h"

namespace tessera::models {
namespace {

using internal::LinearNames;
using internal::NormNames;

// What every tensor load shares: where tensors come from, where they go, and the
// buffer the file's bytes are read into before the backend packs them (reused, so a
// load allocates it once).
struct LoadContext {
  const TensorSource& source;
  kernels::Backend& backend;
  PackedWeightIo cache;
  AlignedBuffer staging;
  // Checkpoint bytes of the weight tensors loaded so far, of all this shard loads.
  int64_t done = 0, total = 0;
  const std::function<void(int64_t, int64_t)>& on_progress;

  void Loaded(const std::vector<const TensorView*>& views) {
    for (const TensorView* v : views) done += static_cast<int64_t>(v->nbytes);
    if (on_progress) on_progress(done, total);
  }

  // A [rows, cols] weight of `dtype` for `use`: from the packed-weight cache, or `read`
  // from the checkpoint and packed (and appended to the cache being written).
  absl::StatusOr<std::unique_ptr<kernels::Weight>> Pack(
      kernels::WeightUse use, int64_t rows, int64_t cols, DType dtype,
      const std::function<absl::StatusOr<kernels::HostMatrix>()>& read) {
    if (cache.from != nullptr) return cache.from->Next(backend, use, rows, cols, dtype);
    ASSIGN_OR_RETURN(const kernels::HostMatrix matrix, read());
    ASSIGN_OR_RETURN(std::unique_ptr<kernels::Weight> weight, backend.Pack(matrix, use));
    if (cache.to != nullptr) cache.to->Append(backend, *weight, use, dtype);
    return weight;
  }
};

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

// A norm's weights; none when `names` has none (a post-norm model's final norm). A
// ScaleNorm's one scalar g becomes the RMSNorm weight g/sqrt(dim) (ModelSpec::scale_norm).
absl::StatusOr<Norm> LoadNorm(LoadContext& ctx, const NormNames& names, int64_t dim, bool scale_norm) {
  Norm n;
  n.dim = dim;
  if (names.weight.empty()) return n;
  std::vector<float> weight;
  if (scale_norm) {
    ASSIGN_OR_RETURN(const std::vector<float> g, ReadVector(ctx.source, names.weight, 1));
    weight.assign(dim, g[0] / std::sqrt(static_cast<float>(dim)));
  } else {
    ASSIGN_OR_RETURN(weight, ReadVector(ctx.source, names.weight, dim));
  }
  ASSIGN_OR_RETURN(n.weight, ToDevice(ctx.backend, weight));
  if (!names.bias.empty()) {
    ASSIGN_OR_RETURN(std::vector<float> bias, ReadVector(ctx.source, names.bias, dim));
    ASSIGN_OR_RETURN(n.bias, ToDevice(ctx.backend, bias));
  }
  return n;
}

// Output rows [begin, begin + count) of a linear layer (in the concatenation of its
// parts): a tensor-parallel rank's slice of a column-parallel layer.
struct RowRange {
  int64_t begin, count;
};

// The rows LoadLinear asks for, as a HostMatrix. In the plain case (every part stored
// [out, in] in the same dtype) each part's needed rows are read with one read into
// the staging buffer and the matrix points at them; otherwise (transposed parts,
// another dtype) they are gathered into the matrix's own memory. Padding rows are zero.
absl::StatusOr<kernels::HostMatrix> ReadMatrix(LoadContext& ctx, const LinearNames& names,
                                               const std::vector<const TensorView*>& views,
                                               const std::vector<int64_t>& part_rows, int64_t total_rows, int64_t cols,
                                               const std::vector<RowRange>& rows, int64_t col0, int64_t col_count) {
  const DType dtype = WeightDTypeOf(*views[0]);
  const size_t elem = DTypeSize(dtype);
  bool direct = true;
  for (size_t i = 0; i < views.size(); ++i) {
    direct = direct && !names.weights[i].transposed && WeightDTypeOf(*views[i]) == dtype;
  }
  struct Local {
    size_t part;
    int64_t row;  // in the part; -1: padding
  };
  std::vector<Local> locals;
  std::vector<int64_t> lo(views.size(), INT64_MAX), hi(views.size(), 0);  // each part's needed rows
  for (const RowRange& range : rows) {
    for (int64_t g = range.begin; g < range.begin + range.count; ++g) {
      if (g >= total_rows) {
        locals.push_back({0, -1});
        continue;
      }
      size_t part = 0;
      int64_t local = g;
      while (local >= part_rows[part]) local -= part_rows[part++];
      locals.push_back({part, local});
      lo[part] = std::min(lo[part], local);
      hi[part] = std::max(hi[part], local + 1);
    }
  }
  if (direct) {
    const size_t row_bytes = static_cast<size_t>(cols) * elem;
    std::vector<size_t> part_offset(views.size(), 0);
    size_t total = 0;
    for (size_t i = 0; i < views.size(); ++i) {
      part_offset[i] = total;
      if (hi[i] > lo[i]) total += (hi[i] - lo[i]) * row_bytes;
    }
    uint8_t* staging = ctx.staging.ReserveFor<uint8_t>(total);
    for (size_t i = 0; i < views.size(); ++i) {
      if (hi[i] <= lo[i]) continue;
      RETURN_IF_ERROR(ReadBytes(*views[i], lo[i] * row_bytes, (hi[i] - lo[i]) * row_bytes, staging + part_offset[i]));
    }
    std::vector<const uint8_t*> row_data;
    for (const Local& l : locals) {
      row_data.push_back(l.row < 0 ? nullptr
                                   : staging + part_offset[l.part] + (l.row - lo[l.part]) * row_bytes + col0 * elem);
    }
    return kernels::HostMatrix(col_count, dtype, std::move(row_data));
  }
  kernels::HostMatrix gathered(static_cast<int64_t>(locals.size()), col_count, dtype);
  for (size_t out = 0; out < locals.size(); ++out) {
    const Local& l = locals[out];
    if (l.row < 0) continue;  // padding
    if (names.weights[l.part].transposed) {  // stored [in, out]: a strided column
      for (int64_t c = 0; c < col_count; ++c) {
        ReadRun(*views[l.part], (col0 + c) * part_rows[l.part] + l.row, 1, dtype, gathered.mutable_row(out) + c * elem);
      }
    } else {
      ReadRun(*views[l.part], l.row * cols + col0, col_count, dtype, gathered.mutable_row(out));
    }
  }
  return gathered;
}

// Loads a linear layer whose weight is the row concatenation of its parts, reading
// only this rank's shard: the output rows in `rows` (all when empty) and the input
// columns [col0, col0 + col_count) (all when col_count < 0). `part_rows` gives each
// part's output rows; a single fused part holds their sum. Rows past the end of the
// matrix (a padded vocabulary slice) are zero.
absl::StatusOr<Linear> LoadLinear(LoadContext& ctx, const LinearNames& names,
                                  std::vector<int64_t> part_rows, int64_t cols, std::vector<RowRange> rows = {},
                                  int64_t col0 = 0, int64_t col_count = -1,
                                  kernels::WeightUse use = kernels::WeightUse::kLinear) {
  int64_t total_rows = 0;
  for (int64_t r : part_rows) total_rows += r;
  if (names.weights.size() == 1 && part_rows.size() > 1) part_rows = {total_rows};
  if (rows.empty()) rows = {{0, total_rows}};
  if (col_count < 0) col_count = cols;

  std::vector<const TensorView*> views;
  for (size_t i = 0; i < names.weights.size(); ++i) {
    const auto& ref = names.weights[i];
    const int64_t r = part_rows[i];
    ASSIGN_OR_RETURN(const TensorView* view,
                     Require(ctx.source, ref.name, ref.transposed ? std::vector<int64_t>{cols, r}
                                                              : std::vector<int64_t>{r, cols}));
    RETURN_IF_ERROR(CheckFloatTensor(ref.name, *view));
    views.push_back(view);
  }
  int64_t out_rows = 0;
  for (const RowRange& range : rows) out_rows += range.count;
  Linear linear;
  ASSIGN_OR_RETURN(linear.weight, ctx.Pack(use, out_rows, col_count, WeightDTypeOf(*views[0]), [&] {
    return ReadMatrix(ctx, names, views, part_rows, total_rows, cols, rows, col0, col_count);
  }));
  ctx.Loaded(views);
  if (!names.biases.empty()) {
    std::vector<float> full(static_cast<size_t>(total_rows));
    int64_t offset = 0;
    for (size_t i = 0; i < names.biases.size(); ++i) {
      ASSIGN_OR_RETURN(auto b, ReadVector(ctx.source, names.biases[i], part_rows[i]));
      std::copy(b.begin(), b.end(), full.begin() + offset);
      offset += part_rows[i];
    }
    std::vector<float> bias;
    for (const RowRange& range : rows) {
      for (int64_t g = range.begin; g < range.begin + range.count; ++g) bias.push_back(g < total_rows ? full[g] : 0.0f);
    }
    ASSIGN_OR_RETURN(linear.bias, ToDevice(ctx.backend, bias));
  }
  return linear;
}

// Checkpoint bytes of a layer's weight tensors that this rank loads (the experts it
// holds; absent tensors count nothing, LoadLinear names them).
int64_t LayerBytes(const TensorSource& source, const internal::LayerNames& ln, const ShardLayout& shard) {
  int64_t bytes = 0;
  auto linear = [&](const LinearNames& names) {
    for (const auto& ref : names.weights) {
      if (const TensorView* view = source.Find(ref.name)) bytes += static_cast<int64_t>(view->nbytes);
    }
  };
  for (const LinearNames* names : {&ln.qkv, &ln.o, &ln.gate_up, &ln.down, &ln.router}) linear(*names);
  for (size_t e = 0; e < ln.expert_gate_up.size(); ++e) {
    if (!shard.OwnsExpert(static_cast<int>(e))) continue;
    linear(ln.expert_gate_up[e]);
    linear(ln.expert_down[e]);
  }
  return bytes;
}

size_t LinearBytes(const Linear& l) { return l.weight ? l.bytes() : 0; }

}  // namespace

size_t Norm::bytes() const {
  return weight ? static_cast<size_t>(dim) * sizeof(float) * (bias ? 2 : 1) : 0;
}

ModelWeights::ModelWeights() = default;
ModelWeights::~ModelWeights() = default;
ModelWeights::ModelWeights(ModelWeights&&) noexcept = default;
ModelWeights& ModelWeights::operator=(ModelWeights&&) noexcept = default;

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
                                         kernels::Backend& backend,
                                         const std::function<void(int64_t done, int64_t total)>& on_progress,
                                         PackedWeightIo cache) {
  const internal::Family* family = internal::FindFamily(spec.architecture);
  if (family == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported architecture ", spec.architecture));
  }
  const internal::CheckpointNames names =
      family->tensor_names(spec, [&](const std::string& n) { return source.Find(n) != nullptr; });
  const int64_t hidden = spec.hidden_size, vocab = spec.vocab_size, inner = spec.intermediate_size;
  const int64_t hd = spec.head_dim, q = spec.q_size(), kv = spec.kv_size();
  const std::vector<RowRange> vocab_rows = {{shard.vocab0, shard.vocab}};

  LoadContext ctx{source, backend, cache, {}, 0, 0, on_progress};
  {
    // The total the progress counts toward: the embedding (twice when the LM head is
    // tied to it), the LM head and every layer's weights this rank loads.
    auto add = [&](const std::string& name) {
      if (const TensorView* view = source.Find(name)) ctx.total += static_cast<int64_t>(view->nbytes);
    };
    add(names.token_embedding);
    if (names.lm_head.weights.empty()) add(names.token_embedding);
    for (const auto& ref : names.lm_head.weights) add(ref.name);
    for (const internal::LayerNames& ln : names.layers) ctx.total += LayerBytes(source, ln, shard);
  }
  ModelWeights w;
  {
    // This rank's vocabulary slice, in its own precision, as a lookup table.
    LinearNames embedding_names;
    embedding_names.weights.push_back({names.token_embedding, false});
    ASSIGN_OR_RETURN(Linear table, LoadLinear(ctx, embedding_names, {vocab}, hidden, vocab_rows, 0, -1,
                                              kernels::WeightUse::kTable));
    w.embedding.table = std::move(table.weight);
    w.embedding.row0 = shard.vocab0;
  }
  if (spec.positions == PositionKind::kLearned) {
    ASSIGN_OR_RETURN(const TensorView* pos,
                     Require(source, names.position_embedding, {spec.max_position_embeddings, hidden}));
    RETURN_IF_ERROR(CheckFloatTensor(names.position_embedding, *pos));
    ASSIGN_OR_RETURN(w.position_embedding,
                     ctx.Pack(kernels::WeightUse::kTable, spec.max_position_embeddings, hidden, DType::kF32,
                              [&]() -> absl::StatusOr<kernels::HostMatrix> {
                                kernels::HostMatrix table(spec.max_position_embeddings, hidden, DType::kF32);
                                ReadRun(*pos, 0, pos->numel(), DType::kF32, table.mutable_row(0));
                                return table;
                              }));
  }
  ASSIGN_OR_RETURN(w.final_norm, LoadNorm(ctx, names.final_norm, hidden, spec.scale_norm));
  w.lm_head.vocab = vocab;
  if (names.lm_head.weights.empty()) {  // tied: the embedding's vocabulary slice
    LinearNames embedding_names;
    embedding_names.weights.push_back({names.token_embedding, false});
    ASSIGN_OR_RETURN(w.lm_head.linear, LoadLinear(ctx, embedding_names, {vocab}, hidden, vocab_rows));
  } else {
    ASSIGN_OR_RETURN(w.lm_head.linear, LoadLinear(ctx, names.lm_head, {vocab}, hidden, vocab_rows));
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
    ASSIGN_OR_RETURN(l.attn_norm, LoadNorm(ctx, ln.attn_norm, hidden, spec.scale_norm));
    ASSIGN_OR_RETURN(l.mlp_norm, LoadNorm(ctx, ln.mlp_norm, hidden, spec.scale_norm));
    ASSIGN_OR_RETURN(l.qkv.linear, LoadLinear(ctx, ln.qkv, {q, kv, kv}, hidden, qkv_rows));
    l.qkv.q_size = shard.q_heads * hd;
    l.qkv.kv_size = shard.kv_heads * hd;
    ASSIGN_OR_RETURN(l.o.linear, LoadLinear(ctx, ln.o, {hidden}, q, {}, shard.q_head0 * hd, shard.q_heads * hd));
    if (spec.is_moe()) {
      ExpertParallelMoe& moe = l.moe;
      ASSIGN_OR_RETURN(moe.router, LoadLinear(ctx, ln.router, {spec.num_experts}, hidden, {}, 0, -1,
                                               kernels::WeightUse::kLinearExact));
      moe.experts_per_token = spec.experts_per_token;
      moe.renormalize = spec.moe_renormalize;
      moe.inner = shard.inner;
      moe.activation = spec.activation;
      moe.gate_up.resize(spec.num_experts);
      moe.down.resize(spec.num_experts);
      moe.held.assign(spec.num_experts, false);
      for (int e = 0; e < spec.num_experts; ++e) {
        if (!shard.OwnsExpert(e)) continue;  // another expert-parallel rank holds it
        moe.held[e] = true;
        ASSIGN_OR_RETURN(moe.gate_up[e], LoadLinear(ctx, ln.expert_gate_up[e], {inner, inner}, hidden, gate_up_rows));
        ASSIGN_OR_RETURN(moe.down[e], LoadLinear(ctx, ln.expert_down[e], {hidden}, inner, {}, shard.inner0, shard.inner));
      }
    } else {
      std::vector<int64_t> gate_up_parts = spec.gated_mlp ? std::vector<int64_t>{inner, inner}
                                                          : std::vector<int64_t>{inner};
      ASSIGN_OR_RETURN(l.gate_up.linear, LoadLinear(ctx, ln.gate_up, gate_up_parts, hidden, gate_up_rows));
      ASSIGN_OR_RETURN(l.down.linear, LoadLinear(ctx, ln.down, {hidden}, inner, {}, shard.inner0, shard.inner));
    }
    w.layers.push_back(std::move(l));
  }
  return w;
}

}  // namespace tessera::models
