#include "tests/golden_fixture.h"

#include <cmath>
#include <fstream>
#include <stdexcept>

#include "nlohmann/json.hpp"

namespace tessera::testing {
namespace {

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  return nlohmann::json::parse(in);
}

std::vector<float> ReadBin(const std::string& dir, const nlohmann::json& ref) {
  const std::string path = dir + "/" + ref["file"].get<std::string>();
  size_t n = 1;
  for (const auto& d : ref["shape"]) n *= d.get<size_t>();
  std::vector<float> v(n);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(float)));
  if (!in) throw std::runtime_error("short read of " + path);
  return v;
}

}  // namespace

std::string TestDataDir() { return TESSERA_TEST_DATA_DIR; }
std::string GoldenModelDir(const std::string& model) { return TestDataDir() + "/golden/models/" + model; }

std::vector<std::string> GoldenModels() {
  std::vector<std::string> names;
  const nlohmann::json manifest = ReadJson(TestDataDir() + "/golden/models/manifest.json");
  for (const auto& [name, entry] : manifest["models"].items()) names.push_back(name);
  return names;
}

Golden LoadGolden(const std::string& model) {
  const std::string dir = GoldenModelDir(model);
  const nlohmann::json g = ReadJson(dir + "/golden.json");
  Golden golden;
  golden.model = model;
  golden.bf16 = g["weights"]["dtype"] == "bfloat16";
  golden.vocab = ReadJson(dir + "/config.json")["vocab_size"].get<int>();
  for (const auto& c : g["cases"]) {
    GoldenCase gc;
    gc.name = c["name"].get<std::string>();
    gc.input_ids = c["input_ids"].get<std::vector<int32_t>>();
    gc.logits = ReadBin(dir, c["logits"]);
    gc.new_tokens = c["greedy"]["new_tokens"].get<std::vector<int32_t>>();
    gc.step_logits = ReadBin(dir, c["greedy"]["step_logits"]);
    golden.cases.push_back(std::move(gc));
  }
  if (g.contains("batch") && !g["batch"].is_null()) {
    const auto& b = g["batch"];
    golden.has_batch = true;
    const auto ids = b["input_ids"].get<std::vector<std::vector<int32_t>>>();
    const auto mask = b["attention_mask"].get<std::vector<std::vector<int32_t>>>();
    for (size_t r = 0; r < ids.size(); ++r) {
      std::vector<int32_t> row;
      for (size_t t = 0; t < ids[r].size(); ++t) {
        if (mask[r][t]) row.push_back(ids[r][t]);
      }
      golden.batch.rows.push_back(std::move(row));
    }
    golden.batch.new_tokens = b["new_tokens"].get<std::vector<std::vector<int32_t>>>();
    golden.batch.step_logits = ReadBin(dir, b["step_logits"]);
  }
  return golden;
}

float MaxAbsDiff(const float* a, const float* b, size_t n) {
  float m = 0.0f;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

}  // namespace tessera::testing
