#include "worker/worker_service.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "worker/coordinator_store.h"

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
  executor_.reset();  // a reload: the old model goes before its communicators
  tp_comm_.reset();
  all_comm_.reset();
  models::ModelOptions options;
  options.num_threads = options_.threads;
  const int tp = std::max(1, request->tp_size()), ep = std::max(1, request->ep_size());
  if (tp * ep > 1) {
    // Meet the other ranks of the group through the coordinator's store.
    CoordinatorStore store(options_.coordinator_address);
    parallel::GlooOptions gloo;
    gloo.hostname = options_.host;
    gloo.busy_poll = options_.busy_poll;
    if (request->collective_timeout_ms() > 0) gloo.timeout = std::chrono::milliseconds(request->collective_timeout_ms());
    const int rank = request->ep_rank() * tp + request->tp_rank();
    if (tp > 1) {
      gloo.prefix = absl::StrCat(request->group_key(), "/tp-", request->ep_rank());
      auto c = parallel::CreateGlooCommunicator(request->tp_rank(), tp, store, gloo);
      if (!c.ok()) return ToGrpc(c.status());
      tp_comm_ = std::move(*c);
    }
    if (ep > 1) {
      gloo.prefix = absl::StrCat(request->group_key(), "/all");
      auto c = parallel::CreateGlooCommunicator(rank, tp * ep, store, gloo);
      if (!c.ok()) return ToGrpc(c.status());
      all_comm_ = std::move(*c);
    }
    options.tp = {request->tp_rank(), tp};
    options.ep = {request->ep_rank(), ep};
    options.communicator = tp_comm_.get();
    options.moe_communicator = all_comm_.get();
  }
  auto model = models::Model::Load(request->model_dir(), options);
  if (!model.ok()) return ToGrpc(model.status());
  int32_t blocks = request->num_kv_blocks();
  if (blocks <= 0) {
    const int64_t block_bytes = (*model)->KvLayoutFor(request->block_size()).block_elems() * sizeof(float);
    blocks = static_cast<int32_t>(std::max<int64_t>(1, request->kv_memory_bytes() / block_bytes));
  }
  response->set_weight_bytes(static_cast<int64_t>((*model)->weight_bytes()));
  const models::ShardLayout& shard = (*model)->shard();
  host_tier_.Reset((*model)->KvLayoutFor(request->block_size()), {shard.kv_head0, shard.kv_head0 + shard.kv_heads},
                   (*model)->spec().num_kv_heads, std::max(0, request->num_host_blocks()));
  for (const auto& [block, hash] : host_tier_.Contents()) {
    auto* kept = response->add_host_blocks();
    kept->set_block(block);
    kept->set_hash(hash.data(), hash.size());
  }
  executor_ = std::make_unique<StepExecutor>(std::move(*model), request->block_size(), blocks, &host_tier_);
  response->set_num_kv_blocks(executor_->num_blocks());
  response->set_num_host_blocks(host_tier_.num_blocks());
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
