// tokenizer.json loading (tokenizer::Tokenizer::FromJson) on arbitrary bytes: a
// tokenizer or a status, never a crash; a tokenizer that loads encodes and decodes.
#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto tokenizer = tessera::tokenizer::Tokenizer::FromJson(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!tokenizer.ok()) return 0;
  auto ids = (*tokenizer)->Encode("Hello, wörld! 123 <s>  \n\t", /*add_special_tokens=*/true);
  if (ids.ok()) (void)(*tokenizer)->Decode(*ids, /*skip_special_tokens=*/false);
  return 0;
}
