// The control API through `netfs status` and the socket itself: a running
// mount reports its remote, mode and cache; the socket is the user's alone
// and goes away with the daemon.
#include "tests/support/mount_fixture.h"

#include <QDir>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTest>

#include <cstring>

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
        QCOMPARE(s["mode"].toString(), QString("connected"));
        QCOMPARE(s["pid"].toInteger(), m.daemon_pid());
        QVERIFY(s["cache"].toObject()["enabled"].toBool());
        QCOMPARE(s["cache"].toObject()["dir"].toString(), m.cache_dir());
        QVERIFY2(s["engine"].toObject()["bytes_uploaded"].toInteger() >= 1 << 20, qPrintable(r.out));
        QCOMPARE(s["pending_operations"].toInteger(), 0);

        // Every running mount, in words.
        r = run(NETFS_BINARY, {"status"}, 10000, m.environment());
        QCOMPARE(r.exit_code, 0);
        QVERIFY2(r.out.contains(QDir(m.mountpoint()).canonicalPath()) && r.out.contains("server: connected"),
                 qPrintable(r.out));
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
        // The socket file: <escaped mount point>.sock in the runtime directory.
        QString path;
        for (const QString& dir : {qEnvironmentVariable("XDG_RUNTIME_DIR") + "/netfs", QString("/run/user/0/netfs"),
                                   QString("/tmp/netfs-0")}) {
            for (const QFileInfo& f : QDir(dir).entryInfoList({"*.sock"}, QDir::System))
                if (exchange(f.filePath(), "{\"op\":\"status\"}").contains(QString("\"pid\":%1").arg(m.daemon_pid()).toUtf8()))
                    path = f.filePath();
            if (!path.isEmpty())
                break;
        }
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
};

QTEST_GUILESS_MAIN(TestControlApi)
#include "test_control_api.moc"
