// Turns the REMOTE a user typed into a backend stack.
//
//   file:///abs/path[?option=value&...]
//
// file:// options, for tests and benchmarks (see README "Simulating a network"):
//   latency_ms=N      added to every operation      (ShapedBackend)
//   bandwidth_mbs=N   cap on data transfer, MB/s    (ShapedBackend)
//   faults=FILE       fault rules read from FILE, re-read when it changes (FaultyBackend)
//   rsize=N, wsize=N, max_in_flight=N   override the remote's limits
// sftp:// and nfs:// come with their backends.
#pragma once

#include "core/backend/backend.h"

#include <memory>
#include <string>
#include <string_view>

namespace netfs {

// On failure returns the error and sets `message` to one line that names
// the problem and what to do, e.g.
//   "file:///srv/nope: no such directory (check the path)".
Errc open_remote(std::string_view url, std::unique_ptr<Backend>& out, std::string& message);

} // namespace netfs
