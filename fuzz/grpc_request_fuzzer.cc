// Client API messages from bytes, through the path every front end shares: a
// GenerateRequest goes to Frontend::Start (model, prompt, sampling and stop checks,
// tokenization, routing), Tokenize and Detokenize requests to theirs. The coordinator
// has no replica group here, so a request that passes every check ends UNAVAILABLE at
// routing. Never a crash, and no request stays registered.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/cluster.h"
#include "coordinator/frontend.h"
#include "fuzz/fuzz_input.h"
#include "models/model_spec.h"
#include "tessera/v1/tessera.pb.h"
#include "tokenizer/tokenizer.h"

namespace {

using namespace tessera;

coordinator::Frontend& TheFrontend() {
  static coordinator::Cluster cluster{coordinator::ClusterOptions{}};
  static coordinator::Frontend* frontend = [] {
    const std::string model = std::string(TESSERA_SOURCE_DIR) + "/assets/models/tessera-tiny-llama";
    auto spec = models::LoadModelSpec(model);
    auto tokenizer = tokenizer::Tokenizer::Load(model);
    if (!spec.ok() || !tokenizer.ok()) std::abort();
    coordinator::FrontendOptions options;
    options.model_name = "tessera-tiny-llama";
    return new coordinator::Frontend(options, *spec, std::move(*tokenizer), &cluster);
  }();
  return *frontend;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  coordinator::Frontend& frontend = TheFrontend();
  fuzz::FuzzInput in(data, size);
  const uint8_t kind = in.Byte() % 3;
  const std::string message(in.Rest());
  if (kind == 0) {
    v1::GenerateRequest request;
    if (!request.ParseFromString(message)) return 0;
    auto started = frontend.Start(request, /*tenant=*/"");
    if (started.ok()) __builtin_trap();  // no group can have taken it
  } else if (kind == 1) {
    v1::TokenizeRequest request;
    if (!request.ParseFromString(message)) return 0;
    (void)frontend.TokenizeText(request.text(), request.add_special_tokens());
  } else {
    v1::DetokenizeRequest request;
    if (!request.ParseFromString(message)) return 0;
    (void)frontend.DetokenizeIds({request.ids().begin(), request.ids().end()}, request.skip_special_tokens());
  }
  return 0;
}
