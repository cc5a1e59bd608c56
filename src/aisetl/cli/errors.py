"""Errors of the ``aisetl`` command."""


class CommandError(Exception):
    """A user error: printed as one line, exit code 2."""
