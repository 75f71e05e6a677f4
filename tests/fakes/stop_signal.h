// SIGTERM/SIGINT as a waitable flag. The constructor blocks both signals in
// the calling thread, so it must run before any other thread starts (gRPC,
// Beast): threads inherit the mask and only the dedicated waiter sees them.
// Thread-safe after construction. One instance per process.
#ifndef KMSFLEET_TESTS_FAKES_STOP_SIGNAL_H_
#define KMSFLEET_TESTS_FAKES_STOP_SIGNAL_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace kmsfleet::fake {

class StopSignal {
 public:
  StopSignal();
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  // Waits up to `timeout`; true once a stop signal has arrived.
  bool WaitFor(std::chrono::milliseconds timeout);
  int signal_number();  // 0 until stopped

 private:
  // The waiter thread is detached and may outlive this object at process
  // exit, so the shared state lives in a static.
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    int signal = 0;  // guarded by mu
  };
  static Shared& shared();
};

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_STOP_SIGNAL_H_
