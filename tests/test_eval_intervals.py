"""Eval numbers that say what they rest on: slice intervals that know their limits, an LC win-rate that says when
it extrapolates or is not fitted, the judge named wherever a win-rate is printed, seeded `--limit` subsets shared by
TruthfulQA's two tasks, data fingerprinted, and paired comparisons across runs."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_jsonl


class Fixed:
    """A generator that answers every prompt with its text plus a fixed suffix."""

    truncated = 0

    def __init__(self, text):
        self.text = text

    def generate(self, prompts, decoding, desc=""):
        return [[self.text + str(p)] for p in prompts]


class LongerWins:
    name = "local_llm"

    def outcomes(self, prompts, model_answers, base_answers):
        return [1.0 if len(m) > len(b) else 0.0 if len(m) < len(b) else 0.5 for m, b in zip(model_answers, base_answers)]


def _results(winrate: dict, **metrics) -> dict:
    return {"config": {"model": "m", "baseline": "b", "tasks": ["winrate"], "limit": None, "seed": 0}, "seconds": 1.0,
            "metrics": {"winrate": winrate, **metrics}}


# ------------------------------------------------------------------ 1. slice intervals

def test_a_slice_of_one_user_or_few_prompts_or_one_outcome_gets_wilson_not_a_zero_width_bootstrap():
    from evals.stats import win_rate

    one_user = win_rate([1.0] * 12, groups=["u1"] * 12)  # the cluster bootstrap gave [1, 1] every time
    assert one_user["small_sample"] and "users" in one_user["small_reason"] and one_user["ci95"][0] < 0.3
    assert (one_user["prompts"], one_user["users"]) == (12, 1)
    twelve = win_rate([1.0] * 11 + [0.0])  # n = 12 went to the percentile bootstrap
    assert twelve["small_sample"] and twelve["ci95"][1] - twelve["ci95"][0] > 0.2
    all_won = win_rate([1.0] * 40)  # every outcome equal: a bootstrap says [1, 1]
    assert all_won["small_sample"] and all_won["ci95"][0] == pytest.approx(0.912, abs=0.002)
    fine = win_rate([1.0, 0.0] * 20, groups=[f"u{i}" for i in range(40)])
    assert "small_sample" not in fine and (fine["prompts"], fine["users"]) == (40, 40) and fine["interval"] == "bootstrap over users"
    assert win_rate([1.0, 0.0] * 20)["users"] is None  # prompts that name no user


def test_the_iid_bootstrap_resamples_in_chunks_so_memory_does_not_grow_with_n_times_resamples(monkeypatch):
    import evals.stats as stats

    monkeypatch.setattr(stats, "_BOOT_CELLS", 1 << 16)
    values = np.random.default_rng(0).integers(0, 2, 20_000).astype(float)
    tracemalloc.start()
    lo, hi = stats.bootstrap_ci(values, n_boot=500)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8e6  # all at once: 500 x 20,000 indices and values = 160 MB
    assert lo < values.mean() < hi and hi - lo == pytest.approx(2 * 1.96 * 0.5 / np.sqrt(20_000), rel=0.15)


def test_a_missing_use_case_is_a_slice_of_its_own_not_a_crash():
    from evals.generate import Decoding
    from evals.winrate import NO_CATEGORY, evaluate_winrate

    res = evaluate_winrate(Fixed("longer "), Fixed("b "), LongerWins(), [f"q{i}" for i in range(4)], [None, "Chat", None, "Chat"], Decoding())
    assert set(res["by_category"]) == {NO_CATEGORY, "Chat"} and res["by_category"][NO_CATEGORY]["n"] == 2


def test_the_slice_table_shows_prompts_and_users_says_use_cases_are_predicted_and_warns_of_many_comparisons(tmp_path):
    from evals.report import write_report
    from evals.stats import length_controlled, win_rate

    o = [1.0, 0.0, 1.0] * 12
    users = [f"u{i % 3}" for i in range(36)]
    w = {"judge": "local_llm", "judge_label": "local LLM", "categories": "predicted by the taxonomy classifier", "judged": 36,
         "invalid_judgements": 0, "overall": win_rate(o, groups=users), "by_category": {"Chat": win_rate(o, groups=users)},
         "length_controlled": length_controlled(o, [100] * 36, [100] * 36, n_boot=20), "mean_length": {"model": 1, "baseline": 1},
         "truncated_answers": {}}
    write_report(_results(w), tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| use case | prompts / users |" in md and "| Chat | 36 / 3 |" in md
    assert "predicted by the taxonomy classifier" in md and "about one may exclude its true value by chance" in md


# ------------------------------------------------------------------ 2. LC win-rate

def test_the_lc_win_rate_reports_length_overlap_and_is_marked_extrapolated_when_lengths_barely_overlap(tmp_path):
    from evals.report import headline, write_report
    from evals.stats import length_controlled, win_rate

    rng = np.random.default_rng(0)
    base = rng.integers(50, 150, 60)
    model = base * rng.uniform(1.5, 3.0, 60)  # the policy is longer on every prompt
    o = rng.choice([0.0, 1.0], 60, p=[0.3, 0.7])
    lc = length_controlled(o, model, base, n_boot=30)
    assert lc["near_equal_length_share"] == 0.0 and lc["extrapolated"] and lc["log_length_ratio_5_95"][0] > 0.3
    even = length_controlled(o, base, base, n_boot=30)
    assert even["near_equal_length_share"] == 1.0 and not even["extrapolated"]
    res = _results({"judge": "local_llm", "judge_label": "local LLM", "judged": 60, "invalid_judgements": 0,
                    "overall": win_rate(o), "by_category": {"Chat": win_rate(o)}, "length_controlled": lc,
                    "mean_length": {"model": 1, "baseline": 1}, "truncated_answers": {}})
    assert headline(res)["length-controlled win-rate (judge: local LLM)"].endswith("(extrapolated)")
    write_report(res, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "0% of pairs are of about equal length" in md and "It is extrapolated" in md


def test_bootstrap_resamples_whose_lc_fit_fails_are_counted_and_taken_as_their_raw_win_rate():
    from evals.stats import length_controlled

    o = [1.0] * 9 + [0.0]  # most resamples hold no loss: no fit
    lc = length_controlled(o, np.arange(10) + 50, [60] * 10, n_boot=50)
    assert lc["resamples"] == 50 and 10 < lc["failed_resamples"] < 50
    assert lc["ci95"][1] == 1.0  # a failed resample is all wins: its raw rate, not dropped


def test_an_lc_win_rate_that_cannot_be_fitted_says_not_fitted_never_the_raw_rate_or_nan(tmp_path):
    from evals.report import headline, write_report
    from evals.stats import length_controlled, win_rate

    o = [0.5] * 30  # all ties
    lc = length_controlled(o, [10] * 30, [20] * 30)
    assert lc["value"] is None and not lc["fitted"] and lc["raw"] == 0.5
    res = _results({"judge": "local_llm", "judge_label": "local LLM", "judged": 30, "invalid_judgements": 0,
                    "overall": win_rate(o), "by_category": {"Chat": win_rate(o)}, "length_controlled": lc,
                    "mean_length": {"model": 1, "baseline": 1}, "truncated_answers": {}})
    assert headline(res)["length-controlled win-rate (judge: local LLM)"] == "not fitted"
    write_report(res, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "nan" not in md and "is not fitted" in md


# ------------------------------------------------------------------ 3. the judge travels with the win-rate

def test_a_reward_model_judged_win_rate_carries_its_note_in_the_headline_the_cli_and_compare(tmp_path, capsys):
    from evals.report import headline
    from evals.stats import length_controlled, win_rate
    from evals.winrate import RM_JUDGE_NOTE
    from instructkit.cli import main

    o = [1.0, 0.0, 1.0] * 12
    res = _results({"judge": "reward_model", "judge_label": "reward model", "judge_note": RM_JUDGE_NOTE, "judged": 36,
                    "invalid_judgements": 0, "overall": win_rate(o), "by_category": {"Chat": win_rate(o)},
                    "length_controlled": length_controlled(o, [1] * 36, [1] * 36, n_boot=10),
                    "mean_length": {"model": 1, "baseline": 1}, "truncated_answers": {}})
    row = headline(res)
    assert "win-rate vs baseline (judge: reward model)" in row and row["win-rate judge note"] == RM_JUDGE_NOTE
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(res))
    assert main(["eval", "compare", str(run)]) == 0
    out = capsys.readouterr().out
    assert "(judge: reward model)" in out and RM_JUDGE_NOTE in out


def test_a_given_judge_is_used_even_when_a_reward_model_is_given_too(monkeypatch, tmp_path):
    import builders.checkpoints
    import evals.run as run
    import evals.winrate as winrate
    from evals.config import EvalConfig

    used = []

    class NoModel:
        weights = "w"

        def __init__(self, *a, **k):
            pass

    monkeypatch.setattr(builders.checkpoints, "resolve_model", lambda m, progress=True: m)
    monkeypatch.setattr(run, "Generator", NoModel)
    monkeypatch.setattr(winrate, "make_judge", lambda spec, trust=False: used.append(spec) or LongerWins())
    monkeypatch.setattr(winrate, "load_prompts", lambda *a, **k: (["p"], ["Chat"], None, "given"))
    monkeypatch.setattr(winrate, "evaluate_winrate", lambda *a, **k: {})
    monkeypatch.setattr("evals.report.write_report", lambda results, out: None)
    run.run_eval(EvalConfig(model="m", baseline="b", reward_model="rm", judge="llm:judge", tasks=["winrate"], out=str(tmp_path)))
    assert used == ["llm:judge"]


# ------------------------------------------------------------------ 4. reproducible runs

def test_limit_draws_a_seeded_random_subset_of_the_win_rate_prompts(tmp_path):
    from evals.winrate import load_prompts

    src = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"prompt {i}", "category": "Chat"} for i in range(50)])
    a, cats, users, where = load_prompts(str(src), 10, seed=0)
    assert a != [f"prompt {i}" for i in range(10)] and len(set(a)) == 10 and where == "from the prompts file's category column"
    assert load_prompts(str(src), 10, seed=0)[0] == a and load_prompts(str(src), 10, seed=1)[0] != a


@pytest.mark.slow
def test_truthfulqa_mc_and_generation_score_the_same_seeded_questions_and_mc1_has_a_wilson_interval(shared, tmp_path, monkeypatch):
    import lm_eval

    from evals.truthfulqa import questions, run_mc

    seen = {}

    def fake_evaluate(*, tasks, samples, **kw):
        seen["samples"] = samples
        return {"results": {t: {"acc,none": 1.0, "acc_stderr,none": 0.0} for t in tasks},
                "n-samples": {t: {"original": 817, "effective": len(samples[t]) if samples else 817} for t in tasks}}

    monkeypatch.setattr(lm_eval, "simple_evaluate", fake_evaluate)
    drawn = questions(shared, 5, seed=3)
    assert drawn != questions(shared, 5, seed=0) and drawn != questions(shared, None)[:5]
    res = run_mc("unused", shared, tmp_path, limit=5, seed=3)
    mc = json.loads((shared / "truthfulqa" / "mc_task_v0.json").read_text())
    idx = seen["samples"]["instructkit_truthfulqa_mc1"]
    assert sorted(mc[i]["question"] for i in idx) == sorted(drawn) and seen["samples"]["instructkit_truthfulqa_mc2"] == idx
    assert res["n"] == 5 and res["mc1"]["ci95"][0] == pytest.approx(0.566, abs=0.002)  # Wald with stderr 0: [1, 1]
    everything = run_mc("unused", shared, tmp_path, limit=5000, seed=3)
    assert everything["n"] == len(questions(shared, None))  # not 5000


def test_truthfulqa_online_is_pinned_to_the_v0_questions_at_a_commit():
    from evals.config import TRUTHFULQA_COMMIT, EvalConfig
    from evals.run import TRUTHFULQA_FILES

    assert TRUTHFULQA_FILES["TruthfulQA_v0_original.csv"] == "data/v0/TruthfulQA.csv"
    assert EvalConfig().truthfulqa_revision == TRUTHFULQA_COMMIT and len(TRUTHFULQA_COMMIT) == 40


def test_results_record_the_sha256_of_every_data_file_used(shared, tmp_path):
    from evals.config import EvalConfig
    from evals.run import _data_files

    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    cfg = EvalConfig(model="m", prompts=str(prompts), data_dir=str(shared))
    data = _data_files(cfg, shared, shared)
    csv = shared / "truthfulqa" / "TruthfulQA_v0_original.csv"
    assert data["truthfulqa"]["files"]["TruthfulQA_v0_original.csv"] == hashlib.sha256(csv.read_bytes()).hexdigest()
    assert set(data["truthfulqa"]["files"]) >= {"finetune_truth_v0.jsonl", "finetune_info_v0.jsonl", "mc_task_v0.json"}
    assert data["winrate_prompts"]["files"] == {str(prompts): hashlib.sha256(prompts.read_bytes()).hexdigest()}
    assert set(data["toxicity_prompts"]["files"]) == {"toxic.jsonl", "nontoxic.jsonl"}


def test_the_profanity_scorer_is_fingerprinted_by_its_model_files():
    pytest.importorskip("profanity_check")
    from evals.run import scorer_fingerprint
    from evals.toxicity import ProfanityCheckScorer

    fp = scorer_fingerprint(ProfanityCheckScorer())
    assert fp["scorer"] == "alt-profanity-check" and len(fp["files"]) == 2 and all(len(h) == 64 for h in fp["files"].values())


# ------------------------------------------------------------------ 6. eval compare

def _run_folder(root: Path, name: str, outcomes: dict[str, float]) -> Path:
    from evals.stats import length_controlled, win_rate

    folder = root / name
    folder.mkdir()
    o = list(outcomes.values())
    res = _results({"judge": "local_llm", "judge_label": "local LLM", "judged": len(o), "invalid_judgements": 0,
                    "overall": win_rate(o), "by_category": {"Chat": win_rate(o)},
                    "length_controlled": length_controlled(o, [1] * len(o), [1] * len(o), n_boot=10),
                    "mean_length": {"model": 1, "baseline": 1}, "truncated_answers": {}})
    (folder / "results.json").write_text(json.dumps(res))
    write_jsonl(folder / "winrate_samples.jsonl", [{"prompt_id": k, "user": None, "prompt": k, "category": "Chat",
                                                   "model": "", "baseline": "", "outcome": v} for k, v in outcomes.items()])
    return folder


def test_compare_gives_the_paired_difference_of_two_runs_on_their_shared_prompts(tmp_path):
    from evals.report import compare, paired_differences

    rng = np.random.default_rng(0)
    a = {f"p{i}": float(x) for i, x in enumerate(rng.integers(0, 2, 80))}
    b = {k: (1.0 if i % 4 == 0 else v) for i, (k, v) in enumerate(a.items())}  # B wins a few more of the same prompts
    b["only_b"] = 1.0
    ra, rb = _run_folder(tmp_path, "A", a), _run_folder(tmp_path, "B", b)
    [(metric, run, diff)] = paired_differences([str(ra), str(rb)])
    expected = np.mean([b[k] - a[k] for k in a])
    assert metric == "win-rate vs baseline (judge: local LLM)" and diff["n"] == 80 and diff["value"] == pytest.approx(expected)
    assert 0 < diff["ci95"][0] < expected < diff["ci95"][1]  # paired: B is better although the marginal intervals overlap
    assert "Paired differences against A" in compare([str(ra), str(rb)])


def test_compare_on_a_missing_folder_or_malformed_results_is_one_line_with_status_2(tmp_path, capsys):
    from instructkit.cli import main

    assert main(["eval", "compare", str(tmp_path / "nowhere")]) == 2
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.json").write_text("{not json")
    assert main(["eval", "compare", str(bad)]) == 2
    (bad / "results.json").write_text(json.dumps({"config": {}}))
    assert main(["eval", "compare", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 3 and "results.json" in err
    assert main(["eval", "compare"]) == 2
    assert "usage: instructkit eval compare DIR" in capsys.readouterr().err


def test_the_report_says_which_answer_order_left_verdicts_unreadable_and_what_ties_would_give(tmp_path):
    from evals.report import write_report
    from evals.stats import length_controlled, win_rate

    o = [1.0, 0.0, 1.0, 1.0] * 10
    res = _results({"judge": "openai", "judge_label": "openai", "judged": 40, "invalid_judgements": 6,
                    "invalid_by_order": {"model_shown_first": 6, "baseline_shown_first": 0},
                    "overall_invalid_as_ties": win_rate(o + [0.5] * 6), "overall": win_rate(o),
                    "by_category": {"Chat": win_rate(o)}, "length_controlled": length_controlled(o, [5] * 40, [5] * 40, n_boot=20),
                    "mean_length": {"model": 5, "baseline": 5}, "truncated_answers": {}})
    write_report(res, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert ("6 of 46 pairs got no readable verdict (asked twice) and are left out (unreadable with the model's answer "
            "shown first: 6; with the baseline's first: 0). Counted as ties instead, the win-rate would be 0.717") in md
