#include "sync/hoarder.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>
#include <utility>

namespace netfs {

namespace {

// One batch is stored with one sync: big enough that the sync is cheap per
// byte, small enough that progress moves and a cancel is heard soon.
constexpr std::uint64_t kBatchGranules = 16;
constexpr std::uint64_t kBatchBytes = 4u << 20;
// Files fetched at once: a small file costs round trips (open, read,
// getattr, close), not bandwidth, so they overlap. Each holds a batch
// buffer: at most kFileWorkers * kBatchBytes of memory.
constexpr unsigned kFileWorkers = 8;
// Reads in flight for one file's batch, at most.
constexpr unsigned kReadsPerFile = 8;
// A file that changed under us is fetched again, this many times in all.
constexpr int kAttempts = 3;
// Transient read errors (not unreachable: offline is no time to insist).
constexpr int kReadRetries = 3;
constexpr auto kReadBackoff = std::chrono::milliseconds(50);  // doubled each time

std::string child_path(const std::string& dir, const std::string& name) {
    return dir == "/" ? "/" + name : dir + "/" + name;
}

std::string failure(const std::string& path, Errc e) { return path + ": " + std::string(describe(e)); }

std::string size_text(std::uint64_t bytes) {
    const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
    double v = double(bytes);
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    char out[32];
    std::snprintf(out, sizeof out, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
    return out;
}

// Reads out.size() bytes at offset, asking again after a short read.
// `got` < out.size() only at end of file.
Errc read_fully(BackendFile& handle, std::uint64_t offset, std::span<std::byte> out, std::size_t& got) {
    got = 0;
    int retries = 0;
    while (got < out.size()) {
        std::size_t n = 0;
        const Errc e = handle.read(offset + got, out.subspan(got), n);
        if (e != Errc::ok) {
            if (!is_transient(e) || is_connection_down(e) || retries == kReadRetries)
                return e;
            std::this_thread::sleep_for(kReadBackoff * (1 << retries++));
            continue;
        }
        if (n == 0)
            break;
        got += n;
    }
    return Errc::ok;
}

} // namespace

struct Hoarder::File {
    File(std::string p, const Attr& a) : path(std::move(p)), listed_size(a.size), attr(a) {}
    std::string path;
    std::uint64_t listed_size = 0;      // what progress counts for it
    Attr attr;                          // the version being fetched
    std::uint64_t object = 0, content_version = 0;
    std::vector<std::uint64_t> missing; // granules not held, ascending
    std::uint64_t held_bytes = 0;       // bytes of the granules held
    std::uint64_t credited = 0;         // bytes progress has counted (<= listed_size)
    bool kept_changing = false;         // given up after kAttempts versions (not the server's own `again`)
};

// What the fetching threads of one pin() share.
struct Hoarder::Run {
    Run(const std::function<void(const PinProgress&)>& p, const std::atomic<bool>& c) : progress(p), cancel(c) {}
    const std::function<void(const PinProgress&)>& progress;
    const std::atomic<bool>& cancel;
    unsigned reads_in_flight = 1;  // per file, constant while fetching

    std::mutex mu;  // guards what follows, and serialises progress calls
    PinProgress counts;
    bool stop = false;             // an error: the other threads stop too
    Errc error = Errc::ok;         // the first one
    std::string message;

    bool stopping() {
        std::lock_guard lock(mu);
        return stop || cancel.load();
    }
    void fail(Errc e, std::string why) {
        std::lock_guard lock(mu);
        if (!stop) {
            stop = true;
            error = e;
            message = std::move(why);
        }
    }
    // Counts `bytes_now` of the file as present (never more than listed,
    // never less than before) and, when `done`, all of it and the file.
    void credit(File& f, std::uint64_t bytes_now, bool done, bool report = true) {
        std::lock_guard lock(mu);
        const std::uint64_t target = done ? f.listed_size : std::min(bytes_now, f.listed_size);
        if (target > f.credited) {
            counts.bytes_done += target - f.credited;
            f.credited = target;
        }
        counts.files_done += done ? 1 : 0;
        if (report && progress)
            progress(counts);
    }
};

Hoarder::Hoarder(Backend& remote, CacheStore& cache) : remote_(remote), cache_(cache) {}

Errc Hoarder::walk(const std::string& path, std::vector<File>& files, std::string& message) {
    files.clear();
    if (path.empty() || path[0] != '/') {
        message = "'" + path + "' is not a path on the remote (it must start with /)";
        return Errc::invalid;
    }
    Attr attr;
    if (Errc e = remote_.getattr(path, attr); e != Errc::ok) {
        message = failure(path, e);
        return e;
    }
    if (S_ISREG(attr.mode))
        files.emplace_back(path, attr);
    if (!S_ISDIR(attr.mode))
        return Errc::ok;  // a symbolic link or a special file: no content
    std::vector<std::string> dirs{path};
    std::vector<DirEntry> entries;
    while (!dirs.empty()) {
        const std::string dir = std::move(dirs.back());
        dirs.pop_back();
        const Errc e = remote_.readdir(dir, entries);
        if ((e == Errc::not_found || e == Errc::not_dir) && dir != path)
            continue;  // removed or replaced since its parent was listed
        if (e != Errc::ok) {
            message = failure(dir, e);
            return e;
        }
        for (const DirEntry& d : entries) {
            if (S_ISDIR(d.attr.mode))
                dirs.push_back(child_path(dir, d.name));
            else if (S_ISREG(d.attr.mode))
                files.emplace_back(child_path(dir, d.name), d.attr);
        }
    }
    std::sort(files.begin(), files.end(), [](const File& a, const File& b) { return a.path < b.path; });
    return Errc::ok;
}

Errc Hoarder::resolve(File& f, const Attr& attr) {
    f.attr = attr;
    if (Errc e = cache_.object(f.path, Version::of(attr), f.object, f.content_version); e != Errc::ok)
        return e;
    std::vector<CacheStore::Held> held;
    if (Errc e = cache_.held(f.object, held); e != Errc::ok)
        return e;
    const std::uint64_t g = cache_.granule_size();
    const std::uint64_t count = (attr.size + g - 1) / g;
    f.missing.clear();
    f.held_bytes = 0;
    auto h = held.begin();
    for (std::uint64_t i = 0; i < count; ++i) {
        while (h != held.end() && h->index < i)
            ++h;
        if (h != held.end() && h->index == i)
            f.held_bytes += std::min<std::uint64_t>(h->length, attr.size - i * g);
        else
            f.missing.push_back(i);
    }
    return Errc::ok;
}

Errc Hoarder::read_range(BackendFile& handle, std::uint64_t offset, std::span<std::byte> out, unsigned in_flight) {
    const BackendLimits limits = remote_.limits();
    const std::size_t rsize = std::max<std::size_t>(4096, std::min(limits.rsize, limits.rsize_max));
    const std::size_t chunks = (out.size() + rsize - 1) / rsize;
    // Chunks are taken in order by up to `in_flight` threads (this one
    // included). A short chunk means the file ended early: it changed.
    std::atomic<std::size_t> next{0};
    std::mutex mu;
    Errc error = Errc::ok;
    bool short_read = false;
    auto reader = [&] {
        for (std::size_t c; (c = next++) < chunks;) {
            const std::size_t lo = c * rsize, len = std::min(rsize, out.size() - lo);
            std::size_t got = 0;
            const Errc e = read_fully(handle, offset + lo, out.subspan(lo, len), got);
            std::lock_guard lock(mu);
            if (e != Errc::ok && error == Errc::ok)
                error = e;
            short_read |= e == Errc::ok && got < len;
            if (error != Errc::ok || short_read)
                return;
        }
    };
    std::vector<std::thread> helpers;
    for (unsigned i = 1; i < std::min<std::size_t>(in_flight, chunks); ++i)
        helpers.emplace_back(reader);
    reader();
    for (auto& t : helpers)
        t.join();
    if (error == Errc::ok && short_read)
        return Errc::bad_handle;  // the file is shorter than its version said
    return error;
}

Errc Hoarder::fetch(File& f, Run& run) {
    const std::uint64_t g = cache_.granule_size();
    const std::uint64_t batch = std::max<std::uint64_t>(1, std::min(kBatchGranules, kBatchBytes / g));
    std::vector<std::byte> buf;
    std::vector<CacheStore::Put> puts;
    // Removed, or no longer a regular file: nothing left to pin.
    auto gone = [&] {
        run.credit(f, 0, true);
        return Errc::ok;
    };
    for (int attempt = 1;; ++attempt) {
        // Pinned before its granules arrive: the puts of its later batches
        // may cull, and must not cull its earlier ones.
        if (Errc e = cache_.set_pinned(f.object, true); e != Errc::ok)
            return e;
        bool changed = false;
        std::unique_ptr<BackendFile> handle;
        if (!f.missing.empty()) {
            const Errc e = remote_.open(f.path, O_RDONLY, handle);
            if (e == Errc::not_found)
                return gone();
            if (e != Errc::ok)
                return e;
        }
        for (std::size_t i = 0; i < f.missing.size() && !changed;) {
            if (run.stopping())
                return Errc::busy;
            // A run of neighbouring missing granules, read as one range.
            std::size_t j = i + 1;
            while (j < f.missing.size() && j - i < batch && f.missing[j] == f.missing[j - 1] + 1)
                j++;
            const std::uint64_t lo = f.missing[i] * g;
            const std::uint64_t hi = std::min((f.missing[j - 1] + 1) * g, f.attr.size);
            buf.resize(hi - lo);
            Errc e = read_range(*handle, lo, buf, run.reads_in_flight);
            if (e != Errc::ok && e != Errc::bad_handle)
                return e;
            // The bytes belong to the listed version only if the remote
            // still reports it now that they are read.
            Attr now;
            if (Errc ge = remote_.getattr(f.path, now); ge != Errc::ok)
                return ge == Errc::not_found ? gone() : ge;
            if (e == Errc::bad_handle || !(Version::of(now) == Version::of(f.attr))) {
                changed = true;
                break;
            }
            puts.clear();
            for (std::size_t k = i; k < j; ++k) {
                const std::uint64_t start = f.missing[k] * g;
                puts.push_back({f.object, f.missing[k],
                                std::span<const std::byte>(buf).subspan(start - lo, std::min(g, f.attr.size - start)),
                                false, f.content_version});
            }
            const std::size_t stored = cache_.put_many(puts, e);
            if (e != Errc::ok)
                return e;
            // Fewer stored: someone (an open through the engine) saw a newer
            // version and the object's content version moved on.
            changed = stored < puts.size();
            f.held_bytes += hi - lo;
            if (!changed)
                run.credit(f, f.held_bytes, false);
            i = j;
        }
        if (!changed) {
            run.credit(f, f.attr.size, true);
            return Errc::ok;
        }
        if (attempt == kAttempts) {
            f.kept_changing = true;
            return Errc::again;
        }
        handle.reset();
        Attr now;
        const Errc e = remote_.getattr(f.path, now);
        if (e == Errc::not_found || (e == Errc::ok && !S_ISREG(now.mode)))
            return gone();
        if (e != Errc::ok)
            return e;
        if (Errc re = resolve(f, now); re != Errc::ok)
            return re;
    }
}

Errc Hoarder::pin(const std::string& path, const std::function<void(const PinProgress&)>& progress,
                  const std::atomic<bool>& cancel, std::string& message) {
    message.clear();
    std::vector<File> files;
    if (Errc e = walk(path, files, message); e != Errc::ok)
        return e;
    std::uint64_t total = 0;
    for (File& f : files) {
        if (Errc e = resolve(f, f.attr); e != Errc::ok) {
            message = f.path + ": the cache could not look it up: " + std::string(describe(e));
            return e;
        }
        total += f.listed_size;
    }
    // Pinned bytes cannot be culled: refuse what the limit cannot hold
    // beside what is pinned elsewhere. Compared in plaintext bytes, as the
    // user counts them (records add a small header, compression saves).
    if (const std::uint64_t limit = cache_.size_limit()) {
        std::uint64_t pinned_all = 0, pinned_here = 0;
        if (cache_.pinned_bytes_under("/", pinned_all) != Errc::ok ||
            cache_.pinned_bytes_under(path, pinned_here) != Errc::ok) {
            message = "the cache could not count its pinned bytes";
            return Errc::io;
        }
        const std::uint64_t elsewhere = pinned_all - std::min(pinned_here, pinned_all);
        if (total + elsewhere > limit) {
            message = "cannot pin " + path + ": it holds " + size_text(total) +
                      (elsewhere ? " and " + size_text(elsewhere) + " is pinned elsewhere" : std::string()) +
                      ", more than the cache's limit of " + size_text(limit) +
                      "; unpin something or raise the cache size";
            return Errc::no_space;
        }
    }

    Run run(progress, cancel);
    run.counts.files_total = files.size();
    run.counts.bytes_total = total;
    std::vector<File*> todo;
    for (File& f : files) {
        if (!f.missing.empty()) {
            run.credit(f, f.held_bytes, false, false);
            todo.push_back(&f);
        } else if (Errc e = cache_.set_pinned(f.object, true); e != Errc::ok) {
            message = f.path + ": the cache could not pin it: " + std::string(describe(e));
            return e;
        } else {
            run.credit(f, f.listed_size, true, false);
        }
    }
    if (progress)
        progress(run.counts);

    const unsigned in_flight = std::max<std::uint32_t>(1, remote_.limits().max_in_flight);
    const auto workers = unsigned(std::min<std::size_t>({kFileWorkers, in_flight, todo.size()}));
    run.reads_in_flight = workers ? std::clamp(in_flight / workers, 1u, kReadsPerFile) : 1;
    std::atomic<std::size_t> next{0};
    auto worker = [&] {
        for (std::size_t i; !run.stopping() && (i = next++) < todo.size();) {
            File& f = *todo[i];
            const Errc e = fetch(f, run);
            if (e == Errc::busy || e == Errc::ok)
                continue;  // a cancel is reported once, below
            if (e == Errc::again && f.kept_changing)
                run.fail(e, f.path + " kept changing while it was fetched; pin it again later");
            else if (e == Errc::no_space)
                run.fail(e, f.path + ": the cache's disk is full; make room and pin again");
            else
                run.fail(e, failure(f.path, e));
        }
    };
    std::vector<std::thread> helpers;
    for (unsigned i = 1; i < workers; ++i)
        helpers.emplace_back(worker);
    worker();
    for (auto& t : helpers)
        t.join();

    if (run.error != Errc::ok) {
        message = run.message;
        return run.error;
    }
    if (run.counts.files_done < run.counts.files_total) {
        message = "pinning " + path + " was cancelled with " + std::to_string(run.counts.files_done) + " of " +
                  std::to_string(run.counts.files_total) + " files present";
        return Errc::busy;
    }
    return Errc::ok;
}

Errc Hoarder::unpin(const std::string& path) {
    if (path.empty() || path[0] != '/')
        return Errc::invalid;
    return cache_.set_pinned_under(path, false);
}

Errc Hoarder::presence(const std::string& path, std::uint64_t& present, std::uint64_t& total) {
    present = total = 0;
    std::vector<File> files;
    std::string message;
    if (Errc e = walk(path, files, message); e != Errc::ok)
        return e;
    for (File& f : files) {
        total += f.listed_size;
        std::uint64_t id = 0;
        Errc e = cache_.find_object(f.path, id);
        if (e == Errc::not_found)
            continue;  // never cached: nothing present, and no object made for it
        if (e == Errc::ok)
            e = resolve(f, f.attr);
        if (e != Errc::ok)
            return e;
        present += f.held_bytes;
    }
    return Errc::ok;
}

} // namespace netfs
