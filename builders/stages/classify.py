"""Stage 6: label each prompt with one of the paper's Table 1 use cases, through the taxonomy classifier."""

from __future__ import annotations

import polars as pl

from builders.schema import Tables
from builders.stages import StageResult

NAME = "classify"


def classify(tables: Tables, classifier) -> tuple[Tables, StageResult]:
    """Adds `category` and `category_score` to the prompts; drops nothing."""
    labels, scores = classifier.predict(tables.prompts["text"].to_list())
    prompts = tables.prompts.with_columns(
        pl.Series("category", labels, dtype=pl.String), pl.Series("category_score", scores, dtype=pl.Float64)
    )
    out = Tables(prompts, tables.demonstrations, tables.rankings)
    return out, StageResult(NAME, tables.counts(), out.counts(), notes={"model": classifier.name})
