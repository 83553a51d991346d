// A prepared SQLite statement that resets itself after use, and the wait
// for a busy database: what the cache's store and the sync component's log
// share (two connections to one database file).
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace netfs {

// When a connection's write-ahead log hook (sqlite3_wal_hook, which both
// connections use to sync the cache's data before a checkpoint syncs the
// log) should checkpoint. SQLite's automatic checkpoint runs at every
// commit once the log holds 1000 frames, and so syncs at every commit while
// a reader of the other connection keeps the log from starting over: one
// checkpoint per 1000 frames appended instead.
inline bool wal_checkpoint_due(int frames, int& checkpointed_at) {
    if (frames < checkpointed_at)
        checkpointed_at = 0;  // the log started over
    if (frames - checkpointed_at < 1000)
        return false;
    checkpointed_at = frames;
    return true;
}

// Waits for the other connection's write transaction for up to `timeout`.
// SQLite's own busy timeout sleeps at least a millisecond each time, and
// the store's and the log's transactions, which take tens of microseconds,
// meet on every offline write: polled every 20 microseconds at first, a
// wait costs what the other transaction takes, not a millisecond.
inline void wait_when_busy(sqlite3* db, std::chrono::milliseconds timeout) {
    sqlite3_busy_handler(
        db,
        [](void* arg, int attempt) -> int {
            thread_local std::chrono::steady_clock::time_point first;
            const auto now = std::chrono::steady_clock::now();
            if (attempt == 0)
                first = now;
            const auto limit = std::chrono::milliseconds(reinterpret_cast<std::intptr_t>(arg));
            if (now - first >= limit)
                return 0;  // SQLITE_BUSY to the caller
            std::this_thread::sleep_for(attempt < 100 ? std::chrono::microseconds(20)
                                                      : std::chrono::microseconds(1000));
            return 1;
        },
        reinterpret_cast<void*>(static_cast<std::intptr_t>(timeout.count())));
}

// A prepared statement that resets itself after use.
class Stmt {
public:
    Stmt() = default;
    Stmt(sqlite3* db, const char* sql) {
        if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s_, nullptr) != SQLITE_OK)
            s_ = nullptr;
    }
    ~Stmt() { release(); }
    Stmt(Stmt&& o) noexcept : s_(std::exchange(o.s_, nullptr)), lent_(std::exchange(o.lent_, nullptr)) {}
    Stmt& operator=(Stmt&& o) noexcept {
        std::swap(s_, o.s_);
        std::swap(lent_, o.lent_);
        return *this;
    }
    bool ok() const { return s_ != nullptr; }
    Stmt& bind(int i, std::int64_t v) {
        sqlite3_bind_int64(s_, i, v);
        return *this;
    }
    Stmt& bind(int i, const std::string& v) {
        sqlite3_bind_text(s_, i, v.data(), int(v.size()), SQLITE_TRANSIENT);
        return *this;
    }
    Stmt& bind_blob(int i, const void* p, int n) {
        sqlite3_bind_blob(s_, i, p, n, SQLITE_TRANSIENT);
        return *this;
    }
    // SQLITE_ROW, SQLITE_DONE or an error.
    int step() { return sqlite3_step(s_); }
    std::int64_t col(int i) { return sqlite3_column_int64(s_, i); }
    std::string text(int i) {
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, i));
        return p ? std::string(p, std::size_t(sqlite3_column_bytes(s_, i))) : std::string();
    }
    bool is_null(int i) { return sqlite3_column_type(s_, i) == SQLITE_NULL; }
    std::vector<std::uint8_t> blob(int i) {
        auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(s_, i));
        return {p, p + sqlite3_column_bytes(s_, i)};
    }
    // Column i's blob into `out`, resized to it.
    void copy_blob(int i, std::vector<std::byte>& out) {
        const auto* p = static_cast<const std::byte*>(sqlite3_column_blob(s_, i));
        out.assign(p, p + sqlite3_column_bytes(s_, i));
    }
    void reset() {
        sqlite3_reset(s_);
        sqlite3_clear_bindings(s_);
    }
    // Runs to completion; true on SQLITE_DONE.
    bool run() {
        const int rc = step();
        reset();
        return rc == SQLITE_DONE;
    }

private:
    friend class StmtCache;
    // Finalized, or handed back to the StmtCache that lent it.
    void release() {
        if (lent_) {
            reset();
            *lent_ = false;
        } else {
            sqlite3_finalize(s_);
        }
        s_ = nullptr;
        lent_ = nullptr;
    }

    sqlite3_stmt* s_ = nullptr;
    bool* lent_ = nullptr;  // set while a StmtCache's statement is lent out
};

// Statements prepared once per connection and lent out by their text: a
// statement prepared for every call spends more time in SQLite's parser than
// in the query. A statement still lent out (a query run inside another's
// loop) is not lent twice; that caller gets one of its own. Destroy the
// cache before the connection closes (or close it with sqlite3_close_v2).
class StmtCache {
public:
    explicit StmtCache(sqlite3*& db) : db_(db) {}
    ~StmtCache() {
        for (auto& [text, e] : entries_)
            sqlite3_finalize(e.s);
    }
    StmtCache(const StmtCache&) = delete;
    StmtCache& operator=(const StmtCache&) = delete;

    Stmt get(const std::string& sql) {
        auto [it, fresh] = entries_.try_emplace(sql);
        Entry& e = it->second;
        if (fresh && sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &e.s, nullptr) != SQLITE_OK) {
            entries_.erase(it);
            return Stmt(db_, sql.c_str());  // not ok(): the caller reports sqlite3_errmsg
        }
        if (e.lent)
            return Stmt(db_, sql.c_str());
        Stmt out;
        out.s_ = e.s;
        out.lent_ = &e.lent;
        e.lent = true;
        return out;
    }

private:
    struct Entry {
        sqlite3_stmt* s = nullptr;
        bool lent = false;
    };
    sqlite3*& db_;
    std::unordered_map<std::string, Entry> entries_;  // node-based: &Entry::lent stays put
};

} // namespace netfs
