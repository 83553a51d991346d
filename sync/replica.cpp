#include "sync/replica.h"

#include "core/log.h"
#include "core/sqlite_stmt.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstring>

namespace netfs {

namespace {

std::int64_t ns(const timespec& t) { return std::int64_t(t.tv_sec) * 1000000000 + t.tv_nsec; }
timespec ts(std::int64_t n) { return {time_t(n / 1000000000), long(n % 1000000000)}; }

// The columns of a name's attributes, in the order bind_attr and read_attr use.
constexpr const char* kAttrColumns =
    "mode, nlink, uid, gid, rdev, size, blocks, atime_ns, mtime_ns, ctime_ns, file_id, change";

void bind_attr(Stmt& q, int first, const Attr& a) {
    q.bind(first, a.mode).bind(first + 1, a.nlink).bind(first + 2, a.uid).bind(first + 3, a.gid)
        .bind(first + 4, std::int64_t(a.rdev)).bind(first + 5, std::int64_t(a.size))
        .bind(first + 6, std::int64_t(a.blocks)).bind(first + 7, ns(a.atime)).bind(first + 8, ns(a.mtime))
        .bind(first + 9, ns(a.ctime)).bind(first + 10, std::int64_t(a.file_id)).bind(first + 11, std::int64_t(a.change));
}

Attr read_attr(Stmt& q, int first) {
    Attr a;
    a.mode = std::uint32_t(q.col(first));
    a.nlink = std::uint32_t(q.col(first + 1));
    a.uid = std::uint32_t(q.col(first + 2));
    a.gid = std::uint32_t(q.col(first + 3));
    a.rdev = std::uint64_t(q.col(first + 4));
    a.size = std::uint64_t(q.col(first + 5));
    a.blocks = std::uint64_t(q.col(first + 6));
    a.atime = ts(q.col(first + 7));
    a.mtime = ts(q.col(first + 8));
    a.ctime = ts(q.col(first + 9));
    a.file_id = std::uint64_t(q.col(first + 10));
    a.change = std::uint64_t(q.col(first + 11));
    return a;
}

constexpr const char* kBaseColumns = "base_exists, base_mode, base_size, base_mtime_ns, base_change, base_file_id";

void bind_base(Stmt& q, int first, const BaseVersion& b) {
    q.bind(first, b.exists ? 1 : 0).bind(first + 1, b.mode).bind(first + 2, std::int64_t(b.size))
        .bind(first + 3, b.mtime_ns).bind(first + 4, std::int64_t(b.change)).bind(first + 5, std::int64_t(b.file_id));
}

// The same as bind_attr would store.
bool same_attr(const Attr& a, const Attr& b) {
    return a.mode == b.mode && a.nlink == b.nlink && a.uid == b.uid && a.gid == b.gid && a.rdev == b.rdev &&
           a.size == b.size && a.blocks == b.blocks && ns(a.atime) == ns(b.atime) && ns(a.mtime) == ns(b.mtime) &&
           ns(a.ctime) == ns(b.ctime) && a.file_id == b.file_id && a.change == b.change;
}

bool same_base(const BaseVersion& a, const BaseVersion& b) {
    return a.exists == b.exists && a.mode == b.mode && a.size == b.size && a.mtime_ns == b.mtime_ns &&
           a.change == b.change && a.file_id == b.file_id;
}

BaseVersion read_base(Stmt& q, int first) {
    BaseVersion b;
    b.exists = q.col(first) != 0;
    b.mode = std::uint32_t(q.col(first + 1));
    b.size = std::uint64_t(q.col(first + 2));
    b.mtime_ns = q.col(first + 3);
    b.change = std::uint64_t(q.col(first + 4));
    b.file_id = std::uint64_t(q.col(first + 5));
    return b;
}

std::string sql(std::string text, const char* attr_cols = kAttrColumns) {
    for (std::size_t at; (at = text.find("@ATTR")) != std::string::npos;)
        text.replace(at, 5, attr_cols);
    for (std::size_t at; (at = text.find("@BASE")) != std::string::npos;)
        text.replace(at, 5, kBaseColumns);
    return text;
}

// SQL LIKE patterns are awkward with arbitrary names: "below dir" is a range
// of the byte order instead. Every path below "/a" sorts in ["/a/", "/a0").
std::pair<std::string, std::string> below(const std::string& dir) {
    if (dir == "/")
        return {"/", "0"};  // '0' follows '/'
    return {dir + "/", dir + "0"};
}

} // namespace

const char* op_name(OpKind kind) {
    switch (kind) {
    case OpKind::store: return "store";
    case OpKind::mkdir: return "mkdir";
    case OpKind::symlink: return "symlink";
    case OpKind::link: return "link";
    case OpKind::unlink: return "unlink";
    case OpKind::rmdir: return "rmdir";
    case OpKind::rename: return "rename";
    case OpKind::setattr: return "setattr";
    }
    return "?";
}

const char* conflict_name(ConflictKind kind) {
    switch (kind) {
    case ConflictKind::update_update: return "update/update";
    case ConflictKind::update_delete: return "update/delete";
    case ConflictKind::delete_update: return "delete/update";
    case ConflictKind::create_create: return "create/create";
    case ConflictKind::rename_taken: return "rename/taken";
    case ConflictKind::parent_removed: return "parent-removed";
    }
    return "?";
}

bool conflict_from_name(const std::string& name, ConflictKind& out) {
    for (auto k : {ConflictKind::update_update, ConflictKind::update_delete, ConflictKind::delete_update,
                   ConflictKind::create_create, ConflictKind::rename_taken, ConflictKind::parent_removed})
        if (name == conflict_name(k)) {
            out = k;
            return true;
        }
    return false;
}

BaseVersion BaseVersion::of(const Attr& a) {
    return {true, a.mode, a.size, ns(a.mtime), a.change, a.file_id};
}

bool BaseVersion::matches(const Attr& now) const {
    if (!exists || (now.mode & S_IFMT) != (mode & S_IFMT))
        return false;
    if (S_ISDIR(mode))
        return true;
    if (change != 0 && now.change != 0)
        return change == now.change;
    return size == now.size && mtime_ns == ns(now.mtime);
}

std::string parent_of(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

std::string base_name(const std::string& path) { return path.substr(path.rfind('/') + 1); }

std::string join_path(const std::string& dir, const std::string& name) {
    return dir == "/" ? "/" + name : dir + "/" + name;
}

bool is_under(const std::string& path, const std::string& dir) {
    if (dir == "/")
        return true;
    return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
}

struct Replica::Impl {
    sqlite3* db = nullptr;
    StmtCache statements{db};  // finalized after ~Impl closes db (sqlite3_close_v2 waits for them)
    // Recursive: a Transaction holds it while the calls inside it take it.
    std::recursive_mutex mu;
    int depth = 0;        // nested begin()s; the outermost one is SQLite's transaction
    bool doomed = false;  // an inner step failed: the outermost commit rolls back
    bool durable = true;  // the outermost transaction syncs at commit
    // When the oldest commit not yet synced was made (durable mode only;
    // zero: everything committed is on disk).
    std::chrono::steady_clock::time_point unsynced_since{};
    std::function<void()> before_sync;  // Replica::set_before_sync
    std::function<bool(const std::string&)> keep_name;  // Replica::set_keep_name
    bool kept(const std::string& path) const { return keep_name && keep_name(path); }
    bool relaxed_commit = false;        // the commit under way does not sync
    bool forced_sync = false;           // flush(): this commit syncs, in any mode

    // Before every commit: one that syncs the log must find the cache's
    // data synced already.
    static int on_commit(void* arg) {
        auto& s = *static_cast<Impl*>(arg);
        if (((s.durable && !s.relaxed_commit) || s.forced_sync) && s.before_sync)
            s.before_sync();
        return 0;
    }
    // Checkpoints (they sync the log) run here, after the cache's data,
    // instead of SQLite's automatic ones.
    static int on_wal(void* arg, sqlite3* db, const char* name, int frames) {
        auto& s = *static_cast<Impl*>(arg);
        if (wal_checkpoint_due(frames, s.checkpointed_at)) {
            if (s.before_sync)
                s.before_sync();
            sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
        }
        return SQLITE_OK;
    }
    int checkpointed_at = 0;  // the log's length at the last checkpoint

    // Operations a reintegration pass has read and may be applying: they
    // are not rewritten (a pass records an operation as applied by its
    // seq, and would drop a rewritten row with what was added to it).
    std::int64_t frozen_through = 0;

    bool begin() { return depth++ > 0 || run("BEGIN IMMEDIATE"); }
    bool commit() {
        if (--depth > 0)
            return !doomed;
        const bool ok = !doomed && run("COMMIT");
        if (!ok)
            run("ROLLBACK");
        doomed = false;
        return ok;
    }
    void rollback() {
        if (--depth > 0) {
            doomed = true;
            return;
        }
        run("ROLLBACK");
        doomed = false;
    }

    ~Impl() { sqlite3_close_v2(db); }

    bool exec(const char* text) {
        char* error = nullptr;
        if (sqlite3_exec(db, text, nullptr, nullptr, &error) != SQLITE_OK) {
            LOG_ERROR("replica database: %s (%s)", error ? error : "?", text);
            sqlite3_free(error);
            return false;
        }
        return true;
    }
    // A statement of every transaction, prepared once (not a PRAGMA that
    // sets something: SQLite applies those while preparing).
    bool run(const char* text) {
        Stmt q = prepare(text);
        const int rc = q.ok() ? q.step() : SQLITE_ERROR;
        if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
            LOG_ERROR("replica database: %s (%s)", sqlite3_errmsg(db), text);
            return false;
        }
        return true;
    }
    Stmt prepare(const std::string& text) {
        Stmt q = statements.get(text);
        if (!q.ok())  // a bug, not a condition: say where
            LOG_ERROR("replica database: %s in: %s", sqlite3_errmsg(db), text.c_str());
        return q;
    }

    std::int64_t new_object(const BaseVersion& base) {
        Stmt q = prepare(sql("INSERT INTO replica_objects(@BASE) VALUES(?1, ?2, ?3, ?4, ?5, ?6)"));
        bind_base(q, 1, base);
        q.run();
        return sqlite3_last_insert_rowid(db);
    }
    bool has_pending(std::int64_t oid) {
        Stmt q = prepare("SELECT 1 FROM oplog WHERE oid = ?1 LIMIT 1");
        q.bind(1, oid);
        return q.step() == SQLITE_ROW;
    }
    // Pending operations touching `path` or anything below it.
    bool has_pending_under(const std::string& path) {
        const auto [lo, hi] = below(path);
        Stmt q = prepare("SELECT 1 FROM oplog WHERE path = ?1 OR path2 = ?1 OR (path >= ?2 AND path < ?3)"
                         " OR (path2 >= ?2 AND path2 < ?3) LIMIT 1");
        q.bind(1, path).bind(2, lo).bind(3, hi);
        return q.step() == SQLITE_ROW;
    }
    std::optional<Name> name_locked(const std::string& path) {
        Stmt q = prepare(sql("SELECT oid, listed, target, @ATTR FROM replica_names WHERE path = ?1"));
        q.bind(1, path);
        if (q.step() != SQLITE_ROW)
            return std::nullopt;
        Name n;
        n.path = path;
        n.oid = q.col(0);
        n.listed = q.col(1) != 0;
        n.target = q.text(2);
        n.attr = read_attr(q, 3);
        return n;
    }
    // The name's object id.
    std::int64_t upsert_seen(const std::string& path, const Attr& attr, const std::string& target) {
        auto existing = name_locked(path);
        if (existing && has_pending(existing->oid))
            return existing->oid;  // the local view wins until reintegrated
        if (!existing) {
            // Moved or removed here, not reintegrated yet: a listing or a
            // stat that started before that change would bring it back.
            Stmt q = prepare("SELECT 1 FROM oplog WHERE path = ?1 OR path2 = ?1 LIMIT 1");
            q.bind(1, path);
            if (q.step() == SQLITE_ROW)
                return 0;
        }
        if (existing && same_attr(existing->attr, attr) && existing->target == target) {
            // Seen as before (every open and stat online says so): nothing
            // to write, unless the base moved on its own (reintegration).
            Stmt b = prepare(sql("SELECT @BASE FROM replica_objects WHERE oid = ?1"));
            b.bind(1, existing->oid);
            if (b.step() == SQLITE_ROW && same_base(read_base(b, 0), BaseVersion::of(attr)))
                return existing->oid;
        }
        if (existing) {
            Stmt q = prepare(sql("UPDATE replica_names SET (@ATTR) = (?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13),"
                                 " target = ?14 WHERE path = ?1"));
            q.bind(1, path);
            bind_attr(q, 2, attr);
            q.bind(14, target);
            q.run();
            Stmt b = prepare(sql("UPDATE replica_objects SET (@BASE) = (?2, ?3, ?4, ?5, ?6, ?7) WHERE oid = ?1"));
            b.bind(1, existing->oid);
            bind_base(b, 2, BaseVersion::of(attr));
            b.run();
            if (!S_ISDIR(attr.mode) && S_ISDIR(existing->attr.mode))
                remove_under(path, false);
            return existing->oid;
        }
        const std::int64_t oid = new_object(BaseVersion::of(attr));
        Stmt q = prepare(sql("INSERT INTO replica_names(path, parent, oid, target, @ATTR)"
                             " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"));
        q.bind(1, path).bind(2, path == "/" ? std::string() : parent_of(path)).bind(3, oid).bind(4, target);
        bind_attr(q, 5, attr);
        q.run();
        return oid;
    }
    // Removes `path` (with `self`) and every name below it.
    void remove_under(const std::string& path, bool self) {
        const auto [lo, hi] = below(path);
        Stmt q = prepare("DELETE FROM replica_names WHERE (path = ?1 AND ?4) OR (path >= ?2 AND path < ?3)");
        q.bind(1, path).bind(2, lo).bind(3, hi).bind(4, self ? 1 : 0);
        q.run();
        exec("DELETE FROM replica_objects WHERE oid NOT IN (SELECT oid FROM replica_names) AND oid NOT IN (SELECT oid FROM oplog)"
             " AND content = 0");
    }
    void move_locked(const std::string& from, const std::string& to) {
        remove_under(to, true);
        // Children first; their parent column moves with them.
        const auto [lo, hi] = below(from);
        Stmt kids = prepare("UPDATE replica_names SET path = ?4 || substr(path, ?5), parent = ?4 || substr(parent, ?5)"
                            " WHERE path >= ?2 AND path < ?3");
        kids.bind(2, lo).bind(3, hi).bind(4, to).bind(5, std::int64_t(from.size() + 1));
        kids.run();
        Stmt self = prepare("UPDATE replica_names SET path = ?2, parent = ?3 WHERE path = ?1");
        self.bind(1, from).bind(2, to).bind(3, parent_of(to));
        self.run();
    }
};

std::unique_ptr<Replica> Replica::open(const std::string& db_path, std::string& message) {
    std::unique_ptr<Replica> out(new Replica);
    out->impl_ = std::make_unique<Impl>();
    Impl& s = *out->impl_;
    if (sqlite3_open_v2(db_path.c_str(), &s.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        "unix-excl") != SQLITE_OK) {  // the cache's database: see CacheStore::open
        message = "cannot open the replica in " + db_path + ": " + sqlite3_errmsg(s.db);
        return nullptr;
    }
    wait_when_busy(s.db, std::chrono::seconds(10));
    sqlite3_commit_hook(s.db, &Impl::on_commit, &s);
    sqlite3_wal_hook(s.db, &Impl::on_wal, &s);
    if (!s.exec(("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                 "CREATE TABLE IF NOT EXISTS replica_names(path TEXT PRIMARY KEY, parent TEXT NOT NULL, oid INTEGER NOT NULL,"
                 " listed INTEGER NOT NULL DEFAULT 0, target TEXT NOT NULL DEFAULT '', " +
                 std::string(kAttrColumns) +
                 ");"
                 "CREATE INDEX IF NOT EXISTS names_parent ON replica_names(parent);"
                 "CREATE INDEX IF NOT EXISTS names_oid ON replica_names(oid);"
                 "CREATE TABLE IF NOT EXISTS replica_objects(oid INTEGER PRIMARY KEY, " +
                 std::string(kBaseColumns) +
                 ", content INTEGER NOT NULL DEFAULT 0, content_gen INTEGER NOT NULL DEFAULT 0);"
                 "CREATE TABLE IF NOT EXISTS oplog(seq INTEGER PRIMARY KEY AUTOINCREMENT, kind INTEGER NOT NULL,"
                 " oid INTEGER NOT NULL, path TEXT NOT NULL, path2 TEXT NOT NULL DEFAULT '', mode INTEGER NOT NULL DEFAULT 0,"
                 " mask INTEGER NOT NULL DEFAULT 0, uid INTEGER, gid INTEGER, atime_ns INTEGER, mtime_ns INTEGER, " +
                 kBaseColumns +
                 ", b2_exists, b2_mode, b2_size, b2_mtime_ns, b2_change, b2_file_id);"
                 "CREATE INDEX IF NOT EXISTS oplog_oid ON oplog(oid);"
                 "CREATE TABLE IF NOT EXISTS conflicts(id INTEGER PRIMARY KEY, kind TEXT NOT NULL, path TEXT NOT NULL,"
                 " copy TEXT NOT NULL, local_size INTEGER, local_mtime_ns INTEGER, remote_exists INTEGER,"
                 " remote_size INTEGER, remote_mtime_ns INTEGER, ops TEXT, detected_ns INTEGER);"
                 "CREATE TABLE IF NOT EXISTS pins(path TEXT PRIMARY KEY);"
                 "CREATE TABLE IF NOT EXISTS uploads(path TEXT PRIMARY KEY);"
                 "CREATE TABLE IF NOT EXISTS flushes(n INTEGER NOT NULL);"
                 "INSERT INTO flushes(n) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM flushes);")
                    .c_str())) {
        message = "the replica tables in " + db_path + " cannot be made: " + sqlite3_errmsg(s.db);
        return nullptr;
    }
    return out;
}

Replica::~Replica() = default;

void Replica::set_durable(bool durable) {
    std::lock_guard lock(impl_->mu);
    impl_->durable = durable;
    impl_->exec(durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
}

Replica::Transaction::Transaction(Replica& replica, bool durable) : replica_(replica), lock_(replica.impl_->mu) {
    Impl& s = *replica_.impl_;
    outermost_ = s.depth == 0;
    relaxed_ = outermost_ && !durable && s.durable;
    if (relaxed_) {
        s.exec("PRAGMA synchronous=NORMAL");
        s.relaxed_commit = true;
    }
    s.begin();
}

Replica::Transaction::~Transaction() { commit(); }

Errc Replica::Transaction::commit() {
    if (!open_)
        return Errc::ok;
    open_ = false;
    Impl& s = *replica_.impl_;
    const bool ok = s.commit();
    if (relaxed_) {
        s.relaxed_commit = false;
        s.exec("PRAGMA synchronous=FULL");
        if (ok && s.unsynced_since == std::chrono::steady_clock::time_point{})
            s.unsynced_since = std::chrono::steady_clock::now();
    } else if (ok && outermost_ && s.durable) {
        s.unsynced_since = {};  // a synced commit syncs every one before it
    }
    return ok ? Errc::ok : Errc::io;
}

Errc Replica::Transaction::finish(Errc outcome) {
    if (outcome == Errc::ok)
        return commit();
    if (open_) {
        open_ = false;
        Impl& s = *replica_.impl_;
        s.rollback();
        if (relaxed_) {
            s.relaxed_commit = false;
            s.exec("PRAGMA synchronous=FULL");
        }
    }
    return outcome;
}

Errc Replica::flush() {
    Impl& s = *impl_;
    std::lock_guard lock(s.mu);
    // A synced commit syncs the write-ahead log, with every commit before it.
    if (!s.durable)
        s.exec("PRAGMA synchronous=FULL");
    s.forced_sync = true;
    const bool ok = s.exec("UPDATE flushes SET n = n + 1");
    s.forced_sync = false;
    if (!s.durable)
        s.exec("PRAGMA synchronous=NORMAL");
    if (ok)
        s.unsynced_since = {};
    return ok ? Errc::ok : Errc::io;
}

void Replica::set_keep_name(std::function<bool(const std::string&)> keep_name) {
    std::lock_guard lock(impl_->mu);
    impl_->keep_name = std::move(keep_name);
}

void Replica::set_before_sync(std::function<void()> before_sync) {
    std::lock_guard lock(impl_->mu);
    impl_->before_sync = std::move(before_sync);
}

Errc Replica::flush_older_than(std::chrono::milliseconds age) {
    {
        std::lock_guard lock(impl_->mu);
        const auto since = impl_->unsynced_since;
        if (since == std::chrono::steady_clock::time_point{} || std::chrono::steady_clock::now() - since < age)
            return Errc::ok;
    }
    return flush();
}

std::int64_t Replica::saw(const std::string& path, const Attr& attr, const std::string& target) {
    std::lock_guard lock(impl_->mu);
    return impl_->upsert_seen(path, attr, target);
}

void Replica::saw_listing(const std::string& dir, const std::vector<DirEntry>& entries) {
    Impl& s = *impl_;
    std::lock_guard lock(s.mu);
    s.begin();
    std::vector<std::string> present;
    {
        Stmt q = s.prepare("SELECT path FROM replica_names WHERE parent = ?1");
        q.bind(1, dir);
        while (q.step() == SQLITE_ROW)
            present.push_back(q.text(0));
    }
    std::vector<std::string> listed;
    listed.reserve(entries.size());
    for (const DirEntry& e : entries) {
        listed.push_back(join_path(dir, e.name));
        s.upsert_seen(listed.back(), e.attr, {});
    }
    std::sort(listed.begin(), listed.end());
    for (const std::string& p : present)
        if (!std::binary_search(listed.begin(), listed.end(), p) && !s.has_pending_under(p) && !s.kept(p))
            s.remove_under(p, true);
    Stmt mark = s.prepare("UPDATE replica_names SET listed = 1 WHERE path = ?1");
    mark.bind(1, dir).run();
    s.commit();
}

void Replica::saw_gone(const std::string& path) {
    Impl& s = *impl_;
    std::lock_guard lock(s.mu);
    // A file set aside while disconnected is not on the server (its
    // removal was sent): its handles keep it here until the last close.
    if (!s.has_pending_under(path) && !s.kept(path))
        s.remove_under(path, true);
}

void Replica::saw_rename(const std::string& from, const std::string& to) {
    std::lock_guard lock(impl_->mu);
    impl_->begin();
    impl_->move_locked(from, to);
    impl_->commit();
}

void Replica::saw_target(const std::string& path, const std::string& target) {
    std::lock_guard lock(impl_->mu);
    Stmt q = impl_->prepare("UPDATE replica_names SET target = ?2 WHERE path = ?1");
    q.bind(1, path).bind(2, target).run();
}

std::int64_t Replica::new_object(const BaseVersion& base) {
    std::lock_guard lock(impl_->mu);
    return impl_->new_object(base);
}

std::optional<Name> Replica::name(const std::string& path) {
    std::lock_guard lock(impl_->mu);
    return impl_->name_locked(path);
}

std::vector<Name> Replica::children(const std::string& dir) {
    std::lock_guard lock(impl_->mu);
    Stmt q = impl_->prepare(sql("SELECT path, oid, listed, target, @ATTR FROM replica_names WHERE parent = ?1 ORDER BY path"));
    q.bind(1, dir);
    std::vector<Name> out;
    while (q.step() == SQLITE_ROW) {
        Name n;
        n.path = q.text(0);
        n.oid = q.col(1);
        n.listed = q.col(2) != 0;
        n.target = q.text(3);
        n.attr = read_attr(q, 4);
        out.push_back(std::move(n));
    }
    return out;
}

std::optional<LocalObject> Replica::object(std::int64_t oid) {
    std::lock_guard lock(impl_->mu);
    Stmt q = impl_->prepare(sql("SELECT content, content_gen, @BASE FROM replica_objects WHERE oid = ?1"));
    q.bind(1, oid);
    if (q.step() != SQLITE_ROW)
        return std::nullopt;
    LocalObject o;
    o.oid = oid;
    o.content = std::uint64_t(q.col(0));
    o.content_gen = std::uint64_t(q.col(1));
    o.base = read_base(q, 2);
    return o;
}

std::vector<std::string> Replica::paths_of(std::int64_t oid) {
    std::lock_guard lock(impl_->mu);
    Stmt q = impl_->prepare("SELECT path FROM replica_names WHERE oid = ?1 ORDER BY path");
    q.bind(1, oid);
    std::vector<std::string> out;
    while (q.step() == SQLITE_ROW)
        out.push_back(q.text(0));
    return out;
}

Errc Replica::add_name(const std::string& path, const Attr& attr, const std::string& target, bool created,
                       std::int64_t oid) {
    Impl& s = *impl_;
    std::lock_guard lock(s.mu);
    if (s.name_locked(path))
        return Errc::exists;
    Stmt q = s.prepare(sql("INSERT INTO replica_names(path, parent, oid, target, listed, @ATTR)"
                           " VALUES(?1, ?2, ?3, ?4, ?17, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"));
    q.bind(1, path).bind(2, parent_of(path)).bind(3, oid).bind(4, target);
    bind_attr(q, 5, attr);
    q.bind(17, S_ISDIR(attr.mode) && created ? 1 : 0);  // a new directory's listing is complete: it is empty
    return q.run() ? Errc::ok : Errc::io;
}

Errc Replica::set_attr(const std::string& path, const Attr& attr) {
    std::lock_guard lock(impl_->mu);
    Stmt q = impl_->prepare(sql("UPDATE replica_names SET (@ATTR) = (?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                                " WHERE oid = (SELECT oid FROM replica_names WHERE path = ?1)"));
    q.bind(1, path);
    bind_attr(q, 2, attr);
    return q.run() ? Errc::ok : Errc::io;
}

Errc Replica::remove_name(const std::string& path) {
    std::lock_guard lock(impl_->mu);
    impl_->begin();
    impl_->remove_under(path, true);
    return impl_->commit() ? Errc::ok : Errc::io;
}

Errc Replica::move_name(const std::string& from, const std::string& to) {
    std::lock_guard lock(impl_->mu);
    impl_->begin();
    impl_->move_locked(from, to);
    return impl_->commit() ? Errc::ok : Errc::io;
}

namespace {

void bind_op(Stmt& q, const LoggedOp& op) {
    q.bind(1, std::int64_t(op.kind)).bind(2, op.oid).bind(3, op.path).bind(4, op.path2).bind(5, op.mode)
        .bind(6, op.attrs.mask).bind(7, op.attrs.uid).bind(8, op.attrs.gid).bind(9, ns(op.attrs.atime))
        .bind(10, ns(op.attrs.mtime));
    bind_base(q, 11, op.base);
    bind_base(q, 17, op.base2);
}

LoggedOp read_op(Stmt& q) {
    LoggedOp op;
    op.seq = q.col(0);
    op.kind = OpKind(q.col(1));
    op.oid = q.col(2);
    op.path = q.text(3);
    op.path2 = q.text(4);
    op.mode = std::uint32_t(q.col(5));
    op.attrs.mask = std::uint32_t(q.col(6));
    op.attrs.mode = op.mode;
    op.attrs.uid = std::uint32_t(q.col(7));
    op.attrs.gid = std::uint32_t(q.col(8));
    op.attrs.atime = ts(q.col(9));
    op.attrs.mtime = ts(q.col(10));
    op.base = read_base(q, 11);
    op.base2 = read_base(q, 17);
    return op;
}

constexpr const char* kOpColumns =
    "seq, kind, oid, path, path2, mode, mask, uid, gid, atime_ns, mtime_ns, " 
    "base_exists, base_mode, base_size, base_mtime_ns, base_change, base_file_id, "
    "b2_exists, b2_mode, b2_size, b2_mtime_ns, b2_change, b2_file_id";

} // namespace

Errc Replica::append(LoggedOp op) {
    Impl& s = *impl_;
    std::lock_guard lock(s.mu);
    s.begin();
    // The log is optimised as it grows (Coda's log optimisations): only
    // what reintegration needs is kept.
    auto last_for = [&](std::int64_t oid) -> std::optional<LoggedOp> {
        Stmt q = s.prepare(std::string("SELECT ") + kOpColumns + " FROM oplog WHERE oid = ?1 ORDER BY seq DESC LIMIT 1");
        q.bind(1, oid);
        if (q.step() != SQLITE_ROW)
            return std::nullopt;
        return read_op(q);
    };
    auto created_here = [&](std::int64_t oid) {
        // Made while disconnected and not on the server yet: its first op
        // creates it (a store, mkdir or symlink with no base).
        Stmt q = s.prepare("SELECT 1 FROM oplog WHERE oid = ?1 AND base_exists = 0 AND kind IN (?2, ?3, ?4) LIMIT 1");
        q.bind(1, oid).bind(2, std::int64_t(OpKind::store)).bind(3, std::int64_t(OpKind::mkdir))
            .bind(4, std::int64_t(OpKind::symlink));
        return q.step() == SQLITE_ROW;
    };
    // (Logged before the name goes: `path` is the one being removed.)
    auto has_other_names = [&](std::int64_t oid, const std::string& path) {
        Stmt q = s.prepare("SELECT 1 FROM replica_names WHERE oid = ?1 AND path != ?2 LIMIT 1");
        q.bind(1, oid).bind(2, path);
        return q.step() == SQLITE_ROW;
    };
    auto drop_ops_of = [&](std::int64_t oid, std::initializer_list<OpKind> kinds) {
        for (OpKind k : kinds) {
            Stmt q = s.prepare("DELETE FROM oplog WHERE oid = ?1 AND kind = ?2");
            q.bind(1, oid).bind(2, std::int64_t(k)).run();
        }
    };
    bool add = true;
    switch (op.kind) {
    case OpKind::store: {
        // A store carries the file's whole local content as it is at
        // reintegration: one pending store per file is enough.
        Stmt q = s.prepare("SELECT 1 FROM oplog WHERE oid = ?1 AND kind = ?2");
        q.bind(1, op.oid).bind(2, std::int64_t(OpKind::store));
        add = q.step() != SQLITE_ROW;
        break;
    }
    case OpKind::unlink:
    case OpKind::rmdir:
        if (has_other_names(op.oid, op.path)) {
            // One of its hard links: the file lives on under the others, with
            // its content and attributes (git writes an object to a
            // temporary name, links it to its own and unlinks the first).
            break;
        }
        if (created_here(op.oid)) {
            // Created and removed while disconnected: the server never needs
            // to hear of it, nor of its links, all gone with it. (A file the
            // server has that it replaced by a rename has an unlink of its own.)
            Stmt q = s.prepare("DELETE FROM oplog WHERE oid = ?1");
            q.bind(1, op.oid).run();
            add = false;
        } else {
            drop_ops_of(op.oid, {OpKind::store, OpKind::setattr});
            // Moved aside and then removed, with nothing of it in between (a
            // save by vim: NAME to NAME~, a new NAME, NAME~ removed): the
            // server's file is removed where it is there, before anything
            // takes its name, so that a new file there replaces it (and, if
            // the server changed it meanwhile, it stays at its own name).
            // The row keeps the rename's target in path2: a pass that sent
            // the rename and stopped before recording it left the file there.
            if (auto last = last_for(op.oid); op.kind == OpKind::unlink && last && last->kind == OpKind::rename &&
                                              last->path2 == op.path && !last->base2.exists &&
                                              last->seq > s.frozen_through) {
                Stmt u = s.prepare("UPDATE oplog SET kind = ?2 WHERE seq = ?1");
                u.bind(1, last->seq).bind(2, std::int64_t(OpKind::unlink)).run();
                add = false;
            }
        }
        break;
    case OpKind::rename: {
        // mv a b; mv b c: one rename a -> c, when nothing came between.
        Stmt q = s.prepare(std::string("SELECT ") + kOpColumns + " FROM oplog ORDER BY seq DESC LIMIT 1");
        if (q.step() == SQLITE_ROW) {
            LoggedOp last = read_op(q);
            q.reset();
            if (last.kind == OpKind::rename && last.oid == op.oid && last.path2 == op.path && !op.base2.exists &&
                !last.base2.exists && last.seq > s.frozen_through) {
                if (last.path == op.path2) {
                    Stmt d = s.prepare("DELETE FROM oplog WHERE seq = ?1");  // moved back: nothing happened
                    d.bind(1, last.seq).run();
                } else {
                    Stmt u = s.prepare("UPDATE oplog SET path2 = ?2 WHERE seq = ?1");
                    u.bind(1, last.seq).bind(2, op.path2).run();
                }
                add = false;
            }
        }
        break;
    }
    case OpKind::setattr: {
        // Repeated chmod/utimens: the last values of each field win.
        if (auto last = last_for(op.oid); last && last->kind == OpKind::setattr && last->seq > s.frozen_through) {
            SetAttr merged = last->attrs;
            const std::uint32_t m = op.attrs.mask;
            if (m & SetAttr::kMode)
                merged.mode = op.attrs.mode;
            if (m & SetAttr::kUid)
                merged.uid = op.attrs.uid;
            if (m & SetAttr::kGid)
                merged.gid = op.attrs.gid;
            if (m & (SetAttr::kAtime | SetAttr::kAtimeNow)) {
                merged.mask &= ~(SetAttr::kAtime | SetAttr::kAtimeNow);
                merged.atime = op.attrs.atime;
            }
            if (m & (SetAttr::kMtime | SetAttr::kMtimeNow)) {
                merged.mask &= ~(SetAttr::kMtime | SetAttr::kMtimeNow);
                merged.mtime = op.attrs.mtime;
            }
            merged.mask |= m;
            Stmt u = s.prepare("UPDATE oplog SET mask = ?2, mode = ?3, uid = ?4, gid = ?5, atime_ns = ?6, mtime_ns = ?7"
                               " WHERE seq = ?1");
            u.bind(1, last->seq).bind(2, merged.mask).bind(3, merged.mode).bind(4, merged.uid).bind(5, merged.gid)
                .bind(6, ns(merged.atime)).bind(7, ns(merged.mtime)).run();
            add = false;
        }
        if (op.attrs.mask & SetAttr::kMode)
            op.mode = op.attrs.mode;
        break;
    }
    default:
        break;
    }
    if (add) {
        Stmt q = s.prepare(std::string("INSERT INTO oplog(") + (kOpColumns + 5) +
                           ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,"
                           " ?17, ?18, ?19, ?20, ?21, ?22)");
        bind_op(q, op);
        if (!q.run()) {
            s.rollback();
            return Errc::io;
        }
    }
    return s.commit() ? Errc::ok : Errc::io;
}

void Replica::freeze_through(std::int64_t seq) {
    std::lock_guard lock(impl_->mu);
    impl_->frozen_through = seq;
}

Errc Replica::set_content(std::int64_t oid, std::uint64_t content) {
    std::lock_guard lock(impl_->mu);
    Stmt q = impl_->prepare("UPDATE replica_objects SET content = ?2, content_gen = content_gen + 1 WHERE oid = ?1");
    return q.bind(1, oid).bind(2, std::int64_t(content)).run() ? Errc::ok : Errc::io;
}

Errc Replica::bump_content(std::int64_t oid) {
    std::lock_guard lock(impl_->mu);
    Stmt q = impl_->prepare("UPDATE replica_objects SET content_gen = content_gen + 1 WHERE oid = ?1");
    return q.bind(1, oid).run() ? Errc::ok : Errc::io;
}

std::vector<LoggedOp> Replica::pending(std::size_t limit, bool freeze) {
    std::lock_guard lock(impl_->mu);
    Stmt q = impl_->prepare(std::string("SELECT ") + kOpColumns + " FROM oplog ORDER BY seq LIMIT ?1");
    q.bind(1, limit == SIZE_MAX ? std::int64_t(-1) : std::int64_t(limit));
    std::vector<LoggedOp> out;
    while (q.step() == SQLITE_ROW)
        out.push_back(read_op(q));
    if (freeze && !out.empty())
        impl_->frozen_through = out.back().seq;  // read and frozen in one step: no append between
    return out;
}

std::uint64_t Replica::pending_count() {
    std::lock_guard lock(impl_->mu);
    Stmt q = impl_->prepare("SELECT count(*) FROM oplog");
    return q.step() == SQLITE_ROW ? std::uint64_t(q.col(0)) : 0;
}

std::uint64_t Replica::pending_for(std::int64_t oid) {
    std::lock_guard lock(impl_->mu);
    Stmt q = impl_->prepare("SELECT count(*) FROM oplog WHERE oid = ?1");
    q.bind(1, oid);
    return q.step() == SQLITE_ROW ? std::uint64_t(q.col(0)) : 0;
}

Errc Replica::applied(std::int64_t seq, std::int64_t oid, const BaseVersion& now) {
    Impl& s = *impl_;
    std::lock_guard lock(s.mu);
    s.begin();
    Stmt d = s.prepare("DELETE FROM oplog WHERE seq = ?1");
    d.bind(1, seq).run();
    Stmt b = s.prepare(sql("UPDATE replica_objects SET (@BASE) = (?2, ?3, ?4, ?5, ?6, ?7) WHERE oid = ?1"));
    b.bind(1, oid);
    bind_base(b, 2, now);
    b.run();
    return s.commit() ? Errc::ok : Errc::io;
}

Errc Replica::set_base(std::int64_t oid, const BaseVersion& now) {
    std::lock_guard lock(impl_->mu);
    Stmt b = impl_->prepare(sql("UPDATE replica_objects SET (@BASE) = (?2, ?3, ?4, ?5, ?6, ?7) WHERE oid = ?1"));
    b.bind(1, oid);
    bind_base(b, 2, now);
    return b.run() ? Errc::ok : Errc::io;
}

Errc Replica::repath_pending(std::int64_t oid, const std::string& from, const std::string& to) {
    Impl& s = *impl_;
    std::lock_guard lock(s.mu);
    s.begin();
    const auto [lo, hi] = below(from);
    // Its own operations at the name, and everything below it (its
    // contents, whoever they are); other objects' operations at the name
    // itself mean the name, which the server's object holds now.
    for (const char* col : {"path", "path2"}) {
        Stmt q = s.prepare(std::string("UPDATE oplog SET ") + col + " = ?4 || substr(" + col + ", ?5) WHERE (" + col +
                           " = ?1 AND oid = ?6) OR (" + col + " >= ?2 AND " + col + " < ?3)");
        q.bind(1, from).bind(2, lo).bind(3, hi).bind(4, to).bind(5, std::int64_t(from.size() + 1)).bind(6, oid).run();
    }
    if (auto n = s.name_locked(from); n && n->oid == oid && !s.name_locked(to))
        s.move_locked(from, to);
    return s.commit() ? Errc::ok : Errc::io;
}

Errc Replica::copy_moved(const std::string& from, const std::string& to) {
    std::lock_guard lock(impl_->mu);
    const auto [lo, hi] = below(from);
    Stmt q = impl_->prepare("UPDATE conflicts SET copy = ?4 || substr(copy, ?5) WHERE copy = ?1 OR (copy >= ?2 AND copy < ?3)");
    return q.bind(1, from).bind(2, lo).bind(3, hi).bind(4, to).bind(5, std::int64_t(from.size() + 1)).run() ? Errc::ok
                                                                                                            : Errc::io;
}

Errc Replica::copy_removed(const std::string& path) {
    std::lock_guard lock(impl_->mu);
    const auto [lo, hi] = below(path);
    Stmt q = impl_->prepare("DELETE FROM conflicts WHERE copy != '' AND (copy = ?1 OR (copy >= ?2 AND copy < ?3))");
    return q.bind(1, path).bind(2, lo).bind(3, hi).run() ? Errc::ok : Errc::io;
}

Errc Replica::note_upload(const std::string& path) {
    std::lock_guard lock(impl_->mu);
    Stmt q = impl_->prepare("INSERT OR IGNORE INTO uploads(path) VALUES(?1)");
    return q.bind(1, path).run() ? Errc::ok : Errc::io;
}

Errc Replica::upload_done(const std::string& path) {
    std::lock_guard lock(impl_->mu);
    Stmt q = impl_->prepare("DELETE FROM uploads WHERE path = ?1");
    return q.bind(1, path).run() ? Errc::ok : Errc::io;
}

std::vector<std::string> Replica::uploads() {
    std::lock_guard lock(impl_->mu);
    Stmt q = impl_->prepare("SELECT path FROM uploads ORDER BY path");
    std::vector<std::string> out;
    while (q.step() == SQLITE_ROW)
        out.push_back(q.text(0));
    return out;
}

Errc Replica::add_conflict(Conflict& c) {
    std::lock_guard lock(impl_->mu);
    Stmt q = impl_->prepare("INSERT INTO conflicts(kind, path, copy, local_size, local_mtime_ns, remote_exists,"
                            " remote_size, remote_mtime_ns, ops, detected_ns) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
    c.detected_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::system_clock::now().time_since_epoch()).count();
    q.bind(1, std::string(conflict_name(c.kind))).bind(2, c.path).bind(3, c.copy).bind(4, std::int64_t(c.local_size))
        .bind(5, c.local_mtime_ns).bind(6, c.remote_exists ? 1 : 0).bind(7, std::int64_t(c.remote_size))
        .bind(8, c.remote_mtime_ns).bind(9, c.ops).bind(10, c.detected_ns);
    if (!q.run())
        return Errc::io;
    c.id = sqlite3_last_insert_rowid(impl_->db);
    return Errc::ok;
}

std::vector<Conflict> Replica::conflicts() {
    std::lock_guard lock(impl_->mu);
    Stmt q = impl_->prepare("SELECT id, kind, path, copy, local_size, local_mtime_ns, remote_exists, remote_size,"
                            " remote_mtime_ns, ops, detected_ns FROM conflicts ORDER BY id");
    std::vector<Conflict> out;
    while (q.step() == SQLITE_ROW) {
        Conflict c;
        c.id = q.col(0);
        conflict_from_name(q.text(1), c.kind);
        c.path = q.text(2);
        c.copy = q.text(3);
        c.local_size = std::uint64_t(q.col(4));
        c.local_mtime_ns = q.col(5);
        c.remote_exists = q.col(6) != 0;
        c.remote_size = std::uint64_t(q.col(7));
        c.remote_mtime_ns = q.col(8);
        c.ops = q.text(9);
        c.detected_ns = q.col(10);
        out.push_back(std::move(c));
    }
    return out;
}

std::optional<Conflict> Replica::conflict_at(const std::string& path) {
    for (Conflict& c : conflicts())
        if (c.path == path || c.copy == path)
            return c;
    return std::nullopt;
}

Errc Replica::update_conflict(const Conflict& c) {
    std::lock_guard lock(impl_->mu);
    if (c.id == 0)
        return Errc::not_found;
    Stmt q = impl_->prepare("UPDATE conflicts SET kind = ?2, path = ?3, copy = ?4, local_size = ?5, local_mtime_ns = ?6,"
                            " remote_exists = ?7, remote_size = ?8, remote_mtime_ns = ?9, ops = ?10 WHERE id = ?1");
    q.bind(1, c.id).bind(2, std::string(conflict_name(c.kind))).bind(3, c.path).bind(4, c.copy)
        .bind(5, std::int64_t(c.local_size)).bind(6, c.local_mtime_ns).bind(7, c.remote_exists ? 1 : 0)
        .bind(8, std::int64_t(c.remote_size)).bind(9, c.remote_mtime_ns).bind(10, c.ops);
    if (!q.run())
        return Errc::io;
    return sqlite3_changes(impl_->db) ? Errc::ok : Errc::not_found;  // resolved meanwhile
}

Errc Replica::remove_conflict(std::int64_t id) {
    std::lock_guard lock(impl_->mu);
    Stmt q = impl_->prepare("DELETE FROM conflicts WHERE id = ?1");
    return q.bind(1, id).run() ? Errc::ok : Errc::io;
}

Errc Replica::set_pin(const std::string& path, bool pinned) {
    std::lock_guard lock(impl_->mu);
    Stmt q = impl_->prepare(pinned ? "INSERT OR IGNORE INTO pins(path) VALUES(?1)" : "DELETE FROM pins WHERE path = ?1");
    return q.bind(1, path).run() ? Errc::ok : Errc::io;
}

std::vector<std::string> Replica::pins() {
    std::lock_guard lock(impl_->mu);
    Stmt q = impl_->prepare("SELECT path FROM pins ORDER BY path");
    std::vector<std::string> out;
    while (q.step() == SQLITE_ROW)
        out.push_back(q.text(0));
    return out;
}

bool Replica::is_pinned(const std::string& path) {
    for (const std::string& p : pins())
        if (is_under(path, p))
            return true;
    return false;
}

std::vector<LocalObject> Replica::content_not_needed(std::int64_t only) {
    std::lock_guard lock(impl_->mu);
    Stmt q = impl_->prepare(sql("SELECT oid, content, content_gen, @BASE FROM replica_objects WHERE content != 0 AND"
                                " (?1 = 0 OR oid = ?1) AND oid NOT IN (SELECT oid FROM oplog WHERE kind = " +
                                std::to_string(int(OpKind::store)) + ")"));
    q.bind(1, only);
    std::vector<LocalObject> out;
    while (q.step() == SQLITE_ROW) {
        LocalObject o;
        o.oid = q.col(0);
        o.content = std::uint64_t(q.col(1));
        o.content_gen = std::uint64_t(q.col(2));
        o.base = read_base(q, 3);
        out.push_back(o);
    }
    return out;
}

Errc Replica::clear_content(std::int64_t oid, std::uint64_t content) {
    std::lock_guard lock(impl_->mu);
    // Only while still not needed: a store logged since keeps it.
    Stmt q = impl_->prepare("UPDATE replica_objects SET content = 0 WHERE oid = ?1 AND content = ?2 AND oid NOT IN"
                            " (SELECT oid FROM oplog WHERE kind = " + std::to_string(int(OpKind::store)) + ")");
    if (!q.bind(1, oid).bind(2, std::int64_t(content)).run())
        return Errc::io;
    return sqlite3_changes(impl_->db) ? Errc::ok : Errc::busy;
}

} // namespace netfs
