// Files past 1 GiB, sparse and dense, verified byte for byte through the
// mount (after a remount: nothing from memory) and behind it.
#include "tests/support/mount_fixture.h"

#include <QTest>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <random>

using namespace netfs::test;

namespace {

constexpr std::size_t kBlock = 1 << 20;

// Block `index` of a file generated from `seed`: made on demand, so a
// 1 GiB file never needs 1 GiB of memory in the test.
std::vector<std::byte> block(std::uint64_t seed, std::uint64_t index) {
    return random_bytes(kBlock, seed * 1000003 + index);
}

bool all_zero(const std::vector<std::byte>& v, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        if (v[i] != std::byte(0))
            return false;
    return true;
}

} // namespace

class TestLargeFiles : public QObject {
    Q_OBJECT
private slots:
    void sparse_file_past_one_gib() {
        MountFixture m;
        QVERIFY2(m.mount(), qPrintable(m.error()));
        const std::uint64_t gib = 1ull << 30;
        const std::uint64_t size = gib + kBlock + 1;
        {
            int fd = ::open(m.at("sparse").toLocal8Bit().constData(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            QVERIFY(fd >= 0);
            QCOMPARE(::pwrite(fd, block(1, 0).data(), kBlock, 0), ssize_t(kBlock));
            QCOMPARE(::pwrite(fd, block(1, 512).data(), kBlock, off_t(512) * kBlock), ssize_t(kBlock));
            QCOMPARE(::pwrite(fd, "Z", 1, off_t(size - 1)), ssize_t(1));
            QCOMPARE(::fsync(fd), 0);
            QCOMPARE(::close(fd), 0);
        }
        QVERIFY(m.remount());
        struct stat st;
        QCOMPARE(::stat(m.at("sparse").toLocal8Bit().constData(), &st), 0);
        QCOMPARE(std::uint64_t(st.st_size), size);
        int fd = ::open(m.at("sparse").toLocal8Bit().constData(), O_RDONLY);
        QVERIFY(fd >= 0);
        std::vector<std::byte> buf(kBlock);
        for (std::uint64_t i = 0; i * kBlock < size; ++i) {
            const ssize_t n = ::pread(fd, buf.data(), kBlock, off_t(i * kBlock));
            const std::size_t want = std::min<std::uint64_t>(kBlock, size - i * kBlock);
            QCOMPARE(n, ssize_t(want));
            if (i == 0 || i == 512)
                QVERIFY2(buf == block(1, i), qPrintable(QString("data block %1").arg(i)));
            else if (i * kBlock + want == size)
                QVERIFY(all_zero(buf, want - 1) && buf[want - 1] == std::byte('Z'));
            else
                QVERIFY2(all_zero(buf, want), qPrintable(QString("hole block %1 is not zero").arg(i)));
        }
        ::close(fd);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    void dense_one_gib_file() {
        MountFixture m;
        QVERIFY2(m.mount(), qPrintable(m.error()));
        const std::uint64_t blocks = 1024;
        int fd = ::open(m.at("dense").toLocal8Bit().constData(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        QVERIFY(fd >= 0);
        for (std::uint64_t i = 0; i < blocks; ++i)
            QCOMPARE(::write(fd, block(2, i).data(), kBlock), ssize_t(kBlock));
        QCOMPARE(::fsync(fd), 0);
        QCOMPARE(::close(fd), 0);
        QVERIFY(m.remount());
        for (const QString& path : {m.at("dense"), m.direct("dense")}) {
            fd = ::open(path.toLocal8Bit().constData(), O_RDONLY);
            QVERIFY(fd >= 0);
            std::vector<std::byte> buf(kBlock);
            for (std::uint64_t i = 0; i < blocks; ++i) {
                QCOMPARE(::read(fd, buf.data(), kBlock), ssize_t(kBlock));
                QVERIFY2(buf == block(2, i), qPrintable(QString("%1: block %2 differs").arg(path).arg(i)));
            }
            QCOMPARE(::read(fd, buf.data(), kBlock), ssize_t(0));
            ::close(fd);
        }
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }
};

QTEST_GUILESS_MAIN(TestLargeFiles)
#include "test_large_files.moc"
