// netfs: the command line.
//
//   netfs mount REMOTE MOUNTPOINT [-o OPT[,OPT...]]... [-f] [--log-file FILE] [-d]
//   netfs REMOTE MOUNTPOINT -o OPTS        (what mount.fuse3 runs for mount -t fuse.netfs)
//   netfs unmount MOUNTPOINT               (alias: umount)
//
// Exit codes: 0 success, 1 the operation failed, 2 the command line is wrong.
// Every error is one line on stderr starting with "netfs: ".
//
// There is deliberately no QCoreApplication here: `mount` forks the daemon,
// and nothing may start a thread before that (see mount_command.h).
// QCommandLineParser::parse() needs no application object.
#include "app/cache_command.h"
#include "app/mount_command.h"
#include "app/mount_options.h"
#include "app/status_command.h"
#include "app/sync_commands.h"

#include <malloc.h>
#include <QCommandLineParser>
#include <QDir>
#include <QStringList>

#include <cstdio>

namespace {

constexpr int kUsageError = 2;

const char* const kUsage =
    "usage: netfs mount REMOTE MOUNTPOINT [-o OPTIONS] [-f] [--log-file FILE] [-d]\n"
    "       netfs unmount MOUNTPOINT\n"
    "       netfs status [MOUNTPOINT] [--json]\n"
    "       netfs offline|online|sync|conflicts MOUNTPOINT [--json]\n"
    "       netfs pin|unpin PATH... [--wait]   netfs resolve PATH... --keep local|remote|both\n"
    "       netfs cache stats|verify|evict|clear [REMOTE | --cache-dir DIR]\n"
    "       netfs --help | --version\n"
    "\n"
    "Commands:\n"
    "  mount      mount REMOTE (sftp://, nfs://, file://) on the directory MOUNTPOINT\n"
    "  unmount    unmount MOUNTPOINT after writing back its data (alias: umount)\n"
    "  status     what running mounts report: server, cache, pending data\n"
    "  offline    stop talking to the server; changes are logged (online: resume)\n"
    "  sync       replay logged changes on the server now and wait for the end\n"
    "  conflicts  changes that collided with the server's, and where both versions are\n"
    "  resolve    settle a conflict: keep the local version, the server's, or both\n"
    "  pin        keep files and folders available offline (unpin: stop)\n"
    "  cache      look after a persistent cache (see netfs cache --help)\n"
    "\n"
    "See netfs mount --help for the mount options.\n";

const char* const kMountUsage =
    "usage: netfs mount REMOTE MOUNTPOINT [-o OPTIONS]... [-f] [--log-file FILE] [-d]\n"
    "\n"
    "Mounts REMOTE on the directory MOUNTPOINT and returns once the mount is up;\n"
    "a daemon serves it until `netfs unmount MOUNTPOINT`.\n"
    "\n"
    "  -o OPTIONS        comma-separated mount options (below); may be repeated\n"
    "  -f, --foreground  stay in the foreground and log to stderr\n"
    "  --log-file FILE   log here instead of ~/.local/state/netfs/MOUNTPOINT.log\n"
    "  -d, --debug       log at debug level, every FUSE request included\n"
    "\n"
    "Persistent cache (compressed with zstd, encrypted with AES-256-GCM):\n"
    "  --cache-dir DIR     where it lives (default ~/.cache/netfs/<remote id>)\n"
    "  --key-file FILE     unlock it with FILE's content (FILE must be mode 600)\n"
    "  --ask-passphrase    unlock it with a passphrase typed on the terminal\n"
    "                      (default: a secret in the desktop keyring; without one,\n"
    "                      a generated key in ~/.config/netfs/keys/, 600)\n"
    "  --granule-size SIZE cache unit, a power of two from 64K to 2M (default 256K)\n"
    "  --cache-size SIZE   keep the cache under SIZE (least recently used data goes first)\n"
    "  --cache-free RUN,CULL,STOP  free space of the cache's filesystem, in percent:\n"
    "                      below CULL culling frees space up to RUN; below STOP\n"
    "                      nothing new is cached (default 7,5,1, as cachefilesd)\n"
    "  --no-encrypt, --no-compress, --no-cache\n"
    "\n"
    "REMOTE:\n"
    "  sftp://[user@]host[:port]/path   an SSH server (see the sftp options below)\n"
    "  nfs://host[:port]/export/path    an NFS server (?nfsport=N&mountport=M: no rpcbind needed)\n"
    "  file:///abs/path  a local directory (options: latency_ms, bandwidth_mbs, faults,\n"
    "                    rsize, wsize, max_in_flight as ?name=value&...)\n"
    "\n"
    "Mount options:\n";

const char* const kUnmountUsage =
    "usage: netfs unmount MOUNTPOINT\n"
    "\n"
    "Unmounts MOUNTPOINT and waits (up to 60 s) until its daemon has written back\n"
    "all data. Fails if the mount is busy or the data could not be written.\n";

int usage_error(const QString& message) {
    std::fprintf(stderr, "netfs: %s\n", qPrintable(message));
    return kUsageError;
}

// QCommandLineParser's "Unknown option 'x'." as one of our lines.
QString parser_error(const QCommandLineParser& parser, const char* command) {
    QString text = parser.errorText();
    if (text.endsWith('.'))
        text.chop(1);
    if (!text.isEmpty())
        text[0] = text[0].toLower();
    return QStringLiteral("%1 (see netfs %2 --help)").arg(text, QLatin1String(command));
}

int mount_main(const QStringList& arguments) {
    QCommandLineParser parser;
    const QCommandLineOption help({"h", "help"}, "Show help.");
    const QCommandLineOption options("o", "Mount options.", "OPTIONS");
    const QCommandLineOption foreground({"f", "foreground"}, "Stay in the foreground.");
    const QCommandLineOption log_file("log-file", "Log file.", "FILE");
    const QCommandLineOption debug({"d", "debug"}, "Debug logging.");
    const QCommandLineOption cache_dir("cache-dir", "Cache directory.", "DIR");
    const QCommandLineOption granule_size("granule-size", "Granule size.", "SIZE");
    const QCommandLineOption key_file("key-file", "Key file.", "FILE");
    const QCommandLineOption ask_passphrase("ask-passphrase", "Ask for a passphrase.");
    const QCommandLineOption no_encrypt("no-encrypt", "Do not encrypt the cache.");
    const QCommandLineOption no_compress("no-compress", "Do not compress the cache.");
    const QCommandLineOption no_cache("no-cache", "No persistent cache.");
    const QCommandLineOption cache_size("cache-size", "Cache size limit.", "SIZE");
    const QCommandLineOption cache_free("cache-free", "Free-space watermarks.", "RUN,CULL,STOP");
    parser.addOptions({help, options, foreground, log_file, debug, cache_dir, granule_size, key_file, ask_passphrase,
                       no_encrypt, no_compress, no_cache, cache_size, cache_free});
    parser.addPositionalArgument("REMOTE", "The remote.");
    parser.addPositionalArgument("MOUNTPOINT", "The mount point.");

    if (!parser.parse(QStringList{"netfs"} + arguments))
        return usage_error(parser_error(parser, "mount"));
    if (parser.isSet(help)) {
        std::fputs(kMountUsage, stdout);
        std::fputs(netfs::kMountOptionsHelp, stdout);
        return 0;
    }
    const QStringList positional = parser.positionalArguments();
    if (positional.size() < 2)
        return usage_error("mount needs REMOTE and MOUNTPOINT (see netfs mount --help)");
    if (positional.size() > 2)
        return usage_error(QStringLiteral("unexpected argument '%1' (see netfs mount --help)").arg(positional[2]));

    netfs::MountRequest request;
    request.remote = positional[0].toStdString();
    request.mountpoint = positional[1].toStdString();
    for (const QString& list : parser.values(options)) {
        std::string error;
        if (!netfs::parse_mount_options(list.toStdString(), request.options, error))
            return usage_error(QString::fromStdString(error));
    }
    if (parser.isSet(debug))
        request.options.debug = true;
    request.foreground = parser.isSet(foreground);
    if (parser.isSet(log_file)) {
        const QString file = parser.value(log_file);
        if (file.isEmpty())
            return usage_error("--log-file needs a file name");
        request.log_file = QDir::current().absoluteFilePath(file).toStdString();
    }
    netfs::CacheRequest& cache = request.cache;
    cache.enabled = !parser.isSet(no_cache);
    cache.encrypt = !parser.isSet(no_encrypt);
    cache.compress = !parser.isSet(no_compress);
    if (parser.isSet(cache_dir))
        cache.dir = QDir::current().absoluteFilePath(parser.value(cache_dir)).toStdString();
    if (parser.isSet(granule_size)) {
        std::uint64_t size = 0;
        const std::uint64_t g = netfs::parse_size(parser.value(granule_size).toStdString(), size) ? size : 0;
        if (g < (64u << 10) || g > (2u << 20) || (g & (g - 1)) != 0)
            return usage_error("--granule-size must be a power of two from 64K to 2M");
        cache.granule_size = static_cast<std::uint32_t>(g);
    }
    if (parser.isSet(cache_size)) {
        std::uint64_t size = 0;
        if (!netfs::parse_size(parser.value(cache_size).toStdString(), size) || size < (16u << 20))
            return usage_error("--cache-size needs a size of at least 16M, such as 10G");
        cache.size_limit = size;
    }
    if (parser.isSet(cache_free)) {
        const QStringList parts = parser.value(cache_free).split(',');
        bool ok = parts.size() == 3;
        unsigned v[3] = {};
        for (int i = 0; ok && i < 3; ++i)
            v[i] = parts[i].toUInt(&ok);
        if (!ok || !(v[0] > v[1] && v[1] > v[2] && v[0] < 100))
            return usage_error("--cache-free needs three percentages RUN,CULL,STOP with RUN > CULL > STOP, such as 7,5,1");
        cache.free_run_percent = v[0];
        cache.free_cull_percent = v[1];
        cache.free_stop_percent = v[2];
    }
    if (parser.isSet(key_file) && parser.isSet(ask_passphrase))
        return usage_error("use --key-file or --ask-passphrase, not both");
    if (parser.isSet(key_file))
        cache.key_file = QDir::current().absoluteFilePath(parser.value(key_file)).toStdString();
    if (parser.isSet(ask_passphrase) && cache.enabled && cache.encrypt) {
        // Asked here, before the daemon forks: it inherits the passphrase in
        // memory, never through a command line or the environment.
        cache.ask_passphrase = true;
        std::string error;
        if (!netfs::read_passphrase(cache.passphrase, error)) {
            std::fprintf(stderr, "netfs: %s\n", error.c_str());
            return 1;
        }
    }
    return netfs::run_mount(request);
}

int unmount_main(const QStringList& arguments, const char* command) {
    QCommandLineParser parser;
    const QCommandLineOption help({"h", "help"}, "Show help.");
    parser.addOption(help);
    parser.addPositionalArgument("MOUNTPOINT", "The mount point.");
    if (!parser.parse(QStringList{"netfs"} + arguments))
        return usage_error(parser_error(parser, command));
    if (parser.isSet(help)) {
        std::fputs(kUnmountUsage, stdout);
        return 0;
    }
    const QStringList positional = parser.positionalArguments();
    if (positional.isEmpty())
        return usage_error(QStringLiteral("%1 needs MOUNTPOINT (see netfs %1 --help)").arg(command));
    if (positional.size() > 1)
        return usage_error(
            QStringLiteral("unexpected argument '%1' (see netfs %2 --help)").arg(positional[1], command));
    return netfs::run_unmount(positional[0].toStdString());
}

} // namespace

int main(int argc, char** argv) {
    // The engine allocates and frees large buffers (folios of up to 2 MiB,
    // writeback and FUSE buffers of 1 MiB) from many threads. With glibc's
    // defaults, freed ones stay in per-thread arenas and the daemon's memory
    // grows far past its folio budget (measured: 490 MiB for a 256 MiB
    // budget). A fixed mmap threshold returns every large buffer to the
    // kernel when freed (measured: 311 MiB), and two arenas are plenty.
    // Below the threshold, libssh2 takes a buffer per 32 KiB packet; an
    // arena keeps up to 8 MiB free at its top rather than give pages back
    // and fault them in again for the next packets (a fault per 4 KiB read).
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
    mallopt(M_ARENA_MAX, 2);

    QStringList arguments;
    for (int i = 1; i < argc; ++i)
        arguments << QString::fromLocal8Bit(argv[i]);
    if (arguments.isEmpty())
        return usage_error("missing command (see netfs --help)");

    const QString command = arguments.takeFirst();
    if (command == "-h" || command == "--help" || command == "help") {
        std::fputs(kUsage, stdout);
        return 0;
    }
    if (command == "-V" || command == "--version") {
        std::printf("netfs %s\n", NETFS_VERSION);
        return 0;
    }
    if (command == "mount")
        return mount_main(arguments);
    // mount -t fuse.netfs REMOTE MP -o OPTS runs mount.fuse3, which runs
    // `netfs REMOTE MP -o OPTS`.
    if (command.contains("://"))
        return mount_main(QStringList{command} + arguments);
    if (command == "unmount" || command == "umount")
        return unmount_main(arguments, command == "unmount" ? "unmount" : "umount");
    if (command == "cache")
        return netfs::run_cache_command(arguments);
    if (command == "status")
        return netfs::status_main(arguments);
    if (command == "offline" || command == "online" || command == "sync" || command == "conflicts")
        return netfs::sync_command_main(command, arguments);
    if (command == "pin" || command == "unpin" || command == "resolve")
        return netfs::path_command_main(command, arguments);
    return usage_error(QStringLiteral("unknown command '%1' (see netfs --help)").arg(command));
}
