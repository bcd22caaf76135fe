"""The use-case classifier: TF-IDF words and characters plus structure features (and, with `features="embed"`,
MiniLM sentence embeddings), class-balanced logistic regression with calibrated probabilities; or, with
`features="tuned"`, MiniLM fine-tuned end to end (`taxonomy.finetune`). Trained on the written labeled set plus
hand-labeled real prompts; saved with skops (never pickle) and loaded with an explicit list of trusted types."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import classification_report, confusion_matrix, f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer

from builders.errors import InputError
from taxonomy.categories import CATEGORIES
from taxonomy.features import CharTfidf, SentenceEmbedder, structure_features

HERE = Path(__file__).resolve().parent
LABELED = HERE / "data" / "labeled.jsonl"
SHAPES = HERE / "data" / "shapes.jsonl"
DEFAULT_MODEL = HERE / "model" / "usecase.skops"
SHIPPED = {"fast": DEFAULT_MODEL, "embed": HERE / "model" / "usecase-embed.skops"}
FEATURES = (*SHIPPED, "tuned")  # model kinds: the shipped two, and MiniLM fine-tuned (trained by the user)
MAX_CHARS = 2000  # the classifier reads the start of a prompt: enough for instruction, passage cue and options
TRUSTED = [
    "taxonomy.features.structure_features",
    "taxonomy.features.SentenceEmbedder",
    "taxonomy.features.CharTfidf",
    "taxonomy.finetune.FineTunedMiniLM",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "builtins.getattr",
]


def build_pipeline(seed: int = 0, features: str = "fast", base: str | None = None) -> Pipeline:
    """`fast`: TF-IDF words and characters plus structure features (thousands of prompts/s on one core).
    `embed`: the same plus MiniLM sentence embeddings (the `embed` extra; about 45 prompts/s on one CPU core).
    `tuned`: MiniLM fine-tuned end to end (the `embed` extra; minutes to train, then reads like `embed`), or the
    encoder `base` (a Hugging Face model id or local folder) instead of MiniLM.
    Terms must occur in at least two training texts, so the vocabulary holds no prompt-specific strings."""
    if features not in FEATURES:
        raise InputError(f"unknown features {features!r} (one of: {', '.join(FEATURES)})", field="features")
    if features == "tuned":
        from taxonomy.finetune import FineTunedMiniLM

        return Pipeline([("clf", FineTunedMiniLM(seed=seed, base=base))])
    if base:
        raise InputError("an encoder to fine-tune is only read by the tuned model (features='tuned')", field="base")
    parts = [
        ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, lowercase=True)),
        ("chars", CharTfidf(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, min_df=2, max_features=30000)),
        ("structure", FunctionTransformer(structure_features)),
    ]
    if features == "embed":
        parts.append(("embedding", SentenceEmbedder(weight=2.0)))
    lr = LogisticRegression(C=10.0, max_iter=3000, class_weight="balanced", random_state=seed)
    return Pipeline([("features", FeatureUnion(parts)), ("clf", CalibratedClassifierCV(lr, cv=3, method="sigmoid", ensemble=False))])


def read_labels(path: str | Path) -> tuple[list[str], list[str]]:
    """text,label rows from CSV or JSONL; unknown labels, empty labels and empty texts are errors naming the row."""
    texts, labels, _ = read_label_rows(path)
    return texts, labels


def read_label_rows(path: str | Path, *, skip_unlabeled: bool = False) -> tuple[list[str], list[str], int]:
    """text,label rows from CSV or JSONL (a review file as `taxonomy review` writes it, too), and how many rows were
    skipped because their label is still empty (with `skip_unlabeled`; an error otherwise). Labels match the use
    cases' names whatever their case; unknown labels and empty texts are errors naming the row."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", file=str(path))
    rows: list[tuple[int, dict]] = []
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [(i, r) for i, r in enumerate(csv.DictReader(fh), start=2)]
    else:
        from builders.readers import iter_records

        for rec in iter_records(path):
            if rec.error:
                raise rec.error
            rows.append((rec.line, rec.data))
    by_name = {c.casefold(): c for c in CATEGORIES}
    texts, labels, skipped = [], [], 0
    for line, r in rows:
        text, label = r.get("text"), r.get("label")
        if skip_unlabeled and (label is None or (isinstance(label, str) and not label.strip())):
            skipped += 1
            continue
        if not isinstance(text, str) or not text.strip():
            raise InputError("missing or empty", file=str(path), line=line, field="text")
        if not isinstance(label, str) or label.strip().casefold() not in by_name:
            raise InputError(f"unknown label {label!r} (one of: {', '.join(CATEGORIES)})", file=str(path), line=line, field="label")
        texts.append(text)
        labels.append(by_name[label.strip().casefold()])
    if len(set(labels)) < 2:
        raise InputError("needs examples of at least two categories" + (f" ({skipped} rows have no label yet)" if skipped else ""),
                         file=str(path))
    return texts, labels, skipped


def _clip(texts) -> list[str]:
    return [t[:MAX_CHARS] for t in texts]


class UseCaseClassifier:
    """Predicts a Table 1 use case and its calibrated probability for each prompt text."""

    def __init__(self, pipeline: Pipeline, name: str = "usecase", cv_true: list[str] | None = None,
                 cv_pred: list[str] | None = None):
        self.pipeline = pipeline
        self.name = name
        self.cv_true, self.cv_pred = cv_true, cv_pred  # cross-validated labels, for error-corrected shares
        self.evaluation: dict | None = None  # its accuracy on the user's own labels (`taxonomy train --labels`)

    @classmethod
    def train(cls, texts: list[str], labels: list[str], seed: int = 0, name: str = "usecase", cv: int = 5,
              features: str = "fast", base: str | None = None) -> "UseCaseClassifier":
        """Fit on all rows; with cv > 1 also keep cross-validated predictions (to correct share estimates). The
        `tuned` model keeps its calibration split's held-out predictions instead (k more fine-tunes would take
        k times as long)."""
        pipe = build_pipeline(seed, features, base)
        pipe.fit(_clip(texts), labels)
        _drop_rare_terms(pipe)
        final = pipe.steps[-1][1]
        if hasattr(final, "holdout_pred_"):
            return cls(pipe, name, final.holdout_true_, final.holdout_pred_)
        cv_pred = None
        folds = min(cv, min(labels.count(c) for c in set(labels))) if cv > 1 else 0
        if folds > 1:
            cv_pred = cv_predict(texts, labels, folds, seed, features)
        return cls(pipe, name, list(labels) if cv_pred else None, cv_pred)

    def shares(self, predicted: list[str], seed: int = 0) -> dict[str, dict] | None:
        """Use-case shares of `predicted` labels corrected for this classifier's held-out errors (maximum likelihood
        with bootstrap intervals, `taxonomy.distribution`); None without calibration pairs."""
        if not self.cv_pred:
            return None
        from taxonomy.distribution import corrected_shares

        return corrected_shares(predicted, self.cv_true, self.cv_pred, seed=seed)

    @property
    def uses_torch(self) -> bool:
        """True when a step runs a torch model (MiniLM): run it in one process, not forked workers."""
        from taxonomy.finetune import FineTunedMiniLM

        return isinstance(self.pipeline.steps[-1][1], FineTunedMiniLM) or any(
            isinstance(part, SentenceEmbedder) for _, part in _feature_parts(self.pipeline))

    @property
    def in_process(self) -> bool:
        """Run in the build's own process, not forked workers (torch's thread pool hangs in a forked child)."""
        return self.uses_torch

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.pipeline.classes_]

    def predict_proba(self, texts: list[str], progress: bool = False, batch_size: int = 10_000) -> np.ndarray:
        """Class probabilities; with `progress`, in batches behind a progress bar (the embed model reads ~45
        prompts/s per core, so 100k prompts take a while)."""
        if not texts:
            return np.zeros((0, len(self.classes)))
        if not progress:
            return self.pipeline.predict_proba(_clip(texts))
        from tqdm.auto import tqdm

        out = []
        with tqdm(total=len(texts), desc="classify", unit="prompt") as bar:
            for i in range(0, len(texts), batch_size):
                out.append(self.pipeline.predict_proba(_clip(texts[i:i + batch_size])))
                bar.update(len(out[-1]))
        return np.vstack(out)

    def predict(self, texts: list[str], progress: bool = False) -> tuple[list[str], list[float]]:
        proba = self.predict_proba(texts, progress=progress, batch_size=1_000 if self.uses_torch else 10_000)
        if not len(proba):
            return [], []
        best = proba.argmax(axis=1)
        classes = self.classes
        return [str(classes[i]) for i in best], [round(float(p), 4) for p in proba[np.arange(len(best)), best]]

    def save(self, path: str | Path) -> None:
        """A compressed skops file (~1 MB); vocabulary indices as plain ints so skops keeps them in its schema."""
        import zipfile

        import skops.io as sio

        for _, part in _feature_parts(self.pipeline):
            if hasattr(part, "vocabulary_"):
                part.vocabulary_ = {term: int(i) for term, i in part.vocabulary_.items()}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sio.dump({"pipeline": self.pipeline, "name": self.name, "cv_true": self.cv_true, "cv_pred": self.cv_pred,
                  "evaluation": self.evaluation}, path,
                 compression=zipfile.ZIP_DEFLATED, compresslevel=9)

    @classmethod
    def load(cls, path: str | Path) -> "UseCaseClassifier":
        """Load a skops file, trusting only sklearn types and our own feature function; anything else is refused."""
        import zipfile

        import skops.io as sio

        path = Path(path)
        if not path.exists():
            raise InputError("model file not found", file=str(path))
        if not zipfile.is_zipfile(path):
            raise InputError("not a skops model file (pickle and other formats are refused: they can run code)", file=str(path))
        try:
            untrusted = sio.get_untrusted_types(file=path)
            extra = [t for t in untrusted if not (t.startswith(("sklearn.", "numpy.", "scipy.")) or t in TRUSTED)]
            if extra:
                raise InputError(f"model file holds untrusted types: {', '.join(extra)}", file=str(path))
            obj = sio.load(path, trusted=untrusted)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"not a valid skops model file: {exc}", file=str(path)) from exc
        clf = cls(obj["pipeline"], obj.get("name", path.stem), obj.get("cv_true"), obj.get("cv_pred"))
        clf.evaluation = obj.get("evaluation")
        return clf


def _feature_parts(pipe: Pipeline) -> list:
    """The (name, transformer) parts of a pipeline's feature union; none for the fine-tuned model."""
    return pipe.named_steps["features"].transformer_list if "features" in pipe.named_steps else []


def _drop_rare_terms(pipe: Pipeline) -> None:
    """TF-IDF keeps the terms it dropped (`stop_words_`: every term seen in one text only) for inspection; they
    are not needed to predict and would put fragments of individual training prompts into the model file."""
    for _, part in _feature_parts(pipe):
        if hasattr(part, "stop_words_"):
            del part.stop_words_


def cv_predict(texts: list[str], labels: list[str], folds: int, seed: int = 0, features: str = "fast") -> list[str]:
    """Each row's label predicted by a model trained on the other folds (stratified, shuffled by seed)."""
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [str(p) for p in cross_val_predict(build_pipeline(seed, features), _clip(texts), labels, cv=split)]


def cv_predict_with_base(base: tuple[list[str], list[str]], texts: list[str], labels: list[str], folds: int,
                         seed: int = 0, features: str = "fast") -> list[str]:
    """Cross-validated predictions for `texts` where every fold's model also trains on all of `base` (the written
    labeled set): how a model trained on both does on prompts like `texts` it has not seen."""
    import warnings

    pred: list[str] = [""] * len(texts)
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # classes rarer than `folds` (a couple of real Closed QA prompts) still split
        warnings.simplefilter("ignore", UserWarning)
        for train_idx, test_idx in split.split(texts, labels):
            pipe = build_pipeline(seed, features)
            pipe.fit(_clip(base[0] + [texts[i] for i in train_idx]), base[1] + [labels[i] for i in train_idx])
            for i, p in zip(test_idx, pipe.predict(_clip([texts[i] for i in test_idx]))):
                pred[i] = str(p)
    return pred


def default_training_set(data_dir: str | Path) -> tuple[list[str], list[str]]:
    """The written labeled sets (the first one, and the shapes Table 1's definitions name: dialogue transcripts,
    "given X, decide Y" tasks, word problems, passages with questions or options, text to pull items from) plus the
    hand-labeled real prompts and real dialogues pasted as transcripts (texts read from `data_dir`)."""
    from taxonomy.heldout import REAL_LABELED_2, REAL_SHAPES, load_real_labeled

    texts, labels = [], []
    for part in (read_labels(LABELED), read_labels(SHAPES), load_real_labeled(data_dir), load_real_labeled(data_dir, REAL_SHAPES),
                 load_real_labeled(data_dir, REAL_LABELED_2)):
        texts += part[0]
        labels += part[1]
    return texts, labels


def evaluate(clf_or_none, texts: list[str], labels: list[str], *, cv: int = 0, seed: int = 0, features: str = "fast") -> dict:
    """Macro-F1, per-class F1 and the confusion matrix, on given labels, or cross-validated when cv > 1."""
    pred = cv_predict(texts, labels, cv, seed, features) if cv > 1 else clf_or_none.predict(texts)[0]
    return scores(labels, pred)


def scores(labels: list[str], pred: list[str]) -> dict:
    """Macro-F1, per-class F1, confusion matrix and a printable report of predictions against labels."""
    # macro-F1 over the use cases present in the test labels; predicting any other class still costs recall
    present = [c for c in CATEGORIES if c in set(labels)]
    shown = [c for c in CATEGORIES if c in set(labels) | set(pred)]
    return {
        "n": len(labels),
        "macro_f1": round(float(f1_score(labels, pred, labels=present, average="macro", zero_division=0)), 4),
        "per_class_f1": {c: round(float(v), 4) for c, v in zip(present, f1_score(labels, pred, labels=present, average=None, zero_division=0))},
        "confusion_matrix": {"labels": shown, "rows_true_cols_pred": confusion_matrix(labels, pred, labels=shown).tolist()},
        "report": classification_report(labels, pred, labels=shown, zero_division=0),
    }


_loaded: dict[str, UseCaseClassifier] = {}


def load_default(features: str = "fast") -> UseCaseClassifier:
    """A shipped model: `fast` (the default, used by the builders) or `embed` (MiniLM embeddings too; needs the
    `embed` extra). Both are trained on the written labeled set plus the hand-labeled real prompts and are
    reproduced by `instructkit taxonomy train --default [--features embed] --data-dir ../shared/data`."""
    if features not in SHIPPED:
        raise InputError(f"unknown shipped model {features!r} (one of: {', '.join(SHIPPED)})", field="model")
    if features not in _loaded:
        path = SHIPPED[features]
        if not path.exists():
            raise InputError("shipped model missing; rebuild it with `instructkit taxonomy train --default "
                             f"--features {features} --data-dir ../shared/data --out {path}`", file=str(path))
        _loaded[features] = UseCaseClassifier.load(path)
    return _loaded[features]


def load_model(name_or_path: str | None):
    """`fast`/`embed` (the shipped models), a skops file, `llm:BASE_URL[#MODEL]` or `hf:MODEL[#LABELS.yaml]`
    (taxonomy.labelers), or None for the default."""
    if name_or_path and name_or_path.startswith(("llm:", "hf:")):
        from taxonomy.labelers import make_labeler

        return make_labeler(name_or_path)
    if name_or_path is None or name_or_path in SHIPPED:
        return load_default(name_or_path or "fast")
    if not Path(name_or_path).exists():
        if name_or_path == "tuned":
            raise InputError("the tuned model is not shipped (its weights are ~90 MB): train it once with `instructkit "
                             "taxonomy train --default --features tuned --data-dir ../shared/data --out "
                             "usecase-tuned.skops` (or on your own labels with --labels) and pass that file", field="classifier")
        raise InputError(f"{name_or_path!r} is neither a shipped model ({', '.join(SHIPPED)}), an existing skops file, "
                         "llm:BASE_URL[#MODEL] nor hf:MODEL_ID_OR_PATH", field="classifier")
    return UseCaseClassifier.load(name_or_path)
