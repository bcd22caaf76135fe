"""What the trainer scripts share: dataset loading (folder or Hub id), metrics files, tokenizer setup."""

from __future__ import annotations

import json
from pathlib import Path


def load_splits(path_or_id: str, config: str | None = None):
    """A DatasetDict from a built folder (e.g. builders/rm) or a Hub id."""
    from datasets import load_dataset

    from builders.errors import InputError

    try:
        return load_dataset(path_or_id, config) if config else load_dataset(path_or_id)
    except (ConnectionError, FileNotFoundError) as exc:
        if Path(path_or_id).exists():
            raise
        raise InputError(f"not a local dataset folder, and not loadable from the Hub ({type(exc).__name__}); build the "
                         "datasets first (`instructkit build`) or give a Hub dataset id", file=path_or_id) from None


def require_model(name_or_path: str | None, flag: str = "--model_name_or_path") -> str:
    """The model to start from; a clear error when none was given."""
    if not name_or_path:
        from builders.errors import InputError

        raise InputError("the model to train from is missing: a Hub id or a local folder (or --config sft|rm with "
                         "one in it)", flag=flag)
    return name_or_path


def loss_curve(log_history: list[dict]) -> list[float]:
    return [h["loss"] for h in log_history if "loss" in h]


def write_metrics(out_dir: str | Path, metrics: dict) -> Path:
    path = Path(out_dir) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    return path


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def model_init_kwargs(model_args, training_args) -> dict:
    """TRL's `ModelConfig` as `from_pretrained` keyword arguments, as TRL's own scripts pass them: revision, dtype,
    attention implementation, remote code (off unless `--trust_remote_code`) and 4/8-bit loading (GPU only)."""
    import torch
    from trl import get_quantization_config

    from builders.errors import InputError

    dtype = model_args.dtype
    kwargs = {"revision": model_args.model_revision, "trust_remote_code": training_args.trust_remote_code,
              "attn_implementation": model_args.attn_implementation,
              "dtype": dtype if dtype in (None, "auto") or not isinstance(dtype, str) else getattr(torch, dtype)}
    quantization = get_quantization_config(model_args)
    if quantization is not None:
        if not torch.cuda.is_available():
            raise InputError("4- and 8-bit loading (bitsandbytes) needs a CUDA GPU; this machine has none",
                             flag="--load_in_4bit" if model_args.load_in_4bit else "--load_in_8bit")
        from accelerate import PartialState

        kwargs.update(quantization_config=quantization, device_map={"": PartialState().local_process_index})
    return {k: v for k, v in kwargs.items() if v is not None}


def peft_config(model_args):
    """A LoRA config from `--use_peft` and the `--lora_*` settings, or None."""
    if not model_args.use_peft:
        return None
    try:
        from trl import get_peft_config

        return get_peft_config(model_args)
    except (ImportError, ValueError) as exc:
        from builders.errors import InputError

        raise InputError(f"needs the peft package ({exc}); pip install 'instructkit[train]'", flag="--use_peft") from None


def merged(model):
    """A LoRA-trained model with its adapters merged in (a plain checkpoint the next stage and the evals load);
    any other model as it is."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") and hasattr(model, "peft_config") else model
