// The tray: one icon for every running mount (the worst state shows), a menu
// with a section per mount (its state in words, then its actions), and
// notifications of what the daemons report. Without a tray host the same
// status and menu live in an ordinary window.
#pragma once

#include "ui/mounts_model.h"

#include <QLabel>
#include <QMap>
#include <QMenu>
#include <QPointer>
#include <QSystemTrayIcon>
#include <QWidget>

#include <memory>

namespace netfs::ui {

class ConflictsWindow;
class OfflineWindow;
class SettingsWindow;

class Tray : public QObject {
    Q_OBJECT
public:
    enum class Shell { tray_icon, window };
    Tray(MountsModel* model, Shell shell, QObject* parent = nullptr);
    ~Tray() override;

    QMenu* menu() { return &menu_; }
    QString tooltip() const { return tooltip_; }
    TrayState shown_state() const { return shown_; }
    QWidget* status_window() { return window_.get(); }
    // Notifications posted so far ("title: text"), newest last.
    QStringList notices() const { return notices_; }

    // The windows of one mount, made on first use.
    ConflictsWindow* conflicts_window(const QString& socket);
    OfflineWindow* offline_window(const QString& socket);
    SettingsWindow* settings_window(const QString& socket);

private:
    void update();
    void rebuild_menu();
    void on_event(const QString& socket, const QString& kind, const QString& detail, const QString& text);
    void notify(const QString& title, const QString& text, QSystemTrayIcon::MessageIcon icon);
    template <typename W> W* window_for(QMap<QString, QPointer<W>>& windows, const QString& socket);

    MountsModel* model_;
    QMenu menu_;
    std::unique_ptr<QSystemTrayIcon> icon_;
    std::unique_ptr<QWidget> window_;  // without a tray host
    QLabel* window_text_ = nullptr;
    QString tooltip_;
    TrayState shown_ = TrayState::in_sync;
    QStringList notices_;
    QMap<QString, QPointer<ConflictsWindow>> conflicts_;
    QMap<QString, QPointer<OfflineWindow>> offline_;
    QMap<QString, QPointer<SettingsWindow>> settings_;
};

} // namespace netfs::ui
