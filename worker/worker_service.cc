#include "worker/worker_service.h"

#include <thread>

#include "absl/strings/str_cat.h"

namespace tessera::worker {
namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

}  // namespace

grpc::Status WorkerService::LoadModel(grpc::ServerContext*, const v1::internal::LoadModelRequest* request,
                                      v1::internal::LoadModelResponse* response) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "worker is busy");
  if (request->block_size() <= 0) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "block_size must be > 0");
  models::ModelOptions options;
  options.num_threads = options_.threads;
  auto model = models::Model::Load(request->model_dir(), options);
  if (!model.ok()) return ToGrpc(model.status());
  int32_t blocks = request->num_kv_blocks();
  if (blocks <= 0) {
    const int64_t block_bytes = (*model)->KvLayoutFor(request->block_size()).block_elems() * sizeof(float);
    blocks = static_cast<int32_t>(std::max<int64_t>(1, request->kv_memory_bytes() / block_bytes));
  }
  response->set_weight_bytes(static_cast<int64_t>((*model)->weight_bytes()));
  executor_ = std::make_unique<StepExecutor>(std::move(*model), request->block_size(), blocks);
  response->set_num_kv_blocks(executor_->num_blocks());
  return grpc::Status::OK;
}

grpc::Status WorkerService::Steps(
    grpc::ServerContext*, grpc::ServerReaderWriter<v1::internal::StepResponse, v1::internal::StepRequest>* stream) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "a Steps stream is already open");
  if (!executor_) return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "no model loaded");
  executor_->Reset();
  v1::internal::StepRequest step;
  while (stream->Read(&step)) {
    if (options_.step_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(options_.step_delay_ms));
    auto response = executor_->Run(step);
    if (!response.ok()) return ToGrpc(response.status());
    if (!stream->Write(*response)) break;
  }
  return grpc::Status::OK;
}

}  // namespace tessera::worker
