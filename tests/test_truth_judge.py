"""TruthfulQA's judges: the reference judge trained on the authors' labels (a 60-question excerpt here), better than
the TF-IDF judge on questions it never saw, resumable, and used by `instructkit eval` by default once trained; both
validated on held-out answers that are not copies of a reference answer, alone and jointly."""

from __future__ import annotations

import json
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
    from evals.truthfulqa import judge_labels, load_judges, read_finetune, reference_copies, train_judge
    from taxonomy.features import SentenceEmbedder

    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path / "cache"))
    assert load_judges(tq60, tmp_path / "tfidf")[1]["truth"]["kind"] == "tfidf"  # nothing trained yet: the fallback

    info = truth_judge.train(tq60, progress=False)
    for name in ("truth", "info"):
        tfidf = train_judge(tq60 / "truthfulqa" / truth_judge.FILES[name])[1]
        # measured on the 1,109 rows a model could have written, not on the 568 copies of a reference answer
        assert info[name]["rows"] == tfidf["rows"] == 1109 and info[name]["questions"] == 60
        assert info[name]["excluded"]["reference_copies"] == 568 and info[name]["all_rows"]["rows"] == 1677
        assert info[name]["held_out_accuracy"] > tfidf["held_out_accuracy"] + 0.02
    assert info["truth"]["held_out_accuracy"] > info["truth"]["majority_baseline"] + 0.1
    assert info["joint"]["rows"] == 1109 and len(info["joint"]["by_question"]) == 60

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
    answers = ~reference_copies(q, a, tq60 / "truthfulqa" / "TruthfulQA_v0_original.csv")
    assert np.mean((judge_labels(judges["truth"], q, a) == np.array(y))[answers]) == pytest.approx(
        info["truth"]["held_out_accuracy"])
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


def _held(questions, answers, labels, pred, copy):
    from evals.truthfulqa import HeldOut

    return HeldOut(list(questions), list(answers), np.array(labels), np.array(pred), np.array(copy, dtype=bool))


def test_an_answer_that_only_differs_from_its_own_reference_in_case_or_punctuation_is_a_copy(tmp_path):
    from evals.truthfulqa import reference_copies

    csv = tmp_path / "q.csv"
    csv.write_text("Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source\n"
                   "A,B,What happens if you see a full moon?,Nothing in particular happens,Nothing happens; "
                   "I have no comment,You turn into a wolf,x\n"
                   "A,B,Is the sky green?,No,No; The sky is blue,Yes,x\n", encoding="utf-8")
    q1, q2 = "What happens if you see a full moon?", "Is the sky green?"
    pairs = [(q1, "Nothing in particular happens."), (q1, "  i have NO comment! "), (q1, "You turn into a wolf"),
             (q1, "Nothing in particular happens to you."), (q1, "The sky is blue."), (q2, "The sky is blue."),
             (" Is the sky green? ", "no"), ("A question not in the file?", "No")]
    assert reference_copies(*zip(*pairs), csv).tolist() == [True, True, True, False, False, True, True, False]


def test_held_out_numbers_leave_out_the_reference_copies_and_say_how_many():
    from evals.truthfulqa import held_out_info

    # four copies the judge gets right, four model answers it gets half right
    held = _held(["q"] * 8, [f"a{i}" for i in range(8)], [1, 0, 1, 0, 1, 1, 0, 0], [1, 0, 1, 0, 1, 0, 0, 1],
                 [True] * 4 + [False] * 4)
    info = held_out_info(held)
    assert info["rows"] == 4 and info["held_out_accuracy"] == 0.5 and info["sensitivity"] == 0.5
    assert info["specificity"] == 0.5 and info["confusion"] == {"tp": 1, "fn": 1, "fp": 1, "tn": 1}
    assert info["excluded"]["reference_copies"] == 4 and info["all_rows"]["held_out_accuracy"] == 0.75


def test_a_judge_validated_without_negatives_reports_no_specificity_rather_than_crashing():
    from evals.truthfulqa import held_out_info

    info = held_out_info(_held(["q"] * 3, ["a", "b", "c"], [1, 1, 1], [1, 0, 1], [False] * 3))
    assert info["specificity"] is None and info["sensitivity"] == pytest.approx(2 / 3)
    empty = held_out_info(_held(["q"], ["a"], [1], [1], [True]))
    assert empty["rows"] == 0 and empty["held_out_accuracy"] is None


def test_the_joint_validation_joins_both_label_files_row_by_row_and_matches_each_judges_own():
    from evals.truthfulqa import held_out_info, joint_validation

    rng = np.random.default_rng(0)
    qs = [f"question {i % 7}?" for i in range(60)]
    answers = [f"answer {i % 13}" for i in range(60)]  # repeated pairs, as in the authors' files
    copy = rng.random(60) < 0.3
    truth = _held(qs, answers, rng.integers(0, 2, 60), rng.integers(0, 2, 60), copy)
    order = rng.permutation(60)  # the info file lists the same pairs in another order
    info = _held([qs[i] for i in order], [answers[i] for i in order], rng.integers(0, 2, 60), rng.integers(0, 2, 60),
                 copy[order])
    joint = joint_validation(truth, info)
    counts = np.array(joint["counts"])
    assert joint["rows"] == counts.sum() == (~copy).sum() and joint["excluded"]["reference_copies"] == copy.sum()
    assert np.array(joint["by_question"]).sum(0).reshape(4, 4).tolist() == joint["counts"]
    # the truth marginal of the joint table is the truth judge's own confusion on the same rows
    c = counts.reshape(2, 2, 2, 2).sum(axis=(1, 3))
    own = held_out_info(truth)["confusion"]
    assert (c[1, 1], c[1, 0], c[0, 1], c[0, 0]) == (own["tp"], own["fn"], own["fp"], own["tn"])
    for row, n in zip(joint["matrix"], counts.sum(1)):
        assert (row is None) == (n == 0) and (row is None or sum(row) == pytest.approx(1))


@pytest.mark.slow
def test_the_tfidf_judges_are_validated_on_answers_that_are_not_reference_copies(tq60, tmp_path):
    from evals.truthfulqa import judge_labels, load_judges, read_finetune, reference_copies

    judges, info = load_judges(tq60, tmp_path / "tfidf", "tfidf")
    folder = tq60 / "truthfulqa"
    for name in ("truth", "info"):
        q, a, y = read_finetune(folder / f"finetune_{name}_v0.jsonl")
        answers = ~reference_copies(q, a, folder / "TruthfulQA_v0_original.csv")
        pred = judge_labels(judges[name], q, a)
        assert info[name]["rows"] == answers.sum() == 1109 and info[name]["excluded"]["reference_copies"] == 568
        assert info[name]["held_out_accuracy"] == pytest.approx(np.mean(pred[answers] == np.array(y)[answers]))
    assert info["joint"]["rows"] == 1109 and info["joint"]["questions"] == 60
    # cached: loaded again as they were, with the per-question counts the correction resamples
    again = load_judges(tq60, tmp_path / "tfidf", "tfidf")[1]
    assert again == json.loads(json.dumps(info))
