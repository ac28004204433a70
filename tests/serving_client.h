// Client-side helpers for tests that drive a served cluster through the public API.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>
#include <vector>

#include "models/model.h"
#include "tessera/v1/tessera.grpc.pb.h"

namespace tessera::testing {

// Everything a Generate stream returned.
struct Outcome {
  grpc::Status status;
  std::vector<int32_t> tokens;
  std::string text;
  v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
  v1::Usage usage;
  int messages = 0;
};

// Runs one Generate stream to its end (deadline: the context's, else 120 s).
Outcome Generate(v1::TesseraService::Stub& stub, const v1::GenerateRequest& request, grpc::ClientContext* ctx = nullptr);
// A greedy request for `max_tokens` tokens after `prompt` (token ids), EOS ignored.
v1::GenerateRequest GreedyIds(const std::vector<int32_t>& prompt, int max_tokens);
// The single-process greedy continuation: what a served greedy request must return.
std::vector<int32_t> Reference(models::Model& model, const std::vector<int32_t>& prompt, int n,
                               KvDtype kv_dtype = KvDtype::kF32);

}  // namespace tessera::testing
