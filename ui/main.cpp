// netfs-tray: the state of every netfs mount in the system tray (README: Tray).
//   netfs-tray [--show menu|conflicts|offline|settings]
// --show opens that window of the first mount as soon as it is seen
// (scripts/tray-screenshots.sh uses it).
#include "ui/conflicts_window.h"
#include "ui/mounts_model.h"
#include "ui/offline_window.h"
#include "ui/settings_window.h"
#include "ui/tray.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QScreen>
#include <QSystemTrayIcon>

int main(int argc, char** argv) {
    QApplication app(argc, argv);
    QApplication::setApplicationName("netfs-tray");
    QApplication::setOrganizationName("netfs");
    QCommandLineParser parser;
    parser.addHelpOption();
    const QCommandLineOption show("show", "Open the menu, or this window of the first mount: conflicts, offline or settings.",
                                  "WINDOW");
    parser.addOption(show);
    parser.process(app);

    netfs::ui::MountsModel model;
    // Without a tray host (a bare window manager, some Wayland shells) the
    // same status opens as a window; closing it quits.
    const bool tray = QSystemTrayIcon::isSystemTrayAvailable();
    QApplication::setQuitOnLastWindowClosed(!tray);
    netfs::ui::Tray shell(&model, tray ? netfs::ui::Tray::Shell::tray_icon : netfs::ui::Tray::Shell::window);
    QApplication::setWindowIcon(QIcon(netfs::ui::icon_path(netfs::ui::TrayState::in_sync)));

    if (parser.isSet(show)) {
        const QString which = parser.value(show);
        auto opened = std::make_shared<QMetaObject::Connection>();
        *opened = QObject::connect(&model, &netfs::ui::MountsModel::changed, &shell, [&model, &shell, which, opened] {
            if (model.mounts().isEmpty())
                return;
            const QString socket = model.mounts().first().socket;
            if (which == "menu") {  // where a tray icon at the top right would open it
                const QRect screen = QGuiApplication::primaryScreen()->availableGeometry();
                shell.menu()->popup({screen.right() - shell.menu()->sizeHint().width(), screen.top() + 32});
            } else if (which == "conflicts")
                shell.conflicts_window(socket)->show();
            else if (which == "offline")
                shell.offline_window(socket)->show();
            else
                shell.settings_window(socket)->show();
            QObject::disconnect(*opened);
        });
    }
    return app.exec();
}
