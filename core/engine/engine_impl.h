// Engine internals, shared by the engine's source files. Grouped by the file
// that defines each part, so this header reads as a table of contents:
//
//   engine.cpp       nodes, paths, attributes, namespace operations, open/release
//   read_path.cpp    buffered reads: folio hits, read requests, subrequests, readahead
//   write_path.cpp   buffered writes, writeback, fsync, truncate
//   direct_io.cpp    O_DIRECT reads and writes through the same subrequest machinery
//
// Locking: one mutex, `mu`, guards every structure here. No backend call is
// ever made while holding it: work is prepared under the lock, the RPCs run
// unlocked on the I/O pool, and results are applied under the lock again.
// On a 2-core laptop the single lock costs nothing measurable (memcpy of a
// hit is the only work done under it); finer locking can come if profiles
// ask for it.
// [!] A folio marked busy is being filled by I/O that runs without the lock:
//     nobody may read, write or free it until the filler clears busy.
#pragma once

#include "core/engine/engine.h"
#include "core/engine/folio_cache.h"
#include "core/engine/io_pool.h"
#include "core/engine/range_set.h"
#include "core/engine/readahead.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace netfs {

using Clock = std::chrono::steady_clock;

// The data state of a regular file. Guarded by Engine::Impl::mu.
struct FileData {
    std::map<std::uint64_t, std::unique_ptr<Folio>> folios;  // by Folio::pos, never overlapping

    RangeSet dirty;    // written locally, not yet sent to the remote
    RangeSet writing;  // being sent now (a subrequest in flight)

    // The file's size as this client knows it. While local changes are not
    // all on the remote (`size_is_local`), it is authoritative; otherwise the
    // remote's attributes replace it.
    std::uint64_t size = 0;
    bool size_is_local = false;
    timespec local_mtime{};       // mtime to report while size_is_local

    bool truncating = false;      // a size change is in progress: no new writeback
    Clock::time_point dirty_since{};

    // Write errors, errseq style: each open handle remembers the sequence it
    // has seen and is told of every error after it once.
    std::uint64_t error_seq = 0;
    Errc last_error = Errc::ok;

    // A writable handle for writeback. Kept while dirty data exists even if
    // every opener has gone (a failed writeback is retried, never dropped) ...
    std::shared_ptr<BackendFile> writeback_file;
    // ... unless the file lost its last name with no handle open: nobody
    // can reach its bytes, so a failed write is not retried.
    bool orphaned = false;

    // Disconnected, a write through a handle tied to the server failed: the
    // backend is to keep the file locally (Impl::keep_locally_locked).
    bool keep_wanted = false;
    bool keeping = false;  // one keep at a time
    unsigned direct_writes = 0;  // direct writes under way (not in `writing`)
    unsigned direct_keeps = 0;   // direct writers waiting to keep the file
    Errc last_keep = Errc::ok;
    Clock::time_point keep_failed_at = Clock::time_point::min();
    // The end of the bytes our writes put on the remote (its size may be
    // past what `attr` says until the next getattr).
    std::uint64_t sent_end = 0;
};

struct Node {
    Ino ino = 0;
    std::uint32_t type = 0;  // S_IFMT bits

    // Names of this object: (parent, name) pairs. Usually one; more for hard
    // links; none once unlinked while still referenced.
    std::vector<std::pair<Ino, std::string>> links;
    std::uint64_t nlookup = 0;  // the kernel's references
    unsigned open_count = 0;

    Attr attr;                          // as last reported by the remote
    Clock::time_point attr_expiry{};    // trust `attr` until then
    Clock::time_point name_seen{};      // when the remote last confirmed a name of it
    Clock::time_point names_removed{};  // a directory: when this mount last removed or renamed a name in it
    // A directory this mount made: when. Every name put in it since is in
    // by_name, so a name missing there is missing on the remote too (for
    // dir_cache_time), until one of its names is dropped from by_name.
    Clock::time_point names_all_known{};
    Version cached_version;             // the remote version the folios hold
    bool expect_own_change = false;     // our own writes changed the remote's version
    Clock::time_point own_change_at{};  // when our last write or truncate of it completed

    // The object in the persistent cache (0: none yet) and its content
    // version when we last looked: granules read under another are stale.
    std::uint64_t cache_object = 0;
    std::uint64_t cache_version = 0;

    FileData data;  // regular files only
    bool forgotten = false;  // no longer in the node table: folios still filling are dropped when done
    // Unlinked (or replaced) while open where its handles would lose it:
    // renamed aside in this directory (0: not) to aside_name(ino), which
    // is in links, and removed at the last close.
    Ino set_aside_in = 0;
    // Its last name was removed by this mount (an unlink, a rename over
    // it), not only forgotten: changes to it are its handles' alone.
    bool removed_here = false;
};

struct OpenFile {
    std::shared_ptr<Node> node;
    std::shared_ptr<BackendFile> file;
    int flags = 0;
    bool writable = false;
    bool direct = false;
    std::uint64_t seen_error_seq = 0;
    Readahead readahead;  // guarded by Engine::Impl::mu
};

// A group of subrequests someone waits for (a read, a direct I/O). Jobs
// count down `outstanding` under Engine::Impl::mu and keep the first error.
struct IoWait {
    unsigned outstanding = 0;
    Errc error = Errc::ok;
};

struct DirHandle {
    Ino ino = 0;
    Clock::time_point listed_at = Clock::now();  // when the listing was asked for
    std::vector<DirEntry> entries;
};

// A granule being downloaded so it can be stored in the persistent cache
// once all of its subrequests are in. Guarded by Engine::Impl::mu.
struct GranuleFill {
    std::uint64_t object = 0;
    std::uint64_t content_version = 0;
    std::uint64_t index = 0;
    std::uint64_t start = 0;   // file offset of the granule
    std::uint64_t length = 0;  // plaintext bytes (short at the remote's end of file)
    unsigned remaining = 0;
    bool failed = false;
};

using GranuleFills = std::vector<std::shared_ptr<GranuleFill>>;

// What a read request is for (the request's origin).
enum class Origin { read, readahead, write_fill, direct_read };

struct Engine::Impl {
    Impl(std::unique_ptr<Backend> backend, EngineOptions options);

    // ---- engine.cpp -------------------------------------------------------
    std::shared_ptr<Node> node_locked(Ino ino);
    // The remote path of a node or of a child name; empty when unknown.
    std::string path_locked(const Node& node);
    std::string child_path_locked(Ino parent, std::string_view name, Errc& error);
    // Finds or makes the node for (parent, name) with these attributes.
    std::shared_ptr<Node> intern_locked(Ino parent, const std::string& name, const Attr& attr,
                                        Clock::time_point asked = Clock::time_point::max());
    void unlink_name_locked(Ino parent, const std::string& name);
    void maybe_drop_locked(const std::shared_ptr<Node>& node);
    // Takes attributes the remote reported. Returns true when the file's
    // content changed on the remote and cached data was dropped.
    // `asked`: when the request that returned `attr` was sent. A reply to a
    // request sent before our own last change of the file (a write or a
    // truncate that completed since) may describe the file before it, on a
    // remote whose requests can overtake each other: it is ignored. The
    // default is a reply to our own change, which is always current.
    bool apply_remote_attr_locked(Node& node, const Attr& attr, Clock::time_point asked = Clock::time_point::max());
    Attr view_locked(const Node& node) const;
    void fill_entry_locked(const Node& node, Entry& out) const;
    bool lookup_listed(Ino parent, std::string_view name, Entry& out);
    bool known_missing(Ino parent, std::string_view name);
    void doubt_names(Ino parent);
    void doubt_names_locked(Ino parent);
    Errc finish_create(const Caller& caller, Ino parent, const std::string& name,
                       const std::string& path, Attr attr, Entry& out);
    // unlink or rmdir of (parent, name).
    Errc remove_name(Ino parent, std::string_view name, bool directory);
    // When (parent, name) is a file open here and the remote's handles go
    // stale on unlink (or a rename over it): renames it aside to a hidden
    // name instead (true), which `aside_path` gets.
    bool rename_aside_if_open(Ino parent, const std::string& name, const std::string& path,
                              std::string* aside_path = nullptr);
    // Undoes that, for a rename over the file that then failed.
    void put_back_set_aside(Ino parent, const std::string& name, const std::string& path,
                            const std::string& aside_path);
    // The file (parent, name) names when that is the hidden name of a file
    // set aside there and still open (else null).
    std::shared_ptr<Node> open_set_aside_locked(Ino parent, std::string_view name);
    // At the last close of a file renamed aside: removes it from the remote.
    // A file that lost its last name with no handle open drops what it
    // had not written back; returns its writeback handle to close (outside
    // mu: close_orphan), if no write of it is under way.
    std::shared_ptr<BackendFile> orphan_if_unreachable_locked(Node& node, const std::string& path);
    static void close_orphan(std::shared_ptr<BackendFile> file);
    void remove_set_aside(const std::shared_ptr<Node>& node);
    // After a failed RPC: for a transient error while attempts or time are
    // left (max_retries attempts, or for network remotes until retry_timeout
    // has passed since the first), counts a retry, sleeps the back-off and
    // returns true; otherwise false. Called without the lock.
    struct Retry {
        int attempt = 0;
        Clock::time_point start = Clock::now();
        // False for writes and fsync: they keep their whole timeout after
        // the remote was given up (gave_up), or writeback would send and
        // fail again and again for the whole outage.
        bool fail_fast = true;
    };
    bool retry_after(Errc error, Retry& retry);
    // An idempotent request (a lookup, an open, a setattr, a listing...)
    // asked again under retry_after: a reconnect in the middle of it is
    // ridden out as it is for reads and writes. `retry` for a request that
    // is not to fail fast (fsync).
    template <class Request>
    Errc idempotent(Request&& request, Retry retry = {}) {
        Errc e;
        do
            e = request();
        while (e != Errc::ok && retry_after(e, retry));
        if (e == Errc::ok)
            remote_answered();
        return e;
    }
    // A create, mkdir, link, unlink or rename: asked again only while it
    // was never sent (Errc::not_sent), so a restart of the server is ridden
    // out when the connection was down before the request. One lost in
    // flight may have been carried out, and asking again would report
    // EEXIST or ENOENT for it: that goes back to the program. `renew`
    // before each new attempt finds the request's paths again: while it
    // waited, another program may have renamed a directory above them.
    template <class Request, class Renew>
    Errc at_most_once(Request&& request, Renew&& renew) {
        Retry retry;
        Errc e = request();
        while (e == Errc::not_sent && retry_after(e, retry)) {
            if (Errc r = renew(); r != Errc::ok)
                return r;
            e = request();
        }
        if (e == Errc::ok)
            remote_answered();
        return e;
    }
    // The path of the node `ino` as it is now, into `path`: bad_handle for
    // a node forgotten, not_found for one whose names are all gone.
    Errc path_of(Ino ino, std::string& path) {
        {
            std::lock_guard lock(mu);
            auto node = node_locked(ino);
            if (!node)
                return Errc::bad_handle;
            path = path_locked(*node);
        }
        return path.empty() ? Errc::not_found : Errc::ok;
    }
    // The path of `name` in `parent` as it is now, into `path`.
    Errc renew_child_path(Ino parent, std::string_view name, std::string& path) {
        Errc e;
        path = new_child_path(parent, name, e);
        return e;
    }
    // Clears gave_up: the remote answered, so the outage is over. Called on
    // every success of a retried request (not only after a later failure,
    // or the flag of one outage would end the next restart's retries early).
    void remote_answered() {
        if (gave_up.load(std::memory_order_relaxed))
            gave_up.store(false, std::memory_order_relaxed);
    }
    // A request of a network remote ran out of retry_timeout while the
    // remote was not connected: later reads and metadata calls are not
    // retried until a request succeeds or the remote reports itself
    // connected again (the writeback thread looks every second). `ls -l` on
    // a mount without a cache must not wait the timeout for each name. Per
    // engine, not per backend: each remote says "unreachable" after its own
    // fashion (nfs:// after two failed reconnects, sftp:// after the timeout).
    std::atomic<bool> gave_up{false};
    // The path of a new child (or one to rename or link), refusing on a
    // read-only mount. While changes stay local, a name of the form the
    // engine sets open files aside under is refused (EPERM) unless
    // `set_aside_ok` (a removal): reintegration takes a move to such a
    // name for a removal, and never sends what is under one.
    std::string new_child_path(Ino parent, std::string_view name, Errc& error, bool set_aside_ok = false);
    OpenFile* make_open_file_locked(const std::shared_ptr<Node>& node, std::unique_ptr<BackendFile> file,
                                    int flags);
    // The persistent cache's object for a file being opened, checked against
    // the version the remote reports (0: no cache, or it failed).
    void cache_object_of(const std::string& path, const Attr& attr, std::uint64_t& object,
                         std::uint64_t& content_version);
    // Whether the persistent cache's object at `path` is `object` (not moved
    // or dropped since a node took it).
    bool cache_has_at(const std::string& path, std::uint64_t object) const;
    // Once every local write is on the remote: takes the version the remote
    // now reports as our own, so the persistent cache keeps what it holds
    // (its granules were stored from those writes). Called without the lock.
    void settle_version(const std::shared_ptr<Node>& node, BackendFile& file);
    OpenFile* handle_of(std::uint64_t handle) const { return reinterpret_cast<OpenFile*>(handle); }
    void invalidate_kernel_cache(Ino ino, std::uint64_t offset, std::uint64_t length);

    // ---- read_path.cpp ----------------------------------------------------
    Errc buffered_read(OpenFile& of, std::uint64_t offset, std::span<std::byte> buf,
                       std::size_t& transferred);
    // Makes folios for the gaps of [start, end) and starts filling them, and
    // fills the listed partial folios. Returns how many folios it made busy.
    void start_fill_locked(std::unique_lock<std::mutex>& lock, const std::shared_ptr<Node>& node,
                           const std::shared_ptr<BackendFile>& file, std::uint64_t start,
                           std::uint64_t end, Origin origin, const std::shared_ptr<IoWait>& wait);
    void fill_folio_locked(const std::shared_ptr<Node>& node, const std::shared_ptr<BackendFile>& file,
                           Folio& folio, Origin origin, const std::shared_ptr<IoWait>& wait);
    void complete_fill_locked(Node& node, Folio& folio);
    // One subrequest's outcome: bytes landed in the folio's target (or an error).
    void complete_subrequest_locked(const std::shared_ptr<Node>& node, Folio& folio, Errc error,
                                    const std::shared_ptr<IoWait>& wait);
    // Looks granule `gstart` of a folio up in the persistent cache; the last
    // lookup of the folio sends the misses to the remote.
    void lookup_granule(const std::shared_ptr<Node>& node, const std::shared_ptr<BackendFile>& file, Folio& folio,
                        std::byte* target, std::uint64_t gstart, Origin origin, const std::shared_ptr<IoWait>& wait,
                        const std::shared_ptr<struct FolioLookup>& lookup);
    // Queues a whole granule for the cache thread: returns where the caller
    // copies its bytes (before dropping the lock), or null when the queue is
    // full and the granule goes uncached.
    std::byte* queue_fill_locked(const GranuleFill& granule);
    // Granules of cache object `object` covering [start, end) are stale.
    // `before_drop` runs once every fill waiting was stored, before the drop
    // (BackendFile::before_write: a copy of the cached bytes for the replica);
    // false from it: nothing is dropped (nothing will be written).
    void drop_cached(std::uint64_t object, std::uint64_t start, std::uint64_t end,
                     const std::function<bool()>& before_drop = {});
    // Stores every fill waiting, and waits: before the remote (the replica,
    // disconnected) copies what the cache holds of a file.
    void store_fills_now();
    // Runs `job` on the cache's thread once every fill waiting is stored,
    // and waits for it.
    void after_pending_fills(const std::function<void()>& job);
    // On the cache thread: stores every pending fill in one batch. With
    // `gather`, first waits a moment for more (see kFillGather).
    void store_pending_fills(bool gather = false);
    // Sends [lo, hi) of a folio's target to the remote in rsize subrequests;
    // each of `fills` is stored in the cache when its last subrequest is in.
    void issue_remote_locked(const std::shared_ptr<Node>& node, const std::shared_ptr<BackendFile>& file,
                             Folio& folio, std::byte* target, std::uint64_t lo, std::uint64_t hi, Origin origin,
                             const std::shared_ptr<IoWait>& wait, GranuleFills fills);
    // Reads [offset, offset + buf.size()) from the remote with retries; a
    // short result means end of file. Runs without the lock. A short read
    // goes on where it stopped, unless it reached `known_end`: there, a
    // further read would only cost a round trip to hear "end of file".
    Errc read_from_remote(BackendFile& file, std::uint64_t offset, std::span<std::byte> buf,
                          std::size_t& transferred, Origin origin = Origin::read,
                          std::uint64_t known_end = UINT64_MAX);
    Folio* find_folio_locked(FileData& data, std::uint64_t pos) const;
    // Room for `bytes` more folio memory; may evict, and with may_block wait
    // for writeback. False when there is no room.
    bool reserve_locked(std::unique_lock<std::mutex>& lock, std::uint64_t bytes, bool may_block);
    Folio* new_folio_locked(FileData& data, std::uint64_t pos, std::uint32_t size);
    void drop_folio_locked(FileData& data, Folio* folio);
    void drop_clean_folios_locked(FileData& data);

    // ---- write_path.cpp ---------------------------------------------------
    Errc buffered_write(OpenFile& of, std::uint64_t offset, std::span<const std::byte> data,
                        std::size_t& transferred);
    // Starts writing back the node's dirty data within [start, end), in
    // pieces of up to wsize, skipping bytes whose older write is in flight.
    void start_writeback_locked(const std::shared_ptr<Node>& node, IoPool::Priority priority,
                                std::uint64_t start = 0, std::uint64_t end = UINT64_MAX);
    // Writes back everything dirty now and waits for it. Returns the first
    // new error, or ok.
    Errc writeback_and_wait(std::unique_lock<std::mutex>& lock, const std::shared_ptr<Node>& node,
                            std::uint64_t start = 0, std::uint64_t end = UINT64_MAX);
    // For write(): a failed writeback this handle has not been told of and
    // whose bytes are still not on the remote.
    Errc report_error_locked(OpenFile& of);
    // For flush and fsync: writes back everything, reports the outcome.
    Errc sync_locked(std::unique_lock<std::mutex>& lock, OpenFile& of);
    Errc truncate(const std::shared_ptr<Node>& node, std::uint64_t size, BackendFile* file,
                  const std::string& path, SetAttr change, Attr& out);
    // After [start, end) reached the remote: queues every granule it touches
    // whose bytes are all known and all on the remote for the cache.
    void queue_written_granules_locked(Node& node, std::uint64_t start, std::uint64_t end);
    void writeback_thread();
    // may_keep: a transient error while disconnected returns at once, for
    // the caller to keep the file locally (keep_locally_locked).
    Errc write_to_remote(BackendFile& file, std::uint64_t offset, std::span<const std::byte> data,
                         bool may_keep = false);
    static constexpr std::chrono::seconds kKeepRetry{30};
    static constexpr int kMaxKeeps = 3;  // per writeback_and_wait
    // Has the backend keep the file as this mount sees it when its writes
    // cannot be sent while disconnected (Backend::keep_unsent). Unlocks.
    // Through `via` (a direct write's handle), or the file's writeback handle.
    Errc keep_locally_locked(std::unique_lock<std::mutex>& lock, const std::shared_ptr<Node>& node,
                             std::shared_ptr<BackendFile> via = nullptr);
    // Bytes of a file as a reader of the mount sees them: its folios, else
    // the persistent cache's granules, else read through `file`.
    // Bytes at or past `hole_from` that neither holds are zeros (a hole).
    Errc read_as_seen(const std::shared_ptr<Node>& node, BackendFile& file, std::uint64_t object,
                      std::uint64_t hole_from, std::uint64_t offset, std::span<std::byte> out);

    // ---- direct_io.cpp ----------------------------------------------------
    Errc direct_read(OpenFile& of, std::uint64_t offset, std::span<std::byte> buf,
                     std::size_t& transferred);
    Errc direct_write(OpenFile& of, std::uint64_t offset, std::span<const std::byte> data,
                      std::size_t& transferred);

    // Constant after construction.
    std::unique_ptr<Backend> backend;
    EngineOptions options;
    BackendLimits limits;
    std::uint64_t dirty_limit;        // writers wait above this
    std::uint64_t dirty_background;   // writeback starts above this
    std::uint64_t writing_limit;      // gather buffers in flight stay below this
    std::shared_ptr<CacheStore> cache;  // may be null
    std::uint64_t granule = 0;          // the cache's granule size; 0 without a cache
    static constexpr std::uint64_t kCacheFillLimit = 32ull << 20;  // queued granule copies, at most
    // Fills of small files come one by one: the writer gathers them this
    // long (or until kFillBatch wait) so that many share one transaction.
    // One per file cost a fifth of the daemon's CPU reading a tree.
    static constexpr std::chrono::milliseconds kFillGather{3};
    static constexpr std::size_t kFillBatch = 32;

    std::mutex mu;
    std::condition_variable changed;  // folio, writeback and dirty-state changes; with mu

    // All below guarded by mu.
    // [!] Before `nodes`: destroyed after them, as their folios' memory comes from it.
    FolioCache folio_cache;
    std::unordered_map<Ino, std::shared_ptr<Node>> nodes;
    std::map<std::pair<Ino, std::string>, Ino, std::less<>> by_name;
    std::unordered_map<std::uint64_t, Ino> by_file_id;
    Ino next_ino = kRootIno + 1;
    std::uint64_t dirty_bytes = 0;    // sum of every file's dirty.bytes()
    std::uint64_t writing_bytes = 0;  // sum of every file's writing.bytes()
    std::uint64_t cache_fill_bytes = 0;  // granule copies waiting to be stored
    // Downloaded granules waiting to be stored, in order; one job on the
    // cache thread stores all that are waiting in one batch (one sync).
    struct PendingFill {
        GranuleFill granule;
        std::shared_ptr<std::byte[]> bytes;
    };
    std::vector<PendingFill> pending_fills;
    bool fill_writer_queued = false;
    bool fills_now = false;                 // someone waits for the fills to be stored: no gathering
    std::condition_variable fills_wanted;   // with mu: fills_now, or kFillBatch reached
    EngineStats counters;
    std::function<void(Ino, std::uint64_t, std::uint64_t)> invalidate_hook;
    bool stopping = false;

    std::thread writeback_worker;
    // Cache writes sync to disk: they get their own thread, so they never
    // hold up the I/O pool's reads. Declared last: destroyed (joined) first,
    // the I/O pool before the cache's, since a read still queued there runs
    // at its join and may hand its granules to the cache's.
    std::unique_ptr<IoPool> cache_pool;
    // accept_version jobs queued on cache_pool and not yet run, by cache
    // object: until then the object's row names the older version.
    std::map<std::uint64_t, unsigned> accepts_pending;  // guarded by mu
    std::unique_ptr<IoPool> pool;
};

} // namespace netfs
