// O_DIRECT and mmap through the mount stay coherent with read and write.
#include "tests/support/mount_fixture.h"

#include <QTest>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

using namespace netfs::test;

namespace {

int open_at(const QString& path, int flags) { return ::open(path.toLocal8Bit().constData(), flags, 0644); }

} // namespace

class TestDirectAndMmap : public QObject {
    Q_OBJECT

    std::unique_ptr<MountFixture> m_;

private slots:
    void init() {
        m_ = std::make_unique<MountFixture>();
        QVERIFY2(m_->mount(), qPrintable(m_->error()));
    }
    void cleanup() {
        QVERIFY2(m_->unmount(), qPrintable(m_->error()));
        m_.reset();
    }

    void direct_and_buffered_see_each_other() {
        auto data = random_bytes(1 << 20, 1);
        QVERIFY(write_file(m_->at("d"), data));
        int buffered = open_at(m_->at("d"), O_RDWR);
        int direct = open_at(m_->at("d"), O_RDWR | O_DIRECT);
        QVERIFY(buffered >= 0 && direct >= 0);
        std::vector<std::byte> check(data.size());
        QCOMPARE(::pread(buffered, check.data(), check.size(), 0), ssize_t(check.size()));  // kernel caches it

        // Buffered write, then an O_DIRECT read sees it.
        auto a = random_bytes(8192, 2);
        QCOMPARE(::pwrite(buffered, a.data(), a.size(), 4096), ssize_t(a.size()));
        std::memcpy(data.data() + 4096, a.data(), a.size());
        Aligned buf(1 << 20);
        QCOMPARE(::pread(direct, buf.p, buf.size, 0), ssize_t(buf.size));
        QVERIFY(std::memcmp(buf.p, data.data(), data.size()) == 0);

        // O_DIRECT write, then the buffered descriptor (kept open) sees it.
        auto b = random_bytes(65536, 3);
        std::memcpy(buf.p, b.data(), b.size());
        QCOMPARE(::pwrite(direct, buf.p, b.size(), 65536), ssize_t(b.size()));
        std::memcpy(data.data() + 65536, b.data(), b.size());
        QCOMPARE(::pread(buffered, check.data(), check.size(), 0), ssize_t(check.size()));
        QVERIFY(check == data);
        QVERIFY(read_file(m_->direct("d")) == data);  // direct writes are on the remote at once
        ::close(direct);
        ::close(buffered);
    }

    void direct_io_mount_option() {
        QVERIFY(m_->unmount());
        MountFixture direct(RemoteSpec{}, {"direct_io"});
        QVERIFY2(direct.mount(), qPrintable(direct.error()));
        auto data = random_bytes(300000, 4);
        QVERIFY(write_file(direct.at("f"), data));  // unaligned I/O works with direct_io
        QVERIFY(read_file(direct.direct("f")) == data);
        QVERIFY(read_file(direct.at("f")) == data);
        QVERIFY(direct.unmount());
        QVERIFY(m_->mount());
    }

    void mmap_read_equals_read() {
        auto data = random_bytes(3 << 20, 5);
        QVERIFY(write_file(m_->direct("m"), data));
        int fd = open_at(m_->at("m"), O_RDONLY);
        QVERIFY(fd >= 0);
        void* map = ::mmap(nullptr, data.size(), PROT_READ, MAP_SHARED, fd, 0);
        QVERIFY(map != MAP_FAILED);
        QVERIFY(std::memcmp(map, data.data(), data.size()) == 0);
        ::munmap(map, data.size());
        ::close(fd);
    }

    void shared_writable_mapping_reaches_the_remote() {
        auto data = random_bytes(1 << 20, 6);
        QVERIFY(write_file(m_->at("w"), data));
        int fd = open_at(m_->at("w"), O_RDWR);
        QVERIFY(fd >= 0);
        auto* map = static_cast<std::byte*>(::mmap(nullptr, data.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
        QVERIFY(map != MAP_FAILED);
        // Stores through the mapping: msync, then read() and the remote show them.
        auto patch = random_bytes(10000, 7);
        std::memcpy(map + 123456, patch.data(), patch.size());
        std::memcpy(data.data() + 123456, patch.data(), patch.size());
        QCOMPARE(::msync(map, data.size(), MS_SYNC), 0);
        int other = open_at(m_->at("w"), O_RDONLY);
        std::vector<std::byte> back(data.size());
        QCOMPARE(::pread(other, back.data(), back.size(), 0), ssize_t(back.size()));
        QVERIFY(back == data);
        QCOMPARE(::fsync(fd), 0);
        QVERIFY(read_file(m_->direct("w")) == data);
        ::close(other);
        // write() through a descriptor: the existing mapping sees it.
        auto more = random_bytes(5000, 8);
        other = open_at(m_->at("w"), O_RDWR);
        QCOMPARE(::pwrite(other, more.data(), more.size(), 777), ssize_t(more.size()));
        QVERIFY(std::memcmp(map + 777, more.data(), more.size()) == 0);
        ::close(other);
        ::munmap(map, data.size());
        ::close(fd);
    }
};

QTEST_GUILESS_MAIN(TestDirectAndMmap)
#include "test_direct_and_mmap.moc"
