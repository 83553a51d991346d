#include "ui/control_connection.h"

#include <QJsonDocument>

namespace netfs::ui {

ControlConnection::ControlConnection(QString socket_path, QObject* parent)
    : QObject(parent), path_(std::move(socket_path)) {
    timeout_.setSingleShot(true);
    connect(&timeout_, &QTimer::timeout, this, [this] { reset("the daemon did not answer in time"); });
    connect(&socket_, &QLocalSocket::connected, this, &ControlConnection::write_unsent);
    connect(&socket_, &QLocalSocket::readyRead, this, &ControlConnection::read_replies);
    // Both queued: the error can be raised inside connectToServer(), and
    // callbacks must never run inside request(). The epoch keeps a late
    // notice from failing requests of a newer connection.
    connect(&socket_, &QLocalSocket::errorOccurred, this, [this](QLocalSocket::LocalSocketError) {
        QMetaObject::invokeMethod(
            this, [this, why = socket_.errorString(), epoch = epoch_] { reset_if(epoch, why); },
            Qt::QueuedConnection);
    });
    connect(&socket_, &QLocalSocket::disconnected, this, [this] {
        QMetaObject::invokeMethod(
            this, [this, epoch = epoch_] { reset_if(epoch, "the daemon closed the connection"); },
            Qt::QueuedConnection);
    });
}

void ControlConnection::request(const QJsonObject& request, int timeout_ms, Reply done) {
    pending_.push_back({QJsonDocument(request).toJson(QJsonDocument::Compact) + '\n', timeout_ms, std::move(done)});
    if (socket_.state() == QLocalSocket::UnconnectedState)
        socket_.connectToServer(path_);
    else if (socket_.state() == QLocalSocket::ConnectedState)
        write_unsent();
}

void ControlConnection::write_unsent() {
    for (Pending& p : pending_) {
        if (!p.written) {
            socket_.write(p.line);
            p.written = true;
        }
    }
    arm_timer();
}

void ControlConnection::arm_timer() {
    if (pending_.empty() || !pending_.front().written)
        timeout_.stop();
    else
        timeout_.start(pending_.front().timeout_ms);
}

void ControlConnection::read_replies() {
    buffer_ += socket_.readAll();
    qsizetype end;
    while ((end = buffer_.indexOf('\n')) >= 0) {
        const QByteArray line = buffer_.left(end);
        buffer_.remove(0, end + 1);
        if (pending_.empty())
            continue;  // nothing asked for it (a reply after a timeout was reset away)
        Reply done = std::move(pending_.front().done);
        pending_.pop_front();
        arm_timer();
        QJsonParseError parse{};
        const QJsonDocument doc = QJsonDocument::fromJson(line, &parse);
        if (parse.error != QJsonParseError::NoError || !doc.isObject())
            done({}, "the daemon's reply is not JSON: " + QString::fromUtf8(line.left(200)));
        else
            done(doc.object(), {});
    }
}

void ControlConnection::reset_if(quint64 epoch, const QString& why) {
    if (epoch == epoch_)
        reset(why);
}

void ControlConnection::reset(const QString& why) {
    // The callbacks may queue new requests (on a new connection): take the
    // list and close this one first.
    std::deque<Pending> failed;
    failed.swap(pending_);
    ++epoch_;
    timeout_.stop();
    buffer_.clear();
    socket_.abort();
    for (Pending& p : failed)
        p.done({}, why);
}

} // namespace netfs::ui
