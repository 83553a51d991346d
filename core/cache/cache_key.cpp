#include "core/cache/cache_key.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstring>

namespace netfs {

namespace {

// blob: version(1) | log2N(1) | r(1) | p(1) | salt(16) | nonce(12) | ciphertext(32) | tag(16)
constexpr std::size_t kBlobSize = 4 + 16 + 12 + 32 + 16;
constexpr std::uint8_t kVersion = 1;
constexpr std::uint8_t kLog2N = 15;  // ~100 ms and 32 MiB on a laptop: cheap once per mount, dear per guess
constexpr std::uint8_t kR = 8, kP = 1;

bool derive(std::string_view secret, const std::uint8_t* salt, std::uint8_t log2n, std::uint8_t r, std::uint8_t p,
            std::uint8_t* out) {
    return EVP_PBE_scrypt(secret.data(), secret.size(), salt, 16, std::uint64_t(1) << log2n, r, p, 64ull << 20, out,
                          32) == 1;
}

bool gcm(bool encrypt, const std::uint8_t* key, const std::uint8_t* nonce, const std::uint8_t* aad, int aad_len,
         const std::uint8_t* in, std::uint8_t* out, std::uint8_t* tag) {
    EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
    int len = 0;
    bool ok = (encrypt ? EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), nullptr, key, nonce)
                       : EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), nullptr, key, nonce)) == 1;
    if (encrypt) {
        ok = ok && EVP_EncryptUpdate(c, nullptr, &len, aad, aad_len) == 1 &&
             EVP_EncryptUpdate(c, out, &len, in, 32) == 1 && EVP_EncryptFinal_ex(c, out + len, &len) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
    } else {
        ok = ok && EVP_DecryptUpdate(c, nullptr, &len, aad, aad_len) == 1 &&
             EVP_DecryptUpdate(c, out, &len, in, 32) == 1 && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1 &&
             EVP_DecryptFinal_ex(c, out + len, &len) == 1;
    }
    EVP_CIPHER_CTX_free(c);
    return ok;
}

} // namespace

CacheKey random_cache_key() {
    CacheKey key;
    RAND_bytes(key.data(), int(key.size()));
    return key;
}

Errc wrap_cache_key(const CacheKey& key, std::string_view secret, WrappedKey& out) {
    out.blob.assign(kBlobSize, 0);
    std::uint8_t* b = out.blob.data();
    b[0] = kVersion;
    b[1] = kLog2N;
    b[2] = kR;
    b[3] = kP;
    std::uint8_t kek[32];
    if (RAND_bytes(b + 4, 16 + 12) != 1 || !derive(secret, b + 4, kLog2N, kR, kP, kek))
        return Errc::io;
    const bool ok = gcm(true, kek, b + 20, b, 20, key.data(), b + 32, b + 64);
    OPENSSL_cleanse(kek, sizeof kek);
    return ok ? Errc::ok : Errc::io;
}

Errc unwrap_cache_key(const WrappedKey& wrapped, std::string_view secret, CacheKey& out) {
    const std::uint8_t* b = wrapped.blob.data();
    if (wrapped.blob.size() != kBlobSize || b[0] != kVersion || b[1] < 10 || b[1] > 22 || b[2] == 0 || b[3] == 0)
        return Errc::access;
    std::uint8_t kek[32];
    if (!derive(secret, b + 4, b[1], b[2], b[3], kek))
        return Errc::io;
    std::uint8_t tag[16];
    std::memcpy(tag, b + 64, 16);
    const bool ok = gcm(false, kek, b + 20, b, 20, b + 32, out.data(), tag);
    OPENSSL_cleanse(kek, sizeof kek);
    return ok ? Errc::ok : Errc::access;
}

} // namespace netfs
