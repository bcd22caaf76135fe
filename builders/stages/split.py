"""Stage 4: split by user into train / validation / test; a user's prompts all go to one split.

Users are ordered by a seeded hash of their pseudonym, then each user goes to the split that is furthest below
its target share of prompts, so split sizes follow the ratios even with few, uneven users.
"""

from __future__ import annotations

import polars as pl

from builders.schema import Tables
from builders.stages import Stage, StageResult, stable_hash

NAME = "split_by_user"
SPLITS = ("train", "validation", "test")


def assign_users(users: pl.DataFrame, ratios: dict[str, float], seed: int) -> dict[str, str]:
    """users: columns `user`, `n` (prompts). Returns user -> split."""
    order = users.with_columns(stable_hash(users["user"], seed).alias("_h")).sort(["_h", "user"])
    total = sum(ratios.values())
    target = {s: ratios[s] / total for s in SPLITS}
    filled = dict.fromkeys(SPLITS, 0)
    done = 0
    out = {}
    for user, n in zip(order["user"].to_list(), order["n"].to_list()):
        # deficit: how far below its target share each split would be after this user; biggest deficit wins
        split = max((s for s in SPLITS if target[s] > 0), key=lambda s: (target[s] * (done + n) - filled[s], -SPLITS.index(s)))
        out[user] = split
        filled[split] += n
        done += n
    return out


def split_by_user(tables: Tables, *, ratios: dict[str, float], seed: int = 0) -> tuple[Tables, StageResult]:
    # users as strings (the streaming build holds them as a categorical): their hash and order decide the splits
    users = tables.prompts.group_by("user").len("n").with_columns(pl.col("user").cast(pl.String))
    mapping = assign_users(users, ratios, seed)
    # each prompt's split looked up by its user (no join: a join copies every column of every prompt)
    split = tables.prompts["user"].cast(pl.String).replace_strict(list(mapping), list(mapping.values()), return_dtype=pl.String).alias("split")
    prompts = tables.prompts.with_columns(split)
    if not prompts["prompt_id"].is_sorted():
        prompts = prompts.sort("prompt_id")
    out = Tables(prompts, tables.demonstrations, tables.rankings)
    sizes = prompts.group_by("split").agg(pl.len().alias("prompts"), pl.col("user").n_unique().alias("users"))
    notes = {r["split"]: {"prompts": r["prompts"], "users": r["users"]} for r in sizes.sort("split").iter_rows(named=True)}
    return out, StageResult(NAME, tables.counts(), out.counts(), notes=notes)


STAGE = Stage(NAME, lambda tables, ctx: split_by_user(tables, ratios=ctx.settings.split_ratios, seed=ctx.settings.seed))
