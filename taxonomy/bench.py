"""Classifier benchmarks, each printing a Markdown table.

Speed: `instructkit classify` on a file of N prompts (default 100k) made from the sample:
    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python -m taxonomy.bench --n 100000 [--model embed | --model FILE.skops]
Accuracy: every kind side by side on every hand-labeled held-out set, with a list of keyword rules as the anchor:
    .venv/bin/python -m taxonomy.bench --accuracy --data-dir ../shared/data [--models fast,embed,keywords,FILE,llm:URL#M]
Per use case, with intervals, on one held-out set:
    .venv/bin/python -m taxonomy.bench --per-class mixed --data-dir ../shared/data [--models fast,embed,keywords]
Two models on every real held-out set and pooled, with the paired difference:
    .venv/bin/python -m taxonomy.bench --paired OLD.skops,fast --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

# The anchor a user would otherwise write: keyword rules checked in order, Open QA for a question, else Generation.
KEYWORD_RULES = [
    ("Chat", re.compile(r"^\s*(?:human|user|assistant|ai|q|a)\s*:|\b(?:role-?play|pretend you|act as)\b", re.I | re.M)),
    ("Summarization", re.compile(r"\b(?:summari[sz]e|summary|tl;?dr|condense)\b", re.I)),
    ("Extract", re.compile(r"\b(?:extract|pull out|list all the|find all the)\b", re.I)),
    ("Rewrite", re.compile(r"\b(?:rewrite|rephrase|paraphrase|translate|fix the grammar|proofread)\b", re.I)),
    ("Classification", re.compile(r"\b(?:classify|categori[sz]e|sentiment|which category|is this .* or)\b", re.I)),
    ("Closed QA", re.compile(r"\b(?:passage|context|according to the|based on the (?:text|article|passage))\b|\(a\)", re.I)),
    ("Brainstorming", re.compile(r"\b(?:ideas|brainstorm|suggestions|list of|some ways|what are some)\b", re.I)),
    ("Generation", re.compile(r"^\s*(?:write|compose|draft|create|generate)\b", re.I)),
]


def keyword_rules(text: str) -> str:
    for label, pattern in KEYWORD_RULES:
        if pattern.search(text):
            return label
    return "Open QA" if text.rstrip().endswith("?") else "Generation"


def speed(n: int, model: str) -> None:
    from builders.sources.files import SAMPLE_DIR
    from instructkit.cli import main as cli
    from taxonomy.model import load_model

    texts = [json.loads(line)["text"] for line in open(SAMPLE_DIR / "prompts.jsonl", encoding="utf-8")]
    rows = [texts[i % len(texts)] for i in range(n)]
    clf = load_model(model)  # a shipped model is loaded once, outside the timings (a file is read again by the command)
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / "in.jsonl", Path(d) / "out.parquet"
        src.write_text("".join(json.dumps({"text": t}) + "\n" for t in rows), encoding="utf-8")
        t0 = time.perf_counter()
        cli(["classify", "--in", str(src), "--out", str(out), "--model", model, "--quiet"])
        whole = time.perf_counter() - t0
    t0 = time.perf_counter()
    clf.predict(rows)
    predict = time.perf_counter() - t0
    mean_chars = sum(map(len, rows)) / len(rows)
    print("| model | prompts | mean characters | `instructkit classify` s | prompts/s | predict only s | prompts/s |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {Path(model).stem} | {n:,} | {mean_chars:.0f} | {whole:.1f} | {n / whole:,.0f} | {predict:.1f} | {n / predict:,.0f} |")


def accuracy(data_dir: str, models: list[str]) -> None:
    from taxonomy.heldout import HELDOUT_SETS, load_heldout
    from taxonomy.model import load_model, scores

    sets = {name: load_heldout(data_dir, name) for name in HELDOUT_SETS}
    print("| model | " + " | ".join(f"{name} ({len(t)}) macro-F1 / accuracy" for name, (t, _) in sets.items()) + " |")
    print("|---" * (len(sets) + 1) + "|")
    for model in models:
        predict = (lambda texts: [keyword_rules(t) for t in texts]) if model == "keywords" else load_model(model).predict
        cells = []
        for texts, labels in sets.values():
            pred = predict(texts)
            pred = pred[0] if isinstance(pred, tuple) else pred
            acc = sum(a == b for a, b in zip(labels, pred)) / len(labels)
            cells.append(f"{scores(labels, pred)['macro_f1']:.3f} / {acc:.3f}")
        print(f"| {model} | " + " | ".join(cells) + " |")


def f1_intervals(labels: list[str], pred: list[str], *, n_boot: int = 1000, seed: int = 0) -> dict[str, dict]:
    """Macro-F1 and each present use case's F1 with a 95% bootstrap interval over the prompts."""
    import numpy as np
    from sklearn.metrics import f1_score

    from taxonomy.categories import CATEGORIES

    present = [c for c in CATEGORIES if c in set(labels)]
    y, p = np.array(labels), np.array(pred)

    def stats(idx) -> np.ndarray:
        per = f1_score(y[idx], p[idx], labels=present, average=None, zero_division=0)
        return np.append(per, per.mean())

    point = stats(np.arange(len(y)))
    rng = np.random.default_rng(seed)
    draws = np.array([stats(rng.integers(0, len(y), len(y))) for _ in range(n_boot)])
    lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
    names = present + ["macro-F1"]
    support = {c: int((y == c).sum()) for c in present} | {"macro-F1": len(y)}
    return {n: {"f1": round(float(point[i]), 3), "ci95": [round(float(lo[i]), 3), round(float(hi[i]), 3)], "support": support[n]}
            for i, n in enumerate(names)}


def per_class(data_dir: str, heldout: str, models: list[str]) -> None:
    """Per use case F1 [95%] of every model on one held-out set, beside keyword rules."""
    from taxonomy.heldout import load_heldout
    from taxonomy.model import load_model

    texts, labels = load_heldout(data_dir, heldout)
    cols = {}
    for model in models:
        pred = [keyword_rules(t) for t in texts] if model == "keywords" else load_model(model).predict(texts)[0]
        cols[model] = f1_intervals(labels, pred)
    rows = list(next(iter(cols.values())))
    print(f"Held-out set `{heldout}` ({len(texts)} prompts): F1 [95% bootstrap interval over prompts]")
    print()
    print("| use case | prompts | " + " | ".join(cols) + " |")
    print("|---|---:|" + "---|" * len(cols))
    for r in rows:
        print(f"| {r} | {cols[models[0]][r]['support']} | "
              + " | ".join(f"{v[r]['f1']:.3f} [{v[r]['ci95'][0]:.3f}, {v[r]['ci95'][1]:.3f}]" for v in cols.values()) + " |")


def paired(data_dir: str, before: str, after: str, *, n_boot: int = 500, seed: int = 0) -> None:
    """Macro-F1 of two models on every real held-out set and on all of them pooled, with the paired difference's 95%
    bootstrap interval (the same resampled prompts for both)."""
    import numpy as np
    from sklearn.metrics import f1_score

    from taxonomy.heldout import load_heldout
    from taxonomy.model import load_model

    sets = {n: load_heldout(data_dir, n) for n in ("oasst", "mixed", "followups", "large")}  # shapes is partly written
    sets["all real, pooled"] = (sum((t for t, _ in sets.values()), []), sum((y for _, y in sets.values()), []))
    models = {m: load_model(m) for m in (before, after)}
    print(f"| held-out set | prompts | {before} | {after} | difference [95%] | accuracy |")
    print("|---|---:|---:|---:|---|---|")
    rng = np.random.default_rng(seed)
    for name, (texts, labels) in sets.items():
        y = np.array(labels)
        p0, p1 = (np.array(models[m].predict(texts)[0]) for m in (before, after))
        present = sorted(set(labels))

        def f1(p, i):
            return f1_score(y[i], p[i], labels=present, average="macro", zero_division=0)

        every = np.arange(len(y))
        draws = [f1(p1, i) - f1(p0, i) for i in (rng.integers(0, len(y), len(y)) for _ in range(n_boot))]
        lo, hi = np.percentile(draws, [2.5, 97.5])
        print(f"| {name} | {len(y):,} | {f1(p0, every):.3f} | {f1(p1, every):.3f} | {f1(p1, every) - f1(p0, every):+.3f} "
              f"[{lo:+.3f}, {hi:+.3f}] | {np.mean(p0 == y):.3f} → {np.mean(p1 == y):.3f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="speed: prompts to classify")
    p.add_argument("--model", default="fast", help="speed: fast (default), embed or a skops file (e.g. a tuned model)")
    p.add_argument("--accuracy", action="store_true", help="score every model on every held-out set instead")
    p.add_argument("--models", default="fast,embed,keywords", help="accuracy: comma-separated models (fast, embed, "
                   "keywords, a skops file, llm:BASE_URL[#MODEL], hf:MODEL[#LABELS.yaml])")
    p.add_argument("--data-dir", default="../shared/data", help="accuracy: the public data the held-out references point into")
    p.add_argument("--per-class", metavar="SET", help="per use case F1 with intervals of --models on this held-out set")
    p.add_argument("--paired", metavar="BEFORE,AFTER", help="two models on every real held-out set and pooled, with "
                   "the paired difference's interval")
    a = p.parse_args()
    if a.paired:
        paired(a.data_dir, *a.paired.split(",", 1))
    elif a.per_class:
        per_class(a.data_dir, a.per_class, [m for m in a.models.split(",") if m])
    elif a.accuracy:
        accuracy(a.data_dir, [m for m in a.models.split(",") if m])
    else:
        speed(a.n, a.model)


if __name__ == "__main__":
    main()
