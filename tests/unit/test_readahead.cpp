// The readahead policy: sequential streams grow a window, random access never reads ahead.
#include "core/engine/readahead.h"

#include <QTest>

using netfs::ByteRange;
using netfs::Readahead;

class TestReadahead : public QObject {
    Q_OBJECT
private slots:
    void sequential_window_grows_to_the_maximum() {
        const std::uint64_t max = 8 << 20, file = 1ull << 30, chunk = 128 << 10;
        Readahead ra(max);
        std::uint64_t issued_to = 0, issued = 0;
        for (std::uint64_t off = 0; off < (64ull << 20); off += chunk) {
            ByteRange r = ra.on_read(off, chunk, file);
            if (r.length()) {
                QVERIFY2(r.start >= off + chunk, "readahead starts beyond the read");
                QVERIFY2(r.start >= issued_to, "readahead never re-issues a range");
                issued_to = r.end;
                issued += r.length();
            }
            // The reader always has data in flight ahead of it.
            if (off > (1 << 20))
                QVERIFY2(issued_to > off + chunk, "a sequential reader must not run dry");
        }
        QCOMPARE(ra.window(), max);
        QVERIFY(issued_to >= (64ull << 20));
        QVERIFY(issued_to - (64ull << 20) <= max + chunk);  // never more than a window ahead
    }

    void batches_are_large() {
        Readahead ra(8 << 20);
        int batches = 0;
        for (std::uint64_t off = 0; off < (256ull << 20); off += 128 << 10)
            if (ra.on_read(off, 128 << 10, 1ull << 40).length())
                ++batches;
        // 256 MiB in 2048 reads; with a 8 MiB window issued at half-consumption,
        // about one batch per 4 MiB.
        QVERIFY2(batches < 100, qPrintable(QString::number(batches)));
    }

    void random_reads_never_read_ahead() {
        Readahead ra(8 << 20);
        std::uint64_t offsets[] = {500 << 20, 3 << 20, 900 << 20, 100 << 20, 700 << 20, 20 << 20};
        for (auto off : offsets)
            QCOMPARE(ra.on_read(off, 4096, 1ull << 30).length(), 0u);
        QCOMPARE(ra.window(), 0u);
    }

    void slightly_out_of_order_reads_stay_sequential() {
        Readahead ra(8 << 20);
        const std::uint64_t c = 128 << 10;
        ra.on_read(0, c, 1ull << 30);
        ra.on_read(2 * c, c, 1ull << 30);
        ra.on_read(c, c, 1ull << 30);  // the kernel's parallel reads arrive shuffled
        ra.on_read(3 * c, c, 1ull << 30);
        QVERIFY(ra.window() > Readahead::kInitialWindow);
    }

    void a_stream_may_start_mid_file() {
        Readahead ra(8 << 20);
        const std::uint64_t c = 128 << 10, base = 500ull << 20;
        QCOMPARE(ra.on_read(base, c, 1ull << 30).length(), 0u);
        QCOMPARE(ra.on_read(base + c, c, 1ull << 30).length(), 0u);  // two could be chance
        QVERIFY(ra.on_read(base + 2 * c, c, 1ull << 30).length() > 0);
    }

    void stops_at_end_of_file() {
        Readahead ra(8 << 20);
        const std::uint64_t file = 300 << 10;
        std::uint64_t furthest = 0;
        for (std::uint64_t off = 0; off < file; off += 64 << 10)
            furthest = std::max(furthest, ra.on_read(off, 64 << 10, file).end);
        QVERIFY(furthest <= file);
    }
};

QTEST_APPLESS_MAIN(TestReadahead)
#include "test_readahead.moc"
