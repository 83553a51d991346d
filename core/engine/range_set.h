// A set of byte ranges [start, end) kept merged: adjacent and overlapping
// ranges become one. Tracks a file's dirty bytes across folio boundaries
// (the counterpart of NFS's nfs_page lists) and the bytes being written.
// Not thread-safe: the engine guards each set with its data lock.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

namespace netfs {

struct ByteRange {
    std::uint64_t start = 0;
    std::uint64_t end = 0;  // exclusive
    std::uint64_t length() const { return end - start; }
    bool operator==(const ByteRange&) const = default;
};

class RangeSet {
public:
    // Each returns how many bytes it newly covered or uncovered.
    std::uint64_t add(std::uint64_t start, std::uint64_t end);
    std::uint64_t remove(std::uint64_t start, std::uint64_t end);
    void clear();

    bool empty() const { return ranges_.empty(); }
    std::uint64_t bytes() const { return bytes_; }
    bool overlaps(std::uint64_t start, std::uint64_t end) const;
    // The parts of the set inside [start, end), in order.
    std::vector<ByteRange> within(std::uint64_t start, std::uint64_t end) const;
    std::vector<ByteRange> all() const;

private:
    std::map<std::uint64_t, std::uint64_t> ranges_;  // start -> end; disjoint, not adjacent
    std::uint64_t bytes_ = 0;
};

} // namespace netfs
