#include "app/status_command.h"

#include "app/control_server.h"
#include "app/human_bytes.h"
#include "app/mount_command.h"

#include <QCommandLineParser>
#include <QDir>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>

#include <algorithm>
#include <cstdio>

namespace netfs {

namespace {

const char* const kStatusUsage =
    "usage: netfs status [MOUNTPOINT] [--json]\n"
    "\n"
    "Shows each running mount (or only MOUNTPOINT): its remote, its mode\n"
    "(connected, disconnected, reintegrating), cache use, data and operations\n"
    "not yet on the server, conflicts, and pinned folders.\n"
    "  --json   one JSON object (docs/control_api.md)\n";

QString bytes(qint64 n) { return QString::fromStdString(human_bytes(std::uint64_t(std::max<qint64>(n, 0)))); }

void print_human(const QJsonObject& s) {
    const QJsonObject cache = s["cache"].toObject();
    QString cache_text = "off";
    if (cache["enabled"].toBool()) {
        cache_text = bytes(cache["stored_bytes"].toInteger()) + " stored";
        if (cache["limit_bytes"].toInteger() > 0)
            cache_text += " of " + bytes(cache["limit_bytes"].toInteger());
    }
    QString mode = s["mode"].toString();
    if (s["manual_offline"].toBool())
        mode += " (netfs online to reconnect)";
    else if (mode != "connected")
        mode += ", server " + s["server"].toString();
    // Written but unsent: in memory (the engine's), and in the cache while
    // disconnected (the log's content, never culled; the limit may be
    // exceeded by it).
    const qint64 unsent = s["engine"].toObject()["dirty_bytes"].toInteger() + cache["dirty_bytes"].toInteger();
    std::printf("%s  %s\n  mode: %s   cache: %s   not yet on the server: %s\n"
                "  pending operations: %lld   conflicts: %lld\n",
                qPrintable(s["mountpoint"].toString()), qPrintable(s["remote"].toString()), qPrintable(mode),
                qPrintable(cache_text), qPrintable(bytes(unsent)),
                static_cast<long long>(s["pending_operations"].toInteger()),
                static_cast<long long>(s["conflicts"].toInteger()));
    const QJsonArray pins = s["pins"].toArray();
    if (!pins.isEmpty())
        std::printf("  pinned: %s of %s present, %s\n", qPrintable(bytes(s["pinned_present_bytes"].toInteger())),
                    qPrintable(bytes(s["pinned_total_bytes"].toInteger())),
                    s["ready_for_offline"].toBool() ? "ready to go offline" : "not all fetched yet");
    for (const auto& item : pins) {
        const QJsonObject p = item.toObject();
        std::printf("    %s  %s%s%s\n", qPrintable(p["path"].toString()), qPrintable(p["state"].toString()),
                    p["error"].toString().isEmpty() ? "" : ": ", qPrintable(p["error"].toString()));
    }
}

bool ask(const std::string& socket, QJsonObject& out, std::string& error) {
    std::string reply;
    if (!control_request(socket, "{\"op\":\"status\"}", reply, error))
        return false;
    out = QJsonDocument::fromJson(QByteArray::fromStdString(reply)).object();
    if (!out["ok"].toBool()) {
        error = "the daemon answered: " + out["error"].toString().toStdString();
        return false;
    }
    return true;
}

} // namespace

int status_main(const QStringList& arguments) {
    QCommandLineParser parser;
    const QCommandLineOption help({"h", "help"}, "Show help.");
    const QCommandLineOption json("json", "JSON output.");
    parser.addOptions({help, json});
    if (!parser.parse(QStringList{"netfs"} + arguments)) {
        std::fprintf(stderr, "netfs: %s (see netfs status --help)\n", qPrintable(parser.errorText()));
        return 2;
    }
    if (parser.isSet(help)) {
        std::fputs(kStatusUsage, stdout);
        return 0;
    }
    const QStringList positional = parser.positionalArguments();
    if (positional.size() > 1) {
        std::fprintf(stderr, "netfs: unexpected argument '%s' (see netfs status --help)\n", qPrintable(positional[1]));
        return 2;
    }
    std::vector<std::string> sockets;
    if (positional.size() == 1) {
        const QString canonical = QDir(positional[0]).canonicalPath();
        if (canonical.isEmpty()) {
            std::fprintf(stderr, "netfs: %s does not exist\n", qPrintable(positional[0]));
            return 1;
        }
        sockets.push_back(control_socket_path(canonical.toStdString()));
    } else {
        const QDir dir(QString::fromStdString(runtime_dir()));
        for (const QString& name : dir.entryList({"*.sock"}, QDir::System | QDir::Files, QDir::Name))
            sockets.push_back(dir.filePath(name).toStdString());
    }
    QJsonArray mounts;
    int failed = 0;
    for (const auto& socket : sockets) {
        QJsonObject s;
        std::string error;
        if (!ask(socket, s, error)) {
            if (positional.size() == 1) {
                std::fprintf(stderr, "netfs: %s is not a running netfs mount (%s)\n", qPrintable(positional[0]),
                             error.c_str());
                return 1;
            }
            ++failed;  // a daemon that died: its socket is stale
            continue;
        }
        mounts.append(s);
    }
    if (parser.isSet(json)) {
        const QJsonDocument doc = positional.size() == 1 ? QJsonDocument(mounts.first().toObject())
                                                          : QJsonDocument(QJsonObject{{"mounts", mounts}});
        std::fputs(doc.toJson(QJsonDocument::Indented).constData(), stdout);
    } else if (mounts.isEmpty()) {
        std::puts("no netfs mounts are running");
    } else {
        for (const auto& m : mounts)
            print_human(m.toObject());
    }
    return 0;
}

} // namespace netfs
