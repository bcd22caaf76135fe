"""The build's ledger keeps dropped records and ids on disk: its merged list must be the one sorted table, and its
accounting (a hash bucket at a time) must find the same counts and the same gaps as one pass over everything."""

from __future__ import annotations

import random

import polars as pl
import pytest

from builders.writers.ledger import ORDER, Ledger


def _dropped(n: int, seed: int) -> pl.DataFrame:
    rnd = random.Random(seed)
    ids = [None, "", "p1", "p10", "p2", "P2", "ü-7", "z", "a\nb", "é", "日本"]
    return pl.DataFrame({
        "record_id": [rnd.choice(ids) if rnd.random() < 0.3 else f"r{rnd.randrange(500)}" for _ in range(n)],
        "kind": [rnd.choice(["prompt", "ranking", "demonstration", "source_record"]) for _ in range(n)],
        "stage": [rnd.choice(["validate", "dedup", "cap_per_user", "assemble", "read:jsonl:x"]) for _ in range(n)],
        "reason": [rnd.choice(["b", "a", "über", None]) for _ in range(n)],
    }, schema=dict.fromkeys(["record_id", "kind", "stage", "reason"], pl.String))


def test_dropped_rows_merged_from_runs_are_the_whole_table_sorted(tmp_path):
    parts = [_dropped(n, seed) for seed, n in enumerate([0, 1, 37, 400, 3])]
    ledger = Ledger(tmp_path)
    for part in parts:
        ledger.drop(part)
    whole = pl.concat(parts).sort(ORDER)
    assert list(ledger.dropped_rows()) == whole.to_dicts()
    assert ledger.count() == whole.height
    assert ledger.count(stage="validate") == whole.filter(pl.col("stage") == "validate").height


@pytest.mark.parametrize("ids_at_once", [10**9, 7])  # one bucket, or many
def test_accounting_a_bucket_at_a_time(tmp_path, ids_at_once):
    ledger = Ledger(tmp_path, ids_at_once=ids_at_once)
    prompts = [f"p{i}" for i in range(60)]
    ledger.ids("validated-prompt", pl.Series(prompts[:30]))
    ledger.ids("validated-prompt", pl.Series(prompts[30:]))
    ledger.ids("validated-ranking", pl.Series(["r1", "r2"]))
    ledger.ids("written-prompt", pl.Series(prompts[:25]))
    ledger.ids("written-ranking", pl.Series(["r1"]))
    rows = lambda ids, kind, stage: pl.DataFrame({"record_id": ids, "kind": kind, "stage": stage, "reason": "x"})  # noqa: E731
    ledger.drop(rows(prompts[25:50], "prompt", "dedup"))
    ledger.drop(rows(["r2"], "ranking", "dedup"))
    ledger.drop(rows(["f:3"], "prompt", "validate"))
    ledger.drop(rows(["line 9"], "source_record", "read:x"))
    with pytest.raises(RuntimeError, match=r"10 prompt records neither written nor dropped, e.g. \['p50', 'p51', 'p52'\]"):
        ledger.accounting()
    ledger.drop(rows(prompts[50:], "prompt", "assemble"))
    assert ledger.accounting() == {
        "prompts": {"validated": 60, "in_outputs": 25, "dropped": 35},
        "demonstrations": {"validated": 0, "in_outputs": 0, "dropped": 0},
        "rankings": {"validated": 2, "in_outputs": 1, "dropped": 1},
        "rejected_at_validation": 1, "dropped_by_sources": 1, "complete": True}
