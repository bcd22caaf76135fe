"""Stage 3 of the paper: PPO against the reward model, with the PPO-ptx pretraining term. One readable file.

Objective (InstructGPT eq. 2): maximise  r(x,y) − β·log(π_RL(y|x)/π_SFT(y|x))  +  γ·E_{x~pretrain}[log π_RL(x)].
- policy π_RL starts from the SFT model; the reference π_SFT is a frozen copy;
- the value model starts from the reward model (its scalar head applied at every token);
- per-token reward: −β·(log π_RL − log π_SFT) at every response token, plus the RM score (shifted by the saved
  `reward_offset`) at the last one; advantages by GAE; clipped policy and value losses;
- ptx: γ times the mean language-modelling loss on a batch of pretraining text each update (γ=0 turns it off).
  Its scale: the policy loss is a per-token mean over whitened advantages, so its value sits near 0 (−0.001 logged)
  and only its gradient counts, while γ·LM loss is 27.8 × ~2.6 nats ≈ 72. Measured on the tiny model pretrained to
  2.6 nats (tests/test_ppo_resume.py's fixture, lr 1e-3, 8 minibatches): policy-loss gradient norm 5.3, LM-loss
  gradient norm 1.44 per unit γ, so γ=27.8 gives ~40, ~8× the policy's, before the joint clip to `max_grad_norm`.
  The reward still rises under it (0.077 → 0.111 over 12 rollout batches, γ=0: 0.082 → 0.148) while held-out
  pretraining loss falls 3.20 → 3.03 instead of rising to 3.39 (a slow test in tests/test_ppo_resume.py);
- the paper's schedule: one inner epoch per rollout batch, a short linear warm-up, and the saved policy is an
  exponential moving average of the weights (decay 0.992);
- rollouts stop at the chat template's end-of-turn token; log-probabilities are those of the sampling distribution
  (temperature included); logits are computed `forward_batch_size` sequences at a time and for response positions
  only, in rollouts and in training (a minibatch's gradients accumulated over its chunks);
- weights in fp32 whatever the checkpoint's dtype (16-bit compute through `accelerate launch --mixed_precision`);
  TRL's ModelConfig adds an attention implementation, LoRA on the policy (merged on save) and 4/8-bit on CUDA;
- many processes (`accelerate launch`): batch sizes and episodes count every process; each process rolls out its
  own share of each batch with its own seed;
- a checkpoint every `save_steps` rollout batches (output_dir/checkpoint-N/state.pt, written by the main process:
  policy, value model, optimizer, schedule, weight average, the prompt order and position, every process's random
  generators); `--resume` continues from the latest as if the run had never stopped.
`--algo grpo` and `--algo rloo` hand the same prompts and reward model to TRL's maintained trainers instead.

Run:  instructkit train ppo --config trainers/configs/ppo.yaml
      accelerate launch -m trainers.ppo --config trainers/configs/ppo.yaml     (many GPUs)
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch

from evals.generate import checkpoint_defaults_off, cut_at_stop, sampling_config, stop_token_ids
from evals.reward import chat_token_ids, pad, score
from trainers.common import load_splits, load_tokenizer, merged, peft_config, write_metrics

log = logging.getLogger(__name__)


@dataclass
class PpoArguments:
    policy: str = field(default="runs/sft", metadata={"help": "the SFT model (local path or Hub id)"})
    reward_model: str = field(default="runs/rm", metadata={"help": "the reward model (sequence classifier)"})
    value_model: str | None = field(default=None, metadata={"help": "value model init; default: the reward model"})
    dataset: str = field(default="builders/ppo", metadata={"help": "built PPO folder or Hub id"})
    output_dir: str = field(default="runs/ppo", metadata={"help": "where the policy and metrics.json go"})
    algo: str = field(default="ppo", metadata={"help": "ppo (this file), grpo or rloo (TRL)"})
    total_episodes: int = field(default=512, metadata={"help": "prompts rolled out in all, over every process (the paper: 256k)"})
    rollout_batch_size: int = field(default=16, metadata={"help": "prompts per rollout, over every process (the paper: 512)"})
    mini_batch_size: int = field(default=8, metadata={"help": "rollouts per gradient step, over every process (the paper: 64)"})
    forward_batch_size: int = field(default=8, metadata={"help": "sequences per generate or forward call on one process, in "
                                                                  "rollouts and training (gradients accumulate): bounds the "
                                                                  "memory of logits (batch × response length × vocabulary)"})
    ppo_epochs: int = field(default=1, metadata={"help": "passes over each rollout batch (the paper: one)"})
    max_new_tokens: int = field(default=48, metadata={"help": "response length cap"})
    max_prompt_tokens: int = field(default=256, metadata={"help": "longer prompts are skipped and counted (cutting them would "
                                                                  "show the policy and the reward model different prompts)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of rollouts (log-probabilities use it too)"})
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate for policy and value"})
    warmup_steps: int = field(default=10, metadata={"help": "optimizer steps of linear warm-up from a tenth of the learning rate (the paper)"})
    ema_decay: float = field(default=0.992, metadata={"help": "the saved policy is an exponential moving average of its weights "
                                                             "(the paper: 0.992); 0 saves the last weights"})
    kl_coef: float = field(default=0.02, metadata={"help": "β: per-token KL penalty to the SFT reference (the paper)"})
    gamma: float = field(default=1.0, metadata={"help": "discount"})
    lam: float = field(default=0.95, metadata={"help": "GAE λ"})
    cliprange: float = field(default=0.2, metadata={"help": "policy ratio clip"})
    cliprange_value: float = field(default=0.2, metadata={"help": "value clip around the rollout values"})
    vf_coef: float = field(default=0.1, metadata={"help": "value loss weight"})
    missing_eos_penalty: float = field(default=1.0, metadata={"help": "subtracted from the reward of a response cut by "
                                                                      "max_new_tokens before its end of turn (the paper is silent)"})
    ptx_coef: float = field(default=0.0, metadata={"help": "γ: pretraining-loss weight; 27.8 with ptx_dataset is the paper's "
                                                          "PPO-ptx, 0 its PPO"})
    ptx_dataset: str | None = field(default=None, metadata={"help": "pretraining text: folder, Hub id or .jsonl/.txt"})
    ptx_dataset_config: str | None = field(default=None, metadata={"help": "config name of a Hub ptx_dataset"})
    ptx_text_column: str = field(default="text", metadata={"help": "column of ptx_dataset holding the text"})
    ptx_max_texts: int = field(default=200_000, metadata={"help": "pretraining texts read from ptx_dataset at most"})
    ptx_batch_size: int = field(default=8, metadata={"help": "pretraining sequences per update, over every process"})
    ptx_max_tokens: int = field(default=128, metadata={"help": "pretraining sequences are cut to this length"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping"})
    seed: int = field(default=0, metadata={"help": "seeds sampling and shuffling (each process adds its rank)"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow custom model code from the Hub"})
    log_every: int = field(default=1, metadata={"help": "rollouts between log lines"})
    save_steps: int = field(default=50, metadata={"help": "rollout batches between checkpoints in output_dir/checkpoint-N (the "
                                                          "latest is kept; 0: none): 500 batches make the paper's run"})
    resume: bool = field(default=False, metadata={"help": "continue from the latest output_dir/checkpoint-N, as if never stopped"})


# Settings that TRL's GRPO and RLOO trainers take (under their own names); any other one set away from its default
# with --algo grpo|rloo is an error, not silently ignored.
TRL_SETTINGS = {"policy", "reward_model", "dataset", "output_dir", "algo", "total_episodes", "max_new_tokens", "temperature",
                "learning_rate", "warmup_steps", "kl_coef", "cliprange", "ppo_epochs", "seed", "trust_remote_code", "log_every"}


# ---------------------------------------------------------------- helpers


def token_logprobs(model, ids: torch.Tensor, mask: torch.Tensor, start: int, temperature: float = 1.0) -> torch.Tensor:
    """log π_T(token_t | tokens_<t) for every response token (positions start..end), where π_T is the distribution
    the tokens were sampled from: the model's logits divided by the sampling temperature."""
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    # logits only where they predict a response token (the prompt's are never used: with a 150k vocabulary they
    # would be most of the memory)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=ids.shape[1] - start + 1)
    logits = out.logits[:, :-1].float() / temperature
    return torch.gather(logits, 2, ids[:, start:, None]).squeeze(-1) - torch.logsumexp(logits, -1)


def in_chunks(fn, size: int, *tensors: torch.Tensor) -> torch.Tensor:
    """fn over row chunks of the tensors, concatenated: one rollout never holds every sequence's logits at once."""
    n = tensors[0].shape[0]
    return torch.cat([fn(*(t[i : i + size] for t in tensors)) for i in range(0, n, size)])


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


def whiten(x: torch.Tensor, mask: torch.Tensor, acc=None) -> torch.Tensor:
    """Zero mean, unit variance over the response tokens of every process."""
    stats = torch.stack([(x * mask).sum(), (x * x * mask).sum(), mask.sum()])
    if acc is not None and acc.num_processes > 1:
        stats = acc.reduce(stats.to(acc.device), "sum").cpu()
    mean = stats[0] / stats[2]
    var = stats[1] / stats[2] - mean**2
    return (x - mean) * torch.rsqrt(var.clamp(min=0) + 1e-8) * mask


def trained(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters training changes (all of them, or a LoRA model's adapters): what the weight average covers."""
    return [p for p in model.parameters() if p.requires_grad]


class WeightAverage:
    """An exponential moving average of a model's weights (the paper's decay 0.992), with the usual warm-up of the
    decay, min(decay, (1 + n) / (10 + n)) after n updates, so a short run's average is not its starting weights.
    The average is kept in fp32 on each weight's own device: a 16-bit average cannot move by 0.008·Δ at a time.
    Make it from the prepared (placed) model, `accelerator.unwrap_model(policy)`, not the model as loaded."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.shadow = [p.detach().to(torch.float32, copy=True) for p in trained(model)]

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for s, p in zip(self.shadow, trained(model)):
            s.mul_(d).add_(p.detach().float(), alpha=1 - d)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        for s, p in zip(self.shadow, trained(model)):
            p.copy_(s)


def backward_minibatch(policy, value, acc, roll: dict, rows: torch.Tensor, chunk: int, args: PpoArguments) -> dict[str, float]:
    """Backpropagate the clipped policy and value losses of the minibatch `rows` of the rollout `roll`, `chunk`
    sequences at a time (each chunk's loss is its token sum over the whole minibatch's token count, so the chunks'
    gradients add up to the minibatch's). Returns the minibatch's loss statistics (token means)."""
    r_mask = roll["r_mask"]
    n_tok = r_mask[rows].sum().clamp(min=1)
    sums = dict.fromkeys(("pg_loss", "vf_loss", "ratio", "clipfrac"), 0.0)
    for part in rows.split(chunk):
        m, adv, old_v, ret = r_mask[part].float(), roll["adv"][part], roll["old_values"][part], roll["returns"][part]
        ratio = torch.exp(token_logprobs(policy, roll["ids"][part], roll["mask"][part], roll["start"], args.temperature)
                          - roll["old_logp"][part])
        pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - args.cliprange, 1 + args.cliprange))
        v = value(roll["ids"][part], roll["mask"][part], roll["start"])
        v_clip = old_v + (v - old_v).clamp(-args.cliprange_value, args.cliprange_value)
        vf = 0.5 * torch.max((v - ret) ** 2, (v_clip - ret) ** 2)
        pg_loss, vf_loss = (pg * m).sum() / n_tok, (vf * m).sum() / n_tok
        acc.backward(pg_loss + args.vf_coef * vf_loss)
        sums["pg_loss"] += pg_loss.item()
        sums["vf_loss"] += vf_loss.item()
        sums["ratio"] += float((ratio.detach() * m).sum() / n_tok)
        sums["clipfrac"] += float((((ratio.detach() - 1).abs() > args.cliprange).float() * m).sum() / n_tok)
    return sums


def warmup_factor(warmup_steps: int):
    """Learning-rate factor per optimizer step: linear from 0.1 to 1 over `warmup_steps`, then 1 (the paper)."""
    return lambda step: 1.0 if warmup_steps <= 0 else 0.1 + 0.9 * min(1.0, step / warmup_steps)


def load_ptx_texts(spec: str, column: str, config: str | None = None, limit: int | None = None) -> list[str]:
    path = Path(spec)
    if path.suffix == ".txt":
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return texts[:limit] if limit else texts
    from datasets import load_dataset

    if path.suffix in (".jsonl", ".json", ".parquet"):
        ds = load_dataset("parquet" if path.suffix == ".parquet" else "json", data_files=str(path), split="train")
    else:
        ds = load_dataset(spec, config, split="train") if config else load_dataset(spec, split="train")
    if column not in ds.column_names:
        raise ValueError(f"{spec}: no column {column!r} (columns: {', '.join(ds.column_names)})")
    texts = []
    for t in ds[column]:
        if isinstance(t, str) and t.strip():
            texts.append(t)
            if limit and len(texts) >= limit:
                break
    return texts


def same_tokens(tok, other, policy: str, value: str) -> None:
    """The value model reads the policy's token ids: its tokenizer must be the policy's (same vocabulary)."""
    if tok.get_vocab() != other.get_vocab():
        from builders.errors import InputError

        raise InputError(f"the value model reads the policy's token ids, but its tokenizer differs from the policy's ({policy}): "
                         "give a value_model (or reward_model) trained from the same tokenizer", flag="--value_model", file=value)


def rm_scorer(reward_model, tok, offset: float) -> Callable[[list[list[dict]]], torch.Tensor]:
    """Score full conversations (prompt + response) with the RM, shifted by its offset."""
    return lambda convs: score(reward_model, tok, convs) + offset


def sampler(model):
    """The model that generates: a LoRA model's base (its adapters are in its layers), whose generation_config is
    the one `checkpoint_defaults_off` must replace."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def sample_responses(policy, q_ids: torch.Tensor, q_mask: torch.Tensor, config, stop_ids: list[int]) -> list[tuple[list[int], bool]]:
    """Sampled response ids per prompt, up to and including the first end-of-turn token, and whether one came."""
    with checkpoint_defaults_off(policy):
        out = policy.generate(input_ids=q_ids, attention_mask=q_mask, generation_config=config)
    replies = []
    for row in out[:, q_ids.shape[1]:].tolist():
        cut, ended = cut_at_stop(row, stop_ids)
        replies.append((cut + [row[len(cut)]] if ended else cut, ended))
    return replies


# ---------------------------------------------------------------- checkpoints

# settings a resumed run may change; any other must be the checkpoint's (a new learning rate or batch size would not
# continue the same run)
RESUMABLE = {"total_episodes", "save_steps", "resume", "log_every", "output_dir", "policy", "reward_model", "value_model",
             "dataset", "ptx_dataset"}


def rng_state() -> dict:
    """This process's random generators: sampling (torch), and Python's `random` (which `set_seed` seeds)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(acc, out: Path, state: dict) -> None:
    """Write `state` (the main process's models, optimizer, schedule, average and data position, and every process's
    random generators, gathered) to out/checkpoint-N/state.pt from the main process, then drop older checkpoints."""
    from accelerate.utils import gather_object

    rngs = gather_object([rng_state()])  # every process takes part; only the main one writes
    if acc.is_main_process:
        folder = out / f"checkpoint-{state['next_rollout']}"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "state.pt.tmp"
        torch.save({**state, "rng": rngs}, tmp)
        tmp.replace(folder / "state.pt")  # a crash while writing leaves the previous checkpoint whole
        for old in out.glob("checkpoint-*"):
            if old != folder and old.name.removeprefix("checkpoint-").isdigit():
                import shutil

                shutil.rmtree(old)
    acc.wait_for_everyone()


def latest_checkpoint(out: Path) -> Path:
    from builders.errors import InputError

    found = sorted((p for p in out.glob("checkpoint-*/state.pt") if p.parent.name.removeprefix("checkpoint-").isdigit()),
                   key=lambda p: int(p.parent.name.removeprefix("checkpoint-")))
    if not found:
        raise InputError(f"no checkpoint-N/state.pt in {out} to resume from (save_steps writes them)", flag="--resume")
    return found[-1]


# ---------------------------------------------------------------- training


def model_kwargs(args: PpoArguments, model_args=None) -> dict:
    """`from_pretrained` keyword arguments for the policy and its reference from TRL's `ModelConfig` (revision,
    attention implementation, 4/8-bit on CUDA), always with fp32 weights: AdamW and the 0.992 weight average round
    16-bit updates away. The value and reward models take the same minus the policy's revision and quantization."""
    from builders.errors import InputError
    from trainers.common import model_init_kwargs

    if model_args is None:
        return {"trust_remote_code": args.trust_remote_code, "dtype": torch.float32}
    if model_args.model_name_or_path:
        raise InputError("PPO starts from --policy (the SFT model); --model_name_or_path is not used", flag="--model_name_or_path")
    if model_args.dtype not in (None, "float32"):
        raise InputError(f"PPO keeps fp32 weights (AdamW and the weight average round 16-bit updates away), got {model_args.dtype}: "
                         "for 16-bit compute use accelerate launch --mixed_precision bf16", flag="--dtype")
    return {**model_init_kwargs(model_args, args), "dtype": torch.float32}


def train(args: PpoArguments, reward_fn: Callable[[list[list[dict]]], torch.Tensor] | None = None,
          prompts: list[list[dict]] | None = None, ptx_texts: list[str] | None = None, model_args=None) -> dict:
    """Run PPO; `reward_fn`, `prompts` and `ptx_texts` override the reward model and datasets (tests, notebooks);
    `model_args` (TRL's ModelConfig) adds an attention implementation, LoRA on the policy (merged on save) and
    4/8-bit loading on CUDA."""
    from accelerate import Accelerator
    from accelerate.utils import gather_object, set_seed
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    acc = Accelerator()
    n_proc, rank = acc.num_processes, acc.process_index
    for name in ("rollout_batch_size", "mini_batch_size") + (("ptx_batch_size",) if args.ptx_coef > 0 else ()):
        if getattr(args, name) % n_proc:
            raise ValueError(f"{name}={getattr(args, name)} must be a multiple of the {n_proc} processes (it counts all of them)")
    if args.rollout_batch_size % args.mini_batch_size:
        raise ValueError(f"rollout_batch_size={args.rollout_batch_size} must be a multiple of mini_batch_size={args.mini_batch_size}")
    if args.ptx_coef > 0 and not (ptx_texts or args.ptx_dataset):
        raise ValueError(f"ptx_coef={args.ptx_coef} needs ptx_dataset (pretraining text): set it, or ptx_coef: 0 for plain PPO")
    set_seed(args.seed, device_specific=True)  # every process samples its own responses
    rng = random.Random(args.seed + rank)  # pretraining batches, per process
    tok = load_tokenizer(args.policy, args.trust_remote_code)
    # fp32 whatever the checkpoint was saved in (transformers loads its dtype by default): AdamW on 16-bit weights
    # rounds most PPO-sized updates away; 16-bit compute comes from accelerate's mixed precision instead
    init = model_kwargs(args, model_args)
    kw = {k: v for k, v in init.items() if k in ("trust_remote_code", "dtype", "attn_implementation")}
    policy = AutoModelForCausalLM.from_pretrained(args.policy, **init)
    ref = AutoModelForCausalLM.from_pretrained(args.policy, **init).eval().requires_grad_(False)
    lora = peft_config(model_args) if model_args is not None else None
    if lora is not None:
        from peft import get_peft_model

        policy = get_peft_model(policy, lora)  # adapters trained; the reference stays the frozen SFT model
    value_path = args.value_model or args.reward_model
    same_tokens(tok, load_tokenizer(value_path, args.trust_remote_code), args.policy, value_path)
    value = TokenValues(AutoModelForSequenceClassification.from_pretrained(value_path, num_labels=1, **kw))
    stop_ids = stop_token_ids(tok, policy)
    if reward_fn is None:
        rm = AutoModelForSequenceClassification.from_pretrained(args.reward_model, num_labels=1, **kw).eval().requires_grad_(False)
        offset = float(getattr(rm.config, "reward_offset", 0.0) or 0.0)
        reward_fn = rm_scorer(acc.prepare_model(rm, evaluation_mode=True), load_tokenizer(args.reward_model, args.trust_remote_code), offset)
    if prompts is None:
        prompts = list(load_splits(args.dataset)["train"]["prompt"])
    if ptx_texts is None and args.ptx_coef > 0:
        ptx_texts = load_ptx_texts(args.ptx_dataset, args.ptx_text_column, args.ptx_dataset_config, args.ptx_max_texts)
    # the last tenth (at most 64) of the pretraining texts is held out to measure ptx_eval_loss on
    ptx_texts = list(ptx_texts or [])
    held_ptx = ptx_texts[len(ptx_texts) - min(64, len(ptx_texts) // 10):] if len(ptx_texts) >= 10 else []
    ptx_texts = ptx_texts[: len(ptx_texts) - len(held_ptx)]
    use_ptx = args.ptx_coef > 0 and bool(ptx_texts)

    params = trained(policy) + list(value.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, eps=1e-5)
    # not given to `acc.prepare`: accelerate steps a prepared scheduler once per process at each optimizer step
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_factor(args.warmup_steps))
    policy, value, optimizer = acc.prepare(policy, value, optimizer)
    average = WeightAverage(acc.unwrap_model(policy), args.ema_decay) if args.ema_decay > 0 else None
    ref = acc.prepare_model(ref, evaluation_mode=True)
    device = acc.device
    pad_id = tok.pad_token_id
    config = sampling_config(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=1.0, stop_ids=stop_ids, pad_id=pad_id)

    # prompts that do not fit are skipped, not cut: the reward model must judge the prompt the policy saw
    encoded = [chat_token_ids(tok, p, add_generation_prompt=True) for p in prompts]
    usable = [i for i, e in enumerate(encoded) if len(e) <= args.max_prompt_tokens]
    if not usable:
        raise ValueError(f"every prompt is longer than max_prompt_tokens={args.max_prompt_tokens}")
    order = list(usable)
    history = []
    chunk = args.forward_batch_size
    local_mini = args.mini_batch_size // n_proc
    n_rollouts = max(1, args.total_episodes // args.rollout_batch_size)
    shuffle = random.Random(args.seed)  # the same order on every process; each takes its own share of a batch
    on_gpu = device.type == "cuda"
    peak = {"rollout": 0.0, "train": 0.0}

    def stage_peak(stage: str) -> None:  # GiB allocated at most during the stage, over all rollout batches
        if on_gpu:
            peak[stage] = max(peak[stage], torch.cuda.max_memory_allocated(device) / 2**30)
            torch.cuda.reset_peak_memory_stats(device)

    first = 0
    if args.resume:
        ckpt = torch.load(latest_checkpoint(Path(args.output_dir)), map_location="cpu", weights_only=True)
        changed = [f"{k}={v!r}" for k, v in ckpt["settings"].items() if k not in RESUMABLE and getattr(args, k) != v]
        if changed:
            from builders.errors import InputError

            raise InputError(f"the checkpoint was trained with other settings ({', '.join(changed)}): "
                             "resume with the same ones", flag="--resume", file=str(latest_checkpoint(Path(args.output_dir))))
        if len(ckpt["rng"]) != n_proc:
            raise ValueError(f"the checkpoint was written by {len(ckpt['rng'])} processes, this run has {n_proc}: resume with as many")
        acc.unwrap_model(policy).load_state_dict(ckpt["policy"])
        acc.unwrap_model(value).load_state_dict(ckpt["value"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if average:
            average.updates = ckpt["average_updates"]
            for shadow, saved in zip(average.shadow, ckpt["average"]):
                shadow.copy_(saved)
        first, order, history = ckpt["next_rollout"], ckpt["order"], ckpt["history"]
        shuffle.setstate(ckpt["shuffle"])
        rng.setstate(ckpt["ptx_rng"][rank])
        set_rng_state(ckpt["rng"][rank])
        acc.print(f"resumed at rollout batch {first} of {n_rollouts}")

    for it in range(first, n_rollouts):
        if it * args.rollout_batch_size % len(order) < args.rollout_batch_size:
            shuffle.shuffle(order)
        batch = [order[(it * args.rollout_batch_size + j) % len(order)] for j in range(args.rollout_batch_size)]
        idx = batch[rank::n_proc]

        # 1. rollout: sample responses a chunk at a time, then score them under the policy, the reference, the value
        #    model and the RM, a chunk at a time
        with torch.no_grad():
            replies = []
            for c in range(0, len(idx), chunk):
                q_ids, q_mask = pad([encoded[i] for i in idx[c : c + chunk]], pad_id, left=True)
                replies += sample_responses(sampler(acc.unwrap_model(policy)), q_ids.to(device), q_mask.to(device), config, stop_ids)
            q_ids, q_mask = pad([encoded[i] for i in idx], pad_id, left=True)
            r_ids, r_mask = pad([r or [pad_id] for r, _ in replies], pad_id)
            r_mask = r_mask * torch.tensor([[1] if r else [0] for r, _ in replies])
            ended = torch.tensor([e for _, e in replies], dtype=torch.bool)
            start = q_ids.shape[1]
            ids, mask = torch.cat([q_ids, r_ids], 1).to(device), torch.cat([q_mask, r_mask], 1).to(device)
            r_mask = r_mask.to(device)
            old_logp = in_chunks(lambda i, m: token_logprobs(policy, i, m, start, args.temperature), chunk, ids, mask)
            ref_logp = in_chunks(lambda i, m: token_logprobs(ref, i, m, start, args.temperature), chunk, ids, mask)
            old_values = in_chunks(lambda i, m: value(i, m, start), chunk, ids, mask)
            texts = tok.batch_decode([r[:-1] if e else r for r, e in replies], skip_special_tokens=True)
            scores = reward_fn([prompts[i] + [{"role": "assistant", "content": t}] for i, t in zip(idx, texts)]).to(device).float()
            scores = scores - args.missing_eos_penalty * (~ended).to(device).float()
            kl = (old_logp - ref_logp) * r_mask
            rewards = -args.kl_coef * kl
            last = (r_mask.sum(1) - 1).clamp(min=0)
            rewards[torch.arange(len(idx)), last] += scores
            adv, returns = gae(rewards.cpu(), old_values.cpu(), r_mask.cpu().float(), args.gamma, args.lam)
            adv, returns = whiten(adv, r_mask.cpu().float(), acc).to(device), returns.to(device)
        roll = {"ids": ids, "mask": mask, "r_mask": r_mask, "start": start, "old_logp": old_logp, "old_values": old_values,
                "adv": adv, "returns": returns}
        stage_peak("rollout")

        # 2. optimise: clipped policy loss, clipped value loss (a chunk of sequences at a time, gradients accumulated
        #    over the minibatch), and the pretraining term
        stats = {"pg_loss": [], "vf_loss": [], "ptx_loss": [], "clipfrac": [], "ratio": []}
        for _ in range(args.ppo_epochs):
            perm = torch.randperm(len(idx))
            for mb in perm.split(local_mini):
                optimizer.zero_grad()
                for k, v in backward_minibatch(policy, value, acc, roll, mb, chunk, args).items():
                    stats[k].append(v)
                if use_ptx:
                    ptx_loss = pretrain_loss(policy, tok, rng.sample(ptx_texts, min(args.ptx_batch_size // n_proc, len(ptx_texts))),
                                             args.ptx_max_tokens, device)
                    acc.backward(args.ptx_coef * ptx_loss)
                    stats["ptx_loss"].append(ptx_loss.item())
                acc.clip_grad_norm_(params, args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                if average:
                    average.update(acc.unwrap_model(policy))
        stage_peak("train")
        every_prompt = gather_object(idx)
        all_scores, all_kl = acc.gather(scores), acc.gather(kl.sum(1))
        row = {"rollout": it, "episodes": len(every_prompt), "distinct_prompts": len(set(every_prompt)),
               "mean_score": float(all_scores.mean()), "kl": float(all_kl.mean()),
               "response_tokens": float(acc.gather(r_mask.sum(1).float()).mean()),
               "truncated": float(acc.gather((~ended).to(device).float()).mean()), "lr": scheduler.get_last_lr()[0],
               **{k: sum(v) / len(v) for k, v in stats.items() if v}}
        history.append(row)
        if it % args.log_every == 0:
            acc.print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
        if args.save_steps and (it + 1) % args.save_steps == 0:
            save_checkpoint(acc, Path(args.output_dir), {
                "next_rollout": it + 1, "settings": asdict(args), "order": order, "shuffle": shuffle.getstate(), "ptx_rng": gather_object([rng.getstate()]),
                "history": history, "policy": acc.unwrap_model(policy).state_dict(), "value": acc.unwrap_model(value).state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "average": average.shadow if average else [], "average_updates": average.updates if average else 0})

    acc.wait_for_everyone()
    metrics = {"stage": "ppo", "algo": "ppo", "ptx": use_ptx, "settings": asdict(args), "history": history,
               "processes": n_proc, "episodes": sum(h["episodes"] for h in history),
               "prompts_skipped_too_long": len(prompts) - len(usable),
               "first_mean_score": history[0]["mean_score"], "last_mean_score": history[-1]["mean_score"],
               "last_kl": history[-1]["kl"], "saved_weights": "moving average" if average else "last",
               "peak_gpu_memory_gib": peak if on_gpu else None}
    final = acc.unwrap_model(policy)
    if average:
        average.copy_to(final)  # on every process: what is measured below is what is saved
    if held_ptx:
        with torch.no_grad():
            metrics["ptx_eval_loss"] = float(pretrain_loss(final, tok, held_ptx, args.ptx_max_tokens, device))
        metrics["ptx_eval_texts"] = len(held_ptx)
    if acc.is_main_process:
        merged(final).save_pretrained(args.output_dir)  # LoRA: merged into a plain checkpoint
        tok.save_pretrained(args.output_dir)
        write_metrics(args.output_dir, metrics)
        plot_curves(history, Path(args.output_dir) / "curves.png")
    return metrics


def plot_curves(history: list[dict], path: Path) -> Path | None:
    """Mean reward-model score and KL from the reference per rollout batch, as a PNG (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    episodes = [sum(h["episodes"] for h in history[: i + 1]) for i in range(len(history))]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, key, label in ((axes[0], "mean_score", "reward (RM score + offset)"), (axes[1], "kl", "KL(policy ‖ SFT), nats/response")):
        ax.plot(episodes, [h[key] for h in history], marker=".")
        ax.set_xlabel("episodes")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def pretrain_loss(model, tok, texts: list[str], max_tokens: int, device) -> torch.Tensor:
    """Mean next-token loss on raw text: the PPO-ptx term (−E[log π(x)], per token)."""
    # padded on the right whatever the tokenizer's side: positions then count from each text's first token
    enc = tok(texts, truncation=True, max_length=max_tokens, padding=True, padding_side="right", return_tensors="pt").to(device)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return model(**enc, labels=labels).loss


# ---------------------------------------------------------------- GRPO / RLOO through TRL


def refuse_unused_by_trl(args: PpoArguments) -> None:
    unused = unused_by_trl(args)
    if unused:
        raise ValueError(f"--algo {args.algo} runs TRL's trainer, which has no use for: {', '.join(unused)} "
                         "(leave them at their defaults, e.g. trainers/configs/grpo.yaml, or use --algo ppo)")


def unused_by_trl(args: PpoArguments) -> list[str]:
    """Settings changed from their defaults that TRL's GRPO/RLOO trainers have no place for."""
    defaults = PpoArguments()
    return [f.name for f in fields(PpoArguments) if f.name not in TRL_SETTINGS and getattr(args, f.name) != getattr(defaults, f.name)]


def trl_trainer(args: PpoArguments, n_proc: int | None = None):
    """TRL's GRPO or RLOO trainer on the same prompts and reward model (see `train_trl`); `n_proc` is the number of
    processes (default: this launch's)."""
    from accelerate import PartialState
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    refuse_unused_by_trl(args)
    n_proc = n_proc or PartialState().num_processes
    ds = load_splits(args.dataset)["train"].select_columns(["prompt"])
    tok = load_tokenizer(args.policy, args.trust_remote_code)
    policy = AutoModelForCausalLM.from_pretrained(args.policy, dtype=torch.float32, trust_remote_code=args.trust_remote_code)
    # TRL stops a completion at the tokenizer's EOS and the model's generation EOS ids only: give it the chat turn's
    # end too (PPO's stops), or a base model's SFT runs every completion to the length cap
    policy.generation_config.eos_token_id = stop_token_ids(tok, policy)
    n_gen = 4
    # each step samples n_gen completions on every process: total_episodes counts completions over all processes
    common = dict(output_dir=args.output_dir, learning_rate=args.learning_rate, per_device_train_batch_size=n_gen,
                  num_generations=n_gen, max_completion_length=args.max_new_tokens, temperature=args.temperature,
                  top_k=0, top_p=1.0, repetition_penalty=1.0, beta=args.kl_coef, epsilon=args.cliprange,
                  num_iterations=args.ppo_epochs, warmup_steps=args.warmup_steps,
                  max_steps=max(1, args.total_episodes // (n_gen * n_proc)), logging_steps=args.log_every, report_to=[],
                  save_strategy="no", seed=args.seed, trust_remote_code=args.trust_remote_code,
                  bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(), use_cpu=not torch.cuda.is_available())
    trainer_cls, config_cls = (GRPOTrainer, GRPOConfig) if args.algo == "grpo" else (RLOOTrainer, RLOOConfig)
    return trainer_cls(model=policy, reward_funcs=args.reward_model, args=config_cls(**common), train_dataset=ds, processing_class=tok)


def train_trl(args: PpoArguments) -> dict:
    """GRPO or RLOO from TRL on the same prompts and reward model. Our clip range, epochs, KL coefficient, warm-up
    and temperature map to TRL's `epsilon`, `num_iterations`, `beta`, `warmup_steps` and `temperature`; sampling is
    pure (no top-k, no penalties) and stops where PPO's does. A PPO-only setting (ptx, GAE λ, value clipping, batch
    sizes, ...) set away from its default is an error: TRL would silently ignore it."""
    trainer = trl_trainer(args)
    trainer.train()
    trainer.save_model(args.output_dir)
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    metrics = {"stage": "ppo", "algo": args.algo, "settings": {k: v for k, v in asdict(args).items() if k in TRL_SETTINGS},
               "reward_curve": rewards, "first_mean_score": rewards[0] if rewards else math.nan,
               "last_mean_score": rewards[-1] if rewards else math.nan}
    if trainer.is_world_process_zero():
        write_metrics(args.output_dir, metrics)
    return metrics


def main(args: PpoArguments, model_args=None) -> dict:
    from builders.checkpoints import resolve_model

    if args.algo in ("grpo", "rloo"):
        refuse_unused_by_trl(args)  # a settings error first, before any model is looked for
    args.policy, args.reward_model, args.value_model = (resolve_model(m) for m in (args.policy, args.reward_model, args.value_model))
    if args.algo == "ppo":
        return train(args, model_args=model_args)
    if args.algo in ("grpo", "rloo"):
        if model_args is not None:
            from trl import ModelConfig

            changed = [f.name for f in fields(ModelConfig) if getattr(model_args, f.name) != getattr(ModelConfig(), f.name)]
            if changed:
                raise ValueError(f"--algo {args.algo} takes no model settings ({', '.join(changed)}): they apply to --algo ppo")
        return train_trl(args)
    raise ValueError(f"--algo must be ppo, grpo or rloo, got {args.algo!r}")


def make_parser(**kwargs):
    from trl import TrlParser

    from trl import ModelConfig

    return TrlParser((PpoArguments, ModelConfig), **kwargs)


if __name__ == "__main__":
    import sys

    from trainers.cli import run_stage

    logging.basicConfig(level=logging.INFO)
    run_stage("ppo", sys.argv[1:])
