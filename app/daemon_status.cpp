#include "app/daemon_status.h"

#include "core/cache/cache_store.h"

#include <QJsonDocument>
#include <QJsonObject>

#include <unistd.h>

namespace netfs {

namespace {

const char* mode_name(ConnectionState s) {
    switch (s) {
    case ConnectionState::connected:
        return "connected";
    case ConnectionState::reconnecting:
        return "reconnecting";
    case ConnectionState::unreachable:
        return "unreachable";
    }
    return "unknown";
}

QJsonObject status(const DaemonInfo& d) {
    const EngineStats e = d.engine->stats();
    QJsonObject engine{
        {"bytes_downloaded", qint64(e.bytes_downloaded)}, {"bytes_uploaded", qint64(e.bytes_uploaded)},
        {"dirty_bytes", qint64(e.dirty_bytes)},           {"memory_bytes", qint64(e.folio_bytes)},
        {"retries", qint64(e.retries)},                   {"read_requests", qint64(e.read_requests)},
    };
    QJsonObject cache{{"enabled", d.cache != nullptr}};
    if (d.cache) {
        const CacheStats c = d.cache->stats();
        cache["dir"] = QString::fromStdString(d.cache_dir);
        cache["limit_bytes"] = qint64(d.cache_limit);
        cache["stored_bytes"] = qint64(c.stored_bytes);
        cache["logical_bytes"] = qint64(c.logical_bytes);
        cache["disk_bytes"] = qint64(c.disk_bytes);
        cache["dirty_bytes"] = qint64(c.dirty_bytes);
        cache["pinned_bytes"] = qint64(c.pinned_bytes);
        cache["hits"] = qint64(c.hits);
        cache["misses"] = qint64(c.misses);
        cache["damaged"] = qint64(c.damaged);
    }
    return {
        {"ok", true},
        {"mountpoint", QString::fromStdString(d.mountpoint)},
        {"remote", QString::fromStdString(d.remote)},
        {"pid", qint64(::getpid())},
        {"mode", mode_name(d.engine->connection_state())},
        {"cache", cache},
        {"engine", engine},
        // Disconnected operation (the operation log) fills these in.
        {"pending_operations", 0},
        {"conflicts", 0},
    };
}

QJsonObject failure(const QString& message) { return {{"ok", false}, {"error", message}}; }

} // namespace

std::string answer_control_request(const DaemonInfo& daemon, const std::string& request) {
    QJsonParseError parse{};
    const QJsonDocument doc = QJsonDocument::fromJson(QByteArray::fromStdString(request), &parse);
    QJsonObject reply;
    if (parse.error != QJsonParseError::NoError || !doc.isObject()) {
        reply = failure("a request is one JSON object on one line, such as {\"op\":\"status\"}");
    } else {
        const QString op = doc.object().value("op").toString();
        if (op == "ping")
            reply = {{"ok", true}};
        else if (op == "status")
            reply = status(daemon);
        else
            reply = failure("unknown op '" + op + "' (known: ping, status)");
    }
    return QJsonDocument(reply).toJson(QJsonDocument::Compact).toStdString();
}

} // namespace netfs
