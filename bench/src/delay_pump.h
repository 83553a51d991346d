// One direction of a TCP relay that delays every byte by a fixed time: a
// reader queues what it reads, a writer sends it when due, in order. What
// bench_delay_proxy and the tests' relays share (this kernel has no netem).
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace netfs {

// Relays `from` to `to`, each chunk `delay` after it was read, until `from`
// ends (then `to` is shut for writing) or `to` fails (then `from` is shut
// for reading, which ends the relay).
inline void delay_pump(int from, int to, std::chrono::milliseconds delay) {
    using Clock = std::chrono::steady_clock;
    struct Chunk {
        Clock::time_point due;
        std::vector<char> bytes;  // empty: the sender closed
    };

    std::mutex mu;
    std::condition_variable cv;
    std::deque<Chunk> queue;
    std::thread writer([&] {
        for (;;) {
            Chunk c;
            {
                std::unique_lock lock(mu);
                cv.wait(lock, [&] { return !queue.empty(); });
                c = std::move(queue.front());
                queue.pop_front();
            }
            std::this_thread::sleep_until(c.due);
            if (c.bytes.empty()) {
                ::shutdown(to, SHUT_WR);
                return;
            }
            for (std::size_t off = 0; off < c.bytes.size();) {
                const ssize_t n = ::send(to, c.bytes.data() + off, c.bytes.size() - off, MSG_NOSIGNAL);
                if (n <= 0) {
                    ::shutdown(from, SHUT_RD);
                    return;
                }
                off += std::size_t(n);
            }
        }
    });
    std::vector<char> buf(256 << 10);
    for (;;) {
        const ssize_t n = ::recv(from, buf.data(), buf.size(), 0);
        Chunk c{Clock::now() + delay, {}};
        if (n > 0)
            c.bytes.assign(buf.data(), buf.data() + n);
        {
            std::lock_guard lock(mu);
            queue.push_back(std::move(c));
        }
        cv.notify_one();
        if (n <= 0)
            break;
    }
    writer.join();
}

} // namespace netfs
