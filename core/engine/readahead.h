// Readahead policy for one open file: detects a sequential reader and says
// what to fetch ahead of it. Pure logic, no I/O; the engine issues the range.
//
// A read starts a stream when it begins at 0, or when it and two of the
// last few reads are exactly adjacent, in any order (the kernel sends
// several reads of a stream at once, so they may arrive out of order).
// Once a stream runs, reads within kSlack of where it has reached belong to
// it. Random reads are almost never three in a chain. The window starts at
// kInitialWindow and doubles on every sequential read up to the maximum.
// New readahead is issued only once the reader has consumed half of what is
// already ahead of it, so each issue is a large batch, not a trickle.
// A random read resets the stream: random access never triggers readahead.
#pragma once

#include "range_set.h"

#include <cstdint>

namespace netfs {

class Readahead {
public:
    static constexpr std::uint64_t kInitialWindow = 256 << 10;
    static constexpr std::uint64_t kSlack = 1 << 20;  // the largest FUSE read

    explicit Readahead(std::uint64_t max_window) : max_window_(max_window) {}

    // Records a read of [offset, offset + length) of a file of `file_size`
    // bytes; returns the range to read ahead (empty: none).
    ByteRange on_read(std::uint64_t offset, std::uint64_t length, std::uint64_t file_size);

    std::uint64_t window() const { return window_; }

private:
    std::uint64_t max_window_;
    std::uint64_t stream_start_ = 0;  // first byte of the current stream
    std::uint64_t reached_ = 0;       // furthest byte the reader has asked for
    std::uint64_t window_ = 0;        // 0: no sequential stream
    std::uint64_t issued_to_ = 0;     // end of the furthest readahead issued
    ByteRange recent_[4]{};           // the last reads, for adjacency
    unsigned next_recent_ = 0;
};

} // namespace netfs
