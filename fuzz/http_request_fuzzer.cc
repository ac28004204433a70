// The HTTP API's request bodies (coordinator/openai_request.h) on arbitrary bytes:
// every parser gives a request or a status naming what is wrong, never a crash.
#include <cstdint>
#include <string>

#include "coordinator/openai_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  (void)tessera::coordinator::ParseCompletionRequest(body);
  (void)tessera::coordinator::ParseChatRequest(body);
  (void)tessera::coordinator::ParseTokenizeRequest(body);
  (void)tessera::coordinator::ParseDetokenizeRequest(body);
  return 0;
}
