"""A review round for your own labelers: the prompts the classifier is least sure of, and a sample of each use case.

`instructkit taxonomy review --in PROMPTS --out review.jsonl` writes one row per prompt to label (`id`, `text`,
`predicted`, `confidence`, `margin`, `why`, and an empty `label`) as JSONL or CSV, with a guide beside it
(`review.guide.md`: the ten use cases, their definitions and tie-break rules). Labelers fill `label`; `instructkit
taxonomy train --labels review.jsonl [--default]` takes the file back (rows still without a label are skipped and
counted), and the model it writes carries its cross-validated accuracy on those labels, which the dataset cards of
a build with that model then report.

Why these prompts: the least sure (smallest gap between the two most likely use cases) are where a label teaches the
model most; the sample, the same number from each predicted use case (all of a use case when it has fewer), is
where the labels measure the model without that selection's bias (an accuracy on the least-sure prompts alone would
understate it).
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np

from builders.errors import InputError
from taxonomy.categories import CATEGORIES, DEFINITIONS, TIE_BREAKS

FOLDS = 5  # cross-validation folds for the accuracy on the user's labels (fewer when a use case has fewer labels)
COLUMNS = ("id", "text", "predicted", "confidence", "margin", "why", "label")
FORMATS = (".jsonl", ".csv")


def prompt_id(text: str) -> str:
    """A stable id for a prompt's text (the same prompt gets the same id in every round)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def select(texts: list[str], proba: np.ndarray, classes: list[str], *, unsure: int, sample: int, seed: int = 0) -> list[dict]:
    """The `unsure` prompts with the smallest margin, then a sample of up to `sample` more drawn evenly from each
    predicted use case among the rest; rows in that order, each saying why it was chosen."""
    if proba.shape[0] != len(texts):
        raise ValueError("one row of probabilities per text")
    top2 = np.sort(proba, axis=1)[:, -2:] if proba.shape[1] > 1 else np.hstack([np.zeros_like(proba), proba])
    margin = top2[:, 1] - top2[:, 0]
    best = proba.argmax(axis=1)
    order = np.lexsort((np.arange(len(texts)), margin))  # smallest margin first; ties by input order
    chosen = [(int(i), "least sure") for i in order[:unsure]]
    rest = order[unsure:]
    rng = np.random.default_rng(seed)
    pools = {c: [int(i) for i in rest if best[i] == c] for c in range(len(classes))}
    for pool in pools.values():
        rng.shuffle(pool)
    taken = {c: 0 for c in pools}
    left = sample
    while left > 0 and any(taken[c] < len(p) for c, p in pools.items()):  # one from each use case in turn
        for c, pool in pools.items():
            if left and taken[c] < len(pool):
                chosen.append((pool[taken[c]], f"sample of {classes[c]}"))
                taken[c] += 1
                left -= 1
    return [{"id": prompt_id(texts[i]), "text": texts[i], "predicted": classes[best[i]],
             "confidence": round(float(proba[i, best[i]]), 4), "margin": round(float(margin[i]), 4), "why": why, "label": ""}
            for i, why in chosen]


def guide() -> str:
    """The labelers' guide: the use cases, their definitions and the tie-break rules."""
    lines = ["# Labeling guide: the InstructGPT paper's Table 1 use cases", "",
             "Put exactly one of these names in each row's `label` (leave it empty to skip a row):", ""]
    lines += [f"- **{c}**: {DEFINITIONS[c]}" for c in CATEGORIES]
    lines += ["", "When two fit:", ""] + [f"- {rule}" for rule in TIE_BREAKS]
    lines += ["", "`predicted` is the classifier's guess: label the prompt as you read it, not to agree with it. Then:",
              "`instructkit taxonomy train --labels THIS_FILE --default --out my_model.skops`.", ""]
    return "\n".join(lines)


def guide_path(out: Path) -> Path:
    return out.with_name(out.stem + ".guide.md")


def write(rows: list[dict], out: str | Path) -> Path:
    """Write the rows as JSONL or CSV (by the suffix) and the guide beside them; returns the guide's path."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise InputError(f"writes {' or '.join(FORMATS)} files, not {out.suffix or 'a name without a suffix'}", flag="--out")
    if out.is_dir():
        raise InputError("is a folder: give a file name ending in .jsonl or .csv", flag="--out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8", newline="") as fh:
            if out.suffix.lower() == ".csv":
                writer = csv.DictWriter(fh, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
            else:
                fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        guide_path(out).write_text(guide(), encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write there: {exc.strerror or exc}", flag="--out") from None
    return guide_path(out)


def accuracy_on_labels(clf, labels_name: str, base: tuple[list[str], list[str]], mine: tuple[list[str], list[str], int], *,
                       features: str = "fast", seed: int = 0) -> dict:
    """The model's cross-validated accuracy (Wilson interval) and macro-F1 on the user's own labels `mine` (texts,
    labels, rows skipped unlabeled), each fold's model also trained on `base`: what a card built with it reports."""
    from evals.stats import wilson_ci
    from taxonomy.model import cv_predict_with_base, scores

    texts, labels, skipped = mine
    out = {"labels": labels_name, "rows": len(texts), "skipped_unlabeled": skipped}
    folds = min(FOLDS, min(labels.count(c) for c in set(labels)))
    if features == "tuned":
        return out | {"not_measured": "the tuned model would be fine-tuned once per fold; measure it with "
                      "`taxonomy eval --labels` on labels it was not trained on"}
    if folds < 2:
        return out | {"not_measured": "a use case has a single label: cross-validation needs two of each"}
    if not base[0] and clf.cv_pred and len(clf.cv_pred) == len(texts):
        pred = clf.cv_pred  # trained on these labels alone: its own cross-validation is this measurement
    else:
        pred = cv_predict_with_base(base, texts, labels, folds, seed=seed, features=features)
    right = sum(p == t for p, t in zip(pred, labels))
    lo, hi = wilson_ci(right, len(texts))
    return out | {"accuracy": round(right / len(texts), 4), "accuracy_ci": [round(lo, 4), round(hi, 4)],
                  "macro_f1": scores(labels, pred)["macro_f1"],
                  "method": f"{folds}-fold cross-validation on these labels" + (", each fold's model also trained on the "
                                                                               "shipped labels" if base[0] else "")}
