"""DPO (`instructkit train dpo`): the shipped config trains a tiny model on the built pairs through the CLI, records
TRL's DPO loss and reward accuracy, and saves a checkpoint the evals load like any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl")

from instructkit.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    from trainers.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny") / "base")


def _train(tiny_base, data: Path, out: Path, *extra: str) -> dict:
    rc = main(["train", "dpo", "--config", "dpo", "--model_name_or_path", str(tiny_base), "--dataset", str(data / "rm"),
               "--output_dir", str(out), "--max_steps", "3", "--learning_rate", "1e-3", "--max_train_samples", "12",
               "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--logging_steps", "1",
               "--max_length", "128", "--max_eval_pairs", "8", *extra])
    assert rc == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_dpo_trains_from_the_shipped_config_and_records_its_reward_accuracy(sample_build, tiny_base, tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path / "dpo"
    metrics = _train(tiny_base, sample_build[0], out)
    assert metrics["stage"] == "dpo" and metrics["beta"] == 0.1 and metrics["loss_type"] == ["sigmoid"]  # the shipped config
    assert len(metrics["loss_curve"]) == 3 and len(metrics["train_reward_accuracy_curve"]) == 3
    # at step 0 policy = reference, so every implicit reward is 0 and the DPO loss is log 2; after training it moved
    assert metrics["loss_curve"][0] == pytest.approx(0.6931, abs=1e-3)
    assert metrics["validation_pairs"] == 8 and 0.0 <= metrics["validation_reward_accuracy"] <= 1.0
    assert metrics["validation_loss"] != pytest.approx(0.6931, abs=1e-4) and metrics["validation_reward_margin"] != 0.0
    trained, base = AutoModelForCausalLM.from_pretrained(out), AutoModelForCausalLM.from_pretrained(tiny_base)
    assert any(not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), base.state_dict().values()))
    assert (out / "tokenizer.json").exists()


@pytest.mark.slow
def test_dpo_takes_dtype_and_lora_from_model_config_and_saves_a_merged_checkpoint(sample_build, tiny_base, tmp_path, capsys):
    """With LoRA the reference is the model with its adapters off; the saved model has them merged in."""
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path / "dpo"
    metrics = _train(tiny_base, sample_build[0], out, "--use_peft", "true", "--lora_target_modules", "all-linear",
                     "--dtype", "bfloat16")
    assert metrics["model"]["peft"] == "lora" and metrics["loss_curve"][0] == pytest.approx(0.6931, abs=1e-3)
    assert not (out / "adapter_config.json").exists()
    model, base = AutoModelForCausalLM.from_pretrained(out), AutoModelForCausalLM.from_pretrained(tiny_base)
    assert model.config.dtype == torch.bfloat16
    assert {n for n, _ in model.named_parameters()} == {n for n, _ in base.named_parameters()}


def test_dpo_help_lists_its_settings_and_trls(capsys):
    assert main(["train", "dpo", "--help"]) == 0
    text = capsys.readouterr().out
    assert "instructkit train dpo" in text and "--beta" in text and "--max_eval_pairs" in text and "--use_peft" in text
