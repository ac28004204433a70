#include "models/generate.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "kvstore/block_allocator.h"
#include "kvstore/cpu_kv_storage.h"

namespace tessera::models {
namespace {

absl::Status CheckPrompt(std::span<const int32_t> prompt, int block_size) {
  if (prompt.empty()) return absl::InvalidArgumentError("empty prompt");
  if (block_size <= 0) return absl::InvalidArgumentError("block size must be > 0");
  return absl::OkStatus();
}

int32_t BlocksFor(int64_t tokens, int block_size) {
  return static_cast<int32_t>((tokens + block_size - 1) / block_size);
}

}  // namespace

int32_t ArgMax(const float* values, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (values[i] > values[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

absl::StatusOr<std::vector<float>> PromptLogits(Model& model, std::span<const int32_t> prompt,
                                                int block_size, KvDtype kv_dtype) {
  RETURN_IF_ERROR(CheckPrompt(prompt, block_size));
  const int64_t n = static_cast<int64_t>(prompt.size());
  kvstore::CpuKvStorage kv(model.KvLayoutFor(block_size, kv_dtype), BlocksFor(n, block_size));
  kvstore::BlockAllocator allocator(kv.num_blocks());
  kvstore::BlockTable table;
  RETURN_IF_ERROR(table.EnsureCapacity(n, block_size, allocator));
  SequenceInput seq{prompt, 0, table.blocks(), /*all_logits=*/true};
  std::vector<float> logits;
  RETURN_IF_ERROR(model.Forward({&seq, 1}, kv, &logits));
  return logits;
}

std::vector<float> FinishEmbedding(std::vector<float> pooled, int64_t tokens, Pooling pooling) {
  if (pooling == Pooling::kMean && tokens > 0) {
    for (float& v : pooled) v /= static_cast<float>(tokens);
  }
  double norm = 0;
  for (float v : pooled) norm += static_cast<double>(v) * v;
  norm = std::sqrt(norm);
  if (norm > 0) {
    for (float& v : pooled) v = static_cast<float>(v / norm);
  }
  return pooled;
}

absl::StatusOr<std::vector<float>> Embed(Model& model, std::span<const int32_t> tokens, Pooling pooling,
                                         int block_size, KvDtype kv_dtype) {
  RETURN_IF_ERROR(CheckPrompt(tokens, block_size));
  if (pooling == Pooling::kNone) return absl::InvalidArgumentError("an embedding needs a pooling");
  const int64_t n = static_cast<int64_t>(tokens.size());
  kvstore::CpuKvStorage kv(model.KvLayoutFor(block_size, kv_dtype), BlocksFor(n, block_size));
  kvstore::BlockAllocator allocator(kv.num_blocks());
  kvstore::BlockTable table;
  RETURN_IF_ERROR(table.EnsureCapacity(n, block_size, allocator));
  SequenceInput seq{tokens, 0, table.blocks()};
  seq.pooling = pooling;
  std::vector<float> logits, pooled;
  RETURN_IF_ERROR(model.Forward({&seq, 1}, kv, &logits, &pooled));
  return FinishEmbedding(std::move(pooled), n, pooling);
}

double PerplexityResult::perplexity() const { return std::exp(nll / static_cast<double>(tokens)); }

absl::StatusOr<PerplexityOptions> ResolvePerplexityOptions(const ModelSpec& spec, std::span<const int32_t> tokens,
                                                           PerplexityOptions options) {
  const int max_context = spec.max_position_embeddings;
  if (options.context == 0) options.context = max_context;
  if (options.stride == 0) options.stride = std::max(1, options.context / 2);
  if (options.context < 2 || options.context > max_context) {
    return absl::InvalidArgumentError(absl::StrCat("the context must be 2..", max_context, " tokens (the model's)"));
  }
  if (options.stride < 1 || options.stride > options.context) {
    return absl::InvalidArgumentError("the stride must be 1..context tokens");
  }
  if (tokens.size() < 2) return absl::InvalidArgumentError("perplexity needs at least 2 tokens");
  for (int32_t t : tokens) {
    if (t < 0 || t >= spec.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", t, " is outside the vocabulary"));
    }
  }
  return options;
}

absl::StatusOr<PerplexityResult> Perplexity(Model& model, std::span<const int32_t> tokens,
                                            const PerplexityOptions& requested) {
  ASSIGN_OR_RETURN(const PerplexityOptions options, ResolvePerplexityOptions(model.spec(), tokens, requested));
  PerplexityResult result;
  result.context = options.context;
  result.stride = options.stride;
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t vocab = model.spec().vocab_size;
  int64_t scored_to = 1;  // tokens before this one are scored (the first never is)
  for (int64_t begin = 0; scored_to < n; begin += result.stride) {
    const int64_t end = std::min(begin + result.context, n);
    ASSIGN_OR_RETURN(const std::vector<float> logits,
                     PromptLogits(model, tokens.subspan(begin, end - begin), options.block_size, options.kv_dtype));
    for (int64_t t = std::max(scored_to, begin + 1); t < end; ++t) {
      // -log softmax(row)[token], the row being the logits at the position before t.
      const float* row = logits.data() + (t - begin - 1) * vocab;
      const float top = row[ArgMax(row, vocab)];
      double sum = 0;
      for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - top);
      result.nll += std::log(sum) - (static_cast<double>(row[tokens[t]]) - top);
      ++result.tokens;
    }
    scored_to = end;
    ++result.windows;
  }
  return result;
}

absl::StatusOr<std::vector<int32_t>> GenerateGreedy(Model& model, std::span<const int32_t> prompt,
                                                    const GreedyOptions& options) {
  const int block_size = options.block_size, max_new_tokens = options.max_new_tokens;
  std::vector<float>* step_logits = options.step_logits;
  RETURN_IF_ERROR(CheckPrompt(prompt, block_size));
  if (max_new_tokens < 0) return absl::InvalidArgumentError("max_new_tokens must be >= 0");
  const int64_t vocab = model.spec().vocab_size;
  const int64_t total = static_cast<int64_t>(prompt.size()) + max_new_tokens;
  kvstore::CpuKvStorage kv(model.KvLayoutFor(block_size, options.kv_dtype), BlocksFor(total, block_size));
  kvstore::BlockAllocator allocator(kv.num_blocks());
  kvstore::BlockTable table;
  RETURN_IF_ERROR(table.EnsureCapacity(total, block_size, allocator));
  if (step_logits) step_logits->clear();

  std::vector<int32_t> generated;
  std::vector<float> logits;
  std::span<const int32_t> input = prompt;
  int64_t context = 0;
  int32_t last = 0;
  for (int step = 0; step < max_new_tokens; ++step) {
    SequenceInput seq{input, context, table.blocks(), /*all_logits=*/false};
    RETURN_IF_ERROR(model.Forward({&seq, 1}, kv, &logits));
    if (step_logits) step_logits->insert(step_logits->end(), logits.begin(), logits.end());
    context += static_cast<int64_t>(input.size());
    last = ArgMax(logits.data(), vocab);
    generated.push_back(last);
    if (options.on_token && !options.on_token(last)) break;
    input = {&last, 1};
  }
  return generated;
}

}  // namespace tessera::models
