// Simulates a network in front of any remote: a fixed latency added to every
// operation, and a bandwidth cap shared by all transfers, like one link.
// For tests and benchmarks (file:///dir?latency_ms=10&bandwidth_mbs=200).
//
// Latency is per operation and not serialised: 16 reads issued together
// with 10 ms latency finish after about 10 ms, as on a real link. The cap
// is a reservation of link time: each transfer books length/rate seconds
// after the transfers booked before it and waits until its slot ends.
#pragma once

#include "core/backend/wrapped_backend.h"

#include <chrono>
#include <mutex>

namespace netfs {

class ShapedBackend : public WrappedBackend {
public:
    // bytes_per_second 0: no cap.
    ShapedBackend(std::unique_ptr<Backend> inner, std::chrono::microseconds latency,
                  std::uint64_t bytes_per_second);

    std::string describe() const override;
    Errc before(Op op, const std::string& path, std::size_t& length) override;

private:
    const std::chrono::microseconds latency_;
    const std::uint64_t rate_;
    std::mutex mu_;
    std::chrono::steady_clock::time_point link_free_;  // guarded by mu_
};

} // namespace netfs
