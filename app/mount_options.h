// The -o list of `netfs mount` (and of `mount -t fuse.netfs`, fstab).
//
// Options are parsed into MountOptions, then split three ways: what the
// engine needs (engine_options), what the kernel mount needs (the libfuse
// mount options built by mount_command.cpp) and what the FUSE adapter
// applies to attributes and opens (uid=, gid=, umask=, writeback_cache).
//
// mount(8) and mount.fuse3 hand us generic options too (rw, defaults,
// _netdev, x-systemd.*, ...). Those that only matter to mount(8) or to
// systemd are accepted and ignored; those that are kernel mount flags we can
// honour (nosuid, nodev, noexec, noatime) are passed to the kernel; anything
// we cannot honour (sync, for one) is an unknown option, never silently
// dropped.
#pragma once

#include "core/backend/remote_url.h"
#include "core/engine/engine.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace netfs {

struct MountOptions {
    // Kernel and libfuse.
    bool allow_other = false;
    bool default_permissions = false;
    bool read_only = false;
    bool nonempty = false;               // mount over a non-empty directory
    std::string fsname;                  // empty: the REMOTE as typed
    std::vector<std::string> mount_flags;  // nosuid, nodev, noexec, noatime: passed on as given
    bool debug = false;                  // debug log level and libfuse request tracing

    // FUSE adapter: how attributes look and how the kernel caches.
    std::optional<std::uint32_t> uid;    // every object appears owned by uid
    std::optional<std::uint32_t> gid;
    std::uint32_t umask = 0;             // permission bits shown are mode & ~umask
    bool writeback_cache = false;        // kernel write-back caching (see fuse_adapter.h)

    // Engine.
    double attr_timeout = 1.0;           // seconds
    double entry_timeout = 1.0;          // seconds
    double dir_cache_time = 30.0;        // seconds
    bool direct_io = false;
    std::uint64_t readahead = 8ull << 20;  // bytes
    std::uint64_t memory = 256ull << 20;   // folio budget, bytes

    // sftp:// and nfs:// remotes.
    RemoteOptions remote;

    // Disconnected operation: how often pinned folders are checked for
    // files added or changed on the server, while connected.
    double pin_refresh = 60.0;  // seconds
    // Each file's state as the extended attribute user.netfs.state. Its
    // cost: with any xattr answered, the kernel asks for
    // security.capability before every write(2) (FUSE clears SB_NOSEC).
    bool state_xattr = true;
};

// Parses one -o argument ("ro,uid=1000,readahead=4M") into `options`, on top
// of what earlier -o arguments set (a later option wins). A comma inside a
// value is written "\,". On failure returns false and sets `error` to one
// line without the "netfs: " prefix, e.g.
//   "unknown mount option 'foo' (see netfs mount --help)"
//   "bad value 'x' for mount option 'uid'"
bool parse_mount_options(std::string_view list, MountOptions& options, std::string& error);

// "123", "64K", "8M", "1G" (powers of 1024, suffix case-insensitive).
// False for anything else, including overflow.
bool parse_size(std::string_view text, std::uint64_t& bytes);

// What the engine runs with. `running_as_root`: new objects are chowned to
// the caller only for a root daemon serving other users (allow_other).
EngineOptions engine_options(const MountOptions& options, bool running_as_root);

// The help text's option list, one option a line.
extern const char* const kMountOptionsHelp;

} // namespace netfs
