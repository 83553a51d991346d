// Resolving a conflict (netfs resolve, the tray's Conflicts window): the
// user's choice is carried out as ordinary changes made through the mount
// itself (rename, unlink on MOUNTPOINT/...), so the kernel's view stays
// coherent and, while disconnected, the choice is logged and reintegrated
// like any other change.
//
//   keep both     the server's version at PATH and the local one at its
//                 conflicted-copy name both stay; the record goes
//   keep remote   the conflicted copy is removed (nothing, when the local
//                 side was a deletion)
//   keep local    the conflicted copy is renamed over PATH; when the local
//                 side was a deletion, PATH is removed
#pragma once

#include <string>

namespace netfs {

class ReplicaBackend;

enum class Keep { local, remote, both };
bool keep_from_name(const std::string& name, Keep& out);

// Resolves the conflict recorded for `path` (its server path or its copy's,
// both remote paths). False and `message` when there is none or a step fails
// (the record then stays).
bool resolve_conflict(const std::string& mountpoint, ReplicaBackend& sync, const std::string& path, Keep keep,
                      std::string& message);

} // namespace netfs
