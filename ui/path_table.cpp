#include "ui/path_table.h"

#include <QHeaderView>

namespace netfs::ui {

PathTable::PathTable(const QStringList& headers, QWidget* parent)
    : QTableView(parent), rows_(new QStandardItemModel(this)) {
    rows_->setColumnCount(int(headers.size()));
    rows_->setHorizontalHeaderLabels(headers);
    setModel(rows_);
    setSelectionBehavior(QAbstractItemView::SelectRows);
    setSelectionMode(QAbstractItemView::ExtendedSelection);
    setEditTriggers(QAbstractItemView::NoEditTriggers);
    horizontalHeader()->setSectionResizeMode(0, QHeaderView::Stretch);
    verticalHeader()->hide();
}

QStandardItem* PathTable::path_item(const QString& path) {
    auto* item = new QStandardItem(path);
    item->setData(path, kPathRole);
    return item;
}

QStringList PathTable::listed_paths() const {
    QStringList paths;
    for (int row = 0; row < rows_->rowCount(); ++row)
        paths << rows_->item(row, 0)->data(kPathRole).toString();
    return paths;
}

QStringList PathTable::selected_paths() const {
    QStringList paths;
    for (const QModelIndex& index : selectionModel()->selectedRows(0))
        paths << index.data(kPathRole).toString();
    return paths;
}

void PathTable::select_paths(const QStringList& paths) {
    QItemSelection selection;
    for (int row = 0; row < rows_->rowCount(); ++row)
        if (paths.contains(rows_->item(row, 0)->data(kPathRole).toString()))
            selection.select(rows_->index(row, 0), rows_->index(row, rows_->columnCount() - 1));
    selectionModel()->select(selection, QItemSelectionModel::ClearAndSelect);
}

} // namespace netfs::ui
