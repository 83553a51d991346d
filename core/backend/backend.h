// The contract between the engine and a remote (file://, sftp://, nfs://).
//
// A remote supplies only RPCs: read and write on an open file, and metadata
// operations on paths. It knows nothing of folios, readahead, writeback,
// caching or retries: the engine owns all of that (see docs/ARCHITECTURE.md).
//
// Paths are absolute within the remote: "/" is the remote's root (the path
// in the mount URL), "/a/b" a file below it. They never contain "." or ".."
// components and never end in "/" (except the root itself).
//
// Thread safety: every method may be called concurrently from up to
// limits().max_in_flight engine threads, on the same or different objects.
// A remote that needs serialisation does it inside.
//
// Errors: an Errc from the closed set in errors.h. A transient one (again,
// timed_out, unreachable, not_sent) tells the engine a later attempt may
// succeed. not_sent only when none of the operation's requests left: the
// engine then repeats even a create or a rename.
#pragma once

#include "core/errors.h"

#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace netfs {

// Attributes of a remote object, as the remote reports them.
struct Attr {
    std::uint64_t file_id = 0;  // stable id (inode number, NFS fileid); 0 if the remote has none
    std::uint32_t mode = 0;     // S_IFMT type bits | permission bits (07777)
    std::uint32_t nlink = 1;
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
    std::uint64_t rdev = 0;
    std::uint64_t size = 0;
    std::uint64_t blocks = 0;   // 512-byte blocks allocated
    timespec atime{};
    timespec mtime{};
    timespec ctime{};
    std::uint64_t change = 0;   // change attribute (NFSv4); 0 if the remote has none
};

// The file id of inode `ino` of file system `fs`, for a remote whose root
// is on file system `root_fs`. On the root's file system it is the inode
// number itself, as it always was (ids recorded in caches stay valid; see
// docs/remotes.md for the files of other file systems). A
// file system mounted below the root numbers its inodes anew, and its ids
// would collide with the root's: two files taken for hard links of one.
// There the id is a mix of both with the top bit set (bit 62 clear, which
// the replica's ids of files made offline use): in practice never an inode
// number of the root's file system.
constexpr std::uint64_t file_id_on(std::uint64_t fs, std::uint64_t root_fs, std::uint64_t ino) {
    if (fs == root_fs)
        return ino;
    std::uint64_t x = ino ^ (fs * 0x9e3779b97f4a7c15ull);  // splitmix64's finalizer
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
    return (x | (1ull << 63)) & ~(1ull << 62);
}

// What identifies one version of a remote object's content. Cached data is
// valid only while the remote still reports the same Version.
struct Version {
    std::uint64_t file_id = 0;
    std::uint64_t size = 0;
    timespec mtime{};
    timespec ctime{};
    std::uint64_t change = 0;

    static Version of(const Attr& a) { return {a.file_id, a.size, a.mtime, a.ctime, a.change}; }
    bool operator==(const Version& o) const {
        return file_id == o.file_id && size == o.size && mtime.tv_sec == o.mtime.tv_sec &&
               mtime.tv_nsec == o.mtime.tv_nsec && ctime.tv_sec == o.ctime.tv_sec &&
               ctime.tv_nsec == o.ctime.tv_nsec && change == o.change;
    }
};

struct DirEntry {
    std::string name;  // never "." or ".."
    Attr attr;
};

struct StatFs {
    std::uint64_t block_size = 4096;
    std::uint64_t blocks = 0;
    std::uint64_t blocks_free = 0;
    std::uint64_t blocks_avail = 0;
    std::uint64_t files = 0;
    std::uint64_t files_free = 0;
    std::uint32_t name_max = 255;
};

// A change to attributes; only the fields named in `mask` apply.
struct SetAttr {
    enum : std::uint32_t {
        kMode = 1u << 0,
        kUid = 1u << 1,
        kGid = 1u << 2,
        kSize = 1u << 3,
        kAtime = 1u << 4,     // set atime to `atime`
        kAtimeNow = 1u << 5,  // set atime to the current time
        kMtime = 1u << 6,
        kMtimeNow = 1u << 7,
    };
    std::uint32_t mask = 0;
    std::uint32_t mode = 0;
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
    std::uint64_t size = 0;
    timespec atime{};
    timespec mtime{};

    // The change made to `a` as a local file system makes it, now (the
    // size aside: that is content).
    void apply_to(Attr& a) const {
        timespec now{};
        clock_gettime(CLOCK_REALTIME, &now);
        if (mask & kMode)
            a.mode = (a.mode & S_IFMT) | (mode & 07777);
        if (mask & kUid)
            a.uid = uid;
        if (mask & kGid)
            a.gid = gid;
        if (mask & kAtime)
            a.atime = atime;
        if (mask & kAtimeNow)
            a.atime = now;
        if (mask & kMtime)
            a.mtime = mtime;
        if (mask & kMtimeNow)
            a.mtime = now;
        a.ctime = now;
    }
};

// A file open here that is removed, or replaced by a rename, where its
// handles would lose it (an NFS server's go stale; offline, its local copy
// is kept by name) is renamed aside to this prefix and its inode number,
// and removed at its last close (the engine). Such a name is nobody's file.
inline constexpr std::string_view kSetAsidePrefix = ".netfs-unlinked-";
inline bool is_set_aside(std::string_view path) {
    const auto slash = path.rfind('/');
    const std::string_view name = path.substr(slash == std::string_view::npos ? 0 : slash + 1);
    if (!name.starts_with(kSetAsidePrefix) || name.size() != kSetAsidePrefix.size() + 16)
        return false;
    for (const char c : name.substr(kSetAsidePrefix.size()))
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    return true;
}

// What the remote prefers and allows. Constant for the life of the backend.
struct BackendLimits {
    std::uint32_t rsize = 1u << 20;      // preferred read size
    std::uint32_t rsize_max = 1u << 20;  // largest read the remote accepts
    std::uint32_t wsize = 1u << 20;
    std::uint32_t wsize_max = 1u << 20;
    std::uint32_t max_in_flight = 16;    // requests the remote serves well at once
    bool has_file_id = true;             // Attr::file_id identifies objects (hard links)
    bool has_change_attr = false;        // Attr::change is maintained
    // An open handle keeps working after its file is unlinked (POSIX, and
    // SFTP servers that hold a descriptor). NFS handles go stale instead: the
    // engine then renames an open file aside rather than unlinking it, and
    // removes it at the last close, as the kernel's NFS client does.
    bool open_files_survive_unlink = true;
    // open looks at the file as it opens it (BackendFile::opened_attr): the
    // engine then asks nothing more for its close-to-open check.
    bool open_reports_attr = false;
};

// An open remote file. Destroying it closes the remote handle; call close()
// first to learn of an error the close reports.
class BackendFile {
public:
    virtual ~BackendFile() = default;

    // Reads up to buf.size() bytes at offset into buf. `transferred` may be
    // short: 0 means end of file; otherwise the engine asks for the rest.
    virtual Errc read(std::uint64_t offset, std::span<std::byte> buf, std::size_t& transferred) = 0;

    // Writes data at offset. `transferred` may be short; the engine continues.
    virtual Errc write(std::uint64_t offset, std::span<const std::byte> data,
                       std::size_t& transferred) = 0;

    // Makes every acknowledged write durable on the remote.
    virtual Errc fsync(bool datasync) = 0;

    // The file's attributes as its open found them, when the open looked
    // (BackendLimits::open_reports_attr); false otherwise.
    virtual bool opened_attr(Attr&) const { return false; }

    // Attributes through the handle: works after the path was unlinked.
    virtual Errc getattr(Attr& out) = 0;

    // Changes the size through the handle.
    virtual Errc truncate(std::uint64_t size) = 0;

    virtual Errc close() = 0;

    // Called before the engine writes through this handle, once every fill
    // of the cache waiting was stored, and before it drops the cached copy
    // of the range to be written (no cached byte may outlive a write). A
    // backend that may keep the file's content locally instead (the
    // replica, disconnected) takes its copy of the cached bytes now, while
    // they are all there. False: the handle cannot take writes for now (a
    // transient condition); nothing is written, and the cached copy stays.
    virtual bool before_write() { return true; }

    // The backend keeps what is written here on local storage itself (the
    // local content of a file changed while disconnected, in the cache):
    // the engine need not store the written bytes in the cache again.
    virtual bool content_is_local() const { return false; }
    // While changes stay local, the engine holds writes this handle cannot
    // take: it wrote to the server before the outage, so the backend has no
    // local copy of the file to put them on. The engine asks it to keep the
    // whole file as the mount sees it (`size` bytes, read through `read`),
    // as a local change against `base` (the remote's attributes the
    // engine's view derives from), to be reintegrated when the server is
    // back; the handle then takes writes on that copy. Nothing waits in
    // memory for the server. Not supported: the writes wait.
    using ContentReader = std::function<Errc(std::uint64_t offset, std::span<std::byte> out)>;
    virtual Errc keep_unsent(const Attr& base, std::uint64_t size, const timespec& mtime, const ContentReader& read) {
        (void)base, (void)size, (void)mtime, (void)read;
        return Errc::not_supported;
    }
};

// Whether the remote can be reached, as the backend last saw it. Disconnected
// operation (sync/) builds on this signal.
enum class ConnectionState : std::uint8_t {
    connected,     // requests are being answered
    reconnecting,  // the connection was lost; the backend is trying to restore it
    unreachable,   // attempts to reconnect fail; requests fail fast (Errc::not_sent)
};

class Backend {
public:
    virtual ~Backend() = default;

    // Local remotes are always connected; network remotes override this.
    virtual ConnectionState connection_state() const { return ConnectionState::connected; }

    // Changes are kept locally for now (disconnected operation), to be
    // reintegrated: the remote may hold names the mount does not see.
    virtual bool changes_stay_local() const { return false; }
    // ... because the user took the mount offline (`netfs offline`): nothing
    // reaches the remote until they bring it back, so nobody waits for it.
    virtual bool offline_by_request() const { return false; }
    // The remote as a user names it, without secrets: "file:///srv/data".
    virtual std::string describe() const = 0;
    virtual BackendLimits limits() const = 0;

    // lstat semantics: a symbolic link is reported, not followed.
    virtual Errc getattr(const std::string& path, Attr& out) = 0;
    // Every entry but "." and "..", with attributes.
    virtual Errc readdir(const std::string& path, std::vector<DirEntry>& out) = 0;

    // flags: O_RDONLY/O_WRONLY/O_RDWR, optionally O_TRUNC. Never follows a
    // symbolic link in the last component.
    virtual Errc open(const std::string& path, int flags, std::unique_ptr<BackendFile>& out) = 0;
    // Creates a regular file (O_EXCL semantics unless flags lack O_EXCL) and opens it.
    virtual Errc create(const std::string& path, std::uint32_t mode, int flags,
                        std::unique_ptr<BackendFile>& out, Attr& attr) = 0;
    virtual Errc mknod(const std::string& path, std::uint32_t mode, std::uint64_t rdev,
                       Attr& attr) = 0;
    virtual Errc mkdir(const std::string& path, std::uint32_t mode, Attr& attr) = 0;
    virtual Errc symlink(const std::string& target, const std::string& path, Attr& attr) = 0;
    virtual Errc link(const std::string& existing, const std::string& path, Attr& attr) = 0;
    virtual Errc readlink(const std::string& path, std::string& target) = 0;
    virtual Errc unlink(const std::string& path) = 0;
    virtual Errc rmdir(const std::string& path) = 0;
    // flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE (not_supported where the
    // remote cannot do them atomically).
    virtual Errc rename(const std::string& from, const std::string& to, unsigned flags) = 0;
    // Applies `change`; `out` receives the attributes afterwards.
    virtual Errc setattr(const std::string& path, const SetAttr& change, Attr& out) = 0;
    virtual Errc statfs(StatFs& out) = 0;
    // Makes the namespace changes made so far durable (fsync of a
    // directory). A remote that applies them on the server before it
    // answers has nothing left to do.
    virtual Errc sync_namespace() { return Errc::ok; }
};

} // namespace netfs
