#include "app/daemon_status.h"

#include "app/conflict_resolution.h"
#include "core/cache/cache_store.h"
#include "sync/replica_backend.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>

#include <unistd.h>

#include <algorithm>

namespace netfs {

namespace {

const char* state_name(ConnectionState s) {
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
    const SyncStatus sync = d.sync ? d.sync->status() : SyncStatus{};
    QJsonArray pins;
    std::uint64_t pinned_present = 0, pinned_total = 0;
    bool ready = true;
    if (d.sync)
        for (const PinState& p : d.sync->pin_states()) {
            pins.append(QJsonObject{{"path", QString::fromStdString(p.path)},
                                    {"present_bytes", qint64(p.present)},
                                    {"total_bytes", qint64(p.total)},
                                    {"state", QString::fromStdString(p.state)},
                                    {"error", QString::fromStdString(p.message)}});
            pinned_present += p.present;
            pinned_total += p.total;
            ready = ready && p.state == "ready";
        }
    QJsonObject engine{
        {"bytes_downloaded", qint64(e.bytes_downloaded)}, {"bytes_uploaded", qint64(e.bytes_uploaded)},
        {"dirty_bytes", qint64(e.dirty_bytes)},           {"memory_bytes", qint64(e.folio_bytes)},
        {"retries", qint64(e.retries)},                   {"read_requests", qint64(e.read_requests)},
    };
    QJsonObject cache{{"enabled", d.cache != nullptr}};
    if (d.cache) {
        const CacheStats c = d.cache->stats();
        cache["dir"] = QString::fromStdString(d.cache_dir);
        cache["limit_bytes"] = qint64(d.cache->size_limit());
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
        {"server", state_name(d.engine->connection_state())},
        {"mode", d.sync ? mode_name(sync.mode) : "connected"},
        {"manual_offline", sync.manual_offline},
        {"cache", cache},
        {"engine", engine},
        {"pending_operations", qint64(sync.pending)},
        {"conflicts", qint64(sync.conflicts)},
        {"uncached_reads", qint64(sync.uncached_reads)},
        {"progress", QJsonObject{{"ops_done", qint64(sync.progress.ops_done)},
                                 {"ops_total", qint64(sync.progress.ops_total)},
                                 {"bytes_left", qint64(sync.progress.bytes_left)}}},
        {"generation", qint64(d.sync ? d.sync->generation() : 0)},
        {"auto_sync", d.sync ? d.sync->auto_sync() : false},
        {"pins", pins},
        {"pinned_present_bytes", qint64(pinned_present)},
        {"pinned_total_bytes", qint64(pinned_total)},
        // Everything pinned is in the cache: going offline now loses nothing pinned.
        {"ready_for_offline", ready},
    };
}

QJsonObject outcome_json(const SyncOutcome& o) {
    return {{"ok", o.error == Errc::ok},
            {"applied", qint64(o.applied)},
            {"conflicts", qint64(o.conflicts)},
            {"pending", qint64(o.pending)},
            {"error", QString::fromStdString(o.error == Errc::ok ? std::string() : o.message)}};
}

QJsonObject conflicts_json(ReplicaBackend& sync) {
    QJsonArray list;
    for (const Conflict& c : sync.replica().conflicts())
        list.append(QJsonObject{{"id", qint64(c.id)},
                                {"kind", conflict_name(c.kind)},
                                {"path", QString::fromStdString(c.path)},
                                {"copy", QString::fromStdString(c.copy)},
                                {"local_size", qint64(c.local_size)},
                                {"local_mtime_ns", qint64(c.local_mtime_ns)},
                                {"remote_exists", c.remote_exists},
                                {"remote_size", qint64(c.remote_size)},
                                {"remote_mtime_ns", qint64(c.remote_mtime_ns)},
                                {"operations", QString::fromStdString(c.ops)},
                                {"detected_ns", qint64(c.detected_ns)}});
    return {{"ok", true}, {"conflicts", list}};
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
        const QJsonObject req = doc.object();
        const QString op = req.value("op").toString();
        const bool sync_op = op == "offline" || op == "online" || op == "sync" || op == "conflicts" ||
                             op == "pin" || op == "unpin" || op == "resolve" || op == "events" ||
                             op == "settings";
        if (op == "ping")
            reply = {{"ok", true}};
        else if (op == "status")
            reply = status(daemon);
        else if (sync_op && !daemon.sync)
            reply = failure("this mount has no cache, so no disconnected operation (mount it without --no-cache)");
        else if (op == "offline") {
            daemon.sync->go_offline();
            reply = {{"ok", true}, {"mode", mode_name(daemon.sync->status().mode)}};
        } else if (op == "online") {
            daemon.sync->go_online();
            reply = {{"ok", true}, {"mode", mode_name(daemon.sync->status().mode)}};
        } else if (op == "sync") {
            const auto wait = std::chrono::seconds(req.value("timeout_s").toInt(600));
            reply = outcome_json(daemon.sync->sync_now(wait));
            const SyncStatus now = daemon.sync->status();
            reply["mode"] = mode_name(now.mode);
            // Also those of passes that ran by themselves before this one.
            reply["conflicts_unresolved"] = qint64(now.conflicts);
        } else if (op == "settings") {
            // Either or both; the reply has the values now in force.
            reply = {{"ok", true}};
            if (req.contains("cache_limit_bytes")) {
                const qint64 limit = req.value("cache_limit_bytes").toInteger(-1);
                if (limit != 0 && limit < (16 << 20))
                    reply = failure("cache_limit_bytes is 0 (no limit) or at least 16 MiB (16777216)");
                else
                    daemon.cache->set_size_limit(std::uint64_t(limit));
            }
            if (req.contains("auto_sync")) {
                if (!req.value("auto_sync").isBool())
                    reply = failure("auto_sync is true or false");
                else
                    daemon.sync->set_auto_sync(req.value("auto_sync").toBool());
            }
            reply["cache_limit_bytes"] = qint64(daemon.cache->size_limit());
            reply["auto_sync"] = daemon.sync->auto_sync();
        } else if (op == "events") {
            // A long poll: answered as soon as there is an event after
            // `since`, or empty after `timeout_s`.
            const auto since = std::uint64_t(req.value("since").toInteger(0));
            const auto wait = std::chrono::milliseconds(std::clamp(req.value("timeout_s").toInt(25), 0, 300) * 1000);
            QJsonArray list;
            std::uint64_t last = since;
            for (const SyncEvent& e : daemon.sync->events_after(since, wait)) {
                list.append(QJsonObject{{"seq", qint64(e.seq)},
                                        {"kind", QString::fromStdString(e.kind)},
                                        {"detail", QString::fromStdString(e.detail)},
                                        {"text", QString::fromStdString(e.text)},
                                        {"when_ns", qint64(e.when_ns)}});
                last = e.seq;
            }
            reply = {{"ok", true}, {"events", list}, {"last", qint64(last)}};
        } else if (op == "conflicts") {
            reply = conflicts_json(*daemon.sync);
        } else if (op == "pin" || op == "unpin" || op == "resolve") {
            // Several paths at once; each gets its own outcome.
            Keep keep = Keep::both;
            if (op == "resolve" && !keep_from_name(req.value("keep").toString().toStdString(), keep))
                return QJsonDocument(failure("resolve needs \"keep\": local, remote or both"))
                    .toJson(QJsonDocument::Compact)
                    .toStdString();
            QJsonArray results;
            bool all = true;
            for (const auto& item : req.value("paths").toArray()) {
                const std::string path = item.toString().toStdString();
                std::string message;
                bool done = false;
                if (path.empty() || path[0] != '/')
                    message = "paths are absolute within the mount, such as /docs/a.txt";
                else if (op == "pin")
                    done = daemon.sync->pin(path, message) == Errc::ok;
                else if (op == "unpin")
                    done = daemon.sync->unpin(path, message) == Errc::ok;
                else
                    done = resolve_conflict(daemon.mountpoint, *daemon.sync, path, keep, message);
                all = all && done;
                results.append(QJsonObject{{"path", item.toString()}, {"ok", done},
                                           {"error", QString::fromStdString(message)}});
            }
            reply = {{"ok", all}, {"results", results}};
            if (!all)
                reply["error"] = "some paths failed (see results)";
        } else {
            reply = failure("unknown op '" + op +
                            "' (known: ping, status, events, offline, online, sync, conflicts, pin, unpin, resolve, settings)");
        }
    }
    return QJsonDocument(reply).toJson(QJsonDocument::Compact).toStdString();
}

} // namespace netfs
