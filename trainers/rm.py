"""Stage 2 of the paper: the reward model, from the SFT model with a scalar head.

Two modes (`--mode`):
- `pairs`: TRL's RewardTrainer on the pairwise comparisons (builders/rm, default config).
- `kway`: the paper's way: one batch element is one K-way ranking; each completion gets one forward pass and the
  loss averages -log σ(r_w − r_l) over all its C(K,2) untied pairs (builders/rm, config `rankings`).
Both modes train with dropout off and log the pair accuracy of their training batches (metrics.json). Too-long
input differs: `pairs` drops a pair whose chosen or rejected conversation exceeds `max_length` (TRL), `kway` keeps
every completion and cuts it from the left, keeping its end (the reply the score is read at).
After training, the reward is shifted so that labeler demonstrations (builders/sft) score 0 on average; the
offset is saved in the model config (`reward_offset`) and in reward_offset.json. Accuracy is reported on the
validation pairs and, when `--hh_dir` is given, on HH-RLHF test pairs.

Run:  instructkit train rm --config trainers/configs/rm.yaml [--mode kway]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from evals.reward import accuracy_with_ci, chat_token_ids, pad, pair_outcomes, score
from builders.checkpoints import resolve_model
from trainers.common import (load_splits, load_tokenizer, loss_curve, merged, model_init_kwargs, peft_config, require_model,
                             write_metrics)


@dataclass
class RmArguments:
    dataset: str = field(default="builders/rm", metadata={"help": "built RM folder or Hub id"})
    mode: str = field(default="kway", metadata={"help": "kway (the paper: one ranking per batch element) or pairs"})
    sft_dataset: str | None = field(default="builders/sft", metadata={"help": "demonstrations for the reward offset"})
    hh_dir: str | None = field(default=None, metadata={"help": "folder with HH-RLHF */test.jsonl.gz to report accuracy on"})
    max_eval_pairs: int = field(default=2000, metadata={"help": "cap on pairs per accuracy report"})
    eval_split: str = field(default="validation", metadata={"help": "the built split whose pairs the accuracy (with a "
                                                                     "95%% interval over rankings) is reported on"})


def hh_pairs(folder: str, limit: int) -> list:
    from builders.sources.hh_rlhf import read_hh_rlhf

    prompts, out = {}, []
    for r in read_hh_rlhf("hh-rlhf", folder).stream():  # each pair's prompt comes right before its ranking
        if r.kind == "prompt":
            prompts[r.data["prompt_id"]] = r.data["messages"]
        elif r.kind == "ranking" and r.data["ranks"] == [0, 1]:
            c, rej = r.data["completions"]
            out.append((prompts.pop(r.data["prompt_id"]), [{"role": "assistant", "content": c}], [{"role": "assistant", "content": rej}]))
            if len(out) == limit:
                break
    return out


class RankingCollator:
    """Batches K-way rankings: all completions of all rankings in one padded tensor, plus group sizes and ranks."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        seqs = [s for f in features for s in f["completion_ids"]]
        ids, mask = pad(seqs, self.pad_id)
        return {"input_ids": ids, "attention_mask": mask,
                "group_sizes": torch.tensor([len(f["completion_ids"]) for f in features]),
                "ranks": torch.tensor([r for f in features for r in f["ranks"]])}


def kway_loss(rewards: torch.Tensor, group_sizes: torch.Tensor, ranks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over rankings of the mean -log σ(r_w − r_l) over that ranking's untied pairs; and pair accuracy."""
    losses, correct, total = [], 0, 0
    start = 0
    for k in group_sizes.tolist():
        r, rk = rewards[start : start + k], ranks[start : start + k]
        start += k
        better = rk[:, None] < rk[None, :]  # better[i, j]: completion i ranked above j
        if not better.any():
            continue
        diff = (r[:, None] - r[None, :])[better]
        losses.append(-torch.nn.functional.logsigmoid(diff).mean())
        correct += int((diff > 0).sum())
        total += int(better.sum())
    loss = torch.stack(losses).mean() if losses else rewards.sum() * 0.0
    return loss, torch.tensor(correct / max(total, 1))


# RewardConfig settings that only TRL's RewardTrainer (pairs mode) acts on, with the values that change nothing
KWAY_IGNORES = {"center_rewards_coefficient": None, "disable_dropout": True, "pad_to_multiple_of": None,
                "activation_offloading": False, "chat_template_path": None, "eos_token": None, "pad_token": None}


def kway_unsupported(training_args) -> list[str]:
    """RewardConfig settings given away from their no-op value that the K-way trainer cannot honour."""
    return [k for k, v in KWAY_IGNORES.items() if getattr(training_args, k, v) != v]


def _kway_trainer_cls():
    from transformers import Trainer

    class KWayRewardTrainer(Trainer):
        """transformers' Trainer with the paper's K-way loss; one forward pass per completion. Logs the pair
        accuracy of the batches since the last log as `accuracy`, as TRL's RewardTrainer does in pairs mode."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._accuracies: list[float] = []

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            rewards = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits[:, 0]
            loss, acc = kway_loss(rewards, inputs["group_sizes"], inputs["ranks"])
            self._accuracies.append(float(acc))
            return (loss, {"rewards": rewards}) if return_outputs else loss

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if self._accuracies and "loss" in logs:
                logs["accuracy"] = sum(self._accuracies) / len(self._accuracies)
                self._accuracies.clear()
            super().log(logs, start_time)

    return KWayRewardTrainer


def main(script_args: RmArguments, training_args, model_args) -> dict:
    from transformers import AutoModelForSequenceClassification

    if script_args.mode not in ("kway", "pairs"):
        raise ValueError(f"--mode must be kway or pairs, got {script_args.mode!r}")
    if script_args.mode == "kway" and kway_unsupported(training_args):
        from builders.errors import InputError

        bad = kway_unsupported(training_args)
        raise InputError(f"--mode kway cannot honour {', '.join(bad)} (TRL's pairwise RewardTrainer settings): leave "
                         "them unset, or use --mode pairs", flag="--" + bad[0])
    require_model(model_args.model_name_or_path)
    model_args.model_name_or_path = resolve_model(model_args.model_name_or_path)
    init = model_init_kwargs(model_args, training_args)
    pairs = load_splits(script_args.dataset)
    tok = load_tokenizer(model_args.model_name_or_path, training_args.trust_remote_code)
    model = AutoModelForSequenceClassification.from_pretrained(model_args.model_name_or_path, num_labels=1, **init)
    lora = peft_config(model_args)
    if lora is not None:
        from peft import get_peft_model

        lora.task_type = "SEQ_CLS"  # the score head is trained whole beside the adapters
        model = get_peft_model(model, lora)
    model.config.pad_token_id = tok.pad_token_id
    max_len = getattr(training_args, "max_length", None) or 1024
    start = time.perf_counter()
    if script_args.mode == "pairs":
        from trl import RewardTrainer

        train = pairs["train"].select_columns(["prompt", "chosen", "rejected"])
        trainer = RewardTrainer(model=model, args=training_args, train_dataset=train, processing_class=tok)
    else:
        rankings = load_splits(script_args.dataset, "rankings")["train"]

        def encode(row):
            return {"completion_ids": [chat_token_ids(tok, row["prompt"] + [{"role": "assistant", "content": c}], max_length=max_len)
                                       for c in row["completions"]]}

        train = rankings.map(encode, remove_columns=[c for c in rankings.column_names if c != "ranks"])
        training_args.remove_unused_columns = False
        from trl.trainer.utils import disable_dropout_in_model

        disable_dropout_in_model(model)  # as TRL's RewardTrainer does in pairs mode (RewardConfig.disable_dropout)
        trainer = _kway_trainer_cls()(model=model, args=training_args, train_dataset=train,
                                      data_collator=RankingCollator(tok.pad_token_id), processing_class=tok)
    result = trainer.train()
    seconds = time.perf_counter() - start
    model = merged(trainer.model)

    metrics = {"stage": "rm", "mode": script_args.mode, "train_rows": len(train), "train_loss": result.training_loss,
               "train_seconds": round(seconds, 2), "loss_curve": loss_curve(trainer.state.log_history)}
    accuracy = [h["accuracy"] for h in trainer.state.log_history if "accuracy" in h and "loss" in h]
    if accuracy:  # pair accuracy on the training batches, one value per log
        metrics["train_pair_accuracy_curve"] = accuracy
        metrics["train_pair_accuracy"] = accuracy[-1]
    split = script_args.eval_split
    if split in pairs:
        val = pairs[split].select(range(min(script_args.max_eval_pairs, len(pairs[split]))))
        wins = pair_outcomes(model, tok, list(zip(val["prompt"], val["chosen"], val["rejected"])), max_len)
        metrics[f"{split}_accuracy"] = sum(wins) / len(wins) if wins else float("nan")
        metrics[f"{split}_accuracy_ci"] = accuracy_with_ci(wins, groups=val["group"] if "group" in val.column_names else None)
    if script_args.hh_dir:
        wins = pair_outcomes(model, tok, hh_pairs(script_args.hh_dir, script_args.max_eval_pairs), max_len)
        metrics["hh_rlhf_test_accuracy"] = sum(wins) / len(wins) if wins else float("nan")
        metrics["hh_rlhf_test_accuracy_ci"] = accuracy_with_ci(wins)
    offset = 0.0
    if script_args.sft_dataset:
        demos = load_splits(script_args.sft_dataset)["train"]
        offset = -float(score(model, tok, list(demos["messages"]), max_length=max_len).mean())
    model.config.reward_offset = offset
    metrics["reward_offset"] = offset
    main_process = trainer.is_world_process_zero()  # under accelerate launch only one process writes files
    if model is trainer.model:
        trainer.save_model(training_args.output_dir)
    elif main_process:  # LoRA: the merged model, a plain checkpoint for PPO and the evals
        model.save_pretrained(training_args.output_dir)
    if main_process:
        tok.save_pretrained(training_args.output_dir)
        (Path(training_args.output_dir) / "reward_offset.json").write_text(json.dumps({"reward_offset": offset}) + "\n")
        write_metrics(training_args.output_dir, metrics)
    return metrics


def make_parser(**kwargs):
    from trl import ModelConfig, RewardConfig, TrlParser

    return TrlParser((RmArguments, RewardConfig, ModelConfig), **kwargs)


if __name__ == "__main__":  # accelerate launch -m trainers.rm --config rm [...]
    import sys

    from trainers.cli import run_stage

    run_stage("rm", sys.argv[1:])
