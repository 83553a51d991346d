// Turns a granule's plaintext into the record stored on disk and back.
//
//   plaintext --zstd (if it pays)--> payload --AES-256-GCM--> ciphertext + tag
//
// The associated data binds every record to the object, the granule index,
// the object's cached version and the plaintext length, so a record copied
// to another place, replayed from an older version or truncated fails
// authentication. Without encryption a SHA-256 digest over the same fields
// and the payload takes the tag's place, so corruption is still caught.
// The exact layout is documented in docs/cache_format.md; the golden-bytes
// test (tests/unit/test_granule_codec.cpp) fails if it changes silently.
//
// Transforms run in the codec's own buffers (bounce buffers): callers hand
// in plaintext and get plaintext back; ciphertext never reaches them.
// Thread safety: a GranuleCodec may be used from one thread at a time;
// keep one per thread.
#pragma once

#include "core/errors.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace netfs {

// Where a granule belongs; all of it is authenticated.
struct GranuleId {
    std::uint64_t object = 0;   // the cache's id of the remote object
    std::uint64_t index = 0;    // granule number within the object
    std::uint64_t version = 0;  // the cache's version of the object's content
};

using CacheKey = std::array<std::uint8_t, 32>;
using Nonce = std::array<std::uint8_t, 12>;

struct CodecOptions {
    bool compress = true;
    int level = 3;         // zstd level
    bool encrypt = true;   // needs a key
};

class GranuleCodec {
public:
    static constexpr std::uint32_t kMagic = 0x4753464e;  // "NFSG" in file order
    static constexpr std::uint16_t kFormat = 1;
    static constexpr std::size_t kHeaderSize = 68;
    static constexpr std::uint32_t kMaxPlain = 2u << 20;  // the largest granule

    enum Flags : std::uint16_t { kCompressed = 1, kEncrypted = 2 };

    GranuleCodec(CodecOptions options, const CacheKey* key);
    ~GranuleCodec();
    GranuleCodec(const GranuleCodec&) = delete;
    GranuleCodec& operator=(const GranuleCodec&) = delete;

    // Encodes `plain` into `record` (replacing its contents). `nonce` must
    // never have been used with this key before (the store hands them out).
    Errc encode(const GranuleId& id, std::span<const std::byte> plain, const Nonce& nonce,
                std::vector<std::byte>& record);

    // Decodes a record written for `id`. Errc::bad_handle when it does not
    // authenticate (damaged, swapped, replayed, wrong key): never returns
    // bytes it cannot verify.
    Errc decode(const GranuleId& id, std::span<const std::byte> record, std::vector<std::byte>& plain);

    // The stored length of a record from its header (0 if not a record).
    static std::size_t record_size(std::span<const std::byte> header);

private:
    struct State;
    CodecOptions options_;
    std::unique_ptr<State> state_;
};

} // namespace netfs
