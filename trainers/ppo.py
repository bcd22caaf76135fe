"""Stage 3 of the paper: PPO against the reward model, with the PPO-ptx pretraining term. One readable file.

Objective (InstructGPT eq. 2): maximise  r(x,y) − β·log(π_RL(y|x)/π_SFT(y|x))  +  γ·E_{x~pretrain}[log π_RL(x)].
- policy π_RL starts from the SFT model; the reference π_SFT is a frozen copy;
- the value model starts from the reward model (its scalar head applied at every token);
- per-token reward: −β·(log π_RL − log π_SFT) at every response token, plus the RM score (shifted by the saved
  `reward_offset`) at the last one; advantages by GAE; clipped policy and value losses;
- ptx: γ times the mean language-modelling loss on a batch of pretraining text each update (γ=0 turns it off).
`--algo grpo` and `--algo rloo` hand the same prompts and reward model to TRL's maintained trainers instead.

Run:  instructkit train ppo --config trainers/configs/ppo.yaml
      accelerate launch -m trainers.ppo --config trainers/configs/ppo.yaml     (many GPUs)
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from evals.reward import chat_token_ids, pad, score
from trainers.common import load_splits, load_tokenizer, write_metrics

log = logging.getLogger(__name__)


@dataclass
class PpoArguments:
    policy: str = field(default="runs/sft", metadata={"help": "the SFT model (local path or Hub id)"})
    reward_model: str = field(default="runs/rm", metadata={"help": "the reward model (sequence classifier)"})
    value_model: str | None = field(default=None, metadata={"help": "value model init; default: the reward model"})
    dataset: str = field(default="builders/ppo", metadata={"help": "built PPO folder or Hub id"})
    output_dir: str = field(default="runs/ppo", metadata={"help": "where the policy and metrics.json go"})
    algo: str = field(default="ppo", metadata={"help": "ppo (this file), grpo or rloo (TRL)"})
    total_episodes: int = field(default=512, metadata={"help": "prompts rolled out in all"})
    rollout_batch_size: int = field(default=16, metadata={"help": "prompts per rollout"})
    mini_batch_size: int = field(default=8, metadata={"help": "rollouts per gradient step"})
    ppo_epochs: int = field(default=4, metadata={"help": "passes over each rollout batch"})
    max_new_tokens: int = field(default=48, metadata={"help": "response length cap"})
    max_prompt_tokens: int = field(default=256, metadata={"help": "prompts are cut from the left to this many tokens"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of rollouts"})
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate for policy and value"})
    kl_coef: float = field(default=0.02, metadata={"help": "β: per-token KL penalty to the SFT reference (the paper)"})
    gamma: float = field(default=1.0, metadata={"help": "discount"})
    lam: float = field(default=0.95, metadata={"help": "GAE λ"})
    cliprange: float = field(default=0.2, metadata={"help": "policy ratio clip"})
    cliprange_value: float = field(default=0.2, metadata={"help": "value clip around the rollout values"})
    vf_coef: float = field(default=0.1, metadata={"help": "value loss weight"})
    ptx_coef: float = field(default=27.8, metadata={"help": "γ: pretraining-loss weight (the paper; 0 = plain PPO)"})
    ptx_dataset: str | None = field(default=None, metadata={"help": "pretraining text: folder, Hub id or .jsonl/.txt"})
    ptx_text_column: str = field(default="text", metadata={"help": "column of ptx_dataset holding the text"})
    ptx_batch_size: int = field(default=8, metadata={"help": "pretraining sequences per update"})
    ptx_max_tokens: int = field(default=128, metadata={"help": "pretraining sequences are cut to this length"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping"})
    seed: int = field(default=0, metadata={"help": "seeds sampling and shuffling"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow custom model code from the Hub"})
    log_every: int = field(default=1, metadata={"help": "rollouts between log lines"})


# ---------------------------------------------------------------- helpers


def token_logprobs(model, ids: torch.Tensor, mask: torch.Tensor, start: int) -> torch.Tensor:
    """log π(token_t | tokens_<t) for every response token (positions start..end)."""
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, start - 1 : -1].float()
    return torch.gather(F.log_softmax(logits, -1), 2, ids[:, start:, None]).squeeze(-1)


class TokenValues(torch.nn.Module):
    """The value model: the RM's backbone and scalar head applied at every position (the RM's own forward pools
    to one score). A module of its own so that `accelerator.prepare` wraps it and its gradients sync across devices."""

    def __init__(self, reward_model):
        super().__init__()
        self.backbone = getattr(reward_model, reward_model.base_model_prefix)
        self.head = reward_model.score

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, start: int) -> torch.Tensor:
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        hidden = self.backbone(input_ids=ids, attention_mask=mask, position_ids=pos).last_hidden_state
        return self.head(hidden)[:, start - 1 : -1, 0].float()


def response_mask(responses: torch.Tensor, eos_id: int, pad_id: int) -> torch.Tensor:
    """1 up to and including the first EOS, 0 after."""
    is_end = (responses == eos_id) | (responses == pad_id)
    after = (is_end.cumsum(-1) - is_end.long()) > 0
    return (~after).long()


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimation over response tokens; returns advantages and returns."""
    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0])
    T = rewards.shape[1]
    for t in reversed(range(T)):
        nxt = values[:, t + 1] * mask[:, t + 1] if t + 1 < T else torch.zeros(rewards.shape[0])
        delta = rewards[:, t] + gamma * nxt - values[:, t]
        last = delta + gamma * lam * last * (mask[:, t + 1] if t + 1 < T else 0)
        adv[:, t] = last
    adv = adv * mask
    return adv, adv + values


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = (x * mask).sum() / mask.sum()
    var = (((x - mean) ** 2) * mask).sum() / mask.sum()
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def load_ptx_texts(spec: str, column: str) -> list[str]:
    path = Path(spec)
    if path.suffix == ".txt":
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    from datasets import load_dataset

    if path.suffix in (".jsonl", ".json", ".parquet"):
        ds = load_dataset("parquet" if path.suffix == ".parquet" else "json", data_files=str(path), split="train")
    else:
        ds = load_dataset(spec, split="train")
    if column not in ds.column_names:
        raise ValueError(f"{spec}: no column {column!r} (columns: {', '.join(ds.column_names)})")
    return [t for t in ds[column] if isinstance(t, str) and t.strip()]


def rm_scorer(reward_model, tok, offset: float) -> Callable[[list[list[dict]]], torch.Tensor]:
    """Score full conversations (prompt + response) with the RM, shifted by its offset."""
    return lambda convs: score(reward_model, tok, convs) + offset


# ---------------------------------------------------------------- training


def train(args: PpoArguments, reward_fn: Callable[[list[list[dict]]], torch.Tensor] | None = None,
          prompts: list[list[dict]] | None = None, ptx_texts: list[str] | None = None) -> dict:
    """Run PPO; `reward_fn`, `prompts` and `ptx_texts` override the reward model and datasets (tests, notebooks)."""
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    acc = Accelerator()
    tok = load_tokenizer(args.policy, args.trust_remote_code)
    kw = {"trust_remote_code": args.trust_remote_code}
    policy = AutoModelForCausalLM.from_pretrained(args.policy, **kw)
    ref = AutoModelForCausalLM.from_pretrained(args.policy, **kw).eval().requires_grad_(False)
    value = TokenValues(AutoModelForSequenceClassification.from_pretrained(args.value_model or args.reward_model, num_labels=1, **kw))
    if reward_fn is None:
        rm = AutoModelForSequenceClassification.from_pretrained(args.reward_model, num_labels=1, **kw).eval().requires_grad_(False)
        offset = float(getattr(rm.config, "reward_offset", 0.0) or 0.0)
        reward_fn = rm_scorer(acc.prepare_model(rm, evaluation_mode=True), load_tokenizer(args.reward_model, args.trust_remote_code), offset)
    if prompts is None:
        prompts = list(load_splits(args.dataset)["train"]["prompt"])
    if ptx_texts is None and args.ptx_coef > 0:
        if not args.ptx_dataset:
            log.warning("ptx_coef=%s but no ptx_dataset: running plain PPO (no pretraining term)", args.ptx_coef)
        else:
            ptx_texts = load_ptx_texts(args.ptx_dataset, args.ptx_text_column)
    use_ptx = args.ptx_coef > 0 and bool(ptx_texts)

    optimizer = torch.optim.AdamW(list(policy.parameters()) + list(value.parameters()), lr=args.learning_rate, eps=1e-5)
    policy, value, optimizer = acc.prepare(policy, value, optimizer)
    ref = acc.prepare_model(ref, evaluation_mode=True)
    device = acc.device
    eos, pad_id = tok.eos_token_id, tok.pad_token_id

    encoded = [chat_token_ids(tok, p, add_generation_prompt=True, max_length=args.max_prompt_tokens) for p in prompts]
    order = list(range(len(prompts)))
    history = []
    n_rollouts = max(1, args.total_episodes // args.rollout_batch_size)
    for it in range(n_rollouts):
        if it * args.rollout_batch_size % len(order) < args.rollout_batch_size:
            random.shuffle(order)
        idx = [order[(it * args.rollout_batch_size + j) % len(order)] for j in range(args.rollout_batch_size)]

        # 1. rollout: sample responses, then score them under the policy, the reference, the value model and the RM
        with torch.no_grad():
            q_ids, q_mask = pad([encoded[i] for i in idx], pad_id, left=True)
            q_ids, q_mask = q_ids.to(device), q_mask.to(device)
            out = acc.unwrap_model(policy).generate(input_ids=q_ids, attention_mask=q_mask, do_sample=True,
                                                   temperature=args.temperature, top_k=0, top_p=1.0,
                                                   max_new_tokens=args.max_new_tokens, pad_token_id=pad_id, eos_token_id=eos)
            start = q_ids.shape[1]
            resp = out[:, start:]
            r_mask = response_mask(resp, eos, pad_id).to(device)
            ids = torch.cat([q_ids, resp * r_mask + pad_id * (1 - r_mask)], 1)
            mask = torch.cat([q_mask, r_mask], 1)
            old_logp = token_logprobs(policy, ids, mask, start)
            ref_logp = token_logprobs(ref, ids, mask, start)
            old_values = value(ids, mask, start)
            texts = tok.batch_decode(resp * r_mask + pad_id * (1 - r_mask), skip_special_tokens=True)
            scores = reward_fn([prompts[i] + [{"role": "assistant", "content": t}] for i, t in zip(idx, texts)]).to(device).float()
            kl = (old_logp - ref_logp) * r_mask
            rewards = -args.kl_coef * kl
            last = (r_mask.sum(1) - 1).clamp(min=0)
            rewards[torch.arange(len(idx)), last] += scores
            adv, returns = gae(rewards.cpu(), old_values.cpu(), r_mask.cpu().float(), args.gamma, args.lam)
            adv, returns = whiten(adv, r_mask.cpu().float()).to(device), returns.to(device)

        # 2. optimise: clipped policy loss, clipped value loss, and the pretraining term
        stats = {"pg_loss": [], "vf_loss": [], "ptx_loss": [], "clipfrac": []}
        for _ in range(args.ppo_epochs):
            perm = torch.randperm(len(idx))
            for mb in perm.split(args.mini_batch_size):
                m = r_mask[mb].float()
                new_logp = token_logprobs(policy, ids[mb], mask[mb], start)
                ratio = torch.exp(new_logp - old_logp[mb])
                pg = torch.max(-adv[mb] * ratio, -adv[mb] * ratio.clamp(1 - args.cliprange, 1 + args.cliprange))
                pg_loss = masked_mean(pg, m)
                v = value(ids[mb], mask[mb], start)
                v_clip = old_values[mb] + (v - old_values[mb]).clamp(-args.cliprange_value, args.cliprange_value)
                vf_loss = 0.5 * masked_mean(torch.max((v - returns[mb]) ** 2, (v_clip - returns[mb]) ** 2), m)
                loss = pg_loss + args.vf_coef * vf_loss
                if use_ptx:
                    ptx_loss = pretrain_loss(policy, tok, random.sample(ptx_texts, min(args.ptx_batch_size, len(ptx_texts))),
                                             args.ptx_max_tokens, device)
                    loss = loss + args.ptx_coef * ptx_loss
                    stats["ptx_loss"].append(ptx_loss.item())
                optimizer.zero_grad()
                acc.backward(loss)
                acc.clip_grad_norm_(list(policy.parameters()) + list(value.parameters()), args.max_grad_norm)
                optimizer.step()
                stats["pg_loss"].append(pg_loss.item())
                stats["vf_loss"].append(vf_loss.item())
                stats["clipfrac"].append(float(masked_mean(((ratio - 1).abs() > args.cliprange).float(), m)))
        row = {"rollout": it, "mean_score": float(scores.mean()), "kl": float(kl.sum(1).mean()),
               "response_tokens": float(r_mask.sum(1).float().mean()),
               **{k: sum(v) / len(v) for k, v in stats.items() if v}}
        history.append(row)
        if it % args.log_every == 0:
            acc.print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))

    acc.wait_for_everyone()
    metrics = {"stage": "ppo", "algo": "ppo", "ptx": use_ptx, "settings": asdict(args), "history": history,
               "first_mean_score": history[0]["mean_score"], "last_mean_score": history[-1]["mean_score"],
               "last_kl": history[-1]["kl"]}
    if use_ptx or ptx_texts:
        with torch.no_grad():
            metrics["ptx_eval_loss"] = float(pretrain_loss(policy, tok, ptx_texts[:64], args.ptx_max_tokens, device))
    if acc.is_main_process:
        acc.unwrap_model(policy).save_pretrained(args.output_dir)
        tok.save_pretrained(args.output_dir)
        write_metrics(args.output_dir, metrics)
    return metrics


def pretrain_loss(model, tok, texts: list[str], max_tokens: int, device) -> torch.Tensor:
    """Mean next-token loss on raw text: the PPO-ptx term (−E[log π(x)], per token)."""
    enc = tok(texts, truncation=True, max_length=max_tokens, padding=True, return_tensors="pt").to(device)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return model(**enc, labels=labels).loss


# ---------------------------------------------------------------- GRPO / RLOO through TRL


def train_trl(args: PpoArguments) -> dict:
    """GRPO or RLOO from TRL on the same prompts and reward model (their own KL settings; see TRL's docs)."""
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    ds = load_splits(args.dataset)["train"].select_columns(["prompt"])
    n_gen = 4
    common = dict(output_dir=args.output_dir, learning_rate=args.learning_rate, per_device_train_batch_size=n_gen,
                  num_generations=n_gen, max_completion_length=args.max_new_tokens, temperature=args.temperature,
                  max_steps=max(1, args.total_episodes // n_gen), logging_steps=1, report_to=[], save_strategy="no",
                  seed=args.seed, trust_remote_code=args.trust_remote_code,
                  bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(), use_cpu=not torch.cuda.is_available())
    if args.algo == "grpo":
        trainer = GRPOTrainer(model=args.policy, reward_funcs=args.reward_model, args=GRPOConfig(**common, beta=args.kl_coef),
                              train_dataset=ds)
    else:
        trainer = RLOOTrainer(model=args.policy, reward_funcs=args.reward_model, args=RLOOConfig(**common, beta=args.kl_coef),
                              train_dataset=ds)
    trainer.train()
    trainer.save_model(args.output_dir)
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    metrics = {"stage": "ppo", "algo": args.algo, "settings": asdict(args), "reward_curve": rewards,
               "first_mean_score": rewards[0] if rewards else math.nan, "last_mean_score": rewards[-1] if rewards else math.nan}
    write_metrics(args.output_dir, metrics)
    return metrics


def main(args: PpoArguments) -> dict:
    if args.algo == "ppo":
        return train(args)
    if args.algo in ("grpo", "rloo"):
        return train_trl(args)
    raise ValueError(f"--algo must be ppo, grpo or rloo, got {args.algo!r}")


def make_parser():
    from trl import TrlParser

    return TrlParser((PpoArguments,))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    (ppo_args,) = make_parser().parse_args_and_config()
    main(ppo_args)
