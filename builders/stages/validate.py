"""Stage 1: validate and normalise raw records into typed tables; pseudonymise user ids on the way in.

With `on_error="fail"` the first malformed record raises an InputError naming file, line and field; with
`"skip"` it is dropped and listed with its reason. Nothing is lost silently.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import unicodedata
from datetime import datetime, timezone

import numpy as np
import polars as pl
import pyarrow as pa

from builders.errors import InputError
from builders.pseudonym import pseudonymise
from builders.readers import RawFrame, RawRecord, RecordBlock
from builders.schema import (
    DEMONSTRATIONS_SCHEMA,
    DROPPED_SCHEMA,
    PROMPT_TYPES,
    PROMPTS_SCHEMA,
    RANKINGS_SCHEMA,
    ROLES,
    SOURCES,
    Tables,
    infer_kind,
)
from builders.stages import StageResult

NAME = "validate"


# control characters (Unicode Cc) a text loses: NUL and every other one but tab, line feed and carriage return (the
# same class for Python's re and polars' Rust regex)
_CONTROL_CLASS = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]"
_CONTROLS = re.compile(_CONTROL_CLASS)


def _text(value: str) -> str:
    """A text as the build keeps it: control characters but tab, line feed and carriage return removed, NFC,
    stripped. Format characters (zero-width joiners in emoji, direction marks) stay: they change how text reads."""
    return unicodedata.normalize("NFC", _CONTROLS.sub("", value)).strip()


def _id(value: str) -> str:
    """An id as the build keeps it: every control and format character (Unicode Cc and Cf: NUL, zero-width space and
    joiners, BOM, direction marks) removed, NFC, stripped, so ids that look the same are the same id."""
    if not (value.isascii() and value.isprintable()):
        value = unicodedata.normalize("NFC", "".join(c for c in value if unicodedata.category(c) not in ("Cc", "Cf")))
    return value.strip()


def _req_str(rec: RawRecord, fld: str) -> str:
    value = rec.data.get(fld)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError("missing or empty", file=rec.file, line=rec.line, field=fld)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(f"must be a string, got {type(value).__name__}", file=rec.file, line=rec.line, field=fld)
    ident = _id(str(value))
    if not ident:
        raise InputError("holds only control or format characters", file=rec.file, line=rec.line, field=fld)
    return ident


def _long_text(rec: RawRecord, fld: str, value, max_chars: int, allow_empty: bool = False) -> str:
    """Earlier chat turns and ranked completions may be empty (a model can say nothing); prompts and
    demonstrations may not, nor be made only of control characters and whitespace."""
    if not isinstance(value, str) or not (allow_empty or value.strip()):
        raise InputError("must be a non-empty string", file=rec.file, line=rec.line, field=fld)
    if len(value) > max_chars:
        raise InputError(f"over max_prompt_chars={max_chars:,}", file=rec.file, line=rec.line, field=fld, detail=f"{len(value):,} characters")
    text = _text(value)
    if not (allow_empty or text):
        raise InputError("holds only control characters and whitespace", file=rec.file, line=rec.line, field=fld)
    return text


def _prompt(rec: RawRecord, max_chars: int) -> dict:
    d = rec.data
    if d.get("kind") is None and rec.kind is None and not any(k in d for k in ("text", "messages", "source", "user_id")):
        raise InputError("cannot tell what this record is: no `kind`, and none of a prompt's `text`/`messages`/`source`/"
                         "`user_id`, a demonstration's `completion` or a ranking's `completions`", file=rec.file, line=rec.line,
                         field="kind")
    source = _req_str(rec, "source")
    if source not in SOURCES:
        raise InputError(f"must be one of {', '.join(SOURCES)}", file=rec.file, line=rec.line, field="source", detail=f"got {source!r}")
    ptype = d.get("prompt_type")
    if ptype is not None and ptype not in PROMPT_TYPES:
        raise InputError(f"must be one of {', '.join(PROMPT_TYPES)} or null", file=rec.file, line=rec.line, field="prompt_type", detail=f"got {ptype!r}")
    if d.get("messages") is not None and d.get("text") is not None:
        raise InputError("has both `text` and `messages`: give one (the request is the last user message)",
                         file=rec.file, line=rec.line, field="text")
    if d.get("messages") is not None:
        raw = d["messages"]
        if not isinstance(raw, list) or not raw:
            raise InputError("must be a non-empty list of {role, content}", file=rec.file, line=rec.line, field="messages")
        messages = []
        for i, m in enumerate(raw):
            if not isinstance(m, dict) or m.get("role") not in ROLES:
                raise InputError(f"message {i} needs a role in {ROLES}", file=rec.file, line=rec.line, field="messages")
            last = i == len(raw) - 1
            messages.append({"role": m["role"], "content": _long_text(rec, f"messages[{i}].content", m.get("content"), max_chars, allow_empty=not last)})
        if messages[-1]["role"] != "user":
            raise InputError("the last message must be the user's", file=rec.file, line=rec.line, field="messages")
    elif d.get("text") is not None:
        messages = [{"role": "user", "content": _long_text(rec, "text", d["text"], max_chars)}]
    else:
        raise InputError("a prompt needs `text` or `messages`", file=rec.file, line=rec.line, field="text")
    total = sum(len(m["content"]) for m in messages)
    if total > max_chars:
        raise InputError(f"over max_prompt_chars={max_chars:,} in all", file=rec.file, line=rec.line, field="messages", detail=f"{total:,} characters")
    created = d.get("created_at")
    if created is not None:
        try:
            created = _utc(created) if isinstance(created, datetime) else _iso_time(str(created))
        except ValueError:
            raise InputError("not an ISO 8601 time", file=rec.file, line=rec.line, field="created_at", detail=f"got {created!r}") from None
        except OverflowError:  # a time near year 1 or 9999 whose offset takes it out of the years a datetime holds
            raise InputError("outside the years 1-9999 once converted to UTC", file=rec.file, line=rec.line, field="created_at",
                             detail=f"got {created!r}") from None
    context = "\n".join(f"{m['role']}:{m['content']}" for m in messages[:-1])
    return {
        "prompt_id": _req_str(rec, "prompt_id"),
        "user": _req_str(rec, "user_id"),
        "source": source,
        "prompt_type": ptype,
        "messages": messages,
        "text": messages[-1]["content"],
        "context_key": hashlib.sha1(context.encode("utf-8")).hexdigest()[:16] if context else "",
        "created_at": created,
        "lang": _optional_str(rec, "lang"),
        "origin": rec.origin,
    }


def _utc(when: datetime) -> datetime:
    """In UTC; a time without an offset is taken as UTC. OverflowError where UTC is outside years 1-9999."""
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def _iso_time(value: str) -> datetime:
    """A `created_at` string as the build keeps it (`_utc` of Python's ISO 8601 reading; `Z` is UTC). ValueError
    where it is not an ISO 8601 time, OverflowError where its UTC time is outside years 1-9999."""
    return _utc(datetime.fromisoformat(value.replace("Z", "+00:00")))


# the usual shape of an ISO 8601 time (what most logs and every JSON serialiser of a datetime write), read column-wise:
# `_iso_times` gives what `_iso_time` gives for these (checked on 200,000 generated times: tests/test_columnar.py)
_PLAIN_ISO = r"^\d{4}-\d{2}-\d{2}[T ](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?$"


def _iso_times(times: pl.Series) -> pl.Series:
    """`_iso_time` of each string of the plain shape (`_PLAIN_ISO`) that it reads; null for every other value (left
    to `_iso_time`, one by one): other ISO 8601 shapes, times it refuses, UTC times outside years 1-9999."""
    plain = times.str.contains(_PLAIN_ISO).fill_null(False)
    norm = times.str.replace(" ", "T", literal=True).str.replace("Z", "+00:00", literal=True)
    # a time without an offset is UTC: given "+00:00", every value parses with one format
    norm = pl.select(pl.when(norm.str.contains(r"[+-]\d{2}:\d{2}$")).then(norm).otherwise(norm + "+00:00")).to_series()
    got = norm.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", strict=False).dt.convert_time_zone("UTC")
    return pl.select(pl.when(plain & got.dt.year().is_between(1, 9999)).then(got)).to_series().alias("created_at")


_INT_TYPES = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)
_ID_TYPES = (pl.String, *_INT_TYPES)
_OPTIONAL_TYPES = {"prompt_type": (pl.String, pl.Null), "lang": (pl.String, pl.Null)}


# every character Python's `str.strip()` removes (its `isspace`), for polars' `strip_chars`: Rust's own whitespace
# leaves out \x1c-\x1f. All of them lie in the Basic Multilingual Plane (read in 2 ms at import; the whole range took
# 0.13 s); stripping with this set is Python's strip on every code point (tests/test_columnar.py)
_PY_SPACE = "".join(c for c in map(chr, range(0x10000)) if c.isspace())


def _stripped_ids(values: pl.Series) -> pl.Series:
    """`_req_str`'s value (`_id`) of each id of a column of strings or integers (not checked here: empty stays empty):
    ids of printable ASCII are only stripped, column-wise; the others go through `_id` itself."""
    values = values.cast(pl.String)
    out = values.str.strip_chars(_PY_SPACE)
    other = values.str.contains(r"[^\x20-\x7E]").fill_null(False).arg_true()
    if len(other):
        out = out.scatter(other, pl.Series([_id(v) for v in values.gather(other).to_list()], dtype=pl.String))
    return out


def _long_texts(raw: pl.Series, max_chars: int, allow_empty: bool = False) -> pl.Series:
    """`_long_text`'s value (`_text`) of each string of a column, null where it refuses it: control characters removed
    and the text stripped column-wise; NFC leaves ASCII as it is, and the other texts are normalised by Python's
    `unicodedata`, as `_text` does it."""
    ok = raw.str.len_chars() <= max_chars
    texts = raw.str.replace_all(_CONTROL_CLASS, "")
    other = (texts.str.len_bytes() != texts.str.len_chars()).arg_true()
    if len(other):
        texts = texts.scatter(other, pl.Series([unicodedata.normalize("NFC", v) for v in texts.gather(other).to_list()], dtype=pl.String))
    texts = texts.str.strip_chars(_PY_SPACE)
    if not allow_empty:
        ok &= texts != ""
    return pl.select(pl.when(ok).then(texts)).to_series()


def _fast_prompts(df: pl.DataFrame, file: str, first_line: int, max_chars: int) -> pl.DataFrame:
    """The rows of `df` (prompt records of one Parquet batch, `_pos` their position in it) that `_prompt` would accept,
    as it would type them, checked column by column; every other row is left to `_prompt` (its error names the file,
    line and field). The checks are those of `_prompt` on the plain shape of a prompt: `text` (no `messages`), ids that
    are strings or integers, `created_at` a timestamp or an ISO string, `lang` a string. Ids and texts are stripped, and
    times of the usual ISO shape read, column-wise to what `_prompt`'s Python gives them (tests/test_columnar.py holds
    the two to the same rows and refusals); texts that are not ASCII are NFC-normalised by Python's `unicodedata`, and
    times of other shapes read by the same Python functions `_prompt` uses."""
    none = df.clear().select("_pos")
    cols = df.schema
    for name in ("prompt_id", "user_id"):
        if name not in cols or cols[name] not in _ID_TYPES:
            return none
    if cols.get("source") != pl.String or cols.get("text") != pl.String:
        return none
    for name, types in _OPTIONAL_TYPES.items():
        if name in cols and cols[name] not in types:
            return none
    created_type = cols.get("created_at", pl.Null)
    if not (created_type in (pl.String, pl.Null) or (isinstance(created_type, pl.Datetime) and created_type.time_unit in ("us", "ms"))):
        return none
    plain = (pl.col("source").is_in(SOURCES) & pl.col("text").is_not_null()
             & pl.col("prompt_id").is_not_null() & pl.col("user_id").is_not_null())
    if "prompt_type" in cols:
        plain &= pl.col("prompt_type").is_null() | pl.col("prompt_type").is_in(PROMPT_TYPES)
    if "messages" in cols:
        plain &= pl.col("messages").is_null()
    df = df.filter(plain)

    # ids stripped and texts NFC-normalised and stripped as `_prompt` does it
    pids, users, raw = _stripped_ids(df["prompt_id"]), _stripped_ids(df["user_id"]), df["text"]
    texts = _long_texts(raw, max_chars)
    ok = (texts.is_not_null() & (texts.str.len_chars() <= max_chars) & (pids != "") & (users != "")).fill_null(False)
    texts = pl.select(pl.when(ok).then(texts)).to_series()
    keep = ok.to_list()
    created = pl.lit(None, dtype=pl.Datetime("us", "UTC"))
    if created_type == pl.String:
        given, created = df["created_at"], _iso_times(df["created_at"])
        redo = (created.is_null() & given.is_not_null()).arg_true().to_list()
        slow = {}
        for i in redo:  # other shapes one by one, as `_prompt` reads them
            try:
                slow[i] = _iso_time(given[i])
            except (ValueError, OverflowError):
                keep[i] = False  # `_prompt` says why
        if slow:
            created = created.scatter(list(slow), pl.Series(list(slow.values()), dtype=pl.Datetime("us", "UTC")))
    elif isinstance(created_type, pl.Datetime):
        when = pl.col("created_at")
        when = when.dt.convert_time_zone("UTC") if created_type.time_zone else when.dt.replace_time_zone("UTC")
        created = when.dt.cast_time_unit("us")
    out = df.select(
        pids.alias("prompt_id"),
        users.alias("user"),
        pl.col("source"),
        pl.col("prompt_type") if "prompt_type" in cols else pl.lit(None, dtype=pl.String).alias("prompt_type"),
        pl.concat_list(pl.struct(pl.lit("user").alias("role"), texts.alias("content"))).alias("messages"),
        texts.alias("text"),
        pl.lit("").alias("context_key"),
        created.alias("created_at"),
        pl.col("lang") if "lang" in cols else pl.lit(None, dtype=pl.String).alias("lang"),
        (pl.lit(file + ":") + (pl.col("_pos") + first_line).cast(pl.String)).alias("origin"),
        pl.col("_pos"),
    )
    return out.filter(pl.Series(keep, dtype=pl.Boolean)).cast(PROMPTS_SCHEMA)


def _optional_str(rec: RawRecord, fld: str) -> str | None:
    """A field that is a string or absent (null); any other value is refused: polars would refuse it later, with no line."""
    value = rec.data.get(fld)
    if value is not None and not isinstance(value, str):
        raise InputError("must be a string or null", file=rec.file, line=rec.line, field=fld, detail=f"got {type(value).__name__}")
    return value


def _given(value) -> bool:
    """Whether a label's id field holds an id of its own: absent (None) and the empty string do not; 0 does."""
    return value is not None and value != ""


def _label_id(data: dict, kind: str, pid: str, n: int) -> str:
    """A label's id: its own (as `_id` keeps it), or `{prompt_id}:d{n}` / `:r{n}` (n: the prompt's labels of that kind
    before it) where it gives none or one of only whitespace, control and format characters."""
    value = data.get(f"{kind}_id")
    return (_id(str(value)) if _given(value) else "") or f"{pid}:{kind[0]}{n}"


def _check_label_id(rec: RawRecord, kind: str) -> None:
    """A label's own id, when given, is a string or an integer, as `_req_str` takes ids (a list was kept as its repr;
    an integer 0, an empty list and `false` were taken as no id); absent or empty, the default id is used."""
    value = rec.data.get(f"{kind}_id")
    if _given(value) and not isinstance(value, str):
        _req_str(rec, f"{kind}_id")


def _demonstration(rec: RawRecord, n: int, max_chars: int) -> dict:
    pid = _req_str(rec, "prompt_id")
    _check_label_id(rec, "demonstration")
    return {
        "demonstration_id": _label_id(rec.data, "demonstration", pid, n),
        "prompt_id": pid,
        "labeler_id": _req_str(rec, "labeler_id"),
        "completion": _long_text(rec, "completion", rec.data.get("completion"), max_chars),
        "origin": rec.origin,
    }


def _ranking(rec: RawRecord, n: int, max_chars: int) -> dict:
    d = rec.data
    pid = _req_str(rec, "prompt_id")
    comps, ranks = d.get("completions"), d.get("ranks")
    if not isinstance(comps, list) or len(comps) < 2:
        raise InputError("must be a list of at least 2 completions", file=rec.file, line=rec.line, field="completions")
    if not isinstance(ranks, list) or len(ranks) != len(comps):
        raise InputError(f"must be a list of {len(comps)} ranks, one per completion", file=rec.file, line=rec.line, field="ranks")
    if not all(isinstance(r, int) and not isinstance(r, bool) and 0 <= r < 2**63 for r in ranks):  # the column is Int64
        raise InputError("ranks must be integers >= 0 (0 is best), below 2^63", file=rec.file, line=rec.line, field="ranks")
    _check_label_id(rec, "ranking")
    return {
        "ranking_id": _label_id(d, "ranking", pid, n),
        "prompt_id": pid,
        "labeler_id": _req_str(rec, "labeler_id"),
        "completions": [_long_text(rec, f"completions[{i}]", c, max_chars, allow_empty=True) for i, c in enumerate(comps)],
        "ranks": [int(r) for r in ranks],
        "origin": rec.origin,
    }


def _plain_labels(df: pl.DataFrame, kinds: np.ndarray, max_chars: int) -> pl.DataFrame | None:
    """The label rows of `df` (`kinds`: "demonstration" or "ranking" per row) checked and typed column-wise as
    `_demonstration` and `_ranking` would type them, with `kind`, `given_id` (the label's own id, null where the
    default id is used) and `_pos`; None unless every row passes those checks (the caller then takes the rows one
    by one, whose errors name the line and field). Which prompt ids exist, ordinals and repeated ids are not checked
    here."""
    cols = df.schema
    if not set(kinds.tolist()) <= {"demonstration", "ranking"}:
        return None
    for name in ("prompt_id", "labeler_id"):
        if cols.get(name) not in _ID_TYPES or df[name].null_count():
            return None
    out = []
    for kind, fields in (("demonstration", ("completion",)), ("ranking", ("completions", "ranks"))):
        part = df.filter(pl.Series(kinds == kind))
        if not part.height:
            continue
        if any(name not in cols or part[name].null_count() for name in fields):
            return None
        id_type = cols.get(f"{kind}_id", pl.Null)
        if id_type not in _ID_TYPES and id_type != pl.Null:
            return None
        given = part[f"{kind}_id"] if f"{kind}_id" in cols else pl.Series([None] * part.height, dtype=pl.String)
        given = _stripped_ids(given)
        own = given.is_not_null() & (given != "")  # as `_label_id`: null and "" take the default id
        given = pl.select(pl.when(own).then(given)).to_series()
        typed = {"given_id": given}
        if kind == "demonstration":
            if cols["completion"] != pl.String:
                return None
            typed["completion"] = _long_texts(part["completion"], max_chars)
            if typed["completion"].null_count():
                return None
        else:
            if cols["completions"] != pl.List(pl.String) or not (isinstance(cols["ranks"], pl.List) and cols["ranks"].inner in _INT_TYPES):
                return None
            comps, ranks = part["completions"], part["ranks"]
            sizes = comps.list.len()
            flat, flat_ranks = comps.explode(), ranks.explode()
            if ((sizes < 2) | (ranks.list.len() != sizes)).any() or flat.null_count() or flat_ranks.null_count():
                return None
            if flat_ranks.min() < 0 or flat_ranks.max() >= 2**63:  # `_ranking`'s range: the column is Int64
                return None
            texts = _long_texts(flat, max_chars, allow_empty=True)
            if texts.null_count():
                return None
            offsets = np.concatenate([[0], np.cumsum(sizes.to_numpy())]).astype(np.int64)
            typed["completions"] = pl.from_arrow(pa.LargeListArray.from_arrays(pa.array(offsets), texts.to_arrow()))
            typed["ranks"] = ranks.cast(pl.List(pl.Int64))
        out.append(pl.DataFrame({"kind": [kind] * part.height, "prompt_id": _stripped_ids(part["prompt_id"]),
                                 "labeler_id": _stripped_ids(part["labeler_id"]), **typed, "_pos": part["_pos"]}))
    rows = pl.concat(out, how="diagonal_relaxed").sort("_pos") if len(out) > 1 else out[0]
    if ((rows["prompt_id"] == "") | (rows["labeler_id"] == "")).any():
        return None
    return rows


class _Rows:
    """Validated rows gathered into DataFrames of `chunk` rows: a million row dicts alongside the raw records they
    came from held gigabytes; a chunk at a time, only the typed columns stay. Rows come one at a time (`append`,
    dicts) or as frames already typed (`extend`, the columnar path). `finish(frame)` is applied to each frame as it
    is typed (the user-id pseudonyms); `sink`, when given, receives each full chunk and returns what to keep of it
    (the streaming build spills the chunk to disk and keeps a few columns).

    `exact`: the row dicts hold exactly the schema's Python types (the labels: strings, lists of strings and of
    ints), so Arrow's converter types them; polars' builds a Series per list cell and took twice as long."""

    def __init__(self, schema: dict, chunk: int, finish=None, sink=None, exact: bool = False):
        self.schema, self.chunk, self.finish, self.sink = schema, chunk, finish, sink
        self.arrow_schema = pl.DataFrame(schema=schema).to_arrow().schema if exact else None
        self.rows: list[dict] = []
        self.pending: list[pl.DataFrame] = []  # typed, not yet a whole chunk
        self.pending_rows = 0
        self.frames: list[pl.DataFrame] = []

    def append(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) + self.pending_rows >= self.chunk:
            self._flush()

    def extend(self, frame: pl.DataFrame) -> None:
        """Typed rows (the schema's columns in its order), after every row given before."""
        self._type_rows()
        if frame.height:
            self.pending.append(self.finish(frame) if self.finish is not None else frame)
            self.pending_rows += frame.height
        if self.pending_rows >= self.chunk:
            self._flush()

    def _type_rows(self) -> None:
        if self.rows:
            frame = (pl.from_arrow(pa.Table.from_pylist(self.rows, schema=self.arrow_schema)) if self.arrow_schema is not None
                     else pl.DataFrame(self.rows, schema=self.schema))
            self.pending.append(self.finish(frame) if self.finish is not None else frame)
            self.pending_rows += frame.height
            self.rows = []

    def _flush(self) -> None:
        self._type_rows()
        if self.pending:
            frame = pl.concat(self.pending) if len(self.pending) > 1 else self.pending[0]
            self.pending, self.pending_rows = [], 0
            self.frames.append(self.sink(frame) if self.sink is not None else frame)

    def frame(self) -> pl.DataFrame:
        self._flush()
        if self.frames:
            # the kept columns of a streaming build stay in their chunks: a rechunk held every column twice at once
            return pl.concat(self.frames, rechunk=self.sink is None)
        empty = pl.DataFrame(schema=self.schema)
        return self.sink(empty) if self.sink is not None else empty


def _input_kind(rec: RawRecord) -> str:
    """What a raw record counts as in the stage's input counts."""
    kind = (rec.kind or infer_kind(rec.data)) if rec.data is not None else "unreadable"
    return kind + "s" if kind in ("prompt", "demonstration", "ranking") else "unreadables"


def is_prompt(rec: RawRecord) -> bool:
    """Prompts are validated before every other record, so labels can be checked against all prompt ids."""
    return rec.data is not None and (rec.kind or infer_kind(rec.data)) == "prompt"


def _id_value(rec: RawRecord) -> str | None:
    """The record's prompt_id as `_req_str` reads it, or None where `_req_str` would raise."""
    value = rec.data.get("prompt_id") if rec.data is not None else None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return _id(str(value)) or None


class _LabelKeys:
    """What label validation remembers from one batch of labels to the next, in SQLite (a file, or memory): the
    last ordinal given to each prompt's labels of a kind (a label without an id gets `{prompt_id}:d{n}` or
    `:r{n}`, n from 0) and where each label id was first seen (a repeated id is refused, naming it). As Python
    dicts these were ~1M small objects at 10M prompts, whose memory, interleaved with each batch's records, stayed
    with the process (100-200 MB at 3M prompts, 300,000 labels); here they are pages of a B-tree, on disk where a
    path is given."""

    AT_ONCE = 500  # keys a lookup binds at once (SQLite allows at least 999 parameters)

    def __init__(self, path: str = ":memory:"):
        self.db = sqlite3.connect(path)
        self.db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"  # scratch: rebuilt on every run
                              "CREATE TABLE last_n (key TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;"
                              "CREATE TABLE seen (id TEXT PRIMARY KEY, origin TEXT NOT NULL) WITHOUT ROWID;")

    def _get(self, table: str, keys) -> dict:
        keys, out = list(set(keys)), {}
        for i in range(0, len(keys), self.AT_ONCE):
            part = keys[i : i + self.AT_ONCE]
            out.update(self.db.execute(f"SELECT * FROM {table} WHERE {'key' if table == 'last_n' else 'id'} "
                                       f"IN ({','.join('?' * len(part))})", part))
        return out

    def last_n(self, keys) -> dict[str, int]:
        """{key ("kind:prompt_id"): the last ordinal given} of the keys given one before."""
        return self._get("last_n", keys)

    def first_seen(self, ids) -> dict[str, str]:
        """{id: origin of its first record} of the ids seen before."""
        return self._get("seen", ids)

    def add(self, last_n: dict[str, int], seen: dict[str, str]) -> None:
        """A batch's last ordinals by key and its newly seen ids (with their origins)."""
        with self.db:
            self.db.executemany("INSERT INTO last_n VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET n = excluded.n", last_n.items())
            self.db.executemany("INSERT INTO seen VALUES (?, ?)", seen.items())

    def close(self) -> None:
        self.db.close()


class Validator:
    """Validates records: first every prompt (`is_prompt`), then every other record, in input order.

    Nothing here grows with the number of prompts but the validated rows themselves, and those go to
    `prompt_sink` a chunk at a time when one is given (see `_Rows`; the streaming build spills them and keeps a
    few columns): repeated prompt ids are found once all prompts are in, and labels are checked against the
    sorted prompt ids a batch at a time. Each validated prompt gets `_row`, its position among them; with a
    sink, `origin_of(rows)` must return {_row: origin} for the rows a duplicate message names. `label_sink(kind)`,
    when given, returns the sink of the demonstrations' or rankings' chunks (the streaming build spills them too).
    What label checks remember across batches (`_LabelKeys`) is kept in `label_keys` (an SQLite file; in memory
    when not given).

    `validate` feeds it a list; the streaming build feeds it each source twice (prompts, then the rest)."""

    def __init__(self, *, key: bytes, on_error: str = "fail", max_chars: int = 100_000, chunk_rows: int = 100_000,
                 prompt_sink=None, origin_of=None, label_sink=None, label_batch: int = 5_000, label_keys: str = ":memory:"):
        def pseudonymise_users(frame: pl.DataFrame) -> pl.DataFrame:
            users = frame["user"].unique(maintain_order=True)
            pseudonyms = pl.Series("user", pseudonymise(users.to_list(), key), dtype=pl.String)
            return frame.with_columns(frame["user"].replace_strict(users, pseudonyms, return_dtype=pl.String))

        self.on_error, self.max_chars, self.label_batch, self.origin_of = on_error, max_chars, label_batch, origin_of
        self.prompts = _Rows({**PROMPTS_SCHEMA, "_row": pl.UInt32}, chunk_rows, pseudonymise_users, prompt_sink)
        # spilled labels in chunks of 10,000 at most: a chunk is what the build reads back at once (a ranking's
        # completions are kilobytes)
        self.demos, self.rankings = (_Rows(schema, min(chunk_rows, 10_000), sink=label_sink(kind), exact=True) if label_sink is not None
                                     else _Rows(schema, chunk_rows, exact=True)
                                     for kind, schema in (("demonstration", DEMONSTRATIONS_SCHEMA), ("ranking", RANKINGS_SCHEMA)))
        self.dropped: list[tuple] = []
        self.n_in = {"prompts": 0, "demonstrations": 0, "rankings": 0, "unreadables": 0}
        self.next_row = 0
        self.prompt_table: pl.DataFrame | None = None  # set once every prompt is in
        self.known: pl.Series | None = None  # the valid prompt ids, sorted
        self.pending: list[RawRecord] = []  # labels waiting for a batch check of their prompt ids
        self.rejected_prompts: dict[str, str] = {}  # id → record of each prompt rejected here: its labels say so
        self.label_keys = _LabelKeys(label_keys)

    def _reject(self, origin: str, kind: str, err: InputError) -> None:
        if self.on_error == "fail":
            raise err
        # grouped by fault: no path, line or raw value in the reason (the record id carries file:line)
        self.dropped.append((origin, kind, NAME, f"invalid: {err.category()}"))

    def _reject_prompt(self, rec: RawRecord, err: InputError) -> None:
        self._reject(rec.origin, "prompt", err)
        pid = rec.data.get("prompt_id") if isinstance(rec.data, dict) else None
        if isinstance(pid, (str, int)) and not isinstance(pid, bool) and _id(str(pid)):  # as _req_str reads it
            self.rejected_prompts.setdefault(_id(str(pid)), rec.origin)

    def add(self, rec: RawRecord) -> None:
        self.n_in[_input_kind(rec)] += 1
        if not is_prompt(rec):
            self.pending.append(rec)
            if len(self.pending) >= self.label_batch:
                self._flush_labels()
            return
        if self.prompt_table is not None:
            raise RuntimeError(f"{rec.origin}: prompts must all be added before any other record")
        try:
            row = _prompt(rec, self.max_chars)
        except InputError as err:
            self._reject_prompt(rec, err)
            return
        row["_row"] = self.next_row
        self.next_row += 1
        self.prompts.append(row)

    def add_prompt_frame(self, raw: RawFrame | RecordBlock, rows) -> None:
        """The prompt records of a batch read column by column (`rows`: their positions in it, ascending), as `add`
        would take them one by one: the plain ones are checked and typed column-wise, the rest one by one."""
        if self.prompt_table is not None:
            raise RuntimeError(f"{raw.file}: prompts must all be added before any other record")
        rows = np.asarray(rows, dtype=np.int64)
        if not raw.columnar:  # JSONL lines Arrow could not read as the json module does: record by record
            for rec in raw.records(rows):
                self.add(rec)
            return
        if not len(rows):
            return
        self.n_in["prompts"] += len(rows)
        fast = _fast_prompts(raw.frame()[rows].with_columns(pl.Series("_pos", rows, dtype=pl.Int64)), raw.file, raw.first_line,
                             self.max_chars)
        slow = []
        for rec in raw.records(np.setdiff1d(rows, fast["_pos"].to_numpy(), assume_unique=True)):
            try:
                row = _prompt(rec, self.max_chars)
            except InputError as err:
                self._reject_prompt(rec, err)
                continue
            row["_pos"] = rec.line - raw.first_line
            slow.append(row)
        typed = pl.concat([fast, pl.DataFrame(slow, schema={**PROMPTS_SCHEMA, "_pos": pl.Int64})]).sort("_pos") if slow else fast
        typed = typed.with_columns(pl.int_range(self.next_row, self.next_row + typed.height, dtype=pl.UInt32).alias("_row"))
        self.next_row += typed.height
        self.prompts.extend(typed.select(*PROMPTS_SCHEMA, "_row"))

    def read_prompts(self, source):
        """Validate every prompt of a source (`builders.sources.SourceData`), counting what it reads; yields the
        number of records each step read (a Parquet batch, or one record), for a progress bar."""
        if source.columnar:
            for raw in source.stream_frames(tally=True):
                self.add_prompt_frame(raw, [i for i, kind in enumerate(raw.kinds()) if kind == "prompt"])
                yield raw.height
            return
        for rec in source.stream(tally=True):
            if is_prompt(rec):
                self.add(rec)
            yield 1

    def read_labels(self, source, on_read=None) -> None:
        """Validate every demonstration and ranking of a source, after every source's prompts are in. `on_read(n)`,
        when given, is told the number of records each step read (a batch, or one record), for a progress bar."""
        if source.columnar:
            for raw in source.stream_frames(labels_only=True):
                self.add_label_frame(raw, [i for i, kind in enumerate(raw.kinds()) if kind != "prompt"])
                if on_read is not None:
                    on_read(raw.height)
            return
        for rec in source.stream():
            if not is_prompt(rec):
                self.add(rec)
            if on_read is not None:
                on_read(1)

    def add_label_frame(self, raw: RawFrame | RecordBlock, rows) -> None:
        """The label records of a batch read column by column (`rows`: their positions in it, ascending), as `add`
        would take them one by one: `label_batch` rows at a time, checked and typed column-wise when every one of
        them is plain (`_plain_labels`), names a known prompt and brings no repeated id; else one by one."""
        if not raw.columnar:
            for rec in raw.records(rows):
                self.add(rec)
            return
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return
        frame = raw.frame().with_row_index("_pos")
        kinds = np.asarray(raw.kinds(), dtype=object)
        for at in range(0, len(rows), self.label_batch):
            part = rows[at : at + self.label_batch]
            if not self._add_plain_labels(frame[part], kinds[part], raw.file, raw.first_line):
                for rec in raw.records(part):
                    self.add(rec)

    def _add_plain_labels(self, df: pl.DataFrame, kinds: np.ndarray, file: str, first_line: int) -> bool:
        """`add` of each row of `df` done column-wise, when `_plain_labels` takes them all, each names a known prompt
        and no id is repeated (within them or with an earlier label); False, with nothing done, where one does not."""
        self._flush_labels()  # the labels before these (ordinals, ids seen) are in `label_keys`
        rows = _plain_labels(df, kinds, self.max_chars)
        if rows is None:
            return False
        pids = rows["prompt_id"]
        if not self._known(pids).all():
            return False
        keys = rows["kind"] + ":" + pids
        earlier = self.label_keys.last_n(keys.unique().to_list())
        # each prompt's labels of a kind get the ordinals after the last one given, in input order
        before = keys.replace_strict(list(earlier), list(earlier.values()), default=-1, return_dtype=pl.Int64) if earlier else -1
        n = before + 1 + keys.to_frame("key").select(pl.int_range(pl.len(), dtype=pl.Int64).over("key")).to_series()
        ids = rows["given_id"].fill_null(pids + ":" + rows["kind"].str.slice(0, 1) + n.cast(pl.String))
        if ids.is_duplicated().any() or self.label_keys.first_seen(ids.to_list()):
            return False  # the record path names the first record of the id
        origins = file + ":" + (rows["_pos"].cast(pl.Int64) + first_line).cast(pl.String)
        last = pl.DataFrame({"key": keys, "n": n}).group_by("key").agg(pl.col("n").max())
        self.label_keys.add(dict(last.iter_rows()), dict(zip(ids.to_list(), origins.to_list())))
        rows = rows.with_columns(ids.alias("id"), origins.alias("origin"))
        for kind, table, schema in (("demonstration", self.demos, DEMONSTRATIONS_SCHEMA), ("ranking", self.rankings, RANKINGS_SCHEMA)):
            part = rows.filter(pl.col("kind") == kind)
            self.n_in[kind + "s"] += part.height
            if part.height and kind == "ranking":
                tied = part["ranks"].list.n_unique() == 1
                # valid, but no comparison to learn from: not kept, and said so
                self.dropped += [(origin, "ranking", NAME, "all_completions_tied") for origin in part.filter(tied)["origin"].to_list()]
                part = part.filter(~tied)
            if part.height:
                table.extend(part.rename({"id": f"{kind}_id"}).select(list(schema)).cast(schema))
        return True

    def _close_prompts(self) -> None:
        """Every prompt is in: reject repeated ids (the first valid one stays), sort the ids for label checks."""
        if self.prompt_table is not None:
            return
        prompts = self.prompts.frame()
        # repeated ids found in the sorted ids the label checks need anyway (neighbours): polars' `is_duplicated`
        # hashed every id, ~0.25 GB more at 10M prompts and ten times slower
        known = prompts["prompt_id"].sort()
        repeated = known.filter(known == known.shift(1)).unique()
        first = pl.col("_row").min().over("prompt_id")
        later = (prompts.select("prompt_id", "_row").filter(pl.col("prompt_id").is_in(repeated.implode()))
                 .with_columns(first.alias("_first")).filter(pl.col("_row") != pl.col("_first")).sort("_row"))
        if later.height:
            rows = pl.concat([later["_row"], later["_first"]]).unique().to_list()
            if "origin" in prompts.columns:
                origins = dict(prompts.filter(pl.col("_row").is_in(rows)).select("_row", "origin").iter_rows())
            else:
                origins = self.origin_of(rows)
            for pid, row, first_row in later.iter_rows():
                file, _, line = origins[row].rpartition(":")
                err = InputError("duplicate prompt_id", file=file, line=int(line), field="prompt_id", detail=f"{pid!r}, first at {origins[first_row]}")
                self._reject(origins[row], "prompt", err)
            prompts = prompts.filter(~pl.col("_row").is_in(later["_row"].implode()))
            known = known.filter(known.ne_missing(known.shift(1)))  # each id once, still sorted
        self.prompt_table = prompts
        self.known = known

    def _known(self, ids: pl.Series) -> pl.Series:
        """Whether each id (null: an unreadable one) is a valid prompt's id, from the sorted ids of `_close_prompts`."""
        if not self.known.len():
            return pl.Series([False] * ids.len(), dtype=pl.Boolean)
        at = self.known.search_sorted(ids).clip(0, self.known.len() - 1)
        return (self.known.gather(at) == ids).fill_null(False)

    def _flush_labels(self) -> None:
        self._close_prompts()
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        ids = pl.Series([_id_value(rec) for rec in pending], dtype=pl.String)
        known = self._known(ids).to_list()
        # what the batch needs of the earlier batches, looked up at once: its prompts' last label ordinals, and the
        # first records of every id it may use (its own, or the default one its prompt's next ordinal gives)
        keys = [(rec.kind or infer_kind(rec.data), pid) if rec.error is None and is_known else None
                for rec, pid, is_known in zip(pending, ids.to_list(), known)]
        last_n = self.label_keys.last_n(f"{k[0]}:{k[1]}" for k in keys if k is not None)
        upcoming, candidates = dict(last_n), []
        for rec, key in zip(pending, keys):
            if key is not None and key[0] in ("demonstration", "ranking"):
                n = upcoming[f"{key[0]}:{key[1]}"] = upcoming.get(f"{key[0]}:{key[1]}", -1) + 1
                candidates.append(_label_id(rec.data, key[0], key[1], n))
        seen, new_seen = self.label_keys.first_seen(candidates), {}
        for rec, is_known in zip(pending, known):
            self._add_label(rec, is_known, last_n, seen, new_seen)
        self.label_keys.add(last_n, new_seen)

    def _add_label(self, rec: RawRecord, is_known: bool, last_n: dict, seen: dict, new_seen: dict) -> None:
        """Check one label. `last_n` (by "kind:prompt_id") and `new_seen` (ids first seen in this batch: origin)
        are updated; `seen` holds the earlier batches' first records of the ids this batch may use."""
        if rec.error is not None:
            self._reject(rec.origin, "unreadable", rec.error)
            return
        kind = rec.kind or infer_kind(rec.data)
        try:
            if kind not in ("demonstration", "ranking"):
                raise InputError("unknown record kind (prompt, demonstration or ranking)", file=rec.file, line=rec.line, field="kind", detail=f"got {kind!r}")
            pid = _req_str(rec, "prompt_id")
            if not is_known and pid in self.rejected_prompts:
                raise InputError("its prompt was rejected", file=rec.file, line=rec.line, field="prompt_id",
                                 detail=f"{pid!r} at {self.rejected_prompts[pid]}")
            if not is_known:
                raise InputError("no prompt with this prompt_id", file=rec.file, line=rec.line, field="prompt_id", detail=repr(pid))
            n = last_n[f"{kind}:{pid}"] = last_n.get(f"{kind}:{pid}", -1) + 1
            row = _demonstration(rec, n, self.max_chars) if kind == "demonstration" else _ranking(rec, n, self.max_chars)
            id_field = f"{kind}_id"
            first = seen.get(row[id_field]) or new_seen.get(row[id_field])
            if first is not None:
                raise InputError(f"duplicate {id_field}", file=rec.file, line=rec.line, field=id_field,
                                 detail=f"{row[id_field]!r}, first at {first}")
            new_seen[row[id_field]] = rec.origin
            if kind == "ranking" and len(set(row["ranks"])) == 1:
                # valid, but no comparison to learn from: not kept, and said so (it used to become 0 pairs silently)
                self.dropped.append((rec.origin, "ranking", NAME, "all_completions_tied"))
                return
            (self.demos if kind == "demonstration" else self.rankings).append(row)
        except InputError as err:
            self._reject(rec.origin, kind if kind in ("demonstration", "ranking") else "unreadable", err)

    def finish(self) -> tuple[Tables, StageResult]:
        """The validated tables (prompts with their `_row`) and the stage's counts."""
        self._flush_labels()
        self.known = None
        self.label_keys.close()
        tables = Tables(self.prompt_table, self.demos.frame(), self.rankings.frame())
        dropped = pl.DataFrame(self.dropped, schema=DROPPED_SCHEMA, orient="row")
        return tables, StageResult(NAME, self.n_in, tables.counts(), dropped)


def validate(records: list[RawRecord], *, key: bytes, on_error: str = "fail", max_chars: int = 100_000,
             consume: bool = False, chunk_rows: int = 100_000, label_batch: int = 5_000) -> tuple[Tables, StageResult]:
    """Typed, normalised tables from raw records. Demonstrations and rankings must name a known prompt.

    With `consume`, `records` is emptied and each raw record released as soon as it is validated (the pipeline's
    way: raw records are the largest objects of a build)."""
    v = Validator(key=key, on_error=on_error, max_chars=max_chars, chunk_rows=chunk_rows, label_batch=label_batch)
    # Prompts first, so labeler records can be checked against the known prompt ids wherever they appear.
    ordered = sorted(records, key=lambda r: 0 if is_prompt(r) else 1)
    if consume:
        records.clear()
    for i in range(len(ordered)):
        rec = ordered[i]
        if consume:
            ordered[i] = None
        v.add(rec)
    tables, result = v.finish()
    return Tables(tables.prompts.drop("_row"), tables.demonstrations, tables.rankings), result
