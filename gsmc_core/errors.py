"""The one base of the problems a user can fix: ``GsmcError``.

Every error the core raises for bad input or a bad environment (a checkpoint, a dataset, a
source, a setting, an output, a device, a busy run folder) derives from it, so the CLI prints
its message and exits 2, and the app's workers show it in plain words; anything else that
escapes is a bug and is logged with its traceback. The subclasses keep their old built-in bases
(ValueError, OSError, RuntimeError) so callers that caught those still do.
"""


class GsmcError(Exception):
    """A problem the message explains and the user can fix (no traceback needed)."""


class UsageError(GsmcError, ValueError):
    """A problem with what the user asked for (an argument, a setting, a file of the wrong kind)."""
