"""Message boxes that show their text as plain text.

Qt guesses whether a message is rich text; error messages quote checkpoint metadata, file names
and exception text, which must never render as HTML (a crafted ``meta.arch`` would show
headings, links and local images)."""

import logging

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

Button = QMessageBox.StandardButton


def plain_box(parent: QWidget | None, icon: QMessageBox.Icon, title: str, text: str,
              buttons: Button = Button.Ok, default: Button = Button.NoButton) -> QMessageBox:
    box = QMessageBox(icon, title, text, buttons, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    if default != Button.NoButton:
        box.setDefaultButton(default)
    return box


def warn(parent: QWidget | None, title: str, text: str) -> None:
    plain_box(parent, QMessageBox.Icon.Warning, title, text).exec()


def inform(parent: QWidget | None, title: str, text: str) -> None:
    plain_box(parent, QMessageBox.Icon.Information, title, text).exec()


def ask(parent: QWidget | None, title: str, text: str) -> bool:
    """Yes/No, No by default; True for Yes."""
    box = plain_box(parent, QMessageBox.Icon.Question, title, text, Button.Yes | Button.No, Button.No)
    return box.exec() == Button.Yes


def report_failure(parent: QWidget | None, title: str, exc: BaseException) -> None:
    """A save, export, record or snapshot that failed: logged with its traceback (the crash log
    keeps it) and said in a dialog, in the words of the error, which name the file and why."""
    logging.getLogger("gsmc_desktop").error("%s: %s", title, exc, exc_info=exc)
    warn(parent, title, str(exc))
