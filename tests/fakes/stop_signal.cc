#include "stop_signal.h"

#include <pthread.h>
#include <signal.h>

#include <thread>

namespace kmsfleet::fake {

StopSignal::Shared& StopSignal::shared() {
  static Shared* state = new Shared();  // leaked: used by a detached thread
  return *state;
}

StopSignal::StopSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    int number = 0;
    sigwait(&set, &number);
    std::lock_guard<std::mutex> lock(shared().mu);
    shared().signal = number;
    shared().cv.notify_all();
  }).detach();
}

bool StopSignal::WaitFor(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(shared().mu);
  return shared().cv.wait_for(lock, timeout, [] { return shared().signal != 0; });
}

int StopSignal::signal_number() {
  std::lock_guard<std::mutex> lock(shared().mu);
  return shared().signal;
}

}  // namespace kmsfleet::fake
