// Disconnected operation against a model, with random scenarios (issue 5).
// Unit level, so that hundreds of scenarios run in seconds: a ReplicaBackend
// over a FileBackend (through a FaultyBackend and a Tap that can stop a pass
// at an exact call), a CacheStore and a Replica in a temporary directory.
//
// A scenario (one seed of a std::mt19937_64, printed first; a failure names
// it and prints what happened) is a random tree on the server, pinned, then
// rounds until 20-60 steps are done. A round goes offline (by hand, or by
// the server no longer answering), then mixes local operations through the
// backend (create, overwrite, append, truncate, rewrite, unlink, rename also
// over a file, mkdir, rmdir, chmod), changes made directly in the server's
// directory (edit, create, unlink, rename, mkdir, rm -r; each with an mtime
// of its own), daemon kills (the log and the local content must survive) and
// checks of the offline view, and ends with a reconnect: a clean pass, an
// outage after N calls (then online again, offline for more steps, or a
// kill), going offline at call N, or a kill at call N with a restart that
// syncs, stays offline, or reintegrates by itself.
//
// The model
//   version   one content of a file: its exact bytes (every change tagged
//             with the version's number) and the signature (size, mtime)
//             under which both sides report it (an upload keeps the local
//             mtime)
//   L, S      path -> directory, or file (a version and a mode): what the
//             local side shows while disconnected, and what the server has
//   owed      versions nobody has knowingly replaced or removed. A side
//             releases a version only by changing or removing what it shows
//             at that path: the local side what its offline view shows
//             (asked with getattr before each change, so that a view the
//             reintegration changed is what counts), the server what is on
//             its disk. So a version written on either side stays owed
//             until the other side has seen it and changed it in turn.
//   homes     every path a version had on either side, and the paths local
//             renames move it to (a rename replayed on the server moves
//             whatever is there)
//
// After every reintegration pass, partial or not:
//   - every file on the server holds a known version (nothing half written,
//     no append applied twice) and no version is at two places
//   - a path that no local operation of the round touched is exactly as the
//     server left it
//   - the offline view changed only by local names moved to conflicted copies
// When the log is empty ("sync point"):
//   - the pass reports pending == 0; no ".netfs-upload-" temporary is left
//   - every owed version is on the server, at one of its homes or in a
//     conflicted copy ("NAME (conflicted copy ...)") the conflict list names
//     (Conflict::copy); every conflicted copy on the server is named there,
//     and each copy a conflict of the round names exists
//   - a path the local side touched and the server did not (nor anything
//     above or below it, transitively through renames) is exactly as the
//     local side left it, mode included, and no conflict names such a path
// And while disconnected, the offline view (listing, modes, signatures, and
// the bytes of what was written locally) is L: at each round's start, after
// each kill and at random steps.
//
// Changing a file whose content is not fully cached is refused with EIO
// while disconnected, by design: counted, and a failure for a file written
// locally since the last pass or one pinned and unchanged since (renamed or
// chmod-ed offline included). Bugs not fixed yet are listed in kKnownBugs.
//
// NETFS_SYNC_MODEL_SEED=S replays one scenario, NETFS_SYNC_MODEL_SEEDS=N runs
// seeds 1..N (200 by default). A replay repeats every step, but where a
// fault falls among stores reintegrated in parallel can vary.
#include "core/backend/faulty_backend.h"
#include "core/backend/file_backend.h"
#include "core/backend/wrapped_backend.h"
#include "core/cache/cache_store.h"
#include "core/log.h"
#include "sync/hoarder.h"
#include "sync/replica.h"
#include "sync/replica_backend.h"

#include <QElapsedTimer>
#include <QTemporaryDir>
#include <QTest>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

using namespace netfs;
namespace fs = std::filesystem;

namespace {

constexpr std::uint32_t kGranule = 64 << 10;
constexpr const char* kCopyMark = " (conflicted copy ";
constexpr const char* kHost = "host";

using Bytes = std::string;

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
    va_list args, again;
    va_start(args, fmt);
    va_copy(again, args);
    std::string out(std::size_t(std::max(0, std::vsnprintf(nullptr, 0, fmt, args))), '\0');
    std::vsnprintf(out.data(), out.size() + 1, fmt, again);
    va_end(again);
    va_end(args);
    return out;
}

std::int64_t ns_of(const timespec& t) { return std::int64_t(t.tv_sec) * 1000000000 + t.tv_nsec; }

bool is_copy_path(const std::string& path) { return path.find(kCopyMark) != std::string::npos; }
bool is_temp_path(const std::string& path) { return path.find(".netfs-upload-") != std::string::npos; }
bool related(const std::string& a, const std::string& b) { return is_under(a, b) || is_under(b, a); }
int depth_of(const std::string& path) {
    return path == "/" ? 0 : int(std::count(path.begin(), path.end(), '/'));
}

// How a file is reported: what tells one version from another.
struct Sig {
    std::uint64_t size = 0;
    std::int64_t mtime_ns = 0;
    auto operator<=>(const Sig&) const = default;
};

struct FileVersion {
    Bytes bytes;
    char origin = 's';           // 's' server, 'l' local
    std::set<std::string> homes;
    bool local_content = false;  // written locally since the last pass: its content is held here
};

struct Entry {
    bool dir = false;
    int version = -1;
    std::uint32_t mode = 0;
    bool operator==(const Entry&) const = default;
};
using Tree = std::map<std::string, Entry>;

// A file or directory on the server's disk.
struct OnDisk {
    bool dir = false;
    Bytes bytes;
    std::uint32_t mode = 0;
};

// One change to a file's content, and the bytes it leaves.
enum class Edit { overwrite, append, truncate, rewrite };
const char* edit_name(Edit e) {
    switch (e) {
    case Edit::overwrite: return "overwrite";
    case Edit::append: return "append";
    case Edit::truncate: return "truncate";
    case Edit::rewrite: return "rewrite";
    }
    return "?";
}
struct Change {
    Edit kind = Edit::rewrite;
    std::uint64_t offset = 0;  // overwrite, append, rewrite: where `data` goes
    Bytes data;
    std::uint64_t size = 0;    // truncate
    Bytes result;
};

// Counts the calls that reach the server and runs an action just before
// the Nth: a stop (going offline) at an exact point of a pass.
class Tap : public WrappedBackend {
public:
    using WrappedBackend::WrappedBackend;
    void arm(std::uint64_t at, std::function<void()> action) {
        std::lock_guard lock(mu_);
        calls_ = 0;
        at_ = at;
        on_.reset();
        action_ = std::move(action);
    }
    // Just before the first call of `op` instead.
    void arm_on(Op op, std::function<void()> action) {
        arm(UINT64_MAX, std::move(action));
        std::lock_guard lock(mu_);
        on_ = op;
    }
    void disarm() { arm(UINT64_MAX, {}); }
    // What the connection reports: a network remote says unreachable once it
    // has given up reconnecting, and only then does the mount answer locally.
    void set_down(bool down) { down_ = down; }
    ConnectionState connection_state() const override {
        return down_ ? ConnectionState::unreachable : ConnectionState::connected;
    }
    Errc before(Op op, const std::string&, std::size_t&) override {
        std::function<void()> run;
        {
            std::lock_guard lock(mu_);
            if (calls_++ == at_ || (on_ && *on_ == op)) {
                run = std::move(action_);
                action_ = {};
                on_.reset();
            }
        }
        if (run)
            run();
        return Errc::ok;
    }

private:
    std::mutex mu_;
    std::uint64_t calls_ = 0;
    std::uint64_t at_ = UINT64_MAX;
    std::optional<Op> on_;
    std::function<void()> action_;
    std::atomic<bool> down_{false};
};

// Over every scenario of the run, for the summary.
struct Totals {
    std::uint64_t scenarios = 0, steps = 0, local_ops = 0, server_ops = 0, rounds = 0, passes = 0,
                  partial_passes = 0, kills = 0, refused = 0,
                  versions_checked = 0, waited_ms = 0;
    std::map<std::string, std::uint64_t> conflicts;  // by kind
};
Totals totals;

// What the mount would be: the cache, the replica and the replica backend,
// over the server's directory through a Tap and a FaultyBackend.
struct Daemon {
    std::shared_ptr<CacheStore> cache;
    std::shared_ptr<Replica> replica;
    std::unique_ptr<ReplicaBackend> rb;
    Tap* tap = nullptr;
    FaultyBackend* faults = nullptr;

    // Opens the cache in `cache_dir` (64 KiB granules, not encrypted), the
    // replica in its database and a replica backend over `server_root`, and
    // starts it; offline by hand first when asked. `message` says what failed.
    bool open(const std::string& server_root, const std::string& cache_dir, bool offline, std::string& message) {
        CacheOptions o;
        o.dir = cache_dir;
        o.granule_size = kGranule;
        o.codec.encrypt = false;
        std::unique_ptr<CacheStore> opened;
        if (CacheStore::open(o, opened, message) != Errc::ok)
            return false;
        cache = std::move(opened);
        if (!(replica = Replica::open(cache_dir + "/cache.db", message)))
            return false;
        std::unique_ptr<FileBackend> file;
        if (FileBackend::make(server_root, BackendLimits{}, file) != Errc::ok) {
            message = "cannot serve " + server_root;
            return false;
        }
        auto faulty = std::make_unique<FaultyBackend>(std::move(file));
        faults = faulty.get();
        auto tapped = std::make_unique<Tap>(std::move(faulty));
        tap = tapped.get();
        // The remote is handed in and never replaced: a connect is not needed.
        auto connect = [](std::unique_ptr<Backend>&, std::string& why) {
            why = "the test hands the remote in";
            return Errc::unreachable;
        };
        rb = std::make_unique<ReplicaBackend>(std::move(tapped), connect, replica, cache, "test", kHost);
        if (offline)
            rb->go_offline();
        rb->start();
        return true;
    }
    // As a SIGKILL leaves things, as far as this process can: nothing is
    // flushed, closed or synced on purpose first.
    void kill() {
        if (rb)
            rb->stop();
        rb.reset();
        replica.reset();
        cache.reset();
        tap = nullptr;
        faults = nullptr;
    }
    ~Daemon() { kill(); }
};

class Scenario {
public:
    explicit Scenario(std::uint64_t seed) : rng_(seed) {}

    bool run();
    const std::string& failure() const { return failure_; }
    std::string trace() const {
        std::string out;
        for (const std::string& line : trace_)
            out += "    " + line + "\n";
        return out;
    }

private:
    // ---- randomness -------------------------------------------------------
    std::uint64_t pick(std::uint64_t n) { return n ? std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng_) : 0; }
    bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
    Bytes random_bytes(std::size_t n) {
        Bytes out(n, '\0');
        for (std::size_t i = 0; i < n; i += 8) {
            const std::uint64_t r = rng_();
            std::memcpy(out.data() + i, &r, std::min<std::size_t>(8, n - i));
        }
        return out;
    }
    template <class T> const T& any_of(const std::vector<T>& v) { return v[pick(v.size())]; }

    // ---- failures and the trace -------------------------------------------
    bool fail(const std::string& why) {
        if (failure_.empty())
            failure_ = why;
        return false;
    }
    void note(const std::string& line) { trace_.push_back(line); }
    std::string describe_version(int v) const {
        const FileVersion& f = versions_[v];
        std::string homes;
        for (const std::string& h : f.homes)
            homes += (homes.empty() ? "" : ", ") + h;
        return format("v%d (%s, %zu bytes, at %s)", v, f.origin == 'l' ? "written locally" : "written on the server",
                      f.bytes.size(), homes.c_str());
    }

    // ---- versions -----------------------------------------------------------
    int new_version(Bytes bytes, Sig sig, char origin, const std::string& path) {
        const int v = int(versions_.size());
        versions_.push_back({std::move(bytes), origin, {path}, false});
        if (auto [it, fresh] = sig_index_.emplace(sig, v); !fresh)
            fail(format("v%d and v%d share the signature (size %llu, mtime %lld): the model cannot tell them apart",
                        it->second, v, (unsigned long long)sig.size, (long long)sig.mtime_ns));
        owed_.insert(v);
        return v;
    }
    void release(int v) { owed_.erase(v); }
    Change make_change(const Bytes& old, Edit kind) {
        Change c;
        c.kind = kind;
        const Bytes tag = format("<v%zu>", versions_.size());
        switch (kind) {
        case Edit::overwrite: {
            c.offset = pick(old.size() + 2000);
            c.data = tag + random_bytes(chance(0.15) ? pick(100 << 10) : pick(8 << 10));
            c.result = old;
            if (c.result.size() < c.offset + c.data.size())
                c.result.resize(c.offset + c.data.size(), '\0');
            std::memcpy(c.result.data() + c.offset, c.data.data(), c.data.size());
            break;
        }
        case Edit::append:
            c.offset = old.size();
            c.data = tag + random_bytes(pick(20 << 10));
            c.result = old + c.data;
            break;
        case Edit::truncate:
            do
                c.size = pick(old.size() * 5 / 4 + 1000);
            while (c.size == old.size());
            c.result = old;
            c.result.resize(c.size, '\0');
            break;
        case Edit::rewrite:
            c.data = tag + random_bytes(chance(0.1) ? pick(200 << 10) : pick(10 << 10));
            c.result = c.data;
            break;
        }
        return c;
    }
    Edit random_edit() {
        const auto r = pick(100);
        return r < 35 ? Edit::overwrite : r < 60 ? Edit::append : r < 80 ? Edit::truncate : Edit::rewrite;
    }

    // ---- the server's disk ------------------------------------------------
    std::string host(const std::string& path) const { return server_root_ + (path == "/" ? "" : path); }
    bool write_disk(const std::string& path, const Bytes& bytes, bool create) {
        const int fd = ::open(host(path).c_str(), O_WRONLY | O_TRUNC | (create ? O_CREAT | O_EXCL : 0), 0644);
        if (fd < 0)
            return fail("server: cannot write " + path + ": " + std::strerror(errno));
        std::size_t done = 0;
        while (done < bytes.size()) {
            const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
            if (n <= 0) {
                ::close(fd);
                return fail("server: short write to " + path);
            }
            done += std::size_t(n);
        }
        ::close(fd);
        return true;
    }
    // Gives a server change an mtime of its own (never one a local change
    // can have: those are the current time), so that the size and mtime the
    // reintegrator compares tell every server version apart.
    Sig stamp(const std::string& path) {
        ++server_clock_;
        const timespec times[2] = {{0, UTIME_OMIT}, {time_t(1000000000 + server_clock_), long(server_clock_ * 7919 % 1000000000)}};
        struct stat st {};
        if (::utimensat(AT_FDCWD, host(path).c_str(), times, AT_SYMLINK_NOFOLLOW) != 0 ||
            ::lstat(host(path).c_str(), &st) != 0)
            fail("server: cannot stamp " + path);
        return {std::uint64_t(st.st_size), ns_of(st.st_mtim)};
    }
    std::map<std::string, OnDisk> read_disk() {
        std::map<std::string, OnDisk> out;
        out["/"] = {true, {}, 0755};
        std::error_code ec;
        for (auto it = fs::recursive_directory_iterator(server_root_, ec); !ec && it != fs::recursive_directory_iterator();
             it.increment(ec)) {
            const std::string path = "/" + fs::relative(it->path(), server_root_).string();
            struct stat st {};
            if (::lstat(it->path().c_str(), &st) != 0)
                continue;
            OnDisk d;
            d.dir = S_ISDIR(st.st_mode);
            d.mode = st.st_mode & 07777;
            if (!d.dir) {
                const int fd = ::open(it->path().c_str(), O_RDONLY);
                d.bytes.resize(std::size_t(st.st_size));
                std::size_t done = 0;
                while (fd >= 0 && done < d.bytes.size()) {
                    const ssize_t n = ::pread(fd, d.bytes.data() + done, d.bytes.size() - done, off_t(done));
                    if (n <= 0)
                        break;
                    done += std::size_t(n);
                }
                if (fd >= 0)
                    ::close(fd);
                d.bytes.resize(done);
            }
            out[path] = std::move(d);
        }
        if (ec)
            fail("server: cannot walk " + server_root_ + ": " + ec.message());
        return out;
    }

    // ---- the daemon -------------------------------------------------------
    bool open_daemon(bool offline);
    void kill_daemon();
    bool restart_after_kill();
    SyncMode mode() { return d_.rb->status().mode; }

    // ---- what each side has --------------------------------------------------
    bool identify(const std::map<std::string, OnDisk>& disk, Tree& out);
    bool local_view(Tree& out);
    bool read_local(const std::string& path, Bytes& out);
    bool verify_local_view(const char* when);
    bool adopt_local_view();

    // ---- steps --------------------------------------------------------------
    bool setup();
    bool start_round();
    bool local_step();
    bool server_step();
    bool reconnect();
    bool wait_pass(std::uint64_t before, SyncOutcome& out);
    bool run_pass(const std::function<void()>& arm, SyncOutcome& out);
    bool after_pass(const SyncOutcome& out, bool expect_clean);
    bool sync_point(const SyncOutcome& out);
    bool ensure_connected();
    bool refresh();
    bool final_sync();

    std::optional<int> observe(const std::string& path);
    bool refused(const std::string& path, int v, Errc e);
    bool finish_local_write(const std::string& path, Bytes result, std::uint32_t mode, int old_version);
    std::vector<std::string> files_of(const Tree& t) const {
        std::vector<std::string> out;
        for (const auto& [p, e] : t)
            if (!e.dir && !is_copy_path(p) && !is_temp_path(p))
                out.push_back(p);
        return out;
    }
    std::vector<std::string> dirs_of(const Tree& t, int max_depth) const {
        std::vector<std::string> out;
        for (const auto& [p, e] : t)
            if (e.dir && !is_copy_path(p) && depth_of(p) <= max_depth)
                out.push_back(p);
        return out;
    }
    std::string new_name(const Tree& t, bool dir) {
        static const std::vector<std::string> files = {"a.txt", "b.txt", "c", "notes.md", "e.bin", "f"};
        static const std::vector<std::string> dirs = {"d1", "d2", "d3"};
        const std::string parent = any_of(dirs_of(t, dir ? 1 : 2));
        return join_path(parent, any_of(dir ? dirs : files));
    }

    std::mt19937_64 rng_;
    std::string failure_;
    std::vector<std::string> trace_;

    QTemporaryDir dir_;
    std::string server_root_, cache_dir_;
    Daemon d_;

    std::vector<FileVersion> versions_;
    std::map<Sig, int> sig_index_;
    std::set<int> owed_;
    Tree local_, server_;                   // L and S
    std::map<std::string, int> pinned_;     // what the last pin put in the cache, by path
    std::set<std::string> chmodded_;        // files chmod-ed offline since the last pin
    std::uint64_t server_clock_ = 0;
    // The round: since the last sync point.
    std::vector<std::vector<std::string>> local_ops_, server_ops_;  // the paths each operation touched
    std::size_t conflicts_seen_ = 0;
    bool at_sync_point_ = false;
};

bool Scenario::open_daemon(bool offline) {
    std::string message;
    return d_.open(server_root_, cache_dir_, offline, message) || fail(message);
}

void Scenario::kill_daemon() {
    d_.kill();
    totals.kills++;
}

// ---- what each side has ------------------------------------------------------

// Which version each server file holds, by its bytes: the one the model
// expects at that path first, then one that has been at that path, then any
// other still in play. Bytes no version in play has are a failure (half
// written, applied twice, or a replaced version back), and so is one version
// at two places.
bool Scenario::identify(const std::map<std::string, OnDisk>& disk, Tree& out) {
    std::set<int> pool = owed_;
    for (const Tree* t : {&local_, &server_})
        for (const auto& [p, e] : *t)
            if (!e.dir)
                pool.insert(e.version);
    std::unordered_map<std::string_view, std::vector<int>> by_bytes;
    for (int v : pool)
        by_bytes[versions_[v].bytes].push_back(v);
    std::map<int, std::string> taken;
    out.clear();
    std::vector<std::string> open;
    for (const auto& [path, d] : disk) {
        if (d.dir) {
            out[path] = {true, -1, d.mode};
            continue;
        }
        bool done = false;
        for (const Tree* t : {&server_, &local_}) {
            auto it = t->find(path);
            if (done || it == t->end() || it->second.dir || taken.count(it->second.version) ||
                versions_[it->second.version].bytes != d.bytes)
                continue;
            out[path] = {false, it->second.version, d.mode};
            taken[it->second.version] = path;
            done = true;
        }
        if (!done)
            open.push_back(path);
    }
    for (const std::string& path : open) {
        const OnDisk& d = disk.at(path);
        auto it = by_bytes.find(d.bytes);
        int chosen = -1;
        if (it != by_bytes.end()) {
            for (int v : it->second)
                if (!taken.count(v) && (chosen < 0 || (versions_[v].homes.count(path) && !versions_[chosen].homes.count(path))))
                    chosen = v;
            if (chosen < 0)
                return fail(format("the server holds %s at both %s and %s: applied twice?",
                                   describe_version(it->second.front()).c_str(), taken[it->second.front()].c_str(),
                                   path.c_str()));
        } else {
            for (std::size_t v = 0; v < versions_.size(); ++v)
                if (versions_[v].bytes == d.bytes)
                    return fail(format("the server's %s holds %s, which was replaced or removed before",
                                       path.c_str(), describe_version(int(v)).c_str()));
            return fail(format("the server's %s (%zu bytes, starting \"%s\") holds content nobody wrote: "
                               "half written, or a change applied twice?",
                               path.c_str(), d.bytes.size(), d.bytes.substr(0, 12).c_str()));
        }
        out[path] = {false, chosen, d.mode};
        taken[chosen] = path;
    }
    return true;
}

// The offline view through the replica backend: every name, its kind and
// mode, and each file's version by the signature the view reports.
bool Scenario::local_view(Tree& out) {
    out.clear();
    std::vector<std::string> todo = {"/"};
    Attr root;
    if (Errc e = d_.rb->getattr("/", root); e != Errc::ok)
        return fail(format("offline getattr / failed: %s", std::string(describe(e)).c_str()));
    out["/"] = {true, -1, root.mode & 07777};
    while (!todo.empty()) {
        const std::string dir = todo.back();
        todo.pop_back();
        std::vector<DirEntry> entries;
        if (Errc e = d_.rb->readdir(dir, entries); e != Errc::ok)
            return fail(format("offline readdir %s failed: %s", dir.c_str(), std::string(describe(e)).c_str()));
        for (const DirEntry& de : entries) {
            const std::string path = join_path(dir, de.name);
            if (S_ISDIR(de.attr.mode)) {
                out[path] = {true, -1, de.attr.mode & 07777};
                todo.push_back(path);
                continue;
            }
            if (!S_ISREG(de.attr.mode))
                return fail("offline view: " + path + " is neither a file nor a directory");
            auto it = sig_index_.find({de.attr.size, ns_of(de.attr.mtime)});
            if (it == sig_index_.end())
                return fail(format("offline view: %s shows a version nobody wrote (size %llu, mtime %lld)", path.c_str(),
                                   (unsigned long long)de.attr.size, (long long)ns_of(de.attr.mtime)));
            out[path] = {false, it->second, de.attr.mode & 07777};
        }
    }
    return true;
}

bool Scenario::read_local(const std::string& path, Bytes& out) {
    std::unique_ptr<BackendFile> f;
    if (Errc e = d_.rb->open(path, O_RDONLY, f); e != Errc::ok)
        return fail(format("offline open %s for reading: %s", path.c_str(), std::string(describe(e)).c_str()));
    Attr a;
    if (Errc e = f->getattr(a); e != Errc::ok)
        return fail(format("offline fgetattr %s: %s", path.c_str(), std::string(describe(e)).c_str()));
    out.assign(a.size, '\0');
    std::size_t done = 0;
    while (done < out.size()) {
        std::size_t n = 0;
        const Errc e = f->read(done, std::span(reinterpret_cast<std::byte*>(out.data()) + done, out.size() - done), n);
        if (e != Errc::ok)
            return fail(format("offline read %s at %zu: %s", path.c_str(), done, std::string(describe(e)).c_str()));
        if (n == 0)
            break;
        done += n;
    }
    out.resize(done);
    return true;
}

bool Scenario::verify_local_view(const char* when) {
    Tree view;
    if (!local_view(view))
        return false;
    for (const Tree* t : {&local_, &view})
        for (const auto& [p, e] : *t) {
            auto a = local_.find(p), b = view.find(p);
            if (a == local_.end() || b == view.end())
                return fail(format("%s: the offline view %s %s", when, a == local_.end() ? "has" : "lacks", p.c_str()));
            if (a->second.dir != b->second.dir || a->second.mode != b->second.mode ||
                a->second.version != b->second.version)
                return fail(format("%s: the offline view of %s is %s v%d mode %o, the model has %s v%d mode %o", when,
                                   p.c_str(), b->second.dir ? "dir" : "file", b->second.version, b->second.mode,
                                   a->second.dir ? "dir" : "file", a->second.version, a->second.mode));
        }
    for (const auto& [p, e] : local_) {
        if (e.dir || !versions_[e.version].local_content)
            continue;
        Bytes bytes;
        if (!read_local(p, bytes))
            return false;
        if (bytes != versions_[e.version].bytes)
            return fail(format("%s: offline, %s reads %zu bytes that are not %s", when, p.c_str(), bytes.size(),
                               describe_version(e.version).c_str()));
    }
    return true;
}

// After a pass that left operations pending, the offline view is what the
// local side shows from now on. Reintegration may have moved local names to
// conflicted copies; nothing else of the view may change.
bool Scenario::adopt_local_view() {
    Tree view;
    if (!local_view(view))
        return false;
    bool copies_appeared = false;
    for (const auto& [p, e] : view)
        if (!local_.count(p)) {
            if (!is_copy_path(p))
                return fail("a pass that stopped early made " + p + " appear in the offline view");
            copies_appeared = true;
        }
    for (const auto& [p, e] : local_) {
        auto it = view.find(p);
        if (it == view.end()) {
            if (!copies_appeared)
                return fail("a pass that stopped early removed " + p + " from the offline view");
            continue;
        }
        if (it->second.dir != e.dir || it->second.mode != e.mode)
            return fail("a pass that stopped early changed the kind or mode of " + p + " in the offline view");
        if (!e.dir && it->second.version != e.version) {
            auto s = server_.find(p);
            if (s == server_.end() || s->second.version != it->second.version)
                return fail(format("a pass that stopped early changed %s in the offline view from v%d to v%d", p.c_str(),
                                   e.version, it->second.version));
        }
    }
    for (const auto& [p, e] : view)
        if (!e.dir)
            versions_[e.version].homes.insert(p);
    local_ = std::move(view);
    return true;
}

// ---- setup -------------------------------------------------------------------

bool Scenario::setup() {
    if (!dir_.isValid())
        return fail("no temporary directory");
    server_root_ = dir_.path().toStdString() + "/server";
    cache_dir_ = dir_.path().toStdString() + "/cache";
    fs::create_directories(server_root_);
    server_["/"] = {true, -1, 0755};
    for (const char* d : {"/d1", "/d2", "/d3", "/d1/d2"}) {
        if (!server_.count(parent_of(d)) || !chance(0.6))
            continue;
        if (::mkdir(host(d).c_str(), 0755) != 0)
            return fail(std::string("server: mkdir ") + d);
        server_[d] = {true, -1, 0755};
    }
    const auto files = 5 + pick(11);
    for (std::uint64_t i = 0; i < files; ++i) {
        const std::string path = new_name(server_, false);
        if (server_.count(path))
            continue;
        const auto r = pick(10);
        const std::size_t size = r < 3 ? pick(2048) : r < 8 ? pick(kGranule + 4096) : pick(300 << 10);
        Bytes bytes = random_bytes(size);
        if (!write_disk(path, bytes, true))
            return false;
        server_[path] = {false, new_version(std::move(bytes), stamp(path), 's', path), 0644};
    }
    note(format("initial tree: %zu entries", server_.size()));
    if (!open_daemon(false) || !refresh())
        return false;
    conflicts_seen_ = 0;
    at_sync_point_ = true;
    return true;
}

// Connected, after a sync point: the local side learns the server's tree
// (pinning it all, so that it can be edited offline, or only listing it),
// as a mount does when it is used online.
bool Scenario::refresh() {
    if (!ensure_connected())
        return false;
    Attr root;
    if (Errc e = d_.rb->getattr("/", root); e != Errc::ok)
        return fail(format("connected getattr /: %s", std::string(describe(e)).c_str()));
    if (chance(0.8)) {
        Hoarder hoarder(*d_.rb, *d_.cache);
        std::atomic<bool> cancel{false};
        std::string message;
        if (Errc e = hoarder.pin("/", [](const PinProgress&) {}, cancel, message); e != Errc::ok)
            return fail("pinning / failed: " + message);
        pinned_.clear();
        chmodded_.clear();
        for (const auto& [p, e] : server_)
            if (!e.dir)
                pinned_[p] = e.version;
        note("connected: pinned /");
    } else {
        std::vector<std::string> todo = {"/"};
        while (!todo.empty()) {
            const std::string dir = todo.back();
            todo.pop_back();
            std::vector<DirEntry> entries;
            if (Errc e = d_.rb->readdir(dir, entries); e != Errc::ok)
                return fail(format("connected readdir %s: %s", dir.c_str(), std::string(describe(e)).c_str()));
            for (const DirEntry& de : entries)
                if (S_ISDIR(de.attr.mode))
                    todo.push_back(join_path(dir, de.name));
        }
        std::erase_if(pinned_, [&](const auto& kv) {
            auto s = server_.find(kv.first);
            return s == server_.end() || s->second.version != kv.second;
        });
        note("connected: listed / (contents not fetched)");
    }
    local_ = server_;
    return true;
}

bool Scenario::ensure_connected() {
    for (int attempt = 0; attempt < 3 && mode() != SyncMode::connected; ++attempt) {
        d_.rb->go_online();
        const SyncOutcome out = d_.rb->sync_now(std::chrono::seconds(20));
        if (out.pending != 0)
            return fail(format("an empty log came back with %llu pending", (unsigned long long)out.pending));
    }
    if (mode() != SyncMode::connected)
        return fail(format("not connected again with an empty log (mode %s)", mode_name(mode())));
    return true;
}

// A round starts connected at a sync point: it goes offline by hand, or
// because the server stops answering (the next request switches the mode).
bool Scenario::start_round() {
    local_ops_.clear();
    server_ops_.clear();
    at_sync_point_ = false;
    totals.rounds++;
    if (chance(0.75)) {
        d_.rb->go_offline();
        note("go offline");
    } else {
        FaultRule rule;
        rule.error = Errc::unreachable;
        d_.faults->add_rule(rule);
        d_.tap->set_down(true);
        Attr root;
        if (Errc e = d_.rb->getattr("/", root); e != Errc::ok)
            return fail(format("getattr / as the server stops answering: %s (the replica should answer)",
                               std::string(describe(e)).c_str()));
        if (mode() != SyncMode::disconnected)
            return fail(format("an unreachable server left the mount %s", mode_name(mode())));
        note("the server stops answering: disconnected by itself");
    }
    return verify_local_view("going offline");
}

// ---- local operations (disconnected) --------------------------------------------

// What the offline view shows at `path` before the local side changes it: the
// version the change replaces.
std::optional<int> Scenario::observe(const std::string& path) {
    Attr a;
    if (Errc e = d_.rb->getattr(path, a); e != Errc::ok) {
        fail(format("offline getattr %s: %s", path.c_str(), std::string(describe(e)).c_str()));
        return std::nullopt;
    }
    auto it = sig_index_.find({a.size, ns_of(a.mtime)});
    if (!S_ISREG(a.mode) || it == sig_index_.end()) {
        fail(format("offline view: %s shows a version nobody wrote (size %llu)", path.c_str(), (unsigned long long)a.size));
        return std::nullopt;
    }
    Entry& e = local_[path];
    if (it->second != e.version) {
        auto s = server_.find(path);
        if (s == server_.end() || s->second.version != it->second) {
            fail(format("offline view: %s shows v%d, the model has v%d", path.c_str(), it->second, e.version));
            return std::nullopt;
        }
        e.version = it->second;
    }
    return e.version;
}

bool Scenario::refused(const std::string& path, int v, Errc e) {
    if (e != Errc::io)
        return fail(format("offline change of %s failed: %s", path.c_str(), std::string(describe(e)).c_str()));
    totals.refused++;
    if (versions_[v].local_content)
        return fail("offline change of " + path + " refused (EIO) though it was written here: its content is local");
    if (auto p = pinned_.find(path); p != pinned_.end() && p->second == v)
        return fail("offline change of " + path + " refused (EIO) though it is pinned and unchanged since");
    for (const auto& [p, pv] : pinned_)
        if (pv == v)
            return fail("offline change of " + path + " refused (EIO) though it was pinned as " + p +
                        " and only renamed since");
    note("  refused (EIO): not cached");
    return true;
}

bool Scenario::finish_local_write(const std::string& path, Bytes result, std::uint32_t mode, int old_version) {
    Attr a;
    if (Errc e = d_.rb->getattr(path, a); e != Errc::ok)
        return fail(format("offline getattr %s after writing: %s", path.c_str(), std::string(describe(e)).c_str()));
    if (a.size != result.size())
        return fail(format("offline, %s is %llu bytes after writing, the model has %zu", path.c_str(),
                           (unsigned long long)a.size, result.size()));
    const int v = new_version(result, {a.size, ns_of(a.mtime)}, 'l', path);
    versions_[v].local_content = true;
    if (old_version >= 0)
        release(old_version);
    local_[path] = {false, v, mode};
    Bytes back;
    if (!read_local(path, back))
        return false;
    if (back != result)
        return fail(format("offline, %s reads back %zu bytes that are not what was written (%zu)", path.c_str(),
                           back.size(), result.size()));
    note(format("  -> v%d, %zu bytes", v, result.size()));
    return true;
}

bool Scenario::local_step() {
    totals.local_ops++;
    std::vector<std::string> files = files_of(local_);
    const auto r = pick(100);
    std::unique_ptr<BackendFile> f;
    auto write_all = [&](std::uint64_t offset, const Bytes& data) -> Errc {
        std::size_t done = 0;
        while (done < data.size()) {
            std::size_t n = 0;
            const Errc e = f->write(offset + done, std::span(reinterpret_cast<const std::byte*>(data.data()) + done,
                                                              data.size() - done), n);
            if (e != Errc::ok)
                return e;
            if (n == 0)
                return Errc::io;
            done += n;
        }
        return Errc::ok;
    };
    if (r < 18 || files.empty()) {  // create
        const std::string path = new_name(local_, false);
        if (local_.count(path))
            return true;
        const std::uint32_t mode = any_of(std::vector<std::uint32_t>{0644, 0600, 0640, 0755});
        const Bytes data = format("<v%zu>", versions_.size()) + random_bytes(chance(0.1) ? pick(200 << 10) : pick(10 << 10));
        note(format("local: create %s (%zu bytes, mode %o)", path.c_str(), data.size(), mode));
        Attr attr;
        if (Errc e = d_.rb->create(path, mode, O_WRONLY | O_CREAT | O_EXCL, f, attr); e != Errc::ok)
            return fail(format("offline create %s: %s", path.c_str(), std::string(describe(e)).c_str()));
        if (Errc e = write_all(0, data); e != Errc::ok)
            return fail(format("offline write to new %s: %s", path.c_str(), std::string(describe(e)).c_str()));
        f->close();
        f.reset();
        local_ops_.push_back({path});
        return finish_local_write(path, data, mode, -1);
    }
    const std::string path = any_of(files);
    if (r < 58) {  // a change of content
        const Edit kind = random_edit();
        auto old = observe(path);
        if (!old)
            return false;
        const Change c = make_change(versions_[*old].bytes, kind);
        note(format("local: %s %s of v%d (at %llu, %zu bytes; size %llu)", edit_name(kind), path.c_str(), *old,
                    (unsigned long long)c.offset, c.data.size(), (unsigned long long)c.size));
        Errc e = Errc::ok;
        if (kind == Edit::truncate) {
            SetAttr change;
            change.mask = SetAttr::kSize;
            change.size = c.size;
            Attr after;
            e = d_.rb->setattr(path, change, after);
        } else {
            e = d_.rb->open(path, O_WRONLY | (kind == Edit::rewrite ? O_TRUNC : 0), f);
            if (e == Errc::ok)
                e = write_all(c.offset, c.data);
            if (f) {
                f->close();
                f.reset();
            }
        }
        if (e != Errc::ok)
            return refused(path, *old, e);
        local_ops_.push_back({path});
        return finish_local_write(path, c.result, local_[path].mode, *old);
    }
    if (r < 66) {  // unlink
        auto old = observe(path);
        if (!old)
            return false;
        note(format("local: unlink %s (v%d)", path.c_str(), *old));
        if (Errc e = d_.rb->unlink(path); e != Errc::ok)
            return fail(format("offline unlink %s: %s", path.c_str(), std::string(describe(e)).c_str()));
        release(*old);
        local_.erase(path);
        local_ops_.push_back({path});
        return true;
    }
    if (r < 80) {  // rename, sometimes over another file
        std::string to = chance(0.3) ? any_of(files) : new_name(local_, false);
        if (to == path || (local_.count(to) && local_[to].dir))
            return true;
        auto moved = observe(path);
        if (!moved)
            return false;
        std::optional<int> replaced;
        if (local_.count(to) && !(replaced = observe(to)))
            return false;
        note(format("local: rename %s (v%d) -> %s%s", path.c_str(), *moved, to.c_str(),
                    replaced ? format(" over v%d", *replaced).c_str() : ""));
        if (Errc e = d_.rb->rename(path, to, 0); e != Errc::ok)
            return fail(format("offline rename %s -> %s: %s", path.c_str(), to.c_str(), std::string(describe(e)).c_str()));
        if (replaced)
            release(*replaced);
        versions_[*moved].homes.insert(to);
        // Replayed on the server, the rename moves whatever is at `path` there.
        if (auto s = server_.find(path); s != server_.end() && !s->second.dir)
            versions_[s->second.version].homes.insert(to);
        local_[to] = local_[path];
        local_.erase(path);
        local_ops_.push_back({path, to});
        return true;
    }
    if (r < 86) {  // mkdir
        const std::string dir = new_name(local_, true);
        if (local_.count(dir))
            return true;
        note("local: mkdir " + dir);
        Attr attr;
        if (Errc e = d_.rb->mkdir(dir, 0755, attr); e != Errc::ok)
            return fail(format("offline mkdir %s: %s", dir.c_str(), std::string(describe(e)).c_str()));
        local_[dir] = {true, -1, 0755};
        local_ops_.push_back({dir});
        return true;
    }
    if (r < 91) {  // rmdir of an empty directory
        std::vector<std::string> empty;
        for (const std::string& d : dirs_of(local_, 9)) {
            auto next = local_.upper_bound(d);
            if (d != "/" && (next == local_.end() || !is_under(next->first, d)))
                empty.push_back(d);
        }
        if (empty.empty())
            return true;
        const std::string dir = any_of(empty);
        note("local: rmdir " + dir);
        if (Errc e = d_.rb->rmdir(dir); e != Errc::ok)
            return fail(format("offline rmdir %s: %s", dir.c_str(), std::string(describe(e)).c_str()));
        local_.erase(dir);
        local_ops_.push_back({dir});
        return true;
    }
    // chmod
    auto v = observe(path);
    if (!v)
        return false;
    const std::uint32_t mode = any_of(std::vector<std::uint32_t>{0644, 0600, 0640, 0755});
    note(format("local: chmod %o %s (v%d)", mode, path.c_str(), *v));
    SetAttr change;
    change.mask = SetAttr::kMode;
    change.mode = mode;
    Attr after;
    if (Errc e = d_.rb->setattr(path, change, after); e != Errc::ok)
        return fail(format("offline chmod %s: %s", path.c_str(), std::string(describe(e)).c_str()));
    local_[path].mode = mode;
    chmodded_.insert(path);
    local_ops_.push_back({path});
    return true;
}

// ---- server changes (made directly in its directory) ----------------------------

bool Scenario::server_step() {
    totals.server_ops++;
    const std::vector<std::string> files = files_of(server_);
    const auto r = pick(100);
    if (r < 18 || files.empty()) {  // create
        const std::string path = new_name(server_, false);
        if (server_.count(path))
            return true;
        Bytes bytes = format("<v%zu>", versions_.size()) + random_bytes(chance(0.1) ? pick(200 << 10) : pick(10 << 10));
        note(format("server: create %s (%zu bytes)", path.c_str(), bytes.size()));
        if (!write_disk(path, bytes, true))
            return false;
        server_[path] = {false, new_version(std::move(bytes), stamp(path), 's', path), 0644};
        note(format("  -> v%d", server_[path].version));
        server_ops_.push_back({path});
        return true;
    }
    const std::string path = any_of(files);
    const int old = server_[path].version;
    if (r < 63) {  // a change of content, in place
        const Edit kind = random_edit();
        const Change c = make_change(versions_[old].bytes, kind);
        note(format("server: %s %s of v%d", edit_name(kind), path.c_str(), old));
        if (!write_disk(path, c.result, false))
            return false;
        const int v = new_version(c.result, stamp(path), 's', path);
        release(old);
        server_[path].version = v;
        note(format("  -> v%d, %zu bytes", v, c.result.size()));
        server_ops_.push_back({path});
        return true;
    }
    if (r < 78) {  // delete
        note(format("server: unlink %s (v%d)", path.c_str(), old));
        if (::unlink(host(path).c_str()) != 0)
            return fail("server: unlink " + path);
        release(old);
        server_.erase(path);
        server_ops_.push_back({path});
        return true;
    }
    if (r < 90) {  // rename, sometimes over another file
        const std::string to = chance(0.3) ? any_of(files) : new_name(server_, false);
        if (to == path || (server_.count(to) && server_[to].dir))
            return true;
        note(format("server: rename %s (v%d) -> %s", path.c_str(), old, to.c_str()));
        if (::rename(host(path).c_str(), host(to).c_str()) != 0)
            return fail("server: rename " + path + " -> " + to);
        if (auto replaced = server_.find(to); replaced != server_.end())
            release(replaced->second.version);
        versions_[old].homes.insert(to);
        server_[to] = server_[path];
        server_.erase(path);
        server_ops_.push_back({path, to});
        return true;
    }
    if (r < 96) {  // mkdir
        const std::string dir = new_name(server_, true);
        if (server_.count(dir))
            return true;
        note("server: mkdir " + dir);
        if (::mkdir(host(dir).c_str(), 0755) != 0)
            return fail("server: mkdir " + dir);
        server_[dir] = {true, -1, 0755};
        server_ops_.push_back({dir});
        return true;
    }
    // a whole directory removed
    std::vector<std::string> dirs = dirs_of(server_, 9);
    std::erase(dirs, std::string("/"));
    if (dirs.empty())
        return true;
    const std::string dir = any_of(dirs);
    note("server: rm -r " + dir);
    std::error_code ec;
    fs::remove_all(host(dir), ec);
    if (ec)
        return fail("server: rm -r " + dir + ": " + ec.message());
    for (auto it = server_.begin(); it != server_.end();)
        if (is_under(it->first, dir)) {
            if (!it->second.dir)
                release(it->second.version);
            it = server_.erase(it);
        } else {
            ++it;
        }
    server_ops_.push_back({dir});
    return true;
}

// ---- reconnecting ---------------------------------------------------------------

bool Scenario::wait_pass(std::uint64_t before, SyncOutcome& out) {
    QElapsedTimer clock;
    clock.start();
    while (clock.elapsed() < 30000) {
        const SyncStatus s = d_.rb->status();
        if (s.passes > before) {
            out = s.last;
            totals.passes++;
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return fail("no reintegration pass finished within 30 s");
}

// One pass from going online, with `arm` setting up a fault first. When
// operations are left pending the mount is taken offline at once, so that
// it does not retry by itself while the test goes on.
bool Scenario::run_pass(const std::function<void()>& arm, SyncOutcome& out) {
    const std::uint64_t before = d_.rb->status().passes;
    arm();
    d_.rb->go_online();
    if (!wait_pass(before, out))
        return false;
    if (d_.replica->pending_count() != 0)
        d_.rb->go_offline();
    d_.faults->clear_rules();
    d_.tap->disarm();
    note(format("  pass: %llu applied, %llu conflicts, %llu pending%s%s", (unsigned long long)out.applied,
                (unsigned long long)out.conflicts, (unsigned long long)out.pending, out.message.empty() ? "" : ": ",
                out.message.c_str()));
    return true;
}

bool Scenario::restart_after_kill() {
    kill_daemon();
    const auto r = pick(100);
    if (r < 45) {
        note("daemon restarted, offline");
        return open_daemon(true) && verify_local_view("after a restart");
    }
    if (!open_daemon(false))
        return false;
    SyncOutcome out;
    if (r < 94) {  // rarely by itself: it notices only at its next poll, half a second later
        note("daemon restarted; sync");
        out = d_.rb->sync_now(std::chrono::seconds(20));
        totals.passes++;
    } else {
        // Nobody asks: it must notice the server is there and reintegrate.
        note("daemon restarted; reintegrates by itself");
        QElapsedTimer clock;
        clock.start();
        SyncStatus s;
        while ((s = d_.rb->status()).pending != 0 || s.mode != SyncMode::connected || s.passes == 0) {
            if (clock.elapsed() > 20000)
                return fail(format("restarted with a pending log, it did not reintegrate by itself within 20 s "
                                   "(mode %s, %llu pending)", mode_name(s.mode), (unsigned long long)s.pending));
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        out = s.last;
        totals.passes++;
        totals.waited_ms += clock.elapsed();
    }
    note(format("  pass: %llu applied, %llu conflicts, %llu pending%s%s", (unsigned long long)out.applied,
                (unsigned long long)out.conflicts, (unsigned long long)out.pending, out.message.empty() ? "" : ": ",
                out.message.c_str()));
    return after_pass(out, true);
}

bool Scenario::reconnect() {
    // Offline by hand and without faults: every variant starts from there.
    d_.rb->go_offline();
    d_.faults->clear_rules();
    d_.tap->set_down(false);
    const std::uint64_t pending = d_.replica->pending_count();
    const auto r = pick(100);
    SyncOutcome out;
    if (r < 45) {
        note(format("go online (%llu pending)", (unsigned long long)pending));
        return run_pass([] {}, out) && after_pass(out, true);
    }
    if (r < 70) {
        FaultRule rule;
        rule.error = Errc::unreachable;
        rule.after = pick(pending * 6 + 4);
        rule.count = chance(0.5) ? UINT64_MAX : 1 + pick(3);
        note(format("go online; the server stops answering after %llu calls (%llu pending)",
                    (unsigned long long)rule.after, (unsigned long long)pending));
        if (!run_pass([&] { d_.faults->add_rule(rule); }, out) || !after_pass(out, false))
            return false;
        if (at_sync_point_)
            return true;
        const auto next = pick(100);
        if (next < 45) {
            note("go online again");
            return run_pass([] {}, out) && after_pass(out, true);
        }
        if (next < 80) {
            note("stay offline");
            return true;
        }
        return restart_after_kill();
    }
    const std::uint64_t at = pick(pending * 6 + 4);
    if (r < 85) {
        note(format("go online; offline again by hand at call %llu (%llu pending)", (unsigned long long)at,
                    (unsigned long long)pending));
        ReplicaBackend* rb = d_.rb.get();
        if (!run_pass([&] { d_.tap->arm(at, [rb] { rb->go_offline(); }); }, out) || !after_pass(out, false))
            return false;
        if (at_sync_point_ || chance(0.5))
            return true;
        return restart_after_kill();
    }
    // Killed while reintegrating: from call `at` on, nothing reaches the server.
    FaultRule rule;
    rule.error = Errc::unreachable;
    rule.after = at;
    note(format("go online; the daemon dies at call %llu (%llu pending)", (unsigned long long)at,
                (unsigned long long)pending));
    if (!run_pass([&] { d_.faults->add_rule(rule); }, out) || !after_pass(out, false))
        return false;
    return at_sync_point_ || restart_after_kill();
}

// After every pass: the server holds only known versions, paths the local
// side did not touch are as the server left them, and the model follows
// what the pass did.
bool Scenario::after_pass(const SyncOutcome& out, bool expect_clean) {
    const std::uint64_t pending = d_.replica->pending_count();
    if (expect_clean && (pending != 0 || out.error != Errc::ok))
        return fail(format("a pass with the server answering left %llu pending (%s)", (unsigned long long)pending,
                           out.message.c_str()));
    if (pending != 0)
        totals.partial_passes++;
    for (FileVersion& v : versions_)
        v.local_content = false;  // what reached the server is dropped here: no longer counted on
    std::map<std::string, OnDisk> disk = read_disk();
    for (auto it = disk.begin(); it != disk.end();) {
        if (!is_temp_path(it->first)) {
            ++it;
            continue;
        }
        if (pending == 0)
            return fail("the log is empty and the server still has the temporary " + it->first);
        it = disk.erase(it);
    }
    Tree actual;
    if (!identify(disk, actual))
        return false;
    std::set<std::string> keys;
    for (const Tree* t : {&actual, &server_})
        for (const auto& [p, e] : *t)
            keys.insert(p);
    for (const std::string& p : keys) {
        if (is_copy_path(p))
            continue;
        bool touched = false;
        for (const auto& op : local_ops_)
            for (const std::string& q : op)
                touched |= is_under(p, q);
        if (touched)
            continue;
        auto a = actual.find(p), s = server_.find(p);
        if (a == actual.end() || s == server_.end() || !(a->second == s->second))
            return fail(format("%s, which no local operation touched, changed on the server: %s -> %s", p.c_str(),
                               s == server_.end() ? "absent"
                               : s->second.dir  ? "directory"
                                                : describe_version(s->second.version).c_str(),
                               a == actual.end() ? "absent"
                               : a->second.dir  ? "directory"
                                                : describe_version(a->second.version).c_str()));
    }
    for (const auto& [p, e] : actual)
        if (!e.dir)
            versions_[e.version].homes.insert(p);
    server_ = std::move(actual);
    if (pending == 0)
        return sync_point(out);
    return adopt_local_view();
}

// The log is empty: everything written on either side is on the server.
bool Scenario::sync_point(const SyncOutcome& out) {
    if (out.pending != 0)
        return fail(format("the pass that emptied the log reported %llu pending", (unsigned long long)out.pending));
    const std::vector<Conflict> conflicts = d_.replica->conflicts();
    std::set<std::string> copies;
    for (const Conflict& c : conflicts)
        if (!c.copy.empty())
            copies.insert(c.copy);
    auto in_listed_copy = [&](const std::string& path) {
        for (std::string p = path; p != "/"; p = parent_of(p))
            if (copies.count(p))
                return true;
        return false;
    };
    std::map<int, std::string> where;
    for (const auto& [p, e] : server_)
        if (!e.dir)
            where[e.version] = p;
    for (int v : owed_) {
        auto it = where.find(v);
        if (it == where.end())
            return fail("lost: " + describe_version(v) + " is nowhere on the server");
        if (!versions_[v].homes.count(it->second) && !in_listed_copy(it->second))
            return fail("misplaced: " + describe_version(v) + " is at " + it->second +
                        ", neither where it was nor in a conflicted copy the conflict list names");
        totals.versions_checked++;
    }
    for (const auto& [p, e] : server_) {
        if (!is_copy_path(p))
            continue;
        std::string copy = p;
        while (is_copy_path(parent_of(copy)))
            copy = parent_of(copy);
        if (!copies.count(copy))
            return fail("the conflicted copy " + copy + " on the server is not in the conflict list");
    }
    for (std::size_t i = conflicts_seen_; i < conflicts.size(); ++i) {
        const Conflict& c = conflicts[i];
        totals.conflicts[conflict_name(c.kind)]++;
        note(format("  conflict %s on %s%s%s", conflict_name(c.kind), c.path.c_str(), c.copy.empty() ? "" : ", copy ",
                    c.copy.c_str()));
        bool removed_on_server = false;  // the server's user may remove a copy too, with its directory
        for (const auto& op : server_ops_)
            removed_on_server |= is_under(c.copy, op.front());
        if (!c.copy.empty() && !server_.count(c.copy) && !removed_on_server)
            return fail("the conflict list names the copy " + c.copy + ", which is not on the server");
    }
    // Contested: what both sides touched (a path, or one above or below it),
    // and transitively every path of an operation that touched those.
    std::set<std::string> contested;
    for (const auto& lo : local_ops_)
        for (const auto& so : server_ops_)
            for (const std::string& a : lo)
                for (const std::string& b : so)
                    if (related(a, b)) {
                        contested.insert(a);
                        contested.insert(b);
                    }
    for (bool grew = true; grew;) {
        grew = false;
        for (const auto* ops : {&local_ops_, &server_ops_})
            for (const auto& op : *ops) {
                bool hit = false;
                for (const std::string& p : op)
                    for (const std::string& c : contested)
                        hit |= related(p, c);
                if (hit)
                    for (const std::string& p : op)
                        grew |= contested.insert(p).second;
            }
    }
    for (const auto& op : local_ops_)
        for (const std::string& p : op) {
            if (contested.count(p))
                continue;
            auto l = local_.find(p), s = server_.find(p);
            const bool same = (l == local_.end()) == (s == server_.end()) &&
                              (l == local_.end() || l->second == s->second);
            if (!same)
                return fail(format("%s, which only the local side changed, is %s on the server; the local side has %s",
                                   p.c_str(),
                                   s == server_.end() ? "absent"
                                   : s->second.dir  ? "a directory"
                                                    : (describe_version(s->second.version) + format(" mode %o", s->second.mode)).c_str(),
                                   l == local_.end() ? "nothing"
                                   : l->second.dir  ? "a directory"
                                                    : (describe_version(l->second.version) + format(" mode %o", l->second.mode)).c_str()));
        }
    for (std::size_t i = conflicts_seen_; i < conflicts.size(); ++i) {
        // A conflict on a copy's name comes from operations an earlier
        // conflict moved there (checked when that one was).
        bool explained = is_copy_path(conflicts[i].path);
        for (const std::string& c : contested)
            explained |= related(conflicts[i].path, c);
        if (!explained)
            return fail(format("conflict %s on %s, which only one side changed", conflict_name(conflicts[i].kind),
                               conflicts[i].path.c_str()));
    }
    conflicts_seen_ = conflicts.size();
    at_sync_point_ = true;
    note(format("sync point: %zu owed versions on the server, %zu conflicts so far", owed_.size(), conflicts.size()));
    return refresh();
}

bool Scenario::final_sync() {
    if (!at_sync_point_) {
        d_.rb->go_offline();
        d_.faults->clear_rules();
        d_.tap->set_down(false);
        note(format("final: go online (%llu pending)", (unsigned long long)d_.replica->pending_count()));
        SyncOutcome out;
        if (!run_pass([] {}, out) || !after_pass(out, true))
            return false;
    }
    const SyncOutcome out = d_.rb->sync_now(std::chrono::seconds(20));
    if (out.pending != 0 || out.error != Errc::ok)
        return fail(format("the last sync reports %llu pending (%s)", (unsigned long long)out.pending, out.message.c_str()));
    return true;
}

bool Scenario::run() {
    totals.scenarios++;
    if (!setup())
        return false;
    const auto steps = 20 + pick(41);
    for (std::uint64_t i = 0; i < steps && failure_.empty(); ++i) {
        totals.steps++;
        if (at_sync_point_ && !start_round())
            break;
        const auto r = pick(100);
        bool ok = true;
        if (r < 52)
            ok = local_step();
        else if (r < 78)
            ok = server_step();
        else if (r < 83)
            ok = verify_local_view("at a random step");
        else if (r < 87) {
            note(format("daemon killed while disconnected (%llu pending)", (unsigned long long)d_.replica->pending_count()));
            kill_daemon();
            ok = open_daemon(true) && verify_local_view("after a restart");
        } else
            ok = reconnect();
        if (!ok)
            break;
    }
    if (failure_.empty())
        final_sync();
    return failure_.empty();
}

// Bugs the scenarios find that are not fixed yet, each with a named test
// below. A scenario that fails with the bug's mark in its message is an
// expected failure naming the bug, so that the suite stays green and the bug
// stays visible. Matched by the mark, not by the seed: consecutive stores
// are reintegrated in parallel, so where an outage or a stop falls among
// them (and whether a seed meets the bug) varies from run to run. Remove the
// entry when the named test passes.
struct KnownBug {
    const char* what;
    const char* mark;  // in the failure message
    const char* seen;  // seeds that met it
};
const std::vector<KnownBug> kKnownBugs = {};

// ---- a fixed scene for the named tests ----------------------------------------

// The server's directory, the daemon over it, and a few steps on each side.
class Rig {
public:
    Rig() {
        root_ = dir_.path().toStdString() + "/server";
        cache_ = dir_.path().toStdString() + "/cache";
        fs::create_directories(root_);
    }
    // Starts the daemon connected and pins the whole tree.
    bool start() {
        std::string message;
        if (!d.open(root_, cache_, false, message)) {
            qWarning("%s", message.c_str());
            return false;
        }
        Hoarder hoarder(*d.rb, *d.cache);
        std::atomic<bool> cancel{false};
        return hoarder.pin("/", [](const PinProgress&) {}, cancel, message) == Errc::ok;
    }
    // As after a SIGKILL: the daemon starts again over what it left.
    bool restart(bool offline) {
        d.kill();
        std::string message;
        if (!d.open(root_, cache_, offline, message)) {
            qWarning("%s", message.c_str());
            return false;
        }
        return true;
    }
    // A change made on the server, with an mtime of its own.
    void put(const std::string& path, const Bytes& bytes) {
        fs::create_directories(fs::path(root_ + path).parent_path());
        std::FILE* f = std::fopen((root_ + path).c_str(), "wb");
        std::fwrite(bytes.data(), 1, bytes.size(), f);
        std::fclose(f);
        const timespec times[2] = {{0, UTIME_OMIT}, {time_t(1000000000 + ++clock_), 0}};
        ::utimensat(AT_FDCWD, (root_ + path).c_str(), times, 0);
    }
    Bytes get(const std::string& path) const {
        Bytes out;
        if (std::FILE* f = std::fopen((root_ + path).c_str(), "rb")) {
            char buf[65536];
            for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;)
                out.append(buf, n);
            std::fclose(f);
        }
        return out;
    }
    bool exists(const std::string& path) const { return fs::exists(fs::symlink_status(root_ + path)); }
    void remove_tree(const std::string& path) { fs::remove_all(root_ + path); }
    void move(const std::string& from, const std::string& to) { fs::rename(root_ + from, root_ + to); }
    std::vector<std::string> server_paths() const {
        std::vector<std::string> out;
        for (const auto& e : fs::recursive_directory_iterator(root_))
            out.push_back("/" + fs::relative(e.path(), root_).string());
        return out;
    }
    // Offline, through the replica backend: the whole file becomes `bytes`.
    Errc write(const std::string& path, const Bytes& bytes) {
        std::unique_ptr<BackendFile> f;
        Attr attr;
        Errc e = d.replica->name(path) ? d.rb->open(path, O_WRONLY | O_TRUNC, f)
                                       : d.rb->create(path, 0644, O_WRONLY | O_CREAT | O_EXCL, f, attr);
        std::size_t n = 0;
        if (e == Errc::ok)
            e = f->write(0, std::span(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()), n);
        return e;
    }
    // One reintegration pass from going online; offline again at once when
    // operations are left (so that it does not retry by itself).
    SyncOutcome pass() {
        const std::uint64_t before = d.rb->status().passes;
        d.rb->go_online();
        QElapsedTimer clock;
        clock.start();
        while (d.rb->status().passes == before && clock.elapsed() < 30000)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        if (d.replica->pending_count() != 0)
            d.rb->go_offline();
        d.faults->clear_rules();
        return d.rb->status().last;
    }
    Conflict only_conflict() {
        const auto all = d.replica->conflicts();
        return all.size() == 1 ? all.front() : Conflict{};
    }

    Daemon d;

private:
    QTemporaryDir dir_;
    std::string root_, cache_;
    std::uint64_t clock_ = 0;
};

} // namespace

class TestSyncModel : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        ::umask(022);  // the modes the model expects on the server
        set_log_level(qEnvironmentVariableIsSet("NETFS_SYNC_MODEL_SEED") ? LogLevel::info : LogLevel::error);
    }

    void scenario_data() {
        QTest::addColumn<quint64>("seed");
        if (qEnvironmentVariableIsSet("NETFS_SYNC_MODEL_SEED")) {
            const quint64 seed = qEnvironmentVariable("NETFS_SYNC_MODEL_SEED").toULongLong();
            QTest::addRow("seed %llu", seed) << seed;
            return;
        }
        const quint64 count =
            qEnvironmentVariableIsSet("NETFS_SYNC_MODEL_SEEDS") ? qEnvironmentVariable("NETFS_SYNC_MODEL_SEEDS").toULongLong() : 200;
        for (quint64 seed = 1; seed <= count; ++seed)
            QTest::addRow("seed %llu", seed) << seed;
    }

    // One scenario: random rounds of disconnected work on both sides, each
    // ended by a reconnect (with outages, stops and kills on the way), the
    // model checked after every pass.
    void scenario() {
        QFETCH(quint64, seed);
        qInfo("seed %llu", seed);
        Scenario s(seed);
        const bool ok = s.run();
        if (!ok)
            qInfo("seed %llu, what happened:\n%s", seed, s.trace().c_str());
        for (const KnownBug& bug : kKnownBugs)
            if (!ok && s.failure().find(bug.mark) != std::string::npos)
                QEXPECT_FAIL("", bug.what, Continue);
        QVERIFY2(ok, qPrintable(QString("seed %1: %2 (replay: NETFS_SYNC_MODEL_SEED=%1)")
                                    .arg(seed)
                                    .arg(QString::fromStdString(s.failure()))));
    }

    // ---- failing seeds, as named tests --------------------------------------

    // A file renamed here into a directory the server removed meanwhile: a
    // conflict, and the log goes on (it stayed stuck on the rename, every
    // later operation with it: seeds 24, 32, 50).
    void rename_into_a_directory_removed_on_the_server_is_a_conflict() {
        Rig rig;
        rig.put("/a.txt", "alpha");
        rig.put("/d/keep", "k");
        QVERIFY(rig.start());
        rig.d.rb->go_offline();
        QCOMPARE(rig.d.rb->rename("/a.txt", "/d/a.txt", 0), Errc::ok);
        QCOMPARE(rig.write("/later.txt", "after the rename"), Errc::ok);
        rig.remove_tree("/d");
        const SyncOutcome out = rig.pass();
        QCOMPARE(out.pending, 0u);
        const Conflict c = rig.only_conflict();
        QCOMPARE(c.kind, ConflictKind::parent_removed);
        QCOMPARE(c.path, std::string("/d/a.txt"));
        QVERIFY2(c.copy.starts_with("/a (conflicted copy "), c.copy.c_str());
        QCOMPARE(rig.get(c.copy), Bytes("alpha"));
        QCOMPARE(rig.get("/later.txt"), Bytes("after the rename"));
    }

    // The server changes a file this side renames and then writes: the
    // rename moves the server's version, which stays, and the local one
    // goes to a conflicted copy (the server's change was overwritten:
    // seeds 27, 42).
    void a_server_change_to_a_file_renamed_here_is_kept() {
        Rig rig;
        rig.put("/a.txt", "original");
        QVERIFY(rig.start());
        rig.d.rb->go_offline();
        QCOMPARE(rig.d.rb->rename("/a.txt", "/b.txt", 0), Errc::ok);
        QCOMPARE(rig.write("/b.txt", "written here"), Errc::ok);
        rig.put("/a.txt", "changed on the server");
        QCOMPARE(rig.pass().pending, 0u);
        QVERIFY(!rig.exists("/a.txt"));
        QCOMPARE(rig.get("/b.txt"), Bytes("changed on the server"));
        const Conflict c = rig.only_conflict();
        QCOMPARE(c.kind, ConflictKind::update_update);
        QCOMPARE(rig.get(c.copy), Bytes("written here"));
    }

    // After a conflict the object's base stays what this side last saw, so
    // that its later changes conflict too instead of replacing the server's
    // version. Here a chmod conflicts, then the store logged after it (it
    // overwrote the server's version: seed 91).
    void a_conflicting_chmod_keeps_the_base() {
        Rig rig;
        rig.put("/a.txt", "original");
        QVERIFY(rig.start());
        rig.d.rb->go_offline();
        SetAttr chmod;
        chmod.mask = SetAttr::kMode;
        chmod.mode = 0600;
        Attr after;
        QCOMPARE(rig.d.rb->setattr("/a.txt", chmod, after), Errc::ok);
        QCOMPARE(rig.write("/a.txt", "written here"), Errc::ok);
        rig.put("/a.txt", "changed on the server");
        QCOMPARE(rig.pass().pending, 0u);
        QCOMPARE(rig.get("/a.txt"), Bytes("changed on the server"));
        bool kept = false;
        for (const Conflict& c : rig.d.replica->conflicts())
            kept |= !c.copy.empty() && rig.get(c.copy) == "written here";
        QVERIFY(kept);
    }

    // The same for a store that conflicts in a pass that stops early, then
    // an unlink made offline after it (it removed the server's version).
    void a_conflicting_store_moves_the_local_object_to_its_copy() {
        Rig rig;
        rig.put("/a.txt", "original");
        QVERIFY(rig.start());
        rig.d.rb->go_offline();
        QCOMPARE(rig.write("/a.txt", "written here"), Errc::ok);
        Attr attr;
        QCOMPARE(rig.d.rb->mkdir("/x", 0755, attr), Errc::ok);
        rig.put("/a.txt", "changed on the server");
        FaultRule rule;
        rule.op = Op::mkdir;
        rule.error = Errc::unreachable;
        rig.d.faults->add_rule(rule);
        QCOMPARE(rig.pass().pending, 1u);  // the store conflicted, the mkdir met the outage
        const auto conflicts = rig.d.replica->conflicts();
        QCOMPARE(conflicts.size(), std::size_t(1));
        const std::string copy = conflicts[0].copy;
        // The local object is the conflicted copy now, here too: the name
        // holds the server's version, which nothing here has seen.
        QCOMPARE(rig.d.rb->unlink("/a.txt"), Errc::not_found);
        QCOMPARE(rig.d.rb->getattr(copy, attr), Errc::ok);
        // Removing it removes the copy, never the server's version, and
        // settles the conflict.
        QCOMPARE(rig.d.rb->unlink(copy), Errc::ok);
        QCOMPARE(rig.pass().pending, 0u);
        QCOMPARE(rig.get("/a.txt"), Bytes("changed on the server"));
        QVERIFY(!rig.exists(copy));
        QVERIFY(rig.d.replica->conflicts().empty());
    }

    // The server stops answering just after an upload was renamed into
    // place: that upload is ours, not a change made on the server (it became
    // a conflict with the next local write: seed 184; a second conflicted
    // copy, the first not in the list: seeds 59, 158).
    void an_outage_right_after_an_upload_is_not_a_conflict() {
        Rig rig;
        rig.put("/a.txt", "original");
        QVERIFY(rig.start());
        rig.d.rb->go_offline();
        QCOMPARE(rig.write("/a.txt", "first"), Errc::ok);
        FaultRule rule;
        rule.op = Op::getattr;
        rule.path = "/a.txt";
        rule.after = 1;  // the check before the upload passes, the read-back after it fails
        rule.count = 1;
        rule.error = Errc::unreachable;
        rig.d.faults->add_rule(rule);
        rig.pass();
        rig.d.rb->go_offline();
        QCOMPARE(rig.write("/a.txt", "second"), Errc::ok);
        QCOMPARE(rig.pass().pending, 0u);
        QCOMPARE(rig.get("/a.txt"), Bytes("second"));
        QVERIFY(rig.d.replica->conflicts().empty());
    }

    // Offline, a chmod of a pinned file must not make it unchangeable: the
    // chmod gives it a new ctime, its cache object is looked up by a Version
    // that includes the ctime, and the pinned granules are dropped as stale,
    // so the next write (and a read through the engine) fails with EIO.
    // Not fixed (sync/replica_backend.cpp): the scenarios count these as
    // refused changes.
    void chmod_offline_keeps_a_pinned_file_editable() {
        Rig rig;
        rig.put("/a.txt", Bytes(100 << 10, 'a'));
        QVERIFY(rig.start());
        rig.d.rb->go_offline();
        SetAttr chmod;
        chmod.mask = SetAttr::kMode;
        chmod.mode = 0600;
        Attr after;
        QCOMPARE(rig.d.rb->setattr("/a.txt", chmod, after), Errc::ok);
        std::unique_ptr<BackendFile> f;
        QCOMPARE(rig.d.rb->open("/a.txt", O_WRONLY, f), Errc::ok);
    }

    // Offline, a pinned file renamed is still cached: its content is under
    // the old path's cache object, which nothing looks up any more, so it
    // can be neither changed nor (through the engine) read. Not fixed: the
    // scenarios count these as refused changes.
    void rename_offline_keeps_a_pinned_file_editable() {
        Rig rig;
        rig.put("/a.txt", Bytes(100 << 10, 'a'));
        QVERIFY(rig.start());
        rig.d.rb->go_offline();
        QCOMPARE(rig.d.rb->rename("/a.txt", "/b.txt", 0), Errc::ok);
        std::unique_ptr<BackendFile> f;
        QCOMPARE(rig.d.rb->open("/b.txt", O_WRONLY, f), Errc::ok);
    }

    // An upload cut short leaves its temporary for the next pass, which
    // reuses it; but when the file is removed here first, the log drops the
    // store and nothing ever removes the temporary (seeds 233, 240, 286...).
    void an_upload_cut_short_leaves_no_temporary() {
        Rig rig;
        rig.put("/a.txt", "original");
        QVERIFY(rig.start());
        rig.d.rb->go_offline();
        QCOMPARE(rig.write("/a.txt", Bytes(200 << 10, 'x')), Errc::ok);
        FaultRule rule;
        rule.op = Op::write;
        rule.error = Errc::unreachable;
        rig.d.faults->add_rule(rule);
        QCOMPARE(rig.pass().pending, 1u);
        QCOMPARE(rig.d.rb->unlink("/a.txt"), Errc::ok);
        QCOMPARE(rig.pass().pending, 0u);
        QVERIFY(!rig.exists("/a.txt"));
        std::string temporaries;
        for (const std::string& p : rig.server_paths())
            if (is_temp_path(p))
                temporaries += p + " ";
        QVERIFY2(temporaries.empty(), temporaries.c_str());
    }

    // A name taken on the server, then renamed again here (the renames are
    // not joined: something was logged between them). The second rename is
    // replayed on our file in its conflicted copy, never on the server's
    // file at the taken name (the pass read its operations before the
    // first one moved them to the copy's name, and moved the server's file).
    // Editors save by putting a new file in the old one's place: a
    // temporary renamed over it (gedit, sed -i, most libraries' atomic
    // save), or vim's NAME to NAME~, a new NAME, NAME~ removed. Each is one
    // update of NAME: where the server changed it meanwhile, one
    // update/update conflict with the server's version at NAME and ours in
    // the copy (before, a deletion and a creation, and vim's left the
    // server's version at NAME~ and ours at NAME); where it did not, ours
    // replaces it, with no temporary or backup name left. Where the server
    // deleted it, an update/delete, as an edit in place would be: ours in
    // the copy, nothing at NAME (before, the save quietly brought it back).
    void an_editors_save_is_one_update() {
        for (const char* server : {"changed", "deleted", "untouched"}) {
            const bool server_changed = server == std::string("changed");
            const bool server_deleted = server == std::string("deleted");
            Rig rig;
            rig.put("/atomic.txt", "original atomic");
            rig.put("/vim.txt", "original vim");
            QVERIFY(rig.start());
            rig.d.rb->go_offline();
            QCOMPARE(rig.write("/.atomic.txt.tmp", "saved atomic"), Errc::ok);
            QCOMPARE(rig.d.rb->rename("/.atomic.txt.tmp", "/atomic.txt", 0), Errc::ok);
            QCOMPARE(rig.d.rb->rename("/vim.txt", "/vim.txt~", 0), Errc::ok);
            QCOMPARE(rig.write("/vim.txt", "saved vim"), Errc::ok);
            QCOMPARE(rig.d.rb->unlink("/vim.txt~"), Errc::ok);
            if (server_changed) {
                rig.put("/atomic.txt", "server atomic");
                rig.put("/vim.txt", "server vim");
            }
            if (server_deleted) {
                rig.remove_tree("/atomic.txt");
                rig.remove_tree("/vim.txt");
            }
            QCOMPARE(rig.pass().pending, 0u);
            std::vector<std::string> paths = rig.server_paths();
            std::sort(paths.begin(), paths.end());
            const auto conflicts = rig.d.replica->conflicts();
            if (server_deleted) {
                QCOMPARE(paths.size(), std::size_t(2));
                QCOMPARE(conflicts.size(), std::size_t(2));
                for (const Conflict& c : conflicts) {
                    QCOMPARE(c.kind, ConflictKind::update_delete);
                    const std::string name = c.path == "/atomic.txt" ? "atomic" : "vim";
                    QCOMPARE(c.path, "/" + name + ".txt");
                    QVERIFY2(c.copy.starts_with("/" + name + " (conflicted copy "), c.copy.c_str());
                    QCOMPARE(rig.get(c.copy), Bytes("saved " + name));
                    QVERIFY(!c.remote_exists);
                }
                QVERIFY(conflicts[0].path != conflicts[1].path);
                continue;
            }
            if (!server_changed) {
                QCOMPARE(paths, (std::vector<std::string>{"/atomic.txt", "/vim.txt"}));
                QCOMPARE(rig.get("/atomic.txt"), Bytes("saved atomic"));
                QCOMPARE(rig.get("/vim.txt"), Bytes("saved vim"));
                QVERIFY(conflicts.empty());
                continue;
            }
            QCOMPARE(paths.size(), std::size_t(4));
            QCOMPARE(conflicts.size(), std::size_t(2));
            for (const Conflict& c : conflicts) {
                QCOMPARE(c.kind, ConflictKind::update_update);
                const std::string name = c.path == "/atomic.txt" ? "atomic" : "vim";
                QCOMPARE(c.path, "/" + name + ".txt");
                QCOMPARE(rig.get(c.path), Bytes("server " + name));
                QVERIFY2(c.copy.starts_with("/" + name + " (conflicted copy "), c.copy.c_str());
                QCOMPARE(rig.get(c.copy), Bytes("saved " + name));
                QCOMPARE(c.local_size, std::uint64_t(6 + name.size()));
                QVERIFY(c.remote_exists);
            }
            QVERIFY(conflicts[0].path != conflicts[1].path);
        }
    }

    // A listing (or a stat) of the server that started before a local move
    // or removal answers after it: the names it has are the server's old
    // ones, and the offline view does not get them back (seed 196 of the
    // model saw a pin refresh do that once, under load).
    void a_listing_older_than_a_local_change_does_not_bring_names_back() {
        Rig rig;
        rig.put("/moved.txt", "m");
        rig.put("/removed.txt", "r");
        QVERIFY(rig.start());
        std::vector<DirEntry> before;
        QCOMPARE(rig.d.rb->readdir("/", before), Errc::ok);
        rig.d.rb->go_offline();
        QCOMPARE(rig.d.rb->rename("/moved.txt", "/there.txt", 0), Errc::ok);
        QCOMPARE(rig.d.rb->unlink("/removed.txt"), Errc::ok);
        rig.d.replica->saw_listing("/", before);  // the late answer
        Attr attr;
        QCOMPARE(rig.d.rb->getattr("/removed.txt", attr), Errc::not_found);
        rig.d.replica->saw("/removed.txt", before.front().attr);
        QVERIFY(!rig.d.replica->name("/moved.txt"));
        QVERIFY(!rig.d.replica->name("/removed.txt"));
        QVERIFY(rig.d.replica->name("/there.txt"));
        QCOMPARE(rig.pass().pending, 0u);
        QCOMPARE(rig.server_paths(), std::vector<std::string>{"/there.txt"});
    }

    // A file removed here and on the server, then made anew here (`make
    // clean; make` on both sides): the new file, no conflict. Only an
    // editor's save is an update of the old one.
    void a_file_removed_on_both_sides_and_made_again_is_no_conflict() {
        Rig rig;
        rig.put("/obj.o", "old object");
        QVERIFY(rig.start());
        rig.d.rb->go_offline();
        QCOMPARE(rig.d.rb->unlink("/obj.o"), Errc::ok);
        QCOMPARE(rig.write("/obj.o", "new object"), Errc::ok);
        rig.remove_tree("/obj.o");
        QCOMPARE(rig.pass().pending, 0u);
        QVERIFY(rig.d.replica->conflicts().empty());
        QCOMPARE(rig.server_paths(), std::vector<std::string>{"/obj.o"});
        QCOMPARE(rig.get("/obj.o"), Bytes("new object"));
    }

    // A file removed or replaced here while a program has it open is set
    // aside by the engine under a hidden name until its last close. On the
    // server that is its removal, checked as any removal is: a version
    // changed there stays (delete/update), and the hidden name, and what
    // was written to it after, never reach the server; when the daemon
    // dies before the last close, its next start removes the hidden name.
    void a_file_set_aside_while_open_is_removed_from_the_server() {
        for (const bool crash : {false, true}) {
            Rig rig;
            rig.put("/t.txt", "original t");
            rig.put("/u.txt", "original u");
            QVERIFY(rig.start());
            rig.d.rb->go_offline();
            const std::string hidden_t = "/.netfs-unlinked-0000000000000007";
            const std::string hidden_u = "/.netfs-unlinked-0000000000000008";
            QCOMPARE(rig.d.rb->rename("/t.txt", hidden_t, 0), Errc::ok);
            QCOMPARE(rig.write(hidden_t, "written after its removal"), Errc::ok);
            QCOMPARE(rig.d.rb->rename("/u.txt", hidden_u, 0), Errc::ok);
            rig.put("/u.txt", "server u");
            if (crash) {
                QVERIFY(rig.restart(false));
                QVERIFY(!rig.d.replica->name(hidden_t));
                QVERIFY(!rig.d.replica->name(hidden_u));
            }
            QCOMPARE(rig.pass().pending, 0u);
            QCOMPARE(rig.server_paths(), std::vector<std::string>{"/u.txt"});
            QCOMPARE(rig.get("/u.txt"), Bytes("server u"));
            const Conflict c = rig.only_conflict();
            QCOMPARE(c.kind, ConflictKind::delete_update);
            QCOMPARE(c.path, std::string("/u.txt"));
            if (!crash) {
                // Still open here, connected: a listing or a stat of the
                // server, which lacks them, leaves them to their handles.
                std::vector<DirEntry> listing;
                QCOMPARE(rig.d.rb->readdir("/", listing), Errc::ok);
                Attr attr;
                rig.d.rb->getattr(hidden_t, attr);
                QVERIFY(rig.d.replica->name(hidden_t));
                QVERIFY(rig.d.replica->name(hidden_u));
                // The last closes: nothing on the server goes (the server has
                // no such names: not found, which the engine takes as done),
                // and the names go here.
                for (const std::string& hidden : {hidden_t, hidden_u}) {
                    const Errc e = rig.d.rb->unlink(hidden);
                    QVERIFY2(e == Errc::ok || e == Errc::not_found, describe(e).data());
                    QVERIFY(!rig.d.replica->name(hidden));
                }
            }
            QCOMPARE(rig.pass().pending, 0u);
            QCOMPARE(rig.server_paths(), std::vector<std::string>{"/u.txt"});
            QCOMPARE(rig.get("/u.txt"), Bytes("server u"));
        }
    }

    // Only the names this run set aside are kept against the server: such
    // a name of another client's (an NFS mount's file removed while open
    // there) goes from here when it goes from the server.
    void another_clients_set_aside_name_goes_with_the_server() {
        Rig rig;
        const std::string theirs = "/.netfs-unlinked-00000000000000aa";
        rig.put(theirs, "open on another client");
        QVERIFY(rig.start());
        std::vector<DirEntry> listing;
        QCOMPARE(rig.d.rb->readdir("/", listing), Errc::ok);
        QVERIFY(rig.d.replica->name(theirs));
        rig.remove_tree(theirs);
        QCOMPARE(rig.d.rb->readdir("/", listing), Errc::ok);
        QVERIFY(!rig.d.replica->name(theirs));
        Attr attr;
        QCOMPARE(rig.d.rb->getattr(theirs, attr), Errc::not_found);
    }

    // vim's save joins the move aside and the removal into one removal of
    // the first name. A pass that sent the move and stopped before
    // recording it (an outage, a kill) left the file at the second name:
    // the removal finds it there (it stayed on the server before).
    void a_move_aside_sent_before_an_outage_is_still_removed() {
        Rig rig;
        rig.put("/vim.txt", "original");
        QVERIFY(rig.start());
        rig.d.rb->go_offline();
        QCOMPARE(rig.d.rb->rename("/vim.txt", "/vim.txt~", 0), Errc::ok);
        rig.move("/vim.txt", "/vim.txt~");  // what the cut-short pass did
        QCOMPARE(rig.write("/vim.txt", "saved"), Errc::ok);
        QCOMPARE(rig.d.rb->unlink("/vim.txt~"), Errc::ok);
        QCOMPARE(rig.pass().pending, 0u);
        QCOMPARE(rig.server_paths(), std::vector<std::string>{"/vim.txt"});
        QCOMPARE(rig.get("/vim.txt"), Bytes("saved"));
        QVERIFY(rig.d.replica->conflicts().empty());
    }

    // Changes made here while a pass runs are logged, and the log's
    // optimisations leave the operations the pass holds alone: the pass
    // records an operation by its seq, and a rename turned into a removal
    // under it was recorded as done once the rename was (the file stayed
    // on the server under its new name).
    void a_removal_made_while_its_move_is_reintegrated_is_not_lost() {
        Rig rig;
        rig.put("/a.txt", "original");
        QVERIFY(rig.start());
        rig.d.rb->go_offline();
        QCOMPARE(rig.d.rb->rename("/a.txt", "/b.txt", 0), Errc::ok);
        ReplicaBackend* rb = rig.d.rb.get();
        Errc removed = Errc::invalid;
        rig.d.tap->arm_on(Op::rename, [rb, &removed] { removed = rb->unlink("/b.txt"); });
        rig.pass();
        rig.d.tap->disarm();
        QCOMPARE(removed, Errc::ok);
        for (int i = 0; i < 3 && rig.d.replica->pending_count() != 0; ++i)
            rig.pass();
        QCOMPARE(rig.d.replica->pending_count(), 0u);
        QCOMPARE(rig.server_paths(), std::vector<std::string>{});
        QVERIFY(rig.d.replica->conflicts().empty());
    }

    // A file made here and removed here while a pass uploads it: its
    // operations go with it, and what the pass had sent goes too.
    void a_file_removed_while_it_is_uploaded_does_not_stay_on_the_server() {
        Rig rig;
        QVERIFY(rig.start());
        rig.d.rb->go_offline();
        QCOMPARE(rig.write("/n.txt", "made here"), Errc::ok);
        ReplicaBackend* rb = rig.d.rb.get();
        Errc removed = Errc::invalid;
        rig.d.tap->arm_on(Op::rename, [rb, &removed] { removed = rb->unlink("/n.txt"); });  // the upload's
        rig.pass();
        rig.d.tap->disarm();
        QCOMPARE(removed, Errc::ok);
        QCOMPARE(rig.d.replica->pending_count(), 0u);
        QCOMPARE(rig.server_paths(), std::vector<std::string>{});
        QVERIFY(rig.d.replica->conflicts().empty());
    }

    // `rm -r` here of folders the server changed meanwhile: what it
    // changed or added stays, with its folders. A file it changed is one
    // delete/update, and the folders kept only for it are no conflicts of
    // their own; a folder with a file the server added is one.
    void removing_a_folder_the_server_changed_keeps_its_changes() {
        Rig rig;
        for (const char* p : {"/changed/k1", "/changed/k2", "/changed/deep/k3", "/added/h1"})
            rig.put(p, "original");
        QVERIFY(rig.start());
        rig.d.rb->go_offline();
        for (const char* p : {"/changed/k1", "/changed/k2", "/changed/deep/k3", "/added/h1"})
            QCOMPARE(rig.d.rb->unlink(p), Errc::ok);
        for (const char* p : {"/changed/deep", "/changed", "/added"})
            QCOMPARE(rig.d.rb->rmdir(p), Errc::ok);
        rig.put("/changed/deep/k3", "changed on the server");
        rig.put("/added/new", "added on the server");
        QCOMPARE(rig.pass().pending, 0u);
        std::vector<std::string> paths = rig.server_paths();
        std::sort(paths.begin(), paths.end());
        QCOMPARE(paths, (std::vector<std::string>{"/added", "/added/new", "/changed", "/changed/deep",
                                                  "/changed/deep/k3"}));
        QCOMPARE(rig.get("/changed/deep/k3"), Bytes("changed on the server"));
        std::map<std::string, ConflictKind> conflicts;
        for (const Conflict& c : rig.d.replica->conflicts())
            conflicts[c.path] = c.kind;
        QCOMPARE(conflicts, (std::map<std::string, ConflictKind>{{"/added", ConflictKind::delete_update},
                                                                 {"/changed/deep/k3", ConflictKind::delete_update}}));
    }

    void a_rename_from_a_taken_name_moves_ours_not_the_servers() {
        Rig rig;
        rig.put("/a.txt", "mine");
        QVERIFY(rig.start());
        rig.d.rb->go_offline();
        Attr attr;
        QCOMPARE(rig.d.rb->rename("/a.txt", "/b.txt", 0), Errc::ok);
        QCOMPARE(rig.d.rb->mkdir("/x", 0755, attr), Errc::ok);
        QCOMPARE(rig.d.rb->rename("/b.txt", "/c.txt", 0), Errc::ok);
        rig.put("/b.txt", "made on the server");
        QCOMPARE(rig.pass().pending, 0u);
        QCOMPARE(rig.get("/b.txt"), Bytes("made on the server"));
        QCOMPARE(rig.get("/c.txt"), Bytes("mine"));
        QCOMPARE(rig.only_conflict().kind, ConflictKind::rename_taken);
    }

    // A file made here whose name the server took meanwhile goes to a
    // conflicted copy; a rename of it logged after that is replayed on the
    // name, and so moves the server's file instead of ours (the store does
    // not move the later operations of its object to the copy, as a taken
    // rename does). Nothing is lost, but the server's version does not stay
    // in place and ours is not where the user put it.
    void a_rename_after_a_conflicting_create_moves_ours_not_the_servers() {
        Rig rig;
        rig.put("/a.txt", "a");
        QVERIFY(rig.start());
        rig.d.rb->go_offline();
        QCOMPARE(rig.write("/n.txt", "mine"), Errc::ok);
        QCOMPARE(rig.d.rb->rename("/n.txt", "/m.txt", 0), Errc::ok);
        rig.put("/n.txt", "theirs");
        QCOMPARE(rig.pass().pending, 0u);
        QCOMPARE(rig.get("/n.txt"), Bytes("theirs"));
        QCOMPARE(rig.get("/m.txt"), Bytes("mine"));
    }

    // The same: the record still names the copy the second rename moved
    // away (seeds 16, 42, 115). It should follow it, or not be made when
    // the local side's last name for the file is free.
    void a_conflict_record_names_where_its_copy_is() {
        Rig rig;
        rig.put("/a.txt", "mine");
        QVERIFY(rig.start());
        rig.d.rb->go_offline();
        Attr attr;
        QCOMPARE(rig.d.rb->rename("/a.txt", "/b.txt", 0), Errc::ok);
        QCOMPARE(rig.d.rb->mkdir("/x", 0755, attr), Errc::ok);
        QCOMPARE(rig.d.rb->rename("/b.txt", "/c.txt", 0), Errc::ok);
        rig.put("/b.txt", "made on the server");
        QCOMPARE(rig.pass().pending, 0u);
        const Conflict c = rig.only_conflict();
        QVERIFY2(rig.exists(c.copy), c.copy.c_str());
    }

    void cleanupTestCase() {
        std::string kinds;
        for (const auto& [k, n] : totals.conflicts)
            kinds += format(" %s=%llu", k.c_str(), (unsigned long long)n);
        qInfo("%llu scenarios, %llu steps (%llu local, %llu server operations), %llu rounds, %llu passes "
              "(%llu stopped early), %llu kills, %llu owed versions checked, %llu offline changes refused "
              "(not cached), %llu ms waiting for passes "
              "started by themselves; conflicts:%s",
              (unsigned long long)totals.scenarios, (unsigned long long)totals.steps,
              (unsigned long long)totals.local_ops, (unsigned long long)totals.server_ops,
              (unsigned long long)totals.rounds, (unsigned long long)totals.passes,
              (unsigned long long)totals.partial_passes, (unsigned long long)totals.kills,
              (unsigned long long)totals.versions_checked, (unsigned long long)totals.refused,
              (unsigned long long)totals.waited_ms, kinds.c_str());
    }
};

QTEST_GUILESS_MAIN(TestSyncModel)
#include "test_sync_model.moc"
