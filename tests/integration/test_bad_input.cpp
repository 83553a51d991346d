// Bad input to `netfs mount`: one clear line on stderr, the right exit
// code, nothing mounted, and no hang. And the mount helper paths that
// mount(8) and fstab use.
#include "tests/support/mount_fixture.h"

#include <QDir>
#include <QFile>
#include <QTest>

using namespace netfs::test;

namespace {

constexpr int kUsage = 2;
constexpr int kFailure = 1;

} // namespace

class TestBadInput : public QObject {
    Q_OBJECT

    QTemporaryDir dir_;
    QString src_, mnt_;

private slots:
    void initTestCase() {
        src_ = dir_.path() + "/src";
        mnt_ = dir_.path() + "/mnt";
        QVERIFY(QDir().mkpath(src_));
        QVERIFY(QDir().mkpath(mnt_));
        QVERIFY(QDir().mkpath(dir_.path() + "/full"));
        QVERIFY(QFile(dir_.path() + "/full/x").open(QIODevice::WriteOnly));
        QVERIFY(QFile(dir_.path() + "/afile").open(QIODevice::WriteOnly));
    }

    void rejects_with_one_line_data() {
        QTest::addColumn<QStringList>("args");
        QTest::addColumn<int>("code");
        QTest::addColumn<QString>("words");  // what the message must say
        const QString d = dir_.path();
        QTest::newRow("not a url") << QStringList{"mount", "server:/x", mnt_} << kFailure << "not a remote URL";
        QTest::newRow("unknown scheme") << QStringList{"mount", "http://host/x", mnt_} << kFailure
                                        << "unknown scheme 'http'";
        QTest::newRow("missing remote dir") << QStringList{"mount", "file://" + d + "/nope", mnt_} << kFailure
                                            << "no such directory";
        QTest::newRow("remote is a file") << QStringList{"mount", "file://" + d + "/afile", mnt_} << kFailure
                                          << "not a directory";
        QTest::newRow("relative file path") << QStringList{"mount", "file://relative/x", mnt_} << kFailure
                                            << "file:///";
        QTest::newRow("bad url option") << QStringList{"mount", "file://" + src_ + "?latency_ms=fast", mnt_}
                                        << kFailure << "bad value 'fast' for option 'latency_ms'";
        QTest::newRow("unknown url option") << QStringList{"mount", "file://" + src_ + "?speed=1", mnt_} << kFailure
                                            << "unknown option 'speed'";
        QTest::newRow("missing mountpoint") << QStringList{"mount", "file://" + src_, d + "/nomnt"} << kFailure
                                            << "does not exist";
        QTest::newRow("mountpoint not empty") << QStringList{"mount", "file://" + src_, d + "/full"} << kFailure
                                              << "not empty";
        QTest::newRow("mountpoint is a file") << QStringList{"mount", "file://" + src_, d + "/afile"} << kFailure
                                              << "not a directory";
        QTest::newRow("unknown option") << QStringList{"mount", "file://" + src_, mnt_, "-o", "turbo"} << kUsage
                                        << "unknown mount option 'turbo'";
        QTest::newRow("bad option value") << QStringList{"mount", "file://" + src_, mnt_, "-o", "uid=bob"} << kUsage
                                          << "bad value 'bob' for mount option 'uid'";
        QTest::newRow("missing arguments") << QStringList{"mount", "file://" + src_} << kUsage
                                           << "needs REMOTE and MOUNTPOINT";
        QTest::newRow("bad watermarks") << QStringList{"mount", "file://" + src_, mnt_, "--cache-free", "5,7,1"}
                                        << kUsage << "RUN > CULL > STOP";
        QTest::newRow("unknown command") << QStringList{"frobnicate"} << kUsage << "unknown command";
        QTest::newRow("unknown host") << QStringList{"mount", "sftp://me@no-such-host.invalid/x", mnt_} << kFailure
                                      << "cannot find host 'no-such-host.invalid'";
    }

    void rejects_with_one_line() {
        QFETCH(QStringList, args);
        QFETCH(int, code);
        QFETCH(QString, words);
        RunResult r = run(NETFS_BINARY, args, 10000);
        QVERIFY2(r.exit_code != -1, "netfs hung on bad input");
        QVERIFY2(r.seconds < 10, "took 10 s or more");
        QCOMPARE(r.exit_code, code);
        const QStringList lines = r.err.trimmed().split('\n');
        QCOMPARE(lines.size(), 1);
        QVERIFY2(lines[0].startsWith("netfs: "), qPrintable(lines[0]));
        QVERIFY2(lines[0].contains(words), qPrintable(lines[0]));
        QVERIFY(!is_mountpoint(mnt_));
    }

    // mount(8) -t fuse.netfs goes through fuse3's mount.fuse3, which runs
    // `netfs REMOTE MOUNTPOINT -o OPTIONS` through /bin/sh with the default
    // PATH (libmount drops the caller's). So the test runs in a private
    // mount namespace where /usr/local/sbin holds this build's netfs, as an
    // installed one would be: the machine's own directories are untouched.
    void mount_helper_and_fstab_work() {
        const QString bin = dir_.path() + "/bin";
        QVERIFY(QDir().mkpath(bin));
        QVERIFY(QFile::link(NETFS_BINARY, bin + "/netfs"));
        QVERIFY(QFile(src_ + "/hello").open(QIODevice::WriteOnly));
        const QString fstab = dir_.path() + "/fstab";
        QFile f(fstab);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(QString("file://%1 %2 fuse.netfs allow_other,default_permissions,noauto,nofail 0 0\n")
                    .arg(src_, mnt_).toUtf8());
        f.close();
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.insert("XDG_CACHE_HOME", dir_.path() + "/cache-home");  // keep the real home clean
        env.insert("XDG_CONFIG_HOME", dir_.path() + "/config-home");
        env.insert("BIN", bin);
        env.insert("SRC", src_);
        env.insert("MNT", mnt_);
        env.insert("FSTAB", fstab);
        // Each step fails with its own message.
        // (A plain literal: moc cannot read raw strings.)
        const QString script =
            "set -e\n"
            "mount --bind \"$BIN\" /usr/local/sbin\n"
            "mount -t fuse.netfs \"file://$SRC\" \"$MNT\" -o ro,noatime,_netdev\n"
            "mountpoint -q \"$MNT\" || { echo \"not mounted by mount -t fuse.netfs\" >&2; exit 2; }\n"
            "test -e \"$MNT/hello\" || { echo \"hello missing\" >&2; exit 3; }\n"
            "if touch \"$MNT/new\" 2>/dev/null; then echo \"ro was not honoured\" >&2; exit 4; fi\n"
            "netfs unmount \"$MNT\"\n"
            "mount --fstab \"$FSTAB\" \"$MNT\"\n"
            "mountpoint -q \"$MNT\" || { echo \"not mounted from fstab\" >&2; exit 5; }\n"
            "echo data > \"$MNT/written\"\n"
            "netfs unmount \"$MNT\"\n";
        RunResult r = run("unshare", {"--mount", "--propagation", "private", "/bin/sh", "-c", script}, 40000, env);
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        QVERIFY(QFile::exists(src_ + "/written"));
        QVERIFY(!is_mountpoint(mnt_));
    }

    void unmount_of_something_not_mounted_fails_clearly() {
        RunResult r = run(NETFS_BINARY, {"unmount", mnt_}, 10000);
        QVERIFY(r.exit_code != 0 && r.exit_code != -1);
        QVERIFY2(r.err.startsWith("netfs: "), qPrintable(r.err));
    }
};

QTEST_GUILESS_MAIN(TestBadInput)
#include "test_bad_input.moc"
