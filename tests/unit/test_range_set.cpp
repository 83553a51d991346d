// RangeSet: the structure that tracks a file's dirty bytes across folios.
#include "core/engine/range_set.h"

#include <QTest>

#include <random>
#include <vector>

using netfs::ByteRange;
using netfs::RangeSet;

class TestRangeSet : public QObject {
    Q_OBJECT
private slots:
    void merges_adjacent_and_overlapping() {
        RangeSet s;
        QCOMPARE(s.add(0, 10), 10u);
        QCOMPARE(s.add(10, 20), 10u);  // adjacent: one range
        QCOMPARE(s.add(5, 15), 0u);    // already covered
        QCOMPARE(s.add(30, 40), 10u);
        QCOMPARE(s.add(15, 35), 10u);  // bridges the gap 20..30
        QCOMPARE(s.all(), (std::vector<ByteRange>{{0, 40}}));
        QCOMPARE(s.bytes(), 40u);
    }

    void remove_splits() {
        RangeSet s;
        s.add(0, 100);
        QCOMPARE(s.remove(10, 20), 10u);
        QCOMPARE(s.remove(50, 200), 50u);
        QCOMPARE(s.all(), (std::vector<ByteRange>{{0, 10}, {20, 50}}));
        QCOMPARE(s.bytes(), 40u);
        QVERIFY(s.overlaps(5, 6));
        QVERIFY(!s.overlaps(10, 20));
        QVERIFY(s.overlaps(19, 21));
        QVERIFY(!s.overlaps(50, 60));
        QCOMPARE(s.within(5, 25), (std::vector<ByteRange>{{5, 10}, {20, 25}}));
    }

    // Against a byte map: any sequence of adds and removes agrees with it.
    void agrees_with_a_byte_model() {
        std::mt19937 rng(12345);
        RangeSet s;
        std::vector<bool> model(1000, false);
        for (int step = 0; step < 20000; ++step) {
            std::uint64_t a = rng() % 1000, b = rng() % 1000;
            if (a > b)
                std::swap(a, b);
            std::uint64_t changed = 0;
            const bool adding = rng() % 2;
            for (auto i = a; i < b; ++i)
                if (model[i] != adding) {
                    model[i] = adding;
                    ++changed;
                }
            QCOMPARE(adding ? s.add(a, b) : s.remove(a, b), changed);
            if (step % 100 == 0) {
                std::uint64_t bytes = 0;
                for (bool m : model)
                    bytes += m;
                QCOMPARE(s.bytes(), bytes);
                std::uint64_t prev_end = 0;
                bool first = true;
                for (const auto& r : s.all()) {
                    QVERIFY(r.start < r.end);
                    QVERIFY(first || r.start > prev_end);  // disjoint and not adjacent
                    for (auto i = r.start; i < r.end; ++i)
                        QVERIFY(model[i]);
                    first = false;
                    prev_end = r.end;
                }
            }
        }
    }
};

QTEST_APPLESS_MAIN(TestRangeSet)
#include "test_range_set.moc"
