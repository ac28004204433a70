// The CUDA engine: models::CudaModel over a CudaKvPool in device memory.
#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "models/cuda_model.h"
#include "worker/engine.h"

namespace tessera::worker {
namespace {

class CudaEngine final : public Engine {
 public:
  CudaEngine(std::unique_ptr<models::CudaModel> model, std::unique_ptr<models::CudaKvPool> kv)
      : model_(std::move(model)), kv_(std::move(kv)) {}

  const models::ModelSpec& spec() const override { return model_->spec(); }
  const kvstore::KvLayout& kv_layout() const override { return kv_->layout(); }
  kvstore::HeadRange kv_heads() const override {
    const models::ShardLayout& shard = model_->shard();
    return {shard.kv_head0, shard.kv_head0 + shard.kv_heads};
  }
  int32_t num_blocks() const override { return kv_->num_blocks(); }
  size_t weight_bytes() const override { return model_->weight_bytes(); }

  absl::Status Forward(std::span<const models::SequenceInput> batch, std::vector<float>* logits) override {
    return model_->Forward(batch, *kv_, logits);
  }
  absl::Status ReadBlock(int32_t block, float* host) override {
    return Check(cudaMemcpy(host, Block(block), BlockBytes(), cudaMemcpyDeviceToHost));
  }
  absl::Status WriteBlock(int32_t block, const float* host) override {
    return Check(cudaMemcpy(Block(block), host, BlockBytes(), cudaMemcpyHostToDevice));
  }

 private:
  static absl::Status Check(cudaError_t e) {
    return e == cudaSuccess ? absl::OkStatus() : absl::InternalError(cudaGetErrorString(e));
  }
  float* Block(int32_t block) const { return kv_->data() + block * kv_->layout().block_elems(); }
  size_t BlockBytes() const { return static_cast<size_t>(kv_->layout().block_elems()) * sizeof(float); }

  std::unique_ptr<models::CudaModel> model_;
  std::unique_ptr<models::CudaKvPool> kv_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> MakeCudaEngine(const std::string& model_dir, int device,
                                                       const models::ModelOptions& options, int block_size,
                                                       int32_t num_blocks, int64_t kv_memory_bytes) {
  ASSIGN_OR_RETURN(std::unique_ptr<models::CudaModel> model, models::CudaModel::Load(model_dir, device, options));
  const kvstore::KvLayout layout = model->KvLayoutFor(block_size);
  if (num_blocks <= 0) {
    const int64_t block_bytes = layout.block_elems() * static_cast<int64_t>(sizeof(float));
    num_blocks = static_cast<int32_t>(std::max<int64_t>(1, kv_memory_bytes / block_bytes));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<models::CudaKvPool> kv, models::CudaKvPool::Create(layout, num_blocks));
  return std::unique_ptr<Engine>(new CudaEngine(std::move(model), std::move(kv)));
}

}  // namespace tessera::worker
