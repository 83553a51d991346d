// Concurrent readers and writers on one file, and concurrent directory
// changes: nothing torn, nothing lost.
#include "tests/support/mount_fixture.h"

#include <QDir>
#include <QTest>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <set>
#include <thread>

using namespace netfs::test;

namespace {

constexpr std::size_t kRegion = 4 << 20;
constexpr int kWriters = 4;

// What writer `w` puts at byte `i` of its region: never zero, so a reader
// can tell "not written yet" (zero) from "written" (this) from "wrong".
std::uint8_t pattern(int w, std::size_t i) { return std::uint8_t(1 + (w * 31 + i * 7 + i / 4096) % 251); }

} // namespace

class TestConcurrency : public QObject {
    Q_OBJECT
private slots:
    void writers_and_readers_on_one_file() {
        MountFixture m;
        QVERIFY2(m.mount(), qPrintable(m.error()));
        const QByteArray path = m.at("shared").toLocal8Bit();
        {
            int fd = ::open(path.constData(), O_RDWR | O_CREAT | O_TRUNC, 0644);
            QVERIFY(fd >= 0);
            QCOMPARE(::ftruncate(fd, off_t(kRegion * kWriters)), 0);
            ::close(fd);
        }
        std::atomic<bool> done{false};
        std::atomic<int> bad{0};
        std::atomic<long> reads{0};
        std::atomic<int> close_failed{0};
        std::vector<std::thread> threads;
        for (int w = 0; w < kWriters; ++w)
            threads.emplace_back([&, w] {
                int fd = ::open(path.constData(), O_RDWR);
                std::mt19937 rng(w);
                // Random-size chunks of the region, in random order.
                std::vector<std::pair<std::size_t, std::size_t>> chunks;
                for (std::size_t off = 0; off < kRegion;) {
                    const std::size_t len = std::min<std::size_t>(kRegion - off, 1 + rng() % 200000);
                    chunks.emplace_back(off, len);
                    off += len;
                }
                std::shuffle(chunks.begin(), chunks.end(), rng);
                for (auto [off, len] : chunks) {
                    std::vector<std::uint8_t> data(len);
                    for (std::size_t i = 0; i < len; ++i)
                        data[i] = pattern(w, off + i);
                    if (::pwrite(fd, data.data(), len, off_t(w * kRegion + off)) != ssize_t(len))
                        bad++;
                }
                // Its flush: a failed one leaves bytes off the server.
                if (::close(fd) != 0)
                    close_failed++;
            });
        for (int r = 0; r < 3; ++r)
            threads.emplace_back([&, r] {
                int fd = ::open(path.constData(), O_RDONLY);
                std::mt19937 rng(100 + r);
                std::vector<std::uint8_t> buf(256 << 10);
                while (!done) {
                    const std::size_t off = rng() % (kRegion * kWriters - buf.size());
                    const ssize_t n = ::pread(fd, buf.data(), buf.size(), off_t(off));
                    if (n != ssize_t(buf.size())) {
                        bad++;
                        continue;
                    }
                    reads++;
                    for (std::size_t i = 0; i < buf.size(); ++i) {
                        const std::size_t at = off + i;
                        const int w = int(at / kRegion);
                        if (buf[i] != 0 && buf[i] != pattern(w, at % kRegion)) {
                            bad++;
                            break;
                        }
                    }
                }
                ::close(fd);
            });
        for (int w = 0; w < kWriters; ++w)
            threads[w].join();
        done = true;
        for (std::size_t t = kWriters; t < threads.size(); ++t)
            threads[t].join();
        QCOMPARE(bad.load(), 0);
        QCOMPARE(close_failed.load(), 0);
        QVERIFY(reads > 0);
        for (const QString& p : {m.at("shared"), m.direct("shared")}) {
            auto all = read_file(p);
            QCOMPARE(all.size(), kRegion * kWriters);
            for (std::size_t i = 0; i < all.size(); ++i)
                if (std::uint8_t(all[i]) != pattern(int(i / kRegion), i % kRegion))
                    QFAIL(qPrintable(QString("%1: byte %2 is wrong").arg(p).arg(i)));
        }
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    void two_processes_write_disjoint_regions() {
        MountFixture m;
        QVERIFY2(m.mount(), qPrintable(m.error()));
        const QByteArray path = m.at("two").toLocal8Bit();
        pid_t children[2];
        for (int c = 0; c < 2; ++c) {
            children[c] = ::fork();
            if (children[c] == 0) {
                int fd = ::open(path.constData(), O_RDWR | O_CREAT, 0644);
                auto data = random_bytes(2 << 20, 50 + c);
                for (std::size_t off = 0; off < data.size(); off += 65536)
                    if (::pwrite(fd, data.data() + off, 65536, off_t(c * data.size() + off)) != 65536)
                        ::_exit(1);
                ::_exit(::close(fd) == 0 ? 0 : 2);
            }
        }
        for (pid_t child : children) {
            int status = 0;
            QCOMPARE(::waitpid(child, &status, 0), child);
            QVERIFY(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        auto want = random_bytes(2 << 20, 50);
        auto second = random_bytes(2 << 20, 51);
        want.insert(want.end(), second.begin(), second.end());
        QVERIFY(read_file(m.at("two")) == want);
        QVERIFY(read_file(m.direct("two")) == want);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    void many_threads_create_and_remove_in_one_directory() {
        MountFixture m;
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(QDir().mkdir(m.at("dir")));
        std::vector<std::thread> threads;
        std::atomic<int> bad{0};
        for (int t = 0; t < 8; ++t)
            threads.emplace_back([&, t] {
                for (int i = 0; i < 200; ++i) {
                    const QString name = m.at(QString("dir/t%1_%2").arg(t).arg(i));
                    if (!write_file(name, random_bytes(100, std::uint64_t(t * 1000 + i))))
                        bad++;
                    if (i % 2 == 1 && ::unlink(name.toLocal8Bit().constData()) != 0)  // keep the even ones
                        bad++;
                }
            });
        for (auto& th : threads)
            th.join();
        QCOMPARE(bad.load(), 0);
        const auto through = QDir(m.at("dir")).entryList(QDir::Files);
        const auto behind = QDir(m.direct("dir")).entryList(QDir::Files);
        QCOMPARE(through.size(), 8 * 100);
        QCOMPARE(std::set<QString>(through.begin(), through.end()), std::set<QString>(behind.begin(), behind.end()));
        QVERIFY(read_file(m.at("dir/t3_42")) == random_bytes(100, 3042));
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }
};

QTEST_GUILESS_MAIN(TestConcurrency)
#include "test_concurrency.moc"
