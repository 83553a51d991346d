#include "app/cache_command.h"

#include "app/cache_setup.h"
#include "app/human_bytes.h"

#include <QCommandLineParser>
#include <QDir>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <optional>

namespace netfs {

namespace {

const char* const kUsage =
    "usage: netfs cache stats|verify|evict|clear [REMOTE] [--cache-dir DIR] [options]\n"
    "\n"
    "  stats     sizes (logical, on disk, compression), dirty and pinned bytes\n"
    "  verify    authenticate every granule (damaged ones are dropped and re-read later)\n"
    "  evict     drop cached data that is clean and not pinned\n"
    "  clear     remove the cache (refused while it holds unwritten data, unless --force)\n"
    "\n"
    "  REMOTE              the remote whose default cache to use (as given to netfs mount)\n"
    "  --cache-dir DIR     the cache directory instead\n"
    "  --key-file FILE, --ask-passphrase, --no-encrypt   as for netfs mount (verify)\n"
    "  --force             clear even unwritten data\n"
    "  --json              stats as JSON\n";

int fail(const std::string& message, int code = 1) {
    std::fprintf(stderr, "netfs: %s\n", message.c_str());
    return code;
}

// Holds the cache for ourselves, or says who has it.
class ExclusiveUse {
public:
    explicit ExclusiveUse(const std::string& dir) {
        fd_ = ::open((dir + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        ok_ = fd_ >= 0 && ::flock(fd_, LOCK_EX | LOCK_NB) == 0;
    }
    ~ExclusiveUse() {
        if (fd_ >= 0)
            ::close(fd_);
    }
    bool ok() const { return ok_; }

private:
    int fd_ = -1;
    bool ok_ = false;
};

} // namespace

int run_cache_command(const QStringList& arguments) {
    QCommandLineParser parser;
    const QCommandLineOption help({"h", "help"}, "Show help.");
    const QCommandLineOption cache_dir("cache-dir", "Cache directory.", "DIR");
    const QCommandLineOption key_file("key-file", "Key file.", "FILE");
    const QCommandLineOption ask_passphrase("ask-passphrase", "Ask for a passphrase.");
    const QCommandLineOption no_encrypt("no-encrypt", "Unencrypted cache.");
    const QCommandLineOption force("force", "Clear unwritten data too.");
    const QCommandLineOption json("json", "JSON output.");
    parser.addOptions({help, cache_dir, key_file, ask_passphrase, no_encrypt, force, json});
    if (!parser.parse(QStringList{"netfs"} + arguments))
        return fail(parser.errorText().toStdString() + " (see netfs cache --help)", 2);
    if (parser.isSet(help)) {
        std::fputs(kUsage, stdout);
        return 0;
    }
    QStringList positional = parser.positionalArguments();
    if (positional.isEmpty())
        return fail("cache needs a command: stats, verify, evict or clear (see netfs cache --help)", 2);
    const QString command = positional.takeFirst();
    if (command != "stats" && command != "verify" && command != "evict" && command != "clear")
        return fail("unknown cache command '" + command.toStdString() + "' (see netfs cache --help)", 2);
    if (positional.size() > 1 || (positional.isEmpty() && !parser.isSet(cache_dir)) ||
        (!positional.isEmpty() && parser.isSet(cache_dir)))
        return fail("name the cache by REMOTE or by --cache-dir DIR (see netfs cache --help)", 2);

    CacheRequest request;
    std::string id;
    if (parser.isSet(cache_dir)) {
        request.dir = QDir::current().absoluteFilePath(parser.value(cache_dir)).toStdString();
        id = QFileInfo(QString::fromStdString(request.dir)).fileName().toStdString();  // default dirs are named by id
    } else {
        id = cache_id(positional[0].toStdString());
        request.dir = QDir::homePath().toStdString() + "/.cache/netfs/" + id;
        if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg == '/')
            request.dir = std::string(xdg) + "/netfs/" + id;
    }
    if (!QFileInfo::exists(QString::fromStdString(request.dir + "/cache.db")))
        return fail("no cache in " + request.dir);
    request.encrypt = !parser.isSet(no_encrypt);
    if (parser.isSet(key_file))
        request.key_file = QDir::current().absoluteFilePath(parser.value(key_file)).toStdString();
    if (parser.isSet(ask_passphrase) && command == "verify") {
        std::string error;
        request.ask_passphrase = true;
        if (!read_passphrase(request.passphrase, error))
            return fail(error);
    }

    if (command == "clear") {
        ExclusiveUse use(request.dir);
        if (!use.ok())
            return fail("the cache in " + request.dir + " is in use by a mount: unmount it first");
        std::shared_ptr<CacheStore> store;
        std::string message;
        if (open_cache(request, id, store, message, true) == Errc::ok) {
            const CacheStats s = store->stats();
            if (s.dirty_bytes && !parser.isSet(force))
                return fail("the cache holds " + human_bytes(s.dirty_bytes) +
                            " not yet written to the remote: mount and sync first, or use --force to drop them");
        }  // a cache too damaged to open can always be cleared
        store.reset();
        if (!QDir(QString::fromStdString(request.dir)).removeRecursively())
            return fail("could not remove everything in " + request.dir);
        std::printf("cleared %s\n", request.dir.c_str());
        return 0;
    }

    // Held whenever the database is open here without the store's own lock
    // (metadata only): a mount holds the database for itself (see
    // CacheStore::open), so neither may open it while the other has it.
    std::optional<ExclusiveUse> use(std::in_place, request.dir);
    if (!use->ok())
        return fail("the cache in " + request.dir + " is in use by a mount: " +
                    (command == "stats" ? "`netfs status MOUNTPOINT` shows its use, or unmount it first"
                                        : "unmount it first"));
    std::shared_ptr<CacheStore> store;  // closed before `use` lets go
    std::string message;
    const bool metadata_only = command != "verify";
    if (Errc e = open_cache(request, id, store, message, true); e != Errc::ok)
        return fail(message);
    if (!store->owner().empty())
        id = store->owner();  // names the generated key, wherever the cache lives
    if (!metadata_only) {
        store.reset();
        use.reset();  // the store takes the lock itself
        if (Errc e = open_cache(request, id, store, message, false, false); e != Errc::ok)
            return fail(message);
    }

    if (command == "stats") {
        const CacheStats s = store->stats();
        const double ratio = s.logical_bytes ? double(s.stored_bytes) / double(s.logical_bytes) : 1.0;
        if (parser.isSet(json)) {
            QJsonObject o{{"cache", QString::fromStdString(request.dir)},
                          {"granule_size", qint64(store->granule_size())},
                          {"objects", qint64(s.objects)},
                          {"granules", qint64(s.granules)},
                          {"logical_bytes", qint64(s.logical_bytes)},
                          {"stored_bytes", qint64(s.stored_bytes)},
                          {"disk_bytes", qint64(s.disk_bytes)},
                          {"dirty_bytes", qint64(s.dirty_bytes)},
                          {"pinned_bytes", qint64(s.pinned_bytes)}};
            std::printf("%s\n", QJsonDocument(o).toJson(QJsonDocument::Indented).constData());
            return 0;
        }
        std::printf("cache     %s\n", request.dir.c_str());
        std::printf("objects   %llu\n", static_cast<unsigned long long>(s.objects));
        std::printf("granules  %llu of %s\n", static_cast<unsigned long long>(s.granules),
                    human_bytes(store->granule_size()).c_str());
        std::printf("logical   %s\n", human_bytes(s.logical_bytes).c_str());
        std::printf("stored    %s (%.0f%% of logical after compression)\n", human_bytes(s.stored_bytes).c_str(),
                    ratio * 100);
        std::printf("on disk   %s (including space not yet compacted)\n", human_bytes(s.disk_bytes).c_str());
        std::printf("dirty     %s\n", human_bytes(s.dirty_bytes).c_str());
        std::printf("pinned    %s\n", human_bytes(s.pinned_bytes).c_str());
        return 0;
    }
    if (command == "evict") {
        std::printf("dropped %s of clean cached data\n", human_bytes(store->evict_clean()).c_str());
        return 0;
    }
    // verify
    const bool tty = ::isatty(STDERR_FILENO);
    const std::uint64_t damaged = store->verify([&](std::uint64_t done, std::uint64_t total) {
        if (tty)
            std::fprintf(stderr, "\rverifying %llu/%llu granules", static_cast<unsigned long long>(done),
                         static_cast<unsigned long long>(total));
    });
    if (tty)
        std::fputc('\n', stderr);
    const CacheStats s = store->stats();
    std::printf("%llu granules verified, %llu damaged", static_cast<unsigned long long>(s.granules + damaged),
                static_cast<unsigned long long>(damaged));
    std::printf(damaged ? " (dropped: they will be read from the remote again)\n" : "\n");
    return damaged ? 1 : 0;
}

} // namespace netfs
