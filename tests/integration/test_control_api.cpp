// The control API through `netfs status` and the socket itself: a running
// mount reports its remote, mode and cache; the socket is the user's alone
// and goes away with the daemon.
#include "tests/support/ganesha_server.h"
#include "tests/support/mount_fixture.h"
#include "tests/support/sshd_server.h"

#include <QDir>
#include <QElapsedTimer>
#include <QThread>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTest>

#include <cstring>
#include <thread>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

using namespace netfs::test;

namespace {

// One request line on the socket, one reply line back.
QByteArray exchange(const QString& socket_path, const QByteArray& request) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const QByteArray path = socket_path.toLocal8Bit();
    std::memcpy(addr.sun_path, path.constData(), std::min<std::size_t>(path.size() + 1, sizeof addr.sun_path - 1));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        return {};
    }
    const QByteArray line = request + "\n";
    (void)!::write(fd, line.constData(), line.size());
    QByteArray reply;
    char c;
    while (::read(fd, &c, 1) == 1 && c != '\n')
        reply += c;
    ::close(fd);
    return reply;
}

// `netfs status MOUNTPOINT --json`'s mode, polled until `accept` says yes or
// `within_ms` passed; returns how long it took (-1: never).
template <typename Accept>
qint64 wait_for_mode(const MountFixture& m, Accept accept, int within_ms) {
    QElapsedTimer clock;
    clock.start();
    do {
        const RunResult r = run(NETFS_BINARY, {"status", m.mountpoint(), "--json"}, 5000, m.environment());
        if (accept(QJsonDocument::fromJson(r.out.toUtf8()).object()["server"].toString()))
            return clock.elapsed();
        QThread::msleep(100);
    } while (clock.elapsed() < within_ms);
    return -1;
}
// The socket of the mount `m`: <escaped mount point>.sock in the runtime directory.
QString socket_of(const MountFixture& m) {
    for (const QString& dir : {qEnvironmentVariable("XDG_RUNTIME_DIR") + "/netfs", QString("/run/user/0/netfs"),
                               QString("/tmp/netfs-0")})
        for (const QFileInfo& f : QDir(dir).entryInfoList({"*.sock"}, QDir::System))
            if (exchange(f.filePath(), "{\"op\":\"status\"}").contains(QString("\"pid\":%1").arg(m.daemon_pid()).toUtf8()))
                return f.filePath();
    return {};
}

QJsonObject request(const QString& socket, const QJsonObject& r) {
    return QJsonDocument::fromJson(exchange(socket, QJsonDocument(r).toJson(QJsonDocument::Compact))).object();
}

bool is_connected(const QString& mode) { return mode == "connected"; }
bool is_lost(const QString& mode) { return mode == "reconnecting" || mode == "unreachable"; }

} // namespace

class TestControlApi : public QObject {
    Q_OBJECT
private slots:
    void status_reports_a_running_mount() {
        MountFixture m;
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(write_file(m.at("f"), random_bytes(1 << 20, 1)));
        QVERIFY(read_file(m.at("f")) == random_bytes(1 << 20, 1));

        RunResult r = run(NETFS_BINARY, {"status", m.mountpoint(), "--json"}, 10000, m.environment());
        QCOMPARE(r.exit_code, 0);
        const QJsonObject s = QJsonDocument::fromJson(r.out.toUtf8()).object();
        QCOMPARE(s["mountpoint"].toString(), QDir(m.mountpoint()).canonicalPath());
        QCOMPARE(s["remote"].toString(), m.url());
        QCOMPARE(s["server"].toString(), QString("connected"));
        QCOMPARE(s["mode"].toString(), QString("connected"));
        QCOMPARE(s["pid"].toInteger(), m.daemon_pid());
        QVERIFY(s["cache"].toObject()["enabled"].toBool());
        QCOMPARE(s["cache"].toObject()["dir"].toString(), m.cache_dir());
        QVERIFY2(s["engine"].toObject()["bytes_uploaded"].toInteger() >= 1 << 20, qPrintable(r.out));
        QCOMPARE(s["pending_operations"].toInteger(), 0);

        // Every running mount, in words.
        r = run(NETFS_BINARY, {"status"}, 10000, m.environment());
        QCOMPARE(r.exit_code, 0);
        QVERIFY2(r.out.contains(QDir(m.mountpoint()).canonicalPath()) && r.out.contains("mode: connected"),
                 qPrintable(r.out));
    }

    // A server that goes away is reported within 5 s, and its return too.
    void a_lost_server_shows_in_the_mode() {
        SshdServer sshd;
        QVERIFY2(sshd.running(), qPrintable(sshd.error()));
        RemoteSpec spec;
        spec.kind = "sftp";
        spec.url = sshd.url();
        spec.backing = sshd.served();
        MountFixture m(spec, sshd.options().split(','));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QVERIFY(wait_for_mode(m, is_connected, 0) >= 0);
        sshd.kill();
        const qint64 noticed = wait_for_mode(m, is_lost, 5000);
        QVERIFY2(noticed >= 0, "sftp: the loss is reported within 5 s");
        QVERIFY(sshd.restart());
        QVERIFY2(wait_for_mode(m, is_connected, 10000) >= 0, "sftp: reported connected again");
        QVERIFY2(m.unmount(), qPrintable(m.error()));

        GaneshaServer nfs;
        QVERIFY2(nfs.start(), qPrintable(nfs.error()));
        RemoteSpec nfs_spec;
        nfs_spec.kind = "nfs3";
        nfs_spec.url = nfs.url();
        nfs_spec.backing = nfs.export_dir();
        MountFixture n(nfs_spec);
        QVERIFY2(n.mount(), qPrintable(n.error()));
        QVERIFY(wait_for_mode(n, is_connected, 0) >= 0);
        nfs.kill();
        QVERIFY2(wait_for_mode(n, is_lost, 5000) >= 0, "nfs: the loss is reported within 5 s");
        QVERIFY(nfs.restart());
        QVERIFY2(wait_for_mode(n, is_connected, 15000) >= 0, "nfs: reported connected again");
        QVERIFY2(n.unmount(), qPrintable(n.error()));
    }

    void the_socket_is_private_and_goes_with_the_daemon() {
        MountFixture m;
        QVERIFY2(m.mount(), qPrintable(m.error()));
        RunResult r = run(NETFS_BINARY, {"status", "--json"}, 10000, m.environment());
        QCOMPARE(r.exit_code, 0);
        bool listed = false;
        for (const auto& mount : QJsonDocument::fromJson(r.out.toUtf8()).object()["mounts"].toArray())
            listed |= mount.toObject()["pid"].toInteger() == m.daemon_pid();
        QVERIFY2(listed, qPrintable(r.out));
        const QString path = socket_of(m);
        QVERIFY2(!path.isEmpty(), "the daemon's socket is in the runtime directory");
        struct stat st;
        QCOMPARE(::stat(path.toLocal8Bit().constData(), &st), 0);
        QVERIFY(S_ISSOCK(st.st_mode));
        QCOMPARE(st.st_mode & 0777, 0600u);
        QCOMPARE(st.st_uid, ::geteuid());

        // Bad requests get an answer that says what is wrong, not a dead daemon.
        QVERIFY(exchange(path, "not json").contains("\"ok\":false"));
        QVERIFY(exchange(path, "{\"op\":\"frobnicate\"}").contains("unknown op"));
        QVERIFY(exchange(path, "{\"op\":\"ping\"}").contains("\"ok\":true"));

        QVERIFY2(m.unmount(), qPrintable(m.error()));
        QVERIFY2(!QFileInfo::exists(path), "the socket goes with the daemon");
        r = run(NETFS_BINARY, {"status", m.mountpoint()}, 10000, m.environment());
        QCOMPARE(r.exit_code, 1);
        QVERIFY2(r.err.startsWith("netfs: ") && r.err.contains("is not a running netfs mount") &&
                     r.err.trimmed().count('\n') == 0,
                 qPrintable(r.err));
    }

    // The event stream (a long poll): a watcher waiting before a change
    // hears of it at once; mode changes, a reintegration pass and a new
    // conflict each come as an event, in order.
    void events_report_modes_passes_and_conflicts() {
        MountFixture m;
        QVERIFY(write_file(m.direct("c.txt"), random_bytes(100, 1)));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QCOMPARE(read_file(m.at("c.txt")), random_bytes(100, 1));
        const QString socket = socket_of(m);
        QVERIFY(!socket.isEmpty());
        const qint64 start = request(socket, {{"op", "events"}, {"since", 0}, {"timeout_s", 0}})["last"].toInteger();

        QJsonObject heard;
        qint64 waited_ms = -1;
        std::thread watcher([&] {
            QElapsedTimer clock;
            clock.start();
            heard = request(socket, {{"op", "events"}, {"since", start}, {"timeout_s", 20}});
            waited_ms = clock.elapsed();
        });
        QThread::msleep(300);
        QCOMPARE(run(NETFS_BINARY, {"offline", m.mountpoint()}, 10000, m.environment()).exit_code, 0);
        watcher.join();
        QVERIFY2(waited_ms >= 0 && waited_ms < 5000, qPrintable(QString("waited %1 ms").arg(waited_ms)));
        QJsonArray events = heard["events"].toArray();
        QVERIFY(!events.isEmpty());
        QCOMPARE(events[0].toObject()["kind"].toString(), QString("mode"));
        QCOMPARE(events[0].toObject()["detail"].toString(), QString("disconnected"));

        QVERIFY(write_file(m.at("c.txt"), random_bytes(200, 2)));
        QThread::msleep(1100);
        QVERIFY(write_file(m.direct("c.txt"), random_bytes(300, 3)));
        QCOMPARE(run(NETFS_BINARY, {"online", m.mountpoint()}, 10000, m.environment()).exit_code, 0);
        QCOMPARE(run(NETFS_BINARY, {"sync", m.mountpoint()}, 30000, m.environment()).exit_code, 0);
        events = request(socket, {{"op", "events"}, {"since", heard["last"].toInteger()}, {"timeout_s", 0}})["events"]
                     .toArray();
        QStringList kinds;
        for (const auto& e : events)
            kinds << e.toObject()["kind"].toString() + ":" + e.toObject()["detail"].toString();
        QVERIFY2(kinds.contains("mode:reintegrating") && kinds.contains("conflict:/c.txt") &&
                     kinds.contains("sync:ok") && kinds.contains("mode:connected"),
                 qPrintable(kinds.join(' ')));
        QVERIFY(kinds.indexOf("mode:reintegrating") < kinds.indexOf("sync:ok"));
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    // Settings while running: the cache limit (status shows it, culling
    // follows it) and whether the log is replayed by itself.
    void settings_change_the_cache_limit_and_automatic_sync() {
        MountFixture m;
        QVERIFY(write_file(m.direct("a.txt"), random_bytes(100, 1)));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QCOMPARE(read_file(m.at("a.txt")), random_bytes(100, 1));
        const QString socket = socket_of(m);
        QJsonObject r = request(socket, {{"op", "settings"}, {"cache_limit_bytes", 32 << 20}});
        QVERIFY2(r["ok"].toBool(), QJsonDocument(r).toJson().constData());
        QCOMPARE(r["cache_limit_bytes"].toInteger(), 32 << 20);
        QCOMPARE(request(socket, {{"op", "status"}})["cache"].toObject()["limit_bytes"].toInteger(), 32 << 20);
        r = request(socket, {{"op", "settings"}, {"cache_limit_bytes", 1000}});
        QVERIFY(!r["ok"].toBool());
        QVERIFY2(r["error"].toString().contains("16 MiB"), qPrintable(r["error"].toString()));
        QCOMPARE(request(socket, {{"op", "status"}})["cache"].toObject()["limit_bytes"].toInteger(), 32 << 20);

        r = request(socket, {{"op", "settings"}, {"auto_sync", false}});
        QCOMPARE(r["auto_sync"].toBool(), false);
        QCOMPARE(request(socket, {{"op", "status"}})["auto_sync"].toBool(), false);
        QCOMPARE(run(NETFS_BINARY, {"offline", m.mountpoint()}, 10000, m.environment()).exit_code, 0);
        QVERIFY(write_file(m.at("b.txt"), random_bytes(200, 2)));
        QCOMPARE(run(NETFS_BINARY, {"online", m.mountpoint()}, 10000, m.environment()).exit_code, 0);
        QThread::msleep(2000);  // four turns of the sync thread
        QVERIFY2(!QFileInfo::exists(m.direct("b.txt")), "replayed though automatic sync is off");
        QCOMPARE(request(socket, {{"op", "status"}})["pending_operations"].toInteger(), 1);
        QCOMPARE(run(NETFS_BINARY, {"sync", m.mountpoint()}, 30000, m.environment()).exit_code, 0);
        QCOMPARE(read_file(m.direct("b.txt")), random_bytes(200, 2));
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }
};

QTEST_GUILESS_MAIN(TestControlApi)
#include "test_control_api.moc"
