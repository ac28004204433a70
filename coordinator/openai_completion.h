// One POST /v1/completions from its requests' start to the answer's last byte.
//
// Each prompt of the call runs as `n` frontend requests (choice index prompt * n + j;
// with a seed, choice j samples with seed + j); the first starts at once, the others
// once it has its first token, so they find the prompt's full KV blocks in the prefix
// cache and share them. Their events reach the connection's
// strand through Request listeners, so no thread waits on a request: the answer is one
// JSON body when every choice has finished, or Server-Sent Events as tokens come
// (`data: {chunk}`, an optional usage chunk, `data: [DONE]`). A client that goes away
// aborts every choice; the replica groups then free their KV blocks.
#pragma once

#include <cstdint>
#include <memory>

#include "coordinator/frontend.h"
#include "coordinator/http_server.h"
#include "coordinator/openai_request.h"

namespace tessera::coordinator {

// Starts the call and answers on `reply` (an error, when a choice cannot start).
// `tenant` is the caller's (Frontend::Authenticate).
void RunCompletion(Frontend* frontend, CompletionRequest request, std::string tenant, std::shared_ptr<HttpReply> reply,
                   int64_t created);

}  // namespace tessera::coordinator
