#include "common/http_client.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace tessera {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

http::request<http::string_body> MakeRequest(const std::string& method, const std::string& path,
                                             const std::string& body) {
  http::request<http::string_body> request{http::string_to_verb(method), path, 11};
  request.set(http::field::host, "127.0.0.1");
  if (!body.empty()) request.set(http::field::content_type, "application/json");
  request.body() = body;
  request.prepare_payload();
  return request;
}

}  // namespace

HttpResult HttpFetchWithHeaders(const std::string& host, int port, const std::string& method, const std::string& path,
                                const std::string& body,
                                const std::vector<std::pair<std::string, std::string>>& headers) {
  net::io_context io;
  beast::tcp_stream stream(io);
  beast::error_code ec;
  const net::ip::address address = net::ip::make_address(host, ec);
  if (ec) return {};
  stream.connect(tcp::endpoint(address, static_cast<unsigned short>(port)), ec);
  if (ec) return {};
  stream.expires_after(std::chrono::seconds(120));
  http::request<http::string_body> request = MakeRequest(method, path, body);
  for (const auto& [name, value] : headers) request.set(name, value);
  http::write(stream, request, ec);
  if (ec) return {};
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  http::read(stream, buffer, parser, ec);
  if (ec) return {};
  return {static_cast<int>(parser.get().result_int()), parser.get().body()};
}

struct SseStream::Impl {
  net::io_context io;
  beast::tcp_stream stream{io};
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  std::string pending;  // body bytes not yet split into events
  bool ended = false;
  std::string error;
  char chunk[4096];
};

SseStream::SseStream(const std::string& host, int port, const std::string& path, const nlohmann::json& body)
    : impl_(std::make_unique<Impl>()) {
  beast::error_code ec;
  const net::ip::address address = net::ip::make_address(host, ec);
  if (!ec) impl_->stream.connect(tcp::endpoint(address, static_cast<unsigned short>(port)), ec);
  if (!ec) http::write(impl_->stream, MakeRequest("POST", path, body.dump()), ec);
  if (!ec) http::read_header(impl_->stream, impl_->buffer, impl_->parser, ec);
  impl_->ended = static_cast<bool>(ec);
  if (ec) impl_->error = ec.message();
}

const std::string& SseStream::error() const { return impl_->error; }

SseStream::~SseStream() = default;

int SseStream::status() const { return impl_->ended && !impl_->parser.is_header_done() ? 0 : impl_->parser.get().result_int(); }

std::optional<std::string> SseStream::Next() {
  Impl& s = *impl_;
  while (true) {
    const size_t end = s.pending.find("\n\n");
    if (end != std::string::npos) {
      std::string event = s.pending.substr(0, end);
      s.pending.erase(0, end + 2);
      if (event.rfind("data: ", 0) == 0) return event.substr(6);
      continue;
    }
    if (s.ended || s.parser.is_done()) return std::nullopt;
    s.parser.get().body().data = s.chunk;
    s.parser.get().body().size = sizeof(s.chunk);
    beast::error_code ec;
    http::read_some(s.stream, s.buffer, s.parser, ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      s.ended = true;
      continue;
    }
    s.pending.append(s.chunk, sizeof(s.chunk) - s.parser.get().body().size);
  }
}

void SseStream::Close() {
  beast::error_code ignored;
  impl_->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  impl_->stream.socket().close(ignored);
  impl_->ended = true;
}

}  // namespace tessera
