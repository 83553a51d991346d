#include "tests/support/mount_fixture.h"

#include "tests/support/test_remote.h"

#include <QCryptographicHash>
#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QJsonDocument>
#include <QJsonObject>
#include <QThread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <random>

namespace netfs::test {

RunResult run(const QString& program, const QStringList& args, int timeout_ms, const QProcessEnvironment& env) {
    RunResult r;
    QProcess p;
    p.setProcessEnvironment(env);
    p.setStandardInputFile(QProcess::nullDevice());
    QElapsedTimer clock;
    clock.start();
    p.start(program, args);
    if (!p.waitForStarted(5000)) {
        r.err = "could not start " + program;
        return r;
    }
    if (!p.waitForFinished(timeout_ms)) {
        p.kill();
        p.waitForFinished(2000);
        r.exit_code = -1;
    } else {
        r.exit_code = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;
    }
    r.seconds = clock.elapsed() / 1000.0;
    r.out = QString::fromLocal8Bit(p.readAllStandardOutput());
    r.err = QString::fromLocal8Bit(p.readAllStandardError());
    return r;
}

std::uint16_t free_tcp_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    std::uint16_t port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
        port = ntohs(a.sin_port);
    ::close(fd);
    return port;
}

bool tcp_port_accepts(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
}

QByteArray sha256_of_file(const QString& path) {
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly))
        return {};
    QCryptographicHash h(QCryptographicHash::Sha256);
    h.addData(&f);
    return h.result().toHex();
}

bool is_mountpoint(const QString& path) {
    const QString canonical = QDir(path).canonicalPath();
    QFile f("/proc/self/mountinfo");
    if (canonical.isEmpty() || !f.open(QIODevice::ReadOnly))
        return false;
    for (const QByteArray& line : f.readAll().split('\n')) {
        const QList<QByteArray> fields = line.split(' ');
        if (fields.size() > 4 && QString::fromLocal8Bit(fields[4]) == canonical)
            return true;
    }
    return false;
}

MountFixture::MountFixture(RemoteSpec remote, QStringList options)
    : remote_(std::move(remote)), options_(std::move(options)) {
    // A plain file:// fixture runs on the suite's remote (NETFS_TEST_REMOTE);
    // one with URL options (latency, faults) is about file:// itself.
    if (remote_.kind == "file" && remote_.url.isEmpty() && remote_.query.isEmpty())
        use_test_remote(remote_, options_);
    backing_ = remote_.url.isEmpty() ? dir_.path() + "/remote" : remote_.backing;
    mountpoint_ = dir_.path() + "/mnt";
    faults_ = dir_.path() + "/faults";
    log_file_ = dir_.path() + "/netfs.log";
    QDir().mkpath(backing_);
    QDir().mkpath(mountpoint_);
    QFile(faults_).open(QIODevice::WriteOnly);
}

MountFixture::~MountFixture() {
    if (process_)
        unmount();
}

QString MountFixture::url() const {
    if (!remote_.url.isEmpty())
        return remote_.url;
    QString query = remote_.query;
    query += QString(query.isEmpty() ? "" : "&") + "faults=" + faults_;
    return "file://" + backing_ + "?" + query;
}

QString MountFixture::log() const {
    QFile f(log_file_);
    return f.open(QIODevice::ReadOnly) ? QString::fromLocal8Bit(f.readAll()) : QString();
}

bool MountFixture::mounted() const { return is_mountpoint(mountpoint_); }

QProcessEnvironment MountFixture::environment() const {
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    env.insert("XDG_CONFIG_HOME", dir_.path() + "/config");
    // Never the desktop keyring of whoever runs the tests: only a session a
    // test starts itself (set_env).
    env.remove("DBUS_SESSION_BUS_ADDRESS");
    for (const auto& [name, value] : env_overrides_) {
        if (value.isEmpty())
            env.remove(name);
        else
            env.insert(name, value);
    }
    return env;
}

void MountFixture::set_faults(const QString& rules) {
    // Written whole and renamed into place: the daemon never reads half a file.
    const QString tmp = faults_ + ".new";
    QFile f(tmp);
    f.open(QIODevice::WriteOnly | QIODevice::Truncate);
    f.write(rules.toUtf8());
    f.close();
    ::rename(tmp.toLocal8Bit().constData(), faults_.toLocal8Bit().constData());
}

bool MountFixture::mount() {
    error_.clear();
    QStringList args{"mount", url(), mountpoint_, "--foreground", "--log-file", log_file_, "--cache-dir", cache_dir()};
    if (!options_.isEmpty())
        args << "-o" << options_.join(',');
    args << extra_args_;
    process_ = std::make_unique<QProcess>();
    process_->setProcessChannelMode(QProcess::MergedChannels);
    process_->setStandardInputFile(QProcess::nullDevice());
    process_->setProcessEnvironment(environment());
    // A test that crashes takes its daemon with it (SIGTERM: it writes back
    // and unmounts), rather than leaving a mount behind.
    process_->setChildProcessModifier([] { ::prctl(PR_SET_PDEATHSIG, SIGTERM); });
    process_->start(NETFS_BINARY, args);
    if (!process_->waitForStarted(5000)) {
        error_ = "could not start " NETFS_BINARY;
        process_.reset();
        return false;
    }
    QElapsedTimer clock;
    clock.start();
    while (!mounted()) {
        if (process_->state() == QProcess::NotRunning || clock.elapsed() > 10000) {
            error_ = "not mounted after " + QString::number(clock.elapsed()) + " ms: " +
                     QString::fromLocal8Bit(process_->readAll()) + log();
            process_->kill();
            process_->waitForFinished(2000);
            process_.reset();
            return false;
        }
        process_->waitForFinished(20);  // also notices that it exited (no event loop runs here)
    }
    return true;
}

bool MountFixture::unmount() {
    if (!process_)
        return true;
    bool ok = true;
    if (mounted()) {
        RunResult r = run(NETFS_BINARY, {"unmount", mountpoint_}, 60000, environment());
        if (r.exit_code != 0) {
            error_ = "netfs unmount failed (" + QString::number(r.exit_code) + "): " + r.err +
                     "\ndaemon log:\n" + log().right(4000);
            ok = false;
            run("fusermount3", {"-uz", mountpoint_}, 10000);
        }
    }
    if (!process_->waitForFinished(30000)) {
        error_ += " the daemon did not exit after unmount; killed. Log:\n" + log();
        process_->kill();
        process_->waitForFinished(2000);
        ok = false;
    } else if (process_->exitCode() != 0) {
        error_ += " the daemon exited with " + QString::number(process_->exitCode()) + ": " +
                  QString::fromLocal8Bit(process_->readAll());
        ok = false;
    }
    process_.reset();
    return ok;
}

bool MountFixture::crash() {
    if (!process_)
        return false;
    process_->kill();  // SIGKILL
    const bool exited = process_->waitForFinished(10000);
    process_.reset();
    run("fusermount3", {"-uz", mountpoint_}, 10000);
    return exited && !mounted();
}

std::vector<std::byte> random_bytes(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::byte> out(n);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const std::uint64_t v = rng();
        std::memcpy(out.data() + i, &v, 8);
    }
    for (; i < n; ++i)
        out[i] = std::byte(rng() & 0xff);
    return out;
}

bool write_file(const QString& path, const std::vector<std::byte>& data) {
    int fd = ::open(path.toLocal8Bit().constData(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return false;
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n <= 0) {
            ::close(fd);
            return false;
        }
        done += static_cast<std::size_t>(n);
    }
    return ::close(fd) == 0;
}

bool read_file(const QString& path, std::vector<std::byte>& out) {
    out.clear();
    int fd = ::open(path.toLocal8Bit().constData(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    std::byte buf[1 << 16];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            ::close(fd);
            return false;
        }
        if (n == 0)
            break;
        out.insert(out.end(), buf, buf + n);
    }
    return ::close(fd) == 0;
}

std::vector<std::byte> read_file(const QString& path) {
    std::vector<std::byte> out;
    read_file(path, out);
    return out;
}

bool MountFixture::wait_for_mode(const QString& mode, int within_ms) const {
    QElapsedTimer clock;
    clock.start();
    do {
        const RunResult r = run(NETFS_BINARY, {"status", mountpoint_, "--json"}, 5000, environment());
        if (QJsonDocument::fromJson(r.out.toUtf8()).object()["mode"].toString() == mode)
            return true;
        QThread::msleep(100);
    } while (clock.elapsed() < within_ms);
    return false;
}

} // namespace netfs::test
