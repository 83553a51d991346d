// The Settings window. Notification choices are the tray's own (QSettings).
// The cache size limit and automatic sync on reconnect belong to the daemon,
// and the control API has no op to change them yet: they are shown, read
// only, with what to do instead (TODO: a "settings" op in app/daemon_status.cpp).
#pragma once

#include "ui/mounts_model.h"

#include <QCheckBox>
#include <QLabel>
#include <QWidget>

namespace netfs::ui {

// The notification choices, read by the tray for each notice.
struct NotificationChoices {
    bool mode_changes = true;   // went offline, back online
    bool reintegration = true;  // a pass finished
    bool conflicts = true;      // a new conflict
    static NotificationChoices load();
    void save() const;
};

class SettingsWindow : public QWidget {
    Q_OBJECT
public:
    SettingsWindow(MountsModel* model, QString socket, QWidget* parent = nullptr);

private:
    void reload();

    MountsModel* model_;
    QString socket_;
    QLabel cache_limit_;
    QCheckBox auto_sync_;
    QCheckBox notify_modes_, notify_reintegration_, notify_conflicts_;
};

} // namespace netfs::ui
