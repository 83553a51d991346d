// O_DIRECT reads and writes (and every open with -o direct_io).
//
// They use the same subrequest machinery as buffered I/O (split by rsize or
// wsize, issued in parallel up to max_in_flight, short transfers continued,
// transient errors retried) but move bytes straight between the caller's
// buffer and the remote, bypassing folios. To stay coherent with buffered
// users of the same file, a direct read first writes back dirty bytes of its
// range, and a direct write also drops the folios it overlaps and asks the
// kernel to drop its cached pages of the range.
#include "core/engine/engine_impl.h"

#include <algorithm>
#include <cstring>

namespace netfs {

Errc Engine::Impl::direct_read(OpenFile& of, std::uint64_t offset, std::span<std::byte> buf,
                               std::size_t& transferred) {
    transferred = 0;
    const auto& node = of.node;
    const std::uint64_t end = offset + buf.size();
    std::unique_lock lock(mu);
    if (Errc e = writeback_and_wait(lock, node, offset, end); e != Errc::ok)
        return e;
    counters.read_requests++;

    const std::size_t pieces = (buf.size() + limits.rsize - 1) / limits.rsize;
    std::vector<std::size_t> got(pieces, 0);
    auto wait = std::make_shared<IoWait>();
    for (std::size_t i = 0; i < pieces; ++i) {
        const std::size_t off = i * limits.rsize;
        const std::size_t len = std::min<std::size_t>(limits.rsize, buf.size() - off);
        wait->outstanding++;
        counters.subrequests++;
        pool->submit(IoPool::Priority::urgent, [this, &of, &got, buf, wait, offset, off, len, i] {
            std::size_t n = 0;
            Errc e = read_from_remote(*of.file, offset + off, buf.subspan(off, len), n);
            std::lock_guard lock(mu);
            got[i] = n;
            counters.bytes_downloaded += n;
            if (e != Errc::ok && wait->error == Errc::ok)
                wait->error = e;
            wait->outstanding--;
            changed.notify_all();
        });
    }
    changed.wait(lock, [&] { return wait->outstanding == 0; });
    if (wait->error != Errc::ok)
        return wait->error;
    // The remote's file ends at the first short piece.
    for (std::size_t i = 0; i < pieces; ++i) {
        transferred += got[i];
        if (got[i] < std::min<std::size_t>(limits.rsize, buf.size() - i * limits.rsize))
            break;
    }
    // While local writes are not all on the remote, the local size rules:
    // past the remote's end but before ours is a hole (our dirty bytes lie
    // outside this range: it was written back above), and nothing lies
    // past our end.
    const FileData& d = node->data;
    if (d.size_is_local) {
        const std::uint64_t local = d.size > offset ? std::min<std::uint64_t>(d.size - offset, buf.size()) : 0;
        if (transferred < local)
            std::memset(buf.data() + transferred, 0, local - transferred);
        transferred = local;
    }
    return Errc::ok;
}

Errc Engine::Impl::direct_write(OpenFile& of, std::uint64_t offset, std::span<const std::byte> data,
                                std::size_t& transferred) {
    transferred = 0;
    const auto& node = of.node;
    FileData& d = node->data;
    const std::uint64_t end = offset + data.size();
    std::unique_lock lock(mu);
    if (Errc e = report_error_locked(of); e != Errc::ok)
        return e;
    // Older buffered bytes of this range must not land after ours.
    if (Errc e = writeback_and_wait(lock, node, offset, end); e != Errc::ok)
        return e;
    changed.wait(lock, [&] { return !d.truncating && !d.keeping && !d.keep_wanted; });
    const std::uint64_t object = node->cache_object;
    d.direct_writes++;  // a keep waits for it: it may land on the local copy being replaced
    auto done_locked = [&] {
        d.direct_writes--;
        changed.notify_all();
    };
    lock.unlock();
    bool writable = true;
    auto ask = [&] { drop_cached(object, offset, end, [&] { return writable = of.file->before_write(); }); };
    ask();
    // Tied to a server away: asked again until the timeout (or not, offline
    // by request); then the file is kept here, and written there.
    for (Retry retry{.fail_fast = false}; !writable;) {
        if (!backend->offline_by_request() && retry_after(Errc::unreachable, retry)) {
            ask();
            continue;
        }
        if (backend->changes_stay_local()) {
            lock.lock();
            done_locked();
            Errc kept = Errc::unreachable;
            if (Clock::now() >= d.keep_failed_at + kKeepRetry) {  // (not again soon after one failed)
                d.keep_wanted = true;
                d.direct_keeps++;
                kept = keep_locally_locked(lock, node, of.file);
                d.direct_keeps--;
            }
            d.direct_writes++;
            lock.unlock();
            if (kept == Errc::ok)
                ask();
        } else {
            ask();  // connected again as the timeout ran out
        }
        break;
    }
    lock.lock();
    if (!writable) {
        done_locked();
        return Errc::unreachable;
    }

    const std::size_t pieces = (data.size() + limits.wsize - 1) / limits.wsize;
    auto wait = std::make_shared<IoWait>();
    for (std::size_t i = 0; i < pieces; ++i) {
        const std::size_t off = i * limits.wsize;
        const std::size_t len = std::min<std::size_t>(limits.wsize, data.size() - off);
        wait->outstanding++;
        counters.write_subrequests++;
        pool->submit(IoPool::Priority::urgent, [this, &of, data, wait, offset, off, len] {
            Errc e = write_to_remote(*of.file, offset + off, data.subspan(off, len));
            std::lock_guard lock(mu);
            if (e == Errc::ok) {
                counters.bytes_uploaded += len;
                FileData& d = of.node->data;
                d.sent_end = std::max<std::uint64_t>(d.sent_end, offset + off + len);
            } else if (wait->error == Errc::ok)
                wait->error = e;
            wait->outstanding--;
            changed.notify_all();
        });
    }
    changed.wait(lock, [&] { return wait->outstanding == 0; });
    done_locked();

    // Cached copies of the range are stale now, ours and the kernel's.
    for (auto it = d.folios.begin(); it != d.folios.end();) {
        Folio* f = (it++)->second.get();
        if (f->end() <= offset || f->pos >= end)
            continue;
        if (f->busy)
            f->stale = true;
        else if (!d.dirty.overlaps(f->pos, f->end()) && !d.writing.overlaps(f->pos, f->end()))
            drop_folio_locked(d, f);
    }
    node->expect_own_change = true;
    node->own_change_at = Clock::now();
    node->attr_expiry = {};
    invalidate_kernel_cache(node->ino, offset, data.size());
    if (wait->error != Errc::ok)
        return wait->error;
    d.size = std::max(d.size, end);
    transferred = data.size();
    return Errc::ok;
}

} // namespace netfs
