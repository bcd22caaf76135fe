"""Sources: one registry, one lazy interface, counts kept in one place, `--on-error skip` honoured inside the
adapters, oasst and HH-RLHF read a tree or a pair at a time."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from builders.errors import InputError
from builders.pipeline import build
from builders.readers import RawRecord
from builders.settings import BuildSettings
from builders.sources import SourceData, load_source, register
from builders.sources.oasst import _trees

PAIR = {"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi there\n\nAssistant: Go away."}


def _hh(tmp_path: Path) -> Path:
    path = tmp_path / "hh" / "test.jsonl.gz"
    path.parent.mkdir()
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps(PAIR) + "\n")
        fh.write("{not json\n")
        fh.write(json.dumps({"rejected": PAIR["rejected"]}) + "\n")  # no `chosen`
        fh.write(json.dumps({"chosen": "no transcript", "rejected": "x"}) + "\n")
        fh.write(json.dumps({"chosen": PAIR["chosen"], "rejected": "\n\nHuman: Other\n\nAssistant: Hm."}) + "\n")
    return path.parent


def test_hh_rows_it_cannot_read_fail_with_file_and_line_or_are_skipped_and_counted(tmp_path):
    folder = _hh(tmp_path)
    with pytest.raises(InputError, match=r"test.jsonl.gz:2"):
        list(load_source(f"hh-rlhf:{folder}").stream())
    src = load_source(f"hh-rlhf:{folder}", on_error="skip")
    records = list(src.stream(tally=True))
    assert [r.kind for r in records] == ["prompt", "ranking"]
    acc = src.accounting()
    assert acc["read"] == 5 and acc["became"] == {"pair": 1}
    assert sum(acc["dropped"].values()) == 4 and "chosen_and_rejected_do_not_share_a_prefix" in acc["dropped"]
    assert any("field 'chosen'" in reason for reason in acc["dropped"])
    assert not any("test.jsonl" in reason for reason in acc["dropped"])  # reasons hold no path
    list(src.stream(tally=True))  # a second tallied pass counts again from zero, not twice
    assert src.accounting() == acc


def test_a_build_with_on_error_skip_goes_past_bad_source_rows(tmp_path, scanner, classifier):
    folder = _hh(tmp_path)
    report = build(BuildSettings(sources=[f"hh-rlhf:{folder}", "sample"], on_error="skip", out=str(tmp_path / "out")),
                   classifier=classifier, scanner=scanner, progress=False)
    hh = next(s for s in report["sources"] if s["spec"].startswith("hh-rlhf"))
    assert hh["read"] == 5 and hh["became"] == {"pair": 1} and sum(hh["dropped"].values()) == 4


def _message(mid: str, tree: str, parent: str | None, role: str, text: str, **extra) -> dict:
    return {"message_id": mid, "message_tree_id": tree, "parent_id": parent, "role": role, "text": text,
            "user_id": "u-" + tree, **extra}


def test_oasst_skips_a_broken_message_and_refuses_a_tree_split_across_the_file(tmp_path):
    rows = [_message("a", "t1", None, "prompter", "Name three rivers."),
            _message("b", "t1", "a", "assistant", "Nile, Amazon, Danube."),
            _message("c", "t2", None, "prompter", ""),  # no text
            _message("d", "t2", "c", "assistant", "Sure.")]
    path = tmp_path / "oasst.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match=r"oasst.jsonl:3: field 'text'"):
        list(load_source(f"oasst:{path}").stream())
    src = load_source(f"oasst:{path}", on_error="skip")
    kinds = [r.kind for r in src.stream(tally=True)]
    assert kinds == ["prompt", "demonstration"]
    acc = src.accounting()
    assert acc["read"] == 4 and acc["became"] == {"demonstration": 1, "prompt": 1}
    assert acc["dropped"] == {"field 'text': missing in an oasst message": 1, "parent_missing": 1}

    split = tmp_path / "split.jsonl"
    split.write_text("".join(json.dumps(r) + "\n" for r in [rows[0], rows[3] | {"text": "x"}, rows[1]]))
    with pytest.raises(InputError, match="split.jsonl:3: field 'message_tree_id'.*together"):
        list(load_source(f"oasst:{split}").stream())


def test_oasst_reads_one_tree_at_a_time():
    """The first tree is handed on before the rest of the file is read."""
    def rows():
        yield _message("a", "t1", None, "prompter", "Hi"), "f", 1
        yield _message("b", "t1", "a", "assistant", "Hello"), "f", 2
        yield _message("c", "t2", None, "prompter", "Next"), "f", 3
        raise AssertionError("read past the second tree's first message before the first tree was used")

    first = next(_trees(rows(), SourceData("oasst:f", "messages", lambda s: iter(()))))
    assert [m["message_id"] for m, _, _ in first] == ["a", "b"]


def test_a_registered_source_is_read_by_its_name(tmp_path, scanner, classifier):
    def tickets(spec: str, arg: str, on_error: str) -> SourceData:
        def reader(src: SourceData):
            for i in range(int(arg)):
                src.became("ticket")
                yield RawRecord({"prompt_id": f"t{i}", "user_id": f"user{i % 3}", "source": "api",
                                 "text": f"Ticket {i}: the export button does nothing when I press it twice."}, "tickets", i + 1)
        return SourceData(spec, "tickets", reader, license="cc-by-4.0", on_error=on_error)

    register("tickets", tickets)
    report = build(BuildSettings(sources=["tickets:12"], out=str(tmp_path / "out"), allow_empty=True), classifier=classifier, scanner=scanner,
                   progress=False)
    assert report["sources"][0]["read"] == 12 and report["sources"][0]["became"] == {"ticket": 12}
    with pytest.raises(InputError, match="tickets:"):
        load_source("nosuch:x")


def test_a_missing_local_path_is_named_before_any_hub_lookup(tmp_path):
    for spec in (f"oasst:{tmp_path / 'none.jsonl'}", "hh-rlhf:./nowhere"):
        with pytest.raises(InputError, match="file not found"):
            load_source(spec)
