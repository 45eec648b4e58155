// Stop-sequence matching on streamed text.
//
// Generated text arrives in pieces; a stop sequence may straddle pieces. StopMatcher emits only
// text that can no longer be the start of a stop sequence, holds back the rest, and when a stop
// sequence completes it reports it and drops it and everything after it (OpenAI semantics: the
// stop sequence is not part of the answer).
//
//   StopMatcher matcher({"\n\n", "END"});
//   StopMatcher::Result r = matcher.Feed("Hello EN");   // r.text == "Hello ", holds "EN"
//   r = matcher.Feed("D more");                         // r.text == "", r.stopped == true
//   std::string rest = matcher.Flush();                 // at the end of generation
//
// Thread-safety: not thread-safe; one per sequence.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tandem::router {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  struct Result {
    std::string text;      // safe to send to the client now
    bool stopped = false;  // a stop sequence completed; nothing more will be emitted
  };
  Result Feed(std::string_view piece);
  // Releases held-back text at the end of generation (no stop sequence completed).
  std::string Flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace tandem::router
