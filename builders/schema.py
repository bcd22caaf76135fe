"""The canonical schema: three record kinds, and the typed tables the stages pass along.

prompts         prompt_id, user_id, source (labeler|api), prompt_type (plain|few_shot|user_based|null),
                text or messages [{role, content}], created_at (ISO 8601, optional), lang (optional)
demonstrations  prompt_id, labeler_id, completion            (optional: demonstration_id)
rankings        prompt_id, labeler_id, completions[K], ranks[K] (rank 0 best, ties allowed; optional: ranking_id)
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from builders.vocabulary import KINDS, PROMPT_TYPES, ROLES, SOURCES  # noqa: F401 (the schema's vocabularies)


MESSAGE = pl.Struct({"role": pl.String, "content": pl.String})

PROMPTS_SCHEMA = {
    "prompt_id": pl.String,
    "user": pl.String,  # pseudonymised as soon as a record is validated
    "source": pl.String,
    "prompt_type": pl.String,
    "messages": pl.List(MESSAGE),
    "text": pl.String,  # the last user turn: what dedup and the classifier read
    "context_key": pl.String,  # hash of the earlier turns ("" for single-turn prompts)
    "created_at": pl.Datetime("us", "UTC"),
    "lang": pl.String,
    "origin": pl.String,
}
DEMONSTRATIONS_SCHEMA = {
    "demonstration_id": pl.String,
    "prompt_id": pl.String,
    "labeler_id": pl.String,
    "completion": pl.String,
    "origin": pl.String,
}
RANKINGS_SCHEMA = {
    "ranking_id": pl.String,
    "prompt_id": pl.String,
    "labeler_id": pl.String,
    "completions": pl.List(pl.String),
    "ranks": pl.List(pl.Int64),
    "origin": pl.String,
}
DROPPED_SCHEMA = {"record_id": pl.String, "kind": pl.String, "stage": pl.String, "reason": pl.String}


def empty(schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def infer_kind(record: dict) -> str:
    """A record's kind: its explicit `kind`, else from its fields."""
    kind = record.get("kind")
    if kind is not None:
        return str(kind)
    if "completions" in record or "ranks" in record:
        return "ranking"
    if "completion" in record:
        return "demonstration"
    return "prompt"


@dataclass
class Tables:
    """What flows between stages: the prompts and the labeler data attached to them."""

    prompts: pl.DataFrame
    demonstrations: pl.DataFrame
    rankings: pl.DataFrame

    def counts(self) -> dict[str, int]:
        return {
            "prompts": self.prompts.height,
            "demonstrations": self.demonstrations.height,
            "rankings": self.rankings.height,
        }
