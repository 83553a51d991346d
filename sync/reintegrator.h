// Reintegration: replaying the operation log on the server, in order.
//
// Before each operation the server's current version of what it changes is
// compared with the version the change was made against (its base). The same:
// the operation is applied; file contents are uploaded to a hidden temporary
// name beside the target and renamed over it, so the server never holds a
// half-written file. Different: a conflict, and then nothing on the server is
// overwritten or deleted and nothing local is dropped: the local version goes
// beside the server's as "NAME (conflicted copy DATE TIME HOST).EXT".
//
// Each operation leaves the log in the same transaction that records what the
// server now has; one interrupted after reaching the server but before that
// commit is recognised on the next pass (the server already shows its
// result) and not applied twice.
#pragma once

#include "sync/replica.h"
#include "sync/replica_backend.h"

#include <functional>
#include <string>

namespace netfs {

class CacheStore;

struct Reintegration {
    Replica& replica;
    Backend& remote;
    CacheStore& cache;
    std::string hostname;
    std::function<void(const SyncProgress&)> progress;
    std::function<bool()> stop;                    // a new outage, shutdown, or going offline
    std::function<bool(std::int64_t oid)> busy;    // open for writing here: its store waits
};

SyncOutcome reintegrate(const Reintegration& job);

// "dir/NAME (conflicted copy 2026-12-01 101500 host).EXT" for `path`, at the
// wall-clock time `when`.
std::string conflicted_copy_path(const std::string& path, const std::string& hostname, std::time_t when);

} // namespace netfs
