"""Source adapters: each turns one `--source SPEC` into canonical raw records plus its own accounting.

SPEC is `sample`, `oasst:HUB_ID_OR_PATH`, `hh-rlhf:HUB_ID_OR_PATH`, `jsonl:PATH` or `parquet:PATH`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from builders.errors import InputError
from builders.readers import RawRecord


@dataclass
class SourceData:
    """What an adapter hands the pipeline: canonical records and what it dropped before them, with reasons."""

    spec: str
    unit: str  # what `units_read` counts: "records", "messages", "pairs"
    units_read: int
    records: list[RawRecord]
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (input id, reason)
    used: Counter = field(default_factory=Counter)  # input units by what they became
    license: str | None = None
    # set for sources read lazily (`load_source(..., lazy=True)`): each call reads the records again; `records` is
    # empty and `units_read`/`used` are counted by the first `stream(tally=True)`
    reader: Callable[[], Iterator[RawRecord]] | None = None

    def stream(self, tally: bool = False) -> Iterator[RawRecord]:
        """The source's records, one at a time."""
        if self.reader is None:
            yield from self.records
            return
        from builders.schema import infer_kind

        for rec in self.reader():
            if tally:
                self.units_read += 1
                self.used[infer_kind(rec.data) if rec.data is not None else "unreadable"] += 1
            yield rec

    def dropped_rows(self):
        """What this source dropped before validation, as rows of the build's dropped-records table."""
        import polars as pl

        from builders.schema import DROPPED_SCHEMA

        rows = [(rid, "source_record", "read:" + self.spec, reason) for rid, reason in self.dropped]
        return pl.DataFrame(rows, schema=DROPPED_SCHEMA, orient="row")

    def accounting(self) -> dict:
        return {
            "spec": self.spec,
            "unit": self.unit,
            "read": self.units_read,
            "became": dict(sorted(self.used.items())),
            "dropped": dict(sorted(Counter(r for _, r in self.dropped).items())),
        }


def load_source(spec: str, lazy: bool = False) -> SourceData:
    """Dispatch a SPEC to its adapter. With `lazy`, canonical files are not read now but on each `stream()`
    (the streaming build reads them twice instead of holding them); the other adapters read at once."""
    name, _, arg = spec.partition(":")
    name = name.strip().lower()
    if name == "sample":
        from builders.sources.files import read_sample

        return read_sample(spec, lazy=lazy)
    if not arg:
        if not _:  # no colon at all: perhaps a bare path
            kind = "parquet" if spec.endswith(".parquet") else "jsonl"
            hint = f"; for a file or folder of your logs write {kind}:{spec}" if (Path(spec).exists() or "." in Path(spec).name) else ""
            raise InputError(f"unknown source '{spec}' (use sample, oasst:..., hh-rlhf:..., jsonl:PATH or parquet:PATH){hint}",
                             flag="--source")
        raise InputError(f"source '{spec}' needs a path or Hub id after the colon", flag="--source")
    if name in ("jsonl", "parquet"):
        from builders.sources.files import read_canonical

        return read_canonical(spec, arg, name, lazy=lazy)
    if name == "oasst":
        from builders.sources.oasst import read_oasst

        return read_oasst(spec, arg)
    if name in ("hh-rlhf", "hh_rlhf", "hh"):
        from builders.sources.hh_rlhf import read_hh_rlhf

        return read_hh_rlhf(spec, arg)
    raise InputError(f"unknown source '{name}' (use sample, oasst:..., hh-rlhf:..., jsonl:PATH or parquet:PATH)", flag="--source")


def public_spec(spec: str) -> str:
    """A source as a dataset card may show it: a Hub id as it is, a local file or folder by its name only."""
    name, colon, arg = spec.partition(":")
    if not colon or not arg:
        return spec
    local = name.strip().lower() in ("jsonl", "parquet") or Path(arg).exists()
    return f"{name}:{Path(arg.rstrip('/')).name}" if local else spec
