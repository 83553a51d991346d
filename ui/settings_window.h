// The Settings window. Notification choices are the tray's own (QSettings);
// the cache size limit and automatic sync on reconnect belong to the daemon
// and are applied through the control API's "settings" op.
#pragma once

#include "ui/mounts_model.h"

#include <QCheckBox>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
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

// "10G", "512M", "0" or "none" (no limit) -> bytes; -1 when it is none of these.
qint64 parse_size(const QString& text);

class SettingsWindow : public QWidget {
    Q_OBJECT
public:
    SettingsWindow(MountsModel* model, QString socket, QWidget* parent = nullptr);

    // What the user's typing and clicking do (and what tests drive).
    void apply_cache_limit(const QString& text);
    void choose_auto_sync(bool on);
    QString limit_error() const { return limit_error_.text(); }

private:
    void reload();

    MountsModel* model_;
    QString socket_;
    void apply_limit();

    QLineEdit cache_limit_;
    QPushButton apply_limit_{"Apply"};
    QLabel limit_error_;
    QCheckBox auto_sync_;
    QCheckBox notify_modes_, notify_reintegration_, notify_conflicts_;
};

} // namespace netfs::ui
