// The nfs:// remote against a real server (nfs-ganesha on loopback), over
// NFSv3 and NFSv4: first the Backend directly (bytes, metadata, errors,
// versions), then through `netfs mount`, then bad input and a server that
// dies in the middle of a read.
#include "core/backend/remote_url.h"
#include "tests/support/ganesha_server.h"
#include "tests/support/mount_fixture.h"

#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QFileInfo>
#include <QTest>
#include <QThread>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <cstring>
#include <thread>

using namespace netfs;
using namespace netfs::test;

namespace {

std::string s(const QString& q) { return q.toStdString(); }

QByteArray bytes_of(const std::vector<std::byte>& v) {
    return QByteArray(reinterpret_cast<const char*>(v.data()), static_cast<qsizetype>(v.size()));
}

// Writes all of `data` at `offset`, continuing after short writes.
Errc write_all(BackendFile& f, std::uint64_t offset, std::span<const std::byte> data) {
    while (!data.empty()) {
        std::size_t n = 0;
        if (Errc e = f.write(offset, data, n); e != Errc::ok)
            return e;
        if (n == 0)
            return Errc::io;
        offset += n;
        data = data.subspan(n);
    }
    return Errc::ok;
}

// Reads `len` bytes at `offset` (fewer only at end of file).
Errc read_all(BackendFile& f, std::uint64_t offset, std::size_t len, std::vector<std::byte>& out) {
    out.resize(len);
    std::size_t got = 0;
    while (got < len) {
        std::size_t n = 0;
        if (Errc e = f.read(offset + got, std::span(out).subspan(got), n); e != Errc::ok)
            return e;
        if (n == 0)
            break;
        got += n;
    }
    out.resize(got);
    return Errc::ok;
}

QString fmt(Errc e) { return QString::fromStdString(std::string(name(e))); }

} // namespace

class TestNfsRemote : public QObject {
    Q_OBJECT

    GaneshaServer server_;

    // The remote at `path` below the export, over `version`.
    std::unique_ptr<Backend> open(int version, const QString& path, RemoteOptions options = {}) {
        return open_on(server_, version, path, options);
    }
    // The same on a server of the test's own.
    static std::unique_ptr<Backend> open_on(const GaneshaServer& server, int version, const QString& path = {},
                                            RemoteOptions options = {}) {
        options.nfs_version = static_cast<std::uint32_t>(version);
        std::unique_ptr<Backend> b;
        std::string message;
        const Errc e = open_remote(s(server.url(path, version)), options, b, message);
        if (e != Errc::ok)
            qWarning("open_remote: %s (%s)", message.c_str(), std::string(name(e)).c_str());
        return b;
    }

    // A fresh directory for one test row, made directly in the export.
    QString fresh_dir(const QString& name) {
        const QString rel = name + "-" + QString::number(QDateTime::currentMSecsSinceEpoch());
        QDir().mkpath(server_.direct(rel));
        return rel;
    }

    static void versions() {
        QTest::addColumn<int>("version");
        QTest::newRow("v3") << 3;
        QTest::newRow("v4") << 4;
    }

private slots:
    void initTestCase() { QVERIFY2(server_.start(), qPrintable(server_.error())); }

    void round_trip_data() { versions(); }
    // A 20 MiB random file written in odd-sized pieces at odd offsets and
    // read back the same way, compared with what the server stored.
    void round_trip() {
        QFETCH(int, version);
        const QString dir = fresh_dir("bytes");
        auto b = open(version, dir);
        QVERIFY(b);
        QVERIFY(b->limits().rsize >= 4096);
        QVERIFY(b->limits().has_file_id);
        const auto data = random_bytes(20u << 20, 1000 + static_cast<std::uint64_t>(version));
        std::unique_ptr<BackendFile> f;
        Attr attr;
        QCOMPARE(fmt(b->create("/big", 0644, O_RDWR | O_EXCL, f, attr)), fmt(Errc::ok));
        QVERIFY(S_ISREG(attr.mode));
        const std::size_t piece = 777'777;  // odd, and not a multiple of any transfer size
        for (std::size_t off = 0; off < data.size(); off += piece) {
            const std::size_t n = std::min(piece, data.size() - off);
            QCOMPARE(fmt(write_all(*f, off, std::span(data).subspan(off, n))), fmt(Errc::ok));
        }
        QCOMPARE(fmt(f->fsync(false)), fmt(Errc::ok));
        QCOMPARE(fmt(f->close()), fmt(Errc::ok));
        QCOMPARE(QFileInfo(server_.direct(dir + "/big")).size(), qint64(data.size()));
        QFile direct(server_.direct(dir + "/big"));
        QVERIFY(direct.open(QIODevice::ReadOnly));
        QVERIFY(direct.readAll() == bytes_of(data));

        QCOMPARE(fmt(b->open("/big", O_RDONLY, f)), fmt(Errc::ok));
        for (std::uint64_t off : {std::uint64_t{1}, std::uint64_t{4095}, std::uint64_t{1'048'577},
                                  std::uint64_t{(20u << 20) - 3333}}) {
            std::vector<std::byte> got;
            QCOMPARE(fmt(read_all(*f, off, 999'999, got)), fmt(Errc::ok));
            const std::size_t expect = std::min<std::size_t>(999'999, data.size() - off);
            QCOMPARE(got.size(), expect);
            QVERIFY2(std::equal(got.begin(), got.end(), data.begin() + static_cast<std::ptrdiff_t>(off)),
                     qPrintable(QString("bytes differ at offset %1").arg(off)));
        }
        std::vector<std::byte> whole;
        QCOMPARE(fmt(read_all(*f, 0, data.size() + 100, whole)), fmt(Errc::ok));
        QVERIFY(whole == data);
        std::size_t n = 1;
        std::byte one[1];
        QCOMPARE(fmt(f->read(data.size(), one, n)), fmt(Errc::ok));
        QCOMPARE(n, std::size_t{0});  // end of file
        QCOMPARE(fmt(f->close()), fmt(Errc::ok));
    }

    void metadata_data() { versions(); }
    void metadata() {
        QFETCH(int, version);
        const QString dir = fresh_dir("meta");
        auto b = open(version, dir);
        QVERIFY(b);
        Attr a, d;
        QCOMPARE(fmt(b->mkdir("/sub", 0750, d)), fmt(Errc::ok));
        QVERIFY(S_ISDIR(d.mode));
        QCOMPARE(d.mode & 07777, 0750u);
        QCOMPARE(fmt(b->mkdir("/sub", 0750, d)), fmt(Errc::exists));
        struct stat st;
        QCOMPARE(::stat(qPrintable(server_.direct(dir + "/sub")), &st), 0);
        QCOMPARE(d.file_id, std::uint64_t(st.st_ino));
        QCOMPARE(d.uid, std::uint32_t(st.st_uid));
        QCOMPARE(d.gid, std::uint32_t(st.st_gid));

        std::unique_ptr<BackendFile> f;
        QCOMPARE(fmt(b->create("/sub/f", 0640, O_WRONLY | O_EXCL, f, a)), fmt(Errc::ok));
        QCOMPARE(fmt(b->create("/sub/f", 0640, O_WRONLY | O_EXCL, f, a)), fmt(Errc::exists));
        std::unique_ptr<BackendFile> plain;
        Attr pa;
        QCOMPARE(fmt(b->create("/sub/plain", 0644, O_RDWR, plain, pa)), fmt(Errc::ok));  // O_CREAT without O_EXCL
        QCOMPARE(pa.mode & 07777, 0644u);
        QCOMPARE(fmt(plain->close()), fmt(Errc::ok));
        QCOMPARE(fmt(b->create("/sub/plain", 0600, O_RDWR, plain, pa)), fmt(Errc::ok));  // exists: opened, mode kept
        QCOMPARE(pa.mode & 07777, 0644u);
        QCOMPARE(fmt(plain->close()), fmt(Errc::ok));
        QCOMPARE(fmt(b->unlink("/sub/plain")), fmt(Errc::ok));
        QCOMPARE(fmt(b->open("/sub/f", O_RDWR, f)), fmt(Errc::ok));
        const std::string hello = "hello over nfs";
        QCOMPARE(fmt(write_all(*f, 0, std::as_bytes(std::span(hello)))), fmt(Errc::ok));
        QCOMPARE(fmt(f->getattr(a)), fmt(Errc::ok));
        QCOMPARE(a.size, std::uint64_t(hello.size()));
        QCOMPARE(fmt(f->truncate(5)), fmt(Errc::ok));
        QCOMPARE(fmt(f->close()), fmt(Errc::ok));
        QCOMPARE(fmt(b->getattr("/sub/f", a)), fmt(Errc::ok));
        QCOMPARE(a.size, std::uint64_t{5});
        QCOMPARE(a.mode & 07777, 0640u);
        QVERIFY(S_ISREG(a.mode));

        // symlink and readlink; getattr does not follow the link
        Attr l;
        QCOMPARE(fmt(b->symlink("f", "/sub/l", l)), fmt(Errc::ok));
        QVERIFY(S_ISLNK(l.mode));
        std::string target;
        QCOMPARE(fmt(b->readlink("/sub/l", target)), fmt(Errc::ok));
        QCOMPARE(QString::fromStdString(target), QString("f"));
        QCOMPARE(fmt(b->open("/sub/l", O_RDONLY, f)), fmt(Errc::loop));  // never follows the last component
        // hard link: same file id, two links
        Attr h;
        QCOMPARE(fmt(b->link("/sub/f", "/sub/h", h)), fmt(Errc::ok));
        QCOMPARE(h.file_id, a.file_id);
        QCOMPARE(h.nlink, 2u);

        std::vector<DirEntry> entries;
        QCOMPARE(fmt(b->readdir("/sub", entries)), fmt(Errc::ok));
        std::sort(entries.begin(), entries.end(), [](auto& x, auto& y) { return x.name < y.name; });
        QCOMPARE(entries.size(), std::size_t{3});
        QCOMPARE(QString::fromStdString(entries[0].name), QString("f"));
        QVERIFY(S_ISREG(entries[0].attr.mode));
        QCOMPARE(entries[0].attr.size, std::uint64_t{5});
        QCOMPARE(entries[0].attr.file_id, a.file_id);
        QCOMPARE(entries[0].attr.mode & 07777, 0640u);
        QCOMPARE(QString::fromStdString(entries[2].name), QString("l"));
        QVERIFY(S_ISLNK(entries[2].attr.mode));

        // setattr: mode, owner, size, times
        SetAttr change;
        change.mask = SetAttr::kMode | SetAttr::kUid | SetAttr::kGid | SetAttr::kSize | SetAttr::kMtime;
        change.mode = 0600;
        change.uid = 1234;
        change.gid = 2345;
        change.size = 3;
        change.mtime = {1'600'000'000, 123'456'000};
        QCOMPARE(fmt(b->setattr("/sub/f", change, a)), fmt(Errc::ok));
        QCOMPARE(a.mode & 07777, 0600u);
        QCOMPARE(a.uid, 1234u);
        QCOMPARE(a.gid, 2345u);
        QCOMPARE(a.size, std::uint64_t{3});
        QCOMPARE(a.mtime.tv_sec, time_t{1'600'000'000});
        QCOMPARE(a.mtime.tv_nsec, 123'456'000L);
        QCOMPARE(::stat(qPrintable(server_.direct(dir + "/sub/f")), &st), 0);
        QCOMPARE(st.st_uid, uid_t{1234});
        QCOMPARE(st.st_mode & 07777, 0600u);
        QCOMPARE(st.st_size, off_t{3});

        // times set to "now" by the server's clock
        change.mask = SetAttr::kAtimeNow | SetAttr::kMtimeNow;
        const time_t started = ::time(nullptr);
        QCOMPARE(fmt(b->setattr("/sub/f", change, a)), fmt(Errc::ok));
        QVERIFY2(a.mtime.tv_sec >= started - 5 && a.mtime.tv_sec <= started + 5, qPrintable(QString::number(a.mtime.tv_sec)));

        // a directory's attributes (over NFSv4 libnfs 4.0 cannot: the backend's own SETATTR)
        SetAttr dir_change;
        dir_change.mask = SetAttr::kMode | SetAttr::kUid | SetAttr::kGid | SetAttr::kMtime;
        dir_change.mode = 01777;
        dir_change.uid = 4321;
        dir_change.gid = 5432;
        dir_change.mtime = {1'500'000'000, 0};
        Attr dir_after;
        QCOMPARE(fmt(b->setattr("/sub", dir_change, dir_after)), fmt(Errc::ok));
        QCOMPARE(dir_after.mode & 07777, 01777u);
        QVERIFY(S_ISDIR(dir_after.mode));
        QCOMPARE(::stat(qPrintable(server_.direct(dir + "/sub")), &st), 0);
        QCOMPARE(st.st_mode & 07777, 01777u);
        QCOMPARE(st.st_uid, uid_t{4321});
        QCOMPARE(st.st_gid, gid_t{5432});
        QCOMPARE(st.st_mtim.tv_sec, time_t{1'500'000'000});
        dir_change.mask = SetAttr::kMode;
        dir_change.mode = 0755;
        QCOMPARE(fmt(b->setattr("/sub", dir_change, dir_after)), fmt(Errc::ok));

        // special files
        Attr node;
        if (version == 3) {
            QCOMPARE(fmt(b->mknod("/sub/fifo", S_IFIFO | 0644, 0, node)), fmt(Errc::ok));
            QVERIFY(S_ISFIFO(node.mode));
            QCOMPARE(::stat(qPrintable(server_.direct(dir + "/sub/fifo")), &st), 0);
            QVERIFY(S_ISFIFO(st.st_mode));
            QCOMPARE(fmt(b->unlink("/sub/fifo")), fmt(Errc::ok));
        } else {
            // libnfs 4.0 makes no FIFOs over NFSv4, and device nodes without their numbers
            QCOMPARE(fmt(b->mknod("/sub/fifo", S_IFIFO | 0644, 0, node)), fmt(Errc::not_supported));
            QCOMPARE(fmt(b->mknod("/sub/null", S_IFCHR | 0644, makedev(1, 3), node)), fmt(Errc::not_supported));
        }
        QCOMPARE(fmt(b->mknod("/sub/plain", S_IFREG | 0600, 0, node)), fmt(Errc::ok));
        QVERIFY(S_ISREG(node.mode));
        QCOMPARE(node.size, std::uint64_t{0});
        QCOMPARE(fmt(b->unlink("/sub/plain")), fmt(Errc::ok));

        // rename, and what rename cannot do
        QCOMPARE(fmt(b->rename("/sub/f", "/sub/g", 0)), fmt(Errc::ok));
        QCOMPARE(fmt(b->getattr("/sub/f", a)), fmt(Errc::not_found));
        QCOMPARE(fmt(b->getattr("/sub/g", a)), fmt(Errc::ok));
        QCOMPARE(fmt(b->rename("/sub/g", "/sub/h", RENAME_NOREPLACE)), fmt(Errc::not_supported));

        // errors a user relies on
        QCOMPARE(fmt(b->rmdir("/sub")), fmt(Errc::not_empty));
        QCOMPARE(fmt(b->unlink("/nope")), fmt(Errc::not_found));
        QCOMPARE(fmt(b->getattr("/sub/g/x", a)), fmt(Errc::not_dir));
        QCOMPARE(fmt(b->open("/nope", O_RDONLY, f)), fmt(Errc::not_found));

        for (const char* name : {"/sub/g", "/sub/h", "/sub/l"})
            QCOMPARE(fmt(b->unlink(name)), fmt(Errc::ok));
        QCOMPARE(fmt(b->rmdir("/sub")), fmt(Errc::ok));
        QVERIFY(!QFileInfo::exists(server_.direct(dir + "/sub")));
    }

    void same_file_opened_twice_data() { versions(); }
    // Two handles of one file on one connection: over NFSv4 they share the
    // server's open state, so neither a second OPEN nor the first CLOSE may
    // break the other handle.
    void same_file_opened_twice() {
        QFETCH(int, version);
        const QString dir = fresh_dir("twice");
        RemoteOptions options;
        options.connections = 1;
        auto b = open(version, dir, options);
        QVERIFY(b);
        std::unique_ptr<BackendFile> first, second;
        Attr a;
        QCOMPARE(fmt(b->create("/f", 0644, O_RDWR | O_EXCL, first, a)), fmt(Errc::ok));
        const auto one = random_bytes(10'000, 1), two = random_bytes(10'000, 2);
        QCOMPARE(fmt(write_all(*first, 0, one)), fmt(Errc::ok));
        QCOMPARE(fmt(b->open("/f", O_RDONLY, second)), fmt(Errc::ok));
        QCOMPARE(fmt(write_all(*first, 10'000, two)), fmt(Errc::ok));  // after the second OPEN
        std::vector<std::byte> got;
        QCOMPARE(fmt(read_all(*second, 0, 20'000, got)), fmt(Errc::ok));
        QVERIFY(std::equal(one.begin(), one.end(), got.begin()));
        QVERIFY(std::equal(two.begin(), two.end(), got.begin() + 10'000));
        QCOMPARE(fmt(first->close()), fmt(Errc::ok));
        QCOMPARE(fmt(read_all(*second, 5'000, 10'000, got)), fmt(Errc::ok));  // after the first CLOSE
        QCOMPARE(got.size(), std::size_t{10'000});
        QVERIFY(std::equal(one.begin() + 5'000, one.end(), got.begin()));
        QVERIFY(std::equal(two.begin(), two.begin() + 5'000, got.begin() + 5'000));
        // truncate by path while open elsewhere
        SetAttr change;
        change.mask = SetAttr::kSize;
        change.size = 100;
        QCOMPARE(fmt(b->setattr("/f", change, a)), fmt(Errc::ok));
        QCOMPARE(a.size, std::uint64_t{100});
        QCOMPARE(fmt(read_all(*second, 0, 1000, got)), fmt(Errc::ok));
        QCOMPARE(got.size(), std::size_t{100});
        QCOMPARE(fmt(second->close()), fmt(Errc::ok));
    }

    void reads_see_changes_made_elsewhere_data() { versions(); }
    // A handle's reads come from the server every time: after the file was
    // truncated by path and grown again, and after another client rewrote
    // it, the same handle reads the new bytes. (libnfs 4.0 kept, for a file
    // it opened, the pages of a read that was not page-aligned and answered
    // the next read starting in them from that copy: the old bytes, in
    // test_fsx over NFSv3.)
    void reads_see_changes_made_elsewhere() {
        QFETCH(int, version);
        const QString dir = fresh_dir("fresh");
        RemoteOptions options;
        options.connections = 1;
        auto b = open(version, dir, options);
        QVERIFY(b);
        std::unique_ptr<BackendFile> f;
        Attr a;
        QCOMPARE(fmt(b->create("/f", 0644, O_RDWR | O_EXCL, f, a)), fmt(Errc::ok));
        QCOMPARE(fmt(f->close()), fmt(Errc::ok));
        QCOMPARE(fmt(b->open("/f", O_RDWR, f)), fmt(Errc::ok));
        const auto old_bytes = random_bytes(4096, 3);  // one whole page
        QCOMPARE(fmt(write_all(*f, 4096, old_bytes)), fmt(Errc::ok));
        std::vector<std::byte> got;
        QCOMPARE(fmt(read_all(*f, 4100, 4000, got)), fmt(Errc::ok));
        QVERIFY(std::equal(got.begin(), got.end(), old_bytes.begin() + 4));

        SetAttr change;
        change.mask = SetAttr::kSize;
        change.size = 0;
        QCOMPARE(fmt(b->setattr("/f", change, a)), fmt(Errc::ok));
        change.size = 8192;
        QCOMPARE(fmt(b->setattr("/f", change, a)), fmt(Errc::ok));
        QCOMPARE(fmt(read_all(*f, 4100, 4000, got)), fmt(Errc::ok));
        QCOMPARE(got.size(), std::size_t{4000});
        QVERIFY2(std::all_of(got.begin(), got.end(), [](std::byte c) { return c == std::byte{0}; }),
                 "the old bytes were read back after a truncate down and up");

        const auto new_bytes = random_bytes(8192, 4);
        {
            QFile other(server_.direct(dir + "/f"));
            QVERIFY(other.open(QIODevice::ReadWrite));  // the same file, rewritten in place
            QCOMPARE(other.write(bytes_of(new_bytes)), qint64(new_bytes.size()));
        }
        QCOMPARE(fmt(read_all(*f, 4100, 4000, got)), fmt(Errc::ok));
        QVERIFY2(std::equal(got.begin(), got.end(), new_bytes.begin() + 4100),
                 "a change made by another client was not read");
        QCOMPARE(fmt(f->close()), fmt(Errc::ok));
    }

    void version_changes_data() { versions(); }
    // Cached data is keyed by Version: a write through another client must change it.
    void version_changes() {
        QFETCH(int, version);
        const QString dir = fresh_dir("version");
        auto b = open(version, dir);
        QVERIFY(b);
        std::unique_ptr<BackendFile> f;
        Attr before, after;
        QCOMPARE(fmt(b->create("/v", 0644, O_WRONLY | O_EXCL, f, before)), fmt(Errc::ok));
        QCOMPARE(fmt(f->close()), fmt(Errc::ok));
        QThread::msleep(20);
        QFile other(server_.direct(dir + "/v"));
        QVERIFY(other.open(QIODevice::WriteOnly));
        other.write("x");
        other.close();
        QCOMPARE(fmt(b->getattr("/v", after)), fmt(Errc::ok));
        QVERIFY(!(Version::of(before) == Version::of(after)));
        if (b->limits().has_change_attr)
            QVERIFY(before.change != after.change);
        else
            QVERIFY(after.mtime.tv_sec != before.mtime.tv_sec || after.mtime.tv_nsec != before.mtime.tv_nsec);
    }

    void concurrent_data() { versions(); }
    // Many engine threads at once on one backend (the contract allows
    // max_in_flight): each creates, writes, reads back, lists, sets the
    // times and mode of (as reintegration does with its uploads, while
    // other files open and close on the same connections), renames and
    // removes its own files, and every byte and attribute is checked.
    void concurrent() {
        QFETCH(int, version);
        const QString dir = fresh_dir("concurrent");
        auto b = open(version, dir);
        QVERIFY(b);
        constexpr int kThreads = 16, kRounds = 8;
        std::atomic<int> failures{0};
        QString first_failure;
        std::mutex failure_mu;
        auto fail = [&](const QString& what) {
            std::lock_guard lk(failure_mu);
            if (failures++ == 0)
                first_failure = what;
        };
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t) {
            threads.emplace_back([&, t] {
                for (int r = 0; r < kRounds; ++r) {
                    const std::string name = "/t" + std::to_string(t) + "-" + std::to_string(r);
                    const auto data = random_bytes(100'000 + static_cast<std::size_t>(t * 1000 + r), t * 100 + r);
                    std::unique_ptr<BackendFile> f;
                    Attr a;
                    const char* step = "create";
                    Errc e = b->create(name, 0644, O_RDWR | O_EXCL, f, a);
                    std::vector<std::byte> back;
                    std::vector<DirEntry> entries;
                    SetAttr stamp;
                    stamp.mask = SetAttr::kMode | SetAttr::kMtime | SetAttr::kAtime;
                    stamp.mode = 0600;
                    stamp.mtime = stamp.atime = timespec{1'500'000'000 + t * 100 + r, 0};
                    if (e == Errc::ok && (step = "write", e = write_all(*f, 0, data)) == Errc::ok &&
                        (step = "read", e = read_all(*f, 0, data.size(), back)) == Errc::ok &&
                        (step = "compare", e = back == data ? Errc::ok : Errc::io) == Errc::ok &&
                        (step = "close", e = f->close()) == Errc::ok &&
                        (step = "setattr", e = b->setattr(name, stamp, a)) == Errc::ok &&
                        (step = "attributes", e = (a.mode & 07777) == 0600 && a.mtime.tv_sec == stamp.mtime.tv_sec
                                                      ? Errc::ok
                                                      : Errc::io) == Errc::ok &&
                        (step = "readdir", e = b->readdir("/", entries)) == Errc::ok &&
                        (step = "rename", e = b->rename(name, name + ".done", 0)) == Errc::ok &&
                        (step = "getattr", e = b->getattr(name + ".done", a)) == Errc::ok &&
                        (step = "size", e = a.size == data.size() ? Errc::ok : Errc::io) == Errc::ok)
                        (step = "unlink", e = b->unlink(name + ".done"));
                    if (e != Errc::ok)
                        fail(QString::fromStdString(name) + ": " + step + ": " + fmt(e));
                }
            });
        }
        for (auto& t : threads)
            t.join();
        QVERIFY2(failures == 0, qPrintable(QString("%1 failures, first %2").arg(failures.load()).arg(first_failure)));
        std::vector<DirEntry> entries;
        QCOMPARE(fmt(b->readdir("/", entries)), fmt(Errc::ok));
        QCOMPARE(entries.size(), std::size_t{0});
    }

    void large_directory_data() { versions(); }
    // A listing longer than one READDIR(PLUS) reply, with every entry's attributes.
    void large_directory() {
        QFETCH(int, version);
        const QString dir = fresh_dir("large");
        for (int i = 0; i < 1500; ++i) {
            QFile f(server_.direct(dir + "/entry-with-a-longish-name-" + QString::number(i)));
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write(QByteArray(i % 7, 'x'));
        }
        auto b = open(version, dir);
        QVERIFY(b);
        std::vector<DirEntry> entries;
        QCOMPARE(fmt(b->readdir("/", entries)), fmt(Errc::ok));
        QCOMPARE(entries.size(), std::size_t{1500});
        for (const DirEntry& e : entries) {
            const int i = QString::fromStdString(e.name).section('-', -1).toInt();
            QCOMPARE(e.attr.size, std::uint64_t(i % 7));
            struct stat st;
            QCOMPARE(::lstat(qPrintable(server_.direct(dir + "/" + QString::fromStdString(e.name))), &st), 0);
            QCOMPARE(e.attr.file_id, std::uint64_t(st.st_ino));
            QVERIFY(S_ISREG(e.attr.mode));
        }
    }

    void statfs_data() { versions(); }
    void statfs() {
        QFETCH(int, version);
        auto b = open(version, QString());
        QVERIFY(b);
        StatFs fs;
        QCOMPARE(fmt(b->statfs(fs)), fmt(Errc::ok));
        QVERIFY(fs.blocks > 0);
        QVERIFY(fs.blocks_free <= fs.blocks);
        QVERIFY(fs.block_size > 0);
        QCOMPARE(b->connection_state(), ConnectionState::connected);
    }

    void open_errors_data() {
        QTest::addColumn<int>("version");
        QTest::addColumn<QString>("url");
        QTest::addColumn<QString>("words");
        for (int v : {3, 4}) {
            const QString tag = "v" + QString::number(v) + " ";
            QTest::newRow(qPrintable(tag + "missing path")) << v << server_.url("no/such/dir", v) << "does not exist";
            QTest::newRow(qPrintable(tag + "nothing listens"))
                << v << QString("nfs://127.0.0.1/x?nfsport=1&mountport=1&version=%1").arg(v) << "cannot reach";
        }
        QDir().mkpath(server_.direct("private"));
        QFile::setPermissions(server_.direct("private"), QFile::ReadOwner | QFile::WriteOwner | QFile::ExeOwner);
        for (int v : {3, 4})
            QTest::newRow(qPrintable("v" + QString::number(v) + " permission denied"))
                << v << server_.url("private", v) + "&uid=65534&gid=65534" << "permission denied";
        QTest::newRow("v3 no such export") << 3 << server_.url().replace("/export", "/nope") << "no export";
        QTest::newRow("v4 no such export") << 4 << server_.url({}, 4).replace("/export", "/nope") << "does not exist";
    }
    // One line that says what is wrong, quickly.
    void open_errors() {
        QFETCH(int, version);
        QFETCH(QString, url);
        QFETCH(QString, words);
        RemoteOptions options;
        options.nfs_version = static_cast<std::uint32_t>(version);
        std::unique_ptr<Backend> b;
        std::string message;
        QElapsedTimer clock;
        clock.start();
        const Errc e = open_remote(s(url), options, b, message);
        QVERIFY(e != Errc::ok);
        QVERIFY(!b);
        QVERIFY2(clock.elapsed() < 10000, qPrintable(QString::number(clock.elapsed())));
        const QString m = QString::fromStdString(message);
        QVERIFY2(m.contains(words), qPrintable(m));
        QVERIFY2(!m.contains('\n'), qPrintable(m));
    }

    void through_mount_data() { versions(); }
    // A real mount: a file copied in lands on the server byte for byte, one
    // written on the server reads back through the mount, and a directory
    // listing and rename show on both sides.
    void through_mount() {
        QFETCH(int, version);
        const QString dir = fresh_dir("mount");
        MountFixture m(RemoteSpec{"nfs", QString(), server_.url(dir, version), server_.direct(dir)},
                       {"nfs_version=" + QString::number(version)});
        QVERIFY2(m.mount(), qPrintable(m.error()));
        const auto in = random_bytes((8u << 20) + 12345, 500 + static_cast<std::uint64_t>(version));
        QVERIFY(write_file(m.at("copied"), in));
        int fd = ::open(qPrintable(m.at("copied")), O_RDONLY);
        QVERIFY(fd >= 0);
        QCOMPARE(::fsync(fd), 0);
        ::close(fd);
        QVERIFY(read_file(m.direct("copied")) == in);
        QVERIFY(read_file(m.at("copied")) == in);

        const auto out = random_bytes((5u << 20) + 777, 600 + static_cast<std::uint64_t>(version));
        QVERIFY(write_file(server_.direct(dir + "/from-server"), out));
        QVERIFY(read_file(m.at("from-server")) == out);

        QVERIFY(QDir().mkdir(m.at("d")));
        QVERIFY(QFile::rename(m.at("copied"), m.at("d/renamed")));
        QVERIFY(QFileInfo(server_.direct(dir + "/d/renamed")).isFile());
        QCOMPARE(QDir(m.mountpoint()).entryList(QDir::AllEntries | QDir::NoDotAndDotDot),
                 (QStringList{"d", "from-server"}));
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    void a_path_through_a_symbolic_link_data() {
        QTest::addColumn<int>("version");
        QTest::addColumn<QString>("via");  // the URL's path below the test's directory
        QTest::addColumn<QString>("refused");  // words of the one-line refusal, or empty
        for (int v : {3, 4}) {
            const QString tag = "v" + QString::number(v);
            QTest::newRow(qPrintable(tag + " link in the middle")) << v << "link/inner" << "";
            QTest::newRow(qPrintable(tag + " link last")) << v << "link-to-inner" << "";
            QTest::newRow(qPrintable(tag + " absolute link")) << v << "absolute/inner" << "";
        }
        // Over NFSv3 an absolute target is a path of the server's, outside
        // the export here; over NFSv4 it is looked for in the server's tree.
        QTest::newRow("v3 link out of the export") << 3 << "out/x" << "outside export";
        QTest::newRow("v4 link out of the export") << 4 << "out/x" << "does not exist";
    }
    // A URL whose path goes through a symbolic link on the server (a
    // home directory reached through /home -> /srv/home, say) is the
    // directory the link leads to, as for a kernel mount: every change
    // works there, and the server's copy in the real directory shows it.
    // Before, over NFSv4 a link on the way was refused as missing, and
    // below a link at the end attributes failed with EIO (the backend's own
    // requests walk the path with LOOKUPs, which stop at a link); over
    // NFSv3 a link at the end was refused as not a directory.
    void a_path_through_a_symbolic_link() {
        QFETCH(int, version);
        QFETCH(QString, via);
        QFETCH(QString, refused);
        const QString dir = fresh_dir("linked");
        QVERIFY(QDir().mkpath(server_.direct(dir + "/real/inner")));
        QCOMPARE(::symlink("real", qPrintable(server_.direct(dir + "/link"))), 0);
        QCOMPARE(::symlink("real/inner", qPrintable(server_.direct(dir + "/link-to-inner"))), 0);
        // (ganesha's NFSv4 tree shows the export at its own path)
        QCOMPARE(::symlink(qPrintable(QDir::cleanPath(server_.direct(dir + "/real"))),
                           qPrintable(server_.direct(dir + "/absolute"))),
                 0);
        QVERIFY(QDir().mkpath(server_.direct(dir + "/../../elsewhere/x")));
        QCOMPARE(::symlink(qPrintable(QDir::cleanPath(server_.direct(dir + "/../../elsewhere"))),
                           qPrintable(server_.direct(dir + "/out"))),
                 0);
        const QString real = server_.direct(dir + "/real/inner");
        const auto data = random_bytes(10000, 70 + static_cast<std::uint64_t>(version));
        QVERIFY(write_file(real + "/there", data));

        if (!refused.isEmpty()) {
            RemoteOptions options;
            options.nfs_version = static_cast<std::uint32_t>(version);
            std::unique_ptr<Backend> b;
            std::string message;
            QVERIFY(open_remote(s(server_.url(dir + "/" + via, version)), options, b, message) != Errc::ok);
            QVERIFY2(QString::fromStdString(message).contains(refused), message.c_str());
            QVERIFY2(message.find('\n') == std::string::npos, message.c_str());
            return;
        }
        auto b = open(version, dir + "/" + via);
        QVERIFY(b);
        Attr a;
        QCOMPARE(fmt(b->getattr("/there", a)), fmt(Errc::ok));
        QCOMPARE(a.size, std::uint64_t(data.size()));
        std::unique_ptr<BackendFile> f;
        QCOMPARE(fmt(b->create("/made", 0644, O_RDWR | O_EXCL, f, a)), fmt(Errc::ok));
        const std::string hello = "made through a link";
        QCOMPARE(fmt(write_all(*f, 0, std::as_bytes(std::span(hello)))), fmt(Errc::ok));
        QCOMPARE(fmt(f->close()), fmt(Errc::ok));

        SetAttr change;
        change.mask = SetAttr::kMode | SetAttr::kSize | SetAttr::kMtime;
        change.mode = 0600;
        change.size = 4;
        change.mtime = {1600000000, 0};
        QCOMPARE(fmt(b->setattr("/made", change, a)), fmt(Errc::ok));
        QCOMPARE(a.mode & 07777, 0600u);
        QCOMPARE(a.size, std::uint64_t{4});
        QCOMPARE(a.mtime.tv_sec, time_t{1600000000});
        change.mask = SetAttr::kMode;
        change.mode = 0700;
        QCOMPARE(fmt(b->setattr("/", change, a)), fmt(Errc::ok));  // the root itself
        QCOMPARE(a.mode & 07777, 0700u);

        struct stat st;
        QCOMPARE(::stat(qPrintable(real + "/made"), &st), 0);
        QCOMPARE(st.st_mode & 07777, 0600u);
        QCOMPARE(st.st_size, off_t{4});
        QCOMPARE(st.st_mtim.tv_sec, time_t{1600000000});
        const std::string kept = hello.substr(0, 4);
        QCOMPARE(read_file(real + "/made"), std::vector<std::byte>(std::as_bytes(std::span(kept)).begin(),
                                                                    std::as_bytes(std::span(kept)).end()));
        QCOMPARE(::stat(qPrintable(real), &st), 0);
        QCOMPARE(st.st_mode & 07777, 0700u);
        QVERIFY(QFileInfo(server_.direct(dir + "/link")).isSymLink());  // the links stay links
        QVERIFY(QFileInfo(server_.direct(dir + "/link-to-inner")).isSymLink());
    }

    void mount_rejects_data() {
        QTest::addColumn<QString>("url");
        QTest::addColumn<QString>("words");
        for (int v : {3, 4}) {
            const QString tag = "v" + QString::number(v) + " ";
            QTest::newRow(qPrintable(tag + "no such export"))
                << server_.url({}, v).replace("/export", "/nope") << (v == 3 ? "no export" : "does not exist");
            QTest::newRow(qPrintable(tag + "no such path")) << server_.url("no/such", v) << "does not exist";
            QTest::newRow(qPrintable(tag + "nothing listens"))
                << QString("nfs://127.0.0.1/x?nfsport=1&mountport=1&version=%1").arg(v) << "cannot reach";
        }
    }
    // `netfs mount` with a bad nfs:// remote: one line on stderr, a failure
    // exit, nothing mounted, within 10 s.
    void mount_rejects() {
        QFETCH(QString, url);
        QFETCH(QString, words);
        QTemporaryDir dir;
        const QString mnt = dir.path() + "/mnt";
        QVERIFY(QDir().mkpath(mnt));
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.insert("XDG_CONFIG_HOME", dir.path() + "/config");
        env.insert("XDG_CACHE_HOME", dir.path() + "/cache");
        RunResult r = run(NETFS_BINARY, {"mount", url, mnt}, 20000, env);
        QVERIFY2(r.exit_code != -1, "netfs hung");
        QVERIFY2(r.seconds < 10, qPrintable(QString("took %1 s").arg(r.seconds)));
        QVERIFY(r.exit_code != 0);
        const QStringList lines = r.err.trimmed().split('\n');
        QVERIFY2(lines.size() == 1, qPrintable(r.err));
        QVERIFY2(lines[0].contains(words), qPrintable(lines[0]));
        QVERIFY(!is_mountpoint(mnt));
    }

    // NFSv4 only: a server that restarts refuses new opens during its grace
    // period (NFS4ERR_GRACE), which libnfs 4.0 reports like a failure. The
    // backend asks again until the grace period is over, as a kernel client
    // does: no failure for the engine to pass on (a mkdir lost in flight is
    // not asked again), at most a transient error while it reconnects.
    void the_grace_period_is_waited_out() {
        GaneshaServer server;
        server.set_lease_seconds(5);
        server.set_grace_seconds(5);
        QVERIFY2(server.start(), qPrintable(server.error()));
        const auto data = random_bytes(20'000, 99);
        QVERIFY(write_file(server.direct("f"), data));
        auto b = open_on(server, 4);
        QVERIFY(b);
        std::unique_ptr<BackendFile> f;
        QCOMPARE(fmt(b->open("/f", O_RDONLY, f)), fmt(Errc::ok));  // this client is known to the server
        QCOMPARE(fmt(f->close()), fmt(Errc::ok));
        server.kill();
        QVERIFY2(server.restart(), qPrintable(server.error()));
        QElapsedTimer clock;
        clock.start();
        Errc e;
        int asked_again = 0;
        while (is_transient(e = b->open("/f", O_RDONLY, f)) && clock.elapsed() < 30000) {
            asked_again += e == Errc::again;
            QThread::msleep(100);
        }
        QCOMPARE(fmt(e), fmt(Errc::ok));
        QCOMPARE(asked_again, 0);
        QVERIFY2(clock.elapsed() >= 2000, "the open met the grace period");  // 5 s from the restart
        std::vector<std::byte> got;
        QCOMPARE(fmt(read_all(*f, 0, data.size(), got)), fmt(Errc::ok));
        QVERIFY(got == data);
        QCOMPARE(fmt(f->close()), fmt(Errc::ok));
    }

    // NFSv4 only (NFSv3 has no open state): libnfs 4.0 renews no lease, so
    // a file left open and idle past it loses its state on the server. The
    // next read fails over (a transient error the engine retries) and the
    // one after reads the right bytes through a new client.
    void lease_expiry() {
        GaneshaServer short_lease;
        short_lease.set_lease_seconds(5);
        QVERIFY2(short_lease.start(), qPrintable(short_lease.error()));
        const auto data = random_bytes(300'000, 4242);
        QVERIFY(write_file(short_lease.direct("f"), data));
        auto b = open_on(short_lease, 4);
        QVERIFY(b);
        std::unique_ptr<BackendFile> f;
        QCOMPARE(fmt(b->open("/f", O_RDONLY, f)), fmt(Errc::ok));
        std::vector<std::byte> got;
        QCOMPARE(fmt(read_all(*f, 0, data.size(), got)), fmt(Errc::ok));
        QVERIFY(got == data);
        QThread::sleep(15);  // three leases
        QElapsedTimer clock;
        clock.start();
        int transient = 0;
        Errc e;
        while (is_transient(e = read_all(*f, 0, data.size(), got)) && clock.elapsed() < 10000) {
            ++transient;
            QThread::msleep(50);
        }
        QCOMPARE(fmt(e), fmt(Errc::ok));
        QVERIFY(got == data);
        qInfo("after the lease expired: %d transient errors, right bytes after %lld ms", transient, clock.elapsed());
    }

    // The tests below stop the server; each leaves it running again.

    void an_export_spanning_file_systems_data() {
        QTest::addColumn<QString>("remote");
        QTest::newRow("file") << "file";
        QTest::newRow("v3") << "nfs3";
        QTest::newRow("v4") << "nfs4";
    }
    // A remote directory with another file system mounted below it (ZFS
    // datasets under an exported /home, a crossmnt export, a file:// of a
    // directory holding mounts): the two number their inodes alike, so file
    // ids alone would make different files one (hard links to the engine):
    // a name vanished (ENOENT) and another's bytes could be read in its
    // place. Both tmpfs here, so ids collide for certain: the roots are
    // inode 1, and the first files 2, 3...
    void an_export_spanning_file_systems() {
        QFETCH(QString, remote);
        struct Unmounts {
            QStringList paths;
            ~Unmounts() {
                for (auto it = paths.rbegin(); it != paths.rend(); ++it)
                    ::umount2(qPrintable(*it), MNT_DETACH);
            }
        } unmounts;  // after the server has stopped (declared before it)
        GaneshaServer server;
        const QString top = server.export_dir(), below = top + "/below";
        QCOMPARE(::mount("tmpfs", qPrintable(top), "tmpfs", 0, "size=16m"), 0);
        unmounts.paths << top;
        QVERIFY(QDir().mkdir(below));
        QCOMPARE(::mount("tmpfs", qPrintable(below), "tmpfs", 0, "size=16m"), 0);
        unmounts.paths << below;
        const auto a = random_bytes(3000, 1), b = random_bytes(5000, 2), c = random_bytes(7000, 3);
        QVERIFY(write_file(top + "/a", a));
        QVERIFY(write_file(below + "/b", b));
        QVERIFY(write_file(below + "/c", c));
        struct stat st_top, st_below, st_a, st_c;
        QCOMPARE(::stat(qPrintable(top), &st_top), 0);
        QCOMPARE(::stat(qPrintable(below), &st_below), 0);
        QCOMPARE(::stat(qPrintable(top + "/a"), &st_a), 0);
        QCOMPARE(::stat(qPrintable(below + "/c"), &st_c), 0);
        QVERIFY(st_top.st_dev != st_below.st_dev);
        QCOMPARE(st_top.st_ino, st_below.st_ino);  // the collisions this test is about
        QCOMPARE(st_a.st_ino, st_c.st_ino);
        // ganesha serves only the file systems mounted when it started.
        QVERIFY2(server.start(), qPrintable(server.error()));

        RemoteSpec spec{remote, QString(), "file://" + top, top};
        if (remote != "file")
            spec.url = server.url({}, remote == "nfs3" ? 3 : 4);
        MountFixture m(spec, remote == "nfs4" ? QStringList{"nfs_version=4"} : QStringList{});
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QCOMPARE(QDir(m.mountpoint()).entryList(QDir::AllEntries | QDir::NoDotAndDotDot),
                 (QStringList{"a", "below"}));
        QCOMPARE(QDir(m.at("below")).entryList(QDir::AllEntries | QDir::NoDotAndDotDot), (QStringList{"b", "c"}));
        QCOMPARE(read_file(m.at("a")), a);
        QCOMPARE(read_file(m.at("below/c")), c);
        QCOMPARE(read_file(m.at("a")), a);
        QCOMPARE(read_file(m.at("below/b")), b);
        struct stat ma, mc;
        QCOMPARE(::stat(qPrintable(m.at("a")), &ma), 0);
        QCOMPARE(::stat(qPrintable(m.at("below/c")), &mc), 0);
        QVERIFY(ma.st_ino != mc.st_ino);
        QCOMPARE(ma.st_size, 3000);
        QCOMPARE(mc.st_size, 7000);
        QVERIFY(QFileInfo(m.at("below")).isDir());

        // Changes on either side land where they belong.
        const auto a2 = random_bytes(4000, 4), d = random_bytes(6000, 5);
        QVERIFY(write_file(m.at("a"), a2));
        QVERIFY(write_file(m.at("below/d"), d));
        QVERIFY2(m.unmount(), qPrintable(m.error()));
        QCOMPARE(read_file(top + "/a"), a2);
        QCOMPARE(read_file(below + "/d"), d);
        QCOMPARE(read_file(below + "/c"), c);
        QVERIFY2(m.mount(), qPrintable(m.error()));  // the cache, after a remount
        QCOMPARE(read_file(m.at("below/c")), c);
        QCOMPARE(read_file(m.at("a")), a2);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    void server_dies_mid_read_data() { versions(); }
    // Killed while a reader is in the middle of a file and restarted a second
    // later: every read that succeeds has the right bytes, and the reader,
    // retrying transient errors as the engine does, finishes once the
    // server is back.
    void server_dies_mid_read() {
        QFETCH(int, version);
        const QString dir = fresh_dir("crash");
        const auto data = random_bytes(32u << 20, 77 + static_cast<std::uint64_t>(version));
        QVERIFY(write_file(server_.direct(dir + "/f"), data));
        RemoteOptions options;
        options.connect_timeout = 3;
        options.op_timeout = 10;
        auto b = open(version, dir, options);
        QVERIFY(b);
        std::unique_ptr<BackendFile> f;
        QCOMPARE(fmt(b->open("/f", O_RDONLY, f)), fmt(Errc::ok));

        std::atomic<int> chunks{0};
        std::atomic<bool> done{false};
        QString failure;
        int transient = 0;
        std::thread reader([&] {
            QElapsedTimer clock;
            clock.start();
            std::vector<std::byte> buf(1u << 20);
            for (std::uint64_t off = 0; off < data.size();) {
                std::size_t n = 0;
                const Errc e = f->read(off, std::span(buf).first(std::min<std::size_t>(buf.size(), data.size() - off)), n);
                if (e == Errc::ok) {
                    if (n == 0) {
                        failure = QString("end of file at %1").arg(off);
                        return;
                    }
                    if (!std::equal(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n),
                                    data.begin() + static_cast<std::ptrdiff_t>(off))) {
                        failure = QString("wrong bytes at %1").arg(off);
                        return;
                    }
                    off += n;
                    ++chunks;
                    QThread::msleep(30);  // a reader slow enough to be caught in the middle
                    continue;
                }
                if (!is_transient(e) || clock.elapsed() > 40000) {
                    failure = QString("read at %1 failed: %2 after %3 ms").arg(off).arg(fmt(e)).arg(clock.elapsed());
                    return;
                }
                ++transient;
                QThread::msleep(100);
            }
            done = true;
        });
        QElapsedTimer clock;
        clock.start();
        while (chunks < 6 && clock.elapsed() < 20000)
            QThread::msleep(5);
        QVERIFY(chunks < 32);
        server_.kill();
        clock.restart();
        while (b->connection_state() == ConnectionState::connected && clock.elapsed() < 10000)
            QThread::msleep(10);
        const qint64 noticed_ms = clock.elapsed();
        QThread::msleep(1000);
        const bool restarted = server_.restart();
        reader.join();
        QVERIFY2(restarted, qPrintable(server_.error()));
        QVERIFY2(noticed_ms < 5000, qPrintable(QString("dead server noticed after %1 ms").arg(noticed_ms)));
        QVERIFY2(failure.isEmpty(), qPrintable(failure));
        QVERIFY(done);
        QVERIFY(transient > 0);  // it did see the server go
        clock.restart();
        while (b->connection_state() != ConnectionState::connected && clock.elapsed() < 10000)
            QThread::msleep(10);
        QCOMPARE(b->connection_state(), ConnectionState::connected);
        qInfo("v%d: noticed in %lld ms, %d transient errors before the reconnect", version, noticed_ms, transient);
    }

    void server_dies_under_mount_data() { versions(); }
    // The same through a real mount: a reader of the mount sees either the
    // right bytes (after the reconnect) or EIO within the timeout, never
    // wrong bytes, and the mount works again once the server is back.
    void server_dies_under_mount() {
        QFETCH(int, version);
        const QString dir = fresh_dir("mount-crash");
        const auto data = random_bytes(48u << 20, 900 + static_cast<std::uint64_t>(version));
        QVERIFY(write_file(server_.direct(dir + "/f"), data));
        MountFixture m(RemoteSpec{"nfs", QString(), server_.url(dir, version), server_.direct(dir)},
                       {"nfs_version=" + QString::number(version), "connect_timeout=3", "timeout=15"});
        QVERIFY2(m.mount(), qPrintable(m.error()));

        std::atomic<std::uint64_t> progress{0};
        QString failure;
        int read_errno = 0;
        std::thread reader([&] {
            int fd = ::open(qPrintable(m.at("f")), O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                failure = "open failed";
                return;
            }
            std::vector<std::byte> buf(1u << 20);
            std::uint64_t off = 0;
            while (off < data.size()) {
                const ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(off));
                if (n < 0) {
                    read_errno = errno;
                    break;
                }
                if (n == 0) {
                    failure = QString("end of file at %1").arg(off);
                    break;
                }
                if (!std::equal(buf.begin(), buf.begin() + n, data.begin() + static_cast<std::ptrdiff_t>(off))) {
                    failure = QString("wrong bytes at %1").arg(off);
                    break;
                }
                off += static_cast<std::uint64_t>(n);
                progress = off;
                QThread::msleep(25);
            }
            ::close(fd);
        });
        QElapsedTimer clock;
        clock.start();
        while (progress < (4u << 20) && clock.elapsed() < 20000)
            QThread::msleep(5);
        QVERIFY(progress < data.size());
        server_.kill();
        QThread::msleep(1000);
        const bool restarted = server_.restart();
        clock.restart();
        reader.join();
        QVERIFY2(restarted, qPrintable(server_.error()));
        QVERIFY2(failure.isEmpty(), qPrintable(failure));
        QVERIFY2(read_errno == 0 || read_errno == EIO, qPrintable(QString("read failed with errno %1").arg(read_errno)));
        QVERIFY2(clock.elapsed() < 30000, "the reader was stuck");
        // Working again once the mount is back online (disconnected
        // operation took over while the server was away): a fresh read of
        // the whole file is right.
        QVERIFY2(m.wait_for_mode("connected", 20000), "the mount did not reconnect within 20 s");
        QVERIFY(read_file(m.at("f")) == data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
        qInfo("v%d: reader %s", version, read_errno ? "got EIO" : "finished with the right bytes");
    }

    void hung_server_data() { versions(); }
    // A server that stops answering but keeps its connections open (SIGSTOP):
    // noticed within 5 s even when idle; requests fail with a transient
    // error in bounded time, and work again when it answers.
    void hung_server() {
        QFETCH(int, version);
        RemoteOptions options;
        options.connect_timeout = 3;
        options.op_timeout = 8;
        auto b = open(version, QString(), options);
        QVERIFY(b);
        Attr a;
        QCOMPARE(fmt(b->getattr("/", a)), fmt(Errc::ok));
        server_.pause();
        QElapsedTimer clock;
        clock.start();
        while (b->connection_state() == ConnectionState::connected && clock.elapsed() < 10000)
            QThread::msleep(10);
        const qint64 noticed_ms = clock.elapsed();
        clock.restart();
        const Errc e = b->getattr("/", a);
        const qint64 failed_ms = clock.elapsed();
        server_.resume();
        QVERIFY2(noticed_ms < 5000, qPrintable(QString("hung server noticed after %1 ms").arg(noticed_ms)));
        QVERIFY2(is_transient(e), qPrintable(fmt(e)));
        QVERIFY2(failed_ms <= 8500, qPrintable(QString("request failed after %1 ms").arg(failed_ms)));
        clock.restart();
        Errc again = Errc::unreachable;
        while (clock.elapsed() < 20000 && (again = b->getattr("/", a)) != Errc::ok)
            QThread::msleep(100);
        QCOMPARE(fmt(again), fmt(Errc::ok));
        qInfo("v%d: hung server noticed in %lld ms; a request failed in %lld ms, back in %lld ms", version,
              noticed_ms, failed_ms, clock.elapsed());
    }
};

QTEST_GUILESS_MAIN(TestNfsRemote)
#include "test_nfs_remote.moc"
