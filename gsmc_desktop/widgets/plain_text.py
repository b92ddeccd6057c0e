"""Text from files shown as text, never as HTML.

Qt renders a label or tooltip whose text looks like HTML as rich text, loading any ``<img>`` it
names: a class name ``<img src='/dev/zero'>`` in a checkpoint aborted the app at every start.
Every label is a ``PlainLabel``; the few rich-text ones escape what they show (``escaped``).
"""

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget


class PlainLabel(QLabel):
    """A QLabel that shows its text literally."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setText(text)


def escaped(text: str) -> str:
    """``text`` as HTML that shows it literally (for rich-text labels, legends and tooltips)."""
    return html.escape(str(text)).replace("\n", "<br>")


def plain_tooltip(text: str) -> str:
    """A tooltip that shows ``text`` literally (Qt guesses rich text for tooltips too)."""
    return f"<qt>{escaped(text)}</qt>"


def breakable(text: str) -> str:
    """``text`` that may wrap inside long paths (a zero-width space after each separator), so a
    message quoting one never widens its field beyond the window."""
    for separator in ("/", "\\", "_"):
        text = text.replace(separator, separator + "\u200b")
    return text
