// CPU kernels against naive reference loops over a sweep of shapes.
#include <cmath>
#include <random>
#include <string>
#include <tuple>

#include <gtest/gtest.h>

#include "common/bf16.h"
#include "kernels/attention.h"
#include "kernels/cpu_isa.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/sampling.h"

namespace tessera::kernels {
namespace {

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

float RoundBf16(float v) { return Bf16ToFloat(FloatToBf16(v)); }

// Runs the test body at one ISA level (kernels/cpu_isa.h) and restores the best level
// after; a level this CPU cannot run is skipped, and says so.
class IsaLevel {
 public:
  explicit IsaLevel(CpuIsa isa) : status_(SelectCpuIsa(isa)) {}
  ~IsaLevel() { (void)SelectCpuIsa(BestCpuIsa()); }
  bool ok() const { return status_.ok(); }
  std::string message() const { return std::string(status_.message()); }

 private:
  absl::Status status_;
};

#define SELECT_ISA_OR_SKIP(isa)                                  \
  IsaLevel isa_level(isa);                                       \
  if (!isa_level.ok()) GTEST_SKIP() << "skipped: " << isa_level.message()

std::string IsaParamName(CpuIsa isa) {
  std::string name = CpuIsaName(isa);
  for (char& c : name) c = c == '-' ? '_' : c;
  return name;
}

struct MatmulCase {
  int64_t m, n, k;
};

class MatmulTest : public ::testing::TestWithParam<std::tuple<CpuIsa, MatmulCase>> {
 protected:
  ThreadPool pool_{2};
};

// y = x Wᵀ + b (+ y when accumulating), in double over the weights as stored.
std::vector<float> Reference(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b,
                             int64_t m, int64_t n, int64_t k, const std::vector<float>& y0, bool bf16_x) {
  std::vector<float> y(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = b[j] + y0[i * n + j];
      for (int64_t l = 0; l < k; ++l) {
        const float xv = bf16_x ? RoundBf16(x[i * k + l]) : x[i * k + l];
        s += static_cast<double>(xv) * w[j * k + l];
      }
      y[i * n + j] = static_cast<float>(s);
    }
  return y;
}

void ExpectClose(const std::vector<float>& got, const std::vector<float>& want, float rel) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], rel * (1.0f + std::fabs(want[i]))) << "at " << i;
  }
}

TEST_P(MatmulTest, MatchesReferenceForEveryPath) {
  const auto [isa, shape] = GetParam();
  SELECT_ISA_OR_SKIP(isa);
  const auto [m, n, k] = shape;
  std::vector<float> x = Random(m * k, 1), w = Random(n * k, 2), b = Random(n, 3), y0 = Random(m * n, 4);
  std::vector<float> w_bf16(w.size()), w_f16(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    w_bf16[i] = RoundBf16(w[i]);
    w_f16[i] = F16ToFloat(FloatToF16(w[i]));
  }
  const std::vector<float> zeros(m * n, 0.0f);

  // F32 weights, plain store.
  PackedMatrix pf = PackMatrix(w.data(), n, k, DType::kF32);
  std::vector<float> y(m * n, 123.0f);
  Matmul(x.data(), m, k, pf, b.data(), y.data(), n, &pool_);
  ExpectClose(y, Reference(x, w, b, m, n, k, zeros, false), 1e-4f);

  // F16 weights, widened on the fly.
  PackedMatrix ph = PackMatrix(w.data(), n, k, DType::kF16);
  EXPECT_EQ(ph.bytes() * 2, pf.bytes()) << "F16 weights stay half the size of F32";
  Matmul(x.data(), m, k, ph, b.data(), y.data(), n, &pool_);
  ExpectClose(y, Reference(x, w_f16, b, m, n, k, zeros, false), 1e-4f);

  // BF16 weights, exact path, accumulating into y0.
  PackedMatrix pb = PackMatrix(w.data(), n, k, DType::kBF16);
  MatmulOptions exact;
  exact.bf16_activation_min_rows = 0;
  exact.accumulate = true;
  y = y0;
  Matmul(x.data(), m, k, pb, b.data(), y.data(), n, &pool_, exact);
  ExpectClose(y, Reference(x, w_bf16, b, m, n, k, y0, false), 1e-4f);

  // BF16 weights, bf16 activations where the level has vdpbf16ps (every batch size
  // takes the fast path here); exact elsewhere.
  MatmulOptions fast;
  fast.bf16_activation_min_rows = 1;
  Matmul(x.data(), m, k, pb, b.data(), y.data(), n, &pool_, fast);
  ExpectClose(y, Reference(x, w_bf16, b, m, n, k, zeros, MatmulHasBf16Dot()), 1e-4f);
  EXPECT_EQ(MatmulHasBf16Dot(), isa == CpuIsa::kAvx512Bf16);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, MatmulTest,
    ::testing::Combine(::testing::ValuesIn(AllCpuIsas()),
                       ::testing::Values(MatmulCase{1, 1, 1}, MatmulCase{1, 64, 64}, MatmulCase{1, 100, 130},
                                         MatmulCase{2, 50, 31}, MatmulCase{3, 17, 5}, MatmulCase{7, 65, 33},
                                         MatmulCase{33, 128, 64}, MatmulCase{100, 96, 257},
                                         MatmulCase{200, 40, 16})),
    [](const auto& info) {
      const MatmulCase c = std::get<1>(info.param);
      return IsaParamName(std::get<0>(info.param)) + "_" + std::to_string(c.m) + "x" + std::to_string(c.n) + "x" +
             std::to_string(c.k);
    });

// Every level computes the same sums in the same order, so with exact products each
// gives the portable level's result within a few ulps (FMA rounds once, the portable
// loop twice), and a row's result never depends on the other rows of the call.
TEST(MatmulIsaTest, LevelsAgreeWithPortableAndRowsAreIndependent) {
  ThreadPool pool(2);
  const int64_t m = 37, n = 80, k = 301;
  std::vector<float> x = Random(m * k, 21), w = Random(n * k, 22);
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    PackedMatrix p = PackMatrix(w.data(), n, k, dtype);
    MatmulOptions exact;
    exact.bf16_activation_min_rows = 0;
    std::vector<float> portable(m * n);
    {
      IsaLevel level(CpuIsa::kPortable);
      ASSERT_TRUE(level.ok());
      Matmul(x.data(), m, k, p, nullptr, portable.data(), n, &pool, exact);
    }
    for (CpuIsa isa : AllCpuIsas()) {
      IsaLevel level(isa);
      if (!level.ok()) continue;
      std::vector<float> all(m * n), alone(n);
      Matmul(x.data(), m, k, p, nullptr, all.data(), n, &pool, exact);
      ExpectClose(all, portable, 1e-5f);
      for (int64_t r = 0; r < m; r += 5) {
        Matmul(x.data() + r * k, 1, k, p, nullptr, alone.data(), n, &pool, exact);
        for (int64_t j = 0; j < n; ++j) {
          ASSERT_EQ(alone[j], all[r * n + j]) << CpuIsaName(isa) << " row " << r << " col " << j;
        }
      }
    }
  }
}

TEST(CpuIsaTest, NamesParseAndTheBestLevelIsSelected) {
  for (CpuIsa isa : AllCpuIsas()) EXPECT_EQ(*ParseCpuIsa(CpuIsaName(isa)), isa);
  EXPECT_EQ(*ParseCpuIsa("auto"), BestCpuIsa());
  EXPECT_FALSE(ParseCpuIsa("avx9").ok());
  EXPECT_EQ(ActiveCpuIsa(), BestCpuIsa());
  EXPECT_TRUE(CpuSupports(CpuIsa::kPortable));
  for (CpuIsa isa : AllCpuIsas()) {
    if (CpuSupports(isa)) continue;
    const absl::Status refused = SelectCpuIsa(isa);
    EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(ActiveCpuIsa(), BestCpuIsa()) << "a refused level must not be selected";
  }
}

TEST(Fp16Test, ConversionRoundsToNearestEvenAndRoundTrips) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = F16ToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(F16ToFloat(FloatToF16(f))));
      continue;
    }
    ASSERT_EQ(FloatToF16(f), h) << "half 0x" << std::hex << h;
  }
  EXPECT_EQ(FloatToF16(1.0f + 1.0f / 2048), FloatToF16(1.0f));          // tie, to even
  EXPECT_EQ(FloatToF16(1.0f + 3.0f / 2048), FloatToF16(1.0f + 1.0f / 512));  // tie, to even (up)
  EXPECT_EQ(FloatToF16(65520.0f), 0x7c00);                              // past the largest half
  EXPECT_EQ(FloatToF16(65519.0f), 0x7bff);
  EXPECT_EQ(FloatToF16(1e-8f), 0);                                      // under half the smallest subnormal
  EXPECT_EQ(FloatToF16(std::ldexp(1.0f, -24) * 0.75f), 1);              // rounds up to the smallest subnormal
}

TEST(MatmulStrideTest, HonoursRowStrides) {
  ThreadPool pool(2);
  const int64_t m = 5, n = 20, k = 8, xs = 11, ys = 23;
  std::vector<float> x = Random(m * xs, 5), w = Random(n * k, 6);
  PackedMatrix p = PackMatrix(w.data(), n, k, DType::kF32);
  std::vector<float> y(m * ys, -7.0f);
  Matmul(x.data(), m, xs, p, nullptr, y.data(), ys, &pool);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t l = 0; l < k; ++l) s += x[i * xs + l] * w[j * k + l];
      EXPECT_NEAR(y[i * ys + j], s, 1e-4);
    }
    for (int64_t j = n; j < ys; ++j) EXPECT_EQ(y[i * ys + j], -7.0f) << "wrote past the row";
  }
}

// Unpacking gives back the row-major matrix (bf16-rounded for BF16), for any shape
// including partial panels and odd columns.
TEST(MatmulPackTest, UnpackInvertsPack) {
  for (auto [n, k] : {std::pair{1, 1}, {17, 33}, {64, 128}}) {
    std::vector<float> w(n * k);
    for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i) * 0.37f - 5.0f;
    std::vector<float> f32(w.size());
    UnpackMatrix(PackMatrix(w.data(), n, k, DType::kF32), f32.data());
    EXPECT_EQ(f32, w);
    std::vector<uint16_t> bf16(w.size());
    UnpackMatrix(PackMatrix(w.data(), n, k, DType::kBF16), bf16.data());
    for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(bf16[i], FloatToBf16(w[i])) << i;
    std::vector<uint16_t> f16(w.size());
    UnpackMatrix(PackMatrix(w.data(), n, k, DType::kF16), f16.data());
    for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(f16[i], FloatToF16(w[i])) << i;
  }
}

TEST(OpsTest, RmsNormAndLayerNorm) {
  const int dim = 37;
  std::vector<float> x = Random(2 * dim, 7), w = Random(dim, 8), b = Random(dim, 9), out(2 * dim);
  RmsNorm(x.data(), 2, dim, dim, w.data(), 1e-6f, out.data(), dim);
  for (int r = 0; r < 2; ++r) {
    double ms = 0;
    for (int i = 0; i < dim; ++i) ms += x[r * dim + i] * x[r * dim + i];
    const double inv = 1 / std::sqrt(ms / dim + 1e-6);
    for (int i = 0; i < dim; ++i) EXPECT_NEAR(out[r * dim + i], w[i] * x[r * dim + i] * inv, 1e-5);
  }
  LayerNorm(x.data(), 2, dim, dim, w.data(), b.data(), 1e-5f, out.data(), dim);
  for (int r = 0; r < 2; ++r) {
    double mean = 0, var = 0;
    for (int i = 0; i < dim; ++i) mean += x[r * dim + i];
    mean /= dim;
    for (int i = 0; i < dim; ++i) var += (x[r * dim + i] - mean) * (x[r * dim + i] - mean);
    var /= dim;
    for (int i = 0; i < dim; ++i) {
      EXPECT_NEAR(out[r * dim + i], (x[r * dim + i] - mean) / std::sqrt(var + 1e-5) * w[i] + b[i], 1e-5);
    }
  }
}

TEST(OpsTest, RotaryPairsHalves) {
  std::vector<float> head = {1, 2, 3, 4};
  const float cos[2] = {0.5f, 0.0f}, sin[2] = {0.25f, 1.0f};
  ApplyRotary(head.data(), cos, sin, 4);
  // (1,3) rotated by (0.5,0.25); (2,4) by (0,1).
  EXPECT_FLOAT_EQ(head[0], 1 * 0.5f - 3 * 0.25f);
  EXPECT_FLOAT_EQ(head[2], 3 * 0.5f + 1 * 0.25f);
  EXPECT_FLOAT_EQ(head[1], -4.0f);
  EXPECT_FLOAT_EQ(head[3], 2.0f);
}

TEST(OpsTest, Activations) {
  ThreadPool pool(1);
  std::vector<float> gate_up = {1.0f, -2.0f, 3.0f, 4.0f}, out(2);
  GatedActivation(gate_up.data(), 1, 2, Activation::kSilu, out.data(), &pool);
  EXPECT_NEAR(out[0], 1.0f / (1 + std::exp(-1.0f)) * 3.0f, 1e-6);
  EXPECT_NEAR(out[1], -2.0f / (1 + std::exp(2.0f)) * 4.0f, 1e-6);
  std::vector<float> x = {1.0f};
  ApplyActivation(x.data(), 1, 1, Activation::kGeluTanh, &pool);
  EXPECT_NEAR(x[0], 0.841192f, 1e-5);
  x = {1.0f};
  ApplyActivation(x.data(), 1, 1, Activation::kGeluErf, &pool);
  EXPECT_NEAR(x[0], 0.841345f, 1e-5);
}

// One layer of paged K/V for `len` tokens in blocks of block_size, laid out
// [block][kv_head][head record] and handed out in reverse order, so that a kernel
// which ignored the block table would read the wrong tokens.
struct ReversedPagedCache {
  ReversedPagedCache(KvDtype dtype, int block_size, int kv_heads, int head_dim, int len)
      : blocks((len + block_size - 1) / block_size),
        record(KvRecordBytes(dtype, block_size, head_dim)),
        bytes(static_cast<size_t>(2 * blocks) * kv_heads * record),
        table(blocks) {
    for (int b = 0; b < blocks; ++b) table[b] = blocks - 1 - b;
    view.k_base = bytes.data();
    view.v_base = bytes.data() + static_cast<size_t>(blocks) * kv_heads * record;
    view.block_stride = kv_heads * record;
    view.head_stride = record;
    view.block_size = block_size;
    view.head_dim = head_dim;
    view.dtype = dtype;
    view.scales_offset = KvValuesBytes(dtype, block_size, head_dim);
  }
  ReversedPagedCache(const ReversedPagedCache&) = delete;  // the view points into bytes

  const int blocks;
  const int64_t record;
  std::vector<std::byte> bytes;
  std::vector<int32_t> table;
  PagedKvView view;
};

// Paged attention against dense causal attention over the same K/V, with shuffled
// block tables, GQA, several block sizes and windows, for every cache dtype: the
// reference reads the K/V the cache holds (decoded), so the kernels must read each
// dtype exactly.
struct AttentionCase {
  int block_size, window;
};

class PagedAttentionTest : public ::testing::TestWithParam<std::tuple<CpuIsa, AttentionCase, KvDtype>> {};

TEST_P(PagedAttentionTest, MatchesDenseAttention) {
  const auto [isa, attention_case, dtype] = GetParam();
  SELECT_ISA_OR_SKIP(isa);
  const auto [bs, window] = attention_case;
  const int heads = 4, kv_heads = 2, hd = 20, len = 37, group = heads / kv_heads;
  std::vector<float> q = Random(len * heads * hd, 10), k = Random(len * kv_heads * hd, 11),
                     v = Random(len * kv_heads * hd, 12);
  ReversedPagedCache cache(dtype, bs, kv_heads, hd, len);
  const PagedKvView& view = cache.view;
  const std::vector<int32_t>& table = cache.table;
  // Token j of kv head h as the cache holds it.
  auto cached = [&](std::byte* base, int j, int h) {
    std::vector<float> x(hd);
    DecodeKvToken(dtype, base + table[j / bs] * view.block_stride + h * view.head_stride, hd, bs, j % bs, x.data());
    return x;
  };
  // Two steps: a prefill of 30 tokens, then 7 more, so attention spans both writes.
  std::vector<float> out(len * heads * hd);
  AttentionShape shape{heads, kv_heads, hd, window, 1.0f / std::sqrt(static_cast<float>(hd))};
  ThreadPool pool(2);
  for (auto [start, count] : {std::pair{0, 30}, std::pair{30, 7}}) {
    AttentionSequence s{0, count, start, table.data()};
    std::vector<float> kk(k.begin() + start * kv_heads * hd, k.begin() + (start + count) * kv_heads * hd);
    std::vector<float> vv(v.begin() + start * kv_heads * hd, v.begin() + (start + count) * kv_heads * hd);
    WriteKv(kk.data(), vv.data(), kv_heads * hd, view, kv_heads, {&s, 1});
    PagedAttention(q.data() + start * heads * hd, heads * hd, view, shape, {&s, 1}, out.data() + start * heads * hd,
                   heads * hd, &pool);
    for (int t = start; t < start + count; ++t) {
      for (int h = 0; h < heads; ++h) {
        const int kvh = h / group;
        const int lo = window > 0 ? std::max(0, t - window + 1) : 0;
        std::vector<double> p;
        double mx = -1e30;
        for (int j = lo; j <= t; ++j) {
          const std::vector<float> key = cached(view.k_base, j, kvh);
          double dot = 0;
          for (int d = 0; d < hd; ++d) dot += q[(t * heads + h) * hd + d] * key[d];
          p.push_back(dot * shape.scale);
          mx = std::max(mx, p.back());
        }
        double sum = 0;
        for (double& e : p) sum += (e = std::exp(e - mx));
        std::vector<double> o(hd, 0.0);
        for (int j = lo; j <= t; ++j) {
          const std::vector<float> value = cached(view.v_base, j, kvh);
          for (int d = 0; d < hd; ++d) o[d] += p[j - lo] / sum * value[d];
        }
        for (int d = 0; d < hd; ++d) {
          ASSERT_NEAR(out[(t * heads + h) * hd + d], o[d], 1e-5) << "token " << t << " head " << h;
        }
      }
    }
  }
  // The cache holds the keys to the dtype's precision: half a unit in the last place
  // (bf16 8 bits, f16 11, fp8 4), half an int8 step (amax / 127, amax < 5 here).
  auto close = [dtype](float got, float want) {
    const float err = std::fabs(got - want), mag = std::fabs(want);
    switch (dtype) {
      case KvDtype::kF32: return err == 0.0f;
      case KvDtype::kBf16: return err <= 0x1p-8f * mag;
      case KvDtype::kF16: return err <= 0x1p-11f * mag + 1e-7f;
      case KvDtype::kInt8: return err <= 0.02f;
      case KvDtype::kFp8E4m3: return err <= 0x1p-4f * mag + 1e-3f;
    }
    return false;
  };
  for (int j = 0; j < len; ++j) {
    const std::vector<float> key = cached(view.k_base, j, 1);
    for (int d = 0; d < hd; ++d) {
      ASSERT_TRUE(close(key[d], k[(j * kv_heads + 1) * hd + d])) << j << " " << key[d] << " " << k[(j * kv_heads + 1) * hd + d];
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    BlockSizesWindowsAndDtypes, PagedAttentionTest,
    ::testing::Combine(::testing::ValuesIn(AllCpuIsas()),
                       ::testing::Values(AttentionCase{1, 0}, AttentionCase{16, 0}, AttentionCase{32, 0},
                                         AttentionCase{5, 8}, AttentionCase{16, 8}, AttentionCase{1, 3}),
                       ::testing::Values(KvDtype::kF32, KvDtype::kBf16, KvDtype::kF16, KvDtype::kInt8,
                                         KvDtype::kFp8E4m3)),
    [](const auto& info) {
      const AttentionCase c = std::get<1>(info.param);
      return IsaParamName(std::get<0>(info.param)) + "_block" + std::to_string(c.block_size) + "_window" +
             std::to_string(c.window) + "_" + KvDtypeName(std::get<2>(info.param));
    });

// Attention sinks (StreamingLLM): the kernels read a sequence's first sink_tokens keys
// and its window, the query moved back for the sinks, which must equal attention over
// the cache [sinks, window] with RoPE (and XPos) applied at each key's and the query's
// position in that cache, as the paper assigns them. A prefill and single-token steps.
struct SinkCase {
  int block_size, window, sinks;
  bool xpos;
};

class SinkAttentionTest : public ::testing::TestWithParam<std::tuple<CpuIsa, SinkCase>> {};

TEST_P(SinkAttentionTest, SeesTheSinksFromTheQuerysPlaceInTheCache) {
  const auto [isa, c] = GetParam();
  SELECT_ISA_OR_SKIP(isa);
  const int heads = 4, kv_heads = 2, hd = 16, half = hd / 2, len = 60, group = heads / kv_heads;
  const int bs = c.block_size;
  const float scale_base = 64.0f;
  std::vector<float> inv_freq(half), zeta(half);
  for (int j = 0; j < half; ++j) {
    inv_freq[j] = static_cast<float>(std::pow(10000.0, -2.0 * j / hd));
    zeta[j] = (2.0f * j / hd + 0.4f) / 1.4f;
  }
  // One head of raw (unrotated) x at position pos: rotate_half RoPE, then XPos's decay.
  auto rotate = [&](const float* x, int64_t pos, bool query) {
    std::vector<double> y(hd);
    for (int j = 0; j < half; ++j) {
      const double angle = static_cast<double>(pos) * inv_freq[j];
      const double decay = c.xpos ? std::pow(static_cast<double>(zeta[j]), (query ? 1.0 : -1.0) * pos / scale_base) : 1;
      y[j] = (x[j] * std::cos(angle) - x[j + half] * std::sin(angle)) * decay;
      y[j + half] = (x[j + half] * std::cos(angle) + x[j] * std::sin(angle)) * decay;
    }
    return y;
  };
  const std::vector<float> q = Random(len * heads * hd, 20), k = Random(len * kv_heads * hd, 21),
                           v = Random(len * kv_heads * hd, 22);
  // What the model hands the kernels: q and k rotated at their sequence positions.
  std::vector<float> q_rot(q.size()), k_rot(k.size());
  for (int t = 0; t < len; ++t) {
    for (int h = 0; h < heads; ++h) {
      const std::vector<double> y = rotate(&q[(t * heads + h) * hd], t, true);
      std::copy(y.begin(), y.end(), &q_rot[(t * heads + h) * hd]);
    }
    for (int h = 0; h < kv_heads; ++h) {
      const std::vector<double> y = rotate(&k[(t * kv_heads + h) * hd], t, false);
      std::copy(y.begin(), y.end(), &k_rot[(t * kv_heads + h) * hd]);
    }
  }
  ReversedPagedCache cache(KvDtype::kF32, bs, kv_heads, hd, len);
  const PagedKvView& view = cache.view;
  const std::vector<int32_t>& table = cache.table;
  const AttentionShape shape{heads, kv_heads, hd, /*window=*/0, 1.0f / std::sqrt(static_cast<float>(hd))};
  ThreadPool pool(2);
  std::vector<float> out(len * heads * hd);
  std::vector<std::pair<int, int>> steps = {{0, 37}};
  for (int t = 37; t < len; ++t) steps.emplace_back(t, 1);
  for (auto [start, count] : steps) {
    AttentionSequence s{0, count, start, table.data(), cache.blocks, c.window, c.sinks, inv_freq.data(),
                        c.xpos ? zeta.data() : nullptr, scale_base};
    WriteKv(&k_rot[start * kv_heads * hd], &v[start * kv_heads * hd], kv_heads * hd, view, kv_heads, {&s, 1});
    PagedAttention(&q_rot[start * heads * hd], heads * hd, view, shape, {&s, 1}, &out[start * heads * hd], heads * hd,
                   &pool);
  }
  for (int t = 0; t < len; ++t) {
    const int lo = std::max(0, t - c.window + 1), sinks = std::min(c.sinks, lo);
    for (int h = 0; h < heads; ++h) {
      const int kvh = h / group;
      // The cache: keys [0, sinks) at their own positions, then the window's from `sinks` on.
      std::vector<int> keys;
      for (int j = 0; j < sinks; ++j) keys.push_back(j);
      for (int j = lo; j <= t; ++j) keys.push_back(j);
      const std::vector<double> query = rotate(&q[(t * heads + h) * hd], static_cast<int64_t>(keys.size()) - 1, true);
      std::vector<double> p;
      double mx = -1e30;
      for (size_t i = 0; i < keys.size(); ++i) {
        const std::vector<double> key = rotate(&k[(keys[i] * kv_heads + kvh) * hd], static_cast<int64_t>(i), false);
        double dot = 0;
        for (int d = 0; d < hd; ++d) dot += query[d] * key[d];
        p.push_back(dot * shape.scale);
        mx = std::max(mx, p.back());
      }
      double sum = 0;
      for (double& e : p) sum += (e = std::exp(e - mx));
      for (int d = 0; d < hd; ++d) {
        double o = 0;
        for (size_t i = 0; i < keys.size(); ++i) o += p[i] / sum * v[(keys[i] * kv_heads + kvh) * hd + d];
        ASSERT_NEAR(out[(t * heads + h) * hd + d], o, 2e-5) << "token " << t << " head " << h;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    BlockSizesWindowsSinks, SinkAttentionTest,
    ::testing::Combine(::testing::ValuesIn(AllCpuIsas()),
                       ::testing::Values(SinkCase{4, 8, 4, false}, SinkCase{16, 20, 4, true}, SinkCase{1, 5, 2, false},
                                         SinkCase{5, 8, 7, true}, SinkCase{16, 8, 0, false})),
    [](const auto& info) {
      const SinkCase c = std::get<1>(info.param);
      return IsaParamName(std::get<0>(info.param)) + "_block" + std::to_string(c.block_size) + "_window" +
             std::to_string(c.window) + "_sinks" + std::to_string(c.sinks) + (c.xpos ? "_xpos" : "");
    });

}  // namespace
}  // namespace tessera::kernels

namespace tessera::kernels {
namespace {

TEST(SamplingTest, GreedyIsArgmaxAfterPenalties) {
  std::vector<float> logits = {1.0f, 3.0f, 2.0f};
  SamplingConfig greedy;
  greedy.temperature = 0;
  TokenHistory none;
  EXPECT_EQ(SampleToken(std::vector<float>(logits).data(), 3, greedy, none, 0.5).token, 1);
  // Token 1 was generated twice: a frequency penalty of 1 takes it below token 2.
  TokenHistory seen;
  seen.output_counts[1] = 2;
  greedy.frequency_penalty = 1.0f;
  EXPECT_EQ(SampleToken(std::vector<float>(logits).data(), 3, greedy, seen, 0.5).token, 2);
  // Repetition penalty divides positive logits of seen tokens.
  SamplingConfig rep;
  rep.temperature = 0;
  rep.repetition_penalty = 2.0f;
  TokenHistory prompt;
  prompt.prompt_tokens[1] = true;
  EXPECT_EQ(SampleToken(std::vector<float>(logits).data(), 3, rep, prompt, 0.5).token, 2);
}

TEST(SamplingTest, TruncationsRestrictTheSupport) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, 3.0f};
  TokenHistory none;
  for (double u : {0.0, 0.3, 0.6, 0.999}) {
    SamplingConfig top1;
    top1.top_k = 1;
    EXPECT_EQ(SampleToken(std::vector<float>(logits).data(), 4, top1, none, u).token, 3);
    SamplingConfig nucleus;
    nucleus.top_p = 0.6f;  // p(3) = 0.64 already reaches it
    EXPECT_EQ(SampleToken(std::vector<float>(logits).data(), 4, nucleus, none, u).token, 3);
    SamplingConfig min_p;
    min_p.min_p = 0.3f;  // keeps tokens with p >= 0.3 * p(3): tokens 3 and 2
    const int t = SampleToken(std::vector<float>(logits).data(), 4, min_p, none, u).token;
    EXPECT_TRUE(t == 3 || t == 2) << t;
  }
}

TEST(SamplingTest, DrawsFollowTheDistribution) {
  const std::vector<float> logits = {0.0f, std::log(3.0f)};  // p = 0.25, 0.75
  SamplingConfig c;
  TokenHistory none;
  int ones = 0;
  for (int i = 0; i < 4000; ++i) ones += SampleToken(std::vector<float>(logits).data(), 2, c, none, CounterUniform(7, i)).token;
  EXPECT_NEAR(ones / 4000.0, 0.75, 0.03);
}

TEST(SamplingTest, CounterUniformIsAFunctionOfSeedAndIndex) {
  EXPECT_EQ(CounterUniform(1, 5), CounterUniform(1, 5));
  EXPECT_NE(CounterUniform(1, 5), CounterUniform(1, 6));
  EXPECT_NE(CounterUniform(1, 5), CounterUniform(2, 5));
  for (int i = 0; i < 1000; ++i) {
    const double u = CounterUniform(3, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
}

TEST(SamplingTest, LogprobsAreOfTheRawModel) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f};
  SamplingConfig c;
  c.temperature = 0;
  c.logprobs = true;
  c.top_logprobs = 2;
  c.presence_penalty = 2.0f;  // penalties must not change the reported logprobs
  TokenHistory seen;
  seen.output_counts[2] = 1;
  SampledToken s = SampleToken(std::vector<float>(logits).data(), 3, c, seen, 0.5);
  const double lse = std::log(1 + std::exp(1.0) + std::exp(2.0));
  EXPECT_NEAR(s.logprob, logits[s.token] - lse, 1e-5);
  ASSERT_EQ(s.top.size(), 2u);
  EXPECT_EQ(s.top[0].first, 2);
  EXPECT_NEAR(s.top[0].second, 2.0 - lse, 1e-5);
  EXPECT_EQ(s.top[1].first, 1);
}

}  // namespace
}  // namespace tessera::kernels
