#include "coordinator/openai_embeddings.h"

#include <chrono>
#include <vector>

#include "absl/strings/escaping.h"
#include "coordinator/openai_api.h"
#include "nlohmann/json.hpp"

namespace tessera::coordinator {
namespace {

using nlohmann::json;

class EmbeddingsCall : public std::enable_shared_from_this<EmbeddingsCall> {
 public:
  EmbeddingsCall(Frontend* frontend, EmbeddingsRequest request, std::string tenant, std::shared_ptr<HttpReply> reply)
      : frontend_(frontend), request_(std::move(request)), tenant_(std::move(tenant)), reply_(std::move(reply)) {}

  // On the connection's strand, as every method below.
  void Start() {
    absl::StatusOr<std::vector<std::shared_ptr<Request>>> started =
        frontend_->StartEmbeddings(request_.embed, tenant_);
    if (!started.ok()) return SendError(*reply_, started.status());
    requests_ = std::move(*started);
    embeddings_.resize(requests_.size());
    finished_.assign(requests_.size(), false);
    reply_->OnClose([self = shared_from_this()] { self->AbortAll(); });
    for (size_t i = 0; i < requests_.size() && !ended_; ++i) {
      requests_[i]->SetListener([weak = weak_from_this(), reply = reply_, i] {
        reply->Post([weak, i] {
          if (auto self = weak.lock()) self->Take(i);
        });
      });
      Take(i);
    }
  }

 private:
  void Take(size_t i) {
    if (ended_ || finished_[i]) return;
    for (RequestEvent& e : requests_[i]->WaitEvents(std::chrono::milliseconds(0))) {
      if (e.error.ok() && e.finish == v1::FINISH_REASON_UNSPECIFIED) continue;
      finished_[i] = true;
      frontend_->Forget(*requests_[i]);
      if (absl::Status s = EmbeddingOutcome(e); !s.ok()) return Fail(s);
      embeddings_[i] = std::move(e.embedding);
      if (++done_ == requests_.size()) return Finish();
    }
  }

  json Encoded(const std::vector<float>& embedding) const {
    if (!request_.base64) return embedding;
    // x86-64 is little-endian: the floats' bytes are the wire format as they lie.
    return absl::Base64Escape(
        absl::string_view(reinterpret_cast<const char*>(embedding.data()), embedding.size() * sizeof(float)));
  }

  void Finish() {
    ended_ = true;
    json data = json::array();
    int64_t tokens = 0;
    for (size_t i = 0; i < requests_.size(); ++i) {
      data.push_back({{"object", "embedding"}, {"index", i}, {"embedding", Encoded(embeddings_[i])}});
      tokens += static_cast<int64_t>(requests_[i]->prompt().size());
    }
    const json body = {{"object", "list"},
                       {"data", std::move(data)},
                       {"model", frontend_->model_name()},
                       {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}};
    reply_->Send(200, "application/json", body.dump(-1, ' ', false, json::error_handler_t::replace));
  }

  // One input failed: the others stop too.
  void Fail(const absl::Status& error) {
    AbortAll();
    SendError(*reply_, error);
  }

  void AbortAll() {
    ended_ = true;
    for (size_t i = 0; i < requests_.size(); ++i) {
      if (finished_[i]) continue;
      finished_[i] = true;
      requests_[i]->Abort();
      frontend_->Forget(*requests_[i]);
    }
  }

  Frontend* const frontend_;
  const EmbeddingsRequest request_;
  const std::string tenant_;
  const std::shared_ptr<HttpReply> reply_;
  std::vector<std::shared_ptr<Request>> requests_;
  std::vector<std::vector<float>> embeddings_;
  std::vector<bool> finished_;  // its last event taken, or aborted
  size_t done_ = 0;             // embeddings received
  bool ended_ = false;          // answered, or the client went away
};

}  // namespace

void RunEmbeddings(Frontend* frontend, EmbeddingsRequest request, std::string tenant, std::shared_ptr<HttpReply> reply) {
  std::make_shared<EmbeddingsCall>(frontend, std::move(request), std::move(tenant), std::move(reply))->Start();
}

}  // namespace tessera::coordinator
