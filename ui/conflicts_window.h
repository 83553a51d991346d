// The Conflicts window of one mount: every unresolved conflict with what a
// person needs to choose (both versions' size and time, when it was found),
// and the choices, on as many selected rows as wanted. A row goes when the
// daemon no longer lists its conflict, not when the button is pressed.
#pragma once

#include "ui/mounts_model.h"
#include "ui/path_table.h"

#include <QAction>
#include <QLabel>
#include <QWidget>

namespace netfs::ui {

class ConflictsWindow : public QWidget {
    Q_OBJECT
public:
    ConflictsWindow(MountsModel* model, QString socket, QWidget* parent = nullptr);

    PathTable* table() { return &table_; }
    QAction* keep_mine_action() { return &keep_mine_; }
    QAction* keep_servers_action() { return &keep_servers_; }
    QAction* keep_both_action() { return &keep_both_; }
    QAction* open_both_action() { return &open_both_; }
    // Selects the rows of these paths (within the mount), nothing else.
    void select_paths(const QStringList& paths) { table_.select_paths(paths); }
    QStringList listed_paths() const { return table_.listed_paths(); }

public slots:
    void keep_mine() { resolve_selected("local"); }
    void keep_servers() { resolve_selected("remote"); }
    void keep_both() { resolve_selected("both"); }
    void open_both();

private:
    void reload();
    void resolve_selected(const QString& keep);
    void update_actions();

    MountsModel* model_;
    QString socket_;
    QLabel header_;
    PathTable table_;
    QAction keep_mine_, keep_servers_, keep_both_, open_both_;
};

} // namespace netfs::ui
