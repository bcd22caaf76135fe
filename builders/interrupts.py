"""Ctrl-C and SIGTERM that cannot be lost.

Python turns SIGINT into a KeyboardInterrupt at the next bytecode, wherever that is; when it lands inside a Python
callback that C code runs (pyarrow's `to_pylist` calls into Python and ignores what is raised there), the
exception is swallowed and the build goes on to the end. The CLI installs `interrupt` for both signals: it
records the interrupt as well as raising it, and the long loops call `check()` between records and batches, which
raises it again if it was lost. `held()` defers both signals over a step that must finish once begun (swapping
the outputs in, forking the workers)."""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

_pending = False
_owner: int | None = None  # the process that installed the handlers


def interrupt(signum=None, frame=None):
    global _pending
    if _owner is not None and os.getpid() != _owner:
        return  # a forked worker before its own set-up (it ignores Ctrl-C then): the parent stops it
    _pending = True
    raise KeyboardInterrupt


def check() -> None:
    """Raise KeyboardInterrupt if an interrupt arrived and was swallowed on its way."""
    if _pending:
        raise KeyboardInterrupt


def install() -> dict:
    """Handle SIGINT and SIGTERM with `interrupt`; returns the previous handlers ({} outside the main thread)."""
    global _pending, _owner
    _pending, _owner = False, os.getpid()
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


def ignore() -> None:
    """Ignore SIGINT and SIGTERM from now on (a program that is about to exit: see instructkit.cli.main)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except ValueError:  # not the main thread
            return


def arrived() -> bool:
    """Whether an interrupt arrived since `install()`: whatever error a command then fails with is its consequence
    (a worker the signal killed breaks the pool, a half-done step fails later), and the command was interrupted."""
    return _pending


@contextmanager
def held():
    """Defer SIGINT and SIGTERM until the block is done: a signal that arrives inside runs its handler (raising
    KeyboardInterrupt, or the default action) at the block's end. Main thread only; elsewhere a no-op.

    The handlers are swapped for one that records the signal, rather than the signals masked: a mask holds them off
    the thread that set it only, and once polars or a process pool have started threads the kernel hands a
    process's signal to one of those, whose C handler has Python raise it in the main thread all the same. Processes
    forked inside the block start with the recording handler too, so a signal that reaches them before their own
    set-up cannot kill them half-started."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrivals: list[tuple[int, object]] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler is signal.SIG_IGN or handler is None:  # ignored stays ignored; None: set outside Python, left alone
            continue
        previous[sig] = signal.signal(sig, lambda signum, frame: arrivals.append((signum, frame)))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if arrivals:
            signum, frame = arrivals[0]
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            else:  # SIG_DFL: the signal's own action (SIGTERM ends the process)
                signal.raise_signal(signum)
