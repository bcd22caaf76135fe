"""Peak memory of each stage of a build without its text models: pass 1 (read, validate, spill, sketches), dedup,
the cap, the split, pass 2 and the write stage, with PII removal and classification left out (every prompt gets
one use case). What grows with the log is in these stages; PII and the classifier hold a constant amount per
worker (spaCy, the model) and take most of a whole build's time, so leaving them out measures growth at 1M and
3M prompts in minutes instead of an hour. The whole build is `instructkit bench run`.

    python -m builders.bench.memory --log /tmp/benchwork/log-1000000-seed0 [--workers 2]

Prints one row per stage: seconds and the peak (proportional set size) of this process and its workers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import polars as pl

from builders.schema import Tables
from builders.settings import BuildSettings
from builders.stages import Stage, StageResult, cap, dedup, split


def _one_use_case(tables: Tables, ctx) -> tuple[Tables, StageResult]:
    out = Tables(tables.prompts.with_columns(pl.lit("Generation").alias("category")), tables.demonstrations, tables.rankings)
    return out, StageResult("classify", tables.counts(), out.counts())


STAGES = (dedup.STAGE, cap.STAGE, split.STAGE, Stage("classify", _one_use_case, per_batch=True))


def measure(log: Path, *, workers: int | None = 2) -> list[tuple[str, float, int]]:
    """(stage, seconds, peak MB) of a build of the Parquet log folder `log` (pass 2 is reported as `classify`)."""
    from builders.bench.run import PeakRss
    from builders.executor import execute

    os.environ.setdefault("INSTRUCTKIT_PSEUDONYM_KEY", "benchmark-key")
    rows: list[tuple[str, float, int]] = []
    with tempfile.TemporaryDirectory(prefix="instructkit-memory-") as tmp:
        out = Path(tmp) / "out"
        settings = BuildSettings(sources=[f"parquet:{log}"], out=str(out), workers=workers)
        mem = PeakRss().start()
        report = execute(settings, out, STAGES, classifier=None, progress=False,
                         on_stage=lambda name, result, seconds: rows.append((name, round(seconds, 1), round(mem.take_window() / 2**20))))
        rows.append(("write", report["seconds"]["write"], round(mem.take_window() / 2**20)))
        mem.stop()
        shutil.rmtree(out, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--log", required=True, help="a Parquet log folder (instructkit bench generate --out)")
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    rows = measure(Path(a.log), workers=a.workers)
    print("| stage | seconds | peak MB |\n|---|---:|---:|")
    for name, seconds, mb in rows:
        print(f"| {name} | {seconds:.1f} | {mb:,} |")
    print(f"\nwall {time.perf_counter() - t0:.1f} s, peak {max(mb for *_, mb in rows):,} MB")


if __name__ == "__main__":
    main()
