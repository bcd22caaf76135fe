"""TruthfulQA's reference judge: trained on the authors' labels (a 60-question excerpt here), better than the TF-IDF
judge on questions it never saw, resumable, and used by `instructkit eval` by default once trained."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

EXCERPTS = Path(__file__).resolve().parent / "data" / "public"


@pytest.fixture()
def tq60(tmp_path) -> Path:
    folder = tmp_path / "data" / "truthfulqa"
    folder.mkdir(parents=True)
    for src, dst in (("truthfulqa_60_questions.csv", "TruthfulQA_v0_original.csv"),
                     ("truthfulqa_judge_truth_60.jsonl", "finetune_truth_v0.jsonl"),
                     ("truthfulqa_judge_info_60.jsonl", "finetune_info_v0.jsonl")):
        shutil.copyfile(EXCERPTS / src, folder / dst)
    return folder.parent


@pytest.mark.slow
def test_reference_judge_beats_tfidf_resumes_and_is_the_default_once_trained(tq60, tmp_path, monkeypatch):
    from evals import truth_judge
    from evals.truthfulqa import judge_labels, load_judges, read_finetune, train_judge
    from taxonomy.features import SentenceEmbedder

    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path / "cache"))
    assert load_judges(tq60, tmp_path / "tfidf")[1]["truth"]["kind"] == "tfidf"  # nothing trained yet: the fallback

    info = truth_judge.train(tq60, progress=False)
    for name in ("truth", "info"):
        tfidf = train_judge(tq60 / "truthfulqa" / truth_judge.FILES[name])[1]
        assert info[name]["rows"] == tfidf["rows"] == 1677 and info[name]["questions"] == 60
        assert info[name]["held_out_accuracy"] > tfidf["held_out_accuracy"] + 0.02
    assert info["truth"]["held_out_accuracy"] > info["truth"]["majority_baseline"] + 0.2

    # an interrupted run resumes: with a fold, a judge's summary and the final vectors gone, nothing is embedded again
    folder = truth_judge.judge_folder(tq60)
    for f in ("truth.json", "truth_fold3.skops", "vectors.npz"):
        (folder / f).unlink()
    monkeypatch.setattr(SentenceEmbedder, "transform", lambda self, texts: pytest.fail("embedded again"))
    assert truth_judge.train(tq60, progress=False)["truth"] == info["truth"]
    monkeypatch.undo()
    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path / "cache"))

    judges, found = load_judges(tq60, tmp_path / "tfidf")
    assert found["truth"]["kind"] == "reference"
    # the loaded judges give each training row the held-out prediction its accuracy was measured with
    q, a, y = read_finetune(tq60 / "truthfulqa" / "finetune_truth_v0.jsonl")
    assert np.mean(judge_labels(judges["truth"], q, a) == np.array(y)) == pytest.approx(info["truth"]["held_out_accuracy"])
    # data the judges were not trained on (another question file) falls back to TF-IDF
    with open(tq60 / "truthfulqa" / "TruthfulQA_v0_original.csv", "a", encoding="utf-8") as fh:
        fh.write("Adversarial,Misc,Is this a new question?,Yes,Yes,No,none\n")
    assert load_judges(tq60, tmp_path / "tfidf")[1]["truth"]["kind"] == "tfidf"


def test_references_keep_the_best_answer_among_the_true_ones(tmp_path):
    from evals.truth_judge import references

    csv = tmp_path / "q.csv"
    csv.write_text("\ufeffType,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source\n"
                   "A,B,Is the sky green?,No,No; The sky is blue,Yes; It is green,x\n", encoding="utf-8")
    r = references(csv)["Is the sky green?"]
    assert (r.true, r.false, r.best) == (("No", "The sky is blue"), ("Yes", "It is green"), "No")
