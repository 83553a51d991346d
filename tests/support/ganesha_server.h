// A real NFS server for tests: nfs-ganesha (FSAL VFS) run as root with its
// own configuration in a temporary directory, exporting a temporary
// directory over NFSv3 and NFSv4 on free ports of 127.0.0.1.
//
// ganesha registers its v3 services with rpcbind at start and exits when it
// cannot ("Cannot register NFS V3 on UDP"), so start() runs `rpcbind -w`
// if no rpcbind is running, and leaves it running: it is a system service
// other tests may share, and it holds no state of ours. Clients never need
// it: url() names both ports (?nfsport=&mountport=).
//
// The export's Pseudo path (NFSv4) equals its Path, so one URL path works
// for both versions. Owners travel as numbers in NFSv4 (Only_Numeric_Owners)
// so uid/gid read the same as over NFSv3.
#pragma once

#include <QString>
#include <QTemporaryDir>

#include <sys/types.h>

#include <cstdint>

namespace netfs::test {

class GaneshaServer {
public:
    GaneshaServer();   // picks ports and writes the configuration; start() runs it
    ~GaneshaServer();  // stops the server
    GaneshaServer(const GaneshaServer&) = delete;
    GaneshaServer& operator=(const GaneshaServer&) = delete;

    // The NFSv4 lease, from the next start(); 0: ganesha's default (60 s).
    void set_lease_seconds(int seconds) { lease_seconds_ = seconds; }
    // A grace period of this many seconds after each start, from the next
    // start(); 0: none (Graceless), the default.
    void set_grace_seconds(int seconds) { grace_seconds_ = seconds; }
    // The fsid the export reports ("major.minor"), from the next start();
    // empty: the file system's own.
    void set_filesystem_id(const QString& id) { filesystem_id_ = id; }

    // Starts the server and waits until it serves; false with error().
    bool start();
    // SIGTERM, then SIGKILL if it has not exited within 5 s.
    void stop();
    // SIGKILL: a crash. Clients see their connections reset.
    void kill();
    // SIGSTOP / SIGCONT: a server that hangs without closing connections.
    void pause();
    void resume();
    // Starts again on the same ports and export (after stop() or kill()).
    bool restart() { return start(); }
    bool running() const { return pid_ > 0; }

    // nfs://127.0.0.1<export>[/path]?nfsport=N&mountport=M[&version=4]
    QString url(const QString& path = QString(), int version = 3) const;
    QString export_dir() const { return export_; }  // what the server serves, seen directly
    QString direct(const QString& rel) const { return export_ + "/" + rel; }
    std::uint16_t nfs_port() const { return nfs_port_; }
    std::uint16_t mount_port() const { return mount_port_; }
    QString error() const { return error_; }
    QString log() const;  // ganesha's log so far

private:
    bool start_once();
    void write_config();

    QTemporaryDir dir_;
    QString export_, config_, log_file_, pid_file_;
    std::uint16_t nfs_port_ = 0, mount_port_ = 0;
    pid_t pid_ = 0;
    int lease_seconds_ = 0;
    int grace_seconds_ = 0;
    QString filesystem_id_;
    QString error_;
};

} // namespace netfs::test
