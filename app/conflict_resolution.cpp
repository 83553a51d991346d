#include "app/conflict_resolution.h"

#include "core/errors.h"
#include "sync/replica_backend.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace netfs {

namespace {

std::string failed(const char* step, const std::string& path, int err) {
    return std::string(step) + " " + path + ": " + std::string(describe(from_errno(err)));
}

// mkdir -p of the directories above `path` (all on the mount).
bool make_parents(const std::string& path) {
    for (std::size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1)) {
        const std::string dir = path.substr(0, slash);
        if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
            return false;
    }
    return true;
}

} // namespace

bool keep_from_name(const std::string& name, Keep& out) {
    if (name == "local")
        out = Keep::local;
    else if (name == "remote")
        out = Keep::remote;
    else if (name == "both")
        out = Keep::both;
    else
        return false;
    return true;
}

bool resolve_conflict(const std::string& mountpoint, ReplicaBackend& sync, const std::string& path, Keep keep,
                      std::string& message) {
    const auto conflict = sync.replica().conflict_at(path);
    if (!conflict) {
        message = path + " has no conflict";
        return false;
    }
    const std::string target = mountpoint + conflict->path;
    const std::string copy = mountpoint + conflict->copy;
    if (keep == Keep::remote && !conflict->copy.empty()) {
        if (::unlink(copy.c_str()) != 0 && errno != ENOENT) {
            message = failed("cannot remove", conflict->copy, errno);
            return false;
        }
    } else if (keep == Keep::local && !conflict->copy.empty()) {
        if (!make_parents(target) || ::rename(copy.c_str(), target.c_str()) != 0) {
            message = failed("cannot move the local version over", conflict->path, errno);
            return false;
        }
    } else if (keep == Keep::local) {
        // The local side was a deletion: carry it out now.
        struct stat st;
        if (::lstat(target.c_str(), &st) == 0 &&
            (S_ISDIR(st.st_mode) ? ::rmdir(target.c_str()) : ::unlink(target.c_str())) != 0) {
            message = failed("cannot remove", conflict->path, errno);
            return false;
        }
    }
    if (sync.replica().remove_conflict(conflict->id) != Errc::ok) {
        message = "cannot update the conflict list";
        return false;
    }
    return true;
}

} // namespace netfs
