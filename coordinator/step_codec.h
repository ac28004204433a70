// The wire form of a StepPlan (coordinator/step_plan.h): the diff every rank of a group
// receives (worker.proto's StepRequest).
#pragma once

#include <cstdint>

#include "coordinator/step_plan.h"
#include "tessera/v1/internal/worker.pb.h"

namespace tessera::coordinator {

// Replaces `out` with `plan` as step number `step_id`.
void EncodeStep(const StepPlan& plan, uint64_t step_id, v1::internal::StepRequest* out);

}  // namespace tessera::coordinator
