#include "net/event_loop.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

namespace tandem::net {

EventLoop::EventLoop(std::string name)
    : name_(std::move(name)), guard_(boost::asio::make_work_guard(context_)) {
  thread_ = std::thread([this] { context_.run(); });
}

EventLoop::~EventLoop() { Stop(); }

void EventLoop::Post(std::function<void()> work) { boost::asio::post(context_, std::move(work)); }

void EventLoop::RunAfter(absl::Duration delay, std::function<void()> work) {
  auto timer = std::make_shared<boost::asio::steady_timer>(
      context_, std::chrono::microseconds(absl::ToInt64Microseconds(delay)));
  timer->async_wait([timer, work = std::move(work)](const boost::system::error_code& error) {
    if (!error) work();
  });
}

void EventLoop::Stop() {
  if (!thread_.joinable()) return;
  guard_.reset();
  context_.stop();
  thread_.join();
}

EventLoopGroup::EventLoopGroup(int loops, const std::string& name) {
  for (int i = 0; i < std::max(1, loops); ++i) {
    loops_.push_back(std::make_unique<EventLoop>(name + "-" + std::to_string(i)));
  }
}

EventLoop& EventLoopGroup::Next() {
  EventLoop& loop = *loops_[next_];
  next_ = (next_ + 1) % loops_.size();
  return loop;
}

void EventLoopGroup::Stop() {
  for (auto& loop : loops_) loop->Stop();
}

}  // namespace tandem::net
