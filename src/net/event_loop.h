// EventLoop: one asio::io_context run by one thread. Work crosses threads only through Post();
// timers fire on the loop's thread. An EventLoopGroup runs N loops for a server.
//
//   EventLoop loop("http-0");
//   loop.Post([] { /* runs on the loop's thread */ });
//   loop.RunAfter(absl::Milliseconds(100), [] { ... });
//   loop.Stop();   // or the destructor: pending work is dropped, the thread joined
//
// Thread-safety: Post, RunAfter and Stop may be called from any thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "absl/time/time.h"

namespace tandem::net {

class EventLoop {
 public:
  explicit EventLoop(std::string name = "loop");
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  void Post(std::function<void()> work);
  void RunAfter(absl::Duration delay, std::function<void()> work);
  // Stops the loop and joins its thread. Idempotent; must not be called from the loop itself.
  void Stop();
  bool InLoopThread() const { return std::this_thread::get_id() == thread_.get_id(); }

  boost::asio::io_context& context() { return context_; }

 private:
  std::string name_;
  boost::asio::io_context context_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::thread thread_;
};

class EventLoopGroup {
 public:
  explicit EventLoopGroup(int loops, const std::string& name = "loop");
  EventLoop& Next();  // round robin
  EventLoop& At(size_t index) { return *loops_[index]; }
  size_t size() const { return loops_.size(); }
  void Stop();

 private:
  std::vector<std::unique_ptr<EventLoop>> loops_;
  size_t next_ = 0;
};

}  // namespace tandem::net
