#include "cli/wait_ready.h"

#include <grpcpp/grpcpp.h>

#include <thread>

namespace tessera::cli {

bool WaitForReadyGroup(const ServerConnection& server, std::chrono::seconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (true) {
    grpc::ClientContext ctx;
    server.Prepare(&ctx, std::chrono::seconds(2));
    v1::ServerInfo info;
    if (server.stub().GetServerInfo(&ctx, v1::GetServerInfoRequest(), &info).ok()) {
      for (const auto& g : info.groups()) {
        if (g.state() == "READY") return true;
      }
    }
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace tessera::cli
