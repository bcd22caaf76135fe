"""Trainers on tiny models made offline: SFT learns, the RM learns a planted preference in both modes, PPO raises
a planted reward with bounded KL, ptx lowers the pretraining loss, and every checkpoint reloads."""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

pytest.importorskip("trl")
from trl import ModelConfig, RewardConfig, SFTConfig  # noqa: E402

from builders.pipeline import build  # noqa: E402
from builders.settings import BuildSettings  # noqa: E402
from tests.conftest import write_jsonl  # noqa: E402
from trainers import ppo, rm, sft  # noqa: E402
from trainers.common import load_tokenizer  # noqa: E402
from trainers.tiny import sample_texts, save_tiny  # noqa: E402

COMMON = dict(report_to=[], save_strategy="no", use_cpu=True, logging_steps=5, max_length=128, seed=0)
WORDS = "sun tree river stone cloud bird lamp door road field".split()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny"), texts=sample_texts(1500) + ["yes " * 20, " ".join(WORDS) * 5])


@pytest.fixture(scope="module")
def planted_data(tmp_path_factory, scanner, classifier):
    """A built dataset with a learnable SFT task and rankings ordered by how often a completion says `yes`."""
    rng = random.Random(0)
    rows = []
    for i in range(240):
        pid = f"p{i}"
        word = WORDS[i % len(WORDS)]
        rows.append({"prompt_id": pid, "user_id": f"user{i % 60}", "source": "labeler", "prompt_type": "plain",
                     "text": f"Say the word {word} three times, request {i}."})
        rows.append({"prompt_id": pid, "labeler_id": "l1", "completion": f"{word} {word} {word}"})
        comps, ranks = [], []
        for k, n_yes in enumerate(rng.sample(range(4), 4)):
            filler = " ".join(rng.choice(WORDS) for _ in range(6))
            comps.append(" ".join(["yes"] * n_yes + [filler]) if n_yes else filler)
            ranks.append(3 - n_yes)
        rows.append({"prompt_id": pid, "labeler_id": "l2", "completions": comps, "ranks": ranks})
    src = write_jsonl(tmp_path_factory.mktemp("planted_in") / "data.jsonl", rows)
    out = tmp_path_factory.mktemp("planted_out")
    build(BuildSettings(out=str(out), sources=[f"jsonl:{src}"], ppo_sources=["labeler"]), classifier=classifier, scanner=scanner, progress=False)
    return out


@pytest.fixture(scope="module")
def sft_model(tiny, planted_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft")
    metrics = sft.main(sft.SftArguments(dataset=str(planted_data / "sft")),
                       SFTConfig(output_dir=str(out), num_train_epochs=4, learning_rate=5e-3, per_device_train_batch_size=16, **COMMON),
                       ModelConfig(model_name_or_path=str(tiny)))
    return out, metrics


def test_sft_loss_falls_and_checkpoint_reloads(sft_model):
    out, metrics = sft_model
    curve = metrics["loss_curve"]
    assert curve[-1] < 0.5 * curve[0], curve
    assert json.loads((out / "metrics.json").read_text())["train_rows"] == metrics["train_rows"]
    AutoModelForCausalLM.from_pretrained(out)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["kway", "pairs"])
def test_reward_model_learns_a_planted_preference(mode, sft_model, planted_data, tmp_path):
    out = tmp_path / "rm"
    metrics = rm.main(rm.RmArguments(dataset=str(planted_data / "rm"), mode=mode, sft_dataset=str(planted_data / "sft")),
                      RewardConfig(output_dir=str(out), num_train_epochs=3, learning_rate=2e-3,
                                   per_device_train_batch_size=4 if mode == "kway" else 16, **COMMON),
                      ModelConfig(model_name_or_path=str(sft_model[0])))
    assert metrics["validation_accuracy"] >= 0.9, metrics
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.reward_offset == pytest.approx(metrics["reward_offset"])
    assert json.loads((out / "reward_offset.json").read_text())["reward_offset"] == pytest.approx(metrics["reward_offset"])


def test_kway_loss_averages_all_untied_pairs():
    rewards = torch.tensor([2.0, 0.0, 1.0, 5.0, 5.0])
    loss, acc = rm.kway_loss(rewards, torch.tensor([3, 2]), torch.tensor([0, 2, 1, 0, 0]))
    pairs = torch.tensor([2.0 - 0.0, 2.0 - 1.0, 1.0 - 0.0])  # first ranking: 3 pairs; second: a tie, no pair
    assert loss.item() == pytest.approx(float(-torch.nn.functional.logsigmoid(pairs).mean()))
    assert acc.item() == 1.0


def _e_share(convs):
    """Planted reward: ten times the share of the letter e in the response (dense, so a random policy can climb it)."""
    return torch.tensor([c[-1]["content"].count("e") / max(1, len(c[-1]["content"])) * 10 for c in convs])


def _run_ppo(sft_dir, out, prompts, ptx_texts, **kw):
    # four epochs and no end-of-turn penalty: these tests are about the PPO update itself, on a 125k-parameter model
    args = ppo.PpoArguments(policy=str(sft_dir), reward_model=str(sft_dir), output_dir=str(out), total_episodes=kw.pop("episodes", 800),
                            rollout_batch_size=16, mini_batch_size=8, max_new_tokens=16, learning_rate=kw.pop("lr", 2e-3),
                            ppo_epochs=kw.pop("ppo_epochs", 4), missing_eos_penalty=kw.pop("missing_eos_penalty", 0.0),
                            log_every=1000, **kw)
    return ppo.train(args, reward_fn=_e_share, prompts=prompts, ptx_texts=ptx_texts)


@pytest.fixture(scope="module")
def ppo_inputs(tiny):
    prompts = [[{"role": "user", "content": f"Tell me about the {w}."}] for w in WORDS * 3]
    return prompts, sample_texts(400)


@pytest.mark.slow
def test_ppo_raises_a_planted_reward_with_bounded_kl(tiny, ppo_inputs, tmp_path):
    from transformers import LlamaForSequenceClassification

    LlamaForSequenceClassification.from_pretrained(tiny, num_labels=1).save_pretrained(tmp_path / "value")
    load_tokenizer(str(tiny)).save_pretrained(tmp_path / "value")
    prompts, ptx_texts = ppo_inputs
    m = _run_ppo(tiny, tmp_path / "ppo", prompts, ptx_texts, ptx_coef=0.0, value_model=str(tmp_path / "value"))
    scores = [h["mean_score"] for h in m["history"]]
    kls = [h["kl"] for h in m["history"]]
    assert sum(scores[-5:]) / 5 > sum(scores[:5]) / 5 + 1.0, scores
    assert all(k == k and k < 200 for k in kls), kls  # finite and bounded (nats per response)
    AutoModelForCausalLM.from_pretrained(tmp_path / "ppo")


@pytest.mark.slow
def test_ptx_term_lowers_the_pretraining_loss(tiny, ppo_inputs, tmp_path):
    from transformers import LlamaForSequenceClassification

    LlamaForSequenceClassification.from_pretrained(tiny, num_labels=1).save_pretrained(tmp_path / "value")
    load_tokenizer(str(tiny)).save_pretrained(tmp_path / "value")
    prompts, ptx_texts = ppo_inputs
    kw = dict(episodes=160, value_model=str(tmp_path / "value"))
    plain = _run_ppo(tiny, tmp_path / "plain", prompts, ptx_texts, ptx_coef=0.0, **kw)
    mixed = _run_ppo(tiny, tmp_path / "ptx", prompts, ptx_texts, ptx_coef=1.0, **kw)
    assert mixed["ptx_eval_loss"] < plain["ptx_eval_loss"] - 0.2, (mixed["ptx_eval_loss"], plain["ptx_eval_loss"])


@pytest.mark.slow
def test_train_all_tiny_leaves_checkpoints_the_evals_can_load(sample_build, tmp_path, capsys):
    from instructkit.cli import main

    data, _ = sample_build
    assert main(["train", "all", "--tiny", "--out", str(tmp_path), "--data", str(data)]) == 0
    for stage in ("sft", "ppo"):
        AutoModelForCausalLM.from_pretrained(tmp_path / stage)
        assert (tmp_path / stage / "tokenizer.json").exists()
    rm_model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
    assert hasattr(rm_model.config, "reward_offset")
    for stage in ("sft", "rm", "ppo"):
        assert json.loads((tmp_path / stage / "metrics.json").read_text())["stage"] == stage


@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_grpo_and_rloo_run_through_trl_against_the_reward_model(algo, sft_model, planted_data, tmp_path):
    from transformers import LlamaForSequenceClassification

    LlamaForSequenceClassification.from_pretrained(sft_model[0], num_labels=1).save_pretrained(tmp_path / "rm")
    load_tokenizer(str(sft_model[0])).save_pretrained(tmp_path / "rm")
    m = ppo.main(ppo.PpoArguments(policy=str(sft_model[0]), reward_model=str(tmp_path / "rm"), dataset=str(planted_data / "ppo"),
                                  output_dir=str(tmp_path / algo), algo=algo, total_episodes=8, max_new_tokens=8))
    assert m["algo"] == algo and len(m["reward_curve"]) >= 1
    assert "ptx_coef" not in m["settings"] and m["settings"]["kl_coef"] == 0.02  # only what TRL used is recorded
    AutoModelForCausalLM.from_pretrained(tmp_path / algo)


def test_train_cli_reads_yaml_and_command_line_overrides(tiny, planted_data, tmp_path):
    from instructkit.cli import main

    cfg = tmp_path / "sft.yaml"
    cfg.write_text(f"model_name_or_path: {tiny}\ndataset: {planted_data / 'sft'}\noutput_dir: {tmp_path / 'wrong'}\n"
                   "num_train_epochs: 5\nper_device_train_batch_size: 16\nlearning_rate: 0.005\nreport_to: []\n"
                   "save_strategy: 'no'\nuse_cpu: true\nmax_length: 128\n")
    assert main(["train", "sft", "--config", str(cfg), "--output_dir", str(tmp_path / "out"), "--num_train_epochs", "1",
                 "--max_train_samples", "32"]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["train_rows"] == 32 and not (tmp_path / "wrong").exists()


def test_only_the_main_process_writes_metrics(tiny, planted_data, tmp_path, monkeypatch):
    """Under accelerate launch every process runs sft.main; the others must not write the same files at once."""
    from transformers import Trainer

    monkeypatch.setattr(Trainer, "is_world_process_zero", lambda self: False)
    out = tmp_path / "sft"
    sft.main(sft.SftArguments(dataset=str(planted_data / "sft"), max_train_samples=8),
             SFTConfig(output_dir=str(out), num_train_epochs=1, per_device_train_batch_size=8, **COMMON),
             ModelConfig(model_name_or_path=str(tiny)))
    assert (out / "config.json").exists() and not (out / "metrics.json").exists()  # the model: Trainer's save, main only


@pytest.mark.slow
def test_the_shipped_sft_config_keeps_the_last_epoch_past_the_validation_loss_minimum(tiny, planted_data, tmp_path):
    """The paper's SFT overfits on validation loss after epoch 1 and keeps training (more epochs help RM score and
    human preference): the shipped config must not hand back its lowest-validation-loss epoch."""
    from instructkit.cli import main

    out = tmp_path / "sft"
    assert main(["train", "sft", "--config", "sft", "--model_name_or_path", str(tiny), "--dataset", str(planted_data / "sft"),
                 "--output_dir", str(out), "--num_train_epochs", "10", "--max_train_samples", "2", "--learning_rate", "0.03",
                 "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1", "--max_length", "128",
                 "--lr_scheduler_type", "constant", "--use_cpu", "true"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    curve = m["eval_loss_curve"]
    assert len(curve) == 10 and min(curve) < curve[-1] - 0.05, curve  # validation loss turned up before the end
    assert m["eval_loss"] == pytest.approx(curve[-1], abs=1e-4)  # the model kept is the last epoch's
    assert len(list(out.glob("checkpoint-*"))) <= 2  # save_total_limit


def test_kway_rm_refuses_reward_settings_it_cannot_honour(tmp_path):
    from builders.errors import InputError

    for setting in ({"center_rewards_coefficient": 0.01}, {"disable_dropout": False}):
        with pytest.raises(InputError, match=f"--mode kway cannot honour {next(iter(setting))}"):
            rm.main(rm.RmArguments(dataset="unused", mode="kway"), RewardConfig(output_dir=str(tmp_path), **setting, **COMMON),
                    ModelConfig(model_name_or_path="unused"))


def test_kway_rm_trains_without_dropout_and_reports_its_pair_accuracy(planted_data, tmp_path, monkeypatch):
    """A GPT-2-style model carries residual dropout 0.2 from the paper's SFT; pairs mode (TRL) turns dropout off, and
    so must the K-way trainer. Its pair accuracy was computed and dropped; now it is in metrics.json."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    tok = load_tokenizer(str(save_tiny(tmp_path / "tok")))
    model_dir = tmp_path / "gpt2"
    GPT2ForSequenceClassification(GPT2Config(vocab_size=len(tok), n_layer=1, n_embd=32, n_head=2, resid_pdrop=0.2, embd_pdrop=0.2,
                                             num_labels=1, pad_token_id=tok.pad_token_id)).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    seen = []
    real = torch.nn.functional.dropout

    def spy(x, p=0.5, training=True, inplace=False):
        if training:
            seen.append(p)
        return real(x, p, training, inplace)

    monkeypatch.setattr(torch.nn.functional, "dropout", spy)
    m = rm.main(rm.RmArguments(dataset=str(planted_data / "rm"), mode="kway", sft_dataset=None),
                RewardConfig(output_dir=str(tmp_path / "rm"), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-3,
                             **{**COMMON, "logging_steps": 1}),
                ModelConfig(model_name_or_path=str(model_dir)))
    assert seen and set(seen) == {0}, set(seen)  # dropout modules ran in training mode, with p = 0
    assert len(m["train_pair_accuracy_curve"]) == 3 and 0 <= m["train_pair_accuracy"] <= 1
