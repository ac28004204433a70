// Reads the golden fixtures in tests/data/golden/models (format: its README.md):
// reference logits and greedy continuations from HuggingFace transformers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tessera::testing {

std::string TestDataDir();
std::string GoldenModelDir(const std::string& model);

struct GoldenCase {
  std::string name;                  // p<L>
  std::vector<int32_t> input_ids;
  std::vector<float> logits;         // [L, vocab]
  std::vector<int32_t> new_tokens;   // greedy
  std::vector<float> step_logits;    // [16, vocab]
};

struct GoldenBatch {
  std::vector<std::vector<int32_t>> rows;        // unpadded prompts
  std::vector<std::vector<int32_t>> new_tokens;  // [B][16]
  std::vector<float> step_logits;                // [16, B, vocab]
};

struct Golden {
  std::string model;
  bool bf16 = false;
  int vocab = 0;
  std::vector<GoldenCase> cases;
  bool has_batch = false;
  GoldenBatch batch;
};

Golden LoadGolden(const std::string& model);

// Every fixture directory named in manifest.json.
std::vector<std::string> GoldenModels();

// Largest |a - b| over two equally long arrays.
float MaxAbsDiff(const float* a, const float* b, size_t n);

}  // namespace tessera::testing
