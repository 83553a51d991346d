// The folio allocator: blocks never overlap, any freed memory serves any
// size, and memory goes back to the kernel when its chunk is free (beyond a
// few spare chunks).
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
            // Never more than twice what is in use (plus one chunk being
            // split, and the spare chunks kept mapped).
            QVERIFY(memory.mapped_bytes() <= 2 * live_bytes + FolioMemory::kChunk * (2 + FolioMemory::kSpareChunks) ||
                    live_bytes < (8u << 20));
        }
        for (auto& [b, size] : live)
            memory.free(b, size);
        QCOMPARE(memory.mapped_bytes(), FolioMemory::kSpareChunks * FolioMemory::kChunk);  // the rest went back
    }

    // A chunk freed is kept for the next one (no fresh pages to fault in),
    // a few of them at most.
    void free_chunks_are_reused() {
        FolioMemory memory;
        std::vector<std::byte*> chunks;
        for (std::size_t i = 0; i < FolioMemory::kSpareChunks + 4; ++i)
            chunks.push_back(memory.allocate(FolioMemory::kChunk));
        for (auto* b : chunks)
            memory.free(b, FolioMemory::kChunk);
        QCOMPARE(memory.mapped_bytes(), FolioMemory::kSpareChunks * FolioMemory::kChunk);
        std::vector<std::byte*> again;
        for (std::size_t i = 0; i < FolioMemory::kSpareChunks; ++i)
            again.push_back(memory.allocate(FolioMemory::kBlock << (i % 10)));
        QCOMPARE(memory.mapped_bytes(), FolioMemory::kSpareChunks * FolioMemory::kChunk);  // no new mapping
        for (std::size_t i = 0; i < again.size(); ++i)
            memory.free(again[i], FolioMemory::kBlock << (i % 10));
    }

    void small_blocks_freed_serve_large_ones() {
        FolioMemory memory;
        std::vector<std::byte*> small;
        for (int i = 0; i < 4096; ++i)  // 16 MiB of 4 KiB blocks
            small.push_back(memory.allocate(FolioMemory::kBlock));
        QCOMPARE(memory.mapped_bytes(), 16u << 20);
        for (auto* b : small)
            memory.free(b, FolioMemory::kBlock);
        QCOMPARE(memory.mapped_bytes(), std::min<std::size_t>(8, FolioMemory::kSpareChunks) * FolioMemory::kChunk);
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
