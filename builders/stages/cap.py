"""Stage 3: cap the prompts of each user at `cap` (the paper's 200), chosen deterministically by seed."""

from __future__ import annotations

import numpy as np
import polars as pl

from builders.schema import Tables
from builders.stages import Stage, StageResult, drop_rows, follow_prompts, stable_hash

NAME = "cap_per_user"


def cap_per_user(tables: Tables, *, cap: int = 200, seed: int = 0) -> tuple[Tables, StageResult]:
    counts_in = tables.counts()
    prompts = tables.prompts
    # Each user's prompts in a seeded order (ties, never expected of a 64-bit hash, by prompt_id); the first `cap`
    # stay. Decided on numbers only (users and prompt ids by their rank, `_at` a row's position): the sort copies a
    # few bytes a prompt, not its strings.
    order = pl.DataFrame([prompts["user"].rank("dense").alias("_user"), stable_hash(prompts["prompt_id"], seed).alias("_order"),
                          prompts["prompt_id"].rank("ordinal").alias("_pid"),
                          pl.Series("_at", np.arange(prompts.height, dtype=np.uint32))]).sort(["_user", "_order", "_pid"])
    users = order["_user"].to_numpy()
    first = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else np.zeros(0, dtype=np.int64)
    sizes = np.diff(np.r_[first, len(users)])
    rank = np.arange(len(users)) - np.repeat(first, sizes)
    keep = np.zeros(prompts.height, dtype=bool)
    keep[order["_at"].to_numpy()[rank < cap]] = True
    del order
    kept = prompts.filter(pl.Series(keep)).sort("prompt_id")
    gone = prompts.filter(pl.Series(~keep))
    demos, rankings, d2 = follow_prompts(tables, kept["prompt_id"], NAME, "prompt_over_user_cap")
    out = Tables(kept, demos, rankings)
    dropped = pl.concat([drop_rows(gone, "prompt_id", "prompt", NAME, f"over_{cap}_prompts_per_user"), d2])
    return out, StageResult(NAME, counts_in, out.counts(), dropped, {"users_over_cap": int((sizes > cap).sum())})


STAGE = Stage(NAME, lambda tables, ctx: cap_per_user(tables, cap=ctx.settings.cap_per_user, seed=ctx.settings.seed))
