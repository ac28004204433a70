#include "models/parallel_layers.h"

#include <algorithm>

#include "common/status.h"
#include "models/moe_routing.h"

namespace tessera::models {
namespace {

// data = its sum over `comm`'s ranks (n floats of the backend's memory), staged through
// the host when the communicator takes host buffers and the backend's are not.
absl::Status AllReduce(const LayerContext& ctx, parallel::Communicator& comm, float* data, int64_t n,
                       LayerScratch& scratch) {
  if (ctx.backend->host_memory() || comm.device_buffers()) return comm.AllReduceSum({data, static_cast<size_t>(n)});
  scratch.staging.resize(static_cast<size_t>(n));
  RETURN_IF_ERROR(ctx.backend->ToHost(data, scratch.staging.data(), n * sizeof(float)));
  RETURN_IF_ERROR(comm.AllReduceSum(scratch.staging));
  return ctx.backend->FromHost(scratch.staging.data(), data, n * sizeof(float));
}

// gathered = every rank's `local` (n floats each) in rank order, staged likewise.
absl::Status AllGather(const LayerContext& ctx, parallel::Communicator& comm, const float* local, int64_t n,
                       float* gathered, LayerScratch& scratch) {
  const size_t all = static_cast<size_t>(n) * comm.size();
  if (ctx.backend->host_memory() || comm.device_buffers()) {
    return comm.AllGather({local, static_cast<size_t>(n)}, {gathered, all});
  }
  scratch.staging.resize(static_cast<size_t>(n));
  scratch.gathered_staging.resize(all);
  RETURN_IF_ERROR(ctx.backend->ToHost(local, scratch.staging.data(), n * sizeof(float)));
  RETURN_IF_ERROR(comm.AllGather(scratch.staging, scratch.gathered_staging));
  return ctx.backend->FromHost(scratch.gathered_staging.data(), gathered, all * sizeof(float));
}

// residual += all-reduce(partial) + bias.
absl::Status ReduceInto(const LayerContext& ctx, parallel::Communicator* comm, float* residual, float* partial,
                        int64_t rows, int64_t width, const float* bias, LayerScratch& scratch) {
  if (comm != nullptr) RETURN_IF_ERROR(AllReduce(ctx, *comm, partial, rows * width, scratch));
  return ctx.backend->AddResidual(residual, partial, bias, rows, width);
}

}  // namespace

size_t Linear::bytes() const {
  return weight->bytes() + (bias ? static_cast<size_t>(weight->rows()) * sizeof(float) : 0);
}

LayerScratch::LayerScratch(kernels::Backend& b) {
  for (auto* buffer : {&partial, &router_logits, &route_ids, &route_weights, &moe_rows, &moe_slots, &moe_weights,
                       &moe_in, &moe_mlp, &moe_act, &moe_out, &logits, &gathered_logits, &full_logits}) {
    *buffer = b.NewBuffer();
  }
}

absl::Status ColumnParallelLinear::Forward(const float* x, int64_t rows, float* y, const LayerContext& ctx) const {
  return ctx.backend->Linear(linear.ref(), x, rows, y, /*accumulate=*/false);
}

absl::Status RowParallelLinear::AddInto(float* residual, const float* x, int64_t rows, const LayerContext& ctx,
                                        LayerScratch& scratch) const {
  if (ctx.tp == nullptr) return ctx.backend->Linear(linear.ref(), x, rows, residual, /*accumulate=*/true);
  const int64_t width = linear.out_features();
  ASSIGN_OR_RETURN(float* partial, scratch.partial->ReserveFor<float>(rows * width));
  RETURN_IF_ERROR(ctx.backend->Linear({linear.weight.get(), nullptr}, x, rows, partial, false));
  return ReduceInto(ctx, ctx.tp, residual, partial, rows, width, linear.ref().bias, scratch);
}

absl::Status VocabParallelEmbedding::Lookup(const int32_t* ids, int64_t rows, float* x, const LayerContext& ctx,
                                            LayerScratch& scratch) const {
  RETURN_IF_ERROR(ctx.backend->Embedding(*table, row0, ids, rows, x));
  if (ctx.tp == nullptr) return absl::OkStatus();
  return AllReduce(ctx, *ctx.tp, x, rows * table->cols(), scratch);
}

absl::StatusOr<float*> ParallelLmHead::Forward(const float* h, int64_t rows, const LayerContext& ctx,
                                               LayerScratch& scratch) const {
  const int64_t slice = linear.out_features();
  ASSIGN_OR_RETURN(float* local, scratch.logits->ReserveFor<float>(std::max<int64_t>(1, rows * slice)));
  RETURN_IF_ERROR(ctx.backend->Linear(linear.ref(), h, rows, local, false));
  if (ctx.tp == nullptr) return local;
  const int ranks = ctx.tp->size();
  ASSIGN_OR_RETURN(float* gathered, scratch.gathered_logits->ReserveFor<float>(rows * slice * ranks));
  RETURN_IF_ERROR(AllGather(ctx, *ctx.tp, local, rows * slice, gathered, scratch));
  // Each rank's [rows, slice] block lands in its columns of [rows, vocab] (the last
  // slice may be padding past the vocabulary).
  ASSIGN_OR_RETURN(float* full, scratch.full_logits->ReserveFor<float>(rows * vocab));
  for (int rank = 0; rank < ranks; ++rank) {
    const int64_t v0 = rank * slice, count = std::min(slice, vocab - v0);
    if (count <= 0) continue;
    RETURN_IF_ERROR(ctx.backend->Copy2D(full + v0, vocab * sizeof(float), gathered + rank * rows * slice,
                                        slice * sizeof(float), count * sizeof(float), rows));
  }
  return full;
}

absl::Status ExpertParallelMoe::AddInto(float* residual, const float* h, int64_t rows, int64_t hidden,
                                        const LayerContext& ctx, LayerScratch& scratch) const {
  kernels::Backend& b = *ctx.backend;
  const int experts = static_cast<int>(router.out_features()), k = experts_per_token;
  // Route on the device; group the rows by expert on the host.
  ASSIGN_OR_RETURN(float* logits, scratch.router_logits->ReserveFor<float>(rows * experts));
  ASSIGN_OR_RETURN(int32_t* ids, scratch.route_ids->ReserveFor<int32_t>(rows * k));
  ASSIGN_OR_RETURN(float* weights, scratch.route_weights->ReserveFor<float>(rows * k));
  RETURN_IF_ERROR(b.Linear(router.ref(), h, rows, logits, false));
  RETURN_IF_ERROR(b.RouteTopK(logits, rows, experts, k, ids, weights, renormalize));
  scratch.host_ids.resize(rows * k);
  scratch.host_weights.resize(rows * k);
  RETURN_IF_ERROR(b.ToHost(ids, scratch.host_ids.data(), rows * k * sizeof(int32_t)));
  RETURN_IF_ERROR(b.ToHost(weights, scratch.host_weights.data(), rows * k * sizeof(float)));
  const MoeRouting g = GroupByExpert(scratch.host_ids, scratch.host_weights, rows, k, held);

  // Every held expert over its block of rows (grouped), into its block of moe_out.
  const int64_t total = g.first.back();
  ASSIGN_OR_RETURN(float* out, scratch.moe_out->ReserveFor<float>(std::max<int64_t>(1, total) * hidden));
  if (total > 0) {
    RETURN_IF_ERROR(scratch.moe_rows->Upload(std::span<const int32_t>(g.grouped_rows)));
    ASSIGN_OR_RETURN(float* in, scratch.moe_in->ReserveFor<float>(total * hidden));
    ASSIGN_OR_RETURN(float* mlp, scratch.moe_mlp->ReserveFor<float>(total * 2 * inner));
    ASSIGN_OR_RETURN(float* act, scratch.moe_act->ReserveFor<float>(total * inner));
    RETURN_IF_ERROR(b.GatherRows(h, scratch.moe_rows->as<int32_t>(), total, hidden, in));
    std::vector<kernels::LinearRef> gate_up_refs, down_refs;
    for (int e = 0; e < experts; ++e) {
      gate_up_refs.push_back(held[e] ? gate_up[e].ref() : kernels::LinearRef{});
      down_refs.push_back(held[e] ? down[e].ref() : kernels::LinearRef{});
    }
    RETURN_IF_ERROR(b.GroupedLinear(gate_up_refs, g.first, in, hidden, mlp));
    RETURN_IF_ERROR(b.GatedActivation(mlp, total, inner, activation, act));
    RETURN_IF_ERROR(b.GroupedLinear(down_refs, g.first, act, inner, out));
  }
  // Each row's weighted outputs, summed in expert order, then over the replica's ranks.
  RETURN_IF_ERROR(scratch.moe_slots->Upload(std::span<const int32_t>(g.slots)));
  RETURN_IF_ERROR(scratch.moe_weights->Upload(std::span<const float>(g.weights)));
  ASSIGN_OR_RETURN(float* combined, scratch.partial->ReserveFor<float>(rows * hidden));
  RETURN_IF_ERROR(b.CombineRows(out, scratch.moe_slots->as<int32_t>(), scratch.moe_weights->as<float>(), rows, k,
                                hidden, combined));
  return ReduceInto(ctx, ctx.moe != nullptr ? ctx.moe : ctx.tp, residual, combined, rows, hidden, nullptr, scratch);
}

}  // namespace tessera::models
