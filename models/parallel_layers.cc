#include "models/parallel_layers.h"

#include <algorithm>
#include <cstring>

#include "common/bf16.h"
#include "common/status.h"
#include "models/moe_routing.h"

namespace tessera::models {
namespace {

// residual += partial (+ bias), after summing `partial` over `comm` when sharded.
absl::Status ReduceInto(float* residual, float* partial, int64_t rows, int64_t hidden, const float* bias,
                        parallel::Communicator* comm) {
  if (comm != nullptr) RETURN_IF_ERROR(comm->AllReduceSum({partial, static_cast<size_t>(rows * hidden)}));
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = residual + r * hidden;
    const float* pr = partial + r * hidden;
    for (int64_t j = 0; j < hidden; ++j) xr[j] += pr[j] + (bias ? bias[j] : 0.0f);
  }
  return absl::OkStatus();
}

}  // namespace

void ColumnParallelLinear::Forward(const float* x, int64_t rows, int64_t x_stride, float* y, int64_t y_stride,
                                   const LayerContext& ctx) const {
  kernels::Matmul(x, rows, x_stride, linear.weight, linear.bias_or_null(), y, y_stride, ctx.pool, ctx.matmul);
}

absl::Status RowParallelLinear::AddInto(float* residual, const float* x, int64_t rows, int64_t x_stride,
                                        const LayerContext& ctx, LayerScratch& scratch) const {
  const int64_t hidden = linear.weight.rows;
  if (ctx.tp == nullptr) {  // unsharded: accumulate straight into the residual
    kernels::MatmulOptions accumulate = ctx.matmul;
    accumulate.accumulate = true;
    kernels::Matmul(x, rows, x_stride, linear.weight, linear.bias_or_null(), residual, hidden, ctx.pool, accumulate);
    return absl::OkStatus();
  }
  float* partial = scratch.partial.ReserveFor<float>(rows * hidden);
  kernels::Matmul(x, rows, x_stride, linear.weight, nullptr, partial, hidden, ctx.pool, ctx.matmul);
  return ReduceInto(residual, partial, rows, hidden, linear.bias_or_null(), ctx.tp);
}

absl::Status VocabParallelEmbedding::Lookup(std::span<const int32_t> tokens, float* x, const LayerContext& ctx) const {
  for (size_t i = 0; i < tokens.size(); ++i) {
    float* xr = x + static_cast<int64_t>(i) * hidden;
    const int64_t local = tokens[i] - row0;
    if (local < 0 || local >= rows) {
      std::memset(xr, 0, hidden * sizeof(float));
    } else if (dtype == DType::kBF16) {
      const uint16_t* e = table.as<uint16_t>() + local * hidden;
      for (int64_t j = 0; j < hidden; ++j) xr[j] = Bf16ToFloat(e[j]);
    } else if (dtype == DType::kF16) {
      const uint16_t* e = table.as<uint16_t>() + local * hidden;
      for (int64_t j = 0; j < hidden; ++j) xr[j] = F16ToFloat(e[j]);
    } else {
      std::memcpy(xr, table.as<float>() + local * hidden, hidden * sizeof(float));
    }
  }
  if (ctx.tp == nullptr) return absl::OkStatus();
  return ctx.tp->AllReduceSum({x, tokens.size() * static_cast<size_t>(hidden)});
}

absl::Status ParallelLmHead::Forward(const float* h, int64_t rows, int64_t hidden, std::vector<float>* logits,
                                     const LayerContext& ctx, LayerScratch& scratch) const {
  const int64_t slice = linear.weight.rows;
  logits->resize(static_cast<size_t>(rows) * vocab);
  if (ctx.tp == nullptr) {
    kernels::Matmul(h, rows, hidden, linear.weight, linear.bias_or_null(), logits->data(), vocab, ctx.pool, ctx.matmul);
    return absl::OkStatus();
  }
  const int ranks = ctx.tp->size();
  scratch.local_logits.resize(static_cast<size_t>(rows) * slice);
  scratch.gathered_logits.resize(scratch.local_logits.size() * ranks);
  kernels::Matmul(h, rows, hidden, linear.weight, linear.bias_or_null(), scratch.local_logits.data(), slice, ctx.pool,
                  ctx.matmul);
  RETURN_IF_ERROR(ctx.tp->AllGather(scratch.local_logits, scratch.gathered_logits));
  for (int rank = 0; rank < ranks; ++rank) {  // [rank][row][slice] -> [row][vocab]
    const int64_t v0 = rank * slice, count = std::min(slice, vocab - v0);
    if (count <= 0) continue;
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(logits->data() + r * vocab + v0, scratch.gathered_logits.data() + (rank * rows + r) * slice,
                  count * sizeof(float));
    }
  }
  return absl::OkStatus();
}

absl::Status ExpertParallelMoe::AddInto(float* residual, const float* h, int64_t rows, int64_t hidden,
                                        const LayerContext& ctx, LayerScratch& scratch) const {
  const int experts = static_cast<int>(router.weight.rows), k = experts_per_token;
  scratch.router_logits.resize(static_cast<size_t>(rows) * experts);
  kernels::MatmulOptions exact = ctx.matmul;
  exact.bf16_activation_min_rows = 0;  // routing decisions stay exact
  kernels::Matmul(h, rows, hidden, router.weight, router.bias_or_null(), scratch.router_logits.data(), experts,
                  ctx.pool, exact);
  std::vector<int32_t>& ids = scratch.route_ids;
  std::vector<float>& weights = scratch.route_weights;
  ids.resize(rows * k);
  weights.resize(rows * k);
  for (int64_t r = 0; r < rows; ++r) {
    kernels::RouteTopK(scratch.router_logits.data() + r * experts, experts, k, ids.data() + r * k,
                       weights.data() + r * k);
  }
  const MoeRouting g = GroupByExpert(ids, weights, rows, k, held);

  // Every held expert over its block of rows, into its block of `out`.
  const int64_t total = g.first.back();
  float* in = scratch.moe_in.ReserveFor<float>(std::max<int64_t>(1, total) * hidden);
  float* out = scratch.moe_out.ReserveFor<float>(std::max<int64_t>(1, total) * hidden);
  float* mlp = scratch.moe_mlp.ReserveFor<float>(std::max<int64_t>(1, total) * 2 * inner);
  float* act = scratch.moe_act.ReserveFor<float>(std::max<int64_t>(1, total) * inner);
  for (int64_t i = 0; i < total; ++i) std::memcpy(in + i * hidden, h + g.grouped_rows[i] * hidden, hidden * sizeof(float));
  for (int e = 0; e < experts; ++e) {
    const int64_t n = g.first[e + 1] - g.first[e], row0 = g.first[e];
    if (n == 0) continue;
    kernels::Matmul(in + row0 * hidden, n, hidden, gate_up[e].weight, gate_up[e].bias_or_null(),
                    mlp + row0 * 2 * inner, 2 * inner, ctx.pool, ctx.matmul);
    kernels::GatedActivation(mlp + row0 * 2 * inner, n, inner, activation, act + row0 * inner, ctx.pool);
    kernels::Matmul(act + row0 * inner, n, inner, down[e].weight, nullptr, out + row0 * hidden, hidden, ctx.pool,
                    ctx.matmul);
  }
  // Each row's weighted outputs, summed in expert order, then over the replica's ranks.
  float* combined = scratch.partial.ReserveFor<float>(rows * hidden);
  for (int64_t r = 0; r < rows; ++r) {
    float* cr = combined + r * hidden;
    std::memset(cr, 0, hidden * sizeof(float));
    for (int j = 0; j < k; ++j) {
      const int32_t slot = g.slots[r * k + j];
      if (slot < 0) continue;
      const float gate = g.weights[r * k + j];
      const float* o = out + static_cast<int64_t>(slot) * hidden;
      for (int64_t d = 0; d < hidden; ++d) cr[d] += gate * o[d];
    }
  }
  return ReduceInto(residual, combined, rows, hidden, nullptr, ctx.moe != nullptr ? ctx.moe : ctx.tp);
}

}  // namespace tessera::models
