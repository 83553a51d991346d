#include "ui/daemon_client.h"

#include <QJsonArray>

#include <algorithm>

namespace netfs::ui {

namespace {
constexpr int kStatusEveryMs = 1000;
constexpr int kStatusTimeoutMs = 5000;
constexpr int kEventsWaitS = 25;              // the long poll's timeout_s
constexpr int kEventsRetryMs = 1000;          // after a failed poll
} // namespace

DaemonClient::DaemonClient(QString socket_path, QObject* parent)
    : QObject(parent), path_(socket_path), status_conn_(socket_path, this), events_conn_(socket_path, this) {
    poll_timer_.setInterval(kStatusEveryMs);
    connect(&poll_timer_, &QTimer::timeout, this, &DaemonClient::refresh);
    poll_timer_.start();
    events_retry_.setSingleShot(true);
    events_retry_.setInterval(kEventsRetryMs);
    connect(&events_retry_, &QTimer::timeout, this, &DaemonClient::poll_events);
    QMetaObject::invokeMethod(this, [this] { refresh(); poll_events(); }, Qt::QueuedConnection);
}

void DaemonClient::refresh() {
    if (status_out_) {
        refresh_again_ = true;
        return;
    }
    status_out_ = true;
    status_conn_.request({{"op", "status"}}, kStatusTimeoutMs,
                         [this](const QJsonObject& reply, const QString& error) { on_status(reply, error); });
}

void DaemonClient::on_status(const QJsonObject& reply, const QString& error) {
    status_out_ = false;
    if (!error.isEmpty() || !reply["ok"].toBool()) {
        // A daemon that comes back is another process: its events start over.
        pid_ = 0;
        last_event_ = -1;
        emit unreachable(error.isEmpty() ? reply["error"].toString() : error);
    } else {
        const qint64 pid = reply["pid"].toInteger();
        if (pid != pid_ && pid_ != 0) {
            last_event_ = -1;
            events_conn_.reset("the daemon was restarted");
        }
        pid_ = pid;
        emit statusReceived(reply);
    }
    if (refresh_again_) {
        refresh_again_ = false;
        refresh();
    }
}

void DaemonClient::poll_events() {
    if (!events_conn_.idle())
        return;
    const bool learning = last_event_ < 0;
    const QJsonObject request{{"op", "events"}, {"since", learning ? 0 : last_event_},
                              {"timeout_s", learning ? 0 : kEventsWaitS}};
    events_conn_.request(request, (kEventsWaitS + 10) * 1000, [this, learning](const QJsonObject& reply,
                                                                                const QString& error) {
        if (!error.isEmpty() || !reply["ok"].toBool()) {
            last_event_ = -1;
            events_retry_.start();
            return;
        }
        if (!learning && last_event_ >= 0) {
            for (const auto& e : reply["events"].toArray())
                emit eventReceived(e.toObject());
            if (!reply["events"].toArray().isEmpty())
                refresh();  // an event means the status changed: show it now, not at the next poll
        }
        last_event_ = std::max<qint64>(reply["last"].toInteger(), learning ? 0 : last_event_);
        poll_events();
    });
}

void DaemonClient::request(const QJsonObject& request, int timeout_ms, ControlConnection::Reply done) {
    auto* once = new ControlConnection(path_, this);
    once->request(request, timeout_ms, [this, once, done = std::move(done)](const QJsonObject& reply,
                                                                             const QString& error) {
        once->deleteLater();
        done(reply, error);
        refresh();
    });
}

} // namespace netfs::ui
