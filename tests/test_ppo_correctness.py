"""PPO computes what the paper's objective says: log-probabilities of the sampling distribution, rollouts scored a
chunk at a time, responses that end at the chat turn's end (and pay for not ending), the paper's schedule by
default, no PPO-ptx without pretraining text, TRL's trainers refusing settings they would ignore, and many
processes sharing one batch rather than repeating it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")

from trainers import ppo  # noqa: E402
from trainers.tiny import save_tiny  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = [[{"role": "user", "content": f"Tell me about the {w}."}] for w in "sun tree river stone cloud bird lamp door".split() * 2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny_ppo"), seed=6)


def _zero_reward(convs):
    return torch.zeros(len(convs))


def _args(tiny, out, **kw) -> ppo.PpoArguments:
    base = dict(policy=str(tiny), reward_model=str(tiny), output_dir=str(out), total_episodes=16, rollout_batch_size=8,
                mini_batch_size=4, forward_batch_size=4, max_new_tokens=6, log_every=1000)
    return ppo.PpoArguments(**{**base, **kw})


def test_log_probabilities_are_those_of_the_sampling_distribution(tiny):
    """At temperature 0.5 the ratio and the KL must use log softmax(logits / 0.5): the distribution sampled from."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evals.generate import checkpoint_defaults_off, sampling_config

    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    tok = AutoTokenizer.from_pretrained(tiny)
    q = tok(["Tell me about the sun."], return_tensors="pt")
    config = sampling_config(max_new_tokens=5, temperature=0.5, top_p=1.0, stop_ids=[], pad_id=tok.pad_token_id)
    config.output_scores, config.return_dict_in_generate = True, True
    torch.manual_seed(0)
    with checkpoint_defaults_off(model), torch.no_grad():
        out = model.generate(**q, generation_config=config)
    start = q["input_ids"].shape[1]
    sampled = out.sequences[0, start:]
    expected = torch.stack([torch.log_softmax(s[0], -1)[t] for s, t in zip(out.scores, sampled)])
    with torch.no_grad():
        ours = ppo.token_logprobs(model, out.sequences, torch.ones_like(out.sequences), start, temperature=0.5)[0]
        at_one = ppo.token_logprobs(model, out.sequences, torch.ones_like(out.sequences), start)[0]
    assert ours == pytest.approx(expected, abs=1e-4)
    assert not torch.allclose(at_one, expected, atol=1e-2)


def test_rollouts_are_scored_a_chunk_of_sequences_at_a_time(tiny, tmp_path, monkeypatch):
    """A 512-rollout batch must not put every sequence's full-vocabulary logits in memory at once."""
    seen = []
    real = ppo.token_logprobs

    def spy(model, ids, mask, start, temperature=1.0):
        (trained if torch.is_grad_enabled() else seen).append(ids.shape[0])
        return real(model, ids, mask, start, temperature)

    trained = []
    monkeypatch.setattr(ppo, "token_logprobs", spy)
    ppo.train(_args(tiny, tmp_path, rollout_batch_size=16, mini_batch_size=8, forward_batch_size=4), reward_fn=_zero_reward, prompts=PROMPTS)
    assert seen and max(seen) == 4 and sum(seen) == 2 * 16 * 1  # policy and reference, 16 rollouts, one rollout batch
    assert trained and max(trained) == 4 and sum(trained) == 16  # training minibatches of 8, in chunks of 4


def test_logits_are_computed_for_response_positions_only(tiny):
    model = _load(tiny)
    shapes = []
    model.lm_head.register_forward_hook(lambda mod, inp, out: shapes.append(tuple(out.shape)))
    ids = torch.randint(3, 100, (2, 30))
    with torch.no_grad():
        logp = ppo.token_logprobs(model, ids, torch.ones_like(ids), start=24)
    assert logp.shape == (2, 6) and shapes == [(2, 7, model.config.vocab_size)]  # 6 response tokens, predicted from 7 positions


def test_a_minibatch_in_chunks_has_the_gradient_of_the_whole_minibatch(tiny):
    """Gradient accumulation over `forward_batch_size` chunks must give the same update as one forward of the
    minibatch (each chunk's loss is divided by the whole minibatch's token count, not its own)."""
    from accelerate import Accelerator
    from transformers import AutoModelForSequenceClassification

    acc = Accelerator(cpu=True)
    policy = _load(tiny)
    value = ppo.TokenValues(AutoModelForSequenceClassification.from_pretrained(tiny, num_labels=1))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 100, (6, 20), generator=g)
    start = 12
    r_mask = (torch.arange(8)[None] < torch.tensor([8, 3, 5, 1, 8, 6])[:, None]).long()  # responses of unequal length
    mask = torch.cat([torch.ones(6, start, dtype=torch.long), r_mask], 1)
    with torch.no_grad():
        old_logp = ppo.token_logprobs(policy, ids, mask, start) + 0.1 * torch.randn(6, 8, generator=g)
        old_values = value(ids, mask, start)
    roll = {"ids": ids, "mask": mask, "r_mask": r_mask, "start": start, "old_logp": old_logp, "old_values": old_values,
            "adv": torch.randn(6, 8, generator=g) * r_mask, "returns": torch.randn(6, 8, generator=g)}
    args = ppo.PpoArguments()
    grads, stats = [], []
    for chunk in (6, 4, 1):
        policy.zero_grad()
        value.zero_grad()
        stats.append(ppo.backward_minibatch(policy, value, acc, roll, torch.arange(6), chunk, args))
        grads.append([p.grad.clone() for p in [*policy.parameters(), *value.parameters()] if p.grad is not None])
    for other, s in zip(grads[1:], stats[1:]):
        assert len(other) == len(grads[0]) and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads[0], other))
        assert s == pytest.approx(stats[0])


def test_ptx_eval_loss_is_measured_on_the_saved_weights_and_held_out_texts(tiny, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    texts = [f"Plain text number {i} about the {w}." for i, w in enumerate("sun tree river stone cloud".split() * 10)]
    used = []
    real = ppo.pretrain_loss

    def spy(model, tok, batch, max_tokens, device):
        if torch.is_grad_enabled():
            used.extend(batch)
        return real(model, tok, batch, max_tokens, device)

    monkeypatch.setattr(ppo, "pretrain_loss", spy)
    m = ppo.train(_args(tiny, tmp_path, ptx_coef=1.0, ptx_batch_size=4, learning_rate=1e-3), reward_fn=_zero_reward,
                  prompts=PROMPTS, ptx_texts=texts)
    held = texts[-5:]  # a tenth of 50
    assert used and not set(used) & set(held) and m["ptx_eval_texts"] == 5
    with torch.no_grad():
        expected = float(real(_load(tmp_path), AutoTokenizer.from_pretrained(tmp_path), held, 128, "cpu"))
    assert m["ptx_eval_loss"] == pytest.approx(expected, abs=1e-5)


def test_a_response_cut_by_the_length_cap_pays_the_missing_eos_penalty(tiny, tmp_path):
    m = ppo.train(_args(tiny, tmp_path, max_new_tokens=2, missing_eos_penalty=1.0), reward_fn=_zero_reward, prompts=PROMPTS)
    h = m["history"][0]
    assert h["truncated"] > 0.5 and h["mean_score"] == pytest.approx(-h["truncated"])


def test_prompts_too_long_for_the_policy_are_skipped_and_counted(tiny, tmp_path):
    long = [[{"role": "user", "content": "word " * 400}]]
    m = ppo.train(_args(tiny, tmp_path, max_prompt_tokens=64), reward_fn=_zero_reward, prompts=PROMPTS + long)
    assert m["prompts_skipped_too_long"] == 1
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        ppo.train(_args(tiny, tmp_path / "b", max_prompt_tokens=64), reward_fn=_zero_reward, prompts=long)


def test_ptx_without_pretraining_text_is_an_error_not_plain_ppo(tiny, tmp_path):
    with pytest.raises(ValueError, match="ptx_dataset"):
        ppo.train(_args(tiny, tmp_path, ptx_coef=27.8), reward_fn=_zero_reward, prompts=PROMPTS)


def test_the_papers_schedule_is_the_default():
    import yaml

    d = ppo.PpoArguments()
    assert (d.ppo_epochs, d.ema_decay, d.warmup_steps, d.kl_coef, d.ptx_coef) == (1, 0.992, 10, 0.02, 0.0)
    for name, ptx in (("ppo.yaml", 0.0), ("ppo_ptx.yaml", 27.8)):
        cfg = ppo.PpoArguments(**yaml.safe_load((ROOT / "trainers" / "configs" / name).read_text()))
        assert (cfg.rollout_batch_size, cfg.mini_batch_size, cfg.ppo_epochs, cfg.ptx_coef) == (512, 64, 1, ptx)
        assert cfg.ptx_coef == 0 or cfg.ptx_dataset
    f = ppo.warmup_factor(10)
    assert [round(f(s), 2) for s in (0, 5, 10, 50)] == [0.1, 0.55, 1.0, 1.0]


def test_trls_trainers_refuse_settings_they_would_silently_ignore(tmp_path):
    args = ppo.PpoArguments(algo="grpo", ptx_coef=27.8, ptx_dataset="x.txt", lam=0.9, output_dir=str(tmp_path))
    assert ppo.unused_by_trl(args) == ["lam", "ptx_coef", "ptx_dataset"]
    with pytest.raises(ValueError, match="no use for: lam, ptx_coef, ptx_dataset"):
        ppo.main(args)


def test_sft_sets_the_papers_residual_dropout_where_the_architecture_has_one(tmp_path):
    from transformers import GPT2Config

    from trainers.sft import residual_dropout_kwargs

    GPT2Config(n_layer=1, n_embd=32, n_head=2).save_pretrained(tmp_path / "gpt2")
    assert residual_dropout_kwargs(str(tmp_path / "gpt2"), 0.2) == {"resid_pdrop": 0.2}
    llama = save_tiny(tmp_path / "llama")
    assert residual_dropout_kwargs(str(llama), 0.2) == {}  # Llama has attention dropout only: reported, not faked


@pytest.mark.slow
def test_two_processes_share_one_batch_instead_of_repeating_it(tiny, tmp_path):
    """Two processes on the CPU, launched as accelerate's multi-process launcher does (torchrun, with accelerate
    told to use the CPU; `accelerate launch --cpu` starts one process unless MPI is installed): batch sizes and
    episodes count both processes, and each process rolls out its own prompts (before, both rolled out the same
    prompts with the same seed); the learning rate follows the same warm-up as on one process; PPO-ptx runs."""
    from datasets import Dataset

    data = tmp_path / "ppo_data"
    data.mkdir()
    Dataset.from_dict({"prompt": PROMPTS}).to_parquet(data / "train-00000-of-00001.parquet")
    ptx = tmp_path / "ptx.txt"
    ptx.write_text("".join(f"Plain text number {i} about the {w}.\n" for i, w in enumerate("sun tree river stone".split() * 5)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531", "-m", "trainers.ppo",
           "--policy", str(tiny), "--reward_model", str(tiny), "--dataset", str(data), "--output_dir", str(tmp_path / "out"),
           "--total_episodes", "16", "--rollout_batch_size", "8", "--mini_batch_size", "4", "--forward_batch_size", "4",
           "--max_new_tokens", "4", "--log_every", "1000",
           # PPO-ptx: the policy is forwarded twice per step under DDP; 4 pretraining texts per step over both processes
           "--ptx_coef", "1.0", "--ptx_dataset", str(ptx), "--ptx_batch_size", "4"]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["processes"] == 2 and m["episodes"] == 16 and m["ptx"] and all(h["ptx_loss"] > 0 for h in m["history"])
    assert [h["distinct_prompts"] for h in m["history"]] == [8, 8]  # each batch: 8 different prompts over both processes
    # one scheduler step per optimizer step: the warm-up runs as on one process (before: 2x fast, 4.6e-6 then 8.2e-6)
    one = ppo.train(_args(tiny, tmp_path / "one", max_new_tokens=4, dataset=str(data)), reward_fn=_zero_reward, prompts=PROMPTS)
    assert [h["lr"] for h in m["history"]] == pytest.approx([h["lr"] for h in one["history"]]) == [2.8e-6, 4.6e-6]


def _recorded_ppo(args) -> tuple[dict, list[list[torch.Tensor]]]:
    """Run PPO and record the policy's weights after every optimizer step, as the optimizer holds them."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    steps = []
    n_policy = len(list(_load(args.policy).parameters()))
    handle = register_optimizer_step_post_hook(
        lambda opt, a, k: steps.append([p.detach().double().clone() for p in opt.param_groups[0]["params"][:n_policy]]))
    try:
        metrics = ppo.train(args, reward_fn=_e_reward, prompts=PROMPTS)
    finally:
        handle.remove()
    return metrics, steps


def _load(path, dtype=None):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, **({"dtype": dtype} if dtype else {}))


def _e_reward(convs):
    return torch.tensor([c[-1]["content"].count("e") / max(1, len(c[-1]["content"])) for c in convs])


@pytest.fixture(scope="module")
def tiny_bf16(tiny, tmp_path_factory):
    """The tiny model saved in bfloat16, as a Hub chat model or a `--dtype bfloat16` SFT run leaves it."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tiny_bf16")
    _load(tiny).to(torch.bfloat16).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(out)
    assert _load(out).dtype == torch.bfloat16
    return out


@pytest.mark.slow
def test_ppo_from_a_bf16_checkpoint_moves_the_weights_as_much_as_from_fp32(tiny, tiny_bf16, tmp_path):
    """The review measured 14% of weights moved in 8 steps from bf16 (AdamW at lr 9e-6 on bf16 weights) vs ~100%."""
    moved = {}
    for name, start in (("fp32", tiny), ("bf16", tiny_bf16)):
        _, steps = _recorded_ppo(_args(start, tmp_path / name, total_episodes=16, mini_batch_size=2, learning_rate=9e-6,
                                       warmup_steps=0))
        first = [p.detach().double() for p in _load(start).parameters()]
        changed = sum(int((w != f).sum()) for w, f in zip(steps[-1], first))
        moved[name] = changed / sum(f.numel() for f in first)
        assert len(steps) == 8
    assert moved["fp32"] > 0.95 and moved["bf16"] > 0.95, moved


@pytest.mark.slow
def test_the_saved_policy_is_the_moving_average_of_the_weights_train_stepped_through(tiny_bf16, tmp_path):
    """What `train()` saves equals the paper's weight average (decay 0.992, warmed up) computed here from the weights
    after each optimizer step, starting from the checkpoint: in fp32, even from a bf16 checkpoint."""
    _, steps = _recorded_ppo(_args(tiny_bf16, tmp_path, total_episodes=16, mini_batch_size=4, learning_rate=1e-3))
    expected = [p.detach().double() for p in _load(tiny_bf16).parameters()]
    for n, weights in enumerate(steps, 1):
        d = min(0.992, (1 + n) / (10 + n))
        expected = [d * e + (1 - d) * w for e, w in zip(expected, weights)]
    saved = _load(tmp_path)
    assert saved.dtype == torch.float32 and len(steps) == 4
    last_gap = max(float((w - e).abs().max()) for w, e in zip(steps[-1], expected))
    assert last_gap > 1e-4  # the average is not the last weights
    for s, e in zip(saved.parameters(), expected):
        assert torch.allclose(s.double(), e, atol=1e-6, rtol=0), float((s.double() - e).abs().max())


def test_a_value_model_with_another_tokenizer_is_refused(tiny, tmp_path):
    """The value model reads the policy's token ids: with another vocabulary it would read other words (or none)."""
    from builders.errors import InputError

    other = save_tiny(tmp_path / "other", texts=["completely different words for another vocabulary"] * 50, kind="reward")
    with pytest.raises(InputError, match="tokenizer differs from the policy's"):
        ppo.train(_args(tiny, tmp_path / "out", value_model=str(other)), reward_fn=_zero_reward, prompts=PROMPTS)


def test_the_pretraining_loss_does_not_depend_on_the_padding_side(tiny):
    from transformers import AutoTokenizer

    model, tok = _load(tiny), AutoTokenizer.from_pretrained(tiny)
    texts = ["a short one", "a much longer pretraining text that needs no padding at all here"]
    with torch.no_grad():
        losses = []
        for side in ("right", "left"):
            tok.padding_side = side
            losses.append(float(ppo.pretrain_loss(model, tok, texts, 64, "cpu")))
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)


def test_grpo_and_rloo_count_episodes_over_every_process_and_stop_where_ppo_does(tiny, tmp_path):
    """TRL stops only at the tokenizer's EOS and the generation config's: the chat turn's end is given to it. Each TRL
    step samples 4 completions per process, so two processes take half the steps for the same total_episodes."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from evals.generate import stop_token_ids

    base = tmp_path / "base"
    tok = AutoTokenizer.from_pretrained(tiny)
    tok.eos_token = "<pad>"  # a base model's EOS; its SFT chat template ends turns with <|im_end|>
    tok.save_pretrained(base)
    m = _load(tiny)
    m.generation_config.eos_token_id = tok.eos_token_id
    m.save_pretrained(base)
    data = tmp_path / "data"
    data.mkdir()
    Dataset.from_dict({"prompt": PROMPTS}).to_parquet(data / "train-00000-of-00001.parquet")
    end = tok.convert_tokens_to_ids("<|im_end|>")
    for algo in ("grpo", "rloo"):
        args = ppo.PpoArguments(policy=str(base), reward_model=str(tiny), dataset=str(data), output_dir=str(tmp_path / algo),
                                algo=algo, total_episodes=32)
        trainer = ppo.trl_trainer(args, n_proc=2)
        assert end in trainer.eos_token_ids and set(trainer.eos_token_ids) == set(stop_token_ids(tok, m) + [end])
        assert trainer.args.max_steps == 32 // (4 * 2)


@pytest.mark.slow
def test_ppo_trains_lora_adapters_and_saves_them_merged(tiny, tmp_path):
    """TRL's ModelConfig as SFT and RM take it: LoRA on the policy's attention, merged into a plain checkpoint."""
    from trl import ModelConfig

    lora = ModelConfig(use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0, lora_target_modules=["q_proj", "v_proj"])
    ppo.train(_args(tiny, tmp_path, learning_rate=1e-2, ema_decay=0.0), reward_fn=_e_reward, prompts=PROMPTS, model_args=lora)
    before, after = dict(_load(tiny).named_parameters()), dict(_load(tmp_path).named_parameters())
    assert before.keys() == after.keys()  # a plain model: no adapter weights left
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed), changed


def test_ppo_refuses_16_bit_weights_and_a_model_name_it_would_not_use(tmp_path):
    from trl import ModelConfig

    from builders.errors import InputError

    args = ppo.PpoArguments(output_dir=str(tmp_path))
    with pytest.raises(InputError, match="--dtype: PPO keeps fp32 weights"):
        ppo.model_kwargs(args, ModelConfig(dtype="bfloat16"))
    with pytest.raises(InputError, match="--model_name_or_path: PPO starts from --policy"):
        ppo.model_kwargs(args, ModelConfig(model_name_or_path="x"))
    assert ppo.model_kwargs(args, ModelConfig(attn_implementation="eager"))["dtype"] == torch.float32
