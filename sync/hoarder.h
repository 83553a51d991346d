// Pinning ("hoarding", as Coda calls it): fetching a file or a whole tree
// into the persistent cache and pinning it there, so that it is readable
// while disconnected and never culled.
//
//   pin:  walk (listing through the backend) -> for each regular file, the
//         cache object for the version the listing reports, and which of
//         its granules are held -> refuse if it cannot fit -> pin each
//         object, then fetch its missing granules, a batch at a time
//         (reads of rsize, a few in flight), check the version did not
//         move while reading, store the batch with one sync
//
// The cache object of a file is the one the engine uses: keyed by remote
// path and checked against Version::of(attr) (CacheStore::object drops clean
// granules of an older version). A granule is stored whole, as the engine
// stores it: granule i is bytes [i*G, min((i+1)*G, size)).
//
// The walk goes through the Backend only, never around it: the backend a
// mount hands us records every listing it forwards (the replica), and that
// is what lets a pinned directory be listed offline.
//
// Thread safety: one Hoarder may run several calls at once from different
// threads; it keeps no state between calls. pin() uses a few threads of its
// own while fetching.
#pragma once

#include "core/backend/backend.h"
#include "core/cache/cache_store.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace netfs {

struct PinProgress {
    std::uint64_t files_done = 0, files_total = 0;  // regular files
    std::uint64_t bytes_done = 0, bytes_total = 0;  // their sizes as listed
};

class Hoarder {
public:
    // Both outlive the Hoarder.
    Hoarder(Backend& remote, CacheStore& cache);

    // Pins `path`: a regular file, or a directory and everything below it
    // (symbolic links are not followed; they, devices and fifos have no
    // content to fetch and are left out). Lists the whole tree first to
    // learn the totals, then fetches every granule the cache does not hold
    // for the version the remote reports. When everything is held already,
    // no file is opened: only listings and cache lookups (the replica calls
    // pin again on a pinned directory whenever it sees new files there).
    //
    // `progress` is called once after listing, then after each batch of
    // granules stored and each file completed, one call at a time (possibly
    // from a fetching thread); its counts never go down, and on success the
    // last call has files_done == files_total and bytes_done == bytes_total.
    // A file that changes while it is fetched is fetched again in its new
    // version; its progress still counts the listed size.
    //
    // Outcomes, with `message` one line naming the path for every error:
    //   ok        everything present and pinned
    //   no_space  the cache has a size limit and the tree's bytes, plus
    //             the bytes pinned outside it, are more than it: nothing
    //             fetched and nothing pinned. Also when the cache's disk
    //             fills up while fetching.
    //   busy      `cancel` became true: stopped between batches. What was
    //             fetched stays, and every file fetching had started on is
    //             pinned (unpin to undo).
    //   again     a file kept changing while it was fetched (3 attempts)
    //   other     the remote's or the cache's error. A file or directory
    //             removed while walking or fetching is skipped, not an error.
    // Transient read errors other than unreachable are retried a few times.
    Errc pin(const std::string& path, const std::function<void(const PinProgress&)>& progress,
             const std::atomic<bool>& cancel, std::string& message);

    // Unpins every cached object at or below `path` (by its remote path:
    // no remote access, works offline). Their clean granules can then be
    // culled like any other.
    Errc unpin(const std::string& path);

    // Bytes of the regular files at or below `path`, as the remote lists
    // them (`total`), and how many of them the cache holds for the version
    // the remote reports (`present`; dirty granules count: they are the
    // content the user will read). For `netfs status`: ready to go offline
    // when present == total. Never fetches; a file the cache has never seen
    // gets no cache object; granules of an older version are dropped, as an
    // open through the engine would.
    Errc presence(const std::string& path, std::uint64_t& present, std::uint64_t& total);

private:
    struct File;
    struct Run;
    // Every regular file at or below `path`, with its listed attributes.
    Errc walk(const std::string& path, std::vector<File>& files, std::string& message);
    // Looks up the file's cache object for `attr` and which granules it lacks.
    Errc resolve(File& file, const Attr& attr);
    Errc fetch(File& file, Run& run);
    Errc read_range(BackendFile& handle, std::uint64_t offset, std::span<std::byte> out, unsigned in_flight);

    Backend& remote_;
    CacheStore& cache_;
};

} // namespace netfs
