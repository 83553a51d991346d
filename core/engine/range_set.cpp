#include "range_set.h"

#include <algorithm>

namespace netfs {

std::uint64_t RangeSet::add(std::uint64_t start, std::uint64_t end) {
    if (start >= end)
        return 0;
    const std::uint64_t before = bytes_;
    // First range that could touch [start, end): the one starting at or before start.
    auto it = ranges_.upper_bound(start);
    if (it != ranges_.begin() && std::prev(it)->second >= start)
        --it;
    while (it != ranges_.end() && it->first <= end) {
        start = std::min(start, it->first);
        end = std::max(end, it->second);
        bytes_ -= it->second - it->first;
        it = ranges_.erase(it);
    }
    ranges_.emplace(start, end);
    bytes_ += end - start;
    return bytes_ - before;
}

std::uint64_t RangeSet::remove(std::uint64_t start, std::uint64_t end) {
    if (start >= end)
        return 0;
    const std::uint64_t before = bytes_;
    auto it = ranges_.upper_bound(start);
    if (it != ranges_.begin() && std::prev(it)->second > start)
        --it;
    while (it != ranges_.end() && it->first < end) {
        const std::uint64_t s = it->first, e = it->second;
        bytes_ -= e - s;
        it = ranges_.erase(it);
        if (s < start) {
            ranges_.emplace(s, start);
            bytes_ += start - s;
        }
        if (e > end) {
            it = ranges_.emplace(end, e).first;
            bytes_ += e - end;
            break;
        }
    }
    return before - bytes_;
}

void RangeSet::clear() {
    ranges_.clear();
    bytes_ = 0;
}

bool RangeSet::overlaps(std::uint64_t start, std::uint64_t end) const {
    if (start >= end)
        return false;
    auto it = ranges_.lower_bound(end);  // first range starting at or after end
    if (it == ranges_.begin())
        return false;
    --it;
    return it->second > start;
}

std::vector<ByteRange> RangeSet::within(std::uint64_t start, std::uint64_t end) const {
    std::vector<ByteRange> out;
    if (start >= end)
        return out;
    auto it = ranges_.upper_bound(start);
    if (it != ranges_.begin() && std::prev(it)->second > start)
        --it;
    for (; it != ranges_.end() && it->first < end; ++it)
        out.push_back({std::max(start, it->first), std::min(end, it->second)});
    return out;
}

std::vector<ByteRange> RangeSet::all() const {
    std::vector<ByteRange> out;
    out.reserve(ranges_.size());
    for (const auto& [s, e] : ranges_)
        out.push_back({s, e});
    return out;
}

} // namespace netfs
