// The tray app (ui/) against a real daemon over file://: its model follows
// modes, pending changes and conflicts within a second; the Conflicts and
// Available offline windows act on the daemon (the server and `netfs status`
// show it); a daemon restart is survived. Everything goes through the
// control API, as the tray does on a desktop.
#include "tests/support/mount_fixture.h"
#include "ui/conflicts_window.h"
#include "ui/mounts_model.h"
#include "ui/offline_window.h"
#include "ui/settings_window.h"
#include "ui/tray.h"

#include <QAction>
#include <QApplication>
#include <QDesktopServices>
#include <QDialogButtonBox>
#include <QDir>
#include <QElapsedTimer>
#include <QFileDialog>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QPointer>
#include <QPushButton>
#include <QTest>
#include <QThread>
#include <QUrl>

using namespace netfs::test;
using namespace netfs::ui;

namespace {

QJsonObject netfs_json(const MountFixture& m, const QString& command, int timeout_ms = 60000) {
    const RunResult r = run(NETFS_BINARY, {command, m.mountpoint(), "--json"}, timeout_ms, m.environment());
    return QJsonDocument::fromJson(r.out.toUtf8()).object();
}

bool netfs_ok(const MountFixture& m, const QString& command) {
    return run(NETFS_BINARY, {command, m.mountpoint()}, 60000, m.environment()).exit_code == 0;
}

bool put_text(const QString& path, const QByteArray& content) {
    return write_file(path, std::vector<std::byte>(reinterpret_cast<const std::byte*>(content.constData()),
                                                   reinterpret_cast<const std::byte*>(content.constData()) +
                                                       content.size()));
}

QByteArray text(const QString& path) {
    const auto bytes = read_file(path);
    return QByteArray(reinterpret_cast<const char*>(bytes.data()), qsizetype(bytes.size()));
}

// The model's view of `m`'s mount, or an empty state (alive false) when it has none.
MountState seen(const MountsModel& model, const MountFixture& m) {
    const MountState* s = model.find_by_mountpoint(m.mountpoint());
    return s ? *s : MountState{};
}

QStringList pinned_paths(const MountFixture& m) {
    QStringList paths;
    for (const auto& p : netfs_json(m, "status")["pins"].toArray())
        paths << p.toObject()["path"].toString();
    return paths;
}

// The model has seen the daemon and its event stream is listening.
bool wait_until_watched(const MountsModel& model, const MountFixture& m) {
    QElapsedTimer clock;
    clock.start();
    while (!seen(model, m).alive && clock.elapsed() < 5000)
        QTest::qWait(20);
    QTest::qWait(300);  // the events long poll learns where the stream is
    return seen(model, m).alive;
}

// Presses a chooser's Open (or Choose) button, as a person does; false when
// it has none or it is disabled.
bool press_open(QFileDialog* chooser) {
    const auto* box = chooser->findChild<QDialogButtonBox*>();
    QPushButton* open = box ? box->button(QDialogButtonBox::Open) : nullptr;
    if (!open || !open->isEnabled())
        return false;
    open->click();
    return true;
}

} // namespace

// Stands in for the desktop's default applications (QDesktopServices).
class UrlRecorder : public QObject {
    Q_OBJECT
public:
    QList<QUrl> urls;
public slots:
    void open(const QUrl& url) { urls.append(url); }
};

class TestTray : public QObject {
    Q_OBJECT
private slots:
    // Offline, a change, a collision on the server, back online and sync:
    // the model (and the tray's icon and notices) follow each step within
    // 1 s; the Conflicts window resolves two conflicts two ways.
    void modes_pending_and_conflicts_reach_the_model_and_are_resolved_in_the_window() {
        MountFixture m;
        QVERIFY(put_text(m.direct("a.txt"), "original a\n"));
        QVERIFY(put_text(m.direct("b.txt"), "original b\n"));
        QVERIFY2(m.mount(), qPrintable(m.error()));
        QCOMPARE(text(m.at("a.txt")), QByteArray("original a\n"));  // cached for offline use
        QCOMPARE(text(m.at("b.txt")), QByteArray("original b\n"));

        MountsModel model;
        Tray tray(&model, Tray::Shell::window);
        QVERIFY(wait_until_watched(model, m));
        QCOMPARE(seen(model, m).mode, QString("connected"));
        QCOMPARE(seen(model, m).remote, m.url());
        QCOMPARE(tray_state(seen(model, m)), TrayState::in_sync);

        QVERIFY(netfs_ok(m, "offline"));
        QTRY_COMPARE_WITH_TIMEOUT(seen(model, m).mode, QString("disconnected"), 1000);
        QCOMPARE(tray_state(seen(model, m)), TrayState::offline);
        QTRY_VERIFY_WITH_TIMEOUT(tray.notices().join("\n").contains("Offline: "), 1000);
        QVERIFY2(tray.tooltip().contains("Mode: disconnected (by request)"), qPrintable(tray.tooltip()));

        QVERIFY(put_text(m.at("a.txt"), "mine a\n"));
        QVERIFY(put_text(m.at("b.txt"), "mine b\n"));
        const qint64 pending = netfs_json(m, "status")["pending_operations"].toInteger();
        QVERIFY(pending >= 2);
        QTRY_COMPARE_WITH_TIMEOUT(seen(model, m).pending_operations, pending, 1000);
        QCOMPARE(tray_state(seen(model, m)), TrayState::offline_pending);
        QCOMPARE(tray.shown_state(), TrayState::offline_pending);
        QVERIFY2(tray.tooltip().contains(QString("Pending: %1 operations").arg(pending)), qPrintable(tray.tooltip()));

        QThread::msleep(1100);  // a different mtime on the server, even at 1 s resolution
        QVERIFY(put_text(m.direct("a.txt"), "server a\n"));
        QVERIFY(put_text(m.direct("b.txt"), "server b\n"));
        QVERIFY(netfs_ok(m, "online"));
        QCOMPARE(netfs_json(m, "sync")["pending"].toInteger(), 0);  // `online` may have found them already
        QCOMPARE(netfs_json(m, "status")["conflicts"].toInteger(), 2);
        QTRY_COMPARE_WITH_TIMEOUT(seen(model, m).conflicts.size(), 2, 1000);
        QCOMPARE(seen(model, m).conflict_count, 2);
        QCOMPARE(tray.shown_state(), TrayState::conflicts);
        QTRY_VERIFY_WITH_TIMEOUT(tray.notices().join("\n").contains("Conflict: "), 1000);
        QString b_copy;
        for (const ConflictInfo& c : seen(model, m).conflicts) {
            QCOMPARE(c.kind, QString("update/update"));
            QVERIFY(c.remote_exists);
            if (c.path == "/b.txt")
                b_copy = c.copy;
        }
        QVERIFY(b_copy.startsWith("/b (conflicted copy "));

        ConflictsWindow window(&model, seen(model, m).socket);
        window.show();
        QTRY_COMPARE_WITH_TIMEOUT(window.listed_paths().size(), 2, 1000);
        QVERIFY(!window.keep_mine_action()->isEnabled());  // nothing selected yet

        // Open both: the server's version and the local one, in their
        // default applications (here a recorder stands in for them).
        UrlRecorder opened;
        QDesktopServices::setUrlHandler("file", &opened, "open");
        window.select_paths({"/b.txt"});
        window.open_both_action()->trigger();
        QDesktopServices::unsetUrlHandler("file");
        QCOMPARE(opened.urls, (QList<QUrl>{QUrl::fromLocalFile(m.mountpoint() + "/b.txt"),
                                           QUrl::fromLocalFile(m.mountpoint() + b_copy)}));
        QCOMPARE(text(m.mountpoint() + b_copy), QByteArray("mine b\n"));

        // Keep mine: the server gets the local version.
        window.select_paths({"/a.txt"});
        QVERIFY(window.keep_mine_action()->isEnabled());
        window.keep_mine_action()->trigger();
        QTRY_COMPARE_WITH_TIMEOUT(window.listed_paths(), QStringList{"/b.txt"}, 5000);
        QCOMPARE(text(m.direct("a.txt")), QByteArray("mine a\n"));

        // Keep the server's: the local copy goes, the server's file stays.
        window.select_paths({"/b.txt"});
        window.keep_servers_action()->trigger();
        QTRY_VERIFY_WITH_TIMEOUT(window.listed_paths().isEmpty(), 5000);
        QCOMPARE(text(m.direct("b.txt")), QByteArray("server b\n"));
        QVERIFY(!QFileInfo::exists(m.direct(b_copy.mid(1))));
        QCOMPARE(netfs_json(m, "status")["conflicts"].toInteger(), 0);
        QTRY_COMPARE_WITH_TIMEOUT(seen(model, m).conflict_count, 0, 1000);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    // Add files… and Add folder… open choosers at the mount point; what is
    // chosen in them is pinned in the daemon and listed in the window, and
    // Remove unpins. The window shows the pins fetched and the mount ready.
    void pins_are_added_and_removed_through_the_window() {
        MountFixture m;
        QVERIFY(QDir().mkpath(m.direct("docs/deep")));
        QVERIFY(write_file(m.direct("docs/deep/a.bin"), random_bytes(1 << 20, 3)));
        QVERIFY(put_text(m.direct("docs/notes.txt"), "notes\n"));
        QVERIFY(put_text(m.direct("loose.txt"), "loose\n"));
        QVERIFY(put_text(m.direct("other.txt"), "other\n"));
        QVERIFY2(m.mount(), qPrintable(m.error()));

        MountsModel model;
        QVERIFY(wait_until_watched(model, m));
        OfflineWindow window(&model, seen(model, m).socket);
        window.show();
        QVERIFY(QTest::qWaitForWindowExposed(&window));
        QVERIFY2(window.summary().startsWith("Nothing is pinned"), qPrintable(window.summary()));

        // Two files, named in the chooser's name field as a person types them.
        window.add_files_button()->click();
        QPointer<QFileDialog> files;
        QTRY_VERIFY_WITH_TIMEOUT(files = qobject_cast<QFileDialog*>(QApplication::activeModalWidget()), 2000);
        QCOMPARE(files->directory().absolutePath(), m.mountpoint());
        QCOMPARE(files->fileMode(), QFileDialog::ExistingFiles);
        files->selectFile(R"("loose.txt" "other.txt")");
        QCOMPARE(files->selectedFiles(), (QStringList{m.at("loose.txt"), m.at("other.txt")}));
        QVERIFY(press_open(files));
        QTRY_VERIFY_WITH_TIMEOUT(files.isNull(), 2000);  // closed and gone
        QTRY_COMPARE_WITH_TIMEOUT(pinned_paths(m), (QStringList{"/loose.txt", "/other.txt"}), 5000);
        QTRY_COMPARE_WITH_TIMEOUT(window.listed_paths(), (QStringList{"/loose.txt", "/other.txt"}), 2000);

        // A folder, and with it what is inside.
        window.add_folder_button()->click();
        QPointer<QFileDialog> folder;
        QTRY_VERIFY_WITH_TIMEOUT(folder = qobject_cast<QFileDialog*>(QApplication::activeModalWidget()), 2000);
        QCOMPARE(folder->directory().absolutePath(), m.mountpoint());
        QCOMPARE(folder->fileMode(), QFileDialog::Directory);
        folder->selectFile(m.at("docs"));
        QCOMPARE(folder->selectedFiles(), QStringList{m.at("docs")});
        QVERIFY(press_open(folder));
        QTRY_VERIFY_WITH_TIMEOUT(folder.isNull(), 2000);
        QTRY_COMPARE_WITH_TIMEOUT(pinned_paths(m), (QStringList{"/docs", "/loose.txt", "/other.txt"}), 5000);
        QTRY_COMPARE_WITH_TIMEOUT(window.listed_paths(), (QStringList{"/loose.txt", "/other.txt", "/docs"}), 2000);
        QTRY_VERIFY2_WITH_TIMEOUT(window.summary().startsWith("Ready to go offline"), qPrintable(window.summary()),
                                  10000);
        QCOMPARE(seen(model, m).pinned_total_bytes, qint64((1 << 20) + 6 + 6 + 6));

        window.select_paths({"/docs", "/other.txt"});
        window.remove_selected();
        QTRY_COMPARE_WITH_TIMEOUT(pinned_paths(m), QStringList{"/loose.txt"}, 5000);
        QTRY_COMPARE_WITH_TIMEOUT(window.listed_paths(), QStringList{"/loose.txt"}, 2000);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    // The Settings window changes the daemon's cache limit and automatic
    // sync; a limit that is not a size is refused in the window.
    void settings_are_applied_in_the_daemon() {
        MountFixture m;
        QVERIFY2(m.mount(), qPrintable(m.error()));
        MountsModel model;
        QVERIFY(wait_until_watched(model, m));
        SettingsWindow window(&model, seen(model, m).socket);
        window.show();
        auto status = [&] {
            const RunResult r = run(NETFS_BINARY, {"status", m.mountpoint(), "--json"}, 10000, m.environment());
            return QJsonDocument::fromJson(r.out.toUtf8()).object();
        };
        window.apply_cache_limit("64M");
        QTRY_COMPARE_WITH_TIMEOUT(status()["cache"].toObject()["limit_bytes"].toInteger(), qint64(64) << 20, 5000);
        window.apply_cache_limit("lots");
        QVERIFY(!window.limit_error().isEmpty());
        window.apply_cache_limit("1M");  // below the daemon's minimum: its answer is shown
        QTRY_VERIFY_WITH_TIMEOUT(window.limit_error().contains("16 MiB"), 5000);
        QCOMPARE(status()["cache"].toObject()["limit_bytes"].toInteger(), qint64(64) << 20);
        window.choose_auto_sync(false);
        QTRY_COMPARE_WITH_TIMEOUT(status()["auto_sync"].toBool(true), false, 5000);
        QTRY_COMPARE_WITH_TIMEOUT(seen(model, m).auto_sync, false, 2000);
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }

    // The daemon goes (unmount) and comes back (mount): the model shows it
    // gone, then back with the new daemon, whose events still arrive.
    void a_daemon_restart_is_survived() {
        MountFixture m;
        QVERIFY2(m.mount(), qPrintable(m.error()));
        MountsModel model;
        Tray tray(&model, Tray::Shell::window);
        QVERIFY(wait_until_watched(model, m));
        const qint64 first_pid = seen(model, m).pid;
        QCOMPARE(first_pid, m.daemon_pid());

        QVERIFY2(m.unmount(), qPrintable(m.error()));
        QTRY_VERIFY_WITH_TIMEOUT(model.find_by_mountpoint(m.mountpoint()) == nullptr, 3000);
        QVERIFY2(tray.notices().join("\n").contains("netfs stopped"), qPrintable(tray.notices().join("\n")));

        QVERIFY2(m.mount(), qPrintable(m.error()));
        QTRY_VERIFY_WITH_TIMEOUT(seen(model, m).alive && seen(model, m).pid == m.daemon_pid(), 3000);
        QVERIFY(m.daemon_pid() != first_pid);
        QTest::qWait(300);  // the events long poll learns where the new stream is
        QVERIFY(netfs_ok(m, "offline"));
        QTRY_COMPARE_WITH_TIMEOUT(seen(model, m).mode, QString("disconnected"), 1000);
        QTRY_VERIFY_WITH_TIMEOUT(tray.notices().join("\n").contains("Offline: "), 1000);
        QVERIFY(netfs_ok(m, "online"));
        QVERIFY2(m.unmount(), qPrintable(m.error()));
    }
};

QTEST_MAIN(TestTray)
#include "test_tray.moc"
