// Nodes, paths, attributes and the namespace operations; open and release.
// The data path lives in read_path.cpp, write_path.cpp and direct_io.cpp.
#include "core/engine/engine_impl.h"

#include "core/cache/cache_store.h"
#include "core/log.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <future>

namespace netfs {

namespace {

constexpr std::size_t kNameMax = 255;

double seconds(std::chrono::milliseconds ms) { return static_cast<double>(ms.count()) / 1000.0; }

bool is_regular(std::uint32_t mode) { return S_ISREG(mode); }

} // namespace

bool Engine::Impl::retry_after(Errc error, Retry& retry) {
    if (!is_transient(error))
        return false;
    // A network remote's bound is time: an attempt that itself waited out
    // the remote's timeout has used it up, and asking again would multiply
    // the bound by the count. Other remotes count attempts.
    const bool timed = options.retry_timeout.count() > 0;
    if (timed && retry.fail_fast && gave_up.load(std::memory_order_relaxed)) {
        if (backend->connection_state() != ConnectionState::connected)
            return false;
        remote_answered();
    }
    if (timed ? Clock::now() - retry.start >= options.retry_timeout : retry.attempt >= options.max_retries) {
        if (timed && backend->connection_state() != ConnectionState::connected)
            gave_up.store(true, std::memory_order_relaxed);
        return false;
    }
    int& attempt = retry.attempt;
    {
        std::lock_guard lock(mu);
        counters.retries++;
    }
    auto delay = std::min<Clock::duration>(options.retry_backoff * (1 << std::min(attempt++, 10)),
                                           std::chrono::milliseconds(2000));
    // The last attempt comes at the deadline, not a back-off after it.
    if (timed)
        delay = std::clamp<Clock::duration>(retry.start + options.retry_timeout - Clock::now(),
                                            std::chrono::milliseconds(1), delay);
    std::this_thread::sleep_for(delay);
    return true;
}

// ---- construction ---------------------------------------------------------

Engine::Impl::Impl(std::unique_ptr<Backend> b, EngineOptions o)
    : backend(std::move(b)), options(o), limits(backend->limits()),
      dirty_limit(std::max<std::uint64_t>(o.folio_budget / 2, 4ull << 20)),
      dirty_background(std::max<std::uint64_t>(o.folio_budget / 8, 1ull << 20)),

      folio_cache(o.folio_budget) {
    limits.rsize = std::clamp<std::uint32_t>(limits.rsize, Folio::kMinSize, limits.rsize_max);
    limits.wsize = std::clamp<std::uint32_t>(limits.wsize, Folio::kMinSize, limits.wsize_max);
    limits.max_in_flight = std::max<std::uint32_t>(limits.max_in_flight, 1);
    // Enough to keep every I/O thread busy twice over, and no more: each
    // byte in flight is a second copy of a dirty byte.
    writing_limit = std::min<std::uint64_t>(32ull << 20, 2ull * limits.max_in_flight * limits.wsize);
    auto root = std::make_shared<Node>();
    root->ino = kRootIno;
    root->type = S_IFDIR;
    root->nlookup = 1;  // the kernel holds the root for the life of the mount
    nodes.emplace(kRootIno, root);
    cache = o.cache;
    granule = cache ? cache->granule_size() : 0;
    pool = std::make_unique<IoPool>(limits.max_in_flight);
    if (cache)
        cache_pool = std::make_unique<IoPool>(1);
}

Engine::Engine(std::unique_ptr<Backend> backend, EngineOptions options)
    : impl_(std::make_unique<Impl>(std::move(backend), options)) {}

Engine::~Engine() {
    if (impl_->writeback_worker.joinable()) {
        {
            std::lock_guard lock(impl_->mu);
            impl_->stopping = true;
        }
        impl_->changed.notify_all();
        impl_->writeback_worker.join();
    }
}

const Backend& Engine::backend() const { return *impl_->backend; }
const EngineOptions& Engine::options() const { return impl_->options; }

Errc Engine::start() {
    Attr attr;
    Errc e = impl_->backend->getattr("/", attr);
    if (e != Errc::ok)
        return e;
    if (!S_ISDIR(attr.mode))
        return Errc::not_dir;
    {
        std::lock_guard lock(impl_->mu);
        impl_->apply_remote_attr_locked(*impl_->nodes.at(kRootIno), attr);
    }
    impl_->writeback_worker = std::thread([this] { impl_->writeback_thread(); });
    return Errc::ok;
}

Errc Engine::shutdown() {
    Errc first = Errc::ok;
    std::unique_lock lock(impl_->mu);
    std::vector<std::shared_ptr<Node>> dirty;
    for (auto& [ino, node] : impl_->nodes)
        if (!node->data.dirty.empty() || !node->data.writing.empty())
            dirty.push_back(node);
    for (auto& node : dirty) {
        Errc e = impl_->writeback_and_wait(lock, node);
        if (e != Errc::ok) {
            LOG_ERROR("could not write back %llu bytes of %s at shutdown: %s; they are lost",
                      static_cast<unsigned long long>(node->data.dirty.bytes() + node->data.writing.bytes()),
                      impl_->path_locked(*node).c_str(), std::string(describe(e)).c_str());
            if (first == Errc::ok)
                first = e;
        }
    }
    impl_->stopping = true;
    lock.unlock();
    impl_->changed.notify_all();
    impl_->fills_wanted.notify_all();
    if (impl_->writeback_worker.joinable())
        impl_->writeback_worker.join();
    if (impl_->cache_pool) {
        // Granules queued for the persistent cache are stored before we go.
        std::promise<void> drained;
        impl_->cache_pool->submit(IoPool::Priority::background, [&] { drained.set_value(); });
        drained.get_future().wait();
    }
    return first;
}

void Engine::set_invalidate_hook(std::function<void(Ino, std::uint64_t, std::uint64_t)> hook) {
    std::lock_guard lock(impl_->mu);
    impl_->invalidate_hook = std::move(hook);
}

EngineStats Engine::stats() const {
    std::lock_guard lock(impl_->mu);
    EngineStats s = impl_->counters;
    s.folio_bytes = impl_->folio_cache.used();
    s.dirty_bytes = impl_->dirty_bytes;
    return s;
}

// ---- nodes and paths ------------------------------------------------------

std::shared_ptr<Node> Engine::Impl::node_locked(Ino ino) {
    auto it = nodes.find(ino);
    return it == nodes.end() ? nullptr : it->second;
}

std::string Engine::Impl::path_locked(const Node& node) {
    if (node.ino == kRootIno)
        return "/";
    std::vector<const std::string*> parts;
    const Node* n = &node;
    while (n->ino != kRootIno) {
        if (n->links.empty() || parts.size() > 4096)
            return {};
        parts.push_back(&n->links.front().second);
        auto it = nodes.find(n->links.front().first);
        if (it == nodes.end())
            return {};
        n = it->second.get();
    }
    std::string path;
    for (auto p = parts.rbegin(); p != parts.rend(); ++p) {
        path += '/';
        path += **p;
    }
    return path;
}

std::string Engine::Impl::child_path_locked(Ino parent, std::string_view name, Errc& error) {
    error = Errc::ok;
    if (name.size() > kNameMax) {
        error = Errc::name_too_long;
        return {};
    }
    auto p = node_locked(parent);
    if (!p) {
        error = Errc::bad_handle;
        return {};
    }
    std::string path = path_locked(*p);
    if (path.empty()) {
        error = Errc::not_found;  // the directory was removed under us
        return {};
    }
    if (path != "/")
        path += '/';
    path += name;
    return path;
}

std::shared_ptr<Node> Engine::Impl::intern_locked(Ino parent, const std::string& name, const Attr& attr,
                                                  Clock::time_point asked) {
    std::shared_ptr<Node> node;
    const std::uint32_t type = attr.mode & S_IFMT;
    if (limits.has_file_id && attr.file_id != 0) {
        auto it = by_file_id.find(attr.file_id);
        if (it != by_file_id.end())
            node = node_locked(it->second);
        if (node && node->type != type)
            node.reset();
        // One name only (nlink 1), and not one we know: the names we know
        // are stale (it was renamed by someone else, or its id is a reused
        // inode number of an object deleted behind our back). Those names
        // are forgotten, or its path would still be an old one.
        if (node && attr.nlink == 1 &&
            std::find(node->links.begin(), node->links.end(), std::pair<Ino, std::string>(parent, name)) ==
                node->links.end()) {
            // (Not the hidden name of a file set aside here: the server's
            // file is another node now, and its handles keep this one.)
            if (!node->set_aside_in)
                for (const auto& [dir, old_name] : std::vector(node->links))
                    unlink_name_locked(dir, old_name);
            node.reset();  // a node of its own (the old one may be gone by now)
        }
    }
    auto named = by_name.find(std::pair<Ino, std::string>(parent, name));
    if (!node && named != by_name.end()) {
        auto candidate = node_locked(named->second);
        if (candidate && candidate->type == type &&
            (!limits.has_file_id || candidate->attr.file_id == attr.file_id))
            node = candidate;
    }
    if (!node) {
        node = std::make_shared<Node>();
        node->ino = next_ino++;
        node->type = type;
        nodes.emplace(node->ino, node);
        if (is_regular(type)) {
            node->data.size = attr.size;
            node->cached_version = Version::of(attr);
        }
    }
    if (limits.has_file_id && attr.file_id != 0)
        by_file_id[attr.file_id] = node->ino;
    // Made by this mount (no time asked): confirmed now, not for ever.
    node->name_seen = std::max(node->name_seen, asked == Clock::time_point::max() ? Clock::now() : asked);
    // (parent, name) now names this node and no other.
    if (named != by_name.end() && named->second != node->ino) {
        if (auto old = node_locked(named->second))
            std::erase(old->links, std::pair<Ino, std::string>(parent, name));
        named->second = node->ino;
    } else if (named == by_name.end()) {
        by_name.emplace(std::pair<Ino, std::string>(parent, name), node->ino);
    }
    if (std::find(node->links.begin(), node->links.end(), std::pair<Ino, std::string>(parent, name)) ==
        node->links.end())
        node->links.emplace_back(parent, name);
    apply_remote_attr_locked(*node, attr, asked);
    return node;
}

void Engine::Impl::unlink_name_locked(Ino parent, const std::string& name) {
    auto it = by_name.find(std::pair<Ino, std::string>(parent, name));
    if (it == by_name.end())
        return;
    doubt_names_locked(parent);  // gone, or only forgotten here: no longer sure
    if (auto node = node_locked(it->second)) {
        std::erase(node->links, std::pair<Ino, std::string>(parent, name));
        node->attr_expiry = {};  // nlink and ctime changed
        if (node->links.empty() && node->attr.file_id) {
            auto f = by_file_id.find(node->attr.file_id);
            if (f != by_file_id.end() && f->second == node->ino)
                by_file_id.erase(f);  // the remote may reuse the id for a new object
        }
        by_name.erase(it);
        maybe_drop_locked(node);
    } else {
        by_name.erase(it);
    }
}

void Engine::Impl::maybe_drop_locked(const std::shared_ptr<Node>& node) {
    if (node->ino == kRootIno || node->nlookup > 0 || node->open_count > 0 ||
        !node->data.dirty.empty() || !node->data.writing.empty())
        return;
    for (auto& link : node->links) {
        auto it = by_name.find(link);
        if (it != by_name.end() && it->second == node->ino) {
            by_name.erase(it);
            doubt_names_locked(link.first);  // a name of it is no longer known here
        }
    }
    if (node->attr.file_id) {
        auto f = by_file_id.find(node->attr.file_id);
        if (f != by_file_id.end() && f->second == node->ino)
            by_file_id.erase(f);
    }
    // [!] A busy folio is being filled without the lock: its filler drops
    // it when done (freeing it now would let the fill write into freed memory).
    for (auto it = node->data.folios.begin(); it != node->data.folios.end();) {
        Folio* f = (it++)->second.get();
        if (f->busy)
            f->stale = true;
        else
            drop_folio_locked(node->data, f);
    }
    node->forgotten = true;
    node->data.writeback_file.reset();
    nodes.erase(node->ino);
}

// ---- attributes -----------------------------------------------------------

bool Engine::Impl::apply_remote_attr_locked(Node& node, const Attr& attr, Clock::time_point asked) {
    if (asked < node.own_change_at)
        return false;  // possibly older than our own change; the next getattr asks again
    const std::uint64_t known_id = node.attr.file_id;
    node.attr = attr;
    node.attr_expiry = Clock::now() + options.attr_timeout;
    if (!is_regular(node.type))
        return false;
    FileData& d = node.data;
    const Version v = Version::of(attr);
    if (v == node.cached_version) {
        node.expect_own_change = false;
        if (!d.size_is_local)
            d.size = attr.size;
        return false;
    }
    // Our own writes never leave the remote larger than our own size: a
    // remote that is, was appended to by another client meanwhile; and
    // another file at the name was put there by one.
    if ((node.expect_own_change || d.size_is_local) && attr.size <= d.size &&
        (!known_id || !attr.file_id || known_id == attr.file_id)) {
        // The remote moved because of our own writes (or will be overwritten
        // by the ones pending): our folios are still the file's content.
        node.cached_version = v;
        if (d.dirty.empty() && d.writing.empty() && !d.truncating) {
            node.expect_own_change = false;
            d.size_is_local = false;
            d.size = attr.size;
        }
        // Urgent: ahead of a store_fills_now() asked next, after which the
        // replica may compare this version with the one it saw.
        if (cache && node.cache_object) {
            ++accepts_pending[node.cache_object];
            cache_pool->submit(IoPool::Priority::urgent, [this, cache = cache, id = node.cache_object, v] {
                cache->accept_version(id, v);
                std::lock_guard lock(mu);
                if (--accepts_pending[id] == 0)
                    accepts_pending.erase(id);
            });
        }
        return false;
    }
    // Another client changed the file: what we hold is stale, and so is the
    // persistent cache's copy; the next open re-attaches (and drops it).
    node.cached_version = v;
    node.cache_object = 0;
    d.sent_end = 0;
    d.size = attr.size;
    drop_clean_folios_locked(d);
    return true;
}

Attr Engine::Impl::view_locked(const Node& node) const {
    Attr a = node.attr;
    if (is_regular(node.type)) {
        const FileData& d = node.data;
        a.size = d.size;
        if (d.size_is_local) {
            a.mtime = d.local_mtime;
            a.ctime = d.local_mtime;
            a.blocks = std::max<std::uint64_t>(a.blocks, (d.size + 511) / 512);
        }
    }
    return a;
}

void Engine::Impl::fill_entry_locked(const Node& node, Entry& out) const {
    out.ino = node.ino;
    out.attr = view_locked(node);
    out.attr_timeout = seconds(options.attr_timeout);
    out.entry_timeout = seconds(options.entry_timeout);
}

void Engine::Impl::invalidate_kernel_cache(Ino ino, std::uint64_t offset, std::uint64_t length) {
    // Never from the calling thread: the kernel may hold page locks while it
    // waits for the very request that asks for the invalidation.
    if (!invalidate_hook)
        return;
    pool->submit(IoPool::Priority::background,
                 [hook = invalidate_hook, ino, offset, length] { hook(ino, offset, length); });
}

// ---- namespace operations -------------------------------------------------

// The kernel's NFS client calls these .nfsXXXX; ours say whose they are.
static std::string aside_name(Ino ino) {
    char number[24];
    std::snprintf(number, sizeof number, "%016llx", static_cast<unsigned long long>(ino));
    return std::string(kSetAsidePrefix) + number;
}

std::shared_ptr<Node> Engine::Impl::open_set_aside_locked(Ino parent, std::string_view name) {
    const auto it = by_name.find(std::pair<Ino, std::string>(parent, std::string(name)));
    auto node = it == by_name.end() ? nullptr : node_locked(it->second);
    return node && node->set_aside_in == parent && node->open_count > 0 && name == aside_name(node->ino) ? node
                                                                                                        : nullptr;
}

Errc Engine::lookup(Ino parent, std::string_view name, Entry& out) {
    Errc e;
    std::string path;
    {
        std::lock_guard lock(impl_->mu);
        path = impl_->child_path_locked(parent, name, e);
        // Set aside here and still open: ours until its last close, which
        // removes it (while disconnected, and after, no server has it).
        if (auto node = e == Errc::ok ? impl_->open_set_aside_locked(parent, name) : nullptr) {
            node->nlookup++;
            impl_->fill_entry_locked(*node, out);
            return Errc::ok;
        }
    }
    if (e != Errc::ok)
        return e;
    if (impl_->lookup_listed(parent, name, out))
        return Errc::ok;
    Attr attr;
    const auto asked = Clock::now();
    e = impl_->known_missing(parent, name) ? Errc::not_found
                                           : impl_->idempotent([&] { return impl_->backend->getattr(path, attr); });
    std::lock_guard lock(impl_->mu);
    if (e == Errc::not_found) {
        // A negative entry: the kernel may remember the absence for a while.
        impl_->unlink_name_locked(parent, std::string(name));
        out = Entry{};
        out.entry_timeout = seconds(impl_->options.entry_timeout);
        return Errc::ok;
    }
    if (e != Errc::ok)
        return e;
    auto node = impl_->intern_locked(parent, std::string(name), attr, asked);
    node->nlookup++;
    impl_->fill_entry_locked(*node, out);
    return Errc::ok;
}

// A name the remote confirmed within dir_cache_time. Its attributes go to
// the kernel only for what is left of attr_timeout (none when that is
// over): a stat then asks getattr, which asks the remote, so sizes and
// times are as fresh as ever; only the name itself is trusted. Names the
// remote no longer has are found out by open or getattr, which forget them.
bool Engine::Impl::lookup_listed(Ino parent, std::string_view name, Entry& out) {
    std::lock_guard lock(mu);
    const auto named = by_name.find(std::pair<Ino, std::string>(parent, std::string(name)));
    if (named == by_name.end())
        return false;
    auto node = node_locked(named->second);
    const auto now = Clock::now();
    if (!node || node->forgotten || now - node->name_seen >= options.dir_cache_time)
        return false;
    // A hard link's other names are vouched for by none of its lookups; and
    // a name seen before this mount removed or renamed something in the
    // directory may be one a listing taken earlier brought back.
    const auto dir = node_locked(parent);
    if (node->links.size() != 1 || !dir || node->name_seen <= dir->names_removed)
        return false;
    node->nlookup++;
    fill_entry_locked(*node, out);
    out.attr_timeout = std::max(0.0, std::chrono::duration<double>(node->attr_expiry - now).count());
    return true;
}

// A name missing from a directory this mount made within dir_cache_time,
// whose every name is still known: missing on the remote too, unless
// another client made it meanwhile (which dir_cache_time accepts, as for
// listed names). A copy into a new directory asks nothing before each create.
bool Engine::Impl::known_missing(Ino parent, std::string_view name) {
    std::lock_guard lock(mu);
    const auto dir = node_locked(parent);
    if (!dir || dir->names_all_known == Clock::time_point{} || dir->names_all_known <= dir->names_removed ||
        Clock::now() - dir->names_all_known >= options.dir_cache_time)
        return false;
    return !by_name.contains(std::pair<Ino, std::string>(parent, std::string(name)));
}

// A namespace change in `parent` failed, or went where the engine cannot
// follow: the remote may now hold a name the engine does not know.
void Engine::Impl::doubt_names(Ino parent) {
    std::lock_guard lock(mu);
    doubt_names_locked(parent);
}

void Engine::Impl::doubt_names_locked(Ino parent) {
    if (auto dir = node_locked(parent))
        dir->names_all_known = {};
}

void Engine::forget(Ino ino, std::uint64_t nlookup) {
    std::lock_guard lock(impl_->mu);
    auto node = impl_->node_locked(ino);
    if (!node || ino == kRootIno)
        return;
    node->nlookup -= std::min(node->nlookup, nlookup);
    impl_->maybe_drop_locked(node);
}

Errc Engine::path_of(Ino ino, std::string& path) {
    std::lock_guard lock(impl_->mu);
    auto node = impl_->node_locked(ino);
    if (!node)
        return Errc::bad_handle;
    path = impl_->path_locked(*node);
    return path.empty() ? Errc::not_found : Errc::ok;
}

Errc Engine::getattr(Ino ino, Attr& out, std::uint64_t handle) {
    std::string path;
    std::shared_ptr<BackendFile> file;
    {
        std::lock_guard lock(impl_->mu);
        auto node = impl_->node_locked(ino);
        if (!node)
            return Errc::bad_handle;
        if (Clock::now() < node->attr_expiry) {
            out = impl_->view_locked(*node);
            return Errc::ok;
        }
        path = impl_->path_locked(*node);
        if (path.empty() && node->open_count > 0 && node->removed_here) {
            // Removed here and still open: only our handles see it, and
            // the node has what they did (a remote asked through one would
            // not know a chmod made since: see setattr).
            out = impl_->view_locked(*node);
            return Errc::ok;
        }
        file = handle ? impl_->handle_of(handle)->file : node->data.writeback_file;
    }
    Attr attr;
    const auto asked = Clock::now();
    Errc e = path.empty() ? Errc::not_found : impl_->idempotent([&] { return impl_->backend->getattr(path, attr); });
    // Open but unlinked elsewhere, or its name forgotten here: its handle
    // may still reach it (else, below, the node's view).
    if (e == Errc::not_found && file && impl_->idempotent([&] { return file->getattr(attr); }) == Errc::ok)
        e = Errc::ok;
    std::lock_guard lock(impl_->mu);
    auto node = impl_->node_locked(ino);
    if (!node)
        return Errc::bad_handle;
    if (e != Errc::ok) {
        if (e == Errc::not_found)
            node->name_seen = {};  // the next lookup asks the remote
        if (e == Errc::not_found && Clock::now() >= node->attr_expiry && node->open_count > 0) {
            out = impl_->view_locked(*node);  // unlinked by someone else; still open here
            return Errc::ok;
        }
        return e;
    }
    impl_->apply_remote_attr_locked(*node, attr, asked);
    out = impl_->view_locked(*node);
    return Errc::ok;
}

Errc Engine::setattr(Ino ino, const SetAttr& change, std::uint64_t handle, Attr& out) {
    if (impl_->options.read_only)
        return Errc::read_only;
    std::shared_ptr<Node> node;
    std::string path;
    {
        std::lock_guard lock(impl_->mu);
        node = impl_->node_locked(ino);
        if (!node)
            return Errc::bad_handle;
        path = impl_->path_locked(*node);
    }
    BackendFile* file = handle ? impl_->handle_of(handle)->file.get() : nullptr;
    if ((change.mask & SetAttr::kSize) && is_regular(node->type))
        return impl_->truncate(node, change.size, file, path, change, out);
    if (change.mask & SetAttr::kSize)
        return S_ISDIR(node->type) ? Errc::is_dir : Errc::invalid;
    if (path.empty()) {
        // Its last name is gone here, and it is open (fchmod, futimens):
        // no remote call can reach it by path any more, and it goes at its
        // last close. The change holds for the handles, as on a local disk.
        std::lock_guard lock(impl_->mu);
        if (node->open_count == 0 || !node->removed_here)
            return Errc::not_found;  // (only forgotten here: it is somewhere on the remote)
        change.apply_to(node->attr);
        if (node->data.size_is_local && (change.mask & (SetAttr::kMtime | SetAttr::kMtimeNow)))
            node->data.local_mtime = node->attr.mtime;
        out = impl_->view_locked(*node);
        return Errc::ok;
    }
    Attr attr;
    Errc e = impl_->idempotent([&] { return impl_->backend->setattr(path, change, attr); });
    if (e != Errc::ok)
        return e;
    std::lock_guard lock(impl_->mu);
    node->expect_own_change = true;  // ctime moved; the content did not
    node->own_change_at = Clock::now();
    impl_->apply_remote_attr_locked(*node, attr);
    if (is_regular(node->type) && node->data.size_is_local && (change.mask & (SetAttr::kMtime | SetAttr::kMtimeNow)))
        node->data.local_mtime = attr.mtime;
    out = impl_->view_locked(*node);
    return Errc::ok;
}

Errc Engine::readlink(Ino ino, std::string& target) {
    std::string path;
    if (Errc e = impl_->path_of(ino, path); e != Errc::ok)
        return e;
    return impl_->idempotent([&] { return impl_->backend->readlink(path, target); });
}

Errc Engine::Impl::finish_create(const Caller& caller, Ino parent, const std::string& name,
                                 const std::string& path, Attr attr, Entry& out) {
    if (options.set_owner && (attr.uid != caller.uid || attr.gid != caller.gid)) {
        SetAttr owner;
        owner.mask = SetAttr::kUid | SetAttr::kGid;
        owner.uid = caller.uid;
        owner.gid = caller.gid;
        Attr after;
        Errc e = backend->setattr(path, owner, after);
        if (e == Errc::ok)
            attr = after;
        else
            LOG_WARN("could not give %s to uid %u: %s", path.c_str(), caller.uid,
                     std::string(describe(e)).c_str());
    }
    std::lock_guard lock(mu);
    if (auto p = node_locked(parent))
        p->attr_expiry = {};  // its mtime and nlink changed
    auto node = intern_locked(parent, name, attr);
    node->nlookup++;
    fill_entry_locked(*node, out);
    return Errc::ok;
}

std::string Engine::Impl::new_child_path(Ino parent, std::string_view name, Errc& e, bool set_aside_ok) {
    if (options.read_only) {
        e = Errc::read_only;
        return {};
    }
    if (!set_aside_ok && is_set_aside(name) && backend->changes_stay_local()) {
        e = Errc::perm;
        return {};
    }
    std::lock_guard lock(mu);
    return child_path_locked(parent, name, e);
}

Errc Engine::mknod(const Caller& caller, Ino parent, std::string_view name, std::uint32_t mode,
                   std::uint64_t rdev, Entry& out) {
    Errc e;
    std::string path = impl_->new_child_path(parent, name, e);
    if (e != Errc::ok)
        return e;
    Attr attr;
    if (S_ISREG(mode)) {
        std::unique_ptr<BackendFile> file;
        e = impl_->at_most_once([&] { return impl_->backend->create(path, mode, O_WRONLY | O_EXCL, file, attr); },
                                [&] { return impl_->renew_child_path(parent, name, path); });
        if (file)
            file->close();
    } else {
        e = impl_->at_most_once([&] { return impl_->backend->mknod(path, mode, rdev, attr); },
                                [&] { return impl_->renew_child_path(parent, name, path); });
    }
    if (e != Errc::ok) {
        impl_->doubt_names(parent);
        return e == Errc::not_supported && !S_ISREG(mode) ? Errc::perm : e;  // mknod(2): not this type of node
    }
    return impl_->finish_create(caller, parent, std::string(name), path, attr, out);
}

Errc Engine::mkdir(const Caller& caller, Ino parent, std::string_view name, std::uint32_t mode, Entry& out) {
    Errc e;
    std::string path = impl_->new_child_path(parent, name, e);
    if (e != Errc::ok)
        return e;
    Attr attr;
    e = impl_->at_most_once([&] { return impl_->backend->mkdir(path, mode, attr); },
                            [&] { return impl_->renew_child_path(parent, name, path); });
    if (e != Errc::ok) {
        impl_->doubt_names(parent);
        return e;
    }
    const auto made = Clock::now();
    e = impl_->finish_create(caller, parent, std::string(name), path, attr, out);
    // Empty when made, every name in it will be ours; not so for one made
    // while changes stay local (reintegration may find one on the server).
    if (e == Errc::ok && !impl_->backend->changes_stay_local()) {
        std::lock_guard lock(impl_->mu);
        if (auto dir = impl_->node_locked(out.ino))
            dir->names_all_known = made;
    }
    return e;
}

Errc Engine::symlink(const Caller& caller, std::string_view target, Ino parent, std::string_view name,
                     Entry& out) {
    Errc e;
    std::string path = impl_->new_child_path(parent, name, e);
    if (e != Errc::ok)
        return e;
    Attr attr;
    e = impl_->at_most_once([&] { return impl_->backend->symlink(std::string(target), path, attr); },
                            [&] { return impl_->renew_child_path(parent, name, path); });
    if (e != Errc::ok) {
        impl_->doubt_names(parent);
        return e;
    }
    return impl_->finish_create(caller, parent, std::string(name), path, attr, out);
}

Errc Engine::link(Ino ino, Ino new_parent, std::string_view new_name, Entry& out) {
    Errc e;
    std::string to = impl_->new_child_path(new_parent, new_name, e);
    if (e != Errc::ok)
        return e;
    std::string from;
    if (Errc pe = impl_->path_of(ino, from); pe != Errc::ok)
        return pe;
    if (is_set_aside(from) && impl_->backend->changes_stay_local())
        return Errc::perm;  // see new_child_path
    Attr attr;
    e = impl_->at_most_once([&] { return impl_->backend->link(from, to, attr); },
                            [&] {
                                if (Errc pe = impl_->path_of(ino, from); pe != Errc::ok)
                                    return pe;
                                return impl_->renew_child_path(new_parent, new_name, to);
                            });
    if (e != Errc::ok) {
        impl_->doubt_names(new_parent);
        return e;
    }
    std::lock_guard lock(impl_->mu);
    auto node = impl_->node_locked(ino);
    if (!node)
        return Errc::bad_handle;
    if (!impl_->limits.has_file_id || attr.file_id == 0) {
        // Without file ids the new name must still lead to this node.
        impl_->by_name[{new_parent, std::string(new_name)}] = ino;
        node->links.emplace_back(new_parent, std::string(new_name));
    }
    if (is_regular(node->type)) {
        node->expect_own_change = true;  // ctime moved; the content did not
        node->own_change_at = Clock::now();
    }
    auto linked = impl_->intern_locked(new_parent, std::string(new_name), attr);
    linked->nlookup++;
    if (auto p = impl_->node_locked(new_parent))
        p->attr_expiry = {};
    impl_->fill_entry_locked(*linked, out);
    return Errc::ok;
}

Errc Engine::Impl::remove_name(Ino parent, std::string_view name, bool directory) {
    Errc e;
    std::string path = new_child_path(parent, name, e, true);
    if (e != Errc::ok)
        return e;
    if (!directory) {
        std::lock_guard lock(mu);
        if (open_set_aside_locked(parent, name))
            return Errc::busy;  // still open: it goes at its last close (as the kernel's NFS client answers)
    }
    if (!directory && rename_aside_if_open(parent, std::string(name), path))
        return Errc::ok;
    e = at_most_once([&] { return directory ? backend->rmdir(path) : backend->unlink(path); },
                     [&] { return renew_child_path(parent, name, path); });
    if (e != Errc::ok) {
        doubt_names(parent);
        return e;
    }
    std::uint64_t object = 0;
    std::string remaining;
    std::shared_ptr<Node> survivor;
    std::uint64_t file_id = 0;
    std::shared_ptr<BackendFile> orphan;
    {
        std::lock_guard lock(mu);
        std::shared_ptr<Node> node;
        if (auto it = by_name.find(std::pair<Ino, std::string>(parent, std::string(name))); it != by_name.end())
            node = node_locked(it->second);
        unlink_name_locked(parent, std::string(name));
        if (node && node->links.empty())
            node->removed_here = true;
        if (auto p = node_locked(parent)) {
            p->attr_expiry = {};
            p->names_removed = Clock::now();
        }
        if (node && !directory)
            orphan = orphan_if_unreachable_locked(*node, path);
        // One of its hard links: the file lives on under the others, its
        // content unchanged (ctime moved), and what the cache holds of it
        // under the name removed moves to one that stays. git writes every
        // object so (a temporary name, a link, an unlink): its objects
        // were not cached, and offline git died of SIGBUS reading them.
        if (node && !directory && is_regular(node->type) && !node->links.empty()) {
            survivor = node;
            file_id = node->attr.file_id;
            node->expect_own_change = true;
            node->own_change_at = Clock::now();
            remaining = path_locked(*node);
            object = cache ? node->cache_object : 0;
        }
    }
    close_orphan(std::move(orphan));
    if (!survivor)
        return Errc::ok;
    if (object && !remaining.empty() && cache_has_at(path, object))
        cache->rename_objects(path, remaining);
    // Its new attributes now: the change expected is this one, not the
    // next one another client makes.
    Attr attr;
    const auto asked = Clock::now();
    const bool seen = !remaining.empty() && backend->getattr(remaining, attr) == Errc::ok && attr.file_id == file_id;
    std::lock_guard lock(mu);
    if (seen)
        apply_remote_attr_locked(*survivor, attr, asked);
    else if (survivor->data.dirty.empty() && survivor->data.writing.empty())
        survivor->expect_own_change = false;  // the next open compares versions (and may drop the cached copy)
    return Errc::ok;
}

bool Engine::Impl::rename_aside_if_open(Ino parent, const std::string& name, const std::string& path,
                                        std::string* aside_path_out) {
    // A remote whose changes stay local (disconnected) keeps a file's
    // content by its names: with none left, its handles would have nothing
    // to read or write through.
    if (limits.open_files_survive_unlink && !backend->changes_stay_local())
        return false;
    std::shared_ptr<Node> node;
    {
        std::lock_guard lock(mu);
        auto it = by_name.find(std::pair<Ino, std::string>(parent, name));
        node = it == by_name.end() ? nullptr : node_locked(it->second);
        if (!node || !is_regular(node->type) || node->open_count == 0 || node->links.size() != 1)
            return false;  // not open here, or another name keeps it alive
        if (open_set_aside_locked(parent, name))
            return false;  // set aside already (remove_name refuses that)
    }
    const std::string aside = aside_name(node->ino);
    const auto aside_of = [&aside](const std::string& p) { return p.substr(0, p.rfind('/') + 1) + aside; };
    std::string where = path, aside_path = aside_of(path);
    if (at_most_once([&] { return backend->rename(where, aside_path, 0); },
                     [&] {
                         const Errc r = renew_child_path(parent, name, where);
                         aside_path = aside_of(where);
                         return r;
                     }) != Errc::ok)
        return false;  // unlink it after all: the handle may go stale, the name does go
    std::lock_guard lock(mu);
    by_name.erase(std::pair<Ino, std::string>(parent, name));
    std::replace(node->links.begin(), node->links.end(), std::pair<Ino, std::string>(parent, name),
                 std::pair<Ino, std::string>(parent, aside));
    by_name[{parent, aside}] = node->ino;
    node->set_aside_in = parent;
    node->attr_expiry = {};
    if (auto p = node_locked(parent)) {
        p->attr_expiry = {};
        p->names_removed = Clock::now();
    }
    if (aside_path_out)
        *aside_path_out = aside_path;
    return true;
}

void Engine::Impl::put_back_set_aside(Ino parent, const std::string& name, const std::string& path,
                                      const std::string& aside_path) {
    const Errc e = backend->rename(aside_path, path, RENAME_NOREPLACE);
    std::lock_guard lock(mu);
    const std::pair<Ino, std::string> hidden(parent, aside_path.substr(aside_path.rfind('/') + 1));
    auto it = by_name.find(hidden);
    auto node = it == by_name.end() ? nullptr : node_locked(it->second);
    if (e != Errc::ok) {
        // It stays under the hidden name, where it can be found: never
        // removed (taken meanwhile, the name may hold the rename's file
        // after all, its answer lost, or another client's).
        LOG_WARN("%s could not be put back from %s (%s): it stays there", path.c_str(), aside_path.c_str(),
                 std::string(describe(e)).c_str());
        if (node)
            node->set_aside_in = 0;
        return;
    }
    if (it == by_name.end())
        return;
    by_name.erase(it);
    if (!node)
        return;
    std::replace(node->links.begin(), node->links.end(), hidden, std::pair<Ino, std::string>(parent, name));
    by_name[{parent, name}] = node->ino;
    node->set_aside_in = 0;
    node->attr_expiry = {};
}

std::shared_ptr<BackendFile> Engine::Impl::orphan_if_unreachable_locked(Node& node, const std::string& path) {
    // Its last name gone and no handle open: what it still had to write
    // back (a write the remote refused, a full disk) is of a file nobody
    // can reach any more. Not retried, and not reported lost at unmount.
    if (!is_regular(node.type) || !node.links.empty() || node.open_count > 0 || node.attr.nlink > 1 ||
        node.data.dirty.empty())
        return nullptr;
    LOG_INFO("%s removed: its %llu bytes not written back are dropped", path.c_str(),
             static_cast<unsigned long long>(node.data.dirty.bytes()));
    dirty_bytes -= node.data.dirty.remove(0, UINT64_MAX);
    node.data.orphaned = true;  // until a handle is opened on it again
    changed.notify_all();       // flushes waiting on it
    if (!node.data.writing.empty())
        return nullptr;  // the last write to end lets the handle go
    return std::move(node.data.writeback_file);  // kept only to retry those
}

void Engine::Impl::close_orphan(std::shared_ptr<BackendFile> file) {
    if (file && file.use_count() == 1)
        file->close();  // the remote (the replica offline) frees what it kept for the file
}

void Engine::Impl::remove_set_aside(const std::shared_ptr<Node>& node) {
    std::string path;
    std::pair<Ino, std::string> link;
    {
        std::lock_guard lock(mu);
        if (!node->set_aside_in || node->open_count > 0)
            return;
        // Only the name it was set aside under goes: one it was given since
        // (renamed back, moved, linked) is a name someone wants.
        const std::pair<Ino, std::string> hidden(node->set_aside_in, aside_name(node->ino));
        node->set_aside_in = 0;
        const auto aside = std::find(node->links.begin(), node->links.end(), hidden);
        if (aside == node->links.end())
            return;
        link = *aside;
        Errc e;
        path = child_path_locked(link.first, link.second, e);
        if (e != Errc::ok)
            return;
    }
    if (Errc e = backend->unlink(path); e != Errc::ok && e != Errc::not_found)
        LOG_WARN("cannot remove %s, the remote copy of a file unlinked while open: %s", path.c_str(),
                 std::string(describe(e)).c_str());
    std::shared_ptr<BackendFile> orphan;
    {
        std::lock_guard lock(mu);
        unlink_name_locked(link.first, link.second);
        orphan = orphan_if_unreachable_locked(*node, path);
    }
    close_orphan(std::move(orphan));
}

Errc Engine::unlink(Ino parent, std::string_view name) { return impl_->remove_name(parent, name, false); }

Errc Engine::rmdir(Ino parent, std::string_view name) { return impl_->remove_name(parent, name, true); }

Errc Engine::rename(Ino parent, std::string_view name, Ino new_parent, std::string_view new_name,
                    unsigned flags) {
    Errc e;
    std::string from = impl_->new_child_path(parent, name, e);
    if (e != Errc::ok)
        return e;
    std::string to = impl_->new_child_path(new_parent, new_name, e);
    if (e != Errc::ok)
        return e;
    // A file open here that the rename replaces is set aside first, as an
    // unlink of it would be (its handles read on, as the kernel's NFS
    // client has them), and put back if the rename fails.
    std::string aside;
    const bool set_aside =
        flags == 0 && from != to && impl_->rename_aside_if_open(new_parent, std::string(new_name), to, &aside);
    e = impl_->at_most_once([&] { return impl_->backend->rename(from, to, flags); },
                            [&] {
                                if (Errc r = impl_->renew_child_path(parent, name, from); r != Errc::ok)
                                    return r;
                                return impl_->renew_child_path(new_parent, new_name, to);
                            });
    if (e != Errc::ok) {
        if (set_aside)
            impl_->put_back_set_aside(new_parent, std::string(new_name), to, aside);
        impl_->doubt_names(parent);
        impl_->doubt_names(new_parent);
        return e == Errc::not_supported && flags ? Errc::invalid : e;  // renameat2(2): not this flag
    }

    std::lock_guard lock(impl_->mu);
    auto& by_name = impl_->by_name;
    const std::pair<Ino, std::string> src(parent, std::string(name));
    const std::pair<Ino, std::string> dst(new_parent, std::string(new_name));
    auto s = by_name.find(src);
    std::shared_ptr<Node> moved = s == by_name.end() ? nullptr : impl_->node_locked(s->second);
    auto d = by_name.find(dst);
    std::shared_ptr<Node> target = d == by_name.end() ? nullptr : impl_->node_locked(d->second);

    if (moved && moved == target && !(flags & RENAME_EXCHANGE))
        return Errc::ok;  // two links of one file: rename(2) does nothing
    if (flags & RENAME_EXCHANGE) {
        if (moved)
            std::replace(moved->links.begin(), moved->links.end(), src, dst);
        if (target)
            std::replace(target->links.begin(), target->links.end(), dst, src);
        if (s != by_name.end())
            by_name.erase(s);
        if ((d = by_name.find(dst)) != by_name.end())
            by_name.erase(d);
        if (moved)
            by_name[dst] = moved->ino;
        if (target)
            by_name[src] = target->ino;
    } else {
        if (target && target != moved) {
            impl_->unlink_name_locked(new_parent, std::string(new_name));
            if (target->links.empty())
                target->removed_here = true;
        }
        if (moved) {
            by_name.erase(src);
            std::replace(moved->links.begin(), moved->links.end(), src, dst);
            by_name[dst] = moved->ino;
            moved->attr_expiry = {};  // ctime changed
        }
    }
    for (Ino p : {parent, new_parent})
        if (auto n = impl_->node_locked(p)) {
            n->attr_expiry = {};
            n->names_removed = Clock::now();
        }
    return Errc::ok;
}

Errc Engine::statfs(StatFs& out) {
    Errc e = impl_->idempotent([&] { return impl_->backend->statfs(out); });
    // Names longer than the kernel's NAME_MAX cannot reach us, whatever the
    // server allows (NFS servers report 256 or 1024).
    out.name_max = std::min<std::uint32_t>(out.name_max, kNameMax);
    return e;
}

Errc Engine::fsyncdir() { return impl_->backend->sync_namespace(); }

// ---- directories ----------------------------------------------------------

Errc Engine::opendir(Ino ino, std::uint64_t& handle) {
    std::string path;
    {
        std::lock_guard lock(impl_->mu);
        auto node = impl_->node_locked(ino);
        if (!node)
            return Errc::bad_handle;
        path = impl_->path_locked(*node);
    }
    if (path.empty())
        return Errc::not_found;
    auto dir = std::make_unique<DirHandle>();
    dir->ino = ino;
    Errc e = impl_->idempotent([&] { return impl_->backend->readdir(path, dir->entries); });
    if (e != Errc::ok)
        return e;
    std::sort(dir->entries.begin(), dir->entries.end(),
              [](const DirEntry& a, const DirEntry& b) { return a.name < b.name; });
    {
        // A name listed that the engine does not know (another client's):
        // missing names of this directory must be asked for again.
        std::lock_guard lock(impl_->mu);
        if (auto node = impl_->node_locked(ino); node && node->names_all_known != Clock::time_point{})
            for (const DirEntry& de : dir->entries)
                if (!impl_->by_name.contains(std::pair<Ino, std::string>(ino, de.name))) {
                    node->names_all_known = {};
                    break;
                }
    }
    handle = reinterpret_cast<std::uint64_t>(dir.release());
    return Errc::ok;
}

Errc Engine::readdir(Ino ino, std::uint64_t handle, std::uint64_t offset, bool plus,
                     const std::function<bool(const DirListEntry&, std::uint64_t)>& accept) {
    auto* dir = reinterpret_cast<DirHandle*>(handle);
    std::lock_guard lock(impl_->mu);
    auto self = impl_->node_locked(ino);
    if (!self)
        return Errc::bad_handle;
    const std::uint64_t total = dir->entries.size() + 2;
    for (std::uint64_t i = offset; i < total; ++i) {
        DirListEntry entry;
        if (i < 2) {
            // Only the type matters to the kernel here; ".." is not looked up.
            entry.name = i == 0 ? "." : "..";
            entry.attr = i == 0 ? self->attr : Attr{};
            entry.attr.mode = S_IFDIR | (i == 0 ? (self->attr.mode & 07777) : 0755);
            if (!accept(entry, i + 1))
                break;
            continue;
        }
        const DirEntry& de = dir->entries[i - 2];
        entry.name = de.name;
        if (!plus) {
            entry.attr = de.attr;
            if (!accept(entry, i + 1))
                break;
            continue;
        }
        auto node = impl_->intern_locked(ino, de.name, de.attr, dir->listed_at);
        entry.ino = node->ino;
        entry.attr = impl_->view_locked(*node);
        if (!accept(entry, i + 1)) {
            impl_->maybe_drop_locked(node);
            break;
        }
        node->nlookup++;
    }
    return Errc::ok;
}

void Engine::releasedir(std::uint64_t handle) { delete reinterpret_cast<DirHandle*>(handle); }

// ---- open files -----------------------------------------------------------

void Engine::Impl::cache_object_of(const std::string& path, const Attr& attr, std::uint64_t& object,
                                   std::uint64_t& content_version) {
    object = content_version = 0;
    if (!cache || !S_ISREG(attr.mode))
        return;
    // Not even written until the cache stores its first granule: the id
    // lives in this node and in fills, which go to the same store.
    if (cache->object(path, Version::of(attr), object, content_version, CacheStore::Sync::deferred) != Errc::ok) {
        LOG_WARN("the cache could not look up %s; reading it from the remote", path.c_str());
        object = 0;
    }
}

bool Engine::Impl::cache_has_at(const std::string& path, std::uint64_t object) const {
    std::uint64_t keyed = 0;
    return cache && cache->find_object(path, keyed) == Errc::ok && keyed == object;
}

// Records the version our own writes moved the remote to, so that the next
// change of it is known for another client's. With or without a cache
// object: one that waits for a later getattr would take a change made
// meanwhile by someone else for ours, and keep our folios over it.
void Engine::Impl::settle_version(const std::shared_ptr<Node>& node, BackendFile& file) {
    {
        std::lock_guard lock(mu);
        if (node->forgotten || !node->expect_own_change || !node->data.dirty.empty() || !node->data.writing.empty())
            return;
    }
    Attr attr;
    const auto asked = Clock::now();
    if (file.getattr(attr) != Errc::ok)
        return;  // the next open compares versions anyway
    std::lock_guard lock(mu);
    apply_remote_attr_locked(*node, attr, asked);
}

OpenFile* Engine::Impl::make_open_file_locked(const std::shared_ptr<Node>& node,
                                              std::unique_ptr<BackendFile> file, int flags) {
    auto* of = new OpenFile{node, std::shared_ptr<BackendFile>(std::move(file)), flags,
                            (flags & O_ACCMODE) != O_RDONLY,
                            (flags & O_DIRECT) != 0 || options.direct_io,
                            node->data.error_seq, Readahead(options.readahead_max)};
    node->open_count++;
    node->data.orphaned = false;  // reachable again (an open that raced the unlink of its last name)
    if (of->writable && !node->data.writeback_file)
        node->data.writeback_file = of->file;
    return of;
}

Errc Engine::open(Ino ino, int flags, OpenResult& out) {
    const bool writable = (flags & O_ACCMODE) != O_RDONLY;
    if (impl_->options.read_only && (writable || (flags & O_TRUNC)))
        return Errc::read_only;
    std::shared_ptr<Node> node;
    std::string path;
    {
        std::lock_guard lock(impl_->mu);
        node = impl_->node_locked(ino);
        if (!node)
            return Errc::bad_handle;
        path = impl_->path_locked(*node);
    }
    if (path.empty())
        return Errc::not_found;
    // Opened for writing while changes stay local, the replica copies what
    // the cache holds of the file: a read just before may still be queued.
    if (writable && impl_->backend->changes_stay_local())
        impl_->store_fills_now();
    // O_APPEND is the kernel's business (it sends the offset); a remote
    // handle opened with it would ignore the offsets of our writeback.
    // O_TRUNC is the engine's (a truncate once open), but a remote whose
    // changes stay local is told: it then needs none of the old content (a
    // file never cached can still be rewritten offline).
    const int remote_flags =
        (flags & O_ACCMODE) | ((flags & O_TRUNC) && impl_->backend->changes_stay_local() ? O_TRUNC : 0);
    // Close-to-open: what the remote holds now decides whether cached data
    // stays. Asked by path while the open is in flight, so that a network
    // remote spends one round trip on both, not two.
    struct Lookup {
        Errc error = Errc::io;
        Attr attr;
        std::promise<void> done;
    };
    // A remote whose open looks at the file anyway says what it found.
    auto lookup = std::make_shared<Lookup>();
    const auto asked = Clock::now();
    const bool open_looks = impl_->limits.open_reports_attr;
    if (!open_looks)
        impl_->pool->submit(IoPool::Priority::urgent, [backend = impl_->backend.get(), path, lookup] {
            lookup->error = backend->getattr(path, lookup->attr);
            lookup->done.set_value();
        });
    std::unique_ptr<BackendFile> file;
    Errc e = impl_->idempotent([&] { return impl_->backend->open(path, remote_flags, file); });
    if (!open_looks)
        lookup->done.get_future().wait();
    else if (e == Errc::ok && file->opened_attr(lookup->attr))
        lookup->error = Errc::ok;
    if (e != Errc::ok && !is_transient(e)) {
        std::lock_guard lock(impl_->mu);
        node->name_seen = {};  // gone or replaced (a link, a FIFO): the next lookup asks the remote
    }
    if (e != Errc::ok)
        return e;
    Attr attr = lookup->attr;
    if (lookup->error != Errc::ok || !S_ISREG(attr.mode)) {
        // Replaced or renamed meanwhile: the handle's own view is the one that counts.
        e = impl_->idempotent([&] { return file->getattr(attr); });
        if (e != Errc::ok)
            return e;
    }
    // The persistent cache checks the same version for its own copy. Not
    // while our own writes moved the remote: the node's copy is then the
    // content, and the cache takes the new version (apply_remote_attr_locked).
    // Looked up under it first, the granules just written were dropped: a
    // file written, closed and opened again at once (the kernel releases a
    // handle after close returns) was not cached, and offline unreadable.
    std::uint64_t cache_object = 0, cache_version = 0;
    bool ours = false, accepting = false;
    {
        std::lock_guard lock(impl_->mu);
        accepting = node->cache_object && impl_->accepts_pending.count(node->cache_object);
        if (node->cache_object && (node->expect_own_change || node->data.size_is_local)) {
            ours = true;
            cache_object = node->cache_object;
            cache_version = node->cache_version;
        }
    }
    ours = ours && impl_->cache_has_at(path, cache_object);
    if (!ours) {
        // A version our writes moved the file to may be on its way to the
        // cache still: looked up first, it would be taken for another
        // client's change (its urgent job runs before this one's).
        if (accepting)
            impl_->store_fills_now();
        impl_->cache_object_of(path, attr, cache_object, cache_version);
    }
    OpenFile* of;
    bool changed;
    {
        std::lock_guard lock(impl_->mu);
        changed = impl_->apply_remote_attr_locked(*node, attr, asked);
        // (Kept as ours, but another client's version after all: apply
        // dropped it, and the next open attaches the cache's copy again.)
        if (!ours || !changed) {
            node->cache_object = cache_object;
            node->cache_version = cache_version;
        }
        of = impl_->make_open_file_locked(node, std::move(file), flags);
    }
    if (flags & O_TRUNC) {
        SetAttr zero;
        zero.mask = SetAttr::kSize;
        Attr after;
        e = impl_->truncate(node, 0, of->file.get(), path, zero, after);
        if (e != Errc::ok) {
            release(ino, reinterpret_cast<std::uint64_t>(of));
            return e;
        }
        changed = true;
    }
    out.handle = reinterpret_cast<std::uint64_t>(of);
    out.direct_io = of->direct;
    out.keep_cache = !changed && !of->direct;
    out.remote_changed = changed;
    return Errc::ok;
}

Errc Engine::create(const Caller& caller, Ino parent, std::string_view name, std::uint32_t mode, int flags,
                    Entry& entry, OpenResult& out) {
    Errc e;
    std::string path = impl_->new_child_path(parent, name, e);
    if (e != Errc::ok)
        return e;
    std::unique_ptr<BackendFile> file;
    Attr attr;
    e = impl_->at_most_once(
        [&] { return impl_->backend->create(path, mode, (flags & (O_ACCMODE | O_EXCL | O_TRUNC)), file, attr); },
        [&] { return impl_->renew_child_path(parent, name, path); });
    if (e != Errc::ok) {
        impl_->doubt_names(parent);
        return e;
    }
    e = impl_->finish_create(caller, parent, std::string(name), path, attr, entry);
    if (e != Errc::ok)
        return e;
    // A file made while disconnected keeps its content in the cache
    // already, through the backend: a second object under its path would
    // only cost every write a drop of granules it never holds.
    std::uint64_t cache_object = 0, cache_version = 0;
    if (!file->content_is_local())
        impl_->cache_object_of(path, attr, cache_object, cache_version);
    std::lock_guard lock(impl_->mu);
    auto node = impl_->node_locked(entry.ino);
    if (!node)
        return Errc::bad_handle;
    node->cache_object = cache_object;
    node->cache_version = cache_version;
    OpenFile* of = impl_->make_open_file_locked(node, std::move(file), flags);
    out.handle = reinterpret_cast<std::uint64_t>(of);
    out.direct_io = of->direct;
    out.keep_cache = false;
    return Errc::ok;
}

Errc Engine::read(Ino, std::uint64_t handle, std::uint64_t offset, std::span<std::byte> buf,
                  std::size_t& transferred) {
    OpenFile& of = *impl_->handle_of(handle);
    if (of.direct)
        return impl_->direct_read(of, offset, buf, transferred);
    return impl_->buffered_read(of, offset, buf, transferred);
}

Errc Engine::write(Ino, std::uint64_t handle, std::uint64_t offset, std::span<const std::byte> data,
                   std::size_t& transferred) {
    if (impl_->options.read_only)
        return Errc::read_only;
    OpenFile& of = *impl_->handle_of(handle);
    if (of.direct)
        return impl_->direct_write(of, offset, data, transferred);
    return impl_->buffered_write(of, offset, data, transferred);
}

Errc Engine::flush(Ino, std::uint64_t handle) {
    OpenFile& of = *impl_->handle_of(handle);
    std::unique_lock lock(impl_->mu);
    if (!of.writable)
        return Errc::ok;  // as NFS: closing a reader does not wait for writers
    return impl_->sync_locked(lock, of);
}

Errc Engine::fsync(Ino, std::uint64_t handle, bool datasync) {
    OpenFile& of = *impl_->handle_of(handle);
    std::shared_ptr<BackendFile> file;
    {
        std::unique_lock lock(impl_->mu);
        if (Errc e = impl_->sync_locked(lock, of); e != Errc::ok)
            return e;
        file = of.node->data.writeback_file ? of.node->data.writeback_file : of.file;
    }
    // As a write: it keeps its whole timeout after the remote was given up.
    const Errc e = impl_->idempotent([&] { return file->fsync(datasync); }, Impl::Retry{.fail_fast = false});
    if (e == Errc::ok)
        impl_->settle_version(of.node, *file);
    return e;
}

void Engine::release(Ino, std::uint64_t handle) {
    std::unique_ptr<OpenFile> of(impl_->handle_of(handle));
    std::unique_lock lock(impl_->mu);
    auto& node = of->node;
    auto& d = node->data;
    node->open_count--;
    if (of->writable && d.writeback_file == of->file) {
        // Writeback keeps using this handle unless another writer can take over.
        if (!d.dirty.empty() || !d.writing.empty())
            impl_->writeback_and_wait(lock, node);
        if (d.dirty.empty() && d.writing.empty())
            d.writeback_file.reset();
    }
    auto file = std::move(of->file);
    impl_->maybe_drop_locked(node);
    lock.unlock();
    if (file && of->writable)
        impl_->settle_version(node, *file);
    if (file && file.use_count() == 1) {
        if (Errc e = file->close(); e != Errc::ok)
            LOG_WARN("closing a remote file reported: %s", std::string(describe(e)).c_str());
    }
    file.reset();
    impl_->remove_set_aside(node);
}

ConnectionState Engine::connection_state() const { return impl_->backend->connection_state(); }

} // namespace netfs
