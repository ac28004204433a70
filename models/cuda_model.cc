#include "models/cuda_model.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/bf16.h"
#include "common/status.h"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/device_memory.h"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/moe.cuh"
#include "kernels/cuda/norms.cuh"
#include "models/moe_routing.h"
#include "models/rope.h"
#include "models/weights.h"

namespace tessera::models {
namespace {

namespace kc = kernels::cuda;

using kc::DeviceMemory;

// A Linear on the device: the weight row-major [out, in] in its checkpoint precision.
struct DeviceLinear {
  DeviceMemory weight;
  bool bf16 = false;
  int64_t out = 0, in = 0;
  DeviceMemory bias;  // empty: none
};

// `as_f32`: widen bf16 weights (the router, whose decisions stay exact as on the CPU).
absl::StatusOr<DeviceLinear> UploadLinear(const Linear& l, bool as_f32 = false) {
  DeviceLinear d;
  d.out = l.weight.rows;
  d.in = l.weight.cols;
  const bool stored_bf16 = l.weight.dtype == DType::kBF16;
  d.bf16 = stored_bf16 && !as_f32;
  const size_t n = static_cast<size_t>(d.out * d.in);
  if (stored_bf16) {
    std::vector<uint16_t> host(n);
    kernels::UnpackMatrix(l.weight, host.data());
    if (d.bf16) {
      RETURN_IF_ERROR(d.weight.Upload(host));
    } else {
      std::vector<float> wide(n);
      for (size_t i = 0; i < n; ++i) wide[i] = Bf16ToFloat(host[i]);
      RETURN_IF_ERROR(d.weight.Upload(wide));
    }
  } else if (l.weight.dtype == DType::kF16) {  // cuBLAS runs these in fp32 (widened once here)
    std::vector<uint16_t> half(n);
    kernels::UnpackMatrix(l.weight, half.data());
    std::vector<float> wide(n);
    for (size_t i = 0; i < n; ++i) wide[i] = F16ToFloat(half[i]);
    RETURN_IF_ERROR(d.weight.Upload(wide));
  } else {
    std::vector<float> host(n);
    kernels::UnpackMatrix(l.weight, host.data());
    RETURN_IF_ERROR(d.weight.Upload(host));
  }
  if (!l.bias.empty()) RETURN_IF_ERROR(d.bias.Upload(l.bias));
  return d;
}

struct DeviceNorm {
  DeviceMemory weight, bias;
};

absl::StatusOr<DeviceNorm> UploadNorm(const Norm& n) {
  DeviceNorm d;
  RETURN_IF_ERROR(d.weight.Upload(n.weight));
  if (!n.bias.empty()) RETURN_IF_ERROR(d.bias.Upload(n.bias));
  return d;
}

struct DeviceLayer {
  DeviceNorm attn_norm, mlp_norm;
  DeviceLinear qkv, o, gate_up, down, router;
  std::vector<DeviceLinear> expert_gate_up, expert_down;  // empty for experts other ranks hold
  int64_t q_size = 0, kv_size = 0;
};

}  // namespace

struct CudaModel::Impl {
  int device = 0;
  size_t weight_bytes = 0;
  ShardLayout shard;
  RotaryEmbedding rotary;
  DeviceMemory embedding;
  bool embedding_bf16 = false;
  int64_t embedding_row0 = 0, embedding_rows = 0;  // this rank's vocabulary slice
  DeviceMemory position_table;  // learned positions only
  int64_t max_positions = 0;
  DeviceNorm final_norm;
  DeviceLinear lm_head;  // this rank's vocabulary slice
  int64_t vocab = 0;     // the whole vocabulary
  std::vector<DeviceLayer> layers;
  std::optional<kc::Gemm> gemm;
  bool grouped_gemm = true;  // until cuBLAS says it cannot for these types
  int experts_per_token = 0;
  std::vector<bool> held_experts;  // the experts this rank runs
  int64_t moe_inner = 0;
  kernels::Activation moe_activation = kernels::Activation::kSilu;
  parallel::Communicator* tp = nullptr;   // null: one rank
  parallel::Communicator* moe = nullptr;  // the whole replica for the MoE sum; null: tp

  // Scratch, grown to the largest step seen.
  DeviceMemory x, h, pos_emb, qkv, attn, mlp, act, bf16, selected, logits, partial;
  DeviceMemory tokens, positions, table_offsets, tables, freqs, workspace, keep, plan_tiles, plan_single;
  DeviceMemory router_logits, route_ids, route_weights, moe_rows, moe_slots, moe_weights, moe_in, moe_mlp, moe_act,
      moe_out, gathered_logits, full_logits;
  std::vector<float> staging, gathered_host;  // host copies for host communicators

  explicit Impl(const ModelSpec& spec) : rotary(spec) {}

  // y = x · Wᵀ (accumulate: y +=), x contiguous [rows, l.in]; no bias.
  absl::Status Matmul(const DeviceLinear& l, const float* in, int64_t rows, float* y, bool accumulate) {
    if (l.bf16) {
      RETURN_IF_ERROR(bf16.Reserve(rows * l.in * sizeof(uint16_t)));
      RETURN_IF_CUDA(kc::LaunchToBf16(in, rows * l.in, bf16.as<uint16_t>(), nullptr));
      return gemm->Run(bf16.as<uint16_t>(), rows, l.in, l.weight.as<uint16_t>(), l.out, y, accumulate);
    }
    return gemm->Run(in, rows, l.in, l.weight.as<float>(), l.out, y, accumulate);
  }

  // y = x · Wᵀ + b (accumulate: y +=).
  absl::Status Linear(const DeviceLinear& l, const float* in, int64_t rows, float* y, bool accumulate) {
    RETURN_IF_ERROR(Matmul(l, in, rows, y, accumulate));
    if (!l.bias.empty()) RETURN_IF_CUDA(kc::LaunchAddBias(y, l.bias.as<float>(), rows, l.out, nullptr));
    return absl::OkStatus();
  }

  // data = its sum over `comm`'s ranks, `n` floats of device memory.
  absl::Status AllReduce(parallel::Communicator* comm, float* data, int64_t n) {
    if (comm->device_buffers()) return comm->AllReduceSum({data, static_cast<size_t>(n)});
    staging.resize(static_cast<size_t>(n));
    RETURN_IF_CUDA(cudaMemcpy(staging.data(), data, n * sizeof(float), cudaMemcpyDeviceToHost));
    RETURN_IF_ERROR(comm->AllReduceSum(staging));
    RETURN_IF_CUDA(cudaMemcpy(data, staging.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    return absl::OkStatus();
  }

  // A row-parallel layer: residual += all-reduce(x[:, this rank's columns] · Wᵀ) + b,
  // the bias added once after the sum; one rank accumulates straight into the residual.
  absl::Status RowParallel(const DeviceLinear& l, const float* in, int64_t rows, float* residual) {
    if (tp == nullptr) return Linear(l, in, rows, residual, true);
    RETURN_IF_ERROR(partial.Reserve(rows * l.out * sizeof(float)));
    RETURN_IF_ERROR(Matmul(l, in, rows, partial.as<float>(), false));
    RETURN_IF_ERROR(AllReduce(tp, partial.as<float>(), rows * l.out));
    RETURN_IF_CUDA(kc::LaunchAddResidual(residual, partial.as<float>(), l.bias.as<float>(), rows, l.out, nullptr));
    return absl::OkStatus();
  }

  // The projection `weights[e]` of every held expert over its segment of `in` (grouped
  // rows, `in_width` floats each) into its segment of `out`: one grouped cuBLAS call,
  // or one GEMM per expert where cuBLAS has no grouped GEMM for the types.
  absl::Status Experts(const std::vector<DeviceLinear>& weights, const std::vector<int64_t>& first, const float* in,
                       int64_t in_width, float* out) {
    const int64_t total = first.back();
    if (grouped_gemm) {
      const DeviceLinear* any = nullptr;
      for (const DeviceLinear& w : weights) any = w.weight.empty() ? any : &w;
      const bool use_bf16 = any->bf16;
      const void* base = in;
      if (use_bf16) {
        RETURN_IF_ERROR(bf16.Reserve(total * in_width * sizeof(uint16_t)));
        RETURN_IF_CUDA(kc::LaunchToBf16(in, total * in_width, bf16.as<uint16_t>(), nullptr));
        base = bf16.as<uint16_t>();
      }
      const size_t elem = use_bf16 ? sizeof(uint16_t) : sizeof(float);
      std::vector<kc::Gemm::Problem> problems;
      for (size_t e = 0; e < weights.size(); ++e) {
        const int64_t n = first[e + 1] - first[e];
        if (n == 0) continue;
        problems.push_back({static_cast<const char*>(base) + first[e] * in_width * elem, weights[e].weight.as<void>(),
                            out + first[e] * any->out, n});
      }
      const absl::Status s = gemm->RunGrouped(problems, in_width, any->out, use_bf16);
      if (s.ok()) return AddExpertBiases(weights, first, out);
      if (s.code() != absl::StatusCode::kUnimplemented) return s;
      grouped_gemm = false;
    }
    for (size_t e = 0; e < weights.size(); ++e) {
      const int64_t n = first[e + 1] - first[e];
      if (n > 0) RETURN_IF_ERROR(Matmul(weights[e], in + first[e] * in_width, n, out + first[e] * weights[e].out, false));
    }
    return AddExpertBiases(weights, first, out);
  }

  absl::Status AddExpertBiases(const std::vector<DeviceLinear>& weights, const std::vector<int64_t>& first,
                               float* out) {
    for (size_t e = 0; e < weights.size(); ++e) {
      const int64_t n = first[e + 1] - first[e];
      if (n == 0 || weights[e].bias.empty()) continue;
      RETURN_IF_CUDA(
          kc::LaunchAddBias(out + first[e] * weights[e].out, weights[e].bias.as<float>(), n, weights[e].out, nullptr));
    }
    return absl::OkStatus();
  }

  // Mixtral's sparse MoE: route on the device, group the rows by expert on the host,
  // run every held expert over its rows (grouped GEMMs), combine each row's weighted
  // outputs, sum over the replica's ranks and add to the residual.
  absl::Status Moe(const ModelSpec& spec, const DeviceLayer& w, const float* h, int64_t rows, float* x) {
    const int experts = spec.num_experts, k = experts_per_token;
    const int64_t hidden = spec.hidden_size;
    RETURN_IF_ERROR(router_logits.Reserve(rows * experts * sizeof(float)));
    RETURN_IF_ERROR(route_ids.Reserve(rows * k * sizeof(int32_t)));
    RETURN_IF_ERROR(route_weights.Reserve(rows * k * sizeof(float)));
    RETURN_IF_ERROR(Linear(w.router, h, rows, router_logits.as<float>(), false));
    RETURN_IF_CUDA(kc::LaunchRouteTopK(router_logits.as<float>(), rows, experts, k, route_ids.as<int32_t>(),
                                       route_weights.as<float>(), nullptr));
    std::vector<int32_t> ids(rows * k);
    std::vector<float> weights(rows * k);
    RETURN_IF_CUDA(
        cudaMemcpy(ids.data(), route_ids.as<int32_t>(), ids.size() * sizeof(int32_t), cudaMemcpyDeviceToHost));
    RETURN_IF_CUDA(cudaMemcpy(weights.data(), route_weights.as<float>(), weights.size() * sizeof(float),
                              cudaMemcpyDeviceToHost));
    const MoeRouting g = GroupByExpert(ids, weights, rows, k, held_experts);
    const int64_t total = g.first.back();
    RETURN_IF_ERROR(moe_slots.Upload(g.slots));
    RETURN_IF_ERROR(moe_weights.Upload(g.weights));
    RETURN_IF_ERROR(moe_out.Reserve(std::max<int64_t>(1, total) * hidden * sizeof(float)));
    if (total > 0) {
      RETURN_IF_ERROR(moe_rows.Upload(g.grouped_rows));
      RETURN_IF_ERROR(moe_in.Reserve(total * hidden * sizeof(float)));
      RETURN_IF_ERROR(moe_mlp.Reserve(total * 2 * moe_inner * sizeof(float)));
      RETURN_IF_ERROR(moe_act.Reserve(total * moe_inner * sizeof(float)));
      RETURN_IF_CUDA(kc::LaunchGatherRows(h, moe_rows.as<int32_t>(), total, hidden, moe_in.as<float>(), nullptr));
      RETURN_IF_ERROR(Experts(w.expert_gate_up, g.first, moe_in.as<float>(), hidden, moe_mlp.as<float>()));
      RETURN_IF_CUDA(kc::LaunchGatedActivation(moe_mlp.as<float>(), total, moe_inner, moe_activation,
                                               moe_act.as<float>(), nullptr));
      RETURN_IF_ERROR(Experts(w.expert_down, g.first, moe_act.as<float>(), moe_inner, moe_out.as<float>()));
    }
    RETURN_IF_ERROR(partial.Reserve(rows * hidden * sizeof(float)));
    RETURN_IF_CUDA(kc::LaunchCombineRows(moe_out.as<float>(), moe_slots.as<int32_t>(), moe_weights.as<float>(), rows,
                                         k, hidden, partial.as<float>(), nullptr));
    if (parallel::Communicator* comm = moe != nullptr ? moe : tp; comm != nullptr) {
      RETURN_IF_ERROR(AllReduce(comm, partial.as<float>(), rows * hidden));
    }
    RETURN_IF_CUDA(kc::LaunchAddResidual(x, partial.as<float>(), nullptr, rows, hidden, nullptr));
    return absl::OkStatus();
  }

  // The logits of this rank's vocabulary slice, gathered from every rank into full rows
  // [rows, vocab] on the device; returns where they are.
  absl::StatusOr<float*> LmHead(const float* in, int64_t rows) {
    const int64_t slice = lm_head.out;
    RETURN_IF_ERROR(logits.Reserve(rows * slice * sizeof(float)));
    RETURN_IF_ERROR(Linear(lm_head, in, rows, logits.as<float>(), false));
    if (tp == nullptr) return logits.as<float>();
    const int ranks = tp->size();
    const size_t local = static_cast<size_t>(rows * slice), all = local * ranks;
    RETURN_IF_ERROR(full_logits.Reserve(rows * vocab * sizeof(float)));
    // Each rank's [rows, slice] block lands in its columns of [rows, vocab] (the last
    // slice may be padding past the vocabulary).
    const void* gathered = nullptr;
    cudaMemcpyKind kind;
    if (tp->device_buffers()) {
      RETURN_IF_ERROR(gathered_logits.Reserve(all * sizeof(float)));
      RETURN_IF_ERROR(tp->AllGather({logits.as<float>(), local}, {gathered_logits.as<float>(), all}));
      gathered = gathered_logits.as<float>();
      kind = cudaMemcpyDeviceToDevice;
    } else {
      staging.resize(local);
      gathered_host.resize(all);
      RETURN_IF_CUDA(cudaMemcpy(staging.data(), logits.as<float>(), local * sizeof(float), cudaMemcpyDeviceToHost));
      RETURN_IF_ERROR(tp->AllGather(staging, gathered_host));
      gathered = gathered_host.data();
      kind = cudaMemcpyHostToDevice;
    }
    for (int rank = 0; rank < ranks; ++rank) {
      const int64_t v0 = rank * slice, count = std::min(slice, vocab - v0);
      if (count <= 0) continue;
      RETURN_IF_CUDA(cudaMemcpy2D(full_logits.as<float>() + v0, vocab * sizeof(float),
                                  static_cast<const float*>(gathered) + rank * local, slice * sizeof(float),
                                  count * sizeof(float), rows, kind));
    }
    return full_logits.as<float>();
  }

  absl::Status Normalize(const ModelSpec& spec, const DeviceNorm& n, float* residual, const float* delta, float* out,
                         int64_t rows) {
    if (spec.norm == NormKind::kRmsNorm) {
      RETURN_IF_CUDA(kc::LaunchRmsNorm(residual, delta, n.weight.as<float>(), out, rows, spec.hidden_size,
                                       spec.norm_eps, nullptr));
    } else {
      RETURN_IF_CUDA(kc::LaunchLayerNorm(residual, delta, n.weight.as<float>(), n.bias.as<float>(), out, rows,
                                         spec.hidden_size, spec.norm_eps, nullptr));
    }
    return absl::OkStatus();
  }
};

absl::StatusOr<std::unique_ptr<CudaKvPool>> CudaKvPool::Create(const kvstore::KvLayout& layout, int32_t num_blocks) {
  float* data = nullptr;
  const size_t bytes = static_cast<size_t>(layout.block_elems()) * num_blocks * sizeof(float);
  RETURN_IF_CUDA(cudaMalloc(&data, bytes));
  RETURN_IF_CUDA(cudaMemset(data, 0, bytes));
  return std::unique_ptr<CudaKvPool>(new CudaKvPool(layout, num_blocks, data));
}

CudaKvPool::~CudaKvPool() { cudaFree(data_); }

absl::StatusOr<std::unique_ptr<CudaModel>> CudaModel::Load(const std::string& model_dir, int device,
                                                           const ModelOptions& options) {
  ASSIGN_OR_RETURN(ModelSpec spec, LoadModelSpec(model_dir));
  ASSIGN_OR_RETURN(auto checkpoint, Checkpoint::Open(model_dir));
  absl::StatusOr<std::unique_ptr<CudaModel>> model = Create(spec, *checkpoint, device, options);
  if (!model.ok()) {
    return absl::Status(model.status().code(), absl::StrCat(model_dir, ": ", model.status().message()));
  }
  return model;
}

absl::StatusOr<std::unique_ptr<CudaModel>> CudaModel::Create(const ModelSpec& spec, const TensorSource& source,
                                                             int device, const ModelOptions& options) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;  // no driver: no devices
  if (device < 0 || device >= devices) {
    return absl::FailedPreconditionError(
        absl::StrCat("no CUDA device ", device, " (this machine has ", devices, ")"));
  }
  RETURN_IF_CUDA(cudaSetDevice(device));
  auto impl = std::make_unique<Impl>(spec);
  impl->device = device;
  ASSIGN_OR_RETURN(impl->shard, ShardLayout::For(spec, options.tp, options.ep));
  if ((options.tp.size > 1 && options.communicator == nullptr) ||
      (options.ep.size > 1 && options.moe_communicator == nullptr)) {
    return absl::InvalidArgumentError("a sharded model needs its communicators");
  }
  impl->tp = options.tp.size > 1 ? options.communicator : nullptr;
  impl->moe = options.ep.size > 1 ? options.moe_communicator : nullptr;
  ASSIGN_OR_RETURN(ModelWeights w, LoadWeights(spec, source, impl->shard));
  impl->weight_bytes = w.bytes();  // the same tensors, in the same precision
  impl->embedding_bf16 = w.embedding.dtype == DType::kBF16;
  impl->embedding_row0 = w.embedding.row0;
  impl->embedding_rows = w.embedding.rows;
  if (w.embedding.dtype == DType::kF16) {  // the device table is bf16 or fp32: widen
    std::vector<float> wide(w.embedding.table.size() / sizeof(uint16_t));
    for (size_t i = 0; i < wide.size(); ++i) wide[i] = F16ToFloat(w.embedding.table.as<uint16_t>()[i]);
    RETURN_IF_ERROR(impl->embedding.Upload(wide));
  } else {
    RETURN_IF_ERROR(impl->embedding.Upload(w.embedding.table.data(), w.embedding.table.size()));
  }
  if (spec.positions == PositionKind::kLearned) {
    RETURN_IF_ERROR(impl->position_table.Upload(w.position_embedding));
    impl->max_positions = static_cast<int64_t>(w.position_embedding.size()) / spec.hidden_size;
  }
  ASSIGN_OR_RETURN(impl->final_norm, UploadNorm(w.final_norm));
  ASSIGN_OR_RETURN(impl->lm_head, UploadLinear(w.lm_head.linear));
  impl->vocab = w.lm_head.vocab;
  for (const LayerWeights& l : w.layers) {
    DeviceLayer d;
    ASSIGN_OR_RETURN(d.attn_norm, UploadNorm(l.attn_norm));
    ASSIGN_OR_RETURN(d.mlp_norm, UploadNorm(l.mlp_norm));
    ASSIGN_OR_RETURN(d.qkv, UploadLinear(l.qkv.linear));
    ASSIGN_OR_RETURN(d.o, UploadLinear(l.o.linear));
    d.q_size = l.qkv.q_size;
    d.kv_size = l.qkv.kv_size;
    if (spec.is_moe()) {
      ASSIGN_OR_RETURN(d.router, UploadLinear(l.moe.router, /*as_f32=*/true));
      d.expert_gate_up.resize(spec.num_experts);
      d.expert_down.resize(spec.num_experts);
      for (int e = 0; e < spec.num_experts; ++e) {
        if (!l.moe.held[e]) continue;
        ASSIGN_OR_RETURN(d.expert_gate_up[e], UploadLinear(l.moe.gate_up[e]));
        ASSIGN_OR_RETURN(d.expert_down[e], UploadLinear(l.moe.down[e]));
      }
      impl->experts_per_token = l.moe.experts_per_token;
      impl->held_experts = l.moe.held;
      impl->moe_inner = l.moe.inner;
      impl->moe_activation = l.moe.activation;
    } else {
      ASSIGN_OR_RETURN(d.gate_up, UploadLinear(l.gate_up.linear));
      ASSIGN_OR_RETURN(d.down, UploadLinear(l.down.linear));
    }
    impl->layers.push_back(std::move(d));
  }
  ASSIGN_OR_RETURN(kc::Gemm gemm, kc::Gemm::Create(nullptr));
  impl->gemm.emplace(std::move(gemm));
  return std::unique_ptr<CudaModel>(new CudaModel(spec, std::move(impl)));
}

CudaModel::CudaModel(ModelSpec spec, std::unique_ptr<Impl> impl) : spec_(std::move(spec)), impl_(std::move(impl)) {}

CudaModel::~CudaModel() = default;

size_t CudaModel::weight_bytes() const { return impl_->weight_bytes; }

const ShardLayout& CudaModel::shard() const { return impl_->shard; }

kvstore::KvLayout CudaModel::KvLayoutFor(int block_size) const {
  kvstore::KvLayout layout;
  layout.num_layers = spec_.num_layers;
  layout.num_kv_heads = impl_->shard.kv_heads;
  layout.head_dim = spec_.head_dim;
  layout.block_size = block_size;
  return layout;
}

absl::Status CudaModel::Forward(std::span<const SequenceInput> batch, CudaKvPool& kv, std::vector<float>* logits) {
  ASSIGN_OR_RETURN(const float* device_logits, ForwardOnDevice(batch, kv));
  size_t rows = 0;
  for (const SequenceInput& s : batch) rows += s.all_logits ? s.tokens.size() : 1;
  logits->resize(rows * impl_->vocab);
  RETURN_IF_CUDA(cudaMemcpy(logits->data(), device_logits, logits->size() * sizeof(float), cudaMemcpyDeviceToHost));
  return absl::OkStatus();
}

absl::StatusOr<float*> CudaModel::ForwardOnDevice(std::span<const SequenceInput> batch, CudaKvPool& kv) {
  RETURN_IF_ERROR(ValidateBatch(spec_, KvLayoutFor(kv.layout().block_size), kv.layout(), kv.num_blocks(), batch));
  Impl& m = *impl_;
  RETURN_IF_CUDA(cudaSetDevice(m.device));
  const int64_t hidden = spec_.hidden_size;
  const int hd = spec_.head_dim, half = hd / 2;
  const bool rope = spec_.positions == PositionKind::kRope;
  const bool dynamic = rope && spec_.rope.scaling == RopeScaling::kDynamic;

  // The rows' metadata, built on the host and uploaded once per step.
  std::vector<int32_t> tokens, positions, table_offsets, tables, keep;
  std::vector<float> freqs, scratch;
  std::vector<int64_t> new_tokens;
  int64_t max_keys = 0;
  for (const SequenceInput& s : batch) {
    new_tokens.push_back(static_cast<int64_t>(s.tokens.size()));
    const int32_t offset = static_cast<int32_t>(tables.size());
    tables.insert(tables.end(), s.block_table.begin(), s.block_table.end());
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    const std::vector<float>* inv_freq = rope ? &m.rotary.InverseFrequencies(s.context_len + n, &scratch) : nullptr;
    for (int64_t i = 0; i < n; ++i) {
      tokens.push_back(s.tokens[i]);
      positions.push_back(static_cast<int32_t>(s.context_len + i));
      table_offsets.push_back(offset);
      if (dynamic) freqs.insert(freqs.end(), inv_freq->begin(), inv_freq->end());
      if (s.all_logits || i == n - 1) keep.push_back(static_cast<int32_t>(tokens.size() - 1));
    }
    if (rope && !dynamic && freqs.empty()) freqs = *inv_freq;
    max_keys = std::max(max_keys, s.context_len + n);
  }
  const int64_t rows = static_cast<int64_t>(tokens.size()), out_rows = static_cast<int64_t>(keep.size());
  RETURN_IF_ERROR(m.tokens.Upload(tokens));
  RETURN_IF_ERROR(m.positions.Upload(positions));
  RETURN_IF_ERROR(m.table_offsets.Upload(table_offsets));
  RETURN_IF_ERROR(m.tables.Upload(tables));
  RETURN_IF_ERROR(m.keep.Upload(keep));
  if (rope) RETURN_IF_ERROR(m.freqs.Upload(freqs));
  const kc::DeviceRows drows{m.positions.as<int32_t>(), m.table_offsets.as<int32_t>(), m.tables.as<int32_t>(), rows};
  const kc::AttentionPlan plan = kc::PlanAttention(new_tokens.data(), static_cast<int64_t>(new_tokens.size()));
  RETURN_IF_ERROR(m.plan_tiles.Upload(plan.tiles));
  RETURN_IF_ERROR(m.plan_single.Upload(plan.single_rows));
  const kc::DevicePlan dplan{m.plan_tiles.as<int32_t>(), plan.num_tiles(), m.plan_single.as<int32_t>(),
                             static_cast<int64_t>(plan.single_rows.size())};

  RETURN_IF_ERROR(m.x.Reserve(rows * hidden * sizeof(float)));
  RETURN_IF_ERROR(m.h.Reserve(rows * hidden * sizeof(float)));
  float* x = m.x.as<float>();
  float* h = m.h.as<float>();
  RETURN_IF_CUDA(kc::LaunchEmbedding(m.embedding.as<void>(), m.embedding_bf16, m.embedding_row0, m.embedding_rows,
                                     m.tokens.as<int32_t>(), rows, hidden, x, nullptr));
  if (m.tp != nullptr) RETURN_IF_ERROR(m.AllReduce(m.tp, x, rows * hidden));  // every rank's slice
  const float* delta = nullptr;  // learned positions join the residual in the first norm
  if (spec_.positions == PositionKind::kLearned) {
    RETURN_IF_ERROR(m.pos_emb.Reserve(rows * hidden * sizeof(float)));
    RETURN_IF_CUDA(kc::LaunchEmbedding(m.position_table.as<void>(), false, 0, m.max_positions,
                                       m.positions.as<int32_t>(), rows, hidden, m.pos_emb.as<float>(), nullptr));
    delta = m.pos_emb.as<float>();
  }

  const kvstore::KvLayout& layout = kv.layout();
  const int q_heads = m.shard.q_heads, kv_heads = m.shard.kv_heads;
  const float yarn_scale =
      spec_.rope.scaling == RopeScaling::kYarn ? static_cast<float>(spec_.rope.attention_factor) : 1.0f;
  for (int l = 0; l < spec_.num_layers; ++l) {
    DeviceLayer& w = m.layers[l];
    RETURN_IF_ERROR(m.Normalize(spec_, w.attn_norm, x, delta, h, rows));
    delta = nullptr;

    // Attention.
    const int64_t qkv_width = w.q_size + 2 * w.kv_size;
    RETURN_IF_ERROR(m.qkv.Reserve(rows * qkv_width * sizeof(float)));
    RETURN_IF_ERROR(m.attn.Reserve(rows * w.q_size * sizeof(float)));
    float* qkv = m.qkv.as<float>();
    RETURN_IF_ERROR(m.Linear(w.qkv, h, rows, qkv, false));
    if (rope) {
      RETURN_IF_CUDA(kc::LaunchRotary(qkv, rows, qkv_width, q_heads + kv_heads, hd, hd, m.positions.as<int32_t>(),
                                      m.freqs.as<float>(), dynamic ? half : 0, yarn_scale, nullptr));
    }
    const kernels::PagedKvView view = LayerKvView(layout, kv.data(), l);
    RETURN_IF_CUDA(kc::LaunchWriteKv(qkv + w.q_size, qkv + w.q_size + w.kv_size, qkv_width, view, kv_heads, drows,
                                     nullptr));
    kernels::AttentionShape shape;
    shape.num_heads = q_heads;
    shape.num_kv_heads = kv_heads;
    shape.head_dim = hd;
    shape.window = spec_.sliding_window[l];
    shape.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    RETURN_IF_ERROR(m.workspace.Reserve(
        std::max<int64_t>(1, kc::PagedAttentionWorkspace(dplan.num_single, shape, max_keys)) * sizeof(float)));
    RETURN_IF_CUDA(kc::LaunchPagedAttention(qkv, qkv_width, view, shape, drows, dplan, max_keys,
                                            m.workspace.as<float>(), m.attn.as<float>(), w.q_size, nullptr));
    RETURN_IF_ERROR(m.RowParallel(w.o, m.attn.as<float>(), rows, x));

    // MLP.
    RETURN_IF_ERROR(m.Normalize(spec_, w.mlp_norm, x, nullptr, h, rows));
    if (!spec_.is_moe()) {
      const int64_t inner = m.shard.inner;
      RETURN_IF_ERROR(m.mlp.Reserve(rows * w.gate_up.out * sizeof(float)));
      float* mlp = m.mlp.as<float>();
      RETURN_IF_ERROR(m.Linear(w.gate_up, h, rows, mlp, false));
      float* act = mlp;
      if (spec_.gated_mlp) {
        RETURN_IF_ERROR(m.act.Reserve(rows * inner * sizeof(float)));
        act = m.act.as<float>();
        RETURN_IF_CUDA(kc::LaunchGatedActivation(mlp, rows, inner, spec_.activation, act, nullptr));
      } else {
        RETURN_IF_CUDA(kc::LaunchActivation(mlp, rows, inner, spec_.activation, nullptr));
      }
      RETURN_IF_ERROR(m.RowParallel(w.down, act, rows, x));
    } else {
      RETURN_IF_ERROR(m.Moe(spec_, w, h, rows, x));
    }
  }

  // The rows that need logits: gathered, normalised, projected.
  RETURN_IF_ERROR(m.selected.Reserve(out_rows * hidden * sizeof(float)));
  RETURN_IF_CUDA(kc::LaunchGatherRows(x, m.keep.as<int32_t>(), out_rows, hidden, m.selected.as<float>(), nullptr));
  RETURN_IF_ERROR(m.Normalize(spec_, m.final_norm, m.selected.as<float>(), nullptr, h, out_rows));
  return m.LmHead(h, out_rows);
}

}  // namespace tessera::models
