// The CUDA engine: models::Model on a GPU over a CudaKvPool in device memory, sampling on
// the device (kernels/cuda/sampling.cuh) so that a step sends back tokens, not logits.
#include <cuda_runtime.h>

#include "common/status.h"
#include "kvstore/cuda_block_copier.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/sampling.cuh"
#include "kvstore/cuda_kv_pool.h"
#include "models/model.h"
#include "worker/engine.h"

namespace tessera::worker {
namespace {

namespace kc = kernels::cuda;

bool HasPenalties(const kernels::SamplingConfig& c) {
  return c.repetition_penalty != 1.0f || c.presence_penalty != 0.0f || c.frequency_penalty != 0.0f;
}

class CudaEngine final : public Engine {
 public:
  CudaEngine(int device, std::unique_ptr<models::Model> model, std::unique_ptr<kvstore::CudaKvPool> kv,
             std::unique_ptr<kvstore::BlockCopier> copier)
      : device_(device), model_(std::move(model)), kv_(std::move(kv)), copier_(std::move(copier)) {}

  const models::ModelSpec& spec() const override { return model_->spec(); }
  const kvstore::KvLayout& kv_layout() const override { return kv_->layout(); }
  kvstore::HeadRange kv_heads() const override {
    const models::ShardLayout& shard = model_->shard();
    return {shard.kv_head0, shard.kv_head0 + shard.kv_heads};
  }
  int32_t num_blocks() const override { return kv_->num_blocks(); }
  size_t weight_bytes() const override { return model_->weight_bytes(); }

  absl::Status Step(std::span<const models::SequenceInput> batch, std::span<const SampleSpec> samples,
                    std::vector<kernels::SampledToken>* out, std::vector<float>* pooled) override {
    ASSIGN_OR_RETURN(float* logits, model_->ForwardOnDevice(batch, *kv_, pooled));
    const int32_t vocab = spec().vocab_size;
    out->assign(samples.size(), {});
    std::vector<size_t> on_device;
    for (size_t i = 0; i < samples.size(); ++i) {
      if (!samples[i].config->logprobs) {
        on_device.push_back(i);
        continue;
      }
      // Log-probabilities: the host sampler serves them, from this row's logits.
      row_.resize(vocab);
      RETURN_IF_CUDA(cudaMemcpy(row_.data(), logits + samples[i].row * vocab, vocab * sizeof(float),
                                cudaMemcpyDeviceToHost));
      (*out)[i] = kernels::SampleToken(row_.data(), vocab, *samples[i].config, *samples[i].history,
                                       samples[i].uniform);
    }
    if (on_device.empty()) return absl::OkStatus();

    // The rows to sample, compacted, with their knobs and penalty lists.
    const int64_t n = static_cast<int64_t>(on_device.size());
    std::vector<int32_t> rows, penalty_tokens, penalty_counts;
    std::vector<kc::SampleRow> configs;
    for (size_t i : on_device) {
      const SampleSpec& s = samples[i];
      rows.push_back(static_cast<int32_t>(s.row));
      kc::SampleRow row{*s.config, s.uniform, static_cast<int32_t>(penalty_tokens.size()), 0};
      if (HasPenalties(*s.config)) {
        for (const auto& [token, count] : s.history->output_counts) {
          penalty_tokens.push_back(token);
          penalty_counts.push_back(count);
        }
        for (const auto& [token, seen] : s.history->prompt_tokens) {
          if (s.history->output_counts.contains(token)) continue;
          penalty_tokens.push_back(token);
          penalty_counts.push_back(0);
        }
        row.penalty_count = static_cast<int32_t>(penalty_tokens.size()) - row.penalty_offset;
      }
      configs.push_back(row);
    }
    RETURN_IF_ERROR(rows_.Upload(rows));
    RETURN_IF_ERROR(configs_.Upload(configs));
    RETURN_IF_ERROR(penalty_tokens_.Upload(penalty_tokens));
    RETURN_IF_ERROR(penalty_counts_.Upload(penalty_counts));
    RETURN_IF_ERROR(sample_logits_.Reserve(n * vocab * sizeof(float)));
    RETURN_IF_ERROR(tokens_.Reserve(n * sizeof(int32_t)));
    const size_t workspace_bytes = kc::SampleWorkspaceBytes(n, vocab);
    RETURN_IF_ERROR(workspace_.Reserve(workspace_bytes));
    RETURN_IF_CUDA(kc::LaunchGatherRows(logits, rows_.as<int32_t>(), n, vocab, sample_logits_.as<float>(), nullptr));
    RETURN_IF_CUDA(kc::LaunchSample(sample_logits_.as<float>(), n, vocab, configs_.as<kc::SampleRow>(),
                                    penalty_tokens_.as<int32_t>(), penalty_counts_.as<int32_t>(),
                                    workspace_.as<void>(), workspace_bytes, tokens_.as<int32_t>(), nullptr));
    std::vector<int32_t> tokens(n);
    RETURN_IF_CUDA(cudaMemcpy(tokens.data(), tokens_.as<int32_t>(), n * sizeof(int32_t), cudaMemcpyDeviceToHost));
    for (int64_t j = 0; j < n; ++j) (*out)[on_device[j]].token = tokens[j];
    return absl::OkStatus();
  }

  absl::Status ReadBlocks(std::span<const BlockOut> copies) override {
    RETURN_IF_CUDA(cudaSetDevice(device_));  // the calling thread's device: the copier's
    std::vector<kvstore::BlockCopier::Out> out;
    for (const BlockOut& c : copies) out.push_back({Block(c.device_block), c.host});
    RETURN_IF_ERROR(copier_->AfterCompute(nullptr));  // the steps that wrote the blocks
    RETURN_IF_ERROR(copier_->CopyOut(out));
    return copier_->Synchronize();
  }
  absl::Status WriteBlocks(std::span<const BlockIn> copies) override {
    RETURN_IF_CUDA(cudaSetDevice(device_));
    std::vector<kvstore::BlockCopier::In> in;
    for (const BlockIn& c : copies) in.push_back({c.host, Block(c.device_block)});
    RETURN_IF_ERROR(copier_->AfterCompute(nullptr));  // the steps that read the blocks' old contents
    RETURN_IF_ERROR(copier_->CopyIn(in));
    return copier_->Synchronize();
  }
  absl::Status PinHostMemory(std::span<std::byte> memory) override {
    pinned_.reset();
    if (memory.empty()) return absl::OkStatus();
    ASSIGN_OR_RETURN(pinned_, kvstore::PinnedRegion::Create(memory.data(), memory.size_bytes()));
    return absl::OkStatus();
  }

 private:
  std::byte* Block(int32_t block) const { return kv_->block(block); }

  int device_;
  std::unique_ptr<models::Model> model_;
  std::unique_ptr<kvstore::CudaKvPool> kv_;
  std::unique_ptr<kvstore::BlockCopier> copier_;  // swaps and fetches, on a copy stream
  std::unique_ptr<kvstore::PinnedRegion> pinned_;  // the host tier, pinned in place
  // The sampler's buffers, grown to the largest step seen.
  kc::DeviceMemory rows_, configs_, penalty_tokens_, penalty_counts_, sample_logits_, tokens_, workspace_;
  std::vector<float> row_;  // one row of logits on the host (log-probability requests)
};

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> MakeCudaEngine(const std::string& model_dir, int device,
                                                       const models::ModelOptions& options, int block_size,
                                                       KvDtype kv_dtype, int32_t num_blocks, int64_t kv_memory_bytes) {
  models::ModelOptions on_gpu = options;
  on_gpu.cuda_device = device;
  ASSIGN_OR_RETURN(std::unique_ptr<models::Model> model, models::Model::Load(model_dir, on_gpu));
  const kvstore::KvLayout layout = model->KvLayoutFor(block_size, kv_dtype);
  if (num_blocks <= 0) num_blocks = static_cast<int32_t>(std::max<int64_t>(1, kv_memory_bytes / layout.block_bytes()));
  ASSIGN_OR_RETURN(std::unique_ptr<kvstore::CudaKvPool> kv, kvstore::CudaKvPool::Create(layout, num_blocks));
  ASSIGN_OR_RETURN(std::unique_ptr<kvstore::BlockCopier> copier,
                   kvstore::BlockCopier::Create(layout.block_bytes(), device));
  return std::unique_ptr<Engine>(new CudaEngine(device, std::move(model), std::move(kv), std::move(copier)));
}

}  // namespace tessera::worker
