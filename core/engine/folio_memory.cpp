#include "folio_memory.h"

#include <sys/mman.h>

#include <bit>
#include <new>

namespace netfs {

FolioMemory::~FolioMemory() {
    for (auto& [base, chunk] : chunks_)
        ::munmap(base, kChunk);
    for (std::byte* base : spare_)
        ::munmap(base, kChunk);
}

int FolioMemory::order_of(std::uint32_t size) { return std::countr_zero(size) - std::countr_zero(kBlock); }

std::byte* FolioMemory::allocate(std::uint32_t size) {
    const int want = order_of(size);
    std::lock_guard lock(mu_);
    int have = want;
    while (have < 10 && free_[have].empty())
        ++have;
    std::byte* block;
    if (have == 10) {
        // A fresh chunk: a spare one if there is, its pages still mapped.
        if (!spare_.empty()) {
            block = spare_.back();
            spare_.pop_back();
        } else {
            // mmap aligns to pages only; buddies are found by offset from
            // the chunk's base, so that is enough.
            void* p = ::mmap(nullptr, kChunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED)
                throw std::bad_alloc();
            block = static_cast<std::byte*>(p);
        }
        chunks_.emplace(block, Chunk{});
        have = 9;
    } else {
        block = *free_[have].begin();
        free_[have].erase(free_[have].begin());
    }
    // Split down to the size wanted; the upper halves become free buddies.
    while (have > want) {
        --have;
        free_[have].insert(block + (std::size_t(kBlock) << have));
    }
    auto chunk = std::prev(chunks_.upper_bound(block));
    chunk->second.used += size;
    return block;
}

void FolioMemory::free(std::byte* block, std::uint32_t size) {
    int order = order_of(size);
    std::lock_guard lock(mu_);
    auto chunk = std::prev(chunks_.upper_bound(block));
    std::byte* const base = chunk->first;
    chunk->second.used -= size;
    if (chunk->second.used == 0) {
        // Everything in it is free: the free buddies all belong to it.
        for (auto& list : free_)
            list.erase(list.lower_bound(base), list.lower_bound(base + kChunk));
        chunks_.erase(chunk);
        if (spare_.size() < kSpareChunks)
            spare_.push_back(base);
        else
            ::munmap(base, kChunk);
        return;
    }
    std::size_t offset = std::size_t(block - base);
    while (order < 9) {
        const std::size_t buddy = offset ^ (std::size_t(kBlock) << order);
        if (free_[order].erase(base + buddy) == 0)
            break;
        offset = std::min(offset, buddy);
        ++order;
    }
    free_[order].insert(base + offset);
}

std::uint64_t FolioMemory::mapped_bytes() const {
    std::lock_guard lock(mu_);
    return std::uint64_t(chunks_.size() + spare_.size()) * kChunk;
}

} // namespace netfs
