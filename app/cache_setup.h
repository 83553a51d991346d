// Where a mount's persistent cache lives and which secret unlocks it.
//
//   --cache-dir DIR      default $XDG_CACHE_HOME/netfs/<remote id>/ (~/.cache/netfs/...)
//   --key-file FILE      the secret is FILE's whole content (any bytes); FILE must be 0600
//   --ask-passphrase     the secret is a passphrase typed on the terminal
//   (neither)            a random secret generated once into
//                        $XDG_CONFIG_HOME/netfs/keys/<remote id>.key (0600): the
//                        weaker choice, as the key then sits on the same disk
//   --cache-size SIZE    keep the cache under SIZE (least recently used clean data goes first)
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
    std::uint64_t size_limit = 0;  // --cache-size; 0: none
    unsigned free_run_percent = 7;   // --cache-free RUN,CULL,STOP (see CacheOptions)
    unsigned free_cull_percent = 5;
    unsigned free_stop_percent = 1;
    bool encrypt = true;
    bool compress = true;
    std::string key_file;          // empty: passphrase or generated key
    bool ask_passphrase = false;
    std::string passphrase;        // read before the daemon forks
};

// Reads a passphrase from the terminal without echo. False (and `error`)
// when there is no terminal to ask.
bool read_passphrase(std::string& out, std::string& error);

// Asks `prompt` on the terminal open as `tty` and reads a line without
// echo. False when nothing (or an empty line) was typed.
bool ask_on_terminal(int tty, const std::string& prompt, std::string& out);

// The id of a remote's cache ("file-3f2a..."): the name of its default
// directory and of its generated key. From the URL without its query.
std::string cache_id(const std::string& remote);

// The directory of the cache with this id: --cache-dir, or the default place.
std::string cache_dir(const CacheRequest& request, const std::string& id);

// Opens (or creates) the cache with this id. With `metadata_only` no secret
// is needed (stats, evict, clear). On failure `message` is one line that
// says what to do.
// Only a mount creates the generated key (`create_key`); maintenance
// commands find the one the cache was created with, or fail.
Errc open_cache(const CacheRequest& request, const std::string& id, std::shared_ptr<CacheStore>& out,
                std::string& message, bool metadata_only = false, bool create_key = true);

} // namespace netfs
