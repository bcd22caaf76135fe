"""The build's ledger: what the report counts and lists, kept on disk where it grows with the log.

A build of ten million prompts drops millions of records and validates millions of ids; holding them until the
report is written made the driver's memory grow with the log. The ledger writes them to its folder as they come:
- every dropped record, in sorted runs (one per `drop` call), merged into the report's sorted list at the end;
- the ids of validated records and of records that reached an output, per kind;
and keeps only counts in memory. The accounting check (every validated record is in an output or dropped) reads
the ids back one hash bucket at a time, so no id set is ever whole in memory past `ids_at_once` ids.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from builders.schema import DROPPED_SCHEMA, KINDS

ORDER = ["stage", "kind", "record_id", "reason"]  # the report's order of its dropped records (a total order)
_BUCKET_SEED = 20_241_202  # polars' hash: stable within one process, which is all a bucket needs


class Ledger:
    def __init__(self, folder: Path, *, ids_at_once: int = 1_000_000):
        self.folder, self.ids_at_once = folder, ids_at_once
        folder.mkdir(parents=True, exist_ok=True)
        self.runs: list[Path] = []
        self.id_files: dict[str, list[Path]] = {}
        self.dropped_counts: Counter = Counter()  # (stage, kind, reason) -> records
        self.validated = 0

    def drop(self, dropped: pl.DataFrame) -> Counter:
        """Record dropped rows (`DROPPED_SCHEMA`); returns their counts by (kind, reason)."""
        if not dropped.height:
            return Counter()
        run = self.folder / f"dropped-{len(self.runs):06d}.parquet"
        dropped.select(list(DROPPED_SCHEMA)).sort(ORDER).write_parquet(run, compression="lz4")
        self.runs.append(run)
        counts = dropped.group_by(ORDER[:2] + ["reason"]).len().iter_rows()
        mine = Counter()
        for stage, kind, reason, n in counts:
            self.dropped_counts[stage, kind, reason] += n
            mine[kind, reason] += n
        return mine

    def ids(self, name: str, ids: pl.Series) -> None:
        """Record ids under `name` (`validated-<kind>`, `written-<kind>`)."""
        files = self.id_files.setdefault(name, [])
        if ids.len():
            files.append(self.folder / f"{name}-{len(files):06d}.parquet")
            pl.DataFrame({"id": ids.cast(pl.String)}).write_parquet(files[-1], compression="lz4")
            if name.startswith("validated-"):
                self.validated += ids.len()

    def count(self, *, stage: str | None = None, kind: str | None = None) -> int:
        return sum(n for (s, k, _), n in self.dropped_counts.items() if stage in (None, s) and kind in (None, k))

    def reasons(self, stage: str) -> dict[str, int]:
        """Records `stage` dropped, by reason."""
        out: Counter = Counter()
        for (s, _, reason), n in self.dropped_counts.items():
            if s == stage:
                out[reason] += n
        return dict(out)

    def _bucket(self, files: list[Path], column: str, b: int, n: int, where: pl.Expr | None = None) -> pl.Series:
        if not files:
            return pl.Series(column, [], dtype=pl.String)
        scan = pl.scan_parquet(files)
        if where is not None:
            scan = scan.filter(where)
        if n > 1:
            scan = scan.filter(pl.col(column).hash(_BUCKET_SEED) % n == b)
        return scan.select(column).collect()[column]

    def accounting(self) -> dict:
        """Check that every validated record is in an output or listed as dropped; a gap is a bug, so it raises."""
        n = max(1, math.ceil(self.validated / self.ids_at_once))
        acc = {}
        for kind in KINDS:
            validated = used = gone = 0
            missing: list[pl.Series] = []
            for b in range(n):
                ids = self._bucket(self.id_files.get(f"validated-{kind}", []), "id", b, n)
                written = self._bucket(self.id_files.get(f"written-{kind}", []), "id", b, n)
                dropped = self._bucket(self.runs, "record_id", b, n, pl.col("kind") == kind)
                is_used, is_gone = ids.is_in(written.implode()), ids.is_in(dropped.implode())
                missing.append(ids.filter(~is_used & ~is_gone))
                validated += ids.n_unique()
                used += int(is_used.sum())
                gone += int(is_gone.sum())
            missing_ids = pl.concat(missing).sort()
            if missing_ids.len():
                raise RuntimeError(f"accounting bug: {missing_ids.len()} {kind} records neither written nor dropped, "
                                   f"e.g. {missing_ids.head(3).to_list()}")
            acc[kind + "s"] = {"validated": validated, "in_outputs": used, "dropped": gone}
        acc["rejected_at_validation"] = self.count(stage="validate")
        acc["dropped_by_sources"] = self.count(kind="source_record")
        acc["complete"] = True
        return acc

    def dropped_rows(self) -> Iterator[dict]:
        """Every dropped record, in the report's order (`ORDER`), merged from the sorted runs a batch at a time."""
        batch = max(1_000, 100_000 // max(1, len(self.runs)))  # rows held at once: ~100,000 (as dicts, ~40 MB)

        def rows(run: Path) -> Iterator[dict]:
            for part in pq.ParquetFile(run, pre_buffer=False).iter_batches(batch_size=batch):  # see iter_parquet_frames
                yield from part.to_pylist()

        def key(row: dict) -> tuple:  # polars' order: nulls first, then strings by code point
            return tuple((row[c] is not None, row[c] or "") for c in ORDER)

        return heapq.merge(*(rows(r) for r in self.runs), key=key)
