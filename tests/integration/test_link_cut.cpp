// A server behind a link that is cut and restored: sshd runs in a network
// namespace of the test's own, joined to the host by a veth pair, and the
// host's end of the link goes down in the middle of reading a file.
//
//   restored within the timeout   the read completes, every byte right
//   never restored                the read fails within the timeout (plus
//                                 one reconnect attempt) and the mount
//                                 unmounts: nothing hangs
#include "tests/support/mount_fixture.h"
#include "tests/support/sshd_server.h"

#include <QCryptographicHash>
#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QProcess>
#include <QRegularExpression>
#include <QTest>
#include <QThread>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

using namespace netfs::test;

namespace {

QString sh(const QString& command) {
    const RunResult r = run("sh", {"-c", command}, 20000);
    return r.exit_code == 0 ? QString() : command + ": " + r.err.trimmed();
}


} // namespace

class TestLinkCut : public QObject {
    Q_OBJECT

    // Names of our own, short enough for interface names (15 bytes).
    const QString tag_ = QString::number(::getpid() % 100000);
    const QString ns_ = "netfs-cut-" + tag_;
    const QString host_if_ = "nfch" + tag_, ns_if_ = "nfcn" + tag_;
    const QString host_ip_ = "10.213.77.1", ns_ip_ = "10.213.77.2";
    std::unique_ptr<SshdServer> keys_;  // its keys and served directory; its own sshd is not used
    QProcess sshd_;
    std::uint16_t port_ = 2222;
    QString known_hosts_;

    void link(bool up) { QCOMPARE(sh("ip link set " + host_if_ + (up ? " up" : " down")), QString()); }

    QStringList mount_options(const QString& timeout) const {
        return {"identity=" + keys_->identity(), "known_hosts=" + known_hosts_, "timeout=" + timeout,
                "connect_timeout=5"};
    }
    QString url() const { return QString("sftp://root@%1:%2%3").arg(ns_ip_).arg(port_).arg(keys_->served()); }

    // dd of the whole file in another process (a test process blocked in a
    // FUSE read could not be killed): exit code and seconds.
    RunResult read_all(const QString& path, const QString& out) {
        return run("dd", {"if=" + path, "of=" + out, "bs=1M"}, 120000);
    }

private slots:
    // Every test starts with the link up, whatever the last one left.
    void init() { link(true); }

    void initTestCase() {
        sh("ip netns del " + ns_);  // left over from a killed run
        QCOMPARE(sh("ip netns add " + ns_), QString());
        QCOMPARE(sh("ip link add " + host_if_ + " type veth peer name " + ns_if_), QString());
        QCOMPARE(sh("ip link set " + ns_if_ + " netns " + ns_), QString());
        QCOMPARE(sh("ip addr add " + host_ip_ + "/24 dev " + host_if_), QString());
        QCOMPARE(sh("ip link set " + host_if_ + " up"), QString());
        QCOMPARE(sh("ip netns exec " + ns_ + " ip addr add " + ns_ip_ + "/24 dev " + ns_if_), QString());
        QCOMPARE(sh("ip netns exec " + ns_ + " ip link set " + ns_if_ + " up"), QString());
        QCOMPARE(sh("ip netns exec " + ns_ + " ip link set lo up"), QString());

        keys_ = std::make_unique<SshdServer>();
        keys_->stop();
        // The fixture's configuration, listening inside the namespace.
        QFile base(keys_->scratch() + "/sshd_config");
        QVERIFY(base.open(QIODevice::ReadOnly));
        QString config = QString::fromUtf8(base.readAll());
        config.replace(QRegularExpression("Port \\d+"), "Port " + QString::number(port_));
        config.replace("ListenAddress 127.0.0.1", "ListenAddress " + ns_ip_);
        config.replace("sshd.pid", "sshd-ns.pid");
        const QString path = keys_->scratch() + "/sshd_ns_config";
        QFile out(path);
        QVERIFY(out.open(QIODevice::WriteOnly));
        out.write(config.toUtf8());
        out.close();
        QDir().mkpath("/run/sshd");
        // Its log to a file: never CTest's pipes, which a leftover would hold open.
        sshd_.setStandardOutputFile(QProcess::nullDevice());
        sshd_.setStandardErrorFile(QProcess::nullDevice());
        sshd_.start("ip", {"netns", "exec", ns_, "/usr/sbin/sshd", "-D", "-E", keys_->scratch() + "/sshd_ns.log", "-f",
                           path});
        QVERIFY(sshd_.waitForStarted(5000));
        QElapsedTimer clock;
        clock.start();
        while (run("bash", {"-c", QString("exec 3<>/dev/tcp/%1/%2").arg(ns_ip_).arg(port_)}, 2000).exit_code != 0) {
            QVERIFY2(clock.elapsed() < 10000, "sshd in the namespace does not accept connections");
            QThread::msleep(100);
        }
        known_hosts_ = keys_->scratch() + "/known_hosts_ns";
        QFile known(known_hosts_);
        QVERIFY(known.open(QIODevice::WriteOnly));
        QString line = keys_->host_key_line();
        line.replace(QRegularExpression("^\\[127\\.0\\.0\\.1\\]:\\d+"), QString("[%1]:%2").arg(ns_ip_).arg(port_));
        known.write(line.toUtf8() + "\n");
    }

    void a_link_restored_within_the_timeout_loses_nothing() {
        const QString file = keys_->direct("big");
        QCOMPARE(run("dd", {"if=/dev/urandom", "of=" + file, "bs=1M", "count=96"}).exit_code, 0);
        RemoteSpec spec;
        spec.kind = "sftp";
        spec.url = url();
        spec.backing = keys_->served();
        MountFixture m(spec, mount_options("30"));
        m.set_extra_args({"--no-cache"});
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QProcess reader;
        reader.start("dd", {"if=" + m.at("big"), "of=" + m.scratch() + "/copy", "bs=64k"});
        QVERIFY(reader.waitForStarted());
        QThread::msleep(300);  // under way
        link(false);
        QThread::msleep(6000);  // longer than the heartbeat's detection time
        link(true);
        QVERIFY(reader.waitForFinished(60000));
        QCOMPARE(reader.exitCode(), 0);
        QCOMPARE(sha256_of_file(m.scratch() + "/copy"), sha256_of_file(file));
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    void a_link_that_stays_down_fails_reads_within_the_timeout() {
        const QString file = keys_->direct("big2");
        QCOMPARE(run("dd", {"if=/dev/urandom", "of=" + file, "bs=1M", "count=32"}).exit_code, 0);
        RemoteSpec spec;
        spec.kind = "sftp";
        spec.url = url();
        spec.backing = keys_->served();
        MountFixture m(spec, mount_options("8"));
        m.set_extra_args({"--no-cache"});
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QByteArray head(4096, 0);
        {
            QFile f(m.at("big2"));  // opened before the cut: the read needs the server
            QVERIFY(f.open(QIODevice::ReadOnly));
            QCOMPARE(f.read(head.data(), head.size()), qint64(head.size()));
        }
        link(false);
        QElapsedTimer clock;
        clock.start();
        const RunResult r = run("dd", {"if=" + m.at("big2"), "of=/dev/null", "bs=1M", "skip=16"}, 60000);
        const double seconds = clock.elapsed() / 1000.0;
        QVERIFY2(r.exit_code != 0 && r.exit_code != -1, qPrintable(r.err));  // failed, did not hang
        QVERIFY2(seconds < 8 + 12, qPrintable(QString::number(seconds)));   // the timeout, a reconnect attempt
        QVERIFY2(r.err.contains("Input/output error"), qPrintable(r.err));  // EIO: what programs expect of a file system
        // A name never looked up waits at most the timeout while the pool
        // may still reconnect; once it has given the server up, the next
        // fails at once, not after a retry timeout per name (an `ls -l` of
        // a directory would wait that long for each entry).
        clock.restart();
        struct stat st;
        QCOMPARE(::stat(qPrintable(m.at("never_looked_up")), &st), -1);
        QCOMPARE(errno, EIO);
        QVERIFY2(clock.elapsed() < 8000 + 2000, qPrintable(QString("%1 ms").arg(clock.elapsed())));
        clock.restart();
        QCOMPARE(::stat(qPrintable(m.at("never_looked_up_either")), &st), -1);
        QCOMPARE(errno, EIO);
        QVERIFY2(clock.elapsed() < 1000, qPrintable(QString("%1 ms").arg(clock.elapsed())));
        link(true);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    void cleanupTestCase() {
        link(true);
        if (sshd_.state() != QProcess::NotRunning) {
            ::kill(pid_t(sshd_.processId()), SIGTERM);
            sshd_.waitForFinished(5000);
        }
        sh("ip netns pids " + ns_ + " | xargs -r kill -9");
        sh("ip link del " + host_if_);
        sh("ip netns del " + ns_);
    }
};

QTEST_GUILESS_MAIN(TestLinkCut)
#include "test_link_cut.moc"
