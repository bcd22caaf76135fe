"""The evals compute what they report: pure nucleus sampling that stops at the end of a turn, toxicity by prompt
toxicity, sigmoid scores for multi-label classifiers, judges that never saw the question they score, unreadable
verdicts left out, and intervals that resample users and flag tiny slices."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from tests.conftest import FULL_DATA
from tests.test_evals import reply_json


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from trainers.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny_eval"), seed=4)


def test_a_checkpoints_generation_config_does_not_reach_the_sampler(tiny_model, tmp_path):
    """A checkpoint whose generation_config.json says top_k=1 (greedy in effect) must still be sampled: four samples
    of one prompt differ. transformers would otherwise fill our config's gaps from the checkpoint's file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evals.generate import Decoding, Generator

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    model.generation_config.do_sample, model.generation_config.top_k = True, 1
    model.generation_config.repetition_penalty = 5.0
    model.save_pretrained(tmp_path / "ckpt")
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(tmp_path / "ckpt")
    gen = Generator(str(tmp_path / "ckpt"), progress=False)
    samples = gen.generate(["Tell me a story."], Decoding(max_new_tokens=12, temperature=1.0, top_p=1.0, seed=0), n=4)[0]
    assert len(set(samples)) > 1, samples


def test_sampling_config_is_pure_nucleus_whatever_the_checkpoint_says(tiny_model):
    from transformers import AutoModelForCausalLM

    from evals.generate import checkpoint_defaults_off, sampling_config

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    model.generation_config.top_k, model.generation_config.min_p = 3, 0.4
    model.generation_config.repetition_penalty, model.generation_config.no_repeat_ngram_size = 2.0, 3
    config = sampling_config(max_new_tokens=5, temperature=0.7, top_p=0.9, stop_ids=[2], pad_id=0)
    with checkpoint_defaults_off(model):
        used, _ = model._prepare_generation_config(config)
    assert (used.top_k, used.top_p, used.temperature, used.repetition_penalty, used.no_repeat_ngram_size) == (0, 0.9, 0.7, 1.0, 0)
    assert used.min_p is None and used.do_sample
    assert model.generation_config.top_k == 3  # the model's own config is back afterwards


def test_end_of_turn_tokens_come_from_the_chat_template(tiny_model):
    """A chat model ends its turn with its template's end token, which need not be the tokenizer's EOS."""
    from transformers import AutoTokenizer

    from evals.generate import cut_at_stop, stop_token_ids

    tok = AutoTokenizer.from_pretrained(tiny_model)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    tok.eos_token = "<pad>"  # e.g. a base model's EOS, while the chat template ends turns with <|im_end|>
    ids = stop_token_ids(tok)
    assert end in ids and tok.convert_tokens_to_ids("<pad>") in ids
    assert cut_at_stop([5, 6, end, 9, 9], ids) == ([5, 6], True)
    assert cut_at_stop([5, 6, 7], ids) == ([5, 6, 7], False)


def test_toxicity_is_reported_apart_for_toxic_and_non_toxic_prompts():
    from evals.generate import Decoding
    from evals.toxicity import CONDITIONS, pick_prompts, run_toxicity

    rows = ([{"prompt": {"text": f"toxic {i}", "toxicity": 0.9}, "challenging": False} for i in range(6)]
            + [{"prompt": {"text": f"calm {i}", "toxicity": 0.1}, "challenging": True} for i in range(6)])
    prompts, groups = pick_prompts(rows, 4, seed=0)
    # stratified on the prompt's own toxicity, not on `challenging`
    assert groups.count("toxic") == 2 and groups.count("nontoxic") == 2

    class Echo:
        def generate(self, texts, decoding, n=1, chat=True, desc=""):
            return [[t] * n for t in texts]

    class Scorer:
        name = "test"

        def score(self, texts):
            return np.array([1.0 if "toxic" in t else 0.0 for t in texts])

    res = run_toxicity(Echo(), Scorer(), prompts, 2, Decoding(), conditions=("none",), groups=groups)["conditions"]["none"]
    assert res["toxic"]["toxicity_probability"]["value"] == 1.0 and res["nontoxic"]["toxicity_probability"]["value"] == 0.0
    assert res["all"]["toxicity_probability"]["value"] == 0.5
    assert "maximally biased and offensive language" in CONDITIONS["toxic"]  # the paper's wording
    from evals.report import _group_name, plotted_groups

    tx = run_toxicity(Echo(), Scorer(), prompts, 2, Decoding(), conditions=("none",), groups=groups)
    assert plotted_groups(tx) == ["toxic", "nontoxic"]  # the plot shows the halves, not the pooled mix
    assert _group_name("all", tx["conditions"]["none"]) == "all prompts (pooled: 2 toxic + 2 non-toxic)"
    assert plotted_groups(run_toxicity(Echo(), Scorer(), prompts, 2, Decoding(), conditions=("none",))) == ["all"]


def test_a_multi_label_toxicity_classifier_is_read_with_a_sigmoid(tmp_path):
    """toxic-bert style: six independent yes/no labels; a softmax across them would understate every one."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from evals.toxicity import HFClassifierScorer
    from trainers.tiny import make_tokenizer, sample_texts

    labels = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
    tok = make_tokenizer(sample_texts(300))
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        num_labels=6, id2label=dict(enumerate(labels)), label2id={v: k for k, v in enumerate(labels)},
                        problem_type="multi_label_classification", pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(tmp_path / "clf")
    tok.save_pretrained(tmp_path / "clf")
    scorer = HFClassifierScorer(str(tmp_path / "clf"))
    texts = ["a fine day", "another text"]
    enc = scorer.tok(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = scorer.model(**enc).logits
    assert scorer.score(texts) == pytest.approx(torch.sigmoid(logits[:, 0]).numpy(), abs=1e-5)


def test_each_answer_is_judged_by_a_judge_that_never_saw_its_question():
    from evals.truthfulqa import judge_labels, question_fold

    class FoldJudge:
        def __init__(self, f):
            self.f = f

        def predict(self, texts):
            return np.full(len(texts), self.f)

    qs = [f"Question number {i}?" for i in range(40)]
    labels = judge_labels([FoldJudge(f) for f in range(5)], qs, ["a"] * 40)
    assert labels.tolist() == [question_fold(q) for q in qs]
    assert question_fold("What is the capital of France?") == question_fold(" What is the capital of France? ")


def test_unreadable_judge_replies_are_asked_again_then_left_out(monkeypatch):
    from evals.generate import Decoding
    from evals.winrate import OpenAIJudge, evaluate_winrate, parse_verdict

    assert [parse_verdict(r) for r in ("A", "**B**", "Response B.", "(A)", "", "A or B", "Neither", None)] == \
        ["A", "B", "B", "A", None, None, None, None]
    replies = iter(["**B**", "A", "", "", "B", "A"])  # pair 1: B then A (baseline wins twice); pair 2: unreadable twice

    class Endpoint(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            reply_json(self, {"choices": [{"message": {"role": "assistant", "content": next(replies)}}]})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        judge = OpenAIJudge(f"http://127.0.0.1:{server.server_address[1]}/v1", "judge")

        class Fixed:
            truncated = 0

            def __init__(self, text):
                self.text = text

            def generate(self, prompts, decoding, desc=""):
                return [[self.text] for _ in prompts]

        res = evaluate_winrate(Fixed("m"), Fixed("b"), judge, ["p1", "p2"], ["Chat", "Chat"], Decoding())
    finally:
        server.shutdown()
    assert (res["judged"], res["invalid_judgements"], res["overall"]["value"]) == (1, 1, 0.0)
    # pair 2 was unreadable with the model's answer first only; counted as a tie it would move the rate to 0.25
    assert res["invalid_by_order"] == {"model_shown_first": 1, "baseline_shown_first": 0}
    assert res["overall_invalid_as_ties"]["value"] == 0.25


def test_a_local_judge_reads_verdicts_only_from_distinct_single_tokens():
    from builders.errors import InputError
    from evals.winrate import verdict_token_ids
    from trainers.tiny import make_tokenizer

    tok = make_tokenizer(["A B A B the answer is A", "B is better than A"], vocab_size=300)
    ids = verdict_token_ids(tok)
    assert ids["A"] and ids["B"] and not set(ids["A"]) & set(ids["B"])

    class SharedFirstToken:  # a tokenizer that spells both letters with the same leading piece
        def encode(self, text, add_special_tokens=False):
            return [7, ord(text.strip())]

    with pytest.raises(InputError, match="does not spell \"A\" and \"B\" as distinct single tokens"):
        verdict_token_ids(SharedFirstToken(), "judge-model")


def test_tiny_slices_are_flagged_with_a_wilson_interval_not_a_zero_width_one():
    from evals.stats import win_rate

    one = win_rate([1.0])
    assert one["small_sample"] and one["ci95"][0] < 0.5 and one["ci95"][1] == 1.0
    assert "small_sample" not in win_rate([1.0, 0.0] * 20)


def test_intervals_resample_users_when_a_users_prompts_move_together():
    from evals.stats import length_controlled, win_rate

    outcomes = [1.0] * 50 + [0.0] * 50
    users = [f"u{i // 10}" for i in range(100)]  # 10 users, each all wins or all losses
    iid, clustered = win_rate(outcomes, seed=0), win_rate(outcomes, seed=0, groups=users)
    assert clustered["ci95"][1] - clustered["ci95"][0] > 2 * (iid["ci95"][1] - iid["ci95"][0])
    lengths = np.random.default_rng(1).integers(50, 150, size=(2, 100))  # lengths unrelated to the outcomes
    lc = length_controlled(outcomes, lengths[0], lengths[1], groups=users, n_boot=100)
    assert lc["ci95"][0] < lc["value"] < lc["ci95"][1]


def test_truthfulqa_data_comes_from_the_repositorys_real_layout_and_is_checked_before_any_task(tmp_path, shared):
    from evals.run import TRUTHFULQA_FILES, EvalConfig, _need_data, check_truthfulqa_file

    assert TRUTHFULQA_FILES == {"finetune_truth_v0.jsonl": "data/finetune_truth.jsonl",
                                "finetune_info_v0.jsonl": "data/finetune_info.jsonl",
                                "TruthfulQA_v0_original.csv": "data/v0/TruthfulQA.csv"}
    if FULL_DATA:  # the whole files, as the repository serves them
        check_truthfulqa_file("TruthfulQA_v0_original.csv", (shared / "truthfulqa" / "TruthfulQA_v0_original.csv").read_bytes())
        check_truthfulqa_file("finetune_truth_v0.jsonl", (shared / "truthfulqa" / "finetune_truth_v0.jsonl").read_bytes())
    with pytest.raises(ValueError, match="817"):
        check_truthfulqa_file("TruthfulQA_v0_original.csv", b"Question\nWhat?\n")
    served = {}

    class Repo(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            served[self.path] = True
            body = b"<html>404: Not Found</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Repo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    import evals.run as run

    try:
        run.TRUTHFULQA_REPO = f"http://127.0.0.1:{server.server_address[1]}/{{revision}}/{{path}}"
        with pytest.raises(RuntimeError, match="does not hold what"):
            _need_data(EvalConfig(model="none", out=str(tmp_path), truthfulqa_revision="abc123"))
    finally:
        server.shutdown()
        run.TRUTHFULQA_REPO = "https://raw.githubusercontent.com/sylinrl/TruthfulQA/{revision}/{path}"
    assert next(iter(served)).startswith("/abc123/")
    assert not (tmp_path / "cache" / "data" / "truthfulqa" / "finetune_truth_v0.jsonl").exists()


def test_a_reward_model_judge_is_reported_with_its_bias(tiny_model, tmp_path):
    from evals.generate import Decoding
    from evals.winrate import RM_JUDGE_NOTE, RewardModelJudge, evaluate_winrate
    from trainers.tiny import save_tiny

    judge = RewardModelJudge(str(save_tiny(tmp_path / "rm", kind="reward", seed=5)))

    class Fixed:
        truncated = 0

        def __init__(self, text):
            self.text = text

        def generate(self, prompts, decoding, desc=""):
            return [[self.text + p] for p in prompts]

    res = evaluate_winrate(Fixed("long answer "), Fixed("b "), judge, [f"q{i}" for i in range(12)], ["Chat"] * 12, Decoding())
    assert res["judge_note"] == RM_JUDGE_NOTE
    assert json.dumps(res)  # serialisable as results.json
