#include "core/backend/shaped_backend.h"

#include <algorithm>
#include <thread>

namespace netfs {

ShapedBackend::ShapedBackend(std::unique_ptr<Backend> inner, std::chrono::microseconds latency,
                             std::uint64_t bytes_per_second)
    : WrappedBackend(std::move(inner)), latency_(latency), rate_(bytes_per_second) {}

std::string ShapedBackend::describe() const {
    return WrappedBackend::describe() + " (simulated: " + std::to_string(latency_.count() / 1000) +
           " ms latency" + (rate_ ? ", " + std::to_string(rate_ / 1000000) + " MB/s" : std::string()) + ")";
}

Errc ShapedBackend::before(Op op, const std::string&, std::size_t& length) {
    using namespace std::chrono;
    const auto start = steady_clock::now();
    auto done = start + latency_;
    if (rate_ && (op == Op::read || op == Op::write) && length) {
        const auto busy = duration_cast<steady_clock::duration>(duration<double>(double(length) / double(rate_)));
        std::lock_guard lock(mu_);
        // The transfer occupies the link after whatever is booked already,
        // at the earliest once the request has crossed it (the latency).
        link_free_ = std::max(link_free_, start + latency_ / 2) + busy;
        done = std::max(done, link_free_);
    }
    std::this_thread::sleep_until(done);
    return Errc::ok;
}

} // namespace netfs
