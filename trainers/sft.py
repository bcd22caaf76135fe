"""Stage 1 of the paper: supervised fine-tuning on labeler demonstrations (builders/sft) with TRL's SFTTrainer.

Run:  instructkit train sft --config trainers/configs/sft.yaml [--model_name_or_path ID] [--output_dir DIR]
      accelerate launch -m trainers.sft --config trainers/configs/sft.yaml      (many GPUs)
The loss is on the demonstration only (conversational prompt/completion, completion-only loss). The paper's residual
dropout (0.2) is applied where the architecture has a residual-dropout setting; metrics.json says where it had none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from builders.checkpoints import resolve_model
from trainers.common import (load_splits, load_tokenizer, loss_curve, merged, model_init_kwargs, peft_config, require_model,
                             write_metrics)


# Residual-dropout settings by the names architectures give them (GPT-2/GPT-J/GPT-Neo, Falcon/Bloom, OPT/BART, ...).
# Llama, Qwen and Mistral have none: only attention dropout, which is not what the paper describes.
RESIDUAL_DROPOUT = ("resid_pdrop", "resid_dropout", "hidden_dropout", "hidden_dropout_prob", "residual_dropout", "dropout")


@dataclass
class SftArguments:
    dataset: str = field(default="builders/sft", metadata={"help": "built SFT folder or Hub id"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use at most this many training rows"})
    residual_dropout: float = field(default=0.2, metadata={"help": "the paper's residual dropout, where the architecture has one"})
    eval_before: bool = field(default=False, metadata={"help": "also evaluate the validation loss before training "
                                                               "(metrics.json: eval_loss_before, perplexities)"})


def residual_dropout_kwargs(model_id: str, p: float, trust_remote_code: bool = False) -> dict:
    """Config overrides that set the model's residual dropout to `p` ({} when the architecture has none)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_id, trust_remote_code=trust_remote_code)
    return {name: p for name in RESIDUAL_DROPOUT if isinstance(getattr(config, name, None), float)}


def main(script_args: SftArguments, training_args, model_args) -> dict:
    from trl import SFTTrainer

    require_model(model_args.model_name_or_path)
    model_args.model_name_or_path = resolve_model(model_args.model_name_or_path)
    init = model_init_kwargs(model_args, training_args)
    ds = load_splits(script_args.dataset)
    keep = ["prompt", "completion"]
    ds = ds.select_columns(keep)
    train = ds["train"]
    if script_args.max_train_samples:
        train = train.select(range(min(script_args.max_train_samples, len(train))))
    tok = load_tokenizer(model_args.model_name_or_path, training_args.trust_remote_code)
    dropout = residual_dropout_kwargs(model_args.model_name_or_path, script_args.residual_dropout, training_args.trust_remote_code)
    training_args.model_init_kwargs = {**init, **(training_args.model_init_kwargs or {}),
                                       **dropout}
    trainer = SFTTrainer(model=model_args.model_name_or_path, args=training_args, train_dataset=train,
                         eval_dataset=ds["validation"] if "validation" in ds else None, processing_class=tok,
                         peft_config=peft_config(model_args))
    before = trainer.evaluate()["eval_loss"] if script_args.eval_before and "validation" in ds else None
    result = trainer.train()
    eval_curve = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    eval_loss = trainer.evaluate()["eval_loss"] if "validation" in ds else None
    model = merged(trainer.model)
    main_process = trainer.is_world_process_zero()  # under accelerate launch only one process writes files
    if model is trainer.model:
        trainer.save_model(training_args.output_dir)
    elif main_process:  # LoRA: the merged model, a plain checkpoint for the reward model, PPO and the evals
        model.save_pretrained(training_args.output_dir)
    if main_process:
        tok.save_pretrained(training_args.output_dir)
    metrics = {"stage": "sft", "train_rows": len(train), "train_loss": result.training_loss,
               "loss_curve": loss_curve(trainer.state.log_history),
               "model": {"dtype": str(model_args.dtype), "attn_implementation": model_args.attn_implementation,
                         "peft": "lora" if model_args.use_peft else None},
               "residual_dropout": dropout or f"none: {type(model).__name__} has no residual-dropout setting"}
    if eval_curve:
        metrics["eval_loss_curve"] = eval_curve  # one per evaluation during training (eval_strategy)
    if eval_loss is not None:
        metrics["eval_loss"] = eval_loss
        metrics["eval_perplexity"] = math.exp(eval_loss)
    if before is not None:
        metrics["eval_loss_before"] = before
        metrics["eval_perplexity_before"] = math.exp(before)
    if main_process:
        write_metrics(training_args.output_dir, metrics)
    return metrics


def make_parser(**kwargs):
    from trl import ModelConfig, SFTConfig, TrlParser

    return TrlParser((SftArguments, SFTConfig, ModelConfig), **kwargs)


if __name__ == "__main__":  # accelerate launch -m trainers.sft --config sft [...]
    import sys

    from trainers.cli import run_stage

    run_stage("sft", sys.argv[1:])
