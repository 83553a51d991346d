// Folios: the engine's in-memory buffers of file data.
//
// A folio caches one naturally aligned, power-of-two sized piece of a file,
// 4 KiB to 2 MiB: large folios for streaming reads and big writes, small
// ones for random access, so memory follows the access pattern.
//
// A folio is *uptodate* when every byte in it is the file's data. A folio
// that received a write before it was ever read (a streaming write) holds
// valid data only in [valid_begin, valid_end); the rest is unknown until a
// read fills it from the remote around the written bytes.
//
// Which of a folio's bytes are dirty is not kept here: a file's dirty bytes
// are one RangeSet that spans folios (see FileData), so writeback can gather
// a dirty run across many folios into one remote write.
#pragma once

#include <cstddef>
#include <cstdint>
#include "core/engine/folio_memory.h"

#include <memory>

namespace netfs {

struct FileData;

struct Folio {
    static constexpr std::uint32_t kMinSize = 4 << 10;
    static constexpr std::uint32_t kMaxSize = 2 << 20;

    Folio(FileData* owner, std::uint64_t pos, std::uint32_t size, FolioMemory& memory)
        : owner(owner), pos(pos), size(size), data(memory.allocate(size)), memory_(memory) {}
    ~Folio() { memory_.free(data, size); }
    Folio(const Folio&) = delete;
    Folio& operator=(const Folio&) = delete;

    std::uint64_t end() const { return pos + size; }
    bool uptodate() const { return valid_begin == 0 && valid_end == size; }
    bool has_valid() const { return valid_end > valid_begin; }

    FileData* const owner;
    const std::uint64_t pos;   // file offset of data[0]; a multiple of size
    const std::uint32_t size;
    std::byte* const data;  // `size` bytes from FolioMemory

    std::uint32_t valid_begin = 0;  // offsets within the folio
    std::uint32_t valid_end = 0;

    // A read is filling this folio; everyone else waits for it.
    bool busy = false;
    unsigned pending = 0;                  // subrequests still filling it
    bool stale = false;                    // the remote changed during the fill: drop it after
    std::unique_ptr<std::byte[]> bounce;   // fill target when valid bytes must survive

    // LRU list links, owned by FolioCache.
    Folio* lru_newer = nullptr;
    Folio* lru_older = nullptr;

private:
    FolioMemory& memory_;
};

} // namespace netfs
