#include "ui/settings_window.h"

#include <QFormLayout>
#include <QHBoxLayout>
#include <QJsonObject>
#include <QRegularExpression>
#include <QGroupBox>
#include <QSettings>
#include <QVBoxLayout>

namespace netfs::ui {

NotificationChoices NotificationChoices::load() {
    QSettings s("netfs", "netfs-tray");
    NotificationChoices c;
    c.mode_changes = s.value("notify/mode_changes", true).toBool();
    c.reintegration = s.value("notify/reintegration", true).toBool();
    c.conflicts = s.value("notify/conflicts", true).toBool();
    return c;
}

void NotificationChoices::save() const {
    QSettings s("netfs", "netfs-tray");
    s.setValue("notify/mode_changes", mode_changes);
    s.setValue("notify/reintegration", reintegration);
    s.setValue("notify/conflicts", conflicts);
}

SettingsWindow::SettingsWindow(MountsModel* model, QString socket, QWidget* parent)
    : QWidget(parent), model_(model), socket_(std::move(socket)), auto_sync_("Sync by itself when the server is back"),
      notify_modes_("When the mount goes offline or online"), notify_reintegration_("When changes have been synced"),
      notify_conflicts_("When a new conflict appears") {
    setWindowTitle("netfs: settings");

    auto* mount_box = new QGroupBox("This mount");
    auto* form = new QFormLayout(mount_box);
    auto* limit_row = new QHBoxLayout;
    cache_limit_.setPlaceholderText("e.g. 10G, or none");
    limit_row->addWidget(&cache_limit_);
    limit_row->addWidget(&apply_limit_);
    form->addRow("Cache size limit:", limit_row);
    form->addRow(&limit_error_);
    form->addRow(&auto_sync_);
    connect(&apply_limit_, &QPushButton::clicked, this, &SettingsWindow::apply_limit);
    connect(&cache_limit_, &QLineEdit::returnPressed, this, &SettingsWindow::apply_limit);
    connect(&auto_sync_, &QCheckBox::clicked, this, &SettingsWindow::choose_auto_sync);

    auto* notify_box = new QGroupBox("Notifications");
    auto* notify = new QVBoxLayout(notify_box);
    const NotificationChoices choices = NotificationChoices::load();
    notify_modes_.setChecked(choices.mode_changes);
    notify_reintegration_.setChecked(choices.reintegration);
    notify_conflicts_.setChecked(choices.conflicts);
    for (QCheckBox* box : {&notify_modes_, &notify_reintegration_, &notify_conflicts_}) {
        notify->addWidget(box);
        connect(box, &QCheckBox::toggled, this, [this] {
            NotificationChoices{notify_modes_.isChecked(), notify_reintegration_.isChecked(),
                                notify_conflicts_.isChecked()}
                .save();
        });
    }

    auto* layout = new QVBoxLayout(this);
    layout->addWidget(mount_box);
    layout->addWidget(notify_box);
    connect(model_, &MountsModel::changed, this, &SettingsWindow::reload);
    reload();
}

qint64 parse_size(const QString& text) {
    const QString t = text.trimmed().toUpper();
    if (t == "NONE" || t == "0")
        return 0;
    // As typed (10G, 512M) or as shown (10.0 GiB).
    static const QRegularExpression form(R"(^(\d+(?:\.\d+)?)\s*([KMGT]?)I?B?$)");
    const auto match = form.match(t);
    if (!match.hasMatch())
        return -1;
    double n = match.captured(1).toDouble();
    const QString unit = match.captured(2);
    for (const QString u : {"K", "M", "G", "T"}) {
        if (unit.isEmpty())
            break;
        n *= 1024;
        if (unit == u)
            break;
    }
    return qint64(n);
}

void SettingsWindow::apply_cache_limit(const QString& text) {
    cache_limit_.setText(text);
    apply_limit();
}

void SettingsWindow::choose_auto_sync(bool on) {
    auto_sync_.setChecked(on);
    model_->apply_settings(socket_, -1, on);
}

void SettingsWindow::apply_limit() {
    const qint64 bytes = parse_size(cache_limit_.text());
    if (bytes < 0) {
        limit_error_.setText("A size such as 10G or 512M, or none.");
        return;
    }
    limit_error_.clear();
    model_->apply_settings(socket_, bytes, std::nullopt, [this](const QJsonObject& reply, const QString& error) {
        limit_error_.setText(!error.isEmpty() ? error : reply["ok"].toBool() ? QString() : reply["error"].toString());
    });
}

void SettingsWindow::reload() {
    const MountState* m = model_->find(socket_);
    const bool usable = m && m->alive && m->cache_enabled;
    cache_limit_.setEnabled(usable);
    apply_limit_.setEnabled(usable);
    auto_sync_.setEnabled(m && m->alive);
    if (m)
        auto_sync_.setChecked(m->auto_sync);
    if (cache_limit_.hasFocus())
        return;  // being edited
    if (!m)
        cache_limit_.setText("(not running)");
    else if (!m->cache_enabled)
        cache_limit_.setText("no cache");
    else
        cache_limit_.setText(m->cache_limit_bytes > 0 ? human_bytes(m->cache_limit_bytes) : QString("none"));
}

} // namespace netfs::ui
