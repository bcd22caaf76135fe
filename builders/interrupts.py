"""Ctrl-C and SIGTERM that cannot be lost.

Python turns SIGINT into a KeyboardInterrupt at the next bytecode, wherever that is; when it lands inside a Python
callback that C code runs (pyarrow's `to_pylist` calls into Python and ignores what is raised there), the
exception is swallowed and the build goes on to the end. The CLI installs `interrupt` for both signals: it
records the interrupt as well as raising it, and the long loops call `check()` between records and batches, which
raises it again if it was lost."""

from __future__ import annotations

import signal

_pending = False


def interrupt(signum=None, frame=None):
    global _pending
    _pending = True
    raise KeyboardInterrupt


def check() -> None:
    """Raise KeyboardInterrupt if an interrupt arrived and was swallowed on its way."""
    if _pending:
        raise KeyboardInterrupt


def install() -> dict:
    """Handle SIGINT and SIGTERM with `interrupt`; returns the previous handlers ({} outside the main thread)."""
    global _pending
    _pending = False
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            if signal.getsignal(sig) is signal.SIG_IGN:  # a shell's background job: leave ignored signals ignored
                continue
            previous[sig] = signal.signal(sig, interrupt)
        except ValueError:  # not the main thread
            return previous
    return previous


def restore(previous: dict) -> None:
    global _pending
    _pending = False
    for sig, handler in previous.items():
        signal.signal(sig, handler)
