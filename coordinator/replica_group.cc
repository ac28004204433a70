#include "coordinator/replica_group.h"

#include <grpcpp/grpcpp.h>

#include <iostream>

namespace tessera::coordinator {

const char* StateName(ReplicaGroup::State s) {
  switch (s) {
    case ReplicaGroup::State::kLoading: return "LOADING";
    case ReplicaGroup::State::kReady: return "READY";
    case ReplicaGroup::State::kDraining: return "DRAINING";
    case ReplicaGroup::State::kReleased: return "RELEASED";
    case ReplicaGroup::State::kDead: return "DEAD";
  }
  return "?";
}

ReplicaGroup::ReplicaGroup(std::string id, std::string worker_id, std::string address, GroupOptions options,
                           LostCallback on_lost)
    : id_(std::move(id)),
      worker_id_(std::move(worker_id)),
      address_(std::move(address)),
      options_(std::move(options)),
      on_lost_(std::move(on_lost)) {}

ReplicaGroup::~ReplicaGroup() {
  stop_ = true;
  Kill();
  if (thread_.joinable()) thread_.join();
}

void ReplicaGroup::Start() { thread_ = std::thread([this] { Run(); }); }

bool ReplicaGroup::Enqueue(std::shared_ptr<Request> request) {
  if (state_ != State::kReady) return false;
  scheduler_->Enqueue(std::move(request));
  return true;
}

void ReplicaGroup::Drain() {
  State expected = State::kReady;
  if (state_.compare_exchange_strong(expected, State::kDraining) && scheduler_) scheduler_->Notify();
  expected = State::kLoading;
  state_.compare_exchange_strong(expected, State::kDraining);
}

void ReplicaGroup::Kill() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stream_context_) stream_context_->TryCancel();
  }
  stop_ = true;
  if (scheduler_) scheduler_->Notify();
}

int64_t ReplicaGroup::outstanding_work() const { return scheduler_ ? scheduler_->outstanding_work() : 0; }

int64_t ReplicaGroup::max_sequence_tokens() const {
  return scheduler_ ? static_cast<int64_t>(scheduler_->num_blocks()) * options_.block_size - 1 : 0;
}

v1::GroupInfo ReplicaGroup::Info() const {
  v1::GroupInfo info;
  info.set_id(id_);
  info.set_state(StateName(state_));
  info.add_workers(worker_id_);
  info.set_weight_bytes(weight_bytes_);
  if (scheduler_) {
    info.set_running_requests(scheduler_->num_running());
    info.set_waiting_requests(scheduler_->num_waiting());
    info.set_total_kv_blocks(scheduler_->num_blocks());
    info.set_free_kv_blocks(scheduler_->num_free_blocks());
  }
  return info;
}

bool ReplicaGroup::Load() {
  auto stub = v1::internal::Worker::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  v1::internal::LoadModelRequest req;
  req.set_model_dir(options_.model_dir);
  req.set_block_size(options_.block_size);
  req.set_num_kv_blocks(options_.num_kv_blocks);
  req.set_kv_memory_bytes(options_.kv_memory_bytes);
  v1::internal::LoadModelResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
  grpc::Status s = stub->LoadModel(&ctx, req, &resp);
  if (!s.ok()) {
    std::cerr << "tessera-coordinator: worker " << worker_id_ << " failed to load: " << s.error_message() << "\n";
    return false;
  }
  SchedulerOptions so;
  so.block_size = options_.block_size;
  so.num_blocks = resp.num_kv_blocks();
  so.max_step_tokens = options_.max_step_tokens;
  so.max_running = options_.max_running;
  scheduler_ = std::make_unique<Scheduler>(so);
  weight_bytes_ = resp.weight_bytes();
  return true;
}

void ReplicaGroup::Run() {
  if (!Load()) {
    state_ = State::kDead;
    on_lost_(this, {});
    return;
  }
  State expected = State::kLoading;
  state_.compare_exchange_strong(expected, State::kReady);  // may be DRAINING already
  Loop();
}

void ReplicaGroup::Loop() {
  auto stub = v1::internal::Worker::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  {
    std::lock_guard<std::mutex> lock(mu_);
    stream_context_ = std::make_unique<grpc::ClientContext>();
  }
  auto stream = stub->Steps(stream_context_.get());
  v1::internal::StepRequest step;
  v1::internal::StepResponse response;
  uint64_t step_id = 0;
  bool lost = false;
  while (!stop_) {
    if (state_ == State::kDraining && scheduler_->num_running() == 0 && scheduler_->num_waiting() == 0) {
      state_ = State::kReleased;
      break;
    }
    if (!scheduler_->BuildStep(&step)) {
      scheduler_->WaitForWork(stop_);
      continue;
    }
    step.set_step_id(++step_id);
    if (!stream->Write(step) || !stream->Read(&response)) {
      lost = true;
      break;
    }
    scheduler_->ApplyStep(response);
  }
  if (state_ == State::kReleased) {
    stream->WritesDone();
    stream->Finish();
    return;
  }
  if (lost || stop_) {
    grpc::Status status = stream->Finish();
    std::cerr << "tessera-coordinator: lost worker " << worker_id_ << " (" << status.error_message() << ")\n";
    state_ = State::kDead;
    on_lost_(this, scheduler_->TakeAll());
  }
}

}  // namespace tessera::coordinator
