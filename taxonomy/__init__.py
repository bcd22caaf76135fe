"""The paper's Table 1 use cases and a classifier that labels prompts with them.

The classifier (and scikit-learn behind it) is imported on first use, so `instructkit --help` and every command's
argument errors stay instant."""

from taxonomy.categories import CATEGORIES, DEFINITIONS, PAPER_SHARES

__all__ = ["CATEGORIES", "DEFINITIONS", "PAPER_SHARES", "UseCaseClassifier", "load_default"]


def __getattr__(name: str):
    if name in ("UseCaseClassifier", "load_default"):
        from taxonomy import model

        return getattr(model, name)
    raise AttributeError(f"module 'taxonomy' has no attribute {name!r}")
