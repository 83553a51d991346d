#include "ui/mounts_model.h"

#include "app/human_bytes.h"
#include "app/runtime_dirs.h"
#include "ui/daemon_client.h"

#include <QDateTime>
#include <QDir>
#include <QJsonArray>

#include <algorithm>

namespace netfs::ui {

namespace {
constexpr int kScanEveryMs = 1000;
constexpr int kActionTimeoutMs = 30000;
constexpr int kSyncTimeoutS = 600;
} // namespace

QString default_socket_dir() { return QString::fromStdString(runtime_dirs().front()); }

TrayState tray_state(const MountState& m) {
    if (!m.alive)
        return TrayState::error;
    if (m.conflict_count > 0)
        return TrayState::conflicts;
    if (m.mode == "disconnected")
        return m.pending_operations > 0 ? TrayState::offline_pending : TrayState::offline;
    if (m.mode == "reintegrating" || m.pending_operations > 0 || m.dirty_bytes > 0)
        return TrayState::syncing;
    return TrayState::in_sync;
}

TrayState worst_of(const QList<MountState>& mounts) {
    TrayState worst = TrayState::in_sync;
    for (const MountState& m : mounts)
        worst = std::max(worst, tray_state(m));
    return worst;
}

QString icon_path(TrayState state) {
    switch (state) {
    case TrayState::in_sync: return ":/icons/netfs-in-sync.svg";
    case TrayState::syncing: return ":/icons/netfs-syncing.svg";
    case TrayState::offline: return ":/icons/netfs-offline.svg";
    case TrayState::offline_pending: return ":/icons/netfs-offline-pending.svg";
    case TrayState::conflicts: return ":/icons/netfs-conflicts.svg";
    case TrayState::error: return ":/icons/netfs-error.svg";
    }
    return {};
}

QString state_words(TrayState state) {
    switch (state) {
    case TrayState::in_sync: return "online, in sync";
    case TrayState::syncing: return "syncing";
    case TrayState::offline: return "offline";
    case TrayState::offline_pending: return "offline, changes waiting";
    case TrayState::conflicts: return "conflicts to resolve";
    case TrayState::error: return "not running";
    }
    return {};
}

QString human_bytes(qint64 n) {
    return QString::fromStdString(netfs::human_bytes(std::uint64_t(std::max<qint64>(n, 0))));
}

QString human_time(qint64 ns) {
    if (ns <= 0)
        return "-";
    return QDateTime::fromMSecsSinceEpoch(ns / 1000000).toString("yyyy-MM-dd HH:mm:ss");
}

QStringList describe(const MountState& m) {
    if (!m.alive)
        return {m.mountpoint + ": the daemon does not answer (" + m.error + ")"};
    QStringList lines;
    lines << m.mountpoint + " — " + state_words(tray_state(m));
    lines << "Server: " + m.remote + " (" + m.server + ")";
    QString mode = "Mode: " + m.mode;
    if (m.manual_offline)
        mode += " (by request)";
    if (m.mode == "reintegrating" && m.ops_total > 0)
        mode += QString(", %1 of %2 operations").arg(m.ops_done).arg(m.ops_total);
    lines << mode;
    if (!m.cache_enabled)
        lines << "Cache: off";
    else if (m.cache_limit_bytes > 0)
        lines << "Cache: " + human_bytes(m.cache_stored_bytes) + " of " + human_bytes(m.cache_limit_bytes);
    else
        lines << "Cache: " + human_bytes(m.cache_stored_bytes) + " (no limit)";
    if (m.pins.isEmpty())
        lines << "Pinned: nothing";
    else
        lines << QString("Pinned: %1 of %2 present, %3")
                     .arg(human_bytes(m.pinned_present_bytes), human_bytes(m.pinned_total_bytes),
                          m.ready_for_offline ? "ready to go offline" : "not all fetched yet");
    lines << QString("Pending: %1 operations, %2").arg(m.pending_operations).arg(human_bytes(m.dirty_bytes));
    lines << QString("Conflicts: %1").arg(m.conflict_count);
    return lines;
}

MountsModel::MountsModel(QString socket_dir, QObject* parent) : QObject(parent), dir_(std::move(socket_dir)) {
    scan_timer_.setInterval(kScanEveryMs);
    connect(&scan_timer_, &QTimer::timeout, this, &MountsModel::rescan);
    scan_timer_.start();
    rescan();
}

QList<MountState> MountsModel::mounts() const {
    QList<MountState> out;
    for (const Entry& e : entries_)
        if (e.answered)
            out.append(e.state);
    std::sort(out.begin(), out.end(),
              [](const MountState& a, const MountState& b) { return a.mountpoint < b.mountpoint; });
    return out;
}

const MountState* MountsModel::find(const QString& socket) const {
    const auto it = entries_.find(socket);
    return it == entries_.end() || !it->answered ? nullptr : &it->state;
}

const MountState* MountsModel::find_by_mountpoint(const QString& mountpoint) const {
    const QString canonical = QDir(mountpoint).canonicalPath();
    for (const Entry& e : entries_)
        if (e.answered && (e.state.mountpoint == mountpoint || e.state.mountpoint == canonical))
            return &e.state;
    return nullptr;
}

void MountsModel::rescan() {
    const QDir dir(dir_);
    QStringList present;
    for (const QString& name : dir.entryList({"*.sock"}, QDir::System | QDir::Files))
        present << dir.filePath(name);
    bool removed = false;
    for (auto it = entries_.begin(); it != entries_.end();) {
        if (present.contains(it.key())) {
            ++it;
            continue;
        }
        // The socket went with its daemon (netfs unmount).
        const Entry gone = it.value();
        it = entries_.erase(it);
        gone.client->disconnect(this);
        gone.client->deleteLater();
        if (gone.answered) {
            removed = true;
            if (gone.state.alive)
                emit daemonStopped(gone.state.socket, gone.state.mountpoint);
        }
    }
    for (const QString& socket : present) {
        if (entries_.contains(socket))
            continue;
        Entry e;
        e.client = new DaemonClient(socket, this);
        e.state.socket = socket;
        connect(e.client, &DaemonClient::statusReceived, this,
                [this, socket](const QJsonObject& s) { on_status(socket, s); });
        connect(e.client, &DaemonClient::unreachable, this,
                [this, socket](const QString& why) { on_unreachable(socket, why); });
        connect(e.client, &DaemonClient::eventReceived, this, [this, socket](const QJsonObject& ev) {
            emit daemonEvent(socket, ev["kind"].toString(), ev["detail"].toString(), ev["text"].toString());
        });
        entries_.insert(socket, e);
    }
    if (removed)
        emit changed();
}

void MountsModel::on_status(const QString& socket, const QJsonObject& s) {
    const auto it = entries_.find(socket);
    if (it == entries_.end())
        return;
    MountState& m = it->state;
    const qint64 old_generation = m.generation;
    const qint64 old_pid = m.pid;
    const QJsonObject cache = s["cache"].toObject();
    const QJsonObject progress = s["progress"].toObject();
    m.alive = true;
    m.error.clear();
    m.mountpoint = s["mountpoint"].toString();
    m.remote = s["remote"].toString();
    m.server = s["server"].toString();
    m.mode = s["mode"].toString();
    m.manual_offline = s["manual_offline"].toBool();
    m.pid = s["pid"].toInteger();
    m.cache_enabled = cache["enabled"].toBool();
    m.cache_limit_bytes = cache["limit_bytes"].toInteger();
    m.auto_sync = s["auto_sync"].toBool(true);
    m.cache_stored_bytes = cache["stored_bytes"].toInteger();
    m.dirty_bytes = cache["dirty_bytes"].toInteger() + s["engine"].toObject()["dirty_bytes"].toInteger();
    m.pending_operations = s["pending_operations"].toInteger();
    m.conflict_count = s["conflicts"].toInteger();
    m.ops_done = progress["ops_done"].toInteger();
    m.ops_total = progress["ops_total"].toInteger();
    m.bytes_left = progress["bytes_left"].toInteger();
    m.pinned_present_bytes = s["pinned_present_bytes"].toInteger();
    m.pinned_total_bytes = s["pinned_total_bytes"].toInteger();
    m.ready_for_offline = s["ready_for_offline"].toBool(true);
    m.generation = s["generation"].toInteger();
    m.pins.clear();
    for (const auto& item : s["pins"].toArray()) {
        const QJsonObject p = item.toObject();
        m.pins.append({p["path"].toString(), p["present_bytes"].toInteger(), p["total_bytes"].toInteger(),
                       p["state"].toString(), p["error"].toString()});
    }
    const bool first = !it->answered;
    it->answered = true;
    if (first || old_pid != m.pid || old_generation != m.generation || m.conflict_count != m.conflicts.size())
        list_conflicts(socket);
    emit changed();
}

void MountsModel::on_unreachable(const QString& socket, const QString& why) {
    const auto it = entries_.find(socket);
    if (it == entries_.end() || !it->answered)
        return;  // a stale socket of a daemon that died before we saw it: not a mount
    const bool was_alive = it->state.alive;
    it->state.alive = false;
    it->state.error = why;
    if (was_alive) {
        emit daemonStopped(socket, it->state.mountpoint);
        emit changed();
    }
}

void MountsModel::list_conflicts(const QString& socket) {
    const auto it = entries_.find(socket);
    if (it == entries_.end() || it->listing_conflicts)
        return;
    it->listing_conflicts = true;
    it->client->request({{"op", "conflicts"}}, kActionTimeoutMs, [this, socket](const QJsonObject& reply,
                                                                               const QString& error) {
        const auto it = entries_.find(socket);
        if (it == entries_.end())
            return;
        it->listing_conflicts = false;
        if (!error.isEmpty() || !reply["ok"].toBool())
            return;  // the next status tries again
        QList<ConflictInfo> list;
        for (const auto& item : reply["conflicts"].toArray()) {
            const QJsonObject c = item.toObject();
            list.append({c["id"].toInteger(), c["kind"].toString(), c["path"].toString(), c["copy"].toString(),
                         c["local_size"].toInteger(), c["local_mtime_ns"].toInteger(), c["remote_exists"].toBool(),
                         c["remote_size"].toInteger(), c["remote_mtime_ns"].toInteger(),
                         c["detected_ns"].toInteger()});
        }
        it->state.conflicts = list;
        emit changed();
    });
}

void MountsModel::act(const QString& socket, const QString& what, const QJsonObject& request, int timeout_ms,
                      ControlConnection::Reply done) {
    const auto it = entries_.find(socket);
    if (it == entries_.end()) {
        emit actionFailed(socket, what, "the mount is not running");
        if (done)
            QMetaObject::invokeMethod(this, [done] { done({}, "the mount is not running"); }, Qt::QueuedConnection);
        return;
    }
    it->client->request(request, timeout_ms, [this, socket, what, done](const QJsonObject& reply,
                                                                        const QString& error) {
        if (!error.isEmpty())
            emit actionFailed(socket, what, error);
        else if (!reply["ok"].toBool()) {
            // Several paths: say which failed and why.
            QStringList reasons;
            for (const auto& r : reply["results"].toArray())
                if (!r.toObject()["ok"].toBool())
                    reasons << r.toObject()["path"].toString() + ": " + r.toObject()["error"].toString();
            emit actionFailed(socket, what, reasons.isEmpty() ? reply["error"].toString() : reasons.join("\n"));
        }
        list_conflicts(socket);
        if (done)
            done(reply, error);
    });
}

void MountsModel::go_offline(const QString& socket) {
    act(socket, "Go offline", {{"op", "offline"}}, kActionTimeoutMs, {});
}

void MountsModel::go_online(const QString& socket) {
    act(socket, "Go online", {{"op", "online"}}, kActionTimeoutMs, {});
}

void MountsModel::sync_now(const QString& socket) {
    act(socket, "Sync now", {{"op", "sync"}, {"timeout_s", kSyncTimeoutS}}, (kSyncTimeoutS + 10) * 1000, {});
}

void MountsModel::resolve(const QString& socket, const QStringList& paths, const QString& keep,
                          ControlConnection::Reply done) {
    act(socket, "Resolve", {{"op", "resolve"}, {"paths", QJsonArray::fromStringList(paths)}, {"keep", keep}},
        kActionTimeoutMs, std::move(done));
}

void MountsModel::pin(const QString& socket, const QStringList& paths, ControlConnection::Reply done) {
    act(socket, "Make available offline", {{"op", "pin"}, {"paths", QJsonArray::fromStringList(paths)}},
        kActionTimeoutMs, std::move(done));
}

void MountsModel::unpin(const QString& socket, const QStringList& paths, ControlConnection::Reply done) {
    act(socket, "Remove from offline", {{"op", "unpin"}, {"paths", QJsonArray::fromStringList(paths)}},
        kActionTimeoutMs, std::move(done));
}

void MountsModel::apply_settings(const QString& socket, qint64 cache_limit_bytes, std::optional<bool> auto_sync,
                                 ControlConnection::Reply done) {
    QJsonObject request{{"op", "settings"}};
    if (cache_limit_bytes >= 0)
        request["cache_limit_bytes"] = cache_limit_bytes;
    if (auto_sync)
        request["auto_sync"] = *auto_sync;
    act(socket, "Settings", request, kActionTimeoutMs, std::move(done));
}

} // namespace netfs::ui
