// netfs status [MOUNTPOINT] [--json]: what running mounts report through
// their control API (app/control_server.h).
#pragma once

#include <QStringList>

namespace netfs {

// Returns the exit code: 0 when every asked mount answered.
int status_main(const QStringList& arguments);

} // namespace netfs
