"""The lock around file descriptor 2, shared by whatever re-points it (kept import-light: the
desktop app takes it before any heavy module is loaded)."""

import threading

NATIVE_STDERR_LOCK = threading.RLock()
"""Held by whatever re-points file descriptor 2 (silencing a model load, the desktop app's crash
log), so two threads never interleave a save and a restore."""
