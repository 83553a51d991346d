// Which remote an integration suite runs against, so that one test body
// checks file://, sftp:// and nfs:// alike. CTest runs the suites once per
// remote (tests/CMakeLists.txt) with NETFS_TEST_REMOTE set to
//   file (or unset)   a directory of the fixture's own
//   sftp              a directory served by one sshd started for the process
//   nfs3, nfs4        a directory exported by one nfs-ganesha started for the process
// Each MountFixture gets its own directory on the shared server.
#pragma once

#include "tests/support/mount_fixture.h"

#include <QString>
#include <QStringList>

namespace netfs::test {

// "file", "sftp", "nfs3" or "nfs4".
QString test_remote_kind();
inline bool remote_is(const char* kind) { return test_remote_kind() == kind; }
inline bool remote_is_nfs() { return test_remote_kind().startsWith("nfs"); }

// What a remote's protocol can do, where it falls short of POSIX. The suites
// expect exactly this; docs/remotes.md explains each limit.
struct RemoteTraits {
    bool rename_exchange = true;   // RENAME_EXCHANGE (else EINVAL, as renameat2(2) says)
    bool hard_links = true;        // link(2) (else EOPNOTSUPP)
    bool link_counts = true;       // st_nlink (SFTP v3 attributes have none: always 1)
    bool fifos = true;             // mkfifo(3)
    bool device_nodes = true;      // mknod(2) of a device
    bool ctime = true;             // ctime moves on chmod (SFTP has none: it shows mtime)
    long time_resolution_ns = 1;   // what utimensat keeps (NFSv3 through libnfs: microseconds; SFTP v3: seconds)
};
RemoteTraits remote_traits();

// For a fixture on the suite's remote: points `spec` at a new directory on
// the shared server and adds the -o options that reach it. Leaves file://
// alone. A server that cannot start is a test failure (qFatal): never a skip.
void use_test_remote(RemoteSpec& spec, QStringList& options);

} // namespace netfs::test
