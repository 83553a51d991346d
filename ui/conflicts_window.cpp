#include "ui/conflicts_window.h"

#include <QDesktopServices>
#include <QHBoxLayout>
#include <QMessageBox>
#include <QSet>
#include <QToolButton>
#include <QUrl>
#include <QVBoxLayout>

namespace netfs::ui {

namespace {
constexpr int kIdRole = PathTable::kPathRole + 1;  // on a row's path item

QString version_text(bool exists, qint64 size, qint64 mtime_ns) {
    return exists ? human_bytes(size) + ", " + human_time(mtime_ns) : QString("deleted");
}
} // namespace

ConflictsWindow::ConflictsWindow(MountsModel* model, QString socket, QWidget* parent)
    : QWidget(parent), model_(model), socket_(std::move(socket)),
      table_({"Path", "Kind", "My version", "Server's version", "Detected"}), keep_mine_("Keep mine"),
      keep_servers_("Keep the server's"), keep_both_("Keep both"), open_both_("Open both") {
    setWindowTitle("netfs: conflicts");
    resize(900, 360);

    keep_mine_.setToolTip("Put my version on the server; the server's version is replaced");
    keep_servers_.setToolTip("Keep the server's version; my conflicted copy is removed");
    keep_both_.setToolTip("Keep both files: the conflicted copy stays under its own name");
    open_both_.setToolTip("Open both versions in their default applications");
    connect(&keep_mine_, &QAction::triggered, this, &ConflictsWindow::keep_mine);
    connect(&keep_servers_, &QAction::triggered, this, &ConflictsWindow::keep_servers);
    connect(&keep_both_, &QAction::triggered, this, &ConflictsWindow::keep_both);
    connect(&open_both_, &QAction::triggered, this, &ConflictsWindow::open_both);

    auto* buttons = new QHBoxLayout;
    for (QAction* a : {&keep_mine_, &keep_servers_, &keep_both_, &open_both_}) {
        auto* b = new QToolButton;
        b->setDefaultAction(a);
        b->setToolButtonStyle(Qt::ToolButtonTextOnly);
        buttons->addWidget(b);
    }
    buttons->addStretch();
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(&header_);
    layout->addWidget(&table_);
    layout->addLayout(buttons);

    connect(model_, &MountsModel::changed, this, &ConflictsWindow::reload);
    connect(table_.selectionModel(), &QItemSelectionModel::selectionChanged, this, &ConflictsWindow::update_actions);
    reload();
}

void ConflictsWindow::reload() {
    const MountState* m = model_->find(socket_);
    const QList<ConflictInfo> conflicts = m ? m->conflicts : QList<ConflictInfo>{};
    header_.setText(m ? QString("%1: %2 conflict(s). Choose which version to keep; both are on the server until you do.")
                            .arg(m->mountpoint)
                            .arg(conflicts.size())
                      : QString("This mount is not running."));
    // Rows are kept (with their selection) while their conflict is listed.
    QSet<qint64> listed;
    for (const ConflictInfo& c : conflicts)
        listed.insert(c.id);
    QStandardItemModel& rows = table_.rows();
    QSet<qint64> shown;
    for (int row = rows.rowCount() - 1; row >= 0; --row) {
        const qint64 id = rows.item(row, 0)->data(kIdRole).toLongLong();
        if (!listed.contains(id))
            rows.removeRow(row);
        else
            shown.insert(id);
    }
    for (const ConflictInfo& c : conflicts) {
        if (shown.contains(c.id))
            continue;
        QStandardItem* path = PathTable::path_item(c.path);
        path->setData(c.id, kIdRole);
        // No copy: my side deleted it, or changed only its name or
        // attributes (the server's deletion won).
        const bool deleted_here = c.kind == "delete/update";
        path->setToolTip(!c.copy.isEmpty() ? "my version is at " + c.copy
                         : deleted_here    ? QString("my side deleted it")
                                           : QString("my side changed only its name or attributes"));
        rows.appendRow({path, new QStandardItem(c.kind),
                         new QStandardItem(c.copy.isEmpty() && !deleted_here
                                               ? QString("no copy")
                                               : version_text(!c.copy.isEmpty(), c.local_size, c.local_mtime_ns)),
                         new QStandardItem(version_text(c.remote_exists, c.remote_size, c.remote_mtime_ns)),
                         new QStandardItem(human_time(c.detected_ns))});
    }
    update_actions();
}

void ConflictsWindow::update_actions() {
    const bool any = !table_.selected_paths().isEmpty();
    for (QAction* a : {&keep_mine_, &keep_servers_, &keep_both_, &open_both_})
        a->setEnabled(any);
}

void ConflictsWindow::resolve_selected(const QString& keep) {
    const QStringList paths = table_.selected_paths();
    if (paths.isEmpty())
        return;
    model_->resolve(socket_, paths, keep, [this](const QJsonObject& reply, const QString& error) {
        if (!error.isEmpty() || !reply["ok"].toBool())
            header_.setText("Not all were resolved: " + (error.isEmpty() ? reply["error"].toString() : error));
    });
}

void ConflictsWindow::open_both() {
    const MountState* m = model_->find(socket_);
    if (!m)
        return;
    for (const QModelIndex& index : table_.selectionModel()->selectedRows(0)) {
        const qint64 id = index.data(kIdRole).toLongLong();
        for (const ConflictInfo& c : m->conflicts) {
            if (c.id != id)
                continue;
            if (c.remote_exists)
                QDesktopServices::openUrl(QUrl::fromLocalFile(m->mountpoint + c.path));
            if (!c.copy.isEmpty())
                QDesktopServices::openUrl(QUrl::fromLocalFile(m->mountpoint + c.copy));
        }
    }
}

} // namespace netfs::ui
