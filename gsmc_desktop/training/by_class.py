"""A model's figures by class: accuracy (recall) per class and the confusion matrix, as a
table whose cells are shaded by the share of the row (true class) they hold."""

from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from gsmc_desktop.widgets.plain_text import PlainLabel, plain_tooltip

WAITING = "Figures by class appear after the first epoch."


class ByClassTable(QWidget):
    """``show_metrics(title, per_class, confusion)``: rows are true classes, the last column
    each class's accuracy; columns the predicted classes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = PlainLabel(WAITING)
        self.title.setWordWrap(True)
        self.table = QTableWidget()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        # whole class names: the columns fit their headers and the table scrolls when narrow
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.table, 1)

    def show_metrics(self, title: str, per_class: dict[str, float | None],
                     confusion: list[list[int]]) -> None:
        classes = list(per_class)
        n = len(classes)
        self.title.setText(title)
        self.table.clear()
        self.table.setRowCount(n)
        self.table.setColumnCount(n + 1)
        self.table.setHorizontalHeaderLabels(classes + ["accuracy"])
        self.table.setVerticalHeaderLabels([f"{c} ({sum(row)})" for c, row in zip(classes, confusion,
                                                                                 strict=True)])
        for i, row in enumerate(confusion):
            total = max(sum(row), 1)
            for j, count in enumerate(row):
                item = QTableWidgetItem(str(count))
                share = count / total
                item.setBackground(QBrush(QColor(40, 120, 200, int(200 * share))))
                item.setToolTip(plain_tooltip(f"true {classes[i]}, predicted {classes[j]}: {count} "
                                              f"({share:.0%})"))
                self.table.setItem(i, j, item)
            acc = per_class[classes[i]]
            self.table.setItem(i, n, QTableWidgetItem("–" if acc is None else f"{acc:.1%}"))

    def reset(self) -> None:
        """Empty, until the next run's first epoch."""
        self.title.setText(WAITING)
        self.table.clear()
        self.table.setRowCount(0)
        self.table.setColumnCount(0)

    def cell(self, row: int, column: int) -> str:
        item = self.table.item(row, column)
        return "" if item is None else item.text()
