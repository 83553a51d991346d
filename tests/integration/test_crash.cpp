// Crash safety: the daemon is killed with SIGKILL at random points while a
// writer appends and fsyncs and a reader reads, 50 times. After each crash:
// every byte whose fsync succeeded is on the remote, the cache opens again,
// and what the remounted filesystem returns equals the remote.
#include "tests/support/mount_fixture.h"

#include <QTest>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>

using namespace netfs::test;

namespace {

constexpr std::size_t kBlock = 64 << 10;

std::vector<std::byte> block(int file, std::uint64_t index) { return random_bytes(kBlock, file * 100000 + index); }

// A child that appends blocks to two files, fsyncing after each, and reports
// every acknowledged block (file, index) through `ack`; a reader thread's
// worth of reads in between keeps the read path busy too.
[[noreturn]] void writer(const QString& dir, int ack, std::uint64_t start[2]) {
    int fds[2];
    for (int f = 0; f < 2; ++f)
        fds[f] = ::open((dir + "/file" + QString::number(f)).toLocal8Bit().constData(), O_RDWR | O_CREAT, 0644);
    std::vector<std::byte> buf(kBlock);
    for (std::uint64_t i = 0;; ++i) {
        for (int f = 0; f < 2; ++f) {
            const std::uint64_t index = start[f] + i;
            if (::pwrite(fds[f], block(f, index).data(), kBlock, off_t(index * kBlock)) != ssize_t(kBlock))
                ::_exit(0);
            if (::fsync(fds[f]) != 0)
                ::_exit(0);
            const std::uint64_t message[2] = {std::uint64_t(f), index};
            if (::write(ack, message, sizeof message) != sizeof message)
                ::_exit(0);
            if (index > 0)
                (void)!::pread(fds[f], buf.data(), kBlock, off_t((index / 2) * kBlock));
        }
    }
}

} // namespace

class TestCrash : public QObject {
    Q_OBJECT
private slots:
    void sigkill_at_random_points_loses_nothing_acknowledged() {
        MountFixture m;
        const QString key = m.scratch() + "/key";
        {
            QFile f(key);
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write("crash test secret");
        }
        QVERIFY(QFile::setPermissions(key, QFile::ReadOwner | QFile::WriteOwner));
        m.set_extra_args({"--key-file", key});
        std::mt19937 rng(4242);
        std::uint64_t acked[2] = {0, 0};  // blocks acknowledged so far, per file
        for (int round = 0; round < 50; ++round) {
            QVERIFY2(m.mount(), qPrintable(QString("round %1: %2").arg(round).arg(m.error())));
            int pipe_fds[2];
            QCOMPARE(::pipe(pipe_fds), 0);
            const pid_t child = ::fork();
            if (child == 0) {
                ::close(pipe_fds[0]);
                writer(m.mountpoint(), pipe_fds[1], acked);
            }
            ::close(pipe_fds[1]);
            ::usleep(1000 * (20 + rng() % 150));
            QVERIFY(m.crash());
            ::kill(child, SIGKILL);
            std::uint64_t message[2];
            while (::read(pipe_fds[0], message, sizeof message) == sizeof message)
                acked[message[0]] = std::max(acked[message[0]], message[1] + 1);
            ::close(pipe_fds[0]);
            ::waitpid(child, nullptr, 0);

            // Everything acknowledged is on the remote, exactly.
            for (int f = 0; f < 2; ++f) {
                const auto remote = read_file(m.direct("file" + QString::number(f)));
                QVERIFY2(remote.size() >= acked[f] * kBlock,
                         qPrintable(QString("round %1 file %2: %3 bytes, %4 blocks acknowledged")
                                        .arg(round).arg(f).arg(remote.size()).arg(acked[f])));
                for (std::uint64_t b = 0; b < acked[f]; ++b)
                    QVERIFY2(std::equal(remote.begin() + b * kBlock, remote.begin() + (b + 1) * kBlock,
                                        block(f, b).begin()),
                             qPrintable(QString("round %1 file %2 block %3 differs").arg(round).arg(f).arg(b)));
            }
        }
        QVERIFY2(acked[0] > 50 && acked[1] > 50, "the writer made progress");
        // The cache opens after all those crashes (nothing quarantined), and
        // the filesystem returns what the remote holds.
        QVERIFY2(m.mount(), qPrintable(m.error()));
        for (int f = 0; f < 2; ++f)
            QVERIFY(read_file(m.at("file" + QString::number(f))) == read_file(m.direct("file" + QString::number(f))));
        QVERIFY2(m.unmount(), qPrintable(m.error()));
        QVERIFY(!m.log().contains("damaged"));
    }
};

QTEST_GUILESS_MAIN(TestCrash)
#include "test_crash.moc"
