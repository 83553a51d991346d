#include "ui/offline_window.h"

#include <QDir>
#include <QJsonArray>
#include <QHBoxLayout>
#include <QVBoxLayout>

namespace netfs::ui {

namespace {
enum Column { path_col, size_col, present_col, progress_col, state_col, column_count };
} // namespace

OfflineWindow::OfflineWindow(MountsModel* model, QString socket, QWidget* parent)
    : QWidget(parent), model_(model), socket_(std::move(socket)),
      table_({"Pinned", "Size", "Present", "Fetched", "State"}), add_files_("Add files…"),
      add_folder_("Add folder…"), remove_("Remove") {
    setWindowTitle("netfs: available offline");
    resize(760, 340);
    connect(&add_files_, &QPushButton::clicked, this, &OfflineWindow::choose_files);
    connect(&add_folder_, &QPushButton::clicked, this, &OfflineWindow::choose_folder);
    connect(&remove_, &QPushButton::clicked, this, &OfflineWindow::remove_selected);

    auto* buttons = new QHBoxLayout;
    buttons->addWidget(&add_files_);
    buttons->addWidget(&add_folder_);
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
    QStandardItemModel& rows = table_.rows();
    const MountState* m = model_->find(socket_);
    if (!m) {
        summary_.setText("This mount is not running.");
        rows.removeRows(0, rows.rowCount());
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
    const QStringList listed = table_.listed_paths();
    for (int row = int(listed.size()) - 1; row >= 0; --row)
        if (!paths.contains(listed[row]))
            rows.removeRow(row);
    const QStringList shown = table_.listed_paths();
    for (const PinInfo& p : m->pins) {
        int row = shown.indexOf(p.path);
        if (row < 0) {
            QList<QStandardItem*> items{PathTable::path_item(p.path)};
            for (int c = 1; c < column_count; ++c)
                items << new QStandardItem;
            rows.appendRow(items);
            row = rows.rowCount() - 1;
        }
        const int percent = p.total_bytes > 0 ? int(p.present_bytes * 100 / p.total_bytes) : 100;
        rows.item(row, size_col)->setText(human_bytes(p.total_bytes));
        rows.item(row, present_col)->setText(human_bytes(p.present_bytes));
        rows.item(row, progress_col)->setText(QString("%1%").arg(percent));
        rows.item(row, state_col)->setText(p.error.isEmpty() ? p.state : p.state + ": " + p.error);
    }
}

void OfflineWindow::choose_files() { open_chooser("Make files available offline", QFileDialog::ExistingFiles); }

void OfflineWindow::choose_folder() { open_chooser("Make a folder available offline", QFileDialog::Directory); }

void OfflineWindow::open_chooser(const QString& title, QFileDialog::FileMode mode) {
    const MountState* m = model_->find(socket_);
    if (!m)
        return;
    // Qt's own dialog, not the desktop's: the same on every desktop, and
    // one a test can drive (a native or portal chooser is another process).
    auto* chooser = new QFileDialog(this, title, m->mountpoint);
    chooser->setOption(QFileDialog::DontUseNativeDialog);
    chooser->setFileMode(mode);
    if (mode == QFileDialog::Directory)
        chooser->setOption(QFileDialog::ShowDirsOnly);
    chooser->setAttribute(Qt::WA_DeleteOnClose);
    connect(chooser, &QFileDialog::filesSelected, this, &OfflineWindow::add_local_paths);
    chooser->open();
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
    const QStringList paths = table_.selected_paths();
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
