// The granule codec: what goes to disk is compressed when that pays,
// encrypted and authenticated, bound to its place; nothing unverifiable
// ever comes back; the format does not change without a version bump.
#include "core/cache/granule_codec.h"

#include "tests/support/mount_fixture.h"

#include <QTest>

#include <random>
#include <string>

using namespace netfs;
using netfs::test::random_bytes;

namespace {

CacheKey test_key(std::uint8_t salt = 0) {
    CacheKey k;
    for (int i = 0; i < 32; ++i)
        k[i] = std::uint8_t(i * 7 + 1 + salt);
    return k;
}

Nonce test_nonce() {
    Nonce n;
    for (int i = 0; i < 12; ++i)
        n[i] = std::uint8_t(0xA0 + i);
    return n;
}

std::vector<std::byte> bytes_of(const std::string& s) {
    auto* p = reinterpret_cast<const std::byte*>(s.data());
    return {p, p + s.size()};
}

std::vector<std::byte> from_hex(const char* hex) {
    std::vector<std::byte> out;
    for (std::size_t i = 0; hex[i] && hex[i + 1]; i += 2)
        out.push_back(std::byte(std::stoi(std::string(hex + i, 2), nullptr, 16)));
    return out;
}

std::string golden_text() {
    std::string text;
    for (int i = 0; i < 8; ++i)
        text += "netfs golden granule\n";
    return text;
}

} // namespace

class TestGranuleCodec : public QObject {
    Q_OBJECT
private slots:
    // If this fails, the on-disk format changed: bump GranuleCodec::kFormat,
    // teach decode the old one (or the cache to drop it), update
    // docs/cache_format.md, then the golden bytes.
    void golden_bytes() {
        const CacheKey key = test_key();
        GranuleCodec encrypted({true, 3, true}, &key);
        std::vector<std::byte> record;
        QCOMPARE(encrypted.encode({42, 7, 3}, bytes_of(golden_text()), test_nonce(), record), Errc::ok);
        QVERIFY(record == from_hex("4e46534701000300a8000000250000002a000000000000000700000000000000030000000000"
                                   "0000a0a1a2a3a4a5a6a7a8a9aaaba1dc0c7741d6437d5f02ee51f44c3a0b79cac86d872cfead"
                                   "16015572aeb2eb31e2f6d051f33d39f81832f6d02efb0fc7262f6323ca"));
        GranuleCodec plain({true, 3, false}, nullptr);
        QCOMPARE(plain.encode({42, 7, 3}, bytes_of(golden_text()), test_nonce(), record), Errc::ok);
        QVERIFY(record == from_hex("4e46534701000100a8000000250000002a000000000000000700000000000000030000000000"
                                   "0000a0a1a2a3a4a5a6a7a8a9aaabb0f094ccae549bf50e1451702b59928328b52ffd20a8e500"
                                   "00a86e6574667320676f6c64656e206772616e756c650a010021484d26"));
    }

    void round_trips_every_size() {
        const CacheKey key = test_key();
        for (bool encrypt : {true, false})
            for (bool compress : {true, false}) {
                GranuleCodec codec({compress, 3, encrypt}, &key);
                for (std::size_t size : {std::size_t(0), std::size_t(1), std::size_t(4096), std::size_t(65536),
                                         std::size_t(2 << 20)}) {
                    auto data = random_bytes(size, unsigned(size));
                    std::vector<std::byte> record, back;
                    QCOMPARE(codec.encode({1, 2, 3}, data, test_nonce(), record), Errc::ok);
                    QCOMPARE(GranuleCodec::record_size(record), record.size());
                    QCOMPARE(codec.decode({1, 2, 3}, record, back), Errc::ok);
                    QVERIFY(back == data);
                }
            }
    }

    void compresses_text_and_stores_noise_raw() {
        const CacheKey key = test_key();
        GranuleCodec codec({true, 3, true}, &key);
        std::string text;
        for (int i = 0; text.size() < 256 * 1024; ++i)
            text += "int main(int argc, char** argv) { return run(argc, argv, " + std::to_string(i) + "); }\n";
        std::vector<std::byte> record;
        QCOMPARE(codec.encode({1, 0, 1}, bytes_of(text), test_nonce(), record), Errc::ok);
        QVERIFY2(record.size() < text.size() / 2, qPrintable(QString::number(record.size())));
        auto noise = random_bytes(256 * 1024, 5);
        QCOMPARE(codec.encode({1, 1, 1}, noise, test_nonce(), record), Errc::ok);
        QCOMPARE(record.size(), noise.size() + GranuleCodec::kHeaderSize);  // raw: compression did not pay
    }

    void plaintext_never_reaches_the_record() {
        const CacheKey key = test_key();
        GranuleCodec codec({false, 3, true}, &key);  // not even compression hides it
        const std::string secret = "TOP SECRET PATTERN 0123456789 TOP SECRET PATTERN";
        std::string text;
        while (text.size() < 65536)
            text += secret;
        std::vector<std::byte> record;
        QCOMPARE(codec.encode({9, 9, 9}, bytes_of(text), test_nonce(), record), Errc::ok);
        const std::string stored(reinterpret_cast<const char*>(record.data()), record.size());
        QVERIFY(stored.find("TOP SECRET") == std::string::npos);
    }

    // Damage anywhere, a record moved to another place or version, a wrong
    // key: never decoded.
    void rejects_anything_it_cannot_verify() {
        const CacheKey key = test_key();
        for (bool encrypt : {true, false}) {
            GranuleCodec codec({true, 3, encrypt}, &key);
            auto data = random_bytes(100000, 7);
            std::vector<std::byte> record, back;
            QCOMPARE(codec.encode({5, 6, 7}, data, test_nonce(), record), Errc::ok);
            for (std::size_t pos = 0; pos < record.size(); pos += 97) {
                auto damaged = record;
                damaged[pos] ^= std::byte(0x10);
                QCOMPARE(codec.decode({5, 6, 7}, damaged, back), Errc::bad_handle);
            }
            QCOMPARE(codec.decode({5, 7, 7}, record, back), Errc::bad_handle);  // another granule
            QCOMPARE(codec.decode({4, 6, 7}, record, back), Errc::bad_handle);  // another object
            QCOMPARE(codec.decode({5, 6, 8}, record, back), Errc::bad_handle);  // another version
            auto truncated = record;
            truncated.resize(record.size() - 1);
            QCOMPARE(codec.decode({5, 6, 7}, truncated, back), Errc::bad_handle);
            QCOMPARE(codec.decode({5, 6, 7}, std::span(record).first(10), back), Errc::bad_handle);
            QCOMPARE(codec.decode({5, 6, 7}, record, back), Errc::ok);
        }
        GranuleCodec writer({true, 3, true}, &key);
        const CacheKey other = test_key(1);
        GranuleCodec reader({true, 3, true}, &other);
        std::vector<std::byte> record, back;
        QCOMPARE(writer.encode({1, 1, 1}, random_bytes(1000, 8), test_nonce(), record), Errc::ok);
        QCOMPARE(reader.decode({1, 1, 1}, record, back), Errc::bad_handle);
    }
};

QTEST_APPLESS_MAIN(TestGranuleCodec)
#include "test_granule_codec.moc"
