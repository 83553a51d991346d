// Memory accounting and LRU order of all folios of one engine.
//
// The engine owns folios through each file's folio map; this class only
// counts their bytes against the budget and keeps them in recency order so
// the engine can pick the least recently used clean folio to evict.
// Not thread-safe: guarded by the engine's data lock.
#pragma once

#include "folio.h"

#include <cstdint>

namespace netfs {

class FolioCache {
public:
    explicit FolioCache(std::uint64_t budget) : budget_(budget) {}

    // Where folio bytes come from (see folio_memory.h).
    FolioMemory& memory() { return memory_; }

    std::uint64_t budget() const { return budget_; }
    std::uint64_t used() const { return used_; }
    bool fits(std::uint64_t extra) const { return used_ + extra <= budget_; }

    // A folio joins (as most recent) or leaves the accounting.
    void insert(Folio* folio);
    void erase(Folio* folio);
    // The folio was used: it becomes the most recent.
    void touch(Folio* folio);

    // Walk from least recently used towards the most recent.
    Folio* oldest() const { return oldest_; }
    static Folio* newer(const Folio* folio) { return folio->lru_newer; }

private:
    void unlink(Folio* folio);
    void push_newest(Folio* folio);

    FolioMemory memory_;
    std::uint64_t budget_;
    std::uint64_t used_ = 0;
    Folio* newest_ = nullptr;
    Folio* oldest_ = nullptr;
};

} // namespace netfs
