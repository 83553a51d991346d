#include "tests/support/test_remote.h"

#include "tests/support/ganesha_server.h"
#include "tests/support/sshd_server.h"

#include <QDir>

#include <atomic>
#include <memory>

namespace netfs::test {

namespace {

// One server for the whole test process, stopped when it exits.
SshdServer& sshd() {
    static std::unique_ptr<SshdServer> server = [] {
        auto s = std::make_unique<SshdServer>();
        if (!s->start())
            qFatal("the test sshd does not start: %s", qPrintable(s->error()));
        return s;
    }();
    return *server;
}

GaneshaServer& ganesha() {
    static std::unique_ptr<GaneshaServer> server = [] {
        auto s = std::make_unique<GaneshaServer>();
        if (!s->start())
            qFatal("the test nfs-ganesha does not start: %s", qPrintable(s->error()));
        return s;
    }();
    return *server;
}

} // namespace

QString test_remote_kind() {
    const QString kind = qEnvironmentVariable("NETFS_TEST_REMOTE", "file");
    if (kind != "file" && kind != "sftp" && kind != "nfs3" && kind != "nfs4")
        qFatal("NETFS_TEST_REMOTE=%s: use file, sftp, nfs3 or nfs4", qPrintable(kind));
    return kind;
}

RemoteTraits remote_traits() {
    RemoteTraits t;
    const QString kind = test_remote_kind();
    if (kind == "file")
        return t;
    t.rename_exchange = false;  // neither SFTP nor NFS has an atomic exchange
    if (kind == "sftp") {
        t.link_counts = false;
        t.fifos = t.device_nodes = false;  // SFTP creates files, directories and symlinks only
        t.ctime = false;
        t.time_resolution_ns = 1000000000;
    } else {
        // NFSv3: libnfs 4's nfs_utimes takes a timeval; NFSv4: the backend's
        // own SETATTR carries nanoseconds.
        t.time_resolution_ns = kind == "nfs3" ? 1000 : 1;
        // libnfs 4.0 makes no FIFOs over NFSv4, and device nodes without their numbers
        t.fifos = t.device_nodes = kind == "nfs3";
    }
    return t;
}

void use_test_remote(RemoteSpec& spec, QStringList& options) {
    const QString kind = test_remote_kind();
    if (kind == "file")
        return;
    static std::atomic<int> next{0};
    const QString name = QString("fixture-%1").arg(next++);
    if (kind == "sftp") {
        SshdServer& server = sshd();
        spec.backing = server.direct(name);
        spec.url = server.url(spec.backing);
        options << server.options().split(',');
    } else {
        GaneshaServer& server = ganesha();
        spec.backing = server.direct(name);
        spec.url = server.url(name, kind == "nfs4" ? 4 : 3);
        options << QString("nfs_version=%1").arg(kind == "nfs4" ? 4 : 3);
    }
    spec.kind = kind;
    if (!QDir().mkpath(spec.backing))
        qFatal("cannot create %s", qPrintable(spec.backing));
}

} // namespace netfs::test
