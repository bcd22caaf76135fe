"""Errors a user can act on: each names the file, the line or row, and the field."""

from __future__ import annotations


class InputError(ValueError):
    """Malformed input. ``str()`` reads ``FILE:LINE: field 'F': message``."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, field: str | None = None):
        self.file, self.line, self.field, self.reason = file, line, field, message
        where = file or "<input>"
        if line is not None:
            where += f":{line}"
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{message}")


class PushRefused(RuntimeError):
    """A dataset folder is not safe or not complete enough to publish."""
