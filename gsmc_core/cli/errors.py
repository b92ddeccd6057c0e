"""Errors the command line prints as one line, without a traceback."""


class UsageError(Exception):
    """A problem with what the user asked for; printed without a traceback."""
