// tessera: the command-line entry point.
//
//   tessera logits     --model DIR --ids 1,2,3 --out FILE
//   tessera generate   --model DIR (--ids 1,2,3 | --prompt TEXT) --max-new-tokens N
//   tessera tokenize   --model DIR [--add-special-tokens] --text TEXT
//   tessera detokenize --model DIR --ids 1,2,3
//
// These shapes are stable (other tools and checks rely on them). Bad arguments, ids
// outside the vocabulary or a bad model folder print one message on stderr and exit 2.
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "models/generate.h"
#include "models/model.h"
#include "tokenizer/incremental_decoder.h"
#include "tokenizer/tokenizer.h"

namespace tessera::cli {
namespace {

constexpr char kUsage[] = R"(usage: tessera <command> [flags]

commands:
  logits      --model DIR --ids 1,2,3 --out FILE
              Writes the logits of every position as float32 little-endian,
              row-major [n_ids, vocab], to FILE.
  generate    --model DIR --ids 1,2,3 --max-new-tokens N
              Greedy decoding; prints the N new ids comma-separated on one line.
  generate    --model DIR --prompt TEXT --max-new-tokens N
              Tokenizes TEXT (with the tokenizer's special tokens, e.g. BOS),
              decodes greedily and streams the new text to stdout; stops at the
              model's EOS token.
  tokenize    --model DIR [--add-special-tokens] --text TEXT
              Prints the ids of TEXT comma-separated on one line.
  detokenize  --model DIR --ids 1,2,3
              Prints the text of the ids (special tokens included).

  serve       --model DIR [--workers N] [--listen HOST:PORT] [--threads-per-worker N]
              Runs a coordinator and N workers (child processes) until Ctrl-C.
  client      [--address HOST:PORT] --prompt TEXT [--max-tokens N]
              [--temperature T] [--seed S] [--wait-ready SECONDS]
              One streamed generation against a running server.

DIR is a HuggingFace model folder (config.json, *.safetensors, tokenizer.json);
tokenize and detokenize need only tokenizer.json.

common flags:
  --threads N      kernel threads (default: every core this process may use)
  --block-size N   tokens per KV cache block (default 16)
  --help           this text

Exit status: 0 on success, 2 on bad arguments, ids, text or model folder.
)";

int Fail(const std::string& message) {
  std::cerr << "tessera: " << message << "\n";
  return kUsageError;
}

int Fail(const absl::Status& status) { return Fail(std::string(status.message())); }

bool Require(const Args& args, const std::vector<std::string>& names, std::string* error) {
  for (const std::string& n : names) {
    if (!args.Has(n)) {
      *error = absl::StrCat("'", args.command, "' needs --", n);
      return false;
    }
  }
  return true;
}

bool IdsFlag(const Args& args, std::vector<int32_t>* ids, std::string* error) {
  if (!ParseIds(args.flags.at("ids"), ids)) {
    *error = absl::StrCat("--ids must be comma-separated integers, got '", args.flags.at("ids"), "'");
    return false;
  }
  return true;
}

absl::StatusOr<std::unique_ptr<models::Model>> LoadModel(const Args& args, int threads) {
  models::ModelOptions options;
  options.num_threads = threads;
  return models::Model::Load(args.flags.at("model"), options);
}

int RunModelCommand(const Args& args) {
  const bool logits_command = args.command == "logits";
  std::string error;
  if (!CheckFlags(args, logits_command ? std::set<std::string>{"model", "ids", "out", "threads", "block-size"}
                                       : std::set<std::string>{"model", "ids", "prompt", "max-new-tokens", "threads",
                                                               "block-size"},
                  &error)) {
    return Fail(error);
  }
  int threads, block_size, max_new = 0;
  if (!Require(args, {"model"}, &error) || !IntFlag(args, "threads", 0, 0, &threads, &error) ||
      !IntFlag(args, "block-size", 16, 1, &block_size, &error)) {
    return Fail(error);
  }
  const bool from_text = !logits_command && args.Has("prompt");
  if (from_text == args.Has("ids")) {
    return Fail(logits_command ? "'logits' needs --ids" : "'generate' needs exactly one of --ids and --prompt");
  }
  std::vector<int32_t> ids;
  if (!from_text && !IdsFlag(args, &ids, &error)) return Fail(error);
  if (logits_command) {
    if (!Require(args, {"out"}, &error)) return Fail(error);
  } else {
    if (!Require(args, {"max-new-tokens"}, &error) || !IntFlag(args, "max-new-tokens", 0, 0, &max_new, &error)) {
      return Fail(error);
    }
  }

  std::unique_ptr<tokenizer::Tokenizer> tok;
  if (from_text) {
    auto loaded = tokenizer::Tokenizer::Load(args.flags.at("model"));
    if (!loaded.ok()) return Fail(loaded.status());
    tok = std::move(*loaded);
    auto encoded = tok->Encode(args.flags.at("prompt"), /*add_special_tokens=*/true);
    if (!encoded.ok()) return Fail(encoded.status());
    ids = std::move(*encoded);
    if (ids.empty()) return Fail("--prompt encodes to no tokens");
  }
  auto model = LoadModel(args, threads);
  if (!model.ok()) return Fail(model.status());
  const int vocab = (*model)->spec().vocab_size;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab) return Fail(absl::StrCat("token id ", id, " is outside the vocabulary [0, ", vocab, ")"));
  }

  if (logits_command) {
    auto logits = models::PromptLogits(**model, ids, block_size);
    if (!logits.ok()) return Fail(logits.status());
    std::ofstream out(args.flags.at("out"), std::ios::binary);
    out.write(reinterpret_cast<const char*>(logits->data()), static_cast<std::streamsize>(logits->size() * sizeof(float)));
    if (!out) return Fail(absl::StrCat("cannot write ", args.flags.at("out")));
    return 0;
  }
  models::GreedyOptions options;
  options.max_new_tokens = max_new;
  options.block_size = block_size;
  if (!from_text) {
    auto tokens = models::GenerateGreedy(**model, ids, options);
    if (!tokens.ok()) return Fail(tokens.status());
    std::cout << absl::StrJoin(*tokens, ",") << "\n";
    return 0;
  }
  // Text mode: stream text as it completes; stop at EOS.
  tokenizer::IncrementalDecoder stream(*tok, /*skip_special_tokens=*/true);
  const std::vector<int>& eos = (*model)->spec().eos_token_ids;
  absl::Status stream_status;
  options.on_token = [&](int32_t id) {
    if (std::find(eos.begin(), eos.end(), id) != eos.end()) return false;
    auto piece = stream.Add(id);
    if (!piece.ok()) {
      stream_status = piece.status();
      return false;
    }
    std::cout << *piece << std::flush;
    return true;
  };
  auto tokens = models::GenerateGreedy(**model, ids, options);
  if (!tokens.ok()) return Fail(tokens.status());
  if (!stream_status.ok()) return Fail(stream_status);
  auto rest = stream.Finish();
  std::cout << (rest.ok() ? *rest : "") << "\n";
  return 0;
}

int RunTokenizerCommand(const Args& args) {
  const bool encode = args.command == "tokenize";
  std::string error;
  if (!CheckFlags(args, encode ? std::set<std::string>{"model", "text", "add-special-tokens"}
                               : std::set<std::string>{"model", "ids"},
                  &error) ||
      !Require(args, {"model", encode ? "text" : "ids"}, &error)) {
    return Fail(error);
  }
  auto tok = tokenizer::Tokenizer::Load(args.flags.at("model"));
  if (!tok.ok()) return Fail(tok.status());
  if (encode) {
    auto ids = (*tok)->Encode(args.flags.at("text"), args.Has("add-special-tokens"));
    if (!ids.ok()) return Fail(ids.status());
    std::cout << absl::StrJoin(*ids, ",") << "\n";
    return 0;
  }
  std::vector<int32_t> ids;
  if (!IdsFlag(args, &ids, &error)) return Fail(error);
  auto text = (*tok)->Decode(ids, /*skip_special_tokens=*/false);
  if (!text.ok()) return Fail(text.status());
  std::cout << *text << "\n";
  return 0;
}

int Main(int argc, char** argv) {
  if (argc >= 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "help")) {
    std::cout << kUsage;
    return 0;
  }
  Args args;
  std::string error;
  if (!ParseArgs(argc, argv, {"help", "add-special-tokens"}, &args, &error)) return Fail(error);
  if (args.Has("help")) {
    std::cout << kUsage;
    return 0;
  }
  if (args.command == "logits" || args.command == "generate") return RunModelCommand(args);
  if (args.command == "tokenize" || args.command == "detokenize") return RunTokenizerCommand(args);
  if (args.command == "serve") return RunServe(args, argv[0]);
  if (args.command == "client") return RunClient(args);
  return Fail(absl::StrCat("unknown command '", args.command, "' (try --help)"));
}

}  // namespace
}  // namespace tessera::cli

int main(int argc, char** argv) { return tessera::cli::Main(argc, argv); }
