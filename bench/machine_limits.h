// The machine's limits, measured in the same run as what is set against them: memory
// read bandwidth, the fp32 FMA peak and the bf16 dot peak, each at the ISA level the
// kernels run at (kernels/cpu_isa.h). Compiled with per-function target attributes, so
// the benchmark builds on every x86-64 CPU and runs only what the selected level has.
#pragma once

#include "common/thread_pool.h"

namespace tessera::bench {

// STREAM-like read: every thread sums its slice of a 1 GiB buffer through four
// interleaved streams, with the selected level's widest loads. Best of 60 passes, GB/s:
// on these VMs freshly touched memory reads slowly for the first ~20 passes, so a few
// passes would understate the limit the (warm) weights are read at.
double MemoryReadBandwidth(ThreadPool& pool);

// Independent FMA chains per thread, registers only, at the selected level's width
// (mul + add on the portable level). GFLOP/s, 2 FLOP per lane per FMA.
double Fp32FmaPeak(ThreadPool& pool);

// The vdpbf16ps peak (GFLOP/s) where the selected level has it; 0 elsewhere.
double Bf16DotPeak(ThreadPool& pool);

}  // namespace tessera::bench
