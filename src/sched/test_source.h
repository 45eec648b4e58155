// For sched tests: reads a file of the source tree (TANDEM_SOURCE_DIR, set by CTest; the
// working directory otherwise), so tests can place the shipped examples.
#pragma once

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace tandem::sched {

inline std::string ReadSource(const std::string& relative) {
  const char* root = std::getenv("TANDEM_SOURCE_DIR");
  std::ifstream in(std::string(root ? root : ".") + "/" + relative);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace tandem::sched
