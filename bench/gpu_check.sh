#!/usr/bin/env bash
# One prepared run on a GPU machine (the `device` tool's H200, or any CUDA 13 box):
# builds the CUDA targets if this tree has no build of them, runs the GPU tests and
# the GPU benchmarks, and writes everything to $OUT/gpu-check.txt (default: build/).
# Well under 8 minutes: each step has its own timeout.
#
#   bench/gpu_check.sh
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$root/build}"
mkdir -p "$out"
exec > >(tee "$out/gpu-check.txt") 2>&1
cd "$root"
echo "== $(date -u) on $(hostname)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "nvidia-smi: not available"

if [ ! -x build/bin/cuda_kernels_test ] || [ ! -x build/bin/cuda_model_test ] || [ ! -x build/bin/gpu_bench ]; then
  echo "== building the CUDA targets"
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null &&
    timeout 300 ninja -C build -j"$(nproc)" cuda_kernels_test cuda_model_test nccl_test gpu_bench tessera-coordinator \
      tessera-worker || echo "build failed"
fi

status=0
echo "== GPU kernels against the CPU oracles"
timeout 180 build/bin/cuda_kernels_test || status=1
echo "== the golden models and a served worker on the GPU"
timeout 180 build/bin/cuda_model_test || status=1
echo "== NCCL communicator"
timeout 60 build/bin/nccl_test || status=1
echo "== GPU benchmarks"
timeout 240 build/bin/gpu_bench || status=1
echo "== done (status $status)"
exit $status
