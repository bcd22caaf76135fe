"""Stage 6: label each prompt with one of the paper's Table 1 use cases, through the taxonomy classifier."""

from __future__ import annotations

from functools import partial

import polars as pl

from builders.schema import Tables
from builders.stages import Stage, StageResult

NAME = "classify"


def _predict(classifier, texts: list[str]) -> list[tuple[str, float]]:
    return list(zip(*classifier.predict(texts)))


def classify(tables: Tables, classifier, engine=None) -> tuple[Tables, StageResult]:
    """Adds `category` and `category_score` to the prompts; drops nothing."""
    from builders.engine import IN_PROCESS

    engine = engine or IN_PROCESS
    results = engine.map(partial(_predict, classifier), tables.prompts["text"].to_list(), batch_size=5_000, desc="classify")
    labels, scores = (list(x) for x in zip(*results)) if results else ([], [])
    prompts = tables.prompts.with_columns(
        pl.Series("category", labels, dtype=pl.String), pl.Series("category_score", scores, dtype=pl.Float64)
    )
    out = Tables(prompts, tables.demonstrations, tables.rankings)
    return out, StageResult(NAME, tables.counts(), out.counts(), notes={"model": classifier.name})


# torch is not fork-safe once its thread pool has started (a forked worker hangs), and it already spreads one
# process over every core: a torch classifier runs in the build's own process (Ray's workers are separate
# interpreters and keep theirs)
STAGE = Stage(NAME, lambda tables, ctx: classify(tables, ctx.classifier, engine=ctx.engine), per_batch=True,
              in_process=lambda ctx: getattr(ctx.classifier, "in_process", False))
