#include "app/sync_commands.h"

#include "app/control_server.h"

#include <QCommandLineParser>
#include <QDateTime>
#include <QDir>
#include <QElapsedTimer>
#include <QFileInfo>
#include <QMap>
#include <QThread>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>

#include <cstdio>

namespace netfs {

namespace {

struct Command {
    const char* name;
    const char* usage;
};

constexpr Command kCommands[] = {
    {"offline", "usage: netfs offline MOUNTPOINT [--json]\n\n"
                "Stops talking to the server: cached files stay readable, every change is\n"
                "logged and sent when the mount goes online again.\n"},
    {"online", "usage: netfs online MOUNTPOINT [--json]\n\n"
               "Reconnects after netfs offline; the log of changes is replayed by itself.\n"},
    {"sync", "usage: netfs sync MOUNTPOINT [--json] [--timeout SECONDS]\n\n"
             "Replays the log of changes on the server now and waits for the end:\n"
             "prints how many operations were applied, new conflicts, and what is\n"
             "still pending. Exits 1 when something is still pending.\n"},
    {"conflicts", "usage: netfs conflicts MOUNTPOINT [--json]\n\n"
                  "Lists changes that collided with changes on the server: the server's\n"
                  "version is at PATH, the local one at COPY.\n"},
};

QString when(qint64 ns) {
    return QDateTime::fromMSecsSinceEpoch(ns / 1000000).toString("yyyy-MM-dd HH:mm:ss");
}

void print_human(const QString& command, const QJsonObject& reply, const QString& mountpoint) {
    if (command == "online" && !reply["reconnected"].toBool()) {
        std::printf("%s: the server does not answer yet; the mount goes online by itself when it does\n",
                    qPrintable(reply["mode"].toString()));
    } else if (command == "offline" || command == "online") {
        std::printf("%s\n", qPrintable(reply["mode"].toString()));
    } else if (command == "sync") {
        std::printf("applied %lld, new conflicts %lld, pending %lld%s%s\n",
                    static_cast<long long>(reply["applied"].toInteger()),
                    static_cast<long long>(reply["conflicts"].toInteger()),
                    static_cast<long long>(reply["pending"].toInteger()),
                    reply["error"].toString().isEmpty() ? "" : ": ", qPrintable(reply["error"].toString()));
        // A pass that ran by itself on reconnecting may have found them.
        if (const qint64 open = reply["conflicts_unresolved"].toInteger(); open > 0)
            std::printf("%lld conflict%s to resolve: netfs conflicts %s\n", static_cast<long long>(open),
                        open == 1 ? "" : "s", qPrintable(mountpoint));
    } else {
        const QJsonArray list = reply["conflicts"].toArray();
        if (list.isEmpty())
            std::puts("no conflicts");
        for (const auto& item : list) {
            const QJsonObject c = item.toObject();
            // No copy: the local side deleted it, or changed only its name
            // or attributes (the server's deletion won).
            const QString local = !c["copy"].toString().isEmpty()
                                      ? QString("%1  (%2 bytes, %3)")
                                            .arg(c["copy"].toString())
                                            .arg(c["local_size"].toInteger())
                                            .arg(when(c["local_mtime_ns"].toInteger()))
                                  : c["kind"].toString() == "delete/update" ? QString("(deleted here)")
                                                                            : QString("(no local copy)");
            std::printf("%s  %s\n  local:  %s\n  server: %s\n", qPrintable(c["kind"].toString()),
                        qPrintable(c["path"].toString()), qPrintable(local),
                        c["remote_exists"].toBool()
                            ? qPrintable(QString("%1 bytes, %2").arg(c["remote_size"].toInteger())
                                             .arg(when(c["remote_mtime_ns"].toInteger())))
                            : "(deleted on the server)");
        }
    }
}

// The running mount holding `path`, and the path within it ("/a/b").
bool find_mount(const QString& path, QString& socket, QString& mountpoint, QString& inside, QString& error) {
    // The path itself may be gone (a conflict whose local side was a
    // deletion): its directory must exist.
    const QFileInfo info(path);
    QString dir = QFileInfo(info.absolutePath()).canonicalFilePath();
    if (dir.isEmpty()) {
        error = path + ": no such directory";
        return false;
    }
    QString full = info.fileName().isEmpty() || info.fileName() == "." ? dir : dir + "/" + info.fileName();
    if (info.isDir() && !info.isSymLink())
        full = info.canonicalFilePath();
    for (QString at = full;; at = QFileInfo(at).path()) {
        const QString candidate = QString::fromStdString(control_socket_path(at.toStdString()));
        if (QFileInfo::exists(candidate)) {
            socket = candidate;
            mountpoint = at;
            inside = at == full ? "/" : full.mid(at == "/" ? 0 : at.size());
            return true;
        }
        if (at == "/")
            break;
    }
    error = path + " is not inside a running netfs mount";
    return false;
}

bool ask_json(const QString& socket, const QJsonObject& request, QJsonObject& reply, QString& error,
              int timeout_ms = 60000) {
    std::string text, why;
    if (!control_request(socket.toStdString(), QJsonDocument(request).toJson(QJsonDocument::Compact).toStdString(),
                         text, why, timeout_ms)) {
        error = QString::fromStdString(why);
        return false;
    }
    reply = QJsonDocument::fromJson(QByteArray::fromStdString(text)).object();
    return true;
}

const char* const kPinUsage =
    "usage: netfs pin PATH... [--wait] [--json]\n"
    "       netfs unpin PATH... [--json]\n\n"
    "Keeps files and folders (with everything in them, also what is added\n"
    "later) in the cache, fetched in the background, never culled: available\n"
    "offline. Refused when they cannot fit in the cache.\n"
    "  --wait   show progress and return once everything is fetched\n";

const char* const kResolveUsage =
    "usage: netfs resolve PATH... --keep local|remote|both [--json]\n\n"
    "Resolves the conflicts at PATH (the file's name, or its conflicted copy's):\n"
    "  local    the local version replaces the server's (a local deletion is done)\n"
    "  remote   the server's version stays; the conflicted copy is removed\n"
    "  both     both stay as they are\n";

// Progress of the pins under `paths` until they are all ready (true) or one
// failed (false).
bool wait_for_pins(const QString& socket, const QStringList& paths, bool json) {
    for (;;) {
        QJsonObject status;
        QString error;
        if (!ask_json(socket, {{"op", "status"}}, status, error)) {
            std::fprintf(stderr, "\nnetfs: the mount stopped answering: %s\n", qPrintable(error));
            return false;
        }
        qint64 present = 0, total = 0;
        bool done = true;
        for (const auto& item : status["pins"].toArray()) {
            const QJsonObject pin = item.toObject();
            if (!paths.contains(pin["path"].toString()))
                continue;
            if (pin["state"].toString() == "failed") {
                std::fprintf(stderr, "\nnetfs: pinning %s failed: %s\n", qPrintable(pin["path"].toString()),
                             qPrintable(pin["error"].toString()));
                return false;
            }
            present += pin["present_bytes"].toInteger();
            total += pin["total_bytes"].toInteger();
            done = done && pin["state"].toString() == "ready";
        }
        if (!json) {
            const int percent = total ? int(present * 100 / total) : (done ? 100 : 0);
            std::fprintf(stderr, "\r[%-30s] %3d%%  %.1f of %.1f MiB", QByteArray(percent * 30 / 100, '#').constData(),
                         percent, double(present) / (1 << 20), double(total) / (1 << 20));
            std::fflush(stderr);
        }
        if (done) {
            if (!json)
                std::fputs("\n", stderr);
            return true;
        }
        QThread::msleep(250);
    }
}

} // namespace

int path_command_main(const QString& command, const QStringList& arguments) {
    QCommandLineParser parser;
    const QCommandLineOption help({"h", "help"}, "Show help.");
    const QCommandLineOption json("json", "JSON output.");
    const QCommandLineOption wait("wait", "Wait until fetched.");
    const QCommandLineOption keep("keep", "Which version to keep.", "WHICH");
    parser.addOptions({help, json});
    if (command == "pin")
        parser.addOption(wait);
    if (command == "resolve")
        parser.addOption(keep);
    const char* usage = command == "resolve" ? kResolveUsage : kPinUsage;
    if (!parser.parse(QStringList{"netfs"} + arguments)) {
        std::fprintf(stderr, "netfs: %s (see netfs %s --help)\n", qPrintable(parser.errorText()),
                     qPrintable(command));
        return 2;
    }
    if (parser.isSet(help)) {
        std::fputs(usage, stdout);
        return 0;
    }
    if (parser.positionalArguments().isEmpty()) {
        std::fprintf(stderr, "netfs: %s needs at least one PATH (see netfs %s --help)\n", qPrintable(command),
                     qPrintable(command));
        return 2;
    }
    const QString which = command == "resolve" ? parser.value(keep) : QString();
    if (command == "resolve" && which != "local" && which != "remote" && which != "both") {
        std::fprintf(stderr, "netfs: resolve needs --keep local, remote or both%s\n",
                     which.isEmpty() ? "" : qPrintable(" (not '" + which + "')"));
        return 2;
    }
    // Paths grouped by the mount they are in.
    QMap<QString, QStringList> by_socket;
    QMap<QString, QStringList> local_names;  // what the user typed, for messages
    for (const QString& path : parser.positionalArguments()) {
        QString socket, mountpoint, inside, error;
        if (!find_mount(path, socket, mountpoint, inside, error)) {
            std::fprintf(stderr, "netfs: %s\n", qPrintable(error));
            return 1;
        }
        by_socket[socket] << inside;
        local_names[socket] << path;
    }
    int code = 0;
    QJsonArray all;
    for (auto it = by_socket.begin(); it != by_socket.end(); ++it) {
        QJsonObject request{{"op", command}, {"paths", QJsonArray::fromStringList(it.value())}};
        if (command == "resolve")
            request["keep"] = which;
        QJsonObject reply;
        QString error;
        if (!ask_json(it.key(), request, reply, error)) {
            std::fprintf(stderr, "netfs: the mount does not answer: %s\n", qPrintable(error));
            return 1;
        }
        const QJsonArray results = reply["results"].toArray();
        QStringList pinned;
        for (int i = 0; i < results.size(); ++i) {
            const QJsonObject r = results[i].toObject();
            all.append(r);
            if (!r["ok"].toBool()) {
                std::fprintf(stderr, "netfs: %s: %s\n", qPrintable(local_names[it.key()].value(i)),
                             qPrintable(r["error"].toString()));
                code = 1;
            } else {
                pinned << r["path"].toString();
            }
        }
        if (results.isEmpty() && !reply["ok"].toBool()) {
            std::fprintf(stderr, "netfs: %s\n", qPrintable(reply["error"].toString()));
            code = 1;
        }
        if (command == "pin" && parser.isSet(wait) && !pinned.isEmpty() &&
            !wait_for_pins(it.key(), pinned, parser.isSet(json)))
            code = 1;
    }
    if (parser.isSet(json))
        std::fputs(QJsonDocument(QJsonObject{{"ok", code == 0}, {"results", all}}).toJson().constData(), stdout);
    return code;
}

int sync_command_main(const QString& command, const QStringList& arguments) {
    const Command* spec = nullptr;
    for (const Command& c : kCommands)
        if (command == c.name)
            spec = &c;
    if (!spec)
        return 2;
    QCommandLineParser parser;
    const QCommandLineOption help({"h", "help"}, "Show help.");
    const QCommandLineOption json("json", "JSON output.");
    const QCommandLineOption timeout("timeout", "Seconds to wait.", "SECONDS", "600");
    parser.addOptions({help, json, timeout});
    if (!parser.parse(QStringList{"netfs"} + arguments)) {
        std::fprintf(stderr, "netfs: %s (see netfs %s --help)\n", qPrintable(parser.errorText()), spec->name);
        return 2;
    }
    if (parser.isSet(help)) {
        std::fputs(spec->usage, stdout);
        return 0;
    }
    const QStringList positional = parser.positionalArguments();
    if (positional.size() != 1) {
        std::fprintf(stderr, "netfs: %s takes one MOUNTPOINT (see netfs %s --help)\n", spec->name, spec->name);
        return 2;
    }
    bool number = false;
    const int seconds = parser.value(timeout).toInt(&number);
    if (!number || seconds <= 0) {
        std::fprintf(stderr, "netfs: --timeout takes a number of seconds, not '%s'\n",
                     qPrintable(parser.value(timeout)));
        return 2;
    }
    const QString canonical = QDir(positional[0]).canonicalPath();
    if (canonical.isEmpty()) {
        std::fprintf(stderr, "netfs: %s does not exist\n", qPrintable(positional[0]));
        return 1;
    }
    QJsonObject request{{"op", command}};
    if (command == "sync")
        request["timeout_s"] = seconds;
    std::string reply_text, error;
    if (!control_request(control_socket_path(canonical.toStdString()),
                         QJsonDocument(request).toJson(QJsonDocument::Compact).toStdString(), reply_text, error,
                         (seconds + 10) * 1000)) {
        std::fprintf(stderr, "netfs: %s is not a running netfs mount (%s)\n", qPrintable(positional[0]),
                     error.c_str());
        return 1;
    }
    QJsonObject reply = QJsonDocument::fromJson(QByteArray::fromStdString(reply_text)).object();
    if (command == "online" && reply["ok"].toBool()) {
        // The mount reconnects in the background: the mode it reaches within
        // a few seconds is the answer, not the one it had when asked.
        const auto socket = control_socket_path(canonical.toStdString());
        const QByteArray ask = QJsonDocument(QJsonObject{{"op", "status"}}).toJson(QJsonDocument::Compact);
        QElapsedTimer clock;
        clock.start();
        while (reply["mode"].toString() == "disconnected" && clock.elapsed() < 5000) {
            QThread::msleep(100);
            std::string status_text;
            if (control_request(socket, ask.toStdString(), status_text, error, 1000))
                if (const QJsonValue mode = QJsonDocument::fromJson(QByteArray::fromStdString(status_text)).object()["mode"];
                    mode.isString())
                    reply["mode"] = mode;
        }
        reply["reconnected"] = reply["mode"].toString() != "disconnected";
    }
    if (parser.isSet(json))
        std::fputs(QJsonDocument(reply).toJson(QJsonDocument::Indented).constData(), stdout);
    else if (reply["ok"].toBool() || command == "sync")
        print_human(command, reply, positional[0]);
    if (!reply["ok"].toBool()) {
        if (command != "sync" || parser.isSet(json))
            std::fprintf(stderr, "netfs: %s\n", qPrintable(reply["error"].toString()));
        return 1;
    }
    return 0;
}

} // namespace netfs
