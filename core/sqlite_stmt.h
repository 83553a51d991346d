// A prepared SQLite statement that resets itself after use: the one wrapper
// the cache's store and the sync component's log share.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace netfs {

// A prepared statement that resets itself after use.
class Stmt {
public:
    Stmt() = default;
    Stmt(sqlite3* db, const char* sql) {
        if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s_, nullptr) != SQLITE_OK)
            s_ = nullptr;
    }
    ~Stmt() { sqlite3_finalize(s_); }
    Stmt(Stmt&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    Stmt& operator=(Stmt&& o) noexcept {
        std::swap(s_, o.s_);
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
    sqlite3_stmt* s_ = nullptr;
};

} // namespace netfs
