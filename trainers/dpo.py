"""DPO beside the paper's RM → PPO: the SFT model trained directly on the preference pairs with TRL's DPOTrainer.

No reward model and no rollouts: the loss is -log σ(β·[(log π − log π_ref)(chosen) − (log π − log π_ref)(rejected)])
over builders/rm's pairs (default config: conversational prompt/chosen/rejected), with the SFT model as both the
starting point and the frozen reference (with LoRA, the reference is the model with its adapters off).

Run:  instructkit train dpo --config dpo [--model_name_or_path runs/sft] [--output_dir runs/dpo]
      accelerate launch -m trainers.dpo --config dpo      (many GPUs)
metrics.json: training loss and, on the validation pairs, TRL's DPO loss, reward accuracy (the share of pairs whose
implicit reward β·log(π/π_ref) ranks chosen above rejected) and mean reward margin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from builders.checkpoints import resolve_model
from trainers.common import (load_splits, load_tokenizer, loss_curve, merged, model_init_kwargs, peft_config, require_model,
                             write_metrics)


@dataclass
class DpoArguments:
    dataset: str = field(default="builders/rm", metadata={"help": "built RM folder (its pairs) or Hub id"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use at most this many training pairs"})
    eval_split: str = field(default="validation", metadata={"help": "the built split whose pairs the DPO loss, reward "
                                                                     "accuracy and margin are reported on"})
    max_eval_pairs: int = field(default=2000, metadata={"help": "cap on pairs in that report"})


def main(script_args: DpoArguments, training_args, model_args) -> dict:
    from trl import DPOTrainer

    require_model(model_args.model_name_or_path)
    model_args.model_name_or_path = resolve_model(model_args.model_name_or_path)
    init = model_init_kwargs(model_args, training_args)
    training_args.model_init_kwargs = {**init, **(training_args.model_init_kwargs or {})}  # policy and reference alike
    pairs = load_splits(script_args.dataset).select_columns(["prompt", "chosen", "rejected"])
    train = pairs["train"]
    if script_args.max_train_samples:
        train = train.select(range(min(script_args.max_train_samples, len(train))))
    split = script_args.eval_split
    val = pairs[split].select(range(min(script_args.max_eval_pairs, len(pairs[split])))) if split in pairs else None
    tok = load_tokenizer(model_args.model_name_or_path, training_args.trust_remote_code)
    trainer = DPOTrainer(model=model_args.model_name_or_path, args=training_args, train_dataset=train, eval_dataset=val,
                         processing_class=tok, peft_config=peft_config(model_args))
    result = trainer.train()
    history = trainer.state.log_history
    metrics = {"stage": "dpo", "train_rows": len(train), "train_loss": result.training_loss, "beta": training_args.beta,
               "loss_type": training_args.loss_type, "loss_curve": loss_curve(history),
               "model": {"dtype": str(model_args.dtype), "attn_implementation": model_args.attn_implementation,
                         "peft": "lora" if model_args.use_peft else None}}
    accuracy = [h["rewards/accuracies"] for h in history if "rewards/accuracies" in h and "loss" in h]
    if accuracy:  # on the training batches since the previous log, one value per log
        metrics["train_reward_accuracy_curve"] = accuracy
    if val is not None:  # after training, while the reference is still loaded (or the adapters can be switched off)
        scores = trainer.evaluate()
        metrics[f"{split}_pairs"] = len(val)
        metrics[f"{split}_loss"] = scores["eval_loss"]
        metrics[f"{split}_reward_accuracy"] = scores["eval_rewards/accuracies"]
        metrics[f"{split}_reward_margin"] = scores["eval_rewards/margins"]
    model = merged(trainer.model)
    main_process = trainer.is_world_process_zero()  # under accelerate launch only one process writes files
    if model is trainer.model:
        trainer.save_model(training_args.output_dir)
    elif main_process:  # LoRA: the merged model, a plain checkpoint for the evals
        model.save_pretrained(training_args.output_dir)
    if main_process:
        tok.save_pretrained(training_args.output_dir)
        write_metrics(training_args.output_dir, metrics)
    return metrics


def make_parser(**kwargs):
    from trl import DPOConfig, ModelConfig, TrlParser

    return TrlParser((DpoArguments, DPOConfig, ModelConfig), **kwargs)


if __name__ == "__main__":  # accelerate launch -m trainers.dpo --config dpo [...]
    import sys

    from trainers.cli import run_stage

    run_stage("dpo", sys.argv[1:])
