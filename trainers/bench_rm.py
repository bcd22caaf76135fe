"""Compare the reward model's K-way mode (the paper) with plain pairs: accuracy and time, same data and budget.

python -m trainers.bench_rm --data builders --out /tmp/bench_rm [--hh_dir ../shared/data/hh_rlhf] [--epochs 1]
Starts from a tiny SFT model trained offline on the built sample; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def run(data: Path, out: Path, hh_dir: str | None, epochs: int, seeds: list[int], kway_epochs: list[int]) -> list[dict]:
    from trl import ModelConfig, RewardConfig, SFTConfig

    from trainers import rm, sft
    from trainers.tiny import save_tiny

    common = dict(report_to=[], save_strategy="no", use_cpu=True, logging_steps=50, max_length=256)
    base = save_tiny(out / "base")
    sft.main(sft.SftArguments(dataset=str(data / "sft")),
             SFTConfig(output_dir=str(out / "sft"), num_train_epochs=3, learning_rate=3e-3, per_device_train_batch_size=8, seed=0, **common),
             ModelConfig(model_name_or_path=str(base)))
    rows = []
    for seed in seeds:
        runs = [("pairs", 16, epochs)] + [("kway", 4, e) for e in kway_epochs]
        for mode, batch, n_epochs in runs:
            m = rm.main(rm.RmArguments(dataset=str(data / "rm"), mode=mode, sft_dataset=None, hh_dir=hh_dir, max_eval_pairs=1000),
                        RewardConfig(output_dir=str(out / f"rm_{mode}_{n_epochs}_{seed}"), num_train_epochs=n_epochs, learning_rate=1e-3,
                                     per_device_train_batch_size=batch, seed=seed, **common),
                        ModelConfig(model_name_or_path=str(out / "sft")))
            rows.append({"mode": mode, "epochs": n_epochs, "seed": seed, "train_rows": m["train_rows"], "seconds": m["train_seconds"],
                         "validation_accuracy": m["validation_accuracy"], "hh_accuracy": m.get("hh_rlhf_test_accuracy")})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default="builders")
    p.add_argument("--out", default="/tmp/bench_rm")
    p.add_argument("--hh_dir")
    p.add_argument("--epochs", type=int, default=1, help="epochs of pairs mode")
    p.add_argument("--kway_epochs", type=int, nargs="+", default=[1, 5], help="epochs of K-way mode (1: same data, 5: about same time)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    a = p.parse_args()
    rows = run(Path(a.data), Path(a.out), a.hh_dir, a.epochs, a.seeds, a.kway_epochs)
    print("| mode | epochs | seed | training rows | train seconds | validation pair accuracy | HH-RLHF test accuracy |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        hh = f"{r['hh_accuracy']:.3f}" if r["hh_accuracy"] is not None else "–"
        print(f"| {r['mode']} | {r['epochs']} | {r['seed']} | {r['train_rows']} | {r['seconds']:.1f} | {r['validation_accuracy']:.3f} | {hh} |")
    Path(a.out, "bench_rm.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
