// tessera-coordinator: takes client requests over gRPC and drives the workers.
//
//   tessera-coordinator --model DIR [--listen HOST:PORT] [--port-file FILE] ...
//
// Every flag is in coordinator/config.cc (see --help). SIGTERM or SIGINT stops it.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/signals.h"
#include "common/tls.h"
#include "coordinator/admin_service.h"
#include "coordinator/cluster.h"
#include "coordinator/config.h"
#include "coordinator/frontend.h"
#include "coordinator/http_server.h"
#include "coordinator/metrics.h"
#include "coordinator/rendezvous_service.h"
#include "coordinator/request_log.h"
#include "coordinator/openai_api.h"
#include "models/model_identity.h"
#include "models/model_spec.h"
#include "models/sharding.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace tessera::coordinator {
namespace {

int Fail(const std::string& m) {
  log::Info() << m;
  return kUsageExit;
}

constexpr char kClientService[] = "tessera.v1.TesseraService";
// Message size limits: a client request (a prompt of a model's whole context is well
// under a megabyte), and the workers' messages (see serve_internal below).
constexpr int kClientMaxMessageBytes = 16 << 20;
constexpr int kInternalMaxMessageBytes = 256 << 20;

void WritePortFile(const std::string& path, int port) {
  if (path.empty()) return;
  std::ofstream(path + ".tmp") << port << "\n";
  std::filesystem::rename(path + ".tmp", path);  // readers never see a partial file
}

// Every HTTP connection is a descriptor: take the hard limit, not the 1024 soft one.
void RaiseDescriptorLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

int Main(int argc, char** argv) {
  const sigset_t set = BlockTerminationSignals();
  log::SetProgram("tessera-coordinator");
  CoordinatorConfig config;
  if (std::optional<int> exit = ParseCoordinatorConfig(argc, argv, &config)) return *exit;
  log::ForServer(config.log_format);
  if (!config.api_key_file.empty()) {
    absl::StatusOr<ApiKeys> keys = ApiKeys::Load(config.api_key_file);
    if (!keys.ok()) return Fail(std::string(keys.status().message()));
    config.frontend.api_keys = std::move(*keys);
  }
  ApiKeys admin_keys;
  if (!config.admin_key_file.empty()) {
    absl::StatusOr<ApiKeys> keys = ApiKeys::Load(config.admin_key_file);
    if (!keys.ok()) return Fail(std::string(keys.status().message()));
    admin_keys = std::move(*keys);
  }
  absl::StatusOr<std::shared_ptr<const tls::Material>> client_tls =
      tls::Load(config.client_tls, tls::Role::kServer, "client");
  if (!client_tls.ok()) return Fail(std::string(client_tls.status().message()));
  absl::StatusOr<std::shared_ptr<const tls::Material>> internal_tls =
      tls::Load(config.internal_tls, tls::Role::kMutual, "internal");
  if (!internal_tls.ok()) return Fail(std::string(internal_tls.status().message()));
  if (*internal_tls && config.internal_listen.empty()) {
    // Clients have no internal certificate: the planes must be apart for one to be mutual.
    return Fail("--internal-tls-* needs --internal-listen (the workers' API on its own port)");
  }
  config.http.tls = *client_tls;
  config.cluster.group.internal_tls = *internal_tls;
  const std::string& model_dir = config.model_dir;
  const int tp = config.cluster.group.tp, ep = config.cluster.group.ep;
  auto spec = models::LoadModelSpec(model_dir);
  if (!spec.ok()) return Fail(std::string(spec.status().message()));
  if (auto shard = models::ShardLayout::For(*spec, {0, tp}, {0, ep}); !shard.ok()) {
    return Fail(std::string(shard.status().message()));
  }
  absl::StatusOr<std::string> identity = models::ModelIdentity(model_dir);
  if (!identity.ok()) return Fail(std::string(identity.status().message()));
  config.cluster.group.model_identity = *identity;
  config.cluster.group.kv_window = spec->kv_window();
  log::Info() << "model " << model_dir << " is " << *identity;
  // A folder without tokenizer.json is served with token ids only.
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  if (std::filesystem::exists(std::filesystem::path(model_dir) / "tokenizer.json")) {
    auto tok = tokenizer::Tokenizer::Load(model_dir);
    if (!tok.ok()) return Fail(std::string(tok.status().message()));
    tokenizer = std::move(*tok);
  }

  config.cluster.check_group_shape = [&spec](int group_tp, int group_ep) {
    return models::ShardLayout::For(*spec, {0, group_tp}, {0, group_ep}).status();
  };
  Cluster cluster(config.cluster);

  ServingMetrics metrics(config.frontend.model_name);
  RequestLog request_log;
  RequestObservers observers({&metrics, &request_log});
  Frontend frontend(config.frontend, *spec, std::move(tokenizer), &cluster, &observers);
  const std::jthread stats =
      request_log.StartStats(std::chrono::seconds(config.log_stats_interval_s), [&frontend] { return frontend.Info(); });

  grpc::EnableDefaultHealthCheckService(true);
  // Server reflection (grpc.reflection.v1alpha): grpcurl and other generic clients list
  // and call the API without the .proto files. It describes the schema only, which is
  // public; every call still needs its key.
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  // The workers' API: on its own port with --internal-listen, else beside the client's.
  RendezvousService rendezvous;
  const bool separate_planes = !config.internal_listen.empty();
  auto serve_internal = [&](grpc::ServerBuilder& builder) {
    builder.RegisterService(&cluster);
    builder.RegisterService(&rendezvous);
    // A worker's KV snapshot (after a coordinator restart) lists every host-tier block:
    // ~36 bytes each, so a large host tier's heartbeat outgrows gRPC's 4 MB default.
    builder.SetMaxReceiveMessageSize(kInternalMaxMessageBytes);
  };
  std::unique_ptr<grpc::Server> internal;
  if (separate_planes) {
    int internal_port = 0;
    grpc::ServerBuilder builder;
    builder.AddListeningPort(config.internal_listen, tls::ServerCredentials(internal_tls->get(), /*mutual=*/true),
                             &internal_port);
    serve_internal(builder);
    internal = builder.BuildAndStart();
    if (!internal || internal_port == 0) return Fail(absl::StrCat("cannot listen on ", config.internal_listen));
    WritePortFile(config.internal_port_file, internal_port);
    log::Info() << "workers' API on port " << internal_port << (*internal_tls ? " (mutual TLS)" : "");
  }
  const std::string& listen = config.listen;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, tls::ServerCredentials(client_tls->get(), /*mutual=*/false), &port);
  builder.RegisterService(&frontend);
  AdminService admin(&cluster, std::move(admin_keys), &config.frontend.api_keys);
  builder.RegisterService(&admin);
  builder.SetMaxReceiveMessageSize(kClientMaxMessageBytes);
  if (!separate_planes) serve_internal(builder);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) return Fail(absl::StrCat("cannot listen on ", listen));
  WritePortFile(config.port_file, port);
  log::Info() << "serving " << config.frontend.model_name << " on port " << port << (*client_tls ? " (TLS)" : "");

  // gRPC health: the process ("") serves from the start (liveness); the client API's
  // service is SERVING only while some replica group is ready (readiness), as /ready.
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(kClientService, false);
  std::jthread readiness([&](std::stop_token stop) {
    bool ready = false;
    while (!stop.stop_requested()) {
      if (frontend.Ready() != ready) {
        ready = !ready;
        health->SetServingStatus(kClientService, ready);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });

  // The chat template is read at start: one the engine cannot run stops the server here,
  // naming the construct, rather than failing every chat request later.
  std::unique_ptr<tokenizer::ChatTemplate> chat;
  if (absl::StatusOr<tokenizer::ChatTemplate> loaded = tokenizer::ChatTemplate::Load(model_dir); loaded.ok()) {
    chat = std::make_unique<tokenizer::ChatTemplate>(std::move(*loaded));
  } else if (!absl::IsNotFound(loaded.status())) {
    return Fail(std::string(loaded.status().message()));
  }
  OpenAiApi openai(&frontend, &metrics, {chat.get(), config.tool_calls, config.chat_overflow});
  std::unique_ptr<HttpServer> http;
  if (!config.http.listen.empty()) {
    RaiseDescriptorLimit();
    auto started = HttpServer::Start(
        config.http, [&openai](HttpRequest request, std::shared_ptr<HttpReply> reply) {
          openai.Handle(std::move(request), std::move(reply));
        },
        [](int status, const std::string& message) { return ErrorJson(status, message); });
    if (!started.ok()) return Fail(std::string(started.status().message()));
    http = std::move(*started);
    WritePortFile(config.http_port_file, http->port());
    log::Info() << "OpenAI-compatible HTTP API on port " << http->port() << (*client_tls ? " (HTTPS)" : "");
  }

  int sig;
  sigwait(&set, &sig);
  log::Info() << "shutting down";
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (internal) internal->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}

}  // namespace
}  // namespace tessera::coordinator

int main(int argc, char** argv) { return tessera::coordinator::Main(argc, argv); }
