// netfs offline|online|sync|conflicts MOUNTPOINT [--json]: clients of a
// running mount's control API (docs/control_api.md) for disconnected
// operation.
#pragma once

#include <QString>
#include <QStringList>

namespace netfs {

// `command` is one of offline, online, sync, conflicts. Returns the exit
// code: 0 when the daemon did it (for sync: and nothing is left pending).
int sync_command_main(const QString& command, const QStringList& arguments);

// netfs pin|unpin PATH... [--wait], netfs resolve PATH... --keep local|remote|both:
// PATHs are files or directories inside running mounts.
int path_command_main(const QString& command, const QStringList& arguments);

} // namespace netfs
