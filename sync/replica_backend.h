// Disconnected operation as a backend: the engine talks to this one, and it
// talks to the real remote while it can.
//
//   connected       every call is forwarded; what the server answers is
//                   recorded in the replica (sync/replica.h)
//   disconnected    calls are answered from the replica and the cache; every
//                   mutation is applied there and appended to the log,
//                   durable before it returns; file contents changed here
//                   live in the cache as dirty granules ("local content")
//   reintegrating   as disconnected for callers, while the sync thread
//                   replays the log on the server (sync/reintegrator.h);
//                   connected again once the log is empty
//
// The switch to disconnected is automatic when a request fails because the
// server cannot be reached (never on any other error: an outage is not a
// deletion) or the backend reports it unreachable, and manual with
// go_offline(). The sync thread notices the server is back and
// reintegrates by itself.
//
// Because the engine owns all caching, this layer needs no read path of its
// own for unchanged files: the engine asks the persistent cache first, and a
// miss that reaches a disconnected remote fails at once with EIO.
#pragma once

#include "core/backend/backend.h"
#include "sync/replica.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <unordered_set>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace netfs {

class CacheStore;

enum class SyncMode { connected, disconnected, reintegrating };
const char* mode_name(SyncMode mode);

// The outcome of one reintegration pass.
struct SyncOutcome {
    std::uint64_t applied = 0;    // operations now on the server
    std::uint64_t conflicts = 0;  // new conflicts
    std::uint64_t pending = 0;    // operations still in the log
    Errc error = Errc::ok;        // why it stopped early (the server went away...)
    std::string message;
};

struct SyncProgress {
    std::uint64_t ops_done = 0;
    std::uint64_t ops_total = 0;
    std::uint64_t bytes_left = 0;
};

// A pinned path and how much of it is in the cache, as of the last pass of
// the pin thread (which refreshes every pin while connected, so files added
// on the server to a pinned directory are fetched too).
struct PinState {
    std::string path;
    std::uint64_t present = 0;  // bytes held in the cache
    std::uint64_t total = 0;    // bytes of its regular files
    std::string state;          // waiting (for the server), fetching, ready, failed
    std::string message;        // why it failed
};

// Something a watcher (the tray) wants to hear of, in order. Kinds:
//   mode       the mode changed: `detail` is the new mode, `text` why
//   progress   reintegration progress (at most a few per second)
//   sync       a reintegration pass ended: `text` sums it up
//   conflict   a new conflict: `detail` is the path, `text` the kind
//   pin        a pin changed state: `detail` is the path, `text` the state
struct SyncEvent {
    std::uint64_t seq = 0;
    std::string kind;
    std::string detail;
    std::string text;
    std::int64_t when_ns = 0;  // wall clock
};

struct SyncStatus {
    SyncMode mode = SyncMode::connected;
    bool manual_offline = false;
    std::uint64_t pending = 0;
    std::uint64_t conflicts = 0;
    std::uint64_t uncached_reads = 0;  // reads refused while disconnected (data not cached)
    SyncProgress progress;             // of the reintegration running now
    SyncOutcome last;                  // of the last finished pass
    std::uint64_t passes = 0;
};

class ReplicaBackend : public Backend {
public:
    // Makes a new connection to the server (for a mount that started
    // disconnected, or to replace one that failed for good).
    using Connect = std::function<Errc(std::unique_ptr<Backend>& out, std::string& message)>;

    // `remote` may be null: the mount starts disconnected and `connect` is
    // tried in the background. `hostname` names conflicted copies.
    ReplicaBackend(std::unique_ptr<Backend> remote, Connect connect, std::shared_ptr<Replica> replica,
                   std::shared_ptr<CacheStore> cache, std::string description, std::string hostname);
    ~ReplicaBackend() override;

    // Starts the sync thread (reintegration, reconnection) and the pin
    // thread, which refreshes every pin this often while connected.
    void start(std::chrono::milliseconds pin_refresh = std::chrono::seconds(60));
    void stop();

    void go_offline();
    void go_online();
    // Whether the log is replayed by itself when the server is back (else
    // only by sync_now). On by default.
    void set_auto_sync(bool on);
    bool auto_sync() const;
    // Reintegrates now and returns when the pass is over (or after `wait`).
    SyncOutcome sync_now(std::chrono::milliseconds wait);
    SyncStatus status();
    // Bumped at every mode change, new conflict and finished pass: the
    // control API's event stream polls it.
    std::uint64_t generation() const { return generation_.load(); }
    Replica& replica() { return *replica_; }

    // Events after `since` (0: the recent ones kept), waiting up to `wait`
    // for one when there is none yet: a long poll, repeated with the last
    // seq, is the control API's event stream.
    std::vector<SyncEvent> events_after(std::uint64_t since, std::chrono::milliseconds wait);

    // Pins `path` (a remote path): refused with no_space and `message` when
    // it cannot fit in the cache beside what is pinned already. Fetching
    // goes on in the background (pin_states() shows it).
    Errc pin(const std::string& path, std::string& message);
    Errc unpin(const std::string& path, std::string& message);
    std::vector<PinState> pin_states();

    // One file's state, for `getfattr -n user.netfs.state`:
    //   "cached=75% pinned=yes dirty=no pending=0 conflict=no"
    // cached: how much of its content is in the cache (100% for a file
    // changed here); dirty: changed here, not yet on the server; pending:
    // logged operations on it; conflict: a conflict names it or its copy.
    Errc file_state(const std::string& path, std::string& out);

    // ---- Backend ----
    ConnectionState connection_state() const override;
    bool changes_stay_local() const override;
    bool offline_by_request() const override;
    std::string describe() const override { return description_; }
    BackendLimits limits() const override { return limits_; }
    Errc getattr(const std::string& path, Attr& out) override;
    Errc readdir(const std::string& path, std::vector<DirEntry>& out) override;
    Errc open(const std::string& path, int flags, std::unique_ptr<BackendFile>& out) override;
    Errc create(const std::string& path, std::uint32_t mode, int flags, std::unique_ptr<BackendFile>& out,
                Attr& attr) override;
    Errc mknod(const std::string& path, std::uint32_t mode, std::uint64_t rdev, Attr& attr) override;
    Errc mkdir(const std::string& path, std::uint32_t mode, Attr& attr) override;
    Errc symlink(const std::string& target, const std::string& path, Attr& attr) override;
    Errc link(const std::string& existing, const std::string& path, Attr& attr) override;
    Errc readlink(const std::string& path, std::string& target) override;
    Errc unlink(const std::string& path) override;
    Errc rmdir(const std::string& path) override;
    Errc rename(const std::string& from, const std::string& to, unsigned flags) override;
    Errc setattr(const std::string& path, const SetAttr& change, Attr& out) override;
    Errc statfs(StatFs& out) override;
    Errc sync_namespace() override;

private:
    friend class ReplicaFile;

    // The remote while connected; null otherwise.
    std::shared_ptr<Backend> online();
    // A forwarded request failed with `error`: when that means the server is
    // out of reach, switch to disconnected and return true (the caller then
    // answers locally).
    bool lost(Errc error);
    // The server is given up: the backend says unreachable, or it has been
    // reconnecting for longer than kReconnectGrace. Called with mu_ held.
    bool server_gone_locked();
    static constexpr std::chrono::milliseconds kReconnectGrace{1500};
    void set_mode(SyncMode mode, const char* why);
    // Records an event and wakes watchers. Called with mu_ held.
    void emit(std::string kind, std::string detail, std::string text);
    // Answers for a path the replica does not know: not_found when its
    // parent's listing is complete, io (unknown while disconnected) otherwise.
    Errc unknown(const std::string& path);
    // `path` was seen online: its directory gets listed in the background
    // (once), so that what a user visited online lists offline too.
    void visited(const std::string& path);
    void list_loop();
    static constexpr std::size_t kListQueue = 1024;

    // Local content: the whole file as changed here, as dirty granules.
    // Made from the cached base version at the first change (io when the
    // file is not fully cached: it cannot be changed while disconnected).
    Errc ensure_content(const Name& name, bool truncate, std::uint64_t& content);
    // A fresh cache object for oid's local content.
    Errc new_content(std::int64_t oid, std::uint64_t& content);
    // Granules 0..count-1 of `content`, each made by `fill`, stored dirty in
    // batches (synced at the next flush).
    Errc put_granules(std::uint64_t content, std::uint64_t count,
                      const std::function<Errc(std::uint64_t index, std::vector<std::byte>& bytes)>& fill);
    Errc read_content(std::int64_t oid, std::uint64_t offset, std::span<std::byte> buf, std::size_t& transferred);
    Errc write_content(std::int64_t oid, std::uint64_t offset, std::span<const std::byte> data);
    Errc resize_content(std::int64_t oid, std::uint64_t size);
    std::optional<Name> name_of(std::int64_t oid);
    // Attributes of `oid` seen through an open handle, recorded for each name.
    void saw_object(std::int64_t oid, const Attr& attr);
    // Counts attribute changes made by path (setattr, link, rename): a
    // getattr asked before one may answer after it, and must not replace
    // what it recorded with the older attributes (the cache has taken the
    // newer version: an offline open under the older one dropped the file's
    // cached copy). The count of `path` as a getattr starts.
    struct AttrChanges {
        std::uint64_t epoch = 0, count = 0;
        bool operator==(const AttrChanges&) const = default;
    };
    AttrChanges attr_changes(const std::string& path);
    void count_attr_change(const std::string& path);
    // Runs `ask` (a getattr of `path`, or of a handle opened at it) and
    // `record` (the replica's record of what it found), asking again while
    // an attribute change was counted meanwhile (up to 3 times; then nothing
    // is recorded). A count and its own record are made together (under
    // attr_record_mu_). Skipping alone left older records in place: a file
    // written as NAME.lock and renamed over NAME kept the size it had when
    // created (0), and read as empty offline.
    Errc ask_and_record(const std::string& path, const std::function<Errc()>& ask, const std::function<void()>& record);
    // ReplicaFile::keep_unsent: the engine's view of `oid` becomes its local content.
    Errc keep_unsent(std::int64_t oid, const Attr& base, std::uint64_t size, const timespec& mtime,
                     const BackendFile::ContentReader& read);
    // The cache's object for `name`, if it holds the version the replica
    // last saw (looked up, never attached).
    bool cached_as_seen(const Name& name, std::uint64_t& id);
    // Whether oid's local content is the copy keep_unsent made.
    bool was_kept(std::int64_t oid);
    Attr new_attr(std::uint32_t mode, std::int64_t oid) const;
    // Logs the removal of `name` (unlink or rmdir, by its type) against its
    // base version.
    Errc log_removal(const Name& name);
    // A local change of `oid`'s content or attributes (durable first).
    Errc log_store(const Name& name);

    void sync_loop();
    void pin_loop();
    SyncOutcome reintegrate_once();
    std::int64_t last_conflict_id();
    // Frees the local content no pending operation needs (only `only`'s,
    // when not 0).
    void drop_unneeded_content(std::int64_t only = 0);

    std::shared_ptr<Backend> remote_;  // guarded by mu_
    Connect connect_;
    std::shared_ptr<Replica> replica_;
    std::shared_ptr<CacheStore> cache_;
    std::string description_;
    std::string hostname_;
    BackendLimits limits_;

    mutable std::mutex mu_;
    std::condition_variable wake_;
    SyncMode mode_ = SyncMode::connected;
    bool manual_offline_ = false;
    bool auto_sync_ = true;
    std::chrono::steady_clock::time_point reconnecting_since_{};  // when the backend stopped being connected
    bool stopping_ = false;
    bool sync_asked_ = false;
    SyncStatus status_;
    std::map<std::int64_t, unsigned> open_local_;  // oids with handles open on their local content
    // Local content made by keep_unsent (oid -> content): it holds all a
    // handle tied to the server wrote, so that handle may continue on it.
    std::map<std::int64_t, std::uint64_t> kept_;
    // Objects whose last name or last local handle went: their content is
    // freed by the sync thread (guarded by mu_).
    std::vector<std::int64_t> drop_soon_;
    std::mutex attr_record_mu_;
    std::map<std::string, std::uint64_t> attr_changes_;  // guarded by attr_record_mu_; see attr_changes()
    std::uint64_t attr_changes_epoch_ = 0;              // counts forgotten (guarded by attr_record_mu_)
    StatFs last_statfs_{};
    std::atomic<std::uint64_t> generation_{0};
    std::atomic<std::uint64_t> uncached_reads_{0};
    std::mutex content_mu_;  // read-modify-write of local content granules
    // Files set aside while disconnected by this run (the engine's hidden
    // names of files removed while open), until their last close removes
    // them: the server does not have them, and only their handles do
    // (Replica::set_keep_name). A leaf lock.
    std::mutex aside_mu_;
    std::set<std::string> aside_here_;
    bool set_aside_here(const std::string& path);
    std::condition_variable content_cv_;  // a file's local size grew (write_content)
    std::thread thread_;
    // Pinning: its own thread, so a long fetch never holds up reintegration.
    std::thread pin_thread_;
    bool pins_changed_ = true;              // guarded by mu_
    std::chrono::milliseconds pin_refresh_{60000};
    std::atomic<bool> pin_cancel_{false};  // an unpin or shutdown stops a fetch
    std::vector<PinState> pin_states_;      // guarded by mu_
    std::thread list_thread_;
    std::set<std::string> to_list_;              // directories to list; guarded by mu_
    std::unordered_set<std::string> listed_;     // known listed; guarded by mu_
    std::condition_variable list_cv_;            // with mu_
    std::deque<SyncEvent> events_;          // the last kMaxEvents; guarded by mu_
    std::uint64_t next_event_ = 1;
    std::condition_variable event_;          // with mu_
};

} // namespace netfs
