// `netfs cache stats|verify|evict|clear`: looking after a persistent cache.
//
//   netfs cache stats  [REMOTE | --cache-dir DIR] [--json]
//   netfs cache verify [REMOTE | --cache-dir DIR] [--key-file FILE | --ask-passphrase]
//   netfs cache evict  [REMOTE | --cache-dir DIR]          drops clean, unpinned data
//   netfs cache clear  [REMOTE | --cache-dir DIR] [--force] removes the cache
//
// stats reads only the metadata and works while the cache is mounted; the
// others need the cache to themselves and refuse while a mount uses it.
#pragma once

#include <QStringList>

namespace netfs {

// Returns the process exit code (2 for usage errors, 1 for failures).
int run_cache_command(const QStringList& arguments);

} // namespace netfs
