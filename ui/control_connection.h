// One connection to a daemon's control socket (docs/control_api.md): JSON
// request lines out, one reply line back for each, in order. Asynchronous
// throughout: nothing here waits, so the UI thread never blocks on a daemon.
//
// Requests queue up and are written as soon as the socket is connected; the
// daemon answers the requests of one connection one after another, so a
// long request (sync, an events long poll) holds up everything behind it on
// the same connection. DaemonClient therefore keeps the status poll and the
// events long poll on connections of their own and gives each user action a
// fresh one.
#pragma once

#include <QByteArray>
#include <QJsonObject>
#include <QLocalSocket>
#include <QObject>
#include <QString>
#include <QTimer>

#include <deque>
#include <functional>

namespace netfs::ui {

class ControlConnection : public QObject {
    Q_OBJECT
public:
    // `error` is empty when `reply` is the daemon's answer (which may still
    // say "ok": false); otherwise it says why there is no answer.
    using Reply = std::function<void(const QJsonObject& reply, const QString& error)>;

    ControlConnection(QString socket_path, QObject* parent = nullptr);

    // Sends `request`; `done` is called exactly once, later (never from
    // inside this call), with the reply or after `timeout_ms` without one.
    void request(const QJsonObject& request, int timeout_ms, Reply done);
    // Drops the connection; every request waiting fails with `why`.
    void reset(const QString& why);
    bool idle() const { return pending_.empty(); }

private:
    struct Pending {
        QByteArray line;
        int timeout_ms;
        Reply done;
        bool written = false;
    };
    void write_unsent();
    void read_replies();
    void arm_timer();
    void reset_if(quint64 epoch, const QString& why);

    QString path_;
    QLocalSocket socket_;
    std::deque<Pending> pending_;  // in the order the replies will come
    QByteArray buffer_;            // a reply line read in part
    QTimer timeout_;               // for the oldest request written
    quint64 epoch_ = 0;            // bumped by every reset
};

} // namespace netfs::ui
