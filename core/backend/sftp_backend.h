// sftp://[user@]host[:port]/path: a remote reached over SSH (libssh2).
//
// See docs/remotes.md for authentication, host keys, the connection pool
// and the limits of SFTP (no change attribute: size + mtime only).
#pragma once

#include "core/backend/remote_url.h"

namespace netfs {

// Connects, authenticates and checks that `url.path` is a directory. On
// failure `message` is one line that names the problem and what to do.
Errc open_sftp(const RemoteUrl& url, const RemoteOptions& options, std::unique_ptr<Backend>& out,
               std::string& message);

} // namespace netfs
