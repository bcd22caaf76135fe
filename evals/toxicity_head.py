"""The learned toxicity scorer (`minilm`) and the check of every offline scorer against people.

`minilm`: MiniLM sentence embeddings (all-MiniLM-L6-v2, offline) and a logistic-regression head trained on the
RealToxicityPrompts texts (prompts and human continuations) with Perspective's score >= 0.5 as the label. The head
ships with the package (`evals/model/toxicity-minilm.skops`); `instructkit eval train-toxicity` retrains it from any
copy of the data and measures it.

`validate_against_people` scores every offline scorer, in the same run, on labels people gave (never on the data the
head was trained on):
- OpenAssistant messages with their labelers' toxicity rating (oasst1; toxic = the mean rating >= 0.5);
- HH-RLHF harmless-base pairs: people chose the less harmful reply; agreement = how often the scorer rates the
  rejected reply more toxic (ties count a half);
- TruthfulQA's "Stereotypes" answers: the false answers are stereotypes about a group of people that the TruthfulQA
  authors wrote, the true ones are not (a probe of implicit bias, which a profanity model cannot see);
and on Perspective's scores of RealToxicityPrompts, held out by RTP row for the learned head.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHIPPED = HERE / "model" / "toxicity-minilm.skops"
FOLDS = 5
THRESHOLD = 0.5


def _embed(texts: list[str]) -> np.ndarray:
    from taxonomy.features import SentenceEmbedder

    return SentenceEmbedder(weight=1.0, max_length=256).transform(texts)


def _head(seed: int = 0):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=4.0, max_iter=3000, random_state=seed)


def train_head(data_dir: Path, seed: int = 0) -> tuple[object, dict]:
    """The head trained on every RTP text, and its agreement with Perspective on RTP rows it never saw (5 folds by
    row: a prompt and its continuation stay together)."""
    from sklearn.metrics import roc_auc_score

    from evals.toxicity import rtp_texts

    texts, scores, rows = rtp_texts(data_dir)
    X, y = _embed(texts), scores >= THRESHOLD
    fold = np.array([int(hashlib.sha256(r.encode("utf-8")).hexdigest(), 16) % FOLDS for r in rows])
    held_out = np.zeros(len(y))
    for f in range(FOLDS):
        held_out[fold == f] = _head(seed).fit(X[fold != f], y[fold != f]).predict_proba(X[fold == f])[:, 1]
    info = {"texts": len(texts), "toxic_share": float(y.mean()), "roc_auc_vs_perspective_held_out": float(roc_auc_score(y, held_out)),
            "held_out": f"{FOLDS} folds by RealToxicityPrompts row"}
    return _head(seed).fit(X, y), info


def save_head(model, info: dict, path: Path) -> None:
    import skops.io as sio

    path.parent.mkdir(parents=True, exist_ok=True)
    sio.dump(model, path)
    path.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")


def load_head(path: Path = SHIPPED):
    import skops.io as sio

    if not Path(path).exists():
        from builders.errors import InputError

        raise InputError(f"{path}: no toxicity head there (`instructkit eval train-toxicity` writes one)")
    return sio.load(path, trusted=sio.get_untrusted_types(file=path))


def human_probes(data_dir: Path) -> dict[str, tuple]:
    """The human-labeled probes that exist under data_dir: name → (texts, labels) for AUC probes, (chosen, rejected)
    for the HH pairs."""
    data_dir = Path(data_dir)
    out = {}
    oasst = data_dir / "oasst1_en_validation" / "oasst1_en_validation.jsonl"
    if oasst.exists():
        texts, labels = [], []
        with open(oasst, encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                lab = r.get("labels") or {}
                if "toxicity" in (lab.get("name") or []) and r.get("text"):
                    texts.append(r["text"])
                    labels.append(lab["value"][lab["name"].index("toxicity")] >= THRESHOLD)
        if any(labels) and not all(labels):
            out["oasst1 labelers' toxicity"] = (texts, np.asarray(labels))
    hh = data_dir / "hh_rlhf" / "harmless-base" / "test.jsonl.gz"
    if hh.exists():
        chosen, rejected = [], []
        with gzip.open(hh, "rt", encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                chosen.append(r["chosen"].rsplit("\n\nAssistant:", 1)[-1].strip())
                rejected.append(r["rejected"].rsplit("\n\nAssistant:", 1)[-1].strip())
        out["HH-RLHF harmless pairs"] = (chosen, rejected)
    tq = data_dir / "truthfulqa" / "TruthfulQA_v0_original.csv"
    if tq.exists():
        texts, labels = [], []
        with open(tq, encoding="utf-8-sig") as fh:
            for r in csv.DictReader(fh):
                if r["Category"] != "Stereotypes":
                    continue
                for col, lab in (("Incorrect Answers", True), ("Correct Answers", False)):
                    for a in r[col].split(";"):
                        if a.strip():
                            texts.append(a.strip())
                            labels.append(lab)
        if any(labels) and not all(labels):
            out["TruthfulQA stereotypes"] = (texts, np.asarray(labels))
    return out


def _auc_ci(labels: np.ndarray, scores: np.ndarray, seed: int, n_boot: int = 500) -> dict:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(labels), len(labels))
        if labels[i].any() and not labels[i].all():
            boots.append(roc_auc_score(labels[i], scores[i]))
    return {"value": float(roc_auc_score(labels, scores)), "ci95": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))],
            "n": int(len(labels)), "positives": int(labels.sum())}


def _pair_ci(chosen: np.ndarray, rejected: np.ndarray, seed: int, n_boot: int = 500) -> dict:
    from evals.stats import bootstrap_ci

    agree = (rejected > chosen) + 0.5 * (rejected == chosen)
    return {"value": float(agree.mean()), "ci95": list(bootstrap_ci(agree.astype(float), seed=seed)), "n": int(len(agree)),
            "ties": int((rejected == chosen).sum())}


def validate_against_people(scorers, data_dir: Path, seed: int = 0) -> dict:
    """name → probe → agreement with a 95% bootstrap interval, for each scorer, on every human probe found."""
    probes = human_probes(data_dir)
    out = {}
    for scorer in scorers:
        res = {}
        for name, (a, b) in probes.items():
            if name.startswith("HH"):
                res[name] = _pair_ci(scorer.score(a), scorer.score(b), seed)
            else:
                res[name] = _auc_ci(b, scorer.score(a), seed)
        out[scorer.name] = res
    return out
