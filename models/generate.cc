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

// Tokens a bounded sequence computes per step: its prompt, or a streamed text.
constexpr int64_t kBoundedChunk = 512;

// One sequence on a private pool, for a sequence of at most `max_tokens` tokens
// computed `max_chunk` at a time at most. Its blocks behind the retention's window go
// back to the pool as it runs, so a bounded sequence needs only its sinks', its
// window's and a chunk's, however long it runs.
class PrivateSequence {
 public:
  PrivateSequence(Model& model, int block_size, KvDtype kv_dtype, int64_t max_tokens, int64_t max_chunk,
                  KvRetention retention)
      : model_(model),
        block_size_(block_size),
        retention_(retention),
        kept_(retention.Within(model.spec().kv_window())),
        kv_(model.KvLayoutFor(block_size, kv_dtype), PoolBlocks(max_tokens, max_chunk)),
        allocator_(kv_.num_blocks()) {}

  // Computes `tokens` after those before: logits of each (all_logits) or of the last.
  absl::Status Forward(std::span<const int32_t> tokens, bool all_logits, std::vector<float>* logits) {
    RETURN_IF_ERROR(table_.EnsureCapacity(context_ + static_cast<int64_t>(tokens.size()), block_size_, allocator_));
    SequenceInput seq{tokens, context_, table_.blocks(), all_logits};
    seq.retention = retention_;
    RETURN_IF_ERROR(model_.Forward({&seq, 1}, kv_, logits));
    context_ += static_cast<int64_t>(tokens.size());
    table_.ReleaseFront(kept_.FirstWindowToken(context_) / block_size_, allocator_, kept_.SinkBlocks(block_size_));
    return absl::OkStatus();
  }

 private:
  int32_t PoolBlocks(int64_t max_tokens, int64_t max_chunk) const {
    const int32_t whole = BlocksFor(max_tokens, block_size_);
    if (!kept_.bounded()) return whole;
    // The window's first token and the chunk's last may each sit anywhere in a block.
    const int64_t bounded = kept_.SinkBlocks(block_size_) + (kept_.window - 1 + max_chunk) / block_size_ + 2;
    return static_cast<int32_t>(std::min<int64_t>(whole, bounded));
  }

  Model& model_;
  const int block_size_;
  const KvRetention retention_;  // as asked (the model applies its own window too)
  const KvRetention kept_;       // what is kept: within the model's window
  kvstore::CpuKvStorage kv_;
  kvstore::BlockAllocator allocator_;
  kvstore::BlockTable table_;
  int64_t context_ = 0;
};

// log Σ exp(row), in double.
double LogSumExp(const float* row, int64_t vocab) {
  const float top = row[ArgMax(row, vocab)];
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - top);
  return top + std::log(sum);
}

// Scores `token` (-log softmax(row)[token], nats) from the row before it, and, with a
// reference row (the same position computed with the reference cache), compares the
// two distributions.
void Score(const float* row, const float* reference_row, int64_t vocab, int32_t token, PerplexityResult* result) {
  const double log_z = LogSumExp(row, vocab);
  result->nll += log_z - row[token];
  ++result->tokens;
  if (reference_row == nullptr) return;
  ReferenceComparison& reference = *result->reference;
  const double reference_log_z = LogSumExp(reference_row, vocab);
  reference.nll += reference_log_z - reference_row[token];
  double kld = 0;
  for (int64_t v = 0; v < vocab; ++v) {
    const double reference_logp = reference_row[v] - reference_log_z;
    kld += std::exp(reference_logp) * (reference_logp - (row[v] - log_z));
  }
  reference.kld += kld;
  const int32_t top = ArgMax(row, vocab), reference_top = ArgMax(reference_row, vocab);
  if (top == reference_top) {
    ++reference.same_top;
  } else {
    reference.changed_top_margins.push_back(reference_row[reference_top] - reference_row[top]);
  }
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
  if (options.retention.bounded()) {
    if (options.context != 0 || options.stride != 0) {
      return absl::InvalidArgumentError("streaming evaluation (a KV window) takes no context or stride");
    }
    if (spec.positions != PositionKind::kRope) {
      return absl::InvalidArgumentError("a KV window or sinks need a rotary-position model");
    }
  } else {
    if (options.context == 0) options.context = max_context;
    if (options.stride == 0) options.stride = std::max(1, options.context / 2);
    if (options.context < 2 || options.context > max_context) {
      return absl::InvalidArgumentError(absl::StrCat("the context must be 2..", max_context, " tokens (the model's)"));
    }
    if (options.stride < 1 || options.stride > options.context) {
      return absl::InvalidArgumentError("the stride must be 1..context tokens");
    }
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
  if (options.reference_kv_dtype) result.reference = ReferenceComparison{.kv_dtype = *options.reference_kv_dtype};
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t vocab = model.spec().vocab_size;
  if (options.retention.bounded()) {
    // Streaming: one sequence, chunk after chunk; each row predicts the token after it.
    // The reference, if any, streams through a sequence of its own beside it.
    PrivateSequence seq(model, options.block_size, options.kv_dtype, n, kBoundedChunk, options.retention);
    std::optional<PrivateSequence> reference_seq;
    if (result.reference) {
      reference_seq.emplace(model, options.block_size, result.reference->kv_dtype, n, kBoundedChunk, options.retention);
    }
    std::vector<float> logits, reference_logits;
    for (int64_t begin = 0; begin < n - 1; begin += kBoundedChunk) {
      const int64_t end = std::min(begin + kBoundedChunk, n - 1);
      const std::span<const int32_t> chunk = tokens.subspan(begin, end - begin);
      RETURN_IF_ERROR(seq.Forward(chunk, /*all_logits=*/true, &logits));
      if (reference_seq) RETURN_IF_ERROR(reference_seq->Forward(chunk, /*all_logits=*/true, &reference_logits));
      for (int64_t t = begin + 1; t <= end; ++t) {
        const int64_t row = (t - begin - 1) * vocab;
        Score(logits.data() + row, reference_seq ? reference_logits.data() + row : nullptr, vocab, tokens[t], &result);
      }
    }
    result.windows = 1;
    return result;
  }
  int64_t scored_to = 1;  // tokens before this one are scored (the first never is)
  for (int64_t begin = 0; scored_to < n; begin += result.stride) {
    const int64_t end = std::min(begin + result.context, n);
    const std::span<const int32_t> window = tokens.subspan(begin, end - begin);
    ASSIGN_OR_RETURN(const std::vector<float> logits, PromptLogits(model, window, options.block_size, options.kv_dtype));
    std::vector<float> reference_logits;
    if (result.reference) {
      ASSIGN_OR_RETURN(reference_logits, PromptLogits(model, window, options.block_size, result.reference->kv_dtype));
    }
    for (int64_t t = std::max(scored_to, begin + 1); t < end; ++t) {
      // The row of the position before t predicts it.
      const int64_t row = (t - begin - 1) * vocab;
      Score(logits.data() + row, result.reference ? reference_logits.data() + row : nullptr, vocab, tokens[t], &result);
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
  // A bounded cache takes the prompt in chunks it holds; any other, at once.
  const int64_t chunk = options.retention.bounded() ? kBoundedChunk : std::max<int64_t>(1, prompt.size());
  PrivateSequence seq(model, block_size, options.kv_dtype, total, chunk, options.retention);
  if (step_logits) step_logits->clear();

  std::vector<int32_t> generated;
  std::vector<float> logits;
  std::span<const int32_t> input = prompt;
  int32_t last = 0;
  for (int step = 0; step < max_new_tokens; ++step) {
    for (; static_cast<int64_t>(input.size()) > chunk; input = input.subspan(chunk)) {
      RETURN_IF_ERROR(seq.Forward(input.first(chunk), /*all_logits=*/false, &logits));
    }
    RETURN_IF_ERROR(seq.Forward(input, /*all_logits=*/false, &logits));
    if (step_logits) step_logits->insert(step_logits->end(), logits.begin(), logits.end());
    last = ArgMax(logits.data(), vocab);
    generated.push_back(last);
    if (options.on_token && !options.on_token(last)) break;
    input = {&last, 1};
  }
  return generated;
}

}  // namespace tessera::models
