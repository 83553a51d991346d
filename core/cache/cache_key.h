// The cache key and how it is kept.
//
// Granules are encrypted with a random 256-bit cache key. The cache keeps
// that key only wrapped (AES-256-GCM) by a key derived with scrypt from the
// user's secret (a key file's bytes, a passphrase, or a keyring entry), so
// the secret can change without re-encrypting the cache, and a wrong secret
// fails authentication before anything in the cache is touched.
#pragma once

#include "core/cache/granule_codec.h"

#include <cstdint>
#include <string_view>
#include <vector>

namespace netfs {

struct WrappedKey {
    std::vector<std::uint8_t> blob;  // salt, scrypt parameters, nonce, ciphertext, tag
};

// A fresh random cache key.
CacheKey random_cache_key();

// Wraps `key` under `secret` (scrypt N=2^15, r=8, p=1 with a random salt).
Errc wrap_cache_key(const CacheKey& key, std::string_view secret, WrappedKey& out);

// Errc::access when `secret` is not the one the key was wrapped with (or the
// blob is damaged); the key is never guessed at.
Errc unwrap_cache_key(const WrappedKey& wrapped, std::string_view secret, CacheKey& out);

} // namespace netfs
