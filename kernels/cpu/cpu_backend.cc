#include "kernels/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/aligned_buffer.h"
#include "common/bf16.h"
#include "common/status.h"
#include "common/thread_pool.h"
#include "kernels/cpu_isa.h"
#include "kernels/ops.h"

namespace tessera::kernels {
namespace {

class HostBuffer final : public Buffer {
 public:
  absl::Status Reserve(size_t bytes) override {
    memory_.Reserve(bytes);
    return absl::OkStatus();
  }
  void* data() const override { return const_cast<void*>(memory_.data()); }
  absl::Status Upload(const void* host, size_t bytes) override {
    memory_.Reserve(bytes);
    if (bytes > 0) std::memcpy(memory_.data(), host, bytes);
    return absl::OkStatus();
  }

 private:
  AlignedBuffer memory_;
};

// A linear layer's weight in the matmul panels (kernels/matmul.h).
class PackedWeight final : public Weight {
 public:
  PackedWeight(PackedMatrix packed, bool exact)
      : Weight(packed.rows, packed.cols), packed_(std::move(packed)), exact_(exact) {}
  size_t bytes() const override { return packed_.bytes(); }
  const PackedMatrix& packed() const { return packed_; }
  bool exact() const { return exact_; }

 private:
  PackedMatrix packed_;
  bool exact_;
};

// An embedding table, row-major in its own precision (lookups read whole rows).
class TableWeight final : public Weight {
 public:
  explicit TableWeight(const HostMatrix& m) : TableWeight(m.rows(), m.cols(), m.dtype()) {
    for (int64_t r = 0; r < m.rows(); ++r) std::memcpy(table_.as<uint8_t>() + r * m.row_bytes(), m.row(r), m.row_bytes());
  }
  // Uninitialised rows (zeros), for RestorePacked to fill.
  TableWeight(int64_t rows, int64_t cols, DType dtype)
      : Weight(rows, cols), dtype_(dtype), table_(static_cast<size_t>(rows * cols) * DTypeSize(dtype)) {}
  size_t bytes() const override { return table_.size(); }
  AlignedBuffer& table() { return table_; }
  const AlignedBuffer& table() const { return table_; }

  // Row `row` widened to fp32.
  void ReadRow(int64_t row, float* out) const {
    const int64_t n = cols();
    switch (dtype_) {
      case DType::kF32: std::memcpy(out, table_.as<float>() + row * n, n * sizeof(float)); break;
      case DType::kF16:
        for (int64_t j = 0; j < n; ++j) out[j] = F16ToFloat(table_.as<uint16_t>()[row * n + j]);
        break;
      case DType::kBF16:
        for (int64_t j = 0; j < n; ++j) out[j] = Bf16ToFloat(table_.as<uint16_t>()[row * n + j]);
        break;
    }
  }

 private:
  DType dtype_;
  AlignedBuffer table_;
};

class CpuBackend final : public Backend {
 public:
  CpuBackend(int num_threads, const MatmulOptions& matmul) : pool_(num_threads), matmul_(matmul) {
    matmul_.accumulate = false;
  }

  bool host_memory() const override { return true; }
  std::unique_ptr<Buffer> NewBuffer() override { return std::make_unique<HostBuffer>(); }

  absl::StatusOr<std::unique_ptr<Weight>> Pack(const HostMatrix& m, WeightUse use) override {
    if (use == WeightUse::kTable) return std::make_unique<TableWeight>(m);
    return std::make_unique<PackedWeight>(PackMatrix(m.row_data(), m.cols(), m.dtype(), &pool_),
                                          use == WeightUse::kLinearExact);
  }
  // The panels do not depend on the ISA level today; the level is named anyway so a
  // level-specific layout can never be read by another level's kernels.
  std::string PackedLayout() const override {
    return std::string("cpu-panels16-v1/") + CpuIsaName(ActiveCpuIsa());
  }
  std::span<const uint8_t> PackedBytes(const Weight& w) const override {
    if (const auto* table = dynamic_cast<const TableWeight*>(&w)) {
      return {table->table().as<uint8_t>(), table->table().size()};
    }
    const AlignedBuffer& data = static_cast<const PackedWeight&>(w).packed().data;
    return {data.as<uint8_t>(), data.size()};
  }
  absl::StatusOr<std::unique_ptr<Weight>> RestorePacked(WeightUse use, int64_t rows, int64_t cols, DType dtype,
                                                        size_t bytes,
                                                        const std::function<absl::Status(void*)>& fill) override {
    const size_t expected = use == WeightUse::kTable ? static_cast<size_t>(rows * cols) * DTypeSize(dtype)
                                                     : PackedMatrixBytes(rows, cols, dtype);
    if (bytes != expected) {
      return absl::InvalidArgumentError(
          absl::StrCat("a packed [", rows, ", ", cols, "] weight holds ", expected, " bytes, not ", bytes));
    }
    if (use == WeightUse::kTable) {
      auto table = std::make_unique<TableWeight>(rows, cols, dtype);
      RETURN_IF_ERROR(fill(table->table().data()));
      return table;
    }
    PackedMatrix packed;
    packed.rows = rows;
    packed.cols = cols;
    packed.dtype = dtype;
    packed.data = AlignedBuffer(bytes);
    RETURN_IF_ERROR(fill(packed.data.data()));
    return std::make_unique<PackedWeight>(std::move(packed), use == WeightUse::kLinearExact);
  }
  absl::Status ToHost(const void* src, void* host, size_t bytes) override {
    if (bytes > 0) std::memcpy(host, src, bytes);
    return absl::OkStatus();
  }
  absl::Status FromHost(const void* host, void* dst, size_t bytes) override { return ToHost(host, dst, bytes); }
  absl::Status Copy2D(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width_bytes,
                      int64_t rows) override {
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(static_cast<char*>(dst) + r * dst_pitch, static_cast<const char*>(src) + r * src_pitch,
                  width_bytes);
    }
    return absl::OkStatus();
  }

  absl::Status BeginStep(const StepRows& rows) override {
    sequences_.assign(rows.sequences.begin(), rows.sequences.end());
    rows_ = static_cast<int64_t>(rows.positions.size());
    const int64_t n = rows_;
    if (rows.inv_freq.empty()) return absl::OkStatus();
    // Each row's cos/sin, computed once per step for every layer.
    half_ = static_cast<int>(rows.inv_freq_stride > 0 ? rows.inv_freq_stride : rows.inv_freq.size());
    float* cos = cos_.ReserveFor<float>(n * half_);
    float* sin = sin_.ReserveFor<float>(n * half_);
    for (int64_t r = 0; r < n; ++r) {
      RotaryCosSin(rows.inv_freq.data() + r * rows.inv_freq_stride, half_, rows.positions[r], rows.rotary_scale,
                   cos + r * half_, sin + r * half_);
    }
    xpos_ = !rows.xpos_zeta.empty();
    if (xpos_) {
      float* q = xpos_q_.ReserveFor<float>(n * half_);
      float* k = xpos_k_.ReserveFor<float>(n * half_);
      for (int64_t r = 0; r < n; ++r) {
        const double power = rows.positions[r] / static_cast<double>(rows.xpos_scale_base);
        for (int j = 0; j < half_; ++j) {
          q[r * half_ + j] = static_cast<float>(std::pow(static_cast<double>(rows.xpos_zeta[j]), power));
          k[r * half_ + j] = static_cast<float>(std::pow(static_cast<double>(rows.xpos_zeta[j]), -power));
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status Linear(LinearRef w, const float* x, int64_t rows, float* y, bool accumulate) override {
    const auto& packed = static_cast<const PackedWeight&>(*w.weight);
    MatmulOptions options = matmul_;
    options.accumulate = accumulate;
    if (packed.exact()) options.bf16_activation_min_rows = 0;
    Matmul(x, rows, packed.cols(), packed.packed(), w.bias, y, packed.rows(), &pool_, options);
    return absl::OkStatus();
  }
  absl::Status GroupedLinear(std::span<const LinearRef> experts, std::span<const int64_t> first, const float* x,
                             int64_t in_width, float* y) override {
    for (size_t e = 0; e < experts.size(); ++e) {
      const int64_t n = first[e + 1] - first[e];
      if (n == 0) continue;
      const int64_t out_width = experts[e].weight->rows();
      RETURN_IF_ERROR(Linear(experts[e], x + first[e] * in_width, n, y + first[e] * out_width, false));
    }
    return absl::OkStatus();
  }
  absl::Status NormResidual(const NormParams& norm, float* residual, const float* delta, float* out, int64_t rows,
                            int64_t dim) override {
    if (delta != nullptr) {
      for (int64_t i = 0; i < rows * dim; ++i) residual[i] += delta[i];
    }
    const int tasks = static_cast<int>(std::min<int64_t>(rows, pool_.num_threads()));
    const int64_t per = (rows + tasks - 1) / tasks;
    pool_.Run(tasks, [&](int t) {
      const int64_t r0 = t * per, n = std::min(rows, r0 + per) - r0;
      if (n <= 0) return;
      if (norm.kind == NormKind::kRmsNorm) {
        RmsNorm(residual + r0 * dim, n, dim, dim, norm.weight, norm.eps, out + r0 * dim, dim);
      } else {
        LayerNorm(residual + r0 * dim, n, dim, dim, norm.weight, norm.bias, norm.eps, out + r0 * dim, dim);
      }
    });
    return absl::OkStatus();
  }
  absl::Status Embedding(const Weight& table, int64_t id0, const int32_t* ids, int64_t rows, float* out) override {
    const auto& t = static_cast<const TableWeight&>(table);
    const int64_t dim = t.cols();
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t local = ids[r] - id0;
      if (local < 0 || local >= t.rows()) {
        std::memset(out + r * dim, 0, dim * sizeof(float));
      } else {
        t.ReadRow(local, out + r * dim);
      }
    }
    return absl::OkStatus();
  }
  absl::Status Rotary(float* x, int64_t stride, int q_heads, int kv_heads, int head_dim) override {
    for (int64_t r = 0; r < rows_; ++r) {
      const float* cos = cos_.as<float>() + r * half_;
      const float* sin = sin_.as<float>() + r * half_;
      for (int head = 0; head < q_heads + kv_heads; ++head) {
        float* h = x + r * stride + head * head_dim;
        ApplyRotary(h, cos, sin, head_dim);
        if (!xpos_) continue;
        const float* scale = (head < q_heads ? xpos_q_ : xpos_k_).as<float>() + r * half_;
        for (int j = 0; j < half_; ++j) {
          h[j] *= scale[j];
          h[j + half_] *= scale[j];
        }
      }
    }
    return absl::OkStatus();
  }
  absl::Status WriteKv(const float* k, const float* v, int64_t stride, const PagedKvView& kv,
                       int kv_heads) override {
    kernels::WriteKv(k, v, stride, kv, kv_heads, sequences_);
    return absl::OkStatus();
  }
  absl::Status PagedAttention(const float* q, int64_t q_stride, const PagedKvView& kv, const AttentionShape& shape,
                              float* out, int64_t out_stride) override {
    kernels::PagedAttention(q, q_stride, kv, shape, sequences_, out, out_stride, &pool_);
    return absl::OkStatus();
  }
  absl::Status GatedActivation(const float* gate_up, int64_t rows, int64_t inner, Activation act,
                               float* out) override {
    kernels::GatedActivation(gate_up, rows, inner, act, out, &pool_);
    return absl::OkStatus();
  }
  absl::Status ActivationInPlace(float* x, int64_t rows, int64_t dim, Activation act) override {
    ApplyActivation(x, rows, dim, act, &pool_);
    return absl::OkStatus();
  }
  absl::Status GatherRows(const float* src, const int32_t* rows, int64_t count, int64_t dim, float* dst) override {
    for (int64_t i = 0; i < count; ++i) {
      // memmove: the forward pass may gather a buffer's rows towards its own start.
      std::memmove(dst + i * dim, src + static_cast<int64_t>(rows[i]) * dim, dim * sizeof(float));
    }
    return absl::OkStatus();
  }
  absl::Status CombineRows(const float* src, const int32_t* slots, const float* weights, int64_t rows, int k,
                           int64_t dim, float* out) override {
    for (int64_t r = 0; r < rows; ++r) {
      float* o = out + r * dim;
      std::memset(o, 0, dim * sizeof(float));
      for (int j = 0; j < k; ++j) {
        const int32_t slot = slots[r * k + j];
        if (slot < 0) continue;
        const float gate = weights[r * k + j];
        const float* s = src + static_cast<int64_t>(slot) * dim;
        for (int64_t d = 0; d < dim; ++d) o[d] += gate * s[d];
      }
    }
    return absl::OkStatus();
  }
  absl::Status AddResidual(float* residual, const float* partial, const float* bias, int64_t rows,
                           int64_t dim) override {
    for (int64_t r = 0; r < rows; ++r) {
      float* x = residual + r * dim;
      const float* p = partial + r * dim;
      for (int64_t j = 0; j < dim; ++j) x[j] += p[j] + (bias ? bias[j] : 0.0f);
    }
    return absl::OkStatus();
  }
  absl::Status RouteTopK(float* logits, int64_t rows, int experts, int k, int32_t* ids, float* weights,
                         bool renormalize) override {
    for (int64_t r = 0; r < rows; ++r) {
      kernels::RouteTopK(logits + r * experts, experts, k, ids + r * k, weights + r * k, renormalize);
    }
    return absl::OkStatus();
  }
  absl::Status Scale(float* x, int64_t n, float alpha) override {
    for (int64_t i = 0; i < n; ++i) x[i] *= alpha;
    return absl::OkStatus();
  }

 private:
  ThreadPool pool_;
  MatmulOptions matmul_;
  std::vector<AttentionSequence> sequences_;  // the step's
  int64_t rows_ = 0;                          // the step's tokens
  int half_ = 0;                              // rotary cos/sin per row
  AlignedBuffer cos_, sin_;                   // [rows, half]
  bool xpos_ = false;                         // the step's rows are XPos-scaled
  AlignedBuffer xpos_q_, xpos_k_;             // [rows, half]: their query and key scales
};

}  // namespace

std::unique_ptr<Backend> MakeCpuBackend(int num_threads, const MatmulOptions& matmul) {
  return std::make_unique<CpuBackend>(num_threads, matmul);
}

}  // namespace tessera::kernels
