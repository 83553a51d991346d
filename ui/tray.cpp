#include "ui/tray.h"

#include "ui/conflicts_window.h"
#include "ui/offline_window.h"
#include "ui/settings_window.h"

#include <QApplication>
#include <QDesktopServices>
#include <QPushButton>
#include <QUrl>
#include <QVBoxLayout>

// The icons are compiled into netfs_tray_lib, a static library: naming the
// resource here keeps the linker from dropping it. (Outside any namespace, as
// Q_INIT_RESOURCE requires.)
static void init_tray_resources() { Q_INIT_RESOURCE(netfs); }

namespace netfs::ui {

namespace {
constexpr int kNoticeMs = 6000;
constexpr int kNoticesKept = 50;
} // namespace

Tray::Tray(MountsModel* model, Shell shell, QObject* parent) : QObject(parent), model_(model) {
    init_tray_resources();
    if (shell == Shell::tray_icon) {
        icon_ = std::make_unique<QSystemTrayIcon>();
        icon_->setContextMenu(&menu_);
        // A left click shows the menu too: there is nothing else to open.
        connect(icon_.get(), &QSystemTrayIcon::activated, this, [this](QSystemTrayIcon::ActivationReason r) {
            if (r == QSystemTrayIcon::Trigger)
                menu_.popup(QCursor::pos());
        });
        icon_->show();
    } else {
        window_ = std::make_unique<QWidget>();
        window_->setWindowTitle("netfs");
        window_text_ = new QLabel;
        window_text_->setTextInteractionFlags(Qt::TextSelectableByMouse);
        auto* actions = new QPushButton("Actions");
        actions->setMenu(&menu_);
        auto* layout = new QVBoxLayout(window_.get());
        layout->addWidget(window_text_);
        layout->addWidget(actions);
        window_->show();
    }
    // The menu is rebuilt before it shows, never while it is open.
    connect(&menu_, &QMenu::aboutToShow, this, &Tray::rebuild_menu);
    connect(model_, &MountsModel::changed, this, &Tray::update);
    connect(model_, &MountsModel::daemonEvent, this, &Tray::on_event);
    connect(model_, &MountsModel::daemonStopped, this, [this](const QString&, const QString& mountpoint) {
        notify("netfs stopped", mountpoint + " is no longer mounted, or its daemon does not answer.",
               QSystemTrayIcon::Warning);
    });
    connect(model_, &MountsModel::actionFailed, this, [this](const QString&, const QString& what, const QString& error) {
        notify(what + " failed", error, QSystemTrayIcon::Warning);
    });
    update();
    rebuild_menu();
}

Tray::~Tray() = default;

void Tray::update() {
    const QList<MountState> mounts = model_->mounts();
    shown_ = worst_of(mounts);
    QStringList lines;
    for (const MountState& m : mounts)
        lines << describe(m).join("\n");
    tooltip_ = mounts.isEmpty() ? QString("netfs: no mounts are running") : lines.join("\n\n");
    if (icon_) {
        icon_->setIcon(QIcon(mounts.isEmpty() ? icon_path(TrayState::error) : icon_path(shown_)));
        icon_->setToolTip(tooltip_);
        if (!menu_.isVisible())
            rebuild_menu();
    } else {
        window_text_->setText(tooltip_);
        window_->setWindowIcon(QIcon(icon_path(shown_)));
    }
}

void Tray::rebuild_menu() {
    menu_.clear();
    const QList<MountState> mounts = model_->mounts();
    if (mounts.isEmpty())
        menu_.addAction("No netfs mounts are running")->setEnabled(false);
    for (const MountState& m : mounts) {
        const QString socket = m.socket;
        menu_.addSection(QIcon(icon_path(tray_state(m))), m.mountpoint);
        for (const QString& line : describe(m).mid(1))
            menu_.addAction(line)->setEnabled(false);
        if (!m.alive)
            continue;
        menu_.addAction("Open folder", this, [mp = m.mountpoint] { QDesktopServices::openUrl(QUrl::fromLocalFile(mp)); });
        if (m.mode == "disconnected")
            menu_.addAction("Go online", this, [this, socket] { model_->go_online(socket); });
        else
            menu_.addAction("Go offline", this, [this, socket] { model_->go_offline(socket); });
        menu_.addAction("Sync now", this, [this, socket] { model_->sync_now(socket); })
            ->setEnabled(m.mode != "disconnected");
        menu_.addAction(m.conflict_count > 0 ? QString("Conflicts (%1)…").arg(m.conflict_count) : QString("Conflicts…"),
                        this, [this, socket] { conflicts_window(socket)->show(); });
        menu_.addAction("Available offline…", this, [this, socket] { offline_window(socket)->show(); });
        menu_.addAction("Settings…", this, [this, socket] { settings_window(socket)->show(); });
    }
    menu_.addSeparator();
    menu_.addAction("Quit", qApp, &QApplication::quit);
}

void Tray::on_event(const QString& socket, const QString& kind, const QString& detail, const QString& text) {
    const MountState* m = model_->find(socket);
    const QString where = m ? m->mountpoint : socket;
    const NotificationChoices choices = NotificationChoices::load();
    if (kind == "mode" && choices.mode_changes) {
        if (detail == "disconnected")
            notify("Offline: " + where, "Working from the cache; changes are kept and sent later (" + text + ").",
                   QSystemTrayIcon::Information);
        else if (detail == "connected")
            notify("Online: " + where, "Connected to the server again.", QSystemTrayIcon::Information);
    } else if (kind == "sync" && choices.reintegration) {
        notify((detail == "ok" ? "Synced: " : "Sync stopped: ") + where, text,
               detail == "ok" ? QSystemTrayIcon::Information : QSystemTrayIcon::Warning);
    } else if (kind == "conflict" && choices.conflicts) {
        notify("Conflict: " + where, detail + " (" + text + ") was changed on both sides; both versions are kept.",
               QSystemTrayIcon::Warning);
    }
}

void Tray::notify(const QString& title, const QString& text, QSystemTrayIcon::MessageIcon icon) {
    notices_ << title + ": " + text;
    while (notices_.size() > kNoticesKept)
        notices_.removeFirst();
    if (icon_)
        icon_->showMessage(title, text, icon, kNoticeMs);
}

template <typename W> W* Tray::window_for(QMap<QString, QPointer<W>>& windows, const QString& socket) {
    QPointer<W>& w = windows[socket];
    if (!w) {
        w = new W(model_, socket);
        w->setAttribute(Qt::WA_DeleteOnClose);
    }
    w->raise();
    w->activateWindow();
    return w;
}

ConflictsWindow* Tray::conflicts_window(const QString& socket) { return window_for(conflicts_, socket); }
OfflineWindow* Tray::offline_window(const QString& socket) { return window_for(offline_, socket); }
SettingsWindow* Tray::settings_window(const QString& socket) { return window_for(settings_, socket); }

} // namespace netfs::ui
