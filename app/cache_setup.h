// Where a mount's persistent cache lives and which secret unlocks it.
//
//   --cache-dir DIR      default $XDG_CACHE_HOME/netfs/<remote id>/ (~/.cache/netfs/...)
//   --key-file FILE      the secret is FILE's whole content (any bytes); FILE must be 0600
//   --ask-passphrase     the secret is a passphrase typed on the terminal
//   (neither)            a random secret generated once into
//                        $XDG_CONFIG_HOME/netfs/keys/<remote id>.key (0600): the
//                        weaker choice, as the key then sits on the same disk
//   --no-encrypt, --no-compress, --granule-size SIZE, --no-cache
//
// The remote id is derived from the remote URL without its query, so the
// same remote finds its cache again after an unmount or a reboot.
#pragma once

#include "core/cache/cache_store.h"

#include <cstdint>
#include <memory>
#include <string>

namespace netfs {

struct CacheRequest {
    bool enabled = true;
    std::string dir;               // empty: the default place
    std::uint32_t granule_size = 256 << 10;
    bool encrypt = true;
    bool compress = true;
    std::string key_file;          // empty: passphrase or generated key
    bool ask_passphrase = false;
    std::string passphrase;        // read before the daemon forks
};

// Reads a passphrase from the terminal without echo. False (and `error`)
// when there is no terminal to ask.
bool read_passphrase(std::string& out, std::string& error);

// Opens (or creates) the cache for `remote`. On failure `message` is one
// line that says what to do.
Errc open_cache(const CacheRequest& request, const std::string& remote, std::shared_ptr<CacheStore>& out,
                std::string& message);

} // namespace netfs
