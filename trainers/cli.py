"""`instructkit train sft|rm|ppo [--config FILE] [overrides]` and `instructkit train all --tiny --out DIR`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

STAGES = ("sft", "rm", "ppo")


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train SFT, RM or PPO on the built datasets (settings: YAML + overrides)",
                       description="instructkit train sft|rm|ppo --config trainers/configs/STAGE.yaml [--key value ...]; "
                                   "instructkit train all --tiny --out DIR")
    p.add_argument("stage", choices=[*STAGES, "all"])
    p.add_argument("--tiny", action="store_true", help="with `all`: a tiny model made offline, a CPU smoke run")
    p.add_argument("--data", default="builders", help="with `all`: folder holding sft/ rm/ ppo/ (built from the sample if missing)")
    p.add_argument("--out", help="with `all`: folder for the sft/ rm/ ppo/ checkpoints")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args, rest: list[str]) -> int:
    if args.stage == "all":
        if not args.tiny or not args.out:
            raise SystemExit("instructkit train all needs --tiny and --out DIR (real runs: train each stage with its config)")
        summary = train_all_tiny(Path(args.out), Path(args.data))
        print(json.dumps(summary, indent=2))
        return 0
    module = {"sft": "trainers.sft", "rm": "trainers.rm", "ppo": "trainers.ppo"}[args.stage]
    mod = __import__(module, fromlist=["main", "make_parser"])
    config = next((rest[i + 1] for i, a in enumerate(rest[:-1]) if a == "--config"), None)
    if config is not None and not Path(config).is_file():
        from builders.errors import InputError

        raise InputError("config file not found", file=config, flag="--config")
    parsed = mod.make_parser().parse_args_and_config(args=rest)
    metrics = mod.main(*parsed)
    print(json.dumps({k: v for k, v in metrics.items() if k not in ("history", "loss_curve", "settings", "reward_curve")}, indent=2, default=str))
    return 0


def train_all_tiny(out: Path, data: Path) -> dict:
    """SFT → RM (K-way) → PPO-ptx on the built sample with a tiny model, in a few minutes on 2 CPU cores."""
    from trl import ModelConfig, RewardConfig, SFTConfig

    from trainers import ppo, rm, sft
    from trainers.tiny import sample_texts, save_tiny

    if not all((data / n / "README.md").exists() for n in STAGES):
        from builders.pipeline import build
        from builders.settings import BuildSettings

        build(BuildSettings(out=str(data)))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    base = save_tiny(out / "base")
    common = dict(report_to=[], save_strategy="no", use_cpu=True, logging_steps=10, max_length=256, seed=0)
    m_sft = sft.main(sft.SftArguments(dataset=str(data / "sft")),
                     SFTConfig(output_dir=str(out / "sft"), num_train_epochs=3, learning_rate=3e-3, per_device_train_batch_size=8, **common),
                     ModelConfig(model_name_or_path=str(base)))
    m_rm = rm.main(rm.RmArguments(dataset=str(data / "rm"), mode="kway", sft_dataset=str(data / "sft")),
                   RewardConfig(output_dir=str(out / "rm"), num_train_epochs=1, learning_rate=1e-3, per_device_train_batch_size=4, **common),
                   ModelConfig(model_name_or_path=str(out / "sft")))
    ptx = out / "ptx.jsonl"
    ptx.write_text("".join(json.dumps({"text": t}) + "\n" for t in sample_texts(2000)), encoding="utf-8")
    m_ppo = ppo.main(ppo.PpoArguments(policy=str(out / "sft"), reward_model=str(out / "rm"), dataset=str(data / "ppo"),
                                      output_dir=str(out / "ppo"), total_episodes=128, rollout_batch_size=16, mini_batch_size=8,
                                      max_new_tokens=32, learning_rate=1e-4, ptx_coef=1.0, ptx_dataset=str(ptx), log_every=4))
    return {"seconds": round(time.perf_counter() - t0, 1), "sft_eval_loss": m_sft.get("eval_loss"),
            "rm_validation_accuracy": m_rm.get("validation_accuracy"), "rm_reward_offset": m_rm["reward_offset"],
            "ppo_first_mean_score": m_ppo["first_mean_score"], "ppo_last_mean_score": m_ppo["last_mean_score"],
            "checkpoints": {n: str(out / n) for n in STAGES}}
