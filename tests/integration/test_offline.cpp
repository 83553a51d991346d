// Disconnected operation through a real mount: work goes on while the mount
// is offline, every change reaches the server when it is back, a change that
// collides with one made on the server becomes a conflict with both versions
// kept, and a daemon killed while changes are pending loses none of them.
//
// Runs against the suite's remote (tests/support/test_remote.h).
#include "tests/support/mount_fixture.h"
#include "tests/support/test_remote.h"

#include <sys/mount.h>

#include <QDir>
#include <QDirIterator>
#include <QElapsedTimer>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QMap>
#include <QRegularExpression>
#include <QScopeGuard>
#include <QTest>
#include <QThread>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

using namespace netfs::test;

namespace {

std::unique_ptr<MountFixture> make_mount() {
    RemoteSpec spec;
    QStringList options;
    use_test_remote(spec, options);
    return std::make_unique<MountFixture>(spec, options);
}

QJsonObject netfs_json(const MountFixture& m, const QString& command, int timeout_ms = 60000) {
    const RunResult r = run(NETFS_BINARY, {command, m.mountpoint(), "--json"}, timeout_ms, m.environment());
    return QJsonDocument::fromJson(r.out.toUtf8()).object();
}

bool netfs_ok(const MountFixture& m, const QString& command, QString* err = nullptr) {
    const RunResult r = run(NETFS_BINARY, {command, m.mountpoint()}, 60000, m.environment());
    if (err)
        *err = r.err + r.out;
    return r.exit_code == 0;
}

// Every file under `root` (relative path -> content; directories as "dir/"),
// symlinks as "-> target".
QMap<QString, QByteArray> tree(const QString& root) {
    QMap<QString, QByteArray> out;
    QDirIterator it(root, QDir::AllEntries | QDir::NoDotAndDotDot | QDir::Hidden | QDir::System,
                    QDirIterator::Subdirectories);
    while (it.hasNext()) {
        const QString path = it.next();
        const QString rel = QDir(root).relativeFilePath(path);
        const QFileInfo info(path);
        if (info.isSymLink()) {
            char target[4096];
            const ssize_t n = ::readlink(qPrintable(path), target, sizeof target);
            out[rel] = "-> " + QByteArray(target, n > 0 ? int(n) : 0);
        }
        else if (info.isDir())
            out[rel + "/"] = {};
        else {
            const auto bytes = read_file(path);
            out[rel] = QByteArray(reinterpret_cast<const char*>(bytes.data()), qsizetype(bytes.size()));
        }
    }
    return out;
}

QByteArray text(const QString& path) {
    std::vector<std::byte> bytes;
    if (!read_file(path, bytes))
        qWarning("cannot read %s: %s", qPrintable(path), strerror(errno));
    return QByteArray(reinterpret_cast<const char*>(bytes.data()), qsizetype(bytes.size()));
}

bool put_text(const QString& path, const QByteArray& content) {
    return write_file(path, std::vector<std::byte>(reinterpret_cast<const std::byte*>(content.constData()),
                                                   reinterpret_cast<const std::byte*>(content.constData()) + content.size()));
}

// `getfattr -n user.netfs.state FILE`
QByteArray state_of(const QString& path) {
    char value[256];
    const ssize_t n = ::getxattr(qPrintable(path), "user.netfs.state", value, sizeof value);
    return n < 0 ? QByteArray("error: ") + strerror(errno) : QByteArray(value, int(n));
}

// What a failed `netfs sync` answered, with the daemon's warnings and
// errors: enough to tell a failure in CI apart from the next one.
QString sync_failure(const MountFixture& m, const QJsonObject& outcome) {
    QString out = QString::fromUtf8(QJsonDocument(outcome).toJson());
    for (const QString& line : m.log().split('\n'))
        if (line.contains(" warning: ") || line.contains(" error: "))
            out += line + "\n";
    return out;
}

QString mode_of(const MountFixture& m) { return netfs_json(m, "status")["mode"].toString(); }

// The kernel forgets its pages of `path`: the next read asks the mount.
bool drop_kernel_pages(const QString& path) {
    const int fd = ::open(qPrintable(path), O_RDONLY);
    if (fd < 0)
        return false;
    const bool dropped = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0;
    ::close(fd);
    return dropped;
}

} // namespace

class TestOffline : public QObject {
    Q_OBJECT
private slots:
    // Edit, create, rename and delete offline; the server sees none of it
    // until the mount is online, then exactly all of it.
    void offline_changes_reach_the_server() {
        auto m = make_mount();
        QVERIFY(QDir().mkpath(m->direct("docs/old")));
        QVERIFY(put_text(m->direct("docs/report.txt"), "draft 1\n"));
        QVERIFY(write_file(m->direct("docs/data.bin"), random_bytes(700 * 1024 + 3, 1)));
        QVERIFY(put_text(m->direct("docs/old/gone.txt"), "remove me\n"));
        QVERIFY(put_text(m->direct("keep.txt"), "untouched\n"));
        QVERIFY2(m->mount(), qPrintable(m->error()));
        // Read once online: now cached and listed.
        const auto seen = tree(m->mountpoint());
        QCOMPARE(seen.size(), 6);

        QString err;
        QVERIFY2(netfs_ok(*m, "offline", &err), qPrintable(err));
        QCOMPARE(mode_of(*m), QString("disconnected"));
        const auto server_before = tree(m->backing());

        // A partial overwrite of a cached file, a new file, a new directory
        // with a file, a rename, a delete, a removed directory, a symlink, chmod.
        {
            const int fd = ::open(qPrintable(m->at("docs/data.bin")), O_WRONLY);
            QVERIFY(fd >= 0);
            const auto patch = random_bytes(300 * 1024, 2);
            QCOMPARE(::pwrite(fd, patch.data(), patch.size(), 200 * 1024), ssize_t(patch.size()));
            QCOMPARE(::fsync(fd), 0);
            QCOMPARE(::close(fd), 0);
        }
        QVERIFY(put_text(m->at("docs/report.txt"), "draft 2, written offline\n"));
        QVERIFY(write_file(m->at("docs/new.bin"), random_bytes(1500 * 1024, 3)));
        QVERIFY(QDir().mkdir(m->at("fresh")));
        QVERIFY(put_text(m->at("fresh/inside.txt"), "made offline\n"));
        QCOMPARE(::rename(qPrintable(m->at("keep.txt")), qPrintable(m->at("kept.txt"))), 0);
        QCOMPARE(::unlink(qPrintable(m->at("docs/old/gone.txt"))), 0);
        QCOMPARE(::rmdir(qPrintable(m->at("docs/old"))), 0);
        QCOMPARE(::symlink("docs/report.txt", qPrintable(m->at("latest"))), 0);
        QCOMPARE(::chmod(qPrintable(m->at("docs/report.txt")), 0600), 0);
        // A file created and removed offline never reaches the server.
        QVERIFY(put_text(m->at("scratch.tmp"), "temporary\n"));
        QCOMPARE(::unlink(qPrintable(m->at("scratch.tmp"))), 0);

        const auto local = tree(m->mountpoint());
        QCOMPARE(tree(m->backing()), server_before);  // nothing sent while offline
        const QJsonObject status = netfs_json(*m, "status");
        QVERIFY2(status["pending_operations"].toInteger() > 0, "the changes are logged");
        // What was written and not sent yet is shown as such: the log's
        // content in the cache (new.bin, data.bin's rewritten granules).
        const qint64 unsent = status["cache"].toObject()["dirty_bytes"].toInteger() +
                              status["engine"].toObject()["dirty_bytes"].toInteger();
        QVERIFY2(unsent >= (1500 + 300) * 1024, qPrintable(QString::number(unsent)));
        const RunResult shown = run(NETFS_BINARY, {"status", m->mountpoint()}, 30000, m->environment());
        QVERIFY2(shown.out.contains(QRegularExpression("not yet on the server: [0-9.]+ MiB")), qPrintable(shown.out));

        QVERIFY2(netfs_ok(*m, "online", &err), qPrintable(err));
        const QJsonObject outcome = netfs_json(*m, "sync");
        QVERIFY2(outcome["ok"].toBool(), qPrintable(sync_failure(*m, outcome)));
        QCOMPARE(outcome["pending"].toInteger(), 0);
        QCOMPARE(outcome["conflicts"].toInteger(), 0);
        QCOMPARE(mode_of(*m), QString("connected"));

        // The server holds exactly what the mount showed offline.
        const auto server = tree(m->backing());
        QCOMPARE(server.keys(), local.keys());
        for (const QString& key : local.keys())
            QVERIFY2(server[key] == local[key], qPrintable("differs on the server: " + key));
        struct stat st {};
        QCOMPARE(::stat(qPrintable(m->direct("docs/report.txt")), &st), 0);
        QCOMPARE(st.st_mode & 07777, 0600u);
        // No temporary upload names are left behind.
        for (const QString& key : server.keys())
            QVERIFY2(!key.contains(".netfs-upload-"), qPrintable(key));
        // And the mount, connected again, shows the server's state.
        QCOMPARE(tree(m->mountpoint()), server);
        QVERIFY2(m->unmount(), qPrintable(m->error()));
    }

    // Writes made offline at any offset, with gaps, across many granules and
    // partly over old bytes, read back as written and reach the server so:
    // a granule a write covers whole is stored from the write's own buffer,
    // the others put together from old bytes, new bytes and zeros.
    void writes_at_any_offset_offline_read_back_and_reach_the_server() {
        auto m = make_mount();
        auto expected = random_bytes(600 * 1024 + 5, 11);
        QVERIFY(write_file(m->direct("patched.bin"), expected));
        QVERIFY2(m->mount(), qPrintable(m->error()));
        QVERIFY(read_file(m->at("patched.bin")) == expected);  // cached
        QString err;
        QVERIFY2(netfs_ok(*m, "offline", &err), qPrintable(err));

        const auto put = [](std::vector<std::byte>& model, const QString& path, std::size_t at,
                            const std::vector<std::byte>& bytes) {
            const int fd = ::open(qPrintable(path), O_WRONLY | O_CREAT, 0644);
            const bool ok = fd >= 0 && ::pwrite(fd, bytes.data(), bytes.size(), off_t(at)) == ssize_t(bytes.size()) &&
                            ::fsync(fd) == 0 && ::close(fd) == 0;
            if (model.size() < at + bytes.size())
                model.resize(at + bytes.size());
            std::copy(bytes.begin(), bytes.end(), model.begin() + std::ptrdiff_t(at));
            return ok;
        };
        // Across the old end, not on a granule boundary.
        QVERIFY(put(expected, m->at("patched.bin"), 300 * 1024 + 7, random_bytes(700 * 1024, 12)));
        // A new file: more than 16 granules in one write, first and last partial.
        std::vector<std::byte> fresh;
        QVERIFY(put(fresh, m->at("fresh.bin"), 100, random_bytes((5u << 20) + 1234, 13)));
        // Past the end: the gap reads as zeros.
        QVERIFY(put(fresh, m->at("fresh.bin"), (9u << 20) + 17, random_bytes(1000, 14)));
        // Inside one granule.
        QVERIFY(put(fresh, m->at("fresh.bin"), (2u << 20) + 5, random_bytes(300, 15)));

        QVERIFY(read_file(m->at("patched.bin")) == expected);
        QVERIFY(read_file(m->at("fresh.bin")) == fresh);
        QVERIFY2(netfs_ok(*m, "online", &err), qPrintable(err));
        const QJsonObject outcome = netfs_json(*m, "sync");
        QVERIFY2(outcome["ok"].toBool(), qPrintable(sync_failure(*m, outcome)));
        QCOMPARE(outcome["pending"].toInteger(), 0);
        QVERIFY(read_file(m->direct("patched.bin")) == expected);
        QVERIFY(read_file(m->direct("fresh.bin")) == fresh);
        QVERIFY2(m->unmount(), qPrintable(m->error()));
    }

    // An editor holds a file open when the network goes, and saves into it
    // after: the write goes to the local copy and reaches the server later.
    // The engine dropped the cached bytes of the range it was about to
    // write before the replica could copy them: EIO ("not fully cached"),
    // and the write was lost at unmount.
    void a_file_open_before_the_outage_is_changed_after_it() {
        auto m = make_mount();
        auto expected = random_bytes((4u << 20) + 9, 21);
        QVERIFY(write_file(m->direct("open.bin"), expected));
        QVERIFY2(m->mount(), qPrintable(m->error()));
        QVERIFY(read_file(m->at("open.bin")) == expected);
        QElapsedTimer clock;  // stored in the cache in the background
        clock.start();
        while (!state_of(m->at("open.bin")).contains("cached=100%")) {
            QVERIFY2(clock.elapsed() < 10000, state_of(m->at("open.bin")).constData());
            QThread::msleep(20);
        }
        const int fd = ::open(qPrintable(m->at("open.bin")), O_RDWR);
        QVERIFY(fd >= 0);
        // And one read just before: its granules may still wait to be stored.
        auto quick = random_bytes(300 * 1024, 23);
        QVERIFY(write_file(m->direct("quick.bin"), quick));
        QVERIFY(read_file(m->at("quick.bin")) == quick);
        const int quick_fd = ::open(qPrintable(m->at("quick.bin")), O_RDWR);
        QVERIFY(quick_fd >= 0);
        QString err;
        QVERIFY2(netfs_ok(*m, "offline", &err), qPrintable(err));
        quick[7] = std::byte{0x99};
        QCOMPARE(::pwrite(quick_fd, &quick[7], 1, 7), ssize_t(1));
        QCOMPARE(::fsync(quick_fd), 0);
        QCOMPARE(::close(quick_fd), 0);

        // More than the remote's write size: several write jobs at once,
        // one of which makes the local copy.
        const auto patch = random_bytes(3u << 20, 22);
        std::copy(patch.begin(), patch.end(), expected.begin() + 1000);
        QCOMPARE(::pwrite(fd, patch.data(), patch.size(), 1000), ssize_t(patch.size()));
        QCOMPARE(::fsync(fd), 0);
        std::vector<std::byte> back(expected.size());
        QCOMPARE(::pread(fd, back.data(), back.size(), 0), ssize_t(back.size()));
        QVERIFY(back == expected);
        QCOMPARE(::close(fd), 0);
        QVERIFY(read_file(m->direct("open.bin")) != expected);  // not sent while offline

        QVERIFY2(netfs_ok(*m, "online", &err), qPrintable(err));
        const QJsonObject outcome = netfs_json(*m, "sync");
        QVERIFY2(outcome["ok"].toBool(), qPrintable(sync_failure(*m, outcome)));
        QCOMPARE(outcome["pending"].toInteger(), 0);
        QCOMPARE(outcome["conflicts"].toInteger(), 0);
        QCOMPARE(mode_of(*m), QString("connected"));  // the handle's hold on the local copy is gone
        QVERIFY(read_file(m->direct("open.bin")) == expected);
        QVERIFY(read_file(m->direct("quick.bin")) == quick);
        QVERIFY2(m->unmount(), qPrintable(m->error()));
    }

    // A handle that wrote to the server before the outage has no local copy
    // to take its later writes. The file as the mount sees it is kept here
    // instead, and the handle goes on there: fsync succeeds at once (the
    // change is in the journal), and so it does for a direct write, after a
    // size change made offline, and with a second handle opened offline;
    // a write never synced is kept by the writeback, and a daemon killed
    // then loses none of it. Reintegration puts all of it on the server.
    // They used to wait in memory: fsync failed after the timeout, and an
    // unmount or a kill lost them.
    void writes_after_the_outage_through_a_handle_that_wrote_before_it_are_kept() {
        auto m = make_mount();
        std::map<QString, std::vector<std::byte>> files = {
            {"synced.bin", random_bytes((1u << 20) + 77, 41)},
            {"unsynced.bin", random_bytes(600 * 1024 + 5, 42)},
            {"cut.bin", random_bytes(700 * 1024, 51)},
            {"direct.bin", random_bytes(512 * 1024, 52)},
        };
        for (const auto& [name, bytes] : files)
            QVERIFY(write_file(m->direct(name), bytes));
        QVERIFY2(m->mount(), qPrintable(m->error()));
        QElapsedTimer clock;
        for (const auto& [name, bytes] : files) {
            QVERIFY(read_file(m->at(name)) == bytes);
            clock.start();  // stored in the cache in the background
            while (!state_of(m->at(name)).contains("cached=100%")) {
                QVERIFY2(clock.elapsed() < 10000, state_of(m->at(name)).constData());
                QThread::msleep(20);
            }
        }
        std::map<QString, int> fds;
        for (const auto& [name, bytes] : files) {
            fds[name] = ::open(qPrintable(m->at(name)), O_RDWR | (name == "direct.bin" ? O_DIRECT : 0));
            QVERIFY(fds[name] >= 0);
        }
        Aligned aligned(64 * 1024);
        QVERIFY(aligned.p);
        auto overwrite = [&](const QString& name, std::size_t at, std::size_t n, std::uint64_t seed, int fd = -1) {
            if (n > aligned.size)
                return false;
            auto& expected = files[name];
            const auto bytes = random_bytes(n, seed);
            if (expected.size() < at + n)
                expected.resize(at + n);
            std::copy(bytes.begin(), bytes.end(), expected.begin() + at);
            std::memcpy(aligned.p, bytes.data(), n);  // (aligned for O_DIRECT)
            return ::pwrite(fd >= 0 ? fd : fds[name], aligned.p, n, off_t(at)) == ssize_t(n);
        };
        // Online: through to the server, which ties the handles to it.
        QVERIFY(overwrite("synced.bin", 300000, 5000, 43));
        QVERIFY(overwrite("unsynced.bin", 1000, 3000, 44));
        QVERIFY(overwrite("cut.bin", 0, 4096, 53));
        QVERIFY(overwrite("direct.bin", 8192, 4096, 54));
        for (const auto& [name, fd] : fds)
            QCOMPARE(::fsync(fd), 0);
        std::map<QString, std::vector<std::byte>> on_server;
        for (const auto& [name, bytes] : files) {
            on_server[name] = read_file(m->direct(name));
            QVERIFY(on_server[name] == bytes);
        }
        // A direct write takes the cached copy of its granules away (it
        // never sees the rest of them): read again, so that the file can
        // be kept offline.
        QVERIFY(read_file(m->at("direct.bin")) == files["direct.bin"]);
        clock.start();
        while (!state_of(m->at("direct.bin")).contains("cached=100%")) {
            QVERIFY2(clock.elapsed() < 10000, state_of(m->at("direct.bin")).constData());
            QThread::msleep(20);
        }

        QString err;
        QVERIFY2(netfs_ok(*m, "offline", &err), qPrintable(err));
        // Attributes asked offline, once the ones in memory expired, are
        // the replica's: those the handles' own writes left on the server.
        QThread::msleep(1100);
        struct stat st {};
        QCOMPARE(::stat(qPrintable(m->at("synced.bin")), &st), 0);
        QCOMPARE(st.st_size, off_t(files["synced.bin"].size()));

        // A second handle, opened offline, makes a local copy at once; the
        // engine still writes the file back through the first.
        const int second = ::open(qPrintable(m->at("synced.bin")), O_RDWR);
        QVERIFY(second >= 0);
        QVERIFY(overwrite("synced.bin", 100, 50, 48, second));
        QVERIFY(overwrite("synced.bin", 700000, 5000, 45));  // inside the file
        QVERIFY(overwrite("synced.bin", files["synced.bin"].size() + 10000, 7000, 46));  // past its end: a hole
        clock.restart();
        QCOMPARE(::fsync(fds["synced.bin"]), 0);
        QVERIFY2(clock.elapsed() < 5000, "fsync waited for the server");
        QVERIFY(overwrite("synced.bin", 5, 5, 55));  // and more after it, without an error
        QCOMPARE(::fsync(fds["synced.bin"]), 0);
        QCOMPARE(::close(second), 0);

        // Cut offline by path, then written past the new end through the handle.
        QCOMPARE(::truncate(qPrintable(m->at("cut.bin")), 0), 0);
        files["cut.bin"].clear();
        QVERIFY(overwrite("cut.bin", 500000, 10, 56));
        QCOMPARE(::fsync(fds["cut.bin"]), 0);

        QVERIFY(overwrite("direct.bin", 65536, 4096, 57));
        QCOMPARE(::fsync(fds["direct.bin"]), 0);

        for (const QString name : {"synced.bin", "cut.bin", "direct.bin"}) {
            QCOMPARE(::close(fds[name]), 0);
            QVERIFY2(read_file(m->at(name)) == files[name], qPrintable(name));
        }

        // Never synced: the writeback keeps it, and a daemon killed with
        // the handle still open loses nothing of it.
        QVERIFY(overwrite("unsynced.bin", 400000, 9000, 47));
        clock.restart();
        while (!state_of(m->at("unsynced.bin")).contains("dirty=yes")) {
            QVERIFY2(clock.elapsed() < 20000, state_of(m->at("unsynced.bin")).constData());
            QThread::msleep(100);
        }
        for (const auto& [name, bytes] : on_server)
            QVERIFY2(read_file(m->direct(name)) == bytes, qPrintable(name));  // nothing sent while offline
        QVERIFY2(m->crash(), qPrintable(m->error()));
        ::close(fds["unsynced.bin"]);

        QVERIFY2(m->mount(), qPrintable(m->error()));
        for (const auto& [name, bytes] : files)
            QVERIFY2(read_file(m->at(name)) == bytes, qPrintable(name));
        const QJsonObject outcome = netfs_json(*m, "sync");
        QVERIFY2(outcome["ok"].toBool(), qPrintable(sync_failure(*m, outcome)));
        QCOMPARE(outcome["pending"].toInteger(), 0);
        // The version each kept copy stands on is the one the handle's own
        // fsync left on the server: no conflict.
        QCOMPARE(outcome["conflicts"].toInteger(), 0);
        for (const auto& [name, bytes] : files)
            QVERIFY2(read_file(m->direct(name)) == bytes, qPrintable(name));
        QVERIFY2(m->unmount(), qPrintable(m->error()));
    }

    // A hard link, times set with utimensat and a truncate, made offline,
    // reach the server as such: the link is one file with two names there
    // (where the protocol has links), the times are the ones set, the file
    // cut to the size asked (the engine used to drop the cached bytes
    // before the replica could copy them: EIO, "not fully cached").
    void links_times_and_truncates_made_offline_reach_the_server() {
        const RemoteTraits traits = remote_traits();
        auto m = make_mount();
        QVERIFY(put_text(m->direct("a.txt"), "one file, two names\n"));
        QVERIFY(put_text(m->direct("old.txt"), "an old report\n"));
        const auto whole = random_bytes(300 * 1024, 7);
        QVERIFY(write_file(m->direct("cut.bin"), whole));
        QVERIFY2(m->mount(), qPrintable(m->error()));
        QCOMPARE(tree(m->mountpoint()).size(), 3);  // read once: cached
        QString err;
        QVERIFY2(netfs_ok(*m, "offline", &err), qPrintable(err));
        QCOMPARE(mode_of(*m), QString("disconnected"));

        const int linked = ::link(qPrintable(m->at("a.txt")), qPrintable(m->at("b.txt")));
        if (traits.hard_links)
            QCOMPARE(linked, 0);
        else
            QCOMPARE(linked == -1 ? errno : 0, EOPNOTSUPP);
        const timespec times[2] = {{1'600'000'000, 0}, {1'500'000'000, 0}};  // atime, mtime: whole seconds
        QCOMPARE(::utimensat(AT_FDCWD, qPrintable(m->at("old.txt")), times, 0), 0);
        struct stat st {};
        QCOMPARE(::stat(qPrintable(m->at("old.txt")), &st), 0);
        QCOMPARE(st.st_mtim.tv_sec, time_t(1'500'000'000));  // as set, while offline
        QCOMPARE(::stat(qPrintable(m->direct("old.txt")), &st), 0);
        QVERIFY(st.st_mtim.tv_sec != time_t(1'500'000'000));  // nothing sent yet
        QCOMPARE(::truncate(qPrintable(m->at("cut.bin")), 1000), 0);
        QCOMPARE(read_file(m->at("cut.bin")).size(), std::size_t(1000));
        QCOMPARE(::stat(qPrintable(m->direct("cut.bin")), &st), 0);
        QCOMPARE(st.st_size, off_t(300 * 1024));  // nothing sent yet

        QVERIFY2(netfs_ok(*m, "online", &err), qPrintable(err));
        const QJsonObject outcome = netfs_json(*m, "sync");
        QVERIFY2(outcome["ok"].toBool(), qPrintable(sync_failure(*m, outcome)));
        QCOMPARE(outcome["pending"].toInteger(), 0);
        QCOMPARE(outcome["conflicts"].toInteger(), 0);

        if (traits.hard_links) {
            struct stat a {}, b {};
            QCOMPARE(::stat(qPrintable(m->direct("a.txt")), &a), 0);
            QCOMPARE(::stat(qPrintable(m->direct("b.txt")), &b), 0);
            QCOMPARE(b.st_ino, a.st_ino);  // one file on the server, not a copy
            QCOMPARE(text(m->direct("b.txt")), QByteArray("one file, two names\n"));
        } else {
            QVERIFY(!QFileInfo::exists(m->direct("b.txt")));
        }
        QCOMPARE(::stat(qPrintable(m->direct("old.txt")), &st), 0);
        QCOMPARE(st.st_mtim.tv_sec, time_t(1'500'000'000));
        QCOMPARE(st.st_atim.tv_sec, time_t(1'600'000'000));
        QCOMPARE(text(m->direct("old.txt")), QByteArray("an old report\n"));
        const auto cut = read_file(m->direct("cut.bin"));
        QCOMPARE(cut.size(), std::size_t(1000));
        QVERIFY(std::equal(cut.begin(), cut.end(), whole.begin()));
        QVERIFY2(m->unmount(), qPrintable(m->error()));
    }

    // What was written through the mount is read back offline as it was
    // written, without a read online in between: a new file, one replaced
    // by a rename over it (as editors and git save), one rewritten in
    // place, one appended to. Found with git: after a clone and a commit
    // online, every git command offline died of SIGBUS (its index, mapped,
    // could not be read) and refs written online read as EIO.
    void what_was_written_online_is_read_offline() {
        auto m = make_mount();
        QVERIFY(put_text(m->direct("old.txt"), "the server's first version\n"));
        QVERIFY(put_text(m->direct("log.txt"), "line 1\n"));
        QVERIFY(put_text(m->direct("COMMIT_EDITMSG"), "first message\n"));
        QVERIFY2(m->mount(), qPrintable(m->error()));
        QCOMPARE(text(m->at("COMMIT_EDITMSG")), QByteArray("first message\n"));
        QCOMPARE(text(m->at("old.txt")), QByteArray("the server's first version\n"));
        QCOMPARE(text(m->at("log.txt")), QByteArray("line 1\n"));

        const auto made = random_bytes(16046, 40), big = random_bytes(700 * 1024 + 5, 41),
                   replacing = random_bytes(9000, 42), rewritten = random_bytes(5000, 43);
        QVERIFY(write_file(m->at("new.bin"), made));
        QVERIFY(write_file(m->at("big.bin"), big));
        QVERIFY(write_file(m->at("index.lock"), replacing));
        QCOMPARE(::rename(qPrintable(m->at("index.lock")), qPrintable(m->at("index"))), 0);
        // As git writes an object: a temporary name, a link, an unlink.
        const auto object = random_bytes(7000, 44);
        QVERIFY(write_file(m->at("tmp_obj_X"), object));
        QCOMPARE(::link(qPrintable(m->at("tmp_obj_X")), qPrintable(m->at("obj"))), 0);
        QCOMPARE(::unlink(qPrintable(m->at("tmp_obj_X"))), 0);
        // The same, then changed by another client: that change is not
        // taken for one of ours.
        QVERIFY(write_file(m->at("tmp_obj_Y"), random_bytes(6000, 45)));
        QCOMPARE(::link(qPrintable(m->at("tmp_obj_Y")), qPrintable(m->at("obj2"))), 0);
        QCOMPARE(::unlink(qPrintable(m->at("tmp_obj_Y"))), 0);
        QVERIFY(put_text(m->direct("obj2"), "changed on the server\n"));
        QCOMPARE(text(m->at("obj2")), QByteArray("changed on the server\n"));
        // Copied with their times, as cp -p and git clone copy: a write,
        // a close and at once a utimensat, which races the kernel's release
        // of the writer (a getattr then could record the older times).
        QVERIFY(QDir().mkpath(m->at("copied")));
        const timespec old_times[2] = {{1'600'000'000, 0}, {1'500'000'000, 0}};
        for (int i = 0; i < 30; ++i) {
            const QString name = QString("copied/%1").arg(i);
            QVERIFY(write_file(m->at(name), random_bytes(500 + i, 100 + std::uint64_t(i))));
            QCOMPARE(::utimensat(AT_FDCWD, qPrintable(m->at(name)), old_times, 0), 0);
        }
        // Written under a lock name and renamed over their own at once, as
        // git writes its refs (the rename races the release too).
        QVERIFY(QDir().mkpath(m->at("refs")));
        for (int i = 0; i < 30; ++i) {
            const QString name = QString("refs/%1").arg(i);
            QVERIFY(put_text(m->at(name + ".lock"), "ref: refs/heads/" + QByteArray::number(i) + "\n"));
            QCOMPARE(::rename(qPrintable(m->at(name + ".lock")), qPrintable(m->at(name))), 0);
        }
        QVERIFY(write_file(m->at("old.txt"), rewritten));
        {
            QFile log(m->at("log.txt"));
            QVERIFY(log.open(QIODevice::Append));
            QCOMPARE(log.write("line 2\n"), qint64(7));
        }
        // Rewritten and read again at once, as git does its message: the
        // open comes before the kernel has released the writer.
        for (const QByteArray message : {"second message\n", "third message\n"}) {
            QVERIFY(put_text(m->at("COMMIT_EDITMSG"), message));
            QCOMPARE(text(m->at("COMMIT_EDITMSG")), message);
        }
        QCOMPARE(read_file(m->direct("index")), replacing);  // on the server, as closed
        QVERIFY(netfs_ok(*m, "offline"));

        // Every file as written (QCOMPAREs return from the lambda only).
        const auto read_as_written = [&] {
            QCOMPARE(read_file(m->at("new.bin")), made);
            QCOMPARE(read_file(m->at("big.bin")), big);
            QCOMPARE(read_file(m->at("index")), replacing);
            QCOMPARE(read_file(m->at("old.txt")), rewritten);
            QCOMPARE(text(m->at("log.txt")), QByteArray("line 1\nline 2\n"));
            QCOMPARE(text(m->at("COMMIT_EDITMSG")), QByteArray("third message\n"));
            QCOMPARE(read_file(m->at("obj")), object);
            QCOMPARE(text(m->at("obj2")), QByteArray("changed on the server\n"));
            for (int i = 0; i < 30; ++i) {
                QCOMPARE(read_file(m->at(QString("copied/%1").arg(i))), random_bytes(500 + i, 100 + std::uint64_t(i)));
                QCOMPARE(text(m->at(QString("refs/%1").arg(i))), "ref: refs/heads/" + QByteArray::number(i) + "\n");
            }
            QCOMPARE(netfs_json(*m, "status")["uncached_reads"].toInteger(), 0);
        };
        for (const char* name : {"new.bin", "big.bin", "index", "old.txt", "log.txt", "obj"})
            QVERIFY(drop_kernel_pages(m->at(name)));
        read_as_written();
        if (QTest::currentTestFailed())
            return;
        for (const char* name : {"new.bin", "big.bin", "index", "old.txt", "log.txt", "COMMIT_EDITMSG", "obj"})
            QVERIFY2(state_of(m->at(name)) == QByteArray("cached=100% pinned=no dirty=no pending=0 conflict=no"),
                     qPrintable(name + (": " + state_of(m->at(name)))));
        QVERIFY(netfs_ok(*m, "online"));
        QVERIFY2(m->unmount(), qPrintable(m->error()));

        // And from the persistent cache alone, after a remount.
        QVERIFY2(m->mount(), qPrintable(m->error()));
        QVERIFY(netfs_ok(*m, "offline"));
        read_as_written();
        if (QTest::currentTestFailed())
            return;
        QVERIFY(netfs_ok(*m, "online"));
        QVERIFY2(m->unmount(), qPrintable(m->error()));
    }

    // Files made offline under a temporary name, linked to their own name
    // and unlinked from the first, as git writes its objects: they reach the
    // server under their own name. Found with git: the unlink of the
    // temporary name dropped the file's content from the log, the link
    // then found nothing to link on the server, and the objects were gone
    // on both sides (a conflict named the temporary names, no copy kept).
    // Also: a file made, linked and then removed under both names never
    // reaches the server; one made, renamed over a file the server has and
    // then removed takes that file with it.
    void a_file_made_offline_keeps_its_content_under_its_other_names() {
        QVERIFY(remote_traits().hard_links);  // all four remotes have them
        auto m = make_mount();
        QVERIFY(QDir().mkpath(m->direct("objects")));
        QVERIFY(put_text(m->direct("replaced.txt"), "the server's file\n"));
        QVERIFY(put_text(m->direct("shared.txt"), "as both sides first saw it\n"));
        QVERIFY2(m->mount(), qPrintable(m->error()));
        QCOMPARE(tree(m->mountpoint()).size(), 3);  // listed and read online
        QVERIFY(netfs_ok(*m, "offline"));

        const auto blob = random_bytes(7137, 50), tree_obj = random_bytes(414, 51), later = random_bytes(3000, 52);
        QVERIFY(QDir().mkpath(m->at("objects/37")));
        QVERIFY(write_file(m->at("objects/37/tmp_obj_Egq1mP"), blob));
        QCOMPARE(::link(qPrintable(m->at("objects/37/tmp_obj_Egq1mP")), qPrintable(m->at("objects/37/0795b7"))), 0);
        QCOMPARE(::unlink(qPrintable(m->at("objects/37/tmp_obj_Egq1mP"))), 0);
        QVERIFY(write_file(m->at("objects/tmp_obj_mH0FTx"), tree_obj));
        QCOMPARE(::link(qPrintable(m->at("objects/tmp_obj_mH0FTx")), qPrintable(m->at("objects/a4f00d"))), 0);
        QCOMPARE(::unlink(qPrintable(m->at("objects/tmp_obj_mH0FTx"))), 0);
        QVERIFY(write_file(m->at("objects/a4f00d"), later));  // written again under its own name
        QVERIFY(put_text(m->at("gone-a"), "short-lived\n"));
        QCOMPARE(::link(qPrintable(m->at("gone-a")), qPrintable(m->at("gone-b"))), 0);
        QCOMPARE(::unlink(qPrintable(m->at("gone-a"))), 0);
        QCOMPARE(::unlink(qPrintable(m->at("gone-b"))), 0);
        QVERIFY(put_text(m->at("replacing.tmp"), "replaces, then goes\n"));
        QCOMPARE(::rename(qPrintable(m->at("replacing.tmp")), qPrintable(m->at("replaced.txt"))), 0);
        QCOMPARE(::unlink(qPrintable(m->at("replaced.txt"))), 0);
        QCOMPARE(read_file(m->at("objects/37/0795b7")), blob);
        QCOMPARE(read_file(m->at("objects/a4f00d")), later);
        // A second name, the first removed and the file changed here, while
        // another client changes it on the server: a conflict on the first
        // name, which keeps the server's change; ours is at the second.
        QCOMPARE(::link(qPrintable(m->at("shared.txt")), qPrintable(m->at("alias.txt"))), 0);
        QCOMPARE(::unlink(qPrintable(m->at("shared.txt"))), 0);
        QVERIFY(put_text(m->at("alias.txt"), "changed here\n"));
        QVERIFY(put_text(m->direct("shared.txt"), "changed on the server, longer\n"));

        QVERIFY(netfs_ok(*m, "online"));
        const QJsonObject outcome = netfs_json(*m, "sync");
        QVERIFY2(outcome["ok"].toBool(), qPrintable(sync_failure(*m, outcome)));
        QCOMPARE(outcome["pending"].toInteger(), 0);
        QCOMPARE(text(m->direct("shared.txt")), QByteArray("changed on the server, longer\n"));
        QCOMPARE(text(m->direct("alias.txt")), QByteArray("changed here\n"));
        const QJsonArray conflicts = netfs_json(*m, "conflicts")["conflicts"].toArray();
        QCOMPARE(conflicts.size(), 1);
        QCOMPARE(conflicts[0].toObject()["path"].toString(), QString("/shared.txt"));
        QCOMPARE(conflicts[0].toObject()["kind"].toString(), QString("delete/update"));
        QCOMPARE(read_file(m->direct("objects/37/0795b7")), blob);
        QCOMPARE(read_file(m->direct("objects/a4f00d")), later);
        QCOMPARE(QDir(m->direct("objects/37")).entryList(QDir::Files | QDir::Hidden), QStringList{"0795b7"});
        QCOMPARE(QDir(m->direct("objects")).entryList(QDir::Files | QDir::Hidden), QStringList{"a4f00d"});
        QVERIFY(!QFileInfo::exists(m->direct("gone-a")));
        QVERIFY(!QFileInfo::exists(m->direct("gone-b")));
        QVERIFY(!QFileInfo::exists(m->direct("replaced.txt")));
        QVERIFY(!QFileInfo::exists(m->direct("replacing.tmp")));
        QCOMPARE(read_file(m->at("objects/37/0795b7")), blob);  // and on the mount, online
        QVERIFY2(m->unmount(), qPrintable(m->error()));
    }

    // Offline: reading what was never cached fails at once with EIO;
    // directories seen online list with their attributes.
    void uncached_data_fails_fast_offline() {
        auto m = make_mount();
        QVERIFY(QDir().mkpath(m->direct("seen")));
        QVERIFY(QDir().mkpath(m->direct("unseen")));
        QVERIFY(put_text(m->direct("seen/read.txt"), "read online\n"));
        QVERIFY(write_file(m->direct("seen/never.bin"), random_bytes(512 * 1024, 4)));
        QVERIFY(put_text(m->direct("unseen/x"), "x\n"));
        QVERIFY2(m->mount(), qPrintable(m->error()));
        QCOMPARE(text(m->at("seen/read.txt")), QByteArray("read online\n"));
        QCOMPARE(QDir(m->at("seen")).entryList(QDir::Files).size(), 2);  // listed online
        QVERIFY(QFileInfo::exists(m->at("unseen")));
        QVERIFY(netfs_ok(*m, "offline"));

        QCOMPARE(text(m->at("seen/read.txt")), QByteArray("read online\n"));
        QCOMPARE(QDir(m->at("seen")).entryList(QDir::Files, QDir::Name), QStringList({"never.bin", "read.txt"}));
        QCOMPARE(QFileInfo(m->at("seen/never.bin")).size(), 512 * 1024);

        QElapsedTimer clock;
        clock.start();
        const int fd = ::open(qPrintable(m->at("seen/never.bin")), O_RDONLY);
        QVERIFY(fd >= 0);
        char buf[4096];
        errno = 0;
        QCOMPARE(::read(fd, buf, sizeof buf), ssize_t(-1));
        QCOMPARE(errno, EIO);
        ::close(fd);
        QVERIFY2(clock.elapsed() < 1000, qPrintable(QString("took %1 ms").arg(clock.elapsed())));
        // A directory never listed online cannot be listed offline: EIO, not
        // an empty directory.
        {
            errno = 0;
            DIR* dir = ::opendir(qPrintable(m->at("unseen")));
            const bool listed = dir && ::readdir(dir) != nullptr;
            const int error = errno;
            if (dir)
                ::closedir(dir);
            QVERIFY(!listed);
            QCOMPARE(error, EIO);
        }
        QVERIFY(netfs_json(*m, "status")["uncached_reads"].toInteger() >= 1);
        // Each file's state, as getfattr shows it.
        QCOMPARE(state_of(m->at("seen/read.txt")), QByteArray("cached=100% pinned=no dirty=no pending=0 conflict=no"));
        QCOMPARE(state_of(m->at("seen/never.bin")), QByteArray("cached=0% pinned=no dirty=no pending=0 conflict=no"));
        QVERIFY(put_text(m->at("seen/read.txt"), "changed offline\n"));
        QCOMPARE(state_of(m->at("seen/read.txt")), QByteArray("cached=100% pinned=no dirty=yes pending=1 conflict=no"));
        // Changing a file that is not cached is refused, not faked ...
        QCOMPARE(::open(qPrintable(m->at("seen/never.bin")), O_WRONLY), -1);
        QCOMPARE(errno, EIO);
        // ... but one rewritten whole needs none of its old bytes.
        const auto rewritten = random_bytes(1000, 5);
        QVERIFY(write_file(m->at("seen/never.bin"), rewritten));
        QCOMPARE(read_file(m->at("seen/never.bin")), rewritten);
        QCOMPARE(read_file(m->direct("seen/never.bin")), random_bytes(512 * 1024, 4));  // not yet
        QVERIFY(netfs_ok(*m, "online"));
        const QJsonObject outcome = netfs_json(*m, "sync");
        QVERIFY2(outcome["ok"].toBool() && outcome["pending"].toInteger() == 0, qPrintable(sync_failure(*m, outcome)));
        QCOMPARE(read_file(m->direct("seen/never.bin")), rewritten);
        QVERIFY2(m->unmount(), qPrintable(m->error()));
    }

    // Both sides change the same things: every collision is a conflict, the
    // server's version stays in place, the local one sits beside it, and
    // nothing else is touched.
    // The cache's disk fills up while disconnected: writes fail with ENOSPC
    // (never EIO), as on a full local disk, and what was acknowledged
    // stays. Files can still be made small and removed, removing one makes
    // room, and once connected everything acknowledged reaches the server;
    // the removed file's unsent bytes are not reported lost at unmount.
    void a_full_cache_disk_refuses_offline_writes_with_enospc() {
        auto m = make_mount();
        QVERIFY(QDir().mkpath(m->cache_dir()));
        QCOMPARE(::mount("tmpfs", qPrintable(m->cache_dir()), "tmpfs", 0, "size=48m"), 0);
        struct Unmount {
            QByteArray dir;
            ~Unmount() { ::umount2(dir.constData(), MNT_DETACH); }
        } unmount_cache{m->cache_dir().toLocal8Bit()};
        QVERIFY2(m->mount(), qPrintable(m->error()));
        QVERIFY(netfs_ok(*m, "offline"));

        const auto first = random_bytes(8 << 20, 21);
        QVERIFY(write_file(m->at("first.bin"), first));
        {
            const int fd = ::open(qPrintable(m->at("first.bin")), O_RDONLY);
            QVERIFY(fd >= 0);
            QCOMPARE(::fsync(fd), 0);
            ::close(fd);
        }
        // 64 MiB into what is left of 48: refused on the way, with ENOSPC.
        int error = 0;
        std::uint64_t written = 0;
        {
            const int fd = ::open(qPrintable(m->at("big.bin")), O_WRONLY | O_CREAT, 0644);
            QVERIFY(fd >= 0);
            const auto chunk = random_bytes(1 << 20, 22);
            for (int i = 0; i < 64 && !error; ++i) {
                if (::write(fd, chunk.data(), chunk.size()) != ssize_t(chunk.size()))
                    error = errno;
                else
                    written += chunk.size();
            }
            if (!error && ::fsync(fd) != 0)
                error = errno;
            if (::close(fd) != 0 && !error)
                error = errno;
        }
        QVERIFY2(error == ENOSPC, qPrintable(QString("after %1 MiB: %2").arg(written >> 20).arg(strerror(error))));
        // The acknowledged file reads back; small changes and removals work.
        QVERIFY(drop_kernel_pages(m->at("first.bin")));
        QVERIFY(read_file(m->at("first.bin")) == first);
        QVERIFY(put_text(m->at("note.txt"), "written on a full disk\n"));
        QCOMPARE(::unlink(qPrintable(m->at("big.bin"))), 0);
        // Its space is free again (once a write of it under way ends).
        auto unsent = [&] { return netfs_json(*m, "status")["cache"].toObject()["dirty_bytes"].toInteger(); };
        QTRY_VERIFY_WITH_TIMEOUT(unsent() < (16 << 20), 5000);

        QVERIFY(netfs_ok(*m, "online"));
        const QJsonObject outcome = netfs_json(*m, "sync");
        QVERIFY2(outcome["ok"].toBool(), qPrintable(sync_failure(*m, outcome)));
        QCOMPARE(outcome["pending"].toInteger(), 0);
        QVERIFY(read_file(m->direct("first.bin")) == first);
        QCOMPARE(text(m->direct("note.txt")), QByteArray("written on a full disk\n"));
        QVERIFY(!QFileInfo::exists(m->direct("big.bin")));
        QVERIFY2(m->unmount(), qPrintable(m->error()));
        QVERIFY2(!m->log().contains("are lost"), qPrintable(m->log().right(2000)));
    }

    // A file removed, or replaced by a rename over it, while a program has
    // it open: its handles read and write on as on a local disk, while
    // disconnected too (the file has no name left to keep its local copy
    // by; the mount keeps it under a hidden one until the last close, as
    // the kernel's NFS client does). Once connected the server has the
    // removal and the new version, and nothing hidden.
    void open_files_removed_or_replaced_offline_read_on() {
        auto m = make_mount();
        const auto original = random_bytes((1 << 20) + 777, 41);
        QVERIFY(write_file(m->direct("removed.bin"), original));
        QVERIFY(put_text(m->direct("replaced.txt"), "version 1\n"));
        QVERIFY(put_text(m->direct("held.txt"), "original\n"));
        QVERIFY2(m->mount(), qPrintable(m->error()));
        tree(m->mountpoint());  // cache everything
        QVERIFY(netfs_ok(*m, "offline"));
        // Open still when the mount reconnects, and changed on the server
        // meanwhile: the server's version stays (delete/update).
        const int held = ::open(qPrintable(m->at("held.txt")), O_RDONLY);
        QVERIFY(held >= 0);
        auto held_closed = qScopeGuard([&] { ::close(held); });
        QCOMPARE(::unlink(qPrintable(m->at("held.txt"))), 0);
        QThread::msleep(1100);  // a different mtime on the server, even at 1 s resolution
        QVERIFY(put_text(m->direct("held.txt"), "server edit\n"));

        const int removed = ::open(qPrintable(m->at("removed.bin")), O_RDWR);
        QVERIFY(removed >= 0);
        const int replaced = ::open(qPrintable(m->at("replaced.txt")), O_RDONLY);
        QVERIFY(replaced >= 0);
        auto closed = qScopeGuard([&] {
            ::close(removed);
            ::close(replaced);
        });
        QCOMPARE(::pwrite(removed, "edit", 4, 100), ssize_t(4));
        QCOMPARE(::unlink(qPrintable(m->at("removed.bin"))), 0);
        QVERIFY(!QFileInfo::exists(m->at("removed.bin")));
        // Offline, the hidden names are the mount's own: the log sends a
        // move to one as a removal, and never what is under one.
        const QStringList set_aside =
            QDir(m->mountpoint()).entryList(QDir::Files | QDir::Hidden).filter(".netfs-unlinked-");
        QCOMPARE(set_aside.size(), 2);  // held.txt's and removed.bin's
        for (const QString& name : set_aside) {
            errno = 0;
            QCOMPARE(::rename(qPrintable(m->at(name)), qPrintable(m->at("rescued"))), -1);
            QCOMPARE(errno, EPERM);
        }
        QVERIFY(put_text(m->at("mine.txt"), "mine\n"));
        errno = 0;
        QCOMPARE(::rename(qPrintable(m->at("mine.txt")), qPrintable(m->at(".netfs-unlinked-0123456789abcdef"))), -1);
        QCOMPARE(errno, EPERM);
        QCOMPARE(::open(qPrintable(m->at(".netfs-unlinked-00000000000000ff")), O_CREAT | O_WRONLY, 0644), -1);
        QCOMPARE(errno, EPERM);
        QVERIFY(put_text(m->at(".replaced.txt.tmp"), "version 2\n"));
        QCOMPARE(::rename(qPrintable(m->at(".replaced.txt.tmp")), qPrintable(m->at("replaced.txt"))), 0);

        QCOMPARE(::ftruncate(removed, 500000), 0);
        QCOMPARE(::pwrite(removed, "tail", 4, 600000), ssize_t(4));
        QCOMPARE(::fsync(removed), 0);
        struct stat st;
        QCOMPARE(::fstat(removed, &st), 0);
        QCOMPARE(st.st_size, 600004);
        std::vector<std::byte> back(600004);
        QCOMPARE(::pread(removed, back.data(), back.size(), 0), ssize_t(back.size()));
        std::vector<std::byte> expected(original.begin(), original.begin() + 500000);
        std::memcpy(expected.data() + 100, "edit", 4);
        expected.resize(600000);
        for (char c : std::string("tail"))
            expected.push_back(std::byte(c));
        QVERIFY(back == expected);
        char old[32] = {};
        QCOMPARE(::pread(replaced, old, sizeof old, 0), ssize_t(10));
        QCOMPARE(QByteArray(old), QByteArray("version 1\n"));
        QCOMPARE(text(m->at("replaced.txt")), QByteArray("version 2\n"));
        closed.dismiss();
        QCOMPARE(::close(removed), 0);
        QCOMPARE(::close(replaced), 0);
        // Their hidden names go at the last close (FUSE tells the daemon after close(2) returned).
        auto hidden = [](const QString& dir) {
            return QDir(dir).entryList(QDir::Files | QDir::Hidden).filter(".netfs-unlinked-");
        };
        QTRY_COMPARE_WITH_TIMEOUT(hidden(m->mountpoint()).size(), 1, 5000);  // held.txt's
        const QString held_aside = hidden(m->mountpoint()).value(0);
        auto unsent = [&] { return netfs_json(*m, "status")["cache"].toObject()["dirty_bytes"].toInteger(); };
        QTRY_COMPARE_WITH_TIMEOUT(unsent(), qint64(10 + 5), 5000);  // version 2 and mine.txt alone

        QVERIFY(netfs_ok(*m, "online"));
        const QJsonObject outcome = netfs_json(*m, "sync");
        QVERIFY2(outcome["ok"].toBool(), qPrintable(sync_failure(*m, outcome)));
        QCOMPARE(outcome["pending"].toInteger(), 0);
        const QJsonArray conflicts = netfs_json(*m, "conflicts")["conflicts"].toArray();
        QCOMPARE(conflicts.size(), 1);
        QCOMPARE(conflicts[0].toObject()["path"].toString(), QString("/held.txt"));
        QCOMPARE(conflicts[0].toObject()["kind"].toString(), QString("delete/update"));
        QVERIFY(!QFileInfo::exists(m->direct("removed.bin")));
        QCOMPARE(text(m->direct("replaced.txt")), QByteArray("version 2\n"));
        QCOMPARE(text(m->direct("held.txt")), QByteArray("server edit\n"));
        QCOMPARE(hidden(m->backing()), QStringList());
        QCOMPARE(text(m->direct("mine.txt")), QByteArray("mine\n"));
        // A listing and a stat of the server, which lacks it, leave it to its
        // handle (connected, the listing is the server's).
        QCOMPARE(hidden(m->mountpoint()).size(), 0);
        struct stat hidden_st;
        QCOMPARE(::stat(qPrintable(m->at(held_aside)), &hidden_st), 0);
        QCOMPARE(hidden_st.st_size, 9);
        QCOMPARE(::posix_fadvise(held, 0, 0, POSIX_FADV_DONTNEED), 0);
        QCOMPARE(::pread(held, old, sizeof old, 0), ssize_t(9));  // still the version it opened
        QCOMPARE(QByteArray(old, 9), QByteArray("original\n"));
        held_closed.dismiss();
        QCOMPARE(::close(held), 0);
        QTRY_VERIFY_WITH_TIMEOUT(!QFileInfo::exists(m->at(held_aside)), 5000);
        QCOMPARE(text(m->direct("held.txt")), QByteArray("server edit\n"));  // its last close removed nothing there
        QCOMPARE(hidden(m->backing()), QStringList());
        QVERIFY2(m->unmount(), qPrintable(m->error()));
        QVERIFY2(!m->log().contains("are lost"), qPrintable(m->log().right(2000)));
    }

    void collisions_become_conflicts_with_both_versions_kept() {
        auto m = make_mount();
        for (const char* name :
             {"both.txt", "del_here.txt", "del_there.txt", "quiet.txt", "atomic.txt", "vim.txt", "vim_gone.txt"})
            QVERIFY(put_text(m->direct(name), QByteArray("original ") + name + "\n"));
        QVERIFY2(m->mount(), qPrintable(m->error()));
        tree(m->mountpoint());  // cache everything
        QVERIFY(netfs_ok(*m, "offline"));

        QVERIFY(put_text(m->at("both.txt"), "local edit\n"));
        QCOMPARE(::unlink(qPrintable(m->at("del_here.txt"))), 0);
        QVERIFY(put_text(m->at("del_there.txt"), "local edit of a file the server deletes\n"));
        QVERIFY(put_text(m->at("taken.txt"), "created here\n"));
        // Editors' saves: a temporary renamed over the file, and vim's
        // (the file moved to NAME~, a new one written, NAME~ removed).
        QVERIFY(put_text(m->at(".atomic.txt.tmp"), "saved here\n"));
        QCOMPARE(::rename(qPrintable(m->at(".atomic.txt.tmp")), qPrintable(m->at("atomic.txt"))), 0);
        QCOMPARE(::rename(qPrintable(m->at("vim.txt")), qPrintable(m->at("vim.txt~"))), 0);
        QVERIFY(put_text(m->at("vim.txt"), "saved here\n"));
        QCOMPARE(::unlink(qPrintable(m->at("vim.txt~"))), 0);
        QCOMPARE(::rename(qPrintable(m->at("vim_gone.txt")), qPrintable(m->at("vim_gone.txt~"))), 0);
        QVERIFY(put_text(m->at("vim_gone.txt"), "saved here\n"));
        QCOMPARE(::unlink(qPrintable(m->at("vim_gone.txt~"))), 0);
        QThread::msleep(1100);  // a different mtime on the server, even at 1 s resolution

        QVERIFY(put_text(m->direct("both.txt"), "server edit\n"));
        QVERIFY(put_text(m->direct("del_here.txt"), "server edit of a file deleted here\n"));
        QVERIFY(QFile::remove(m->direct("del_there.txt")));
        QVERIFY(put_text(m->direct("taken.txt"), "created on the server\n"));
        QVERIFY(put_text(m->direct("atomic.txt"), "server edit\n"));
        QVERIFY(put_text(m->direct("vim.txt"), "server edit\n"));
        QVERIFY(QFile::remove(m->direct("vim_gone.txt")));

        QVERIFY(netfs_ok(*m, "online"));
        const QJsonObject outcome = netfs_json(*m, "sync");
        QCOMPARE(outcome["pending"].toInteger(), 0);
        QCOMPARE(outcome["conflicts_unresolved"].toInteger(), 7);
        QCOMPARE(netfs_json(*m, "status")["conflicts"].toInteger(), 7);
        // Told also when the pass that found them ran by itself before.
        const RunResult again = run(NETFS_BINARY, {"sync", m->mountpoint()}, 30000, m->environment());
        QCOMPARE(again.exit_code, 0);
        QVERIFY2(again.out.contains("applied 0, new conflicts 0, pending 0\n7 conflicts to resolve: netfs conflicts "),
                 qPrintable(again.out));

        // One conflict for each file, an editor's save included.
        const QJsonArray list = netfs_json(*m, "conflicts")["conflicts"].toArray();
        QCOMPARE(list.size(), 7);
        QMap<QString, QJsonObject> by_path;
        for (const auto& c : list)
            by_path[c.toObject()["path"].toString()] = c.toObject();
        QCOMPARE(by_path["/both.txt"]["kind"].toString(), QString("update/update"));
        QCOMPARE(by_path["/del_here.txt"]["kind"].toString(), QString("delete/update"));
        QCOMPARE(by_path["/del_there.txt"]["kind"].toString(), QString("update/delete"));
        QCOMPARE(by_path["/taken.txt"]["kind"].toString(), QString("create/create"));
        QCOMPARE(by_path["/atomic.txt"]["kind"].toString(), QString("update/update"));
        QCOMPARE(by_path["/vim.txt"]["kind"].toString(), QString("update/update"));
        QCOMPARE(by_path["/vim_gone.txt"]["kind"].toString(), QString("update/delete"));

        // The server's versions stay where they were.
        QCOMPARE(text(m->direct("both.txt")), QByteArray("server edit\n"));
        QCOMPARE(text(m->direct("del_here.txt")), QByteArray("server edit of a file deleted here\n"));
        QVERIFY(!QFileInfo::exists(m->direct("del_there.txt")));
        QVERIFY(!QFileInfo::exists(m->direct("vim_gone.txt")));
        QCOMPARE(text(m->direct("taken.txt")), QByteArray("created on the server\n"));
        // The local ones beside them, named as users of sync clients expect.
        auto copy_of = [&](const QString& path) { return m->direct(by_path[path]["copy"].toString().mid(1)); };
        QVERIFY(by_path["/both.txt"]["copy"].toString().startsWith("/both (conflicted copy "));
        QVERIFY(by_path["/both.txt"]["copy"].toString().endsWith(").txt"));
        QCOMPARE(text(copy_of("/both.txt")), QByteArray("local edit\n"));
        QCOMPARE(text(copy_of("/del_there.txt")), QByteArray("local edit of a file the server deletes\n"));
        QCOMPARE(text(copy_of("/taken.txt")), QByteArray("created here\n"));
        QCOMPARE(text(copy_of("/vim_gone.txt")), QByteArray("saved here\n"));
        for (const char* name : {"atomic.txt", "vim.txt"}) {
            QCOMPARE(text(m->direct(name)), QByteArray("server edit\n"));
            QCOMPARE(text(copy_of(QString("/") + name)), QByteArray("saved here\n"));
        }
        QCOMPARE(by_path["/del_here.txt"]["copy"].toString(), QString());
        QCOMPARE(text(m->direct("quiet.txt")), QByteArray("original quiet.txt\n"));
        // No temporary or backup name is left.
        QCOMPARE(QDir(m->backing()).entryList(QDir::Files | QDir::Hidden).size(), 6 + 6);
        // The mount shows all of it too.
        QCOMPARE(text(m->at("both.txt")), QByteArray("server edit\n"));
        QCOMPARE(text(m->at(by_path["/both.txt"]["copy"].toString().mid(1))), QByteArray("local edit\n"));

        // Resolving: each choice is carried out on the server.
        auto resolve = [&](const QStringList& paths, const QString& keep) {
            QStringList args{"resolve"};
            for (const QString& p : paths)
                args << m->at(p);
            args << "--keep" << keep;
            const RunResult r = run(NETFS_BINARY, args, 30000, m->environment());
            return r.exit_code == 0 ? QString() : r.err;
        };
        const QString both_copy = by_path["/both.txt"]["copy"].toString().mid(1);
        const QString atomic_copy = copy_of("/atomic.txt"), vim_copy = copy_of("/vim.txt");
        QCOMPARE(resolve({"both.txt"}, "local"), QString());
        QCOMPARE(resolve({"atomic.txt"}, "local"), QString());
        QCOMPARE(resolve({"vim.txt"}, "remote"), QString());
        QCOMPARE(resolve({by_path["/taken.txt"]["copy"].toString().mid(1)}, "remote"), QString());  // by the copy's name
        QCOMPARE(resolve({"del_there.txt", "del_here.txt"}, "both"), QString());
        const QString vim_gone_copy = copy_of("/vim_gone.txt");
        QCOMPARE(resolve({"vim_gone.txt"}, "local"), QString());
        QVERIFY(!resolve({"quiet.txt"}, "local").isEmpty());  // no conflict there: an error, nothing done
        QCOMPARE(netfs_json(*m, "conflicts")["conflicts"].toArray().size(), 0);
        QCOMPARE(text(m->direct("both.txt")), QByteArray("local edit\n"));
        QVERIFY(!QFileInfo::exists(m->direct(both_copy)));
        QCOMPARE(text(m->direct("taken.txt")), QByteArray("created on the server\n"));
        QVERIFY(!QFileInfo::exists(copy_of("/taken.txt")));
        QCOMPARE(text(copy_of("/del_there.txt")), QByteArray("local edit of a file the server deletes\n"));
        QCOMPARE(text(m->direct("del_here.txt")), QByteArray("server edit of a file deleted here\n"));
        QCOMPARE(text(m->direct("quiet.txt")), QByteArray("original quiet.txt\n"));
        QCOMPARE(text(m->direct("atomic.txt")), QByteArray("saved here\n"));
        QCOMPARE(text(m->direct("vim.txt")), QByteArray("server edit\n"));
        QVERIFY(!QFileInfo::exists(atomic_copy));
        QVERIFY(!QFileInfo::exists(vim_copy));
        QCOMPARE(text(m->direct("vim_gone.txt")), QByteArray("saved here\n"));  // brought back, as chosen
        QVERIFY(!QFileInfo::exists(vim_gone_copy));
        QVERIFY2(m->unmount(), qPrintable(m->error()));
    }

    // Resolving while offline: the choice is logged and reintegrated like
    // any other change; "keep local" of a local deletion deletes on the server.
    void a_resolution_made_offline_is_reintegrated() {
        auto m = make_mount();
        QVERIFY(put_text(m->direct("gone_here.txt"), "v1\n"));
        QVERIFY2(m->mount(), qPrintable(m->error()));
        tree(m->mountpoint());
        QVERIFY(netfs_ok(*m, "offline"));
        QCOMPARE(::unlink(qPrintable(m->at("gone_here.txt"))), 0);
        QThread::msleep(1100);
        QVERIFY(put_text(m->direct("gone_here.txt"), "v2 from the server\n"));
        QVERIFY(netfs_ok(*m, "online"));
        netfs_json(*m, "sync");
        QCOMPARE(netfs_json(*m, "status")["conflicts"].toInteger(), 1);
        QVERIFY(m->wait_for_mode("connected", 10000));
        QCOMPARE(text(m->at("gone_here.txt")), QByteArray("v2 from the server\n"));

        QVERIFY(netfs_ok(*m, "offline"));
        const RunResult r =
            run(NETFS_BINARY, {"resolve", m->at("gone_here.txt"), "--keep", "local"}, 30000, m->environment());
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        QVERIFY(!QFileInfo::exists(m->at("gone_here.txt")));
        QVERIFY(QFileInfo::exists(m->direct("gone_here.txt")));  // still offline
        QVERIFY(netfs_ok(*m, "online"));
        QCOMPARE(netfs_json(*m, "sync")["pending"].toInteger(), 0);
        QVERIFY(!QFileInfo::exists(m->direct("gone_here.txt")));
        QCOMPARE(netfs_json(*m, "status")["conflicts"].toInteger(), 0);
        QVERIFY2(m->unmount(), qPrintable(m->error()));
    }

    // Pinned folders: fetched in the background, refreshed with what the
    // server adds, readable offline, never culled; a pin that cannot fit is
    // refused with a clear error.
    void pinned_folders_are_available_offline() {
        RemoteSpec spec;
        QStringList options;
        use_test_remote(spec, options);
        options << "pin_refresh=0.5";
        MountFixture m(spec, options);
        m.set_extra_args({"--cache-size", "16M"});
        QVERIFY(QDir().mkpath(m.direct("work/deep")));
        QVERIFY(QDir().mkpath(m.direct("bulk")));
        QVERIFY(write_file(m.direct("work/deep/a.bin"), random_bytes(3 << 20, 11)));
        QVERIFY(put_text(m.direct("work/notes.txt"), "notes\n"));
        QVERIFY(write_file(m.direct("bulk/one.bin"), random_bytes(12 << 20, 12)));
        QVERIFY(write_file(m.direct("bulk/two.bin"), random_bytes(12 << 20, 13)));
        QVERIFY2(m.mount(), qPrintable(m.error()));

        RunResult r = run(NETFS_BINARY, {"pin", m.at("work"), "--wait"}, 60000, m.environment());
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        QJsonObject status = netfs_json(m, "status");
        QCOMPARE(status["pins"].toArray().size(), 1);
        QJsonObject pin = status["pins"].toArray()[0].toObject();
        QCOMPARE(pin["path"].toString(), QString("/work"));
        QCOMPARE(pin["state"].toString(), QString("ready"));
        QCOMPARE(pin["total_bytes"].toInteger(), (3 << 20) + 6);
        QCOMPARE(pin["present_bytes"].toInteger(), pin["total_bytes"].toInteger());
        QVERIFY(status["ready_for_offline"].toBool());

        // Too big for the cache beside what is pinned: refused, in one line.
        r = run(NETFS_BINARY, {"pin", m.at("bulk")}, 60000, m.environment());
        QCOMPARE(r.exit_code, 1);
        QVERIFY2(r.err.contains("more than the cache's limit"), qPrintable(r.err));
        QCOMPARE(netfs_json(m, "status")["pins"].toArray().size(), 1);

        // Added on the server later: pinned too (sticky).
        QVERIFY(write_file(m.direct("work/deep/later.bin"), random_bytes(1 << 20, 14)));
        QElapsedTimer clock;
        clock.start();
        do {
            pin = netfs_json(m, "status")["pins"].toArray()[0].toObject();
            if (pin["total_bytes"].toInteger() == (4 << 20) + 6 && pin["state"].toString() == "ready")
                break;
            QThread::msleep(200);
        } while (clock.elapsed() < 15000);
        QCOMPARE(pin["total_bytes"].toInteger(), (4 << 20) + 6);
        QCOMPARE(pin["present_bytes"].toInteger(), pin["total_bytes"].toInteger());

        // Reading more than the cache holds culls, but not the pinned.
        QCOMPARE(read_file(m.at("bulk/one.bin")), random_bytes(12 << 20, 12));
        QCOMPARE(read_file(m.at("bulk/two.bin")), random_bytes(12 << 20, 13));
        QVERIFY(netfs_ok(m, "offline"));
        QCOMPARE(read_file(m.at("work/deep/a.bin")), random_bytes(3 << 20, 11));
        QCOMPARE(read_file(m.at("work/deep/later.bin")), random_bytes(1 << 20, 14));
        QCOMPARE(text(m.at("work/notes.txt")), QByteArray("notes\n"));
        QCOMPARE(QDir(m.at("work/deep")).entryList(QDir::Files, QDir::Name), QStringList({"a.bin", "later.bin"}));
        QVERIFY(netfs_ok(m, "online"));

        r = run(NETFS_BINARY, {"unpin", m.at("work")}, 30000, m.environment());
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        QCOMPARE(netfs_json(m, "status")["pins"].toArray().size(), 0);
        r = run(NETFS_BINARY, {"unpin", m.at("work")}, 30000, m.environment());
        QCOMPARE(r.exit_code, 1);
        QVERIFY2(r.err.contains("not pinned"), qPrintable(r.err));
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    // SIGKILL while changes are pending: after a restart they are still
    // pending (and visible), then reach the server.
    void pending_changes_survive_a_daemon_kill() {
        auto m = make_mount();
        QVERIFY(put_text(m->direct("a.txt"), "before\n"));
        QVERIFY2(m->mount(), qPrintable(m->error()));
        QCOMPARE(text(m->at("a.txt")), QByteArray("before\n"));
        QVERIFY(netfs_ok(*m, "offline"));
        const auto data = random_bytes(2 * 1024 * 1024 + 77, 9);
        {
            const int fd = ::open(qPrintable(m->at("big.bin")), O_WRONLY | O_CREAT | O_EXCL, 0644);
            QVERIFY(fd >= 0);
            QCOMPARE(::write(fd, data.data(), data.size()), ssize_t(data.size()));
            QCOMPARE(::fsync(fd), 0);  // durable in the journal from here on
            QCOMPARE(::close(fd), 0);
        }
        {
            const int fd = ::open(qPrintable(m->at("a.txt")), O_WRONLY | O_TRUNC);
            QVERIFY(fd >= 0);
            QCOMPARE(::write(fd, "after\n", 6), ssize_t(6));
            QCOMPARE(::fsync(fd), 0);
            QCOMPARE(::close(fd), 0);
        }
        QVERIFY(QDir().mkdir(m->at("made")));
        QVERIFY2(m->crash(), qPrintable(m->error()));

        QVERIFY2(m->mount(), qPrintable(m->error()));
        // Still pending: the mount shows the local state and has not sent it
        // (it reintegrates by itself; either way nothing may be lost).
        QCOMPARE(read_file(m->at("big.bin")), data);
        QCOMPARE(text(m->at("a.txt")), QByteArray("after\n"));
        const QJsonObject outcome = netfs_json(*m, "sync");
        QCOMPARE(outcome["pending"].toInteger(), 0);
        QCOMPARE(read_file(m->direct("big.bin")), data);
        QCOMPARE(text(m->direct("a.txt")), QByteArray("after\n"));
        QVERIFY(QFileInfo(m->direct("made")).isDir());
        QVERIFY2(m->unmount(), qPrintable(m->error()));
    }

    // Offline state is kept across a clean unmount too: the next mount
    // starts by reintegrating it.
    void a_remount_reintegrates_what_is_pending() {
        auto m = make_mount();
        QVERIFY2(m->mount(), qPrintable(m->error()));
        QVERIFY(netfs_ok(*m, "offline"));
        QVERIFY(put_text(m->at("later.txt"), "sent after the remount\n"));
        QVERIFY2(m->unmount(), qPrintable(m->error()));
        QVERIFY(!QFileInfo::exists(m->direct("later.txt")));
        QVERIFY2(m->mount(), qPrintable(m->error()));
        QCOMPARE(netfs_json(*m, "sync")["pending"].toInteger(), 0);
        QCOMPARE(text(m->direct("later.txt")), QByteArray("sent after the remount\n"));
        QVERIFY2(m->unmount(), qPrintable(m->error()));
    }
};

QTEST_GUILESS_MAIN(TestOffline)
#include "test_offline.moc"
