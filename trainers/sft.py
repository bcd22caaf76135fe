"""Stage 1 of the paper: supervised fine-tuning on labeler demonstrations (builders/sft) with TRL's SFTTrainer.

Run:  instructkit train sft --config trainers/configs/sft.yaml [--model_name_or_path ID] [--output_dir DIR]
      accelerate launch -m trainers.sft --config trainers/configs/sft.yaml      (many GPUs)
The loss is on the demonstration only (conversational prompt/completion, completion-only loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trainers.common import load_splits, load_tokenizer, loss_curve, write_metrics


@dataclass
class SftArguments:
    dataset: str = field(default="builders/sft", metadata={"help": "built SFT folder or Hub id"})
    max_train_samples: int | None = field(default=None, metadata={"help": "use at most this many training rows"})


def main(script_args: SftArguments, training_args, model_args) -> dict:
    from trl import SFTTrainer

    ds = load_splits(script_args.dataset)
    keep = ["prompt", "completion"]
    ds = ds.select_columns(keep)
    train = ds["train"]
    if script_args.max_train_samples:
        train = train.select(range(min(script_args.max_train_samples, len(train))))
    tok = load_tokenizer(model_args.model_name_or_path, training_args.trust_remote_code)
    training_args.model_init_kwargs = {**(training_args.model_init_kwargs or {}), "trust_remote_code": training_args.trust_remote_code}
    trainer = SFTTrainer(model=model_args.model_name_or_path, args=training_args, train_dataset=train,
                         eval_dataset=ds["validation"] if "validation" in ds else None, processing_class=tok)
    result = trainer.train()
    trainer.save_model(training_args.output_dir)
    tok.save_pretrained(training_args.output_dir)
    metrics = {"stage": "sft", "train_rows": len(train), "train_loss": result.training_loss,
               "loss_curve": loss_curve(trainer.state.log_history)}
    if "validation" in ds:
        metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
    write_metrics(training_args.output_dir, metrics)
    return metrics


def make_parser():
    from trl import ModelConfig, SFTConfig, TrlParser

    return TrlParser((SftArguments, SFTConfig, ModelConfig))


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
