#include "readahead.h"

#include <algorithm>
#include <iterator>

namespace netfs {

ByteRange Readahead::on_read(std::uint64_t offset, std::uint64_t length, std::uint64_t file_size) {
    const std::uint64_t end = offset + length;
    bool sequential;
    if (window_)
        sequential = offset >= stream_start_ && offset <= reached_ + kSlack;
    else {
        // Three reads in a chain (in either order) make a stream: two random
        // reads may touch by chance, three almost never do.
        const ByteRange current{offset, end};
        auto adjacent = [](const ByteRange& a, const ByteRange& b) {
            return a.length() && b.length() && (a.end == b.start || b.end == a.start);
        };
        sequential = offset == 0;
        for (const ByteRange& r1 : recent_)
            if (adjacent(current, r1))
                for (const ByteRange& r2 : recent_)
                    if (&r2 != &r1 && (adjacent(r1, r2) || adjacent(current, r2)))
                        sequential = true;
    }
    recent_[next_recent_++ % std::size(recent_)] = {offset, end};
    if (!sequential) {
        // A jump: start a new candidate stream here, but fetch nothing ahead yet.
        stream_start_ = offset;
        reached_ = end;
        window_ = 0;
        issued_to_ = 0;
        return {};
    }
    if (!window_)
        stream_start_ = std::min(stream_start_, offset);
    reached_ = std::max(reached_, end);
    window_ = window_ ? std::min(window_ * 2, max_window_) : std::min(kInitialWindow, max_window_);
    if (window_ == 0)
        return {};

    const std::uint64_t want_end = std::min(reached_ + window_, file_size);
    const std::uint64_t ahead = issued_to_ > reached_ ? issued_to_ - reached_ : 0;
    if (ahead >= window_ / 2 || want_end <= std::max(issued_to_, reached_))
        return {};
    ByteRange range{std::max(issued_to_, reached_), want_end};
    issued_to_ = want_end;
    return range;
}

} // namespace netfs
