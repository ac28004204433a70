#include "tests/serving_client.h"

#include "models/generate.h"

namespace tessera::testing {

Outcome Generate(v1::TesseraService::Stub& stub, const v1::GenerateRequest& request, grpc::ClientContext* ctx) {
  grpc::ClientContext local;
  if (ctx == nullptr) ctx = &local;
  if (ctx->deadline() == std::chrono::system_clock::time_point::max()) {  // the caller set none
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  }
  auto reader = stub.Generate(ctx, request);
  Outcome out;
  v1::GenerateResponse msg;
  while (reader->Read(&msg)) {
    ++out.messages;
    out.tokens.insert(out.tokens.end(), msg.token_ids().begin(), msg.token_ids().end());
    out.text += msg.text();
    if (msg.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      out.reason = msg.finish_reason();
      out.usage = msg.usage();
    }
  }
  out.status = reader->Finish();
  return out;
}

v1::GenerateRequest GreedyIds(const std::vector<int32_t>& prompt, int max_tokens) {
  v1::GenerateRequest r;
  r.mutable_token_ids()->mutable_ids()->Add(prompt.begin(), prompt.end());
  r.mutable_sampling()->set_temperature(0);
  r.mutable_sampling()->set_max_tokens(max_tokens);
  r.mutable_sampling()->set_ignore_eos(true);
  return r;
}

std::vector<int32_t> Reference(models::Model& model, const std::vector<int32_t>& prompt, int n, KvDtype kv_dtype) {
  models::GreedyOptions options;
  options.max_new_tokens = n;
  options.kv_dtype = kv_dtype;
  return *models::GenerateGreedy(model, prompt, options);
}

}  // namespace tessera::testing
