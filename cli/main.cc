// tessera: the command-line entry point.
//
//   tessera logits   --model DIR --ids 1,2,3 --out FILE
//   tessera generate --model DIR --ids 1,2,3 --max-new-tokens N
//
// Both shapes are stable (other tools and checks rely on them). Bad arguments, ids
// outside the vocabulary or a bad model folder print one message on stderr and exit 2.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "models/generate.h"
#include "models/model.h"

namespace {

constexpr int kUsageError = 2;

constexpr char kUsage[] = R"(usage: tessera <command> [flags]

commands:
  logits    --model DIR --ids 1,2,3 --out FILE
            Writes the logits of every position as float32 little-endian,
            row-major [n_ids, vocab], to FILE.
  generate  --model DIR --ids 1,2,3 --max-new-tokens N
            Greedy decoding; prints the N new ids comma-separated on one line.

common flags:
  --threads N      kernel threads (default: every core this process may use)
  --block-size N   tokens per KV cache block (default 16)
  --help           this text

Exit status: 0 on success, 2 on bad arguments, ids or model folder.
)";

struct Args {
  std::string command;
  std::map<std::string, std::string> flags;
};

int Fail(const std::string& message) {
  std::cerr << "tessera: " << message << "\n";
  return kUsageError;
}

// Parses "--name value" and "--name=value" pairs after the command.
bool ParseArgs(int argc, char** argv, Args* args, std::string* error) {
  if (argc < 2) {
    *error = "missing command (try --help)";
    return false;
  }
  args->command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) {
      *error = absl::StrCat("unexpected argument '", a, "'");
      return false;
    }
    a = a.substr(2);
    const size_t eq = a.find('=');
    if (eq != std::string::npos) {
      args->flags[a.substr(0, eq)] = a.substr(eq + 1);
    } else if (a == "help") {
      args->flags["help"] = "1";
    } else if (i + 1 < argc) {
      args->flags[a] = argv[++i];
    } else {
      *error = absl::StrCat("flag --", a, " needs a value");
      return false;
    }
  }
  return true;
}

bool ParseIds(const std::string& text, std::vector<int32_t>* ids) {
  if (text.empty()) return false;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int32_t id;
    if (!absl::SimpleAtoi(part, &id)) return false;
    ids->push_back(id);
  }
  return true;
}

bool ParseInt(const Args& args, const std::string& name, int fallback, int min, int* out, std::string* error) {
  auto it = args.flags.find(name);
  if (it == args.flags.end()) {
    *out = fallback;
    return true;
  }
  if (!absl::SimpleAtoi(it->second, out) || *out < min) {
    *error = absl::StrCat("--", name, " must be an integer >= ", min, ", got '", it->second, "'");
    return false;
  }
  return true;
}

int Run(const Args& args) {
  const std::vector<std::string> allowed = args.command == "logits"
                                               ? std::vector<std::string>{"model", "ids", "out", "threads", "block-size"}
                                               : std::vector<std::string>{"model", "ids", "max-new-tokens", "threads", "block-size"};
  for (const auto& [name, value] : args.flags) {
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      return Fail(absl::StrCat("unknown flag --", name, " for '", args.command, "' (try --help)"));
    }
  }
  for (const std::string required : {"model", "ids"}) {
    if (!args.flags.count(required)) return Fail(absl::StrCat("'", args.command, "' needs --", required));
  }
  std::vector<int32_t> ids;
  if (!ParseIds(args.flags.at("ids"), &ids)) {
    return Fail(absl::StrCat("--ids must be comma-separated integers, got '", args.flags.at("ids"), "'"));
  }
  std::string error;
  int threads, block_size, max_new = 0;
  if (!ParseInt(args, "threads", 0, 0, &threads, &error) ||
      !ParseInt(args, "block-size", 16, 1, &block_size, &error)) {
    return Fail(error);
  }
  if (args.command == "generate") {
    if (!args.flags.count("max-new-tokens")) return Fail("'generate' needs --max-new-tokens");
    if (!ParseInt(args, "max-new-tokens", 0, 0, &max_new, &error)) return Fail(error);
  } else if (!args.flags.count("out")) {
    return Fail("'logits' needs --out");
  }

  tessera::models::ModelOptions options;
  options.num_threads = threads;
  absl::StatusOr<std::unique_ptr<tessera::models::Model>> model =
      tessera::models::Model::Load(args.flags.at("model"), options);
  if (!model.ok()) return Fail(std::string(model.status().message()));
  const int vocab = (*model)->spec().vocab_size;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab) {
      return Fail(absl::StrCat("token id ", id, " is outside the vocabulary [0, ", vocab, ")"));
    }
  }

  if (args.command == "logits") {
    auto logits = tessera::models::PromptLogits(**model, ids, block_size);
    if (!logits.ok()) return Fail(std::string(logits.status().message()));
    std::ofstream out(args.flags.at("out"), std::ios::binary);
    out.write(reinterpret_cast<const char*>(logits->data()),
              static_cast<std::streamsize>(logits->size() * sizeof(float)));
    if (!out) return Fail(absl::StrCat("cannot write ", args.flags.at("out")));
    return 0;
  }
  auto tokens = tessera::models::GenerateGreedy(**model, ids, max_new, block_size);
  if (!tokens.ok()) return Fail(std::string(tokens.status().message()));
  std::cout << absl::StrJoin(*tokens, ",") << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  std::string error;
  if (argc >= 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "help")) {
    std::cout << kUsage;
    return 0;
  }
  if (!ParseArgs(argc, argv, &args, &error)) return Fail(error);
  if (args.flags.count("help")) {
    std::cout << kUsage;
    return 0;
  }
  if (args.command != "logits" && args.command != "generate") {
    return Fail(absl::StrCat("unknown command '", args.command, "' (try --help)"));
  }
  return Run(args);
}
