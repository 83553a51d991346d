// Buffered writes, writeback and truncate.
//
// A write copies into folios and adds its bytes to the file's dirty set; it
// never reads first. A write into a folio that was never read records only
// the written bytes as valid (a streaming write); a second, separate write
// into such a folio first sends the earlier bytes to the remote, so one
// folio never needs more than one valid run.
//
// Writeback gathers the dirty set into writes of up to wsize, aligned to
// wsize so a sequential writer produces full-size RPCs, several in flight:
//
//   dirty set  [=====)    [==========================)
//   wsize grid |     |     |     |     |     |     |
//   writes      [===)      [=)[====][====][====][===)
//
// Bytes move from `dirty` to `writing` while their RPC is in flight. A piece
// inside one folio is sent straight from folio memory, and writers to that
// folio wait until the remote has it (stable folios, as in the kernel); a
// piece spanning folios is gathered into a buffer. Bytes written again are
// sent again after the first RPC completes, never concurrently, so an older
// copy can never land after a newer one. A failed write puts its bytes back
// in the dirty set and records the error, errseq style, for every open
// handle to see once at its next write, flush or fsync. Data is never
// dropped on error.
//
// Writeback runs on fsync, on flush (close-to-open), from a timer for data
// older than the writeback interval, when dirty data passes a background
// threshold, and under memory pressure, where writers wait for it.
#include "core/engine/engine_impl.h"

#include "core/log.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace netfs {

namespace {

constexpr std::uint64_t align_down(std::uint64_t v, std::uint64_t a) { return v / a * a; }
constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

timespec now_realtime() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts;
}

} // namespace

Errc Engine::Impl::report_error_locked(OpenFile& of) {
    FileData& d = of.node->data;
    if (of.seen_error_seq == d.error_seq)
        return Errc::ok;
    of.seen_error_seq = d.error_seq;
    // A failure whose bytes a retry has since delivered is no failure to
    // the application: nothing it wrote is missing on the remote.
    if (d.dirty.empty() && d.writing.empty())
        return Errc::ok;
    return d.last_error;
}

Errc Engine::Impl::sync_locked(std::unique_lock<std::mutex>& lock, OpenFile& of) {
    // Everything dirty now is retried; the answer is whether it all reached
    // the remote, which also answers for every earlier failure.
    Errc e = writeback_and_wait(lock, of.node);
    of.seen_error_seq = of.node->data.error_seq;
    return e;
}

Errc Engine::Impl::write_to_remote(BackendFile& file, std::uint64_t offset, std::span<const std::byte> data,
                                   bool may_keep) {
    std::size_t done = 0;
    Retry retry{.fail_fast = false};
    while (done < data.size()) {
        std::size_t n = 0;
        Errc e = file.write(offset + done, data.subspan(done), n);
        if (e == Errc::ok && n > 0) {
            done += n;  // a short write continues where it stopped
            retry = Retry{.fail_fast = false};
            remote_answered();
            continue;
        }
        if (e == Errc::ok)
            e = Errc::io;  // no progress and no error: do not spin
        // Offline by request, a transient error means the handle cannot
        // take the bytes (it wrote to the server before): no wait brings
        // the server back. The caller has the file kept locally instead (as
        // it does, after the timeout, in an outage: a short one is ridden
        // out as before, with nothing kept).
        if (may_keep && is_transient(e) && backend->offline_by_request())
            return e;
        if (!retry_after(e, retry))
            return e;
    }
    return Errc::ok;
}

Errc Engine::Impl::buffered_write(OpenFile& of, std::uint64_t offset, std::span<const std::byte> data,
                                  std::size_t& transferred) {
    transferred = 0;
    const auto& node = of.node;
    FileData& d = node->data;
    std::unique_lock lock(mu);
    if (Errc e = report_error_locked(of); e != Errc::ok)
        return e;
    if (data.empty())
        return Errc::ok;

    // Memory pressure: too much dirty data. Writers wait for writeback.
    while (dirty_bytes > dirty_limit && !stopping) {
        for (auto& [ino, n] : nodes)
            if (!n->data.dirty.empty())
                start_writeback_locked(n, IoPool::Priority::urgent);
        changed.wait_for(lock, std::chrono::milliseconds(100));
        if (Errc e = report_error_locked(of); e != Errc::ok)
            return e;
    }

    const std::uint64_t end = offset + data.size();
    std::uint64_t pos = offset;
    while (pos < end) {
        Folio* f = find_folio_locked(d, pos);
        // Busy: being filled. Under writeback: its bytes are being sent
        // straight from it and must stay stable until the remote has them.
        if (f && (f->busy || d.writing.overlaps(f->pos, f->end()))) {
            changed.wait(lock);
            continue;
        }
        if (!f) {
            // The largest aligned folio around pos that stays inside the gap
            // and does not reach past the write: big writes get big folios.
            auto next = d.folios.upper_bound(pos);
            const std::uint64_t gap_end = next == d.folios.end() ? UINT64_MAX : next->first;
            std::uint64_t gap_start = 0;
            if (next != d.folios.begin())
                gap_start = std::prev(next)->second->end();
            const std::uint64_t limit = std::min(gap_end, align_up(end, Folio::kMinSize));
            std::uint32_t size = Folio::kMinSize;
            while (size < Folio::kMaxSize) {
                const std::uint64_t bigger = std::uint64_t(size) * 2;
                const std::uint64_t slot = align_down(pos, bigger);
                if (slot < gap_start || slot + bigger > limit)
                    break;
                size = static_cast<std::uint32_t>(bigger);
            }
            if (!folio_cache.fits(size)) {
                reserve_locked(lock, size, true);
                continue;  // the lock was dropped: look again
            }
            f = new_folio_locked(d, align_down(pos, size), size);
        }
        const auto a = static_cast<std::uint32_t>(pos - f->pos);
        const auto b = static_cast<std::uint32_t>(std::min(end, f->end()) - f->pos);
        if (!f->uptodate()) {
            if (!f->has_valid()) {
                f->valid_begin = a;
                f->valid_end = b;
            } else if (a <= f->valid_end && b >= f->valid_begin) {
                f->valid_begin = std::min(f->valid_begin, a);
                f->valid_end = std::max(f->valid_end, b);
            } else {
                // A second, separate run in a folio never read: send the
                // first run to the remote; then only the new run is valid.
                if (Errc e = writeback_and_wait(lock, node, f->pos, f->end()); e != Errc::ok) {
                    if (transferred)
                        return Errc::ok;
                    const Errc reported = report_error_locked(of);
                    return reported != Errc::ok ? reported : e;
                }
                if (Folio* again = find_folio_locked(d, pos); again == f && !f->busy && !f->uptodate() &&
                    !d.dirty.overlaps(f->pos, f->end()) && !d.writing.overlaps(f->pos, f->end()))
                    f->valid_begin = f->valid_end = 0;
                continue;
            }
        }
        std::memcpy(f->data + a, data.data() + (pos - offset), b - a);
        folio_cache.touch(f);
        pos = f->pos + b;
        transferred = pos - offset;
        // Record progress as it happens: a later wait may let writeback run.
        if (d.dirty.empty() && d.writing.empty())
            d.dirty_since = Clock::now();
        // Dirty bytes need a handle to go through. Not set once on entry:
        // while this write waited above (the lock let go), the handle
        // writeback used could be released, which lets it go when nothing
        // is dirty, and these bytes would have none (the close failed with
        // EIO, the bytes never reached the remote).
        if (!d.writeback_file)
            d.writeback_file = of.file;
        dirty_bytes += d.dirty.add(pos - (b - a), pos);
        d.size = std::max(d.size, pos);
        d.size_is_local = true;
        d.local_mtime = now_realtime();
        if (!f->uptodate() && f->valid_begin == 0 && f->pos + f->valid_end >= d.size) {
            // All the file holds here is written: the rest of the folio lies
            // past its end, zeros. Left unknown, every read of the folio
            // fetched it from the remote again, and offline that failed
            // (EIO, SIGBUS for a program that maps the file): a file saved
            // online could not be read back once the network was gone.
            std::memset(f->data + f->valid_end, 0, f->size - f->valid_end);
            f->valid_end = f->size;
        }
    }
    if (dirty_bytes > dirty_background)
        changed.notify_all();  // the writeback thread starts early
    return Errc::ok;
}

void Engine::Impl::start_writeback_locked(const std::shared_ptr<Node>& node, IoPool::Priority priority,
                                          std::uint64_t start, std::uint64_t end) {
    FileData& d = node->data;
    if (d.truncating || d.keeping || d.keep_wanted || d.dirty.empty())
        return;  // (a keep ends with a writeback of its own)
    std::shared_ptr<BackendFile> file = d.writeback_file;
    if (!file)
        return;  // no writable handle: kept dirty, reported at flush
    const std::uint64_t wsize = limits.wsize;
    for (ByteRange r : d.dirty.within(start, end)) {
        if (r.start >= d.size) {
            dirty_bytes -= d.dirty.remove(r.start, r.end);
            continue;
        }
        r.end = std::min(r.end, d.size);
        for (std::uint64_t s = r.start, e; s < r.end; s = e) {
            e = std::min(r.end, align_down(s, wsize) + wsize);
            if (d.writing.overlaps(s, e))
                continue;  // an older copy of these bytes is in flight
            if (writing_bytes >= writing_limit)
                return;    // resumed when a write completes (its waiters and the writeback thread look again)
            const std::size_t len = e - s;
            // Within one folio: sent straight from it (writers wait while it
            // is under writeback). Across folios: gathered into one buffer.
            std::shared_ptr<std::byte[]> buf;
            const std::byte* src;
            if (Folio* only = find_folio_locked(d, s); only && e <= only->end()) {
                src = only->data + (s - only->pos);
            } else {
                buf.reset(new std::byte[len]);
                src = buf.get();
            }
            for (std::uint64_t pos = s; buf && pos < e;) {
                Folio* f = find_folio_locked(d, pos);
                if (!f) {  // cannot happen: folios holding dirty bytes are never dropped
                    LOG_ERROR("internal error: dirty bytes of %s at %llu have no folio",
                              path_locked(*node).c_str(), static_cast<unsigned long long>(pos));
                    std::abort();
                }
                const std::uint64_t stop = std::min(e, f->end());
                std::memcpy(buf.get() + (pos - s), f->data + (pos - f->pos), stop - pos);
                pos = stop;
            }
            dirty_bytes -= d.dirty.remove(s, e);
            d.writing.add(s, e);
            writing_bytes += len;
            counters.write_subrequests++;
            // Not again soon after the backend could not keep the file: the
            // write then waits out its timeout, as writes to a server away do.
            const bool may_keep = Clock::now() >= d.keep_failed_at + kKeepRetry;
            pool->submit(priority, [this, node, file, buf, src, s, e, len, may_keep, object = node->cache_object] {
                Errc err = Errc::unreachable;
                bool once_more = true;  // connected again as the timeout ran out: asked once more
                for (Retry retry{.fail_fast = false};;) {
                    bool writable = true;
                    drop_cached(object, s, e, [&] { return writable = file->before_write(); });
                    if (writable) {
                        err = write_to_remote(*file, s, {src, len}, may_keep);
                        break;
                    }
                    // The handle cannot take them now (tied to a server
                    // away): asked again until the timeout, then kept
                    // (below); at once when offline by request.
                    if (may_keep && backend->offline_by_request())
                        break;
                    if (!retry_after(err, retry)) {
                        if (std::exchange(once_more, false) && !backend->changes_stay_local())
                            continue;
                        break;
                    }
                }
                const bool keep = may_keep && is_transient(err) && backend->changes_stay_local();  // (not under mu)
                std::shared_ptr<BackendFile> orphan;  // released after mu, with the remote's own locks
                std::lock_guard lock(mu);
                FileData& d = node->data;
                d.writing.remove(s, e);
                writing_bytes -= len;
                if (d.orphaned) {
                    if (d.writing.empty())
                        orphan = std::move(d.writeback_file);
                } else if (err != Errc::ok) {
                    if (d.dirty.empty() && d.writing.empty())
                        d.dirty_since = Clock::now();
                    dirty_bytes += d.dirty.add(s, std::min(e, std::max(d.size, s)));
                    if (keep) {
                        // No error yet: the file is to be kept locally, and
                        // only a keep that fails is one (keep_locally_locked).
                        d.keep_wanted = true;
                    } else {
                        d.error_seq++;
                        d.last_error = err;
                        LOG_WARN("writing %zu bytes of %s at %llu failed: %s; kept in memory and retried later",
                                 len, path_locked(*node).c_str(), static_cast<unsigned long long>(s),
                                 std::string(describe(err)).c_str());
                    }
                } else {
                    d.sent_end = std::max(d.sent_end, e);
                    counters.bytes_uploaded += len;
                    node->expect_own_change = true;
                    node->own_change_at = Clock::now();
                    node->attr_expiry = {};
                    if (object && object == node->cache_object && !file->content_is_local())
                        queue_written_granules_locked(*node, s, e);
                }
                changed.notify_all();
            });
        }
    }
}

void Engine::Impl::queue_written_granules_locked(Node& node, std::uint64_t start, std::uint64_t end) {
    FileData& d = node.data;
    if (d.truncating)
        return;
    for (std::uint64_t g = start / granule * granule; g < end && g < d.size; g += granule) {
        const std::uint64_t length = std::min(granule, d.size - g);
        // Only bytes the remote now holds: nothing of the granule may still be
        // waiting to go (the copy would be newer than the remote) ...
        if (d.dirty.overlaps(g, g + length) || d.writing.overlaps(g, g + length))
            continue;
        // ... and every byte of it known: a granule partly written and never
        // read is not stored (a later read fetches and stores it whole); its
        // old copy was dropped when the write started.
        bool complete = true;
        for (std::uint64_t pos = g; complete && pos < g + length;) {
            const Folio* f = find_folio_locked(d, pos);
            const std::uint64_t stop = f ? std::min(g + length, f->end()) : pos;
            complete = f && !f->busy && !f->stale && f->valid_begin <= pos - f->pos &&
                       f->valid_end >= stop - f->pos;
            pos = stop;
        }
        if (!complete)
            continue;
        // Queued behind earlier fills, so a later write's drop_cached()
        // stores this first and then drops it: it never outlives newer bytes.
        std::byte* copy = queue_fill_locked({node.cache_object, node.cache_version, g / granule, g, length});
        if (!copy)
            return;
        for (std::uint64_t pos = g; pos < g + length;) {  // gathered: a granule may span folios
            const Folio* f = find_folio_locked(d, pos);
            const std::uint64_t stop = std::min(g + length, f->end());
            std::memcpy(copy + (pos - g), f->data + (pos - f->pos), stop - pos);
            pos = stop;
        }
        counters.cache_write_fills++;
    }
}

Errc Engine::Impl::writeback_and_wait(std::unique_lock<std::mutex>& lock, const std::shared_ptr<Node>& node,
                                      std::uint64_t start, std::uint64_t end) {
    FileData& d = node->data;
    const std::uint64_t errors = d.error_seq;
    int keeps = 0;
    for (;;) {
        if (d.error_seq != errors) {
            // Failed: let what is in flight finish, start nothing new. The
            // bytes stay dirty for a later attempt.
            changed.wait(lock, [&] { return !d.writing.overlaps(start, end); });
            break;
        }
        if (d.keep_wanted) {
            // Disconnected, and the handle cannot take the bytes: the file
            // is kept locally and the handle takes them there, durable now
            // rather than when the server is back. A keep that fails records
            // the error. (Again only if a write begun during the keep came
            // back: bounded all the same.)
            if (++keeps > kMaxKeeps || keep_locally_locked(lock, node) != Errc::ok) {
                if (d.error_seq == errors) {
                    d.error_seq++;
                    d.last_error = Errc::unreachable;
                }
                continue;
            }
        }
        start_writeback_locked(node, IoPool::Priority::urgent, start, end);
        const bool dirty = d.dirty.overlaps(start, end);
        if (!dirty && !d.writing.overlaps(start, end))
            break;
        if (dirty && !d.writeback_file && !d.writing.overlaps(start, end)) {
            LOG_ERROR("%s has unwritten data but no writable handle", path_locked(*node).c_str());
            return Errc::io;
        }
        changed.wait(lock);
    }
    return d.error_seq != errors ? d.last_error : Errc::ok;
}

// The handle's writes cannot reach the server, nor a local copy (it has
// none: it wrote to the server before the outage). The whole file as this
// mount sees it becomes the local copy; the dirty bytes stay dirty and are
// written again, onto it. Failing, they wait in memory as before.
Errc Engine::Impl::keep_locally_locked(std::unique_lock<std::mutex>& lock, const std::shared_ptr<Node>& node,
                                       std::shared_ptr<BackendFile> via) {
    FileData& d = node->data;
    // One at a time, with no size change under way, and with no write in
    // flight: one begun before would come back failed after the keep (and
    // ask for another).
    changed.wait(lock, [&] { return !d.keeping && !d.truncating && d.writing.empty() && d.direct_writes == 0; });
    if (!d.keep_wanted)
        return d.last_keep;  // another thread's keep, done meanwhile
    if (!via) {
        // A direct write (which leaves nothing dirty) asked: its writer
        // keeps through its own handle.
        if (d.direct_keeps > 0) {
            changed.wait(lock, [&] { return !d.keep_wanted; });
            return d.last_keep;
        }
        via = d.writeback_file;
        if (node->forgotten || !via || d.dirty.empty()) {
            d.keep_wanted = false;
            return d.last_keep = Errc::ok;  // nothing left to keep
        }
    }
    d.keeping = true;
    const std::string path = path_locked(*node);
    const Attr base = node->attr;
    const std::uint64_t size = d.size;
    // Past both the remote's size and our writes' end: a hole.
    const std::uint64_t hole_from = std::max(node->attr.size, d.sent_end);
    const timespec mtime = d.size_is_local ? d.local_mtime : node->attr.mtime;
    const std::uint64_t object = node->cache_object;
    const std::shared_ptr<BackendFile> file = via;
    const std::uint64_t unsent = d.dirty.bytes();
    lock.unlock();
    Errc e = Errc::ok;  // connected again meanwhile: nothing to keep, the writes go to the server
    if (backend->changes_stay_local()) {
        store_fills_now();  // what the cache holds of it, complete
        e = file->keep_unsent(base, size, mtime, [&](std::uint64_t offset, std::span<std::byte> out) {
            return read_as_seen(node, *file, object, hole_from, offset, out);
        });
        if (e == Errc::ok)
            LOG_WARN("%s: %llu bytes written through a handle that had written to the server cannot be sent "
                     "while disconnected; the file is kept here as a change to reintegrate (a conflicted copy if "
                     "the server's copy changes meanwhile)",
                     path.c_str(), static_cast<unsigned long long>(unsent));
        else
            LOG_WARN("%s: %llu bytes cannot be sent while disconnected, nor kept here (%s); they stay in memory "
                     "until the server is back",
                     path.c_str(), static_cast<unsigned long long>(unsent), std::string(describe(e)).c_str());
    }
    lock.lock();
    d.keeping = false;
    d.keep_wanted = false;  // asked again at the next write that fails
    d.last_keep = e;
    if (e != Errc::ok) {
        d.keep_failed_at = Clock::now();
        d.error_seq++;  // the writes wait in memory: every handle is told once
        d.last_error = Errc::unreachable;
    }
    changed.notify_all();
    return e;
}

Errc Engine::Impl::truncate(const std::shared_ptr<Node>& node, std::uint64_t size, BackendFile* file,
                            const std::string& path, SetAttr change, Attr& out) {
    FileData& d = node->data;
    {
        // No write may be in flight while the remote's size changes, or a
        // write of bytes past the new end could land after it.
        std::unique_lock lock(mu);
        changed.wait(lock, [&] { return !d.truncating && !d.keeping; });
        d.truncating = true;
        changed.wait(lock, [&] { return d.writing.empty() && d.direct_writes == 0; });
        // A read in flight past the new end brings bytes the truncate is
        // about to remove: neither the folio nor the cache may keep them
        // (a later extension must read zeros there, not the old bytes).
        auto it = d.folios.upper_bound(size);
        if (it != d.folios.begin())
            --it;
        for (; it != d.folios.end(); ++it)
            if (it->second->busy && it->second->end() > size)
                it->second->stale = true;
    }
    change.mask |= SetAttr::kSize;
    change.size = size;
    if (backend->changes_stay_local())
        store_fills_now();  // the replica copies what the cache holds of the file
    Attr attr;
    Errc e = path.empty() ? Errc::not_found : idempotent([&] { return backend->setattr(path, change, attr); });
    if (e == Errc::not_found && file) {  // open but unlinked: through the handle
        e = idempotent([&] { return file->truncate(size); });
        if (e == Errc::ok)
            e = idempotent([&] { return file->getattr(attr); });
    }
    // The cached tail goes once the remote has the new size, not before:
    // a remote that keeps a local copy (offline, the replica) copies the
    // cached bytes it keeps during the call. No fill is stored while the
    // truncate runs, so nothing older can land after this drop.
    drop_cached(node->cache_object, size, UINT64_MAX - granule);

    std::lock_guard lock(mu);
    d.truncating = false;
    changed.notify_all();
    if (e != Errc::ok)
        return e;
    dirty_bytes -= d.dirty.remove(size, UINT64_MAX);
    auto it = d.folios.upper_bound(size);
    if (it != d.folios.begin())
        --it;
    while (it != d.folios.end()) {
        Folio* f = (it++)->second.get();
        if (f->end() <= size)
            continue;
        if (f->busy) {
            f->stale = true;
            continue;
        }
        if (f->pos >= size) {
            drop_folio_locked(d, f);
            continue;
        }
        // The folio holding the new end of file: what lies past it is gone.
        const auto keep = static_cast<std::uint32_t>(size - f->pos);
        if (f->uptodate()) {
            std::memset(f->data + keep, 0, f->size - keep);
        } else {
            f->valid_end = std::min(f->valid_end, keep);
            if (f->valid_end <= f->valid_begin)
                f->valid_begin = f->valid_end = 0;
        }
    }
    d.size = size;
    d.sent_end = std::min(d.sent_end, size);
    d.local_mtime = attr.mtime;
    node->expect_own_change = true;
    node->own_change_at = Clock::now();
    apply_remote_attr_locked(*node, attr);
    out = view_locked(*node);
    return Errc::ok;
}

void Engine::Impl::writeback_thread() {
    std::unique_lock lock(mu);
    while (!stopping) {
        changed.wait_for(lock, std::chrono::seconds(1), [&] {
            return stopping || (dirty_bytes > dirty_background && writing_bytes < writing_limit);
        });
        if (stopping)
            break;
        if (gave_up.load(std::memory_order_relaxed)) {
            // Back, though nothing retried has succeeded yet (only names
            // answered from memory, or a mkdir): the next restart is ridden
            // out again. Asked without the lock: the remote has its own.
            lock.unlock();
            const bool back = backend->connection_state() == ConnectionState::connected;
            lock.lock();
            if (stopping)
                break;
            if (back)
                remote_answered();
        }
        const auto now = Clock::now();
        const bool pressure = dirty_bytes > dirty_background;
        std::vector<std::shared_ptr<Node>> due;
        for (auto& [ino, node] : nodes)
            if (!node->data.dirty.empty() && (pressure || now - node->data.dirty_since >= options.writeback_interval))
                due.push_back(node);
        std::vector<std::shared_ptr<Node>> keep;
        for (auto& [ino, node] : nodes)  // (not one to wait for: this thread serves every file)
            if (node->data.keep_wanted && !node->data.keeping && node->data.writing.empty() &&
                !node->data.truncating && node->data.direct_writes == 0 && node->data.direct_keeps == 0)
                keep.push_back(node);
        for (auto& node : keep)  // (unlocks: `nodes` may change)
            if (keep_locally_locked(lock, node) == Errc::ok && !stopping)
                start_writeback_locked(node, IoPool::Priority::background);
        for (auto& node : due)
            start_writeback_locked(node, IoPool::Priority::background);
        if (pressure)
            changed.wait_for(lock, std::chrono::milliseconds(20));  // let it drain before rescanning
    }
}

} // namespace netfs
