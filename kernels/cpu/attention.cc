#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/internal/vec.h"

namespace tessera::kernels {
namespace {

constexpr int kQueryTile = 16;  // new tokens per task
constexpr int kMaxGroup = 64;   // query heads per kv head we support on the stack

inline const float* Slot(const float* base, const PagedKvView& kv,
                         const AttentionSequence& s, int head, int64_t pos) {
  const int32_t block = s.block_table[pos / kv.block_size];
  return base + block * kv.block_stride + head * kv.head_stride +
         (pos % kv.block_size) * kv.head_dim;
}

// Attention of one new token for the `group` query heads that share kv head `kvh`.
void AttendOne(const float* q, int64_t pos, int kvh, int group, const PagedKvView& kv,
               const AttentionShape& shape, const AttentionSequence& s, float* out,
               float* scores) {
  const int hd = shape.head_dim;
  const int64_t lo = shape.window > 0 ? std::max<int64_t>(0, pos - shape.window + 1) : 0;
  float running_max[kMaxGroup], running_sum[kMaxGroup];
  for (int g = 0; g < group; ++g) {
    running_max[g] = -std::numeric_limits<float>::infinity();
    running_sum[g] = 0.0f;
    std::memset(out + g * hd, 0, sizeof(float) * hd);
  }
  // Walk keys block by block: scores for a chunk, then one rescale per chunk.
  for (int64_t start = lo; start <= pos;) {
    const int64_t end = std::min<int64_t>(pos + 1, (start / kv.block_size + 1) * kv.block_size);
    const int n = static_cast<int>(end - start);
    const float* k0 = Slot(kv.k_base, kv, s, kvh, start);
    const float* v0 = Slot(kv.v_base, kv, s, kvh, start);
    for (int g = 0; g < group; ++g) {
      float* sc = scores + g * kv.block_size;
      float chunk_max = -std::numeric_limits<float>::infinity();
      for (int t = 0; t < n; ++t) {
        sc[t] = internal::Dot(q + g * hd, k0 + t * hd, hd) * shape.scale;
        chunk_max = std::max(chunk_max, sc[t]);
      }
      const float new_max = std::max(running_max[g], chunk_max);
      const float correction = std::exp(running_max[g] - new_max);
      running_sum[g] *= correction;
      float* o = out + g * hd;
      for (int t = 0; t < n; ++t) {
        const float p = std::exp(sc[t] - new_max);
        running_sum[g] += p;
        internal::ScaleAxpy(t == 0 ? correction : 1.0f, p, v0 + t * hd, o, hd);
      }
      running_max[g] = new_max;
    }
    start = end;
  }
  for (int g = 0; g < group; ++g) {
    const float inv = 1.0f / running_sum[g];
    for (int i = 0; i < hd; ++i) out[g * hd + i] *= inv;
  }
}

}  // namespace

void WriteKv(const float* k, const float* v, int64_t stride, const PagedKvView& kv,
             int num_kv_heads, std::span<const AttentionSequence> seqs) {
  const size_t bytes = sizeof(float) * kv.head_dim;
  for (const AttentionSequence& s : seqs) {
    for (int64_t i = 0; i < s.num_new; ++i) {
      const int64_t pos = s.context_len + i;
      const float* kr = k + (s.first_row + i) * stride;
      const float* vr = v + (s.first_row + i) * stride;
      for (int h = 0; h < num_kv_heads; ++h) {
        std::memcpy(const_cast<float*>(Slot(kv.k_base, kv, s, h, pos)), kr + h * kv.head_dim, bytes);
        std::memcpy(const_cast<float*>(Slot(kv.v_base, kv, s, h, pos)), vr + h * kv.head_dim, bytes);
      }
    }
  }
}

void PagedAttention(const float* q, int64_t q_stride, const PagedKvView& kv,
                    const AttentionShape& shape, std::span<const AttentionSequence> seqs,
                    float* out, int64_t out_stride, ThreadPool* pool) {
  const int group = shape.num_heads / shape.num_kv_heads;
  // Tasks: (sequence, tile of new tokens, kv head).
  struct Task {
    int seq;
    int64_t first, last;
    int kvh;
  };
  // The caller's list (reused between calls); helpers read it through `all`.
  thread_local std::vector<Task> tasks;
  tasks.clear();
  std::vector<Task>& all = tasks;
  for (size_t si = 0; si < seqs.size(); ++si) {
    for (int64_t t0 = 0; t0 < seqs[si].num_new; t0 += kQueryTile) {
      for (int h = 0; h < shape.num_kv_heads; ++h) {
        tasks.push_back({static_cast<int>(si), t0, std::min(seqs[si].num_new, t0 + kQueryTile), h});
      }
    }
  }
  pool->Run(static_cast<int>(tasks.size()), [&](int ti) {
    const Task& task = all[ti];
    const AttentionSequence& s = seqs[task.seq];
    thread_local std::vector<float> scores;
    scores.resize(static_cast<size_t>(group) * kv.block_size);
    for (int64_t i = task.first; i < task.last; ++i) {
      const int64_t row = s.first_row + i;
      const int head0 = task.kvh * group;
      AttendOne(q + row * q_stride + head0 * shape.head_dim, s.context_len + i, task.kvh, group,
                kv, shape, s, out + row * out_stride + head0 * shape.head_dim, scores.data());
    }
  });
}

}  // namespace tessera::kernels
