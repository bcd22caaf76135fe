"""Errors a user can act on: each names the file, the line or row, and the field (or the command-line flag)."""

from __future__ import annotations

from contextlib import contextmanager


class InputError(ValueError):
    """Malformed input. ``str()`` reads ``FILE:LINE: field 'F': message: detail``.

    `reason` is the message alone: the same for every record with the same fault, free of raw values and paths,
    so skipped records can be counted by reason in the console and in dataset cards. `detail` (a raw value, where
    the first copy of a duplicate is) is shown to the user who runs the command, never published."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, field: str | None = None,
                 detail: str | None = None, flag: str | None = None):
        self.file, self.line, self.field, self.reason, self.detail, self.flag = file, line, field, message, detail, flag
        where = file or ""
        if line is not None:
            where += f":{line}"
        what = f"{flag}: " if flag else f"field '{field}': " if field else ""
        super().__init__(f"{where + ': ' if where else ''}{what}{message}{': ' + detail if detail else ''}")

    def category(self) -> str:
        """The fault without its place or its value: how skipped records are grouped."""
        return f"field '{self.field}': {self.reason}" if self.field else self.reason


def with_flag(err: InputError, flag: str) -> InputError:
    """The same error, naming the command-line flag that gave the faulty value (when it names no file)."""
    if err.file is not None or err.flag is not None:
        return err
    return InputError(err.reason, flag=flag, detail=err.detail)


@contextmanager
def naming(flags: dict[str, str], config: str | None = None):
    """An error about a setting names where the user set it: its command-line flag (`flags`: field → flag, for
    the flags given), else the config file."""
    try:
        yield
    except InputError as err:
        if err.file is None and err.flag is None and err.field:
            if err.field in flags:
                raise InputError(err.reason, flag=flags[err.field], detail=err.detail) from None
            if config:
                raise InputError(err.reason, file=config, field=err.field, detail=err.detail) from None
        raise


class PushRefused(RuntimeError):
    """A dataset folder is not safe or not complete enough to publish."""
