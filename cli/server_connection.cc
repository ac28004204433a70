#include "cli/server_connection.h"

#include <cstdlib>

#include "common/tls.h"

namespace tessera::cli {

const std::set<std::string>& ServerConnection::Flags() {
  static const std::set<std::string> flags = {"address", "tls-ca"};
  return flags;
}

absl::StatusOr<ServerConnection> ServerConnection::FromArgs(const Args& args) {
  ServerConnection c;
  c.address_ = args.Has("address") ? args.flags.at("address") : "127.0.0.1:50051";
  tls::Files files;
  if (args.Has("tls-ca")) files.ca = args.flags.at("tls-ca");
  absl::StatusOr<std::shared_ptr<const tls::Material>> material = tls::Load(files, tls::Role::kClient, "client");
  if (!material.ok()) return material.status();
  c.stub_ = v1::TesseraService::NewStub(tls::Dial(c.address_, material->get()));
  if (const char* key = std::getenv("TESSERA_API_KEY"); key != nullptr) c.api_key_ = key;
  return c;
}

void ServerConnection::Prepare(grpc::ClientContext* ctx, std::chrono::milliseconds timeout) const {
  if (!api_key_.empty()) ctx->AddMetadata("authorization", "Bearer " + api_key_);
  if (timeout.count() > 0) ctx->set_deadline(std::chrono::system_clock::now() + timeout);
}

}  // namespace tessera::cli
