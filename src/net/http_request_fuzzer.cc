// libFuzzer target: arbitrary bytes through the server's request parser with its limits.
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>

namespace http = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(1 << 20);
  parser.eager(true);
  boost::beast::error_code error;
  boost::asio::const_buffer buffer(data, size);
  size_t used = 0;
  while (!error && used < size && !parser.is_done()) {
    size_t n = parser.put(boost::asio::const_buffer(data + used, size - used), error);
    if (n == 0) break;
    used += n;
  }
  if (parser.is_header_done() && !error) {
    auto& message = parser.get();
    (void)message.target();
    (void)message.keep_alive();
    for (const auto& field : message) (void)field.value();
  }
  (void)buffer;
  return 0;
}
