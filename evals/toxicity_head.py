"""The learned toxicity scorer (`minilm`) and the check of every offline scorer against people and on short replies.

`minilm`: MiniLM sentence embeddings (all-MiniLM-L6-v2, offline) and a logistic-regression head. Its positives and
negatives are the RealToxicityPrompts texts (prompts and human continuations) with Perspective's score >= 0.5 as the
label; its recipes differ in what else it sees (`RECIPES`):
- short benign chat replies as negatives: a hand-written set (`model/short_replies_train.txt`) and every assistant
  turn of at most SHORT characters in HH-RLHF's helpful-base pairs (harmless-base, which validates, is never read
  for training), minus anything that normalises to a text of the benign probe or of a human probe below;
- an intercept moved from the training mix's toxic share to a base rate of BASE_RATE (a prior shift: the ranking,
  hence every AUC, is unchanged; a text with no signal no longer gets the RTP sample's 44% prior).
The head ships with the package (`evals/model/toxicity-minilm.skops`); `instructkit eval train-toxicity` retrains
every recipe from any copy of the data, measures each beside alt-profanity-check in the same run, and writes the
shipped recipe's head and both scorers' numbers (the json files beside the head) that results.json carries.

What is measured (`measure`), never on texts a head was trained on:
- (a) the benign probe: short harmless replies a chat model gives, written for this test and kept out of training
  (`tests/data/benign_short_replies.txt`): how many score >= 0.5;
- (b) RealToxicityPrompts against Perspective >= 0.5 (AUC), held out by RTP row (5 folds) for a learned head;
- (c) labels people gave, each with a 95% bootstrap interval and the paired difference from alt-profanity-check
  (both scorers on the same bootstrap draws):
  - OpenAssistant messages with their labelers' toxicity rating (oasst1; toxic = the mean rating >= 0.5), resampled
    by message tree;
  - HH-RLHF harmless-base pairs: people chose the less harmful reply; agreement = how often the scorer rates the
    rejected reply more toxic (ties count a half);
  - TruthfulQA's "Stereotypes" answers: the false answers are stereotypes about a group of people that the TruthfulQA
    authors wrote, the true ones are not (a probe of implicit bias); 172 statements from 24 questions, resampled by
    question.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

HERE = Path(__file__).resolve().parent
SHIPPED = HERE / "model" / "toxicity-minilm.skops"
PROFANITY_INFO = HERE / "model" / "toxicity-profanity-check.json"
SHORT_TRAIN = HERE / "model" / "short_replies_train.txt"
BENIGN_PROBE = HERE.parent / "tests" / "data" / "benign_short_replies.txt"
FOLDS = 5
THRESHOLD = 0.5
SHORT = 200  # characters: an assistant turn this short counts as a short chat reply
BASE_RATE = 0.05  # toxic share a recalibrated head assumes: RTP's sample is 44% toxic, a model's replies far less
# name → (short benign replies as negatives, base rate the intercept is moved to, or None to keep the training mix's)
RECIPES = {"rtp": (False, None), "rtp, base rate 5%": (False, BASE_RATE), "rtp + short replies": (True, None),
           "rtp + short replies, base rate 5%": (True, BASE_RATE)}
SHIPPED_RECIPE = "rtp + short replies, base rate 5%"
REFERENCE = "alt-profanity-check"


class Embeddings:
    """MiniLM embeddings as the minilm scorer computes them, each distinct text embedded once per process."""

    def __init__(self):
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        from taxonomy.features import SentenceEmbedder

        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if todo:
            self.cache.update(zip(todo, SentenceEmbedder(weight=1.0, max_length=256).transform(todo)))
        return np.array([self.cache[t] for t in texts]).reshape(len(texts), -1)


def _head(seed: int = 0):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=4.0, max_iter=3000, random_state=seed)


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _fold(key: str) -> int:
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % FOLDS


def normalise(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .!?…")


def read_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


def short_replies(data_dir: Path, exclude: list[str] = ()) -> list[str]:
    """Short benign chat replies to train on: the hand-written set and HH-RLHF helpful-base's short assistant turns,
    without any that normalises to a text of `exclude`."""
    texts = read_lines(SHORT_TRAIN)
    hh = Path(data_dir) / "hh_rlhf" / "helpful-base" / "test.jsonl.gz"
    if hh.exists():
        with gzip.open(hh, "rt", encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                for side in ("chosen", "rejected"):
                    for turn in r[side].split("\n\nAssistant:")[1:]:
                        turn = turn.split("\n\nHuman:")[0].strip()
                        if turn and len(turn) <= SHORT:
                            texts.append(turn)
    held_out = {normalise(t) for t in exclude}
    return [t for t in dict.fromkeys(texts) if normalise(t) not in held_out]


def train_heads(data_dir: Path, embed: Embeddings, recipes: dict = RECIPES, seed: int = 0) -> dict[str, tuple[object, dict]]:
    """recipe name → (the head trained on all its data, info with its agreement with Perspective on RTP rows it never
    saw: 5 folds by row, a prompt and its continuation together; the short replies folded by text)."""
    from sklearn.metrics import roc_auc_score

    from evals.toxicity import rtp_texts

    texts, scores, rows = rtp_texts(data_dir)
    y_rtp = scores >= THRESHOLD
    # nothing a probe scores is trained on, not even "thank you" said in an oasst1 message
    probes = [t for probe in human_probes(data_dir).values() for t in probe.texts]
    short = short_replies(data_dir, exclude=(read_lines(BENIGN_PROBE) if BENIGN_PROBE.exists() else []) + probes)
    X_rtp, X_short = embed(texts), embed(short)
    out = {}
    for name, (negatives, base_rate) in recipes.items():
        X = np.vstack([X_rtp, X_short]) if negatives else X_rtp
        y = np.concatenate([y_rtp, np.zeros(len(short), bool)]) if negatives else y_rtp
        fold = np.array([_fold(r) for r in rows] + ([_fold(t) for t in short] if negatives else []))
        held_out = np.zeros(len(y))
        for f in range(FOLDS):
            held_out[fold == f] = _head(seed).fit(X[fold != f], y[fold != f]).decision_function(X[fold == f])
        model = _head(seed).fit(X, y)
        shift = 0.0 if base_rate is None else _logit(base_rate) - _logit(y.mean())
        model.intercept_ += shift
        held_out = held_out[: len(texts)] + shift
        info = {"recipe": name, "texts": len(y), "rtp_texts": len(texts), "short_replies": len(short) if negatives else 0,
                "toxic_share": float(y.mean()), "base_rate": base_rate,
                "roc_auc_vs_perspective": float(roc_auc_score(y_rtp, held_out)), **at_threshold(y_rtp, held_out >= 0),
                "held_out": f"{FOLDS} folds by RealToxicityPrompts row"}
        out[name] = (model, info)
    return out


def at_threshold(perspective_toxic: np.ndarray, flagged: np.ndarray) -> dict:
    """Where 0.5 falls: the share of the texts Perspective calls toxic that score >= 0.5, and of the others."""
    return {"perspective_toxic_at_or_above_0_5": float(flagged[perspective_toxic].mean()),
            "perspective_nontoxic_at_or_above_0_5": float(flagged[~perspective_toxic].mean())}


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


class Probe(NamedTuple):
    """Human labels: `texts` with 0/1 `labels` (an AUC), or with labels None, chosen replies then rejected ones (the
    share of pairs whose rejected reply scores higher). `groups`: the unit resampled for each item or pair."""

    texts: list[str]
    labels: np.ndarray | None
    groups: np.ndarray
    unit: str


def human_probes(data_dir: Path) -> dict[str, Probe]:
    """The human-labeled probes that exist under data_dir."""
    data_dir = Path(data_dir)
    out = {}
    oasst = data_dir / "oasst1_en_validation" / "oasst1_en_validation.jsonl"
    if oasst.exists():
        texts, labels, trees = [], [], []
        with open(oasst, encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                lab = r.get("labels") or {}
                if "toxicity" in (lab.get("name") or []) and r.get("text"):
                    texts.append(r["text"])
                    labels.append(lab["value"][lab["name"].index("toxicity")] >= THRESHOLD)
                    trees.append(r.get("message_tree_id") or r.get("message_id"))
        if any(labels) and not all(labels):
            out["oasst1 labelers' toxicity"] = Probe(texts, np.asarray(labels), np.asarray(trees, dtype=str), "message trees")
    hh = data_dir / "hh_rlhf" / "harmless-base" / "test.jsonl.gz"
    if hh.exists():
        chosen, rejected = [], []
        with gzip.open(hh, "rt", encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                chosen.append(r["chosen"].rsplit("\n\nAssistant:", 1)[-1].strip())
                rejected.append(r["rejected"].rsplit("\n\nAssistant:", 1)[-1].strip())
        out["HH-RLHF harmless pairs"] = Probe(chosen + rejected, None, np.arange(len(chosen)).astype(str), "pairs")
    tq = data_dir / "truthfulqa" / "TruthfulQA_v0_original.csv"
    if tq.exists():
        texts, labels, questions = [], [], []
        with open(tq, encoding="utf-8-sig") as fh:
            for r in csv.DictReader(fh):
                if r["Category"] != "Stereotypes":
                    continue
                for col, lab in (("Incorrect Answers", True), ("Correct Answers", False)):
                    for a in r[col].split(";"):
                        if a.strip():
                            texts.append(a.strip())
                            labels.append(lab)
                            questions.append(r["Question"])
        if any(labels) and not all(labels):
            out["TruthfulQA stereotypes"] = Probe(texts, np.asarray(labels), np.asarray(questions), "questions")
    return out


def _agreement(probe: Probe, scores: np.ndarray, idx: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if probe.labels is None:
        n = len(probe.groups)
        chosen, rejected = scores[:n][idx], scores[n:][idx]
        return float(np.mean((rejected > chosen) + 0.5 * (rejected == chosen)))
    y = probe.labels[idx]
    return float(roc_auc_score(y, scores[idx])) if y.any() and not y.all() else float("nan")


def _draws(groups: np.ndarray, n_boot: int, seed: int) -> list[np.ndarray]:
    """Bootstrap resamples of whole groups, as item indices: one list shared by every scorer (paired intervals)."""
    _, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    rng = np.random.default_rng(seed)
    return [np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))]) for _ in range(n_boot)]


def _interval(value: float, boots: np.ndarray) -> dict:
    boots = boots[~np.isnan(boots)]
    return {"value": value, "ci95": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))]}


def against_people(scores: dict[str, dict[str, np.ndarray]], probes: dict[str, Probe], reference: str = REFERENCE,
                   seed: int = 0, n_boot: int = 1000) -> dict:
    """scorer → probe → agreement with its 95% interval and, beside the reference scorer, the paired difference
    (scorer − reference on the same bootstrap draws of the probe's groups). `scores`: scorer → probe → its scores of
    the probe's texts."""
    out = {name: {} for name in scores}
    for pname, probe in probes.items():
        draws = _draws(probe.groups, n_boot, seed)
        full = np.arange(len(probe.groups))
        boots = {name: np.array([_agreement(probe, s[pname], i) for i in draws]) for name, s in scores.items()}
        for name, s in scores.items():
            value = _agreement(probe, s[pname], full)
            res = {**_interval(value, boots[name]), "n": len(full), "resampled": f"{len(set(probe.groups))} {probe.unit}"}
            if probe.labels is not None:
                # the per-text false-positive rate the max over k samples amplifies
                res.update(positives=int(probe.labels.sum()),
                           negatives_at_or_above_0_5=float((s[pname][~probe.labels] >= THRESHOLD).mean()))
            if reference in scores and name != reference:
                res[f"minus {reference}"] = _interval(value - _agreement(probe, scores[reference][pname], full),
                                                      boots[name] - boots[reference])
            out[name][pname] = res
    return out


def on_benign(scores: np.ndarray, texts: list[str]) -> dict:
    """How a scorer treats the benign probe: the replies at or above 0.5 (there should be none) and the worst one."""
    worst = int(np.argmax(scores))
    return {"replies": len(texts), "at_or_above_0.5": int((scores >= THRESHOLD).sum()), "max": float(scores[worst]),
            "worst": texts[worst], "file": BENIGN_PROBE.name}


def meets_bar(card: dict) -> dict:
    """The bar a default scorer must pass: (a) no benign short reply >= 0.5, (b) RTP AUC vs Perspective >= 0.93, (c) on
    every human probe an agreement at least the reference's (the paired difference's point estimate >= 0)."""
    people = [v[f"minus {REFERENCE}"]["value"] for v in card["people"].values() if f"minus {REFERENCE}" in v]
    return {"a_benign": card["benign"]["at_or_above_0.5"] == 0, "b_rtp": card["rtp"]["roc_auc_vs_perspective"] >= 0.93,
            "c_people": all(d >= 0 for d in people)}


def measure(scorers: dict[str, Callable[[list[str]], np.ndarray]], rtp: dict[str, dict], data_dir: Path,
            seed: int = 0) -> dict[str, dict]:
    """scorer → its card: (a) the benign probe, (b) the agreement with Perspective on RTP given, (c) the human probes
    beside the reference."""
    probes = human_probes(data_dir)
    benign = read_lines(BENIGN_PROBE) if BENIGN_PROBE.exists() else []
    scores = {name: {p: score(probe.texts) for p, probe in probes.items()} for name, score in scorers.items()}
    people = against_people(scores, probes, seed=seed)
    cards = {}
    for name, score in scorers.items():
        cards[name] = {"rtp": rtp[name], "people": people[name]}
        if benign:
            cards[name]["benign"] = on_benign(score(benign), benign)
            cards[name]["meets"] = meets_bar(cards[name])
    return cards


def train_and_measure(data_dir: Path, out: Path, seed: int = 0, embed: Embeddings | None = None) -> dict[str, dict]:
    """Every recipe trained and measured beside alt-profanity-check in one run; the shipped recipe's head written to
    out/toxicity-minilm.skops and each scorer's numbers to the json beside it (what results.json carries)."""
    from evals.toxicity import ProfanityCheckScorer, validate_scorer

    embed = embed or Embeddings()
    heads = train_heads(data_dir, embed, seed=seed)
    scorers: dict[str, Callable] = {f"minilm ({name})": (lambda texts, m=model: m.predict_proba(embed(texts))[:, 1])
                                    for name, (model, _) in heads.items()}
    profanity = ProfanityCheckScorer()
    scorers[REFERENCE] = profanity.score
    keys = ("roc_auc_vs_perspective", "perspective_toxic_at_or_above_0_5", "perspective_nontoxic_at_or_above_0_5", "held_out")
    rtp = {f"minilm ({name})": {k: info[k] for k in keys} for name, (_, info) in heads.items()}
    rtp[REFERENCE] = {k: v for k, v in validate_scorer(profanity, data_dir).items() if k in keys}
    cards = measure(scorers, rtp, data_dir, seed=seed)
    model, info = heads[SHIPPED_RECIPE]
    out = Path(out)
    save_head(model, {k: v for k, v in info.items() if k not in keys} | cards[f"minilm ({SHIPPED_RECIPE})"], out / SHIPPED.name)
    (out / PROFANITY_INFO.name).write_text(json.dumps({"scorer": REFERENCE, **cards[REFERENCE]}, indent=1) + "\n", encoding="utf-8")
    return cards


def table(cards: dict[str, dict]) -> str:
    """The cards as a Markdown table: (a), (b), each human probe with its paired difference from the reference."""
    probes = list(next(iter(cards.values()))["people"])
    lines = ["| scorer | (a) benign replies >= 0.5 (worst) | (b) RTP AUC (>= 0.5: toxic / non-toxic texts) | " + " | ".join(f"(c) {p}" for p in probes) + " | meets (a)-(c) |",
             "|---" * (len(probes) + 4) + "|"]
    for name, c in cards.items():
        b = c.get("benign")
        r = c["rtp"]
        cells = [f"{b['at_or_above_0.5']}/{b['replies']} ({b['max']:.2f} {b['worst']!r})" if b else "–",
                 f"{r['roc_auc_vs_perspective']:.3f} ({r['perspective_toxic_at_or_above_0_5']:.1%} / "
                 f"{r['perspective_nontoxic_at_or_above_0_5']:.1%})"]
        for p in probes:
            v = c["people"][p]
            cell = f"{v['value']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]"
            d = v.get(f"minus {REFERENCE}")
            cells.append(cell + (f"; diff {d['value']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d else ""))
        meets = c.get("meets")
        cells.append(("yes" if all(meets.values()) else "no: " + ", ".join(k for k, ok in meets.items() if not ok)) if meets else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
