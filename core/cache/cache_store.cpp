#include "core/cache/cache_store.h"

#include "core/cache/cache_key.h"
#include "core/log.h"
#include "core/sqlite_stmt.h"

#include <openssl/rand.h>
#include <sqlite3.h>

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <set>
#include <mutex>
#include <utility>

namespace netfs {

namespace {

// 2: small records kept in the database (granules.record, pack 0).
constexpr int kSchemaVersion = 2;
// A record up to this size is kept in its row, not in a pack: written with
// the row into the database's log, it needs no pack write and no sync of a
// pack of its own, which for a small file written offline is one of the
// two syncs its create cost.
constexpr std::size_t kInlineRecord = 8 << 10;
constexpr std::uint64_t kNonceBlock = 4096;         // nonces reserved per metadata write
// Free space kept on the cache's filesystem when data written while
// disconnected fills it: room for the databases' journals, so that files
// can still be removed and reintegration can record its progress.
constexpr std::uint64_t kDirtyReserve = 16 << 20;

std::int64_t ns(const timespec& t) { return std::int64_t(t.tv_sec) * 1000000000 + t.tv_nsec; }

// Whether a row of get_object (id, version, size, mtime_ns, ctime_ns,
// change, file_id) is of version `v`.
bool is_version(Stmt& row, const Version& v) {
    return std::uint64_t(row.col(2)) == v.size && row.col(3) == ns(v.mtime) && row.col(4) == ns(v.ctime) &&
           std::uint64_t(row.col(5)) == v.change && std::uint64_t(row.col(6)) == v.file_id;
}

std::int64_t now_seconds() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

enum class Health { ok, damaged, in_use };

// Whether SQLite can read the whole database: a damaged header or page fails
// here, not in a later query in the middle of a read. A database another
// process holds (SQLITE_BUSY) is in use, not damaged: it is never set aside.
Health check_health(sqlite3* db) {
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, nullptr);
    bool ok = false;
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        ok = rc == SQLITE_ROW && std::strcmp(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "ok") == 0;
    }
    sqlite3_finalize(st);
    if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
        return Health::in_use;
    return ok ? Health::ok : Health::damaged;
}

// Moves the database, its WAL and the packs to "<name>.damaged-<time>".
std::string quarantine(const std::string& dir) {
    const std::string suffix = ".damaged-" + std::to_string(now_seconds());
    for (const char* name : {"/cache.db", "/cache.db-wal", "/cache.db-shm", "/packs"})
        ::rename((dir + name).c_str(), (dir + name + suffix).c_str());
    return dir + "/cache.db" + suffix;
}

} // namespace

struct CacheStore::Impl {
    CacheOptions options;
    std::mutex mu;
    sqlite3* db = nullptr;
    StmtCache statements{db};  // finalized after ~Impl closes db (sqlite3_close_v2 waits for them)
    std::unique_ptr<GranuleCodec> codec;   // for puts, under mu
    // Codecs for gets, which decode in parallel outside mu; borrowed and
    // returned under mu.
    CodecOptions codec_options;
    std::optional<CacheKey> key;
    std::vector<std::unique_ptr<GranuleCodec>> spare_codecs;
    std::map<std::uint64_t, int> pack_fds;  // open pack files
    std::uint64_t pack = 0;                 // current pack (appended to)
    std::uint64_t pack_size = 0;
    std::array<std::uint8_t, 4> nonce_prefix{};
    std::uint64_t nonce_next = 0, nonce_reserved = 0;
    std::uint64_t hits = 0, misses = 0, damaged = 0, culled = 0;
    std::uint64_t compacted = 0, packs_deleted = 0;  // records moved, pack files removed
    unsigned reading = 0;  // gets reading a pack outside mu: no pack may close meanwhile
    bool metadata_only = false;
    // Bytes of live records, an upper bound: puts add, drops do not
    // subtract; recounted exactly whenever it crosses the limit.
    std::uint64_t stored_bytes = 0;
    // Sync::later puts: pack files written and not yet synced (a mutex of
    // their own: the other connection's hooks sync them too), and whether
    // rows committed without a sync may be lost yet (then no dead record
    // is punched: the row that still points at it could come back).
    std::mutex unsynced_mu;
    std::set<int> unsynced_fds;
    bool rows_unsynced = false;
    bool committing_later = false;  // a Sync::later commit: its data stays unsynced
    bool synced_since_later = false;  // a synced commit came after the last later one
    void sync_unsynced_packs() {
        std::set<int> fds;
        {
            std::lock_guard lock(unsynced_mu);
            fds.swap(unsynced_fds);
        }
        for (int fd : fds)
            if (::fdatasync(fd) != 0)
                LOG_WARN("cache: syncing a pack file failed: %s", std::strerror(errno));
    }
    // Runs `commit` (a statement in autocommit, or a whole transaction:
    // SQLite refuses a new safety level inside one) without a sync.
    template <typename Commit>
    bool commit_later(Commit&& commit) {
        exec("PRAGMA synchronous=NORMAL");
        committing_later = true;
        const bool ok = commit();
        committing_later = false;
        exec("PRAGMA synchronous=FULL");
        if (ok) {
            rows_unsynced = true;
            synced_since_later = false;
        }
        return ok;
    }
    // Before every commit of this connection: a synced one must not make
    // rows durable before the data they point at.
    static int on_commit(void* arg) {
        auto& s = *static_cast<Impl*>(arg);
        if (!s.committing_later) {
            s.sync_unsynced_packs();
            s.synced_since_later = true;
        }
        return 0;  // go on with the commit
    }
    // After every commit: checkpoints (which sync the log) this connection
    // runs itself, after the data, instead of SQLite's automatic ones.
    static int on_wal(void* arg, sqlite3* db, const char* name, int frames) {
        auto& s = *static_cast<Impl*>(arg);
        if (wal_checkpoint_due(frames, s.checkpointed_at)) {
            s.sync_unsynced_packs();
            sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
        }
        return SQLITE_OK;
    }
    int checkpointed_at = 0;  // the log's length at the last checkpoint

    // One batch of puts in one transaction: records written (and synced
    // unless `later`), then the rows. Returns how many were stored; on a
    // failure none are, and `error` says why.
    std::size_t store_batch(std::span<const CacheStore::Put> puts, Errc& error, bool later) {
        Impl& s = *this;
        if (!s.run("BEGIN IMMEDIATE")) {
            error = s.db_error();
            return 0;
        }
        auto abort = [&](Errc e) {
            s.run("ROLLBACK");
            error = e;
            return std::size_t(0);
        };
        if (!s.insert_pending_objects())  // the rows of their first granules, most often
            return abort(Errc::io);
        struct Placed {
            const Put* put;
            std::uint64_t pack, offset, length;  // pack 0: the record is in its row
            std::vector<std::byte> in_row;
        };
        std::vector<Placed> placed;
        std::vector<int> synced;  // pack files written in this batch
        std::map<std::int64_t, std::int64_t> pack_ends;  // and their sizes after it
        Stmt version = s.statements.get("SELECT version FROM objects WHERE id = ?1");
        for (const Put& p : puts) {
            if (p.plain.size() > s.options.granule_size)
                return abort(Errc::invalid);
            version.bind(1, std::int64_t(p.object));
            if (version.step() != SQLITE_ROW) {
                version.reset();
                continue;  // the object is gone
            }
            const auto v = std::uint64_t(version.col(0));
            version.reset();
            if (p.content_version && p.content_version != v)
                continue;  // read under an older version: stale, not stored
            if (s.codec->encode({p.object, p.index, v}, p.plain, s.next_nonce(), s.record) != Errc::ok)
                return abort(Errc::io);
            if (s.record.size() <= kInlineRecord) {
                placed.push_back({&p, 0, 0, s.record.size(), s.record});
                continue;
            }
            if (s.pack == 0 || s.pack_size + s.record.size() > s.options.pack_limit) {
                s.pack++;
                s.pack_size = 0;
            }
            pack_ends[s.pack] = std::int64_t(s.pack_size + s.record.size());
            const int fd = s.pack_fd(s.pack);
            if (fd < 0 || ::pwrite(fd, s.record.data(), s.record.size(), off_t(s.pack_size)) != ssize_t(s.record.size()))
                return abort(from_errno(errno));
            if (std::find(synced.begin(), synced.end(), fd) == synced.end())
                synced.push_back(fd);
            placed.push_back({&p, s.pack, s.pack_size, s.record.size(), {}});
            s.pack_size += s.record.size();
        }
        // Data first, synced; only then the rows that point at it. Or, later:
        // synced before anything syncs the log (Impl::on_commit, on_wal).
        if (later) {
            std::lock_guard unsynced(s.unsynced_mu);
            s.unsynced_fds.insert(synced.begin(), synced.end());
        } else {
            for (int fd : synced)
                if (::fdatasync(fd) != 0)
                    return abort(from_errno(errno));
        }
        bool ok = true;
        for (const auto& [id, size] : pack_ends)
            ok = ok && s.add_pack.bind(1, id).bind(2, size).run();
        for (const Placed& pl : placed) {
            Stmt& up = s.upsert_granule;
            up.bind(1, std::int64_t(pl.put->object)).bind(2, std::int64_t(pl.put->index))
                .bind(3, std::int64_t(pl.pack)).bind(4, std::int64_t(pl.offset))
                .bind(5, std::int64_t(pl.length)).bind(6, std::int64_t(pl.put->plain.size()))
                .bind(7, pl.put->dirty ? 1 : 0).bind(8, s.now_use());
            if (pl.pack == 0)
                up.bind_blob(9, pl.in_row.data(), int(pl.in_row.size()));
            ok = ok && up.run();
            s.stored_bytes += pl.length;
        }
        if (ok) {
            s.record_uses();
            s.cull_locked();
        }
        if (!ok || !s.run("COMMIT"))
            return abort(s.db_error());
        s.pending_objects.clear();
        return placed.size();
    }

    // Granules read since the last put: their last use is recorded with the
    // next transaction, so a cache hit never waits for a sync of its own.
    std::vector<std::pair<std::uint64_t, std::uint64_t>> touched;

    // Drops least recently used clean granules of unpinned objects until
    // the records fit the size limit (down to 90% of it) and the backing
    // filesystem is back above the run mark (and `want_free`, when asked
    // for more); frees their space by punching holes after the rows are
    // gone. Runs inside the caller's transaction.
    void cull_locked(std::uint64_t want_free = 0) {
        std::uint64_t goal = UINT64_MAX;  // bytes of records to keep at most
        const std::uint64_t limit = options.size_limit;
        if (limit && stored_bytes > limit) {
            Stmt live = statements.get("SELECT coalesce(sum(length), 0) FROM granules");
            stored_bytes = live.step() == SQLITE_ROW ? std::uint64_t(live.col(0)) : stored_bytes;
            live.reset();
            if (stored_bytes > limit)
                goal = limit / 10 * 9;
        }
        FreeSpace space = free_space();
        const std::uint64_t cull_below = std::max(space.total / 100 * options.free_cull_percent, want_free);
        const std::uint64_t run_to = std::max(space.total / 100 * options.free_run_percent, want_free);
        if (space.total && space.free < cull_below) {
            Stmt live = statements.get("SELECT coalesce(sum(length), 0) FROM granules");
            stored_bytes = live.step() == SQLITE_ROW ? std::uint64_t(live.col(0)) : stored_bytes;
            live.reset();
            // Records already dropped whose holes are not punched yet (after
            // deferred commits, until a synced one): as good as free, or
            // every batch until then would cull as much again.
            Stmt dead = statements.get("SELECT coalesce(sum(length), 0) FROM dead");
            space.free += dead.step() == SQLITE_ROW ? std::uint64_t(dead.col(0)) : 0;
            dead.reset();
        }
        if (space.total && space.free < cull_below) {
            const std::uint64_t need = run_to - space.free;
            goal = std::min(goal, stored_bytes > need ? stored_bytes - need : 0);
        }
        if (goal == UINT64_MAX || stored_bytes <= goal)
            return;
        Stmt victims = statements.get("SELECT object, idx, pack, offset, length FROM granules WHERE dirty = 0 AND object NOT IN"
                         " (SELECT id FROM objects WHERE pinned != 0) ORDER BY last_use, object, idx");
        std::vector<std::array<std::int64_t, 5>> gone;
        std::uint64_t bytes = stored_bytes;
        while (bytes > goal && victims.step() == SQLITE_ROW) {
            gone.push_back({victims.col(0), victims.col(1), victims.col(2), victims.col(3), victims.col(4)});
            bytes -= std::uint64_t(victims.col(4));
        }
        victims.reset();
        for (const auto& g : gone)
            delete_granule.bind(1, g[0]).bind(2, g[1]).run();  // the trigger records their space
        culled += gone.size();
        stored_bytes = bytes;
    }
    struct FreeSpace {
        std::uint64_t free = 0, total = 0;
    };
    // The backing filesystem's room, and the database's free pages: those
    // of dropped rows (records kept in rows among them) are reused before
    // the file grows, so they count as free, or culling small records would
    // never seem to free anything and go on until none were left.
    FreeSpace free_space() {
        FreeSpace out = disk_space();
        Stmt pages = statements.get("PRAGMA freelist_count");  // read when run, not when prepared
        if (pages.step() == SQLITE_ROW)
            out.free += std::uint64_t(pages.col(0)) * page_size;
        return out;
    }
    // The backing filesystem's room alone: what pack files, the journals
    // and the replica's database can use.
    FreeSpace disk_space() const {
        struct statvfs sv;
        if (::statvfs(options.dir.c_str(), &sv) != 0)
            return {};
        return {std::uint64_t(sv.f_bavail) * sv.f_frsize, std::uint64_t(sv.f_blocks) * sv.f_frsize};
    }
    std::uint64_t page_size = 4096;  // the database's, read at open
    bool paused = false;  // below the stop mark: no new caching
    bool full = false;    // down to the reserve: dirty data refused
    // Frees the space of dead records (committed deletions) by punching
    // holes, then forgets them; packs left with nothing live are deleted.
    // Called after every commit that may have removed rows, outside any
    // transaction.
    void reclaim() {
        if (rows_unsynced) {
            if (!synced_since_later)
                return;  // a later sync_data() or synced commit frees them
            rows_unsynced = false;
        }
        Stmt q = statements.get("SELECT rowid, pack, offset, length FROM dead ORDER BY pack, offset");
        std::int64_t last = 0;
        while (q.step() == SQLITE_ROW) {
            last = std::max(last, q.col(0));
            const int fd = pack_fd(std::uint64_t(q.col(1)));
            if (fd >= 0)
                ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(q.col(2)), off_t(q.col(3)));
        }
        q.reset();
        if (last == 0)
            return;
        Stmt forget = statements.get("DELETE FROM dead WHERE rowid <= ?1");
        forget.bind(1, last).run();
        compact();
    }

    // Packs other than the one being appended to: one with no live record
    // is deleted; one whose live records fill at most a quarter of it has them
    // copied to the current pack (records are position-independent: their
    // authentication binds object, index and version, not the place), the
    // rows moved in one transaction after the copies are synced, and is then
    // deleted. Holes already free most dead space; this bounds the number of
    // pack files and keeps live data together.
    void compact() {
        struct Pack {
            std::uint64_t id, size, live;
        };
        std::vector<Pack> candidates;
        Stmt q = statements.get("SELECT p.id, p.size, (SELECT coalesce(sum(length), 0) FROM granules g WHERE g.pack = p.id)"
                   " FROM packs p WHERE p.id != ?1");
        q.bind(1, std::int64_t(pack));
        while (q.step() == SQLITE_ROW)
            if (std::uint64_t(q.col(2)) <= std::uint64_t(q.col(1)) / 4)
                candidates.push_back({std::uint64_t(q.col(0)), std::uint64_t(q.col(1)), std::uint64_t(q.col(2))});
        q.reset();
        for (const Pack& p : candidates)
            if (p.live == 0 || relocate(p.id))
                retire(p.id);
    }
    bool relocate(std::uint64_t from) {
        if (reading > 0)
            return false;  // a get is reading a pack without the lock: later
        const int src = pack_fd(from);
        if (src < 0)
            return false;
        struct Move {
            std::int64_t object, index, offset, length, to_pack, to_offset;
        };
        std::vector<Move> moves;
        Stmt live = statements.get("SELECT object, idx, offset, length FROM granules WHERE pack = ?1 ORDER BY offset");
        live.bind(1, std::int64_t(from));
        while (live.step() == SQLITE_ROW)
            moves.push_back({live.col(0), live.col(1), live.col(2), live.col(3), 0, 0});
        live.reset();
        std::vector<int> written;
        std::map<std::int64_t, std::int64_t> ends;  // pack -> its size after the copies
        std::vector<std::byte> buf;
        for (Move& m : moves) {
            if (pack == 0 || pack_size + std::uint64_t(m.length) > options.pack_limit) {
                pack++;
                pack_size = 0;
            }
            const int dst = pack_fd(pack);
            buf.resize(std::size_t(m.length));
            if (dst < 0 || ::pread(src, buf.data(), buf.size(), off_t(m.offset)) != ssize_t(buf.size()) ||
                ::pwrite(dst, buf.data(), buf.size(), off_t(pack_size)) != ssize_t(buf.size()))
                return false;
            if (std::find(written.begin(), written.end(), dst) == written.end())
                written.push_back(dst);
            m.to_pack = std::int64_t(pack);
            m.to_offset = std::int64_t(pack_size);
            pack_size += buf.size();
            ends[m.to_pack] = std::int64_t(pack_size);
        }
        // The copies first, synced; only then the rows that point at them.
        for (int fd : written)
            if (::fdatasync(fd) != 0)
                return false;
        if (!run("BEGIN IMMEDIATE"))
            return false;
        bool ok = true;
        for (const auto& [id, size] : ends)
            ok = ok && add_pack.bind(1, id).bind(2, size).run();
        Stmt move = statements.get("UPDATE granules SET pack = ?5, offset = ?6 WHERE object = ?1 AND idx = ?2 AND pack = ?3"
                      " AND offset = ?4");
        for (const Move& m : moves)
            ok = ok && move.bind(1, m.object).bind(2, m.index).bind(3, std::int64_t(from)).bind(4, m.offset)
                           .bind(5, m.to_pack).bind(6, m.to_offset).run();
        if (!ok || !run("COMMIT")) {
            run("ROLLBACK");
            return false;
        }
        compacted += moves.size();
        return true;
    }
    void retire(std::uint64_t id) {
        if (reading > 0)
            return;  // its descriptor may be in use
        Stmt still = statements.get("SELECT count(*) FROM granules WHERE pack = ?1");
        still.bind(1, std::int64_t(id));
        const bool empty = still.step() == SQLITE_ROW && still.col(0) == 0;
        still.reset();
        if (!empty)
            return;
        Stmt drop = statements.get("DELETE FROM packs WHERE id = ?1");
        if (!drop.bind(1, std::int64_t(id)).run())
            return;
        Stmt forget = statements.get("DELETE FROM dead WHERE pack = ?1");
        forget.bind(1, std::int64_t(id)).run();
        if (auto it = pack_fds.find(id); it != pack_fds.end()) {
            ::close(it->second);
            pack_fds.erase(it);
        }
        ::unlink(pack_path(id).c_str());
        packs_deleted++;
    }
    void record_uses() {
        if (touched.empty())
            return;
        Stmt use = statements.get("UPDATE granules SET last_use = ?3 WHERE object = ?1 AND idx = ?2");
        const std::int64_t now = now_use();
        for (const auto& [object, index] : touched)
            use.bind(1, std::int64_t(object)).bind(2, std::int64_t(index)).bind(3, now).run();
        touched.clear();
    }
    // Last-use stamps: a counter that only grows, finer than seconds.
    std::int64_t use_clock = 0;
    std::int64_t now_use() { return use_clock = std::max(use_clock + 1, now_seconds() << 20); }
    std::vector<std::byte> record;  // encode/decode buffer

    Stmt get_object, insert_object, update_object, drop_clean, select_granule, upsert_granule, delete_granule,
        set_clean, drop_from, set_meta, add_pack;

    // Objects handed out with Sync::deferred whose rows are not written yet
    // (opening a file not cached costs no transaction of its own): they go
    // in with the next write, inside its transaction. Ids are given here,
    // above every id in the table.
    struct PendingObject {
        std::uint64_t id;
        Version version;
        std::uint64_t content_version;
    };
    std::map<std::string, PendingObject> pending_objects;  // by remote path
    std::uint64_t next_object_id = 1;
    bool insert_object_row(const std::string& remote, const Version& v, std::uint64_t id,
                           std::uint64_t content_version) {
        return insert_object.bind(1, remote).bind(2, std::int64_t(v.size)).bind(3, ns(v.mtime))
            .bind(4, ns(v.ctime)).bind(5, std::int64_t(v.change)).bind(6, std::int64_t(v.file_id))
            .bind(7, std::int64_t(id)).bind(8, std::int64_t(content_version)).run();
    }
    // Inside a transaction; pending_objects is cleared once it commits.
    bool insert_pending_objects() {
        for (const auto& [remote, p] : pending_objects)
            if (!insert_object_row(remote, p.version, p.id, p.content_version))
                return false;
        return true;
    }
    // Before anything else reads or changes objects: the pending rows, in a
    // transaction of their own (not synced: they hold no granules yet).
    bool flush_pending_objects() {
        if (pending_objects.empty())
            return true;
        const bool ok = commit_later([&] {
            if (run("BEGIN IMMEDIATE") && insert_pending_objects() && run("COMMIT"))
                return true;
            run("ROLLBACK");
            return false;
        });
        if (ok)
            pending_objects.clear();
        return ok;
    }

    int lock_fd = -1;  // flock'ed: one user of a cache at a time

    ~Impl() {
        // Closing may checkpoint the log: the data first.
        sync_unsynced_packs();
        for (auto& [id, fd] : pack_fds)
            ::close(fd);
        if (lock_fd >= 0)
            ::close(lock_fd);
        // The statements below are finalized after this body runs; _v2
        // closes (and checkpoints the WAL) once the last of them is gone.
        sqlite3_close_v2(db);
    }

    bool exec(const char* sql) { return sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK; }
    // A statement of every transaction (BEGIN, COMMIT), prepared once. Not
    // a PRAGMA that sets something: SQLite applies those while preparing,
    // so a prepared one would do nothing when run again.
    // What was stored later made durable: a synced commit, the data first
    // (on_commit), then the log. The space of records dropped before it
    // can be freed after it (reclaim).
    bool sync_rows() {
        if (!rows_unsynced) {
            sync_unsynced_packs();
            return true;
        }
        const std::uint64_t n = nonce_reserved;
        return meta_put("nonce_next", &n, sizeof n);
    }
    // The last statement's failure as an error: a full disk is ENOSPC.
    Errc db_error() const { return (sqlite3_errcode(db) & 0xff) == SQLITE_FULL ? Errc::no_space : Errc::io; }
    bool run(const char* sql) {
        Stmt q = statements.get(sql);
        const int rc = q.ok() ? q.step() : SQLITE_ERROR;
        return rc == SQLITE_DONE || rc == SQLITE_ROW;
    }
    std::string pack_path(std::uint64_t id) const {
        char name[32];
        std::snprintf(name, sizeof name, "/packs/%06llu", static_cast<unsigned long long>(id));
        return options.dir + name;
    }
    int pack_fd(std::uint64_t id) {
        auto it = pack_fds.find(id);
        if (it != pack_fds.end())
            return it->second;
        int fd = ::open(pack_path(id).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0)
            pack_fds[id] = fd;
        return fd;
    }
    bool meta_get(const char* key, std::vector<std::uint8_t>& out) {
        Stmt s = statements.get("SELECT value FROM meta WHERE key = ?1");
        s.bind(1, std::string(key));
        if (s.step() != SQLITE_ROW)
            return false;
        out = s.blob(0);
        return true;
    }
    bool meta_put(const char* key, const void* p, int n) {
        return set_meta.bind(1, std::string(key)).bind_blob(2, p, n).run();
    }
    Nonce next_nonce() {
        if (nonce_next >= nonce_reserved) {
            // Reserve a block first: after a crash the rest of it is skipped, never reused.
            nonce_reserved = nonce_next + kNonceBlock;
            meta_put("nonce_next", &nonce_reserved, sizeof nonce_reserved);
        }
        Nonce n;
        std::memcpy(n.data(), nonce_prefix.data(), 4);
        const std::uint64_t c = nonce_next++;
        for (int i = 0; i < 8; ++i)
            n[4 + i] = std::uint8_t(c >> (8 * i));
        return n;
    }
};

CacheStore::CacheStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CacheStore::~CacheStore() = default;

std::uint32_t CacheStore::granule_size() const { return impl_->options.granule_size; }
std::uint64_t CacheStore::size_limit() const {
    std::lock_guard lock(impl_->mu);
    return impl_->options.size_limit;
}

void CacheStore::set_size_limit(std::uint64_t limit) {
    std::lock_guard lock(impl_->mu);
    impl_->options.size_limit = limit;
}

std::string CacheStore::owner() const {
    std::lock_guard lock(impl_->mu);
    std::vector<std::uint8_t> v;
    impl_->meta_get("owner", v);
    return {v.begin(), v.end()};
}

Errc CacheStore::open(const CacheOptions& options, std::unique_ptr<CacheStore>& out, std::string& message) {
    const std::uint32_t g = options.granule_size;
    if (g < (64u << 10) || g > (2u << 20) || (g & (g - 1)) != 0) {
        message = "granule size must be a power of two from 64K to 2M";
        return Errc::invalid;
    }
    if (options.codec.encrypt && !options.key && !options.secret && !options.metadata_only) {
        message = "an encrypted cache needs a key";
        return Errc::invalid;
    }
    ::mkdir(options.dir.c_str(), 0700);
    ::mkdir((options.dir + "/packs").c_str(), 0700);
    struct stat st;
    if (::stat((options.dir + "/packs").c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        message = "cannot create the cache directory " + options.dir + ": " + std::strerror(errno);
        return from_errno(errno);
    }
    ::chmod(options.dir.c_str(), 0700);

    auto impl = std::make_unique<Impl>();
    impl->options = options;
    const std::string db_path = options.dir + "/cache.db";
    if (!options.metadata_only) {
        // Two users of one cache would hand out the same nonces: never.
        impl->lock_fd = ::open((options.dir + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (impl->lock_fd < 0 || ::flock(impl->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            message = "the cache in " + options.dir + " is in use by another netfs (each mount needs its own; use --cache-dir)";
            return Errc::busy;
        }
    }
    auto open_db = [&]() {
        const mode_t old_umask = ::umask(077);  // the database and its WAL are private
        // "unix-excl": the first connection to read takes the database for
        // this process (the replica's connection shares it), so SQLite keeps
        // its WAL index on the heap and takes no file lock per transaction:
        // 5-18% off a small file made offline. Another process cannot read
        // it meanwhile (`netfs cache stats` says so; `netfs status` answers).
        const int rc =
            sqlite3_open_v2(db_path.c_str(), &impl->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "unix-excl");
        ::umask(old_umask);
        if (rc == SQLITE_OK)
            wait_when_busy(impl->db, std::chrono::seconds(5));
        return rc;
    };
    int rc = open_db();
    const Health health = rc == SQLITE_OK ? check_health(impl->db) : Health::ok;
    if (health == Health::in_use) {
        message = "the cache database " + db_path +
                  " is in use by another process (a netfs cache command?): try again once it has finished";
        return Errc::busy;
    }
    if (health == Health::damaged) {
        // Unreadable metadata: set it aside with its packs (kept for
        // inspection, never silently deleted) and start an empty cache.
        sqlite3_close(impl->db);
        impl->db = nullptr;
        const std::string aside = quarantine(options.dir);
        LOG_WARN("the cache database %s was damaged; moved to %s and started afresh (data will be read from the "
                 "remote again)",
                 db_path.c_str(), aside.c_str());
        ::mkdir((options.dir + "/packs").c_str(), 0700);
        rc = open_db();
    }
    if (rc != SQLITE_OK) {
        message = "cannot open the cache database " + db_path + ": " + sqlite3_errstr(rc);
        return Errc::io;
    }
    sqlite3_commit_hook(impl->db, &Impl::on_commit, impl.get());
    sqlite3_wal_hook(impl->db, &Impl::on_wal, impl.get());
    if (!impl->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB);"
                    "CREATE TABLE IF NOT EXISTS objects(id INTEGER PRIMARY KEY, remote TEXT NOT NULL UNIQUE,"
                    " version INTEGER NOT NULL, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER,"
                    " change INTEGER, file_id INTEGER, pinned INTEGER NOT NULL DEFAULT 0);"
                    "CREATE TABLE IF NOT EXISTS granules(object INTEGER NOT NULL, idx INTEGER NOT NULL,"
                    " version INTEGER NOT NULL, pack INTEGER NOT NULL, offset INTEGER NOT NULL,"
                    " length INTEGER NOT NULL, plain_len INTEGER NOT NULL, dirty INTEGER NOT NULL DEFAULT 0,"
                    " last_use INTEGER NOT NULL, record BLOB, PRIMARY KEY(object, idx)) WITHOUT ROWID;"
                    "CREATE TABLE IF NOT EXISTS packs(id INTEGER PRIMARY KEY, size INTEGER NOT NULL);"
                    // Records no row points at any more, whatever removed the row
                    // (a drop, a cull, a replacing put): their space is freed
                    // after the commit, and again after a crash (punching a
                    // hole twice is harmless). REPLACE fires the trigger only
                    // with recursive_triggers.
                    "PRAGMA recursive_triggers=ON;"
                    "CREATE TABLE IF NOT EXISTS dead(pack INTEGER NOT NULL, offset INTEGER NOT NULL,"
                    " length INTEGER NOT NULL);"
                    "CREATE TRIGGER IF NOT EXISTS granule_gone AFTER DELETE ON granules WHEN old.pack != 0 BEGIN"
                    " INSERT INTO dead(pack, offset, length) VALUES(old.pack, old.offset, old.length); END;")) {
        message = "the cache database " + db_path + " is damaged (" + sqlite3_errmsg(impl->db) +
                  "): remove it, or run netfs cache clear";
        return Errc::io;
    }

    // Format, granule size, encryption: fixed when the cache was created.
    std::vector<std::uint8_t> v;
    const std::int64_t want_schema = kSchemaVersion;
    impl->set_meta = Stmt(impl->db, "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)");
    if (!impl->meta_get("schema", v)) {
        const std::uint32_t enc = options.codec.encrypt;
        RAND_bytes(impl->nonce_prefix.data(), 4);
        impl->meta_put("schema", &want_schema, sizeof want_schema);
        impl->meta_put("granule_size", &g, sizeof g);
        impl->meta_put("encrypted", &enc, sizeof enc);
        impl->meta_put("nonce_prefix", impl->nonce_prefix.data(), 4);
        impl->meta_put("owner", options.owner.data(), int(options.owner.size()));
    } else {
        std::vector<std::uint8_t> gs, enc, prefix, next;
        std::int64_t schema = 0;
        std::memcpy(&schema, v.data(), std::min(v.size(), sizeof schema));
        if (schema == 1) {
            // Format 1 had no records in rows: the column, and a trigger
            // that leaves them out of the space to free.
            if (!impl->exec("BEGIN IMMEDIATE; ALTER TABLE granules ADD COLUMN record BLOB;"
                            "DROP TRIGGER granule_gone;"
                            "CREATE TRIGGER granule_gone AFTER DELETE ON granules WHEN old.pack != 0 BEGIN"
                            " INSERT INTO dead(pack, offset, length) VALUES(old.pack, old.offset, old.length); END;") ||
                !impl->meta_put("schema", &want_schema, sizeof want_schema) || !impl->exec("COMMIT")) {
                message = "the cache in " + options.dir + " could not be brought to format " +
                          std::to_string(kSchemaVersion) + " (" + sqlite3_errmsg(impl->db) + "): clear it (netfs cache clear)";
                impl->exec("ROLLBACK");
                return Errc::io;
            }
            schema = kSchemaVersion;
        }
        if (schema != kSchemaVersion) {
            message = "the cache in " + options.dir + " has format " + std::to_string(schema) + ", this netfs reads " +
                      std::to_string(kSchemaVersion) + ": clear it (netfs cache clear)";
            return Errc::not_supported;
        }
        impl->meta_get("granule_size", gs);
        impl->meta_get("encrypted", enc);
        impl->meta_get("nonce_prefix", prefix);
        std::uint32_t stored_g = 0, stored_enc = 0;
        std::memcpy(&stored_g, gs.data(), std::min(gs.size(), sizeof stored_g));
        std::memcpy(&stored_enc, enc.data(), std::min(enc.size(), sizeof stored_enc));
        if (stored_g != g) {
            message = "the cache in " + options.dir + " was created with granules of " +
                      std::to_string(stored_g >> 10) + "K, not " + std::to_string(g >> 10) +
                      "K: use that size or clear the cache";
            return Errc::invalid;
        }
        if (bool(stored_enc) != options.codec.encrypt && !options.metadata_only) {
            message = std::string("the cache in ") + options.dir + " is " + (stored_enc ? "encrypted" : "not encrypted") +
                      ": open it " + (stored_enc ? "with its key" : "with --no-encrypt") + " or clear it";
            return Errc::invalid;
        }
        std::memcpy(impl->nonce_prefix.data(), prefix.data(), std::min<std::size_t>(prefix.size(), 4));
        if (impl->meta_get("nonce_next", next))
            std::memcpy(&impl->nonce_next, next.data(), std::min(next.size(), sizeof impl->nonce_next));
    }
    // The cache key: given (tests), or kept wrapped by the user's secret.
    std::optional<CacheKey> key = options.key;
    if (options.metadata_only) {
        impl->codec_options = options.codec;
    } else if (options.codec.encrypt && !key) {
        std::vector<std::uint8_t> blob;
        CacheKey unwrapped;
        if (impl->meta_get("wrapped_key", blob)) {
            if (unwrap_cache_key({blob}, *options.secret, unwrapped) != Errc::ok) {
                message = "wrong key for the cache in " + options.dir +
                          " (the cache was left untouched; use the key file or passphrase it was created with)";
                return Errc::access;
            }
        } else {
            unwrapped = random_cache_key();
            WrappedKey wrapped;
            if (wrap_cache_key(unwrapped, *options.secret, wrapped) != Errc::ok ||
                !impl->meta_put("wrapped_key", wrapped.blob.data(), int(wrapped.blob.size()))) {
                message = "could not store the cache key in " + db_path;
                return Errc::io;
            }
        }
        key = unwrapped;
    }
    impl->codec = std::make_unique<GranuleCodec>(options.codec, key ? &*key : nullptr);
    impl->codec_options = options.codec;
    impl->key = key;
    impl->metadata_only = options.metadata_only;

    if (!options.metadata_only) {
        // A known record proves the key: a wrong secret is refused before any use.
        const GranuleId check_id{0, 0, 0};
        const char* check_text = "netfs cache key check";
        std::span<const std::byte> check{reinterpret_cast<const std::byte*>(check_text), std::strlen(check_text)};
        std::vector<std::uint8_t> stored_check;
        if (impl->meta_get("key_check", stored_check)) {
            std::vector<std::byte> plain;
            std::span<const std::byte> rec{reinterpret_cast<const std::byte*>(stored_check.data()), stored_check.size()};
            if (impl->codec->decode(check_id, rec, plain) != Errc::ok ||
                !std::equal(plain.begin(), plain.end(), check.begin(), check.end())) {
                message = "wrong key for the cache in " + options.dir + " (the cache was left untouched)";
                return Errc::access;
            }
        } else {
            std::vector<std::byte> rec;
            impl->codec->encode(check_id, check, impl->next_nonce(), rec);
            impl->meta_put("key_check", rec.data(), int(rec.size()));
        }
    }

    Stmt page_size = impl->statements.get("PRAGMA page_size");
    if (page_size.step() == SQLITE_ROW)
        impl->page_size = std::uint64_t(page_size.col(0));
    page_size = Stmt();
    Stmt last = impl->statements.get("SELECT id, size FROM packs ORDER BY id DESC LIMIT 1");
    if (last.step() == SQLITE_ROW) {
        impl->pack = std::uint64_t(last.col(0));
        impl->pack_size = std::uint64_t(last.col(1));
    }
    last.reset();
    sqlite3* db = impl->db;
    impl->get_object = Stmt(db, "SELECT id, version, size, mtime_ns, ctime_ns, change, file_id FROM objects WHERE remote = ?1");
    impl->insert_object = Stmt(db, "INSERT INTO objects(id, remote, version, size, mtime_ns, ctime_ns, change, file_id)"
                                   " VALUES(?7, ?1, ?8, ?2, ?3, ?4, ?5, ?6)");
    {
        Stmt last_id(db, "SELECT coalesce(max(id), 0) FROM objects");
        impl->next_object_id = last_id.step() == SQLITE_ROW ? std::uint64_t(last_id.col(0)) + 1 : 1;
    }
    impl->update_object = Stmt(db, "UPDATE objects SET version = version + 1, size = ?2, mtime_ns = ?3, ctime_ns = ?4,"
                                   " change = ?5, file_id = ?6 WHERE id = ?1");
    impl->drop_clean = Stmt(db, "DELETE FROM granules WHERE object = ?1 AND dirty = 0");
    impl->select_granule = Stmt(db, "SELECT g.version, g.pack, g.offset, g.length, g.record FROM granules g"
                                    " WHERE g.object = ?1 AND g.idx = ?2");
    impl->upsert_granule = Stmt(db, "INSERT OR REPLACE INTO granules(object, idx, version, pack, offset, length,"
                                    " plain_len, dirty, last_use, record) VALUES(?1, ?2, (SELECT version FROM objects WHERE id = ?1),"
                                    " ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    impl->delete_granule = Stmt(db, "DELETE FROM granules WHERE object = ?1 AND idx = ?2");
    impl->set_clean = Stmt(db, "UPDATE granules SET dirty = 0 WHERE object = ?1 AND idx = ?2");
    impl->drop_from = Stmt(db, "DELETE FROM granules WHERE object = ?1 AND idx >= ?2");
    impl->add_pack = Stmt(db, "INSERT OR REPLACE INTO packs(id, size) VALUES(?1, ?2)");
    if (!impl->get_object.ok() || !impl->upsert_granule.ok() || !impl->select_granule.ok()) {
        message = std::string("the cache database is damaged: ") + sqlite3_errmsg(db);
        return Errc::io;
    }
    Stmt live = impl->statements.get("SELECT coalesce(sum(length), 0) FROM granules");
    if (live.step() == SQLITE_ROW)
        impl->stored_bytes = std::uint64_t(live.col(0));
    live.reset();
    out.reset(new CacheStore(std::move(impl)));
    return Errc::ok;
}

Errc CacheStore::object(const std::string& remote_path, const Version& v, std::uint64_t& id,
                        std::uint64_t& content_version, Sync sync) {
    Impl& s = *impl_;
    std::lock_guard lock(s.mu);
    if (sync == Sync::deferred) {
        if (auto it = s.pending_objects.find(remote_path); it != s.pending_objects.end()) {
            auto& p = it->second;
            if (!(p.version == v)) {  // nothing stored under it yet: only the number moves on
                p.version = v;
                p.content_version++;
            }
            id = p.id;
            content_version = p.content_version;
            return Errc::ok;
        }
    } else if (!s.flush_pending_objects()) {
        return Errc::io;
    }
    Stmt& get = s.get_object;
    get.bind(1, remote_path);
    if (get.step() == SQLITE_ROW) {
        id = std::uint64_t(get.col(0));
        content_version = std::uint64_t(get.col(1));
        const bool same = is_version(get, v);
        get.reset();
        if (same)
            return Errc::ok;
        // Another version on the remote: clean granules are stale. A new
        // version number makes any record written for the old one fail
        // authentication, even if a row survived.
        if (!s.run("BEGIN IMMEDIATE"))
            return Errc::io;
        const bool ok =
            s.drop_clean.bind(1, std::int64_t(id)).run() &&
            s.update_object.bind(1, std::int64_t(id)).bind(2, std::int64_t(v.size)).bind(3, ns(v.mtime))
                .bind(4, ns(v.ctime)).bind(5, std::int64_t(v.change)).bind(6, std::int64_t(v.file_id)).run();
        if (!ok || !s.run("COMMIT")) {
            s.run("ROLLBACK");  // no transaction left open for the next caller
            return Errc::io;
        }
        content_version++;
        s.reclaim();
        return Errc::ok;
    }
    get.reset();
    id = s.next_object_id++;
    content_version = 1;
    if (sync == Sync::deferred) {
        s.pending_objects.emplace(remote_path, Impl::PendingObject{id, v, content_version});
        return Errc::ok;
    }
    auto insert = [&] { return s.insert_object_row(remote_path, v, id, content_version); };
    return (sync == Sync::later ? s.commit_later(insert) : insert()) ? Errc::ok : Errc::io;
}

Errc CacheStore::carry_over(const std::string& path, const Version& before, const Version& after) {
    Impl& s = *impl_;
    std::lock_guard lock(s.mu);
    if (!s.flush_pending_objects())  // rows by path or id: the pending ones too
        return Errc::io;
    Stmt q = s.statements.get("UPDATE objects SET size = ?7, mtime_ns = ?8, ctime_ns = ?9, change = ?10, file_id = ?11"
                 " WHERE remote = ?1 AND size = ?2 AND mtime_ns = ?3 AND ctime_ns = ?4 AND change = ?5 AND file_id = ?6");
    return q.bind(1, path).bind(2, std::int64_t(before.size)).bind(3, ns(before.mtime)).bind(4, ns(before.ctime))
                   .bind(5, std::int64_t(before.change)).bind(6, std::int64_t(before.file_id))
                   .bind(7, std::int64_t(after.size)).bind(8, ns(after.mtime)).bind(9, ns(after.ctime))
                   .bind(10, std::int64_t(after.change)).bind(11, std::int64_t(after.file_id)).run()
               ? Errc::ok
               : Errc::io;
}

Errc CacheStore::accept_version(std::uint64_t object, const Version& v) {
    Impl& s = *impl_;
    std::lock_guard lock(s.mu);
    if (!s.flush_pending_objects())  // rows by path or id: the pending ones too
        return Errc::io;
    Stmt q = s.statements.get("UPDATE objects SET size = ?2, mtime_ns = ?3, ctime_ns = ?4, change = ?5, file_id = ?6 WHERE id = ?1");
    // Not synced: lost, the old version comes back and the next open finds
    // it differs from the remote's, which drops what the cache holds.
    return s.commit_later([&] {
        return q.bind(1, std::int64_t(object)).bind(2, std::int64_t(v.size)).bind(3, ns(v.mtime))
            .bind(4, ns(v.ctime)).bind(5, std::int64_t(v.change)).bind(6, std::int64_t(v.file_id)).run();
    }) ? Errc::ok : Errc::io;
}

Errc CacheStore::drop_range(std::uint64_t object, std::uint64_t first, std::uint64_t last) {
    Impl& s = *impl_;
    std::lock_guard lock(s.mu);
    Stmt q = s.statements.get("DELETE FROM granules WHERE object = ?1 AND idx BETWEEN ?2 AND ?3");
    // Not synced: the bytes are being rewritten on the remote, whose new
    // version (recorded after this, in the same log) decides; a drop lost
    // in a crash leaves granules of a version the next open refuses.
    if (!s.commit_later([&] {
            return q.bind(1, std::int64_t(object)).bind(2, std::int64_t(first)).bind(3, std::int64_t(last)).run();
        }))
        return Errc::io;
    s.reclaim();
    return Errc::ok;
}

Errc CacheStore::get(std::uint64_t object, std::uint64_t index, std::vector<std::byte>& plain) {
    Impl& s = *impl_;
    if (s.metadata_only)
        return Errc::not_supported;
    std::uint64_t version, pack, offset;
    std::size_t length;
    int fd = -1;
    bool in_row = false;
    std::unique_ptr<GranuleCodec> codec;
    thread_local std::vector<std::byte> record;
    {
        // Only the lookup is serialised; reading and decoding run in parallel.
        std::lock_guard lock(s.mu);
        Stmt& sel = s.select_granule;
        sel.bind(1, std::int64_t(object)).bind(2, std::int64_t(index));
        if (sel.step() != SQLITE_ROW) {
            sel.reset();
            s.misses++;
            return Errc::not_found;
        }
        version = std::uint64_t(sel.col(0));
        pack = std::uint64_t(sel.col(1));
        offset = std::uint64_t(sel.col(2));
        length = std::size_t(sel.col(3));
        in_row = pack == 0;
        if (in_row)
            sel.copy_blob(4, record);  // of its own size: one that is not `length` long is damage
        else
            fd = s.pack_fd(pack);  // kept open until no get is reading (Impl::reading)
        sel.reset();
        s.reading++;
        if (!s.spare_codecs.empty()) {
            codec = std::move(s.spare_codecs.back());
            s.spare_codecs.pop_back();
        }
    }
    if (!codec)
        codec = std::make_unique<GranuleCodec>(s.codec_options, s.key ? &*s.key : nullptr);
    if (!in_row)
        record.resize(length);
    const ssize_t n = in_row ? ssize_t(record.size()) : fd < 0 ? -1 : ::pread(fd, record.data(), length, off_t(offset));
    const bool good = n == ssize_t(length) && codec->decode({object, index, version}, record, plain) == Errc::ok;
    std::lock_guard lock(s.mu);
    s.reading--;
    s.spare_codecs.push_back(std::move(codec));
    if (!good) {
        // Never returned: dropped, counted, logged; the caller reads the remote.
        s.damaged++;
        s.misses++;
        // Only the record that was checked: a put may have replaced it meanwhile.
        // (A record in its row is told apart by its bytes, a missing one
        // read as empty.)
        Stmt drop = s.statements.get("DELETE FROM granules WHERE object = ?1 AND idx = ?2 AND pack = ?3 AND offset = ?4"
                                     " AND length = ?5 AND (?3 != 0 OR coalesce(record, x'') = coalesce(?6, x''))");
        drop.bind(1, std::int64_t(object)).bind(2, std::int64_t(index)).bind(3, std::int64_t(pack))
            .bind(4, std::int64_t(offset)).bind(5, std::int64_t(length));
        if (in_row)
            drop.bind_blob(6, record.data(), int(record.size()));
        drop.run();
        s.reclaim();
        LOG_WARN("cache: granule %llu of object %llu failed verification; dropped, it will be read again",
                 static_cast<unsigned long long>(index), static_cast<unsigned long long>(object));
        return Errc::not_found;
    }
    s.hits++;
    if (s.touched.size() < 65536)
        s.touched.emplace_back(object, index);
    return Errc::ok;
}

Errc CacheStore::put(std::uint64_t object, std::uint64_t index, std::span<const std::byte> plain, bool dirty,
                     std::uint64_t content_version) {
    const Put one{object, index, plain, dirty, content_version};
    Errc error = Errc::ok;
    const std::size_t stored = put_many({&one, 1}, error);
    if (error != Errc::ok)
        return error;
    return stored == 1 ? Errc::ok : Errc::bad_handle;  // stale: read under an older version
}

std::size_t CacheStore::put_many(std::span<const Put> puts, Errc& error, Sync sync) {
    Impl& s = *impl_;
    error = Errc::ok;
    if (s.metadata_only) {
        error = Errc::not_supported;
        return 0;
    }
    std::lock_guard lock(s.mu);
    // Below the stop mark the backing filesystem is nearly full: new
    // caching pauses (reads go to the remote) until culling or the user
    // makes room. Dirty data (written while disconnected) goes on down to
    // a reserve, where it is refused with ENOSPC as a full local disk
    // would refuse it: the reserve keeps room for the databases, so that
    // removing files still works (and frees space) and reintegration can
    // record its progress.
    const auto space = s.free_space();
    const bool below_stop = space.total && space.free < space.total / 100 * s.options.free_stop_percent;
    if (below_stop != s.paused) {
        s.paused = below_stop;
        LOG_WARN(below_stop ? "cache: %s is nearly full; caching paused (reads go to the remote)"
                            : "cache: %s has room again; caching resumed",
                 s.options.dir.c_str());
    }
    bool all_dirty = true;
    std::uint64_t bytes = 0;
    for (const Put& p : puts) {
        all_dirty &= p.dirty;
        bytes += p.plain.size();  // at most what its records take, and a bit
    }
    // (The disk itself: the database's free pages are no room for packs.)
    auto disk = s.disk_space();
    auto short_of_reserve = [&] { return disk.total && disk.free < kDirtyReserve + bytes + bytes / 16; };
    if (all_dirty && short_of_reserve()) {
        // Clean granules go first: they are copies of the server's data.
        if (s.run("BEGIN IMMEDIATE")) {
            s.cull_locked(kDirtyReserve + bytes + bytes / 16);
            if (!s.run("COMMIT"))
                s.run("ROLLBACK");
        }
        s.sync_rows();  // so that the culled records' space is freed now
        s.reclaim();
        disk = s.disk_space();
        if (short_of_reserve()) {
            if (!s.full) {
                s.full = true;
                LOG_ERROR("cache: %s is full: changes made while disconnected are refused (no space left on "
                          "device) until files are removed from the mount or its disk has room",
                          s.options.dir.c_str());
            }
            error = Errc::no_space;
            return 0;
        }
    }
    if (s.full && disk.free >= 2 * kDirtyReserve + bytes) {  // (not at every batch around the mark)
        s.full = false;
        LOG_INFO("cache: %s has room again for changes made while disconnected", s.options.dir.c_str());
    }
    if (below_stop && !all_dirty) {
        // Still make room, or caching would stay paused for good.
        if (s.run("BEGIN IMMEDIATE")) {
            s.cull_locked();
            if (s.run("COMMIT"))
                s.reclaim();
            else
                s.run("ROLLBACK");
        }
        error = Errc::no_space;  // logged once above, at the transition
        return 0;
    }
    const bool later = sync == Sync::later;
    if (later && s.nonce_reserved - s.nonce_next < puts.size()) {
        // The nonces these records use are reserved by a synced commit of
        // their own first: a reservation lost with unsynced rows while the
        // records reached the disk would hand the same nonces out again.
        s.nonce_reserved = s.nonce_next + std::max<std::uint64_t>(kNonceBlock, puts.size());
        if (!s.meta_put("nonce_next", &s.nonce_reserved, sizeof s.nonce_reserved)) {
            error = Errc::io;
            return 0;
        }
    }
    if (!later) {
        const std::size_t stored = s.store_batch(puts, error, false);
        s.reclaim();
        return stored;
    }
    std::size_t stored = 0;
    s.commit_later([&] {
        stored = s.store_batch(puts, error, true);
        return error == Errc::ok;
    });
    s.reclaim();  // after rows_unsynced is set: nothing this batch replaced is punched yet
    return stored;
}

Errc CacheStore::sync_data() {
    Impl& s = *impl_;
    std::lock_guard lock(s.mu);
    if (!s.sync_rows())
        return s.db_error();
    s.reclaim();
    return Errc::ok;
}

void CacheStore::sync_packs() { impl_->sync_unsynced_packs(); }

Errc CacheStore::mark_clean(std::uint64_t object, std::uint64_t index) {
    std::lock_guard lock(impl_->mu);
    return impl_->set_clean.bind(1, std::int64_t(object)).bind(2, std::int64_t(index)).run() ? Errc::ok : Errc::io;
}

Errc CacheStore::drop_from(std::uint64_t object, std::uint64_t from_index) {
    std::lock_guard lock(impl_->mu);
    if (!impl_->drop_from.bind(1, std::int64_t(object)).bind(2, std::int64_t(from_index)).run())
        return Errc::io;
    impl_->reclaim();
    return Errc::ok;
}

Errc CacheStore::set_pinned(std::uint64_t object, bool pinned) {
    std::lock_guard lock(impl_->mu);
    if (!impl_->flush_pending_objects())  // rows by path or id: the pending ones too
        return Errc::io;
    Stmt q(impl_->db, "UPDATE objects SET pinned = ?2 WHERE id = ?1");
    return q.bind(1, std::int64_t(object)).bind(2, pinned ? 1 : 0).run() ? Errc::ok : Errc::io;
}

namespace {
// Remote paths at or below `path` are `path` itself and those in
// [prefix, upper): prefix is path + "/" and upper the same with its last
// "/" raised to "0", the next byte. A range, not LIKE: names may hold "%"
// or "_", and the range uses the index on objects.remote.
struct Subtree {
    std::string path, prefix, upper;
    explicit Subtree(const std::string& p)
        : path(p), prefix(p == "/" ? std::string("/") : p + "/"), upper(prefix) {
        upper.back() = '0';
    }
};
} // namespace

Errc CacheStore::set_pinned_under(const std::string& path, bool pinned) {
    const Subtree t(path);
    std::lock_guard lock(impl_->mu);
    if (!impl_->flush_pending_objects())  // rows by path or id: the pending ones too
        return Errc::io;
    Stmt q(impl_->db, "UPDATE objects SET pinned = ?1 WHERE remote = ?2 OR (remote >= ?3 AND remote < ?4)");
    return q.bind(1, pinned ? 1 : 0).bind(2, t.path).bind(3, t.prefix).bind(4, t.upper).run() ? Errc::ok
                                                                                                : Errc::io;
}

Errc CacheStore::pinned_bytes_under(const std::string& path, std::uint64_t& bytes) {
    const Subtree t(path);
    std::lock_guard lock(impl_->mu);
    Stmt q(impl_->db, "SELECT coalesce(sum(g.plain_len), 0) FROM granules g JOIN objects o ON o.id = g.object"
                      " WHERE o.pinned != 0 AND (o.remote = ?1 OR (o.remote >= ?2 AND o.remote < ?3))");
    q.bind(1, t.path).bind(2, t.prefix).bind(3, t.upper);
    if (q.step() != SQLITE_ROW)
        return Errc::io;
    bytes = std::uint64_t(q.col(0));
    return Errc::ok;
}

Errc CacheStore::held(std::uint64_t object, std::vector<Held>& out) {
    std::lock_guard lock(impl_->mu);
    out.clear();
    Stmt q(impl_->db, "SELECT idx, plain_len FROM granules WHERE object = ?1 ORDER BY idx");
    q.bind(1, std::int64_t(object));
    int rc;
    while ((rc = q.step()) == SQLITE_ROW)
        out.push_back({std::uint64_t(q.col(0)), std::uint32_t(q.col(1))});
    return rc == SQLITE_DONE ? Errc::ok : Errc::io;
}

Errc CacheStore::find_object(const std::string& remote_path, std::uint64_t& id) {
    std::lock_guard lock(impl_->mu);
    if (!impl_->flush_pending_objects())  // rows by path or id: the pending ones too
        return Errc::io;
    Stmt q(impl_->db, "SELECT id FROM objects WHERE remote = ?1");
    q.bind(1, remote_path);
    const int rc = q.step();
    if (rc == SQLITE_ROW) {
        id = std::uint64_t(q.col(0));
        return Errc::ok;
    }
    return rc == SQLITE_DONE ? Errc::not_found : Errc::io;
}

Errc CacheStore::find_object(const std::string& remote_path, const Version& v, std::uint64_t& id) {
    Impl& s = *impl_;
    std::lock_guard lock(s.mu);
    if (!s.flush_pending_objects())  // rows by path or id: the pending ones too
        return Errc::io;
    Stmt& get = s.get_object;
    get.bind(1, remote_path);
    const int rc = get.step();
    const bool same = rc == SQLITE_ROW && is_version(get, v);
    if (same)
        id = std::uint64_t(get.col(0));
    get.reset();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return Errc::io;
    return same ? Errc::ok : Errc::not_found;
}

Errc CacheStore::rename_objects(const std::string& from, const std::string& to) {
    Impl& s = *impl_;
    std::lock_guard lock(s.mu);
    if (!s.flush_pending_objects())  // rows by path or id: the pending ones too
        return Errc::io;
    // Below "/a" is ["/a/", "/a0"): '0' follows '/'.
    const std::string from_lo = from == "/" ? "/" : from + "/", from_hi = from == "/" ? "0" : from + "0";
    const std::string to_lo = to + "/", to_hi = to + "0";
    s.run("BEGIN IMMEDIATE");
    Stmt gone_granules = s.statements.get("DELETE FROM granules WHERE object IN (SELECT id FROM objects WHERE remote = ?1 OR"
                             " (remote >= ?2 AND remote < ?3))");
    Stmt gone = s.statements.get("DELETE FROM objects WHERE remote = ?1 OR (remote >= ?2 AND remote < ?3)");
    Stmt move = s.statements.get("UPDATE objects SET remote = ?4 || substr(remote, ?5) WHERE remote = ?1 OR"
                    " (remote >= ?2 AND remote < ?3)");
    const bool done = gone_granules.bind(1, to).bind(2, to_lo).bind(3, to_hi).run() &&
                      gone.bind(1, to).bind(2, to_lo).bind(3, to_hi).run() &&
                      move.bind(1, from).bind(2, from_lo).bind(3, from_hi).bind(4, to)
                          .bind(5, std::int64_t(from.size() + 1)).run();
    if (!s.exec(done ? "COMMIT" : "ROLLBACK") || !done)
        return Errc::io;
    s.reclaim();
    return Errc::ok;
}

Errc CacheStore::drop_object(std::uint64_t object) {
    Impl& s = *impl_;
    std::lock_guard lock(s.mu);
    if (!s.flush_pending_objects())  // rows by path or id: the pending ones too
        return Errc::io;
    s.run("BEGIN IMMEDIATE");
    Stmt granules = s.statements.get("DELETE FROM granules WHERE object = ?1");
    Stmt row = s.statements.get("DELETE FROM objects WHERE id = ?1");
    const bool done = granules.bind(1, std::int64_t(object)).run() && row.bind(1, std::int64_t(object)).run();
    if (!s.exec(done ? "COMMIT" : "ROLLBACK") || !done)
        return Errc::io;
    s.reclaim();
    return Errc::ok;
}

CacheStats CacheStore::stats() {
    Impl& s = *impl_;
    std::lock_guard lock(s.mu);
    s.flush_pending_objects();  // counted as objects
    CacheStats out;
    Stmt q = s.statements.get("SELECT (SELECT count(*) FROM objects), count(*), coalesce(sum(plain_len), 0),"
                 " coalesce(sum(length), 0), coalesce(sum(CASE WHEN dirty THEN plain_len ELSE 0 END), 0) FROM granules");
    if (q.step() == SQLITE_ROW) {
        out.objects = std::uint64_t(q.col(0));
        out.granules = std::uint64_t(q.col(1));
        out.logical_bytes = std::uint64_t(q.col(2));
        out.stored_bytes = std::uint64_t(q.col(3));
        out.dirty_bytes = std::uint64_t(q.col(4));
    }
    q.reset();
    Stmt pinned = s.statements.get("SELECT coalesce(sum(g.plain_len), 0) FROM granules g JOIN objects o ON o.id = g.object"
                      " WHERE o.pinned != 0");
    if (pinned.step() == SQLITE_ROW)
        out.pinned_bytes = std::uint64_t(pinned.col(0));
    struct stat st;
    for (const char* name : {"/cache.db", "/cache.db-wal"})
        if (::stat((s.options.dir + name).c_str(), &st) == 0)
            out.disk_bytes += std::uint64_t(st.st_blocks) * 512;
    Stmt packs = s.statements.get("SELECT id FROM packs");
    while (packs.step() == SQLITE_ROW)
        if (::stat(s.pack_path(std::uint64_t(packs.col(0))).c_str(), &st) == 0)
            out.disk_bytes += std::uint64_t(st.st_blocks) * 512;
    out.hits = s.hits;
    out.misses = s.misses;
    out.damaged = s.damaged;
    out.culled = s.culled;
    out.compacted = s.compacted;
    out.packs = 0;
    {
        Stmt n = s.statements.get("SELECT count(*) FROM packs");
        if (n.step() == SQLITE_ROW)
            out.packs = std::uint64_t(n.col(0));
    }
    return out;
}

std::uint64_t CacheStore::verify(const std::function<void(std::uint64_t, std::uint64_t)>& progress) {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> all;
    {
        std::lock_guard lock(impl_->mu);
        Stmt q(impl_->db, "SELECT object, idx FROM granules ORDER BY object, idx");
        while (q.step() == SQLITE_ROW)
            all.emplace_back(std::uint64_t(q.col(0)), std::uint64_t(q.col(1)));
    }
    const std::uint64_t before = stats().damaged;
    std::vector<std::byte> plain;
    for (std::size_t i = 0; i < all.size(); ++i) {
        get(all[i].first, all[i].second, plain);  // a damaged one is dropped and counted
        if (progress && (i % 64 == 0 || i + 1 == all.size()))
            progress(i + 1, all.size());
    }
    return stats().damaged - before;
}

std::uint64_t CacheStore::evict_clean() {
    Impl& s = *impl_;
    std::lock_guard lock(s.mu);
    Stmt size = s.statements.get("SELECT coalesce(sum(plain_len), 0) FROM granules WHERE dirty = 0 AND object NOT IN"
                    " (SELECT id FROM objects WHERE pinned != 0)");
    const std::uint64_t bytes = size.step() == SQLITE_ROW ? std::uint64_t(size.col(0)) : 0;
    size.reset();
    Stmt drop = s.statements.get("DELETE FROM granules WHERE dirty = 0 AND object NOT IN (SELECT id FROM objects WHERE pinned != 0)");
    if (!drop.run())
        return 0;
    s.reclaim();
    return bytes;
}

} // namespace netfs
