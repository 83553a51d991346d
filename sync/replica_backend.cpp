#include "sync/replica_backend.h"

#include "core/cache/cache_store.h"
#include "core/log.h"
#include "sync/hoarder.h"
#include "sync/reintegrator.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <utility>

namespace netfs {

namespace {

timespec now_ts() {
    timespec t{};
    clock_gettime(CLOCK_REALTIME, &t);
    return t;
}

// Local content lives in the cache under a key no remote path can have.
std::string content_key(std::int64_t oid) { return "local:" + std::to_string(oid); }

// A new local copy that fails (a full disk, a granule that cannot be read)
// is not left behind: its granules are dirty, never culled, and nothing
// would ever free them. Disarmed once the replica records the copy.
struct DropUnlessRecorded {
    CacheStore* cache;
    std::uint64_t content;
    ~DropUnlessRecorded() {
        if (cache)
            cache->drop_object(content);
    }
};

} // namespace

const char* mode_name(SyncMode mode) {
    switch (mode) {
    case SyncMode::connected: return "connected";
    case SyncMode::disconnected: return "disconnected";
    case SyncMode::reintegrating: return "reintegrating";
    }
    return "?";
}

// A file opened through the replica backend: on the server while connected,
// on its local content otherwise. A handle opened online that outlives the
// connection moves to the local content at its first change.
class ReplicaFile : public BackendFile {
public:
    ReplicaFile(ReplicaBackend& owner, std::int64_t oid, std::string path, std::unique_ptr<BackendFile> remote,
                bool local)
        : owner_(owner), oid_(oid), path_(std::move(path)), remote_(std::move(remote)), local_(local) {
        if (local_)
            hold();
    }
    ~ReplicaFile() override { release(); }

    Errc read(std::uint64_t offset, std::span<std::byte> buf, std::size_t& transferred) override {
        if (!local_ && remote_ && owner_.online()) {
            const Errc e = remote_->read(offset, buf, transferred);
            if (!owner_.lost(e))
                return e;
        }
        if (local_ || has_content())
            return owner_.read_content(oid_, offset, buf, transferred);
        owner_.uncached_reads_++;
        return Errc::io;  // not cached, and the server is away: at once, never a hang
    }

    // Disconnected, the local copy is made before the engine drops the
    // cached bytes of the range it writes: they are its base. Connected,
    // the handle's writes go to the server from now on: with cached bytes
    // gone, a local copy could not be made from the cache alone, even if
    // the mode changes first. Its writes after an outage have the engine
    // keep the file as it sees it (keep_unsent), and continue on that copy.
    bool before_write() override {
        if (local_ || !remote_)
            return true;
        if (owner_.online()) {
            tied_to_server_ = true;
            return true;
        }
        // Tied to the server and not kept here: nothing to write to (the
        // cached bytes stay, for keep_unsent). Other errors are write()'s.
        return !is_transient(go_local(false));
    }

    Errc write(std::uint64_t offset, std::span<const std::byte> data, std::size_t& transferred) override {
        if (!local_ && remote_ && owner_.online()) {
            const Errc e = remote_->write(offset, data, transferred);
            tied_to_server_ = true;
            if (!owner_.lost(e))
                return e;
        }
        if (Errc e = go_local(false); e != Errc::ok)
            return e;
        const Errc e = owner_.write_content(oid_, offset, data);
        transferred = e == Errc::ok ? data.size() : 0;
        return e;
    }

    Errc fsync(bool datasync) override {
        if (!local_ && remote_ && owner_.online()) {
            const Errc e = remote_->fsync(datasync);
            if (!owner_.lost(e))
                return e;
        }
        // What was sent to the server before an outage may not be on it:
        // never report it durable (transient: the engine asks again),
        // unless the file was kept here since (keep_unsent).
        if (tied_to_server_ && !local_ && !owner_.was_kept(oid_))
            return Errc::unreachable;
        // Local writes commit without a sync of their own: durable now.
        return owner_.replica_->flush();
    }

    // Online, what the remote's open found; a local file answers getattr.
    bool opened_attr(Attr& out) const override { return !local_ && remote_ && remote_->opened_attr(out); }

    Errc getattr(Attr& out) override {
        if (!local_ && remote_ && owner_.online()) {
            const Errc e = owner_.ask_and_record(path_, [&] { return remote_->getattr(out); },
                                                 [&] { owner_.saw_object(oid_, out); });
            if (!owner_.lost(e))
                return e;
        }
        auto n = owner_.name_of(oid_);
        if (!n)
            return Errc::bad_handle;
        out = n->attr;
        return Errc::ok;
    }

    Errc truncate(std::uint64_t size) override {
        if (!local_ && remote_ && owner_.online()) {
            const Errc e = remote_->truncate(size);
            if (!owner_.lost(e))
                return e;
        }
        if (Errc e = go_local(size == 0); e != Errc::ok)
            return e;
        return owner_.resize_content(oid_, size);
    }

    bool content_is_local() const override { return local_; }

    Errc keep_unsent(const Attr& base, std::uint64_t size, const timespec& mtime,
                     const ContentReader& read) override {
        return owner_.keep_unsent(oid_, base, size, mtime, read);
    }

    Errc close() override {
        Errc e = Errc::ok;
        if (remote_) {
            e = remote_->close();
            if (owner_.lost(e))
                e = Errc::ok;  // nothing of ours is waiting on it: writes were acknowledged or moved local
        }
        return e;
    }

private:
    bool has_content() {
        auto o = owner_.replica_->object(oid_);
        return o && o->content;
    }
    // Several of the engine's write jobs may ask at once: one copies.
    Errc go_local(bool truncate) {
        std::lock_guard lock(local_mu_);
        if (local_)
            return Errc::ok;
        // Writes already sent to the server are in no local copy: changing
        // the file locally now could lose them. A transient error: the
        // engine has the whole file kept here (keep_unsent), and this
        // handle continues on that copy; or it keeps the data and retries
        // until the server answers again.
        if (tied_to_server_ && !owner_.was_kept(oid_))
            return Errc::unreachable;
        auto n = owner_.name_of(oid_);
        if (!n)
            return Errc::bad_handle;
        std::uint64_t content = 0;
        if (Errc e = owner_.ensure_content(*n, truncate, content); e != Errc::ok)
            return e;
        local_ = true;
        hold();
        return Errc::ok;
    }
    void hold() {
        std::lock_guard lock(owner_.mu_);
        owner_.open_local_[oid_]++;
        held_ = true;
    }
    void release() {
        if (!held_)
            return;
        std::lock_guard lock(owner_.mu_);
        if (--owner_.open_local_[oid_] == 0) {
            owner_.open_local_.erase(oid_);
            // Removed while open: its content is freed once the last handle
            // goes, by the sync thread (this may run under the engine's lock).
            owner_.drop_soon_.push_back(oid_);
            owner_.wake_.notify_all();
        }
        held_ = false;
    }

    ReplicaBackend& owner_;
    std::int64_t oid_;
    std::string path_;
    std::unique_ptr<BackendFile> remote_;
    std::mutex local_mu_;  // one go_local at a time
    // Read without the lock by the engine's threads: atomic.
    std::atomic<bool> local_;
    bool held_ = false;
    // Something was written through remote_, or a write began while
    // connected (before_write): those bytes are on no local copy.
    std::atomic<bool> tied_to_server_{false};
};

ReplicaBackend::ReplicaBackend(std::unique_ptr<Backend> remote, Connect connect, std::shared_ptr<Replica> replica,
                               std::shared_ptr<CacheStore> cache, std::string description, std::string hostname)
    : remote_(std::move(remote)), connect_(std::move(connect)), replica_(std::move(replica)),
      cache_(std::move(cache)), description_(std::move(description)), hostname_(std::move(hostname)) {
    if (remote_)
        limits_ = remote_->limits();
    // Changes left in the log by an earlier run are the truth until reintegrated.
    mode_ = remote_ && replica_->pending_count() == 0 ? SyncMode::connected : SyncMode::disconnected;
    replica_->set_durable(mode_ != SyncMode::connected);
    // Offline writes leave their granules unsynced until a flush; the log
    // shares the cache's database and must not sync rows before that data.
    if (cache_)
        replica_->set_before_sync([cache = cache_.get()] { cache->sync_packs(); });
    replica_->set_keep_name([this](const std::string& path) { return set_aside_here(path); });
}

bool ReplicaBackend::set_aside_here(const std::string& path) {
    if (!is_set_aside(path))
        return false;
    std::lock_guard lock(aside_mu_);
    return aside_here_.count(path) != 0;
}

ReplicaBackend::~ReplicaBackend() {
    stop();
    replica_->set_before_sync({});  // the cache may go first now
    replica_->set_keep_name({});
}

void ReplicaBackend::start(std::chrono::milliseconds pin_refresh) {
    pin_refresh_ = pin_refresh;
    // Files removed while open and set aside offline when the daemon
    // stopped without their last close (a crash, a kill): their handles
    // went with it, and so do they now (the log joins the two into a
    // removal of the first name). Pending operations mean disconnected.
    for (const LoggedOp& op : replica_->pending())
        if (op.kind == OpKind::rename && is_set_aside(op.path2) && replica_->name(op.path2))
            if (Errc e = unlink(op.path2); e != Errc::ok)
                LOG_WARN("%s: cannot remove %s, a file removed while open before a crash (%s)",
                         description_.c_str(), op.path2.c_str(), std::string(netfs::describe(e)).c_str());
    // Content of files removed before a crash, freed by the sync thread.
    for (const LocalObject& o : replica_->content_not_needed())
        if (replica_->paths_of(o.oid).empty())
            drop_soon_.push_back(o.oid);
    thread_ = std::thread([this] { sync_loop(); });
    pin_thread_ = std::thread([this] { pin_loop(); });
    list_thread_ = std::thread([this] { list_loop(); });
}

void ReplicaBackend::stop() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
        event_.notify_all();
        list_cv_.notify_all();
    }
    pin_cancel_ = true;
    wake_.notify_all();
    if (thread_.joinable())
        thread_.join();
    if (pin_thread_.joinable())
        pin_thread_.join();
    if (list_thread_.joinable())
        list_thread_.join();
    // Content of files removed since (the last handles go at unmount).
    std::vector<std::int64_t> drop;
    {
        std::lock_guard lock(mu_);
        drop = std::exchange(drop_soon_, {});
    }
    for (std::int64_t oid : drop)
        drop_unneeded_content(oid);
    // An unmount leaves every change on disk. Called again (from the
    // destructor) after the final writeback, which may have written local
    // content and logged changes: the hook that syncs the cache's data
    // before the log stays until then.
    replica_->flush_older_than(std::chrono::milliseconds(0));
    if (cache_)
        cache_->sync_data();
}

// ---- pinning ----------------------------------------------------------------

Errc ReplicaBackend::pin(const std::string& path, std::string& message) {
    if (!cache_) {
        message = "this mount has no cache to pin into";
        return Errc::not_supported;
    }
    Attr attr;
    if (Errc e = getattr(path, attr); e != Errc::ok) {
        message = path + ": " + std::string(netfs::describe(e));
        return e;
    }
    // What it needs beside what is pinned elsewhere must fit: refused now,
    // not after an hour of fetching.
    if (const std::uint64_t limit = cache_->size_limit()) {
        Hoarder hoarder(*this, *cache_);
        std::uint64_t present = 0, total = 0, pinned_all = 0, pinned_here = 0;
        if (Errc e = hoarder.presence(path, present, total); e != Errc::ok) {
            message = path + ": " + std::string(netfs::describe(e)) + " while measuring it";
            return e;
        }
        cache_->pinned_bytes_under("/", pinned_all);
        cache_->pinned_bytes_under(path, pinned_here);
        if (total + (pinned_all - std::min(pinned_all, pinned_here)) > limit) {
            message = path + " needs " + std::to_string(total >> 20) + " MiB, and " +
                      std::to_string((pinned_all - std::min(pinned_all, pinned_here)) >> 20) +
                      " MiB are pinned already: more than the cache's limit of " + std::to_string(limit >> 20) +
                      " MiB (raise --cache-size, or unpin something)";
            return Errc::no_space;
        }
    }
    if (Errc e = replica_->set_pin(path, true); e != Errc::ok) {
        message = "cannot record the pin: " + std::string(netfs::describe(e));
        return e;
    }
    std::lock_guard lock(mu_);
    pins_changed_ = true;
    pin_states_.push_back({path, 0, 0, "waiting", {}});
    generation_++;
    wake_.notify_all();
    return Errc::ok;
}

Errc ReplicaBackend::unpin(const std::string& path, std::string& message) {
    if (!cache_) {
        message = "this mount has no cache";
        return Errc::not_supported;
    }
    bool found = false;
    for (const std::string& p : replica_->pins())
        found |= p == path;
    if (!found) {
        message = path + " is not pinned";
        return Errc::not_found;
    }
    pin_cancel_ = true;  // a fetch of it stops; the pin thread starts over with the rest
    replica_->set_pin(path, false);
    Hoarder(*this, *cache_).unpin(path);
    // Pins still covering some of it keep theirs.
    for (const std::string& p : replica_->pins())
        if (is_under(p, path) || is_under(path, p))
            cache_->set_pinned_under(p, true);
    std::lock_guard lock(mu_);
    pins_changed_ = true;
    std::erase_if(pin_states_, [&](const PinState& s) { return s.path == path; });
    generation_++;
    wake_.notify_all();
    return Errc::ok;
}

Errc ReplicaBackend::file_state(const std::string& path, std::string& out) {
    auto name = replica_->name(path);
    if (!name)
        return Errc::not_found;
    auto object = replica_->object(name->oid);
    const bool dirty = object && object->content && replica_->pending_for(name->oid) > 0;
    std::uint64_t held = 0;
    const std::uint64_t size = name->attr.size;
    if (object && object->content) {
        held = size;
    } else if (cache_ && S_ISREG(name->attr.mode) && size) {
        std::uint64_t id = 0;
        std::vector<CacheStore::Held> granules;
        if (cached_as_seen(*name, id) && cache_->held(id, granules) == Errc::ok)
            for (const auto& g : granules)
                held += g.length;
    }
    const unsigned percent =
        !S_ISREG(name->attr.mode) || size == 0 ? 100 : unsigned(std::min<std::uint64_t>(held, size) * 100 / size);
    out = "cached=" + std::to_string(percent) + "% pinned=" + (replica_->is_pinned(path) ? "yes" : "no") +
          " dirty=" + (dirty ? "yes" : "no") + " pending=" + std::to_string(replica_->pending_for(name->oid)) +
          " conflict=" + (replica_->conflict_at(path) ? "yes" : "no");
    return Errc::ok;
}

std::vector<PinState> ReplicaBackend::pin_states() {
    std::lock_guard lock(mu_);
    return pin_states_;
}

void ReplicaBackend::pin_loop() {
    // Every pin is refreshed every pin_refresh_ while connected (cheap when all is
    // held: listings only), and at once when pins change or the mode does.
    std::uint64_t seen_generation = 0;
    auto next_refresh = std::chrono::steady_clock::now();
    std::unique_lock lock(mu_);
    while (!stopping_) {
        wake_.wait_until(lock, next_refresh, [&] {
            return stopping_ || pins_changed_ || (mode_ == SyncMode::connected && generation_ != seen_generation);
        });
        if (stopping_)
            break;
        seen_generation = generation_;
        pins_changed_ = false;
        next_refresh = std::chrono::steady_clock::now() + pin_refresh_;
        const bool connected = mode_ == SyncMode::connected;
        lock.unlock();
        pin_cancel_ = false;
        std::vector<PinState> states;
        for (const std::string& path : replica_->pins()) {
            PinState state{path, 0, 0, connected ? "fetching" : "waiting", {}};
            Hoarder hoarder(*this, *cache_);
            if (connected) {
                {
                    std::lock_guard l(mu_);
                    for (PinState& s : pin_states_)
                        if (s.path == path)
                            s.state = "fetching";
                }
                std::string message;
                const Errc e = hoarder.pin(
                    path,
                    [&](const PinProgress& p) {
                        std::lock_guard l(mu_);
                        for (PinState& s : pin_states_)
                            if (s.path == path) {
                                s.present = p.bytes_done;
                                s.total = p.bytes_total;
                            }
                    },
                    pin_cancel_, message);
                if (e == Errc::busy)
                    break;  // cancelled: start over with the pins as they are now
                if (e != Errc::ok) {
                    state.state = "failed";
                    state.message = message;
                    LOG_WARN("pinning %s: %s", path.c_str(), message.c_str());
                }
            }
            hoarder.presence(path, state.present, state.total);
            if (state.state == "fetching")
                state.state = state.present >= state.total ? "ready" : "fetching";
            states.push_back(state);
            std::lock_guard l(mu_);
            for (PinState& s : pin_states_)
                if (s.path == path) {
                    if (s.state != state.state)
                        emit("pin", path, state.state);
                    s = state;
                }
        }
        lock.lock();
        if (!pins_changed_) {
            pin_states_ = states;
            generation_++;
        }
        seen_generation = generation_;  // our own news is no reason for another pass
    }
}

void ReplicaBackend::emit(std::string kind, std::string detail, std::string text) {
    constexpr std::size_t kMaxEvents = 256;
    SyncEvent e{next_event_++, std::move(kind), std::move(detail), std::move(text),
                std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count()};
    events_.push_back(std::move(e));
    if (events_.size() > kMaxEvents)
        events_.pop_front();
    event_.notify_all();
}

std::vector<SyncEvent> ReplicaBackend::events_after(std::uint64_t since, std::chrono::milliseconds wait) {
    std::unique_lock lock(mu_);
    event_.wait_for(lock, wait, [&] { return stopping_ || (!events_.empty() && events_.back().seq > since); });
    std::vector<SyncEvent> out;
    for (const SyncEvent& e : events_)
        if (e.seq > since)
            out.push_back(e);
    return out;
}

void ReplicaBackend::set_mode(SyncMode mode, const char* why) {
    // Called with mu_ held.
    if (mode_ == mode)
        return;
    LOG_INFO("%s: %s -> %s (%s)", description_.c_str(), mode_name(mode_), mode_name(mode), why);
    emit("mode", mode_name(mode), why);
    if (mode_ == SyncMode::connected)
        replica_->set_durable(true);
    mode_ = mode;
    if (mode == SyncMode::connected)
        replica_->set_durable(false);
    generation_++;
    wake_.notify_all();
}

void ReplicaBackend::go_offline() {
    std::unique_lock lock(mu_);
    // Directories visited online are being listed for offline use: a
    // moment to finish, so that what was just looked at lists offline.
    list_cv_.wait_for(lock, std::chrono::seconds(5), [&] { return to_list_.empty() || stopping_; });
    manual_offline_ = true;
    set_mode(SyncMode::disconnected, "asked to go offline");
}

void ReplicaBackend::set_auto_sync(bool on) {
    std::lock_guard lock(mu_);
    auto_sync_ = on;
    wake_.notify_all();
}

bool ReplicaBackend::auto_sync() const {
    std::lock_guard lock(mu_);
    return auto_sync_;
}

void ReplicaBackend::go_online() {
    {
        std::lock_guard lock(mu_);
        manual_offline_ = false;
        sync_asked_ = auto_sync_;  // else the log waits for sync_now
        generation_++;
    }
    wake_.notify_all();
}

SyncOutcome ReplicaBackend::sync_now(std::chrono::milliseconds wait) {
    std::unique_lock lock(mu_);
    const std::uint64_t passes = status_.passes;
    sync_asked_ = true;
    wake_.notify_all();
    wake_.wait_for(lock, wait, [&] { return status_.passes > passes || stopping_; });
    SyncOutcome out = status_.passes > passes ? status_.last : SyncOutcome{};
    if (status_.passes == passes) {
        out.error = manual_offline_ ? Errc::unreachable : Errc::timed_out;
        out.message = manual_offline_ ? "the mount is offline (netfs online to reconnect)"
                                      : "no reintegration pass finished in time";
        out.pending = replica_->pending_count();
    }
    return out;
}

SyncStatus ReplicaBackend::status() {
    const std::uint64_t pending = replica_->pending_count();
    const std::uint64_t conflicts = replica_->conflicts().size();
    std::lock_guard lock(mu_);
    SyncStatus s = status_;
    s.pending = pending;
    s.conflicts = conflicts;
    s.mode = mode_;
    s.manual_offline = manual_offline_;
    s.uncached_reads = uncached_reads_.load();
    return s;
}

ConnectionState ReplicaBackend::connection_state() const {
    std::lock_guard lock(mu_);
    return remote_ ? remote_->connection_state() : ConnectionState::unreachable;
}

bool ReplicaBackend::changes_stay_local() const {
    std::lock_guard lock(mu_);
    return mode_ != SyncMode::connected;
}

bool ReplicaBackend::offline_by_request() const {
    std::lock_guard lock(mu_);
    return manual_offline_ && mode_ != SyncMode::connected;
}

std::shared_ptr<Backend> ReplicaBackend::online() {
    std::lock_guard lock(mu_);
    return mode_ == SyncMode::connected ? remote_ : nullptr;
}

bool ReplicaBackend::server_gone_locked() {
    if (!remote_)
        return true;
    const ConnectionState state = remote_->connection_state();
    const auto now = std::chrono::steady_clock::now();
    if (state == ConnectionState::connected) {
        reconnecting_since_ = {};
        return false;
    }
    if (reconnecting_since_ == std::chrono::steady_clock::time_point{})
        reconnecting_since_ = now;
    return state == ConnectionState::unreachable || now - reconnecting_since_ >= kReconnectGrace;
}

bool ReplicaBackend::lost(Errc error) {
    if (!is_transient(error))
        return false;
    std::lock_guard lock(mu_);
    // While the backend is reconnecting, and not for long, the error goes
    // back to the engine, which retries it: a server restart is ridden out.
    // After that, or once the backend gives the server up, we answer locally.
    if (!server_gone_locked())
        return false;
    set_mode(SyncMode::disconnected, "the server cannot be reached");
    return true;
}

Errc ReplicaBackend::unknown(const std::string& path) {
    if (path == "/")
        return Errc::io;
    auto parent = replica_->name(parent_of(path));
    if (parent && !S_ISDIR(parent->attr.mode))
        return Errc::not_dir;
    // Absent from a directory whose whole listing is known: it does not
    // exist (and can be created; should the server have it meanwhile, that
    // is a create/create conflict at reintegration, never a loss). Anywhere
    // else nobody here knows: EIO, never a false "no such file".
    return parent && parent->listed ? Errc::not_found : Errc::io;
}

void ReplicaBackend::visited(const std::string& path) {
    const std::string dir = parent_of(path);
    {
        std::lock_guard lock(mu_);
        if (listed_.count(dir) || to_list_.count(dir) || to_list_.size() >= kListQueue)
            return;
    }
    auto n = replica_->name(dir);
    std::lock_guard lock(mu_);
    if (n && n->listed) {
        listed_.insert(dir);
    } else {
        to_list_.insert(dir);
        list_cv_.notify_all();
    }
}

void ReplicaBackend::list_loop() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
        list_cv_.wait(lock, [&] { return stopping_ || !to_list_.empty(); });
        if (stopping_)
            break;
        const std::string dir = *to_list_.begin();
        if (mode_ != SyncMode::connected) {
            to_list_.clear();  // visited again online, asked again
            list_cv_.notify_all();
            continue;
        }
        lock.unlock();
        std::vector<DirEntry> entries;
        readdir(dir, entries);  // forwarded and recorded
        lock.lock();
        to_list_.erase(dir);
        list_cv_.notify_all();
    }
}

std::optional<Name> ReplicaBackend::name_of(std::int64_t oid) {
    for (const std::string& p : replica_->paths_of(oid))
        if (auto n = replica_->name(p))
            return n;
    return std::nullopt;
}

Attr ReplicaBackend::new_attr(std::uint32_t mode, std::int64_t oid) const {
    Attr a;
    a.mode = mode;
    a.nlink = S_ISDIR(mode) ? 2 : 1;
    a.uid = geteuid();
    a.gid = getegid();
    a.atime = a.mtime = a.ctime = now_ts();
    a.file_id = Replica::local_file_id(oid);
    return a;
}

// ---- namespace ------------------------------------------------------------

Errc ReplicaBackend::getattr(const std::string& path, Attr& out) {
    if (auto r = online()) {
        const Errc e = ask_and_record(path, [&] { return r->getattr(path, out); }, [&] { replica_->saw(path, out); });
        if (e == Errc::ok) {
            visited(path);
        } else if (e == Errc::not_found) {
            replica_->saw_gone(path);
            // Set aside while disconnected and still open: here alone (see saw_gone).
            if (auto n = set_aside_here(path) ? replica_->name(path) : std::nullopt) {
                out = n->attr;
                return Errc::ok;
            }
        }
        if (!lost(e))
            return e;
    }
    if (auto n = replica_->name(path)) {
        out = n->attr;
        return Errc::ok;
    }
    return unknown(path);
}

Errc ReplicaBackend::readdir(const std::string& path, std::vector<DirEntry>& out) {
    if (auto r = online()) {
        const Errc e = r->readdir(path, out);
        if (e == Errc::ok) {
            replica_->saw_listing(path, out);
            std::lock_guard lock(mu_);
            listed_.insert(path);
        }
        else if (e == Errc::not_found)
            replica_->saw_gone(path);
        if (!lost(e))
            return e;
    }
    auto n = replica_->name(path);
    if (!n)
        return unknown(path);
    if (!S_ISDIR(n->attr.mode))
        return Errc::not_dir;
    if (!n->listed)
        return Errc::io;  // never listed online
    out.clear();
    for (Name& child : replica_->children(path))
        out.push_back({base_name(child.path), child.attr});
    return Errc::ok;
}

Errc ReplicaBackend::readlink(const std::string& path, std::string& target) {
    if (auto r = online()) {
        const Errc e = r->readlink(path, target);
        if (e == Errc::ok)
            replica_->saw_target(path, target);
        if (!lost(e))
            return e;
    }
    auto n = replica_->name(path);
    if (!n)
        return unknown(path);
    if (!S_ISLNK(n->attr.mode))
        return Errc::invalid;
    if (n->target.empty())
        return Errc::io;  // never read online
    target = n->target;
    return Errc::ok;
}

Errc ReplicaBackend::sync_namespace() {
    if (auto r = online())
        return r->sync_namespace();
    return replica_->flush();
}

Errc ReplicaBackend::statfs(StatFs& out) {
    if (auto r = online()) {
        const Errc e = r->statfs(out);
        if (e == Errc::ok) {
            std::lock_guard lock(mu_);
            last_statfs_ = out;
        }
        if (!lost(e))
            return e;
    }
    std::lock_guard lock(mu_);
    out = last_statfs_;  // as last seen; all zero when never seen
    return Errc::ok;
}

Errc ReplicaBackend::mkdir(const std::string& path, std::uint32_t mode, Attr& attr) {
    if (auto r = online()) {
        const Errc e = r->mkdir(path, mode, attr);
        if (e == Errc::ok) {
            replica_->saw(path, attr);
            replica_->saw_listing(path, {});  // new: empty, and so listed
        }
        if (!lost(e))
            return e;
    }
    auto parent = replica_->name(parent_of(path));
    if (!parent)
        return unknown(parent_of(path));
    if (replica_->name(path))
        return Errc::exists;
    Replica::Transaction tx(*replica_);  // one synced commit for the whole change
    const std::int64_t oid = replica_->new_object(BaseVersion{});
    attr = new_attr(S_IFDIR | (mode & 07777), oid);
    if (Errc e = replica_->add_name(path, attr, {}, true, oid); e != Errc::ok)
        return tx.finish(e);
    LoggedOp op;
    op.kind = OpKind::mkdir;
    op.oid = oid;
    op.path = path;
    op.mode = mode;
    return tx.finish(replica_->append(op));
}

Errc ReplicaBackend::symlink(const std::string& target, const std::string& path, Attr& attr) {
    if (auto r = online()) {
        const Errc e = r->symlink(target, path, attr);
        if (e == Errc::ok) {
            replica_->saw(path, attr, target);
        }
        if (!lost(e))
            return e;
    }
    if (!replica_->name(parent_of(path)))
        return unknown(parent_of(path));
    if (replica_->name(path))
        return Errc::exists;
    Replica::Transaction tx(*replica_);
    const std::int64_t oid = replica_->new_object(BaseVersion{});
    attr = new_attr(S_IFLNK | 0777, oid);
    attr.size = target.size();
    if (Errc e = replica_->add_name(path, attr, target, true, oid); e != Errc::ok)
        return tx.finish(e);
    LoggedOp op;
    op.kind = OpKind::symlink;
    op.oid = oid;
    op.path = path;
    op.path2 = target;
    return tx.finish(replica_->append(op));
}

Errc ReplicaBackend::link(const std::string& existing, const std::string& path, Attr& attr) {
    if (auto r = online()) {
        count_attr_change(existing);  // its ctime and nlink move (see attr_changes)
        const Errc e = r->link(existing, path, attr);
        if (e == Errc::ok) {
            std::lock_guard lock(attr_record_mu_);
            replica_->saw(path, attr);
            replica_->saw(existing, attr);
            ++attr_changes_[existing];
            ++attr_changes_[path];
        }
        if (!lost(e))
            return e;
    }
    auto n = replica_->name(existing);
    if (!n)
        return unknown(existing);
    if (S_ISDIR(n->attr.mode))
        return Errc::perm;
    if (replica_->name(path))
        return Errc::exists;
    attr = n->attr;
    attr.nlink++;
    attr.ctime = now_ts();
    Replica::Transaction tx(*replica_);
    if (Errc e = replica_->add_name(path, attr, n->target, false, n->oid); e != Errc::ok)
        return tx.finish(e);
    replica_->set_attr(path, attr);
    LoggedOp op;
    op.kind = OpKind::link;
    op.oid = n->oid;
    op.path = existing;
    op.path2 = path;
    return tx.finish(replica_->append(op));
}

Errc ReplicaBackend::unlink(const std::string& path) {
    if (auto r = online()) {
        const Errc e = r->unlink(path);
        if (e == Errc::ok || e == Errc::not_found) {
            replica_->saw_gone(path);
            if (set_aside_here(path)) {  // its last close: kept here until now (saw_gone)
                {
                    std::lock_guard lock(aside_mu_);
                    aside_here_.erase(path);
                }
                if (auto n = replica_->name(path); n && replica_->remove_name(path) == Errc::ok) {
                    std::lock_guard lock(mu_);
                    drop_soon_.push_back(n->oid);
                    wake_.notify_all();
                }
            }
        }
        if (!lost(e))
            return e;
    }
    auto n = replica_->name(path);
    if (!n)
        return unknown(path);
    if (S_ISDIR(n->attr.mode))
        return Errc::is_dir;
    {
        Replica::Transaction tx(*replica_);  // (holds the replica's lock until it goes: never under mu_)
        if (Errc e = log_removal(*n); e != Errc::ok)
            return tx.finish(e);
        if (Errc e = tx.finish(replica_->remove_name(path)); e != Errc::ok)
            return e;
    }
    if (is_set_aside(path)) {
        std::lock_guard lock(aside_mu_);
        aside_here_.erase(path);
    }
    // Its last name gone, what it had written here is nobody's: the space
    // is freed right away (on a full disk, removing files is how room is
    // made), by the sync thread, between reintegration passes.
    std::lock_guard lock(mu_);
    drop_soon_.push_back(n->oid);
    wake_.notify_all();
    return Errc::ok;
}

Errc ReplicaBackend::log_removal(const Name& name) {
    auto object = replica_->object(name.oid);
    LoggedOp op;
    op.kind = S_ISDIR(name.attr.mode) ? OpKind::rmdir : OpKind::unlink;
    op.oid = name.oid;
    op.path = name.path;
    op.base = object ? object->base : BaseVersion{};
    return replica_->append(op);
}

Errc ReplicaBackend::rmdir(const std::string& path) {
    if (auto r = online()) {
        const Errc e = r->rmdir(path);
        if (e == Errc::ok || e == Errc::not_found)
            replica_->saw_gone(path);
        if (!lost(e))
            return e;
    }
    auto n = replica_->name(path);
    if (!n)
        return unknown(path);
    if (!S_ISDIR(n->attr.mode))
        return Errc::not_dir;
    if (!replica_->children(path).empty())
        return Errc::not_empty;
    if (!n->listed)
        return Errc::io;  // it may hold entries never seen here
    Replica::Transaction tx(*replica_);
    if (Errc e = log_removal(*n); e != Errc::ok)
        return tx.finish(e);
    return tx.finish(replica_->remove_name(path));
}

Errc ReplicaBackend::rename(const std::string& from, const std::string& to, unsigned flags) {
    if (auto r = online()) {
        count_attr_change(from);  // a getattr in flight of either name answers for what was there
        count_attr_change(to);
        const Errc e = r->rename(from, to, flags);
        if (e == Errc::ok) {
            if (flags & RENAME_EXCHANGE) {
                replica_->saw_gone(from);
                replica_->saw_gone(to);
            } else {
                replica_->saw_rename(from, to);
                if (cache_)
                    cache_->rename_objects(from, to);  // what is cached moves with it
            }
        }
        if (!lost(e))
            return e;
    }
    if (flags & RENAME_EXCHANGE)
        return Errc::not_supported;  // not while disconnected
    auto n = replica_->name(from);
    if (!n)
        return unknown(from);
    if (!replica_->name(parent_of(to)))
        return unknown(parent_of(to));
    if (is_under(to, from) && to != from)
        return Errc::invalid;
    if (to == from)
        return Errc::ok;
    Replica::Transaction tx(*replica_);
    if (auto old = replica_->name(to)) {
        if (flags & RENAME_NOREPLACE)
            return Errc::exists;
        if (S_ISDIR(n->attr.mode) != S_ISDIR(old->attr.mode))
            return S_ISDIR(old->attr.mode) ? Errc::is_dir : Errc::not_dir;
        if (S_ISDIR(old->attr.mode) && (!old->listed || !replica_->children(to).empty()))
            return Errc::not_empty;
        // The replaced object goes as if removed first (a conflict if the
        // server changed it meanwhile), then the name is taken.
        if (Errc e = log_removal(*old); e != Errc::ok)
            return tx.finish(e);
        replica_->remove_name(to);
    }
    auto object = replica_->object(n->oid);
    LoggedOp op;
    op.kind = OpKind::rename;
    op.oid = n->oid;
    op.path = from;
    op.path2 = to;
    op.base = object ? object->base : BaseVersion{};
    if (Errc e = replica_->append(op); e != Errc::ok)
        return tx.finish(e);
    if (Errc e = tx.finish(replica_->move_name(from, to)); e != Errc::ok)
        return e;
    if (is_set_aside(to)) {
        std::lock_guard lock(aside_mu_);
        aside_here_.insert(to);
    }
    if (cache_)
        cache_->rename_objects(from, to);  // cached content stays readable under the new name
    return Errc::ok;
}

Errc ReplicaBackend::mknod(const std::string& path, std::uint32_t mode, std::uint64_t rdev, Attr& attr) {
    if (auto r = online()) {
        const Errc e = r->mknod(path, mode, rdev, attr);
        if (e == Errc::ok)
            replica_->saw(path, attr);
        if (!lost(e))
            return e;
    }
    if (!S_ISREG(mode))
        return Errc::not_supported;  // devices and fifos wait for the server
    std::unique_ptr<BackendFile> file;
    return create(path, mode, O_WRONLY | O_CREAT | O_EXCL, file, attr);
}

Errc ReplicaBackend::setattr(const std::string& path, const SetAttr& change, Attr& out) {
    if (auto r = online()) {
        auto before = replica_->name(path);
        count_attr_change(path);  // before the change: a getattr in flight is not recorded ...
        const Errc e = r->setattr(path, change, out);
        if (e == Errc::ok) {
            std::lock_guard lock(attr_record_mu_);
            replica_->saw(path, out);
            ++attr_changes_[path];  // ... nor one asked while it ran
            // Attributes only: what is cached is still the content.
            if (cache_ && before && S_ISREG(out.mode) && !(change.mask & SetAttr::kSize) &&
                before->attr.size == out.size && before->attr.file_id == out.file_id)
                cache_->carry_over(path, Version::of(before->attr), Version::of(out));
        }
        if (!lost(e))
            return e;
    }
    auto n = replica_->name(path);
    if (!n)
        return unknown(path);
    if (change.mask & SetAttr::kSize) {
        if (!S_ISREG(n->attr.mode))
            return S_ISDIR(n->attr.mode) ? Errc::is_dir : Errc::invalid;
        std::uint64_t content = 0;
        if (Errc e = ensure_content(*n, change.size == 0, content); e != Errc::ok)
            return e;
        if (Errc e = resize_content(n->oid, change.size); e != Errc::ok)
            return e;
        n = replica_->name(path);
    }
    Attr a = n->attr;
    change.apply_to(a);
    const std::uint32_t meta = change.mask & ~SetAttr::kSize;
    Replica::Transaction tx(*replica_);
    if (meta) {
        auto object = replica_->object(n->oid);
        LoggedOp op;
        op.kind = OpKind::setattr;
        op.oid = n->oid;
        op.path = path;
        op.attrs = change;
        op.attrs.mask = meta;
        op.attrs.atime = a.atime;
        op.attrs.mtime = a.mtime;
        op.base = object ? object->base : BaseVersion{};
        // "now" flags become the times they meant here, not at reintegration.
        if (meta & SetAttr::kAtimeNow)
            op.attrs.mask = (op.attrs.mask & ~SetAttr::kAtimeNow) | SetAttr::kAtime;
        if (meta & SetAttr::kMtimeNow)
            op.attrs.mask = (op.attrs.mask & ~SetAttr::kMtimeNow) | SetAttr::kMtime;
        if (Errc e = replica_->append(op); e != Errc::ok)
            return tx.finish(e);
    }
    if (Errc e = tx.finish(replica_->set_attr(path, a)); e != Errc::ok)
        return e;
    // The new ctime (and mtime, for utimens) make another version to the
    // cache, whose granules would be dropped as stale at the next open:
    // the content did not change, so the cache takes the new version.
    if (cache_ && S_ISREG(a.mode) && !(change.mask & SetAttr::kSize))
        cache_->carry_over(path, Version::of(n->attr), Version::of(a));
    out = a;
    return Errc::ok;
}

// ---- files ----------------------------------------------------------------

Errc ReplicaBackend::open(const std::string& path, int flags, std::unique_ptr<BackendFile>& out) {
    if (auto r = online()) {
        std::unique_ptr<BackendFile> file;
        const auto changes = attr_changes(path);
        // O_TRUNC comes only while changes stay local (Engine::open); back
        // online since, the engine's own truncate follows the open.
        const Errc e = r->open(path, flags & ~O_TRUNC, file);
        if (e == Errc::ok) {
            // Seen as a getattr would have seen it (the engine asks no getattr then).
            std::int64_t oid = 0;
            if (Attr attr; file->opened_attr(attr)) {
                // What the open found, unless a change was counted since it
                // started; then (and when asked again) the handle's getattr.
                bool first = true;
                const auto ask = [&] {
                    const bool fresh = std::exchange(first, false) && attr_changes(path) == changes;
                    return fresh ? Errc::ok : file->getattr(attr);
                };
                ask_and_record(path, ask, [&] { oid = replica_->saw(path, attr); });
                if (!oid)
                    if (auto n = replica_->name(path))
                        oid = n->oid;
                visited(path);
            } else if (auto n = replica_->name(path)) {
                oid = n->oid;
            }
            out = std::make_unique<ReplicaFile>(*this, oid, path, std::move(file), false);
            return e;
        }
        if (e == Errc::not_found)
            replica_->saw_gone(path);
        if (!lost(e))
            return e;
    }
    auto n = replica_->name(path);
    if (!n)
        return unknown(path);
    if (S_ISDIR(n->attr.mode))
        return Errc::is_dir;
    if (!S_ISREG(n->attr.mode))
        return Errc::io;
    const bool writable = (flags & O_ACCMODE) != O_RDONLY;
    if (writable || (flags & O_TRUNC)) {
        // Changed here: the whole file must be local before the first write
        // is accepted, so that the change can be kept.
        std::uint64_t content = 0;
        if (Errc e = ensure_content(*n, (flags & O_TRUNC) != 0, content); e != Errc::ok)
            return e;
        if ((flags & O_TRUNC) && n->attr.size != 0)
            if (Errc e = resize_content(n->oid, 0); e != Errc::ok)
                return e;
    }
    auto object = replica_->object(n->oid);
    // Changed here, or made here (an empty new file has no content yet).
    const bool local = object && (object->content || !object->base.exists);
    out = std::make_unique<ReplicaFile>(*this, n->oid, path, nullptr, local);
    return Errc::ok;
}

Errc ReplicaBackend::create(const std::string& path, std::uint32_t mode, int flags,
                            std::unique_ptr<BackendFile>& out, Attr& attr) {
    if (auto r = online()) {
        std::unique_ptr<BackendFile> file;
        const Errc e = r->create(path, mode, flags, file, attr);
        if (e == Errc::ok) {
            replica_->saw(path, attr);
            auto n = replica_->name(path);
            out = std::make_unique<ReplicaFile>(*this, n ? n->oid : 0, path, std::move(file), false);
            return e;
        }
        if (!lost(e))
            return e;
    }
    auto parent = replica_->name(parent_of(path));
    if (!parent)
        return unknown(parent_of(path));
    if (!S_ISDIR(parent->attr.mode))
        return Errc::not_dir;
    if (replica_->name(path)) {
        if (flags & O_EXCL)
            return Errc::exists;
        if (Errc e = open(path, flags | O_WRONLY, out); e != Errc::ok)
            return e;
        return getattr(path, attr);
    }
    // The name and its store in one synced transaction; the content's cache
    // object comes with the first write (an empty file needs none).
    Replica::Transaction tx(*replica_);
    const std::int64_t oid = replica_->new_object(BaseVersion{});
    attr = new_attr(S_IFREG | (mode & 07777), oid);
    if (Errc e = replica_->add_name(path, attr, {}, true, oid); e != Errc::ok)
        return tx.finish(e);
    LoggedOp op;
    op.kind = OpKind::store;
    op.oid = oid;
    op.path = path;
    op.mode = mode;
    if (Errc e = tx.finish(replica_->append(op)); e != Errc::ok)
        return e;
    out = std::make_unique<ReplicaFile>(*this, oid, path, nullptr, true);
    return Errc::ok;
}

// ---- local content ----------------------------------------------------------

Errc ReplicaBackend::log_store(const Name& name) {
    auto object = replica_->object(name.oid);
    LoggedOp op;
    op.kind = OpKind::store;
    op.oid = name.oid;
    op.path = name.path;
    op.mode = name.attr.mode & 07777;
    op.base = object ? object->base : BaseVersion{};
    return replica_->append(op);
}

Errc ReplicaBackend::new_content(std::int64_t oid, std::uint64_t& content) {
    std::uint64_t ignored_version = 0;
    if (Errc e = cache_->object(content_key(oid), Version{}, content, ignored_version, CacheStore::Sync::later);
        e != Errc::ok)
        return e;
    cache_->drop_from(content, 0);  // leftovers of an interrupted copy
    return Errc::ok;
}

Errc ReplicaBackend::put_granules(std::uint64_t content, std::uint64_t count,
                                  const std::function<Errc(std::uint64_t, std::vector<std::byte>&)>& fill) {
    std::vector<std::vector<std::byte>> bytes;
    std::vector<CacheStore::Put> puts;
    for (std::uint64_t i = 0; i < count; ++i) {
        if (Errc e = fill(i, bytes.emplace_back()); e != Errc::ok)
            return e;
        if (bytes.size() == 16 || i + 1 == count) {
            puts.clear();
            for (std::size_t k = 0; k < bytes.size(); ++k)
                puts.push_back({content, i + 1 - bytes.size() + k, bytes[k], true, 0});
            Errc error = Errc::ok;
            cache_->put_many(puts, error, CacheStore::Sync::later);  // synced at fsync (flush)
            if (error != Errc::ok)
                return error;
            bytes.clear();
        }
    }
    return Errc::ok;
}

Errc ReplicaBackend::ensure_content(const Name& name, bool truncate, std::uint64_t& content) {
    std::lock_guard lock(content_mu_);
    auto object = replica_->object(name.oid);
    if (!object)
        return Errc::bad_handle;
    if (object->content) {
        content = object->content;
        return log_store(name);
    }
    if (!cache_)
        return Errc::io;
    if (Errc e = new_content(name.oid, content); e != Errc::ok)
        return e;
    DropUnlessRecorded abandon{cache_.get(), content};
    const std::uint64_t granule = cache_->granule_size();
    const std::uint64_t count = truncate ? 0 : (name.attr.size + granule - 1) / granule;
    if (count) {
        // The base version's granules, as the engine cached them.
        std::uint64_t base = 0;
        if (!cached_as_seen(name, base)) {
            LOG_WARN("%s is not cached as the server last had it: it cannot be changed while disconnected "
                     "(pin it to keep it available offline)",
                     name.path.c_str());
            uncached_reads_++;
            return Errc::io;
        }
        std::vector<CacheStore::Held> held;
        cache_->held(base, held);
        if (held.size() < count) {
            LOG_WARN("%s is not fully cached (%zu of %llu granules): it cannot be changed while disconnected "
                     "(pin it to keep it available offline)",
                     name.path.c_str(), held.size(), static_cast<unsigned long long>(count));
            uncached_reads_++;
            return Errc::io;
        }
        const Errc e = put_granules(content, count, [&](std::uint64_t index, std::vector<std::byte>& bytes) {
            if (cache_->get(base, index, bytes) == Errc::ok)
                return Errc::ok;
            LOG_WARN("%s: a cached granule could not be read; it cannot be changed while disconnected",
                     name.path.c_str());
            return Errc::io;
        });
        if (e != Errc::ok)
            return e;
    }
    Replica::Transaction tx(*replica_);
    if (Errc e = replica_->set_content(name.oid, content); e != Errc::ok)
        return tx.finish(e);
    if (truncate && name.attr.size) {
        Attr a = name.attr;
        a.size = 0;
        a.mtime = a.ctime = now_ts();
        replica_->set_attr(name.path, a);
    }
    if (Errc e = tx.finish(log_store(name)); e != Errc::ok)
        return e;
    abandon.cache = nullptr;
    return Errc::ok;
}

// The engine's view of a file whose writes went to the server before the
// outage becomes its local content, logged as a store against the version
// that view derives from: applied at reintegration when the server still has
// that version, a conflict (both kept) when it does not, or when our own
// writes moved it and the engine never learnt the result.
Errc ReplicaBackend::keep_unsent(std::int64_t oid, const Attr& base, std::uint64_t size, const timespec& mtime,
                                 const BackendFile::ContentReader& read) {
    if (!cache_)
        return Errc::not_supported;
    std::lock_guard lock(content_mu_);
    auto n = oid ? name_of(oid) : std::nullopt;
    // The file the engine's view is of, not another one at its name since.
    if (!n || !S_ISREG(n->attr.mode) || n->attr.file_id != base.file_id)
        return Errc::not_found;
    const std::string path = n->path;
    auto object = replica_->object(n->oid);
    if (!object)
        return Errc::bad_handle;
    if (was_kept(n->oid))
        return Errc::ok;
    // Changed here already through another handle (opened after the
    // outage): its copy is the cached base, as the engine's view is, and
    // every write to the file goes through the engine, which writes back
    // through this first handle. The engine's view replaces it in place.
    std::uint64_t content = object->content;
    const bool fresh = !content;
    if (fresh)
        if (Errc e = new_content(n->oid, content); e != Errc::ok)
            return e;
    DropUnlessRecorded abandon{fresh ? cache_.get() : nullptr, content};
    const std::uint64_t granule = cache_->granule_size();
    if (Errc e = put_granules(content, (size + granule - 1) / granule,
                              [&](std::uint64_t index, std::vector<std::byte>& bytes) {
                                  bytes.resize(std::min<std::uint64_t>(granule, size - index * granule));
                                  return read(index * granule, bytes);
                              });
        e != Errc::ok)
        return e;
    if (!fresh)
        cache_->drop_from(content, (size + granule - 1) / granule);  // past its new end
    // The data before the rows that point at it (the replica's hook may be
    // gone: this is also called during the final writeback).
    if (Errc e = cache_->sync_data(); e != Errc::ok)
        return e;
    Attr a = n->attr;
    a.size = size;
    a.blocks = (size + 511) / 512;
    a.mtime = a.ctime = mtime;
    {
        Replica::Transaction tx(*replica_);  // (holds the replica's lock until it goes: never under mu_)
        // With changes logged already, their base is the server's version (the
        // engine's attributes are then the local ones).
        if (replica_->pending_for(n->oid) == 0)
            if (Errc e = replica_->set_base(n->oid, BaseVersion::of(base)); e != Errc::ok)
                return tx.finish(e);
        // (A new generation: a reintegration that uploaded the old bytes sends these.)
        if (Errc e = fresh ? replica_->set_content(n->oid, content) : replica_->bump_content(n->oid); e != Errc::ok)
            return tx.finish(e);
        if (Errc e = replica_->set_attr(path, a); e != Errc::ok)
            return tx.finish(e);
        if (Errc e = tx.finish(log_store(*n)); e != Errc::ok)
            return e;
    }
    abandon.cache = nullptr;
    std::lock_guard state(mu_);
    kept_[n->oid] = content;
    return Errc::ok;
}

// Never CacheStore::object(), which attaches the object to the version
// given and drops its granules when they differ: offline, a cached copy of
// another version is all there is, and stays readable.
bool ReplicaBackend::cached_as_seen(const Name& name, std::uint64_t& id) {
    return cache_->find_object(name.path, Version::of(name.attr), id) == Errc::ok;
}

// The version our own writes left on the server (the engine asks through
// the handle after them) is the base of the next change made offline, as it
// is the version the cache's copy stands for then.
void ReplicaBackend::saw_object(std::int64_t oid, const Attr& attr) {
    if (!oid)
        return;
    for (const std::string& p : replica_->paths_of(oid))
        if (auto n = replica_->name(p); n && n->attr.file_id == attr.file_id)  // not another file at the name since
            replica_->saw(p, attr);
}

ReplicaBackend::AttrChanges ReplicaBackend::attr_changes(const std::string& path) {
    std::lock_guard lock(attr_record_mu_);
    const auto it = attr_changes_.find(path);
    return {attr_changes_epoch_, it == attr_changes_.end() ? 0 : it->second};
}

Errc ReplicaBackend::ask_and_record(const std::string& path, const std::function<Errc()>& ask,
                                    const std::function<void()>& record) {
    for (int attempt = 0; attempt < 3; ++attempt) {
        const AttrChanges changes = attr_changes(path);
        if (Errc e = ask(); e != Errc::ok)
            return e;
        std::lock_guard lock(attr_record_mu_);
        const auto it = attr_changes_.find(path);
        if (AttrChanges{attr_changes_epoch_, it == attr_changes_.end() ? 0 : it->second} == changes) {
            record();
            return Errc::ok;
        }
        // (else possibly older than that change: asked again)
    }
    return Errc::ok;
}

void ReplicaBackend::count_attr_change(const std::string& path) {
    std::lock_guard lock(attr_record_mu_);
    // Only a getattr in flight needs its count: they are all forgotten now
    // and then, in a new epoch, which costs a getattr in flight its record,
    // never lets a stale one through.
    if (attr_changes_.size() > 4096) {
        attr_changes_.clear();
        ++attr_changes_epoch_;
    }
    ++attr_changes_[path];
}

bool ReplicaBackend::was_kept(std::int64_t oid) {
    auto object = replica_->object(oid);
    std::lock_guard lock(mu_);
    const auto kept = kept_.find(oid);
    return object && kept != kept_.end() && kept->second == object->content;
}

Errc ReplicaBackend::read_content(std::int64_t oid, std::uint64_t offset, std::span<std::byte> buf,
                                  std::size_t& transferred) {
    transferred = 0;
    auto n = name_of(oid);
    auto object = replica_->object(oid);
    if (!n || !object)
        return Errc::bad_handle;
    const std::uint64_t size = n->attr.size;
    if (offset >= size)
        return Errc::ok;
    if (!object->content)
        return Errc::bad_handle;
    const std::uint64_t granule = cache_->granule_size();
    const std::uint64_t end = std::min<std::uint64_t>(size, offset + buf.size());
    std::vector<std::byte> plain;
    for (std::uint64_t pos = offset; pos < end;) {
        const std::uint64_t index = pos / granule;
        const std::uint64_t in = pos - index * granule;
        const std::uint64_t n_bytes = std::min(end - pos, granule - in);
        if (cache_->get(object->content, index, plain) != Errc::ok)
            return Errc::io;  // damaged: never return bytes that do not verify
        std::memset(buf.data() + (pos - offset), 0, n_bytes);
        if (in < plain.size())
            std::memcpy(buf.data() + (pos - offset), plain.data() + in, std::min<std::uint64_t>(n_bytes, plain.size() - in));
        pos += n_bytes;
    }
    transferred = end - offset;
    return Errc::ok;
}

Errc ReplicaBackend::write_content(std::int64_t oid, std::uint64_t offset, std::span<const std::byte> data) {
    std::unique_lock lock(content_mu_);
    // The engine writes a file back in pieces, several at once, so a piece
    // may come before the one that ends where it starts. Stored at once, it
    // would zero-fill the gap, and the earlier piece would replace those
    // granules a moment later (every record stored twice, the dead ones
    // compacted again and again). The gap is waited for, briefly: a file
    // written with a real hole pays the wait once.
    const auto gap_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
    for (auto n = name_of(oid); n && offset > n->attr.size; n = name_of(oid))
        if (content_cv_.wait_until(lock, gap_deadline) == std::cv_status::timeout)
            break;
    auto n = name_of(oid);
    auto object = replica_->object(oid);
    if (!n || !object)
        return Errc::bad_handle;
    const bool new_content = !object->content;
    if (new_content) {
        // Made here and written for the first time: its content starts now.
        // Its row goes in with the granules below, before the replica
        // records the id (set_content, after them).
        if (object->base.exists || n->attr.size != 0)
            return Errc::bad_handle;
        std::uint64_t version = 0;
        if (Errc e = cache_->object(content_key(oid), Version{}, object->content, version, CacheStore::Sync::deferred);
            e != Errc::ok)
            return e;
    }
    const std::uint64_t granule = cache_->granule_size();
    const std::uint64_t old_size = n->attr.size;
    const std::uint64_t end = offset + data.size();
    const std::uint64_t new_size = std::max(old_size, end);
    // Every granule up to the new end is stored (zeros where nothing was
    // written): the local content is dense, so a missing granule means damage.
    const std::uint64_t first = std::min(offset, old_size) / granule;
    const std::uint64_t last = (new_size - 1) / granule;
    // A granule the write covers whole is stored straight from the caller's
    // buffer; the others are put together here (put_many encodes before it
    // returns). A fresh 256 KiB buffer per granule, zeroed and then copied
    // over, cost the daemon a page fault per 4 KiB written.
    // (A vector moves its bytes along: `puts` may point into them.)
    std::vector<std::vector<std::byte>> partial;
    std::vector<CacheStore::Put> puts;
    for (std::uint64_t index = first; index <= last; ++index) {
        const std::uint64_t start = index * granule;
        const std::uint64_t length = std::min(granule, new_size - start);
        const bool whole = offset <= start && end >= start + length;
        std::span<const std::byte> plain;
        if (whole) {
            plain = data.subspan(start - offset, length);
        } else {
            std::vector<std::byte>& assembled = partial.emplace_back();
            // The old bytes only where some of them stay.
            if (start < old_size && cache_->get(object->content, index, assembled) != Errc::ok)
                return Errc::io;
            assembled.resize(length);
            if (end > start && offset < start + length) {
                const std::uint64_t lo = std::max(offset, start), hi = std::min(end, start + length);
                std::memcpy(assembled.data() + (lo - start), data.data() + (lo - offset), hi - lo);
            }
            plain = assembled;
        }
        puts.push_back({object->content, index, plain, true, 0});
        if (puts.size() == 16 || index == last) {
            Errc error = Errc::ok;
            cache_->put_many(puts, error, CacheStore::Sync::later);
            if (error != Errc::ok)
                return error;
            puts.clear();
            partial.clear();
        }
    }
    Attr a = n->attr;
    a.size = new_size;
    a.blocks = (new_size + 511) / 512;
    a.mtime = a.ctime = now_ts();
    // Not synced here: a write is durable at fsync (ReplicaFile::fsync
    // flushes: the cache syncs the granules above first), as on a local disk.
    Replica::Transaction tx(*replica_, false);
    if (new_content)
        if (Errc e = replica_->set_content(oid, object->content); e != Errc::ok)
            return tx.finish(e);
    if (Errc e = replica_->set_attr(n->path, a); e != Errc::ok)
        return tx.finish(e);
    replica_->bump_content(oid);
    const Errc e = tx.finish(log_store(*n));
    content_cv_.notify_all();  // a later piece may be waiting for this one's end
    return e;
}

Errc ReplicaBackend::resize_content(std::int64_t oid, std::uint64_t size) {
    auto n = name_of(oid);
    if (!n)
        return Errc::bad_handle;
    if (size > n->attr.size) {
        // Growing writes zeros (the content stays dense).
        std::vector<std::byte> zeros(std::min<std::uint64_t>(size - n->attr.size, 1u << 20));
        for (std::uint64_t at = n->attr.size; at < size;) {
            const std::uint64_t len = std::min<std::uint64_t>(zeros.size(), size - at);
            if (Errc e = write_content(oid, at, std::span(zeros).first(len)); e != Errc::ok)
                return e;
            at += len;
        }
        return Errc::ok;
    }
    std::lock_guard lock(content_mu_);
    auto object = replica_->object(oid);
    if (!object || !object->content)
        return Errc::bad_handle;
    const std::uint64_t granule = cache_->granule_size();
    const std::uint64_t keep = (size + granule - 1) / granule;
    if (size % granule) {
        std::vector<std::byte> plain;
        if (cache_->get(object->content, keep - 1, plain) != Errc::ok)
            return Errc::io;
        plain.resize(size % granule);
        if (Errc e = cache_->put(object->content, keep - 1, plain, true); e != Errc::ok)
            return e;
    }
    cache_->drop_from(object->content, keep);
    Attr a = n->attr;
    a.size = size;
    a.blocks = (size + 511) / 512;
    a.mtime = a.ctime = now_ts();
    Replica::Transaction tx(*replica_);
    if (Errc e = replica_->set_attr(n->path, a); e != Errc::ok)
        return tx.finish(e);
    replica_->bump_content(oid);
    return tx.finish(log_store(*n));
}

// ---- the sync thread --------------------------------------------------------

void ReplicaBackend::drop_unneeded_content(std::int64_t only) {
    if (only && !replica_->paths_of(only).empty())
        return;  // named again (a link made meanwhile)
    for (const LocalObject& o : replica_->content_not_needed(only)) {
        std::lock_guard lock(content_mu_);  // no local copy is made or logged meanwhile
        {
            std::lock_guard state(mu_);
            if (open_local_.count(o.oid))
                continue;
        }
        if (replica_->clear_content(o.oid, o.content) == Errc::ok) {
            cache_->drop_object(o.content);
            std::lock_guard state(mu_);
            kept_.erase(o.oid);
        }
    }
}

std::int64_t ReplicaBackend::last_conflict_id() {
    std::int64_t id = 0;
    for (const Conflict& c : replica_->conflicts())
        id = std::max(id, c.id);
    return id;
}

SyncOutcome ReplicaBackend::reintegrate_once() {
    std::shared_ptr<Backend> remote;
    {
        std::lock_guard lock(mu_);
        remote = remote_;
    }
    auto last_progress = std::chrono::steady_clock::time_point{};
    Reintegration job{*replica_, *remote, *cache_, hostname_,
                      [this, &last_progress](const SyncProgress& p) {
                          std::lock_guard lock(mu_);
                          status_.progress = p;
                          const auto now = std::chrono::steady_clock::now();
                          if (now - last_progress >= std::chrono::milliseconds(250) || p.ops_done == p.ops_total) {
                              last_progress = now;
                              emit("progress", std::to_string(p.ops_done) + "/" + std::to_string(p.ops_total),
                                   std::to_string(p.bytes_left) + " bytes left");
                          }
                      },
                      [this] {
                          std::lock_guard lock(mu_);
                          return stopping_ || manual_offline_;
                      },
                      [this](std::int64_t oid) {
                          std::lock_guard lock(mu_);
                          return open_local_.count(oid) != 0;
                      }};
    return reintegrate(job);
}

void ReplicaBackend::sync_loop() {
    auto backoff = std::chrono::seconds(1);
    auto next_connect = std::chrono::steady_clock::now();
    std::unique_lock lock(mu_);
    while (!stopping_) {
        // Every 500 ms, or when asked. Content of files removed here is
        // freed as soon as they go, here: never during a pass (which may
        // be uploading it) nor under another thread's locks.
        const auto tick = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
        for (;;) {
            wake_.wait_until(lock, tick, [&] { return stopping_ || sync_asked_ || !drop_soon_.empty(); });
            for (std::vector<std::int64_t> drop = std::exchange(drop_soon_, {}); !drop.empty(); drop.pop_back()) {
                lock.unlock();
                drop_unneeded_content(drop.back());
                lock.lock();
            }
            if (stopping_ || sync_asked_ || std::chrono::steady_clock::now() >= tick)
                break;
        }
        if (stopping_)
            break;
        // Offline changes committed without a sync reach the disk within
        // about a second of their commit (Replica::Transaction).
        lock.unlock();
        if ((cache_ && cache_->sync_data() != Errc::ok) || replica_->flush_older_than(std::chrono::seconds(1)) != Errc::ok)
            LOG_WARN("%s: could not sync the offline changes of the last second to the cache's database",
                     description_.c_str());
        lock.lock();
        if (stopping_)
            break;
        const bool asked = std::exchange(sync_asked_, false);
        if (manual_offline_) {
            if (asked) {  // sync_now while offline: report at once
                status_.last = SyncOutcome{0, 0, replica_->pending_count(), Errc::unreachable,
                                           "the mount is offline (netfs online to reconnect)"};
                status_.passes++;
                wake_.notify_all();
            }
            continue;
        }
        if (!remote_) {
            if (std::chrono::steady_clock::now() < next_connect)
                continue;
            lock.unlock();
            std::unique_ptr<Backend> fresh;
            std::string message;
            const Errc e = connect_ ? connect_(fresh, message) : Errc::unreachable;
            lock.lock();
            if (e != Errc::ok) {
                next_connect = std::chrono::steady_clock::now() + backoff;
                backoff = std::min(backoff * 2, std::chrono::seconds(30));
                LOG_DEBUG("still disconnected: %s", message.c_str());
                continue;
            }
            remote_ = std::move(fresh);
            backoff = std::chrono::seconds(1);
        }
        const bool gone = server_gone_locked();
        if (gone && mode_ == SyncMode::connected)
            set_mode(SyncMode::disconnected, "the server cannot be reached");
        const ConnectionState state = remote_->connection_state();
        if (mode_ == SyncMode::connected || state != ConnectionState::connected) {
            if (asked) {  // nothing to replay, or nobody to replay it to
                const std::uint64_t pending = replica_->pending_count();
                status_.last = SyncOutcome{0, 0, pending, pending ? Errc::unreachable : Errc::ok,
                                           pending ? "the server cannot be reached" : ""};
                status_.passes++;
                wake_.notify_all();
            }
            continue;
        }
        // Changes are pending and the user replays them by hand (netfs sync).
        if (!asked && !auto_sync_ && replica_->pending_count() != 0)
            continue;
        // Disconnected, and the backend thinks the server may answer: see
        // whether it does, then replay the log.
        std::shared_ptr<Backend> remote = remote_;
        lock.unlock();
        Attr root;
        const Errc probe = remote->getattr("/", root);
        lock.lock();
        if (probe != Errc::ok) {
            if (asked) {
                status_.last = SyncOutcome{0, 0, replica_->pending_count(), probe, "the server does not answer"};
                status_.passes++;
                wake_.notify_all();
            }
            continue;
        }
        set_mode(SyncMode::reintegrating, "the server answers again");
        const std::int64_t conflicts_before = last_conflict_id();
        lock.unlock();
        SyncOutcome outcome = reintegrate_once();
        drop_unneeded_content();
        lock.lock();
        // Connected again only when nothing is left: local operations made
        // meanwhile are in the log, and the next pass takes them.
        if (outcome.error == Errc::ok && replica_->pending_count() == 0 && !manual_offline_)
            set_mode(SyncMode::connected, "reintegrated");
        else if (mode_ == SyncMode::reintegrating)
            set_mode(SyncMode::disconnected, outcome.message.c_str());
        if (outcome.error == Errc::ok && replica_->pending_count() != 0)
            sync_asked_ = true;  // more came in during the pass
        for (const Conflict& c : replica_->conflicts())
            if (c.id > conflicts_before)
                emit("conflict", c.path, conflict_name(c.kind));
        emit("sync", outcome.error == Errc::ok ? "ok" : "stopped",
             "applied " + std::to_string(outcome.applied) + ", new conflicts " + std::to_string(outcome.conflicts) +
                 ", pending " + std::to_string(outcome.pending) +
                 (outcome.message.empty() ? std::string() : ": " + outcome.message));
        status_.last = outcome;
        status_.passes++;
        status_.progress = {};
        generation_++;
        wake_.notify_all();
    }
}

} // namespace netfs
