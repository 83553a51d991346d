// The table of the Conflicts and Available offline windows: one row per path
// within the mount ("/docs"), the path in the first column, several rows
// selectable at once, nothing editable. Windows and tests find rows by path.
#pragma once

#include <QStandardItemModel>
#include <QStringList>
#include <QTableView>

namespace netfs::ui {

class PathTable : public QTableView {
public:
    // Where a row's path is kept: the first column may show it differently.
    static constexpr int kPathRole = Qt::UserRole + 1;

    explicit PathTable(const QStringList& headers, QWidget* parent = nullptr);

    QStandardItemModel& rows() { return *rows_; }
    // The first item of a row showing `path`.
    static QStandardItem* path_item(const QString& path);
    // In row order.
    QStringList listed_paths() const;
    QStringList selected_paths() const;
    // Selects the rows of these paths, nothing else.
    void select_paths(const QStringList& paths);

private:
    QStandardItemModel* rows_;  // a child of the view
};

} // namespace netfs::ui
