// Waiting for a server that is still starting: clients and load generators that run
// next to a fresh server (scripts/run.sh, a Kubernetes Job) use this before sending.
#pragma once

#include <chrono>

#include "cli/server_connection.h"

namespace tessera::cli {

// Polls GetServerInfo until some replica group is READY or `timeout` passes; whether
// one is.
bool WaitForReadyGroup(const ServerConnection& server, std::chrono::seconds timeout);

}  // namespace tessera::cli
