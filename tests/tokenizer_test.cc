// The tokenizer against the reference ids of five real vocabularies
// (tests/data/tokenizers, see its README), streaming detokenization as a property
// over the same cases, and clear errors for what is unsupported.

#include <fstream>
#include <iterator>
#include <random>

#include <gtest/gtest.h>

#include "common/gzip_file.h"
#include "nlohmann/json.hpp"
#include "tests/golden_fixture.h"
#include "tokenizer/incremental_decoder.h"
#include "tokenizer/internal/utf8.h"
#include "tokenizer/tokenizer.h"

namespace tessera::tokenizer {
namespace {

std::unique_ptr<Tokenizer> LoadFixture(const std::string& name) {
  auto json = ReadGzipFile(testing::TestDataDir() + "/tokenizers/" + name + "/tokenizer.json.gz");
  EXPECT_TRUE(json.ok()) << json.status();
  if (!json.ok()) return nullptr;
  auto t = Tokenizer::FromJson(*json);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

struct Case {
  bool add_special_tokens;
  std::string text;
  std::vector<int32_t> ids;
  std::string decoded;
};

std::vector<Case> CasesFor(const std::string& name) {
  std::ifstream in(testing::TestDataDir() + "/tokenizers/cases.jsonl");
  std::vector<Case> cases;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["tokenizer"] != name) continue;
    cases.push_back({j["add_special_tokens"].get<bool>(), j["text"].get<std::string>(),
                     j["ids"].get<std::vector<int32_t>>(), j["decoded"].get<std::string>()});
  }
  return cases;
}

class FixtureTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    tokenizer_ = LoadFixture(GetParam());
    ASSERT_NE(tokenizer_, nullptr);
    cases_ = CasesFor(GetParam());
    ASSERT_EQ(cases_.size(), 60u);
  }
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<Case> cases_;
};

TEST_P(FixtureTest, EncodeMatchesReference) {
  for (const Case& c : cases_) {
    auto ids = tokenizer_->Encode(c.text, c.add_special_tokens);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, c.ids) << "text: " << c.text << " add_special_tokens=" << c.add_special_tokens;
  }
}

TEST_P(FixtureTest, DecodeMatchesReference) {
  for (const Case& c : cases_) {
    auto text = tokenizer_->Decode(c.ids, /*skip_special_tokens=*/true);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, c.decoded) << "ids of: " << c.text;
  }
}

// Fed one id at a time, the streaming decoder emits exactly Decode(all ids), and
// never emits half a character.
TEST_P(FixtureTest, StreamingConcatenationEqualsDecode) {
  for (bool skip : {true, false}) {
    for (const Case& c : cases_) {
      IncrementalDecoder stream(*tokenizer_, skip);
      std::string streamed;
      for (int32_t id : c.ids) {
        auto piece = stream.Add(id);
        ASSERT_TRUE(piece.ok()) << piece.status();
        EXPECT_EQ(piece->find("\xef\xbf\xbd"), std::string::npos) << "emitted a partial character: " << c.text;
        streamed += *piece;
      }
      auto rest = stream.Finish();
      ASSERT_TRUE(rest.ok());
      streamed += *rest;
      EXPECT_EQ(streamed, *tokenizer_->Decode(c.ids, skip)) << c.text;
    }
  }
}

TEST_P(FixtureTest, RejectsInvalidUtf8AndUnknownIds) {
  EXPECT_EQ(tokenizer_->Encode("abc\xff", false).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tokenizer_->Encode("\xe4\xb8", false).status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<int32_t> bad = {tokenizer_->vocab_size()};
  EXPECT_EQ(tokenizer_->Decode(bad, false).status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<int32_t> negative = {-1};
  EXPECT_EQ(tokenizer_->Decode(negative, false).status().code(), absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Vocabularies, FixtureTest,
                         ::testing::Values("gpt2", "mistral", "llama3", "qwen", "cl100k"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(TokenizerTest, SpecialTokensInTextAreMatchedAndSkippable) {
  auto t = LoadFixture("qwen");
  const std::string text = "<|im_start|>user\nhi<|im_end|>";
  auto ids = t->Encode(text, false);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->front(), *t->TokenToId("<|im_start|>"));
  EXPECT_EQ(ids->back(), *t->TokenToId("<|im_end|>"));
  EXPECT_TRUE(t->IsSpecial(ids->front()));
  EXPECT_EQ(*t->Decode(*ids, false), text);
  EXPECT_EQ(*t->Decode(*ids, true), "user\nhi");
}

TEST(TokenizerTest, MistralAddsBosOnlyWithSpecialTokens) {
  auto t = LoadFixture("mistral");
  EXPECT_EQ(t->Encode("", true)->size(), 1u);
  EXPECT_TRUE(t->Encode("", false)->empty());
  EXPECT_EQ(t->Encode("hi", true)->front(), 1);
}

TEST(TokenizerTest, BundledModelTokenizerRoundTrips) {
  auto t = Tokenizer::Load(testing::TestDataDir() + "/../../assets/models/tessera-tiny-llama");
  ASSERT_TRUE(t.ok()) << t.status();
  const std::string text = "In the beginning God created the heaven and the earth.";
  auto ids = (*t)->Encode(text, true);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->front(), 2046);  // <|bos|>
  EXPECT_EQ(*(*t)->Decode(*ids, true), text);
}

// A small byte-level tokenizer.json for the behaviours the fixtures do not reach.
std::string TinyTokenizerJson(const std::string& added_tokens, const std::string& extra = "") {
  return R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ċ": 4},
             "merges": ["a b"]},
             "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
             "decoder": {"type": "ByteLevel"},
             "added_tokens": )" +
         added_tokens + extra + "}";
}

TEST(TokenizerTest, AddedTokenStripFlags) {
  auto t = Tokenizer::FromJson(TinyTokenizerJson(
      R"([{"id": 5, "content": "<x>", "lstrip": true, "rstrip": true, "special": true}])"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*(*t)->Encode("ab <x> ab", false), (std::vector<int32_t>{2, 5, 2}));
  auto plain = Tokenizer::FromJson(TinyTokenizerJson(R"([{"id": 5, "content": "<x>", "special": true}])"));
  EXPECT_EQ(*(*plain)->Encode("ab <x> ab", false), (std::vector<int32_t>{2, 3, 5, 3, 2}));
}

TEST(TokenizerTest, UnsupportedPartsAreNamed) {
  auto expect_error = [](const std::string& json, const std::string& message) {
    auto t = Tokenizer::FromJson(json);
    ASSERT_FALSE(t.ok()) << json;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(t.status().message().find(message), std::string::npos) << t.status();
  };
  expect_error("{not json", "not a JSON object");
  expect_error(R"({"model": {"type": "WordPiece", "vocab": {}}})", "unsupported model type 'WordPiece'");
  expect_error(TinyTokenizerJson("[]", R"(, "normalizer": {"type": "BertNormalizer"})"),
               "unsupported normalizer type 'BertNormalizer'");
  expect_error(TinyTokenizerJson("[]", R"(, "post_processor": {"type": "RobertaProcessing"})"),
               "unsupported post_processor type 'RobertaProcessing'");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a z"]}})", "missing from the vocab");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                   "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}}})",
               "bad regex");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}})", "bad id");
  expect_error(TinyTokenizerJson(R"([{"id": "x", "content": "<x>"}])"), "added token");
}

// Reproducers from fuzzing (tests/data/repro/README.md).
TEST(TokenizerTest, FuzzedTokenizersLoadOrFailCleanly) {
  const std::string repro = testing::TestDataDir() + "/repro/";
  auto read = [&](const std::string& name) {
    std::ifstream in(repro + name);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  // "▁" at byte 1 of a token made an index wrap: now it is an ordinary vocabulary.
  auto marker = Tokenizer::FromJson(read("tokenizer_json_abort.json"));
  ASSERT_TRUE(marker.ok()) << marker.status();
  EXPECT_TRUE((*marker)->Encode("<\u2581", false).ok());
  // Floats where integers belong are named, not cast.
  for (const auto& [file, what] : {std::pair{"tokenizer_strip_float.json", "Strip"},
                                   std::pair{"tokenizer_template_float_id.json", "TemplateProcessing"}}) {
    auto t = Tokenizer::FromJson(read(file));
    ASSERT_FALSE(t.ok()) << file;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(t.status().message().find(what), std::string::npos) << t.status();
  }
  auto huge_added = Tokenizer::FromJson(TinyTokenizerJson(R"([{"id": 1e10, "content": "<x>"}])"));
  EXPECT_EQ(huge_added.status().code(), absl::StatusCode::kInvalidArgument);
}

// The ids of [26, 172] (<0x17>, <0xA9>) in the Mistral vocabulary decode to "��": the
// stream must not have sent the 0x17 byte first.
TEST(TokenizerTest, StreamedByteFallbackRunsEqualDecode) {
  auto mistral = LoadFixture("mistral");
  ASSERT_NE(mistral, nullptr);
  IncrementalDecoder stream(*mistral, false);
  std::string streamed = *stream.Add(26);
  EXPECT_EQ(streamed, "") << "the byte run may still change";
  streamed += *stream.Add(172);
  streamed += *stream.Finish();
  EXPECT_EQ(streamed, "\xef\xbf\xbd\xef\xbf\xbd");
  const std::vector<int32_t> ids = {26, 172};
  EXPECT_EQ(streamed, *mistral->Decode(ids, false));
}

// Property: random id sequences (heavy in byte tokens and multi-byte pieces) streamed
// one id at a time emit only valid UTF-8, and the pieces concatenate to Decode.
TEST_P(FixtureTest, RandomStreamsAreValidUtf8AndEqualDecode) {
  std::vector<int32_t> byte_tokens, multibyte;
  for (int32_t id = 0; id < tokenizer_->vocab_size(); ++id) {
    if (tokenizer_->IsByteToken(id)) byte_tokens.push_back(id);
    const std::vector<int32_t> one = {id};
    auto text = tokenizer_->Decode(one, false);
    if (text.ok() && text->size() >= 2 && static_cast<unsigned char>((*text)[text->size() - 1]) >= 0x80) {
      multibyte.push_back(id);
    }
  }
  std::mt19937 rng(17);
  for (int round = 0; round < 300; ++round) {
    std::vector<int32_t> ids(1 + rng() % 24);
    for (int32_t& id : ids) {
      const int kind = rng() % 3;
      if (kind == 0 && !byte_tokens.empty()) {
        id = byte_tokens[rng() % byte_tokens.size()];
      } else if (kind == 1 && !multibyte.empty()) {
        id = multibyte[rng() % multibyte.size()];
      } else {
        id = static_cast<int32_t>(rng() % tokenizer_->vocab_size());
      }
    }
    for (bool skip : {true, false}) {
      IncrementalDecoder stream(*tokenizer_, skip);
      std::string streamed;
      for (int32_t id : ids) {
        auto piece = stream.Add(id);
        ASSERT_TRUE(piece.ok()) << piece.status();
        ASSERT_TRUE(internal::IsValidUtf8(*piece)) << "round " << round;
        streamed += *piece;
      }
      auto rest = stream.Finish();
      ASSERT_TRUE(rest.ok());
      ASSERT_TRUE(internal::IsValidUtf8(*rest));
      streamed += *rest;
      ASSERT_EQ(streamed, *tokenizer_->Decode(ids, skip)) << "round " << round;
    }
  }
}

TEST(TokenizerTest, MissingFileIsNotFound) {
  EXPECT_EQ(Tokenizer::Load("/nonexistent").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tessera::tokenizer
