"""Classifier throughput: `instructkit classify` on a file of N prompts (default 100k) made from the sample.

OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python -m taxonomy.bench --n 100000 [--model embed | --model FILE.skops]
Prints a Markdown table: rows, seconds for the whole command (read, classify, write) and for prediction alone.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--model", default="fast", help="fast (default), embed or a skops file (e.g. a tuned model)")
    a = p.parse_args()
    from instructkit.cli import main as cli
    from builders.sources.files import SAMPLE_DIR
    from taxonomy.model import load_model

    texts = [json.loads(line)["text"] for line in open(SAMPLE_DIR / "prompts.jsonl", encoding="utf-8")]
    rows = [texts[i % len(texts)] for i in range(a.n)]
    clf = load_model(a.model)  # a shipped model is loaded once, outside the timings (a file is read again by the command)
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / "in.jsonl", Path(d) / "out.parquet"
        src.write_text("".join(json.dumps({"text": t}) + "\n" for t in rows), encoding="utf-8")
        t0 = time.perf_counter()
        cli(["classify", "--in", str(src), "--out", str(out), "--model", a.model, "--quiet"])
        whole = time.perf_counter() - t0
    t0 = time.perf_counter()
    clf.predict(rows)
    predict = time.perf_counter() - t0
    mean_chars = sum(map(len, rows)) / len(rows)
    print("| model | prompts | mean characters | `instructkit classify` s | prompts/s | predict only s | prompts/s |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {Path(a.model).stem} | {a.n:,} | {mean_chars:.0f} | {whole:.1f} | {a.n / whole:,.0f} | {predict:.1f} | {a.n / predict:,.0f} |")


if __name__ == "__main__":
    main()
