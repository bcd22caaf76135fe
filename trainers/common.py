"""What the trainer scripts share: dataset loading (folder or Hub id), metrics files, tokenizer setup."""

from __future__ import annotations

import json
from pathlib import Path


def load_splits(path_or_id: str, config: str | None = None):
    """A DatasetDict from a built folder (e.g. builders/rm) or a Hub id."""
    from datasets import load_dataset

    return load_dataset(path_or_id, config) if config else load_dataset(path_or_id)


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
