// The granule store: what was put comes back, after a reopen and after a
// crash at any point; damage is never returned; a wrong key is refused
// without touching the cache; plaintext never reaches the disk.
#include "core/cache/cache_store.h"
#include "core/sqlite_stmt.h"
#include "tests/support/mount_fixture.h"

#include <QDir>
#include <QDirIterator>
#include <QFile>
#include <QFileInfo>
#include <QTemporaryDir>
#include <QTest>

#include <signal.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>

using namespace netfs;
using netfs::test::random_bytes;

namespace {

CacheKey key_of(std::uint8_t seed) {
    CacheKey k;
    for (int i = 0; i < 32; ++i)
        k[i] = std::uint8_t(seed * 31 + i);
    return k;
}

CacheOptions options_for(const QString& dir, std::uint8_t key_seed = 1) {
    CacheOptions o;
    o.dir = dir.toStdString();
    o.key = key_of(key_seed);
    return o;
}

// A 64 MiB tmpfs for the free-space tests, with free-space marks high
// enough to see on it; unmounted when it goes (after the store on it).
struct SmallDisk {
    QTemporaryDir dir;
    QByteArray fs = (dir.path() + "/fs").toLocal8Bit();
    bool mounted = QDir().mkpath(dir.path() + "/fs") &&
                   ::mount("tmpfs", fs.constData(), "tmpfs", 0, "size=64m") == 0;
    ~SmallDisk() {
        if (mounted)
            ::umount2(fs.constData(), MNT_DETACH);
    }
    CacheOptions options(unsigned stop_percent) const {
        CacheOptions o = options_for(dir.path() + "/fs/cache");
        o.codec.compress = false;
        o.free_run_percent = 30;
        o.free_cull_percent = 20;
        o.free_stop_percent = stop_percent;
        return o;
    }
};

std::vector<std::byte> granule(std::uint64_t seed, std::size_t n = 256 << 10) {
    std::mt19937_64 rng(seed);
    std::vector<std::byte> out(n);
    for (auto& b : out)
        b = std::byte(rng() % 7);  // compressible, not trivially
    return out;
}

Version version(std::uint64_t size, long mtime) {
    Version v;
    v.size = size;
    v.mtime = {mtime, 0};
    v.file_id = 77;
    return v;
}

// Stores `count` clean granules of `bytes` random bytes as reads fill them
// (deferred syncs, one sync_data every `sync_every`), then reads them all
// back: how many are still there, or -1 when a put failed for any reason
// but room, or a sync failed.
long fill_deferred(CacheStore& s, std::uint64_t id, std::uint64_t cv, std::uint64_t count, std::size_t bytes,
                   std::uint64_t sync_every) {
    for (std::uint64_t i = 0; i < count; ++i) {
        const auto plain = random_bytes(bytes, unsigned(i));
        const CacheStore::Put put{id, i, plain, false, cv};
        Errc e;
        s.put_many({&put, 1}, e, CacheStore::Sync::later);
        if (e != Errc::ok && e != Errc::no_space) {
            qWarning("put %llu: %d", static_cast<unsigned long long>(i), int(e));
            return -1;
        }
        if (i % sync_every == sync_every - 1 && s.sync_data() != Errc::ok)
            return -1;
    }
    if (s.sync_data() != Errc::ok)
        return -1;
    long kept = 0;
    std::vector<std::byte> back;
    for (std::uint64_t i = 0; i < count; ++i)
        kept += s.get(id, i, back) == Errc::ok;
    return kept;
}

std::unique_ptr<CacheStore> open_store(const CacheOptions& o) {
    std::unique_ptr<CacheStore> s;
    std::string message;
    if (CacheStore::open(o, s, message) != Errc::ok)
        qFatal("open: %s", message.c_str());
    return s;
}

} // namespace

class TestCacheStore : public QObject {
    Q_OBJECT
private slots:
    // Statements lent by text: the same text twice at once gives two (a
    // query inside another's loop), and one handed back mid-query is reset,
    // holding no read transaction that would keep the log from a checkpoint.
    void cached_statements_are_lent_once_and_reset_when_handed_back() {
        QTemporaryDir dir;
        sqlite3* db = nullptr;
        QCOMPARE(sqlite3_open((dir.path() + "/t.db").toUtf8().constData(), &db), SQLITE_OK);
        QCOMPARE(sqlite3_exec(db, "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);",
                              nullptr, nullptr, nullptr),
                 SQLITE_OK);
        const auto busy_statements = [db] {
            int busy = 0;
            for (sqlite3_stmt* s = sqlite3_next_stmt(db, nullptr); s; s = sqlite3_next_stmt(db, s))
                busy += sqlite3_stmt_busy(s) != 0;
            return busy;
        };
        {
            StmtCache cache(db);
            const std::string query = "SELECT x FROM t ORDER BY x";
            int pairs = 0;
            {
                Stmt outer = cache.get(query);
                QVERIFY(outer.ok());
                while (outer.step() == SQLITE_ROW) {
                    Stmt inner = cache.get(query);
                    while (inner.step() == SQLITE_ROW)
                        pairs += outer.col(0) <= inner.col(0);
                }
            }
            QCOMPARE(pairs, 6);  // (1,1..3), (2,2..3), (3,3): two statements, each whole
            {
                Stmt q = cache.get(query);
                QCOMPARE(q.step(), SQLITE_ROW);  // handed back mid-query
                QCOMPARE(busy_statements(), 1);
            }
            QCOMPARE(busy_statements(), 0);
            Stmt again = cache.get(query);
            QCOMPARE(again.step(), SQLITE_ROW);
            QCOMPARE(again.col(0), std::int64_t(1));  // from the start
            QVERIFY(!cache.get("SELECT nonsense FROM nowhere").ok());
        }
        QCOMPARE(sqlite3_close(db), SQLITE_OK);  // every statement finalized
    }

    void put_get_and_reopen() {
        QTemporaryDir dir;
        std::uint64_t id = 0, cv = 0;
        {
            auto s = open_store(options_for(dir.path()));
            QCOMPARE(s->object("/a/file", version(1 << 20, 100), id, cv), Errc::ok);
            for (std::uint64_t i = 0; i < 4; ++i)
                QCOMPARE(s->put(id, i, granule(i), false), Errc::ok);
            std::vector<std::byte> back;
            QCOMPARE(s->get(id, 2, back), Errc::ok);
            QVERIFY(back == granule(2));
            QCOMPARE(s->get(id, 9, back), Errc::not_found);
        }
        auto s = open_store(options_for(dir.path()));
        std::uint64_t again = 0;
        QCOMPARE(s->object("/a/file", version(1 << 20, 100), again, cv), Errc::ok);
        QCOMPARE(again, id);
        std::vector<std::byte> back;
        for (std::uint64_t i = 0; i < 4; ++i) {
            QCOMPARE(s->get(id, i, back), Errc::ok);
            QVERIFY(back == granule(i));
        }
        const CacheStats st = s->stats();
        QCOMPARE(st.granules, 4u);
        QCOMPARE(st.logical_bytes, 4u * (256 << 10));
        QVERIFY2(st.stored_bytes < st.logical_bytes / 2, "compressible data is stored compressed");
        QFileInfo db(dir.path() + "/cache.db");
        QCOMPARE(int(db.permissions() & (QFile::ReadGroup | QFile::ReadOther)), 0);
    }

    // Dropped and replaced records free their space (holes), packs left with
    // nothing live are deleted, mostly dead ones compacted; every live
    // granule still reads back, also after a reopen.
    void dead_space_is_reclaimed_and_packs_compacted() {
        QTemporaryDir dir;
        CacheOptions o = options_for(dir.path());
        o.codec.compress = false;  // records of a known size: 4 granules of 256K a pack
        o.pack_limit = 1100 << 10;
        std::uint64_t id = 0, cv = 0;
        auto s = open_store(o);
        QCOMPARE(s->object("/big", version(32 << 20, 1), id, cv), Errc::ok);
        for (std::uint64_t i = 0; i < 32; ++i)  // 8 packs
            QCOMPARE(s->put(id, i, granule(i), false), Errc::ok);
        const CacheStats full = s->stats();
        QCOMPARE(full.packs, std::uint64_t(8));
        // Packs 1-6: everything dropped but granule 0 (pack 1 is then a
        // quarter live: compacted) and granule 5 (pack 2). Packs 3-6 die whole.
        QCOMPARE(s->drop_range(id, 1, 3), Errc::ok);
        QCOMPARE(s->drop_range(id, 6, 23), Errc::ok);
        QCOMPARE(s->put(id, 4, granule(104), false), Errc::ok);  // a replaced record is dead too
        const CacheStats after = s->stats();
        QVERIFY2(after.packs <= 4, qPrintable(QString::number(after.packs)));
        QVERIFY2(after.compacted >= 1, "the mostly dead packs' live records were moved");
        QVERIFY2(after.disk_bytes < full.disk_bytes / 2,
                 qPrintable(QString("%1 of %2").arg(after.disk_bytes).arg(full.disk_bytes)));
        auto check = [&](CacheStore& store) {
            std::vector<std::byte> back;
            for (std::uint64_t i = 0; i < 32; ++i) {
                const bool live = i == 0 || i == 4 || i == 5 || i >= 24;
                QCOMPARE(store.get(id, i, back), live ? Errc::ok : Errc::not_found);
                if (live)
                    QVERIFY(back == granule(i == 4 ? 104 : i));
            }
        };
        check(*s);
        s.reset();
        auto again = open_store(o);
        QCOMPARE(again->object("/big", version(32 << 20, 1), id, cv), Errc::ok);
        check(*again);
        QDir packs(dir.path() + "/packs");
        QCOMPARE(std::uint64_t(packs.entryList(QDir::Files).size()), again->stats().packs);
    }

    // Offline writes are stored with Sync::later: durable at sync_data()
    // (fsync), not at each put. Until then a record they replaced keeps its
    // space: after a crash of the machine the old row, synced, may be what
    // comes back, and its bytes must still be there.
    void later_puts_keep_what_they_replace_until_synced() {
        QTemporaryDir dir;
        CacheOptions o = options_for(dir.path());
        o.codec.compress = false;  // records of a known size
        std::uint64_t id = 0, cv = 0;
        auto s = open_store(o);
        QCOMPARE(s->object("local:1", Version{}, id, cv, CacheStore::Sync::later), Errc::ok);
        auto put4 = [&](std::uint64_t seed, CacheStore::Sync sync) {
            std::vector<std::vector<std::byte>> bytes;
            std::vector<CacheStore::Put> puts;
            for (std::uint64_t i = 0; i < 4; ++i)
                bytes.push_back(granule(seed + i));
            for (std::uint64_t i = 0; i < 4; ++i)
                puts.push_back({id, i, bytes[i], true, 0});
            Errc e = Errc::ok;
            QCOMPARE(s->put_many(puts, e, sync), std::size_t(4));
            QCOMPARE(e, Errc::ok);
        };
        put4(0, CacheStore::Sync::now);
        const std::uint64_t first = s->stats().disk_bytes;
        put4(100, CacheStore::Sync::later);
        const std::uint64_t replaced = s->stats().disk_bytes;
        QVERIFY2(replaced >= first + (4u << 18), qPrintable(QString("%1 then %2").arg(first).arg(replaced)));
        std::vector<std::byte> back;
        QCOMPARE(s->get(id, 2, back), Errc::ok);
        QVERIFY(back == granule(102));
        QCOMPARE(s->sync_data(), Errc::ok);
        const std::uint64_t synced = s->stats().disk_bytes;
        QVERIFY2(synced + (3u << 18) <= replaced, qPrintable(QString("%1 then %2").arg(replaced).arg(synced)));
        put4(200, CacheStore::Sync::later);  // left unsynced: a crash of the daemon keeps it
        s.reset();
        auto again = open_store(o);
        QCOMPARE(again->object("local:1", Version{}, id, cv), Errc::ok);
        for (std::uint64_t i = 0; i < 4; ++i) {
            QCOMPARE(again->get(id, i, back), Errc::ok);
            QVERIFY(back == granule(200 + i));
        }
    }

    void a_new_remote_version_drops_clean_granules_not_dirty_ones() {
        QTemporaryDir dir;
        auto s = open_store(options_for(dir.path()));
        std::uint64_t id = 0, cv = 0;
        QCOMPARE(s->object("/f", version(100, 1), id, cv), Errc::ok);
        QCOMPARE(s->put(id, 0, granule(10), false), Errc::ok);
        QCOMPARE(s->put(id, 1, granule(11), true), Errc::ok);  // dirty: not on the remote yet
        QCOMPARE(s->object("/f", version(100, 2), id, cv), Errc::ok);  // someone changed the file
        std::vector<std::byte> back;
        QCOMPARE(s->get(id, 0, back), Errc::not_found);
        QCOMPARE(s->get(id, 1, back), Errc::ok);
        QVERIFY(back == granule(11));
        QCOMPARE(s->stats().dirty_bytes, std::uint64_t(256 << 10));
    }

    void a_put_read_under_an_older_version_is_refused() {
        QTemporaryDir dir;
        auto s = open_store(options_for(dir.path()));
        std::uint64_t id = 0, cv = 0, cv2 = 0;
        QCOMPARE(s->object("/f", version(100, 1), id, cv), Errc::ok);
        QCOMPARE(s->object("/f", version(200, 2), id, cv2), Errc::ok);  // the remote moved meanwhile
        QVERIFY(cv2 != cv);
        QCOMPARE(s->put(id, 0, granule(1), false, cv), Errc::bad_handle);
        std::vector<std::byte> back;
        QCOMPARE(s->get(id, 0, back), Errc::not_found);
        QCOMPARE(s->put(id, 0, granule(1), false, cv2), Errc::ok);
        QCOMPARE(s->accept_version(id, version(300, 3)), Errc::ok);  // our own write moved it
        QCOMPARE(s->object("/f", version(300, 3), id, cv), Errc::ok);
        QCOMPARE(cv, cv2);
        QCOMPARE(s->get(id, 0, back), Errc::ok);
        QCOMPARE(s->drop_range(id, 0, 0), Errc::ok);
        QCOMPARE(s->get(id, 0, back), Errc::not_found);
    }

    // Past the size limit, the least recently used clean granules go (and
    // their disk space with them); dirty ones never do.
    void stays_under_the_size_limit_by_lru() {
        QTemporaryDir dir;
        CacheOptions o = options_for(dir.path());
        o.codec.compress = false;  // record sizes then follow granule sizes
        o.size_limit = 4 << 20;    // 16 granules of 256 KiB
        auto s = open_store(o);
        std::uint64_t id = 0, cv = 0, pinned = 0;
        QCOMPARE(s->object("/big", version(1, 1), id, cv), Errc::ok);
        auto noise = [](std::uint64_t seed) { return random_bytes(256 << 10, unsigned(seed)); };
        QCOMPARE(s->object("/pinned", version(1, 1), pinned, cv), Errc::ok);
        QCOMPARE(s->set_pinned(pinned, true), Errc::ok);
        QCOMPARE(s->put(pinned, 0, noise(100), false), Errc::ok);  // pinned (and the oldest): never culled
        QCOMPARE(s->put(pinned, 1, noise(101), false), Errc::ok);
        QCOMPARE(s->put(id, 0, noise(0), true), Errc::ok);  // dirty: never culled
        for (std::uint64_t i = 1; i < 12; ++i)
            QCOMPARE(s->put(id, i, noise(i), false), Errc::ok);
        std::vector<std::byte> back;
        QCOMPARE(s->get(id, 1, back), Errc::ok);  // 1 is now recently used
        for (std::uint64_t i = 12; i < 40; ++i)
            QCOMPARE(s->put(id, i, noise(i), false), Errc::ok);
        const CacheStats st = s->stats();
        QVERIFY2(st.stored_bytes <= o.size_limit, qPrintable(QString::number(st.stored_bytes)));
        QVERIFY(st.culled > 0);
        QCOMPARE(s->get(id, 0, back), Errc::ok);  // the dirty granule survived
        QVERIFY(back == noise(0));
        for (std::uint64_t i = 0; i < 2; ++i) {  // and the pinned object's
            QCOMPARE(s->get(pinned, i, back), Errc::ok);
            QVERIFY(back == noise(100 + i));
        }
        QCOMPARE(st.pinned_bytes, std::uint64_t(512 << 10));
        QCOMPARE(s->get(id, 2, back), Errc::not_found);  // old and unused: culled first
        QCOMPARE(s->get(id, 39, back), Errc::ok);        // the newest stays
        QVERIFY(back == noise(39));
        // The space is given back: what the disk holds follows the limit.
        QVERIFY2(st.disk_bytes < o.size_limit + (2 << 20), qPrintable(QString::number(st.disk_bytes)));
        // `netfs cache evict` spares them too.
        QCOMPARE(s->evict_clean(), std::uint64_t(st.logical_bytes - st.pinned_bytes - st.dirty_bytes));
        QCOMPARE(s->get(pinned, 0, back), Errc::ok);  // evict spares it too
        QCOMPARE(s->get(id, 0, back), Errc::ok);
    }

    // On a small filesystem the cache culls below the cull mark and pauses
    // below the stop mark: it never fills the disk.
    void free_space_watermarks_keep_the_disk_from_filling() {
        SmallDisk disk;
        QVERIFY(disk.mounted);
        const QByteArray& fs = disk.fs;
        {
            auto s = open_store(disk.options(10));
            std::uint64_t id = 0, cv = 0;
            QCOMPARE(s->object("/f", version(1, 1), id, cv), Errc::ok);
            for (std::uint64_t i = 0; i < 400; ++i) {  // 100 MiB into a 64 MiB filesystem
                const Errc e = s->put(id, i, random_bytes(256 << 10, unsigned(i)), false);
                QVERIFY2(e == Errc::ok || e == Errc::no_space, qPrintable(QString("put %1: %2").arg(i).arg(int(e))));
                struct statvfs sv;
                QCOMPARE(::statvfs(fs.constData(), &sv), 0);
                QVERIFY2(sv.f_bavail * 100 >= sv.f_blocks * 5, "the filesystem never runs out");
            }
            QVERIFY(s->stats().culled > 0);
            std::vector<std::byte> back;
            QCOMPARE(s->get(id, 399, back), Errc::ok);  // recent data is kept
            QVERIFY(back == random_bytes(256 << 10, 399));
        }
    }

    // Data written while disconnected has nowhere else to go: it may fill
    // the disk further than cache fills, past the stop mark and at the
    // cost of clean granules, but not the last 16 MiB. There it is refused
    // with ENOSPC (never EIO), everything taken before reads back, and the
    // reserve leaves room to remove files, after which writes go on.
    void dirty_data_fills_the_disk_down_to_a_reserve() {
        SmallDisk disk;
        QVERIFY(disk.mounted);
        {
            auto s = open_store(disk.options(1));
            std::uint64_t clean = 0, dirty = 0, cv = 0;
            QCOMPARE(s->object("/clean", version(1, 1), clean, cv), Errc::ok);
            QCOMPARE(s->object("/dirty", version(1, 1), dirty, cv), Errc::ok);
            for (std::uint64_t i = 0; i < 20; ++i)
                QCOMPARE(s->put(clean, i, random_bytes(256 << 10, unsigned(1000 + i)), false), Errc::ok);
            std::uint64_t taken = 0;
            Errc e = Errc::ok;
            for (; taken < 400; ++taken) {  // 100 MiB into a 64 MiB filesystem
                const auto bytes = random_bytes(256 << 10, unsigned(taken));
                const CacheStore::Put put{dirty, taken, bytes, true, 0};
                s->put_many({&put, 1}, e, CacheStore::Sync::later);
                if (e != Errc::ok)
                    break;
            }
            QCOMPARE(e, Errc::no_space);
            qInfo("%llu MiB of dirty data taken", static_cast<unsigned long long>(taken / 4));
            QVERIFY2(taken >= 4 * 36, qPrintable(QString::number(taken)));  // clean data made room
            QCOMPARE(s->sync_data(), Errc::ok);
            struct statvfs sv;
            QCOMPARE(::statvfs(disk.fs.constData(), &sv), 0);
            QVERIFY2(sv.f_bavail * sv.f_frsize >= (12u << 20), qPrintable(QString::number(sv.f_bavail * sv.f_frsize)));
            for (std::uint64_t i = 0; i < taken; ++i) {
                std::vector<std::byte> back;
                QCOMPARE(s->get(dirty, i, back), Errc::ok);
                QVERIFY(back == random_bytes(256 << 10, unsigned(i)));
            }
            // Removing a file frees its space; writes are taken again.
            QCOMPARE(s->drop_object(dirty), Errc::ok);
            QCOMPARE(s->sync_data(), Errc::ok);
            std::uint64_t again = 0;
            QCOMPARE(s->object("/again", version(1, 1), again, cv), Errc::ok);
            const auto bytes = random_bytes(256 << 10, 7);
            const CacheStore::Put put{again, 0, bytes, true, 0};
            s->put_many({&put, 1}, e, CacheStore::Sync::later);
            QCOMPARE(e, Errc::ok);
        }
    }

    // Deferred puts (cache fills) free the space of what they cull only at
    // the next synced commit (the daemon makes one every 500 ms): until
    // then, culled records count as free, or each put would cull as much
    // again and the cache would empty itself.
    void deferred_puts_cull_no_more_than_needed() {
        SmallDisk disk;
        QVERIFY(disk.mounted);
        {
            auto s = open_store(disk.options(5));
            std::uint64_t id = 0, cv = 0;
            QCOMPARE(s->object("/f", version(1, 1), id, cv), Errc::ok);
            const long kept = fill_deferred(*s, id, cv, 400, 256 << 10, 8);
            qInfo("%ld of 400 granules kept", kept);
            // Between the run mark (30% free) and the stop mark: about 40 MiB
            // of a 64 MiB disk is the cache's to keep.
            QVERIFY2(kept >= 150, qPrintable(QString::number(kept)));  // 122 when culled records did not count
        }
    }

    // Records kept in rows free database pages, not disk space: the free
    // list counts as room, or every put below the cull mark would cull as
    // much again until no small record was left.
    void culling_small_records_stops_once_their_pages_are_free() {
        SmallDisk disk;
        QVERIFY(disk.mounted);
        auto s = open_store(disk.options(5));
        std::uint64_t id = 0, cv = 0;
        QCOMPARE(s->object("/small", version(1, 1), id, cv), Errc::ok);
        const long kept = fill_deferred(*s, id, cv, 14000, 4096, 64);  // about 70 MiB in rows: more than the disk
        qInfo("%ld of 14000 small records kept", kept);
        QVERIFY2(s->stats().culled > 0, "the disk filled and culling ran");
        QVERIFY2(kept >= 4000, qPrintable(QString::number(kept)));
    }

    // A small record (a small file's granule) is kept in its row, where the
    // database's log makes it durable with the row: no pack write, no pack
    // sync. It is checked like any other: damage is never returned.
    void small_records_live_in_their_rows_and_are_checked_alike() {
        QTemporaryDir dir;
        std::uint64_t id = 0, cv = 0;
        const auto packed = [&] {
            qint64 bytes = 0;
            for (QDirIterator it(dir.path() + "/packs", QDir::Files); it.hasNext();)
                bytes += QFileInfo(it.next()).size();
            return bytes;
        };
        {
            auto s = open_store(options_for(dir.path()));
            QCOMPARE(s->object("/f", version(100, 1), id, cv), Errc::ok);
            QCOMPARE(s->put(id, 0, granule(1, 2048), true), Errc::ok);
            QCOMPARE(packed(), 0);
            QCOMPARE(s->put(id, 1, granule(2), false), Errc::ok);
            QVERIFY(packed() > 8192);  // a large one is
        }
        std::vector<std::byte> back;
        {
            auto s = open_store(options_for(dir.path()));
            QCOMPARE(s->get(id, 0, back), Errc::ok);
            QVERIFY(back == granule(1, 2048));
            QCOMPARE(s->get(id, 1, back), Errc::ok);
            QVERIFY(back == granule(2));
        }
        // One byte of the row's record flipped.
        sqlite3* db = nullptr;
        QCOMPARE(sqlite3_open((dir.path() + "/cache.db").toUtf8().constData(), &db), SQLITE_OK);
        {
            Stmt q(db, "SELECT record FROM granules WHERE idx = 0");
            QCOMPARE(q.step(), SQLITE_ROW);
            std::vector<std::uint8_t> record = q.blob(0);
            q.reset();
            QVERIFY(record.size() > 100);
            record[record.size() / 2] ^= 0x40;
            Stmt u(db, "UPDATE granules SET record = ?1 WHERE idx = 0");
            QVERIFY(u.bind_blob(1, record.data(), int(record.size())).run());
        }
        sqlite3_close(db);
        auto s = open_store(options_for(dir.path()));
        QCOMPARE(s->get(id, 0, back), Errc::not_found);
        QCOMPARE(s->stats().damaged, 1u);
        QCOMPARE(s->stats().granules, 1u);  // the damaged row is gone ...
        QCOMPARE(s->get(id, 0, back), Errc::not_found);
        QCOMPARE(s->stats().damaged, 1u);  // ... and not found damaged again
        QCOMPARE(s->get(id, 1, back), Errc::ok);
        QVERIFY(back == granule(2));
        QVERIFY2(!QFile::exists(dir.path() + "/packs/000000"), "a row's record is never looked for in a pack");
    }

    // An object handed out deferred (a file opened, not cached yet) costs
    // no transaction of its own: its row goes in with its first granules.
    // Until then whatever asks by path or id sees it all the same, a new
    // version still makes older reads stale, and no id is given twice.
    void a_deferred_object_is_written_with_its_first_granules() {
        QTemporaryDir dir;
        using Sync = CacheStore::Sync;
        std::uint64_t a = 0, b = 0, c = 0, d = 0, cva = 0, cvb = 0, cvc = 0, cvd = 0, again = 0, cv_again = 0;
        std::vector<std::byte> back;
        {
            auto s = open_store(options_for(dir.path()));
            QCOMPARE(s->object("/dir/a", version(100, 1), a, cva, Sync::deferred), Errc::ok);
            QCOMPARE(s->object("/dir/b", version(100, 1), b, cvb, Sync::deferred), Errc::ok);
            QVERIFY(a != b);
            QCOMPARE(s->object("/dir/a", version(100, 1), again, cv_again, Sync::deferred), Errc::ok);
            QCOMPARE(again, a);
            QCOMPARE(cv_again, cva);
            // Read under the old version, stored after the new one was seen: stale.
            QCOMPARE(s->object("/dir/b", version(200, 2), again, cv_again, Sync::deferred), Errc::ok);
            QCOMPARE(again, b);
            QVERIFY(cv_again != cvb);
            Errc error = Errc::ok;
            const auto old_bytes = granule(7);
            const CacheStore::Put stale{b, 0, old_bytes, false, cvb};
            QCOMPARE(s->put_many({&stale, 1}, error), std::size_t(0));
            QCOMPARE(error, Errc::ok);
            QCOMPARE(s->get(b, 0, back), Errc::not_found);
            // Pinning by path reaches an object whose row waited.
            QCOMPARE(s->object("/dir/d", version(100, 1), d, cvd, Sync::deferred), Errc::ok);
            QCOMPARE(s->set_pinned_under("/dir", true), Errc::ok);
            QCOMPARE(s->put(d, 0, granule(4), false, cvd), Errc::ok);
            // A row written at once takes an id of its own.
            QCOMPARE(s->object("/c", version(100, 1), c, cvc), Errc::ok);
            QVERIFY(c != a && c != b && c != d);
            QCOMPARE(s->put(a, 0, granule(1), false, cva), Errc::ok);
            QCOMPARE(s->get(a, 0, back), Errc::ok);
            QVERIFY(back == granule(1));
            QCOMPARE(s->object("/never", version(1, 1), again, cv_again, Sync::deferred), Errc::ok);
        }
        auto s = open_store(options_for(dir.path()));
        std::uint64_t found = 0;
        QCOMPARE(s->find_object("/dir/a", found), Errc::ok);
        QCOMPARE(found, a);
        QCOMPARE(s->get(a, 0, back), Errc::ok);
        QVERIFY(back == granule(1));
        QCOMPARE(s->get(d, 0, back), Errc::ok);
        std::uint64_t pinned = 0;
        QCOMPARE(s->pinned_bytes_under("/dir", pinned), Errc::ok);
        QCOMPARE(pinned, std::uint64_t(granule(4).size() + granule(1).size()));  // /dir/d's and /dir/a's
        QCOMPARE(s->find_object("/never", found), Errc::not_found);  // nothing stored: never written
        std::uint64_t e = 0, cve = 0;
        QCOMPARE(s->object("/e", version(1, 1), e, cve, Sync::deferred), Errc::ok);
        QVERIFY(e != a && e != b && e != c && e != d);
    }

    // A cache made by the netfs before records could live in rows (format
    // 1) opens, keeps what it holds, and takes small records from then on.
    void a_format_1_cache_is_brought_forward() {
        QTemporaryDir dir;
        std::uint64_t id = 0, cv = 0;
        {
            auto s = open_store(options_for(dir.path()));
            QCOMPARE(s->object("/f", version(100, 1), id, cv), Errc::ok);
            QCOMPARE(s->put(id, 1, granule(2), true), Errc::ok);
        }
        sqlite3* db = nullptr;
        QCOMPARE(sqlite3_open((dir.path() + "/cache.db").toUtf8().constData(), &db), SQLITE_OK);
        const std::int64_t one = 1;
        Stmt schema(db, "UPDATE meta SET value = ?1 WHERE key = 'schema'");
        QVERIFY(schema.bind_blob(1, &one, sizeof one).run());
        QCOMPARE(sqlite3_exec(db,
                              "ALTER TABLE granules DROP COLUMN record; DROP TRIGGER granule_gone;"
                              "CREATE TRIGGER granule_gone AFTER DELETE ON granules BEGIN"
                              " INSERT INTO dead(pack, offset, length) VALUES(old.pack, old.offset, old.length); END;",
                              nullptr, nullptr, nullptr),
                 SQLITE_OK);
        schema = Stmt();
        sqlite3_close(db);
        std::vector<std::byte> back;
        {
            auto s = open_store(options_for(dir.path()));
            QCOMPARE(s->get(id, 1, back), Errc::ok);
            QVERIFY(back == granule(2));
            QCOMPARE(s->put(id, 0, granule(1, 2048), true), Errc::ok);
            QCOMPARE(s->drop_from(id, 0), Errc::ok);  // a row's record gone: no hole to punch
            QCOMPARE(s->put(id, 0, granule(3, 2048), true), Errc::ok);
        }
        auto s = open_store(options_for(dir.path()));
        QCOMPARE(s->get(id, 0, back), Errc::ok);
        QVERIFY(back == granule(3, 2048));
        QVERIFY(!QFile::exists(dir.path() + "/packs/000000"));
    }

    void damage_is_never_returned() {
        QTemporaryDir dir;
        auto s = open_store(options_for(dir.path()));
        std::uint64_t id = 0, cv = 0;
        QCOMPARE(s->object("/f", version(100, 1), id, cv), Errc::ok);
        for (std::uint64_t i = 0; i < 3; ++i)
            QCOMPARE(s->put(id, i, granule(20 + i), false), Errc::ok);
        s.reset();
        // Flip one byte in the middle of the pack file: it hits some record.
        QFile pack(dir.path() + "/packs/000001");
        QVERIFY(pack.open(QIODevice::ReadWrite));
        const qint64 size = pack.size();
        pack.seek(size / 2);
        char c;
        pack.getChar(&c);
        pack.seek(size / 2);
        pack.putChar(char(c ^ 0x40));
        pack.close();
        s = open_store(options_for(dir.path()));
        int good = 0;
        std::vector<std::byte> back;
        for (std::uint64_t i = 0; i < 3; ++i) {
            Errc e = s->get(id, i, back);
            QVERIFY(e == Errc::ok || e == Errc::not_found);
            if (e == Errc::ok) {
                QVERIFY(back == granule(20 + i));  // what comes back is right
                ++good;
            }
        }
        QCOMPARE(good, 2);
        QCOMPARE(s->stats().damaged, 1u);
        QCOMPARE(s->stats().granules, 2u);  // the damaged one was dropped
    }

    void wrong_key_is_refused_and_the_cache_left_alone() {
        QTemporaryDir dir;
        std::uint64_t id = 0, cv = 0;
        {
            auto s = open_store(options_for(dir.path(), 1));
            QCOMPARE(s->object("/f", version(1, 1), id, cv), Errc::ok);
            QCOMPARE(s->put(id, 0, granule(5), false), Errc::ok);
        }
        std::unique_ptr<CacheStore> s;
        std::string message;
        QCOMPARE(CacheStore::open(options_for(dir.path(), 2), s, message), Errc::access);
        QVERIFY2(message.find("wrong key") != std::string::npos, message.c_str());
        CacheOptions plain = options_for(dir.path());
        plain.codec.encrypt = false;
        QCOMPARE(CacheStore::open(plain, s, message), Errc::invalid);
        CacheOptions other_size = options_for(dir.path());
        other_size.granule_size = 1 << 20;
        QCOMPARE(CacheStore::open(other_size, s, message), Errc::invalid);
        s = open_store(options_for(dir.path(), 1));
        std::vector<std::byte> back;
        QCOMPARE(s->get(id, 0, back), Errc::ok);
        QVERIFY(back == granule(5));
    }

    // The cache key is kept wrapped by the user's secret: the same secret
    // opens the cache again, another one is refused without touching it.
    void a_secret_wraps_the_cache_key() {
        QTemporaryDir dir;
        CacheOptions o;
        o.dir = dir.path().toStdString();
        o.secret = std::string("correct horse battery staple\n\0binary", 38);
        std::uint64_t id = 0, cv = 0;
        {
            auto s = open_store(o);
            QCOMPARE(s->object("/f", version(1, 1), id, cv), Errc::ok);
            QCOMPARE(s->put(id, 0, granule(40), false), Errc::ok);
        }
        CacheOptions wrong = o;
        wrong.secret = "correct horse battery staple";
        std::unique_ptr<CacheStore> s;
        std::string message;
        QCOMPARE(CacheStore::open(wrong, s, message), Errc::access);
        QVERIFY2(message.find("wrong key") != std::string::npos, message.c_str());
        s = open_store(o);
        std::vector<std::byte> back;
        QCOMPARE(s->get(id, 0, back), Errc::ok);
        QVERIFY(back == granule(40));
    }

    void no_plaintext_on_disk() {
        QTemporaryDir dir;
        auto s = open_store(options_for(dir.path()));
        std::uint64_t id = 0, cv = 0;
        QCOMPARE(s->object("/secret", version(1, 1), id, cv), Errc::ok);
        std::string text;
        while (text.size() < (256 << 10))
            text += "PLAINTEXT-MARKER-0123456789 ";
        text.resize(256 << 10);
        QCOMPARE(s->put(id, 0, {reinterpret_cast<const std::byte*>(text.data()), text.size()}, true), Errc::ok);
        s.reset();
        QDirIterator it(dir.path(), QDir::Files, QDirIterator::Subdirectories);
        while (it.hasNext()) {
            QFile f(it.next());
            QVERIFY(f.open(QIODevice::ReadOnly));
            QVERIFY2(!f.readAll().contains("PLAINTEXT-MARKER"), qPrintable(f.fileName()));
        }
    }

    // A process killed at random points while storing: every granule whose
    // put() returned is there and verifies after reopening; nothing else
    // ever comes back wrong.
    void crash_at_any_point_loses_nothing_acknowledged_data() {
        QTest::addColumn<int>("bytes");
        QTest::newRow("records in packs") << (64 << 10);
        QTest::newRow("records in rows") << 2048;
    }
    void crash_at_any_point_loses_nothing_acknowledged() {
        QFETCH(int, bytes);
        QTemporaryDir dir;
        CacheOptions o = options_for(dir.path());
        o.granule_size = 64 << 10;
        std::mt19937 rng(2026);
        std::uint64_t next = 0;  // granules acknowledged so far, across runs
        for (int round = 0; round < 20; ++round) {
            int ack[2];
            QCOMPARE(::pipe(ack), 0);
            const pid_t child = ::fork();
            if (child == 0) {
                ::close(ack[0]);
                std::unique_ptr<CacheStore> s;
                std::string message;
                if (CacheStore::open(o, s, message) != Errc::ok)
                    ::_exit(3);
                std::uint64_t id = 0, cv = 0;
                s->object("/crash", version(1, 1), id, cv);
                for (std::uint64_t i = next;; ++i) {
                    if (s->put(id, i, granule(i, std::size_t(bytes)), i % 2 == 0) != Errc::ok)
                        ::_exit(4);
                    if (::write(ack[1], &i, sizeof i) != sizeof i)
                        ::_exit(5);
                }
            }
            ::close(ack[1]);
            ::usleep(1000 * (5 + rng() % 40));
            ::kill(child, SIGKILL);
            std::uint64_t i;
            while (::read(ack[0], &i, sizeof i) == sizeof i)
                next = i + 1;
            ::close(ack[0]);
            int status;
            ::waitpid(child, &status, 0);
            QVERIFY(WIFSIGNALED(status));

            auto s = open_store(o);
            std::uint64_t id = 0, cv = 0;
            QCOMPARE(s->object("/crash", version(1, 1), id, cv), Errc::ok);
            std::vector<std::byte> back;
            for (std::uint64_t g = 0; g < next; ++g) {
                QCOMPARE(s->get(id, g, back), Errc::ok);
                QVERIFY(back == granule(g, std::size_t(bytes)));
            }
            // One more may have committed before its acknowledgement was sent.
            if (s->get(id, next, back) == Errc::ok)
                QVERIFY(back == granule(next, std::size_t(bytes)));
            QCOMPARE(s->stats().damaged, 0u);
        }
        QVERIFY2(next > 20, "the children made progress");
    }
};

QTEST_APPLESS_MAIN(TestCacheStore)
#include "test_cache_store.moc"
