#include "tests/support/ganesha_server.h"

#include "tests/support/mount_fixture.h"

#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QThread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace netfs::test {

namespace {

// A port nobody listens on now (the kernel's pick for a bound socket).


bool rpcbind_running() {
    return run("pgrep", {"-x", "rpcbind"}, 5000).exit_code == 0;
}

} // namespace

GaneshaServer::GaneshaServer() {
    export_ = dir_.path() + "/export";
    config_ = dir_.path() + "/ganesha.conf";
    log_file_ = dir_.path() + "/ganesha.log";
    pid_file_ = dir_.path() + "/ganesha.pid";
    QDir().mkpath(export_);
    QDir().mkpath(dir_.path() + "/recovery");
    nfs_port_ = free_tcp_port();
    do
        mount_port_ = free_tcp_port();
    while (mount_port_ == nfs_port_);
}

GaneshaServer::~GaneshaServer() { stop(); }

void GaneshaServer::write_config() {
    QFile f(config_);
    f.open(QIODevice::WriteOnly);
    f.write(QString(R"(NFS_CORE_PARAM {
    Bind_addr = 127.0.0.1;
    NFS_Port = %1;
    MNT_Port = %2;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Protocols = 3, 4;
}
NFSv4 {
    RecoveryBackend = fs;
    RecoveryRoot = "%3/recovery";
    # Without it every start waits out a grace period before serving opens.
%5
    Allow_Numeric_Owners = true;
    Only_Numeric_Owners = true;
}
EXPORT {
    Export_Id = 1;
    Path = "%4";
    Pseudo = "%4";
    Access_Type = RW;
    Squash = No_Root_Squash;
    SecType = sys;
    Protocols = 3, 4;
    Transports = TCP;
    # Changes made directly in the exported directory show at once.
    Attr_Expiration_Time = 0;
%6
    FSAL { Name = VFS; }
}
)")
                .arg(nfs_port_)
                .arg(mount_port_)
                .arg(dir_.path(), export_)
                .arg((grace_seconds_ > 0 ? "    Graceless = false;\n    Grace_Period = " + QString::number(grace_seconds_) + ";"
                                         : QString("    Graceless = true;")) +
                     (lease_seconds_ > 0 ? "\n    Lease_Lifetime = " + QString::number(lease_seconds_) + ";" : QString()))
                .arg(filesystem_id_.isEmpty() ? QString() : "    Filesystem_id = " + filesystem_id_ + ";")
                .toUtf8());
}

QString GaneshaServer::log() const {
    QFile f(log_file_);
    return f.open(QIODevice::ReadOnly) ? QString::fromLocal8Bit(f.readAll()) : QString();
}

bool GaneshaServer::start() {
    // Two servers starting at once (suites run in parallel by ctest -j)
    // race for rpcbind's NFSv3 registration; the loser exits. Again.
    for (int attempt = 1;; ++attempt) {
        if (start_once())
            return true;
        if (attempt == 5 || !error_.contains("Cannot register"))
            return false;
        QThread::msleep(500 * attempt);
    }
}

bool GaneshaServer::start_once() {
    error_.clear();
    if (pid_ > 0)
        return true;
    if (!rpcbind_running()) {
        RunResult r = run("rpcbind", {"-w"}, 10000);
        if (r.exit_code != 0) {
            error_ = "could not start rpcbind: " + r.err;
            return false;
        }
    }
    write_config();
    QFile(log_file_).remove();
    const QByteArray conf = config_.toLocal8Bit(), logf = log_file_.toLocal8Bit(), pidf = pid_file_.toLocal8Bit();
    const pid_t pid = ::fork();
    if (pid < 0) {
        error_ = "fork failed";
        return false;
    }
    if (pid == 0) {
        // Its own process group: nothing of the test's terminal reaches it.
        // It dies with the test, even one that crashed, and holds none of
        // the test's output pipes open (its log goes to -L),
        ::setpgid(0, 0);
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() == 1)
            ::_exit(127);
        const int null = ::open("/dev/null", O_RDWR);
        for (int fd = 0; fd <= 2; ++fd)
            ::dup2(null, fd);
        // Nor any file of the test (one open on a mount would keep it busy).
        ::close_range(3, ~0u, 0);
        ::execlp("ganesha.nfsd", "ganesha.nfsd", "-F", "-L", logf.constData(), "-f", conf.constData(), "-p",
                 pidf.constData(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    pid_ = pid;
    QElapsedTimer clock;
    clock.start();
    while (clock.elapsed() < 30000) {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = 0;
            error_ = "ganesha.nfsd exited at start: " + log().right(3000);
            return false;
        }
        if (log().contains("NFS SERVER INITIALIZED") && tcp_port_accepts(nfs_port_) && tcp_port_accepts(mount_port_))
            return true;
        QThread::msleep(50);
    }
    error_ = "ganesha.nfsd does not serve after 30 s: " + log().right(3000);
    kill();
    return false;
}

void GaneshaServer::stop() {
    if (pid_ <= 0)
        return;
    ::kill(pid_, SIGCONT);  // a paused server cannot act on SIGTERM
    ::kill(pid_, SIGTERM);
    QElapsedTimer clock;
    clock.start();
    while (clock.elapsed() < 5000) {
        if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
            pid_ = 0;
            return;
        }
        QThread::msleep(20);
    }
    kill();
}

void GaneshaServer::kill() {
    if (pid_ <= 0)
        return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = 0;
}

void GaneshaServer::pause() {
    if (pid_ > 0)
        ::kill(pid_, SIGSTOP);
}

void GaneshaServer::resume() {
    if (pid_ > 0)
        ::kill(pid_, SIGCONT);
}

QString GaneshaServer::url(const QString& path, int version) const {
    QString u = "nfs://127.0.0.1" + export_;
    if (!path.isEmpty())
        u += (path.startsWith('/') ? "" : "/") + path;
    u += "?nfsport=" + QString::number(nfs_port_) + "&mountport=" + QString::number(mount_port_);
    if (version == 4)
        u += "&version=4";
    return u;
}

} // namespace netfs::test
