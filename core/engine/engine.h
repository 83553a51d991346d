// The engine: owns all data I/O between the mount and a remote.
//
// The FUSE adapter (app/fuse_adapter.*) unpacks a request, calls one method
// here and replies with the outcome; everything between the request and the
// remote's RPCs happens below this interface:
//
//   read  -> folios (hit) | read request -> subrequests -> backend.read
//   write -> folios + dirty ranges -> writeback -> subrequests -> backend.write
//   O_DIRECT read/write -> subrequests straight between caller and backend
//
// Nodes are named by Ino, the FUSE node id (1 is the root). Each successful
// lookup, create, mkdir, mknod, symlink, link and readdirplus entry counts one
// lookup reference; forget() drops them; a node lives until its count reaches
// zero and no handle is open on it.
//
// Thread safety: every method may be called from any thread, concurrently.
#pragma once

#include "core/backend/backend.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace netfs {

class CacheStore;

using Ino = std::uint64_t;
constexpr Ino kRootIno = 1;

struct EngineOptions {
    std::uint64_t folio_budget = 256ull << 20;   // bytes of folio memory, clean and dirty
    std::uint64_t readahead_max = 8ull << 20;    // largest readahead window
    std::chrono::milliseconds attr_timeout{1000};
    std::chrono::milliseconds entry_timeout{1000};
    // A name the remote listed or confirmed is looked up without asking it
    // again for this long, as NFS trusts a directory for acdirmin (30 s).
    // Only names: their attributes still expire after attr_timeout, and
    // open still checks the file (close-to-open).
    std::chrono::milliseconds dir_cache_time{30000};
    std::chrono::milliseconds writeback_interval{5000};  // dirty data older than this is written
    int max_retries = 5;                                 // for transient errors, per subrequest
    // Network remotes: instead of max_retries, retried for this long since
    // the first attempt: a server that comes back within it (a reconnect)
    // completes the operation; after it the error is returned, also when
    // one attempt alone took that long. 0: max_retries.
    std::chrono::milliseconds retry_timeout{0};
    std::chrono::milliseconds retry_backoff{20};         // doubled after each attempt
    bool direct_io = false;                              // every open behaves as O_DIRECT
    bool read_only = false;
    bool set_owner = false;  // chown new objects to the caller (root daemon with allow_other)
    // The persistent cache, asked first for every read; none: remote only.
    std::shared_ptr<CacheStore> cache;
};

// What lookup-like calls return: a node and how long the kernel may trust it.
struct Entry {
    Ino ino = 0;          // 0: a negative entry (the name does not exist)
    Attr attr;
    double attr_timeout = 0;
    double entry_timeout = 0;
};

struct OpenResult {
    std::uint64_t handle = 0;
    bool keep_cache = false;  // the kernel's page cache for this file is still valid
    bool direct_io = false;   // the kernel must bypass its page cache
    // The remote's copy changed since the kernel last saw it (close-to-open):
    // its cached attributes, the size above all, must go too.
    bool remote_changed = false;
};

// Who asks for a new object: with set_owner (root daemon, allow_other) new
// files, directories, nodes and links belong to the caller, as on a local disk.
struct Caller {
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
};

struct DirListEntry {
    std::string name;
    Ino ino = 0;  // 0 for "." and ".."
    Attr attr;
};

// Counters for observability (control API, benchmarks, tests).
struct EngineStats {
    std::uint64_t read_requests = 0;
    std::uint64_t folio_hits = 0;        // read calls served from folios alone
    std::uint64_t subrequests = 0;       // backend reads issued
    std::uint64_t bytes_downloaded = 0;
    std::uint64_t readahead_bytes = 0;
    std::uint64_t retries = 0;
    std::uint64_t write_subrequests = 0; // backend writes issued
    std::uint64_t bytes_uploaded = 0;
    std::uint64_t folio_bytes = 0;       // folio memory in use now
    std::uint64_t dirty_bytes = 0;       // dirty bytes now
    std::uint64_t evictions = 0;
    std::uint64_t cache_hits = 0;        // granules read from the persistent cache
    std::uint64_t cache_fills = 0;       // granules stored into it (downloaded or written)
    std::uint64_t cache_write_fills = 0; // of those, queued after a write reached the remote
    std::uint64_t cache_fill_batches = 0; // transactions they were stored in
};

class Engine {
public:
    Engine(std::unique_ptr<Backend> backend, EngineOptions options);
    ~Engine();  // flushes nothing: call shutdown() first
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    const Backend& backend() const;
    const EngineOptions& options() const;

    // Checks that the remote's root is a reachable directory.
    Errc start();
    // Writes back every dirty byte and stops the background threads.
    // Returns the first error of that final writeback.
    Errc shutdown();

    // The kernel's cached pages of a range must go (after a direct write, or
    // when revalidation finds the remote changed). Set by the FUSE adapter.
    void set_invalidate_hook(std::function<void(Ino, std::uint64_t offset, std::uint64_t length)> hook);

    // Namespace.
    Errc lookup(Ino parent, std::string_view name, Entry& out);
    void forget(Ino ino, std::uint64_t nlookup);
    // `handle` (0: none) is the open handle the kernel asks through (before
    // a read, a seek), which still reaches a file whose name is gone.
    Errc getattr(Ino ino, Attr& out, std::uint64_t handle = 0);
    Errc setattr(Ino ino, const SetAttr& change, std::uint64_t handle, Attr& out);
    Errc readlink(Ino ino, std::string& target);
    Errc mknod(const Caller& caller, Ino parent, std::string_view name, std::uint32_t mode,
               std::uint64_t rdev, Entry& out);
    Errc mkdir(const Caller& caller, Ino parent, std::string_view name, std::uint32_t mode, Entry& out);
    Errc symlink(const Caller& caller, std::string_view target, Ino parent, std::string_view name,
                 Entry& out);
    Errc link(Ino ino, Ino new_parent, std::string_view new_name, Entry& out);
    Errc unlink(Ino parent, std::string_view name);
    Errc rmdir(Ino parent, std::string_view name);
    Errc rename(Ino parent, std::string_view name, Ino new_parent, std::string_view new_name,
                unsigned flags);
    Errc statfs(StatFs& out);
    // fsync of a directory: the namespace changes so far are durable.
    Errc fsyncdir();

    // Directories. The listing is taken once at opendir.
    Errc opendir(Ino ino, std::uint64_t& handle);
    // Entries from index `offset` on; with `plus`, each but "." and ".."
    // counts a lookup reference. `accept` returns false when the reply is full.
    Errc readdir(Ino ino, std::uint64_t handle, std::uint64_t offset, bool plus,
                 const std::function<bool(const DirListEntry&, std::uint64_t next_offset)>& accept);
    void releasedir(std::uint64_t handle);

    // Files. `flags` are the open(2) flags.
    Errc open(Ino ino, int flags, OpenResult& out);
    Errc create(const Caller& caller, Ino parent, std::string_view name, std::uint32_t mode, int flags,
                Entry& entry, OpenResult& out);
    Errc read(Ino ino, std::uint64_t handle, std::uint64_t offset, std::span<std::byte> buf,
              std::size_t& transferred);
    Errc write(Ino ino, std::uint64_t handle, std::uint64_t offset, std::span<const std::byte> data,
               std::size_t& transferred);
    // close(2) of one descriptor: writes back the file's dirty data and
    // reports any write error not yet reported to this handle.
    Errc flush(Ino ino, std::uint64_t handle);
    Errc fsync(Ino ino, std::uint64_t handle, bool datasync);
    // The last reference to the handle is gone.
    void release(Ino ino, std::uint64_t handle);

    // The remote path a node is known by now (its first name): for state
    // reports (user.netfs.state). not_found once it has no name.
    Errc path_of(Ino ino, std::string& path);

    EngineStats stats() const;
    // Whether the remote answers, as its backend last saw it: the signal
    // disconnected operation switches on.
    ConnectionState connection_state() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace netfs
