#include "worker/coordinator_session.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/status.h"

namespace tessera::worker {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

CoordinatorSession::CoordinatorSession(v1::internal::Coordinator::StubInterface* coordinator, WorkerService* service,
                                       const kvstore::BlockServer* block_server, const SessionOptions& options)
    : coordinator_(coordinator),
      service_(service),
      block_server_(block_server),
      options_(options),
      interval_(options.retry_interval),
      last_contact_(Clock::now()) {}

absl::Status CoordinatorSession::Register() {
  v1::internal::RegisterRequest request;
  request.set_address(options_.address);
  request.set_tp(options_.tp);
  request.set_group(options_.group);
  v1::internal::RegisterResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + options_.call_timeout);
  const grpc::Status s = coordinator_->Register(&context, request, &response);
  if (!s.ok()) {
    if (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
      return absl::InvalidArgumentError(absl::StrCat("the coordinator refused this worker: ", s.error_message()));
    }
    return FromGrpc(s);
  }
  worker_id_ = response.worker_id();
  interval_ = std::chrono::milliseconds(std::max(50, response.heartbeat_interval_ms()));
  last_contact_ = Clock::now();
  log::Info() << "registered as " << worker_id_ << " at " << options_.address;
  return absl::OkStatus();
}

absl::StatusOr<bool> CoordinatorSession::Heartbeat(bool draining) {
  v1::internal::HeartbeatRequest request;
  request.set_worker_id(worker_id_);
  request.set_address(options_.address);
  request.set_draining(draining);
  kvstore::HostTier& tier = service_->host_tier();
  const bool reports_kv = tier.num_blocks() > 0;
  if (reports_kv) tier.FillEvents(options_.kv_address, request.mutable_kv());
  request.set_kv_bytes_fetched(service_->kv_bytes_fetched());
  if (block_server_ != nullptr) request.set_kv_bytes_sent(block_server_->bytes_served());
  v1::internal::HeartbeatResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + options_.call_timeout);
  const grpc::Status s = coordinator_->Heartbeat(&context, request, &response);
  if (!s.ok()) return FromGrpc(s);
  last_contact_ = Clock::now();
  if (reports_kv) tier.Ack(response.kv_acked_seq(), response.kv_resync());
  if (!response.known()) worker_id_.clear();  // the coordinator restarted: register again
  return response.release();
}

absl::Status CoordinatorSession::Run(const std::atomic<bool>& draining) {
  while (true) {
    absl::Status contact;
    if (worker_id_.empty()) {
      contact = Register();
      if (contact.code() == absl::StatusCode::kInvalidArgument) return contact;
    } else {
      absl::StatusOr<bool> released = Heartbeat(draining);
      if (released.ok() && *released) return absl::OkStatus();
      contact = released.status();
    }
    // The contact changed: say so once (not while draining: a server shutting down stops
    // its coordinator too).
    if (contact.ok() == out_of_contact_ && !draining) {
      out_of_contact_ = !contact.ok();
      if (out_of_contact_) {
        log::Warning() << "cannot reach the coordinator (retrying): " << contact.message();
      } else {
        log::Info() << "reached the coordinator";
      }
    }
    if (draining && Clock::now() - last_contact_ > options_.orphan_drain_exit) return absl::OkStatus();
    if (const std::optional<std::string> fatal = service_->fatal_error()) {
      return absl::FailedPreconditionError(absl::StrCat("cannot run the model it was given: ", *fatal));
    }
    std::this_thread::sleep_for(interval_);
  }
}

}  // namespace tessera::worker
