// fsync and close tell the truth: success only when the remote has every
// byte; a failed upload surfaces as an error at fsync or close, and the data
// is kept and delivered once the remote works again.
#include "tests/support/mount_fixture.h"

#include <QDir>
#include <QFileInfo>
#include <QTest>
#include <QThread>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

using namespace netfs::test;

namespace {

int open_rw(const QString& path) { return ::open(path.toLocal8Bit().constData(), O_RDWR | O_CREAT, 0644); }

bool write_all(int fd, const std::vector<std::byte>& data, off_t offset = 0) {
    return ::pwrite(fd, data.data(), data.size(), offset) == static_cast<ssize_t>(data.size());
}

int fsync_errno(int fd) { return ::fsync(fd) == 0 ? 0 : errno; }
int close_errno(int fd) { return ::close(fd) == 0 ? 0 : errno; }

} // namespace

class TestFsyncErrors : public QObject {
    Q_OBJECT

    std::unique_ptr<MountFixture> m_;

private slots:
    void init() {
        m_ = std::make_unique<MountFixture>();
        QVERIFY2(m_->mount(), qPrintable(m_->error()));
    }
    void cleanup() {
        m_->set_faults("");
        QVERIFY2(m_->unmount(), qPrintable(m_->error()));
        m_.reset();
    }

    void fsync_reports_a_failed_upload_and_keeps_what_was_written() {
        int fd = open_rw(m_->at("f"));
        QVERIFY(fd >= 0);
        auto first = random_bytes(100000, 1);
        QVERIFY(write_all(fd, first));
        QCOMPARE(fsync_errno(fd), 0);
        QVERIFY(read_file(m_->direct("f")) == first);

        m_->set_faults("write io\n");
        auto second = random_bytes(200000, 2);
        QVERIFY(write_all(fd, second));  // buffered: accepted
        QCOMPARE(fsync_errno(fd), EIO);
        QVERIFY(read_file(m_->direct("f")) == first);  // nothing half-said was claimed

        m_->set_faults("");
        QCOMPARE(fsync_errno(fd), 0);  // the kept data is delivered now
        QVERIFY(read_file(m_->direct("f")) == second);
        QCOMPARE(close_errno(fd), 0);
    }

    void close_reports_a_failed_upload() {
        m_->set_faults("write io\n");
        int fd = open_rw(m_->at("g"));
        QVERIFY(fd >= 0);
        QVERIFY(write_all(fd, random_bytes(5000, 3)));
        QCOMPARE(close_errno(fd), EIO);
        m_->set_faults("");
        // Still kept: a later fsync through a new descriptor delivers it.
        fd = open_rw(m_->at("g"));
        QCOMPARE(fsync_errno(fd), 0);
        QCOMPARE(close_errno(fd), 0);
        QVERIFY(read_file(m_->direct("g")) == random_bytes(5000, 3));
    }

    void remote_out_of_space_is_enospc() {
        int fd = open_rw(m_->at("h"));
        QVERIFY(fd >= 0);
        m_->set_faults("write no_space\n");
        QVERIFY(write_all(fd, random_bytes(70000, 4)));
        QCOMPARE(fsync_errno(fd), ENOSPC);
        m_->set_faults("fsync no_space\n");
        QCOMPARE(fsync_errno(fd), ENOSPC);  // the remote's own fsync failing counts too
        m_->set_faults("");
        QCOMPARE(fsync_errno(fd), 0);
        QCOMPARE(close_errno(fd), 0);
        QVERIFY(read_file(m_->direct("h")) == random_bytes(70000, 4));
    }

    // A lookup, stat, open, truncate, chmod, listing, readlink or statfs
    // that meets a reconnect is asked again, as reads and writes are: a
    // server restart is not an error for the program (before, it failed).
    // A create, mkdir, link, unlink or rename is not asked again after a
    // lost connection (`unreachable`): it may have been applied, and a
    // second attempt would report EEXIST or ENOENT for our own change.
    void idempotent_metadata_calls_are_retried_invisibly() {
        QVERIFY(write_file(m_->direct("m"), random_bytes(50000, 6)));
        QVERIFY(::symlink("m", m_->direct("ln").toLocal8Bit().constData()) == 0);
        QVERIFY(QDir().mkpath(m_->direct("sub")));
        QVERIFY(write_file(m_->direct("sub/x"), random_bytes(10, 7)));
        QVERIFY(write_file(m_->direct("sub/y"), random_bytes(10, 8)));
        // Each rule names its path, so that the cache's own background work
        // (listing the directories of names looked up) cannot use up a
        // fault meant for a program's call: nothing visits sub/ before it is
        // listed.
        m_->set_faults("getattr unreachable count=2 path=/m\nopen timed_out count=2 path=/m\n"
                       "setattr unreachable count=4 path=/m\nreaddir again count=2 path=/sub\n"
                       "readlink unreachable count=2 path=/ln\nstatfs timed_out count=2\n");
        struct stat st;
        QCOMPARE(::stat(m_->at("m").toLocal8Bit().constData(), &st), 0);
        QCOMPARE(st.st_size, 50000);
        QCOMPARE(::truncate(m_->at("m").toLocal8Bit().constData(), 20000), 0);
        QCOMPARE(::chmod(m_->at("m").toLocal8Bit().constData(), 0600), 0);
        auto data = random_bytes(50000, 6);
        data.resize(20000);
        QVERIFY(read_file(m_->at("m")) == data);
        QVERIFY(read_file(m_->direct("m")) == data);
        QCOMPARE(QFileInfo(m_->direct("m")).permissions() & QFile::ReadGroup, QFile::Permissions());
        QCOMPARE(QDir(m_->at("sub")).entryList(QDir::Files), QStringList({"x", "y"}));
        QCOMPARE(QFile::symLinkTarget(m_->at("ln")), m_->at("m"));
        struct statvfs sv;
        QCOMPARE(::statvfs(m_->mountpoint().toLocal8Bit().constData(), &sv), 0);

        m_->set_faults("mkdir unreachable count=1\n");
        errno = 0;
        QCOMPARE(::mkdir(m_->at("d").toLocal8Bit().constData(), 0755), -1);
        QCOMPARE(errno, EIO);  // what is left of a transient error after the retries
        QVERIFY(!QFileInfo::exists(m_->direct("d")));
        QCOMPARE(::mkdir(m_->at("d").toLocal8Bit().constData(), 0755), 0);
        m_->set_faults("");
    }

    // A change the remote never sent (its connection was down before the
    // request left) is asked again like a lookup, so a server restart does
    // not fail it: each is carried out, once.
    void changes_never_sent_are_asked_again() {
        QVERIFY(write_file(m_->direct("old"), random_bytes(1000, 9)));
        QVERIFY(write_file(m_->direct("gone"), random_bytes(10, 10)));
        QVERIFY(QDir().mkpath(m_->direct("empty")));
        m_->set_faults("mkdir not_sent count=2 path=/d\ncreate not_sent count=2 path=/d/f\n"
                       "rename not_sent count=2 path=/old\nunlink not_sent count=2 path=/gone\n"
                       "rmdir not_sent count=2 path=/empty\nsymlink not_sent count=2 path=/ln\n"
                       "link not_sent count=2 path=/hard\n");
        const auto at = [&](const char* name) { return m_->at(name).toLocal8Bit(); };
        QCOMPARE(::mkdir(at("d").constData(), 0755), 0);
        const int fd = ::open(at("d/f").constData(), O_WRONLY | O_CREAT | O_EXCL, 0644);
        QVERIFY2(fd >= 0, strerror(errno));
        QVERIFY(write_all(fd, random_bytes(3000, 11)));
        QCOMPARE(close_errno(fd), 0);
        QCOMPARE(::rename(at("old").constData(), at("new").constData()), 0);
        QCOMPARE(::unlink(at("gone").constData()), 0);
        QCOMPARE(::rmdir(at("empty").constData()), 0);
        QCOMPARE(::symlink("new", at("ln").constData()), 0);
        QCOMPARE(::link(at("new").constData(), at("hard").constData()), 0);
        m_->set_faults("");

        QVERIFY(QFileInfo(m_->direct("d")).isDir());
        QVERIFY(read_file(m_->direct("d/f")) == random_bytes(3000, 11));
        QVERIFY(!QFileInfo::exists(m_->direct("old")));
        QVERIFY(read_file(m_->direct("new")) == random_bytes(1000, 9));
        QVERIFY(!QFileInfo::exists(m_->direct("gone")));
        QVERIFY(!QFileInfo::exists(m_->direct("empty")));
        QCOMPARE(QFile::symLinkTarget(m_->direct("ln")), m_->direct("new"));
        struct stat a, b;
        QCOMPARE(::stat(m_->direct("hard").toLocal8Bit().constData(), &a), 0);
        QCOMPARE(::stat(m_->direct("new").toLocal8Bit().constData(), &b), 0);
        QCOMPARE(a.st_ino, b.st_ino);
    }

    // While a change waits to be sent, another program renames the
    // directory it is in (a rename within one directory does not wait for
    // the directory it moves): the change is made where the directory is
    // now, not at its old path (ENOENT).
    void a_change_waiting_to_be_sent_follows_its_directory() {
        QVERIFY(QDir().mkpath(m_->direct("top/old")));
        QVERIFY(QFileInfo(m_->at("top/old")).isDir());
        m_->set_faults("mkdir not_sent count=5 path=/made\n");  // about 0.6 s of retries
        int made = -1;
        const QByteArray target = m_->at("top/old/made").toLocal8Bit();
        std::thread maker([&] { made = ::mkdir(target.constData(), 0755) == 0 ? 0 : errno; });
        QThread::msleep(100);
        QCOMPARE(::rename(m_->at("top/old").toLocal8Bit().constData(), m_->at("top/new").toLocal8Bit().constData()),
                 0);
        maker.join();
        m_->set_faults("");
        QCOMPARE(made, 0);
        QVERIFY(QFileInfo(m_->direct("top/new/made")).isDir());
        QVERIFY(!QFileInfo::exists(m_->direct("top/old")));
    }

    void transient_failures_are_retried_invisibly() {
        m_->set_faults("write again count=2\nwrite short count=3\nread timed_out count=2\n");
        auto data = random_bytes(3 << 20, 5);
        int fd = open_rw(m_->at("t"));
        QVERIFY(write_all(fd, data));
        QCOMPARE(fsync_errno(fd), 0);
        QCOMPARE(close_errno(fd), 0);
        QVERIFY(read_file(m_->direct("t")) == data);
        QVERIFY(m_->remount());
        QVERIFY(read_file(m_->at("t")) == data);
    }

    void a_permanent_read_error_is_eio_and_nothing_wrong_is_cached() {
        auto data = random_bytes(300000, 6);
        QVERIFY(write_file(m_->direct("r"), data));
        m_->set_faults("read io\n");
        int fd = ::open(m_->at("r").toLocal8Bit().constData(), O_RDONLY);
        QVERIFY(fd >= 0);
        std::vector<std::byte> buf(4096);
        errno = 0;
        QCOMPARE(::pread(fd, buf.data(), buf.size(), 0), ssize_t(-1));
        QCOMPARE(errno, EIO);
        m_->set_faults("");
        QCOMPARE(::pread(fd, buf.data(), buf.size(), 0), ssize_t(4096));
        QVERIFY(std::equal(buf.begin(), buf.end(), data.begin()));
        ::close(fd);
        QVERIFY(read_file(m_->at("r")) == data);
    }
};

QTEST_GUILESS_MAIN(TestFsyncErrors)
#include "test_fsync_errors.moc"
