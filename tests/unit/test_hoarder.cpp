// Pinning: a tree pinned through a file:// remote is in the cache byte for
// byte, survives eviction, costs no read the second time, is refused when
// it cannot fit, follows the remote when a file changes (before or while it
// is fetched), stops on cancel, and unpins by path prefix.
#include "core/backend/file_backend.h"
#include "core/backend/wrapped_backend.h"
#include "core/cache/cache_store.h"
#include "sync/hoarder.h"
#include "tests/support/mount_fixture.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QTemporaryDir>
#include <QTest>

#include <fcntl.h>
#include <sys/stat.h>

#include <mutex>

using namespace netfs;
using netfs::test::random_bytes;
using netfs::test::read_file;
using netfs::test::write_file;

namespace {

constexpr std::uint64_t G = 64 << 10;  // the smallest granule: small trees, many granules

// The remote as the hoarder sees it: counts reads, can make them short, and
// can act just before each one (to change the file under the hoarder).
class Remote : public WrappedBackend {
public:
    using WrappedBackend::WrappedBackend;
    std::atomic<int> reads{0};
    std::atomic<std::uint64_t> read_bytes{0};  // asked of the real remote
    std::size_t shorten = 0;                    // at most this many bytes per read (0: as asked)
    std::function<void(const std::string&)> on_read;  // called from the reading threads
    std::atomic<Errc> read_error{Errc::ok};           // what every read fails with

    Errc before(Op op, const std::string& path, std::size_t& length) override {
        if (op != Op::read)
            return Errc::ok;
        if (read_error != Errc::ok)
            return read_error;
        if (shorten)
            length = std::min(length, shorten);
        reads++;
        read_bytes += length;
        if (on_read)
            on_read(path);
        return Errc::ok;
    }
    void clear() {
        reads = 0;
        read_bytes = 0;
    }
};

struct Outcome {
    Errc error = Errc::io;
    std::string message;
    std::vector<PinProgress> seen;
};

struct Rig {
    QTemporaryDir dir;
    QString root;
    std::unique_ptr<Remote> remote;
    std::unique_ptr<CacheStore> cache;
    std::unique_ptr<Hoarder> hoarder;

    explicit Rig(std::uint64_t size_limit = 0) {
        root = dir.path() + "/remote";
        QDir().mkpath(root);
        BackendLimits limits;
        limits.rsize = 24 << 10;  // not a divisor of a granule: reads straddle granules
        limits.max_in_flight = 4;
        std::unique_ptr<FileBackend> file;
        if (FileBackend::make(root.toStdString(), limits, file) != Errc::ok)
            qFatal("file backend");
        remote = std::make_unique<Remote>(std::move(file));
        CacheOptions o;
        o.dir = (dir.path() + "/cache").toStdString();
        o.granule_size = G;
        o.size_limit = size_limit;
        o.key = CacheKey{};
        for (int i = 0; i < 32; ++i)
            (*o.key)[i] = std::uint8_t(i * 7 + 1);
        std::string message;
        if (CacheStore::open(o, cache, message) != Errc::ok)
            qFatal("cache: %s", message.c_str());
        hoarder = std::make_unique<Hoarder>(*remote, *cache);
    }

    QString at(const QString& path) const { return root + path; }
    void put(const QString& path, std::size_t size, std::uint64_t seed) {
        QDir().mkpath(QFileInfo(at(path)).path());
        QVERIFY(write_file(at(path), random_bytes(size, seed)));
    }
    // Gives the file a modification time of its own, so that its version
    // changes even within the filesystem's timestamp granularity.
    void touch(const QString& path, long seconds) {
        const timespec times[2] = {{0, UTIME_OMIT}, {seconds, 0}};
        QCOMPARE(::utimensat(AT_FDCWD, at(path).toLocal8Bit().constData(), times, 0), 0);
    }

    Outcome pin(const std::string& path, std::function<bool(const PinProgress&)> cancel_when = {}) {
        Outcome out;
        std::atomic<bool> cancel{false};
        out.error = hoarder->pin(
            path,
            [&](const PinProgress& p) {
                out.seen.push_back(p);
                if (cancel_when && cancel_when(p))
                    cancel = true;
            },
            cancel, out.message);
        return out;
    }

    // Whether the cache holds every granule of `path` for the remote's
    // current version, with exactly the remote's bytes.
    bool holds(const QString& path) {
        Attr attr;
        std::uint64_t id = 0, cv = 0;
        if (remote->getattr(path.toStdString(), attr) != Errc::ok ||
            cache->object(path.toStdString(), Version::of(attr), id, cv) != Errc::ok)
            return false;
        std::vector<std::byte> whole, granule;
        for (std::uint64_t i = 0; i * G < attr.size; ++i) {
            if (cache->get(id, i, granule) != Errc::ok)
                return false;
            whole.insert(whole.end(), granule.begin(), granule.end());
        }
        return whole == read_file(at(path));
    }
    // Granules held for `path` (0 when the cache never saw it).
    std::size_t held(const QString& path) {
        std::uint64_t id = 0;
        std::vector<CacheStore::Held> out;
        if (cache->find_object(path.toStdString(), id) != Errc::ok || cache->held(id, out) != Errc::ok)
            return 0;
        return out.size();
    }
};

// Every size around a granule boundary, in nested directories, with a
// symbolic link (not followed) and an empty directory.
const QList<QPair<QString, std::size_t>> kTree = {
    {"/tree/empty", 0},           {"/tree/one", 1},           {"/tree/a/short", G - 1},
    {"/tree/a/granule", G},       {"/tree/a/b/over", G + 1},  {"/tree/a/b/c/big", 3 * G + 5},
};
constexpr std::uint64_t kTreeBytes = 0 + 1 + (G - 1) + G + (G + 1) + (3 * G + 5);

void make_tree(Rig& rig) {
    std::uint64_t seed = 1;
    for (const auto& [path, size] : kTree)
        rig.put(path, size, seed++);
    QDir().mkpath(rig.at("/tree/a/b/nothing"));
    QVERIFY(QFile::link(rig.at("/tree/a/b/c/big"), rig.at("/tree/a/link")));
}

void check_progress(const std::vector<PinProgress>& seen, std::uint64_t files, std::uint64_t bytes) {
    QVERIFY(!seen.empty());
    for (std::size_t i = 0; i < seen.size(); ++i) {
        QCOMPARE(seen[i].files_total, files);
        QCOMPARE(seen[i].bytes_total, bytes);
        QVERIFY(seen[i].files_done <= files && seen[i].bytes_done <= bytes);
        if (i > 0) {
            QVERIFY(seen[i].files_done >= seen[i - 1].files_done);
            QVERIFY(seen[i].bytes_done >= seen[i - 1].bytes_done);
        }
    }
    QCOMPARE(seen.back().files_done, files);
    QCOMPARE(seen.back().bytes_done, bytes);
}

} // namespace

class TestHoarder : public QObject {
    Q_OBJECT
private slots:
    void pins_a_tree_byte_for_byte() {
        Rig rig;
        make_tree(rig);
        rig.put("/outside", 2 * G, 99);
        const Outcome out = rig.pin("/tree");
        QCOMPARE(out.error, Errc::ok);
        QVERIFY(out.message.empty());
        check_progress(out.seen, kTree.size(), kTreeBytes);
        // One progress report after listing, then at least one per batch.
        QVERIFY(out.seen.size() >= 1 + 4);
        for (const auto& [path, size] : kTree)
            QVERIFY2(rig.holds(path), qPrintable(path));
        // Every byte asked of the remote once, never past the end of a file.
        QCOMPARE(rig.remote->read_bytes.load(), kTreeBytes);
        QVERIFY(rig.remote->reads.load() >= int(kTreeBytes / (24 << 10)));
        // Nothing for the link or outside the tree.
        std::uint64_t id = 0;
        QCOMPARE(rig.cache->find_object("/tree/a/link", id), Errc::not_found);
        QCOMPARE(rig.cache->find_object("/outside", id), Errc::not_found);
        QCOMPARE(rig.cache->stats().pinned_bytes, kTreeBytes);
        // Pinned: eviction leaves all of it.
        rig.cache->evict_clean();
        for (const auto& [path, size] : kTree)
            QVERIFY2(rig.holds(path), qPrintable(path));
    }

    void pinning_again_reads_nothing() {
        Rig rig;
        make_tree(rig);
        QCOMPARE(rig.pin("/tree").error, Errc::ok);
        rig.remote->clear();
        const Outcome again = rig.pin("/tree");
        QCOMPARE(again.error, Errc::ok);
        QCOMPARE(rig.remote->reads.load(), 0);
        check_progress(again.seen, kTree.size(), kTreeBytes);
        QCOMPARE(again.seen.size(), std::size_t(1));  // nothing to fetch: one report
        // A new file in the pinned directory: only it is read.
        rig.put("/tree/a/new", G + 7, 50);
        const Outcome grown = rig.pin("/tree");
        QCOMPARE(grown.error, Errc::ok);
        QCOMPARE(rig.remote->read_bytes.load(), G + 7);
        QVERIFY(rig.holds("/tree/a/new"));
        check_progress(grown.seen, kTree.size() + 1, kTreeBytes + G + 7);
    }

    void pins_one_file_and_names_a_missing_path() {
        Rig rig;
        make_tree(rig);
        const Outcome one = rig.pin("/tree/a/b/c/big");
        QCOMPARE(one.error, Errc::ok);
        check_progress(one.seen, 1, 3 * G + 5);
        QVERIFY(rig.holds("/tree/a/b/c/big"));
        QCOMPARE(rig.held("/tree/one"), std::size_t(0));

        const Outcome missing = rig.pin("/tree/nope");
        QCOMPARE(missing.error, Errc::not_found);
        QVERIFY2(missing.message.find("/tree/nope") != std::string::npos, missing.message.c_str());
        // A link is not followed: nothing to fetch, nothing pinned.
        const Outcome link = rig.pin("/tree/a/link");
        QCOMPARE(link.error, Errc::ok);
        QCOMPARE(rig.cache->stats().pinned_bytes, 3 * G + 5);
    }

    void short_reads_are_completed() {
        Rig rig;
        make_tree(rig);
        rig.remote->shorten = 10000;
        QCOMPARE(rig.pin("/tree").error, Errc::ok);
        for (const auto& [path, size] : kTree)
            QVERIFY2(rig.holds(path), qPrintable(path));
    }

    void too_big_is_refused_before_fetching() {
        {
            Rig rig(4 * G);
            make_tree(rig);
            const Outcome out = rig.pin("/tree");
            QCOMPARE(out.error, Errc::no_space);
            QVERIFY2(out.message.find("/tree") != std::string::npos, out.message.c_str());
            QCOMPARE(out.message.find('\n'), std::string::npos);
            QVERIFY(out.seen.empty());
            QCOMPARE(rig.remote->reads.load(), 0);
            QCOMPARE(rig.cache->stats().granules, std::uint64_t(0));
        }
        // What is pinned elsewhere counts; what is pinned in the tree itself
        // does not count twice.
        Rig rig(8 * G);
        make_tree(rig);
        rig.put("/small", 3 * G, 7);
        QCOMPARE(rig.pin("/small").error, Errc::ok);
        rig.remote->clear();
        const Outcome out = rig.pin("/tree");
        QCOMPARE(out.error, Errc::no_space);
        QVERIFY2(out.message.find("pinned elsewhere") != std::string::npos, out.message.c_str());
        QCOMPARE(rig.remote->reads.load(), 0);
        QCOMPARE(rig.hoarder->unpin("/small"), Errc::ok);
        QCOMPARE(rig.pin("/tree").error, Errc::ok);
        QCOMPARE(rig.pin("/tree").error, Errc::ok);
        for (const auto& [path, size] : kTree)
            QVERIFY2(rig.holds(path), qPrintable(path));
    }

    void unpin_is_by_path_prefix() {
        Rig rig;
        make_tree(rig);
        rig.put("/tree2/x", G, 20);
        rig.put("/treex", G, 21);
        for (const char* path : {"/tree", "/tree2", "/treex"})
            QCOMPARE(rig.pin(path).error, Errc::ok);
        QCOMPARE(rig.hoarder->unpin("/tree"), Errc::ok);
        rig.cache->evict_clean();
        for (const auto& [path, size] : kTree)
            QCOMPARE(rig.held(path), std::size_t(0));
        QVERIFY(rig.holds("/tree2/x"));
        QVERIFY(rig.holds("/treex"));
        QCOMPARE(rig.hoarder->unpin("/"), Errc::ok);
        rig.cache->evict_clean();
        QCOMPARE(rig.cache->stats().granules, std::uint64_t(0));
        QCOMPARE(rig.cache->stats().pinned_bytes, std::uint64_t(0));
    }

    void presence_and_a_changed_file() {
        Rig rig;
        make_tree(rig);
        std::uint64_t present = 1, total = 0;
        QCOMPARE(rig.hoarder->presence("/tree", present, total), Errc::ok);
        QCOMPARE(present, std::uint64_t(0));
        QCOMPARE(total, kTreeBytes);
        QCOMPARE(rig.cache->stats().objects, std::uint64_t(0));  // asking made nothing

        QCOMPARE(rig.pin("/tree").error, Errc::ok);
        QCOMPARE(rig.hoarder->presence("/tree", present, total), Errc::ok);
        QCOMPARE(present, kTreeBytes);
        QCOMPARE(total, kTreeBytes);

        // Changed on the remote: the pinned copy is stale, and the next pin
        // fetches that file, and only it, again.
        rig.put("/tree/a/b/c/big", 3 * G + 5, 77);
        rig.touch("/tree/a/b/c/big", 1000);
        QCOMPARE(rig.hoarder->presence("/tree", present, total), Errc::ok);
        QCOMPARE(present, kTreeBytes - (3 * G + 5));
        rig.remote->clear();
        QCOMPARE(rig.pin("/tree").error, Errc::ok);
        QCOMPARE(rig.remote->read_bytes.load(), 3 * G + 5);
        QVERIFY(rig.holds("/tree/a/b/c/big"));
        QCOMPARE(rig.hoarder->presence("/tree", present, total), Errc::ok);
        QCOMPARE(present, kTreeBytes);
    }

    void a_file_changed_while_fetched_is_fetched_in_its_new_version() {
        Rig rig;
        rig.put("/f", 20 * G + 3, 1);
        std::mutex mu;
        bool changed = false;
        rig.remote->on_read = [&](const std::string&) {
            std::lock_guard lock(mu);
            if (std::exchange(changed, true))
                return;
            rig.put("/f", 20 * G + 3, 2);
            rig.touch("/f", 2000);
        };
        const Outcome out = rig.pin("/f");
        QCOMPARE(out.error, Errc::ok);
        check_progress(out.seen, 1, 20 * G + 3);
        QVERIFY(rig.holds("/f"));
        QCOMPARE(read_file(rig.at("/f")), random_bytes(20 * G + 3, 2));

        // One that never stops changing is given up on, by name.
        long when = 3000;
        rig.put("/f", G, 2999);
        rig.touch("/f", 2999);
        rig.remote->on_read = [&](const std::string&) {
            std::lock_guard lock(mu);
            rig.put("/f", G, std::uint64_t(when));
            rig.touch("/f", when++);
        };
        const Outcome busy = rig.pin("/f");
        QCOMPARE(busy.error, Errc::again);
        QVERIFY2(busy.message.find("/f") != std::string::npos, busy.message.c_str());
        QVERIFY2(busy.message.find("kept changing") != std::string::npos, busy.message.c_str());

        // A server that asks to be asked again later (NFS's DELAY) is named
        // as that, not as a file that kept changing.
        rig.remote->on_read = nullptr;
        rig.put("/g", G, 7);
        rig.remote->read_error = Errc::again;
        const Outcome delayed = rig.pin("/g");
        QCOMPARE(delayed.error, Errc::again);
        QVERIFY2(delayed.message.find("/g") != std::string::npos, delayed.message.c_str());
        QVERIFY2(delayed.message.find("kept changing") == std::string::npos, delayed.message.c_str());
        rig.remote->read_error = Errc::ok;
        QCOMPARE(rig.pin("/g").error, Errc::ok);
        QVERIFY(rig.holds("/g"));
    }

    void cancel_stops_between_batches() {
        Rig rig;
        const std::uint64_t size = 40 * G;  // three batches
        rig.put("/big", size, 5);
        const Outcome out = rig.pin("/big", [](const PinProgress& p) { return p.bytes_done > 0; });
        QCOMPARE(out.error, Errc::busy);
        QVERIFY(!out.message.empty());
        const std::size_t held = rig.held("/big");
        QVERIFY(held > 0 && held < 40);
        // What arrived is pinned, and the next pin fetches only the rest.
        rig.cache->evict_clean();
        QCOMPARE(rig.held("/big"), held);
        rig.remote->clear();
        const Outcome rest = rig.pin("/big");
        QCOMPARE(rest.error, Errc::ok);
        QCOMPARE(rig.remote->read_bytes.load(), size - held * G);
        QVERIFY(rig.holds("/big"));
        check_progress(rest.seen, 1, size);
    }
};

QTEST_APPLESS_MAIN(TestHoarder)
#include "test_hoarder.moc"
