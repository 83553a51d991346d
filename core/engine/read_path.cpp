// Buffered reads.
//
// A read is served from folios when they hold the range. Otherwise the gaps
// become a read request: new folios are made for them (busy until filled),
// each folio is filled by subrequests of up to rsize that read straight into
// folio memory on the I/O pool, and the reader waits for its own request
// while readahead for the bytes beyond it runs in the background:
//
//   read(off,len) --> folios hit? --yes--> copy out
//                          | no
//                          v
//        gaps -> new busy folios -> subrequests (<= rsize, <= max_in_flight)
//                                      |  backend.read, retries, EOF zero-fill
//                                      v
//        complete_fill: folio uptodate, waiters woken --> copy out
//
// A folio that already holds written bytes (a streaming write) is filled
// into a bounce buffer and only the bytes around the written ones are kept.
#include "core/engine/engine_impl.h"

#include "core/log.h"

#include "core/cache/cache_store.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <future>

namespace netfs {

namespace {

constexpr std::uint64_t align_down(std::uint64_t v, std::uint64_t a) { return v / a * a; }
constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

} // namespace

Folio* Engine::Impl::find_folio_locked(FileData& data, std::uint64_t pos) const {
    auto it = data.folios.upper_bound(pos);
    if (it == data.folios.begin())
        return nullptr;
    --it;
    Folio* f = it->second.get();
    return pos < f->end() ? f : nullptr;
}

Folio* Engine::Impl::new_folio_locked(FileData& data, std::uint64_t pos, std::uint32_t size) {
    auto folio = std::make_unique<Folio>(&data, pos, size, folio_cache.memory());
    Folio* f = folio.get();
    data.folios.emplace(pos, std::move(folio));
    folio_cache.insert(f);
    return f;
}

void Engine::Impl::drop_folio_locked(FileData& data, Folio* folio) {
    folio_cache.erase(folio);
    data.folios.erase(folio->pos);  // frees it
}

void Engine::Impl::drop_clean_folios_locked(FileData& data) {
    for (auto it = data.folios.begin(); it != data.folios.end();) {
        Folio* f = (it++)->second.get();
        if (data.dirty.overlaps(f->pos, f->end()) || data.writing.overlaps(f->pos, f->end()))
            continue;
        if (f->busy)
            f->stale = true;  // its filler drops it when done
        else
            drop_folio_locked(data, f);
    }
}

bool Engine::Impl::reserve_locked(std::unique_lock<std::mutex>& lock, std::uint64_t bytes, bool may_block) {
    while (!folio_cache.fits(bytes)) {
        Folio* victim = nullptr;
        for (Folio* f = folio_cache.oldest(); f; f = FolioCache::newer(f)) {
            const FileData& d = *f->owner;
            if (!f->busy && !d.dirty.overlaps(f->pos, f->end()) && !d.writing.overlaps(f->pos, f->end())) {
                victim = f;
                break;
            }
        }
        if (victim) {
            drop_folio_locked(*victim->owner, victim);
            counters.evictions++;
            continue;
        }
        if (!may_block || stopping)
            return false;
        // Every folio is dirty or being filled: memory pressure. Push the
        // dirty data out and wait for room.
        for (auto& [ino, node] : nodes)
            if (!node->data.dirty.empty())
                start_writeback_locked(node, IoPool::Priority::urgent);
        changed.wait_for(lock, std::chrono::milliseconds(50));
    }
    return true;
}

Errc Engine::Impl::read_from_remote(BackendFile& file, std::uint64_t offset, std::span<std::byte> buf,
                                    std::size_t& transferred, Origin origin, std::uint64_t known_end) {
    transferred = 0;
    Retry retry;
    while (transferred < buf.size()) {
        std::size_t n = 0;
        Errc e = file.read(offset + transferred, buf.subspan(transferred), n);
        if (e == Errc::ok) {
            if (n == 0)
                break;  // end of file
            transferred += n;  // a short read continues where it stopped
            remote_answered();
            if (offset + transferred >= known_end)
                break;
            retry = {};
            continue;
        }
        // Readahead is a guess: it does not wait out a server's absence.
        // Whoever reads the data then retries it on their own clock.
        if (origin == Origin::readahead || !retry_after(e, retry))
            return e;
    }
    return Errc::ok;
}

void Engine::Impl::complete_subrequest_locked(const std::shared_ptr<Node>& node, Folio& folio, Errc error,
                                              const std::shared_ptr<IoWait>& wait) {
    if (error != Errc::ok) {
        folio.stale = true;  // never mark it uptodate
        LOG_WARN("read of %s at %llu failed: %s", path_locked(*node).c_str(),
                 static_cast<unsigned long long>(folio.pos), std::string(describe(error)).c_str());
    }
    if (wait) {
        if (error != Errc::ok && wait->error == Errc::ok)
            wait->error = error;
        wait->outstanding--;
    }
    if (--folio.pending == 0)
        complete_fill_locked(*node, folio);
    changed.notify_all();
}

void Engine::Impl::issue_remote_locked(const std::shared_ptr<Node>& node, const std::shared_ptr<BackendFile>& file,
                                       Folio& folio, std::byte* target, std::uint64_t lo, std::uint64_t hi,
                                       Origin origin, const std::shared_ptr<IoWait>& wait, GranuleFills fills) {
    const auto priority = origin == Origin::readahead ? IoPool::Priority::background : IoPool::Priority::urgent;
    // Where the file ends, locally or as the remote last said: reads stop
    // there (bytes past the local end are zero anyway).
    const std::uint64_t known_end = std::max(node->data.size, node->cached_version.size);
    for (std::uint64_t off = lo; off < hi; off += limits.rsize) {
        const auto len = static_cast<std::uint32_t>(std::min<std::uint64_t>(limits.rsize, hi - off));
        std::byte* dest = target + (off - folio.pos);
        folio.pending++;
        if (wait)
            wait->outstanding++;
        // The granules this subrequest helps fill: one granule may take
        // several subrequests (rsize < granule), one subrequest several
        // granules (rsize > granule).
        auto mine = std::make_shared<std::vector<std::shared_ptr<GranuleFill>>>();
        for (const auto& g : fills)
            if (g->start < off + len && off < g->start + granule) {
                g->remaining++;
                mine->push_back(g);
            }
        counters.subrequests++;
        if (origin == Origin::readahead)
            counters.readahead_bytes += len;
        pool->submit(priority, [this, node, file, &folio, dest, off, len, wait, mine, origin, known_end] {
            std::size_t got = 0;
            Errc e = read_from_remote(*file, off, {dest, len}, got, origin, known_end);
            if (e == Errc::ok && got < len)
                std::memset(dest + got, 0, len - got);  // a hole or end of file
            std::lock_guard lock(mu);
            counters.bytes_downloaded += got;
            for (const auto& g : *mine) {
                g->failed |= e != Errc::ok;
                // Not while a truncate runs: its drop of the cached tail
                // may already be done, and these bytes may be older.
                if (--g->remaining == 0 && !g->failed && !folio.stale && !node->data.truncating)
                    if (std::byte* copy = queue_fill_locked(*g))
                        std::memcpy(copy, folio.data + (g->start - folio.pos), g->length);
            }
            complete_subrequest_locked(node, folio, e, wait);
        });
    }
}

std::byte* Engine::Impl::queue_fill_locked(const GranuleFill& g) {
    if (cache_fill_bytes + g.length > kCacheFillLimit)
        return nullptr;  // the cache cannot keep up: this granule stays uncached
    // Stored off the reader's path; one job stores all that wait. The copy
    // comes from folio memory, whose chunks stay mapped between granules: a
    // fresh buffer per granule faulted in every page of it again (the
    // daemon's fixed mmap threshold gives each large malloc its own mapping).
    FolioMemory& memory = folio_cache.memory();
    const auto size = std::bit_ceil(std::max<std::uint32_t>(std::uint32_t(g.length), FolioMemory::kBlock));
    std::shared_ptr<std::byte[]> copy(memory.allocate(size), [&memory, size](std::byte* p) { memory.free(p, size); });
    cache_fill_bytes += g.length;
    pending_fills.push_back({g, copy});
    if (!fill_writer_queued) {
        fill_writer_queued = true;
        cache_pool->submit(IoPool::Priority::background, [this] { store_pending_fills(true); });
    } else if (pending_fills.size() == kFillBatch) {
        fills_wanted.notify_all();
    }
    return copy.get();
}

// The cache lookups of one folio fill. When the last is done, the granules
// that missed go to the remote, runs of neighbours as single reads.
struct FolioLookup {
    unsigned pending = 0;
    std::vector<std::uint64_t> missed;  // granule starts
};

void Engine::Impl::lookup_granule(const std::shared_ptr<Node>& node, const std::shared_ptr<BackendFile>& file,
                                  Folio& folio, std::byte* target, std::uint64_t gstart, Origin origin,
                                  const std::shared_ptr<IoWait>& wait, const std::shared_ptr<FolioLookup>& lookup) {
    const std::uint64_t lo = std::max(gstart, folio.pos), hi = std::min(gstart + granule, folio.end());
    std::uint64_t object;
    {
        std::lock_guard lock(mu);
        object = node->cache_object;
    }
    std::vector<std::byte> plain;
    const bool hit = object && cache->get(object, gstart / granule, plain) == Errc::ok;
    if (hit) {
        // The granule's plaintext, shorter at the end of the file.
        const std::uint64_t have = std::min<std::uint64_t>(plain.size(), hi - gstart);
        const std::uint64_t from = lo - gstart;
        if (have > from)
            std::memcpy(target + (lo - folio.pos), plain.data() + from, have - from);
        const std::uint64_t filled = have > from ? have - from : 0;
        if (filled < hi - lo)
            std::memset(target + (lo - folio.pos) + filled, 0, hi - lo - filled);
    }
    std::lock_guard lock(mu);
    if (hit) {
        counters.cache_hits++;
        complete_subrequest_locked(node, folio, Errc::ok, wait);
    } else {
        lookup->missed.push_back(gstart);
    }
    if (--lookup->pending > 0 || lookup->missed.empty())
        return;
    auto& missed = lookup->missed;
    std::sort(missed.begin(), missed.end());
    const std::uint64_t remote_size = node->cached_version.size;
    // Not while our own writes may have moved the remote past what
    // cached_version says: a granule would be stored shorter than the file.
    const bool may_fill = node->cache_object && !node->expect_own_change && !node->data.size_is_local;
    for (std::size_t i = 0; i < missed.size();) {
        std::size_t j = i + 1;
        while (j < missed.size() && missed[j] == missed[j - 1] + granule)
            ++j;
        // Only whole granules, read under a known content version, are stored.
        GranuleFills fills;
        for (std::size_t k = i; k < j; ++k) {
            const std::uint64_t g = missed[k];
            if (may_fill && g >= folio.pos && g < remote_size &&
                g + std::min(granule, remote_size - g) <= folio.end())
                fills.push_back(std::make_shared<GranuleFill>(GranuleFill{node->cache_object, node->cache_version,
                                                                          g / granule, g,
                                                                          std::min(granule, remote_size - g)}));
        }
        issue_remote_locked(node, file, folio, target, std::max(missed[i], folio.pos),
                            std::min(missed[j - 1] + granule, folio.end()), origin, wait, std::move(fills));
        i = j;
    }
    // The missed lookups' own shares of the folio and the wait, held until
    // their remote reads were issued.
    for (std::size_t k = 0; k < missed.size(); ++k)
        complete_subrequest_locked(node, folio, Errc::ok, wait);
}

void Engine::Impl::fill_folio_locked(const std::shared_ptr<Node>& node, const std::shared_ptr<BackendFile>& file,
                                     Folio& folio, Origin origin, const std::shared_ptr<IoWait>& wait) {
    folio.busy = true;
    folio.stale = false;
    std::byte* target = folio.data;
    if (folio.has_valid()) {
        folio.bounce.reset(new std::byte[folio.size]);
        target = folio.bounce.get();
    }
    if (!cache || !node->cache_object || folio.has_valid()) {
        // Straight from the remote (a folio with written bytes never takes
        // cached bytes around them: they would be older than the writes).
        folio.pending++;  // held while issuing, so the folio cannot complete early
        issue_remote_locked(node, file, folio, target, folio.pos, folio.end(), origin, wait, {});
        if (--folio.pending == 0)
            complete_fill_locked(*node, folio);
        return;
    }
    // The cache is asked first, granule by granule, in parallel (decoding
    // is CPU work); the misses are then read from the remote together.
    const auto priority = origin == Origin::readahead ? IoPool::Priority::background : IoPool::Priority::urgent;
    auto lookup = std::make_shared<FolioLookup>();
    const std::uint64_t first = folio.pos / granule * granule;
    for (std::uint64_t g = first; g < folio.end(); g += granule)
        lookup->pending++;
    for (std::uint64_t g = first; g < folio.end(); g += granule) {
        folio.pending++;
        if (wait)
            wait->outstanding++;
        pool->submit(priority, [this, node, file, &folio, target, g, origin, wait, lookup] {
            lookup_granule(node, file, folio, target, g, origin, wait, lookup);
        });
    }
}

void Engine::Impl::complete_fill_locked(Node& node, Folio& folio) {
    FileData& d = node.data;
    folio.busy = false;
    if (folio.stale) {
        // Written bytes survive a failed or outdated fill; bytes past a
        // truncate that ran meanwhile do not.
        folio.bounce.reset();
        if (folio.pos < d.size)
            folio.valid_end = std::min<std::uint32_t>(folio.valid_end, d.size - folio.pos);
        if (node.forgotten || folio.pos >= d.size || folio.valid_end <= folio.valid_begin)
            drop_folio_locked(d, &folio);
        return;
    }
    if (folio.bounce) {
        // Keep the bytes written locally; take the remote's around them.
        std::memcpy(folio.data, folio.bounce.get(), folio.valid_begin);
        std::memcpy(folio.data + folio.valid_end, folio.bounce.get() + folio.valid_end,
                    folio.size - folio.valid_end);
        folio.bounce.reset();
    }
    // Bytes past the local end of file are zero, whatever the remote said:
    // a local truncate may not have reached every reader's view yet.
    if (folio.end() > d.size) {
        const std::uint64_t from = d.size > folio.pos ? d.size - folio.pos : 0;
        std::memset(folio.data + from, 0, folio.size - from);
    }
    folio.valid_begin = 0;
    folio.valid_end = folio.size;
}

void Engine::Impl::start_fill_locked(std::unique_lock<std::mutex>& lock, const std::shared_ptr<Node>& node,
                                     const std::shared_ptr<BackendFile>& file, std::uint64_t start,
                                     std::uint64_t end, Origin origin, const std::shared_ptr<IoWait>& wait) {
    FileData& d = node->data;
    const bool may_block = origin != Origin::readahead;
    // With a cache, the cache decides read sizes: whole granules.
    const std::uint64_t unit = granule && node->cache_object ? granule : Folio::kMinSize;
    std::uint64_t pos = align_down(start, unit);
    end = align_up(end, unit);
    // But the file's last granule, where its bytes end early (a small file,
    // a short tail), gets a folio only as large as those bytes, rounded up
    // to a power of two so that one folio holds them: not a granule's worth
    // of memory to allocate, fault in and clear for a 3 KiB file.
    if (const std::uint64_t known_end = std::max(d.size, node->cached_version.size);
        unit == granule && known_end > 0 && end > known_end) {
        const std::uint64_t last = align_down(known_end - 1, granule);
        const std::uint64_t tail = std::max<std::uint64_t>(Folio::kMinSize, std::bit_ceil(known_end - last));
        if (pos <= last)
            end = std::min(end, last + tail);
    }
    while (pos < end) {
        if (Folio* f = find_folio_locked(d, pos)) {
            if (!f->busy && !f->uptodate())
                fill_folio_locked(node, file, *f, origin, wait);
            pos = f->end();
            continue;
        }
        // A gap: the largest aligned folio that starts here and fits in it.
        auto next = d.folios.upper_bound(pos);
        const std::uint64_t gap_end = std::min(end, next == d.folios.end() ? UINT64_MAX : next->first);
        std::uint32_t size = Folio::kMaxSize;
        while (size > Folio::kMinSize && (pos % size != 0 || pos + size > gap_end))
            size /= 2;
        if (!folio_cache.fits(size)) {
            if (!reserve_locked(lock, size, may_block))
                return;  // readahead gives way to memory pressure
            continue;    // the lock was dropped: look again
        }
        fill_folio_locked(node, file, *new_folio_locked(d, pos, size), origin, wait);
        pos += size;
    }
}

Errc Engine::Impl::buffered_read(OpenFile& of, std::uint64_t offset, std::span<std::byte> buf,
                                 std::size_t& transferred) {
    transferred = 0;
    const auto& node = of.node;
    FileData& d = node->data;
    std::unique_lock lock(mu);
    counters.read_requests++;
    if (offset >= d.size || buf.empty())
        return Errc::ok;
    std::uint64_t end = std::min<std::uint64_t>(offset + buf.size(), d.size);
    ByteRange ahead = of.readahead.on_read(offset, end - offset, d.size);
    if (ahead.length()) {
        // Whole folios (and with a cache, whole granules): a readahead batch
        // should not be cut into small pieces.
        const std::uint64_t unit = granule && node->cache_object ? granule : 64 << 10;
        ahead.start = align_down(ahead.start, unit);
        ahead.end = std::min(align_up(ahead.end, unit), align_up(d.size, unit));
    }
    std::shared_ptr<IoWait> wait;
    bool hit = true;
    for (;;) {
        end = std::min<std::uint64_t>(offset + buf.size(), d.size);  // a truncate may have run
        if (offset >= end)
            return Errc::ok;
        bool missing = false, busy = false;
        for (std::uint64_t pos = offset; pos < end;) {
            Folio* f = find_folio_locked(d, pos);
            if (!f || (!f->busy && !f->uptodate())) {
                missing = true;
                break;
            }
            busy |= f->busy;
            pos = f->end();
        }
        if (!missing && !busy)
            break;
        hit = false;
        // One wait for everything this read fills, so that a failure of any
        // of its own fills is reported (a gap left by failed readahead is
        // filled by the read itself, on its own retry clock) and a failed
        // part is never fetched again and again.
        if (missing && !(wait && wait->error != Errc::ok)) {
            if (!wait)
                wait = std::make_shared<IoWait>();
            start_fill_locked(lock, node, of.file, offset, end, Origin::read, wait);
        }
        if (ahead.length()) {
            start_fill_locked(lock, node, of.file, ahead.start, ahead.end, Origin::readahead, nullptr);
            ahead = {};
        }
        changed.wait(lock);
        if (wait && wait->outstanding == 0 && wait->error != Errc::ok)
            return wait->error;
    }
    if (ahead.length())
        start_fill_locked(lock, node, of.file, ahead.start, ahead.end, Origin::readahead, nullptr);
    if (hit)
        counters.folio_hits++;
    for (std::uint64_t pos = offset; pos < end;) {
        Folio* f = find_folio_locked(d, pos);
        const std::uint64_t stop = std::min(end, f->end());
        std::memcpy(buf.data() + (pos - offset), f->data + (pos - f->pos), stop - pos);
        folio_cache.touch(f);
        pos = stop;
    }
    transferred = end - offset;
    return Errc::ok;
}

void Engine::Impl::store_pending_fills(bool gather) {
    std::vector<PendingFill> batch;
    {
        std::unique_lock lock(mu);
        if (gather && !pending_fills.empty())  // (an urgent drop may have stored them already)
            fills_wanted.wait_for(lock, kFillGather,
                                  [&] { return fills_now || stopping || pending_fills.size() >= kFillBatch; });
        fills_now = false;
        batch.swap(pending_fills);
        fill_writer_queued = false;
    }
    if (batch.empty())
        return;
    std::vector<CacheStore::Put> puts;
    puts.reserve(batch.size());
    for (const auto& f : batch)
        puts.push_back({f.granule.object, f.granule.index, {f.bytes.get(), f.granule.length}, false,
                        f.granule.content_version});
    Errc error;
    // Clean copies: not synced now. Lost in a crash, the cache only forgets
    // them; the store keeps its journal's order (no synced row points at
    // unsynced data). A sync per fill cost a small file's read twice over.
    const std::size_t stored = cache->put_many(puts, error, CacheStore::Sync::later);
    if (error != Errc::ok && error != Errc::no_space)  // a full disk is logged once, by the store
        LOG_WARN("the cache could not store %zu granules: %s", batch.size(), std::string(describe(error)).c_str());
    std::lock_guard lock(mu);
    for (const auto& f : batch)
        cache_fill_bytes -= f.granule.length;
    counters.cache_fills += stored;
    counters.cache_fill_batches++;
}

void Engine::Impl::drop_cached(std::uint64_t object, std::uint64_t start, std::uint64_t end,
                               const std::function<bool()>& before_drop) {
    if (start >= end)
        return;
    if (before_drop) {
        // On this thread, not the cache's: the hook may copy a whole file
        // (the replica, disconnected), and every write of the mount waits
        // for the cache thread. That copy is made of what the cache holds:
        // the fills queued are stored first. Fills queued after only add
        // granules.
        if (cache && object && backend->changes_stay_local())
            store_fills_now();
        if (!before_drop())
            return;
    }
    if (!cache || !object)
        return;
    // On the cache's own thread, after storing every fill that was waiting:
    // a store of the old bytes can never land after the drop. Waited for,
    // so no reader finds the old bytes once the caller changes the remote.
    after_pending_fills([&] { cache->drop_range(object, start / granule, (end - 1) / granule); });
}

void Engine::Impl::store_fills_now() {
    if (cache)
        after_pending_fills([] {});
}

void Engine::Impl::after_pending_fills(const std::function<void()>& job) {
    {
        std::lock_guard lock(mu);  // a writer gathering fills stops waiting: the job below is behind it
        fills_now = true;
    }
    fills_wanted.notify_all();
    std::promise<void> done;
    cache_pool->submit(IoPool::Priority::urgent, [&] {
        store_pending_fills();
        job();
        done.set_value();
    });
    done.get_future().wait();
}

Errc Engine::Impl::read_as_seen(const std::shared_ptr<Node>& node, BackendFile& file, std::uint64_t object,
                                std::uint64_t hole_from, std::uint64_t offset, std::span<std::byte> out) {
    const std::uint64_t end = offset + out.size();
    RangeSet missing;
    missing.add(offset, end);
    {
        // Folios first: they hold the newest bytes, written ones included.
        std::lock_guard lock(mu);
        FileData& d = node->data;
        auto it = d.folios.upper_bound(offset);
        if (it != d.folios.begin())
            --it;
        for (; it != d.folios.end() && it->first < end; ++it) {
            const Folio& f = *it->second;
            if (f.busy)
                continue;
            const std::uint64_t lo = std::max(offset, f.pos + f.valid_begin);
            const std::uint64_t hi = std::min(end, f.pos + f.valid_end);
            if (lo >= hi)
                continue;
            // A stale folio's read bytes are an old version; its written
            // ones are still ours.
            const std::vector<ByteRange> runs = f.stale ? d.dirty.within(lo, hi) : std::vector{ByteRange{lo, hi}};
            for (const ByteRange& run : runs) {
                std::memcpy(out.data() + (run.start - offset), f.data + (run.start - f.pos), run.length());
                missing.remove(run.start, run.end);
            }
        }
    }
    std::vector<std::byte> plain;
    for (const ByteRange& r : cache && object ? missing.all() : std::vector<ByteRange>{}) {
        for (std::uint64_t pos = r.start, stop; pos < r.end; pos = stop) {
            // A granule the cache holds: short at the end of the file it was
            // stored from, and zeros after that, as the read path has it.
            const std::uint64_t g = pos / granule * granule;
            stop = std::min(r.end, g + granule);
            if (cache->get(object, g / granule, plain) != Errc::ok)
                continue;
            std::memset(out.data() + (pos - offset), 0, stop - pos);
            if (pos - g < plain.size())
                std::memcpy(out.data() + (pos - offset), plain.data() + (pos - g),
                            std::min<std::uint64_t>(stop - pos, plain.size() - (pos - g)));
            missing.remove(pos, stop);
        }
    }
    // The rest through the handle; what it cannot give past the remote's
    // end, and past our writes' end, is a hole.
    for (const ByteRange& r : missing.all()) {
        for (std::uint64_t pos = r.start; pos < r.end;) {
            std::size_t n = 0;
            const Errc e = file.read(pos, out.subspan(pos - offset, r.end - pos), n);
            if (e != Errc::ok || n == 0) {
                if (pos < hole_from)
                    return e != Errc::ok ? e : Errc::io;  // short of the size this mount knows: never guess
                std::memset(out.data() + (pos - offset), 0, r.end - pos);
                break;
            }
            pos += n;
        }
    }
    return Errc::ok;
}

} // namespace netfs
