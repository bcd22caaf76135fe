"""Parquet and JSONL sources are read a batch of columns at a time and plain prompts are checked column-wise: every
record must come out exactly as the record-by-record path makes it, and every bad one must be refused with the same
message naming the file, the row (line) and the field."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from builders.errors import InputError
from builders.readers import iter_jsonl, iter_jsonl_frames, iter_parquet, iter_parquet_frames
from builders.stages.validate import Validator, is_prompt

KEY = b"test-key"
UTC = timezone.utc


def _rows() -> list[dict]:
    """Prompts of every shape the fast path takes and every fault it must leave to the record path, with labels."""
    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    ok = lambda i, **kw: {"prompt_id": f"p{i}", "user_id": f"user{i % 7}", "source": "api", "text": f"Write a haiku about {i} cats.",  # noqa: E731
                          "created_at": (t0 + timedelta(minutes=i)).isoformat(), **kw}
    rows = [ok(i) for i in range(40)]
    rows += [
        ok(40, text="  Cafe\u0301 menu, please.  "),  # NFC composes é; stripped
        ok(41, prompt_id="  p41  ", user_id=" spaced "),  # ids stripped
        ok(42, source="web"),  # not a source
        ok(43, text="   "),  # blank
        ok(44, prompt_id="   "),  # blank id
        ok(45, prompt_type="chatty"),  # not a prompt type
        ok(46, prompt_type="few_shot", lang="en"),
        ok(47, created_at="yesterday"),  # not ISO 8601
        ok(48, created_at="2024-05-01T08:00:00"),  # naive: UTC
        ok(49, created_at="2024-05-01T08:00:00+02:00"),  # converted to UTC
        ok(50, text="x" * 101),  # over max_chars
        ok(51, text=None, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]),
        ok(52, messages=[{"role": "user", "content": "both"}]),  # text and messages
        ok(3),  # a repeated prompt_id
        ok(53, text="\x1c\x1dseparators are whitespace to Python\x1f"),
        ok(54, user_id=None),  # missing user
        {"prompt_id": "p1", "labeler_id": "l1", "completion": "Soft paws."},  # a demonstration in the same file
        {"prompt_id": "p2", "labeler_id": "l1", "completions": ["a", "b"], "ranks": [0, 1]},
        {"prompt_id": "nope", "labeler_id": "l1", "completion": "orphan"},
        ok(55, kind="prompt"),
        ok(56, kind="Prompt"),  # an unknown kind
    ]
    return rows


def _write(path, rows, **schema_overrides):
    fields = {"prompt_id": pa.string(), "user_id": pa.string(), "source": pa.string(), "text": pa.string(),
              "created_at": pa.string(), "prompt_type": pa.string(), "lang": pa.string(), "kind": pa.string(),
              "messages": pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])),
              "labeler_id": pa.string(), "completion": pa.string(), "completions": pa.list_(pa.string()),
              "ranks": pa.list_(pa.int64())} | schema_overrides
    schema = pa.schema(list(fields.items()))
    table = pa.Table.from_pylist([{k: r.get(k) for k in fields} for r in rows], schema=schema)
    pq.write_table(table, path, row_group_size=16)  # several batches
    return path


def _by_records(path, on_error="skip", read=iter_parquet):
    v = Validator(key=KEY, on_error=on_error, max_chars=100, chunk_rows=7)
    records = list(read(path))
    for rec in records:
        if is_prompt(rec):
            v.add(rec)
    for rec in records:
        if not is_prompt(rec):
            v.add(rec)
    return v.finish()


def _by_frames(path, on_error="skip", batch_size=16, frames=None, label_batch=3):
    v = Validator(key=KEY, on_error=on_error, max_chars=100, chunk_rows=7, label_batch=label_batch)
    frames = list(iter_parquet_frames(path, batch_size=batch_size)) if frames is None else frames
    for raw in frames:
        v.add_prompt_frame(raw, [i for i, k in enumerate(raw.kinds()) if k == "prompt"])
    for raw in frames:
        v.add_label_frame(raw, [i for i, k in enumerate(raw.kinds()) if k != "prompt"])
    return v.finish()


@pytest.fixture
def record_path_calls(monkeypatch):
    """How many records the frame path left to the record-by-record `_prompt`."""
    from builders.stages import validate

    calls = []
    real = validate._prompt
    monkeypatch.setattr(validate, "_prompt", lambda rec, max_chars: calls.append(rec.line) or real(rec, max_chars))
    return calls


def _same(a, b):
    (ta, ra), (tb, rb) = a, b
    for x, y in ((ta.prompts, tb.prompts), (ta.demonstrations, tb.demonstrations), (ta.rankings, tb.rankings), (ra.dropped, rb.dropped)):
        assert x.schema == y.schema
        assert x.to_dicts() == y.to_dicts()
    assert ra.counts_in == rb.counts_in and ra.counts_out == rb.counts_out


@pytest.mark.parametrize("batch_size", [5, 16, 1000])
def test_columnar_validation_equals_the_record_path(tmp_path, batch_size, record_path_calls):
    path = _write(tmp_path / "log.parquet", _rows())
    want = _by_records(path)
    record_path_calls.clear()
    got = _by_frames(path, batch_size=batch_size)
    _same(want, got)
    # only the rows off the plain shape went one by one: the 8 refused ones and the chat prompt
    assert len(record_path_calls) == 9
    prompts = got[0].prompts
    assert prompts.filter(pl.col("prompt_id") == "p40")["text"].item() == "Caf\u00e9 menu, please."
    assert prompts.filter(pl.col("prompt_id") == "p41")["origin"].item() == f"{path}:42"
    assert prompts.filter(pl.col("prompt_id") == "p49")["created_at"].item() == datetime(2024, 5, 1, 6, 0, tzinfo=UTC)
    assert prompts["user"].str.starts_with("u_").all() and not prompts["user"].str.contains("user").any()
    reasons = dict(zip(got[1].dropped["record_id"].to_list(), got[1].dropped["reason"].to_list()))
    # rows are numbered from 1: p42 (a bad source) is row 43, p43 (blank) row 44, p50 (too long) row 51
    assert all(reasons[f"{path}:{row}"].startswith("invalid") for row in (43, 44, 51))
    assert prompts.height == 48  # 57 prompt records: 8 refused, one repeated id
    assert prompts.filter(pl.col("prompt_id") == "p51")["context_key"].item() != ""  # a chat prompt, by the record path


TIMES = ["2024-05-01T08:00:00Z", "2024-05-01 08:00:00.5+05:30", "2024-05-01T08:00:00.123456-00:00", "2024-05-01T23:59:59",
         "2024-05-01", "2024-W18-3T08:00", "20240501T080000", "2024-05-01T08:00:00+0530", "2024-05-01t08:00:00",
         "2024-02-30T00:00:00", "2024-05-01T24:00:00", "2024-05-01T23:59:60", "2024-05-01T08:00:00.1234567",
         "9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00", "0001-01-01T05:00:00+05:00", None]


def test_times_of_every_shape_are_read_column_wise_as_the_record_path_reads_them(tmp_path, record_path_calls):
    """`created_at` strings: the usual shape is parsed column-wise, any other one by one (a date alone, a week date,
    ...); a time whose offset takes it outside years 1-9999 in UTC is refused with its row (it crashed both paths
    with OverflowError)."""
    rows = [{"prompt_id": f"p{i}", "user_id": "u", "source": "api", "text": f"Question {i}?", "created_at": t}
            for i, t in enumerate(TIMES)]
    path = _write(tmp_path / "times.parquet", rows)
    want = _by_records(path)
    record_path_calls.clear()
    got = _by_frames(path)
    _same(want, got)
    reasons = dict(zip(got[1].dropped["record_id"].to_list(), got[1].dropped["reason"].to_list()))
    assert len(record_path_calls) == len(reasons)  # only the refused rows went one by one
    assert reasons[f"{path}:14"] == "invalid: field 'created_at': outside the years 1-9999 once converted to UTC"
    assert reasons[f"{path}:15"] == reasons[f"{path}:14"] and "not an ISO 8601 time" in reasons[f"{path}:10"]
    kept = dict(zip(got[0].prompts["prompt_id"].to_list(), got[0].prompts["created_at"].to_list()))
    assert kept["p1"] == datetime(2024, 5, 1, 2, 30, 0, 500000, tzinfo=UTC) and kept["p15"] == datetime(1, 1, 1, tzinfo=UTC)
    assert kept["p4"] == datetime(2024, 5, 1, tzinfo=UTC) and kept["p16"] is None


def test_generated_texts_and_ids_are_stripped_and_normalised_as_the_record_path_does(tmp_path, record_path_calls):
    """Texts and ids of ASCII and other characters (whitespace Python strips and Rust's does not, combining marks NFC
    composes, characters NFC changes, control and format characters texts or ids lose): the column-wise reading gives
    the record path's rows and refusals."""
    import random

    rnd = random.Random(3)
    alphabet = ["a", "Z", "7", " ", "\t", "\n", "\x0b", "\x1c", "\x1f", "\x85", "\xa0", "\u2000", "\u3000", "\u200b", "e\u0301",
                "\u0301", "\u212b", "\ufeff", "\U0001f600", "\x00", "\x1b", "\x7f", "\x9f", "\u200d", "\r"]
    word = lambda k: "".join(rnd.choices(alphabet, k=k))  # noqa: E731
    rows = [{"prompt_id": word(rnd.randint(0, 3)) + str(i), "user_id": word(rnd.randint(0, 4)) or " ", "source": "api",
             "text": word(rnd.randint(0, 12))} for i in range(3000)]
    path = _write(tmp_path / "texts.parquet", rows)
    want = _by_records(path, read=iter_parquet)
    record_path_calls.clear()
    got = _by_frames(path, batch_size=1000)
    _same(want, got)
    assert 800 < got[0].prompts.height < 3000 and len(record_path_calls) == 3000 - got[0].prompts.height


def test_python_strip_is_the_column_wise_strip_on_every_code_point():
    from builders.stages.validate import _PY_SPACE

    values = [c + "a" + c for c in map(chr, range(0x110000)) if not 0xD800 <= ord(c) < 0xE000]
    assert pl.Series(values).str.strip_chars(_PY_SPACE).to_list() == [v.strip() for v in values]


@pytest.fixture
def label_record_calls(monkeypatch):
    """The lines the label frame path left to the record-by-record `_demonstration` and `_ranking`."""
    from builders.stages import validate

    calls = []
    for name in ("_demonstration", "_ranking"):
        real = getattr(validate, name)
        monkeypatch.setattr(validate, name, lambda rec, n, max_chars, real=real: calls.append(rec.line) or real(rec, n, max_chars))
    return calls


def _generated_labels(rnd, n_prompts: int, n_labels: int, odd: float) -> list[dict]:
    """Prompts, then labels: most plain, a share `odd` of them off the plain shape or refused (unknown prompt, a
    repeated id, a blank labeler, too long, a rank below 0 or lengths that differ, a null completion), with own ids
    that are strings, blanks or missing, ties, texts that NFC or strip change."""
    texts = ["Sure.", "  padded answer\t", "Cafe\u0301 au lait", "\u3000wide space\u3000", "", "\x1cseparated\x1f", "x" * 101,
             "\U0001f600 fine"]
    rows = [{"prompt_id": f"p{i}", "user_id": "u", "source": "api", "text": f"Question {i}?"} for i in range(n_prompts)]
    for j in range(n_labels):
        pid = f"p{rnd.randrange(n_prompts)}"
        weird = rnd.random() < odd
        if rnd.random() < 0.5:
            row = {"prompt_id": pid, "labeler_id": "lab", "completion": rnd.choice(texts[:4] + texts[5:6] + texts[7:])}
            own = "demonstration_id"
        else:
            k = rnd.randint(2, 4)
            row = {"prompt_id": pid, "labeler_id": "lab", "completions": [rnd.choice(texts[:6] + texts[7:]) for _ in range(k)],
                   "ranks": rnd.choice([list(range(k)), [0] * k, [1] * (k - 1) + [0]])}
            own = "ranking_id"
        row[own] = rnd.choice([None, None, f"own{j}", "", "  spaced  "if j % 50 == 0 else f"id{j}"])
        if weird:
            fault = rnd.randrange(7)
            if fault == 0:
                row["prompt_id"] = "unknown"
            elif fault == 1:
                row[own] = f"own{rnd.randrange(max(j, 1))}"  # perhaps an id given before (to either kind)
            elif fault == 2:
                row["labeler_id"] = "  "
            elif fault == 3 and own == "demonstration_id":
                row["completion"] = texts[6] if rnd.random() < 0.5 else texts[4]  # too long, or empty
            elif fault == 3:
                row["completions"][0] = texts[6]
            elif fault == 4 and own == "ranking_id":
                row["ranks"] = [-1] + row["ranks"][1:]
            elif fault == 5 and own == "ranking_id":
                row["ranks"] = row["ranks"][:-1]
            elif fault == 6 and own == "demonstration_id":
                row["completion"] = None
            elif fault == 6:
                row["completions"] = [None] + row["completions"][1:]
            else:
                row[own] = f"p{rnd.randrange(n_prompts)}:{own[0]}0"  # perhaps a default id given to another label
        rows.append(row)
    return rows


@pytest.mark.parametrize("seed, label_batch", [(0, 3), (1, 40), (2, 5_000)])
def test_labels_checked_column_wise_equal_the_record_path(tmp_path, seed, label_batch, label_record_calls):
    """Labels are checked column-wise a batch at a time when every one of the batch is plain; a batch with one that
    is not goes one by one. Either way the same rows, default ids (the ordinals go on from batch to batch), refusals
    and ties as the record path."""
    import random

    rnd = random.Random(seed)
    rows = _generated_labels(rnd, 30, 600, odd=0.03)
    path = _write(tmp_path / "labels.parquet", rows, demonstration_id=pa.string(), ranking_id=pa.string())
    want = _by_records(path)
    label_record_calls.clear()
    got = _by_frames(path, batch_size=64, label_batch=label_batch)
    _same(want, got)
    reasons = got[1].dropped["reason"].value_counts()
    assert got[0].demonstrations.height + got[0].rankings.height > 300 and "all_completions_tied" in reasons["reason"].to_list()
    assert got[0].demonstrations["demonstration_id"].str.contains(":d").any() and got[1].dropped.height > 20
    assert len(label_record_calls) < 600  # some batches went column-wise
    for kind in ("demonstration", "ranking"):  # no row was typed twice, or lost
        table = getattr(got[0], kind + "s")
        assert table[f"{kind}_id"].is_unique().all()


def test_label_ids_and_ranks_of_other_types_take_the_column_wise_path_as_the_record_path(tmp_path, label_record_calls):
    """Integer label ids (0 included: it is an id, not an absent one), integer ids of prompts and labelers,
    ranks of a narrower integer type: the same rows as one by one, all of them column-wise; a repeated integer id is
    refused naming its first record, as one by one."""
    def write(demo_ids):
        rows = [{"prompt_id": i, "user_id": "u", "source": "api", "text": f"Question {i}?"} for i in range(5)]
        rows += [{"prompt_id": i % 5, "labeler_id": 7, "completion": f"answer {i}", "demonstration_id": d} for i, d in enumerate(demo_ids)]
        rows += [{"prompt_id": i % 5, "labeler_id": 7, "completions": ["a", "b"], "ranks": [i % 2, 1 - i % 2], "ranking_id": 100 + i}
                 for i in range(6)]
        return _write(tmp_path / "typed.parquet", rows, prompt_id=pa.int32(), labeler_id=pa.int64(), demonstration_id=pa.uint8(),
                      ranking_id=pa.int64(), ranks=pa.list_(pa.int8()))

    path = write([0, 1, 2, None, None, 5])
    want = _by_records(path)
    label_record_calls.clear()
    got = _by_frames(path, batch_size=100, label_batch=100)
    _same(want, got)
    assert label_record_calls == [] and got[1].dropped.height == 0
    assert got[0].demonstrations["demonstration_id"].to_list() == ["0", "1", "2", "3:d0", "4:d0", "5"]
    assert got[0].rankings["ranking_id"].to_list() == [str(100 + i) for i in range(6)]

    path = write([0, 1, 2, 1, None, 105])  # 1 twice; 105 is a ranking's id
    want = _by_records(path)
    label_record_calls.clear()
    got = _by_frames(path, batch_size=100, label_batch=100)
    _same(want, got)
    assert len(label_record_calls) == 12  # the batch went one by one
    reasons = dict(zip(got[1].dropped["record_id"].to_list(), got[1].dropped["reason"].to_list()))
    assert reasons == {f"{path}:9": "invalid: field 'demonstration_id': duplicate demonstration_id",
                       f"{path}:17": "invalid: field 'ranking_id': duplicate ranking_id"}


def test_the_column_wise_time_reading_equals_pythons_on_generated_times():
    import random

    from builders.stages.validate import _iso_time, _iso_times

    rnd = random.Random(7)
    values = []
    for _ in range(200_000):
        fraction = "" if rnd.random() < 0.5 else "." + "".join(rnd.choices("0123456789", k=rnd.randint(1, 6)))
        r = rnd.random()
        offset = "" if r < 0.3 else "Z" if r < 0.5 else f"{rnd.choice('+-')}{rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}"
        year = rnd.choice([1, 2, 1970, 2024, 9998, 9999, rnd.randint(1900, 2100)])
        values.append(f"{year:04d}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 31):02d}{rnd.choice('T ')}{rnd.randint(0, 23):02d}:"
                      f"{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d}{fraction}{offset}")

    def python(v):
        try:
            return _iso_time(v)
        except (ValueError, OverflowError):
            return None

    got, want = _iso_times(pl.Series(values)).to_list(), [python(v) for v in values]
    assert got == want
    assert 0 < want.count(None) < 10_000  # some refused (31 February, UTC before year 1), most read column-wise


def test_typed_columns_take_the_fast_path_the_same_way(tmp_path, record_path_calls):
    """Integer ids, a timestamp column with and without a time zone: typed as the record path types them."""
    rows = [{"prompt_id": i, "user_id": 100 + i % 3, "source": "labeler", "text": f"Question {i}?",
             "created_at": datetime(2024, 1, 1) + timedelta(hours=i)} for i in range(30)]
    for tz in (None, "Europe/Paris"):
        path = _write(tmp_path / f"typed-{tz or 'naive'}.parquet".replace("/", "-"), rows, prompt_id=pa.int64(), user_id=pa.int64(),
                      created_at=pa.timestamp("ms", tz=tz))
        want = _by_records(path)
        record_path_calls.clear()
        _same(want, _by_frames(path))
        assert record_path_calls == []


def test_the_first_bad_row_fails_with_the_record_paths_message(tmp_path):
    path = _write(tmp_path / "log.parquet", _rows())
    with pytest.raises(InputError) as want:
        _by_records(path, on_error="fail")
    with pytest.raises(InputError) as got:
        _by_frames(path, on_error="fail")
    assert str(got.value) == str(want.value)
    assert f"{path}:43" in str(got.value) and "source" in str(got.value)


def test_a_parquet_source_streams_frames_and_tallies_like_records(tmp_path):
    from builders.sources import load_source

    path = _write(tmp_path / "log.parquet", _rows())
    by_records, by_frames = load_source(f"parquet:{path}"), load_source(f"parquet:{path}")
    assert by_frames.columnar
    n = sum(1 for _ in by_records.stream(tally=True))
    m = sum(raw.height for raw in by_frames.stream_frames(tally=True))
    assert n == m == len(_rows()) and by_records.accounting() == by_frames.accounting()


def _jsonl_lines() -> list[bytes]:
    """`_rows()` as JSONL (None as null), with the faults only a text file has and the values Arrow's JSON reader
    would type otherwise than Python's json module: every block holding one must go record by record."""
    lines = [json.dumps(r).encode() for r in _rows()]
    lines[5:5] = [b"", b"   "]  # blank lines: skipped, and the lines after them keep their numbers
    lines[12:12] = [b'{"prompt_id": "p3b", "user_id": "u", "source": "api", "text": "broken"', b"[1, 2]", b'"just a string"',
                    b'{"prompt_id": "p3c", "user_id": "u", "source": "api", "text": "caf\xe9"}']
    lines[20:20] = [b'{"prompt_id": "p1", "labeler_id": "l1", "completions": ["a", "b", "c"], "ranks": [0, 1.5, 2]}',  # a fraction
                    b'{"prompt_id": "p1", "labeler_id": "l1", "completions": null, "text": "which kind?"}',  # present, null
                    b'{"prompt_id": "p60", "user_id": "u", "source": "api", "text": "2024-05-01 12:00:00"}',  # looks like a time
                    b'{"prompt_id": 61, "user_id": 7, "source": "labeler", "text": "integer ids"}',
                    b'{"prompt_id": "p62", "user_id": "u", "source": "api", "text": "twice", "text": "two texts"}',
                    b'{"prompt_id": "p63", "user_id": "u", "source": "api", "text": "one"} {"prompt_id": "p64"}',
                    b"{}"]
    return lines


@pytest.mark.parametrize("lines_per_block,max_bytes", [(1, 1 << 20), (4, 64), (1000, 300), (1000, 1 << 20)])
@pytest.mark.parametrize("gz", [False, True])
def test_jsonl_frames_validate_as_the_record_path(tmp_path, lines_per_block, max_bytes, gz, record_path_calls):
    """Blocks of one line, of a few, cut by the bytes read at once (lines longer than a read), and the whole file."""
    data = b"\n".join(_jsonl_lines()) + b"\n"
    path = tmp_path / ("log.jsonl.gz" if gz else "log.jsonl")
    path.write_bytes(gzip.compress(data) if gz else data)
    want = _by_records(path, read=iter_jsonl)
    record_path_calls.clear()
    frames = list(iter_jsonl_frames(path, lines=lines_per_block, max_bytes=max_bytes))
    got = _by_frames(path, frames=frames)
    _same(want, got)
    assert [r.line for raw in frames for r in raw.records(range(raw.height))] == [r.line for r in iter_jsonl(path)]
    assert any(raw.columnar for raw in frames) and any(not raw.columnar for raw in frames)
    if lines_per_block == 1:  # every good line of the plain shape was checked column-wise
        assert len(record_path_calls) < 20
    reasons = dict(zip(got[1].dropped["record_id"].to_list(), got[1].dropped["reason"].to_list()))
    assert "broken JSON" in reasons[f"{path}:13"] and "invalid UTF-8" in reasons[f"{path}:16"]
    prompts = got[0].prompts
    assert prompts.filter(pl.col("prompt_id") == "p60")["text"].item() == "2024-05-01 12:00:00"
    assert prompts.filter(pl.col("prompt_id") == "p62")["text"].item() == "two texts"  # the json module keeps the last


def test_values_arrow_would_type_otherwise_send_their_block_the_record_way(tmp_path, record_path_calls):
    """One block of valid lines where Arrow's inference would change a value: a fraction in one ranking would make
    every ranking's ranks floats (and refuse them), an id that looks like a date would become a date."""
    rows = [{"prompt_id": "2024-05-01", "user_id": "2024-05-01T10:00:00", "source": "api", "text": "Dated ids"},
            {"prompt_id": "p2", "user_id": "u", "source": "api", "text": "Plain"},
            {"prompt_id": "p2", "labeler_id": "l", "completions": ["a", "b"], "ranks": [0, 1]},
            {"prompt_id": "p2", "labeler_id": "l", "completions": ["a", "b"], "ranks": [0, 1.5]}]
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    want = _by_records(path, read=iter_jsonl)
    _same(want, _by_frames(path, frames=list(iter_jsonl_frames(path))))
    assert want[0].counts() == {"prompts": 2, "demonstrations": 0, "rankings": 1}


def test_bad_utf8_in_a_key_is_refused_on_its_line_as_before(tmp_path):
    """Arrow's checks look at values, not field names: a key with bad UTF-8 fails only when its name is read."""
    path = tmp_path / "log.jsonl"
    path.write_bytes(json.dumps(_rows()[0]).encode() + b'\n{"te\xffxt": "a", "prompt_id": "p9", "user_id": "u", "source": "api"}\n')
    want = _by_records(path, read=iter_jsonl)
    _same(want, _by_frames(path, frames=list(iter_jsonl_frames(path))))
    assert "invalid UTF-8" in want[1].dropped["reason"][0]


def test_a_jsonl_file_with_a_bom_is_refused_on_its_first_line_as_before(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_rows()[0]).encode() + b"\n" + json.dumps(_rows()[1]).encode() + b"\n")
    with pytest.raises(InputError) as want:
        _by_records(path, on_error="fail", read=iter_jsonl)
    with pytest.raises(InputError) as got:
        _by_frames(path, on_error="fail", frames=list(iter_jsonl_frames(path)))
    assert str(got.value) == str(want.value) and f"{path}:1:" in str(got.value)


def test_a_jsonl_source_streams_frames_and_tallies_like_records(tmp_path):
    from builders.sources import load_source

    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\n".join(_jsonl_lines()) + b"\n")
    by_records, by_frames = load_source(f"jsonl:{path}", on_error="skip"), load_source(f"jsonl:{path}", on_error="skip")
    assert by_frames.columnar and load_source("sample").columnar
    n = sum(1 for _ in by_records.stream(tally=True))
    m = sum(raw.height for raw in by_frames.stream_frames(tally=True))
    assert n == m == len([line for line in _jsonl_lines() if line.strip()])
    assert by_records.accounting() == by_frames.accounting()


def test_the_labels_pass_skips_files_that_hold_only_prompts(tmp_path):
    """The second pass reads labels; a Parquet file with no label column is not read again (its texts are the bulk
    of the log), a file that may mix kinds is."""
    prompts = tmp_path / "prompts.parquet"
    pq.write_table(pa.table({"prompt_id": ["p1"], "user_id": ["u"], "source": ["api"], "text": ["Hi there"]}), prompts)
    mixed = _write(tmp_path / "mixed.parquet", _rows())
    assert list(iter_parquet_frames(prompts, labels_only=True)) == []
    assert sum(raw.height for raw in iter_parquet_frames(mixed, labels_only=True)) == len(_rows())
    assert [raw.height for raw in iter_parquet_frames(prompts)] == [1]


def _with_bad_utf8(values: list[bytes]) -> pa.Array:
    """A string column holding bytes as a writer that does not check UTF-8 stores them (pyarrow's own writer checks)."""
    raw = pa.array(values, pa.binary())
    return pa.Array.from_buffers(pa.string(), len(raw), raw.buffers())


def test_bad_utf8_in_a_parquet_string_names_its_row_and_field_and_the_other_rows_are_kept(tmp_path):
    """Arrow's Parquet reader takes a string column's bytes as they were written; a bad one crashed validation with
    a bare UnicodeDecodeError. Now the row is refused with its row number and field, on either pass."""
    from builders.sources import load_source

    folder = tmp_path / "log"
    folder.mkdir()
    ids = [f"p{i}" for i in range(40)]
    texts = [f"prompt number {i}".encode() for i in range(40)]
    texts[17] = b"caf\xe9 \xed\xa0\x80"  # Latin-1, then an encoded surrogate
    pq.write_table(pa.table({"prompt_id": pa.array(ids), "user_id": pa.array(["u"] * 40), "source": pa.array(["api"] * 40),
                             "text": _with_bad_utf8(texts)}), folder / "a-prompts.parquet", row_group_size=16)
    completions = pa.array([[b"fine", b"also fine"], [b"ok", b"b\xffd"]], pa.list_(pa.binary()))
    bad_list = pa.ListArray.from_arrays(completions.offsets, _with_bad_utf8(completions.values.to_pylist()))
    pq.write_table(pa.table({"prompt_id": pa.array(["p1", "p2"]), "labeler_id": pa.array(["l", "l"]),
                             "completions": bad_list, "ranks": pa.array([[0, 1], [1, 0]])}), folder / "b-rankings.parquet")
    with pytest.raises(InputError, match=r"a-prompts.parquet:18: field 'text': invalid UTF-8"):
        _by_frames(folder / "a-prompts.parquet", on_error="fail")

    v = Validator(key=KEY, on_error="skip")
    src = load_source(f"parquet:{folder}", on_error="skip")
    assert sum(v.read_prompts(src)) == 42
    v.read_labels(src)
    tables, result = v.finish()
    assert tables.prompts.height == 39 and "p17" not in tables.prompts["prompt_id"].to_list()
    assert tables.rankings["prompt_id"].to_list() == ["p1"]
    reasons = dict(zip(result.dropped["record_id"].to_list(), result.dropped["reason"].to_list()))
    assert reasons == {f"{folder / 'a-prompts.parquet'}:18": "invalid: field 'text': invalid UTF-8 in a string column",
                       f"{folder / 'b-rankings.parquet'}:2": "invalid: field 'completions': invalid UTF-8 in a string column"}


def test_the_labels_pass_skips_jsonl_files_the_prompts_pass_found_holding_only_prompts(tmp_path):
    from builders.sources import load_source

    (tmp_path / "a-prompts.jsonl").write_text(json.dumps({"prompt_id": "p1", "user_id": "u", "source": "api", "text": "Hi"}) + "\n")
    (tmp_path / "b-mixed.jsonl").write_bytes(b"\n".join(_jsonl_lines()) + b"\n")
    src = load_source(f"jsonl:{tmp_path}", on_error="skip")
    labels_pass = lambda: {raw.file.rsplit("/", 1)[-1] for raw in src.stream_frames(labels_only=True)}  # noqa: E731
    assert labels_pass() == {"a-prompts.jsonl", "b-mixed.jsonl"}  # no prompts pass yet: every file
    assert sum(raw.height for raw in src.stream_frames(tally=True)) == src.accounting()["read"]
    assert labels_pass() == {"b-mixed.jsonl"}

    # the build's progress bar of the labels pass moves by the records that pass read
    v = Validator(key=KEY, on_error="skip")
    for _ in v.read_prompts(src):
        pass
    steps = []
    v.read_labels(src, on_read=steps.append)
    mixed = sum(1 for line in (tmp_path / "b-mixed.jsonl").read_bytes().split(b"\n") if line.strip())
    assert len(steps) > 1 and sum(steps) == mixed


def test_records_of_a_large_batch_come_in_parts_with_their_rows_and_values(tmp_path):
    """A batch's records are made a few thousand at a time (not the whole batch's Python objects at once): every
    chosen row comes out once, in order, with its row number and values, across the parts' boundaries."""
    from builders.readers import RECORDS_AT_ONCE

    n = 2 * RECORDS_AT_ONCE + 37
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"prompt_id": [f"p{i}" for i in range(n)], "note": [None if i % 3 else f"n{i}" for i in range(n)]}), path)
    (raw,) = iter_parquet_frames(path, batch_size=n)
    chosen = [i for i in range(n) if i % 5 != 1]
    records = list(raw.records(chosen))
    assert [r.line for r in records] == [i + 1 for i in chosen]
    assert [r.data for r in records] == [{"prompt_id": f"p{i}", **({} if i % 3 else {"note": f"n{i}"})} for i in chosen]
    assert [r.data for r in iter_parquet(path)] == [{"prompt_id": f"p{i}", **({} if i % 3 else {"note": f"n{i}"})} for i in range(n)]


def _wide_parquet(path, row_groups=40, rows=400, chars=1_000):
    rng = np.random.default_rng(0)
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyz "))
    texts = ["".join(rng.choice(alphabet, chars)) for _ in range(rows)]  # random letters: ~chars bytes compressed too
    table = pa.table({"prompt_id": [f"p{i}" for i in range(row_groups * rows)], "text": texts * row_groups})
    pq.write_table(table, path, row_group_size=rows)
    return path


def test_parquet_batches_are_sized_by_bytes_and_numbered_on(tmp_path):
    """Wide rows (a ranking's completions) come in batches of about `batch_bytes`, not 65,536 rows: the labels'
    pass held a 0.25 GB batch of the bench log's rankings. Row numbers run on across batches."""
    f = _wide_parquet(tmp_path / "wide.parquet")
    frames = list(iter_parquet_frames(f, batch_bytes=100_000))
    assert max(raw.height for raw in frames) <= 110 and sum(raw.height for raw in frames) == 16_000
    assert [raw.first_line for raw in frames] == list(np.cumsum([1] + [raw.height for raw in frames[:-1]]))
    assert [raw.height for raw in iter_parquet_frames(f, batch_size=3_000)][:2] == [3_000, 3_000]  # narrow enough: by rows


def test_reading_a_parquet_file_does_not_keep_what_it_read(tmp_path):
    """Arrow memory in use stays that of a batch or two while a file is read: with the reader's pre-buffering on,
    it read ahead up to 32 MB of row groups and kept them until the file was closed (~90 bytes a prompt of the bench
    log held through the whole read)."""
    import gc

    f = _wide_parquet(tmp_path / "wide.parquet")  # 40 row groups of ~0.4 MB
    gc.collect()
    before, held = pa.total_allocated_bytes(), []
    for raw in iter_parquet_frames(f, batch_size=400):
        del raw
        gc.collect()
        held.append(pa.total_allocated_bytes() - before)
    assert len(held) == 40 and max(held) < 4_000_000, held
