"""Whole-table input and output for the single-purpose commands (`pii`, `classify`, `score-toxicity`): a JSONL or
Parquet file, or a folder of them (a built dataset folder such as builders/sft), written back in the same layout.

Text columns are found by name (or named by the user) and may hold strings, lists of strings (ranked completions)
or chat messages (lists of {role, content}: prompts, completions, chosen/rejected). A null or a number where text
belongs is an error naming the file, the row and the column, never silently turned into text.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from builders.errors import InputError
from builders.readers import iter_records

DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz")
WRITABLE = (".parquet", ".jsonl", ".json", ".ndjson")
# a JSONL table's record of the keys each row did not have (`read_table(..., absent=True)`, where rows differ in
# keys): `write_table` leaves them out of that row again, rather than writing each as null
ABSENT = "__absent_keys__"
# columns that hold text in the inputs users bring and in this project's own outputs (sft, rm, ppo, eval samples)
TEXT_COLUMNS = ("text", "prompt", "messages", "completion", "completions", "chosen", "rejected", "response", "context",
                "model", "baseline", "answer", "question")


def _suffix(path: Path) -> str:
    two = "".join(path.suffixes[-2:]).lower()
    return two if two.endswith(".gz") else path.suffix.lower()


def data_files(path: str) -> list[tuple[Path, Path]]:
    """(file, path relative to the input) for a data file, or for every data file below a folder, sorted."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and _suffix(f) in DATA_SUFFIXES)
        if not files:
            raise InputError("no .jsonl or .parquet files in this folder", file=path)
        return [(f, f.relative_to(p)) for f in files]
    if not p.exists():
        raise InputError("file not found", file=path)
    return [(p, Path(p.name))]


def check_output(inp: str, out: str) -> None:
    """The output is never the input (nor inside an input folder), and is a format the writer produces."""
    i, o = Path(inp).resolve(), Path(out).resolve()
    if i == o or (i.is_dir() and i in o.parents):
        raise InputError("is the input (or inside it): write the result elsewhere, the input is never overwritten", flag="--out")
    if Path(inp).is_dir():
        if o.exists() and (not o.is_dir() or any(o.iterdir())):
            raise InputError("for a folder input, --out must be a new or empty folder", flag="--out")
    elif _suffix(Path(out)) not in WRITABLE:
        raise InputError(f"writes {', '.join(WRITABLE)} files, not {Path(out).suffix or 'a name without a suffix'}", flag="--out")


def read_table(path: str | Path, text_columns: tuple[str, ...] = (), *, require: bool = True, absent: bool = False) -> pl.DataFrame:
    """Rows of one JSONL or Parquet file (Parquet keeps its schema); bad lines are errors naming the line; with
    `require`, one of `text_columns` must exist. With `absent`, a JSONL file whose rows differ in keys gets the column
    `ABSENT`, for `write_table` to write each row with its own keys only."""
    path = Path(path)
    if _suffix(path) == ".parquet":
        try:
            df = pl.read_parquet(path)
        except Exception as exc:  # polars raises several types for unreadable files
            raise InputError(f"not a readable Parquet file ({exc})", file=str(path)) from None
    else:
        rows, text_or_not = [], {}
        for rec in iter_records(path):
            if rec.error:
                raise rec.error
            _same_kind(rec, text_or_not)
            rows.append(rec.data)
        df = pl.DataFrame(rows, infer_schema_length=None)
        missing = [[c for c in df.columns if c not in row] for row in rows] if absent else []
        if any(missing):
            df = df.with_columns(pl.Series(ABSENT, missing, dtype=pl.List(pl.String)))
    if require and text_columns and not any(c in df.columns for c in text_columns):
        raise InputError(f"needs one of the columns {', '.join(text_columns)}", file=str(path))
    return df


def _same_kind(rec, seen: dict) -> None:
    """A column holds text in every row or in none: polars would silently turn 123 into "123" beside a string.
    `seen`: column → (is text, first line), updated."""
    if not isinstance(rec.data, dict):
        return
    for name, value in rec.data.items():
        if value is None:
            continue
        is_text = isinstance(value, str)
        first = seen.setdefault(name, (is_text, rec.line))
        if first[0] != is_text:
            got = "text" if is_text else type(value).__name__
            raise InputError(f"must be {'text' if first[0] else 'the same kind as in earlier rows'}, got {got} (line "
                             f"{first[1]} has {'text' if first[0] else 'no text'})", file=rec.file, line=rec.line, field=name)


def write_table(df: pl.DataFrame, path: str | Path) -> None:
    """`df` as Parquet or JSONL; in JSONL a row leaves out the null fields its input row did not have (`ABSENT`)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    absent = df[ABSENT].to_list() if ABSENT in df.columns else []
    df = df.drop(ABSENT, strict=False)
    if _suffix(p) == ".parquet":
        df.write_parquet(p)
    elif _suffix(p) in WRITABLE and not any(absent):
        df.write_ndjson(p)
    elif _suffix(p) in WRITABLE:
        with open(p, "w", encoding="utf-8") as fh:
            for line, gone in zip(df.write_ndjson().splitlines(), absent):
                if gone:
                    row = json.loads(line)
                    line = json.dumps({k: v for k, v in row.items() if not (v is None and k in gone)}, ensure_ascii=False,
                                      separators=(",", ":"))
                fh.write(line + "\n")
    else:
        raise InputError(f"writes {', '.join(WRITABLE)} files", flag="--out")


def copy_other_files(inp: str, out: str, *, columns_changed: bool = False) -> None:
    """A folder's non-data files (a dataset card) go along, so the output folder loads like the input. When the
    command added columns, the card keeps its configs but drops its declared features (`datasets` infers them)."""
    src = Path(inp)
    if not src.is_dir():
        return
    for f in src.rglob("*"):
        if f.is_file() and _suffix(f) not in DATA_SUFFIXES:
            target = Path(out) / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            if columns_changed and f.name == "README.md":
                from huggingface_hub import DatasetCard

                card = DatasetCard.load(f)
                card.data.pop("dataset_info", None)
                card.save(target)
            else:
                shutil.copy2(f, target)


def text_columns(df: pl.DataFrame, wanted: list[str] | None, file: str) -> list[str]:
    """The columns to read: those named (each must exist), else every known text column present."""
    if wanted:
        roots = [w.split(".")[0] for w in wanted]
        missing = [w for w, r in zip(wanted, roots) if r not in df.columns]
        if missing:
            raise InputError(f"no column {', '.join(missing)} (columns: {', '.join(c for c in df.columns if c != ABSENT)})", file=file,
                             flag="--column")
        return wanted
    found = [c for c in TEXT_COLUMNS if c in df.columns]
    if not found:
        raise InputError(f"no text column (looked for {', '.join(TEXT_COLUMNS)}); name one with --column", file=file)
    return found


def get_path(value, dotted: list[str]):
    for part in dotted:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def texts_of(value, file: str, row: int, column: str) -> Iterator[tuple[tuple, str]]:
    """(position, text) of every text in one cell: a string, a list of strings, or chat messages."""
    if isinstance(value, str):
        yield (), value
    elif isinstance(value, list):
        for k, item in enumerate(value):
            if isinstance(item, str):
                yield (k,), item
            elif isinstance(item, dict) and isinstance(item.get("content"), str):
                yield (k, "content"), item["content"]
            else:
                raise InputError("holds something that is neither text nor a {role, content} message", file=file, line=row,
                                 field=f"{column}[{k}]")
    elif value is None:
        raise InputError("is null: every row needs text here (drop the row, or give an empty string)", file=file, line=row, field=column)
    else:
        raise InputError(f"must be text, got {type(value).__name__}", file=file, line=row, field=column)


def put(value, position: tuple, text: str):
    """`value` with the text at `position` replaced (a copy)."""
    if not position:
        return text
    value = list(value)
    k = position[0]
    value[k] = text if len(position) == 1 else {**value[k], "content": text}
    return value


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
