"""Read JSONL (optionally gzipped) and Parquet files record by record, or a batch of columns at a time, keeping each
record's file and line."""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

from builders import interrupts
from builders.errors import InputError
from builders.schema import infer_kind


@dataclass
class RawRecord:
    """One input record before validation: its data, or the error that kept it from being read."""

    data: dict | None
    file: str
    line: int  # 1-based line (JSONL) or row (Parquet)
    error: InputError | None = None
    source: str = ""  # the source spec that produced it
    kind: str | None = None  # set by adapters that know it; otherwise inferred from the fields

    @property
    def origin(self) -> str:
        return f"{self.file}:{self.line}"


def _open_text(path: Path):
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    return raw


def iter_jsonl(path: str | Path) -> Iterator[RawRecord]:
    """Yield one RawRecord per non-blank line; undecodable or broken lines come back with their error."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise InputError("file not found", file=name)
    seen_any = False
    with _open_text(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            seen_any = True
            yield _jsonl_record(raw, name, lineno)
    if not seen_any:
        raise InputError("file is empty: no records", file=name)


def _jsonl_record(raw: bytes, name: str, lineno: int) -> RawRecord:
    """One non-blank line as a record, or with the error that kept it from being read."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RawRecord(None, name, lineno, InputError("invalid UTF-8", file=name, line=lineno, detail=f"at byte {exc.start}"))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return RawRecord(None, name, lineno, InputError("broken JSON", file=name, line=lineno, detail=f"{exc.msg} (column {exc.colno})"))
    if not isinstance(data, dict):
        return RawRecord(None, name, lineno, InputError("a record must be a JSON object", file=name, line=lineno))
    if _SURROGATE_ESCAPE.search(raw) and (where := _lone_surrogate(data)) is not None:
        # JSON's `\ud800` with no partner: Python's json module gives a string that no UTF-8 writer (polars, Arrow,
        # SQLite, the output files) takes, so the record is refused here, where its line is known
        return RawRecord(None, name, lineno, InputError("a lone UTF-16 surrogate escape (half of a character: not valid "
                                                        "Unicode, cannot be written as UTF-8)", file=name, line=lineno,
                                                        field=where))
    return RawRecord(data, name, lineno)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")  # only an escape makes a surrogate: the line decoded as UTF-8


def _lone_surrogate(value, where: str = "") -> str | None:
    """The path (`messages[0].content`) of the first string in a parsed JSON value that UTF-8 cannot encode."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "(value)"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else key
            if _lone_surrogate(key) is not None:
                return ascii(path)
            if (found := _lone_surrogate(item, path)) is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if (found := _lone_surrogate(item, f"{where}[{i}]")) is not None:
                return found
    return None


def iter_parquet(path: str | Path, batch_size: int = 65_536) -> Iterator[RawRecord]:
    for raw in iter_parquet_frames(path, batch_size):
        yield from raw.records(range(raw.height))


RECORDS_AT_ONCE = 2_000  # rows of a batch made Python records at once (a batch of 65,536 rankings was ~0.5 GB of them)


@dataclass
class RawFrame:
    """A batch of records read column by column (Parquet, or JSONL lines Arrow's reader took): row i of `batch` is row `first_line + i` of `file`.
    Records as `iter_parquet` gives them come from `records(rows)`; the kind of every row from `kinds()`."""

    batch: pa.RecordBatch
    file: str
    first_line: int
    source: str = ""
    _kinds: list[str] | None = field(default=None, repr=False, compare=False)

    columnar = True

    @property
    def height(self) -> int:
        return self.batch.num_rows

    def frame(self) -> pl.DataFrame:
        return pl.from_arrow(self.batch)

    def kinds(self) -> list[str]:
        """Each row's kind as `builders.schema.infer_kind` reads the record `iter_parquet` makes of it (null fields
        are absent there); worked out once per batch (the source's tally and the validator both ask)."""
        if self._kinds is None:
            self._kinds = self._infer_kinds()
        return self._kinds

    def _infer_kinds(self) -> list[str]:
        names = self.batch.schema.names
        n = self.batch.num_rows

        def present(name: str) -> np.ndarray:
            if name not in names:
                return np.zeros(n, dtype=bool)
            return np.asarray(self.batch.column(name).is_valid().to_numpy(zero_copy_only=False), dtype=bool)

        kinds = np.full(n, "prompt", dtype=object)
        kinds[present("completion")] = "demonstration"
        kinds[present("completions") | present("ranks")] = "ranking"
        if "kind" in names:
            given = present("kind")
            values = self.batch.column("kind").to_pylist()
            kinds[given] = [str(v) for v, g in zip(values, given) if g]
        return kinds.tolist()

    def records(self, rows) -> Iterator[RawRecord]:
        """The given rows (positions in the batch, ascending) as `iter_parquet` yields them."""
        rows = [int(i) for i in rows]
        for at in range(0, len(rows), RECORDS_AT_ONCE):  # Python objects of a few thousand rows at a time, not the batch's
            part = rows[at : at + RECORDS_AT_ONCE]
            records = self.batch.take(pa.array(part, type=pa.int64())).to_pylist()
            interrupts.check()  # an interrupt inside to_pylist's Python callbacks is swallowed there
            for i, data in zip(part, records):
                yield RawRecord({k: v for k, v in data.items() if v is not None}, self.file, self.first_line + i, source=self.source)


@dataclass
class RecordBlock:
    """Consecutive JSONL lines that Arrow's reader could not take as `iter_jsonl` reads them (a broken line, a null
    value, a number with a fraction, ...): `RawFrame`'s interface over the records `iter_jsonl` makes of them."""

    recs: list[RawRecord]
    file: str
    first_line: int
    source: str = ""
    columnar = False

    @property
    def height(self) -> int:
        return len(self.recs)

    def kinds(self) -> list[str]:
        return [infer_kind(r.data) if r.data is not None else "unreadable" for r in self.recs]

    def records(self, rows) -> Iterator[RawRecord]:
        for i in rows:
            rec = self.recs[int(i)]
            rec.source = self.source
            yield rec


LABEL_COLUMNS = ("kind", "completion", "completions", "ranks")  # a file with none of these holds prompts only


def _parquet_batch_rows(pf: pq.ParquetFile, most: int, batch_bytes: int) -> int:
    """Rows a batch of about `batch_bytes` (uncompressed, from the file's row-group sizes) holds, at most `most`:
    65,536 rankings of the bench log (kilobytes of completions each) were a 0.25 GB batch."""
    meta = pf.metadata
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return max(1, min(most, batch_bytes * meta.num_rows // max(size, 1)))


def iter_parquet_frames(path: str | Path, batch_size: int = 65_536, labels_only: bool = False,
                        batch_bytes: int = 32 * 2**20) -> Iterator[RawFrame]:
    """The file's rows a batch at a time (at most `batch_size` rows, about `batch_bytes` uncompressed), as Arrow;
    the same checks and row numbers as `iter_parquet`. With `labels_only`, a file whose columns say that every row
    is a prompt yields nothing (its texts are not read)."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise InputError("file not found", file=name)
    try:
        # pre_buffer off: with it, the reader read row groups ahead (up to 32 MB at once) and kept every buffer it had
        # read until the file was closed (~90 bytes a prompt of the bench log; apache/arrow#39808's kind of growth)
        pf = pq.ParquetFile(path, pre_buffer=False)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise InputError(f"not a readable Parquet file: {exc}", file=name) from exc
    if pf.metadata.num_rows == 0:
        raise InputError("file is empty: no records", file=name)
    if labels_only and not set(LABEL_COLUMNS) & set(pf.schema_arrow.names):
        return
    row = 1
    for batch in pf.iter_batches(batch_size=_parquet_batch_rows(pf, batch_size, batch_bytes)):
        interrupts.check()
        yield from _utf8_checked(batch, name, row)
        row += batch.num_rows


def _utf8_checked(batch: pa.RecordBatch, name: str, first_line: int) -> Iterator[RawFrame | RecordBlock]:
    """The batch as one `RawFrame` when its strings are valid UTF-8 (Arrow's Parquet reader does not check what a writer
    stored); else its valid runs of rows as frames and each invalid row as a record with its row and field."""
    try:
        batch.validate(full=True)
        yield RawFrame(batch, name, first_line)
        return
    except pa.ArrowInvalid:
        pass
    start = 0
    for r in range(batch.num_rows):
        # `take`, not `slice`: a slice of a list column still validates the whole batch's values
        bad = [n for n, col in zip(batch.schema.names, batch.columns) if not _valid_full(col.take([r]))]
        if not bad:
            continue
        if r > start:
            yield RawFrame(batch.slice(start, r - start), name, first_line + start)
        err = InputError("invalid UTF-8 in a string column", file=name, line=first_line + r, field=bad[0])
        yield RecordBlock([RawRecord(None, name, first_line + r, err)], name, first_line + r)
        start = r + 1
    if start < batch.num_rows:
        yield RawFrame(batch.slice(start), name, first_line + start)


def _valid_full(array: pa.Array) -> bool:
    try:
        array.validate(full=True)
        return True
    except pa.ArrowInvalid:
        return False


# Canonical fields that are strings when they are valid: read as strings, so Arrow infers no timestamp from a text or
# a time (an id may be a number: those are inferred, and `_req_str` reads either)
_JSONL_STRINGS = pa.schema([(name, pa.string()) for name in ("source", "prompt_type", "text", "created_at", "lang", "kind",
                                                              "completion")]
                           + [("completions", pa.list_(pa.string())),
                              ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])))])
# Fields whose presence alone says what a record is (`infer_kind`, `_prompt`): given as null, `iter_jsonl` keeps the
# key, and an Arrow row cannot say it was there (every other field is read with `.get`, where null and absent agree)
_PRESENCE_NULL = {key: re.compile(rb'"%s"\s*:\s*null\b' % key.encode())
                  for key in ("text", "messages", "source", "user_id", "completion", "completions", "ranks")}
_BLANK_LINE = re.compile(rb"\n[ \t\r\x0b\x0c]*\n")  # a line `bytes.strip` leaves empty (a literal first: a fast scan)
_LEADING_BLANK = re.compile(rb"[ \t\r\x0b\x0c]*\n")  # the same, as the first line


def _arrow_types_as_json(t: pa.DataType) -> bool:
    """Whether Arrow typed every value as Python's json module does: no floats (a fraction makes a whole column of
    integers floats) and no inferred times or dates."""
    if pa.types.is_floating(t) or pa.types.is_temporal(t):
        return False
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _arrow_types_as_json(t.value_type)
    if pa.types.is_struct(t):
        return all(_arrow_types_as_json(f.type) for f in t)
    return True


def _arrow_table(data: bytes, n_lines: int) -> pa.Table | None:
    """`n_lines` lines of JSON objects read by Arrow, or None where its values would not be `iter_jsonl`'s."""
    if data.startswith(b"\xef\xbb\xbf"):  # the json module refuses a byte-order mark; Arrow skips it
        return None
    try:
        table = pj.read_json(io.BytesIO(data), read_options=pj.ReadOptions(block_size=len(data) + 1),
                             parse_options=pj.ParseOptions(explicit_schema=_JSONL_STRINGS, newlines_in_values=False))
        table.validate(full=True)  # Arrow's reader does not check the UTF-8 of its strings; this does
        names = table.column_names  # a key with bad UTF-8 raises here (the check above reads values only)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError):
        return None
    if table.num_rows != n_lines or not all(_arrow_types_as_json(f.type) for f in table.schema):
        return None  # two objects on a line; a fraction or a time Arrow inferred
    for key, null_value in _PRESENCE_NULL.items():
        if key in names and table[key].null_count and b'"%s"' % key.encode() in data and null_value.search(data):
            return None
    # the explicit fields no line has stay out, as they are out of a Parquet file without them
    present = [f.name for f in table.schema if f.name not in _JSONL_STRINGS.names or table[f.name].null_count < table.num_rows]
    return table.select(present).combine_chunks() if present else None  # (`{}` lines: no columns, no rows)


def _jsonl_block(data: bytes, n_lines: int, name: str, first_line: int) -> RawFrame | RecordBlock:
    """Consecutive non-blank lines (`data`, each ending in a newline) as a `RawFrame` when Arrow reads them to the values
    `iter_jsonl` gives, else as a `RecordBlock` of `iter_jsonl`'s records (each bad line with its error)."""
    table = _arrow_table(data, n_lines)
    if table is not None:
        return RawFrame(table.to_batches()[0], name, first_line)
    return RecordBlock([_jsonl_record(line, name, first_line + i) for i, line in enumerate(data.split(b"\n")[:n_lines])],
                       name, first_line)


def _has_blank_line(data: bytes) -> bool:
    """Whether whole lines (`data`, each ending in a newline) hold a line `bytes.strip` leaves empty."""
    return bool(_LEADING_BLANK.match(data) or _BLANK_LINE.search(data))


def _jsonl_blocks(data: bytes, name: str, first_line: int, lines: int, n: int) -> Iterator[RawFrame | RecordBlock]:
    """Whole lines of a file (`data`, `n` lines from line `first_line`, each ending in a newline) as blocks of up to
    `lines` consecutive non-blank lines. The usual case, one block of the whole data, copies nothing."""
    if n <= lines and not _has_blank_line(data):
        yield _jsonl_block(data, n, name, first_line)
        return
    run: list[bytes] = []
    start = first_line
    for i, line in enumerate(data[:-1].split(b"\n")):
        if line.strip():
            if not run:
                start = first_line + i
            run.append(line)
        if run and (not line.strip() or len(run) >= lines):
            yield _jsonl_block(b"\n".join(run) + b"\n", len(run), name, start)
            run = []
    if run:
        yield _jsonl_block(b"\n".join(run) + b"\n", len(run), name, start)


def iter_jsonl_frames(path: str | Path, lines: int = 65_536, max_bytes: int = 16 << 20) -> Iterator[RawFrame | RecordBlock]:
    """The records `iter_jsonl` yields, a block of consecutive lines at a time (about `max_bytes` bytes, at most
    `lines` lines; a blank line ends a block), read by Arrow's JSON reader: `RawFrame`s, or `RecordBlock`s where
    Arrow's values would not be the json module's."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise InputError("file not found", file=name)
    line, rest, seen_any = 1, b"", False
    with _open_text(path) as fh:
        while chunk := fh.read(max_bytes):
            data = rest + chunk
            cut = data.rfind(b"\n") + 1  # whole lines only; a line longer than a chunk waits for the next
            data, rest = data[:cut], data[cut:]  # a slice of the whole is the same object: no copy
            if data:
                interrupts.check()
                seen_any = seen_any or bool(data.strip())
                n = data.count(b"\n")
                yield from _jsonl_blocks(data, name, line, lines, n)
                line += n
    if rest.strip():
        seen_any = True
        yield from _jsonl_blocks(rest + b"\n", name, line, lines, rest.count(b"\n") + 1)
    if not seen_any:
        raise InputError("file is empty: no records", file=name)


def iter_frames(path: str | Path, labels_only: bool = False) -> Iterator[RawFrame | RecordBlock]:
    """A JSONL or Parquet file's records a block at a time (`iter_records`'s records, in order)."""
    return iter_parquet_frames(path, labels_only=labels_only) if _file_type(path) == "parquet" else iter_jsonl_frames(path)


def iter_records(path: str | Path) -> Iterator[RawRecord]:
    """JSONL (`.jsonl`, `.json`, `.jsonl.gz`) or Parquet by file name."""
    return iter_parquet(path) if _file_type(path) == "parquet" else iter_jsonl(path)


def _file_type(path: str | Path) -> str:
    path = Path(path)
    suffixes = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() == ".parquet":
        return "parquet"
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson") or suffixes.endswith((".jsonl.gz", ".json.gz")):
        return "jsonl"
    raise InputError("unknown file type (expected .jsonl, .jsonl.gz or .parquet)", file=str(path))
