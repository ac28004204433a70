// A blocking HTTP/1.1 client (Boost.Beast) for the programs that drive an HTTP API:
// the tests of the coordinator's, and tessera-bench against any OpenAI-compatible
// server. Whole requests, and Server-Sent Event streams read event by event.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"

namespace tessera {

struct HttpResult {
  int status = 0;  // 0: the connection failed
  std::string body;
  nlohmann::json Json() const { return nlohmann::json::parse(body, nullptr, false); }
};

// One request on a fresh connection to `host`:`port` (an IPv4 or IPv6 address), with
// extra header fields.
HttpResult HttpFetchWithHeaders(const std::string& host, int port, const std::string& method, const std::string& path,
                                const std::string& body, const std::vector<std::pair<std::string, std::string>>& headers);
inline HttpResult HttpFetch(const std::string& host, int port, const std::string& method, const std::string& path,
                            const std::string& body = "") {
  return HttpFetchWithHeaders(host, port, method, path, body, {});
}
inline HttpResult HttpFetch(int port, const std::string& method, const std::string& path, const std::string& body = "") {
  return HttpFetch("127.0.0.1", port, method, path, body);
}
inline HttpResult HttpPost(int port, const std::string& path, const nlohmann::json& body) {
  return HttpFetch(port, "POST", path, body.dump());
}

// A POST whose answer is read as it streams.
class SseStream {
 public:
  SseStream(const std::string& host, int port, const std::string& path, const nlohmann::json& body);
  SseStream(int port, const std::string& path, const nlohmann::json& body) : SseStream("127.0.0.1", port, path, body) {}
  ~SseStream();
  // The response status (after the header arrived).
  int status() const;
  // Why the connection failed, when it did.
  const std::string& error() const;
  // The next event's data ("[DONE]" included); nullopt at the end of the stream.
  std::optional<std::string> Next();
  // Drops the connection, as a client that goes away.
  void Close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera
