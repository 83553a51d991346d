// Real mounts for integration tests: runs the netfs binary on a remote and
// an empty mount point in a temporary directory, waits until the kernel shows
// the mount, and unmounts at the end, failing loudly (with the daemon's log)
// if anything hangs.
//
// The remote is described by a RemoteSpec so the same test bodies can run
// against every kind of remote: today file://, whose backing directory the
// test can inspect directly; sftp:// and nfs:// fixtures will provide their
// server's exported directory the same way.
#pragma once

#include <QProcess>
#include <QString>
#include <QStringList>
#include <QTemporaryDir>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

namespace netfs::test {

struct RemoteSpec {
    QString kind = "file";  // file (later: sftp, nfs)
    QString query;          // URL query options, e.g. "latency_ms=10"
    // A remote served by a test server (GaneshaServer::url()): mounted as
    // given, with `backing` the directory it serves seen directly. Empty: a
    // file:// remote on a directory of the fixture's own.
    QString url;
    QString backing;
};

// The outcome of running a command to its end.
struct RunResult {
    int exit_code = -1;       // -1: it did not finish in time (it was killed)
    QString out;
    QString err;
    double seconds = 0;
};
RunResult run(const QString& program, const QStringList& args, int timeout_ms = 20000,
              const QProcessEnvironment& env = QProcessEnvironment::systemEnvironment());

// A TCP port of 127.0.0.1 free at the time of asking (0 if none).
std::uint16_t free_tcp_port();
// Whether something accepts connections on 127.0.0.1:port.
bool tcp_port_accepts(std::uint16_t port);
// The SHA-256 of a file's content, in hex; empty when it cannot be read.
QByteArray sha256_of_file(const QString& path);

class MountFixture {
public:
    explicit MountFixture(RemoteSpec remote = {}, QStringList options = {});
    ~MountFixture();  // unmounts if mounted
    MountFixture(const MountFixture&) = delete;
    MountFixture& operator=(const MountFixture&) = delete;

    // Mounts; false with error() on failure (nothing is left mounted).
    bool mount();
    // Unmounts through `netfs unmount` and waits for the daemon to exit.
    bool unmount();
    bool remount() { return unmount() && mount(); }
    // SIGKILLs the daemon (a crash: nothing written back) and detaches the
    // dead mount, so that mount() can start again.
    bool crash();

    QString url() const;
    QString backing() const { return backing_; }        // what the remote serves, seen directly
    QString mountpoint() const { return mountpoint_; }
    QString at(const QString& rel) const { return mountpoint_ + "/" + rel; }      // through the mount
    QString direct(const QString& rel) const { return backing_ + "/" + rel; }     // behind it
    QString scratch() const { return dir_.path(); }      // room for fault files and the like
    QString cache_dir() const { return dir_.path() + "/cache"; }  // the mount's persistent cache
    // The environment the daemon runs in: its own XDG_CONFIG_HOME, so a
    // generated cache key lands in the test's scratch space. Use it for
    // netfs commands that must find that key.
    QProcessEnvironment environment() const;
    QString error() const { return error_; }
    QString log() const;                                  // the daemon's log so far
    qint64 daemon_pid() const { return process_ ? process_->processId() : 0; }
    bool mounted() const;
    // `netfs status`'s mode (connected, disconnected, reintegrating): polls
    // until it is `mode` (true) or `within_ms` passed (false).
    bool wait_for_mode(const QString& mode, int within_ms) const;

    // An environment variable for the daemon and environment() (a desktop
    // session's DBUS_SESSION_BUS_ADDRESS, say); empty `value` removes it.
    void set_env(const QString& name, const QString& value) { env_overrides_.append({name, value}); }

    // More `netfs mount` arguments for the next mount (--key-file F, ...).
    void set_extra_args(QStringList args) { extra_args_ = std::move(args); }

    // Fault rules for the file:// remote's FaultyBackend (re-read on change).
    void set_faults(const QString& rules);

private:
    RemoteSpec remote_;
    QStringList options_;
    QStringList extra_args_;
    QList<QPair<QString, QString>> env_overrides_;
    QTemporaryDir dir_;
    QString backing_, mountpoint_, faults_, log_file_;
    std::unique_ptr<QProcess> process_;
    QString error_;
};

// Bytes from a seeded generator, so a failure can be reproduced.
std::vector<std::byte> random_bytes(std::size_t n, std::uint64_t seed);
// Whole-file helpers through plain POSIX calls (so they go through the mount).
bool write_file(const QString& path, const std::vector<std::byte>& data);
bool read_file(const QString& path, std::vector<std::byte>& out);
std::vector<std::byte> read_file(const QString& path);
bool is_mountpoint(const QString& path);

// A buffer aligned for O_DIRECT.
struct Aligned {
    explicit Aligned(std::size_t n) : size(n) {
        if (::posix_memalign(&p, 4096, n) != 0)
            p = nullptr;
    }
    ~Aligned() { std::free(p); }
    Aligned(const Aligned&) = delete;
    Aligned& operator=(const Aligned&) = delete;
    std::byte* data() { return static_cast<std::byte*>(p); }
    void* p = nullptr;
    std::size_t size;
};

} // namespace netfs::test
