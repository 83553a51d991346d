// The tray's view of one running daemon, through its control socket: its
// status, polled every second and at once after each event, and its event
// stream, read by a long poll that is always waiting. Everything is
// asynchronous (ControlConnection); a daemon that stops answering is
// reported, and the same socket path is tried again, so a restarted daemon
// is picked up without any action.
#pragma once

#include "ui/control_connection.h"

#include <QJsonObject>
#include <QObject>
#include <QString>
#include <QTimer>

namespace netfs::ui {

class DaemonClient : public QObject {
    Q_OBJECT
public:
    explicit DaemonClient(QString socket_path, QObject* parent = nullptr);

    QString socket_path() const { return path_; }
    // Asks for the status now (one request at a time: a refresh asked for
    // while one is out is folded into it).
    void refresh();
    // A user action (offline, sync, resolve...): its own connection, so a
    // long sync holds up neither the status nor other actions.
    void request(const QJsonObject& request, int timeout_ms, ControlConnection::Reply done);

signals:
    void statusReceived(const QJsonObject& status);
    // The daemon did not answer a status request (stopped, hung, restarting).
    void unreachable(const QString& why);
    // One event of the stream, each exactly once (not the history from
    // before this client started, nor from before a daemon restart).
    void eventReceived(const QJsonObject& event);

private:
    void poll_events();
    void on_status(const QJsonObject& reply, const QString& error);

    QString path_;
    ControlConnection status_conn_;
    ControlConnection events_conn_;
    QTimer poll_timer_;
    QTimer events_retry_;
    bool status_out_ = false;
    bool refresh_again_ = false;
    qint64 pid_ = 0;               // of the daemon last seen; another one restarts the event sequence
    qint64 last_event_ = -1;       // -1: not known yet; the next poll only learns where the stream is
};

} // namespace netfs::ui
