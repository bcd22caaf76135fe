"""Stage 1 and the readers: malformed input gets an error naming file, line and field; `skip` reports it."""

from __future__ import annotations

import json

import pytest

from builders.errors import InputError
from builders.readers import iter_jsonl_frames
from builders.sources import load_source
from builders.stages.validate import validate
from tests.conftest import prompt, write_jsonl


def run(path, on_error="fail"):
    return validate(list(load_source(f"jsonl:{path}").stream()), key=b"k", on_error=on_error)


def test_broken_json_line_names_file_and_line(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [prompt("a", "hello"), '{"prompt_id": "b", "text": ', prompt("c", "x")])
    with pytest.raises(InputError) as err:
        run(f)
    assert err.value.file == str(f) and err.value.line == 2
    assert f"{f}:2:" in str(err.value) and "broken JSON" in str(err.value)


def test_missing_field_names_the_field(tmp_path):
    row = prompt("a", "hello")
    del row["user_id"]
    f = write_jsonl(tmp_path / "p.jsonl", [prompt("z", "fine"), row])
    with pytest.raises(InputError, match=r"p.jsonl:2: field 'user_id': missing"):
        run(f)


def test_empty_file_is_an_error(tmp_path):
    f = tmp_path / "empty.jsonl"
    f.write_text("\n\n")
    with pytest.raises(InputError, match="empty"):
        run(f)


def test_invalid_utf8_names_the_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    good = b'{"prompt_id": "a", "user_id": "u", "source": "api", "text": "ok"}\n'
    f.write_bytes(good + b'{"prompt_id": "b", "user_id": "u", "source": "api", "text": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: invalid UTF-8"):
        run(f)


def test_a_lone_surrogate_escape_names_its_line_and_field_and_a_real_pair_is_kept(tmp_path):
    # JSON may escape half of a UTF-16 pair (`\ud800`); Python reads it into a string no UTF-8 writer takes (it used to
    # crash the build in polars or SQLite with UnicodeEncodeError and no line). json.dumps escapes it as JSON would.
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x\udfff"}, {"role": "user", "content": "go"}]
    chat = prompt("d", None, messages=msgs)
    del chat["text"]
    rows = [prompt("a", "ok"), prompt("b", "half \ud83d of a smile"), prompt("c", "a whole \ud83d\ude00 smile"), chat,
            {"prompt_id": "a", "labeler_id": "l", "demonstration_id": "d\udc00", "completion": "fine"},
            {"prompt_id": "a", "labeler_id": "l", "completion": "also fine"}]
    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="ascii")
    with pytest.raises(InputError, match=r"p.jsonl:2: field 'text': a lone UTF-16 surrogate escape"):
        run(f)
    tables, result = run(f, on_error="skip")
    assert tables.prompts["prompt_id"].to_list() == ["a", "c"]
    assert tables.prompts["text"][1] == "a whole \U0001F600 smile"
    assert tables.demonstrations["completion"].to_list() == ["also fine"]
    reasons = dict(zip(result.dropped["record_id"].to_list(), result.dropped["reason"].to_list()))
    assert set(reasons) == {f"{f}:2", f"{f}:4", f"{f}:5"}
    assert "field 'messages[1].content'" in reasons[f"{f}:4"] and "field 'demonstration_id'" in reasons[f"{f}:5"]
    # the columnar reader (what `instructkit build` reads JSONL with) gives the same refusals
    blocks = list(iter_jsonl_frames(f))
    errors = [str(r.error) for b in blocks if not b.columnar for r in b.recs if r.error is not None]
    assert len(errors) == 3 and all("lone UTF-16 surrogate" in e for e in errors)


def test_a_lang_or_label_id_of_another_type_is_refused_with_its_line_on_both_reading_paths(tmp_path):
    # a list or number as `lang` crashed polars with no line; a list as a label id was kept as its repr
    from builders.stages.validate import Validator

    rows = [prompt("a", "ok"), prompt("b", "ok", lang=["en"]), prompt("c", "ok", lang=5),
            {"prompt_id": "a", "labeler_id": "l", "completion": "x", "demonstration_id": ["d1"]},
            {"prompt_id": "a", "labeler_id": "l", "completions": ["x", "y"], "ranks": [0, 1], "ranking_id": {"id": 1}},
            {"prompt_id": "a", "labeler_id": "l", "completion": "y", "demonstration_id": 7},
            # 0 is an id; false and an empty list are not ids, and were taken as none given
            {"prompt_id": "a", "labeler_id": "l", "completion": "z", "demonstration_id": 0},
            {"prompt_id": "a", "labeler_id": "l", "completion": "w", "demonstration_id": False},
            {"prompt_id": "a", "labeler_id": "l", "completions": ["x", "y"], "ranks": [0, 1], "ranking_id": []}]
    f = write_jsonl(tmp_path / "p.jsonl", rows)
    with pytest.raises(InputError, match=r"p.jsonl:2: field 'lang': must be a string or null: got list"):
        run(f)
    v = Validator(key=b"k", on_error="skip")
    src = load_source(f"jsonl:{f}", on_error="skip")
    for _ in v.read_prompts(src):
        pass
    v.read_labels(src)
    for tables, result in (run(f, on_error="skip"), v.finish()):
        assert tables.prompts["prompt_id"].to_list() == ["a"] and tables.demonstrations["demonstration_id"].to_list() == ["7", "0"]
        reasons = dict(zip(result.dropped["record_id"].to_list(), result.dropped["reason"].to_list()))
        assert reasons == {f"{f}:2": "invalid: field 'lang': must be a string or null", f"{f}:3": "invalid: field 'lang': must be a string or null",
                           f"{f}:4": "invalid: field 'demonstration_id': must be a string, got list",
                           f"{f}:5": "invalid: field 'ranking_id': must be a string, got dict",
                           f"{f}:8": "invalid: field 'demonstration_id': must be a string, got bool",
                           f"{f}:9": "invalid: field 'ranking_id': must be a string, got list"}


def test_ten_megabyte_prompt_is_rejected_not_loaded_into_outputs(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [prompt("a", "ok"), prompt("huge", "x" * 10_000_000)])
    with pytest.raises(InputError, match=r"p.jsonl:2: field 'text': over max_prompt_chars=100,000: 10,000,000 characters"):
        run(f)
    tables, result = run(f, on_error="skip")
    assert tables.prompts["prompt_id"].to_list() == ["a"]
    assert result.dropped["record_id"].to_list() == [f"{f}:2"]
    assert "max_prompt_chars" in result.dropped["reason"][0]


def test_skip_mode_reports_every_rejected_record_with_its_reason(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [
        prompt("a", "ok"),
        "not json",
        prompt("b", "bad source", source="web"),
        {"prompt_id": "nope", "labeler_id": "l", "completion": "orphan"},
        {"prompt_id": "a", "labeler_id": "l", "completions": ["x", "y"], "ranks": [0]},
        prompt("a", "duplicate id"),
    ])
    tables, result = run(f, on_error="skip")
    assert tables.counts() == {"prompts": 1, "demonstrations": 0, "rankings": 0}
    reasons = dict(zip(result.dropped["record_id"].to_list(), result.dropped["reason"].to_list()))
    assert set(reasons) == {f"{f}:{n}" for n in (2, 3, 4, 5, 6)}
    assert "broken JSON" in reasons[f"{f}:2"]
    assert "field 'source'" in reasons[f"{f}:3"]
    assert reasons[f"{f}:4"] == "invalid: field 'prompt_id': no prompt with this prompt_id"  # the raw id is not in the reason
    assert "field 'ranks'" in reasons[f"{f}:5"]
    assert "duplicate prompt_id" in reasons[f"{f}:6"]


def test_a_rank_too_large_for_the_ranks_column_names_its_line(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [prompt("a", "ok"),
                                           {"prompt_id": "a", "labeler_id": "l", "completions": ["x", "y"], "ranks": [0, 10**20]}])
    with pytest.raises(InputError, match=r"p.jsonl:2: field 'ranks': ranks must be integers >= 0 \(0 is best\), below 2\^63"):
        run(f)
    tables, result = run(f, on_error="skip")
    assert tables.rankings.height == 0 and result.dropped["record_id"].to_list() == [f"{f}:2"]


def test_user_ids_are_pseudonymised_on_the_way_in(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [prompt("a", "hi", user="alice@example.com"), prompt("b", "yo", user="alice@example.com")])
    tables, _ = run(f)
    users = tables.prompts["user"].unique().to_list()
    assert len(users) == 1 and users[0].startswith("u_") and "alice" not in users[0]


def test_pseudonyms_are_hmac_sha256_so_they_stay_what_earlier_builds_gave():
    """Splits follow pseudonyms: the same key must give the same pseudonym as before (HMAC-SHA256's first 16 hex
    digits), for keys shorter than, as long as and longer than SHA-256's block, and ids of any characters."""
    import hashlib
    import hmac

    from builders.pseudonym import pseudonymise

    ids = ["alice@example.com", "", "ünïcode 用户", "\U0001f600", "alice@example.com", "x" * 500]
    for key in (b"", b"k", b"benchmark-key", b"7" * 64, b"8" * 65, bytes(range(256))):
        want = ["u_" + hmac.new(key, i.encode("utf-8"), hashlib.sha256).hexdigest()[:16] for i in ids]
        assert pseudonymise(ids, key) == want


def test_chat_messages_keep_context_and_last_turn_is_the_text(tmp_path):
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Tell me a joke"}]
    row = prompt("a", None, messages=msgs)
    del row["text"]
    tables, _ = run(write_jsonl(tmp_path / "p.jsonl", [row]))
    assert tables.prompts["text"][0] == "Tell me a joke"
    assert len(tables.prompts["messages"][0]) == 3 and tables.prompts["context_key"][0] != ""


def test_chunked_validation_gives_the_same_tables_and_counts(tmp_path):
    """Rows are gathered a chunk at a time, labels checked a batch at a time and raw records released as they go:
    the tables, the input counts and the drops are the same as in one piece, and `consume` empties the caller's
    list."""
    records = list(load_source("sample").stream())
    whole, whole_res = validate(list(records), key=b"k", on_error="skip")
    chunked_input = list(records)
    chunked, chunked_res = validate(chunked_input, key=b"k", on_error="skip", consume=True, chunk_rows=7, label_batch=3)
    assert chunked_input == []
    for name in ("prompts", "demonstrations", "rankings"):
        a, b = getattr(whole, name), getattr(chunked, name)
        assert a.height > 7 and a.equals(b) and b.n_chunks() == 1
    assert whole_res.counts_in == chunked_res.counts_in and whole_res.counts_out == chunked_res.counts_out
    assert whole_res.dropped.equals(chunked_res.dropped)


def _labels_across_batches(tmp_path):
    """Labels whose ids and default ids depend on earlier batches: the ordinal a refused label still used, an
    explicit id a later default id repeats, a tied ranking's id, one id namespace across kinds."""
    demo = lambda pid, **kw: {"prompt_id": pid, "labeler_id": "l", "completion": "ok", **kw}  # noqa: E731
    rank = lambda pid, ranks=(0, 1), **kw: {"prompt_id": pid, "labeler_id": "l", "completions": ["x", "y"], "ranks": list(ranks), **kw}  # noqa: E731
    rows = [prompt("a", "hi"), prompt("b", "yo"),
            demo("a"),                                     # 3: a:d0
            demo("a", demonstration_id="a:d2"),            # 4: explicit; ordinal 1
            {**demo("a"), "labeler_id": None},             # 5: refused, but ordinal 2 is used
            demo("a"),                                     # 6: a:d3
            rank("a", ranks=(1, 1)),                       # 7: a:r0, all tied: dropped, its id taken
            rank("a", ranking_id="a:r0"),                  # 8: duplicate of 7
            demo("b", demonstration_id="a:d0"),            # 9: duplicate of 3
            demo("a", demonstration_id="x"),               # 10
            rank("b", ranking_id="x"),                     # 11: duplicate of 10 (one namespace)
            demo("zz"),                                    # 12: unknown prompt: no ordinal
            demo("a"),                                     # 13: a:d5 (10 took ordinal 4)
            rank("b")]                                     # 14: b:r1 (11 took ordinal 0)
    return write_jsonl(tmp_path / "labels.jsonl", rows)


@pytest.mark.parametrize("label_batch", [1, 2, 3, 5_000])
def test_label_ids_and_duplicates_do_not_depend_on_the_batch(tmp_path, label_batch):
    """Label checks remember earlier batches (SQLite, `_LabelKeys`): default ids, duplicates and their messages are
    those of one batch whatever the batch size."""
    f = _labels_across_batches(tmp_path)
    records = list(load_source(f"jsonl:{f}").stream())
    tables, result = validate(list(records), key=b"k", on_error="skip", label_batch=label_batch)
    assert tables.demonstrations["demonstration_id"].to_list() == ["a:d0", "a:d2", "a:d3", "x", "a:d5"]
    assert tables.rankings["ranking_id"].to_list() == ["b:r1"]
    assert dict(zip(result.dropped["record_id"], result.dropped["reason"])) == {
        f"{f}:5": "invalid: field 'labeler_id': missing or empty", f"{f}:7": "all_completions_tied",
        f"{f}:8": "invalid: field 'ranking_id': duplicate ranking_id",
        f"{f}:9": "invalid: field 'demonstration_id': duplicate demonstration_id",
        f"{f}:11": "invalid: field 'ranking_id': duplicate ranking_id",
        f"{f}:12": "invalid: field 'prompt_id': no prompt with this prompt_id"}
    with pytest.raises(InputError, match=rf"labels.jsonl:5: field 'labeler_id'"):
        validate(list(records), key=b"k", label_batch=label_batch)
    del records[4]  # without the refused label, line 6 gets ordinal 2: the id line 4 gave explicitly
    with pytest.raises(InputError, match=rf"labels.jsonl:6: field 'demonstration_id': duplicate demonstration_id: 'a:d2', first at {f}:4"):
        validate(records, key=b"k", label_batch=label_batch)


def test_label_checks_keep_what_they_remember_in_the_file_given(tmp_path):
    """The streaming build keeps the label state on disk: the same tables and drops as in memory, and the file holds
    every id seen."""
    import sqlite3

    from builders.stages.validate import Validator

    f = _labels_across_batches(tmp_path)
    records = list(load_source(f"jsonl:{f}").stream())
    v = Validator(key=b"k", on_error="skip", label_batch=2, label_keys=str(tmp_path / "keys.sqlite"))
    for rec in sorted(records, key=lambda r: r.data.get("text") is None):  # prompts first
        v.add(rec)
    with sqlite3.connect(tmp_path / "keys.sqlite") as db:
        seen_while_reading = db.execute("SELECT count(*) FROM seen").fetchone()[0]
    tables, result = v.finish()
    with sqlite3.connect(tmp_path / "keys.sqlite") as db:
        seen = {i for (i,) in db.execute("SELECT id FROM seen")}
    assert seen == {"a:d0", "a:d2", "a:d3", "a:r0", "x", "a:d5", "b:r1"} and 0 < seen_while_reading <= len(seen)
    in_memory, in_memory_result = validate(records, key=b"k", on_error="skip")
    assert tables.demonstrations.equals(in_memory.demonstrations) and tables.rankings.equals(in_memory.rankings)
    assert result.dropped.equals(in_memory_result.dropped)


def test_repeated_prompt_ids_keep_the_first_and_labels_still_find_it(tmp_path):
    """Repeated ids are found among the sorted ids (neighbours); each later copy is refused naming the first, and
    the ids labels are checked against hold each kept id once."""
    from builders.stages.validate import Validator

    f = write_jsonl(tmp_path / "p.jsonl", [prompt("b", "first b"), prompt("a", "first a"), prompt("b", "second b"),
                                           prompt("c", "c"), prompt("b", "third b"), prompt("a", "second a"),
                                           {"prompt_id": "b", "labeler_id": "l", "completion": "for b"}])
    tables, result = run(f, on_error="skip")
    assert tables.prompts.sort("prompt_id")["text"].to_list() == ["first a", "first b", "c"]
    assert tables.demonstrations["prompt_id"].to_list() == ["b"]
    assert result.dropped["record_id"].to_list() == [f"{f}:3", f"{f}:5", f"{f}:6"]
    with pytest.raises(InputError, match=rf"p.jsonl:3: field 'prompt_id': duplicate prompt_id: 'b', first at {f}:1"):
        run(f)
    v = Validator(key=b"k", on_error="skip")
    for rec in load_source(f"jsonl:{f}").stream():
        if rec.data.get("text") is not None:
            v.add(rec)
    v._close_prompts()
    assert v.known.to_list() == ["a", "b", "c"]


def test_a_label_of_a_rejected_prompt_says_its_prompt_was_rejected_and_where(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [
        prompt("a", "ok"),
        prompt("b", "bad source", source="twitter"),
        {"prompt_id": "b", "labeler_id": "l", "completion": "a reply to a rejected prompt"},
        {"prompt_id": "nope", "labeler_id": "l", "completion": "orphan"},
    ])
    _, result = run(f, on_error="skip")
    reasons = dict(zip(result.dropped["record_id"].to_list(), result.dropped["reason"].to_list()))
    assert reasons[f"{f}:3"] == "invalid: field 'prompt_id': its prompt was rejected"
    assert reasons[f"{f}:4"] == "invalid: field 'prompt_id': no prompt with this prompt_id"


def test_control_characters_leave_texts_and_ids_and_invisible_ones_leave_ids(tmp_path):
    """NUL and the other control characters (but tab, line feed, carriage return) leave texts; every control and
    format character (zero-width joiner and space, BOM) leaves ids, so `u1` and `u1`+ZWJ are one user and a label
    naming `p1` finds the prompt whose id ends in an invisible joiner. Texts keep their format characters (an emoji
    family's joiners) and are NFC; so are ids."""
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    f = write_jsonl(tmp_path / "p.jsonl", [
        prompt("p1\u200d", "hello\x00world,\ta bell\x07 and an escape\x1b[0m\r\nnext line", user="u1"),
        prompt("p2", f"Cafe\u0301 for the {family}", user="u1\u200d"),
        prompt("p3", "third", user="\ufeffu\x001\u200b"),
        prompt("Caf\u0065\u0301", "fourth", user="Jos\u00e9"),
        prompt("p5", "fifth", user="Jose\u0301"),
        {"prompt_id": "p1", "labeler_id": "lab\x00\u200b", "completion": "Done\x00."},
    ])
    tables, result = run(f)
    prompts = tables.prompts.sort("prompt_id")
    assert prompts["prompt_id"].to_list() == ["Caf\u00e9", "p1", "p2", "p3", "p5"]
    texts = dict(zip(prompts["prompt_id"], prompts["text"]))
    assert texts["p1"] == "helloworld,\ta bell and an escape[0m\r\nnext line"
    assert texts["p2"] == f"Caf\u00e9 for the {family}"
    users = dict(zip(prompts["prompt_id"], prompts["user"]))
    assert users["p1"] == users["p2"] == users["p3"] and users["Caf\u00e9"] == users["p5"] != users["p1"]
    assert tables.demonstrations.select("prompt_id", "labeler_id", "completion").row(0) == ("p1", "lab", "Done.")
    assert result.dropped.height == 0


def test_a_text_or_id_of_nothing_but_control_characters_is_refused_and_counted(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [
        prompt("a", "ok"),
        prompt("b", "\x00\x00 \x07"),
        prompt("c", "fine", user="\u200b\x00"),
        {"prompt_id": "a", "labeler_id": "l", "completion": "\x00"},
        {"prompt_id": "a", "labeler_id": "l", "completions": ["\x00", "y"], "ranks": [0, 1]},  # a ranked reply may be empty
    ])
    with pytest.raises(InputError, match=r"p.jsonl:2: field 'text': holds only control characters and whitespace$"):
        run(f)
    tables, result = run(f, on_error="skip")
    assert tables.prompts["prompt_id"].to_list() == ["a"] and tables.rankings["completions"].to_list() == [["", "y"]]
    assert dict(zip(result.dropped["record_id"], result.dropped["reason"])) == {
        f"{f}:2": "invalid: field 'text': holds only control characters and whitespace",
        f"{f}:3": "invalid: field 'user_id': holds only control or format characters",
        f"{f}:4": "invalid: field 'completion': holds only control characters and whitespace"}
