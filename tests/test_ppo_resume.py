"""PPO checkpoints and resumes: a run stopped after N rollout batches and resumed ends where an unbroken run of the
same length ends (policy, value model, optimizer, weight average, data position and random generators all restored).
And the long-run safeguard the paper adds, PPO-ptx: at γ=27.8 the pretraining loss does not rise while reward does."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")

from builders.errors import InputError  # noqa: E402
from trainers import ppo  # noqa: E402
from tests.test_ppo_correctness import PROMPTS, _args, _e_reward, _load  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from trainers.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny_resume"), seed=6)


def _state(out):
    return torch.load(ppo.latest_checkpoint(out), map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_a_run_stopped_and_resumed_ends_where_an_unbroken_run_ends(tiny, tmp_path):
    ptx = [f"Plain text number {i} about the {w}." for i, w in enumerate("sun tree river stone cloud".split() * 10)]
    # 4 rollout batches of 8 over 16 prompts (two epochs of shuffled prompts), a checkpoint every 2; ptx on so its
    # sampler's position matters too
    kw = dict(total_episodes=32, save_steps=2, learning_rate=1e-3, ptx_coef=1.0, ptx_batch_size=4)
    whole = ppo.train(_args(tiny, tmp_path / "whole", **kw), reward_fn=_e_reward, prompts=PROMPTS, ptx_texts=ptx)

    calls = []

    def crashes_in_batch_3(convs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the machine went away")
        return _e_reward(convs)

    out = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="went away"):
        ppo.train(_args(tiny, out, **kw), reward_fn=crashes_in_batch_3, prompts=PROMPTS, ptx_texts=ptx)
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-2"]
    resumed = ppo.train(_args(tiny, out, resume=True, **kw), reward_fn=_e_reward, prompts=PROMPTS, ptx_texts=ptx)

    assert [h["rollout"] for h in resumed["history"]] == [0, 1, 2, 3]
    for a, b in zip(whole["history"], resumed["history"]):
        assert a == pytest.approx(b, abs=1e-6)  # same prompts, scores, KL and losses batch by batch
    for a, b in zip(_load(tmp_path / "whole").parameters(), _load(out).parameters()):
        assert torch.allclose(a, b, atol=1e-6)  # the saved (averaged) policy
    ca, cb = _state(tmp_path / "whole"), _state(out)
    assert ca["next_rollout"] == cb["next_rollout"] == 4
    for key in ("value", "policy"):
        assert all(torch.allclose(ca[key][k], cb[key][k], atol=1e-6) for k in ca[key])
    assert all(torch.allclose(x["exp_avg_sq"], y["exp_avg_sq"], atol=1e-9)
               for x, y in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values()))


def test_resume_without_a_checkpoint_is_an_error_naming_the_flag(tiny, tmp_path):
    with pytest.raises(InputError, match="no checkpoint-N/state.pt"):
        ppo.train(_args(tiny, tmp_path, resume=True), reward_fn=_e_reward, prompts=PROMPTS)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """The tiny model after 60 steps of language modelling on sample text: its loss is 2–3 nats, as a real model's
    is on pretraining text, so PPO has something to make it forget. Returns the folder and the texts."""
    import random

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainers.tiny import sample_texts, save_tiny

    out = tmp_path_factory.mktemp("pretrained")
    base = save_tiny(out / "base", seed=6)
    texts = sample_texts(400)[200:400]
    model, tok = AutoModelForCausalLM.from_pretrained(base), AutoTokenizer.from_pretrained(base)
    opt, rng = torch.optim.AdamW(model.parameters(), lr=3e-3), random.Random(0)
    for _ in range(60):  # the held-out last 20 texts (ppo.train holds out the last tenth) are not trained on
        loss = ppo.pretrain_loss(model, tok, rng.sample(texts[:-20], 16), 64, "cpu")
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(out / "pre")
    tok.save_pretrained(out / "pre")
    return out / "pre", texts


@pytest.mark.slow
def test_the_papers_ptx_term_keeps_the_pretraining_loss_down_while_reward_still_rises(pretrained, tmp_path):
    """A planted reward (the share of `e` in the response) raised by PPO from a model pretrained to 3.2 nats on held-out
    text: with γ=0 that loss rises (3.20 → 3.39 when measured), with the paper's γ=27.8 it does not (→ 3.03) and the
    reward still rises (0.077 → 0.111 over the first and last quarter of 12 rollout batches)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, texts = pretrained
    with torch.no_grad():
        before = float(ppo.pretrain_loss(AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path),
                                         texts[-20:], 64, "cpu"))
    runs = {}
    for gamma in (0.0, 27.8):
        args = _args(path, tmp_path / str(gamma), total_episodes=96, max_new_tokens=8, learning_rate=1e-3, ema_decay=0.0,
                     missing_eos_penalty=0.0, ptx_coef=gamma, ptx_batch_size=8, ptx_max_tokens=64, save_steps=0)
        runs[gamma] = ppo.train(args, reward_fn=_e_reward, prompts=PROMPTS, ptx_texts=texts)
    rise = {g: m["ptx_eval_loss"] - before for g, m in runs.items()}
    assert runs[27.8]["ptx_eval_texts"] == 20
    assert rise[0.0] > 0.1 and rise[27.8] <= 0.0, (before, rise)
    for m in runs.values():
        scores = [h["mean_score"] for h in m["history"]]
        assert sum(scores[-3:]) > sum(scores[:3]) + 0.05, scores  # the reward rose (first vs last 3 of 12 batches)


@pytest.mark.slow
def test_two_processes_resume_to_the_same_weights(tiny, tmp_path):
    """Under torchrun (2 CPU processes): the main process writes the one checkpoint, holding both processes' random
    generators, and each process takes its own back on resume."""
    import json
    import os
    import subprocess
    import sys

    from datasets import Dataset

    from tests.test_ppo_correctness import ROOT

    data = tmp_path / "data"
    data.mkdir()
    Dataset.from_dict({"prompt": PROMPTS}).to_parquet(data / "train-00000-of-00001.parquet")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}

    def run(out, episodes, *extra):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29543", "-m", "trainers.ppo",
               "--policy", str(tiny), "--reward_model", str(tiny), "--dataset", str(data), "--output_dir", str(out),
               "--total_episodes", str(episodes), "--rollout_batch_size", "8", "--mini_batch_size", "4", "--forward_batch_size", "4",
               "--max_new_tokens", "4", "--log_every", "1000", "--save_steps", "1", "--learning_rate", "1e-3", *extra]
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads((out / "metrics.json").read_text())["history"]

    whole = run(tmp_path / "whole", 24)
    run(tmp_path / "half", 16)
    assert len(_state(tmp_path / "half")["rng"]) == 2
    resumed = run(tmp_path / "half", 24, "--resume")
    assert [h["mean_score"] for h in resumed] == pytest.approx([h["mean_score"] for h in whole], abs=1e-6)
    for a, b in zip(_load(tmp_path / "whole").parameters(), _load(tmp_path / "half").parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_resuming_with_another_learning_rate_is_an_error_naming_it(tiny, tmp_path):
    ppo.train(_args(tiny, tmp_path, total_episodes=8, save_steps=1), reward_fn=_e_reward, prompts=PROMPTS)
    with pytest.raises(InputError, match=r"other settings \(learning_rate=1e-05\)"):
        ppo.train(_args(tiny, tmp_path, total_episodes=16, save_steps=1, resume=True, learning_rate=1e-3), reward_fn=_e_reward,
                  prompts=PROMPTS)
