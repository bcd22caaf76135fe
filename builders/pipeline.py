"""Runs the stages in the paper's order over the sources, then writes the dataset folders atomically."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from builders.pseudonym import load_key
from builders.schema import Tables
from builders.settings import BuildSettings
from builders.sources import SourceData, load_source
from builders.stages import StageResult
from builders.stages.cap import cap_per_user
from builders.stages.classify import classify
from builders.stages.dedup import dedup
from builders.stages.pii import PiiScanner, remove_pii, scanner_for
from builders.stages.split import split_by_user
from builders.stages.validate import validate
from builders.writers.datasets import unused_prompts

log = logging.getLogger(__name__)
OUTPUT_NAMES = ("sft", "rm", "ppo", "build_report.json")


@dataclass
class BuildResult:
    validated: Tables  # after stage 1: the ids every output record and drop is checked against
    tables: Tables
    stages: list[StageResult]
    sources: list[SourceData]
    unused: pl.DataFrame  # prompts that reach no dataset, with the reason
    seconds: dict[str, float]
    classifier: object = None  # the use-case classifier, for error-corrected shares in the report


def run_stages(settings: BuildSettings, *, classifier=None, scanner: PiiScanner | None = None, progress: bool = True,
               on_stage=None, engine=None) -> BuildResult:
    """Sources → validate → dedup → cap → split → PII → classify; returns the final tables and every count.

    `engine` (default: the one `settings` names) runs the per-row work; `on_stage(name, result, seconds)` is
    called after each stage."""
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    sources = [load_source(spec) for spec in settings.sources]
    seconds["read"] = time.perf_counter() - t
    records = [r for s in sources for r in s.records]
    for s in sources:  # `records` is now the only holder: validation empties it and releases each record as it goes
        s.records = []

    if classifier is None:
        from taxonomy.model import load_model

        classifier = load_model(settings.classifier)
    from builders.engine import make_engine

    own_engine = engine is None
    if own_engine:
        engine = make_engine(settings.engine, workers=settings.workers, address=settings.ray_address, progress=progress)
    steps = [
        ("validate", lambda tb: _validate_then_release(records, settings)),
        ("dedup", lambda tb: dedup(tb, prefix_chars=settings.dedup_prefix_chars, shingle_words=settings.dedup_shingle_words,
                                   num_perm=settings.dedup_num_perm, threshold=settings.dedup_threshold, bands=settings.dedup_bands,
                                   engine=engine)),
        ("cap_per_user", lambda tb: cap_per_user(tb, cap=settings.cap_per_user, seed=settings.seed)),
        ("split_by_user", lambda tb: split_by_user(tb, ratios=settings.split_ratios, seed=settings.seed)),
        ("pii", lambda tb: remove_pii(tb, scanner_for(settings.pii_names, scanner, progress), mode=settings.pii_mode, scope=settings.pii_scope,
                                    engine=engine)),
        ("classify", lambda tb: classify(tb, classifier, engine=engine)),
    ]
    tables, results, validated = None, [], None
    try:
        for name, step in steps:
            t = time.perf_counter()
            tables, result = step(tables)
            if validated is None:  # the first step's output: every validated record
                validated = tables
            seconds[name] = time.perf_counter() - t
            results.append(result)
            log.info("%-14s %7d → %7d prompts (%.1fs)", name, result.counts_in.get("prompts", 0), result.counts_out.get("prompts", 0), seconds[name])
            if on_stage is not None:
                on_stage(name, result, seconds[name])
    finally:
        if own_engine:
            engine.close()

    unused_rows = unused_prompts(tables.prompts, tables.demonstrations, tables.rankings, settings.ppo_sources)
    return BuildResult(validated, tables, results, sources, unused_rows, seconds, classifier)


def _validate_then_release(records: list, settings: BuildSettings):
    """Validate, releasing each raw record once it is validated (`consume`): from here on the typed tables hold
    everything, and take far less memory."""
    return validate(records, key=load_key(), on_error=settings.on_error, max_chars=settings.max_prompt_chars, consume=True)


def build(settings: BuildSettings | None = None, *, classifier=None, scanner: PiiScanner | None = None, progress: bool = True,
          engine=None, chunk_rows: int = 100_000, batch_rows: int = 250_000, on_stage=None) -> dict:
    """Build sft/, rm/, ppo/ and build_report.json under settings.out; returns the report (its list of dropped
    records is in build_report.json only).

    The build streams (`builders.streaming`): memory holds a few columns a prompt, not the prompts, so logs of
    tens of millions of prompts build on one machine. Everything is written to a temporary folder beside the
    output first and moved in only when all succeeded, so a failed build never leaves half-written datasets.
    """
    from builders.streaming import build_streaming

    settings = settings or BuildSettings()
    if classifier is None:
        from taxonomy.model import load_model

        classifier = load_model(settings.classifier)
    out = Path(settings.out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
    (tmp / OWNER_FILE).write_text(str(os.getpid()), encoding="utf-8")
    succeeded = False
    try:
        report = build_streaming(settings, tmp, classifier=classifier, scanner=scanner, engine=engine, progress=progress,
                                 chunk_rows=chunk_rows, batch_rows=batch_rows, on_stage=on_stage)
        with signals_held():  # all outputs are swapped in, or none: an interrupt waits for the swap
            for name in OUTPUT_NAMES:  # swap each output in; the old one moves into tmp and goes with it
                target = out / name
                if target.exists():
                    target.replace(tmp / f"old-{name}")
                (tmp / name).replace(target)
        succeeded = True
    finally:
        with signals_held():  # a second Ctrl-C does not leave half a temporary folder behind
            shutil.rmtree(tmp, ignore_errors=True)
            if created and not succeeded and out.exists() and not any(out.iterdir()):
                out.rmdir()  # a failed first build leaves no empty --out folder
    return report


OWNER_FILE = ".owner-pid"


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Remove the temporary folders of builds into `out` whose process is gone (killed with SIGKILL, a crashed
    machine); a running build's folder is left alone. Returns what was removed."""
    removed = []
    for folder in out.glob(".build-*"):
        try:
            pid = int((folder / OWNER_FILE).read_text(encoding="utf-8"))
            os.kill(pid, 0)
            continue  # its build is still running
        except ProcessLookupError:
            pass
        except (OSError, ValueError):  # no owner recorded (an older build) or unreadable: stale
            pass
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


@contextmanager
def signals_held():
    """Defer SIGINT and SIGTERM until the block is done (main thread only; elsewhere a no-op)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
