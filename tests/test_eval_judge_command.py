"""`instructkit eval judge`: answers generated anywhere get the project's TruthfulQA labels or toxicity scores row
by row, with the rates (judged, and corrected or "not corrected" and why) beside the output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_truth_judge import tq60  # noqa: F401  (the 60-question excerpt laid out as a data folder)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _questions(data: Path) -> list[str]:
    import csv

    with open(data / "truthfulqa" / "TruthfulQA_v0_original.csv", encoding="utf-8-sig") as fh:
        return [r["Question"] for r in csv.DictReader(fh)]


@pytest.mark.slow
def test_truthfulqa_answers_from_elsewhere_get_labels_and_rates(tq60, tmp_path, capsys):
    from instructkit.cli import main

    qs = _questions(tq60)[:20]
    rows = [{"id": i, "question": q, "answer": "I have no comment." if i % 3 == 0 else f"It depends on answer {i}."}
            for i, q in enumerate(qs)]
    inp, out = _write_jsonl(tmp_path / "answers.jsonl", rows), tmp_path / "judged.jsonl"
    assert main(["eval", "judge", "--task", "truthfulqa", "--in", str(inp), "--out", str(out), "--data-dir", str(tq60),
                 "--judge", "tfidf", "--quiet"]) == 0
    judged = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in judged] == list(range(20))
    assert all(isinstance(r["truthful"], bool) and isinstance(r["informative"], bool) for r in judged)
    summary = json.loads(Path(f"{out}.summary.json").read_text())
    assert json.loads(capsys.readouterr().out) == summary
    assert summary["n"] == 20 and summary["judge"] == "tfidf"
    assert summary["judged"]["truthful"]["value"] == pytest.approx(sum(r["truthful"] for r in judged) / 20)
    # the excerpt's TF-IDF judges never call an answer false and uninformative: their joint matrix cannot be inverted
    assert summary["corrected"]["corrected"] is False and summary["corrected"]["reason"]
    assert "by_question" not in summary["judges"]["joint"] and summary["judges"]["truth"]["excluded"]["reference_copies"]


def test_an_unknown_question_is_a_one_line_error_naming_the_file_row_and_field(tq60, tmp_path, capsys):
    from instructkit.cli import main

    q = _questions(tq60)[0]
    inp = _write_jsonl(tmp_path / "answers.jsonl", [{"question": q, "answer": "No."},
                                                    {"question": "What is the airspeed of a swallow?", "answer": "11 m/s"}])
    assert main(["eval", "judge", "--task", "truthfulqa", "--in", str(inp), "--out", str(tmp_path / "o.jsonl"),
                 "--data-dir", str(tq60), "--judge", "tfidf"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{inp}:2: field 'question'" in err and "questions of" in err
    assert not (tmp_path / "o.jsonl").exists()


def test_empty_continuations_are_counted_apart_and_not_scored(tmp_path, capsys):
    from instructkit.cli import main

    rows = [{"continuation": ""}, {"continuation": "  "}, {"continuation": "Have a nice day, friend."},
            {"continuation": "You are a fucking idiot."}]
    inp, out = _write_jsonl(tmp_path / "c.jsonl", rows), tmp_path / "scored.jsonl"
    assert main(["eval", "judge", "--task", "toxicity", "--in", str(inp), "--out", str(out),
                 "--toxicity-scorer", "profanity-check"]) == 0
    scored = [json.loads(line)["toxicity"] for line in out.read_text().splitlines()]
    assert scored[:2] == [None, None] and scored[2] < 0.5 <= scored[3]
    summary = json.loads(capsys.readouterr().out)
    assert (summary["n"], summary["empty"], summary["scored"]) == (4, 2, 2)
    assert summary["toxic_share"]["value"] == 0.5 and summary["toxic_share"]["ci95"][0] < 0.5 < summary["toxic_share"]["ci95"][1]
    assert json.loads(Path(f"{out}.summary.json").read_text()) == summary
