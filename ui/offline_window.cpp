#include "ui/offline_window.h"

#include <QDir>
#include <QFileDialog>
#include <QJsonArray>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QMenu>
#include <QVBoxLayout>

namespace netfs::ui {

namespace {
enum Column { path_col, size_col, present_col, progress_col, state_col, column_count };
constexpr int kPathRole = Qt::UserRole + 1;
} // namespace

OfflineWindow::OfflineWindow(MountsModel* model, QString socket, QWidget* parent)
    : QWidget(parent), model_(model), socket_(std::move(socket)), add_("Add…"), remove_("Remove") {
    setWindowTitle("netfs: available offline");
    resize(760, 340);
    rows_.setColumnCount(column_count);
    rows_.setHorizontalHeaderLabels({"Pinned", "Size", "Present", "Fetched", "State"});
    table_.setModel(&rows_);
    table_.setSelectionBehavior(QAbstractItemView::SelectRows);
    table_.setSelectionMode(QAbstractItemView::ExtendedSelection);
    table_.setEditTriggers(QAbstractItemView::NoEditTriggers);
    table_.horizontalHeader()->setSectionResizeMode(path_col, QHeaderView::Stretch);
    table_.verticalHeader()->hide();

    auto* add_menu = new QMenu(this);
    add_menu->addAction("Files…", this, &OfflineWindow::choose_files);
    add_menu->addAction("Folder…", this, &OfflineWindow::choose_folder);
    add_.setMenu(add_menu);
    connect(&remove_, &QPushButton::clicked, this, &OfflineWindow::remove_selected);

    auto* buttons = new QHBoxLayout;
    buttons->addWidget(&add_);
    buttons->addWidget(&remove_);
    buttons->addStretch();
    message_.setWordWrap(true);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(&summary_);
    layout->addWidget(&table_);
    layout->addWidget(&message_);
    layout->addLayout(buttons);

    connect(model_, &MountsModel::changed, this, &OfflineWindow::reload);
    reload();
}

void OfflineWindow::reload() {
    const MountState* m = model_->find(socket_);
    if (!m) {
        summary_.setText("This mount is not running.");
        rows_.removeRows(0, rows_.rowCount());
        return;
    }
    if (m->pins.isEmpty())
        summary_.setText("Nothing is pinned: only what was read recently is available offline.");
    else if (m->ready_for_offline)
        summary_.setText(QString("Ready to go offline: all %1 pinned (%2) is here.")
                             .arg(m->pins.size())
                             .arg(human_bytes(m->pinned_total_bytes)));
    else
        summary_.setText(QString("Not ready to go offline yet: %1 of %2 fetched.")
                             .arg(human_bytes(m->pinned_present_bytes), human_bytes(m->pinned_total_bytes)));
    // Update rows in place so the selection survives a refresh.
    QStringList paths;
    for (const PinInfo& p : m->pins)
        paths << p.path;
    for (int row = rows_.rowCount() - 1; row >= 0; --row)
        if (!paths.contains(rows_.item(row, path_col)->data(kPathRole).toString()))
            rows_.removeRow(row);
    const QStringList shown = listed_paths();
    for (const PinInfo& p : m->pins) {
        int row = shown.indexOf(p.path);
        if (row < 0) {
            auto* path = new QStandardItem(p.path);
            path->setData(p.path, kPathRole);
            QList<QStandardItem*> items{path};
            for (int c = 1; c < column_count; ++c)
                items << new QStandardItem;
            rows_.appendRow(items);
            row = rows_.rowCount() - 1;
        }
        const int percent = p.total_bytes > 0 ? int(p.present_bytes * 100 / p.total_bytes) : 100;
        rows_.item(row, size_col)->setText(human_bytes(p.total_bytes));
        rows_.item(row, present_col)->setText(human_bytes(p.present_bytes));
        rows_.item(row, progress_col)->setText(QString("%1%").arg(percent));
        rows_.item(row, state_col)->setText(p.error.isEmpty() ? p.state : p.state + ": " + p.error);
    }
}

QStringList OfflineWindow::listed_paths() const {
    QStringList paths;
    for (int row = 0; row < rows_.rowCount(); ++row)
        paths << rows_.item(row, path_col)->data(kPathRole).toString();
    return paths;
}

void OfflineWindow::select_paths(const QStringList& paths) {
    QItemSelection selection;
    for (int row = 0; row < rows_.rowCount(); ++row)
        if (paths.contains(rows_.item(row, path_col)->data(kPathRole).toString()))
            selection.select(rows_.index(row, 0), rows_.index(row, column_count - 1));
    table_.selectionModel()->select(selection, QItemSelectionModel::ClearAndSelect);
}

void OfflineWindow::choose_files() {
    const MountState* m = model_->find(socket_);
    if (m)
        add_local_paths(QFileDialog::getOpenFileNames(this, "Make available offline", m->mountpoint));
}

void OfflineWindow::choose_folder() {
    const MountState* m = model_->find(socket_);
    if (!m)
        return;
    const QString dir = QFileDialog::getExistingDirectory(this, "Make available offline", m->mountpoint);
    if (!dir.isEmpty())
        add_local_paths({dir});
}

void OfflineWindow::add_local_paths(const QStringList& local_paths) {
    const MountState* m = model_->find(socket_);
    if (!m || local_paths.isEmpty())
        return;
    // The daemon takes paths within the mount: /docs for MOUNTPOINT/docs.
    QStringList remote;
    for (const QString& local : local_paths) {
        const QString clean = QDir::cleanPath(local);
        if (clean == m->mountpoint)
            remote << "/";
        else if (clean.startsWith(m->mountpoint + "/"))
            remote << clean.mid(m->mountpoint.size());
        else
            message_.setText(local + " is not inside " + m->mountpoint);
    }
    if (!remote.isEmpty())
        model_->pin(socket_, remote, [this](const QJsonObject& r, const QString& e) { show_result(r, e); });
}

void OfflineWindow::remove_selected() {
    QStringList paths;
    for (const QModelIndex& index : table_.selectionModel()->selectedRows(path_col))
        paths << index.data(kPathRole).toString();
    if (!paths.isEmpty())
        model_->unpin(socket_, paths, [this](const QJsonObject& r, const QString& e) { show_result(r, e); });
}

void OfflineWindow::show_result(const QJsonObject& reply, const QString& error) {
    if (!error.isEmpty()) {
        message_.setText(error);
        return;
    }
    QStringList failures;
    for (const auto& r : reply["results"].toArray())
        if (!r.toObject()["ok"].toBool())
            failures << r.toObject()["path"].toString() + ": " + r.toObject()["error"].toString();
    message_.setText(failures.join("\n"));
}

} // namespace netfs::ui
