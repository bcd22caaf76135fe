"""The eval suite: win-rates and intervals on known judgments, position-bias cancelling, TruthfulQA MC scoring,
toxicity metrics, the generation cache resuming, and a full offline run on tiny checkpoints against ../shared/data."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from evals.stats import length_controlled, win_rate
from tests.conftest import FULL_DATA, needs_full_data
from evals.toxicity import toxicity_metrics
from evals.winrate import OpenAIJudge, _PairwiseJudge


def reply_json(handler: BaseHTTPRequestHandler, obj: dict) -> None:
    data = json.dumps(obj).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def test_win_rate_and_interval_on_known_outcomes():
    res = win_rate([1] * 60 + [0] * 30 + [0.5] * 10)
    assert res["value"] == pytest.approx(0.65)
    assert (res["wins"], res["losses"], res["ties"], res["n"]) == (60, 30, 10, 100)
    lo, hi = res["ci95"]
    assert lo < 0.65 < hi and 0.12 < hi - lo < 0.24  # about ±1.96·sqrt(.65·.35/100)


def test_length_controlled_win_rate_removes_a_pure_length_effect():
    rng = np.random.default_rng(0)
    len_b = rng.integers(50, 150, 400)
    len_m = len_b * rng.choice([0.5, 2.0], 400)
    outcomes = (len_m > len_b).astype(float)  # the judge only rewards length
    lc = length_controlled(outcomes, len_m, len_b)
    assert abs(lc["value"] - 0.5) < 0.1 and lc["length_coef"] > 0


class AlwaysA(_PairwiseJudge):
    def prefer(self, prompt, a, b):
        return "A"


class Longer(_PairwiseJudge):
    def prefer(self, prompt, a, b):
        return "A" if len(a) > len(b) else "B"


def test_asking_in_both_orders_cancels_position_bias():
    assert AlwaysA().outcomes(["p"] * 4, ["x", "yy", "z", "w"], ["aa", "b", "c", "d"]) == [0.5] * 4
    assert Longer().outcomes(["p", "p"], ["long answer", "x"], ["short", "longer one"]) == [1.0, 0.0]


def test_openai_compatible_judge_through_a_local_endpoint(monkeypatch):
    seen = []

    class Endpoint(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, self.headers.get("Authorization"), body["model"]))
            reply_json(self, {"choices": [{"message": {"role": "assistant", "content": "A"}}]})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    try:
        judge = OpenAIJudge(f"http://127.0.0.1:{server.server_address[1]}/v1", "judge-model")
        assert judge.outcomes(["Say hi"], ["hi"], ["hello"]) == [0.5]  # "A" both times: position bias, a tie
    finally:
        server.shutdown()
    assert seen == [("/v1/chat/completions", "Bearer sk-test", "judge-model")] * 2


def test_truthfulqa_mc_data_and_scoring_by_hand(shared, tmp_path):
    from lm_eval.tasks.truthfulqa.utils import process_results_mc2

    from evals.truthfulqa import mc_to_hub_layout

    path = mc_to_hub_layout(shared / "truthfulqa" / "mc_task_v0.json", tmp_path / "mc.jsonl")
    first = json.loads(path.open().readline())
    assert first["question"].startswith("What is the smallest country in the world")
    assert first["mc1_targets"]["labels"][0] == 1 and sum(first["mc1_targets"]["labels"]) == 1
    assert first["mc1_targets"]["choices"][0].startswith("Nauru")
    # MC2: normalised probability mass on the true answers. Hand-checked: probs .5, .3, .2 with the first two true
    doc = {"mc2_targets": {"labels": [1, 1, 0]}}
    ll = [(np.log(0.5), False), (np.log(0.3), False), (np.log(0.2), False)]
    assert process_results_mc2(doc, ll)["acc"] == pytest.approx(0.8)


def test_toxicity_metrics_on_constructed_scores():
    scores = np.array([[0.1, 0.7, 0.2], [0.3, 0.2, 0.1], [0.9, 0.95, 0.4], [0.0, 0.49, 0.5]])
    m = toxicity_metrics(scores)
    assert m["expected_max_toxicity"]["value"] == pytest.approx((0.7 + 0.3 + 0.95 + 0.5) / 4)
    assert m["toxicity_probability"]["value"] == pytest.approx(3 / 4)  # 0.5 counts as toxic
    assert (m["prompts"], m["k"]) == (4, 3)


def test_profanity_scorer_agrees_with_perspective(shared):
    from evals.toxicity import make_scorer, validate_scorer

    v = validate_scorer(make_scorer("profanity-check"), shared)
    assert v["texts"] > (4000 if FULL_DATA else 500) and v["roc_auc_vs_perspective"] > 0.9 and v["pearson"] > 0.75


@pytest.mark.slow
@needs_full_data
def test_the_default_toxicity_scorer_agrees_with_people_at_least_as_well_as_the_profanity_model(shared):
    """The bar's part (c), measured afresh: on every human-rated set the default's agreement minus
    alt-profanity-check's, on the same bootstrap draws (the stereotypes resampled by question), is at least 0. The
    intervals of those differences all include 0 (docs/evals_validation.md): this holds the point estimates."""
    from evals.toxicity import make_scorer
    from evals.toxicity_head import against_people, human_probes

    probes = human_probes(shared)
    scorers = {"minilm": make_scorer(), "alt-profanity-check": make_scorer("profanity-check")}
    res = against_people({n: {p: s.score(probe.texts) for p, probe in probes.items()} for n, s in scorers.items()}, probes)
    assert set(res["minilm"]) == {"oasst1 labelers' toxicity", "HH-RLHF harmless pairs", "TruthfulQA stereotypes"}
    assert res["minilm"]["TruthfulQA stereotypes"]["resampled"] == "24 questions"
    for probe, v in res["minilm"].items():
        d = v["minus alt-profanity-check"]
        assert d["value"] >= 0 and d["ci95"][0] <= d["value"] <= d["ci95"][1], probe


@pytest.mark.slow
def test_train_toxicity_writes_a_head_measured_on_rows_it_never_saw(tmp_path):
    """`instructkit eval train-toxicity` on the committed excerpts: a head, its held-out agreement with Perspective,
    the benign short replies and the human probes beside the profanity model's (paired), and `minilm:HEAD` scoring
    with it."""
    import shutil

    from evals.toxicity import make_scorer
    from instructkit.cli import main
    from tests.conftest import EXCERPTS, LAYOUT

    data = tmp_path / "data"
    for target, excerpt in LAYOUT.items():
        if target.split("/")[0] in ("realtoxicityprompts_decodingtrust", "oasst1_en_validation", "hh_rlhf", "truthfulqa"):
            (data / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(EXCERPTS / excerpt, data / target)
    assert main(["eval", "train-toxicity", "--data-dir", str(data), "--out", str(tmp_path / "head"), "--quiet"]) == 0
    head = tmp_path / "head" / "toxicity-minilm.skops"
    info = json.loads(head.with_suffix(".json").read_text())
    # 300 RTP rows: their prompts and continuations that carry a Perspective score; the short replies beside them
    assert info["rtp_texts"] == 598 and info["short_replies"] > 150 and info["rtp"]["roc_auc_vs_perspective"] > 0.85
    assert info["benign"]["replies"] >= 60 and "minus alt-profanity-check" in info["people"]["HH-RLHF harmless pairs"]
    profanity = json.loads((tmp_path / "head" / "toxicity-profanity-check.json").read_text())
    assert set(info["people"]) == set(profanity["people"]) >= {"HH-RLHF harmless pairs"}
    scores = make_scorer(f"minilm:{head}").score(["have a lovely day", "you stupid idiot, shut up"])
    assert scores[0] < 0.5 < scores[1]


@pytest.fixture(scope="module")
def tiny_ckpts(tmp_path_factory):
    from trainers.tiny import save_tiny

    root = tmp_path_factory.mktemp("ckpts")
    return {"model": save_tiny(root / "model", seed=1), "baseline": save_tiny(root / "base", seed=2),
            "rm": save_tiny(root / "rm", seed=3, kind="reward")}


def test_generation_cache_resumes_an_interrupted_run(tiny_ckpts, tmp_path):
    from evals.generate import Decoding, Generator

    prompts = [f"Write about the number {i}." for i in range(10)]
    d = Decoding(max_new_tokens=8, temperature=0.7, seed=0)
    g = Generator(str(tiny_ckpts["model"]), cache_dir=tmp_path, batch_size=4, progress=False)

    def stop_after_first(calls):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        g.generate(prompts, d, on_batch=stop_after_first)
    g2 = Generator(str(tiny_ckpts["model"]), cache_dir=tmp_path, batch_size=4, progress=False)
    out = g2.generate(prompts, d)
    assert g2.calls == 6  # the first batch of 4 came from the cache
    g3 = Generator(str(tiny_ckpts["model"]), cache_dir=tmp_path, batch_size=4, progress=False)
    assert g3.generate(prompts, d) == out and g3.calls == 0


def test_the_generation_cache_is_not_reused_when_the_weights_at_a_path_change(tmp_path):
    from evals.generate import Decoding, Generator
    from trainers.tiny import save_tiny

    ckpt = save_tiny(tmp_path / "ckpt", seed=1)
    prompts = [f"Say {i}." for i in range(3)]
    d = Decoding(max_new_tokens=4, temperature=0.0)
    Generator(str(ckpt), cache_dir=tmp_path / "cache", progress=False).generate(prompts, d)
    again = Generator(str(ckpt), cache_dir=tmp_path / "cache", progress=False)
    again.generate(prompts, d)
    assert again.calls == 0  # same weights: served from the cache
    save_tiny(ckpt, seed=2)  # retrained into the same folder
    retrained = Generator(str(ckpt), cache_dir=tmp_path / "cache", progress=False)
    retrained.generate(prompts, d)
    assert retrained.calls == 3 and retrained.weights != again.weights
    from evals.generate import weights_fingerprint  # a Hub id: the loaded tensors are hashed

    assert weights_fingerprint(retrained.model) == weights_fingerprint(retrained.model) != weights_fingerprint(again.model)


@pytest.mark.slow
def test_full_suite_offline_on_tiny_checkpoints(tiny_ckpts, shared, sample_build, tmp_path):
    from instructkit.cli import main

    data, _ = sample_build
    out = tmp_path / "eval"
    args = ["eval", "--model", str(tiny_ckpts["model"]), "--baseline", str(tiny_ckpts["baseline"]), "--reward-model",
            str(tiny_ckpts["rm"]), "--limit", "6", "--toxicity-k", "2", "--max-new-tokens", "12", "--data-dir", str(shared),
            "--prompts", str(data / "ppo"), "--out", str(out), "--quiet"]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    m = results["metrics"]
    assert m["winrate"]["overall"]["n"] == 6 and set(m["winrate"]["by_category"]) <= set(json.loads(
        (data / "build_report.json").read_text())["use_cases"]["paper_table1"])
    assert 0 <= m["truthfulqa"]["mc"]["mc1"]["value"] <= 1 and m["truthfulqa"]["generation"]["truthful"]["n"] == 6
    assert m["truthfulqa"]["generation"]["judges"]["truth"]["held_out_accuracy"] > 0.6
    assert set(m["toxicity"]["conditions"]) == {"none", "respectful", "toxic"}
    assert results["versions"]["torch"] and results["seeds"]["decoding"] == 0
    assert set(results["data"]["truthfulqa"]["files"]) >= {"TruthfulQA_v0_original.csv", "mc_task_v0.json"}
    assert results["data"]["truthfulqa_judges"] and results["data"]["toxicity_scorer"]["scorer"]
    assert len(results["data"]["model_weights_sha256"]) == 64 and m["truthfulqa"]["mc"]["n"] == 6
    for f in ("report.md", "winrate_by_category.png", "truthfulqa.png", "toxicity.png"):
        assert (out / f).stat().st_size > 0
    assert main(["eval", "compare", str(out), str(out)]) == 0


def test_score_toxicity_command(tmp_path):
    from instructkit.cli import main
    from tests.conftest import write_jsonl

    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "have a lovely day"}, {"text": "you stupid idiot, shut up"}])
    assert main(["score-toxicity", "--in", str(src), "--out", str(tmp_path / "o.jsonl")]) == 0
    rows = [json.loads(line) for line in open(tmp_path / "o.jsonl")]
    assert rows[0]["toxicity"] < 0.5 < rows[1]["toxicity"]


def test_local_llm_judge_and_hf_toxicity_classifier_run_on_tiny_checkpoints(tiny_ckpts):
    from evals.toxicity import make_scorer
    from evals.winrate import make_judge

    judge = make_judge(f"llm:{tiny_ckpts['model']}")
    outcomes = judge.outcomes(["Say hi", "Name a colour"], ["hi", "red"], ["hello there", "blue"])
    assert all(o in (0.0, 0.5, 1.0) for o in outcomes)
    scores = make_scorer(f"hf:{tiny_ckpts['rm']}").score(["fine text", "other text", "third"])
    assert scores.shape == (3,) and ((scores >= 0) & (scores <= 1)).all()


def test_perspective_scorer_through_a_local_endpoint(monkeypatch):
    from evals.toxicity import make_scorer

    class Api(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            value = 0.9 if "idiot" in body["comment"]["text"] else 0.1
            reply_json(self, {"attributeScores": {"TOXICITY": {"summaryScore": {"value": value}}}})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("PERSPECTIVE_API_KEY", "k")
    monkeypatch.setenv("INSTRUCTKIT_PERSPECTIVE_URL", f"http://127.0.0.1:{server.server_address[1]}/analyze")
    try:
        scorer = make_scorer("perspective")
        scorer.wait = 0
        assert scorer.score(["you idiot", "nice day"]).tolist() == [0.9, 0.1]
    finally:
        server.shutdown()


@pytest.mark.slow
def test_truthfulqa_mc_equals_a_second_implementation_without_lm_eval(shared, tmp_path):
    """MC1/MC2 as `instructkit eval` computes them (lm-eval's tasks on the local data) equal the TruthfulQA authors'
    definitions computed directly from the model's log-probabilities (evals/mc_check.py)."""
    from evals.mc_check import independent_mc
    from evals.truthfulqa import run_mc
    from trainers.tiny import save_tiny

    model = save_tiny(tmp_path / "tiny")
    ours = run_mc(str(model), shared, tmp_path / "work", limit=8)
    direct = independent_mc(str(model), shared, limit=8)
    assert ours["mc1"]["value"] == pytest.approx(direct["mc1"], abs=1e-9)
    assert ours["mc2"]["value"] == pytest.approx(direct["mc2"], abs=1e-4)
