"""Use-case shares of API prompts against a known truth: the correction for the classifier's errors, where it helps
(mixtures whose errors match the calibration set's) and where it does not (the embedded sample, held-out real
prompts), and the build showing the classifier's raw shares because of the latter."""

from __future__ import annotations

import json
from collections import Counter

import polars as pl
import pytest

from taxonomy import distribution
from taxonomy.categories import CATEGORIES
from taxonomy.distribution import against, corrected_shares, measure
from tests.conftest import needs_full_data


def test_the_estimate_undoes_a_known_confusion():
    classes = ["A", "B"]
    # the classifier calls half of the true A items B, and B items always B
    cv_true = ["A"] * 400 + ["B"] * 400
    cv_pred = ["A"] * 200 + ["B"] * 200 + ["B"] * 400
    true = ["A"] * 600 + ["B"] * 400
    pred = [("A" if i % 2 else "B") if t == "A" else "B" for i, t in enumerate(true)]
    res = corrected_shares(pred, cv_true, cv_pred, classes=classes, n_boot=200)
    assert res["A"]["raw_share"] < 0.35  # naive counting sees about 30% A
    assert res["A"]["share"] == pytest.approx(0.6, abs=0.05)
    lo, hi = res["A"]["ci95"]
    assert lo <= 0.6 <= hi and sum(v["share"] for v in res.values()) == pytest.approx(1.0, abs=1e-3)


def test_a_confusion_matrix_with_two_identical_rows_still_gives_shares_on_the_simplex():
    """A and B are predicted alike (a singular matrix): their split is not identified, so the intervals span it, and
    the shares stay non-negative and sum to one."""
    classes = ["A", "B", "C"]
    cv_true = ["A"] * 100 + ["B"] * 100 + ["C"] * 100
    cv_pred = (["A"] * 50 + ["B"] * 50) * 2 + ["C"] * 100
    pred = ["A"] * 300 + ["B"] * 300 + ["C"] * 400
    res = corrected_shares(pred, cv_true, cv_pred, classes=classes, n_boot=200)
    assert all(v["share"] >= 0 for v in res.values()) and sum(v["share"] for v in res.values()) == pytest.approx(1.0, abs=1e-3)
    assert res["C"]["share"] == pytest.approx(0.4, abs=0.01)
    assert res["A"]["ci95"][1] - res["A"]["ci95"][0] > 0.3


def test_a_use_case_with_few_calibration_examples_gets_a_wide_interval():
    """Two calibration examples, both right, do not show that the classifier never misses C: its interval is much
    wider than that of the same share with 400 examples behind it (resampling the pairs alone kept it narrow)."""
    classes = ["A", "B", "C"]
    pred = ["A"] * 450 + ["B"] * 450 + ["C"] * 100

    def width(n_c: int) -> float:
        cv = ["A"] * 400 + ["B"] * 400 + ["C"] * n_c
        lo, hi = corrected_shares(pred, cv, cv, classes=classes, n_boot=300)["C"]["ci95"]
        return hi - lo

    assert width(2) > 2 * width(400)


def test_the_sample_generator_knows_each_prompts_use_case():
    """`make_sample.build` reproduces the shipped sample files and, asked, tells each prompt's use case."""
    from builders.sample.make_sample import HERE, build

    truth: dict[str, str] = {}
    rows = build(truth=truth)
    for name, made in rows.items():
        assert [json.loads(line) for line in (HERE / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()] == made
    assert set(truth) == {r["prompt_id"] for r in rows["prompts"]} and set(truth.values()) == set(CATEGORIES)
    api = Counter(truth[r["prompt_id"]] for r in rows["prompts"] if r["source"] == "api")
    assert api["Open QA"] / sum(api.values()) == pytest.approx(0.124, abs=0.03)  # drawn with Table 1's weights


def test_on_the_sample_the_correction_moves_away_from_the_truth_so_the_build_shows_raw_shares(sample_build, classifier):
    """The decision the build carries (`distribution.SHOWN`) is the measured one: on the sample's API prompts the
    classifier's raw shares are within 0.02 of the generator's truth in total variation and the correction is
    further off, so the report has no corrected shares, and its note and the card say why."""
    from builders.sample.make_sample import build

    out, report = sample_build
    truth: dict[str, str] = {}
    build(truth=truth)
    api = pl.read_parquet(out / "ppo" / "data" / "*.parquet").filter(pl.col("source") == "api")
    got = against(classifier.shares(api["category"].to_list()), [truth[p] for p in api["prompt_id"]])
    assert got["tv_raw"] < 0.02 and got["tv_corrected"] > got["tv_raw"]
    assert distribution.SHOWN is False
    uc = report["use_cases"]
    assert "api_prompts_adjusted" not in uc and uc["adjusted_note"] == distribution.NOTE
    card = (out / "sft" / "README.md").read_text(encoding="utf-8")
    assert "error-corrected" not in card and distribution.NOTE in " ".join(card.split())


@pytest.mark.slow
def test_on_shifted_mixtures_whose_errors_match_the_calibration_the_correction_helps_and_its_intervals_cover(classifier):
    """Mixtures with Dirichlet-shifted shares taken from one half of the shipped classifier's held-out pairs,
    corrected with the other half: closer to the truth than raw counting on average, and the 95% intervals
    cover each true share in at least 90% of the draws (averaged over use cases)."""
    res = measure(classifier.cv_true, classifier.cv_pred, draws=100, n_boot=200)
    assert res["tv_corrected"] < res["tv_raw"] and res["closer"] > 0.75
    assert res["coverage"] >= 0.90


@needs_full_data
def test_on_held_out_real_prompts_the_correction_moves_toward_the_gold_shares(shared, classifier):
    """Real prompts like the calibration pairs (whose real share grew with the second round of labels): on every
    hand-labeled held-out set together (never trained on) the corrected shares are closer to the gold labels' than
    the raw ones, and the intervals hold most true shares. The sample's templated prompts are where it fails, which
    is why the build still shows raw shares (docs/taxonomy.md)."""
    from taxonomy.heldout import HELDOUT_SETS, load_heldout

    texts, labels = [], []
    for name in HELDOUT_SETS:
        t, lab = load_heldout(shared, name)
        texts, labels = texts + t, labels + lab
    got = against(classifier.shares(classifier.predict(texts)[0]), labels)
    assert got["prompts"] == 1963 and got["tv_corrected"] < got["tv_raw"]
    assert int(got["intervals_holding_the_truth"].split("/")[0]) >= 8


def test_the_report_carries_corrected_shares_only_for_a_correction_that_passed(monkeypatch, classifier):
    """`SHOWN` decides: off (as measured), the report has the raw shares and the note; on, it also has the
    corrected shares with their intervals. A labeler (no calibration pairs) gets neither."""
    from builders.writers.report import _use_cases

    cats = ["Generation"] * 60 + ["Open QA"] * 30 + ["Chat"] * 10
    off = _use_cases(cats, Counter(cats), len(cats), classifier)
    assert "api_prompts_adjusted" not in off and off["adjusted_note"] == distribution.NOTE
    monkeypatch.setattr(distribution, "SHOWN", True)
    on = _use_cases(cats, Counter(cats), len(cats), classifier)["api_prompts_adjusted"]
    assert set(on) == set(CATEGORIES) and all(v["ci95"][0] <= v["share"] <= v["ci95"][1] for v in on.values())
    labeler = type("Labeler", (), {"cv_pred": None, "shares": lambda self, predicted: None})()
    assert "adjusted_note" not in _use_cases(cats, Counter(cats), len(cats), labeler)


def test_a_use_case_the_calibration_pairs_lack_gets_only_its_own_predictions():
    """A classifier shown three use cases (a labeler's distilled model, say) is not credited with shares of the
    other seven: they stay at their own (zero) predictions, and the three sum to one."""
    cv = ["Chat"] * 30 + ["Open QA"] * 30 + ["Classification"] * 30
    pred = ["Chat"] * 40 + ["Open QA"] * 40 + ["Classification"] * 20
    res = corrected_shares(pred, cv, cv, n_boot=200)
    assert all(res[c]["share"] == 0 and res[c]["ci95"] == [0.0, 0.0] for c in CATEGORIES if c not in set(cv))
    assert res["Chat"]["share"] == pytest.approx(0.4, abs=0.01)
