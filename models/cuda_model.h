// CudaModel: the same transformer as Model (models/model.h), running its forward step
// on one GPU. It loads the weights through the same loader (families, validation,
// sharding), then keeps them on the device in their checkpoint precision: float32
// checkpoints run fp32 GEMMs (exact against the CPU model), bf16 ones run bf16 GEMMs
// with fp32 accumulation through cuBLAS. Activations, norms and the KV cache are fp32,
// in the TP-independent block layout, in a device pool (CudaKvPool).
//
// Tensor and expert parallelism as on the CPU (models/parallel_layers.h): each GPU
// holds its rank's shard and the same collectives join the shards, through the
// communicators the caller passes. NCCL's take device buffers; a host communicator
// (Gloo: GPUs without NCCL between them, or several ranks on one GPU) gets the
// tensors staged through host memory. Logits come back to the host.
//
// Thread-safety: as Model, one Forward at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kvstore/kv_layout.h"
#include "models/model.h"

namespace tessera::models {

// The device KV pool: num_blocks blocks of `layout`, float32, zeroed.
class CudaKvPool {
 public:
  static absl::StatusOr<std::unique_ptr<CudaKvPool>> Create(const kvstore::KvLayout& layout, int32_t num_blocks);
  ~CudaKvPool();

  const kvstore::KvLayout& layout() const { return layout_; }
  int32_t num_blocks() const { return num_blocks_; }
  float* data() const { return data_; }  // device memory

 private:
  CudaKvPool(const kvstore::KvLayout& layout, int32_t num_blocks, float* data)
      : layout_(layout), num_blocks_(num_blocks), data_(data) {}
  kvstore::KvLayout layout_;
  int32_t num_blocks_;
  float* data_;
};

class CudaModel {
 public:
  // Loads DIR as Model::Load does, onto CUDA device `device` (FAILED_PRECONDITION
  // when there is no such device), as the shard options.tp / options.ep with their
  // communicators (ModelOptions' num_threads and matmul do not apply on a GPU).
  static absl::StatusOr<std::unique_ptr<CudaModel>> Load(const std::string& model_dir, int device,
                                                         const ModelOptions& options = {});
  static absl::StatusOr<std::unique_ptr<CudaModel>> Create(const ModelSpec& spec, const TensorSource& source,
                                                           int device, const ModelOptions& options = {});
  ~CudaModel();

  const ModelSpec& spec() const { return spec_; }
  const ShardLayout& shard() const;
  size_t weight_bytes() const;  // on the device
  kvstore::KvLayout KvLayoutFor(int block_size) const;

  // As Model::Forward: writes the new tokens' K/V into `kv`, and the logits of each
  // sequence's last token (or every new token, per all_logits) into `logits`,
  // [rows, vocab] float32 on the host. The same errors, before anything is written.
  absl::Status Forward(std::span<const SequenceInput> batch, CudaKvPool& kv, std::vector<float>* logits);
  // The same, leaving the logits on the device: [rows, vocab] float32, valid until the
  // next call (the GPU sampler reads them there).
  absl::StatusOr<float*> ForwardOnDevice(std::span<const SequenceInput> batch, CudaKvPool& kv);

 private:
  struct Impl;
  CudaModel(ModelSpec spec, std::unique_ptr<Impl> impl);

  ModelSpec spec_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::models
