// tessera client [--address HOST:PORT] [--tls-ca FILE] (--prompt TEXT | --ids 1,2,3)
//                [--max-tokens N] [--temperature T] [--seed S] [--wait-ready SECONDS]
// tessera info [--address HOST:PORT] [--tls-ca FILE]
// (the API key, when the server wants one, comes from TESSERA_API_KEY)
//
// client: one streamed generation: prints text as it arrives (or, for --ids, the
// generated ids comma-separated), then a usage line on stderr.
// info: the server's GetServerInfo answer as JSON (proto3 JSON mapping).
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "cli/commands.h"
#include "cli/wait_ready.h"
#include "tessera/v1/tessera.grpc.pb.h"

namespace tessera::cli {
namespace {
int Fail(const std::string& m) {
  std::cerr << "tessera: " << m << "\n";
  return kUsageExit;
}

// The connection flags and `own`.
std::set<std::string> WithConnectionFlags(std::set<std::string> own) {
  own.insert(ServerConnection::Flags().begin(), ServerConnection::Flags().end());
  return own;
}
}  // namespace

int RunInfo(const Args& args) {
  std::string error;
  if (!CheckFlags(args, WithConnectionFlags({}), &error)) return Fail(error);
  absl::StatusOr<ServerConnection> server = ServerConnection::FromArgs(args);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  grpc::ClientContext ctx;
  server->Prepare(&ctx, std::chrono::seconds(5));
  v1::ServerInfo info;
  const grpc::Status status = server->stub().GetServerInfo(&ctx, v1::GetServerInfoRequest(), &info);
  if (!status.ok()) {
    std::cerr << "tessera: " << status.error_message() << " (gRPC code " << status.error_code() << ")\n";
    return 1;
  }
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(info, &json, options);
  std::cout << json;
  return 0;
}

int RunClient(const Args& args) {
  std::string error;
  if (!CheckFlags(args, WithConnectionFlags({"prompt", "ids", "max-tokens", "temperature", "seed", "wait-ready"}),
                  &error)) {
    return Fail(error);
  }
  if (args.Has("prompt") == args.Has("ids")) return Fail("'client' needs exactly one of --prompt and --ids");
  std::vector<int32_t> ids;
  if (args.Has("ids") && !ParseIds(args.flags.at("ids"), &ids)) return Fail("--ids must be comma-separated integers");
  int max_tokens, wait_ready;
  if (!IntFlag(args, "max-tokens", 64, 1, &max_tokens, &error) || !IntFlag(args, "wait-ready", 0, 0, &wait_ready, &error)) {
    return Fail(error);
  }
  absl::StatusOr<ServerConnection> server = ServerConnection::FromArgs(args);
  if (!server.ok()) return Fail(std::string(server.status().message()));

  // A server that just started loads first: wait for it (then send anyway, and let
  // the server say why it cannot serve).
  WaitForReadyGroup(*server, std::chrono::seconds(wait_ready));

  v1::GenerateRequest req;
  if (ids.empty()) {
    req.set_text(args.flags.at("prompt"));
  } else {
    req.mutable_token_ids()->mutable_ids()->Add(ids.begin(), ids.end());
    req.mutable_sampling()->set_ignore_eos(true);
  }
  req.mutable_sampling()->set_max_tokens(max_tokens);
  if (args.Has("temperature")) {
    float t;
    if (!absl::SimpleAtof(args.flags.at("temperature"), &t)) return Fail("--temperature must be a number");
    req.mutable_sampling()->set_temperature(t);
  }
  if (args.Has("seed")) {
    uint64_t seed;
    if (!absl::SimpleAtoi(args.flags.at("seed"), &seed)) return Fail("--seed must be an integer");
    req.mutable_sampling()->set_seed(seed);
  }
  grpc::ClientContext ctx;
  server->Prepare(&ctx);
  auto reader = server->stub().Generate(&ctx, req);
  v1::GenerateResponse msg;
  v1::GenerateResponse last;
  std::vector<int32_t> generated;
  while (reader->Read(&msg)) {
    if (ids.empty()) std::cout << msg.text() << std::flush;
    generated.insert(generated.end(), msg.token_ids().begin(), msg.token_ids().end());
    last = msg;
  }
  if (!ids.empty()) std::cout << absl::StrJoin(generated, ",");
  grpc::Status status = reader->Finish();
  std::cout << "\n";
  if (!status.ok()) {
    std::cerr << "tessera: " << status.error_message() << " (gRPC code " << status.error_code() << ")\n";
    return 1;
  }
  std::cerr << "[" << absl::StripPrefix(v1::FinishReason_Name(last.finish_reason()), "FINISH_REASON_") << ", "
            << last.usage().prompt_tokens() << " prompt + " << last.usage().completion_tokens()
            << " completion tokens]\n";
  return 0;
}

}  // namespace tessera::cli
