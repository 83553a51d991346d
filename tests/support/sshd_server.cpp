#include "tests/support/sshd_server.h"

#include "tests/support/mount_fixture.h"

#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QThread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

namespace netfs::test {

namespace {



// Every process below `root`, found through the parent pids in /proc: the
// sessions sshd forked (they leave its process group with setsid).
std::vector<pid_t> descendants(pid_t root) {
    std::vector<std::pair<pid_t, pid_t>> parent_of;
    for (const QString& entry : QDir("/proc").entryList(QDir::Dirs)) {
        bool numeric = false;
        const pid_t pid = entry.toInt(&numeric);
        if (!numeric)
            continue;
        QFile stat("/proc/" + entry + "/stat");
        if (!stat.open(QIODevice::ReadOnly))
            continue;
        const QByteArray text = stat.readAll();
        const int close = text.lastIndexOf(')');  // the name may contain spaces
        const QList<QByteArray> fields = text.mid(close + 2).split(' ');
        if (fields.size() > 1)
            parent_of.push_back({pid, static_cast<pid_t>(fields[1].toInt())});
    }
    std::vector<pid_t> found{root};
    for (std::size_t i = 0; i < found.size(); ++i)
        for (const auto& [pid, parent] : parent_of)
            if (parent == found[i])
                found.push_back(pid);
    found.erase(found.begin());
    return found;
}

bool keygen(const QString& path, const QString& passphrase, const QString& comment) {
    QFile::remove(path);
    QFile::remove(path + ".pub");
    const RunResult r = run("ssh-keygen", {"-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f", path}, 20000);
    return r.exit_code == 0;
}

QByteArray public_key(const QString& private_key) {
    QFile f(private_key + ".pub");
    return f.open(QIODevice::ReadOnly) ? f.readAll().trimmed() : QByteArray();
}

} // namespace

SshdServer::SshdServer() {
    served_ = dir_.path() + "/served";
    config_ = dir_.path() + "/sshd_config";
    log_file_ = dir_.path() + "/sshd.log";
    QDir().mkpath(served_);
    port_ = free_tcp_port();
    const QString d = dir_.path();
    if (!keygen(d + "/host_key", "", "netfs-test-host") || !keygen(identity(), "", "netfs-test-user")) {
        error_ = "ssh-keygen failed (is openssh-client installed?)";
        return;
    }
    QFile authorized(d + "/authorized_keys");
    authorized.open(QIODevice::WriteOnly);
    authorized.write(public_key(identity()) + "\n");
    authorized.close();
    QFile config(config_);
    config.open(QIODevice::WriteOnly);
    config.write(QString("Port %1\n"
                         "ListenAddress 127.0.0.1\n"
                         "HostKey %2/host_key\n"
                         "AuthorizedKeysFile %2/authorized_keys\n"
                         "PermitRootLogin prohibit-password\n"
                         "PubkeyAuthentication yes\n"
                         "PasswordAuthentication no\n"
                         "KbdInteractiveAuthentication no\n"
                         "UsePAM no\n"
                         "StrictModes no\n"
                         "UseDNS no\n"
                         "MaxStartups 100\n"
                         "MaxSessions 100\n"
                         // A key exchange every 16 MiB: large transfers of the
                         // tests meet several in the middle of their requests.
                         "RekeyLimit 16M\n"
                         "LogLevel VERBOSE\n"
                         "Subsystem sftp internal-sftp -l INFO\n"
                         "ForceCommand internal-sftp -l INFO\n"
                         "PidFile %2/sshd.pid\n")
                     .arg(port_)
                     .arg(d)
                     .toUtf8());
    config.close();
    QFile known(known_hosts());
    known.open(QIODevice::WriteOnly);
    known.write(host_key_line().toUtf8() + "\n");
    known.close();
    start();
}

SshdServer::~SshdServer() { stop(); }

QString SshdServer::host_key_line() const {
    const QList<QByteArray> parts = public_key(dir_.path() + "/host_key").split(' ');
    if (parts.size() < 2)
        return {};
    return QString("[127.0.0.1]:%1 %2 %3").arg(port_).arg(QString(parts[0]), QString(parts[1]));
}

QString SshdServer::url(const QString& path) const {
    return QString("sftp://root@127.0.0.1:%1%2").arg(port_).arg(path.isEmpty() ? served_ : path);
}

QString SshdServer::options() const { return "identity=" + identity() + ",known_hosts=" + known_hosts(); }

QString SshdServer::log() const {
    QFile f(log_file_);
    return f.open(QIODevice::ReadOnly) ? QString::fromLocal8Bit(f.readAll()) : QString();
}

QString SshdServer::make_key(const QString& name, const QString& passphrase, bool authorize) {
    const QString path = dir_.path() + "/" + name;
    if (!keygen(path, passphrase, "netfs-test-" + name))
        return {};
    if (authorize) {
        QFile authorized(dir_.path() + "/authorized_keys");
        authorized.open(QIODevice::Append);
        authorized.write(public_key(path) + "\n");
    }
    return path;
}

bool SshdServer::start() {
    if (pid_ > 0)
        return true;
    if (!error_.isEmpty() && port_ == 0)
        return false;
    error_.clear();
    ::mkdir("/run/sshd", 0755);  // sshd's privilege separation directory
    const QByteArray config = config_.toLocal8Bit(), log = log_file_.toLocal8Bit();
    const pid_t pid = ::fork();
    if (pid < 0) {
        error_ = "fork failed";
        return false;
    }
    if (pid == 0) {
        // Dies with the test process, and never holds its output pipes: a
        // test that crashed must not leave a server that keeps CTest waiting
        // for the end of its output.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        const int null_fd = ::open("/dev/null", O_RDWR);
        ::dup2(null_fd, 0);
        ::dup2(null_fd, 1);
        ::dup2(null_fd, 2);
        ::execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-D", "-f", config.constData(), "-E", log.constData(),
                static_cast<char*>(nullptr));
        ::_exit(127);
    }
    pid_ = pid;
    QElapsedTimer clock;
    clock.start();
    while (!tcp_port_accepts(port_)) {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = 0;
            error_ = "sshd exited at start (is openssh-server installed?): " + this->log().right(2000);
            return false;
        }
        if (clock.elapsed() > 10000) {
            error_ = "sshd does not accept connections after 10 s: " + this->log().right(2000);
            kill();
            return false;
        }
        QThread::msleep(20);
    }
    return true;
}

void SshdServer::stop() {
    if (pid_ <= 0)
        return;
    for (pid_t child : descendants(pid_))
        ::kill(child, SIGTERM);
    ::kill(pid_, SIGTERM);
    QElapsedTimer clock;
    clock.start();
    while (::waitpid(pid_, nullptr, WNOHANG) != pid_) {
        if (clock.elapsed() > 5000) {
            kill();
            return;
        }
        QThread::msleep(10);
    }
    pid_ = 0;
}

void SshdServer::kill() {
    if (pid_ <= 0)
        return;
    ::kill(pid_, SIGSTOP);  // no new sessions while we collect the old ones
    for (pid_t child : descendants(pid_))
        ::kill(child, SIGKILL);
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = 0;
}

void SshdServer::pause() {
    if (pid_ <= 0)
        return;
    ::kill(pid_, SIGSTOP);
    for (pid_t child : descendants(pid_))
        ::kill(child, SIGSTOP);
}

void SshdServer::resume() {
    if (pid_ <= 0)
        return;
    for (pid_t child : descendants(pid_))
        ::kill(child, SIGCONT);
    ::kill(pid_, SIGCONT);
}

} // namespace netfs::test
