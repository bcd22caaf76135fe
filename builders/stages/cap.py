"""Stage 3: cap the prompts of each user at `cap` (the paper's 200), chosen deterministically by seed."""

from __future__ import annotations

import polars as pl

from builders.schema import Tables
from builders.stages import Stage, StageResult, drop_rows, follow_prompts, stable_hash

NAME = "cap_per_user"


def cap_per_user(tables: Tables, *, cap: int = 200, seed: int = 0) -> tuple[Tables, StageResult]:
    counts_in = tables.counts()
    p = (
        tables.prompts.with_columns(stable_hash(tables.prompts["prompt_id"], seed).alias("_order"))
        .sort(["user", "_order", "prompt_id"])
        .with_columns(pl.int_range(pl.len()).over("user").alias("_rank"))
    )
    kept = p.filter(pl.col("_rank") < cap).drop("_order", "_rank").sort("prompt_id")
    gone = p.filter(pl.col("_rank") >= cap)
    demos, rankings, d2 = follow_prompts(tables, kept["prompt_id"], NAME, "prompt_over_user_cap")
    out = Tables(kept, demos, rankings)
    over = p.group_by("user").len().filter(pl.col("len") > cap).height
    dropped = pl.concat([drop_rows(gone, "prompt_id", "prompt", NAME, f"over_{cap}_prompts_per_user"), d2])
    return out, StageResult(NAME, counts_in, out.counts(), dropped, {"users_over_cap": over})


STAGE = Stage(NAME, lambda tables, ctx: cap_per_user(tables, cap=ctx.settings.cap_per_user, seed=ctx.settings.seed))
