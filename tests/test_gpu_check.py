"""scripts/gpu_check.py: its reduced mode runs SFT → RM → PPO through the stages on the CPU and reports each stage;
it exits non-zero on a crash and when PPO's reward does not rise."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("trl")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reward_counts_as_rising_only_when_the_last_third_beats_the_first(gpu_check):
    curve = [{"mean_score": s} for s in (-1.0, -2.0, -1.5, -1.2, -0.5, -0.9)]
    assert gpu_check.reward_rose(curve) == (-1.5, -0.7, True)
    assert gpu_check.reward_rose(list(reversed(curve)))[2] is False
    assert gpu_check.reward_rose([{"mean_score": 1.0}] * 4)[2] is False  # flat is not rising


@pytest.mark.slow
def test_a_crashing_stage_exits_non_zero_and_names_the_error(gpu_check, tmp_path, capsys):
    assert gpu_check.main(["--reduced", "--out", str(tmp_path), "--data", str(tmp_path / "no_such_build")]) == 1
    assert "gpu_check: FAILED with" in capsys.readouterr().err
    assert not (tmp_path / "report.json").exists()


@pytest.mark.slow
def test_the_reduced_check_trains_every_stage_and_reports_reward_rising(gpu_check, sample_build, tmp_path, capsys):
    assert gpu_check.main(["--reduced", "--out", str(tmp_path), "--data", str(sample_build[0])]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["stages"]) == {"sft", "rm", "ppo"}
    assert all(row["tokens_per_second"] > 0 and row["peak_gpu_memory_gib"] is None for row in report["stages"].values())
    assert 0.0 <= report["stages"]["rm"]["test_accuracy"] <= 1.0 and report["stages"]["ppo"]["saved_weights"] == "moving average"
    assert len(report["reward_kl_curve"]) == 8 and report["reward_rose"]
    assert report["reward_last_third"] > report["reward_first_third"]
    for stage in ("sft", "rm", "ppo"):
        assert json.loads((tmp_path / stage / "metrics.json").read_text())["stage"] == stage
