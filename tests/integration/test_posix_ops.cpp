// POSIX semantics through a real mount, checked through the mount and in
// the directory the remote serves: what a program on a local disk expects.
#include "tests/support/mount_fixture.h"
#include "tests/support/test_remote.h"

#include <QDir>
#include <QScopeGuard>
#include <QTest>

#include <dirent.h>
#include <grp.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <thread>

using namespace netfs::test;

namespace {

QByteArray b(const QString& s) { return s.toLocal8Bit(); }

int lstat_of(const QString& path, struct stat& st) { return ::lstat(b(path).constData(), &st); }

// The errno a call left, or 0 on success.
template <typename F>
int err_of(F&& call) {
    errno = 0;
    return call() == -1 ? errno : 0;
}

// What `fd` reads from offset 0 to its end (up to one byte past `expected`,
// so that a longer file shows).
std::vector<std::byte> read_whole(int fd, std::size_t expected) {
    std::vector<std::byte> back(expected + 1);
    std::size_t got = 0;
    for (ssize_t n; (n = ::pread(fd, back.data() + got, back.size() - got, off_t(got))) > 0;)
        got += std::size_t(n);
    back.resize(got);
    return back;
}

int renameat2_(const QString& from, const QString& to, unsigned flags) {
    return static_cast<int>(
        ::syscall(SYS_renameat2, AT_FDCWD, b(from).constData(), AT_FDCWD, b(to).constData(), flags));
}

std::set<QString> names_in(const QString& dir) {
    std::set<QString> out;
    for (const QString& n : QDir(dir).entryList(QDir::AllEntries | QDir::NoDotAndDotDot | QDir::Hidden | QDir::System))
        out.insert(n);
    return out;
}

} // namespace

class TestPosixOps : public QObject {
    Q_OBJECT

    std::unique_ptr<MountFixture> m_;

private slots:
    void init() {
        m_ = std::make_unique<MountFixture>(RemoteSpec{}, QStringList{"allow_other", "default_permissions"});
        QVERIFY2(m_->mount(), qPrintable(m_->error()));
        ::umask(022);
    }
    void cleanup() {
        QVERIFY2(m_->unmount(), qPrintable(m_->error()));
        m_.reset();
    }

    void create_write_read_truncate() {
        auto data = random_bytes(300000, 1);
        QVERIFY(write_file(m_->at("f"), data));
        QVERIFY(read_file(m_->at("f")) == data);
        QVERIFY(read_file(m_->direct("f")) == data);
        QCOMPARE(::truncate(b(m_->at("f")).constData(), 1000), 0);
        data.resize(1000);
        QVERIFY(read_file(m_->at("f")) == data);
        QVERIFY(read_file(m_->direct("f")) == data);
        QCOMPARE(::truncate(b(m_->at("f")).constData(), 5000), 0);  // extends with zeros
        data.resize(5000, std::byte(0));
        QVERIFY(read_file(m_->at("f")) == data);
        QVERIFY(read_file(m_->direct("f")) == data);
        struct stat st;
        QCOMPARE(::stat(b(m_->at("f")).constData(), &st), 0);
        QCOMPARE(st.st_size, 5000);
        QCOMPARE(st.st_mode & 07777, 0644u);  // 0666 & ~umask 022
    }

    // A program that truncates a file another part of it (or another
    // program) holds open read-only: the truncate must not go through the
    // reader's open. Over NFSv4 that open's state allows no size change
    // (NFS4ERR_OPENMODE, EIO), and which connection holds which open varies,
    // so several readers are opened, each on the next connection in turn.
    void truncate_while_others_hold_the_file_read_only() {
        auto data = random_bytes(200000, 7);
        QVERIFY(write_file(m_->at("f"), data));
        std::vector<int> fds;  // closed however the test ends, or the unmount finds the mount busy
        auto close_all = [&] {
            for (int fd : fds)
                ::close(fd);
            fds.clear();
        };
        auto closed_at_exit = qScopeGuard(close_all);
        const int writer = ::open(b(m_->at("f")).constData(), O_RDWR);
        QVERIFY(writer >= 0);
        fds.push_back(writer);
        for (int i = 0; i < 8; ++i) {
            const int r = ::open(b(m_->at("f")).constData(), i % 2 ? O_RDONLY | O_DIRECT : O_RDONLY);
            QVERIFY(r >= 0);
            fds.push_back(r);
            const auto size = static_cast<off_t>(data.size() - 1000 * (i + 1));
            QCOMPARE(err_of([&] { return ::ftruncate(writer, size); }), 0);
            data.resize(static_cast<std::size_t>(size));
            const auto by_path = static_cast<off_t>(size - 500);
            QCOMPARE(err_of([&] { return ::truncate(b(m_->at("f")).constData(), by_path); }), 0);
            data.resize(static_cast<std::size_t>(by_path));
        }
        // Only readers left: the size change needs no open of ours.
        ::close(writer);
        fds.erase(fds.begin());
        QCOMPARE(err_of([&] { return ::truncate(b(m_->at("f")).constData(), 100000); }), 0);
        data.resize(100000);
        close_all();
        QVERIFY(read_file(m_->at("f")) == data);
        QVERIFY(read_file(m_->direct("f")) == data);

        // A file never opened for writing through the mount, held by
        // readers on every connection: the size change goes without any
        // open of ours (over NFSv4, the anonymous stateid).
        auto other = random_bytes(90000, 8);
        QVERIFY(write_file(m_->direct("g"), other));
        for (int i = 0; i < 4; ++i) {
            const int r = ::open(b(m_->at("g")).constData(), O_RDONLY);
            QVERIFY(r >= 0);
            fds.push_back(r);
        }
        QCOMPARE(err_of([&] { return ::truncate(b(m_->at("g")).constData(), 30000); }), 0);
        other.resize(30000);
        QCOMPARE(err_of([&] { return ::truncate(b(m_->at("g")).constData(), 40000); }), 0);
        other.resize(40000, std::byte(0));
        close_all();
        QVERIFY(read_file(m_->at("g")) == other);
        QVERIFY(read_file(m_->direct("g")) == other);
    }

    void umask_applies_to_creates() {
        ::umask(077);
        QVERIFY(write_file(m_->at("private"), random_bytes(10, 2)));
        QCOMPARE(::mkdir(b(m_->at("pdir")).constData(), 0777), 0);
        ::umask(022);
        struct stat st;
        QCOMPARE(lstat_of(m_->direct("private"), st), 0);
        QCOMPARE(st.st_mode & 07777, 0600u);
        QCOMPARE(lstat_of(m_->direct("pdir"), st), 0);
        QCOMPARE(st.st_mode & 07777, 0700u);
    }

    void rename_rules() {
        QVERIFY(write_file(m_->at("a"), random_bytes(10, 3)));
        QVERIFY(write_file(m_->at("b"), random_bytes(20, 4)));
        QCOMPARE(::rename(b(m_->at("a")).constData(), b(m_->at("c")).constData()), 0);
        QVERIFY(!QFile::exists(m_->direct("a")) && QFile::exists(m_->direct("c")));
        // Over an existing file: replaced.
        QCOMPARE(::rename(b(m_->at("c")).constData(), b(m_->at("b")).constData()), 0);
        QVERIFY(read_file(m_->at("b")) == random_bytes(10, 3));
        QVERIFY(read_file(m_->direct("b")) == random_bytes(10, 3));
        // RENAME_NOREPLACE onto an existing name: EEXIST, nothing changed.
        QVERIFY(write_file(m_->at("x"), random_bytes(5, 5)));
        QCOMPARE(err_of([&] { return renameat2_(m_->at("x"), m_->at("b"), RENAME_NOREPLACE); }), EEXIST);
        QVERIFY(read_file(m_->direct("b")) == random_bytes(10, 3));
        // RENAME_EXCHANGE swaps, where the remote can do it atomically.
        if (remote_traits().rename_exchange) {
            QCOMPARE(renameat2_(m_->at("x"), m_->at("b"), RENAME_EXCHANGE), 0);
            QVERIFY(read_file(m_->at("b")) == random_bytes(5, 5));
            QVERIFY(read_file(m_->at("x")) == random_bytes(10, 3));
            QVERIFY(read_file(m_->direct("b")) == random_bytes(5, 5));
        } else {
            QCOMPARE(err_of([&] { return renameat2_(m_->at("x"), m_->at("b"), RENAME_EXCHANGE); }), EINVAL);
            QVERIFY(read_file(m_->direct("b")) == random_bytes(10, 3));  // nothing half done
            QCOMPARE(::rename(b(m_->at("x")).constData(), b(m_->at("b")).constData()), 0);
            QVERIFY(write_file(m_->at("x"), random_bytes(10, 3)));
        }
        // Directories: a renamed directory keeps its children reachable.
        QCOMPARE(::mkdir(b(m_->at("d1")).constData(), 0755), 0);
        QVERIFY(write_file(m_->at("d1/inner"), random_bytes(7, 6)));
        QCOMPARE(::rename(b(m_->at("d1")).constData(), b(m_->at("d2")).constData()), 0);
        QVERIFY(read_file(m_->at("d2/inner")) == random_bytes(7, 6));
        QVERIFY(QFile::exists(m_->direct("d2/inner")));
        // A directory over a non-empty directory: ENOTEMPTY; over a file: ENOTDIR.
        QCOMPARE(::mkdir(b(m_->at("d3")).constData(), 0755), 0);
        QCOMPARE(err_of([&] { return ::rename(b(m_->at("d3")).constData(), b(m_->at("d2")).constData()); }),
                 ENOTEMPTY);
        QCOMPARE(err_of([&] { return ::rename(b(m_->at("d3")).constData(), b(m_->at("x")).constData()); }), ENOTDIR);
        QCOMPARE(err_of([&] { return ::rename(b(m_->at("x")).constData(), b(m_->at("d3")).constData()); }), EISDIR);
    }

    void unlink_rmdir_mkdir_errors() {
        QCOMPARE(::mkdir(b(m_->at("d")).constData(), 0755), 0);
        QCOMPARE(err_of([&] { return ::mkdir(b(m_->at("d")).constData(), 0755); }), EEXIST);
        QVERIFY(write_file(m_->at("d/f"), random_bytes(1, 7)));
        QCOMPARE(err_of([&] { return ::rmdir(b(m_->at("d")).constData()); }), ENOTEMPTY);
        QCOMPARE(err_of([&] { return ::unlink(b(m_->at("d")).constData()); }), EISDIR);
        QCOMPARE(err_of([&] { return ::rmdir(b(m_->at("d/f")).constData()); }), ENOTDIR);
        QCOMPARE(err_of([&] { return ::unlink(b(m_->at("nope")).constData()); }), ENOENT);
        QCOMPARE(err_of([&] { return ::open(b(m_->at("d/f/x")).constData(), O_RDONLY); }), ENOTDIR);
        QCOMPARE(err_of([&] { return ::open(b(m_->at("d")).constData(), O_WRONLY); }), EISDIR);
        QCOMPARE(err_of([&] { return ::open(b(m_->at("d/f")).constData(), O_CREAT | O_EXCL | O_WRONLY, 0644); }),
                 EEXIST);
        QCOMPARE(::unlink(b(m_->at("d/f")).constData()), 0);
        QCOMPARE(::rmdir(b(m_->at("d")).constData()), 0);
        QVERIFY(!QFile::exists(m_->direct("d")));
        const QString long_name = m_->at(QString(256, 'n'));
        QCOMPARE(err_of([&] { return ::open(b(long_name).constData(), O_CREAT | O_WRONLY, 0644); }), ENAMETOOLONG);
        QCOMPARE(err_of([&] { return ::mkdir(b(long_name).constData(), 0755); }), ENAMETOOLONG);
    }

    void symlinks_and_hard_links() {
        QVERIFY(write_file(m_->at("target"), random_bytes(33, 8)));
        QCOMPARE(::symlink("target", b(m_->at("sym")).constData()), 0);
        char buf[64] = {};
        QCOMPARE(::readlink(b(m_->at("sym")).constData(), buf, sizeof buf), ssize_t(6));
        QCOMPARE(QByteArray(buf), QByteArray("target"));
        struct stat st;
        QCOMPARE(lstat_of(m_->direct("sym"), st), 0);
        QVERIFY(S_ISLNK(st.st_mode));
        QVERIFY(read_file(m_->at("sym")) == random_bytes(33, 8));  // followed by the kernel
        // Targets of every length read back whole, and nothing after them
        // (libnfs 4.0 ends an NFSv4 target only where XDR padded it: one
        // of 4 or 8 bytes came back with whatever followed it).
        // Made through the mount and on the server.
        int made = 0;
        for (const char* target : {"a", "ab", "abc", "abcd", "abcdefgh", "dir/name", "../../up/there"}) {
            const QString name = QString("sym-%1").arg(++made);
            QCOMPARE(::symlink(target, b(m_->at(name)).constData()), 0);
            QCOMPARE(::symlink(target, b(m_->direct("server-" + name)).constData()), 0);
            for (const QString& at : {m_->at(name), m_->at("server-" + name)}) {
                std::memset(buf, 0, sizeof buf);
                QCOMPARE(::readlink(b(at).constData(), buf, sizeof buf), ssize_t(std::strlen(target)));
                QCOMPARE(QByteArray(buf), QByteArray(target));
                QCOMPARE(lstat_of(at, st), 0);
                QCOMPARE(st.st_size, off_t(std::strlen(target)));
            }
        }

        if (!remote_traits().hard_links) {
            QCOMPARE(err_of([&] { return ::link(b(m_->at("target")).constData(), b(m_->at("hard")).constData()); }),
                     EOPNOTSUPP);
            QVERIFY(!QFile::exists(m_->direct("hard")));
            return;
        }
        QCOMPARE(::link(b(m_->at("target")).constData(), b(m_->at("hard")).constData()), 0);
        struct stat a, h;
        QCOMPARE(::stat(b(m_->at("target")).constData(), &a), 0);
        QCOMPARE(::stat(b(m_->at("hard")).constData(), &h), 0);
        QCOMPARE(a.st_ino, h.st_ino);
        QCOMPARE(lstat_of(m_->direct("hard"), st), 0);
        QCOMPARE(st.st_nlink, nlink_t(2));
        if (remote_traits().link_counts)
            QCOMPARE(a.st_nlink, nlink_t(2));
        // A write through one name is read through the other.
        auto more = random_bytes(40, 9);
        QVERIFY(write_file(m_->at("hard"), more));
        QVERIFY(read_file(m_->at("target")) == more);
        QCOMPARE(::unlink(b(m_->at("target")).constData()), 0);
        QCOMPARE(::stat(b(m_->at("hard")).constData(), &h), 0);
        QCOMPARE(h.st_nlink, nlink_t(1));
        QVERIFY(read_file(m_->at("hard")) == more);
    }

    void chmod_chown_utimens() {
        QVERIFY(write_file(m_->at("f"), random_bytes(10, 10)));
        struct stat before, st;
        QCOMPARE(::stat(b(m_->at("f")).constData(), &before), 0);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        QCOMPARE(::chmod(b(m_->at("f")).constData(), 0640), 0);
        QCOMPARE(lstat_of(m_->direct("f"), st), 0);
        QCOMPARE(st.st_mode & 07777, 0640u);
        QCOMPARE(::stat(b(m_->at("f")).constData(), &st), 0);
        QCOMPARE(st.st_mode & 07777, 0640u);
        if (remote_traits().ctime)
            QVERIFY2(st.st_ctim.tv_sec > before.st_ctim.tv_sec ||
                         (st.st_ctim.tv_sec == before.st_ctim.tv_sec && st.st_ctim.tv_nsec > before.st_ctim.tv_nsec),
                     "chmod moves ctime");

        QCOMPARE(::chown(b(m_->at("f")).constData(), 1234, 5678), 0);  // as root, with allow_other
        QCOMPARE(lstat_of(m_->direct("f"), st), 0);
        QCOMPARE(st.st_uid, uid_t(1234));
        QCOMPARE(st.st_gid, gid_t(5678));

        const timespec times[2] = {{1000000000, 123456789}, {1500000000, 987654321}};
        QCOMPARE(::utimensat(AT_FDCWD, b(m_->at("f")).constData(), times, 0), 0);
        // Times as precise as the protocol carries them, the same through the
        // mount as behind it.
        const long unit = remote_traits().time_resolution_ns;
        QCOMPARE(lstat_of(m_->direct("f"), st), 0);
        QCOMPARE(st.st_atim.tv_sec, 1000000000);
        QCOMPARE(st.st_atim.tv_nsec, 123456789 / unit * unit);
        QCOMPARE(st.st_mtim.tv_nsec, 987654321 / unit * unit);
        QCOMPARE(::stat(b(m_->at("f")).constData(), &st), 0);
        QCOMPARE(st.st_mtim.tv_sec, 1500000000);
        QCOMPARE(st.st_mtim.tv_nsec, 987654321 / unit * unit);
        // UTIME_OMIT keeps, UTIME_NOW sets now.
        const timespec keep_now[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
        QCOMPARE(::utimensat(AT_FDCWD, b(m_->at("f")).constData(), keep_now, 0), 0);
        QCOMPARE(lstat_of(m_->direct("f"), st), 0);
        QCOMPARE(st.st_atim.tv_sec, 1000000000);
        QVERIFY(st.st_mtim.tv_sec > 1700000000);
    }

    void mtime_moves_on_write() {
        QVERIFY(write_file(m_->at("f"), random_bytes(10, 11)));
        const timespec old_times[2] = {{1000, 0}, {1000, 0}};
        QCOMPARE(::utimensat(AT_FDCWD, b(m_->at("f")).constData(), old_times, 0), 0);
        QVERIFY(write_file(m_->at("f"), random_bytes(10, 12)));
        struct stat st;
        QCOMPARE(::stat(b(m_->at("f")).constData(), &st), 0);
        QVERIFY(st.st_mtim.tv_sec > 1000);
        QCOMPARE(lstat_of(m_->direct("f"), st), 0);
        QVERIFY(st.st_mtim.tv_sec > 1000);
    }

    void special_files() {
        const RemoteTraits can = remote_traits();
        if (!can.fifos) {
            QCOMPARE(err_of([&] { return ::mkfifo(b(m_->at("fifo")).constData(), 0644); }), EPERM);
            QCOMPARE(err_of([&] { return ::mknod(b(m_->at("null")).constData(), S_IFCHR | 0644, makedev(1, 3)); }),
                     EPERM);
            QVERIFY(!QFile::exists(m_->direct("fifo")) && !QFile::exists(m_->direct("null")));
            return;
        }
        QCOMPARE(::mkfifo(b(m_->at("fifo")).constData(), 0644), 0);
        QCOMPARE(::mknod(b(m_->at("null")).constData(), S_IFCHR | 0644, makedev(1, 3)), 0);
        struct stat st;
        QCOMPARE(lstat_of(m_->direct("fifo"), st), 0);
        QVERIFY(S_ISFIFO(st.st_mode));
        QCOMPARE(lstat_of(m_->direct("null"), st), 0);
        QVERIFY(S_ISCHR(st.st_mode));
        QCOMPARE(st.st_rdev, makedev(1, 3));
        QCOMPARE(lstat_of(m_->at("null"), st), 0);
        QVERIFY(S_ISCHR(st.st_mode));
        QCOMPARE(st.st_rdev, makedev(1, 3));
    }

    void readdir_lists_exactly_the_remote() {
        QCOMPARE(::mkdir(b(m_->at("dir")).constData(), 0755), 0);
        for (int i = 0; i < 300; ++i)
            QVERIFY(write_file(m_->at("dir/file" + QString::number(i)), random_bytes(i, 13)));
        QCOMPARE(::mkdir(b(m_->at("dir/sub")).constData(), 0755), 0);
        QCOMPARE(::symlink("file1", b(m_->at("dir/link")).constData()), 0);
        // Made behind the mount's back: seen once the directory is listed again.
        QVERIFY(write_file(m_->direct("dir/outside"), random_bytes(3, 14)));
        QCOMPARE(names_in(m_->at("dir")), names_in(m_->direct("dir")));
        QCOMPARE(names_in(m_->at("dir")).size(), std::size_t(303));
        DIR* d = ::opendir(b(m_->at("dir")).constData());
        QVERIFY(d);
        int dots = 0;
        while (dirent* e = ::readdir(d)) {
            const QString name = e->d_name;
            if (name == "." || name == "..") {
                ++dots;
                continue;
            }
            const unsigned char want = name == "sub" ? DT_DIR : name == "link" ? DT_LNK : DT_REG;
            QCOMPARE(e->d_type, want);
        }
        ::closedir(d);
        QCOMPARE(dots, 2);
    }

    void unlinked_file_stays_usable_while_open() {
        QVERIFY(write_file(m_->at("tmp"), random_bytes(1000, 15)));
        int fd = ::open(b(m_->at("tmp")).constData(), O_RDWR);
        QVERIFY(fd >= 0);
        QCOMPARE(::unlink(b(m_->at("tmp")).constData()), 0);
        QVERIFY(!QFile::exists(m_->at("tmp")));
        QVERIFY(!QFile::exists(m_->direct("tmp")));
        QCOMPARE(::pwrite(fd, "abc", 3, 2000), ssize_t(3));
        char buf[3];
        QCOMPARE(::pread(fd, buf, 3, 2000), ssize_t(3));
        QCOMPARE(QByteArray(buf, 3), QByteArray("abc"));
        struct stat st;
        QCOMPARE(::fstat(fd, &st), 0);
        QCOMPARE(st.st_size, 2003);
        // Its attributes change as on a local disk, though no name reaches it.
        QCOMPARE(::fchmod(fd, 0600), 0);
        const timespec times[2] = {{1000, 0}, {2000, 0}};
        QCOMPARE(::futimens(fd, times), 0);
        QCOMPARE(::fstat(fd, &st), 0);
        QCOMPARE(st.st_mode & 07777, 0600u);
        QCOMPARE(st.st_mtim.tv_sec, 2000);
        QCOMPARE(::ftruncate(fd, 1500), 0);
        QCOMPARE(::fstat(fd, &st), 0);
        QCOMPARE(st.st_size, 1500);
        QCOMPARE(::fsync(fd), 0);
        QCOMPARE(::close(fd), 0);
        // Where the remote kept it under another name meanwhile (NFS), it goes
        // at the last close: FUSE tells the daemon after close(2) returned.
        QTRY_COMPARE_WITH_TIMEOUT(QDir(m_->backing()).entryList(QDir::Files | QDir::Hidden).filter(".netfs-").size(),
                                  0, 5000);
        QCOMPARE(QDir(m_->backing()).entryList(QDir::Files | QDir::Hidden).filter("tmp").size(), 0);
    }

    // NFS handles go stale when the file goes: the mount keeps an open
    // file's data under a hidden name until its last close, as the
    // kernel's client does. A user who renames that file back to a name of
    // their own keeps it: the last close removes the hidden name only.
    void a_set_aside_file_renamed_back_is_kept() {
        // Large enough that a remote spreading a file's I/O over its
        // connections (sftp: one per MiB) reads it through more than one.
        const auto data = random_bytes((4 << 20) + 5000, 18);
        QVERIFY(write_file(m_->direct("precious"), data));  // nothing of it cached on this side
        int fd = ::open(b(m_->at("precious")).constData(), O_RDONLY);
        QVERIFY(fd >= 0);
        auto closed = qScopeGuard([&] { ::close(fd); });
        QCOMPARE(::unlink(b(m_->at("precious")).constData()), 0);
        const QStringList aside =
            QDir(m_->mountpoint()).entryList(QDir::Files | QDir::Hidden).filter(".netfs-unlinked-");
        QVERIFY2(aside.size() == (remote_is_nfs() ? 1 : 0), qPrintable(aside.join(' ')));
        if (!aside.isEmpty()) {
            // Removing it while open is refused, as the kernel's NFS client refuses it.
            QCOMPARE(err_of([&] { return ::unlink(b(m_->at(aside[0])).constData()); }), EBUSY);
            QCOMPARE(::rename(b(m_->at(aside[0])).constData(), b(m_->at("rescued")).constData()), 0);
        }
        QVERIFY(read_whole(fd, data.size()) == data);  // through the open handle alone
        closed.dismiss();
        QCOMPARE(::close(fd), 0);
        QTest::qWait(500);  // FUSE tells the daemon of the last close after close(2) returned
        if (!aside.isEmpty()) {
            QVERIFY(read_file(m_->at("rescued")) == data);
            QVERIFY(read_file(m_->direct("rescued")) == data);
            QCOMPARE(::unlink(b(m_->at("rescued")).constData()), 0);
        }
        QCOMPARE(QDir(m_->backing()).entryList(QDir::Files | QDir::Hidden).filter(".netfs-").size(), 0);
    }

    // An editor's atomic save (a new file renamed over the old) while
    // another program reads the old one: that program reads on, the old
    // content whole, and nothing is left behind once it closes.
    void a_file_replaced_while_open_reads_on() {
        const auto old_data = random_bytes((2 << 20) + 300, 19);
        QVERIFY(write_file(m_->direct("config"), old_data));  // nothing of it cached on this side
        const int fd = ::open(b(m_->at("config")).constData(), O_RDONLY);
        QVERIFY(fd >= 0);
        auto closed = qScopeGuard([&] { ::close(fd); });
        const auto new_data = random_bytes(1000, 20);
        QVERIFY(write_file(m_->at(".config.tmp"), new_data));
        QCOMPARE(::rename(b(m_->at(".config.tmp")).constData(), b(m_->at("config")).constData()), 0);
        QVERIFY(read_file(m_->at("config")) == new_data);
        QVERIFY(read_whole(fd, old_data.size()) == old_data);
        closed.dismiss();
        QCOMPARE(::close(fd), 0);
        QTRY_COMPARE_WITH_TIMEOUT(
            QDir(m_->backing()).entryList(QDir::Files | QDir::Hidden).filter(".netfs-unlinked-").size(), 0, 5000);
        QVERIFY(read_file(m_->direct("config")) == new_data);
    }

    void statfs_reports_the_remote() {
        struct statvfs through, behind;
        QCOMPARE(::statvfs(b(m_->mountpoint()).constData(), &through), 0);
        QCOMPARE(::statvfs(b(m_->backing()).constData(), &behind), 0);
        QCOMPARE(through.f_blocks * through.f_frsize, behind.f_blocks * behind.f_frsize);
        QCOMPARE(through.f_namemax, behind.f_namemax);
    }

    void read_only_mount_refuses_writes() {
        QVERIFY(write_file(m_->at("existing"), random_bytes(10, 16)));
        QVERIFY(m_->unmount());
        MountFixture ro(RemoteSpec{}, {"ro"});
        // Reuse the same backing directory: ro gets its own, so copy the file in.
        QVERIFY(write_file(ro.direct("existing"), random_bytes(10, 16)));
        QVERIFY2(ro.mount(), qPrintable(ro.error()));
        QVERIFY(read_file(ro.at("existing")) == random_bytes(10, 16));
        QCOMPARE(err_of([&] { return ::open(b(ro.at("existing")).constData(), O_WRONLY); }), EROFS);
        QCOMPARE(err_of([&] { return ::open(b(ro.at("new")).constData(), O_CREAT | O_WRONLY, 0644); }), EROFS);
        QCOMPARE(err_of([&] { return ::mkdir(b(ro.at("d")).constData(), 0755); }), EROFS);
        QCOMPARE(err_of([&] { return ::unlink(b(ro.at("existing")).constData()); }), EROFS);
        QVERIFY(ro.unmount());
        QVERIFY(m_->mount());
    }

    void uid_gid_umask_options_change_what_is_reported() {
        QVERIFY(write_file(m_->at("f"), random_bytes(10, 17)));
        QCOMPARE(::chmod(b(m_->at("f")).constData(), 0666), 0);
        QVERIFY(m_->unmount());
        MountFixture mapped(RemoteSpec{}, {"uid=4321", "gid=8765", "umask=027"});
        QVERIFY(write_file(mapped.direct("f"), random_bytes(10, 17)));
        QCOMPARE(::chmod(b(mapped.direct("f")).constData(), 0666), 0);
        QVERIFY2(mapped.mount(), qPrintable(mapped.error()));
        struct stat st;
        QCOMPARE(::stat(b(mapped.at("f")).constData(), &st), 0);
        QCOMPARE(st.st_uid, uid_t(4321));
        QCOMPARE(st.st_gid, gid_t(8765));
        QCOMPARE(st.st_mode & 07777, 0640u);
        QCOMPARE(lstat_of(mapped.direct("f"), st), 0);
        QCOMPARE(st.st_uid, uid_t(0));  // the remote itself is unchanged
        QVERIFY(mapped.unmount());
        QVERIFY(m_->mount());
    }

    void sticky_directory_protects_other_users_files() {
        QCOMPARE(::mkdir(b(m_->at("shared")).constData(), 01777), 0);
        QCOMPARE(::chmod(b(m_->at("shared")).constData(), 01777), 0);
        QVERIFY(write_file(m_->at("shared/roots"), random_bytes(4, 18)));
        QCOMPARE(::chmod(b(m_->at("shared/roots")).constData(), 0666), 0);
        // Another user may write root's file but not delete or rename it.
        // (The test's temporary directory is 0700: let that user reach the mount.)
        QCOMPARE(::chmod(b(m_->scratch()).constData(), 0755), 0);
        pid_t child = ::fork();
        if (child == 0) {
            if (::setgroups(0, nullptr) != 0 || ::setgid(1000) != 0 || ::setuid(1000) != 0)
                ::_exit(10);
            errno = 0;
            if (::unlink(b(m_->at("shared/roots")).constData()) != -1 || errno != EPERM)
                ::_exit(11);
            if (::rename(b(m_->at("shared/roots")).constData(), b(m_->at("shared/mine")).constData()) != -1 ||
                errno != EPERM)
                ::_exit(12);
            int fd = ::open(b(m_->at("shared/own")).constData(), O_CREAT | O_WRONLY, 0644);
            if (fd < 0)
                ::_exit(13);
            ::close(fd);
            ::_exit(::unlink(b(m_->at("shared/own")).constData()) == 0 ? 0 : 14);
        }
        int status = 0;
        QCOMPARE(::waitpid(child, &status, 0), child);
        QVERIFY(WIFEXITED(status));
        QCOMPARE(WEXITSTATUS(status), 0);
        QVERIFY(QFile::exists(m_->direct("shared/roots")));
    }
};

QTEST_GUILESS_MAIN(TestPosixOps)
#include "test_posix_ops.moc"
