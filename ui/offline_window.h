// The Available offline window of one mount: what is pinned (kept in the
// cache and fetched ahead, docs/offline.md), how much of it is here, and
// whether the mount is ready to go offline; Add files…, Add folder… and
// Remove pin and unpin through the daemon.
#pragma once

#include "ui/mounts_model.h"
#include "ui/path_table.h"

#include <QFileDialog>
#include <QLabel>
#include <QPushButton>
#include <QWidget>

namespace netfs::ui {

class OfflineWindow : public QWidget {
    Q_OBJECT
public:
    OfflineWindow(MountsModel* model, QString socket, QWidget* parent = nullptr);

    PathTable* table() { return &table_; }
    QPushButton* add_files_button() { return &add_files_; }
    QPushButton* add_folder_button() { return &add_folder_; }
    QString summary() const { return summary_.text(); }
    QStringList listed_paths() const { return table_.listed_paths(); }
    void select_paths(const QStringList& paths) { table_.select_paths(paths); }

public slots:
    // Pins local paths under the mount point (what a chooser returned).
    void add_local_paths(const QStringList& local_paths);
    void remove_selected();
    // Open a chooser rooted at the mount point, window-modal: the window
    // keeps following the daemon while it is up. Accepting it pins the choice.
    void choose_files();
    void choose_folder();

private:
    void open_chooser(const QString& title, QFileDialog::FileMode mode);
    void reload();
    void show_result(const QJsonObject& reply, const QString& error);

    MountsModel* model_;
    QString socket_;
    QLabel summary_;
    QLabel message_;
    PathTable table_;
    QPushButton add_files_, add_folder_, remove_;
};

} // namespace netfs::ui
