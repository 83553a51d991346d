// A mount's life: started in the background, stopped by a signal with data
// still to write, and coherent with changes made behind its back.
#include "tests/support/mount_fixture.h"

#include <QDir>
#include <QElapsedTimer>
#include <QFileInfo>
#include <QTest>
#include <QThread>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace netfs::test;

namespace {

bool wait_until(const std::function<bool()>& done, int ms) {
    QElapsedTimer t;
    t.start();
    while (!done()) {
        if (t.elapsed() > ms)
            return false;
        QThread::msleep(20);
    }
    return true;
}

} // namespace

class TestLifecycle : public QObject {
    Q_OBJECT
private slots:
    // SIGTERM: every byte written before it reaches the remote, then the
    // mount goes away and the daemon exits cleanly.
    void sigterm_writes_back_and_unmounts() {
        MountFixture m;
        QVERIFY2(m.mount(), qPrintable(m.error()));
        auto data = random_bytes(20 << 20, 1);
        int fd = ::open(m.at("pending").toLocal8Bit().constData(), O_WRONLY | O_CREAT, 0644);
        QVERIFY(fd >= 0);
        QCOMPARE(::write(fd, data.data(), data.size()), ssize_t(data.size()));
        // No fsync, no close: the bytes are only in the daemon's folios.
        QCOMPARE(::kill(static_cast<pid_t>(m.daemon_pid()), SIGTERM), 0);
        ::close(fd);  // the mount may already be going; the data must not depend on it
        QVERIFY(wait_until([&] { return !m.mounted(); }, 20000));
        QVERIFY(read_file(m.direct("pending")) == data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));  // the daemon exited with 0
    }

    // Without --foreground: returns once mounted, keeps running, logs to the
    // state directory, and `netfs unmount` waits for it to finish.
    void background_mount_logs_and_unmounts() {
        QTemporaryDir dir;
        const QString src = dir.path() + "/src", mnt = dir.path() + "/mnt", state = dir.path() + "/state";
        QVERIFY(QDir().mkpath(src) && QDir().mkpath(mnt));
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.insert("XDG_STATE_HOME", state);
        env.insert("XDG_CACHE_HOME", dir.path() + "/cache-home");
        env.insert("XDG_CONFIG_HOME", dir.path() + "/config-home");
        RunResult r = run(NETFS_BINARY, {"mount", "file://" + src, mnt}, 20000, env);
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        QVERIFY(is_mountpoint(mnt));  // mounted by the time it returned
        QVERIFY(write_file(mnt + "/f", random_bytes(1000, 2)));
        const QStringList logs = QDir(state + "/netfs").entryList({"*.log"}, QDir::Files);
        QCOMPARE(logs.size(), 1);
        struct stat st;
        QCOMPARE(::stat((state + "/netfs/" + logs[0]).toLocal8Bit().constData(), &st), 0);
        QCOMPARE(st.st_mode & 0777, 0600u);  // logs are private
        r = run(NETFS_BINARY, {"unmount", mnt}, 60000, env);
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        QVERIFY(!is_mountpoint(mnt));
        QVERIFY(read_file(src + "/f") == random_bytes(1000, 2));
    }

    void fusermount_unmount_also_works() {
        MountFixture m;
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(write_file(m.at("f"), random_bytes(100, 3)));
        QCOMPARE(run("fusermount3", {"-u", m.mountpoint()}).exit_code, 0);
        QVERIFY(wait_until([&] { return !m.mounted(); }, 5000));
        QVERIFY2(m.unmount(), qPrintable(m.error()));  // daemon exited cleanly
        QVERIFY(read_file(m.direct("f")) == random_bytes(100, 3));
    }

    // Close-to-open: another client's change is seen by the next open, and
    // within attr_timeout by stat, never masked by cached data.
    void changes_behind_the_mount_are_seen() {
        MountFixture m(RemoteSpec{}, {"attr_timeout=0.3", "entry_timeout=0.3"});
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(write_file(m.direct("c"), random_bytes(50000, 4)));
        QVERIFY(read_file(m.at("c")) == random_bytes(50000, 4));  // now cached (kernel and engine)
        QVERIFY(write_file(m.direct("c"), random_bytes(70000, 5)));
        // Same size and mtime granularity would be ambiguous; this one differs in both.
        QVERIFY(read_file(m.at("c")) == random_bytes(70000, 5));
        QVERIFY(write_file(m.direct("new"), random_bytes(10, 6)));
        QVERIFY(wait_until([&] { return QFile::exists(m.at("new")); }, 2000));
        QThread::msleep(400);
        QVERIFY(QFile(m.direct("c")).resize(123));
        QVERIFY(wait_until([&] { return QFileInfo(m.at("c")).size() == 123; }, 2000));
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }
};

QTEST_GUILESS_MAIN(TestLifecycle)
#include "test_lifecycle.moc"
