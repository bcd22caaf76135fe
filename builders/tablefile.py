"""Whole-table JSONL/Parquet input and output for the single-purpose commands (`pii`, `classify`)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from builders.errors import InputError
from builders.readers import iter_records


def read_table(path: str, text_columns: tuple[str, ...]) -> pl.DataFrame:
    """Rows of a JSONL or Parquet file; bad lines are errors naming the line; one of `text_columns` must exist."""
    rows = []
    for rec in iter_records(path):
        if rec.error:
            raise rec.error
        if not any(c in rec.data for c in text_columns):
            raise InputError(f"needs one of the columns {', '.join(text_columns)}", file=path, line=rec.line, field=text_columns[0])
        rows.append(rec.data)
    return pl.DataFrame(rows, infer_schema_length=None)


def prompt_texts(df: pl.DataFrame, path: str) -> list[str]:
    """The text to classify: `text`, else `prompt` (a string or messages), else the last user turn of `messages`."""
    out = []
    for i, row in enumerate(df.iter_rows(named=True), start=1):
        value = row.get("text") or row.get("prompt") or row.get("messages")
        if isinstance(value, list):
            users = [m.get("content", "") for m in value if isinstance(m, dict) and m.get("role") == "user"]
            value = users[-1] if users else None
        if not isinstance(value, str) or not value.strip():
            raise InputError("no prompt text (empty `text`, `prompt` or user turn in `messages`)", file=path, line=i, field="text")
        out.append(value)
    return out


def write_table(df: pl.DataFrame, path: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix.lower() == ".parquet":
        df.write_parquet(p)
    else:
        df.write_ndjson(p)
