// The sftp:// remote against a real OpenSSH server (SshdServer): the
// backend's RPCs directly, a real mount, every way a mount can be refused
// (one line, non-zero exit, within 10 s), and the server going away under a
// read.
#include "bench/src/delay_pump.h"
#include "core/backend/remote_url.h"
#include "tests/support/mount_fixture.h"
#include "tests/support/sshd_server.h"

#include <QCryptographicHash>
#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QFileInfo>
#include <QProcess>
#include <QThread>
#include <QTest>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

using namespace netfs;
using namespace netfs::test;

namespace {

constexpr int kFailure = 1;

RemoteOptions options_for(const SshdServer& server) {
    RemoteOptions o;
    o.identity = server.identity().toStdString();
    o.known_hosts = server.known_hosts().toStdString();
    return o;
}

std::unique_ptr<Backend> open_backend(const SshdServer& server, RemoteOptions o) {
    std::unique_ptr<Backend> backend;
    std::string message;
    const Errc e = open_remote(server.url().toStdString(), o, backend, message);
    if (e != Errc::ok)
        qWarning("open_remote: %s", message.c_str());
    return backend;
}

std::span<std::byte> span_of(std::vector<std::byte>& v, std::size_t at, std::size_t n) { return {v.data() + at, n}; }

// Writes all of `data` at `offset`, continuing after short writes.
Errc write_all(BackendFile& f, std::uint64_t offset, std::span<const std::byte> data) {
    std::size_t done = 0;
    while (done < data.size()) {
        std::size_t n = 0;
        if (Errc e = f.write(offset + done, data.subspan(done), n); e != Errc::ok)
            return e;
        if (n == 0)
            return Errc::io;
        done += n;
    }
    return Errc::ok;
}

Errc read_all(BackendFile& f, std::uint64_t offset, std::span<std::byte> buf, std::size_t& got) {
    got = 0;
    while (got < buf.size()) {
        std::size_t n = 0;
        if (Errc e = f.read(offset + got, buf.subspan(got), n); e != Errc::ok)
            return e;
        if (n == 0)
            break;
        got += n;
    }
    return Errc::ok;
}


bool write_bytes(const QString& path, const std::vector<std::byte>& data) { return write_file(path, data); }

// How many processes have the file at `path` open (with `or_unlinked`, or
// a file that was there before it was unlinked): the server's, one per
// SFTP session holding a handle of it.
int processes_holding(const QString& path, bool or_unlinked = false) {
    const QFileInfo info(path);
    const QString target = info.dir().canonicalPath() + "/" + info.fileName();  // as /proc shows it
    int holders = 0;
    for (const QString& pid : QDir("/proc").entryList(QDir::Dirs | QDir::NoDotAndDotDot)) {
        if (pid.toInt() <= 0)
            continue;
        const QDir fds("/proc/" + pid + "/fd");
        for (const QString& fd : fds.entryList(QDir::AllEntries | QDir::System | QDir::NoDotAndDotDot))
            if (const QString held = QFile::symLinkTarget(fds.filePath(fd));
                held == target || (or_unlinked && held == target + " (deleted)")) {
                holders++;
                break;
            }
    }
    return holders;
}

// A TCP relay on 127.0.0.1 that delays every byte by `one_way` in each
// direction: a distant server, on loopback (this kernel has no netem; the
// benchmarks use bench_delay_proxy, the same idea). Data read at time t is
// sent at t + one_way, in order.
class DelayRelay {
public:
    DelayRelay(std::uint16_t target, std::chrono::milliseconds one_way) : target_(target), one_way_(one_way) {
        listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listener_, 16) != 0 ||
            ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
            return;
        port_ = ntohs(a.sin_port);
        threads_.emplace_back([this] { accept_loop(); });
    }

    ~DelayRelay() {
        {
            std::lock_guard lock(mu_);
            stopping_ = true;
            for (int fd : sockets_)
                ::shutdown(fd, SHUT_RDWR);
        }
        ::shutdown(listener_, SHUT_RDWR);
        for (auto& t : threads_)
            t.join();  // accept_loop joins the relays it started
        ::close(listener_);
        for (int fd : sockets_)
            ::close(fd);
    }

    std::uint16_t port() const { return port_; }

private:
    void accept_loop() {
        std::vector<std::thread> relays;
        for (;;) {
            const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
            if (client < 0)
                break;
            const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_port = htons(target_);
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            const int one = 1;
            ::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a);
            for (int fd : {client, server})
                ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            {
                std::lock_guard lock(mu_);
                sockets_.push_back(client);
                sockets_.push_back(server);
                if (stopping_)
                    break;  // the destructor closes them
            }
            relays.emplace_back([this, client, server] { delay_pump(client, server, one_way_); });
            relays.emplace_back([this, client, server] { delay_pump(server, client, one_way_); });
        }
        for (auto& t : relays)
            t.join();
    }

    const std::uint16_t target_;
    const std::chrono::milliseconds one_way_;
    int listener_ = -1;
    std::uint16_t port_ = 0;
    std::mutex mu_;
    bool stopping_ = false;     // under mu_
    std::vector<int> sockets_;  // every relayed connection's two ends, under mu_
    std::vector<std::thread> threads_;
};

} // namespace

class TestSftpRemote : public QObject {
    Q_OBJECT

    std::unique_ptr<SshdServer> server_;
    QTemporaryDir scratch_;

    // `netfs mount` with the URL and -o options, on a fresh mount point.
    RunResult mount_fails(const QString& url, const QString& options) {
        const QString mnt = scratch_.path() + "/mnt-" + QString::number(++mounts_);
        QDir().mkpath(mnt);
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.insert("XDG_CONFIG_HOME", scratch_.path() + "/config");
        env.remove("SSH_AUTH_SOCK");
        QStringList args{"mount", url, mnt, "--cache-dir", scratch_.path() + "/cache"};
        if (!options.isEmpty())
            args << "-o" << options;
        // In a session of its own: no terminal to ask, even when the tests
        // run from one.
        RunResult r = run("setsid", QStringList{"-w", NETFS_BINARY} + args, 15000, env);
        if (is_mountpoint(mnt))
            run(NETFS_BINARY, {"unmount", mnt}, 20000, env);
        return r;
    }
    int mounts_ = 0;

    static void expect_one_line(const RunResult& r, const QStringList& words) {
        QVERIFY2(r.exit_code != -1, "netfs mount hung");
        QVERIFY2(r.seconds < 10, qPrintable("took " + QString::number(r.seconds) + " s"));
        QCOMPARE(r.exit_code, kFailure);
        const QStringList lines = r.err.trimmed().split('\n');
        QVERIFY2(lines.size() == 1, qPrintable(r.err));
        qInfo("%.2f s: %s", r.seconds, qPrintable(lines[0]));
        for (const QString& w : words)
            QVERIFY2(lines[0].contains(w), qPrintable(lines[0] + "\n  lacks: " + w));
    }

private slots:
    void initTestCase() {
        server_ = std::make_unique<SshdServer>();
        QVERIFY2(server_->running(), qPrintable(server_->error()));
    }

    // ---- the backend's RPCs -------------------------------------------------

    void large_file_round_trip() {
        auto backend = open_backend(*server_, options_for(*server_));
        QVERIFY(backend);
        QCOMPARE(backend->connection_state(), ConnectionState::connected);
        const BackendLimits limits = backend->limits();
        QVERIFY(!limits.has_file_id);
        QVERIFY(!limits.has_change_attr);

        const std::size_t size = (20u << 20) + 12345;
        const auto data = random_bytes(size, 20260101);
        std::unique_ptr<BackendFile> file;
        Attr attr;
        QCOMPARE(backend->create("/big", 0644, O_RDWR | O_EXCL, file, attr), Errc::ok);
        QVERIFY(S_ISREG(attr.mode));
        QCOMPARE(attr.size, 0u);
        // Odd-sized writes at odd offsets, out of order: the second half first.
        const std::size_t half = size / 2 + 7;
        for (std::size_t at = half; at < size;) {
            const std::size_t n = std::min<std::size_t>(size - at, 777777);
            QCOMPARE(write_all(*file, at, {data.data() + at, n}), Errc::ok);
            at += n;
        }
        // The first half in writes of nearly wsize_max (reintegration
        // uploads 8 MiB at once: 128 SFTP WRITEs in flight).
        for (std::size_t at = 0; at < half;) {
            const std::size_t n = std::min<std::size_t>(half - at, limits.wsize_max - 3);
            QCOMPARE(write_all(*file, at, {data.data() + at, n}), Errc::ok);
            at += n;
        }
        QCOMPARE(file->fsync(false), Errc::ok);
        QCOMPARE(file->getattr(attr), Errc::ok);
        QCOMPARE(attr.size, size);
        QCOMPARE(file->close(), Errc::ok);
        QCOMPARE(read_file(server_->direct("big")), data);

        QCOMPARE(backend->open("/big", O_RDONLY, file), Errc::ok);
        std::vector<std::byte> back(size);
        // Reads of odd sizes at odd offsets, backwards, then past the end.
        std::size_t at = size;
        while (at > 0) {
            const std::size_t n = std::min<std::size_t>(at, 333331);
            at -= n;
            std::size_t got = 0;
            QCOMPARE(read_all(*file, at, span_of(back, at, n), got), Errc::ok);
            QCOMPARE(got, n);
        }
        QVERIFY(back == data);
        std::vector<std::byte> tail(5000);
        std::size_t got = 0;
        QCOMPARE(read_all(*file, size - 100, span_of(tail, 0, tail.size()), got), Errc::ok);
        QCOMPARE(got, 100u);
        QVERIFY(std::memcmp(tail.data(), data.data() + size - 100, 100) == 0);
        QCOMPARE(file->read(size + 10, span_of(tail, 0, 10), got), Errc::ok);
        QCOMPARE(got, 0u);
        // A file that grows is read past its old end.
        std::unique_ptr<BackendFile> writer;
        QCOMPARE(backend->open("/big", O_WRONLY, writer), Errc::ok);
        const auto more = random_bytes(1000, 7);
        QCOMPARE(write_all(*writer, size, more), Errc::ok);
        QCOMPARE(writer->close(), Errc::ok);
        QCOMPARE(file->read(size, span_of(tail, 0, 1000), got), Errc::ok);
        QCOMPARE(got, 1000u);
        QVERIFY(std::memcmp(tail.data(), more.data(), 1000) == 0);
        QCOMPARE(file->close(), Errc::ok);
    }

    // The pool makes its connections but the first in the background: true
    // once a file written a megabyte at a time is open on every one.
    bool all_connections_up(Backend& backend, int connections) {
        const auto data = random_bytes(static_cast<std::size_t>(connections) << 20, 5);
        std::unique_ptr<BackendFile> file;
        Attr attr;
        if (backend.create("/warm-up", 0644, O_RDWR | O_EXCL, file, attr) != Errc::ok)
            return false;
        bool up = false;
        for (int attempt = 0; attempt < 100 && !up; ++attempt) {
            for (std::size_t at = 0; at < data.size(); at += 1u << 20)
                if (write_all(*file, at, {data.data() + at, 1u << 20}) != Errc::ok)
                    return false;
            up = processes_holding(server_->direct("warm-up")) == connections;
            if (!up)
                QTest::qWait(100);
        }
        return file->close() == Errc::ok && backend.unlink("/warm-up") == Errc::ok && up;
    }

    // A large file's I/O is spread over the pool's connections, a request
    // to each in turn: a handle of the file on each, all closed by close().
    // Writes of 8 MiB (reintegration's) are spread too.
    void a_large_file_is_spread_over_the_connections() {
        RemoteOptions o = options_for(*server_);
        o.connections = 4;
        auto backend = open_backend(*server_, o);
        QVERIFY(backend);
        QVERIFY(all_connections_up(*backend, 4));
        const std::size_t size = 8u << 20;
        const auto data = random_bytes(size, 808);
        std::unique_ptr<BackendFile> file;
        Attr attr;
        QCOMPARE(backend->create("/spread", 0644, O_RDWR | O_EXCL, file, attr), Errc::ok);
        // The first megabyte (a small file's all) stays on one connection.
        QCOMPARE(write_all(*file, 0, {data.data(), 1u << 20}), Errc::ok);
        QCOMPARE(processes_holding(server_->direct("spread")), 1);
        for (std::size_t at = 1u << 20; at < size; at += 1u << 20)
            QCOMPARE(write_all(*file, at, {data.data() + at, 1u << 20}), Errc::ok);
        QCOMPARE(processes_holding(server_->direct("spread")), 4);
        QCOMPARE(file->fsync(false), Errc::ok);
        QVERIFY(read_file(server_->direct("spread")) == data);
        std::vector<std::byte> back(size);
        std::size_t got = 0;
        QCOMPARE(read_all(*file, 0, span_of(back, 0, size), got), Errc::ok);
        QCOMPARE(got, size);
        QVERIFY(back == data);
        QCOMPARE(file->close(), Errc::ok);
        QCOMPARE(processes_holding(server_->direct("spread"), true), 0);

        std::unique_ptr<BackendFile> upload;
        QCOMPARE(backend->create("/upload", 0644, O_RDWR | O_EXCL, upload, attr), Errc::ok);
        const auto big = random_bytes(32u << 20, 809);
        for (std::size_t at = 0; at < big.size(); at += 8u << 20)
            QCOMPARE(write_all(*upload, at, {big.data() + at, 8u << 20}), Errc::ok);
        QVERIFY(processes_holding(server_->direct("upload")) >= 3);
        QCOMPARE(upload->close(), Errc::ok);
        QVERIFY(read_file(server_->direct("upload")) == big);
        QCOMPARE(backend->unlink("/upload"), Errc::ok);
        QCOMPARE(backend->unlink("/spread"), Errc::ok);
    }

    // A second handle is opened by the file's path, which this mount keeps
    // current: after a rename of the file or of its directory the I/O goes
    // on in the same file, and after an unlink it stays on the first handle,
    // never reaching a new file made at the old name.
    void an_open_file_moved_or_unlinked_here_is_never_confused_with_another() {
        auto backend = open_backend(*server_, options_for(*server_));
        QVERIFY(backend);
        QVERIFY(all_connections_up(*backend, 4));
        const std::size_t size = 4u << 20;
        const auto data = random_bytes(size, 4711);
        const auto other = random_bytes(1000, 17);
        Attr attr;
        QCOMPARE(backend->mkdir("/dir1", 0755, attr), Errc::ok);
        std::unique_ptr<BackendFile> moved, unlinked, replaced;
        QCOMPARE(backend->create("/dir1/moved", 0644, O_RDWR | O_EXCL, moved, attr), Errc::ok);
        QCOMPARE(backend->create("/unlinked", 0644, O_RDWR | O_EXCL, unlinked, attr), Errc::ok);
        QCOMPARE(backend->create("/replaced", 0644, O_RDWR | O_EXCL, replaced, attr), Errc::ok);
        for (BackendFile* f : {moved.get(), unlinked.get(), replaced.get()})
            QCOMPARE(write_all(*f, 0, {data.data(), 1000}), Errc::ok);

        QCOMPARE(backend->rename("/dir1", "/dir2", 0), Errc::ok);
        QCOMPARE(backend->unlink("/unlinked"), Errc::ok);
        QVERIFY(write_bytes(server_->direct("replacement"), other));
        QCOMPARE(backend->rename("/replacement", "/replaced", 0), Errc::ok);
        // New files at the old names, made on the server.
        QVERIFY(QDir().mkpath(server_->direct("dir1")));
        QVERIFY(write_bytes(server_->direct("dir1/moved"), other));
        QVERIFY(write_bytes(server_->direct("unlinked"), other));

        // A megabyte at a time, as the engine sends them: each to another
        // connection, which opens the file by its path.
        const std::size_t mb = 1u << 20;
        for (BackendFile* f : {moved.get(), unlinked.get(), replaced.get()}) {
            QCOMPARE(write_all(*f, 1000, {data.data() + 1000, mb - 1000}), Errc::ok);
            for (std::size_t at = mb; at < size; at += mb)
                QCOMPARE(write_all(*f, at, {data.data() + at, mb}), Errc::ok);
            std::vector<std::byte> back(size);
            for (std::size_t at = 0; at < size; at += mb) {
                std::size_t got = 0;
                QCOMPARE(read_all(*f, at, span_of(back, at, mb), got), Errc::ok);
                QCOMPARE(got, mb);
            }
            QVERIFY(back == data);
            // Spread (the moved file's handles are on every connection),
            // and the new files at the old names never opened.
            QCOMPARE(processes_holding(server_->direct("dir2/moved")), f == moved.get() ? 4 : 0);
            QCOMPARE(processes_holding(server_->direct("dir1/moved")), 0);
            QCOMPARE(processes_holding(server_->direct("unlinked")), 0);
            QCOMPARE(processes_holding(server_->direct("replaced")), 0);
            if (f == replaced.get())  // the replaced file, on its first handle only
                QCOMPARE(processes_holding(server_->direct("replaced"), true), 1);
            QCOMPARE(f->close(), Errc::ok);
        }
        QVERIFY(read_file(server_->direct("dir2/moved")) == data);
        QVERIFY(read_file(server_->direct("dir1/moved")) == other);
        QVERIFY(read_file(server_->direct("unlinked")) == other);
        QVERIFY(read_file(server_->direct("replaced")) == other);
        for (const char* p : {"/dir2/moved", "/dir1/moved", "/unlinked", "/replaced"})
            QCOMPARE(backend->unlink(p), Errc::ok);
        QCOMPARE(backend->rmdir("/dir1"), Errc::ok);
        QCOMPARE(backend->rmdir("/dir2"), Errc::ok);
    }

    // Renames of a file through this mount while its writes are spread,
    // each followed by a decoy made on the server at the name it left: an
    // OPEN by path that a rename crossed may have reached the decoy, and is
    // not used. Every byte ends in the file, none in a decoy. (Whether a
    // given OPEN crosses a rename is up to timing: a stress test.)
    void renames_racing_a_spread_writer_never_reach_another_file() {
        auto backend = open_backend(*server_, options_for(*server_));
        QVERIFY(backend);
        QVERIFY(all_connections_up(*backend, 4));
        QVERIFY(QDir().mkpath(server_->direct("decoys")));
        const std::size_t mb = 1u << 20, size = 4 * mb;
        const auto decoy = random_bytes(1000, 77);
        std::vector<QString> decoys;
        for (int i = 0; i < 12; ++i) {
            const auto data = random_bytes(size, 100 + i);
            const std::string name = "/race" + std::to_string(i);
            std::unique_ptr<BackendFile> file;
            Attr attr;
            QCOMPARE(backend->create(name, 0644, O_RDWR | O_EXCL, file, attr), Errc::ok);
            QCOMPARE(write_all(*file, 0, {data.data(), mb}), Errc::ok);
            std::atomic<bool> writing = true;
            std::atomic<int> failures = 0;
            std::string at_end = name;
            std::thread renamer([&] {
                std::string from = name, to = name + ".moved";
                for (int n = 0; writing && n < 40; ++n) {
                    if (backend->rename(from, to, 0) != Errc::ok) {
                        failures++;
                        return;
                    }
                    // A decoy at the name just left, then kept aside where a
                    // write that reached it would still show.
                    const QString left = server_->direct(QString::fromStdString(from.substr(1)));
                    const QString aside = server_->direct("decoys/" + QString::number(i) + "-" + QString::number(n));
                    if (!write_bytes(left, decoy) || ::rename(qPrintable(left), qPrintable(aside)) != 0)
                        failures++;
                    decoys.push_back(aside);
                    std::swap(from, to);
                    at_end = from;
                }
            });
            for (std::size_t at = mb; at < size; at += mb)
                if (write_all(*file, at, {data.data() + at, mb}) != Errc::ok)
                    failures++;
            writing = false;
            renamer.join();
            QCOMPARE(failures.load(), 0);
            QCOMPARE(file->close(), Errc::ok);
            QVERIFY2(read_file(server_->direct(QString::fromStdString(at_end.substr(1)))) == data, at_end.c_str());
            QCOMPARE(backend->unlink(at_end), Errc::ok);
        }
        QVERIFY(!decoys.empty());
        for (const QString& d : decoys)
            QVERIFY2(read_file(d) == decoy, qPrintable(d));
        QVERIFY(QDir(server_->direct("decoys")).removeRecursively());
    }

    // A file replaced on the server after a reader opened it: the reader's
    // second handle would open the new file. The LSTAT behind that OPEN
    // shows another size, and the reader stays on its first handle, which
    // reads the old file to its end, as a local reader would.
    void a_reader_of_a_file_replaced_on_the_server_keeps_reading_it() {
        auto backend = open_backend(*server_, options_for(*server_));
        QVERIFY(backend);
        QVERIFY(all_connections_up(*backend, 4));
        const std::size_t mb = 1u << 20, size = 4 * mb;
        const auto old_data = random_bytes(size, 31), new_data = random_bytes(size + 1, 32);
        QVERIFY(write_bytes(server_->direct("replaced"), old_data));
        std::vector<std::byte> back(size);
        std::size_t got = 0;
        // An unchanged file's reader is spread as a writer is.
        std::unique_ptr<BackendFile> file;
        QCOMPARE(backend->open("/replaced", O_RDONLY, file), Errc::ok);
        for (std::size_t at = 0; at < size; at += mb) {
            QCOMPARE(read_all(*file, at, span_of(back, at, mb), got), Errc::ok);
            QCOMPARE(got, mb);
        }
        QVERIFY(back == old_data);
        QCOMPARE(processes_holding(server_->direct("replaced")), 4);
        QCOMPARE(file->close(), Errc::ok);

        QCOMPARE(backend->open("/replaced", O_RDONLY, file), Errc::ok);
        QCOMPARE(read_all(*file, 0, span_of(back, 0, mb), got), Errc::ok);
        QVERIFY(write_bytes(server_->direct("replaced.new"), new_data));
        QVERIFY(::rename(qPrintable(server_->direct("replaced.new")), qPrintable(server_->direct("replaced"))) == 0);
        for (std::size_t at = mb; at < size; at += mb) {
            QCOMPARE(read_all(*file, at, span_of(back, at, mb), got), Errc::ok);
            QCOMPARE(got, mb);
        }
        QVERIFY(back == old_data);
        // The second handle that found the new file was closed again (its
        // CLOSE not waited for); the old file is held by the first only.
        QTRY_COMPARE(processes_holding(server_->direct("replaced")), 0);
        QCOMPARE(processes_holding(server_->direct("replaced"), true), 1);
        QCOMPARE(file->close(), Errc::ok);
        QCOMPARE(processes_holding(server_->direct("replaced"), true), 0);
        QCOMPARE(backend->unlink("/replaced"), Errc::ok);
    }

    void metadata_operations() {
        auto backend = open_backend(*server_, options_for(*server_));
        QVERIFY(backend);
        Attr attr;
        QCOMPARE(backend->mkdir("/d", 0750, attr), Errc::ok);
        QVERIFY(S_ISDIR(attr.mode));
        QCOMPARE(attr.mode & 07777, 0750u);
        QCOMPARE(backend->mkdir("/d", 0755, attr), Errc::exists);
        // The server's umask (022) does not apply: the mode asked for does.
        QCOMPARE(backend->mkdir("/wide", 0777, attr), Errc::ok);
        QCOMPARE(attr.mode & 07777, 0777u);
        QCOMPARE(QFileInfo(server_->direct("wide")).permissions() & QFile::WriteOther, QFile::WriteOther);
        QCOMPARE(backend->rmdir("/wide"), Errc::ok);
        std::unique_ptr<BackendFile> file;
        QCOMPARE(backend->create("/d/f", 0600, O_WRONLY | O_EXCL, file, attr), Errc::ok);
        const auto hello = random_bytes(100, 1);
        QCOMPARE(write_all(*file, 0, hello), Errc::ok);
        QCOMPARE(file->close(), Errc::ok);
        QCOMPARE(backend->create("/d/f", 0600, O_WRONLY | O_EXCL, file, attr), Errc::exists);
        QCOMPARE(backend->create("/d/shared", 0666, O_WRONLY | O_EXCL, file, attr), Errc::ok);
        QCOMPARE(attr.mode & 07777, 0666u);
        QCOMPARE(file->close(), Errc::ok);
        struct stat shared;
        QCOMPARE(::stat(server_->direct("d/shared").toLocal8Bit().constData(), &shared), 0);
        QCOMPARE(shared.st_mode & 07777, 0666u);
        QCOMPARE(backend->unlink("/d/shared"), Errc::ok);

        // getattr has lstat semantics; a symlink's target is its text.
        QCOMPARE(backend->symlink("f", "/d/link", attr), Errc::ok);
        QVERIFY(S_ISLNK(attr.mode));
        QCOMPARE(QFile::symLinkTarget(server_->direct("d/link")), server_->direct("d/f"));
        std::string target;
        QCOMPARE(backend->readlink("/d/link", target), Errc::ok);
        QCOMPARE(target, std::string("f"));
        QCOMPARE(backend->readlink("/d/f", target), Errc::invalid);
        QCOMPARE(backend->getattr("/d/link", attr), Errc::ok);
        QVERIFY(S_ISLNK(attr.mode));
        QCOMPARE(backend->open("/d/link", O_RDONLY, file), Errc::loop);

        std::vector<DirEntry> entries;
        QCOMPARE(backend->readdir("/d", entries), Errc::ok);
        QCOMPARE(entries.size(), 2u);
        std::sort(entries.begin(), entries.end(), [](auto& a, auto& b) { return a.name < b.name; });
        QCOMPARE(entries[0].name, std::string("f"));
        QCOMPARE(entries[0].attr.size, 100u);
        QCOMPARE(entries[1].name, std::string("link"));
        QVERIFY(S_ISLNK(entries[1].attr.mode));

        // setattr: mode, size, times (whole seconds), owner.
        SetAttr change;
        change.mask = SetAttr::kMode | SetAttr::kSize | SetAttr::kMtime | SetAttr::kAtime | SetAttr::kUid |
                      SetAttr::kGid;
        change.mode = 0640;
        change.size = 10;
        change.mtime = {1700000000, 500000000};
        change.atime = {1600000000, 0};
        change.uid = 1234;
        change.gid = 4321;
        QCOMPARE(backend->setattr("/d/f", change, attr), Errc::ok);
        struct stat st;
        QCOMPARE(::stat(server_->direct("d/f").toLocal8Bit().constData(), &st), 0);
        QCOMPARE(st.st_mode & 07777, 0640u);
        QCOMPARE(st.st_size, 10);
        QCOMPARE(st.st_mtim.tv_sec, 1700000000);
        QCOMPARE(st.st_atim.tv_sec, 1600000000);
        QCOMPARE(st.st_uid, 1234u);
        QCOMPARE(st.st_gid, 4321u);
        QCOMPARE(attr.mtime.tv_sec, 1700000000);
        QCOMPARE(attr.size, 10u);

        // rename replaces (posix-rename@openssh.com), atomically.
        QCOMPARE(backend->create("/d/g", 0644, O_WRONLY | O_EXCL, file, attr), Errc::ok);
        QCOMPARE(file->close(), Errc::ok);
        QCOMPARE(backend->rename("/d/g", "/d/f", 0), Errc::ok);
        QCOMPARE(backend->getattr("/d/f", attr), Errc::ok);
        QCOMPARE(attr.size, 0u);
        QCOMPARE(backend->getattr("/d/g", attr), Errc::not_found);
        QCOMPARE(backend->create("/d/g", 0644, O_WRONLY | O_EXCL, file, attr), Errc::ok);
        QCOMPARE(file->close(), Errc::ok);
        QCOMPARE(backend->rename("/d/g", "/d/f", 1 /* RENAME_NOREPLACE */), Errc::exists);
        QCOMPARE(backend->rename("/d/g", "/d/f", 2 /* RENAME_EXCHANGE */), Errc::not_supported);
        QCOMPARE(backend->rename("/nope", "/d/x", 0), Errc::not_found);

        // link: hardlink@openssh.com.
        QCOMPARE(backend->link("/d/f", "/d/hard", attr), Errc::ok);
        QCOMPARE(::stat(server_->direct("d/hard").toLocal8Bit().constData(), &st), 0);
        QCOMPARE(st.st_nlink, 2u);
        QCOMPARE(backend->link("/d/f", "/d/hard", attr), Errc::exists);

        // Errors a caller relies on.
        QCOMPARE(backend->getattr("/missing", attr), Errc::not_found);
        QCOMPARE(backend->open("/missing", O_RDONLY, file), Errc::not_found);
        QCOMPARE(backend->readdir("/missing", entries), Errc::not_found);
        QCOMPARE(backend->readdir("/d/f", entries), Errc::not_dir);
        QCOMPARE(backend->rmdir("/d"), Errc::not_empty);
        QCOMPARE(backend->rmdir("/d/f"), Errc::not_dir);
        QCOMPARE(backend->unlink("/d"), Errc::is_dir);
        QCOMPARE(backend->unlink("/missing"), Errc::not_found);
        QCOMPARE(backend->mkdir("/missing/sub", 0755, attr), Errc::not_found);
        QCOMPARE(backend->mknod("/d/fifo", S_IFIFO | 0644, 0, attr), Errc::not_supported);

        // Clean up through the backend: unlink, rmdir.
        for (const char* name : {"/d/f", "/d/g", "/d/hard", "/d/link"})
            QCOMPARE(backend->unlink(name), Errc::ok);
        QCOMPARE(backend->rmdir("/d"), Errc::ok);
        QVERIFY(!QFile::exists(server_->direct("d")));

        // An unlinked file stays readable through its handle.
        QCOMPARE(backend->create("/u", 0644, O_RDWR | O_EXCL, file, attr), Errc::ok);
        QCOMPARE(write_all(*file, 0, hello), Errc::ok);
        QCOMPARE(backend->unlink("/u"), Errc::ok);
        QCOMPARE(file->getattr(attr), Errc::ok);
        QCOMPARE(attr.size, 100u);
        QCOMPARE(file->truncate(50), Errc::ok);
        QCOMPARE(file->getattr(attr), Errc::ok);
        QCOMPARE(attr.size, 50u);
        QCOMPARE(file->close(), Errc::ok);

        StatFs fs;
        QCOMPARE(backend->statfs(fs), Errc::ok);
        QVERIFY(fs.blocks > 0);
        QVERIFY(fs.block_size > 0);
        QVERIFY(fs.blocks_avail <= fs.blocks);
    }

    // Requests from many threads at once spread over the pool.
    void concurrent_requests() {
        auto backend = open_backend(*server_, options_for(*server_));
        QVERIFY(backend);
        constexpr int kThreads = 8;
        std::atomic<int> failures{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t) {
            threads.emplace_back([&, t] {
                const std::string name = "/c" + std::to_string(t);
                const auto data = random_bytes(3u << 20, 100 + t);
                std::unique_ptr<BackendFile> f;
                Attr a;
                if (backend->create(name, 0644, O_RDWR | O_EXCL, f, a) != Errc::ok ||
                    write_all(*f, 0, data) != Errc::ok) {
                    failures++;
                    return;
                }
                for (int i = 0; i < 20; ++i)
                    if (backend->getattr(name, a) != Errc::ok || a.size != data.size())
                        failures++;
                std::vector<std::byte> back(data.size());
                std::size_t got = 0;
                if (read_all(*f, 0, back, got) != Errc::ok || back != data)
                    failures++;
                f->close();
                backend->unlink(name);
            });
        }
        for (auto& t : threads)
            t.join();
        QCOMPARE(failures.load(), 0);
    }

    // One open file shared by 8 threads: their requests interleave on the
    // file's connection (many in flight at once), every answer reaches the
    // thread it belongs to, and the handle keeps naming its file after a
    // rename and a replacement at its old path.
    void one_file_shared_by_threads() {
        auto backend = open_backend(*server_, options_for(*server_));
        QVERIFY(backend);
        constexpr int kThreads = 8;
        const std::size_t size = (6u << 20) + 4321;
        const std::size_t piece = (192u << 10) + 1;  // not a multiple of the 64 KiB SFTP requests
        const auto data = random_bytes(size, 4242);
        std::unique_ptr<BackendFile> file;
        Attr attr;
        QCOMPARE(backend->create("/shared", 0644, O_RDWR | O_EXCL, file, attr), Errc::ok);
        std::atomic<int> failures{0};
        const auto in_parallel = [&](const std::function<void(std::size_t, std::size_t)>& body) {
            std::vector<std::thread> threads;
            for (int t = 0; t < kThreads; ++t) {
                threads.emplace_back([&, t] {
                    for (std::size_t at = t * piece; at < size; at += kThreads * piece)
                        body(at, std::min(piece, size - at));
                });
            }
            for (auto& t : threads)
                t.join();
        };
        in_parallel([&](std::size_t at, std::size_t n) {
            if (write_all(*file, at, {data.data() + at, n}) != Errc::ok)
                failures++;
        });
        QCOMPARE(failures.load(), 0);
        QCOMPARE(read_file(server_->direct("shared")), data);

        QCOMPARE(backend->rename("/shared", "/shared.old", 0), Errc::ok);
        QVERIFY(write_bytes(server_->direct("shared"), random_bytes(size, 99)));
        std::vector<std::byte> back(size);
        in_parallel([&](std::size_t at, std::size_t n) {
            std::size_t got = 0;
            Attr a;
            if (read_all(*file, at, span_of(back, at, n), got) != Errc::ok || got != n)
                failures++;
            if (backend->getattr("/shared", a) != Errc::ok || a.size != size)
                failures++;
        });
        QCOMPARE(failures.load(), 0);
        QVERIFY(back == data);
        QCOMPARE(file->getattr(attr), Errc::ok);
        QCOMPARE(attr.size, size);
        QCOMPARE(file->close(), Errc::ok);
        QCOMPARE(backend->unlink("/shared"), Errc::ok);
        QCOMPARE(backend->unlink("/shared.old"), Errc::ok);
    }

    // Many threads' path requests are in flight on one connection at once:
    // 16 threads each store a file as reintegration does (lookup, create
    // with O_EXCL, write, fsync, close, set the times, rename over the
    // target, lookup: 8 calls) through one connection at 60 ms round trip.
    // One request at a time would take 16 x 8 x 60 ms = 7.7 s; pipelined,
    // each thread waits for its own round trips only (0.5 s and the logins).
    // The server behind `relay`, on one connection.
    std::unique_ptr<Backend> backend_through(const DelayRelay& relay) {
        if (relay.port() == 0)
            return nullptr;
        const QString known = scratch_.path() + "/known_hosts_relay";
        const QString key = server_->host_key_line().section(' ', 1);  // "[host]:port TYPE KEY"
        const QString line = "[127.0.0.1]:" + QString::number(relay.port()) + " " + key;
        QFile f(known);
        if (!f.open(QIODevice::WriteOnly))
            return nullptr;
        f.write(line.toUtf8() + "\n");
        f.close();
        RemoteOptions o = options_for(*server_);
        o.known_hosts = known.toStdString();
        o.connections = 1;
        std::unique_ptr<Backend> backend;
        std::string message;
        const QString url = "sftp://root@127.0.0.1:" + QString::number(relay.port()) + server_->served();
        if (open_remote(url.toStdString(), o, backend, message) != Errc::ok)
            qWarning("%s", message.c_str());
        return backend;
    }

    // An open is one round trip: its look at the name (SFTP's OPEN follows
    // links) goes out with it. What the look finds still decides: a link is
    // not followed, and a FIFO put where a file was is refused, not waited
    // for, and the backend works on.
    void an_open_is_one_round_trip_and_follows_no_link_or_fifo() {
        QVERIFY(QDir().mkpath(server_->direct("opens")));
        for (int i = 0; i < 10; ++i)
            QVERIFY(write_file(server_->direct("opens/f" + QString::number(i)), random_bytes(100, i)));
        QVERIFY(QFile::link("f0", server_->direct("opens/link")));
        const QByteArray fifo = server_->direct("opens/fifo").toLocal8Bit();
        QCOMPARE(::mkfifo(fifo.constData(), 0644), 0);
        DelayRelay relay(server_->port(), std::chrono::milliseconds(30));
        auto backend = backend_through(relay);
        QVERIFY(backend);

        QElapsedTimer clock;
        clock.start();
        std::vector<std::unique_ptr<BackendFile>> files(10);
        for (int i = 0; i < 10; ++i)
            QCOMPARE(backend->open("/opens/f" + std::to_string(i), O_RDONLY, files[i]), Errc::ok);
        const double seconds = clock.elapsed() / 1000.0;
        qInfo("10 opens at a 60 ms round trip: %.2f s", seconds);
        QVERIFY2(seconds < 0.9, "an open took more than one round trip");
        for (int i = 0; i < 10; ++i) {
            std::vector<std::byte> got(4096);
            std::size_t n = 0;
            QCOMPARE(files[i]->read(0, got, n), Errc::ok);
            got.resize(n);
            QCOMPARE(got, random_bytes(100, i));
            QCOMPARE(files[i]->close(), Errc::ok);
        }

        std::unique_ptr<BackendFile> file;
        QCOMPARE(backend->open("/opens/link", O_RDONLY, file), Errc::loop);
        QCOMPARE(backend->open("/opens/fifo", O_RDWR | O_TRUNC, file), Errc::not_supported);  // looked at first
        clock.restart();
        QCOMPARE(backend->open("/opens/fifo", O_RDONLY, file), Errc::not_supported);
        QVERIFY2(clock.elapsed() < 10000, "the open of a FIFO hung");
        // The server's open is still blocked in the FIFO: a writer ends it.
        const int writer = ::open(fifo.constData(), O_WRONLY | O_NONBLOCK);
        if (writer >= 0)
            ::close(writer);
        Attr attr;
        QCOMPARE(backend->getattr("/opens/f1", attr), Errc::ok);
        QCOMPARE(attr.size, 100u);
        backend.reset();
        QVERIFY(QDir(server_->direct("opens")).removeRecursively());
    }

    // A listing's READDIRs go out several at a time: 350 names (four
    // answers of up to 100, then end of list) take the OPENDIR and two
    // round trips, not six, and come back whole, each name once.
    void a_listing_asks_for_several_batches_of_names_at_once() {
        QVERIFY(QDir().mkpath(server_->direct("many")));
        for (int i = 0; i < 350; ++i)
            QVERIFY(write_file(server_->direct("many/n" + QString::number(i)), random_bytes(i, i)));
        DelayRelay relay(server_->port(), std::chrono::milliseconds(30));
        auto backend = backend_through(relay);
        QVERIFY(backend);
        QElapsedTimer clock;
        clock.start();
        std::vector<DirEntry> entries;
        QCOMPARE(backend->readdir("/many", entries), Errc::ok);
        const double seconds = clock.elapsed() / 1000.0;
        qInfo("350 names at a 60 ms round trip: %.2f s", seconds);
        QCOMPARE(entries.size(), 350u);
        std::set<std::string> names;
        for (const DirEntry& e : entries) {
            names.insert(e.name);
            QCOMPARE(e.attr.size, std::uint64_t(std::stoi(e.name.substr(1))));
        }
        QCOMPARE(names.size(), 350u);
        QVERIFY2(seconds < 0.3, "the listing took more than four round trips");
        backend.reset();
        QVERIFY(QDir(server_->direct("many")).removeRecursively());
    }

    void path_requests_of_threads_overlap_on_one_connection() {
        DelayRelay relay(server_->port(), std::chrono::milliseconds(30));
        auto backend = backend_through(relay);
        QVERIFY(backend);
        Attr dir;
        QCOMPARE(backend->mkdir("/stores", 0755, dir), Errc::ok);

        constexpr int kThreads = 16;
        std::atomic<int> failures{0};
        QElapsedTimer clock;
        clock.start();
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t) {
            threads.emplace_back([&, t] {
                const std::string target = "/stores/f" + std::to_string(t), tmp = target + ".tmp";
                const auto data = random_bytes(1000 + t, 500 + t);
                Attr a;
                std::unique_ptr<BackendFile> file;
                std::size_t n = 0;
                SetAttr times;
                times.mask = SetAttr::kMtime | SetAttr::kAtime;
                times.mtime = {1600000000 + t, 0};
                times.atime = times.mtime;
                if (backend->getattr(target, a) != Errc::not_found ||
                    backend->create(tmp, 0644, O_WRONLY | O_EXCL, file, a) != Errc::ok ||
                    file->write(0, data, n) != Errc::ok || n != data.size() || file->fsync(false) != Errc::ok ||
                    file->close() != Errc::ok || backend->setattr(tmp, times, a) != Errc::ok ||
                    backend->rename(tmp, target, 0) != Errc::ok || backend->getattr(target, a) != Errc::ok ||
                    a.size != data.size() || a.mtime.tv_sec != times.mtime.tv_sec)
                    failures++;
            });
        }
        for (auto& t : threads)
            t.join();
        const double seconds = clock.elapsed() / 1000.0;
        qInfo("%d stores of 8 calls on one connection at 60 ms: %.2f s", kThreads, seconds);
        QCOMPARE(failures.load(), 0);
        for (int t = 0; t < kThreads; ++t) {
            const QString name = server_->direct("stores/f" + QString::number(t));
            QCOMPARE(read_file(name), random_bytes(1000 + t, 500 + t));
            QCOMPARE(QFileInfo(name).lastModified().toSecsSinceEpoch(), 1600000000 + t);
        }
        QVERIFY2(seconds < 3.0, "path requests waited for each other");
        backend.reset();
        QVERIFY(QDir(server_->direct("stores")).removeRecursively());
    }

    void encrypted_key_asks_its_passphrase() {
        const QString key = server_->make_key("locked_key", "correct horse", true);
        QVERIFY(!key.isEmpty());
        RemoteOptions o = options_for(*server_);
        o.identity = key.toStdString();
        std::string asked;
        o.ask_secret = [&](const std::string& prompt, std::string& answer) {
            asked = prompt;
            answer = "correct horse";
            return true;
        };
        auto backend = open_backend(*server_, o);
        QVERIFY(backend);
        QVERIFY(asked.find(key.toStdString()) != std::string::npos);
        Attr a;
        QCOMPARE(backend->getattr("/", a), Errc::ok);

        o.ask_secret = [](const std::string&, std::string& answer) {
            answer = "xyzzy-not-it";
            return true;
        };
        std::unique_ptr<Backend> refused;
        std::string message;
        QCOMPARE(open_remote(server_->url().toStdString(), o, refused, message), Errc::access);
        QVERIFY2(message.find("wrong passphrase") != std::string::npos, message.c_str());
        QVERIFY(message.find("xyzzy") == std::string::npos);
    }

    void new_host_key_is_recorded_when_accepted() {
        const QString file = server_->scratch() + "/new_known_hosts";
        QFile::remove(file);
        RemoteOptions o = options_for(*server_);
        o.known_hosts = file.toStdString();
        std::unique_ptr<Backend> backend;
        std::string message;
        QCOMPARE(open_remote(server_->url().toStdString(), o, backend, message), Errc::access);
        QVERIFY2(message.find("accept_new_host_key") != std::string::npos, message.c_str());
        QVERIFY(!QFile::exists(file));

        o.accept_new_host_key = true;
        QCOMPARE(open_remote(server_->url().toStdString(), o, backend, message), Errc::ok);
        QFile f(file);
        QVERIFY(f.open(QIODevice::ReadOnly));
        QCOMPARE(QString(f.readAll()).trimmed(), server_->host_key_line());
        struct stat st;
        QCOMPARE(::stat(file.toLocal8Bit().constData(), &st), 0);
        QCOMPARE(st.st_mode & 0777, 0600u);
        backend.reset();

        // Recorded: trusted from now on, without the option.
        o.accept_new_host_key = false;
        QCOMPARE(open_remote(server_->url().toStdString(), o, backend, message), Errc::ok);
    }

    // Without user or known_hosts: the local user name, and ~/.ssh/known_hosts
    // (created 0600 in a ~/.ssh created 0700 when a new key is accepted).
    void defaults_to_local_user_and_home_known_hosts() {
        QTemporaryDir home;
        const QByteArray old_home = qgetenv("HOME");
        qputenv("HOME", home.path().toLocal8Bit());
        RemoteOptions o;
        o.identity = server_->identity().toStdString();
        o.accept_new_host_key = true;
        const QString url = server_->url().replace("root@", "");
        std::unique_ptr<Backend> backend;
        std::string message;
        const Errc e = open_remote(url.toStdString(), o, backend, message);
        qputenv("HOME", old_home);
        QVERIFY2(e == Errc::ok, message.c_str());
        QVERIFY(backend->describe().find("sftp://root@127.0.0.1:") == 0);
        struct stat st;
        QCOMPARE(::stat((home.path() + "/.ssh").toLocal8Bit().constData(), &st), 0);
        QCOMPARE(st.st_mode & 0777, 0700u);
        QCOMPARE(::stat((home.path() + "/.ssh/known_hosts").toLocal8Bit().constData(), &st), 0);
        QCOMPARE(st.st_mode & 0777, 0600u);
        QFile known(home.path() + "/.ssh/known_hosts");
        QVERIFY(known.open(QIODevice::ReadOnly));
        QCOMPARE(QString(known.readAll()).trimmed(), server_->host_key_line());
    }

    void hashed_known_hosts_entry_is_honoured() {
        const QString file = server_->scratch() + "/hashed_known_hosts";
        QFile::remove(file);
        QFile::copy(server_->known_hosts(), file);
        const RunResult r = run("ssh-keygen", {"-H", "-f", file});
        QCOMPARE(r.exit_code, 0);
        QFile f(file);
        QVERIFY(f.open(QIODevice::ReadOnly));
        QVERIFY(f.readAll().startsWith("|1|"));
        RemoteOptions o = options_for(*server_);
        o.known_hosts = file.toStdString();
        std::unique_ptr<Backend> backend;
        std::string message;
        QCOMPARE(open_remote(server_->url().toStdString(), o, backend, message), Errc::ok);
    }

    // ---- through a real mount ---------------------------------------------

    void mount_copy_in_and_read_back() {
        const QString served = server_->direct("mounted");
        QVERIFY(QDir().mkpath(served));
        RemoteSpec spec;
        spec.kind = "sftp";
        spec.url = server_->url(served);
        spec.backing = served;
        MountFixture mount(spec, server_->options().split(','));
        QVERIFY2(mount.mount(), qPrintable(mount.error()));
        const auto data = random_bytes((8u << 20) + 4099, 42);
        const QString source = scratch_.path() + "/source";
        QVERIFY(write_bytes(source, data));
        const RunResult cp = run("cp", {source, mount.at("copy")});
        QCOMPARE(cp.exit_code, 0);
        QCOMPARE(run("sync", {mount.at("copy")}).exit_code, 0);
        QCOMPARE(sha256_of_file(mount.direct("copy")), sha256_of_file(source));
        QVERIFY(mount.remount());
        QCOMPARE(sha256_of_file(mount.at("copy")), sha256_of_file(source));
        QVERIFY(QDir().mkdir(mount.at("sub")));
        QVERIFY(QFile::rename(mount.at("copy"), mount.at("sub/moved")));
        QCOMPARE(sha256_of_file(mount.direct("sub/moved")), sha256_of_file(source));
        QVERIFY2(mount.unmount(), qPrintable(mount.error()));
    }

    // ---- refusals: one line, non-zero exit, within 10 s ---------------------

    void refuses_wrong_user() {
        const QString url = server_->url().replace("root@", "nosuchuser@");
        expect_one_line(mount_fails(url, server_->options()),
                        {"authentication failed", "nosuchuser", "tried:", "user_key", "-o identity=FILE"});
    }

    void refuses_wrong_key() {
        const QString key = server_->make_key("stranger_key", "", false);
        expect_one_line(mount_fails(server_->url(), "identity=" + key + ",known_hosts=" + server_->known_hosts()),
                        {"authentication failed", "stranger_key"});
    }

    // `netfs mount` asks an encrypted key's passphrase on its terminal (here
    // a pseudo-terminal from script(1)), before the daemon leaves it.
    void mount_asks_the_key_passphrase_on_the_terminal() {
        const QString key = server_->make_key("locked_key3", "open sesame", true);
        const QString mnt = scratch_.path() + "/mnt-tty";
        QDir().mkpath(mnt);
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.insert("XDG_CONFIG_HOME", scratch_.path() + "/config");
        env.remove("SSH_AUTH_SOCK");
        const QString command = QString("%1 mount %2 %3 --cache-dir %4 -o identity=%5,known_hosts=%6")
                                    .arg(NETFS_BINARY, server_->url(), mnt, scratch_.path() + "/cache-tty", key,
                                         server_->known_hosts());
        QProcess terminal;
        terminal.setProcessEnvironment(env);
        terminal.start("script", {"-q", "-e", "-c", command, "/dev/null"});
        QVERIFY(terminal.waitForStarted(5000));
        QByteArray seen;
        QElapsedTimer clock;
        clock.start();
        while (!seen.contains("Passphrase for key") && clock.elapsed() < 10000) {
            terminal.waitForReadyRead(200);
            seen += terminal.readAll();
        }
        QVERIFY2(seen.contains("Passphrase for key"), seen.constData());
        terminal.write("open sesame\n");
        QVERIFY(terminal.waitForFinished(15000));
        seen += terminal.readAll();
        QVERIFY2(terminal.exitCode() == 0, seen.constData());
        QVERIFY(is_mountpoint(mnt));
        QVERIFY2(!seen.contains("open sesame"), "the passphrase is not echoed");
        QCOMPARE(run(NETFS_BINARY, {"unmount", mnt}, 20000, env).exit_code, 0);
    }

    void refuses_encrypted_key_without_terminal() {
        const QString key = server_->make_key("locked_key2", "secret words", true);
        const RunResult r = mount_fails(server_->url(), "identity=" + key + ",known_hosts=" + server_->known_hosts());
        expect_one_line(r, {"key " + key + " is encrypted and no terminal to ask its passphrase", "ssh-agent"});
        QVERIFY(!r.err.contains("secret words"));
    }

    void refuses_unknown_host() {
        const QString empty = server_->scratch() + "/empty_known_hosts";
        QFile(empty).open(QIODevice::WriteOnly);
        const RunResult r = mount_fails(server_->url(), "identity=" + server_->identity() + ",known_hosts=" + empty);
        expect_one_line(r, {"SHA256:", "mount again with -o accept_new_host_key to trust it"});
        // The fingerprint is OpenSSH's.
        const RunResult fp = run("ssh-keygen", {"-l", "-f", server_->scratch() + "/host_key.pub"});
        const QString fingerprint = fp.out.split(' ').value(1);
        QVERIFY(fingerprint.startsWith("SHA256:"));
        QVERIFY2(r.err.contains(fingerprint), qPrintable(r.err + " vs " + fingerprint));
    }

    void refuses_changed_host_key() {
        const QString other = server_->make_key("impostor_host_key", "", false);
        QFile pub(other + ".pub");
        QVERIFY(pub.open(QIODevice::ReadOnly));
        const QList<QByteArray> parts = pub.readAll().split(' ');
        const QString file = server_->scratch() + "/changed_known_hosts";
        QFile f(file);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(QString("[127.0.0.1]:%1 %2 %3\n").arg(server_->port()).arg(QString(parts[0]), QString(parts[1])).toUtf8());
        f.close();
        // accept_new_host_key never overrides a changed key.
        const RunResult r = mount_fails(server_->url(), "identity=" + server_->identity() + ",known_hosts=" + file +
                                                            ",accept_new_host_key");
        expect_one_line(r, {"HOST KEY FOR [127.0.0.1]:" + QString::number(server_->port()) + " HAS CHANGED",
                            "remove the old key from " + file});
    }

    void refuses_missing_path() {
        expect_one_line(mount_fails(server_->url(server_->served() + "/does/not/exist"), server_->options()),
                        {"no such directory"});
    }

    void refuses_port_without_server() {
        SshdServer idle;  // a port nobody listens on once stopped
        idle.stop();
        expect_one_line(mount_fails(idle.url(), server_->options()), {"connection refused", "port"});
    }

    // A port that takes the connection and never says a word: refused after
    // connect_timeout.
    void refuses_silent_port_after_connect_timeout() {
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        QCOMPARE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        QCOMPARE(::listen(fd, 8), 0);  // the kernel completes connections; nobody accepts
        QCOMPARE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
        const QString url = QString("sftp://root@127.0.0.1:%1/").arg(ntohs(a.sin_port));
        const RunResult r = mount_fails(url, server_->options() + ",connect_timeout=2");
        ::close(fd);
        expect_one_line(r, {"no SSH greeting", "within 2 s"});
        QVERIFY2(r.seconds >= 1.5 && r.seconds < 6, qPrintable(QString::number(r.seconds)));
    }

    // ---- the server going away ----------------------------------------------

    // Killed in the middle of a large read through the mount and restarted:
    // every byte read is right, and the read completes after the reconnect
    // (or fails with EIO within the timeout, never hangs).
    void server_killed_mid_read_then_restarted() {
        const QString served = server_->direct("crash");
        QVERIFY(QDir().mkpath(served));
        const std::size_t size = 192u << 20;
        const auto data = random_bytes(size, 99);
        QVERIFY(write_bytes(served + "/file", data));
        RemoteSpec spec;
        spec.kind = "sftp";
        spec.url = server_->url(served);
        spec.backing = served;
        MountFixture mount(spec, server_->options().split(',') << "timeout=15");
        QVERIFY2(mount.mount(), qPrintable(mount.error()));

        // A separate process reads (see server_killed_mid_write_then_restarted).
        const QString copy = scratch_.path() + "/readback";
        QFile::remove(copy);
        QProcess dd;
        dd.setStandardInputFile(QProcess::nullDevice());
        dd.start("dd", {"if=" + mount.at("file"), "of=" + copy, "bs=1M"});
        QVERIFY(dd.waitForStarted(5000));
        QElapsedTimer clock;
        clock.start();
        while (QFileInfo(copy).size() < (24 << 20) && dd.state() == QProcess::Running && clock.elapsed() < 20000)
            QThread::msleep(1);
        const qint64 at_kill = QFileInfo(copy).size();
        server_->kill();
        QThread::msleep(1500);
        QVERIFY2(server_->restart(), qPrintable(server_->error()));
        QVERIFY2(dd.waitForFinished(40000), "the read did not end within the timeout");
        QVERIFY2(at_kill < qint64(size), "the read finished before the server was killed: make the file larger");
        const auto back = read_file(copy);
        QVERIFY(back.size() <= size);
        QVERIFY2(std::memcmp(back.data(), data.data(), back.size()) == 0, "wrong bytes read across the reconnect");
        if (dd.exitCode() != 0) {
            const QString err = QString::fromLocal8Bit(dd.readAllStandardError());
            QVERIFY2(err.contains("Input/output error"), qPrintable(err));
        } else {
            QCOMPARE(back.size(), size);
        }
        QVERIFY2(mount.log().contains("connection lost"), qPrintable(mount.log().right(2000)));
        QVERIFY2(mount.unmount(), qPrintable(mount.error()));
        qInfo("killed at %lld MiB; read %s after %.1f s", at_kill >> 20, dd.exitCode() ? "failed" : "completed",
              clock.elapsed() / 1000.0);
    }

    // Killed while a large file is written through the mount, restarted:
    // the writes and the fsync complete after the reconnect (reopening the
    // file by its path) and the server has every byte.
    //
    // The writer is a separate process (dd): a FUSE descriptor open in the
    // test process would be inherited by the restarted sshd, whose closing
    // of it (a FUSE flush, which waits for writeback to that very server)
    // would never return.
    void server_killed_mid_write_then_restarted() {
        const QString served = server_->direct("crash_write");
        QVERIFY(QDir().mkpath(served));
        RemoteSpec spec;
        spec.kind = "sftp";
        spec.url = server_->url(served);
        spec.backing = served;
        MountFixture mount(spec, server_->options().split(',') << "timeout=15");
        QVERIFY2(mount.mount(), qPrintable(mount.error()));
        const std::size_t size = 128u << 20;
        const auto data = random_bytes(size, 1234);
        const QString source = scratch_.path() + "/write_source";
        QVERIFY(write_bytes(source, data));

        QProcess dd;
        dd.setStandardInputFile(QProcess::nullDevice());
        dd.start("dd", {"if=" + source, "of=" + mount.at("file"), "bs=1M", "conv=fsync"});
        QVERIFY(dd.waitForStarted(5000));
        QElapsedTimer clock;
        clock.start();
        while (QFileInfo(mount.direct("file")).size() < (16 << 20) && dd.state() == QProcess::Running &&
               clock.elapsed() < 20000)
            QThread::msleep(1);
        const qint64 at_kill = QFileInfo(mount.direct("file")).size();
        server_->kill();
        QThread::msleep(1500);
        QVERIFY2(server_->restart(), qPrintable(server_->error()));
        QVERIFY2(dd.waitForFinished(40000), "the writes did not end within the timeout");
        QVERIFY2(at_kill < qint64(size), "written before the server was killed: make the file larger");
        const QString err = QString::fromLocal8Bit(dd.readAllStandardError());
        if (dd.exitCode() != 0) {
            QVERIFY2(err.contains("Input/output error"), qPrintable(err));
        } else {
            QCOMPARE(read_file(mount.direct("file")), data);
        }
        QVERIFY2(mount.unmount(), qPrintable(mount.error()));
        qInfo("killed at %lld MiB; writes %s after %.1f s", at_kill >> 20, dd.exitCode() ? "failed" : "completed",
              clock.elapsed() / 1000.0);
    }

    // Gone for good: requests fail (transiently, for the engine to retry)
    // within the timeout, the state says so, and it recovers when it is back.
    void server_gone_fails_within_the_timeout() {
        RemoteOptions o = options_for(*server_);
        o.op_timeout = 3;
        o.connections = 2;
        auto backend = open_backend(*server_, o);
        QVERIFY(backend);
        Attr a;
        QCOMPARE(backend->getattr("/", a), Errc::ok);
        server_->kill();
        QElapsedTimer clock;
        clock.start();
        Errc e = Errc::ok;
        while (e == Errc::ok && clock.elapsed() < 10000)
            e = backend->getattr("/", a);
        QVERIFY2(is_connection_down(e), std::string(name(e)).c_str());
        while (!is_connection_down(backend->getattr("/", a)) ||
               backend->connection_state() != ConnectionState::unreachable) {
            QVERIFY2(clock.elapsed() < 6000, "not declared unreachable within the timeout");
            QThread::msleep(50);
        }
        QVERIFY2(server_->restart(), qPrintable(server_->error()));
        clock.restart();
        while (backend->connection_state() != ConnectionState::connected) {
            QVERIFY2(clock.elapsed() < 5000, "not reconnected within 5 s");
            QThread::msleep(50);
        }
        QCOMPARE(backend->getattr("/", a), Errc::ok);
    }

    // A server that stops answering without closing anything is noticed
    // by the heartbeat within 5 s, and the pool comes back when it does.
    void hung_server_is_noticed_within_5_seconds() {
        RemoteOptions o = options_for(*server_);
        o.op_timeout = 20;
        o.connections = 2;
        auto backend = open_backend(*server_, o);
        QVERIFY(backend);
        Attr a;
        QCOMPARE(backend->getattr("/", a), Errc::ok);
        QThread::msleep(300);  // let the second connection come up
        server_->pause();
        QElapsedTimer clock;
        clock.start();
        while (backend->connection_state() == ConnectionState::connected && clock.elapsed() < 10000)
            QThread::msleep(20);
        const double noticed = clock.elapsed() / 1000.0;
        server_->resume();
        qInfo("hung server noticed after %.2f s", noticed);
        QVERIFY2(noticed <= 5.5, qPrintable(QString::number(noticed)));
        clock.restart();
        while (backend->connection_state() != ConnectionState::connected) {
            QVERIFY2(clock.elapsed() < 15000, "not reconnected after the server resumed");
            QThread::msleep(20);
        }
        QCOMPARE(backend->getattr("/", a), Errc::ok);
    }

    // ssh-agent comes before key files; what was tried is named.
    void agent_is_tried_first() {
        const QString sock = server_->scratch() + "/agent.sock";
        QProcess agent;
        agent.start("ssh-agent", {"-D", "-a", sock});
        QVERIFY(agent.waitForStarted(5000));
        QElapsedTimer clock;
        clock.start();
        while (!QFile::exists(sock) && clock.elapsed() < 5000)
            QThread::msleep(10);
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.insert("SSH_AUTH_SOCK", sock);
        const QString stranger = server_->make_key("agent_stranger_key", "", false);
        const QString authorized = server_->make_key("agent_key", "", true);
        ::setenv("SSH_AUTH_SOCK", sock.toLocal8Bit().constData(), 1);

        RemoteOptions o = options_for(*server_);
        o.identity = stranger.toStdString();  // refused: only the agent's key gets in
        std::unique_ptr<Backend> backend;
        std::string message;
        QCOMPARE(open_remote(server_->url().toStdString(), o, backend, message), Errc::access);
        QVERIFY2(message.find("tried: agent, " + stranger.toStdString()) != std::string::npos, message.c_str());
        QCOMPARE(run("ssh-add", {authorized}, 10000, env).exit_code, 0);
        QCOMPARE(open_remote(server_->url().toStdString(), o, backend, message), Errc::ok);
        Attr a;
        QCOMPARE(backend->getattr("/", a), Errc::ok);
        ::unsetenv("SSH_AUTH_SOCK");
        // Its other connections log in through the agent too, later.
        QThread::msleep(300);
        QCOMPARE(backend->getattr("/", a), Errc::ok);
        backend.reset();
        agent.kill();
        agent.waitForFinished(5000);
    }

    void cleanupTestCase() {
        if (qEnvironmentVariableIsSet("SSHD_LOG")) qWarning("%s", qPrintable(server_->log()));
        if (QTest::currentTestFailed() && server_)
            qWarning("sshd log:\n%s", qPrintable(server_->log().right(4000)));
        server_.reset();
    }
};

QTEST_GUILESS_MAIN(TestSftpRemote)
#include "test_sftp_remote.moc"
