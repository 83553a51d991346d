// A real SSH server for tests: OpenSSH's sshd run as root with its own
// configuration, host key and user key in a temporary directory, listening
// on a free port of 127.0.0.1 and serving only SFTP (internal-sftp).
//
// The client side comes with it: a key the server accepts for root, and a
// known_hosts file that trusts the server, so that
//   open_remote(server.url("/dir"), options) / netfs mount URL -o server.options()
// log in without touching the real ~/.ssh.
//
// sshd forks a process per connection that outlives the listener, so kill()
// and stop() end the whole process tree: to a client that is a server gone.
//
// [!] start() and restart() fork the test process. A descriptor on a netfs
// mount open in it at that moment is inherited, and sshd closing it is a
// FUSE flush that waits for writeback to this very server: a deadlock. Do
// I/O through a mount of this server from another process (dd) while
// restarting it.
#pragma once

#include <QString>
#include <QTemporaryDir>

#include <sys/types.h>

#include <cstdint>

namespace netfs::test {

class SshdServer {
public:
    SshdServer();   // generates the keys and the configuration; start() runs sshd
    ~SshdServer();  // stops the server
    SshdServer(const SshdServer&) = delete;
    SshdServer& operator=(const SshdServer&) = delete;

    // Starts sshd and waits until it accepts connections; false with error().
    bool start();
    // SIGTERM to sshd and every session it forked.
    void stop();
    // SIGKILL to sshd and every session: a crash; clients see resets.
    void kill();
    // Starts again on the same port with the same host key.
    bool restart() { return start(); }
    // SIGSTOP / SIGCONT to sshd and every session: a server that hangs
    // without closing its connections (as behind a dead link).
    void pause();
    void resume();
    bool running() const { return pid_ > 0; }

    // sftp://root@127.0.0.1:PORT<path>; `path` absolute, default the served directory.
    QString url(const QString& path = QString()) const;
    // The -o options that log in to it: "identity=KEY,known_hosts=FILE".
    QString options() const;
    QString served() const { return served_; }  // a directory for tests to serve, seen directly
    QString direct(const QString& rel) const { return served_ + "/" + rel; }
    QString identity() const { return dir_.path() + "/user_key"; }
    QString known_hosts() const { return dir_.path() + "/known_hosts"; }
    QString host_key_line() const;  // "[127.0.0.1]:PORT ssh-ed25519 AAAA...", as known_hosts has it
    QString scratch() const { return dir_.path(); }
    std::uint16_t port() const { return port_; }
    QString error() const { return error_; }
    QString log() const;  // sshd's log so far

    // A new key pair in the scratch directory (encrypted with `passphrase`
    // if not empty); `authorize` adds it to the server's authorized keys.
    // Returns the private key's path, empty on failure.
    QString make_key(const QString& name, const QString& passphrase, bool authorize);

private:
    QTemporaryDir dir_;
    QString served_, config_, log_file_;
    std::uint16_t port_ = 0;
    pid_t pid_ = 0;
    QString error_;
};

} // namespace netfs::test
