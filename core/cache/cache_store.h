// The persistent granule store: what the cache holds, where, and in which
// version of each remote object. Layout and journal order are documented in
// docs/cache_format.md.
//
//   put: encode (zstd, AES-GCM) -> append to a pack file -> fdatasync ->
//        commit the metadata row.  A crash at any point leaves either the
//        old row or the new one, never a row pointing at unwritten bytes.
//   get: row -> pread record -> decode; a record that does not verify is
//        dropped, counted and reported as absent, never returned.
//
// Thread safety: all methods may be called from any thread; the store
// serialises them internally (one SQLite connection, one pack appender).
#pragma once

#include "core/backend/backend.h"
#include "core/cache/granule_codec.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace netfs {

struct CacheOptions {
    std::string dir;                        // created 0700 if missing
    std::uint32_t granule_size = 256 << 10; // power of two, 64 KiB..2 MiB; fixed at creation
    CodecOptions codec;
    // When codec.encrypt, one of: the user's secret (the cache key is kept
    // wrapped by it; see cache_key.h), or the cache key itself (tests).
    std::optional<std::string> secret;
    std::optional<CacheKey> key;
    // Open the metadata only (stats, evict, clear): no key needed; get and
    // put are refused.
    bool metadata_only = false;
    // Who owns the cache (the id naming its generated key); recorded when
    // the cache is created, read back by owner().
    std::string owner;
    // Most bytes of granule records to keep (0: no limit). Past it, the
    // least recently used clean granules of unpinned objects are culled down
    // to 90% of it; dirty and pinned ones never are.
    std::uint64_t size_limit = 0;
    // Free space of the filesystem holding the cache, in percent, as
    // cachefilesd's brun/bcull/bstop: below `cull` culling frees space up to
    // `run`; below `stop` nothing new is cached.
    unsigned free_run_percent = 7;
    unsigned free_cull_percent = 5;
    unsigned free_stop_percent = 1;
    // A new pack file is started when the current one would pass this.
    std::uint64_t pack_limit = 256ull << 20;
};

struct CacheStats {
    std::uint64_t objects = 0;
    std::uint64_t granules = 0;
    std::uint64_t logical_bytes = 0;   // plaintext bytes held
    std::uint64_t stored_bytes = 0;    // record bytes held
    std::uint64_t dirty_bytes = 0;
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
    std::uint64_t damaged = 0;         // records that failed verification (dropped)
    std::uint64_t culled = 0;          // granules dropped to stay under the size limit
    std::uint64_t compacted = 0;       // live records moved out of mostly dead pack files
    std::uint64_t packs = 0;           // pack files
    std::uint64_t pinned_bytes = 0;    // plaintext bytes of pinned objects
    std::uint64_t disk_bytes = 0;      // pack files and database on disk
};

class CacheStore {
public:
    // When a change is on disk. now: on return. later (offline writes,
    // whose durability POSIX promises at fsync): at the next sync_data();
    // the journal's order holds all the same: before anything syncs the
    // write-ahead log (a synced commit of either connection, a checkpoint),
    // the data written so far is synced, so no synced row ever points at
    // data that is not; and no record such a put replaced is punched before
    // the rows that dropped it are synced. deferred (object() only): a new
    // object's row is not even written until the store's next write, most
    // often the put of its first granules, in that put's transaction. For
    // an id that nothing outside this store refers to durably before then.
    enum class Sync { now, later, deferred };

    // Opens or creates the cache in options.dir. On failure `message` says
    // what happened and what to do, in one line.
    static Errc open(const CacheOptions& options, std::unique_ptr<CacheStore>& out, std::string& message);
    ~CacheStore();

    std::uint32_t granule_size() const;
    std::uint64_t size_limit() const;  // CacheOptions::size_limit (0: none)
    // A new limit while running (the control API's settings): culling
    // follows it from the next store on.
    void set_size_limit(std::uint64_t limit);
    std::string owner() const;

    // The cache's id for a remote object, checked against the version the
    // remote reports: when it differs, the object's clean granules are
    // dropped (dirty ones are kept: they are not on the remote yet) and the
    // object's content version moves on. `content_version` is that number.
    Errc object(const std::string& remote_path, const Version& version, std::uint64_t& id,
                std::uint64_t& content_version, Sync sync = Sync::now);
    // A change of attributes only (chmod, chown, utimens: a new ctime, maybe
    // mtime or change attribute) moved the object at `path` from `before`
    // to `after`: when the cache holds it at `before`, its content is still
    // current and now stands for `after`. Nothing happens otherwise.
    Errc carry_over(const std::string& path, const Version& before, const Version& after);
    // The remote's version moved because of our own writes: what the cache
    // holds is still the content. Records the new version, drops nothing.
    Errc accept_version(std::uint64_t object, const Version& version);

    // Reads granule `index` of `object`. not_found when absent or damaged.
    Errc get(std::uint64_t object, std::uint64_t index, std::vector<std::byte>& plain);
    // Stores granule `index`; durable (data synced, row committed) on
    // return. `content_version` is the object's content version the bytes
    // were read under: if it has moved on since, nothing is stored (stale).
    Errc put(std::uint64_t object, std::uint64_t index, std::span<const std::byte> plain, bool dirty,
             std::uint64_t content_version = 0);
    // Many puts in one transaction with one sync of the data: what a
    // download of many granules wants. Returns how many were stored (a
    // stale one is skipped, not an error).
    // (Sync::later: see Sync.)
    struct Put {
        std::uint64_t object = 0;
        std::uint64_t index = 0;
        std::span<const std::byte> plain;
        bool dirty = false;
        std::uint64_t content_version = 0;
    };
    std::size_t put_many(std::span<const Put> puts, Errc& error, Sync sync = Sync::now);
    // Syncs the data of Sync::later puts, then the rows (one synced commit);
    // frees the space of records they replaced. What fsync of an offline
    // file waits for; cheap when nothing is pending.
    Errc sync_data();
    // The data of Sync::later puts only, synced: what must come before
    // another connection to the database syncs the write-ahead log.
    void sync_packs();

    // Drops granules first..last (inclusive): their bytes are being rewritten.
    Errc drop_range(std::uint64_t object, std::uint64_t first, std::uint64_t last);
    // Marks a stored granule clean (its bytes reached the remote).
    Errc mark_clean(std::uint64_t object, std::uint64_t index);
    // Drops granules at or past `from_index` (truncate).
    Errc drop_from(std::uint64_t object, std::uint64_t from_index);

    // Pins or unpins an object: a pinned object's granules are never culled
    // or evicted (disconnected operation's hoarding builds on this).
    Errc set_pinned(std::uint64_t object, bool pinned);
    // The same for every object at or below `path`: the path itself and
    // path + "/..." ("/a" covers "/a/b", never "/ab"; "/" covers all). By
    // remote path alone, so unpinning needs no remote.
    Errc set_pinned_under(const std::string& path, bool pinned);
    // Plaintext bytes held by pinned objects at or below `path` (same rule):
    // what pinning `path` again would not add to the pinned total.
    Errc pinned_bytes_under(const std::string& path, std::uint64_t& bytes);

    // Which granules of `object` are held: (index, plaintext length) in
    // index order. For pinning progress and a file's cached fraction.
    struct Held {
        std::uint64_t index = 0;
        std::uint32_t length = 0;
    };
    Errc held(std::uint64_t object, std::vector<Held>& out);
    // The object's id for `remote_path` without checking its version
    // (not_found when the cache has never seen it).
    Errc find_object(const std::string& remote_path, std::uint64_t& id);
    // The same, only when its content stands for version `v` (not_found
    // otherwise). Unlike object(), drops nothing.
    Errc find_object(const std::string& remote_path, const Version& v, std::uint64_t& id);
    // The remote object at `from` (and every one below it, for a directory)
    // is now at `to`: its cached content moves with it. Whatever the cache
    // held at `to` is dropped (it was replaced).
    Errc rename_objects(const std::string& from, const std::string& to);
    // Forgets an object and every granule of it, dirty ones too: for content
    // the caller has put somewhere safer (local changes now on the remote).
    Errc drop_object(std::uint64_t object);

    CacheStats stats();

    // Reads and authenticates every granule; damaged ones are dropped.
    // `progress(done, total)` is called as it goes. Returns the damaged count.
    std::uint64_t verify(const std::function<void(std::uint64_t, std::uint64_t)>& progress);
    // Drops every clean granule of objects not pinned. Returns bytes dropped.
    std::uint64_t evict_clean();

private:
    struct Impl;
    explicit CacheStore(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

} // namespace netfs
