// The folio allocator: blocks never overlap, any freed memory serves any
// size, and memory goes back to the kernel when its chunk is free.
#include "core/engine/folio_memory.h"

#include <QTest>

#include <cstring>
#include <map>
#include <random>

using netfs::FolioMemory;

class TestFolioMemory : public QObject {
    Q_OBJECT
private slots:
    void blocks_are_aligned_disjoint_and_returned() {
        FolioMemory memory;
        std::mt19937 rng(99);
        std::map<std::byte*, std::uint32_t> live;  // block -> size
        std::uint64_t live_bytes = 0;
        for (int step = 0; step < 20000; ++step) {
            if (live.empty() || (rng() % 3 != 0 && live_bytes < (64u << 20))) {
                const std::uint32_t size = FolioMemory::kBlock << (rng() % 10);
                std::byte* b = memory.allocate(size);
                // Neither neighbour overlaps it.
                auto next = live.lower_bound(b);
                QVERIFY(next == live.end() || b + size <= next->first);
                if (next != live.begin()) {
                    auto prev = std::prev(next);
                    QVERIFY(prev->first + prev->second <= b);
                }
                std::memset(b, int(step & 0xff), size);  // writable, all of it
                live.emplace(b, size);
                live_bytes += size;
            } else {
                auto it = live.begin();
                std::advance(it, rng() % live.size());
                QCOMPARE(int(*it->first), int(*(it->first + it->second - 1)));  // untouched by others
                memory.free(it->first, it->second);
                live_bytes -= it->second;
                live.erase(it);
            }
            // Never more than twice what is in use (plus one chunk being split).
            QVERIFY(memory.mapped_bytes() <= 2 * live_bytes + FolioMemory::kChunk * 2 || live_bytes < (8u << 20));
        }
        for (auto& [b, size] : live)
            memory.free(b, size);
        QCOMPARE(memory.mapped_bytes(), 0u);  // all of it back to the kernel
    }

    void small_blocks_freed_serve_large_ones() {
        FolioMemory memory;
        std::vector<std::byte*> small;
        for (int i = 0; i < 4096; ++i)  // 16 MiB of 4 KiB blocks
            small.push_back(memory.allocate(FolioMemory::kBlock));
        QCOMPARE(memory.mapped_bytes(), 16u << 20);
        for (auto* b : small)
            memory.free(b, FolioMemory::kBlock);
        QCOMPARE(memory.mapped_bytes(), 0u);
        std::vector<std::byte*> large;
        for (int i = 0; i < 8; ++i)
            large.push_back(memory.allocate(FolioMemory::kChunk));
        QCOMPARE(memory.mapped_bytes(), 16u << 20);
        for (auto* b : large)
            memory.free(b, FolioMemory::kChunk);
    }
};

QTEST_APPLESS_MAIN(TestFolioMemory)
#include "test_folio_memory.moc"
