// `netfs mount` and `netfs unmount`: the mount daemon's life.
//
//   netfs mount REMOTE MP            parent                      child (daemon)
//     check MP (exists, directory,     |
//     empty, not a mount)              |
//     fork (no thread exists yet) -----+--------------------------> setsid
//     wait on the report pipe          |                            open_remote, Engine, start
//                                      |                            fuse_session_new, mount
//                                      |                            pid file
//     "mounted": exit 0  <-------------+---- report ----------------+
//     an error line: print, exit 1                                  stdin, stdout -> /dev/null; stderr -> log
//                                                                   FUSE loop (multi-threaded)
//                                                                   ... until unmounted or signalled
//                                                                   engine.shutdown(): write back
//                                                                   unmount, remove pid file, exit
//
//   netfs unmount MP: fusermount3 -u MP, then wait (up to 60 s) until the
//   daemon of MP has removed its pid file: when unmount returns, the dirty
//   data has been written back (or the daemon's log says what was lost).
//
// The REMOTE is opened in the child, so the parent never holds a backend
// (threads, connections) it would have to hand over or tear down; its error
// still reaches the user as the parent's one line.
//
// The fork comes before anything that starts a thread (the engine's pools,
// the FUSE loop; later the control API's Qt event loop), because a forked
// child keeps only the thread that forked. With --foreground there is no
// fork, and logs go to stderr.
//
// Every failure is one line on stderr starting with "netfs: " and a non-zero
// exit code; nothing stays mounted after a failed mount.
#pragma once

#include "app/cache_setup.h"
#include "app/mount_options.h"

#include <string>
#include <string_view>

namespace netfs {

struct MountRequest {
    std::string remote;      // as typed: file:///srv/data
    std::string mountpoint;  // as typed
    MountOptions options;
    bool foreground = false;
    std::string log_file;    // empty: $XDG_STATE_HOME/netfs/<escaped mount point>.log
    CacheRequest cache;      // the persistent cache (app/cache_setup.h)
    int terminal = -1;       // set by run_mount: the terminal to ask secrets on, if any
};

// Both return the process exit code: 0 done, 1 failed (after printing one line).
int run_mount(const MountRequest& request);
int run_unmount(const std::string& mountpoint);

// Where this user's daemons keep their pid files and control sockets: the
// first of runtime_dirs() (app/runtime_dirs.h).
std::string runtime_dir();

// The mount point as one file name, as systemd-escape --path does:
// "/mnt/my data" -> "mnt-my\x20data", "/" -> "-".
std::string escape_path(std::string_view absolute_path);

} // namespace netfs
