// The engine's I/O threads. Every backend RPC of the data path runs here, so
// the number of threads is the number of requests in flight to the remote
// (BackendLimits::max_in_flight).
//
// Two queues: `urgent` work (something a caller waits for: a read, an fsync's
// writeback, a direct I/O) is taken before `background` work (readahead,
// timed writeback), so a reader never queues behind a readahead burst.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace netfs {

class IoPool {
public:
    enum class Priority { urgent, background };

    explicit IoPool(unsigned threads);
    ~IoPool();  // runs what is queued, then joins
    IoPool(const IoPool&) = delete;
    IoPool& operator=(const IoPool&) = delete;

    void submit(Priority priority, std::function<void()> job);

private:
    void run();

    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> urgent_;      // guarded by mutex_
    std::deque<std::function<void()>> background_;  // guarded by mutex_
    bool stopping_ = false;                         // guarded by mutex_
    std::vector<std::thread> threads_;
};

} // namespace netfs
