"""The build: its declared stage list, and `build()`, which runs it with the executor into a temporary folder and
swaps the outputs in atomically."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from builders import interrupts
from builders.errors import InputError
from builders.settings import BuildSettings
from builders.stages import cap, classify, dedup, pii, split
from builders.stages.pii import PiiScanner

OUTPUT_NAMES = ("sft", "rm", "ppo", "build_report.json")
# The paper's order. Validation is pass 1 of the executor (it reads the sources); these follow it. To add a stage,
# write a module with a `STAGE` (see `builders.stages.Stage`) and put it here.
STAGES = (dedup.STAGE, cap.STAGE, split.STAGE, pii.STAGE, classify.STAGE)


def build(settings: BuildSettings | None = None, *, classifier=None, scanner: PiiScanner | None = None, progress: bool = True,
          engine=None, chunk_rows: int = 100_000, batch_rows: int = 250_000, on_stage=None) -> dict:
    """Build sft/, rm/, ppo/ and build_report.json under settings.out; returns the report (its list of dropped
    records is in build_report.json only).

    The executor (`builders.executor`) streams: memory holds a few columns a prompt, not the prompts, so logs of
    tens of millions of prompts build on one machine. Everything is written to a temporary folder beside the
    output first and moved in only when all succeeded, so a failed build never leaves half-written datasets.
    """
    from builders.executor import execute

    settings = settings or BuildSettings()
    out = Path(settings.out)
    if out.exists() and not out.is_dir():  # before the minutes of loading models, not after
        raise InputError("is a file, not a folder: give a folder for sft/, rm/, ppo/ and build_report.json", field="out",
                         detail=str(out))
    created, tmp, succeeded, lock = False, None, False, None
    try:
        created = not out.exists()  # set before the folder is made: an interrupt after it still removes it
        try:
            out.mkdir(parents=True, exist_ok=True)
            lock = _claim(out)
            remove_stale_temporaries(out)
            with interrupts.held():  # made and recorded, or not made: an interrupt in between would leave it behind
                tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
                (tmp / OWNER_FILE).write_text(str(os.getpid()), encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write there: {exc.strerror or exc}", field="out", detail=str(out)) from None
        if classifier is None:
            from taxonomy.model import load_model

            classifier = load_model(settings.classifier)
        report = execute(settings, tmp, STAGES, classifier=classifier, scanner=scanner, engine=engine, progress=progress,
                         chunk_rows=chunk_rows, batch_rows=batch_rows, on_stage=on_stage)
        with interrupts.held():  # all outputs are swapped in, or none: an interrupt waits for the swap
            for name in OUTPUT_NAMES:  # swap each output in; the old one moves into tmp and goes with it
                target = out / name
                if target.exists():
                    target.replace(tmp / f"old-{name}")
                (tmp / name).replace(target)
        succeeded = True
    except Exception as exc:
        if _out_of_space(exc):  # spills and outputs need about the input's size on --out's disk
            raise InputError("no space left on the disk of the output folder (a build needs about the input's size "
                             "there for its spills and outputs)", field="out", detail=str(out)) from None
        raise
    finally:
        with interrupts.held():  # a second Ctrl-C does not leave half a temporary folder behind
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            if created and not succeeded and out.exists() and not any(out.iterdir()):
                out.rmdir()  # a failed first build leaves no empty --out folder
            if lock is not None:
                _release(lock)
    return report


OWNER_FILE = ".owner-pid"


def _out_of_space(exc: BaseException) -> bool:
    """A full disk, as Python (OSError ENOSPC) or polars/Arrow (an IO error whose message carries it) report it."""
    return (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left on device" in str(exc)


HELD_LOCKS: set[int] = set()  # the `_claim` locks this process holds; a forked engine worker closes its copies


def _claim(out: Path) -> int | None:
    """Take `out` for this build: an exclusive lock on the folder (its descriptor is returned; closing it lets go),
    which the system drops when the process ends, even by SIGKILL. A build already writing there is an error naming
    its process: two builds swapped their outputs in, and the first one's silently vanished."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no lock
        return None
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pids = [pid for folder in out.glob(".build-*") if (pid := _running_owner(folder)) is not None]
        who = f" (pid {', '.join(map(str, pids))})" if pids else ""
        raise InputError(f"another build{who} is writing into this folder: wait for it to end, or give another folder",
                         field="out", detail=str(out)) from None
    HELD_LOCKS.add(fd)
    return fd


def _release(lock: int) -> None:
    HELD_LOCKS.discard(lock)
    os.close(lock)


def _running_owner(folder: Path) -> int | None:
    """The process of the build whose temporary folder this is, while it runs; None once it is gone, or where the
    folder names none (an older build) or cannot be read."""
    try:
        pid = int((folder / OWNER_FILE).read_text(encoding="utf-8"))
        os.kill(pid, 0)
    except (OSError, ValueError):  # gone (ProcessLookupError), or no readable owner
        return None
    return pid


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Remove the temporary folders of builds into `out` whose process is gone (killed with SIGKILL, a crashed
    machine); a running build's folder is left alone. Returns what was removed."""
    removed = []
    for folder in out.glob(".build-*"):
        if _running_owner(folder) is None:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
