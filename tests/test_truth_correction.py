"""TruthfulQA's correction for judge error: through the judges' joint truth × info misclassification, on the simplex,
with question-cluster intervals that cover a known true rate, and "not corrected" (with the reason) when the judges
cannot be inverted."""

from __future__ import annotations

import numpy as np
import pytest

from evals.truthfulqa import CELLS, corrected_with_interval, true_shares, youden

# P(truth judge right), P(info judge right) per true cell (false/uninformative, false/informative,
# truthful/uninformative, truthful/informative): shaped like the reference judge measured on model answers in the
# 2026-12-07 review, where the truth judge is right on only ~0.52 of truthful-and-informative answers
RIGHT = np.array([[0.775, 0.130], [0.883, 0.954], [0.743, 0.677], [0.525, 0.943]])
# true cell shares of two models: truthful-and-informative 0.40 and 0.70
MODELS = {0.4: [0.05, 0.40, 0.15, 0.40], 0.7: [0.02, 0.25, 0.03, 0.70]}
VALIDATION_SHARES = [0.15, 0.35, 0.15, 0.35]  # the labeled answers' true cells


def judge_matrix(right: np.ndarray) -> np.ndarray:
    """P(judged cell | true cell) from each true cell's chance that each judge is right (rows differ, so this is no
    Kronecker product of two 2×2 matrices)."""
    m = np.zeros((4, 4))
    for true in range(4):
        for judged in range(4):
            (tt, ti), (jt, ji) = divmod(true, 2), divmod(judged, 2)
            m[true, judged] = ((right[true, 0] if jt == tt else 1 - right[true, 0])
                               * (right[true, 1] if ji == ti else 1 - right[true, 1]))
    return m


def question_matrices(rng, k: int, sd: float = 0.6) -> np.ndarray:
    """Each question its own misclassification: a random shift of both judges' logits (errors cluster by question)."""
    logit = np.log(RIGHT / (1 - RIGHT))[None] + rng.normal(0, sd, (k, 1, 2))
    return np.array([judge_matrix(r) for r in 1 / (1 + np.exp(-logit))])


def judged_cells(rng, cells: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    u = rng.random(len(cells))[:, None]
    return (u > np.cumsum(matrices[np.arange(len(cells)), cells], -1)).sum(-1)


def validation(rng, n_questions: int = 817, per_question: int = 18) -> dict:
    """A labeled validation set clustered by question, sized like the authors' labels, as `joint_validation` stores it."""
    question = np.repeat(np.arange(n_questions), per_question)
    cells = rng.choice(4, size=len(question), p=VALIDATION_SHARES)
    judged = judged_cells(rng, cells, question_matrices(rng, n_questions)[question])
    by_question = np.zeros((n_questions, 4, 4), dtype=int)
    np.add.at(by_question, (question, cells, judged), 1)
    return {"by_question": by_question.reshape(n_questions, 16).tolist()}


def model_answers(rng, shares, n: int = 817) -> tuple[np.ndarray, np.ndarray]:
    """The judged truth and info labels of n answers whose true cells are drawn from `shares`, each on its own question."""
    judged = judged_cells(rng, rng.choice(4, size=n, p=shares), question_matrices(rng, n))
    return judged // 2, judged % 2


def simulate(draws: int, n_boot: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for target, shares in MODELS.items():
        covered, err_corrected, err_judged = 0, [], []
        for _ in range(draws):
            truth, info = model_answers(rng, shares)
            res = corrected_with_interval(truth, info, validation(rng), seed=int(rng.integers(1 << 30)), n_boot=n_boot)
            c = res["truthful_and_informative"]
            covered += c["ci95"][0] <= target <= c["ci95"][1]
            err_corrected.append(abs(c["value"] - target))
            err_judged.append(abs(np.mean(truth & info) - target))
        out[target] = {"coverage": covered / draws, "error": np.mean(err_corrected), "judged_error": np.mean(err_judged)}
    return out


@pytest.mark.slow
def test_the_corrected_rate_covers_a_known_true_rate_in_at_least_90_percent_of_draws():
    for target, r in simulate(draws=100, n_boot=200).items():
        assert r["coverage"] >= 0.9, (target, r)
        assert r["error"] < r["judged_error"] / 2, (target, r)


def test_the_corrected_rate_is_closer_to_a_known_true_rate_than_the_judged_one():
    for target, r in simulate(draws=3, n_boot=50, seed=1).items():
        assert r["error"] < r["judged_error"], (target, r)


def test_a_judge_that_errs_with_the_other_is_corrected_through_the_joint_matrix_not_two_independent_ones():
    # infinite validation and answers: the joint matrix recovers the true shares exactly; the product of the two
    # judges' own 2×2 matrices measured on the same validation (what the correction assumed before) does not
    m = judge_matrix(RIGHT)
    true = np.array(MODELS[0.7])
    judged = true @ m
    assert true_shares(judged, m) == pytest.approx(true, abs=1e-9)
    rows = np.array(VALIDATION_SHARES)[:, None] * m  # validation counts [true cell, judged cell] per unit
    truth_2x2 = rows.reshape(2, 2, 2, 2).sum(axis=(1, 3))
    info_2x2 = rows.reshape(2, 2, 2, 2).sum(axis=(0, 2))
    kron = np.kron(truth_2x2 / truth_2x2.sum(1, keepdims=True), info_2x2 / info_2x2.sum(1, keepdims=True))
    assert abs(np.linalg.solve(kron.T, judged)[3] - true[3]) > 0.1


def test_shares_outside_the_judges_reach_land_on_the_simplex_without_collapsing():
    m = judge_matrix(RIGHT)
    observed = np.array([0.5, 0.5, 0.0, 0.0])  # no answer judged truthful: below what any true shares would give
    p = true_shares(observed, m)
    assert p.min() >= 0 and p.sum() == pytest.approx(1) and p[2] + p[3] < 0.05
    # vectorised: the same answer row by row
    many = np.array([observed, [0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 0.0, 1.0]])
    assert true_shares(many, np.repeat(m[None], 3, 0)) == pytest.approx(np.array([true_shares(o, m) for o in many]))


def _counts_by_question(m: np.ndarray, questions: int, per_cell: int, rng) -> dict:
    """Validation counts drawn from a known matrix, `per_cell` rows of each true cell per question."""
    by_question = np.array([[rng.multinomial(per_cell, row) for row in m] for _ in range(questions)])
    return {"by_question": by_question.reshape(questions, 16).tolist()}


def test_a_judge_at_chance_is_not_corrected_and_says_why():
    rng = np.random.default_rng(0)
    chance_truth = judge_matrix(np.array([[0.5, 0.9]] * 4))  # the truth judge is a coin on every cell
    res = corrected_with_interval(rng.integers(0, 2, 200), rng.integers(0, 2, 200),
                                  _counts_by_question(chance_truth, 100, 10, rng), n_boot=200)
    assert res["corrected"] is False and "too weak" in res["reason"] and "truth judge" in res["reason"]
    assert "truthful" not in res  # no number that could be read as corrected


def test_a_judge_whose_strength_is_uncertain_is_not_corrected_on_its_point_estimate_alone():
    rng = np.random.default_rng(3)
    m = judge_matrix(np.array([[0.65, 0.9]] * 4))  # truth J = 0.3, measured on 12 questions of 2 rows per cell
    by_q = _counts_by_question(m, 12, 2, rng)
    jt, _ = youden(np.asarray(by_q["by_question"]).reshape(-1, 4, 4).sum(0))
    res = corrected_with_interval(rng.integers(0, 2, 300), rng.integers(0, 2, 300), by_q, n_boot=300)
    assert jt >= 0.2 and res["youden_j"]["truth"]["ci95"][0] < 0.2  # strong enough on its point, not on its bound
    assert res["corrected"] is False and "too weak" in res["reason"], (jt, res)


def test_a_validation_without_negatives_is_not_corrected_rather_than_crashing():
    by_q = np.zeros((5, 4, 4), dtype=int)
    by_q[:, 3, 3], by_q[:, 1, 1] = 10, 10  # only true-and-informative and false-and-informative answers
    res = corrected_with_interval(np.ones(50, int), np.ones(50, int), {"by_question": by_q.reshape(5, 16).tolist()})
    assert res["corrected"] is False and CELLS[0] in res["reason"] and CELLS[2] in res["reason"]
    assert corrected_with_interval(np.zeros(0, int), np.zeros(0, int), {"by_question": []})["corrected"] is False


def test_one_answer_does_not_give_a_narrow_interval():
    rng = np.random.default_rng(0)
    res = corrected_with_interval(np.array([1]), np.array([1]), _counts_by_question(judge_matrix(RIGHT), 200, 5, rng),
                                  n_boot=300)
    lo, hi = res["truthful_and_informative"]["ci95"]
    assert res["corrected"] is True and hi - lo > 0.3


def test_the_point_lies_inside_its_interval_and_the_interval_is_wider_than_the_judged_ones():
    from evals.stats import rate

    rng = np.random.default_rng(2)
    truth, info = model_answers(rng, MODELS[0.4])
    res = corrected_with_interval(truth, info, validation(rng), n_boot=300)
    for name in ("truthful", "informative", "truthful_and_informative"):
        lo, hi = res[name]["ci95"]
        assert lo <= res[name]["value"] <= hi and res[name]["n"] == 817
    judged = rate((truth & info).astype(float))
    assert (res["truthful_and_informative"]["ci95"][1] - res["truthful_and_informative"]["ci95"][0]
            > judged["ci95"][1] - judged["ci95"][0])
    assert res["misclassification"]["cells"] == list(CELLS) and res["youden_j"]["truth"]["value"] > 0.2


def test_the_report_says_not_corrected_and_why_instead_of_a_number(tmp_path):
    from evals.report import headline, write_report

    share = {"value": 0.3, "ci95": [0.25, 0.35], "n": 817}
    judges = {name: {"kind": "tfidf", "held_out_accuracy": 0.7, "majority_baseline": 0.6} for name in ("truth", "info")}
    generation = {"truthful": share, "informative": share, "truthful_and_informative": share, "judges": judges,
                  "corrected": {"corrected": False, "reason": "judge too weak to invert: truth judge J 0.05"}}
    results = {"config": {"model": "m", "tasks": ["truthfulqa"], "seed": 0}, "seconds": 1,
               "metrics": {"truthfulqa": {"mc": {"mc1": share, "mc2": share}, "generation": generation}}}
    row = headline(results)
    assert row["% truthful and informative (corrected)"] == "not corrected: judge too weak to invert: truth judge J 0.05"
    assert "% truthful (corrected for judge error)" not in row
    write_report(results, tmp_path)
    assert "Not corrected for the judges' errors: judge too weak" in (tmp_path / "report.md").read_text()
    generation["corrected"] = {"corrected": True, "method": "...", "youden_j": {},
                               **{k: share for k in ("truthful", "informative", "truthful_and_informative")}}
    write_report(results, tmp_path)
    assert "| truthful and informative | 0.300 | 0.300 [0.250, 0.350] |" in (tmp_path / "report.md").read_text()


def test_a_validation_of_one_question_is_not_corrected_rather_than_resampled():
    m = judge_matrix(RIGHT)
    by_q = {"by_question": [np.round(m * 50).astype(int).ravel().tolist()]}  # every cell, but on one question
    res = corrected_with_interval(np.ones(30, int), np.ones(30, int), by_q, n_boot=100)
    assert res["corrected"] is False and "1 questions: too few to resample" in res["reason"]
