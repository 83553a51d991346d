#include "io_pool.h"

namespace netfs {

IoPool::IoPool(unsigned threads) {
    if (threads == 0)
        threads = 1;
    threads_.reserve(threads);
    for (unsigned i = 0; i < threads; ++i)
        threads_.emplace_back([this] { run(); });
}

IoPool::~IoPool() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_)
        t.join();
}

void IoPool::submit(Priority priority, std::function<void()> job) {
    {
        std::lock_guard lock(mutex_);
        (priority == Priority::urgent ? urgent_ : background_).push_back(std::move(job));
    }
    wake_.notify_one();
}

void IoPool::run() {
    for (;;) {
        std::function<void()> job;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [&] { return stopping_ || !urgent_.empty() || !background_.empty(); });
            auto& queue = !urgent_.empty() ? urgent_ : background_;
            if (queue.empty())
                return;  // stopping and drained
            job = std::move(queue.front());
            queue.pop_front();
        }
        job();
    }
}

} // namespace netfs
