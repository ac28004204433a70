#include "models/sharding.h"

#include "absl/strings/str_cat.h"

namespace tessera::models {

absl::StatusOr<ShardLayout> ShardLayout::For(const ModelSpec& spec, TensorParallel tp, ExpertParallel ep) {
  if (ep.size < 1 || ep.rank < 0 || ep.rank >= ep.size) return absl::InvalidArgumentError("bad expert-parallel rank or size");
  if (ep.size > 1 && !spec.is_moe()) {
    return absl::InvalidArgumentError("expert parallelism needs a mixture-of-experts model");
  }
  if (ep.size > spec.num_experts && spec.is_moe()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expert parallelism ", ep.size, " exceeds the model's ", spec.num_experts, " experts"));
  }
  const int n = tp.size;
  if (n < 1 || tp.rank < 0 || tp.rank >= n) return absl::InvalidArgumentError("bad tensor-parallel rank or size");
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("tensor parallelism ", n, " does not fit this model: ", what));
  };
  if (spec.num_heads % n != 0) return bad(absl::StrCat(spec.num_heads, " query heads"));
  if (spec.num_kv_heads % n != 0 && n % spec.num_kv_heads != 0) return bad(absl::StrCat(spec.num_kv_heads, " KV heads"));
  if (spec.intermediate_size % n != 0) return bad(absl::StrCat("intermediate size ", spec.intermediate_size));
  ShardLayout s;
  s.tp = tp;
  s.ep = ep;
  s.q_heads = spec.num_heads / n;
  s.q_head0 = tp.rank * s.q_heads;
  if (spec.num_kv_heads % n == 0) {
    s.kv_heads = spec.num_kv_heads / n;
    s.kv_head0 = tp.rank * s.kv_heads;
  } else {  // fewer KV heads than ranks: keep the one this rank's query heads read
    s.kv_heads = 1;
    s.kv_head0 = s.q_head0 / (spec.num_heads / spec.num_kv_heads);
  }
  s.inner = spec.intermediate_size / n;
  s.inner0 = tp.rank * s.inner;
  s.vocab = (spec.vocab_size + n - 1) / n;
  s.vocab0 = tp.rank * s.vocab;
  return s;
}

}  // namespace tessera::models
