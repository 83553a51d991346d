// The state of every running mount, as the tray shows it: found by listing
// the control sockets in the runtime directory (docs/control_api.md), kept
// current by one DaemonClient per socket. The tray, its windows and the
// tests read this; nothing here draws.
#pragma once

#include "ui/control_connection.h"

#include <QJsonObject>
#include <QList>
#include <QMap>
#include <QObject>
#include <QString>
#include <QStringList>
#include <QTimer>

#include <optional>

namespace netfs::ui {

class DaemonClient;

struct PinInfo {
    QString path;  // within the mount: /docs
    qint64 present_bytes = 0;
    qint64 total_bytes = 0;
    QString state;  // waiting, fetching, ready, failed
    QString error;
};

struct ConflictInfo {
    qint64 id = 0;
    QString kind;  // update/update, update/delete, ...
    QString path;  // within the mount; the server's version
    QString copy;  // the local version beside it; empty when the local side deleted
    qint64 local_size = 0, local_mtime_ns = 0;
    bool remote_exists = false;
    qint64 remote_size = 0, remote_mtime_ns = 0;
    qint64 detected_ns = 0;
};

// What the tray icon says about a mount, worst first in `worst_of`.
enum class TrayState { in_sync, syncing, offline, offline_pending, conflicts, error };

struct MountState {
    QString socket;
    bool alive = false;  // the daemon answers now
    QString error;       // why it does not
    // From the last status reply:
    QString mountpoint, remote, server, mode;
    bool manual_offline = false;
    bool auto_sync = true;  // the log is replayed by itself when the server is back
    qint64 pid = 0;
    bool cache_enabled = false;
    qint64 cache_limit_bytes = 0, cache_stored_bytes = 0;
    qint64 dirty_bytes = 0;  // not yet on the server: in the cache and in memory
    qint64 pending_operations = 0;
    qint64 conflict_count = 0;
    qint64 ops_done = 0, ops_total = 0, bytes_left = 0;  // of the pass running now
    qint64 pinned_present_bytes = 0, pinned_total_bytes = 0;
    bool ready_for_offline = true;
    QList<PinInfo> pins;
    qint64 generation = 0;
    QList<ConflictInfo> conflicts;  // listed after every change of the count
};

TrayState tray_state(const MountState& m);
TrayState worst_of(const QList<MountState>& mounts);
QString icon_path(TrayState state);  // in the resources: ":/icons/netfs-in-sync.svg"
QString state_words(TrayState state);
// The mount in words, one fact per line: server, mode, cache, pins, pending, conflicts.
QStringList describe(const MountState& m);
QString human_bytes(qint64 n);
QString human_time(qint64 ns);  // local date and time

// Where daemons put their sockets: the daemon's own rule (app/runtime_dirs.h).
QString default_socket_dir();

class MountsModel : public QObject {
    Q_OBJECT
public:
    explicit MountsModel(QString socket_dir = default_socket_dir(), QObject* parent = nullptr);

    // Every mount whose daemon has answered at least once and whose socket
    // is still there, by mount point.
    QList<MountState> mounts() const;
    // Null when there is none (the pointer is valid until control returns to the event loop).
    const MountState* find(const QString& socket) const;
    const MountState* find_by_mountpoint(const QString& mountpoint) const;

    // Lists the socket directory now (also done every second).
    void rescan();

    // User actions on the mount at `socket`; `done` (optional) gets the
    // daemon's reply or why there is none. Failures are also signalled.
    void go_offline(const QString& socket);
    void go_online(const QString& socket);
    void sync_now(const QString& socket);
    void resolve(const QString& socket, const QStringList& paths, const QString& keep,
                 ControlConnection::Reply done = {});
    void pin(const QString& socket, const QStringList& paths, ControlConnection::Reply done = {});
    void unpin(const QString& socket, const QStringList& paths, ControlConnection::Reply done = {});
    // The daemon's settings (docs/control_api.md "settings"); a negative
    // limit leaves it as it is.
    void apply_settings(const QString& socket, qint64 cache_limit_bytes, std::optional<bool> auto_sync,
                        ControlConnection::Reply done = {});

signals:
    void changed();  // a mount appeared, went or changed
    // One event of a daemon's stream (docs/control_api.md: kind, detail, text).
    void daemonEvent(const QString& socket, const QString& kind, const QString& detail, const QString& text);
    void daemonStopped(const QString& socket, const QString& mountpoint);
    void actionFailed(const QString& socket, const QString& what, const QString& error);

private:
    struct Entry {
        DaemonClient* client = nullptr;
        MountState state;
        bool answered = false;  // once at least
        bool listing_conflicts = false;
    };
    void on_status(const QString& socket, const QJsonObject& s);
    void on_unreachable(const QString& socket, const QString& why);
    void list_conflicts(const QString& socket);
    void act(const QString& socket, const QString& what, const QJsonObject& request, int timeout_ms,
             ControlConnection::Reply done);

    QString dir_;
    QMap<QString, Entry> entries_;  // by socket path
    QTimer scan_timer_;
};

} // namespace netfs::ui
