// Encode and streaming decode on arbitrary bytes, with real tokenizers: the bundled
// model's (SentencePiece-style BPE with byte fallback) and GPT-2's (byte-level BPE).
// The first byte picks the tokenizer and the options; the rest is text to encode and,
// read as 16-bit ids, a stream to decode. Checks the streaming decoder's contract
// (tokenizer/incremental_decoder.h): every piece is valid UTF-8 and all pieces
// together equal Decode of all the ids.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/gzip_file.h"
#include "fuzz/fuzz_input.h"
#include "tokenizer/incremental_decoder.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/internal/utf8.h"

namespace {

using tessera::tokenizer::Tokenizer;

std::vector<std::unique_ptr<Tokenizer>> LoadAll() {
  const std::string root = TESSERA_SOURCE_DIR;
  std::vector<absl::StatusOr<std::unique_ptr<Tokenizer>>> loaded;
  loaded.push_back(Tokenizer::Load(root + "/assets/models/tessera-tiny-llama"));
  const auto gpt2 = tessera::ReadGzipFile(root + "/tests/data/tokenizers/gpt2/tokenizer.json.gz");
  if (!gpt2.ok()) std::abort();
  loaded.push_back(Tokenizer::FromJson(*gpt2));
  std::vector<std::unique_ptr<Tokenizer>> all;
  for (auto& t : loaded) {
    if (!t.ok()) std::abort();  // the fixtures are part of the source tree
    all.push_back(std::move(*t));
  }
  return all;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<std::unique_ptr<Tokenizer>> tokenizers = LoadAll();
  tessera::fuzz::FuzzInput in(data, size);
  const uint8_t options = in.Byte();
  const Tokenizer& tokenizer = *tokenizers[options % tokenizers.size()];
  const bool special = options & 2, skip = options & 4;
  const std::string_view bytes = in.Rest();

  (void)tokenizer.Encode(bytes, special);  // any bytes: ids, or INVALID_ARGUMENT for invalid UTF-8

  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < bytes.size(); i += 2) {
    ids.push_back(static_cast<uint8_t>(bytes[i]) | static_cast<uint8_t>(bytes[i + 1]) << 8);
  }
  tessera::tokenizer::IncrementalDecoder decoder(tokenizer, skip);
  std::string streamed;
  for (int32_t id : ids) {
    auto piece = decoder.Add(id);
    if (!piece.ok()) return 0;  // an id outside the vocabulary ends the stream
    if (!tessera::tokenizer::internal::IsValidUtf8(*piece)) __builtin_trap();
    streamed += *piece;
  }
  auto rest = decoder.Finish();
  if (!rest.ok()) return 0;
  streamed += *rest;
  auto whole = tokenizer.Decode(ids, skip);
  if (!whole.ok() || *whole != streamed) __builtin_trap();
  return 0;
}
