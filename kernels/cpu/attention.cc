#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/internal/isa_kernels.h"

namespace tessera::kernels {
namespace {

constexpr int kQueryTile = 16;  // new tokens per task

// The `group` query heads at `q` as the sequence's sinks see them: rotated back by
// `gap` positions (the keys between the sinks and the window; RoPE's rotate_half
// pairs, XPos's decay undone by as much), into `out`.
void MoveQueryBack(const float* q, int group, int head_dim, int64_t gap, const AttentionSequence& s, float* out) {
  const int half = head_dim / 2;
  for (int j = 0; j < half; ++j) {
    const double angle = static_cast<double>(gap) * s.inv_freq[j];
    const double decay =
        s.xpos_zeta != nullptr ? std::pow(static_cast<double>(s.xpos_zeta[j]), -gap / static_cast<double>(s.xpos_scale_base)) : 1.0;
    const auto c = static_cast<float>(std::cos(angle) * decay), sn = static_cast<float>(std::sin(angle) * decay);
    for (int g = 0; g < group; ++g) {
      const float a = q[g * head_dim + j], b = q[g * head_dim + j + half];
      out[g * head_dim + j] = a * c + b * sn;
      out[g * head_dim + j + half] = b * c - a * sn;
    }
  }
}

}  // namespace

void WriteKv(const float* k, const float* v, int64_t stride, const PagedKvView& kv,
             int num_kv_heads, std::span<const AttentionSequence> seqs) {
  for (const AttentionSequence& s : seqs) {
    for (int64_t i = 0; i < s.num_new; ++i) {
      const int64_t pos = s.context_len + i;
      const int slot = static_cast<int>(pos % kv.block_size);
      const float* kr = k + (s.first_row + i) * stride;
      const float* vr = v + (s.first_row + i) * stride;
      for (int h = 0; h < num_kv_heads; ++h) {
        EncodeKvToken(kv.dtype, kr + h * kv.head_dim, kv.head_dim, kv.block_size, slot,
                      internal::KvRecord(kv.k_base, kv, s, h, pos));
        EncodeKvToken(kv.dtype, vr + h * kv.head_dim, kv.head_dim, kv.block_size, slot,
                      internal::KvRecord(kv.v_base, kv, s, h, pos));
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
  const internal::AttendOneFn attend_one = internal::ActiveKernels().attend_one;
  pool->Run(static_cast<int>(tasks.size()), [&](int ti) {
    const Task& task = all[ti];
    const AttentionSequence& s = seqs[task.seq];
    thread_local std::vector<float> scores, rows, q_sink;
    scores.resize(static_cast<size_t>(group) * kv.block_size);
    if (kv.dtype != KvDtype::kF32) rows.resize(static_cast<size_t>(2) * kv.block_size * kv.head_dim);
    for (int64_t i = task.first; i < task.last; ++i) {
      const int64_t row = s.first_row + i, pos = s.context_len + i;
      const int head0 = task.kvh * group;
      const float* qr = q + row * q_stride + head0 * shape.head_dim;
      // Past the sinks and the window's first keys, the sinks see the query moved back.
      const int64_t gap = internal::FirstWindowKey(shape, s, pos) - s.sink_tokens;
      const float* qs = qr;
      if (s.sink_tokens > 0 && gap > 0 && s.inv_freq != nullptr) {
        q_sink.resize(static_cast<size_t>(group) * shape.head_dim);
        MoveQueryBack(qr, group, shape.head_dim, gap, s, q_sink.data());
        qs = q_sink.data();
      }
      attend_one(qr, qs, pos, task.kvh, group, kv, shape, s, out + row * out_stride + head0 * shape.head_dim,
                 scores.data(), rows.data());
    }
  });
}

}  // namespace tessera::kernels
