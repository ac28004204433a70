// Termination signals for the server binaries: blocked in every thread and taken
// synchronously with sigwait, so shutdown and drain run as ordinary code.
#pragma once

#include <signal.h>

namespace tessera {

// Blocks SIGTERM and SIGINT in the calling thread (and the threads it starts later)
// and returns the set to sigwait on. Call first thing in main.
sigset_t BlockTerminationSignals();

}  // namespace tessera
