"""The use-case classifier: TF-IDF words and characters plus structure features, logistic regression with
calibrated probabilities. Saved with skops (never pickle) and loaded with an explicit list of trusted types."""

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
from taxonomy.features import structure_features

HERE = Path(__file__).resolve().parent
LABELED = HERE / "data" / "labeled.jsonl"
DEFAULT_MODEL = HERE / "model" / "usecase.skops"
MAX_CHARS = 2000  # the classifier reads the start of a prompt: enough for instruction, passage cue and options
TRUSTED = [
    "taxonomy.features.structure_features",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "builtins.getattr",
]


def build_pipeline(seed: int = 0) -> Pipeline:
    features = FeatureUnion([
        ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, lowercase=True)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, min_df=2, max_features=30000)),
        ("structure", FunctionTransformer(structure_features)),
    ])
    clf = CalibratedClassifierCV(LogisticRegression(C=10.0, max_iter=2000, random_state=seed), cv=3, method="sigmoid")
    return Pipeline([("features", features), ("clf", clf)])


def read_labels(path: str | Path) -> tuple[list[str], list[str]]:
    """text,label rows from CSV or JSONL; unknown labels and empty texts are errors naming the row."""
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
    texts, labels = [], []
    for line, r in rows:
        text, label = r.get("text"), r.get("label")
        if not isinstance(text, str) or not text.strip():
            raise InputError("missing or empty", file=str(path), line=line, field="text")
        if label not in CATEGORIES:
            raise InputError(f"unknown label {label!r} (one of: {', '.join(CATEGORIES)})", file=str(path), line=line, field="label")
        texts.append(text)
        labels.append(label)
    if len(set(labels)) < 2:
        raise InputError("needs examples of at least two categories", file=str(path))
    return texts, labels


def _clip(texts) -> list[str]:
    return [t[:MAX_CHARS] for t in texts]


class UseCaseClassifier:
    """Predicts a Table 1 use case and its calibrated probability for each prompt text."""

    def __init__(self, pipeline: Pipeline, name: str = "usecase", cv_true: list[str] | None = None,
                 cv_pred: list[str] | None = None):
        self.pipeline = pipeline
        self.name = name
        self.cv_true, self.cv_pred = cv_true, cv_pred  # cross-validated labels, for error-corrected shares

    @classmethod
    def train(cls, texts: list[str], labels: list[str], seed: int = 0, name: str = "usecase", cv: int = 5) -> "UseCaseClassifier":
        """Fit on all rows; with cv > 1 also keep cross-validated predictions (to correct share estimates)."""
        pipe = build_pipeline(seed)
        pipe.fit(_clip(texts), labels)
        cv_pred = None
        folds = min(cv, min(labels.count(c) for c in set(labels))) if cv > 1 else 0
        if folds > 1:
            cv_pred = cv_predict(texts, labels, folds, seed)
        return cls(pipe, name, list(labels) if cv_pred else None, cv_pred)

    def shares(self, predicted: list[str], seed: int = 0) -> dict[str, dict] | None:
        """Use-case shares of `predicted` labels corrected for this classifier's cross-validated errors."""
        if not self.cv_pred:
            return None
        from taxonomy.distribution import adjusted_shares

        return adjusted_shares(predicted, self.cv_true, self.cv_pred, seed=seed)

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.pipeline.classes_]

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.classes)))
        return self.pipeline.predict_proba(_clip(texts))

    def predict(self, texts: list[str]) -> tuple[list[str], list[float]]:
        proba = self.predict_proba(texts)
        if not len(proba):
            return [], []
        best = proba.argmax(axis=1)
        classes = self.classes
        return [str(classes[i]) for i in best], [round(float(p), 4) for p in proba[np.arange(len(best)), best]]

    def save(self, path: str | Path) -> None:
        import skops.io as sio

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sio.dump({"pipeline": self.pipeline, "name": self.name, "cv_true": self.cv_true, "cv_pred": self.cv_pred}, path)

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
        return cls(obj["pipeline"], obj.get("name", path.stem), obj.get("cv_true"), obj.get("cv_pred"))


def cv_predict(texts: list[str], labels: list[str], folds: int, seed: int = 0) -> list[str]:
    """Each row's label predicted by a model trained on the other folds (stratified, shuffled by seed)."""
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [str(p) for p in cross_val_predict(build_pipeline(seed), _clip(texts), labels, cv=split)]


def evaluate(clf_or_none, texts: list[str], labels: list[str], *, cv: int = 0, seed: int = 0) -> dict:
    """Macro-F1, per-class F1 and the confusion matrix, on given labels, or cross-validated when cv > 1."""
    pred = cv_predict(texts, labels, cv, seed) if cv > 1 else clf_or_none.predict(texts)[0]
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


_default: UseCaseClassifier | None = None


def _cache_path() -> Path:
    """Where the trained default model is kept: keyed by the labeled data, this code and scikit-learn's version."""
    import hashlib
    import os

    import sklearn

    h = hashlib.sha256()
    for f in (LABELED, HERE / "model.py", HERE / "features.py"):
        h.update(f.read_bytes())
    h.update(sklearn.__version__.encode())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "instructkit" / "taxonomy"
    return base / f"usecase-{h.hexdigest()[:16]}.skops"


def load_default() -> UseCaseClassifier:
    """The default model: a shipped file if present, else trained from the shipped labeled set (with 5-fold
    cross-validated predictions, ~10-20 s) on first use and cached in the user cache for later runs."""
    global _default
    if _default is None:
        if DEFAULT_MODEL.exists():
            _default = UseCaseClassifier.load(DEFAULT_MODEL)
        else:
            cached = _cache_path()
            if cached.exists():
                _default = UseCaseClassifier.load(cached)
            else:
                _default = UseCaseClassifier.train(*read_labels(LABELED))
                try:
                    _default.save(cached)
                except OSError:  # a read-only home still gets a working classifier
                    pass
    return _default
