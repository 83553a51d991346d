// Where a user's daemons keep their pid files and control sockets. The rule
// is shared by the daemon (app/mount_command.cpp) and netfs-tray (ui/), which
// must find the same sockets; header-only so netfs-tray includes it without
// linking anything of the daemon.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace netfs {

// Best first: $XDG_RUNTIME_DIR/netfs, else /run/user/UID/netfs (when that
// exists), else /tmp/netfs-UID. A daemon uses the first; `netfs unmount`
// looks in all of them: it may run with another environment than the mount
// did (mount(8), sudo).
inline std::vector<std::string> runtime_dirs() {
    std::vector<std::string> dirs;
    if (const char* runtime = std::getenv("XDG_RUNTIME_DIR"); runtime && *runtime == '/')
        dirs.push_back(std::string(runtime) + "/netfs");
    const std::string run_user = "/run/user/" + std::to_string(getuid());
    struct stat st {};
    if (stat(run_user.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        dirs.push_back(run_user + "/netfs");
    dirs.push_back("/tmp/netfs-" + std::to_string(getuid()));
    return dirs;
}

} // namespace netfs
