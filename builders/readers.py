"""Read JSONL (optionally gzipped) and Parquet files record by record, keeping each record's file and line."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from builders import interrupts
from builders.errors import InputError


@dataclass
class RawRecord:
    """One input record before validation: its data, or the error that kept it from being read."""

    data: dict | None
    file: str
    line: int  # 1-based line (JSONL) or row (Parquet)
    error: InputError | None = None
    source: str = ""  # the source spec that produced it
    kind: str | None = None  # set by adapters that know it; otherwise inferred from the fields

    @property
    def origin(self) -> str:
        return f"{self.file}:{self.line}"


def _open_text(path: Path):
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    return raw


def iter_jsonl(path: str | Path) -> Iterator[RawRecord]:
    """Yield one RawRecord per non-blank line; undecodable or broken lines come back with their error."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise InputError("file not found", file=name)
    seen_any = False
    with _open_text(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            seen_any = True
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield RawRecord(None, name, lineno, InputError("invalid UTF-8", file=name, line=lineno, detail=f"at byte {exc.start}"))
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                yield RawRecord(None, name, lineno, InputError("broken JSON", file=name, line=lineno, detail=f"{exc.msg} (column {exc.colno})"))
                continue
            if not isinstance(data, dict):
                yield RawRecord(None, name, lineno, InputError("a record must be a JSON object", file=name, line=lineno))
                continue
            yield RawRecord(data, name, lineno)
    if not seen_any:
        raise InputError("file is empty: no records", file=name)


def iter_parquet(path: str | Path, batch_size: int = 65_536) -> Iterator[RawRecord]:
    for raw in iter_parquet_frames(path, batch_size):
        yield from raw.records(range(raw.height))


RECORDS_AT_ONCE = 2_000  # rows of a batch made Python records at once (a batch of 65,536 rankings was ~0.5 GB of them)


@dataclass
class RawFrame:
    """A batch of records read column by column (Parquet): row i of `batch` is row `first_line + i` of `file`.
    Records as `iter_parquet` gives them come from `records(rows)`; the kind of every row from `kinds()`."""

    batch: pa.RecordBatch
    file: str
    first_line: int
    source: str = ""
    _kinds: list[str] | None = field(default=None, repr=False, compare=False)

    @property
    def height(self) -> int:
        return self.batch.num_rows

    def frame(self) -> pl.DataFrame:
        return pl.from_arrow(self.batch)

    def kinds(self) -> list[str]:
        """Each row's kind as `builders.schema.infer_kind` reads the record `iter_parquet` makes of it (null fields
        are absent there); worked out once per batch (the source's tally and the validator both ask)."""
        if self._kinds is None:
            self._kinds = self._infer_kinds()
        return self._kinds

    def _infer_kinds(self) -> list[str]:
        names = self.batch.schema.names
        n = self.batch.num_rows

        def present(name: str) -> np.ndarray:
            if name not in names:
                return np.zeros(n, dtype=bool)
            return np.asarray(self.batch.column(name).is_valid().to_numpy(zero_copy_only=False), dtype=bool)

        kinds = np.full(n, "prompt", dtype=object)
        kinds[present("completion")] = "demonstration"
        kinds[present("completions") | present("ranks")] = "ranking"
        if "kind" in names:
            given = present("kind")
            values = self.batch.column("kind").to_pylist()
            kinds[given] = [str(v) for v, g in zip(values, given) if g]
        return kinds.tolist()

    def records(self, rows) -> Iterator[RawRecord]:
        """The given rows (positions in the batch, ascending) as `iter_parquet` yields them."""
        rows = [int(i) for i in rows]
        for at in range(0, len(rows), RECORDS_AT_ONCE):  # Python objects of a few thousand rows at a time, not the batch's
            part = rows[at : at + RECORDS_AT_ONCE]
            records = self.batch.take(pa.array(part, type=pa.int64())).to_pylist()
            interrupts.check()  # an interrupt inside to_pylist's Python callbacks is swallowed there
            for i, data in zip(part, records):
                yield RawRecord({k: v for k, v in data.items() if v is not None}, self.file, self.first_line + i, source=self.source)


LABEL_COLUMNS = ("kind", "completion", "completions", "ranks")  # a file with none of these holds prompts only


def iter_parquet_frames(path: str | Path, batch_size: int = 65_536, labels_only: bool = False) -> Iterator[RawFrame]:
    """The file's rows a batch at a time, as Arrow; the same checks and row numbers as `iter_parquet`. With
    `labels_only`, a file whose columns say that every row is a prompt yields nothing (its texts are not read)."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise InputError("file not found", file=name)
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise InputError(f"not a readable Parquet file: {exc}", file=name) from exc
    if pf.metadata.num_rows == 0:
        raise InputError("file is empty: no records", file=name)
    if labels_only and not set(LABEL_COLUMNS) & set(pf.schema_arrow.names):
        return
    row = 1
    for batch in pf.iter_batches(batch_size=batch_size):
        interrupts.check()
        yield RawFrame(batch, name, row)
        row += batch.num_rows


def iter_records(path: str | Path) -> Iterator[RawRecord]:
    """JSONL (`.jsonl`, `.json`, `.jsonl.gz`) or Parquet by file name."""
    path = Path(path)
    suffixes = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() == ".parquet":
        return iter_parquet(path)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson") or suffixes.endswith((".jsonl.gz", ".json.gz")):
        return iter_jsonl(path)
    raise InputError("unknown file type (expected .jsonl, .jsonl.gz or .parquet)", file=str(path))
