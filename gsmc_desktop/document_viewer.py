"""A window that renders a Markdown document (the model card, the README) with its pictures."""

from pathlib import Path

from PySide6.QtWidgets import QDialog, QTextBrowser, QVBoxLayout, QWidget


class DocumentViewer(QDialog):
    """Shows ``path`` (Markdown) rendered; relative images resolve against its folder."""

    def __init__(self, path: Path, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(True)
        self.browser.setSearchPaths([str(path.parent)])
        self.browser.setMarkdown(path.read_text(encoding="utf-8"))
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        self.resize(900, 700)

    def text(self) -> str:
        return self.browser.toPlainText()
