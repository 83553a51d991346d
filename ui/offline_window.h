// The Available offline window of one mount: what is pinned (kept in the
// cache and fetched ahead, docs/offline.md), how much of it is here, and
// whether the mount is ready to go offline; Add… and Remove pin and unpin
// through the daemon.
#pragma once

#include "ui/mounts_model.h"

#include <QLabel>
#include <QPushButton>
#include <QStandardItemModel>
#include <QTableView>
#include <QWidget>

namespace netfs::ui {

class OfflineWindow : public QWidget {
    Q_OBJECT
public:
    OfflineWindow(MountsModel* model, QString socket, QWidget* parent = nullptr);

    QTableView* table() { return &table_; }
    QString summary() const { return summary_.text(); }
    QStringList listed_paths() const;
    void select_paths(const QStringList& paths);

public slots:
    // Pins local paths under the mount point (what Add… chose).
    void add_local_paths(const QStringList& local_paths);
    void remove_selected();
    void choose_files();
    void choose_folder();

private:
    void reload();
    void show_result(const QJsonObject& reply, const QString& error);

    MountsModel* model_;
    QString socket_;
    QLabel summary_;
    QLabel message_;
    QStandardItemModel rows_;
    QTableView table_;
    QPushButton add_, remove_;
};

} // namespace netfs::ui
