#include "coordinator/http_server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <deque>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tessera::coordinator {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

struct HttpServer::State {
  HttpServerOptions options;
  HttpHandler handler;
  HttpErrorBody error_body;
  std::optional<net::io_context> io;
  std::optional<net::ssl::context> ssl;  // with options.tls
  std::optional<tcp::acceptor> acceptor;
  std::optional<net::steady_timer> retry;  // accepting again after an error (out of descriptors)
  std::vector<std::thread> threads;
  int port = 0;
  // Set before the I/O threads stop: from then on nothing is posted to `io`.
  std::mutex mu;
  bool stopped = false;  // guarded by mu
};

namespace {

constexpr size_t kMaxHeaderBytes = 16 << 10;
constexpr std::chrono::seconds kLingerTime{5};

// A request Beast could not parse (as opposed to a connection that closed or timed out).
bool IsMalformed(beast::error_code ec) {
  return ec && &ec.category() == &http::make_error_code(http::error::bad_target).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message;
}

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// One connection: reads a request, hands it to the handler, writes the answer, and
// reads the next (keep-alive). Everything below runs on the connection's strand.
// `Stream` is a plain TCP stream, or TLS over one.
template <class Stream>
class Session final : public HttpReply, public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;
  using std::enable_shared_from_this<Session<Stream>>::shared_from_this;

 public:
  Session(tcp::socket socket, std::shared_ptr<HttpServer::State> state)
      : stream_(MakeStream(std::move(socket), *state)), state_(std::move(state)) {}

  void Start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      if constexpr (kTls) {
        self->Tcp().expires_after(self->state_->options.idle_timeout);
        self->stream_.async_handshake(net::ssl::stream_base::server, [self](beast::error_code ec) {
          if (ec) return self->Close();  // not TLS, or a certificate the client refused
          self->ReadRequest();
        });
      } else {
        self->ReadRequest();
      }
    });
  }

  void Send(int status, const std::string& content_type, std::string body) override {
    Post([this, status, content_type, body = std::move(body)]() mutable {
      if (answer_started_) return;
      http::response<http::string_body> response{static_cast<http::status>(status), 11};
      response.set(http::field::server, "tessera");
      response.set(http::field::content_type, content_type);
      response.keep_alive(keep_alive_);
      response.body() = std::move(body);
      response.prepare_payload();
      answer_started_ = answer_ended_ = true;
      on_close_ = nullptr;  // answered: a close from now on concerns no one
      std::ostringstream out;
      out << response;
      Enqueue(out.str());
    });
  }

  void StartStream(const std::string& content_type) override {
    Post([this, content_type] {
      if (answer_started_) return;
      http::response<http::empty_body> response{http::status::ok, 11};
      response.set(http::field::server, "tessera");
      response.set(http::field::content_type, content_type);
      response.set(http::field::cache_control, "no-cache");
      response.keep_alive(keep_alive_);
      response.chunked(true);
      answer_started_ = true;
      std::ostringstream out;
      out << response.base();
      Enqueue(out.str());
    });
  }

  void Write(std::string data) override {
    Post([this, data = std::move(data)] {
      if (!answer_started_ || answer_ended_ || data.empty()) return;
      std::ostringstream size;
      size << std::hex << data.size();
      Enqueue(absl::StrCat(size.str(), "\r\n", data, "\r\n"));
    });
  }

  void End() override {
    Post([this] {
      if (!answer_started_ || answer_ended_) return;
      answer_ended_ = true;
      on_close_ = nullptr;
      Enqueue("0\r\n\r\n");
    });
  }

  void Post(std::function<void()> task) override {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->stopped) return;
    net::post(stream_.get_executor(), [self = shared_from_this(), task = std::move(task)] { task(); });
  }

  void OnClose(std::function<void()> on_close) override {
    Post([this, on_close = std::move(on_close)]() mutable {
      if (closed_) {
        on_close();
      } else {
        on_close_ = std::move(on_close);
      }
    });
  }

 private:
  static Stream MakeStream(tcp::socket socket, HttpServer::State& state) {
    if constexpr (kTls) {
      return Stream(std::move(socket), *state.ssl);
    } else {
      return Stream(std::move(socket));
    }
  }
  beast::tcp_stream& Tcp() { return beast::get_lowest_layer(stream_); }

  void ReadRequest() {
    parser_.emplace();
    parser_->body_limit(state_->options.max_body_bytes);
    parser_->header_limit(kMaxHeaderBytes);
    Tcp().expires_after(state_->options.idle_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRequest(ec); });
  }

  void OnRequest(beast::error_code ec) {
    Tcp().expires_never();
    if (ec == http::error::body_limit) {
      return Refuse(413, absl::StrCat("request body over ", state_->options.max_body_bytes, " bytes"));
    }
    if (ec == http::error::header_limit) return Refuse(431, "request headers too large");
    if (IsMalformed(ec)) return Refuse(400, absl::StrCat("malformed HTTP request: ", ec.message()));
    if (ec) return Close();  // the client closed, or the connection timed out
    http::request<http::string_body> request = parser_->release();
    parser_.reset();
    keep_alive_ = request.keep_alive();
    answer_started_ = answer_ended_ = false;
    on_close_ = nullptr;
    HttpRequest r;
    r.method = std::string(request.method_string());
    const std::string target(request.target());
    r.path = std::string(target.substr(0, target.find('?')));
    r.body = std::move(request.body());
    r.authorization = std::string(request[http::field::authorization]);
    Watch();
    state_->handler(std::move(r), shared_from_this());
  }

  // An error the server answers by itself; the connection closes after it.
  void Refuse(int status, const std::string& message) {
    keep_alive_ = false;
    Send(status, "application/json", state_->error_body(status, message));
  }

  // Waits for the socket to become readable while the answer is made: readable with
  // nothing to read means the client closed. A client that sends its next request
  // early (pipelining) ends the watch; that request waits in the socket.
  void Watch() {
    watching_ = true;
    Tcp().socket().async_wait(tcp::socket::wait_read,
                              [self = shared_from_this()](beast::error_code ec) { self->OnReadable(ec); });
  }

  void OnReadable(beast::error_code ec) {
    watching_ = false;
    if (ec == net::error::operation_aborted) {
      if (!closed_) AfterAnswer();  // cancelled because the answer was written
      return;
    }
    if (ec) return Close();
    // A wakeup is not proof of data (the reactor may report an edge already consumed):
    // peek. 0 bytes is the client's FIN; nothing yet, keep watching. Under TLS a closing
    // client's close_notify arrives as data before its FIN: the watch ends there, and
    // the departure is noticed at the next write that fails (the next streamed token).
    char byte;
    const ssize_t n = ::recv(Tcp().socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return Watch();
    if (n <= 0) return Close();
    if (answer_ended_ && !writing_) AfterAnswer();
  }

  void Enqueue(std::string bytes) {
    if (closed_) return;
    out_.push_back(std::move(bytes));
    if (!writing_) WriteNext();
  }

  void WriteNext() {
    writing_ = true;
    net::async_write(stream_, net::buffer(out_.front()),
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->OnWritten(ec); });
  }

  void OnWritten(beast::error_code ec) {
    writing_ = false;
    if (ec || closed_) return Close();
    out_.pop_front();
    if (!out_.empty()) return WriteNext();
    if (!answer_ended_) return;
    if (watching_) {
      Tcp().socket().cancel();  // OnReadable goes on to AfterAnswer
    } else {
      AfterAnswer();
    }
  }

  void AfterAnswer() {
    if (!keep_alive_) {
      Tcp().expires_after(kLingerTime);
      if constexpr (kTls) {  // close_notify, then the client's
        return stream_.async_shutdown([self = shared_from_this()](beast::error_code) { self->Close(); });
      } else {
        beast::error_code ignored;
        Tcp().socket().shutdown(tcp::socket::shutdown_send, ignored);
        return Linger();
      }
    }
    ReadRequest();
  }

  // After an answer that closes the connection (413, say) the client may still be
  // sending: read and drop what comes until it stops, so it reads the answer instead of
  // a reset (a "lingering close", as nginx does).
  void Linger() {
    Tcp().async_read_some(net::buffer(discard_), [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->Close();
      self->Linger();
    });
  }

  void Close() {
    if (closed_) return;
    closed_ = true;  // out_ stays: a write in flight still points into it
    beast::error_code ignored;
    Tcp().socket().close(ignored);
    if (on_close_ && !answer_ended_) {
      std::function<void()> on_close = std::move(on_close_);
      on_close_ = nullptr;
      on_close();
    }
    on_close_ = nullptr;
  }

  Stream stream_;
  const std::shared_ptr<HttpServer::State> state_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::deque<std::string> out_;  // bytes to write, in order
  bool writing_ = false;
  bool watching_ = false;
  bool keep_alive_ = true;
  bool answer_started_ = false;
  bool answer_ended_ = false;
  bool closed_ = false;
  std::function<void()> on_close_;
  char discard_[4096];  // Linger's reads
};

void Accept(const std::shared_ptr<HttpServer::State>& state) {
  state->acceptor->async_accept(net::make_strand(*state->io), [state](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted) return;
    if (ec) {  // out of descriptors, say: try again shortly rather than spin
      state->retry->expires_after(std::chrono::milliseconds(50));
      state->retry->async_wait([state](beast::error_code wait_ec) {
        if (!wait_ec) Accept(state);
      });
      return;
    }
    if (state->ssl) {
      std::make_shared<Session<TlsStream>>(std::move(socket), state)->Start();
    } else {
      std::make_shared<Session<beast::tcp_stream>>(std::move(socket), state)->Start();
    }
    Accept(state);
  });
}

}  // namespace

HttpServer::HttpServer(std::shared_ptr<State> state) : state_(std::move(state)) {}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options, HttpHandler handler,
                                                              HttpErrorBody error_body) {
  auto state = std::make_shared<State>();
  state->options = options;
  state->handler = std::move(handler);
  state->error_body = std::move(error_body);
  state->io.emplace(options.io_threads);
  if (options.tls) {
    net::ssl::context& ssl = state->ssl.emplace(net::ssl::context::tls_server);
    ssl.set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                    net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 | net::ssl::context::no_tlsv1_1);
    beast::error_code tls_ec;
    ssl.use_certificate_chain(net::buffer(options.tls->cert), tls_ec);
    if (!tls_ec) ssl.use_private_key(net::buffer(options.tls->key), net::ssl::context::pem, tls_ec);
    if (tls_ec) return absl::InvalidArgumentError(absl::StrCat("HTTP TLS certificate: ", tls_ec.message()));
  }

  const size_t colon = options.listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(options.listen.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("HTTP listen address '", options.listen, "' is not HOST:PORT"));
  }
  beast::error_code ec;
  const net::ip::address host = net::ip::make_address(options.listen.substr(0, colon), ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("HTTP listen host in '", options.listen, "': ", ec.message()));
  const tcp::endpoint endpoint(host, static_cast<unsigned short>(port));
  tcp::acceptor& acceptor = state->acceptor.emplace(*state->io);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen, ": ", ec.message()));
  state->port = acceptor.local_endpoint().port();
  state->retry.emplace(*state->io);

  Accept(state);
  for (int i = 0; i < std::max(1, options.io_threads); ++i) {
    state->threads.emplace_back([io = &*state->io] { io->run(); });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(state)));
}

HttpServer::~HttpServer() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stopped = true;
  }
  state_->io->stop();
  for (std::thread& t : state_->threads) t.join();
  beast::error_code ignored;
  state_->acceptor->close(ignored);
  // The io_context stays with the state: an answer still held elsewhere (a request
  // finishing in a replica group) may reach its connection, which then posts nothing.
}

int HttpServer::port() const { return state_->port; }

}  // namespace tessera::coordinator
