// nfs://host[:port]/export/path: an NFSv3 or NFSv4 server (libnfs).
//
// See docs/remotes.md for versions, ports, uid/gid mapping and coherency.
#pragma once

#include "core/backend/remote_url.h"

namespace netfs {

// Mounts the export and checks that the path below it is a directory. On
// failure `message` is one line that names the problem and what to do.
Errc open_nfs(const RemoteUrl& url, const RemoteOptions& options, std::unique_ptr<Backend>& out,
              std::string& message);

} // namespace netfs
