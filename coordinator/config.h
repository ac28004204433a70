// The coordinator's configuration: every flag of tessera-coordinator, typed, with its
// default taken from the options structs it fills (one place per default).
#pragma once

#include <optional>
#include <string>

#include "common/tls.h"
#include "coordinator/cluster.h"
#include "coordinator/frontend.h"
#include "coordinator/http_server.h"
#include "coordinator/chat_context.h"
#include "coordinator/tool_calls.h"

namespace tessera::coordinator {

struct CoordinatorConfig {
  std::string model_dir;                 // absolute
  std::string listen = "127.0.0.1:50051";  // the client API (and the workers' without internal_listen)
  std::string port_file;                 // where to write the bound port ("" none)
  // The workers' API (Coordinator, Rendezvous) on a port of its own, so that the
  // client port exposes only the client API; "" : on the client port.
  std::string internal_listen;
  std::string internal_port_file;        // where to write its bound port ("" none)
  HttpServerOptions http;                // the OpenAI-compatible API; listen "" = off
  std::string http_port_file;            // where to write its bound port ("" none)
  std::string api_key_file;             // "" : the client APIs are open
  std::string admin_key_file;           // "" : no admin keys (the admin API is open only without api keys)
  tls::Files client_tls;                 // the client API's and HTTP API's certificate ("" : plaintext)
  tls::Files internal_tls;               // mutual TLS on the internal plane ("" : plaintext)
  std::string log_format = "text";     // text or json lines
  ToolCallFormat tool_calls = ToolCallFormat::kNone;  // how chat answers write tool calls
  ContextOverflow chat_overflow = ContextOverflow::kError;  // a conversation that outgrows the context
  int log_stats_interval_s = 10;        // a stats line this often while busy (0: none)
  ClusterOptions cluster;
  FrontendOptions frontend;  // model_name defaults to the model folder's name
};

// Fills `config` from the command line and TESSERA_* variables. Returns the status to
// exit with when the process should stop (after --help, --version or a bad flag; the
// message already printed), nullopt to go on.
std::optional<int> ParseCoordinatorConfig(int argc, const char* const* argv, CoordinatorConfig* config);

// tessera-coordinator --help.
std::string CoordinatorHelp();

}  // namespace tessera::coordinator
