#include "models/weights.h"

#include <cstring>

#include "absl/strings/str_cat.h"
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

absl::StatusOr<Norm> LoadNorm(const TensorSource& source, const NormNames& names, int64_t dim) {
  Norm n;
  ASSIGN_OR_RETURN(n.weight, ReadVector(source, names.weight, dim));
  if (!names.bias.empty()) {
    ASSIGN_OR_RETURN(n.bias, ReadVector(source, names.bias, dim));
  }
  return n;
}

// Loads a linear layer whose weight is the row concatenation of its parts.
// `part_rows` gives each part's output rows; a single fused part holds their sum.
absl::StatusOr<Linear> LoadLinear(const TensorSource& source, const LinearNames& names,
                                  std::vector<int64_t> part_rows, int64_t cols) {
  int64_t rows = 0;
  for (int64_t r : part_rows) rows += r;
  if (names.weights.size() == 1 && part_rows.size() > 1) part_rows = {rows};
  std::vector<float> dense(static_cast<size_t>(rows * cols));
  std::vector<float> part;
  DType dtype = DType::kF32;
  int64_t row0 = 0;
  for (size_t i = 0; i < names.weights.size(); ++i) {
    const auto& ref = names.weights[i];
    const int64_t r = part_rows[i];
    ASSIGN_OR_RETURN(const TensorView* view,
                     Require(source, ref.name, ref.transposed ? std::vector<int64_t>{cols, r}
                                                              : std::vector<int64_t>{r, cols}));
    if (i == 0) dtype = WeightDTypeOf(*view);
    part.resize(static_cast<size_t>(r * cols));
    RETURN_IF_ERROR(ReadAsFloat(ref.name, *view, part.data()));
    float* dst = dense.data() + row0 * cols;
    if (ref.transposed) {
      for (int64_t a = 0; a < cols; ++a)
        for (int64_t b = 0; b < r; ++b) dst[b * cols + a] = part[a * r + b];
    } else {
      std::memcpy(dst, part.data(), part.size() * sizeof(float));
    }
    row0 += r;
  }
  Linear linear;
  linear.weight = kernels::PackMatrix(dense.data(), rows, cols, dtype);
  if (!names.biases.empty()) {
    linear.bias.resize(rows);
    int64_t offset = 0;
    for (size_t i = 0; i < names.biases.size(); ++i) {
      const int64_t r = part_rows[i];
      ASSIGN_OR_RETURN(auto b, ReadVector(source, names.biases[i], r));
      std::copy(b.begin(), b.end(), linear.bias.begin() + offset);
      offset += r;
    }
  }
  return linear;
}

size_t LinearBytes(const Linear& l) { return l.weight.bytes() + l.bias.size() * sizeof(float); }
size_t NormBytes(const Norm& n) { return (n.weight.size() + n.bias.size()) * sizeof(float); }

}  // namespace

size_t ModelWeights::bytes() const {
  size_t total = token_embedding.size() + position_embedding.size() * sizeof(float) +
                 NormBytes(final_norm) + LinearBytes(lm_head);
  for (const LayerWeights& l : layers) {
    total += NormBytes(l.attn_norm) + NormBytes(l.mlp_norm) + LinearBytes(l.qkv) + LinearBytes(l.o) +
             LinearBytes(l.gate_up) + LinearBytes(l.down) + LinearBytes(l.router);
    for (const Linear& e : l.expert_gate_up) total += LinearBytes(e);
    for (const Linear& e : l.expert_down) total += LinearBytes(e);
  }
  return total;
}

absl::StatusOr<ModelWeights> LoadWeights(const ModelSpec& spec, const TensorSource& source) {
  const internal::Family* family = internal::FindFamily(spec.architecture);
  if (family == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported architecture ", spec.architecture));
  }
  const internal::CheckpointNames names =
      family->tensor_names(spec, [&](const std::string& n) { return source.Find(n) != nullptr; });
  const int64_t hidden = spec.hidden_size, vocab = spec.vocab_size, inner = spec.intermediate_size;

  ModelWeights w;
  ASSIGN_OR_RETURN(const TensorView* embedding, Require(source, names.token_embedding, {vocab, hidden}));
  w.embedding_dtype = WeightDTypeOf(*embedding);
  w.token_embedding = AlignedBuffer(static_cast<size_t>(vocab * hidden) * DTypeSize(w.embedding_dtype));
  std::vector<float> embedding_f32(static_cast<size_t>(vocab * hidden));
  RETURN_IF_ERROR(ReadAsFloat(names.token_embedding, *embedding, embedding_f32.data()));
  if (w.embedding_dtype == DType::kBF16) {
    std::memcpy(w.token_embedding.data(), embedding->data, embedding->nbytes);
  } else {
    std::memcpy(w.token_embedding.data(), embedding_f32.data(), embedding_f32.size() * sizeof(float));
  }
  if (spec.positions == PositionKind::kLearned) {
    ASSIGN_OR_RETURN(const TensorView* pos,
                     Require(source, names.position_embedding, {spec.max_position_embeddings, hidden}));
    w.position_embedding.resize(static_cast<size_t>(spec.max_position_embeddings) * hidden);
    RETURN_IF_ERROR(ReadAsFloat(names.position_embedding, *pos, w.position_embedding.data()));
  }
  ASSIGN_OR_RETURN(w.final_norm, LoadNorm(source, names.final_norm, hidden));
  if (names.lm_head.weights.empty()) {
    w.lm_head.weight = kernels::PackMatrix(embedding_f32.data(), vocab, hidden, w.embedding_dtype);
  } else {
    ASSIGN_OR_RETURN(w.lm_head, LoadLinear(source, names.lm_head, {vocab}, hidden));
  }
  embedding_f32 = {};

  const int64_t q = spec.q_size(), kv = spec.kv_size();
  for (const internal::LayerNames& ln : names.layers) {
    LayerWeights l;
    ASSIGN_OR_RETURN(l.attn_norm, LoadNorm(source, ln.attn_norm, hidden));
    ASSIGN_OR_RETURN(l.mlp_norm, LoadNorm(source, ln.mlp_norm, hidden));
    ASSIGN_OR_RETURN(l.qkv, LoadLinear(source, ln.qkv, {q, kv, kv}, hidden));
    ASSIGN_OR_RETURN(l.o, LoadLinear(source, ln.o, {hidden}, q));
    if (spec.is_moe()) {
      ASSIGN_OR_RETURN(l.router, LoadLinear(source, ln.router, {spec.num_experts}, hidden));
      for (int e = 0; e < spec.num_experts; ++e) {
        ASSIGN_OR_RETURN(Linear gu, LoadLinear(source, ln.expert_gate_up[e], {inner, inner}, hidden));
        ASSIGN_OR_RETURN(Linear d, LoadLinear(source, ln.expert_down[e], {hidden}, inner));
        l.expert_gate_up.push_back(std::move(gu));
        l.expert_down.push_back(std::move(d));
      }
    } else {
      std::vector<int64_t> gate_up_rows = spec.gated_mlp ? std::vector<int64_t>{inner, inner}
                                                         : std::vector<int64_t>{inner};
      ASSIGN_OR_RETURN(l.gate_up, LoadLinear(source, ln.gate_up, gate_up_rows, hidden));
      ASSIGN_OR_RETURN(l.down, LoadLinear(source, ln.down, {hidden}, inner));
    }
    w.layers.push_back(std::move(l));
  }
  return w;
}

}  // namespace tessera::models
