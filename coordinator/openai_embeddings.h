// One POST /v1/embeddings from its requests' start to the answer.
//
// Each input runs as one frontend request (Frontend::StartEmbeddings: the same
// validation, limits and router as gRPC's Embed), scheduled with every other request,
// so an input batch is computed in shared steps. Their last events reach the
// connection's strand through Request listeners, so no thread waits on a request; the
// answer is one JSON body once every input has its embedding. A client that goes away
// aborts them all; the replica groups then free their KV blocks.
#pragma once

#include <memory>
#include <string>

#include "coordinator/frontend.h"
#include "coordinator/http_server.h"
#include "coordinator/openai_request.h"

namespace tessera::coordinator {

// Starts the call and answers on `reply` (an error, when an input cannot start or
// fails). `tenant` is the caller's (Frontend::Authenticate).
void RunEmbeddings(Frontend* frontend, EmbeddingsRequest request, std::string tenant, std::shared_ptr<HttpReply> reply);

}  // namespace tessera::coordinator
