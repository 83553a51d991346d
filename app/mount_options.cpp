#include "app/mount_options.h"

#include <charconv>
#include <cmath>

namespace netfs {

const char* const kMountOptionsHelp =
    "  ro, rw                  read-only or read-write mount (default rw)\n"
    "  allow_other             let other users access the mount\n"
    "  default_permissions     let the kernel check permission bits\n"
    "  uid=N, gid=N            show every file as owned by this user/group\n"
    "  umask=OCTAL             clear these permission bits in what is shown\n"
    "  attr_timeout=SECONDS    how long attributes are trusted (default 1)\n"
    "  entry_timeout=SECONDS   how long the kernel trusts names (default 1)\n"
    "  dir_cache_time=SECONDS  how long names listed by the remote are trusted (default 30)\n"
    "  direct_io               bypass all caching: every read and write goes to the remote\n"
    "  writeback_cache         let the kernel cache writes (changes made by other\n"
    "                          clients of the remote may go unseen)\n"
    "  readahead=SIZE          largest readahead window (default 8M)\n"
    "  memory=SIZE             memory for cached file data (default 256M)\n"
    "  nonempty                allow mounting over a non-empty directory\n"
    "  fsname=NAME             name shown in /proc/mounts (default REMOTE)\n"
    "  nosuid, nodev, noexec, noatime   kernel mount flags\n"
    "  debug                   log every request\n"
    "  sftp:// remotes:\n"
    "  identity=FILE           private key to log in with (after ssh-agent)\n"
    "  accept_new_host_key     trust and record the key of a host not in known_hosts\n"
    "  known_hosts=FILE        host keys to check against (default ~/.ssh/known_hosts)\n"
    "  password_auth           allow a password typed on the terminal\n"
    "  connections=N           SSH connections to spread requests over (default 4)\n"
    "  nfs:// remotes:\n"
    "  nfs_version=3|4         NFS protocol version (default 3)\n"
    "  Both:\n"
    "  connect_timeout=SECONDS give up connecting after this long (default 10)\n"
    "  timeout=SECONDS         an operation the server does not answer fails with EIO\n"
    "                          after this long (default 30)\n"
    "  Offline use (with the cache):\n"
    "  pin_refresh=SECONDS     how often pinned folders are checked for changes on\n"
    "                          the server (default 60)\n"
    "  nostate_xattr           no user.netfs.state attribute: the kernel then stops\n"
    "                          asking for extended attributes before every write(2),\n"
    "                          which makes small writes faster\n"
    "  SIZE is a number of bytes with an optional K, M or G suffix.\n"
    "  Options used by mount(8), fstab and systemd (defaults, auto, noauto, user,\n"
    "  users, nouser, _netdev, nofail, x-*, comment=*, ...) are accepted and ignored.\n";

namespace {

// A folio budget below this cannot hold a read request and its readahead.
constexpr std::uint64_t kMinMemory = 4ull << 20;
// Bounds a timeout so that its conversion to milliseconds cannot overflow.
constexpr double kMaxTimeoutSeconds = 1e9;

// Options that belong to mount(8), fstab, systemd or are the kernel's
// defaults anyway: accepted, with no effect.
bool is_ignored(std::string_view name) {
    static constexpr std::string_view kIgnored[] = {
        "defaults", "auto", "noauto", "user", "users", "nouser", "owner", "group", "_netdev",
        "nofail", "relatime", "atime", "strictatime", "exec", "suid", "dev", "async",
    };
    for (auto ignored : kIgnored)
        if (name == ignored)
            return true;
    return name.starts_with("x-");
}

// Kernel mount flags libfuse passes to mount(2).
bool is_mount_flag(std::string_view name) {
    return name == "nosuid" || name == "nodev" || name == "noexec" || name == "noatime";
}

bool parse_u32(std::string_view text, int base, std::uint32_t& out) {
    if (text.empty())
        return false;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out, base);
    return ec == std::errc() && end == text.data() + text.size();
}

// A uid or gid: (uint32_t)-1 means "unchanged" to chown(2), so it is no id.
bool parse_id(std::string_view text, std::uint32_t& out) {
    return parse_u32(text, 10, out) && out != UINT32_MAX;
}

bool parse_seconds(std::string_view text, double& out) {
    if (text.empty())
        return false;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size() && std::isfinite(out) && out >= 0 &&
           out <= kMaxTimeoutSeconds;
}

std::chrono::milliseconds to_milliseconds(double seconds) {
    return std::chrono::milliseconds(std::llround(seconds * 1000));
}

// Splits on commas not escaped as "\,"; "\\" is a backslash.
std::vector<std::string> split_options(std::string_view list) {
    std::vector<std::string> items(1);
    for (std::size_t i = 0; i < list.size(); ++i) {
        const char c = list[i];
        if (c == '\\' && i + 1 < list.size() && (list[i + 1] == ',' || list[i + 1] == '\\'))
            items.back() += list[++i];
        else if (c == ',')
            items.emplace_back();
        else
            items.back() += c;
    }
    return items;
}

bool parse_one(std::string_view item, MountOptions& o, std::string& error) {
    const auto eq = item.find('=');
    const std::string_view name = item.substr(0, eq);
    const bool has_value = eq != std::string_view::npos;
    const std::string_view value = has_value ? item.substr(eq + 1) : std::string_view();

    auto bad_value = [&](std::string_view hint = {}) {
        error = "bad value '" + std::string(value) + "' for mount option '" + std::string(name) + "'";
        if (!hint.empty())
            error += " (" + std::string(hint) + ")";
        return false;
    };

    if (name == "comment" && has_value)
        return true;  // fstab annotations for other tools
    if (is_ignored(name))
        return has_value ? bad_value() : true;

    // Flags: no value allowed.
    struct Flag {
        std::string_view name;
        bool MountOptions::*field;
        bool value;
    };
    static constexpr Flag kFlags[] = {
        {"ro", &MountOptions::read_only, true},
        {"rw", &MountOptions::read_only, false},
        {"allow_other", &MountOptions::allow_other, true},
        {"default_permissions", &MountOptions::default_permissions, true},
        {"direct_io", &MountOptions::direct_io, true},
        {"writeback_cache", &MountOptions::writeback_cache, true},
        {"nonempty", &MountOptions::nonempty, true},
        {"state_xattr", &MountOptions::state_xattr, true},
        {"nostate_xattr", &MountOptions::state_xattr, false},
        {"debug", &MountOptions::debug, true},
    };
    for (const auto& flag : kFlags) {
        if (name != flag.name)
            continue;
        if (has_value)
            return bad_value();
        o.*flag.field = flag.value;
        return true;
    }
    if (is_mount_flag(name)) {
        if (has_value)
            return bad_value();
        o.mount_flags.emplace_back(name);
        return true;
    }

    if (name == "uid" || name == "gid") {
        std::uint32_t id;
        if (!parse_id(value, id))
            return bad_value();
        (name == "uid" ? o.uid : o.gid) = id;
        return true;
    }
    if (name == "umask") {
        std::uint32_t mask;
        if (!parse_u32(value, 8, mask) || mask > 0777)
            return bad_value("an octal number up to 777");
        o.umask = mask;
        return true;
    }
    if (name == "attr_timeout" || name == "entry_timeout" || name == "dir_cache_time") {
        double seconds;
        if (!parse_seconds(value, seconds))
            return bad_value("seconds, e.g. 1 or 0.5");
        (name == "attr_timeout" ? o.attr_timeout : name == "entry_timeout" ? o.entry_timeout : o.dir_cache_time) =
            seconds;
        return true;
    }
    if (name == "readahead") {
        if (!parse_size(value, o.readahead))
            return bad_value("a size such as 8M");
        return true;
    }
    if (name == "memory") {
        std::uint64_t bytes;
        if (!parse_size(value, bytes))
            return bad_value("a size such as 256M");
        if (bytes < kMinMemory)
            return bad_value("at least 4M");
        o.memory = bytes;
        return true;
    }
    if (name == "accept_new_host_key" || name == "password_auth") {
        if (has_value)
            return bad_value();
        (name == "accept_new_host_key" ? o.remote.accept_new_host_key : o.remote.password_auth) = true;
        return true;
    }
    if (name == "identity" || name == "known_hosts") {
        if (value.empty())
            return bad_value("a file name");
        (name == "identity" ? o.remote.identity : o.remote.known_hosts) = value;
        return true;
    }
    if (name == "connections") {
        std::uint32_t n;
        if (!parse_u32(value, 10, n) || n < 1 || n > 32)
            return bad_value("1 to 32");
        o.remote.connections = n;
        return true;
    }
    if (name == "nfs_version") {
        if (value != "3" && value != "4")
            return bad_value("3 or 4");
        o.remote.nfs_version = value == "3" ? 3 : 4;
        return true;
    }
    if (name == "connect_timeout" || name == "timeout") {
        double seconds;
        if (!parse_seconds(value, seconds) || seconds < 0.1)
            return bad_value("seconds, at least 0.1");
        (name == "timeout" ? o.remote.op_timeout : o.remote.connect_timeout) = seconds;
        return true;
    }
    if (name == "pin_refresh") {
        double seconds;
        if (!parse_seconds(value, seconds) || seconds < 0.1)
            return bad_value("seconds, at least 0.1");
        o.pin_refresh = seconds;
        return true;
    }
    if (name == "fsname") {
        if (value.empty())
            return bad_value();
        o.fsname = value;
        return true;
    }

    error = "unknown mount option '" + std::string(name) + "' (see netfs mount --help)";
    return false;
}

} // namespace

bool parse_size(std::string_view text, std::uint64_t& bytes) {
    if (text.empty())
        return false;
    unsigned shift = 0;
    switch (text.back()) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    default: break;
    }
    if (shift)
        text.remove_suffix(1);
    std::uint64_t number;
    if (text.empty())
        return false;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number, 10);
    if (ec != std::errc() || end != text.data() + text.size())
        return false;
    if (number > (UINT64_MAX >> shift))
        return false;
    bytes = number << shift;
    return true;
}

bool parse_mount_options(std::string_view list, MountOptions& options, std::string& error) {
    // Work on a copy: a failed list leaves `options` as it was.
    MountOptions parsed = options;
    for (const auto& item : split_options(list)) {
        if (item.empty())
            continue;  // "ro,,rw" and a trailing comma are harmless
        if (!parse_one(item, parsed, error))
            return false;
    }
    options = std::move(parsed);
    return true;
}

EngineOptions engine_options(const MountOptions& options, bool running_as_root) {
    EngineOptions e;
    e.read_only = options.read_only;
    e.direct_io = options.direct_io;
    e.attr_timeout = to_milliseconds(options.attr_timeout);
    e.entry_timeout = to_milliseconds(options.entry_timeout);
    e.dir_cache_time = to_milliseconds(options.dir_cache_time);
    e.readahead_max = options.readahead;
    e.folio_budget = options.memory;
    e.set_owner = options.allow_other && running_as_root;
    return e;
}

} // namespace netfs
