// A request's two sides: the producer (the group's step thread) queues token ids only;
// the consumer turns them into text, finds stop strings and tells the producer to let
// the sequence go. Driven here by hand with the bundled model's tokenizer.
#include <gtest/gtest.h>

#include "coordinator/frontend.h"
#include "coordinator/request.h"
#include "golden_fixture.h"
#include "tokenizer/tokenizer.h"

namespace tessera::coordinator {
namespace {

class Recorder final : public RequestObserver {
 public:
  void OnQueued(double) override {}
  void OnFirstToken(double) override {}
  void OnNextToken(double) override {}
  void OnFinished(const RequestSummary& summary) override { finished.push_back(summary); }
  std::vector<RequestSummary> finished;
};

class RequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = tokenizer::Tokenizer::Load(testing::TestDataDir() + "/../../assets/models/tessera-tiny-llama");
    ASSERT_TRUE(t.ok()) << t.status();
    tokenizer_ = std::move(*t);
    auto ids = tokenizer_->Encode(kText, /*add_special_tokens=*/false);
    ASSERT_TRUE(ids.ok());
    ids_ = *ids;
    ASSERT_GT(ids_.size(), 8u);
  }

  std::shared_ptr<Request> Make(v1::SamplingParams p) {
    return std::make_shared<Request>("r", std::vector<int32_t>{1, 2, 3}, Frontend::ResolveSamplingDefaults(p),
                                     /*seed=*/1, /*skip_special_tokens=*/true, tokenizer_.get(),
                                     StopContext{4096, {}}, &recorder_);
  }

  // Everything queued now, as the consumer receives it.
  static std::string Take(Request& r, v1::FinishReason* finish, int* tokens) {
    std::string text;
    for (RequestEvent& e : r.WaitEvents(std::chrono::milliseconds(0))) {
      EXPECT_TRUE(e.error.ok());
      text += e.text;
      *tokens += static_cast<int>(e.token_ids.size());
      if (e.finish != v1::FINISH_REASON_UNSPECIFIED) *finish = e.finish;
    }
    return text;
  }

  static constexpr char kText[] = "In the beginning God created the heaven and the earth.";
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  std::vector<int32_t> ids_;
  Recorder recorder_;
};

TEST_F(RequestTest, DefaultsAreResolvedOnce) {
  const v1::SamplingParams p = Frontend::ResolveSamplingDefaults({});
  EXPECT_EQ(p.temperature(), 1.0f);
  EXPECT_EQ(p.top_p(), 1.0f);
  EXPECT_EQ(p.repetition_penalty(), 1.0f);
  EXPECT_EQ(p.max_tokens(), 16);
  v1::SamplingParams set;
  set.set_temperature(0);
  set.set_max_tokens(3);
  EXPECT_EQ(Frontend::ResolveSamplingDefaults(set).temperature(), 0.0f);
  EXPECT_EQ(Frontend::ResolveSamplingDefaults(set).max_tokens(), 3);
}

TEST_F(RequestTest, TheConsumerDetokenizes) {
  v1::SamplingParams p;
  p.set_max_tokens(static_cast<int32_t>(ids_.size()));
  auto r = Make(p);
  std::string text;
  int tokens = 0;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  for (size_t i = 0; i < ids_.size(); ++i) {
    EXPECT_EQ(r->OnToken(ids_[i], nullptr), i + 1 == ids_.size());
    if (i % 3 == 0) text += Take(*r, &finish, &tokens);  // the consumer lags behind
  }
  text += Take(*r, &finish, &tokens);
  EXPECT_EQ(text, kText);
  EXPECT_EQ(tokens, static_cast<int>(ids_.size()));
  EXPECT_EQ(finish, v1::FINISH_REASON_LENGTH);
  ASSERT_EQ(recorder_.finished.size(), 1u);
  EXPECT_EQ(recorder_.finished[0].reason, v1::FINISH_REASON_LENGTH);
}

// The producer ran ahead of the consumer: the tokens after the stop string are dropped,
// the usage counts what the client received, and the sequence leaves its group.
TEST_F(RequestTest, AStopStringFoundByTheConsumerEndsTheSequence) {
  v1::SamplingParams p;
  p.set_max_tokens(64);
  p.add_stop(" God");
  auto r = Make(p);
  for (int32_t id : ids_) ASSERT_FALSE(r->OnToken(id, nullptr));
  int tokens = 0;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  EXPECT_EQ(Take(*r, &finish, &tokens), "In the beginning");
  EXPECT_EQ(finish, v1::FINISH_REASON_STOP_STRING);
  EXPECT_LT(tokens, static_cast<int>(ids_.size()));
  EXPECT_EQ(r->usage().completion_tokens(), tokens);
  EXPECT_TRUE(r->leaving());
  EXPECT_FALSE(r->aborted());

  EXPECT_TRUE(r->OnToken(ids_[0], nullptr)) << "a token after the stop ends the sequence";
  EXPECT_TRUE(r->finished());
  EXPECT_TRUE(r->WaitEvents(std::chrono::milliseconds(0)).empty());
  ASSERT_EQ(recorder_.finished.size(), 1u);
  EXPECT_EQ(recorder_.finished[0].reason, v1::FINISH_REASON_STOP_STRING);
  EXPECT_EQ(recorder_.finished[0].completion_tokens, tokens);
}

// A stop string found while the sequence waits (no more tokens come): the scheduler
// sees it leaving and ends it; the client's stream has already ended.
TEST_F(RequestTest, ALeavingRequestEndsWithoutAnotherEvent) {
  v1::SamplingParams p;
  p.add_stop("beginning");
  auto r = Make(p);
  int tokens = 0;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  std::string text;
  for (size_t i = 0; i < ids_.size() && finish == v1::FINISH_REASON_UNSPECIFIED; ++i) {
    ASSERT_FALSE(r->OnToken(ids_[i], nullptr));
    text += Take(*r, &finish, &tokens);
  }
  EXPECT_EQ(text, "In the ");
  ASSERT_EQ(finish, v1::FINISH_REASON_STOP_STRING);
  ASSERT_TRUE(r->leaving());
  r->Leave();
  EXPECT_TRUE(r->finished());
  EXPECT_TRUE(r->WaitEvents(std::chrono::milliseconds(0)).empty());
  ASSERT_EQ(recorder_.finished.size(), 1u);
  EXPECT_EQ(recorder_.finished[0].reason, v1::FINISH_REASON_STOP_STRING);
}

TEST_F(RequestTest, AbortFlushesHeldBackTextAndEndsTheStream) {
  v1::SamplingParams p;
  p.add_stop("zzzzzzzzzz");  // never matches, but holds the last 9 bytes back
  auto r = Make(p);
  for (size_t i = 0; i < 5; ++i) ASSERT_FALSE(r->OnToken(ids_[i], nullptr));
  r->Abort();
  ASSERT_TRUE(r->leaving());
  r->Leave();
  int tokens = 0;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  const std::string text = Take(*r, &finish, &tokens);
  EXPECT_EQ(finish, v1::FINISH_REASON_ABORT);
  EXPECT_EQ(text, *tokenizer_->Decode(std::vector<int32_t>(ids_.begin(), ids_.begin() + 5), true));
  EXPECT_TRUE(r->OnToken(ids_[5], nullptr)) << "no token after the end";
}

}  // namespace
}  // namespace tessera::coordinator
