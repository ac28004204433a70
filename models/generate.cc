#include "models/generate.h"

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
                                                int block_size) {
  RETURN_IF_ERROR(CheckPrompt(prompt, block_size));
  const int64_t n = static_cast<int64_t>(prompt.size());
  kvstore::CpuKvStorage kv(model.KvLayoutFor(block_size), BlocksFor(n, block_size));
  kvstore::BlockAllocator allocator(kv.num_blocks());
  kvstore::BlockTable table;
  RETURN_IF_ERROR(table.EnsureCapacity(n, block_size, allocator));
  SequenceInput seq{prompt, 0, table.blocks(), /*all_logits=*/true};
  std::vector<float> logits;
  RETURN_IF_ERROR(model.Forward({&seq, 1}, kv, &logits));
  return logits;
}

absl::StatusOr<std::vector<int32_t>> GenerateGreedy(Model& model, std::span<const int32_t> prompt,
                                                    const GreedyOptions& options) {
  const int block_size = options.block_size, max_new_tokens = options.max_new_tokens;
  std::vector<float>* step_logits = options.step_logits;
  RETURN_IF_ERROR(CheckPrompt(prompt, block_size));
  if (max_new_tokens < 0) return absl::InvalidArgumentError("max_new_tokens must be >= 0");
  const int64_t vocab = model.spec().vocab_size;
  const int64_t total = static_cast<int64_t>(prompt.size()) + max_new_tokens;
  kvstore::CpuKvStorage kv(model.KvLayoutFor(block_size), BlocksFor(total, block_size));
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
