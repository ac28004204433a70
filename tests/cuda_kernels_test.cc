// Every CUDA op against its CPU oracle, over sweeps of shapes (and dtypes where an op
// takes several). Skips, with a message, where no GPU is present.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "common/bf16.h"
#include "kernels/attention.h"
#include "kernels/cuda/attention.cuh"
#include "kvstore/cuda_block_copier.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/moe.cuh"
#include "kernels/cuda/norms.cuh"
#include "kernels/cuda/sampling.cuh"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/sampling.h"
#include "models/rope.h"

namespace tessera::kernels {
namespace {

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda::DeviceCount() == 0) GTEST_SKIP() << "no CUDA device: GPU tests skipped";
  }
  ThreadPool pool_{2};  // for the CPU oracles
};

// A device copy of a host vector, freed with the object.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(const std::vector<T>& host) : size_(host.size()) {
    EXPECT_EQ(cudaMalloc(&ptr_, std::max<size_t>(1, size_) * sizeof(T)), cudaSuccess);
    cudaMemcpy(ptr_, host.data(), size_ * sizeof(T), cudaMemcpyHostToDevice);
  }
  explicit DeviceBuffer(size_t size) : DeviceBuffer(std::vector<T>(size)) {}
  ~DeviceBuffer() { cudaFree(ptr_); }
  T* get() { return ptr_; }
  std::vector<T> Host() const {
    std::vector<T> out(size_);
    EXPECT_EQ(cudaMemcpy(out.data(), ptr_, size_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }

 private:
  T* ptr_ = nullptr;
  size_t size_;
};

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

void ExpectNear(const std::vector<float>& got, const std::vector<float>& want, float tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], tol * (1 + std::fabs(want[i]))) << "element " << i;
  }
}

TEST_F(CudaTest, NormsWithTheResidualAddMatchCpu) {
  for (int64_t dim : {16, 64, 1000, 4096}) {
    const int64_t rows = 7;
    const std::vector<float> x = Random(rows * dim, 1), delta = Random(rows * dim, 2), w = Random(dim, 3),
                             b = Random(dim, 4);
    std::vector<float> sum(x);
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += delta[i];
    for (bool layer : {false, true}) {
      SCOPED_TRACE(layer ? "LayerNorm" : "RmsNorm");
      std::vector<float> want(rows * dim);
      if (layer) {
        LayerNorm(sum.data(), rows, dim, dim, w.data(), b.data(), 1e-5f, want.data(), dim);
      } else {
        RmsNorm(sum.data(), rows, dim, dim, w.data(), 1e-5f, want.data(), dim);
      }
      DeviceBuffer<float> dx(x), dd(delta), dw(w), db(b), dout(rows * dim);
      const int err = layer ? cuda::LaunchLayerNorm(dx.get(), dd.get(), dw.get(), db.get(), dout.get(), rows, dim,
                                                    1e-5f, nullptr)
                            : cuda::LaunchRmsNorm(dx.get(), dd.get(), dw.get(), dout.get(), rows, dim, 1e-5f, nullptr);
      ASSERT_EQ(err, 0);
      ExpectNear(dout.Host(), want, 1e-4f);
      ExpectNear(dx.Host(), sum, 1e-6f);  // the residual stream holds the sum
    }
  }
}

TEST_F(CudaTest, EmbeddingGathersF32AndBf16RowsOfAVocabularySlice) {
  const int64_t vocab = 50, dim = 96;
  const std::vector<float> table = Random(vocab * dim, 5);
  std::vector<uint16_t> table_bf16(table.size());
  for (size_t i = 0; i < table.size(); ++i) table_bf16[i] = FloatToBf16(table[i]);
  const std::vector<int32_t> ids = {3, 0, 49, 3, 17, 25};
  // The whole table, then the slice [20, 50) a tensor-parallel rank holds.
  for (auto [id0, rows] : {std::pair<int64_t, int64_t>{0, vocab}, {20, 30}}) {
    for (bool bf16 : {false, true}) {
      DeviceBuffer<float> t32(std::vector<float>(table.begin() + id0 * dim, table.end()));
      DeviceBuffer<uint16_t> t16(std::vector<uint16_t>(table_bf16.begin() + id0 * dim, table_bf16.end()));
      DeviceBuffer<int32_t> dids(ids);
      DeviceBuffer<float> out(ids.size() * dim);
      ASSERT_EQ(cuda::LaunchEmbedding(bf16 ? static_cast<const void*>(t16.get()) : t32.get(), bf16, id0, rows,
                                      dids.get(), static_cast<int64_t>(ids.size()), dim, out.get(), nullptr),
                0);
      std::vector<float> want;
      for (int32_t id : ids) {
        const bool held = id >= id0 && id < id0 + rows;
        for (int64_t d = 0; d < dim; ++d) {
          want.push_back(!held ? 0.0f : bf16 ? Bf16ToFloat(table_bf16[id * dim + d]) : table[id * dim + d]);
        }
      }
      EXPECT_EQ(out.Host(), want) << "slice from " << id0 << (bf16 ? " bf16" : " f32");
    }
  }
}

TEST_F(CudaTest, ActivationsMatchCpu) {
  for (Activation act : {Activation::kSilu, Activation::kGeluTanh, Activation::kGeluErf, Activation::kRelu}) {
    for (int64_t inner : {1, 33, 512}) {
      const int64_t rows = 5;
      const std::vector<float> gate_up = Random(rows * 2 * inner, 6, 3.0f);
      std::vector<float> want(rows * inner);
      GatedActivation(gate_up.data(), rows, inner, act, want.data(), &pool_);
      DeviceBuffer<float> dgu(gate_up), dout(rows * inner);
      ASSERT_EQ(cuda::LaunchGatedActivation(dgu.get(), rows, inner, act, dout.get(), nullptr), 0);
      ExpectNear(dout.Host(), want, 1e-5f);

      std::vector<float> x = Random(rows * inner, 7, 3.0f);
      DeviceBuffer<float> dx(x);
      ApplyActivation(x.data(), rows, inner, act, &pool_);
      ASSERT_EQ(cuda::LaunchActivation(dx.get(), rows, inner, act, nullptr), 0);
      ExpectNear(dx.Host(), x, 1e-5f);
    }
  }
}

// Every scaling variant, through the frequencies models/rope.h computes.
TEST_F(CudaTest, RotaryMatchesCpuForEveryScalingVariant) {
  for (models::RopeScaling scaling : {models::RopeScaling::kNone, models::RopeScaling::kLinear,
                                      models::RopeScaling::kDynamic, models::RopeScaling::kNtk,
                                      models::RopeScaling::kLlama3, models::RopeScaling::kYarn}) {
    models::ModelSpec spec;
    spec.head_dim = 64;
    spec.max_position_embeddings = 256;
    spec.rope.theta = 10000.0;
    spec.rope.scaling = scaling;
    spec.rope.factor = 4.0;
    spec.rope.original_max_position_embeddings = 64;
    spec.rope.low_freq_factor = 1.0;
    spec.rope.high_freq_factor = 4.0;
    spec.rope.beta_fast = 32.0;
    spec.rope.beta_slow = 1.0;
    spec.rope.attention_factor = scaling == models::RopeScaling::kYarn ? 1.1 : 1.0;
    const models::RotaryEmbedding rope(spec);
    std::vector<float> scratch;
    const std::vector<float>& inv_freq = rope.InverseFrequencies(300, &scratch);
    const int heads = 3, dim = spec.head_dim, rows = 6;
    const std::vector<int32_t> positions = {0, 1, 7, 63, 200, 299};
    std::vector<float> x = Random(rows * heads * dim, 8);
    DeviceBuffer<float> dx(x);
    DeviceBuffer<float> dfreq(inv_freq);
    DeviceBuffer<int32_t> dpos(positions);
    std::vector<float> cos(dim / 2), sin(dim / 2);
    for (int r = 0; r < rows; ++r) {
      RotaryCosSin(inv_freq.data(), dim / 2, positions[r], rope.attention_scale(), cos.data(), sin.data());
      for (int h = 0; h < heads; ++h) ApplyRotary(x.data() + (r * heads + h) * dim, cos.data(), sin.data(), dim);
    }
    const float scale = scaling == models::RopeScaling::kYarn ? 1.1f : 1.0f;
    ASSERT_EQ(cuda::LaunchRotary(dx.get(), rows, heads * dim, heads, dim, dim, dpos.get(), dfreq.get(),
                                 /*inv_freq_stride=*/0, scale, nullptr, 0, heads, nullptr),
              0);
    ExpectNear(dx.Host(), x, 1e-5f);

    // XPos on the rotated rows: the first two heads (queries) times zeta^(pos/base),
    // the third (a key) times its inverse.
    spec.xpos_scale_base = 64;
    const models::RotaryEmbedding xpos(spec);
    DeviceBuffer<float> dzeta(std::vector<float>(xpos.xpos_zeta().begin(), xpos.xpos_zeta().end()));
    DeviceBuffer<float> dy(std::vector<float>(rows * heads * dim, 1.0f));
    ASSERT_EQ(cuda::LaunchRotary(dy.get(), rows, heads * dim, heads, dim, dim, dpos.get(), dfreq.get(), 0, 1.0f,
                                 dzeta.get(), 64.0f, /*q_heads=*/2, nullptr),
              0);
    std::vector<float> want(rows * heads * dim, 1.0f);
    for (int r = 0; r < rows; ++r) {
      RotaryCosSin(inv_freq.data(), dim / 2, positions[r], 1.0f, cos.data(), sin.data());
      for (int h = 0; h < heads; ++h) {
        float* head = want.data() + (r * heads + h) * dim;
        ApplyRotary(head, cos.data(), sin.data(), dim);
        for (int j = 0; j < dim / 2; ++j) {
          const double power = (h < 2 ? 1.0 : -1.0) * positions[r] / 64.0;
          const float s = static_cast<float>(std::pow(static_cast<double>(xpos.xpos_zeta()[j]), power));
          head[j] *= s;
          head[j + dim / 2] *= s;
        }
      }
    }
    ExpectNear(dy.Host(), want, 1e-4f);
  }
}

// Prefill and decode rows of several sequences, with GQA, sliding windows and
// contexts long enough to be split (flash-decoding), against the CPU kernel, for each
// cache dtype: the same bytes written (the same rounding, and for int8 and fp8 the
// same scales, fp8's raised within a record as later tokens need), then attention.
TEST_F(CudaTest, PagedAttentionMatchesCpu) {
  struct Case {
    int heads, kv_heads, head_dim, window;
    std::vector<std::pair<int64_t, int64_t>> seqs;  // (context_len, num_new)
  };
  const Case cases[] = {
      {4, 4, 64, 0, {{0, 9}, {5, 1}}},
      {8, 2, 128, 0, {{700, 1}, {0, 33}, {1500, 2}}},  // GQA; long contexts split
      {4, 1, 64, 48, {{300, 1}, {10, 20}}},            // MQA, sliding window
      {2, 2, 256, 0, {{31, 1}}},
      {8, 2, 128, 0, {{100, 70}, {0, 8}, {3, 7}}},     // prefill tiles after a cached prefix
      {4, 1, 64, 24, {{50, 100}}},                     // a window shorter than the tile's span
      {2, 2, 256, 0, {{0, 40}}},                       // the tile's staging beyond 48 KB
      {4, 4, 80, 0, {{17, 33}}},                       // head_dim not a multiple of 32
  };
  for (const auto& [c, dtype] : [&] {
         std::vector<std::pair<Case, KvDtype>> all;
         for (const Case& c : cases) {
           for (KvDtype d : {KvDtype::kF32, KvDtype::kBf16, KvDtype::kF16, KvDtype::kInt8, KvDtype::kFp8E4m3}) {
             all.push_back({c, d});
           }
         }
         return all;
       }()) {
    SCOPED_TRACE(KvDtypeName(dtype));
    const int block_size = 16;
    int64_t rows = 0, blocks = 0, max_keys = 0;
    for (auto [ctx, n] : c.seqs) {
      rows += n;
      blocks += (ctx + n + block_size - 1) / block_size;
      max_keys = std::max(max_keys, ctx + n);
    }
    // Block tables: each sequence's blocks, scattered over the pool (as a real one).
    std::vector<int32_t> pool_order(blocks);
    std::iota(pool_order.begin(), pool_order.end(), 0);
    std::shuffle(pool_order.begin(), pool_order.end(), std::mt19937(blocks));
    std::vector<int32_t> tables;
    std::vector<AttentionSequence> seqs;
    std::vector<int32_t> positions, offsets;
    int64_t row = 0, next_block = 0;
    for (auto [ctx, n] : c.seqs) {
      const int64_t nb = (ctx + n + block_size - 1) / block_size;
      const int32_t offset = static_cast<int32_t>(tables.size());
      for (int64_t b = 0; b < nb; ++b) tables.push_back(pool_order[next_block++]);
      seqs.push_back({row, n, ctx, nullptr});
      for (int64_t i = 0; i < n; ++i) {
        positions.push_back(static_cast<int32_t>(ctx + i));
        offsets.push_back(offset);
      }
      row += n;
    }
    for (size_t s = 0, off = 0; s < seqs.size(); ++s) {
      seqs[s].block_table = tables.data() + off;
      off += (seqs[s].context_len + seqs[s].num_new + block_size - 1) / block_size;
    }
    // Strides in bytes; the pools start as the same garbage on both sides.
    const int64_t head_stride = KvRecordBytes(dtype, block_size, c.head_dim), block_stride = head_stride * c.kv_heads;
    std::vector<std::byte> k_cache(blocks * block_stride), v_cache(blocks * block_stride);
    for (size_t i = 0; i < k_cache.size(); ++i) {
      k_cache[i] = static_cast<std::byte>(i * 7);
      v_cache[i] = static_cast<std::byte>(i * 13);
    }
    // The cached context is never written here, so the scaled dtypes' garbage is made
    // finite: no fp8 NaN code (0x7f, 0xff) among the values, and scales of 1/16.
    const int64_t scales_offset = KvValuesBytes(dtype, block_size, c.head_dim);
    if (dtype == KvDtype::kInt8 || dtype == KvDtype::kFp8E4m3) {
      for (std::vector<std::byte>* cache : {&k_cache, &v_cache}) {
        for (int64_t record = 0; record < blocks * c.kv_heads; ++record) {
          std::byte* r = cache->data() + record * head_stride;
          for (int64_t i = 0; i < scales_offset; ++i) r[i] &= std::byte{0x77};
          for (int64_t i = scales_offset; i < head_stride; i += 4) {
            const float scale = 1.0f / 16;
            std::memcpy(r + i, &scale, sizeof scale);
          }
        }
      }
    }
    const std::vector<std::byte> k_garbage = k_cache, v_garbage = v_cache;
    const int64_t q_stride = c.heads * c.head_dim, kv_row = c.kv_heads * c.head_dim;
    const std::vector<float> q = Random(rows * q_stride, 11);
    std::vector<float> k = Random(rows * kv_row, 12), v = Random(rows * kv_row, 13);
    // Magnitudes that grow over a record's first tokens: an fp8 record's scale is raised
    // and its earlier tokens re-encoded.
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < kv_row; ++i) {
        k[r * kv_row + i] *= 1 + r % 4;
        v[r * kv_row + i] *= 1 + r % 4;
      }
    }
    AttentionShape shape{c.heads, c.kv_heads, c.head_dim, c.window, 1.0f / std::sqrt(static_cast<float>(c.head_dim))};

    const PagedKvView host_kv{k_cache.data(), v_cache.data(), block_stride, head_stride, block_size, c.head_dim, dtype,
                              scales_offset};
    WriteKv(k.data(), v.data(), kv_row, host_kv, c.kv_heads, seqs);
    std::vector<float> want(rows * q_stride);
    PagedAttention(q.data(), q_stride, host_kv, shape, seqs, want.data(), q_stride, &pool_);

    DeviceBuffer<std::byte> dk_cache(k_garbage), dv_cache(v_garbage);
    DeviceBuffer<float> dq(q), dk(k), dv(v);
    DeviceBuffer<int32_t> dtables(tables), dpos(positions), doff(offsets);
    DeviceBuffer<float> workspace(std::max<int64_t>(1, cuda::PagedAttentionWorkspace(rows, shape, max_keys)));
    const PagedKvView dev_kv{dk_cache.get(), dv_cache.get(), block_stride, head_stride, block_size, c.head_dim, dtype,
                             scales_offset};
    const cuda::DeviceRows drows{dpos.get(), doff.get(), dtables.get(), rows};
    ASSERT_EQ(cuda::LaunchWriteKv(dk.get(), dv.get(), kv_row, dev_kv, c.kv_heads, drows, nullptr), 0);
    EXPECT_EQ(dk_cache.Host(), k_cache);  // the same bytes in the same slots
    EXPECT_EQ(dv_cache.Host(), v_cache);
    // As planned (prefill tiles where a sequence has enough rows), then every row
    // through the decode kernel: both equal the CPU.
    std::vector<int64_t> new_tokens;
    for (auto [ctx, n] : c.seqs) new_tokens.push_back(n);
    cuda::AttentionPlan planned = cuda::PlanAttention(new_tokens.data(), static_cast<int64_t>(new_tokens.size()));
    cuda::AttentionPlan singles;
    for (int32_t r = 0; r < rows; ++r) singles.single_rows.push_back(r);
    for (const cuda::AttentionPlan* plan : {&planned, &singles}) {
      DeviceBuffer<int32_t> dtiles(plan->tiles), dsingle(plan->single_rows);
      const cuda::DevicePlan dplan{dtiles.get(), plan->num_tiles(), dsingle.get(),
                                   static_cast<int64_t>(plan->single_rows.size())};
      DeviceBuffer<float> dout(rows * q_stride);
      ASSERT_EQ(cuda::LaunchPagedAttention(dq.get(), q_stride, dev_kv, shape, drows, dplan, max_keys,
                                           workspace.get(), dout.get(), q_stride, nullptr),
                0);
      ExpectNear(dout.Host(), want, 1e-4f);
    }
  }
}

// The plan is host code: it runs (and is checked) without a GPU.
TEST(AttentionPlanTest, LongSequencesGoInTilesShortOnesRowByRow) {
  const std::vector<int64_t> new_tokens = {1, 70, 7, 8, 1};
  const cuda::AttentionPlan plan = cuda::PlanAttention(new_tokens.data(), 5);
  // Rows: [0] decode, [1, 71) tiled 32 + 32 + 6, [71, 78) one by one, [78, 86) one tile, [86] decode.
  EXPECT_EQ(plan.tiles, (std::vector<int32_t>{1, 32, 33, 32, 65, 6, 78, 8}));
  std::vector<int32_t> singles = {0, 71, 72, 73, 74, 75, 76, 77, 86};
  EXPECT_EQ(plan.single_rows, singles);
}

// The row moves of the MoE path, the bias add of the linear layers and the residual
// add of the row-parallel ones.
TEST_F(CudaTest, BiasGatherCombineAndResidualAddAreExact) {
  const int64_t rows = 6, dim = 300;
  const std::vector<float> y = Random(rows * dim, 20), bias = Random(dim, 21);
  DeviceBuffer<float> dy(y), db(bias);
  ASSERT_EQ(cuda::LaunchAddBias(dy.get(), db.get(), rows, dim, nullptr), 0);
  std::vector<float> want = y;
  for (int64_t i = 0; i < rows * dim; ++i) want[i] += bias[i % dim];
  EXPECT_EQ(dy.Host(), want);

  const std::vector<int32_t> picked = {4, 0, 5};
  DeviceBuffer<int32_t> dpicked(picked);
  DeviceBuffer<float> gathered(picked.size() * dim);
  ASSERT_EQ(cuda::LaunchGatherRows(dy.get(), dpicked.get(), 3, dim, gathered.get(), nullptr), 0);
  const std::vector<float> g = gathered.Host();
  for (int i = 0; i < 3; ++i) {
    for (int64_t d = 0; d < dim; ++d) ASSERT_EQ(g[i * dim + d], want[picked[i] * dim + d]);
  }

  // Combine: 2 rows, k = 2, one slot of row 1 held by another rank (-1).
  const std::vector<int32_t> slots = {2, 0, 1, -1};
  const std::vector<float> weights = {0.25f, 0.75f, 2.0f, 5.0f};
  DeviceBuffer<int32_t> dslots(slots);
  DeviceBuffer<float> dweights(weights), combined(2 * dim);
  ASSERT_EQ(cuda::LaunchCombineRows(gathered.get(), dslots.get(), dweights.get(), 2, 2, dim, combined.get(), nullptr),
            0);
  std::vector<float> want_combined(2 * dim);
  for (int64_t d = 0; d < dim; ++d) {
    want_combined[d] = 0.0f + 0.25f * g[2 * dim + d];  // in slot order, as the CPU sums by expert
    want_combined[d] += 0.75f * g[d];
    want_combined[dim + d] = 0.0f + 2.0f * g[dim + d];
  }
  EXPECT_EQ(combined.Host(), want_combined);

  // residual += partial + bias, and without a bias.
  DeviceBuffer<float> residual(y);
  ASSERT_EQ(cuda::LaunchAddResidual(residual.get(), dy.get(), db.get(), rows, dim, nullptr), 0);
  ASSERT_EQ(cuda::LaunchAddResidual(residual.get(), dy.get(), nullptr, rows, dim, nullptr), 0);
  std::vector<float> want_residual = y;
  for (int64_t i = 0; i < rows * dim; ++i) {
    want_residual[i] += want[i] + bias[i % dim];
    want_residual[i] += want[i];
  }
  EXPECT_EQ(residual.Host(), want_residual);
}

// With and without renormalising the k weights (Mixtral / norm_topk_prob false).
TEST_F(CudaTest, RouteTopKMatchesCpu) {
  for (bool renormalize : {true, false}) {
    for (auto [experts, k] : {std::pair{8, 2}, {64, 6}, {256, 8}, {60, 4}}) {
      const int64_t rows = 37;
      std::vector<float> logits = Random(rows * experts, 14, 2.0f);
      logits[3] = logits[5];  // a tie: the lower expert wins
      DeviceBuffer<float> dl(logits);
      DeviceBuffer<int32_t> dids(rows * k);
      DeviceBuffer<float> dw(rows * k);
      ASSERT_EQ(cuda::LaunchRouteTopK(dl.get(), rows, experts, k, dids.get(), dw.get(), renormalize, nullptr), 0);
      std::vector<int32_t> ids(rows * k);
      std::vector<float> weights(rows * k);
      for (int64_t r = 0; r < rows; ++r) {
        RouteTopK(logits.data() + r * experts, experts, k, ids.data() + r * k, weights.data() + r * k, renormalize);
      }
      EXPECT_EQ(dids.Host(), ids);
      ExpectNear(dw.Host(), weights, 1e-5f);
    }
  }
}

TEST_F(CudaTest, ScaleMultipliesEveryElement) {
  const std::vector<float> x = Random(1000, 15, 1.0f);
  DeviceBuffer<float> dx(x);
  ASSERT_EQ(cuda::LaunchScale(dx.get(), static_cast<int64_t>(x.size()), 0.375f, nullptr), 0);
  std::vector<float> want = x;
  for (float& v : want) v *= 0.375f;
  EXPECT_EQ(dx.Host(), want);
}

// Sampling on the GPU picks the CPU sampler's token for the same uniform draw: greedy,
// plain temperature, top-k, top-p, min-p, their combinations, and penalties.
TEST_F(CudaTest, SamplingMatchesCpu) {
  struct Config {
    float temperature, top_p;
    int top_k;
    float min_p, repetition, presence, frequency;
  };
  const Config configs[] = {
      {0.0f, 1.0f, 0, 0.0f, 1.0f, 0.0f, 0.0f},   {1.0f, 1.0f, 0, 0.0f, 1.0f, 0.0f, 0.0f},
      {0.7f, 1.0f, 40, 0.0f, 1.0f, 0.0f, 0.0f},  {1.0f, 0.9f, 0, 0.0f, 1.0f, 0.0f, 0.0f},
      {1.3f, 1.0f, 0, 0.05f, 1.0f, 0.0f, 0.0f},  {0.8f, 0.95f, 100, 0.02f, 1.0f, 0.0f, 0.0f},
      {1.0f, 1.0f, 0, 0.0f, 1.3f, 0.5f, 0.25f},  {0.0f, 1.0f, 0, 0.0f, 2.0f, 1.0f, 1.0f},
  };
  for (int32_t vocab : {1000, 32000}) {
    const int64_t rows = std::size(configs) * 3;
    const std::vector<float> logits = Random(rows * vocab, 22, 3.0f);
    std::vector<cuda::SampleRow> cfg(rows);
    std::vector<int32_t> penalty_tokens, penalty_counts, want(rows);
    for (int64_t r = 0; r < rows; ++r) {
      const Config& c = configs[r % std::size(configs)];
      SamplingConfig cpu;
      cpu.temperature = c.temperature;
      cpu.top_p = c.top_p;
      cpu.top_k = c.top_k;
      cpu.min_p = c.min_p;
      cpu.repetition_penalty = c.repetition;
      cpu.presence_penalty = c.presence;
      cpu.frequency_penalty = c.frequency;
      TokenHistory history;  // prompt tokens 1..4, generated 3 (twice) and 9
      for (int32_t t : {1, 2, 3, 4}) history.prompt_tokens[t] = true;
      history.output_counts[3] = 2;
      history.output_counts[9] = 1;
      const double u = CounterUniform(7, static_cast<uint64_t>(r));
      std::vector<float> row(logits.begin() + r * vocab, logits.begin() + (r + 1) * vocab);
      want[r] = SampleToken(row.data(), vocab, cpu, history, u).token;
      cfg[r] = {cpu, u, static_cast<int32_t>(penalty_tokens.size()), 5};
      for (auto [t, n] : {std::pair{1, 0}, {2, 0}, {3, 2}, {4, 0}, {9, 1}}) {
        penalty_tokens.push_back(t);
        penalty_counts.push_back(n);
      }
    }
    DeviceBuffer<float> dl(logits);
    DeviceBuffer<int32_t> dtok(penalty_tokens), dcnt(penalty_counts), dout(rows);
    DeviceBuffer<uint8_t> ws(cuda::SampleWorkspaceBytes(rows, vocab));
    cuda::SampleRow* dcfg = nullptr;
    ASSERT_EQ(cudaMalloc(&dcfg, cfg.size() * sizeof(cuda::SampleRow)), cudaSuccess);
    cudaMemcpy(dcfg, cfg.data(), cfg.size() * sizeof(cuda::SampleRow), cudaMemcpyHostToDevice);
    ASSERT_EQ(cuda::LaunchSample(dl.get(), rows, vocab, dcfg, dtok.get(), dcnt.get(), ws.get(),
                                 cuda::SampleWorkspaceBytes(rows, vocab), dout.get(), nullptr),
              0);
    EXPECT_EQ(dout.Host(), want) << "vocab " << vocab;
    cudaFree(dcfg);
  }
}

// cuBLAS bf16 GEMMs (fp32 accumulation) against the CPU matmul's exact path on the same
// bf16 operands.
TEST_F(CudaTest, GemmMatchesCpuOnBf16Operands) {
  auto gemm = cuda::Gemm::Create(nullptr);
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  for (auto [m, k, n] : {std::tuple{1, 64, 32}, {7, 512, 300}, {128, 1024, 512}}) {
    std::vector<float> x = Random(m * k, 15), w = Random(n * k, 16);
    std::vector<uint16_t> x16(x.size()), w16(w.size());
    for (size_t i = 0; i < x.size(); ++i) x[i] = Bf16ToFloat(x16[i] = FloatToBf16(x[i]));
    for (size_t i = 0; i < w.size(); ++i) w16[i] = FloatToBf16(w[i]);
    const PackedMatrix packed = PackMatrix(w.data(), n, k, DType::kBF16);
    std::vector<float> want(m * n);
    MatmulOptions exact;
    exact.bf16_activation_min_rows = 0;
    Matmul(x.data(), m, k, packed, nullptr, want.data(), n, &pool_, exact);
    DeviceBuffer<uint16_t> dx(x16), dw(w16);
    DeviceBuffer<float> dout(m * n);
    ASSERT_TRUE(gemm->Run(dx.get(), m, k, dw.get(), n, dout.get()).ok());
    ExpectNear(dout.Host(), want, 1e-3f);
  }
  // x in fp32 on the device, converted there.
  const std::vector<float> x = Random(4 * 64, 17);
  DeviceBuffer<float> dx(x);
  DeviceBuffer<uint16_t> dx16(x.size());
  ASSERT_EQ(cuda::LaunchToBf16(dx.get(), static_cast<int64_t>(x.size()), dx16.get(), nullptr), 0);
  const std::vector<uint16_t> got = dx16.Host();
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(got[i], FloatToBf16(x[i]));
}

// The MoE experts' grouped GEMM: every expert over its own rows in one cuBLAS call,
// equal to one GEMM each (bf16 and fp32). A cuBLAS without a grouped GEMM for the types
// says UNIMPLEMENTED, which the model answers by running the experts one by one.
TEST_F(CudaTest, GroupedGemmMatchesOneGemmPerExpert) {
  auto gemm = cuda::Gemm::Create(nullptr);
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  const int64_t k = 256, n = 96;
  const std::vector<int64_t> rows = {5, 0, 17, 1};
  for (bool bf16 : {true, false}) {
    std::vector<std::vector<float>> x, w;
    std::vector<std::unique_ptr<DeviceBuffer<float>>> dx32, dw32, dout, dsingle;
    std::vector<std::unique_ptr<DeviceBuffer<uint16_t>>> dx16, dw16;
    std::vector<cuda::Gemm::Problem> problems;
    for (size_t e = 0; e < rows.size(); ++e) {
      x.push_back(Random(rows[e] * k, 30 + e));
      w.push_back(Random(n * k, 40 + e));
      std::vector<uint16_t> x16(x[e].size()), w16(w[e].size());
      for (size_t i = 0; i < x16.size(); ++i) x16[i] = FloatToBf16(x[e][i]);
      for (size_t i = 0; i < w16.size(); ++i) w16[i] = FloatToBf16(w[e][i]);
      dx32.push_back(std::make_unique<DeviceBuffer<float>>(x[e]));
      dw32.push_back(std::make_unique<DeviceBuffer<float>>(w[e]));
      dx16.push_back(std::make_unique<DeviceBuffer<uint16_t>>(x16));
      dw16.push_back(std::make_unique<DeviceBuffer<uint16_t>>(w16));
      dout.push_back(std::make_unique<DeviceBuffer<float>>(rows[e] * n));
      dsingle.push_back(std::make_unique<DeviceBuffer<float>>(rows[e] * n));
      if (rows[e] == 0) continue;
      problems.push_back({bf16 ? static_cast<const void*>(dx16[e]->get()) : dx32[e]->get(),
                          bf16 ? static_cast<const void*>(dw16[e]->get()) : dw32[e]->get(), dout[e]->get(),
                          rows[e]});
    }
    const absl::Status grouped = gemm->RunGrouped(problems, k, n, bf16);
    if (grouped.code() == absl::StatusCode::kUnimplemented) {
      std::cout << "grouped GEMM not supported for " << (bf16 ? "bf16" : "fp32") << ": " << grouped << "\n";
      continue;
    }
    ASSERT_TRUE(grouped.ok()) << grouped;
    for (size_t e = 0; e < rows.size(); ++e) {
      if (rows[e] == 0) continue;
      const absl::Status single = bf16 ? gemm->Run(dx16[e]->get(), rows[e], k, dw16[e]->get(), n, dsingle[e]->get())
                                       : gemm->Run(dx32[e]->get(), rows[e], k, dw32[e]->get(), n, dsingle[e]->get());
      ASSERT_TRUE(single.ok()) << single;
      ExpectNear(dout[e]->Host(), dsingle[e]->Host(), 1e-4f);
    }
  }
}

// Blocks go down to pinned host memory and back up on the copy stream, the copies out
// ordered after the compute stream's work (here: a kernel writing the block).
TEST_F(CudaTest, BlockCopierRoundTripsBlocks) {
  const int64_t block_bytes = 22 * 2 * 4 * 16 * 64 * 4, floats = block_bytes / 4;
  auto copier = kvstore::BlockCopier::Create(block_bytes, 0);
  ASSERT_TRUE(copier.ok()) << copier.status();
  std::vector<float> host(3 * floats);  // ordinary memory, pinned while `pinned` lives
  auto pinned = kvstore::PinnedRegion::Create(host.data(), host.size() * sizeof(float));
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  cudaStream_t compute;
  ASSERT_EQ(cudaStreamCreate(&compute), cudaSuccess);
  const std::vector<float> a = Random(floats, 18), b = Random(floats, 19), bias = Random(floats, 20);
  DeviceBuffer<float> da(a), db(b), dbias(bias), back_a(a.size()), back_b(b.size());
  ASSERT_EQ(cuda::LaunchAddBias(da.get(), dbias.get(), 1, floats, compute), 0);  // queued, maybe still running
  ASSERT_TRUE((*copier)->AfterCompute(compute).ok());
  const kvstore::BlockCopier::Out out[] = {{da.get(), host.data() + 2 * floats}, {db.get(), host.data()}};
  ASSERT_TRUE((*copier)->CopyOut(out).ok());
  const kvstore::BlockCopier::In in[] = {{host.data() + 2 * floats, back_a.get()}, {host.data(), back_b.get()}};
  ASSERT_TRUE((*copier)->CopyIn(in).ok());
  ASSERT_TRUE((*copier)->Synchronize().ok());
  std::vector<float> want_a = a;
  for (int64_t i = 0; i < floats; ++i) want_a[i] += bias[i];
  EXPECT_EQ(back_a.Host(), want_a);
  EXPECT_EQ(back_b.Host(), b);
  cudaStreamDestroy(compute);
}

}  // namespace
}  // namespace tessera::kernels
