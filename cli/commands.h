// The tessera subcommands that run or talk to a server (the model and tokenizer
// commands live in main.cc).
#pragma once

#include "cli/args.h"

namespace tessera::cli {

// tessera serve: a coordinator and N workers as child processes, until Ctrl-C.
int RunServe(const Args& args, const char* argv0);
// tessera client: one streamed generation against a running server.
int RunClient(const Args& args);
// tessera info: GetServerInfo of a running server, as JSON.
int RunInfo(const Args& args);

}  // namespace tessera::cli
