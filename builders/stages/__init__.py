"""Pipeline stages, in the paper's order, and the one contract they share.

A stage is a `Stage`: a name and `run(tables, ctx) -> (tables, StageResult)`, where `ctx` (a `Context`) carries the
settings and the engine the executor chose. A stage that reads each prompt's text (`per_batch=True`: PII,
classification) runs on batches of kept prompts and its per-batch results are combined with `merge_notes`; the
others decide on narrow columns of every prompt at once (dedup, cap, split). The build's stage list is declared
once, in `builders.pipeline.STAGES`; each module also keeps its plain function (`dedup(tables, ...)`) for use
as a library."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from builders.schema import DROPPED_SCHEMA


@dataclass
class Context:
    """What a stage may use besides its tables: the settings, and what the executor set up for it."""

    settings: Any  # builders.settings.BuildSettings
    engine: Any  # builders.engine: LocalEngine, RayEngine or IN_PROCESS
    classifier: Any = None
    scanner: Any = None
    sketches: Any = None  # dedup's view of pass 1's spill (builders.executor.SpilledSketches)


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[..., tuple[Any, "StageResult"]]  # (Tables, Context) -> (Tables, StageResult)
    per_batch: bool = False
    merge_notes: Callable[[list[dict]], dict] = lambda notes: notes[0] if notes else {}  # noqa: E731
    in_process: Callable[[Context], bool] = lambda ctx: False  # noqa: E731  # must not run in forked workers


@dataclass
class StageResult:
    """Counts of one stage: records in and out per kind, and every dropped record with its reason."""

    name: str
    counts_in: dict[str, int]
    counts_out: dict[str, int]
    dropped: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=DROPPED_SCHEMA))
    notes: dict = field(default_factory=dict)
    spilled: Counter | None = None  # (kind, reason) -> records, once `dropped` went to the build's ledger

    def drop_counts(self) -> Counter:
        """Dropped records by (kind, reason): those spilled to the ledger, and those still in `dropped`."""
        held = Counter(zip(self.dropped["kind"].to_list(), self.dropped["reason"].to_list()))
        return held + self.spilled if self.spilled is not None else held

    def spill_dropped(self, ledger) -> None:
        """Hand `dropped` to the build's ledger (`builders.writers.ledger.Ledger`, on disk); its counts stay."""
        self.spilled = (self.spilled or Counter()) + ledger.drop(self.dropped)
        self.dropped = self.dropped.clear()

    def report(self) -> dict:
        by_kind: dict[str, dict[str, int]] = {}
        for (kind, reason), n in self.drop_counts().items():
            by_kind.setdefault(kind, {})[reason] = n
        return {
            "name": self.name,
            "in": self.counts_in.get("prompts", 0),
            "out": self.counts_out.get("prompts", 0),
            "dropped": dict(sorted(by_kind.get("prompt", {}).items())),
            "records": {
                kind: {
                    "in": self.counts_in.get(kind + "s", 0),
                    "out": self.counts_out.get(kind + "s", 0),
                    "dropped": dict(sorted(by_kind.get(kind, {}).items())),
                }
                for kind in ("prompt", "demonstration", "ranking", "unreadable")
                if kind != "unreadable" or self.counts_in.get("unreadables")
            },
            **({"notes": self.notes} if self.notes else {}),
        }


def merge_results(parts: list[StageResult], notes: dict) -> StageResult:
    """One stage's result over the whole table from its results over the batches."""
    total = lambda key: {k: sum(getattr(p, key)[k] for p in parts) for k in getattr(parts[0], key)}  # noqa: E731
    spilled = [p.spilled for p in parts if p.spilled is not None]
    return StageResult(parts[0].name, total("counts_in"), total("counts_out"), pl.concat([p.dropped for p in parts]), notes,
                       sum(spilled, Counter()) if spilled else None)


def drop_rows(df: pl.DataFrame, id_col: str, kind: str, stage: str, reason: str | pl.Expr) -> pl.DataFrame:
    """Dropped-record rows for every row of `df`."""
    reason_expr = pl.lit(reason) if isinstance(reason, str) else reason
    return df.select(
        pl.col(id_col).cast(pl.String).alias("record_id"),
        pl.lit(kind).alias("kind"),
        pl.lit(stage).alias("stage"),
        reason_expr.cast(pl.String).alias("reason"),
    )


def follow_prompts(tables, kept_ids: pl.Series, stage: str, reason: str):
    """Drop demonstrations and rankings whose prompt is gone; return (demos, rankings, dropped rows)."""
    keep = tables.demonstrations["prompt_id"].is_in(kept_ids.implode())
    keep_r = tables.rankings["prompt_id"].is_in(kept_ids.implode())
    dropped = pl.concat(
        [
            drop_rows(tables.demonstrations.filter(~keep), "demonstration_id", "demonstration", stage, reason),
            drop_rows(tables.rankings.filter(~keep_r), "ranking_id", "ranking", stage, reason),
        ]
    )
    return tables.demonstrations.filter(keep), tables.rankings.filter(keep_r), dropped


def stable_hash(values: pl.Series, seed: int) -> pl.Series:
    """A seeded 64-bit hash that, unlike polars' own, is the same in every version and on every machine."""
    salt = str(seed).encode("utf-8")[:16]

    def part(vs: pl.Series) -> pl.Series:
        return pl.Series([int.from_bytes(hashlib.blake2b(v.encode("utf-8"), digest_size=8, salt=salt).digest(), "big") for v in vs],
                         dtype=pl.UInt64)

    # a million values at a time: the Python ints of ten million at once were a gigabyte
    return pl.concat([part(values.slice(i, 1_000_000)) for i in range(0, values.len(), 1_000_000)]) if values.len() else part(values)
