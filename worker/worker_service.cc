#include "worker/worker_service.h"

#include <algorithm>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/progress.h"
#include "common/log.h"
#include "common/status.h"
#include "kernels/cpu_isa.h"
#include "parallel/nccl_communicator.h"
#include "parallel/replica.h"
#include "worker/coordinator_store.h"

namespace tessera::worker {
namespace {

// One short step (a few prompt tokens, then a decode token) before the worker says it
// is loaded, so the first request meets started threads, touched scratch memory and
// initialised libraries instead of paying for them. Every rank of a group runs it in
// LoadModel, so their collectives pair up. It writes KV block 0, which holds nothing
// yet (the coordinator assigns blocks only after the load).
absl::Status WarmUp(Engine& engine) {
  if (engine.num_blocks() < 1) return absl::OkStatus();
  const int32_t tokens = static_cast<int32_t>(std::min<int64_t>(4, engine.kv_layout().block_size - 1));
  if (tokens < 1) return absl::OkStatus();
  const std::vector<int32_t> prompt(tokens, 0), next = {0}, table = {0};
  kernels::SamplingConfig greedy;
  greedy.temperature = 0;
  const kernels::TokenHistory history;
  const SampleSpec sample{0, &greedy, &history, 0.0};
  std::vector<kernels::SampledToken> out;
  models::SequenceInput prefill{prompt, 0, table};
  RETURN_IF_ERROR(engine.Step({&prefill, 1}, {&sample, 1}, &out, nullptr));
  models::SequenceInput decode{next, tokens, table};
  return engine.Step({&decode, 1}, {&sample, 1}, &out, nullptr);
}

}  // namespace

absl::Status CheckModelRoot(const std::string& root, const std::string& model_dir) {
  if (root.empty()) return absl::OkStatus();
  std::error_code root_error, dir_error;
  std::filesystem::path inside = std::filesystem::weakly_canonical(root, root_error);
  if (inside.filename().empty()) inside = inside.parent_path();  // "/models/" is "/models"
  const std::filesystem::path dir = std::filesystem::weakly_canonical(model_dir, dir_error);
  const auto [root_end, unused] = std::mismatch(inside.begin(), inside.end(), dir.begin(), dir.end());
  if (!root_error && !dir_error && root_end == inside.end()) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("model folder ", model_dir, " is outside this worker's --model-root ", root));
}

absl::StatusOr<std::unique_ptr<Engine>> WorkerService::LoadEngine(const v1::internal::LoadModelRequest& request,
                                                                  ByteProgress* progress,
                                                                  models::WeightCacheUse* weight_cache) {
  RETURN_IF_ERROR(CheckModelRoot(options_.model_root, request.model_dir()));
  const int tp = std::max(1, request.tp_size()), ep = std::max(1, request.ep_size());
  const bool gpu = options_.cuda_device >= 0;
  // auto: the model's dtype, except on a GPU, whose kernels read an f32 cache.
  const std::string dtype_flag = request.kv_cache_dtype().empty() ? "auto" : request.kv_cache_dtype();
  ASSIGN_OR_RETURN(const models::ModelSpec spec, models::LoadModelSpec(request.model_dir()));
  ASSIGN_OR_RETURN(const KvDtype kv_dtype,
                   gpu && dtype_flag == "auto" ? KvDtype::kF32 : models::ResolveKvDtype(dtype_flag, spec));
  if (gpu && request.batch_invariant()) {
    return absl::FailedPreconditionError(
        "batch-invariant serving is CPU-only so far: cuBLAS picks its GEMM algorithm by batch size");
  }
  models::ModelOptions options;
  options.num_threads = options_.threads;
  if (request.batch_invariant()) options.matmul.bf16_activation_min_rows = 0;
  options.on_load_progress = [progress](int64_t done, int64_t total) { progress->Update(done, total); };
  if (tp * ep > 1) {
    // Meet the other ranks of the group through the coordinator's store: NCCL between
    // GPUs, Gloo over TCP between CPU workers (or GPUs asked to use it).
    CoordinatorStore store(options_.coordinator_address, options_.internal_tls.get());
    const std::chrono::milliseconds timeout = request.collective_timeout_ms() > 0
                                                  ? std::chrono::milliseconds(request.collective_timeout_ms())
                                                  : parallel::GlooOptions{}.timeout;
    auto connect = [&](int rank, int size,
                       const std::string& prefix) -> absl::StatusOr<std::unique_ptr<parallel::Communicator>> {
      if (gpu && !options_.gloo_on_gpu) {
        parallel::NcclOptions nccl;
        nccl.device = options_.cuda_device;
        nccl.timeout = timeout;
        nccl.prefix = prefix;
        return parallel::CreateNcclCommunicator(rank, size, store, nccl);
      }
      parallel::GlooOptions gloo;
      gloo.hostname = options_.host;
      gloo.busy_poll = options_.busy_poll;
      gloo.timeout = timeout;
      gloo.prefix = prefix;
      return parallel::CreateGlooCommunicator(rank, size, store, gloo);
    };
    ASSIGN_OR_RETURN(parallel::ReplicaCommunicators comms,
                     parallel::ConnectReplica({request.tp_rank(), tp, request.ep_rank(), ep}, request.group_key(),
                                              connect));
    tp_comm_ = std::move(comms.tp);
    all_comm_ = std::move(comms.all);
    options.tp = {request.tp_rank(), tp};
    options.ep = {request.ep_rank(), ep};
    options.communicator = tp_comm_.get();
    options.moe_communicator = all_comm_.get();
  }
  if (gpu) {
    if (!options_.weight_cache_dir.empty()) log::Info() << "--weight-cache: a GPU worker's weights are not cached";
    return MakeCudaEngine(request.model_dir(), options_.cuda_device, options, request.block_size(), kv_dtype,
                          request.num_kv_blocks(), request.kv_memory_bytes());
  }
  options.weight_cache_dir = options_.weight_cache_dir;
  options.on_weight_cache_written = [quiet = options_.quiet](const models::WeightCacheUse& use) {
    if (!quiet && use.outcome == models::WeightCacheUse::Outcome::kWritten) log::Info() << use.Describe();
  };
  ASSIGN_OR_RETURN(std::unique_ptr<models::Model> model, models::Model::Load(request.model_dir(), options));
  *weight_cache = model->weight_cache();
  const kvstore::KvLayout layout = model->KvLayoutFor(request.block_size(), kv_dtype);
  int32_t blocks = request.num_kv_blocks();
  if (blocks <= 0) blocks = static_cast<int32_t>(std::max<int64_t>(1, request.kv_memory_bytes() / layout.block_bytes()));
  return MakeCpuEngine(std::move(model), layout, blocks);
}

grpc::Status WorkerService::LoadModel(grpc::ServerContext*, const v1::internal::LoadModelRequest* request,
                                      v1::internal::LoadModelResponse* response) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "worker is busy");
  if (request->block_size() <= 0) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "block_size must be > 0");
  executor_.reset();  // a reload: the old model goes before its communicators
  tp_comm_.reset();
  all_comm_.reset();
  ByteProgress progress("loading weights", options_.quiet ? ByteProgress::Style::kQuiet : ByteProgress::Style::kLines);
  models::WeightCacheUse weight_cache;
  absl::StatusOr<std::unique_ptr<Engine>> engine = LoadEngine(*request, &progress, &weight_cache);
  if (engine.ok()) {
    progress.Finish();
    if (!options_.quiet && weight_cache.outcome != models::WeightCacheUse::Outcome::kOff) {
      log::Info() << weight_cache.Describe();
    }
    response->set_load_seconds(progress.seconds());
    response->set_load_bytes(progress.bytes());
    response->set_weight_cache(weight_cache.OutcomeName());
    if (absl::Status warm = WarmUp(**engine); !warm.ok()) engine = warm;
  }
  if (!engine.ok()) {
    // This worker can never load what it is asked to (its device, its --model-root):
    // it stops instead of registering again.
    if (engine.status().code() == absl::StatusCode::kFailedPrecondition ||
        engine.status().code() == absl::StatusCode::kPermissionDenied) {
      std::lock_guard<std::mutex> fatal(fatal_mu_);
      fatal_error_ = std::string(engine.status().message());
    }
    return ToGrpc(engine.status());
  }
  Engine& e = **engine;
  response->set_weight_bytes(static_cast<int64_t>(e.weight_bytes()));
  response->set_kv_cache_dtype(KvDtypeName(e.kv_layout().dtype));
  response->set_kv_block_bytes(e.kv_layout().block_bytes());
  response->set_kernels(options_.cuda_device >= 0 ? "cuda" : absl::StrCat("cpu/", kernels::CpuIsaName(kernels::ActiveCpuIsa())));
  host_tier_.Reset(e.kv_layout(), e.kv_heads(), e.spec().num_kv_heads, std::max(0, request->num_host_blocks()));
  if (absl::Status pinned = e.PinHostMemory(host_tier_.memory()); !pinned.ok()) return ToGrpc(pinned);
  for (const auto& [block, hash] : host_tier_.Contents()) {
    auto* kept = response->add_host_blocks();
    kept->set_block(block);
    kept->set_hash(hash.data(), hash.size());
  }
  executor_ = std::make_unique<StepExecutor>(std::move(*engine), &host_tier_, &kv_bytes_fetched_, options_.data_plane_tls);
  response->set_num_kv_blocks(executor_->num_blocks());
  response->set_num_host_blocks(host_tier_.num_blocks());
  return grpc::Status::OK;
}

std::optional<std::string> WorkerService::fatal_error() const {
  std::lock_guard<std::mutex> lock(fatal_mu_);
  return fatal_error_;
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
