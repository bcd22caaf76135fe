"""The review round for users' own labelers: `taxonomy review` writes the prompts the classifier is least sure of and
a sample of each use case; labelers fill `label`; `taxonomy train --labels` takes the file back and the model carries
its accuracy on those labels into the cards of builds made with it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from instructkit.cli import main
from taxonomy.categories import CATEGORIES
from taxonomy.model import LABELED, UseCaseClassifier, read_labels
from taxonomy.review import select


def _prompts(tmp_path: Path, n: int = 300) -> tuple[Path, dict[str, str]]:
    texts, labels = read_labels(LABELED)
    truth = dict(list(zip(texts, labels))[:n])
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in truth), encoding="utf-8")
    return path, truth


def test_the_least_sure_come_first_then_an_even_sample_of_each_use_case():
    proba = np.array([[0.9, 0.1, 0.0], [0.5, 0.45, 0.05], [0.2, 0.7, 0.1], [0.34, 0.33, 0.33], [0.1, 0.1, 0.8],
                      [0.8, 0.1, 0.1], [0.05, 0.9, 0.05], [0.6, 0.3, 0.1]])
    texts = [f"p{i}" for i in range(len(proba))]
    rows = select(texts, proba, ["A", "B", "C"], unsure=2, sample=3, seed=0)
    assert [r["text"] for r in rows[:2]] == ["p3", "p1"] and {r["why"] for r in rows[:2]} == {"least sure"}
    assert sorted(r["predicted"] for r in rows[2:]) == ["A", "B", "C"]  # one of each before a second of any
    assert all(r["why"] == f"sample of {r['predicted']}" for r in rows[2:]) and all(r["label"] == "" for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)
    assert rows == select(texts, proba, ["A", "B", "C"], unsure=2, sample=3, seed=0)  # seeded


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_review_file_goes_out_to_labelers_and_comes_back_as_training_labels(tmp_path, capsys, suffix):
    prompts, truth = _prompts(tmp_path)
    out = tmp_path / f"review{suffix}"
    assert main(["taxonomy", "review", "--in", str(prompts), "--out", str(out), "--unsure", "60", "--sample", "60"]) == 0
    assert "wrote 120 of 300 distinct prompts" in capsys.readouterr().out
    guide = (tmp_path / "review.guide.md").read_text()
    assert all(f"**{c}**" in guide for c in CATEGORIES)
    if suffix == ".csv":
        with open(out, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    else:
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 120 and all(r["text"] in truth for r in rows)
    for r in rows[:-7]:  # the labelers label all but the last seven, some in lower case
        r["label"] = truth[r["text"]].lower() if len(r["text"]) % 3 == 0 else truth[r["text"]]
    if suffix == ".csv":
        with open(out, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = tmp_path / "mine.skops"
    assert main(["taxonomy", "train", "--labels", str(out), "--out", str(model)]) == 0
    printed = capsys.readouterr().out
    assert "trained on 113 rows" in printed and f"skipped 7 rows of {out} with no label yet" in printed
    ev = UseCaseClassifier.load(model).evaluation
    assert ev["rows"] == 113 and ev["skipped_unlabeled"] == 7 and ev["labels"] == out.name
    assert 0 < ev["accuracy_ci"][0] <= ev["accuracy"] <= ev["accuracy_ci"][1] <= 1
    assert f"on your 113 labels: accuracy {ev['accuracy']}" in printed


def test_the_card_of_a_build_with_the_reviewed_model_reports_its_accuracy_on_those_labels(tmp_path):
    from builders.writers.card import _accuracy_line

    ev = {"labels": "review.jsonl", "rows": 412, "skipped_unlabeled": 3, "accuracy": 0.8325, "accuracy_ci": [0.7941, 0.8657],
          "macro_f1": 0.71, "method": "5-fold cross-validation on these labels"}
    assert _accuracy_line(ev) == ("On 412 prompts your labelers labeled (`review.jsonl`) it gives the same use case on "
                                  "83.2% [79.4%, 86.6%] (macro-F1 0.71; 5-fold cross-validation on these labels).")
    assert _accuracy_line(None) == "See `taxonomy/` for its accuracy."
    from collections import Counter
    from types import SimpleNamespace

    from builders.writers.card import _use_case_text
    from builders.writers.report import _use_cases

    reviewed = SimpleNamespace(cv_pred=None, evaluation=ev)  # what a build's report and card get from the model
    assert _accuracy_line(ev) in _use_case_text(_use_cases(["Chat", "Open QA"], Counter(), 2, reviewed))


def test_review_refuses_what_it_cannot_write_with_one_line(tmp_path, capsys):
    prompts, _ = _prompts(tmp_path, 20)
    assert main(["taxonomy", "review", "--in", str(prompts), "--out", str(tmp_path / "r.txt")]) == 2
    assert "--out: writes .jsonl or .csv files, not .txt" in capsys.readouterr().err
    assert main(["taxonomy", "review", "--in", str(prompts), "--out", str(tmp_path / "r.jsonl"), "--unsure", "0", "--sample", "0"]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "Write a poem.", "label": "Poetry"}\n{"text": "Hi", "label": ""}\n')
    capsys.readouterr()
    assert main(["taxonomy", "train", "--labels", str(bad), "--out", str(tmp_path / "m.skops")]) == 2
    assert "bad.jsonl:1: field 'label': unknown label 'Poetry'" in capsys.readouterr().err


@pytest.mark.slow
def test_reviewed_labels_train_beside_the_shipped_ones_and_are_measured_with_them(tmp_path, capsys, monkeypatch):
    import taxonomy.model

    texts, labels = read_labels(LABELED)
    base = (texts[1::4], labels[1::4])  # stands in for the shipped set (the real one takes minutes to train on here)
    monkeypatch.setattr(taxonomy.model, "default_training_set", lambda data_dir: base)
    mine = [{"text": t, "label": c} for c in CATEGORIES for t in [t for t, y in zip(texts[::4], labels[::4]) if y == c][:3]]
    review = tmp_path / "review.jsonl"
    review.write_text("".join(json.dumps(r) + "\n" for r in mine))
    model = tmp_path / "both.skops"
    assert main(["taxonomy", "train", "--default", "--labels", str(review), "--out", str(model)]) == 0
    assert f"trained on {len(base[0]) + len(mine)} rows" in capsys.readouterr().out
    ev = UseCaseClassifier.load(model).evaluation
    assert ev["rows"] == 30 and ev["method"] == ("3-fold cross-validation on these labels, each fold's model also trained "
                                                 "on the shipped labels")
