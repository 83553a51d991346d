#include "core/cache/granule_codec.h"

#include <openssl/evp.h>
#include <zstd.h>

#include <cstring>

namespace netfs {

namespace {

// Header layout, little-endian (docs/cache_format.md):
//   0 magic u32 | 4 format u16 | 6 flags u16 | 8 plain_len u32 | 12 stored_len u32
//  16 object u64 | 24 index u64 | 32 version u64 | 40 nonce[12] | 52 tag[16] | 68 payload
constexpr std::size_t kAadSize = 52;  // everything before the tag
constexpr std::size_t kNonceAt = 40;
constexpr std::size_t kTagAt = 52;
constexpr std::size_t kTagSize = 16;

void put16(std::byte* p, std::uint16_t v) { for (int i = 0; i < 2; ++i) p[i] = std::byte(v >> (8 * i)); }
void put32(std::byte* p, std::uint32_t v) { for (int i = 0; i < 4; ++i) p[i] = std::byte(v >> (8 * i)); }
void put64(std::byte* p, std::uint64_t v) { for (int i = 0; i < 8; ++i) p[i] = std::byte(v >> (8 * i)); }
std::uint64_t get(const std::byte* p, int n) {
    std::uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i)
        v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
    return v;
}

void write_aad(std::byte* h, const GranuleId& id, std::uint16_t flags, std::uint32_t plain_len,
               std::uint32_t stored_len, const std::byte* nonce) {
    put32(h + 0, GranuleCodec::kMagic);
    put16(h + 4, GranuleCodec::kFormat);
    put16(h + 6, flags);
    put32(h + 8, plain_len);
    put32(h + 12, stored_len);
    put64(h + 16, id.object);
    put64(h + 24, id.index);
    put64(h + 32, id.version);
    std::memcpy(h + kNonceAt, nonce, 12);
}

// SHA-256 of the header fields and the payload, cut to a tag's size: the
// integrity check of records that are not encrypted.
void digest_tag(const std::byte* aad, std::span<const std::byte> payload, std::byte* tag) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
    EVP_DigestUpdate(ctx, aad, kAadSize);
    EVP_DigestUpdate(ctx, payload.data(), payload.size());
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    std::memcpy(tag, md, kTagSize);
}

} // namespace

struct GranuleCodec::State {
    CacheKey key{};
    bool has_key = false;
    ZSTD_CCtx* cctx = ZSTD_createCCtx();
    ZSTD_DCtx* dctx = ZSTD_createDCtx();
    EVP_CIPHER_CTX* cipher = EVP_CIPHER_CTX_new();
    std::vector<std::byte> bounce;  // compressed or decrypted bytes in between
    ~State() {
        ZSTD_freeCCtx(cctx);
        ZSTD_freeDCtx(dctx);
        EVP_CIPHER_CTX_free(cipher);
        OPENSSL_cleanse(key.data(), key.size());
    }
};

GranuleCodec::GranuleCodec(CodecOptions options, const CacheKey* key)
    : options_(options), state_(std::make_unique<State>()) {
    if (key) {
        state_->key = *key;
        state_->has_key = true;
    }
    if (!state_->has_key)
        options_.encrypt = false;
}

GranuleCodec::~GranuleCodec() = default;

std::size_t GranuleCodec::record_size(std::span<const std::byte> header) {
    if (header.size() < kHeaderSize || get(header.data(), 4) != kMagic)
        return 0;
    return kHeaderSize + get(header.data() + 12, 4);
}

Errc GranuleCodec::encode(const GranuleId& id, std::span<const std::byte> plain, const Nonce& nonce,
                          std::vector<std::byte>& record) {
    if (plain.size() > kMaxPlain)
        return Errc::invalid;
    State& s = *state_;
    std::uint16_t flags = 0;
    std::span<const std::byte> payload = plain;
    if (options_.compress && !plain.empty()) {
        s.bounce.resize(ZSTD_compressBound(plain.size()));
        const std::size_t n =
            ZSTD_compressCCtx(s.cctx, s.bounce.data(), s.bounce.size(), plain.data(), plain.size(), options_.level);
        // Stored raw unless it saves at least 1/16: decompressing costs time on every read.
        if (!ZSTD_isError(n) && n < plain.size() - plain.size() / 16) {
            payload = {s.bounce.data(), n};
            flags |= kCompressed;
        }
    }
    if (options_.encrypt)
        flags |= kEncrypted;

    record.resize(kHeaderSize + payload.size());
    std::byte* h = record.data();
    write_aad(h, id, flags, static_cast<std::uint32_t>(plain.size()), static_cast<std::uint32_t>(payload.size()),
              reinterpret_cast<const std::byte*>(nonce.data()));
    std::byte* body = h + kHeaderSize;
    if (!options_.encrypt) {
        std::memcpy(body, payload.data(), payload.size());
        digest_tag(h, {body, payload.size()}, h + kTagAt);
        return Errc::ok;
    }
    EVP_CIPHER_CTX* c = s.cipher;
    int len = 0;
    bool ok = EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, nullptr) == 1 &&
              EVP_EncryptInit_ex(c, nullptr, nullptr, s.key.data(), nonce.data()) == 1 &&
              EVP_EncryptUpdate(c, nullptr, &len, reinterpret_cast<const unsigned char*>(h), kAadSize) == 1 &&
              EVP_EncryptUpdate(c, reinterpret_cast<unsigned char*>(body), &len,
                                reinterpret_cast<const unsigned char*>(payload.data()),
                                static_cast<int>(payload.size())) == 1 &&
              EVP_EncryptFinal_ex(c, reinterpret_cast<unsigned char*>(body) + len, &len) == 1 &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, kTagSize, h + kTagAt) == 1;
    return ok ? Errc::ok : Errc::io;
}

Errc GranuleCodec::decode(const GranuleId& id, std::span<const std::byte> record, std::vector<std::byte>& plain) {
    State& s = *state_;
    if (record.size() < kHeaderSize || get(record.data(), 4) != kMagic || get(record.data() + 4, 2) != kFormat)
        return Errc::bad_handle;
    const auto flags = static_cast<std::uint16_t>(get(record.data() + 6, 2));
    const auto plain_len = static_cast<std::uint32_t>(get(record.data() + 8, 4));
    const auto stored_len = static_cast<std::uint32_t>(get(record.data() + 12, 4));
    if (stored_len != record.size() - kHeaderSize || plain_len > kMaxPlain ||
        (flags & ~(kCompressed | kEncrypted)) != 0 || bool(flags & kEncrypted) != options_.encrypt)
        return Errc::bad_handle;
    // The associated data is rebuilt from what the caller expects, so a
    // record of another object, granule or version cannot pass.
    std::byte aad[kAadSize];
    write_aad(aad, id, flags, plain_len, stored_len, record.data() + kNonceAt);
    const std::byte* body = record.data() + kHeaderSize;
    const std::byte* tag = record.data() + kTagAt;

    std::span<const std::byte> payload{body, stored_len};
    if (flags & kEncrypted) {
        EVP_CIPHER_CTX* c = s.cipher;
        s.bounce.resize(stored_len);
        std::uint8_t tag_copy[kTagSize];
        std::memcpy(tag_copy, tag, kTagSize);
        int len = 0;
        const bool ok =
            EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, nullptr) == 1 &&
            EVP_DecryptInit_ex(c, nullptr, nullptr, s.key.data(),
                               reinterpret_cast<const unsigned char*>(record.data() + kNonceAt)) == 1 &&
            EVP_DecryptUpdate(c, nullptr, &len, reinterpret_cast<const unsigned char*>(aad), kAadSize) == 1 &&
            EVP_DecryptUpdate(c, reinterpret_cast<unsigned char*>(s.bounce.data()), &len,
                              reinterpret_cast<const unsigned char*>(body), static_cast<int>(stored_len)) == 1 &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, kTagSize, tag_copy) == 1 &&
            EVP_DecryptFinal_ex(c, reinterpret_cast<unsigned char*>(s.bounce.data()) + len, &len) == 1;
        if (!ok)
            return Errc::bad_handle;
        payload = {s.bounce.data(), stored_len};
    } else {
        std::byte expected[kTagSize];
        digest_tag(aad, payload, expected);
        if (std::memcmp(expected, tag, kTagSize) != 0)
            return Errc::bad_handle;
    }
    plain.resize(plain_len);
    if (flags & kCompressed) {
        const std::size_t n = ZSTD_decompressDCtx(s.dctx, plain.data(), plain.size(), payload.data(), payload.size());
        if (ZSTD_isError(n) || n != plain_len)
            return Errc::bad_handle;
    } else {
        if (payload.size() != plain_len)
            return Errc::bad_handle;
        std::memcpy(plain.data(), payload.data(), plain_len);
    }
    return Errc::ok;
}

} // namespace netfs
