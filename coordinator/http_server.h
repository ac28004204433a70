// HttpServer: HTTP/1.1 on Boost.Beast and Asio (Debian libboost-dev). A few I/O
// threads serve every connection asynchronously, so an idle or streaming connection
// costs a socket and a few KiB, never a thread (docs/http-api.md says why Beast).
//
// The handler runs on the connection's strand and answers through its HttpReply,
// at once or later from any thread: a whole response (Send), or a streamed one
// (StartStream, Write..., End) sent with chunked transfer encoding. While a request
// is being answered the connection is watched, so a client that goes away is noticed
// (OnClose) even when nothing is being written to it.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/tls.h"

namespace tessera::coordinator {

struct HttpRequest {
  std::string method;  // GET, POST, ...
  std::string path;    // the target without its query string
  std::string body;
  std::string authorization;  // the Authorization header ("" when absent)
};

// One request's answer. Every method may be called from any thread; calls after the
// answer ended, or after the client went away, do nothing.
class HttpReply {
 public:
  virtual ~HttpReply() = default;
  virtual void Send(int status, const std::string& content_type, std::string body) = 0;
  virtual void StartStream(const std::string& content_type) = 0;
  virtual void Write(std::string data) = 0;
  virtual void End() = 0;
  // Runs `task` on the connection's strand: never concurrently with the handler, with
  // other tasks or with `on_close`.
  virtual void Post(std::function<void()> task) = 0;
  // Runs once, on the strand, if the client goes away before the answer ended.
  virtual void OnClose(std::function<void()> on_close) = 0;
};

using HttpHandler = std::function<void(HttpRequest request, std::shared_ptr<HttpReply> reply)>;
// The body of an error the server answers by itself (413, 400 for unparsable HTTP).
using HttpErrorBody = std::function<std::string(int status, const std::string& message)>;

struct HttpServerOptions {
  std::string listen;  // HOST:PORT; port 0 picks one
  int io_threads = 2;
  std::shared_ptr<const tls::Material> tls;  // HTTPS with this certificate; null: plain HTTP
  size_t max_body_bytes = 8 << 20;  // larger request bodies get 413
  // A kept-alive connection waiting for its next request is closed after this.
  std::chrono::seconds idle_timeout{120};
};

class HttpServer {
 public:
  // Binds, and serves on `options.io_threads` threads until destroyed. `error_body`
  // formats the errors the server answers by itself (as JSON, for the OpenAI API).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options, HttpHandler handler,
                                                          HttpErrorBody error_body);
  // Stops accepting, and stops the I/O threads; answers in progress are dropped.
  ~HttpServer();
  int port() const;

  struct State;  // shared with the connections (http_server.cc)

 private:
  explicit HttpServer(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

}  // namespace tessera::coordinator
