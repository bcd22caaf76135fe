"""The command line as a new user meets it: every setting is a flag with help, defined once on its dataclass; each
package registers its own commands; the trainers run on a CPU without extra flags and pass TRL's ModelConfig on."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from instructkit.cli import main, make_parser


def _parsers(parser: argparse.ArgumentParser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_option_of_every_command_has_help_text():
    missing = [(" ".join(path), a.option_strings or a.dest) for path, p in _parsers(make_parser()) for a in p._actions
               if not a.help and not isinstance(a, argparse._SubParsersAction)]
    assert not missing


def test_every_build_setting_is_a_flag_and_a_config_key_with_the_same_name(tmp_path):
    from builders.settings import BuildSettings

    build = dict(_parsers(make_parser()))[("build",)]
    flags = {s for a in build._actions for s in a.option_strings}
    for f in dataclasses.fields(BuildSettings):
        flag = "--source" if f.name == "sources" else "--" + f.name.replace("_", "-")
        assert flag in flags, f.name
        assert f.metadata["help"]
    config = tmp_path / "c.yaml"
    config.write_text("dedup-threshold: 0.9\nsplit_ratios: {train: 0.6, validation: 0.2, test: 0.2}\nppo_sources: [api, labeler]\n")
    assert BuildSettings.from_yaml(config).split_ratios == {"train": 0.6, "validation": 0.2, "test": 0.2}


def test_settings_that_were_config_only_are_flags_that_reach_the_build(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["build", "--out", str(out), "--quiet", "--split-ratios", "train=0.5,validation=0.25,test=0.25",
               "--ppo-sources", "api,labeler", "--max-prompt-chars", "5000", "--dedup-threshold", "0.9", "--on-error", "skip"])
    assert rc == 0
    settings = json.loads((out / "build_report.json").read_text())["settings"]
    assert settings["split_ratios"] == {"train": 0.5, "validation": 0.25, "test": 0.25}
    assert settings["ppo_sources"] == ["api", "labeler"] and settings["max_prompt_chars"] == 5000
    assert settings["dedup_threshold"] == 0.9


def test_train_stage_help_lists_the_real_settings(capsys):
    assert main(["train", "sft", "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: instructkit train sft")
    for flag in ("--residual_dropout", "--learning_rate", "--use_peft", "--dtype", "--attn_implementation", "--config"):
        assert flag in text, flag
    assert main(["train", "ppo", "--help"]) == 0
    assert "--ptx_coef" in capsys.readouterr().out


def test_a_shipped_config_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    from trainers.cli import resolve_config

    monkeypatch.chdir(tmp_path)
    assert resolve_config("sft").name == "sft.yaml" and resolve_config("trainers/configs/ppo_ptx.yaml").name == "ppo_ptx.yaml"


def test_the_top_command_imports_no_training_or_eval_library():
    """`instructkit --help` and `instructkit build` stay fast and work without the train/eval extras: the commands
    are registered without importing torch, transformers or trl."""
    code = ("import sys; from instructkit.cli import make_parser; make_parser(); "
            "print(sorted(m for m in ('torch', 'transformers', 'trl', 'lm_eval', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_base_modules_import_nothing_above_them():
    base = ("builders.errors", "builders.schema", "builders.readers", "builders.pseudonym", "builders.settings",
            "builders.flags")
    code = (f"import sys; [__import__(m) for m in {base!r}]; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('taxonomy', 'trainers', 'evals', 'instructkit') "
            "or m.startswith(('builders.stages', 'builders.pipeline', 'builders.cli', 'builders.writers'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    from trainers.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny") / "base")


def test_sft_runs_on_the_cpu_without_flags_and_lora_saves_a_plain_checkpoint(sample_build, tiny_base, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "sft"
    rc = main(["train", "sft", "--model_name_or_path", str(tiny_base), "--dataset", str(sample_build[0] / "sft"),
               "--output_dir", str(out), "--max_steps", "2", "--report_to", "none", "--save_strategy", "no",
               "--use_peft", "true", "--lora_target_modules", "all-linear", "--dtype", "float32"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"]["peft"] == "lora" and "LlamaForCausalLM" in metrics["residual_dropout"]
    assert not (out / "adapter_config.json").exists()  # merged: the RM, PPO and evals load it as any checkpoint
    model = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_base)
    assert not any(n.startswith("base_model") or "lora" in n for n, _ in model.named_parameters())
    assert {n for n, _ in model.named_parameters()} == {n for n, _ in base.named_parameters()}


def test_model_config_reaches_the_reward_model(sample_build, tiny_base, tmp_path, capsys):
    """dtype and LoRA from TRL's ModelConfig are used, not parsed and dropped."""
    import torch
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "rm"
    rc = main(["train", "rm", "--model_name_or_path", str(tiny_base), "--dataset", str(sample_build[0] / "rm"),
               "--sft_dataset", str(sample_build[0] / "sft"),
               "--output_dir", str(out), "--max_steps", "1", "--report_to", "none", "--save_strategy", "no",
               "--per_device_train_batch_size", "2", "--use_peft", "true", "--lora_target_modules", "all-linear",
               "--dtype", "bfloat16"])
    assert rc == 0
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.dtype == torch.bfloat16
    assert not (out / "adapter_config.json").exists()
