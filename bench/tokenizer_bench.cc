// Tokenizer encode throughput, one thread, on ~450 kB of English prose and on ~1 MB of
// mixed text: English prose
// (Debian's license texts), C++ code (Tessera's own sources) and Chinese (the fixture
// sentences, repeated). Byte-level (GPT-2, LLaMA-3, Qwen) and SentencePiece-style
// (Mistral) vocabularies from tests/data/tokenizers.
//
//   build/bin/tokenizer_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/gzip_file.h"
#include "tokenizer/tokenizer.h"

namespace tessera::bench {
namespace {

namespace fs = std::filesystem;

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Appends files' text until `budget` bytes are reached.
void AppendUpTo(const std::vector<fs::path>& files, size_t budget, std::string* out) {
  const size_t target = out->size() + budget;
  while (out->size() < target) {
    for (const auto& f : files) {
      std::string text = ReadFile(f);
      out->append(text, 0, std::min(text.size(), target - out->size()));
      if (out->size() >= target) return;
    }
    if (files.empty()) return;
  }
}

std::vector<fs::path> EnglishFiles() {
  std::vector<fs::path> english;
  for (const char* name : {"GPL-3", "LGPL-3", "Apache-2.0", "GPL-2", "MPL-2.0", "Artistic", "GFDL-1.3"}) {
    const fs::path p = fs::path("/usr/share/common-licenses") / name;
    if (fs::exists(p)) english.push_back(p);
  }
  return english;
}

// ~450 kB of English prose only.
const std::string& EnglishCorpus() {
  static const std::string* corpus = [] {
    auto* text = new std::string;
    AppendUpTo(EnglishFiles(), 450'000, text);
    return text;
  }();
  return *corpus;
}

const std::string& MixedCorpus() {
  static const std::string* corpus = [] {
    auto* text = new std::string;
    std::vector<fs::path> english = EnglishFiles(), code;
    for (const char* dir : {"models", "kernels", "tokenizer", "tests", "common"}) {
      for (const auto& e : fs::directory_iterator(fs::path(TESSERA_SOURCE_DIR) / dir)) {
        if (e.path().extension() == ".cc" || e.path().extension() == ".h") code.push_back(e.path());
      }
    }
    std::sort(code.begin(), code.end());
    AppendUpTo(english, 450'000, text);
    AppendUpTo(code, 400'000, text);
    const std::string chinese =
        "大模型架构与系统优化：主流设计、归一化、激活与推理加速。Mixtral 采用 8 专家，每次激活 top-2 专家。"
        "RMSNorm 摒弃均值项，仅使用均方根归一化。日本語のテキストも少し。Mixed 中文English混合text123数字\n";
    while (text->size() < 1'000'000) text->append(chinese);
    return text;
  }();
  return *corpus;
}

void BM_Encode(benchmark::State& state, const std::string& name, bool english_only) {
  auto json = ReadGzipFile(std::string(TESSERA_SOURCE_DIR) + "/tests/data/tokenizers/" + name + "/tokenizer.json.gz");
  if (!json.ok()) {
    state.SkipWithError(std::string(json.status().message()).c_str());
    return;
  }
  auto tok = tokenizer::Tokenizer::FromJson(*json);
  if (!tok.ok()) {
    state.SkipWithError(std::string(tok.status().message()).c_str());
    return;
  }
  const std::string& text = english_only ? EnglishCorpus() : MixedCorpus();
  size_t tokens = 0;
  for (auto _ : state) {
    auto ids = (*tok)->Encode(text, false);
    tokens = ids->size();
    benchmark::DoNotOptimize(ids->data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(tokens);
  state.counters["input_MB"] = text.size() / 1e6;
}

BENCHMARK_CAPTURE(BM_Encode, gpt2_english, std::string("gpt2"), true)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Encode, mistral_english, std::string("mistral"), true)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Encode, gpt2_mixed, std::string("gpt2"), false)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Encode, llama3_mixed, std::string("llama3"), false)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Encode, qwen_mixed, std::string("qwen"), false)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Encode, mistral_mixed, std::string("mistral"), false)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace tessera::bench

BENCHMARK_MAIN();
