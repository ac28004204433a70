// Signals: termination signals for the server binaries, blocked in every thread and
// taken synchronously with sigwait, so shutdown and drain run as ordinary code; and
// SIGPIPE, ignored where libraries write to sockets.
#pragma once

#include <signal.h>

namespace tessera {

// Blocks SIGTERM and SIGINT in the calling thread (and the threads it starts later)
// and returns the set to sigwait on. Call first thing in main.
sigset_t BlockTerminationSignals();

// Makes a write to a socket whose peer has gone fail with EPIPE instead of killing the
// process (SIGPIPE), for libraries that write with write(2)/writev and cannot pass
// MSG_NOSIGNAL: OpenSSL, Gloo. Process-wide; idempotent.
void IgnoreBrokenPipes();

}  // namespace tessera
