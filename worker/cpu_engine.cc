// The CPU engine: models::Model over a CpuKvStorage in host memory.
#include <cstring>

#include "common/status.h"
#include "kvstore/cpu_kv_storage.h"
#include "worker/engine.h"

namespace tessera::worker {
namespace {

class CpuEngine final : public Engine {
 public:
  CpuEngine(std::unique_ptr<models::Model> model, const kvstore::KvLayout& layout, int32_t num_blocks)
      : model_(std::move(model)), kv_(layout, num_blocks) {}

  const models::ModelSpec& spec() const override { return model_->spec(); }
  const kvstore::KvLayout& kv_layout() const override { return kv_.layout(); }
  kvstore::HeadRange kv_heads() const override {
    const models::ShardLayout& shard = model_->shard();
    return {shard.kv_head0, shard.kv_head0 + shard.kv_heads};
  }
  int32_t num_blocks() const override { return kv_.num_blocks(); }
  size_t weight_bytes() const override { return model_->weight_bytes(); }

  absl::Status Step(std::span<const models::SequenceInput> batch, std::span<const SampleSpec> samples,
                    std::vector<kernels::SampledToken>* out, std::vector<float>* pooled) override {
    RETURN_IF_ERROR(model_->Forward(batch, kv_, &logits_, pooled));
    const int32_t vocab = spec().vocab_size;
    out->clear();
    for (const SampleSpec& s : samples) {
      out->push_back(kernels::SampleToken(logits_.data() + s.row * vocab, vocab, *s.config, *s.history, s.uniform));
    }
    return absl::OkStatus();
  }
  absl::Status ReadBlocks(std::span<const BlockOut> copies) override {
    for (const BlockOut& c : copies) std::memcpy(c.host, kv_.block(c.device_block), BlockBytes());
    return absl::OkStatus();
  }
  absl::Status WriteBlocks(std::span<const BlockIn> copies) override {
    for (const BlockIn& c : copies) std::memcpy(kv_.block(c.device_block), c.host, BlockBytes());
    return absl::OkStatus();
  }

 private:
  size_t BlockBytes() const { return static_cast<size_t>(kv_.layout().block_bytes()); }

  std::unique_ptr<models::Model> model_;
  kvstore::CpuKvStorage kv_;  // on a CPU worker, the device pool
  std::vector<float> logits_;
};

}  // namespace

std::unique_ptr<Engine> MakeCpuEngine(std::unique_ptr<models::Model> model, const kvstore::KvLayout& layout,
                                      int32_t num_blocks) {
  return std::make_unique<CpuEngine>(std::move(model), layout, num_blocks);
}

}  // namespace tessera::worker
