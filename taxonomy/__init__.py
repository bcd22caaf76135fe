"""The paper's Table 1 use cases and a classifier that labels prompts with them."""

from taxonomy.categories import CATEGORIES, DEFINITIONS, PAPER_SHARES
from taxonomy.model import UseCaseClassifier, load_default

__all__ = ["CATEGORIES", "DEFINITIONS", "PAPER_SHARES", "UseCaseClassifier", "load_default"]
