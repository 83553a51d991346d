// Memory for folios: naturally aligned power-of-two blocks of 4 KiB to
// 2 MiB carved from 2 MiB chunks with a buddy allocator, as the kernel's
// page allocator does. Granule copies waiting for the cache come from here too.
//
// Why not malloc: a workload of random reads fills the budget with 4 KiB
// folios; when a sequential writer later evicts them, malloc keeps that
// memory in its arenas, fragmented, while the writer's large folios are
// mapped on top, and the daemon grows far past its budget (measured: 416
// MiB for a 256 MiB budget). Here freed blocks merge with their buddies,
// serve any size, and a chunk that is entirely free is unmapped at once,
// but for a few spares kept for the next chunks wanted: streaming through
// the budget would otherwise map, fault in and zero the same amount again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <vector>

namespace netfs {

class FolioMemory {
public:
    static constexpr std::uint32_t kBlock = 4 << 10;
    static constexpr std::uint32_t kChunk = 2 << 20;
    static constexpr std::size_t kSpareChunks = 16;  // 32 MiB, the dirty data that starts writeback

    FolioMemory() = default;
    ~FolioMemory();
    FolioMemory(const FolioMemory&) = delete;
    FolioMemory& operator=(const FolioMemory&) = delete;

    // `size` is a power of two from kBlock to kChunk. Throws std::bad_alloc
    // when the kernel has no memory to map.
    std::byte* allocate(std::uint32_t size);
    void free(std::byte* block, std::uint32_t size);

    std::uint64_t mapped_bytes() const;

private:
    static int order_of(std::uint32_t size);

    struct Chunk {
        std::uint32_t used = 0;  // bytes handed out
    };
    mutable std::mutex mu_;
    std::set<std::byte*> free_[10];        // free blocks by order (4 KiB << order); guarded by mu_
    std::map<std::byte*, Chunk> chunks_;   // by base address; guarded by mu_
    std::vector<std::byte*> spare_;        // free chunks kept mapped; guarded by mu_
};

} // namespace netfs
