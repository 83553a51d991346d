#include "app/keyring.h"

#include <QCoreApplication>
#include <QEventLoop>
#include <QTimer>
#include <qt6keychain/keychain.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cerrno>
#include <fcntl.h>
#include <cstdlib>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace netfs {

namespace {

constexpr char kService[] = "netfs";

// What the child sends back: one outcome byte, then the secret or a message.
struct Reply {
    KeyringOutcome outcome = KeyringOutcome::unavailable;
    std::string payload;
};

bool no_keyring(QKeychain::Error e) {
    return e == QKeychain::NoBackendAvailable || e == QKeychain::NotImplemented || e == QKeychain::OtherError;
}

// Runs in the child: a Qt event loop for the duration of the jobs.
Reply ask_keyring(const std::string& name, bool create, bool forget, int timeout_ms) {
    int argc = 1;
    char arg0[] = "netfs";
    char* argv[] = {arg0, nullptr};
    QCoreApplication app(argc, argv);
    auto run = [&](QKeychain::Job& job) {
        job.setAutoDelete(false);
        job.setKey(QString::fromStdString(name));
        QEventLoop loop;
        QObject::connect(&job, &QKeychain::Job::finished, &loop, &QEventLoop::quit);
        QTimer::singleShot(timeout_ms, &loop, &QEventLoop::quit);
        job.start();
        loop.exec();
    };
    if (forget) {
        QKeychain::DeletePasswordJob del(kService);
        run(del);
        return {del.error() == QKeychain::NoError ? KeyringOutcome::found : KeyringOutcome::failed, {}};
    }
    QKeychain::ReadPasswordJob read(kService);
    run(read);
    if (read.error() == QKeychain::NoError && !read.binaryData().isEmpty())
        return {KeyringOutcome::found, read.binaryData().toStdString()};
    if (read.error() != QKeychain::EntryNotFound) {
        if (no_keyring(read.error()))
            return {KeyringOutcome::unavailable, read.errorString().toStdString()};
        return {KeyringOutcome::failed, read.errorString().toStdString()};
    }
    if (!create)
        return {KeyringOutcome::missing, {}};
    unsigned char random[32];
    if (RAND_bytes(random, sizeof random) != 1)
        return {KeyringOutcome::failed, "no random bytes for a new secret"};
    QByteArray secret(reinterpret_cast<const char*>(random), sizeof random);
    OPENSSL_cleanse(random, sizeof random);
    QKeychain::WritePasswordJob write(kService);
    write.setBinaryData(secret);
    run(write);
    if (write.error() != QKeychain::NoError)
        return {no_keyring(write.error()) ? KeyringOutcome::unavailable : KeyringOutcome::failed,
                write.errorString().toStdString()};
    return {KeyringOutcome::created, secret.toStdString()};
}

bool write_all(int fd, const char* p, std::size_t n) {
    while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= std::size_t(w);
    }
    return true;
}

Reply in_child(const std::string& name, bool create, bool forget, int timeout_ms) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        return {KeyringOutcome::unavailable, "no pipe"};
    const pid_t pid = ::fork();
    if (pid < 0) {
        ::close(fds[0]);
        ::close(fds[1]);
        return {KeyringOutcome::unavailable, "cannot fork"};
    }
    if (pid == 0) {
        ::close(fds[0]);
        const Reply r = ask_keyring(name, create, forget, timeout_ms);
        const char outcome = static_cast<char>(r.outcome);
        write_all(fds[1], &outcome, 1);
        write_all(fds[1], r.payload.data(), r.payload.size());
        ::_exit(0);  // no atexit handlers or Qt teardown of the parent's state
    }
    ::close(fds[1]);
    Reply reply;
    std::string got;
    // The child's own timeouts bound each job; this bounds the whole child.
    const auto deadline_ms = 2 * timeout_ms + 2000;
    int waited = 0;
    for (;;) {
        pollfd p{fds[0], POLLIN, 0};
        const int n = ::poll(&p, 1, 200);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0) {
            waited += 200;
            if (waited >= deadline_ms) {
                ::kill(pid, SIGKILL);
                got.clear();
                break;
            }
            continue;
        }
        char buf[4096];
        const ssize_t r = ::read(fds[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got.append(buf, std::size_t(r));
    }
    ::close(fds[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (got.empty())
        return {KeyringOutcome::unavailable, "the keyring did not answer"};
    reply.outcome = static_cast<KeyringOutcome>(got[0]);
    reply.payload = got.substr(1);
    OPENSSL_cleanse(got.data(), got.size());
    return reply;
}

} // namespace

KeyringOutcome keyring_secret(const std::string& name, bool create, std::string& secret, std::string& message,
                              int timeout_ms) {
    // Without a session bus no keyring can answer: do not even start Qt.
    if (!std::getenv("DBUS_SESSION_BUS_ADDRESS")) {
        message = "no desktop session bus";
        return KeyringOutcome::unavailable;
    }
    Reply r = in_child(name, create, false, timeout_ms);
    if (r.outcome == KeyringOutcome::found || r.outcome == KeyringOutcome::created)
        secret = std::move(r.payload);
    else
        message = std::move(r.payload);
    return r.outcome;
}

bool keyring_forget(const std::string& name) {
    if (!std::getenv("DBUS_SESSION_BUS_ADDRESS"))
        return false;
    return in_child(name, false, true, 10000).outcome == KeyringOutcome::found;
}

} // namespace netfs
