// The replica: what this client knows of the remote's namespace, and what it
// changed there while disconnected. Disconnected operation stands on it.
//
//   names      every path seen online (attributes, whether a directory's
//              listing is complete, a symlink's target), kept current by the
//              replica backend as it forwards requests, and changed by local
//              operations while disconnected
//   objects    one row per local object (stable across renames): the version
//              of it the server last had (the base a change is checked
//              against at reintegration), and where its local content is
//   oplog      the client modification log, in order, durable before the
//              operation that appended it returns; optimised as it grows
//              (one store per file, a create then unlink cancelled, rename
//              chains joined, repeated attribute changes merged)
//   conflicts  changes reintegration could not apply as they were
//
// It lives in the cache's SQLite database (its own connection and tables),
// so that the log and the dirty granules it points at share one directory
// and one fate. Thread safety: every method may be called from any thread;
// one mutex serialises them.
#pragma once

#include "core/backend/backend.h"

#include <chrono>
#include <functional>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;

namespace netfs {

// What the server last had of an object; `exists` false: nothing (created
// locally, or known deleted).
struct BaseVersion {
    bool exists = false;
    std::uint32_t mode = 0;
    std::uint64_t size = 0;
    std::int64_t mtime_ns = 0;
    std::uint64_t change = 0;
    std::uint64_t file_id = 0;

    static BaseVersion of(const Attr& a);
    // Whether the server's attributes `now` still describe this version. A
    // directory is the same while it exists as one (entries changing inside
    // it are changes to them, not to it).
    bool matches(const Attr& now) const;
};

enum class OpKind { store, mkdir, symlink, link, unlink, rmdir, rename, setattr };
const char* op_name(OpKind kind);

// One entry of the modification log.
struct LoggedOp {
    std::int64_t seq = 0;
    OpKind kind = OpKind::store;
    std::int64_t oid = 0;    // the object changed (for rename: the one moved)
    std::string path;        // its path when the operation was made
    std::string path2;       // rename: the new path; link: the new name; symlink: the target
    std::uint32_t mode = 0;  // store of a new file, mkdir: the mode; setattr: see mask
    SetAttr attrs;           // setattr: mode and times (never the size: a size change is a store)
    BaseVersion base;        // the server's version of `oid` when the operation was made
    BaseVersion base2;       // rename: the object it replaced at path2, if any
};

// An object known to the replica.
struct LocalObject {
    std::int64_t oid = 0;
    BaseVersion base;            // as the server last had it
    std::uint64_t content = 0;   // the cache object holding its local content (0: none)
    std::uint64_t content_gen = 0;  // bumped by every local write: reintegration knows what it uploaded
};

enum class ConflictKind { update_update, update_delete, delete_update, create_create, rename_taken, parent_removed };
const char* conflict_name(ConflictKind kind);
bool conflict_from_name(const std::string& name, ConflictKind& out);

struct Conflict {
    std::int64_t id = 0;
    ConflictKind kind = ConflictKind::update_update;
    std::string path;         // the name on the server
    std::string copy;         // where the local version was kept ("" when there is none)
    std::uint64_t local_size = 0;
    std::int64_t local_mtime_ns = 0;
    bool remote_exists = false;
    std::uint64_t remote_size = 0;
    std::int64_t remote_mtime_ns = 0;
    std::string ops;          // the operations involved, e.g. "store #12"
    std::int64_t detected_ns = 0;  // wall clock
};

// One name and what the replica knows under it.
struct Name {
    std::string path;
    std::int64_t oid = 0;
    Attr attr;
    bool listed = false;      // a directory whose children are all in the replica
    std::string target;       // a symlink's target, when known
};

class Replica {
public:
    // Opens (creating its tables) the replica in the cache database at
    // `db_path`. `message` says what went wrong in one line.
    static std::unique_ptr<Replica> open(const std::string& db_path, std::string& message);
    ~Replica();

    // ---- what was seen on the server (connected) ------------------------
    // Records attributes of `path` (and creates its row). Keeps local
    // changes: a path with pending operations is not overwritten, nor made
    // again when they moved or removed it. Returns the name's object id
    // (0: not recorded).
    std::int64_t saw(const std::string& path, const Attr& attr, const std::string& target = {});
    // Records a directory's whole listing: children not in it are removed
    // (unless they have pending operations), and it is marked listed.
    void saw_listing(const std::string& dir, const std::vector<DirEntry>& entries);
    // The server said `path` does not exist (a definite answer, never an
    // outage): it and everything under it go, unless changed locally.
    void saw_gone(const std::string& path);
    // A forwarded mutation succeeded: the namespace follows it.
    void saw_rename(const std::string& from, const std::string& to);
    void saw_target(const std::string& path, const std::string& target);

    // ---- lookups ---------------------------------------------------------
    std::optional<Name> name(const std::string& path);
    std::vector<Name> children(const std::string& dir);
    std::optional<LocalObject> object(std::int64_t oid);
    std::vector<std::string> paths_of(std::int64_t oid);

    // ---- local changes (disconnected): each returns once durable --------
    // A new object; `base` is what the server has of it (nothing, for an
    // object made while disconnected).
    std::int64_t new_object(const BaseVersion& base);
    // A new name for `oid` with `attr`.
    Errc add_name(const std::string& path, const Attr& attr, const std::string& target, bool created,
                  std::int64_t oid);
    Errc set_attr(const std::string& path, const Attr& attr);
    Errc remove_name(const std::string& path);
    Errc move_name(const std::string& from, const std::string& to);
    Errc append(LoggedOp op);
    // Local content of `oid` (a cache object id) and its generation.
    Errc set_content(std::int64_t oid, std::uint64_t content);
    Errc bump_content(std::int64_t oid);
    // A fresh object id for something created while disconnected; its
    // synthetic file id is derived from it.
    static std::uint64_t local_file_id(std::int64_t oid) { return (1ull << 62) | std::uint64_t(oid); }

    // ---- reintegration ---------------------------------------------------
    // The log in order. `freeze`: for a reintegration pass, which may be
    // applying any of them until it ends (freeze_through(0)): the log's
    // optimisations leave them as they are, and add new ones instead.
    std::vector<LoggedOp> pending(std::size_t limit = SIZE_MAX, bool freeze = false);
    void freeze_through(std::int64_t seq);
    std::uint64_t pending_count();
    std::uint64_t pending_for(std::int64_t oid);
    // `seq` reached the server: it leaves the log and its object's base
    // becomes `now` (what the server reports after it).
    Errc applied(std::int64_t seq, std::int64_t oid, const BaseVersion& now);
    Errc set_base(std::int64_t oid, const BaseVersion& now);
    // The object `oid` went to a conflicted-copy name on the server,
    // `from` -> `to`: its later operations logged under the old name, and
    // every operation below it (its contents), follow; so does its local
    // name. Other objects' operations at `from` stay (they mean the name).
    Errc repath_pending(std::int64_t oid, const std::string& from, const std::string& to);
    // A conflicted copy was moved or removed by a later operation: its
    // record follows (removed along with it: the user chose to drop it).
    Errc copy_moved(const std::string& from, const std::string& to);
    Errc copy_removed(const std::string& path);
    // Temporaries of uploads in progress on the server, recorded before
    // they are made, so that one cut short by an outage is removed later
    // even when its operation is gone from the log.
    Errc note_upload(const std::string& path);
    Errc upload_done(const std::string& path);
    std::vector<std::string> uploads();
    Errc add_conflict(Conflict& c);
    std::vector<Conflict> conflicts();
    std::optional<Conflict> conflict_at(const std::string& path);
    Errc remove_conflict(std::int64_t id);
    // What reintegration learnt later of a conflict it recorded (by `c.id`;
    // not_found when it is gone).
    Errc update_conflict(const Conflict& c);

    // ---- pins --------------------------------------------------------------
    Errc set_pin(const std::string& path, bool pinned);
    std::vector<std::string> pins();
    bool is_pinned(const std::string& path);

    // Oids with local content that no pending op needs (safe to drop once
    // no handle has them open); only `only`'s, when not 0.
    std::vector<LocalObject> content_not_needed(std::int64_t only = 0);
    Errc clear_content(std::int64_t oid, std::uint64_t content);  // busy: needed again meanwhile

    // Durability of local changes: FULL while disconnected (each op is on
    // disk before its call returns), NORMAL while connected (the namespace
    // is only a copy of the server's then).
    void set_durable(bool durable);

    // Several calls as one SQLite transaction (one sync instead of one per
    // call), on this thread; other threads wait. Committed by commit() or
    // at the end of its scope; `durable` false: not synced at commit (a
    // later flush() or durable commit makes it so), for writes, whose
    // durability POSIX only promises at fsync: they are on disk when fsync
    // returns, when the next operation's synced commit is made, or within
    // about a second (flush_older_than). A crash of the daemon alone loses
    // none of them (the commit is in the write-ahead log); a crash of the
    // machine at most that last second's writes no fsync covered.
    class Transaction {
    public:
        explicit Transaction(Replica& replica, bool durable = true);
        ~Transaction();
        Transaction(const Transaction&) = delete;
        Transaction& operator=(const Transaction&) = delete;
        Errc commit();
        // Commits when `outcome` is ok, rolls back otherwise; returns it
        // (or the commit's failure).
        Errc finish(Errc outcome);

    private:
        Replica& replica_;
        std::unique_lock<std::recursive_mutex> lock_;
        bool open_ = true;
        bool outermost_ = false;
        bool relaxed_ = false;  // the outermost one, and not durable
    };
    // Makes every committed change durable (fsync of a file changed here).
    Errc flush();
    // Called before anything of this connection syncs the database's
    // write-ahead log (a synced commit, a checkpoint): the cache's unsynced
    // data (CacheStore::Sync::later) must be on disk before rows of the
    // same log that point at it.
    void set_before_sync(std::function<void()> before_sync);
    // Names that what is seen on the server must not remove (saw_listing,
    // saw_gone): a file set aside here while disconnected, which its open
    // handles still reach. Called under the replica's lock.
    void set_keep_name(std::function<bool(const std::string&)> keep_name);
    // flush() when a change committed without a sync is older than `age`.
    Errc flush_older_than(std::chrono::milliseconds age);

private:
    Replica() = default;
    struct Impl;
    friend class Transaction;
    std::unique_ptr<Impl> impl_;
};

std::string parent_of(const std::string& path);
std::string base_name(const std::string& path);
std::string join_path(const std::string& dir, const std::string& name);
// True when `path` is `dir` or below it.
bool is_under(const std::string& path, const std::string& dir);

} // namespace netfs
