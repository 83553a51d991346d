// Disconnected operation when the server really goes away: sshd and
// nfs-ganesha killed under a mount, a mount made while the server is down,
// and a reintegration cut in the middle. The mount switches to disconnected
// by itself within 5 s, keeps serving what is cached, logs changes, and
// replays them by itself when the server is back: nothing lost, nothing
// applied twice.
#include "tests/support/ganesha_server.h"
#include "tests/support/mount_fixture.h"
#include "tests/support/sshd_server.h"

#include <QDir>
#include <QElapsedTimer>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>
#include <QRegularExpression>
#include <QTest>
#include <QThread>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <thread>

using namespace netfs::test;

namespace {

QJsonObject status_of(const MountFixture& m) {
    const RunResult r = run(NETFS_BINARY, {"status", m.mountpoint(), "--json"}, 10000, m.environment());
    return QJsonDocument::fromJson(r.out.toUtf8()).object();
}

// How long until `netfs status` shows `mode` (ms), -1 after `within_ms`.
qint64 time_to_mode(const MountFixture& m, const QString& mode, int within_ms) {
    QElapsedTimer clock;
    clock.start();
    return m.wait_for_mode(mode, within_ms) ? clock.elapsed() : -1;
}

// Waits until the server's copy of `path` holds `content` (reintegration
// runs by itself once the server is back).
bool wait_for_content(const QString& path, const std::vector<std::byte>& content, int within_ms) {
    QElapsedTimer clock;
    clock.start();
    do {
        std::vector<std::byte> now;
        if (read_file(path, now) && now == content)
            return true;
        QThread::msleep(100);
    } while (clock.elapsed() < within_ms);
    return false;
}

// Until the cache holds all of `path` (`user.netfs.state` says cached=100%).
bool wait_until_cached(const QString& path) {
    QElapsedTimer clock;
    clock.start();
    do {
        char value[256] = {};
        const ssize_t n = ::getxattr(qPrintable(path), "user.netfs.state", value, sizeof value - 1);
        if (n > 0 && QByteArray(value, n).contains("cached=100%"))
            return true;
        QThread::msleep(20);
    } while (clock.elapsed() < 10000);
    return false;
}

// The scenario both servers go through: cached data stays readable,
// uncached data fails fast, changes are kept and replayed by themselves.
void lose_and_regain(MountFixture& m, const std::function<void()>& kill, const std::function<bool()>& restart,
                     const char* what) {
    const auto cached = random_bytes(600 * 1024, 1);
    QVERIFY(write_file(m.direct("cached.bin"), cached));
    QVERIFY(write_file(m.direct("uncached.bin"), random_bytes(300 * 1024, 2)));
    QVERIFY(QDir().mkpath(m.direct("dir")));
    QVERIFY2(m.mount(), qPrintable(m.error()));
    QCOMPARE(read_file(m.at("cached.bin")), cached);
    QCOMPARE(QDir(m.at("dir")).entryList(QDir::NoDotAndDotDot | QDir::AllEntries).size(), 0);
    QVERIFY(m.wait_for_mode("connected", 1000));

    kill();
    const qint64 noticed = time_to_mode(m, "disconnected", 5000);
    QVERIFY2(noticed >= 0, qPrintable(QString("%1: not disconnected within 5 s").arg(what)));
    qInfo("%s: disconnected %lld ms after the server was killed", what, noticed);

    QCOMPARE(read_file(m.at("cached.bin")), cached);
    QElapsedTimer clock;
    clock.start();
    std::vector<std::byte> ignored;
    QVERIFY(!read_file(m.at("uncached.bin"), ignored));
    QVERIFY2(clock.elapsed() < 1000, qPrintable(QString("an uncached read took %1 ms").arg(clock.elapsed())));
    const auto written = random_bytes(200 * 1024, 3);
    QVERIFY(write_file(m.at("dir/new.bin"), written));
    auto edited = cached;
    edited[1000] = std::byte{0x5a};
    QVERIFY(write_file(m.at("cached.bin"), edited));
    QVERIFY(status_of(m)["pending_operations"].toInteger() >= 2);
    QVERIFY(!QFileInfo::exists(m.direct("dir/new.bin")));

    QVERIFY(restart());
    // By itself: no netfs online, no netfs sync.
    QVERIFY2(wait_for_content(m.direct("dir/new.bin"), written, 30000),
             qPrintable(QString("%1: the new file did not reach the server").arg(what)));
    QVERIFY(wait_for_content(m.direct("cached.bin"), edited, 10000));
    QVERIFY(m.wait_for_mode("connected", 10000));
    QCOMPARE(status_of(m)["pending_operations"].toInteger(), 0);
    QCOMPARE(status_of(m)["conflicts"].toInteger(), 0);
    QCOMPARE(read_file(m.at("uncached.bin")), random_bytes(300 * 1024, 2));
    QVERIFY2(m.unmount(), qPrintable(m.error()));
}

// A mount of `nfs`'s export over NFSv4 without a cache: no disconnected
// mode, so what programs see of an outage is the engine's retries.
RemoteSpec nfs4_spec(const GaneshaServer& nfs) {
    RemoteSpec spec;
    spec.kind = "nfs4";
    spec.url = nfs.url({}, 4);
    spec.backing = nfs.export_dir();
    return spec;
}

struct Answer {
    int error = -1;        // errno, 0 for success
    qint64 after_ms = -1;  // since the call
};

// Runs each of `asks` (a system call: 0 or an errno) in a thread of its
// own and restarts `nfs` `restart_after_ms` after they started. The calls
// run in threads and the server is started from this one, as a server
// forked from a thread dies with it.
std::vector<Answer> ask_across_restart(MountFixture& m, GaneshaServer& nfs, int restart_after_ms,
                                       const std::vector<std::function<int()>>& asks) {
    QElapsedTimer clock;
    clock.start();
    std::vector<Answer> answers(asks.size());
    std::vector<std::thread> askers;
    for (std::size_t i = 0; i < asks.size(); ++i)
        askers.emplace_back([&, i] {
            answers[i].error = asks[i]();
            answers[i].after_ms = clock.elapsed();
        });
    QThread::msleep(restart_after_ms);
    const bool restarted = nfs.restart();
    for (auto& t : askers)
        t.join();
    if (!restarted)
        qWarning("ganesha did not start again: %s", qPrintable(nfs.error()));
    for (const Answer& a : answers)
        if (a.error != 0) {
            qWarning("daemon log:\n%s", qPrintable(m.log().right(4000)));
            break;
        }
    return answers;
}

int errno_of(int rc) { return rc == 0 ? 0 : errno; }

// Kills `nfs`, stats `path` and restarts the server `restart_after_ms`
// after the call.
Answer stat_across_restart(MountFixture& m, GaneshaServer& nfs, const QString& path, struct stat& st,
                           int restart_after_ms) {
    nfs.kill();
    return ask_across_restart(m, nfs, restart_after_ms,
                              {[&] { return errno_of(::stat(qPrintable(path), &st)); }})[0];
}

} // namespace

class TestServerLoss : public QObject {
    Q_OBJECT
private slots:
    void sshd_killed_and_restarted() {
        SshdServer sshd;
        QVERIFY2(sshd.start(), qPrintable(sshd.error()));
        RemoteSpec spec;
        spec.kind = "sftp";
        spec.url = sshd.url();
        spec.backing = sshd.served();
        MountFixture m(spec, sshd.options().split(','));
        lose_and_regain(m, [&] { sshd.kill(); }, [&] { return sshd.restart(); }, "sftp");
    }

    void ganesha_killed_and_restarted() {
        GaneshaServer nfs;
        QVERIFY2(nfs.start(), qPrintable(nfs.error()));
        RemoteSpec spec;
        spec.kind = "nfs3";
        spec.url = nfs.url();
        spec.backing = nfs.export_dir();
        MountFixture m(spec);
        lose_and_regain(m, [&] { nfs.kill(); }, [&] { return nfs.restart(); }, "nfs");
    }

    // Without a cache there is no disconnected mode: a server restart is
    // ridden out by the engine's retries. A name never looked up before,
    // asked for while the server is down, is answered once it is back; the
    // backend calls the server unreachable (two failed reconnects) long
    // before that, which must not end the retries.
    void a_mount_without_cache_rides_out_a_server_restart() {
        GaneshaServer nfs;
        QVERIFY2(nfs.start(), qPrintable(nfs.error()));
        MountFixture m(nfs4_spec(nfs));
        m.set_extra_args({"--no-cache"});
        const auto data = random_bytes(70000, 5);
        QVERIFY(write_file(m.direct("a.bin"), data));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        struct stat st;
        const Answer answer = stat_across_restart(m, nfs, m.at("a.bin"), st, 2500);
        QVERIFY(nfs.running());
        QCOMPARE(answer.error, 0);
        QVERIFY2(answer.after_ms >= 2500, "answered only once the server was back");
        QCOMPARE(st.st_size, 70000);
        QCOMPARE(read_file(m.at("a.bin")), data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    // Changes asked for while the backend knows the server is down (two
    // reconnects failed) were never sent: they wait for it as lookups do,
    // and each is carried out once, when it is back. Before, they failed
    // with EIO at once: only idempotent calls were asked again. Then a
    // create asked while the connection is being made again: the request
    // waits for it, and the new connection is not the one it was meant for,
    // so again it was never sent.
    void changes_asked_while_the_server_is_down_are_made_once_it_is_back() {
        GaneshaServer nfs;
        QVERIFY2(nfs.start(), qPrintable(nfs.error()));
        // Names kept long enough that no lookup before a change (which is
        // asked again by itself) waits for the server in its place: those
        // in work/ are known, those missing known missing, as work/ and
        // everything in it is made through this mount. One directory per
        // change, since the kernel makes changes in one directory wait
        // for each other.
        MountFixture m(nfs4_spec(nfs), {"entry_timeout=60", "attr_timeout=60", "dir_cache_time=60"});
        m.set_extra_args({"--no-cache"});
        QVERIFY2(m.mount(), qPrintable(m.error()));
        const auto data = random_bytes(5000, 8);
        for (const char* dir : {"work", "work/a", "work/b", "work/c", "work/d", "work/e"})
            QCOMPARE(::mkdir(qPrintable(m.at(dir)), 0755), 0);
        QVERIFY(write_file(m.at("work/c/old.bin"), data));
        QVERIFY(write_file(m.at("work/d/gone.bin"), data));

        const auto wait_for_log = [&](const QString& text, qsizetype after) {
            QElapsedTimer clock;
            clock.start();
            while (m.log().indexOf(text, after) < 0) {
                if (clock.elapsed() > 10000)
                    return false;
                QThread::msleep(20);
            }
            return true;
        };
        nfs.kill();
        QVERIFY2(wait_for_log("server unreachable", 0), "the backend did not notice the server was gone");
        const auto made = random_bytes(7000, 9);
        const auto create = [&](const char* name) {
            const int fd = ::open(qPrintable(m.at(name)), O_WRONLY | O_CREAT | O_EXCL, 0644);
            if (fd < 0)
                return errno;
            const bool wrote = ::write(fd, made.data(), made.size()) == static_cast<ssize_t>(made.size());
            const int e = wrote ? 0 : errno;
            return ::close(fd) == 0 ? e : errno;
        };
        auto answers = ask_across_restart(
            m, nfs, 2500,
            {[&] { return errno_of(::mkdir(qPrintable(m.at("work/a/dir")), 0755)); },
             [&] { return create("work/b/new.bin"); },
             [&] {
                 return errno_of(
                     ::rename(qPrintable(m.at("work/c/old.bin")), qPrintable(m.at("work/c/renamed.bin"))));
             },
             [&] { return errno_of(::unlink(qPrintable(m.at("work/d/gone.bin")))); }});
        QVERIFY(nfs.running());
        for (const Answer& a : answers) {
            QCOMPARE(a.error, 0);
            QVERIFY2(a.after_ms >= 2500, "answered only once the server was back");
        }
        QVERIFY(QFileInfo(m.direct("work/a/dir")).isDir());
        QCOMPARE(read_file(m.direct("work/b/new.bin")), made);
        QVERIFY(!QFileInfo::exists(m.direct("work/c/old.bin")));
        QCOMPARE(read_file(m.direct("work/c/renamed.bin")), data);
        QVERIFY(!QFileInfo::exists(m.direct("work/d/gone.bin")));
        QCOMPARE(read_file(m.at("work/b/new.bin")), made);

        // A create while the connection is being made again: once every
        // connection knows (one that had not noticed yet would send it, and
        // a create lost in flight is an error: it may have been made).
        const qsizetype seen = m.log().size();
        nfs.kill();
        const QRegularExpressionMatch pool = QRegularExpression(", (\\d+) connections,").match(m.log());
        QVERIFY(pool.hasMatch());
        for (int i = 0; i < pool.captured(1).toInt(); ++i)
            QVERIFY2(wait_for_log(QString("connection %1 down (").arg(i), seen),
                     "the backend did not notice the server was gone");
        answers = ask_across_restart(m, nfs, 0, {[&] { return create("work/e/new.bin"); }});
        QVERIFY(nfs.running());
        QCOMPARE(answers[0].error, 0);
        QCOMPARE(read_file(m.direct("work/e/new.bin")), made);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    // A handle that wrote to the server before it went away cannot put its
    // later writes on a local copy. They are asked again until the
    // timeout (a short restart is ridden out, and nothing is kept); then
    // the file as the mount sees it is kept here, and fsync succeeds:
    // an unmount while the server is still away loses nothing, and the
    // next mount puts the change on the server. Before, fsync failed with
    // EIO and the unmount reported the bytes lost.
    void a_handle_that_wrote_before_an_outage_keeps_its_writes_after_the_timeout() {
        GaneshaServer nfs;
        QVERIFY2(nfs.start(), qPrintable(nfs.error()));
        MountFixture m(nfs4_spec(nfs), {"nfs_version=4", "timeout=3"});
        auto expected = random_bytes(300 * 1024, 31);
        QVERIFY(write_file(m.direct("tied.bin"), expected));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QCOMPARE(read_file(m.at("tied.bin")), expected);
        QVERIFY2(wait_until_cached(m.at("tied.bin")), "the file read was not cached");
        const int fd = ::open(qPrintable(m.at("tied.bin")), O_RDWR);
        QVERIFY(fd >= 0);
        auto overwrite = [&](std::size_t at, std::size_t n, std::uint64_t seed) {
            const auto bytes = random_bytes(n, seed);
            std::copy(bytes.begin(), bytes.end(), expected.begin() + at);
            return ::pwrite(fd, bytes.data(), n, off_t(at)) == ssize_t(n);
        };
        QVERIFY(overwrite(1000, 100, 32));
        QCOMPARE(::fsync(fd), 0);  // on the server: the handle is tied to it

        nfs.kill();
        QVERIFY(m.wait_for_mode("disconnected", 10000));
        QVERIFY(overwrite(200000, 5000, 33));
        QElapsedTimer clock;
        clock.start();
        QCOMPARE(::fsync(fd), 0);
        QVERIFY2(clock.elapsed() >= 2500, "kept before the timeout: a short restart would not be ridden out");
        QVERIFY(overwrite(7, 7, 34));  // and the handle goes on on the kept copy
        QCOMPARE(::close(fd), 0);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
        QVERIFY2(!m.log().contains("are lost"), qPrintable(m.log().right(2000)));

        QVERIFY2(nfs.restart(), qPrintable(nfs.error()));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY2(wait_for_content(m.direct("tied.bin"), expected, 30000), "the kept change did not reach the server");
        QVERIFY(m.wait_for_mode("connected", 10000));
        QCOMPARE(status_of(m)["pending_operations"].toInteger(), 0);
        QCOMPARE(status_of(m)["conflicts"].toInteger(), 0);  // it stands on the version its fsync left
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    void a_new_fsid_after_a_restart_changes_nothing_data() {
        QTest::addColumn<int>("version");
        QTest::newRow("v3") << 3;
        QTest::newRow("v4") << 4;
    }
    // A server may report another fsid for the export after a restart (one
    // made from a device number). File ids depend on it (file_id_on): had
    // the mount kept the old one, every file would look replaced, an edit
    // made offline would come back as a conflicted copy, and a file open
    // across the restart would go stale.
    void a_new_fsid_after_a_restart_changes_nothing() {
        QFETCH(int, version);
        GaneshaServer nfs;
        nfs.set_filesystem_id("7.7");
        QVERIFY2(nfs.start(), qPrintable(nfs.error()));
        RemoteSpec spec{version == 3 ? "nfs3" : "nfs4", QString(), nfs.url({}, version), nfs.export_dir()};
        MountFixture m(spec, version == 4 ? QStringList{"nfs_version=4"} : QStringList{});
        const auto before = random_bytes(100 * 1024, 11);
        QVERIFY(write_file(m.direct("edited.bin"), before));
        QVERIFY(write_file(m.direct("open.bin"), before));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QCOMPARE(read_file(m.at("edited.bin")), before);
        QVERIFY2(wait_until_cached(m.at("edited.bin")), "the file read was not cached");  // (stored in the background)
        const int fd = ::open(qPrintable(m.at("open.bin")), O_RDWR);  // open across the restart
        QVERIFY(fd >= 0);

        nfs.kill();
        QVERIFY(m.wait_for_mode("disconnected", 10000));
        auto edited = before;
        edited[5] = std::byte{0x42};
        QVERIFY(write_file(m.at("edited.bin"), edited));
        nfs.set_filesystem_id("9.9");
        QVERIFY2(nfs.restart(), qPrintable(nfs.error()));

        QVERIFY2(wait_for_content(m.direct("edited.bin"), edited, 30000), "the edit did not reach the server");
        QVERIFY(m.wait_for_mode("connected", 10000));
        QCOMPARE(status_of(m)["pending_operations"].toInteger(), 0);
        QCOMPARE(status_of(m)["conflicts"].toInteger(), 0);
        QCOMPARE(QDir(nfs.export_dir()).entryList(QDir::Files), (QStringList{"edited.bin", "open.bin"}));
        const auto written = random_bytes(3000, 12);
        QCOMPARE(::pwrite(fd, written.data(), written.size(), 0), ssize_t(written.size()));
        QCOMPARE(::fsync(fd), 0);  // the handle, opened again on the new connection, is not stale
        QCOMPARE(::close(fd), 0);
        auto expected = before;
        std::copy(written.begin(), written.end(), expected.begin());
        QCOMPARE(read_file(m.direct("open.bin")), expected);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    // A server gone longer than the timeout is given up: requests fail at
    // once until it is back. Once it is back, the next restart is ridden
    // out again, however long after.
    void a_server_given_up_is_waited_for_again_once_it_is_back() {
        GaneshaServer nfs;
        QVERIFY2(nfs.start(), qPrintable(nfs.error()));
        MountFixture m(nfs4_spec(nfs), {"timeout=10"});
        m.set_extra_args({"--no-cache"});
        QVERIFY(write_file(m.direct("a.bin"), random_bytes(1000, 1)));
        QVERIFY(write_file(m.direct("b.bin"), random_bytes(2000, 2)));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        struct stat st;

        nfs.kill();
        QElapsedTimer clock;
        clock.start();
        QCOMPARE(::stat(qPrintable(m.at("a.bin")), &st), -1);
        QCOMPARE(errno, EIO);
        QVERIFY2(clock.elapsed() >= 9000, "waited out the timeout first");
        clock.restart();
        QCOMPARE(::stat(qPrintable(m.at("a.bin")), &st), -1);
        QVERIFY2(clock.elapsed() < 1000, "given up: at once");
        QVERIFY2(nfs.restart(), qPrintable(nfs.error()));
        clock.restart();
        while (::stat(qPrintable(m.at("a.bin")), &st) != 0) {
            QVERIFY2(clock.elapsed() < 20000, "the mount answers again once the server is back");
            QThread::msleep(100);
        }
        QCOMPARE(st.st_size, 1000);

        // A restart now, shorter than the timeout: not an error. Restarted
        // soon, so that the reconnect's attempts (0, 0.5, 1.5, 3.5, 7.5 s
        // after the kill) find the server up within the 10 s timeout even
        // when its start is slow.
        const Answer answer = stat_across_restart(m, nfs, m.at("b.bin"), st, 500);
        QVERIFY(nfs.running());
        QCOMPARE(answer.error, 0);
        QCOMPARE(st.st_size, 2000);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    // A laptop mounting on the train: the server is down, the cache knows
    // the tree. The mount starts disconnected and connects later by itself.
    void a_mount_starts_disconnected_when_the_server_is_down() {
        SshdServer sshd;
        QVERIFY2(sshd.start(), qPrintable(sshd.error()));
        RemoteSpec spec;
        spec.kind = "sftp";
        spec.url = sshd.url();
        spec.backing = sshd.served();
        MountFixture m(spec, (sshd.options() + ",connect_timeout=2").split(','));
        const auto data = random_bytes(100 * 1024, 7);
        QVERIFY(write_file(m.direct("doc.bin"), data));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QCOMPARE(read_file(m.at("doc.bin")), data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));

        sshd.stop();
        QVERIFY2(m.mount(), qPrintable("mounting with the server down: " + m.error()));
        QCOMPARE(status_of(m)["mode"].toString(), QString("disconnected"));
        QCOMPARE(read_file(m.at("doc.bin")), data);
        const auto later = random_bytes(5000, 8);
        QVERIFY(write_file(m.at("written_on_the_train.bin"), later));

        QVERIFY(sshd.restart());
        QVERIFY2(wait_for_content(m.direct("written_on_the_train.bin"), later, 60000),
                 "reintegrated once the server came up");
        QVERIFY(m.wait_for_mode("connected", 10000));
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    // The server goes away in the middle of reintegration, at different
    // points: the rest stays pending, and the final state is exactly the
    // local one with no conflict (a repeated operation would be one).
    void reintegration_cut_in_the_middle_applies_nothing_twice_data() {
        QTest::addColumn<int>("cut_after");
        for (int n : {1, 3, 6, 10})
            QTest::addRow("after %d server calls", n) << n;
    }
    void reintegration_cut_in_the_middle_applies_nothing_twice() {
        QFETCH(int, cut_after);
        MountFixture m;
        QVERIFY(write_file(m.direct("a.txt"), random_bytes(1000, 1)));
        QVERIFY(write_file(m.direct("gone.txt"), random_bytes(10, 2)));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QCOMPARE(read_file(m.at("a.txt")), random_bytes(1000, 1));
        QVERIFY(QDir(m.mountpoint()).entryList().size() > 0);
        QCOMPARE(run(NETFS_BINARY, {"offline", m.mountpoint()}, 10000, m.environment()).exit_code, 0);
        QCOMPARE(::rename(qPrintable(m.at("a.txt")), qPrintable(m.at("b.txt"))), 0);
        QVERIFY(QDir().mkdir(m.at("d")));
        for (int i = 0; i < 6; ++i)
            QVERIFY(write_file(m.at(QString("d/f%1").arg(i)), random_bytes(70000 + i, 10 + i)));
        QCOMPARE(::unlink(qPrintable(m.at("gone.txt"))), 0);
        QVERIFY(write_file(m.at("a.txt"), random_bytes(33, 3)));  // a new a.txt after the rename

        // The server stops answering after `cut_after` calls, for a while.
        m.set_faults(QString("any unreachable after=%1 count=4\n").arg(cut_after));
        QCOMPARE(run(NETFS_BINARY, {"online", m.mountpoint()}, 10000, m.environment()).exit_code, 0);
        QElapsedTimer clock;
        clock.start();
        QJsonObject s;
        do {
            QThread::msleep(200);
            s = status_of(m);
        } while ((s["mode"].toString() != "connected" || s["pending_operations"].toInteger() != 0) &&
                 clock.elapsed() < 30000);
        m.set_faults({});
        QCOMPARE(s["pending_operations"].toInteger(), 0);
        QCOMPARE(s["conflicts"].toInteger(), 0);
        QCOMPARE(read_file(m.direct("b.txt")), random_bytes(1000, 1));
        QCOMPARE(read_file(m.direct("a.txt")), random_bytes(33, 3));
        QVERIFY(!QFileInfo::exists(m.direct("gone.txt")));
        for (int i = 0; i < 6; ++i)
            QCOMPARE(read_file(m.direct(QString("d/f%1").arg(i))), random_bytes(70000 + i, 10 + i));
        const QStringList top = QDir(m.backing()).entryList(QDir::NoDotAndDotDot | QDir::AllEntries | QDir::Hidden);
        QCOMPARE(top, QStringList({"a.txt", "b.txt", "d"}));
        QCOMPARE(QDir(m.direct("d")).entryList(QDir::NoDotAndDotDot | QDir::AllEntries | QDir::Hidden).size(), 6);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }
};

QTEST_GUILESS_MAIN(TestServerLoss)
#include "test_server_loss.moc"
