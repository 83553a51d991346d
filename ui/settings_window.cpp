#include "ui/settings_window.h"

#include <QFormLayout>
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
    form->addRow("Cache size limit:", &cache_limit_);
    auto_sync_.setChecked(true);
    auto_sync_.setEnabled(false);
    form->addRow(&auto_sync_);
    auto* note = new QLabel("These are set when mounting (netfs mount --cache-size); the daemon cannot change "
                            "them while running yet.");
    note->setWordWrap(true);
    form->addRow(note);

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

void SettingsWindow::reload() {
    const MountState* m = model_->find(socket_);
    if (!m)
        cache_limit_.setText("(not running)");
    else if (!m->cache_enabled)
        cache_limit_.setText("no cache");
    else
        cache_limit_.setText(m->cache_limit_bytes > 0 ? human_bytes(m->cache_limit_bytes) : QString("none"));
}

} // namespace netfs::ui
