"""Errors that mean "the user asked for something that cannot be done", not "vse has a bug".

The CLI (`vse.cli.errors`) prints these as one line and exits 2; library code raises them for
bad input (a missing file the user named, an empty folder, a value out of range). A subclass of
`ValueError`, so callers that already catch `ValueError` for bad input keep working.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input: the message names what was wrong and where (the file, the line, the option)."""
