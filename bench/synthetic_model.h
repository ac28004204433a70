// Synthetic checkpoints made in memory: HF-named tensors with random values, so
// benchmarks can run real model shapes without downloading weights.
#pragma once

#include <map>

#include "absl/status/status.h"
#include <string>

#include "common/dtype.h"
#include "models/model_spec.h"
#include "models/safetensors.h"

namespace tessera::bench {

// The TinyLlama-1.1B shape: hidden 2048, 22 layers, 32 heads, 4 KV heads, FFN 5632,
// vocab 32000.
models::ModelSpec TinyLlamaSpec();

// A Mixtral-shaped model (the shape MACHINE.md's llama.cpp figures use): hidden 1024,
// 8 layers, 16 heads / 8 KV heads, 8 experts top-2 with FFN 3584, vocab 32000.
models::ModelSpec SmallMixtralSpec();

// Random BF16 or F16 tensors (normal-ish, std 0.02; norm weights 1) under LLaMA's (or,
// for MoE specs, Mixtral's) names.
class SyntheticLlama : public models::TensorSource {
 public:
  // REQUIRES: dtype is kBF16 or kF16.
  explicit SyntheticLlama(const models::ModelSpec& spec, uint64_t seed = 1, DType dtype = DType::kBF16);
  const models::TensorView* Find(const std::string& name) const override;

  // Writes a HuggingFace folder (config.json, model.safetensors) that serves like any
  // checkpoint: `tessera serve --model DIR`. Weights are random, so text is noise.
  absl::Status WriteCheckpoint(const models::ModelSpec& spec, const std::string& dir) const;

 private:
  void Add(const std::string& name, std::vector<int64_t> shape, bool ones = false);

  uint64_t state_;
  DType dtype_;
  std::map<std::string, std::vector<uint16_t>> storage_;
  std::map<std::string, models::TensorView> views_;
};

}  // namespace tessera::bench
