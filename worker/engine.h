// Engine: what a worker runs its steps on: one model shard and its KV pool, on one
// device. The step executor sees only this, so the coordinator's protocol (steps,
// swaps, fetches) is the same on every device.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/sampling.h"
#include "kvstore/block_fetcher.h"
#include "kvstore/kv_layout.h"
#include "models/model.h"

namespace tessera::worker {

// A sequence of a step that asked for a token: which logits row (the batch index of
// the sequence), the request's knobs, its penalty history and the draw.
struct SampleSpec {
  size_t row = 0;
  const kernels::SamplingConfig* config = nullptr;
  const kernels::TokenHistory* history = nullptr;
  double uniform = 0.0;  // kernels::CounterUniform(seed, index)
};

class Engine {
 public:
  virtual ~Engine() = default;

  virtual const models::ModelSpec& spec() const = 0;
  virtual const kvstore::KvLayout& kv_layout() const = 0;
  // The KV heads this rank's blocks hold, numbered as in the whole model.
  virtual kvstore::HeadRange kv_heads() const = 0;
  virtual int32_t num_blocks() const = 0;
  virtual size_t weight_bytes() const = 0;

  // One forward step against the engine's own KV pool (as models::Model::Forward, the
  // last token's logits of each sequence), then a token for each of `samples` into
  // `out` (same order), with the CPU sampler's semantics wherever it runs: a GPU
  // samples on the device and sends back only tokens, except for requests that want
  // log-probabilities, whose rows are sampled on the host. Sequences that pool put
  // their states into `pooled` on the host (Model::Forward's; may be null without).
  virtual absl::Status Step(std::span<const models::SequenceInput> batch, std::span<const SampleSpec> samples,
                            std::vector<kernels::SampledToken>* out, std::vector<float>* pooled) = 0;
  // Block bytes between the device pool and host memory (kv_layout().block_bytes() a
  // block), a step's worth at a time; done when they return. The host tier's
  // swaps and the data plane's fetches go through these.
  struct BlockOut {
    int32_t device_block;
    std::byte* host;
  };
  struct BlockIn {
    const std::byte* host;
    int32_t device_block;
  };
  virtual absl::Status ReadBlocks(std::span<const BlockOut> copies) = 0;
  virtual absl::Status WriteBlocks(std::span<const BlockIn> copies) = 0;
  // Host memory most moves use (the host tier): a GPU engine pins it in place, while
  // the engine lives, so that its copies run asynchronously at full bandwidth.
  virtual absl::Status PinHostMemory(std::span<std::byte> memory) { return absl::OkStatus(); }
};

// The CPU device: `model` with a pool of `num_blocks` blocks of `layout`
// (model->KvLayoutFor of some block size and cache dtype).
std::unique_ptr<Engine> MakeCpuEngine(std::unique_ptr<models::Model> model, const kvstore::KvLayout& layout,
                                      int32_t num_blocks);

// CUDA device `device`: the shard `options` names (tensor/expert parallel rank and
// communicators, as models::Model takes them), a pool of `num_blocks` blocks, or as
// many as `kv_memory_bytes` holds when num_blocks is 0. FAILED_PRECONDITION in a build
// without CUDA, and for the scaled cache dtypes (int8, fp8: CPU only).
absl::StatusOr<std::unique_ptr<Engine>> MakeCudaEngine(const std::string& model_dir, int device,
                                                       const models::ModelOptions& options, int block_size,
                                                       KvDtype kv_dtype, int32_t num_blocks, int64_t kv_memory_bytes);

}  // namespace tessera::worker
