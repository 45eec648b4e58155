// A Tandem HTTP server with one small JSON endpoint, for load generators (wrk). Prints its port,
// serves until stdin closes.
#include <cstdio>
#include <iostream>
#include <string>

#include "net/http_server.h"

int main(int argc, char** argv) {
  int port = argc > 1 ? std::stoi(argv[1]) : 0;
  tandem::net::HttpServer server({.host = "127.0.0.1", .port = port, .threads = 1});
  // The same bytes nginx serves in the comparison.
  const std::string body = R"({"object":"list","data":[{"id":"demo","object":"model"}]})";
  server.Handle("GET", "/json",
                [&body](std::shared_ptr<tandem::net::HttpExchange> x) { x->ReplyJson(200, body); });
  if (!server.Start().ok()) return 1;
  std::printf("%d\n", server.port());
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  server.Shutdown(absl::Seconds(1));
  return 0;
}
