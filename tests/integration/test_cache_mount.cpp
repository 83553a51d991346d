// The persistent cache through real mounts: what was read once is read
// again after a remount without the remote, the key must be the right one,
// nothing is stored in plaintext, and a change on the remote is never
// masked by cached granules.
#include "tests/support/mount_fixture.h"

#include <QDir>
#include <QDirIterator>
#include <QElapsedTimer>
#include <QFileInfo>
#include <QFile>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTest>

#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

using namespace netfs::test;

namespace {

QString key_file(const MountFixture& m, const QString& name, const QByteArray& secret, int mode = 0600) {
    const QString path = m.scratch() + "/" + name;
    QFile f(path);
    f.open(QIODevice::WriteOnly | QIODevice::Truncate);
    f.write(secret);
    f.close();
    ::chmod(path.toLocal8Bit().constData(), mode);
    return path;
}

// Every file in the cache directory, concatenated.
QByteArray cache_bytes(const MountFixture& m) {
    QByteArray all;
    QDirIterator it(m.cache_dir(), QDir::Files, QDirIterator::Subdirectories);
    while (it.hasNext()) {
        QFile f(it.next());
        if (f.open(QIODevice::ReadOnly))
            all += f.readAll();
    }
    return all;
}

// A desktop session of the test's own: a D-Bus session bus and an unlocked
// gnome-keyring, with their state in `dir`, stopped at the end.
class KeyringSession {
public:
    explicit KeyringSession(const QString& dir) {
        QDir().mkpath(dir + "/data");
        QDir().mkpath(dir + "/runtime");
        ::chmod((dir + "/runtime").toLocal8Bit().constData(), 0700);
        env_ = QProcessEnvironment::systemEnvironment();
        env_.insert("XDG_DATA_HOME", dir + "/data");
        env_.insert("XDG_RUNTIME_DIR", dir + "/runtime");
        QProcess bus;
        bus.setProcessEnvironment(env_);
        bus.start("dbus-daemon", {"--session", "--fork", "--print-address=1", "--print-pid=1"});
        bus.waitForFinished(10000);
        const QStringList lines = QString::fromUtf8(bus.readAllStandardOutput()).split('\n', Qt::SkipEmptyParts);
        if (lines.size() < 2)
            return;
        address_ = lines[0].trimmed();
        pids_.append(lines[1].trimmed().toLongLong());
        env_.insert("DBUS_SESSION_BUS_ADDRESS", address_);
        QProcess keyring;
        keyring.setProcessEnvironment(env_);
        keyring.start("gnome-keyring-daemon", {"--unlock", "--components=secrets"});
        keyring.write("test-login-password");
        keyring.closeWriteChannel();
        keyring.waitForFinished(10000);
        // It daemonises; its pid is in what it prints (GNOME_KEYRING_PID is gone in newer versions).
        RunResult r = run("pgrep", {"-f", "gnome-keyring-daemon.*--components=secrets"});
        for (const QString& pid : r.out.split('\n', Qt::SkipEmptyParts))
            pids_.append(pid.toLongLong());
    }
    ~KeyringSession() {
        for (qint64 pid : pids_)
            ::kill(pid_t(pid), SIGTERM);
    }
    bool ok() const { return !address_.isEmpty() && pids_.size() >= 2; }
    QString address() const { return address_; }
    QProcessEnvironment environment() const { return env_; }

private:
    QString address_;
    QList<qint64> pids_;
    QProcessEnvironment env_;
};

} // namespace

class TestCacheMount : public QObject {
    Q_OBJECT
private slots:
    void a_remount_reads_from_the_cache_without_the_remote() {
        MountFixture m;
        m.set_extra_args({"--key-file", key_file(m, "key", "secret one")});
        auto data = random_bytes(5 << 20, 1);
        QVERIFY(write_file(m.direct("f"), data));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("f")) == data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));  // waits for queued cache stores
        // Every data read from the remote now fails: only the cache can answer.
        m.set_faults("read io\n");
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("f")) == data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    // What was written through the mount reaches the cache at writeback:
    // read back after a remount with the remote refusing every read.
    void written_files_are_cached() {
        MountFixture m;
        m.set_extra_args({"--key-file", key_file(m, "key", "secret")});
        QVERIFY2(m.mount(), qPrintable(m.error()));
        auto data = random_bytes((3 << 20) + 777, 7);
        QVERIFY(write_file(m.at("written"), data));
        QVERIFY2(m.unmount(), qPrintable(m.error()));
        QVERIFY(read_file(m.direct("written")) == data);
        m.set_faults("read io\n");
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("written")) == data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    // With no secret named, the cache's secret lives in the desktop keyring,
    // created on first use; no key file is written. Without the keyring
    // the existing cache is refused in one line, never re-keyed.
    void the_default_secret_lives_in_the_desktop_keyring() {
        MountFixture m;
        KeyringSession session(m.scratch() + "/session");
        QVERIFY2(session.ok(), "a private D-Bus session with gnome-keyring starts");
        m.set_env("DBUS_SESSION_BUS_ADDRESS", session.address());
        m.set_env("XDG_DATA_HOME", session.environment().value("XDG_DATA_HOME"));
        m.set_env("XDG_RUNTIME_DIR", session.environment().value("XDG_RUNTIME_DIR"));
        auto data = random_bytes(1 << 20, 8);
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(write_file(m.at("f"), data));
        QVERIFY2(m.unmount(), qPrintable(m.error()));
        QVERIFY2(QDir(m.scratch() + "/config/netfs/keys").isEmpty(), "no key file next to the cache");
        QVERIFY2(m.log().contains("desktop keyring"), qPrintable(m.log()));

        m.set_faults("read io\n");  // only the cache, opened with the keyring's secret, can answer
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("f")) == data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));

        m.set_env("DBUS_SESSION_BUS_ADDRESS", "");
        QVERIFY(!m.mount());
        QVERIFY2(m.error().contains("netfs: the secret of the cache in " + m.cache_dir() +
                                    " is in the desktop keyring, which does not answer here"),
                 qPrintable(m.error()));
        QVERIFY2(QDir(m.scratch() + "/config/netfs/keys").isEmpty(), "the cache was not re-keyed");
        m.set_env("DBUS_SESSION_BUS_ADDRESS", session.address());
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("f")) == data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    void a_change_on_the_remote_is_never_masked() {
        MountFixture m;
        m.set_extra_args({"--key-file", key_file(m, "key", "secret")});
        QVERIFY(write_file(m.direct("f"), random_bytes(1 << 20, 2)));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("f")) == random_bytes(1 << 20, 2));
        QVERIFY2(m.unmount(), qPrintable(m.error()));
        QVERIFY(write_file(m.direct("f"), random_bytes(1 << 20, 3)));  // another client, while unmounted
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("f")) == random_bytes(1 << 20, 3));
        // And while mounted: written through the mount, read back after a remount.
        auto patch = random_bytes(300000, 4);
        auto want = random_bytes(1 << 20, 3);
        std::copy(patch.begin(), patch.end(), want.begin() + 100000);
        {
            QFile f(m.at("f"));
            QVERIFY(f.open(QIODevice::ReadWrite));
            f.seek(100000);
            f.write(reinterpret_cast<const char*>(patch.data()), qint64(patch.size()));
        }
        QVERIFY2(m.remount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("f")) == want);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    void the_wrong_key_is_refused_and_the_cache_kept() {
        MountFixture m;
        const QString right = key_file(m, "right", QByteArray("\x00\x01binary secret\n", 16));
        m.set_extra_args({"--key-file", right});
        auto data = random_bytes(2 << 20, 5);
        QVERIFY(write_file(m.direct("f"), data));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("f")) == data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));

        const QString wrong = key_file(m, "wrong", "not the secret");
        RunResult r = run(NETFS_BINARY, {"mount", m.url(), m.mountpoint(), "--cache-dir", m.cache_dir(), "--key-file",
                                         wrong},
                          20000);
        QCOMPARE(r.exit_code, 1);
        QVERIFY2(r.err.trimmed().split('\n').size() == 1 && r.err.contains("wrong key"), qPrintable(r.err));
        QVERIFY(!m.mounted());

        const QString loose = key_file(m, "loose", "secret", 0644);
        r = run(NETFS_BINARY, {"mount", m.url(), m.mountpoint(), "--cache-dir", m.cache_dir(), "--key-file", loose},
                20000);
        QCOMPARE(r.exit_code, 1);
        QVERIFY2(r.err.contains("chmod 600"), qPrintable(r.err));
        QVERIFY(!m.mounted());

        // The right key still opens the cache, which still holds the data.
        m.set_faults("read io\n");
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("f")) == data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    // A damaged database is set aside and rebuilt; the mount works and
    // reads are right (from the remote, then from the new cache).
    void a_damaged_database_is_quarantined_and_rebuilt() {
        MountFixture m;
        m.set_extra_args({"--key-file", key_file(m, "key", "secret")});
        auto data = random_bytes(3 << 20, 6);
        QVERIFY(write_file(m.direct("f"), data));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("f")) == data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
        {
            // The header and first page gone, and the WAL too (SQLite would
            // otherwise recover the newest copy of page 1 from it).
            QFile db(m.cache_dir() + "/cache.db");
            QVERIFY(db.open(QIODevice::ReadWrite));
            db.seek(0);
            db.write(QByteArray(4096, '\x5a'));
            QFile::remove(m.cache_dir() + "/cache.db-wal");
            QFile::remove(m.cache_dir() + "/cache.db-shm");
        }
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("f")) == data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
        QVERIFY(m.log().contains("was damaged; moved to"));
        QVERIFY(!QDir(m.cache_dir()).entryList({"cache.db.damaged-*"}).isEmpty());
        // The rebuilt cache serves the next remount without the remote.
        m.set_faults("read io\n");
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("f")) == data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    // Flipped, truncated and deleted pack files: never a wrong byte; the
    // damaged granules are read from the remote again.
    void damaged_granules_are_never_returned() {
        MountFixture m;
        m.set_extra_args({"--key-file", key_file(m, "key", "secret")});
        auto data = random_bytes(4 << 20, 7);
        QVERIFY(write_file(m.direct("f"), data));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("f")) == data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
        const QString pack = m.cache_dir() + "/packs/000001";
        {
            QFile f(pack);
            QVERIFY(f.open(QIODevice::ReadWrite));
            for (qint64 at = 1000; at < f.size(); at += 300000) {  // a flipped byte every 300 KB
                f.seek(at);
                char c = 0;
                f.getChar(&c);
                f.seek(at);
                f.putChar(char(c ^ 0x01));
            }
        }
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("f")) == data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
        QVERIFY(m.log().contains("failed verification"));
        QVERIFY(QFile(pack).resize(QFileInfo(pack).size() / 2));  // truncated
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("f")) == data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
        QVERIFY(QFile::remove(pack));  // deleted
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("f")) == data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    void cache_tools_report_verify_and_clear() {
        MountFixture m;  // the generated key: the tools must find it themselves
        auto data = random_bytes(3 << 20, 9);
        QVERIFY(write_file(m.direct("f"), data));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("f")) == data);
        RunResult r = run(NETFS_BINARY, {"cache", "clear", "--cache-dir", m.cache_dir()}, 20000, m.environment());
        QCOMPARE(r.exit_code, 1);  // in use by the mount
        QVERIFY2(r.err.contains("in use"), qPrintable(r.err));
        // The mount holds the database for itself: stats say so at once.
        QElapsedTimer took;
        took.start();
        r = run(NETFS_BINARY, {"cache", "stats", "--cache-dir", m.cache_dir()}, 20000, m.environment());
        QCOMPARE(r.exit_code, 1);
        QVERIFY2(r.err.contains("in use by a mount") && r.err.contains("netfs status"), qPrintable(r.err));
        QVERIFY2(took.elapsed() < 5000, "no wait for a lock");
        r = run(NETFS_BINARY, {"cache", "verify", "--cache-dir", m.cache_dir()}, 20000, m.environment());
        QCOMPARE(r.exit_code, 1);  // and the mount's database is left alone (stats below count every byte)
        QVERIFY2(r.err.contains("in use by a mount"), qPrintable(r.err));
        QVERIFY2(m.unmount(), qPrintable(m.error()));

        r = run(NETFS_BINARY, {"cache", "stats", "--cache-dir", m.cache_dir(), "--json"}, 20000, m.environment());
        QCOMPARE(r.exit_code, 0);
        const QJsonObject stats = QJsonDocument::fromJson(r.out.toUtf8()).object();
        QCOMPARE(stats["logical_bytes"].toInteger(), qint64(data.size()));
        QCOMPARE(stats["dirty_bytes"].toInteger(), 0);

        r = run(NETFS_BINARY, {"cache", "verify", "--cache-dir", m.cache_dir()}, 20000, m.environment());
        QVERIFY2(r.exit_code == 0 && r.out.contains("12 granules verified, 0 damaged"), qPrintable(r.out + r.err));
        {
            QFile pack(m.cache_dir() + "/packs/000001");
            QVERIFY(pack.open(QIODevice::ReadWrite));
            pack.seek(pack.size() / 2);
            pack.putChar('\x7f');
        }
        r = run(NETFS_BINARY, {"cache", "verify", "--cache-dir", m.cache_dir()}, 20000, m.environment());
        QVERIFY2(r.exit_code == 1 && r.out.contains("1 damaged"), qPrintable(r.out + r.err));

        r = run(NETFS_BINARY, {"cache", "clear", "--cache-dir", m.cache_dir()}, 20000, m.environment());
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        QVERIFY(!QFileInfo::exists(m.cache_dir()));
        QVERIFY2(m.mount(), qPrintable(m.error()));  // a new, empty cache; the data from the remote
        QVERIFY(read_file(m.at("f")) == data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    // A database another process holds is in use, never damaged: a mount
    // and the tools wait a little, then say so, and set nothing aside.
    void a_cache_held_elsewhere_is_in_use_not_damaged() {
        MountFixture m;
        m.set_extra_args({"--key-file", key_file(m, "key", "secret")});
        auto data = random_bytes(1 << 20, 5);
        QVERIFY(write_file(m.direct("f"), data));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("f")) == data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));

        sqlite3* db = nullptr;  // held as a mount holds it: exclusively, from the first read
        QCOMPARE(sqlite3_open_v2((m.cache_dir() + "/cache.db").toUtf8().constData(), &db, SQLITE_OPEN_READWRITE,
                                 "unix-excl"),
                 SQLITE_OK);
        QCOMPARE(sqlite3_exec(db, "SELECT count(*) FROM granules", nullptr, nullptr, nullptr), SQLITE_OK);
        RunResult r = run(NETFS_BINARY, {"cache", "stats", "--cache-dir", m.cache_dir()}, 20000, m.environment());
        const bool mounted = m.mount();
        const QString mount_error = m.error();
        sqlite3_close(db);
        QCOMPARE(r.exit_code, 1);
        QVERIFY2(r.err.contains("in use by another process"), qPrintable(r.err));
        QVERIFY2(!mounted && mount_error.contains("in use by another process"), qPrintable(mount_error));
        QVERIFY2(QDir(m.cache_dir()).entryList({"*.damaged-*"}).isEmpty(), "nothing set aside");

        r = run(NETFS_BINARY, {"cache", "stats", "--cache-dir", m.cache_dir(), "--json"}, 20000, m.environment());
        QCOMPARE(r.exit_code, 0);
        QCOMPARE(QJsonDocument::fromJson(r.out.toUtf8()).object()["logical_bytes"].toInteger(), qint64(data.size()));
    }

    // A workload larger than --cache-size keeps the cache under it, and
    // every byte read is still right.
    void a_small_cache_stays_under_its_limit() {
        MountFixture m;
        m.set_extra_args({"--key-file", key_file(m, "key", "secret"), "--cache-size", "16M", "--no-compress"});
        for (int i = 0; i < 6; ++i)
            QVERIFY(write_file(m.direct("f" + QString::number(i)), random_bytes(8 << 20, 20 + i)));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        for (int round = 0; round < 2; ++round)
            for (int i = 0; i < 6; ++i)
                QVERIFY(read_file(m.at("f" + QString::number(i))) == random_bytes(8 << 20, 20 + i));
        QVERIFY2(m.unmount(), qPrintable(m.error()));
        RunResult r = run(NETFS_BINARY, {"cache", "stats", "--cache-dir", m.cache_dir(), "--json"}, 20000,
                          m.environment());
        QCOMPARE(r.exit_code, 0);
        const QJsonObject stats = QJsonDocument::fromJson(r.out.toUtf8()).object();
        QVERIFY2(stats["stored_bytes"].toInteger() <= 16 << 20, qPrintable(r.out));
        QVERIFY2(stats["disk_bytes"].toInteger() <= (16 << 20) + (4 << 20), qPrintable(r.out));
        QVERIFY2(stats["stored_bytes"].toInteger() > 4 << 20, "it still caches");
    }

    // Below the stop watermark nothing new is cached and reads go straight
    // to the remote. The marks are set just above this disk's free space.
    void caching_pauses_below_the_stop_watermark() {
        MountFixture m;
        struct statvfs fs;
        QCOMPARE(::statvfs(m.scratch().toLocal8Bit().constData(), &fs), 0);
        const unsigned free_percent = unsigned(100.0 * double(fs.f_bavail) / double(fs.f_blocks));
        QVERIFY2(free_percent + 3 < 100, "the disk of the scratch directory is nearly empty: no mark above it");
        const QString marks = QString("%1,%2,%3").arg(free_percent + 3).arg(free_percent + 2).arg(free_percent + 1);
        m.set_extra_args({"--key-file", key_file(m, "key", "secret"), "--cache-free", marks});
        auto data = random_bytes(4 << 20, 9);
        QVERIFY(write_file(m.direct("f"), data));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(read_file(m.at("f")) == data);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
        QVERIFY2(m.log().contains("caching paused"), qPrintable(m.log()));
        RunResult r = run(NETFS_BINARY, {"cache", "stats", "--cache-dir", m.cache_dir(), "--json"}, 20000,
                          m.environment());
        QCOMPARE(r.exit_code, 0);
        QCOMPARE(QJsonDocument::fromJson(r.out.toUtf8()).object()["stored_bytes"].toInteger(), 0);
    }

    void no_plaintext_reaches_the_cache() {
        MountFixture m;
        m.set_extra_args({"--key-file", key_file(m, "key", "secret")});
        QByteArray text;
        while (text.size() < (3 << 20))
            text += "NETFS-PLAINTEXT-PATTERN the quick brown fox jumps over the lazy dog\n";
        QVERIFY2(m.mount(), qPrintable(m.error()));
        {
            QFile f(m.at("text"));
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write(text);
        }
        QVERIFY2(m.remount(), qPrintable(m.error()));
        QFile back(m.at("text"));
        QVERIFY(back.open(QIODevice::ReadOnly));
        QCOMPARE(back.readAll(), text);  // read once: now in the cache
        back.close();
        QVERIFY2(m.unmount(), qPrintable(m.error()));
        // The cache holds the file: read it with every remote read failing.
        m.set_faults("read io\n");
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(back.open(QIODevice::ReadOnly));
        QCOMPARE(back.readAll(), text);
        back.close();
        QVERIFY2(m.unmount(), qPrintable(m.error()));
        const QByteArray stored = cache_bytes(m);
        QVERIFY2(stored.size() < text.size() / 2, "compressible text is stored compressed");
        QVERIFY(!stored.contains("NETFS-PLAINTEXT-PATTERN"));
    }
};

QTEST_GUILESS_MAIN(TestCacheMount)
#include "test_cache_mount.moc"
